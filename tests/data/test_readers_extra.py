"""Issue-4 readers and options: the MPII release .mat (on a file the test writes in the release's nested
structure), CrowdPose / OCHuman / AI Challenger / PoseTrack18 (on the shared samples), COCO detection
filtering, and the test.nms switch with the evaluation report's protocol fields."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from posekit.evaluation import evaluate as engine
from posekit.config import config_from_dict, load_config
from posekit.data.coco import coco_image_index, read_coco_detections, read_coco_keypoints
from posekit.data.cocostyle import (
    posetrack_image_index,
    read_aic,
    read_crowdpose,
    read_ochuman,
    read_posetrack,
)
from posekit.data.mpii import read_mpii_json, read_mpii_release_mat
from posekit.evaluation.evaluate import Predictions, coco_results, evaluate_model
from posekit.build import dataset_skeleton, load_records
from posekit.errors import ConfigError, DataError
from posekit.skeletons import AIC, COCO, CROWDPOSE, OCHUMAN, POSETRACK, get_skeleton

from conftest import EMPTY_MAT as EMPTY, mat_structs


# ----------------------------------------------------------------------------------------------------
# MPII release .mat, written in the release's nested layout


def _cell(values):
    cell = np.empty((len(values), 1), dtype=object)
    for n, v in enumerate(values):
        cell[n, 0] = v
    return cell


def _release(tmp_path: Path, **overrides) -> Path:
    """Three images: two train (ragged annorects), one test (objpos / scale only)."""
    person_a = {
        "x1": 10.0, "y1": 20.0, "x2": 40.0, "y2": 60.0, "scale": 2.0, "objpos": {"x": 100.0, "y": 200.0},
        # is_visible: a number, a string (as many release points) and empty.
        "annopoints": {"point": mat_structs([{"id": 0, "x": 51.0, "y": 101.0, "is_visible": 1},
                                          {"id": 9, "x": 61.0, "y": 31.0, "is_visible": "0"},
                                          {"id": 12, "x": 71.0, "y": 81.0, "is_visible": EMPTY}])},
    }
    person_b = {"x1": 1.0, "y1": 1.0, "x2": 4.0, "y2": 5.0, "scale": 1.5, "objpos": {"x": 300.0, "y": 120.0},
                "annopoints": EMPTY}     # a person without annopoints
    # One annorect (a 1x1 struct, not an array) whose only point has no is_visible field at all.
    person_c = {"x1": 2.0, "y1": 3.0, "x2": 8.0, "y2": 11.0, "scale": 1.0, "objpos": {"x": 5.5, "y": 6.5},
                "annopoints": {"point": {"id": 15, "x": 3.0, "y": 4.0}}}
    test_people = mat_structs([{"scale": 3.0, "objpos": {"x": 400.0, "y": 300.0}},
                            {"scale": EMPTY, "objpos": {"x": 1.0, "y": 1.0}}])   # no scale: cannot be cropped
    annolist = mat_structs([
        {"image": {"name": "001.jpg"}, "annorect": mat_structs([person_a, person_b]), "vidx": 2},
        {"image": {"name": "002.jpg"}, "annorect": person_c, "vidx": EMPTY},
        {"image": {"name": "003.jpg"}, "annorect": test_people, "vidx": 1},
    ])
    release = {
        "annolist": annolist,
        "img_train": np.array([[1, 1, 0]]),
        "single_person": _cell([np.array([[1]]), 1, EMPTY]),
        "act": mat_structs([{"cat_name": "sports", "act_name": "running", "act_id": 7},
                         {"cat_name": EMPTY, "act_name": EMPTY, "act_id": -1},
                         {"cat_name": "bicycling", "act_name": "cycling", "act_id": 3}]),
        "video_list": _cell(["vidA", "vidB"]),
        "version": "12",
    }
    release.update(overrides)
    path = tmp_path / "mpii_human_pose_v1_u12_1.mat"
    scipy.io.savemat(path, {"RELEASE": release})
    return path


def test_release_mat_train_split_hand_computed(tmp_path):
    path = _release(tmp_path)
    a, c = read_mpii_release_mat(path, "imgs", split="train")
    assert a.image_path == os.path.join("imgs", "001.jpg") and c.image_path == os.path.join("imgs", "002.jpg")
    # objpos (100, 200), scale 2: centre y + 15 x 2, then both -1 (Matlab 1-based).
    np.testing.assert_allclose(a.center, [99.0, 229.0])
    np.testing.assert_allclose(a.scale, [2.0, 2.0])
    expected = np.zeros((16, 3))
    expected[0] = (50, 100, 2)     # is_visible 1
    expected[9] = (60, 30, 1)      # is_visible '0': annotated, occluded
    expected[12] = (70, 80, 2)     # is_visible empty: annotated, counted visible as HRNet's JSON does
    np.testing.assert_allclose(a.keypoints, expected)
    # Head box (10, 20)-(40, 60): diagonal 50, PCKh head size 0.6 x 50.
    assert a.extras["head_size"] == pytest.approx(30.0)
    np.testing.assert_allclose(a.extras["head_box"], [9, 19, 39, 59])
    np.testing.assert_array_equal(np.flatnonzero(a.extras["visible"]), [0, 12])
    assert a.extras["index"] == 0 and a.extras["person"] == 0 and a.extras["single_person"]
    assert a.extras["activity"] == "running" and a.extras["video_id"] == "vidB" and a.extras["train"]

    np.testing.assert_allclose(c.center, [4.5, 20.5])
    assert c.keypoints[15].tolist() == [2.0, 3.0, 2.0] and c.num_labelled == 1
    assert c.extras["head_size"] == pytest.approx(0.6 * 10.0)    # (2, 3)-(8, 11): 6-8-10
    assert c.extras["index"] == 1 and c.extras["person"] == 0 and c.extras["single_person"]
    assert "activity" not in c.extras and "video_id" not in c.extras


def test_release_mat_other_splits_and_single_person(tmp_path):
    path = _release(tmp_path)
    everyone = read_mpii_release_mat(path, "", split="all")
    # B (no annopoints) is kept where min_joints is 0; the test person without a scale never is.
    assert [(r.extras["index"], r.extras["person"]) for r in everyone] == [(0, 0), (0, 1), (1, 0), (2, 0)]
    b = everyone[1]
    assert b.num_labelled == 0 and not b.extras["single_person"]
    np.testing.assert_allclose(b.center, [299.0, 119.0 + 22.5])
    (test,) = read_mpii_release_mat(path, "", split="test")
    np.testing.assert_allclose(test.center, [399.0, 344.0])
    assert test.num_labelled == 0 and "head_size" not in test.extras and not test.extras["train"]
    assert test.extras["activity"] == "cycling" and test.extras["video_id"] == "vidA"
    singles = read_mpii_release_mat(path, "", split="all", single_person_only=True)
    assert [(r.extras["index"], r.extras["person"]) for r in singles] == [(0, 0), (1, 0)]
    assert len(read_mpii_release_mat(path, "", split="all", min_joints=3)) == 1


def test_release_mat_agrees_with_hrnet_json_conversion(tmp_path):
    """HRNet's JSON holds the release's objpos, scale and 1-based joints: both readers give the same crop."""
    path = _release(tmp_path)
    a = read_mpii_release_mat(path, "", split="train")[0]
    joints = np.zeros((16, 2))
    joints[[0, 9, 12]] = [(51, 101), (61, 31), (71, 81)]
    vis = np.zeros(16)
    vis[[0, 9, 12]] = 1
    entry = {"image": "001.jpg", "center": [100.0, 200.0], "scale": 2.0, "joints": joints.tolist(),
             "joints_vis": vis.tolist()}
    (tmp_path / "train.json").write_text(json.dumps([entry]))
    (j,) = read_mpii_json(str(tmp_path / "train.json"), "")
    np.testing.assert_allclose(a.center, j.center)
    np.testing.assert_allclose(a.scale, j.scale)
    np.testing.assert_allclose(a.keypoints[:, :2], j.keypoints[:, :2])
    np.testing.assert_array_equal(a.keypoints[:, 2] > 0, j.keypoints[:, 2] > 0)


def test_release_mat_errors(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_mpii_release_mat(tmp_path / "absent.mat", "")
    (tmp_path / "junk.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(DataError, match="cannot read it as a .mat file"):
        read_mpii_release_mat(tmp_path / "junk.mat", "")
    scipy.io.savemat(tmp_path / "other.mat", {"joints": np.zeros((3, 14, 2))})
    with pytest.raises(DataError, match=r"no RELEASE struct .*keys: joints"):
        read_mpii_release_mat(tmp_path / "other.mat", "")
    with pytest.raises(DataError, match="img_train has 2 entries, annolist 3"):
        read_mpii_release_mat(_release(tmp_path, img_train=np.array([[1, 1]])), "")
    with pytest.raises(ConfigError, match="split must be one of train, test, all"):
        read_mpii_release_mat(_release(tmp_path), "", split="val")

    def one_person(points):
        rect = {"x1": 1.0, "y1": 1.0, "x2": 2.0, "y2": 2.0, "scale": 1.0, "objpos": {"x": 1.0, "y": 1.0},
                "annopoints": {"point": mat_structs(points)}}
        annolist = mat_structs([{"image": {"name": "x.jpg"}, "annorect": rect}])
        path = tmp_path / "one.mat"
        scipy.io.savemat(path, {"RELEASE": {"annolist": annolist, "img_train": 1}})
        return path

    with pytest.raises(DataError, match=r"annolist\(1\)\.annorect\(1\)\.annopoints\.point\(1\): joint id must be 0\.\.15"):
        read_mpii_release_mat(one_person([{"id": 16, "x": 1.0, "y": 1.0}]), "")
    with pytest.raises(DataError, match="joint 3 is annotated twice"):
        read_mpii_release_mat(one_person([{"id": 3, "x": 1.0, "y": 1.0}, {"id": 3, "x": 2.0, "y": 2.0}]), "")
    with pytest.raises(DataError, match=r"point\(1\): not a number"):
        read_mpii_release_mat(one_person([{"id": 3, "x": "left", "y": 1.0}]), "")
    assert len(read_mpii_release_mat(one_person([{"id": 3, "x": 5.0, "y": 6.0}]), "")) == 1


def test_release_mat_through_load_records(tmp_path):
    path = _release(tmp_path)
    cfg = config_from_dict({"model": {"num_keypoints": 16},
                            "data": {"format": "mpii", "skeleton": "mpii", "root": str(tmp_path),
                                     "train_ann": path.name, "train_images": "images",
                                     "val_ann": path.name, "val_images": "images"}})
    train = load_records(cfg, "train")
    assert len(train) == 2 and train[0].image_path == os.path.join(str(tmp_path), "images", "001.jpg")
    (test,) = load_records(cfg, "val")      # the release's test split: people to predict, no joints
    assert test.num_labelled == 0


# ----------------------------------------------------------------------------------------------------
# Keypoint sets


def test_new_keypoint_sets():
    for skeleton, k in ((CROWDPOSE, 14), (OCHUMAN, 17), (AIC, 14), (POSETRACK, 17)):
        assert get_skeleton(skeleton.name) is skeleton and skeleton.num_keypoints == k
        assert len(skeleton.sigmas) == k and len(skeleton.limb_colors) == len(skeleton.limbs)
        perm = skeleton.flip_permutation()
        assert sorted(perm) == list(range(k)) and (perm[perm] == np.arange(k)).all()
        for a, b in skeleton.flip_pairs:   # every pair swaps a left joint with its right one
            assert {skeleton.keypoints[a][:2], skeleton.keypoints[b][:2]} == {"l_", "r_"}
            assert skeleton.keypoints[a][2:] == skeleton.keypoints[b][2:]
    # CrowdPose: COCO's sigmas for its 12 body joints (same names), 0.079 for head and neck.
    for n, name in enumerate(CROWDPOSE.keypoints[:12]):
        assert CROWDPOSE.sigmas[n] == pytest.approx(COCO.sigmas[COCO.index(name)])
    assert CROWDPOSE.sigmas[12:] == pytest.approx((0.079, 0.079))
    # AIC: half the official evaluator's delta for the right shoulder (2 x 0.01388152).
    assert AIC.sigmas[0] == pytest.approx(0.01388152)
    assert OCHUMAN.keypoints == COCO.keypoints and OCHUMAN.sigmas == COCO.sigmas
    assert POSETRACK.keypoints[1:3] == ("head_bottom", "head_top") and POSETRACK.keypoints[5:] == COCO.keypoints[5:]


# ----------------------------------------------------------------------------------------------------
# CrowdPose / OCHuman / AIC / PoseTrack on the shared samples


def test_crowdpose_sample(shared_data):
    root = shared_data / "samples" / "crowdpose"
    ann = root / "test_crowdpose.json"
    evaluation = read_crowdpose(ann, root, train=False)
    train = read_crowdpose(ann, root)
    assert len(evaluation) == 5 and len(train) == 4      # annotation 131039 has no labelled joint
    first = evaluation[0]
    assert first.extras == {"annotation_id": 123803, "crowd_index": 0.33}
    # keypoints [0,0,0, 208,108,2, ...]: r_shoulder (index 1) at (208, 108), head (12) (256, 27) occluded.
    assert first.keypoints[1].tolist() == [208, 108, 2] and first.keypoints[12].tolist() == [256, 27, 1]
    assert first.keypoints[0].tolist() == [0, 0, 0]
    np.testing.assert_allclose(first.box, [106.01, 13.43, 273.15 - 1, 352.42 - 1])   # sanitised: x2 = x + w - 1
    assert {r.extras["crowd_index"] for r in evaluation} == {0.33, 0.39}
    # The same people as the plain COCO reader, whose filters these readers reuse.
    plain = read_coco_keypoints(ann, root, train=False)
    assert [r.extras["annotation_id"] for r in plain] == [r.extras["annotation_id"] for r in evaluation]
    # Both CrowdPose and AIC have 14 joints, in different orders: the names tell them apart.
    with pytest.raises(DataError, match="is this a AI Challenger file"):
        read_aic(ann, root)


def test_ochuman_sample(shared_data):
    root = shared_data / "samples" / "ochuman"
    records = read_ochuman(root / "test_ochuman.json", root, train=False)
    assert len(records) == 5 and all(r.keypoints.shape == (17, 3) for r in records)
    assert all(os.path.isfile(r.image_path) for r in records)
    assert records[0].keypoints[5].tolist() == [478, 258, 2] and records[0].area == 356725
    with pytest.raises(DataError, match="is this a CrowdPose file"):
        read_crowdpose(root / "test_ochuman.json", root)


def _to_aic_release(coco: dict) -> list:
    """The release layout of a COCO-converted AIC file (the conversion run backwards)."""
    back = {2: 1, 1: 2, 0: 3}
    entries = []
    for image in coco["images"]:
        anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        keypoints, boxes = {}, {}
        for n, a in enumerate(anns):
            kp = np.asarray(a["keypoints"], dtype=float).reshape(14, 3)
            kp[:, 2] = [back[int(v)] for v in kp[:, 2]]
            x, y, w, h = a["bbox"]
            keypoints[f"human{n + 1}"] = kp.reshape(-1).tolist()
            boxes[f"human{n + 1}"] = [x, y, x + w, y + h]
        entries.append({"image_id": image["file_name"][:-4], "url": image.get("url", ""),
                        "keypoint_annotations": keypoints, "human_annotations": boxes})
    return entries


def test_aic_sample_both_layouts(shared_data, tmp_path):
    root = shared_data / "samples" / "aic"
    coco_layout = read_aic(root / "test_aic.json", root, train=False)
    assert len(coco_layout) == 9
    first = coco_layout[0]
    np.testing.assert_allclose(first.box, [279, 55, 212, 543])
    # AI_Challenger_2017's keypoint_annotations_example.json, image 054d9ce9..., human1 starts
    # [313, 201, 1, 312, 313, 2, ...] (1 visible, 2 occluded): COCO's 2 and 1.
    assert first.keypoints[0].tolist() == [313, 201, 2] and first.keypoints[1].tolist() == [312, 313, 1]

    release = _to_aic_release(json.loads((root / "test_aic.json").read_text()))
    assert release[0]["keypoint_annotations"]["human1"][:6] == [313, 201, 1, 312, 313, 2]
    assert release[0]["human_annotations"]["human1"] == [279, 55, 492, 599]
    (tmp_path / "aic_release.json").write_text(json.dumps(release))
    for sizes in (True, False):
        from_release = read_aic(tmp_path / "aic_release.json", root, train=False, image_sizes=sizes)
        assert len(from_release) == 9
        for a, b in zip(from_release, coco_layout):
            np.testing.assert_array_equal(a.keypoints, b.keypoints)
            np.testing.assert_allclose(a.box, b.box)
            assert a.image_path == b.image_path
    assert from_release[0].extras == {"image_name": "054d9ce9201beffc76e5ff2169d2af2f027002ca", "human": "human1"}
    assert read_aic(tmp_path / "aic_release.json", root, image_sizes=True)[0].image_size == (900, 600)


def test_aic_release_layout_details(tmp_path):
    kp = [0, 0, 3] * 14
    kp[0:3] = [10, 20, 1]
    kp[3:6] = [30, 40, 3]       # not labelled: coordinates dropped
    entry = {"image_id": "abc", "keypoint_annotations": {"human10": kp, "human2": [0, 0, 3] * 14},
             "human_annotations": {"human10": [5, 6, 50, 80], "human2": [1, 1, 9, 9]}}
    path = tmp_path / "aic.json"
    path.write_text(json.dumps([entry]))
    evaluation = read_aic(path, tmp_path, train=False)
    assert [r.extras["human"] for r in evaluation] == ["human2", "human10"]       # number order
    assert evaluation[1].keypoints[:2].tolist() == [[10, 20, 2], [0, 0, 0]]
    np.testing.assert_allclose(evaluation[1].box, [5, 6, 44, 73])
    assert evaluation[1].image_size is None and evaluation[1].image_id == 1
    assert [r.extras["human"] for r in read_aic(path, tmp_path)] == ["human10"]   # training: labelled people only
    entry["keypoint_annotations"]["human2"] = [0, 0, 4] * 14
    path.write_text(json.dumps([entry]))
    with pytest.raises(DataError, match="image abc, human2: keypoint visibility must be 1, 2 or 3"):
        read_aic(path, tmp_path)
    del entry["human_annotations"]["human2"]
    entry["keypoint_annotations"]["human2"] = [0, 0, 3] * 14
    path.write_text(json.dumps([entry]))
    with pytest.raises(DataError, match="human2 has no box"):
        read_aic(path, tmp_path)


def test_posetrack_sample_file_and_video_directory(shared_data):
    root = shared_data / "samples" / "posetrack18"
    merged = read_posetrack(root / "annotations" / "test_posetrack18_val.json", root, train=False)
    per_video = read_posetrack(root / "annotations" / "val", root, train=False)
    assert len(merged) == len(per_video) == 14
    by_id = {r.extras["annotation_id"]: r for r in per_video}
    for r in merged:
        other = by_id[r.extras["annotation_id"]]
        np.testing.assert_array_equal(r.keypoints, other.keypoints)
        np.testing.assert_array_equal(r.box, other.box)
        assert r.image_path == other.image_path and os.path.isfile(r.image_path)
    first = merged[0]
    assert first.extras["track_id"] == 0 and first.keypoints[2].tolist() == pytest.approx([392.8559265, 510.1089478, 1])
    # bbox_head [378, 503, 44, 53]
    assert first.extras["head_size"] == pytest.approx(0.6 * math.hypot(44, 53))
    # Annotation 1012834000010's bbox starts at y = -54.63 (above the 1920 x 1080 frame): clipped at 0.
    clipped = by_id[1012834000010]
    np.testing.assert_allclose(clipped.box, [364.675, 0.0, 124.15 - 1, 257.32008152500003 - 1])
    assert sorted(posetrack_image_index(root / "annotations" / "val")) == [10034180000, 10094730000, 10128340000]
    with pytest.raises(DataError, match="is this a CrowdPose file"):
        read_crowdpose(root / "annotations" / "test_posetrack18_val.json", root)


def test_posetrack_directory_without_boxes(tmp_path):
    names = ["nose", "head_bottom", "head_top", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
             "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
             "right_knee", "left_ankle", "right_ankle"]
    category = [{"id": 1, "name": "person", "keypoints": names}]
    kp = [0.0] * 51
    kp[0:3], kp[15:18] = [100, 50, 1], [120, 90, 1]
    videos = tmp_path / "val"
    videos.mkdir()
    for n, image_id in enumerate((7, 8)):
        anns = [{"id": 10 + n, "image_id": image_id, "category_id": 1, "track_id": 3, "keypoints": kp,
                 "bbox_head": [90, 30, 20, 30]}]
        doc = {"images": [{"id": image_id, "file_name": f"images/val/v{n}/000000.jpg", "width": 640, "height": 480,
                           "vid_id": f"v{n}", "frame_id": image_id, "is_labeled": True}],
               "annotations": anns, "categories": category}
        (videos / f"v{n}.json").write_text(json.dumps(doc))
    # A third person with neither a box nor a labelled joint cannot be cropped: left out.
    doc = json.loads((videos / "v1.json").read_text())
    doc["annotations"].append({"id": 99, "image_id": 8, "category_id": 1, "keypoints": [0] * 51})
    (videos / "v1.json").write_text(json.dumps(doc))
    records = read_posetrack(videos, tmp_path, train=False)
    assert [r.image_id for r in records] == [7, 8]
    # No bbox: the box of the labelled joints (100, 50)-(120, 90), then sanitised (x2 = x + w - 1).
    np.testing.assert_allclose(records[0].box, [100, 50, 19, 39])
    assert records[0].extras["track_id"] == 3 and records[0].extras["head_size"] == pytest.approx(0.6 * math.hypot(20, 30))
    doc["annotations"][-1]["keypoints"] = [0] * 50
    (videos / "v1.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="annotation 99: no 'bbox', and 'keypoints' are not 51 finite numbers"):
        read_posetrack(videos, tmp_path)
    (videos / "v1.json").write_text(json.dumps({"images": [{"id": 7, "file_name": "x.jpg", "width": 1, "height": 1}],
                                                "annotations": [], "categories": category}))
    with pytest.raises(DataError, match="image id 7 appears twice"):
        read_posetrack(videos, tmp_path)
    with pytest.raises(DataError, match="no per-video .json files"):
        (tmp_path / "empty").mkdir()
        read_posetrack(tmp_path / "empty", tmp_path)


def _cfg(root: Path, fmt: str, skeleton: str, k: int, val_ann: str, val_images: str = ".", **test) -> object:
    return config_from_dict({"model": {"num_keypoints": k},
                             "data": {"format": fmt, "skeleton": skeleton, "root": str(root), "val_ann": val_ann,
                                      "val_images": val_images},
                             "test": test})


def test_load_records_new_formats(shared_data):
    samples = shared_data / "samples"
    assert len(load_records(_cfg(samples / "crowdpose", "crowdpose", "crowdpose", 14, "test_crowdpose.json"), "val")) == 5
    dets = load_records(_cfg(samples / "crowdpose", "crowdpose", "crowdpose", 14, "test_crowdpose.json",
                             use_gt_bbox=False, det_file=str(samples / "crowdpose" / "test_crowdpose_det_AP_40.json")),
                        "val")
    assert len(dets) == 6 and all(r.keypoints.shape == (14, 3) for r in dets)
    assert len(load_records(_cfg(samples / "ochuman", "ochuman", "coco", 17, "test_ochuman.json"), "val")) == 5
    assert len(load_records(_cfg(samples / "aic", "aic", "aic", 14, "test_aic.json"), "val")) == 9
    pt = samples / "posetrack18"
    assert len(load_records(_cfg(pt, "posetrack", "posetrack", 17, "annotations/val"), "val")) == 14
    # The PoseTrack detections file: 100 + 78 + 100 boxes on the 3 frames; the 2 best of each frame.
    pt_dets = load_records(_cfg(pt, "posetrack", "posetrack", 17, "annotations/val", use_gt_bbox=False,
                                det_file=str(pt / "annotations" / "test_posetrack18_human_detections.json"),
                                det_max_per_image=2), "val")
    assert len(pt_dets) == 6
    with pytest.raises(ConfigError, match="data.format crowdpose holds crowdpose keypoints: set data.skeleton"):
        load_records(_cfg(samples / "crowdpose", "crowdpose", "coco", 14, "test_crowdpose.json"), "val")
    with pytest.raises(ConfigError, match="set data.skeleton to aic"):
        dataset_skeleton(_cfg(samples / "aic", "aic", "crowdpose", 14, "test_aic.json"))
    assert dataset_skeleton(_cfg(samples / "ochuman", "ochuman", "ochuman", 17, "x.json")) is OCHUMAN


# ----------------------------------------------------------------------------------------------------
# COCO detections: image ids, category, score threshold, top-k


def test_detection_filters_hand_counted(shared_data, tmp_path):
    root = shared_data / "samples" / "coco"
    det_file = root / "test_coco_det_AP_H_56.json"
    index = coco_image_index(root / "test_coco.json")
    raw = json.loads(det_file.read_text())
    # Counted once by hand (a Python one-liner over the file): 22, 26, 33, 37 boxes on images 785, 40083,
    # 196141, 197388; with score >= 0.3: 2, 8, 13, 10; all category 1; all scores distinct.
    assert len(read_coco_detections(det_file, index, root, image_ids=[785, 40083])) == 22 + 26
    assert len(read_coco_detections(det_file, index, root, image_ids=[197388])) == 37
    assert len(read_coco_detections(det_file, index, root, score_threshold=0.3)) == 2 + 8 + 13 + 10
    assert read_coco_detections(det_file, index, root, category_id=2) == []
    top2 = read_coco_detections(det_file, index, root, max_per_image=2)
    # The file lists each image's boxes best first, starting at positions 0, 22, 59 and 85.
    assert [d.score for d in top2] == [raw[i]["score"] for i in (0, 1, 22, 23, 59, 60, 85, 86)]
    assert len(read_coco_detections(det_file, index, root, score_threshold=0.3, max_per_image=3)) == 2 + 3 + 3 + 3

    subset = json.loads((root / "test_coco.json").read_text())
    subset["images"] = [im for im in subset["images"] if im["id"] in (785, 40083)]
    subset["annotations"] = [a for a in subset["annotations"] if a["image_id"] in (785, 40083)]
    (tmp_path / "subset.json").write_text(json.dumps(subset))
    small_index = coco_image_index(tmp_path / "subset.json")
    with pytest.raises(DataError, match="detection 22: image_id 197388 is not in the image index"):
        read_coco_detections(det_file, small_index, root)
    assert len(read_coco_detections(det_file, small_index, root, skip_unknown_images=True)) == 22 + 26
    with pytest.raises(DataError, match="image id 197388 asked for is not in the annotation file's images"):
        read_coco_detections(det_file, small_index, root, image_ids=[197388])


def test_detection_options_through_config(shared_data):
    root = shared_data / "samples" / "coco"
    det = str(root / "test_coco_det_AP_H_56.json")
    cfg = _cfg(root, "coco", "coco", 17, "test_coco.json", use_gt_bbox=False, det_file=det, image_thre=0.5,
               image_ids=[40083, 196141], det_max_per_image=4)
    records = load_records(cfg, "val")
    # score >= 0.5: 5 on 40083, 6 on 196141; at most 4 each.
    assert len(records) == 8 and {r.image_id for r in records} == {40083, 196141}
    cfg = _cfg(root, "coco", "coco", 17, "test_coco.json", image_ids=[196141, 785])
    assert len(load_records(cfg, "val")) == 5 + 1          # GT boxes of those images only
    cfg = load_config(None, ["test.det_category_id=3", "test.det_skip_unknown_images=true", "test.nms=none"])
    assert cfg.test.det_category_id == 3 and cfg.test.det_skip_unknown_images and cfg.test.nms == "none"
    with pytest.raises(ConfigError, match="test.det_max_per_image must be an integer"):
        load_config(None, ["test.det_max_per_image=[1]"])


# ----------------------------------------------------------------------------------------------------
# test.nms: oks | soft_oks | none


def _people(box_scores, copies_of_a: int) -> Predictions:
    """Image 1: ``copies_of_a`` identical people A, then C far away; every keypoint score 1."""
    a = np.stack([np.linspace(100, 180, 17), np.linspace(100, 300, 17)], axis=1)
    keypoints = np.stack([a] * copies_of_a + [a + 1000.0])
    n = len(keypoints)
    return Predictions(keypoints=keypoints, scores=np.ones((n, 17)), centers=np.zeros((n, 2)),
                       scales=np.full((n, 2), 1.0), image_ids=np.ones(n, dtype=int),
                       box_scores=np.asarray(box_scores, dtype=float), gt_keypoints=np.zeros((n, 17, 3)))


def _three_people() -> Predictions:
    """A (box score 0.9), B = A exactly (0.8), C far away (0.7)."""
    return _people([0.9, 0.8, 0.7], copies_of_a=2)


def _cfg_nms(mode: str, root: Path = Path("."), val_ann: str = "gt.json"):
    return config_from_dict({"data": {"root": str(root), "val_ann": val_ann}, "test": {"nms": mode},
                             "output_dir": str(root / "out")})


def test_nms_switch_changes_who_survives():
    preds = _three_people()
    # Rescoring: mean keypoint score above 0.2 (1.0) x box score, so A 0.9, B 0.8, C 0.7.
    oks = coco_results(_cfg_nms("oks"), preds, COCO)
    # OKS(A, B) = 1 > 0.9: B dropped; OKS(A, C) ~ 0: C kept.
    assert [r["score"] for r in oks] == pytest.approx([0.9, 0.7])
    # soft-OKS-NMS drops nobody here: B's score decays to 0.8 exp(-1^2 / 0.9) = 0.26 < 0.7, so C is taken
    # before B. As the official code, the decayed score only orders the taking; the rescored one is written.
    soft = coco_results(_cfg_nms("soft_oks"), preds, COCO)
    assert [r["score"] for r in soft] == pytest.approx([0.9, 0.7, 0.8])
    none = coco_results(_cfg_nms("none"), preds, COCO)
    assert [r["score"] for r in none] == pytest.approx([0.9, 0.8, 0.7])
    with pytest.raises(ConfigError, match="test.nms must be oks, soft_oks, none, got 'greedy'"):
        coco_results(_cfg_nms("greedy"), preds, COCO)

    # 20 copies of A (scores 0.9 .. 0.5) and C (0.1). soft keeps at most 20: A's best copy, then its second
    # (0.879 x 0.329 = 0.29 > 0.1), then C (the third copy has decayed twice: 0.858 x 0.108 = 0.093 < 0.1),
    # then copies until 20 are taken: only the last copy is dropped.
    scores = list(np.linspace(0.9, 0.5, 20)) + [0.1]
    crowd = _people(scores, copies_of_a=20)
    kept = {mode: [r["score"] for r in coco_results(_cfg_nms(mode), crowd, COCO)] for mode in ("oks", "soft_oks", "none")}
    assert kept["oks"] == pytest.approx([0.9, 0.1])
    assert kept["soft_oks"] == pytest.approx(scores[:2] + [0.1] + scores[2:19])
    assert sorted(kept["none"]) == pytest.approx(sorted(scores))


def test_evaluation_report_states_boxes_and_nms(tmp_path, monkeypatch):
    """Two real people (A and C); B duplicates A. Without OKS-NMS the duplicate outranks C and costs AP."""
    preds = _three_people()
    gt_people = []
    for n, person in enumerate((preds.keypoints[0], preds.keypoints[2])):
        x1, y1 = person.min(axis=0)
        x2, y2 = person.max(axis=0)
        gt_people.append({"id": n + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "num_keypoints": 17,
                          "area": float((x2 - x1) * (y2 - y1)), "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                          "keypoints": np.concatenate([person, np.full((17, 1), 2.0)], axis=1).reshape(-1).tolist()})
    gt = {"images": [{"id": 1, "file_name": "1.jpg", "width": 2000, "height": 2000}], "annotations": gt_people,
          "categories": [{"id": 1, "name": "person", "keypoints": list(COCO.keypoints)}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    monkeypatch.setattr(engine, "run_inference", lambda *args, **kwargs: preds)

    stats = {mode: evaluate_model(_cfg_nms(mode, tmp_path), None, [], progress=False, write=False)
             for mode in ("oks", "soft_oks", "none")}
    assert stats["oks"]["nms"] == "oks (threshold 0.9)" and stats["soft_oks"]["nms"] == "soft_oks (threshold 0.9)"
    assert stats["none"]["nms"] == "none"
    assert all(s["boxes"] == "ground truth" for s in stats.values())
    assert stats["oks"]["AP"] == pytest.approx(1.0)
    assert stats["none"]["AP"] < 0.9
    # soft-OKS-NMS writes the undecayed scores and keeps all three (fewer than 20): COCOeval sees what "none" gives.
    assert stats["soft_oks"]["AP"] == pytest.approx(stats["none"]["AP"])

    cfg = _cfg_nms("oks", tmp_path)
    cfg.test.use_gt_bbox, cfg.test.det_file = False, "dets.json"
    assert evaluate_model(cfg, None, [], progress=False, write=False)["boxes"] == "detections (dets.json)"

    def no_inference(*args, **kwargs):
        raise AssertionError("inference ran before the configuration was checked")

    monkeypatch.setattr(engine, "run_inference", no_inference)
    with pytest.raises(ConfigError, match="test.nms must be"):
        evaluate_model(_cfg_nms("soft", tmp_path), None, [], progress=False, write=False)
