from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from posekit.data.dataset import record_center_scale
from posekit.data.mpii import read_mpii_json
from posekit.data.records import PersonRecord, attach_others
from posekit.errors import DataError


def test_real_sample_follows_the_official_loader(shared_data):
    folder = shared_data / "samples" / "mpii"
    raw = json.loads((folder / "test_mpii.json").read_text())
    records = read_mpii_json(str(folder / "test_mpii.json"), str(folder))
    assert len(records) == len(raw) == 5
    first = raw[0]
    # centre moved down by 15 * scale, then 1-based -> 0-based; joints minus 1
    np.testing.assert_allclose(records[0].center, [first["center"][0] - 1, first["center"][1] + 15 * first["scale"] - 1])
    np.testing.assert_allclose(records[0].scale, [first["scale"]] * 2)
    np.testing.assert_allclose(records[0].keypoints[:, :2], np.asarray(first["joints"]) - 1)
    assert set(records[0].keypoints[:, 2]) == {2.0}
    assert records[0].image_path.endswith(first["image"])
    # HRNet: s * 1.25 at a square 256x256 input
    center, scale = record_center_scale(records[0], 1.0, 1.25)
    np.testing.assert_allclose(scale, [first["scale"] * 1.25] * 2)


def test_unannotated_joints_and_bad_entries(tmp_path):
    entry = {"image": "a.jpg", "center": [100.0, 80.0], "scale": 1.0, "joints": [[10.0, 20.0]] * 16,
             "joints_vis": [1] * 15 + [0]}
    path = tmp_path / "m.json"
    path.write_text(json.dumps([entry]))
    record = read_mpii_json(str(path), str(tmp_path))[0]
    assert record.keypoints[15].tolist() == [0, 0, 0] and record.keypoints[0].tolist() == [9, 19, 2]
    for bad, message in [({**entry, "joints": [[1, 2]] * 15}, "expected 16 x 2 joints"),
                         ({k: v for k, v in entry.items() if k != "scale"}, "has no 'scale'"),
                         ({**entry, "scale": -1}, "scale <= 0"),
                         ({**entry, "center": ["a", 1]}, "must be numbers")]:
        path.write_text(json.dumps([bad]))
        with pytest.raises(DataError, match=message) as info:
            read_mpii_json(str(path), str(tmp_path))
        assert str(path) in str(info.value)
    path.write_text("{}")
    with pytest.raises(DataError, match="expected a list"):
        read_mpii_json(str(path), str(tmp_path))


def test_attach_others_groups_people_by_image():
    def person(path, value):
        return PersonRecord(path, np.full((3, 3), float(value)))

    records = [person("a.jpg", 1), person("b.jpg", 2), person("a.jpg", 3), person("a.jpg", 4)]
    attach_others(records)
    assert records[1].extras["others"].shape == (0, 3, 3)
    assert sorted(records[0].extras["others"][:, 0, 0]) == [3, 4]
    assert sorted(records[2].extras["others"][:, 0, 0]) == [1, 4]


def test_cpm_fourteen_part_subset_of_mpii(shared_data, tmp_path):
    from posekit.config import load_config
    from posekit.build import dataset_skeleton, load_records
    from posekit.skeletons import MPII

    folder = shared_data / "samples" / "mpii"
    config = Path(__file__).resolve().parents[2] / "configs" / "cpm-6stg_mpii_368x368.yaml"
    cfg = load_config(config, [f"data.root={folder}", "data.val_ann=test_mpii.json", "data.val_images=."])
    skeleton = dataset_skeleton(cfg)
    assert skeleton.keypoints == ("head_top", "upper_neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder",
                                  "l_elbow", "l_wrist", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle")
    # CPM's swapLeftRight for 14 parts (1-based 3<->6, 4<->7, 5<->8, 9<->12, 10<->13, 11<->14)
    assert sorted(skeleton.flip_pairs) == [(2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13)]
    assert skeleton.torso == (5, 8)                     # left shoulder - right hip
    records = load_records(cfg, "val")
    full = read_mpii_json(str(folder / "test_mpii.json"), str(folder))
    np.testing.assert_array_equal(records[0].keypoints, full[0].keypoints[cfg.data.keypoint_subset])
    assert records[0].keypoints.shape == (14, 3) and MPII.num_keypoints == 16
