from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from posekit.data.flic import read_flic_examples_mat, read_flic_h5
from posekit.errors import ConfigError, DataError
from posekit.skeletons import FLIC, get_skeleton


@pytest.fixture
def flic_annot(shared_data: Path) -> Path:
    folder = shared_data / "flic" / "annot"
    if not (folder / "train.h5").is_file():
        pytest.skip("../shared/data/flic/annot not present: real-data test skipped")
    return folder


@pytest.fixture
def flic_train(flic_annot: Path):
    return read_flic_h5(flic_annot / "train.h5", "images")


def _stack(records) -> np.ndarray:
    return np.stack([r.keypoints for r in records])


def test_skeleton():
    assert get_skeleton("flic") is FLIC
    assert FLIC.num_keypoints == 11
    assert FLIC.keypoints[FLIC.torso[0]] == "l_shoulder" and FLIC.keypoints[FLIC.torso[1]] == "r_hip"
    assert FLIC.flip_permutation().tolist() == [3, 4, 5, 0, 1, 2, 7, 6, 9, 8, 10]
    assert FLIC.upper_body == tuple(range(11)) and FLIC.lower_body == (6, 7)


def test_real_counts(flic_annot: Path, flic_train):
    assert len(flic_train) == 3987
    assert len(read_flic_h5(flic_annot / "valid.h5", "images")) == 1016


def test_real_first_person_against_raw_file(flic_annot: Path, flic_train):
    with h5py.File(flic_annot / "train.h5", "r") as f:
        raw_part, raw_center = f["part"][0], f["center"][0]
    record = flic_train[0]
    # Hand-read from train.h5: person 0's left shoulder (327.8776, 213.3125) and nose (298.1837, 161.7188).
    assert raw_part[0] == pytest.approx([327.87756348, 213.3125])
    assert record.keypoints[0] == pytest.approx([326.87756348, 212.3125, 2])     # 1-based -> 0-based
    assert record.keypoints[10] == pytest.approx([297.1836853, 160.71875, 2])
    assert record.keypoints[:, :2] == pytest.approx(raw_part - 1)
    assert raw_center == pytest.approx([266.77985, 240.0])
    assert record.center == pytest.approx([265.77985, 239.0])
    assert record.scale.tolist() == [2.2, 2.2]
    assert record.image_path == str(Path("images") / "12-oclock-high-special-edition-00006361.jpg")
    assert record.extras["index"] == 0 and record.extras["person"] == 0
    assert record.extras["torso_angle"] == pytest.approx(7.90806243)


def test_real_joint_geometry_pins_the_order(flic_train):
    keypoints = _stack(flic_train)
    assert (keypoints[:, :, 2] == 2).all()       # every FLIC joint is annotated and visible
    mean_y = keypoints[:, :, 1].mean(axis=0)
    name = FLIC.index
    face = [name("l_eye"), name("r_eye"), name("nose")]
    shoulders, elbows, wrists = [name("l_shoulder"), name("r_shoulder")], [1, 4], [2, 5]
    hips = [name("l_hip"), name("r_hip")]
    assert mean_y[face].max() < mean_y[shoulders].min()
    assert mean_y[shoulders].max() < mean_y[elbows].min()
    assert mean_y[elbows].max() < mean_y[wrists].min()
    assert mean_y[face].max() < mean_y[hips].min() and mean_y[hips].min() > mean_y[shoulders].max()
    assert mean_y[name("nose")] > mean_y[[name("l_eye"), name("r_eye")]].max()   # nose below the eyes
    # Observer-centric labels: "left" is always the joint on the image's right, for every person.
    assert (keypoints[:, name("l_shoulder"), 0] > keypoints[:, name("r_shoulder"), 0]).all()
    assert (keypoints[:, name("l_hip"), 0] > keypoints[:, name("r_hip"), 0]).all()
    # The torso pair is the one pose-hg-train's 'normalize' approximates (median ratio ~0.99).
    torso = np.linalg.norm(keypoints[:, FLIC.torso[0], :2] - keypoints[:, FLIC.torso[1], :2], axis=1)
    normalize = np.array([r.extras["normalize"] for r in flic_train])
    assert np.median(normalize / torso) == pytest.approx(1.0, abs=0.03)


def _write_h5(path: Path, n: int = 2, **override) -> Path:
    data = {
        "part": np.arange(n * 22, dtype=np.float64).reshape(n, 11, 2) + 1,
        "visible": np.ones((n, 11)),
        "center": np.tile([[100.0, 240.0]], (n, 1)).astype(np.float32),
        "scale": np.full(n, 2.2),
        "imgname": np.array([b"movie-%08d.jpg" % i for i in range(n)]),
        "index": np.arange(n),
    }
    data.update(override)
    with h5py.File(path, "w") as f:
        for key, value in data.items():
            if value is not None:
                f[key] = value
    return path


def test_visibility_conversion(tmp_path: Path):
    visible = np.ones((2, 11))
    visible[1, 4] = 0
    records = read_flic_h5(_write_h5(tmp_path / "a.h5", visible=visible), tmp_path)
    assert records[0].keypoints[:, 2].tolist() == [2] * 11
    assert records[1].keypoints[4].tolist() == [0, 0, 0]      # not visible: unlabelled, coordinates dropped
    assert records[1].keypoints[5].tolist() == [33 - 1, 34 - 1, 2]   # part[1, 5] = (33, 34), 1-based
    assert records[1].image_path == str(tmp_path / "movie-00000001.jpg")
    assert records[1].center.tolist() == [99.0, 239.0]
    assert records[1].extras == {"index": 1}


@pytest.mark.parametrize("override, message", [
    ({"visible": None}, "no dataset 'visible'"),
    ({"part": np.zeros((2, 14, 2))}, r"dataset 'part' is 2 x 14 x 2 \(float64\), expected numbers of shape N x 11 x 2"),
    ({"scale": np.full(3, 2.2)}, "dataset 'scale' is 3"),
    ({"visible": np.full((2, 11), 2.0)}, "'visible' must hold only 0 and 1"),
    ({"scale": np.array([2.2, 0.0])}, "scale <= 0"),
    ({"index": np.arange(5)}, "dataset 'index' is 5"),
])
def test_bad_h5_files(tmp_path: Path, override, message):
    path = _write_h5(tmp_path / "bad.h5", **override)
    with pytest.raises(DataError, match=message) as err:
        read_flic_h5(path, tmp_path)
    assert str(path) in str(err.value)


def test_not_an_h5_file(tmp_path: Path):
    path = tmp_path / "train.h5"
    path.write_text("not hdf5")
    with pytest.raises(DataError, match="cannot open it as HDF5") as err:
        read_flic_h5(path, tmp_path)
    assert str(err.value).startswith(str(path))
    with pytest.raises(DataError, match="file not found"):
        read_flic_h5(tmp_path / "missing.h5", tmp_path)


def _example(coords11: np.ndarray, train: bool, name: str, box=(10.0, 20.0, 50.0, 120.0)) -> tuple:
    coords = np.full((2, 29), np.nan)
    coords[:, [0, 1, 2, 3, 4, 5, 6, 9, 12, 13, 16]] = coords11.T
    return (coords, np.array([name]), np.array([[480, 720, 3]], dtype=np.uint16), np.array([box], dtype=np.float32),
            np.array([[int(train)]], dtype=np.uint8), np.array([[int(not train)]], dtype=np.uint8))


def _write_examples(path: Path, examples) -> Path:
    fields = ["coords", "filepath", "imgdims", "torsobox", "istrain", "istest"]
    struct = np.empty((1, len(examples)), dtype=[(f, object) for f in fields])
    for i, example in enumerate(examples):
        struct[0, i] = example
    scipy.io.savemat(str(path), {"examples": struct})
    return path


def _frontal() -> np.ndarray:
    # x, y of lsho lelb lwri rsho relb rwri lhip rhip leye reye nose (1-based), left on the image's right.
    return np.array([[60, 40], [65, 70], [70, 95], [20, 41], [15, 72], [12, 96], [55, 110], [25, 111],
                     [44, 20], [36, 20], [40, 26]], dtype=np.float64)


def test_examples_mat(tmp_path: Path):
    back = _frontal().copy()
    back[:, 0] = 80 - back[:, 0]                  # seen from behind: left joints on the image's left
    partial = _frontal().copy()
    partial[9] = np.nan                           # right eye not annotated
    path = _write_examples(tmp_path / "examples.mat", [
        _example(_frontal(), True, "a-001.jpg"),
        _example(_frontal() + 5, False, "b-002.jpg"),
        _example(back, True, "c-003.jpg"),
        _example(partial, True, "d-004.jpg"),
    ])
    train = read_flic_examples_mat(path, tmp_path / "images")
    assert [r.extras["index"] for r in train] == [0, 2, 3]
    first = train[0]
    assert first.keypoints[:, :2].tolist() == (_frontal() - 1).tolist()
    assert first.keypoints[:, 2].tolist() == [2] * 11
    assert first.image_path == str(tmp_path / "images" / "a-001.jpg")
    assert first.center.tolist() == [29.0, 239.0]        # ((10 + 50) / 2, 480 / 2) - 1, as pose-hg-train
    assert first.scale.tolist() == [2.2, 2.2]
    assert first.image_size == (720, 480)
    assert first.extras["cpm_center"].tolist() == pytest.approx([29.0, 0.7 * 20 + 0.3 * 120 - 1])
    assert first.extras["cpm_scale"] == pytest.approx(0.0110 * 100)
    assert first.extras["lr_swapped"] is False

    swapped = train[1]                                   # observer-centric: every pair swapped back
    assert swapped.extras["lr_swapped"] is True
    assert swapped.keypoints[:, :2].tolist() == (back - 1)[FLIC.flip_permutation()].tolist()
    assert swapped.keypoints[0, 0] > swapped.keypoints[3, 0]
    kept = read_flic_examples_mat(path, tmp_path, observer_centric=False)[1]
    assert kept.keypoints[:, :2].tolist() == (back - 1).tolist()

    assert train[2].keypoints[9].tolist() == [0, 0, 0]
    assert train[2].keypoints[8, 2] == 2

    test = read_flic_examples_mat(path, tmp_path, split="test")
    assert [r.extras["index"] for r in test] == [1]
    assert test[0].keypoints[:, :2].tolist() == (_frontal() + 4).tolist()


def test_examples_mat_matches_h5_layout(tmp_path: Path):
    """A person written both ways (as pose-hg-train derived train.h5 from examples.mat) reads the same."""
    coords = _frontal()
    mat = _write_examples(tmp_path / "examples.mat", [_example(coords, True, "a-001.jpg")])
    h5 = _write_h5(tmp_path / "train.h5", n=1, part=coords[None], center=np.array([[30.0, 240.0]]),
                   imgname=np.array([b"a-001.jpg"]), index=np.array([0]))
    a, = read_flic_examples_mat(mat, tmp_path)
    b, = read_flic_h5(h5, tmp_path)
    assert np.array_equal(a.keypoints, b.keypoints) and np.array_equal(a.center, b.center)
    assert np.array_equal(a.scale, b.scale) and a.image_path == b.image_path
    assert a.extras["index"] == b.extras["index"]


def test_bad_examples_mat(tmp_path: Path):
    wrong_key = tmp_path / "wrong.mat"
    scipy.io.savemat(str(wrong_key), {"joints": np.zeros((3, 14, 2))})
    with pytest.raises(DataError, match="no struct array 'examples' \\(keys: joints\\)") as err:
        read_flic_examples_mat(wrong_key, tmp_path)
    assert str(wrong_key) in str(err.value)

    short = _example(_frontal(), True, "a.jpg")
    short = (np.zeros((2, 14)),) + short[1:]
    bad_coords = _write_examples(tmp_path / "coords.mat", [short])
    with pytest.raises(DataError, match=r"examples\(1\)\.coords is 2 x 14, expected 2 x 29"):
        read_flic_examples_mat(bad_coords, tmp_path)

    no_field = tmp_path / "nofield.mat"
    struct = np.empty((1, 1), dtype=[("coords", object), ("filepath", object)])
    struct[0, 0] = (np.zeros((2, 29)), np.array(["a.jpg"]))
    scipy.io.savemat(str(no_field), {"examples": struct})
    with pytest.raises(DataError, match="'examples' has no field 'torsobox'"):
        read_flic_examples_mat(no_field, tmp_path)

    text = tmp_path / "examples.mat"
    text.write_text("not a mat file")
    with pytest.raises(DataError, match="cannot read it as a .mat file"):
        read_flic_examples_mat(text, tmp_path)
    with pytest.raises(ConfigError, match="split"):
        read_flic_examples_mat(bad_coords, tmp_path, split="valid")


def test_cpm_flic_config_reads_the_nine_part_layout(shared_data):
    from pathlib import Path as _Path

    from posekit.config import load_config
    from posekit.build import build_model, dataset_skeleton, load_records

    config = _Path(__file__).resolve().parents[2] / "configs" / "cpm-4stg_flic_368x368.yaml"
    cfg = load_config(config, [f"data.root={shared_data / 'flic'}"])
    records = load_records(cfg, "val")
    assert len(records) == 1016 and records[0].keypoints.shape == (9, 3)
    skeleton = dataset_skeleton(cfg)
    # CPM's 9-part swap (1-based 1<->4, 2<->5, 3<->6, 7<->8)
    assert sorted(skeleton.flip_pairs) == [(0, 3), (1, 4), (2, 5), (6, 7)] and skeleton.torso == (0, 7)
    model = build_model(cfg)
    assert model.input_channels == 3 and len(model.outputs) == 4 and model.center_map_sigma is None
