from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from posekit.data.dataset import record_center_scale
from posekit.data.mpii import read_mpii_h5, read_mpii_json
from posekit.errors import DataError
from posekit.evaluation.metrics import (HRNET_MEAN01_THRESHOLD, PCKH_GROUPS, PCKH_TABLE_COLUMNS, format_pckh_table, pckh, pckh_curve)
from posekit.skeletons import MPII

GROUPS = ("Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle")
# Per-joint counts of the official PCKh ground truth of this split (1 - jnt_missing of Tompson's
# detections_our_format.mat, which HRNet ships as gt_valid.mat), and of the h5 `visible` flag.
OFFICIAL_COUNTS = [2115, 2485, 2889, 2888, 2478, 2119, 2878, 2932, 2932, 2932, 2928, 2935, 2944, 2944, 2932, 2909]
VISIBLE_COUNTS = [1589, 1912, 2103, 2103, 1942, 1588, 1620, 1691, 2932, 2932, 2205, 2302, 2306, 2294, 2288, 2190]


def people(n: int, head: float = 10.0):
    """n people, every joint annotated at distinct spots, head size ``head``."""
    gt = np.arange(n * 16 * 2, dtype=np.float64).reshape(n, 16, 2) * 3.0
    return gt.copy(), gt, np.ones((n, 16), dtype=bool), np.full(n, head)


def hrnet_reference(pred, gt, annotated, head):
    """HRNet's mpii.py::evaluate arithmetic (16 x N arrays, masked pelvis/thorax), written independently."""
    visible = annotated.T.astype(np.float64)
    err = np.linalg.norm(pred - gt, axis=2).T / head * visible
    count = visible.sum(axis=1)
    pck = 100.0 * ((err <= 0.5) * visible).sum(axis=1) / count
    pck_all = [100.0 * ((err <= t) * visible).sum(axis=1) / count for t in np.arange(0, 0.5 + 0.01, 0.01)]
    pck = np.ma.array(pck, mask=False)
    pck.mask[6:8] = True
    count = np.ma.array(count, mask=False)
    count.mask[6:8] = True
    ratio = count / np.sum(count).astype(np.float64)
    return np.asarray(pck.data), float(np.sum(pck * ratio)), float(np.sum(pck_all[11] * ratio)), pck_all


def ground_truth(records):
    keypoints = np.stack([r.keypoints for r in records])
    return keypoints[..., :2], keypoints[..., 2] > 0, np.array([r.extras["head_size"] for r in records])


# ------------------------------------------------------------------------------------------------
# Hand-computed cases
# ------------------------------------------------------------------------------------------------

def test_group_indices_follow_the_mpii_skeleton():
    named = {"Head": ("head_top",), "Shoulder": ("l_shoulder", "r_shoulder"), "Elbow": ("l_elbow", "r_elbow"),
             "Wrist": ("l_wrist", "r_wrist"), "Hip": ("l_hip", "r_hip"), "Knee": ("l_knee", "r_knee"),
             "Ankle": ("l_ankle", "r_ankle")}
    assert [name for name, _ in PCKH_GROUPS] == list(GROUPS)
    for name, joints in PCKH_GROUPS:
        assert joints == tuple(MPII.index(j) for j in named[name])
    assert PCKH_TABLE_COLUMNS == GROUPS + ("Mean", "Mean@0.1")
    assert MPII.keypoints[6:8] == ("pelvis", "thorax")


def test_boundary_counts_and_one_bad_joint_lowers_only_itself():
    pred, gt, annotated, head = people(2)
    pred[1, 10] += (3.0, 4.0)        # r_wrist: exactly 5 px = 0.5 x head size -> still correct
    pred[1, 15, 0] += 1000.0         # l_wrist: far off
    result = pckh(pred, gt, annotated, head)
    expected = np.full(16, 100.0)
    expected[15] = 50.0
    np.testing.assert_array_equal(result["per_joint"], expected)
    assert result["counts"].tolist() == [2] * 16 and result["correct"][15] == 1
    assert result["Wrist"] == 75.0
    assert all(result[name] == 100.0 for name in GROUPS if name != "Wrist")
    assert result["Mean"] == pytest.approx(100.0 * 27 / 28)      # 14 joints x 2 people, one miss
    assert result["Mean@0.1"] == pytest.approx(100.0 * 26 / 28)  # the 0.5-head-size wrist misses too
    assert result["num_people"] == 2 and result["threshold"] == 0.5 and result["low_threshold"] == 0.1
    # just beyond the boundary it no longer counts
    pred[1, 10] = gt[1, 10] + (3.0, 4.0001)
    assert pckh(pred, gt, annotated, head)["per_joint"][10] == 50.0


def test_unannotated_joints_are_excluded():
    pred, gt, annotated, head = people(2)
    pred[1, 15] += 1000.0
    annotated[1, 15] = False
    gt[1, 15] = np.nan               # whatever stands there for a missing joint is never read
    result = pckh(pred, gt, annotated, head)
    assert result["per_joint"][15] == 100.0 and result["counts"][15] == 1
    assert result["Mean"] == 100.0
    annotated[:, 15] = False         # a joint nobody annotated: nan, and the Mean ignores it
    result = pckh(pred, gt, annotated, head)
    assert np.isnan(result["per_joint"][15]) and result["counts"][15] == 0
    assert np.isnan(result["Wrist"]) and result["Mean"] == 100.0


def test_pelvis_and_thorax_do_not_enter_the_mean():
    pred, gt, annotated, head = people(3)
    pred[:, 6:8] += 100.0
    result = pckh(pred, gt, annotated, head)
    assert result["per_joint"][6] == result["per_joint"][7] == 0.0
    assert result["Mean"] == result["Mean@0.1"] == 100.0


def test_mean_is_weighted_by_annotated_counts():
    pred, gt, _, head = people(4)
    annotated = np.zeros((4, 16), dtype=bool)
    annotated[:, 9] = True           # head_top: 4 people, all correct
    annotated[0, 0] = True           # r_ankle: 1 person, wrong
    pred[0, 0] += 50.0
    result = pckh(pred, gt, annotated, head)
    assert result["per_joint"][9] == 100.0 and result["per_joint"][0] == 0.0
    assert result["Mean"] == pytest.approx(80.0)   # (100 * 4 + 0 * 1) / 5, not the plain mean 50
    assert result["Head"] == 100.0 and np.isnan(result["Ankle"])   # l_ankle never annotated


def test_mean_at_low_threshold_and_hrnet_index():
    pred, gt, annotated, head = people(1, head=100.0)
    pred[0, :, 0] += 10.5             # 0.105 head sizes: in at 0.11 (HRNet's pckAll[11]), out at 0.1
    assert pckh(pred, gt, annotated, head)["Mean@0.1"] == 0.0
    assert HRNET_MEAN01_THRESHOLD == pytest.approx(0.11)
    assert pckh(pred, gt, annotated, head, low_threshold=HRNET_MEAN01_THRESHOLD)["Mean@0.1"] == 100.0
    assert pckh(pred, gt, annotated, head)["Mean"] == 100.0


def test_agrees_with_hrnet_arithmetic_on_random_data():
    rng = np.random.default_rng(0)
    n = 300
    gt = rng.uniform(0, 500, (n, 16, 2))
    head = rng.uniform(20, 80, n)
    pred = gt + rng.normal(0, 1, (n, 16, 2)) * head[:, None, None] * 0.4
    annotated = rng.random((n, 16)) < 0.8
    result = pckh(pred, gt, annotated, head, low_threshold=HRNET_MEAN01_THRESHOLD)
    per_joint, mean, mean01, pck_all = hrnet_reference(pred, gt, annotated, head)
    np.testing.assert_allclose(result["per_joint"], per_joint, rtol=1e-12)
    pairs = {"Head": (9, 9), "Shoulder": (13, 12), "Elbow": (14, 11), "Wrist": (15, 10), "Hip": (3, 2),
             "Knee": (4, 1), "Ankle": (5, 0)}
    for name, (left, right) in pairs.items():
        assert result[name] == pytest.approx(0.5 * (per_joint[left] + per_joint[right]), rel=1e-12)
    assert result["Mean"] == pytest.approx(mean, rel=1e-12)
    assert result["Mean@0.1"] == pytest.approx(mean01, rel=1e-12)
    assert 30 < result["Mean"] < 95 and result["Mean@0.1"] < result["Mean"]

    curve = pckh_curve(pred, gt, annotated, head)
    assert curve["thresholds"].shape == (51,) and curve["thresholds"][-1] == pytest.approx(0.5)
    np.testing.assert_allclose(curve["per_joint"], np.asarray(pck_all), rtol=1e-12)
    assert curve["mean"][50] == pytest.approx(result["Mean"], rel=1e-12)
    assert curve["mean"][11] == pytest.approx(result["Mean@0.1"], rel=1e-12)
    assert curve["mean"][10] == pytest.approx(pckh(pred, gt, annotated, head)["Mean@0.1"], rel=1e-12)
    assert np.all(np.diff(curve["mean"]) >= 0) and curve["counts"].tolist() == annotated.sum(axis=0).tolist()
    one = pckh_curve(pred, gt, annotated, head, thresholds=[0.5])
    assert one["mean"].tolist() == [pytest.approx(result["Mean"])]


def test_bad_inputs_raise_clear_errors():
    pred, gt, annotated, head = people(4)
    cases = [
        ((pred[:3], gt, annotated, head), "3 predictions for 4 ground-truth people"),
        ((pred[:, :14], gt, annotated, head), "predictions have 14 joints where MPII PCKh expects 16"),
        ((pred, gt[:, :14], annotated, head), "ground truth have 14 joints"),
        ((pred[..., 0], gt, annotated, head), r"predictions must be N x 16 x 2, got shape \(4, 16\)"),
        ((pred, gt, annotated[:, :14], head), "annotated must be N x 16"),
        ((pred, gt, annotated, head[:3]), "head_size must hold N = 4 values"),
        ((pred, gt, annotated, np.array([10.0, 0.0, 10.0, 10.0])), "person 1 has 0.0"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            pckh(*args)
    bad = pred.copy()
    bad[2, 5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite coordinates.*person 2, joint 5"):
        pckh(bad, gt, annotated, head)
    with pytest.raises(ValueError, match="NaN or infinite"):
        pckh_curve(bad, gt, annotated, head)
    bad_gt = gt.copy()
    bad_gt[0, 3] = np.inf
    with pytest.raises(ValueError, match="ground truth holds NaN"):
        pckh(pred, bad_gt, annotated, head)
    with pytest.raises(ValueError, match="thresholds"):
        pckh_curve(pred, gt, annotated, head, thresholds=[])


def test_format_pckh_table():
    pred, gt, annotated, head = people(2)
    pred[1, 15, 0] += 1000.0
    result = pckh(pred, gt, annotated, head)
    lines = format_pckh_table(result).splitlines()
    assert lines[0] == "| Head | Shoulder | Elbow | Wrist | Hip | Knee | Ankle | Mean | Mean@0.1 |"
    assert lines[1] == "|---|---|---|---|---|---|---|---|---|"
    assert lines[2] == "| 100.000 | 100.000 | 100.000 | 75.000 | 100.000 | 100.000 | 100.000 | 96.429 | 96.429 |"
    with_arch = format_pckh_table(result, arch="pose_hrnet_w32", digits=1).splitlines()
    assert with_arch[0].startswith("| Arch | Head |") and with_arch[2].startswith("| pose_hrnet_w32 | 100.0 |")
    with pytest.raises(ValueError, match="no Mean, Mean@0.1"):
        format_pckh_table({name: 1.0 for name in GROUPS})


# ------------------------------------------------------------------------------------------------
# The real validation split (annot/valid.h5)
# ------------------------------------------------------------------------------------------------

@pytest.fixture
def valid_records(shared_data):
    return read_mpii_h5(str(shared_data / "mpii" / "annot" / "valid.h5"), "images")


def test_real_split_ground_truth_scores_100(valid_records):
    assert len(valid_records) == 2958
    gt, annotated, head = ground_truth(valid_records)
    result = pckh(gt, gt, annotated, head)
    assert all(result[name] == 100.0 for name in GROUPS + ("Mean", "Mean@0.1"))
    assert result["counts"].tolist() == OFFICIAL_COUNTS


def test_real_split_shift_of_0_4_head_sizes(valid_records):
    gt, annotated, head = ground_truth(valid_records)
    angle = np.random.default_rng(1).uniform(0, 2 * np.pi, gt.shape[:2])
    offset = 0.4 * head[:, None, None] * np.stack([np.cos(angle), np.sin(angle)], axis=-1)
    result = pckh(gt + offset, gt, annotated, head)
    assert all(result[name] == 100.0 for name in GROUPS + ("Mean",))
    assert result["Mean@0.1"] == 0.0
    curve = pckh_curve(gt + offset, gt, annotated, head)
    assert np.all(curve["mean"][:40] == 0.0) and np.all(curve["mean"][41:] == 100.0)   # steps at 0.4


def test_real_split_annotated_is_not_visible(valid_records, shared_data):
    _, annotated, _ = ground_truth(valid_records)
    visible = np.stack([r.extras["visible"] for r in valid_records])
    assert annotated.sum(axis=0).tolist() == OFFICIAL_COUNTS
    assert visible.sum(axis=0).tolist() == VISIBLE_COUNTS
    assert not (visible & ~annotated).any()
    # 10,243 annotated joints are flagged not visible (occluded): counting only `visible` would score
    # a different, easier set of joints (e.g. 1,620 of the 2,878 annotated pelvises).
    assert int((annotated & ~visible).sum()) == sum(OFFICIAL_COUNTS) - sum(VISIBLE_COUNTS) == 10243
    # Annotated joints may lie outside the image: "both coordinates > 0" would miss 45 of them.
    keypoints = np.stack([r.keypoints for r in valid_records])
    one_based = keypoints[..., :2] + 1
    positive = annotated & (one_based > 0).all(axis=2)
    assert (annotated & ~positive).sum() == 45
    assert positive.sum(axis=0)[[8, 9]].tolist() == [2930, 2889]


def test_real_split_head_size_is_0_6_head_box_diagonal(valid_records, shared_data):
    mat = scipy.io.loadmat(str(shared_data / "mpii" / "annot" / "detections.mat"))
    rects = [entry["annorect"].reshape(-1)[0] for entry in mat["annolist"].reshape(-1)]
    boxes = np.array([[float(np.squeeze(r[k])) for k in ("x1", "y1", "x2", "y2")] for r in rects])
    assert len(boxes) == len(valid_records)
    diagonal = np.hypot(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    head = np.array([r.extras["head_size"] for r in valid_records])
    np.testing.assert_allclose(head, 0.6 * diagonal, rtol=1e-12)
    # Same people in the same order as the release indices of detections.mat (1-based there).
    assert [r.extras["index"] for r in valid_records[:5]] == (mat["RELEASE_img_index"].reshape(-1)[:5] - 1).tolist()
    # The h5 crop = the release's objpos / scale adjusted as HRNet does (centre 15 s lower, s x 1.25).
    objpos = np.array([[float(np.squeeze(r["objpos"].reshape(-1)[0][k])) for k in ("x", "y")] for r in rects])
    scale = np.array([float(np.squeeze(r["scale"])) for r in rects])
    centers = np.stack([r.center for r in valid_records])
    np.testing.assert_allclose(np.stack([r.scale[0] for r in valid_records]), scale, rtol=1e-12)
    np.testing.assert_allclose(centers, objpos + np.stack([0 * scale, 15 * scale], axis=1) - 1, atol=1e-9)


def test_real_split_records_match_the_hrnet_json_reader(valid_records, shared_data):
    folder = shared_data / "samples" / "mpii"
    from_json = read_mpii_json(str(folder / "test_mpii.json"), "images")
    for record in from_json:
        matches = [r for r in valid_records if r.image_path == record.image_path]
        assert len(matches) == 1     # each sample image holds one person of the split
        h5_record = matches[0]
        # The h5 stores integers: the release's fractional neck / head-top values lose their fraction.
        gap = record.keypoints[:, :2] - h5_record.keypoints[:, :2]
        assert np.all((gap >= 0) & (gap < 1)) and np.count_nonzero(gap) <= 4
        np.testing.assert_array_equal(h5_record.keypoints[:, 2], record.keypoints[:, 2])
        np.testing.assert_allclose(h5_record.center, record.center, atol=1e-9)
        np.testing.assert_allclose(h5_record.scale, record.scale, rtol=1e-6)
        np.testing.assert_allclose(record_center_scale(h5_record, 1.0, 1.25)[1],
                                   record_center_scale(record, 1.0, 1.25)[1], rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# Reader errors
# ------------------------------------------------------------------------------------------------

def write_h5(path, n=2, **override):
    import h5py

    data = {
        "part": np.full((n, 16, 2), 5.0), "visible": np.ones((n, 16)), "center": np.full((n, 2), 50.0),
        "scale": np.full(n, 1.25), "normalize": np.full(n, 12.0), "imgname": np.array([b"a.jpg"] * n),
        "index": np.arange(n, dtype=np.float64),
    }
    data.update(override)
    with h5py.File(path, "w") as handle:
        for name, value in data.items():
            if value is not None:
                handle[name] = value
    return str(path)


def test_reader_on_a_small_file(tmp_path):
    part = np.full((2, 16, 2), 5.0)
    part[0, 3] = 0.0                  # missing joint
    part[1, 9] = (7.0, -4.0)          # head top above the image: annotated
    visible = np.ones((2, 16))
    visible[1, 2] = 0                 # occluded, still annotated
    records = read_mpii_h5(write_h5(tmp_path / "v.h5", part=part, visible=visible), tmp_path / "img")
    assert len(records) == 2
    assert records[0].keypoints[3].tolist() == [0, 0, 0] and records[0].keypoints[0].tolist() == [4, 4, 2]
    assert records[1].keypoints[9].tolist() == [6, -5, 2] and records[1].keypoints[2, 2] == 2
    assert records[1].extras["visible"][2] == False  # noqa: E712 (numpy bool)
    assert records[0].center.tolist() == [49.0, 49.0] and records[0].scale.tolist() == [1.0, 1.0]
    assert records[1].extras["head_size"] == 12.0 and records[1].extras["index"] == 1
    assert records[0].image_path == str(tmp_path / "img" / "a.jpg")


def test_reader_errors_name_the_file(tmp_path):
    cases = [
        ({"normalize": None}, "no dataset 'normalize'"),
        ({"part": np.zeros((2, 14, 2))}, "dataset 'part' is 2 x 14 x 2 .* expected numbers of shape N x 16 x 2"),
        ({"visible": np.ones((3, 16))}, "dataset 'visible' is 3 x 16"),
        ({"scale": np.array([1.0, -1.0])}, "'scale' holds non-finite values or values <= 0"),
        ({"part": np.full((2, 16, 2), np.nan)}, "'part' holds NaN"),
        ({"imgname": np.array([b"a.jpg"])}, "dataset 'imgname' is 1"),
    ]
    for i, (override, message) in enumerate(cases):
        path = write_h5(tmp_path / f"bad{i}.h5", **override)
        with pytest.raises(DataError, match=message) as info:
            read_mpii_h5(path, tmp_path)
        assert path in str(info.value)
    not_h5 = tmp_path / "valid.h5"
    not_h5.write_text("hello")
    with pytest.raises(DataError, match="cannot open it as HDF5") as info:
        read_mpii_h5(str(not_h5), tmp_path)
    assert str(not_h5) in str(info.value)
    with pytest.raises(DataError, match="file not found"):
        read_mpii_h5(str(tmp_path / "absent.h5"), tmp_path)


@pytest.mark.parametrize("config_name", ["hrnet-w32_mpii_256x256.yaml", "cpm-6stg_mpii_368x368.yaml"])
def test_evaluate_model_scores_mpii_with_pckh(shared_data, monkeypatch, config_name):
    """The engine's PCKh path on valid.h5 records (no MPII images here, so inference is replaced by perfect
    predictions): 16 joints for HRNet; CPM's 14 parts scattered back into MPII's order, pelvis/thorax unscored."""
    import torch

    import posekit.evaluation.evaluate as evaluate
    from posekit.build import load_records
    from posekit.config import load_config

    config = Path(__file__).resolve().parents[2] / "configs" / config_name
    cfg = load_config(config, [f"data.root={shared_data / 'mpii'}"])
    records = load_records(cfg, "val")[:50]
    gt = np.stack([r.keypoints for r in records])
    k = gt.shape[1]

    def perfect(cfg_, model_, records_, progress=True):
        n = len(records_)
        return evaluate.Predictions(gt[:, :, :2].copy(), np.ones((n, k)), np.zeros((n, 2)), np.ones((n, 2)),
                                  np.zeros(n), np.ones(n), gt)

    monkeypatch.setattr(evaluate, "run_inference", perfect)
    result = evaluate.evaluate_model(cfg, torch.nn.Identity(), records, progress=False)
    assert result["Mean"] == pytest.approx(100.0) and result["Hip"] == pytest.approx(100.0)
    assert "| Head |" in result["table"]
    assert k == (14 if cfg.data.keypoint_subset else 16)
