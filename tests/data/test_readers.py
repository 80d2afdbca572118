"""Annotation readers: COCO keypoints / detections and LSP / LSPET joints.mat, on the real files and on
small broken files written into tmp_path."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from posekit.data.coco import (
    COCO_NUM_KEYPOINTS,
    coco_image_index,
    read_coco_detections,
    read_coco_keypoints,
)
from posekit.data.images import read_image
from posekit.data.images import image_header, stored_size_wh
from posekit.data.lsp import lsp_standard_split, read_lsp, read_lspet
from posekit.data.transforms import sanitize_box
from posekit.errors import DataError

# ----------------------------------------------------------------------------------------------------
# COCO, real files


def _coco_paths(shared_data: Path):
    root = shared_data / "coco"
    return root / "annotations" / "person_keypoints_train2017.json", root / "train2017"


def test_coco_train_counts_on_real_subset(shared_data):
    """README: 172 person annotations, 86 with keypoints, 5 crowd. The 86 with keypoints are all
    non-crowd and all have a box that survives sanitising and area > 0, so training keeps exactly 86.
    Evaluation keeps every non-crowd person with a valid box: 172 - 5 crowd = 167 (no box is dropped)."""
    ann_file, image_dir = _coco_paths(shared_data)
    raw = json.loads(ann_file.read_text())
    anns = raw["annotations"]
    assert len(anns) == 172
    assert sum(a["iscrowd"] for a in anns) == 5
    assert sum(a["num_keypoints"] > 0 for a in anns) == 86
    assert sum(a["num_keypoints"] > 0 and a["iscrowd"] for a in anns) == 0

    train = read_coco_keypoints(ann_file, image_dir, train=True)
    assert len(train) == 86
    assert all(r.num_labelled >= 1 for r in train)
    assert all(r.keypoints.shape == (COCO_NUM_KEYPOINTS, 3) for r in train)
    assert all(os.path.isfile(r.image_path) for r in train)

    evaluation = read_coco_keypoints(ann_file, image_dir, train=False)
    assert len(evaluation) == 167
    crowd_ids = {a["id"] for a in anns if a["iscrowd"]}
    assert not crowd_ids & {r.extras["annotation_id"] for r in evaluation}
    assert sum(r.num_labelled == 0 for r in evaluation) == 81


def test_coco_matches_official_filter_via_pycocotools(shared_data):
    """Same people, same order as the official HRNet loader: per image (getImgIds order),
    getAnnIds(iscrowd=False), sanitised box with area > 0, category 1, max(keypoints) > 0."""
    from pycocotools.coco import COCO

    ann_file, image_dir = _coco_paths(shared_data)
    coco = COCO(str(ann_file))
    expected = []
    for image_id in coco.getImgIds():
        info = coco.loadImgs(image_id)[0]
        for obj in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False)):
            x, y, w, h = obj["bbox"]
            x1, y1 = max(0, x), max(0, y)
            x2 = min(info["width"] - 1, x1 + max(0, w - 1))
            y2 = min(info["height"] - 1, y1 + max(0, h - 1))
            if not (obj["area"] > 0 and x2 >= x1 and y2 >= y1):
                continue
            if obj["category_id"] != 1 or max(obj["keypoints"]) == 0:
                continue
            expected.append((obj["id"], [x1, y1, x2 - x1, y2 - y1], obj["keypoints"]))

    records = read_coco_keypoints(ann_file, image_dir)
    assert [r.extras["annotation_id"] for r in records] == [e[0] for e in expected]
    for record, (_, box, keypoints) in zip(records, expected):
        np.testing.assert_allclose(record.box, box)
        np.testing.assert_array_equal(record.keypoints, np.asarray(keypoints, dtype=float).reshape(17, 3))


def test_coco_hand_checked_annotation(shared_data):
    ann_file, image_dir = _coco_paths(shared_data)
    records = {r.extras["annotation_id"]: r for r in read_coco_keypoints(ann_file, image_dir)}
    r = records[441444]   # image 535506 (480 x 640), bbox [120.46, 133.32, 212.31, 498.58]
    assert r.image_id == 535506
    assert r.image_size == (480, 640)
    assert r.image_path == os.path.join(image_dir, "000000535506.jpg")
    # x2 = min(479, 120.46 + 211.31) = 331.77 -> w = 211.31; y2 = min(639, 133.32 + 497.58) = 630.9 -> h = 497.58
    np.testing.assert_allclose(r.box, [120.46, 133.32, 211.31, 497.58])
    np.testing.assert_array_equal(r.keypoints[0], [281, 240, 2])       # nose
    np.testing.assert_array_equal(r.keypoints[3], [0, 0, 0])           # left ear not labelled
    np.testing.assert_array_equal(r.keypoints[15], [178, 616, 2])      # left ankle
    assert r.num_labelled == 15
    assert r.area == pytest.approx(52634.3678)
    assert r.score == 1.0


def test_coco_min_keypoints(shared_data):
    ann_file, image_dir = _coco_paths(shared_data)
    anns = json.loads(ann_file.read_text())["annotations"]
    expected = sum(1 for a in anns if not a["iscrowd"] and a["num_keypoints"] >= 10)
    records = read_coco_keypoints(ann_file, image_dir, min_keypoints=10)
    assert len(records) == expected
    assert min(r.num_labelled for r in records) >= 10
    assert len(read_coco_keypoints(ann_file, image_dir, min_keypoints=0)) == 167


def test_coco_val_sample_and_detections(shared_data):
    root = shared_data / "samples" / "coco"
    ann_file = root / "test_coco.json"
    train = read_coco_keypoints(ann_file, root)
    evaluation = read_coco_keypoints(ann_file, root, train=False)
    # 14 people; annotations 1202706 and 508900 have num_keypoints 0.
    assert len(train) == 12 and len(evaluation) == 14
    assert {r.extras["annotation_id"] for r in evaluation} - {r.extras["annotation_id"] for r in train} == {1202706, 508900}

    index = coco_image_index(ann_file)
    assert index[785] == ("000000000785.jpg", 640, 425)
    assert len(index) == 4

    det_file = root / "test_coco_det_AP_H_56.json"
    raw = json.loads(det_file.read_text())
    dets = read_coco_detections(det_file, index, root)
    assert len(dets) == len(raw) == 118
    first = dets[0]
    # Kept exactly as the detector wrote it: no clipping, no -1.
    np.testing.assert_array_equal(first.box, raw[0]["bbox"])
    assert first.score == raw[0]["score"]
    assert first.image_id == 785 and first.image_size == (640, 425)
    assert first.image_path == os.path.join(root, "000000000785.jpg")
    assert first.keypoints.shape == (17, 3) and not first.keypoints.any()
    assert [d.score for d in dets] == [d["score"] for d in raw]

    high = read_coco_detections(det_file, index, root, score_threshold=0.5)
    assert len(high) == sum(d["score"] >= 0.5 for d in raw) == 18
    # Inclusive threshold: a threshold equal to a score keeps that box.
    lowest = min(d["score"] for d in raw)
    assert len(read_coco_detections(det_file, index, root, score_threshold=lowest)) == 118
    assert read_coco_detections(det_file, index, root, category_id=2) == []
    assert read_coco_detections(det_file, index, root, num_keypoints=14)[0].keypoints.shape == (14, 3)


def test_coco_layout_with_other_keypoint_count(shared_data):
    root = shared_data / "samples" / "crowdpose"
    records = read_coco_keypoints(root / "test_crowdpose.json", root, train=False)
    assert len(records) == 5
    assert all(r.keypoints.shape == (14, 3) for r in records)
    with pytest.raises(DataError, match=r"'keypoints' has 42 values, expected 51"):
        read_coco_keypoints(root / "test_crowdpose.json", root, num_keypoints=17)


# ----------------------------------------------------------------------------------------------------
# COCO, broken files


def _coco_doc(**overrides):
    doc = {
        "images": [{"id": 7, "file_name": "a.jpg", "width": 100, "height": 80}],
        "annotations": [
            {"id": 11, "image_id": 7, "category_id": 1, "iscrowd": 0, "area": 500.0,
             "bbox": [10, 20, 30, 40], "keypoints": [15, 25, 2, 0, 0, 0, 30, 50, 1], "num_keypoints": 2},
        ],
        "categories": [{"id": 1, "name": "person", "keypoints": ["a", "b", "c"]}],
    }
    doc.update(overrides)
    return doc


def _write(tmp_path: Path, doc, name="ann.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def _ann(**changes):
    ann = dict(_coco_doc()["annotations"][0])
    ann.update(changes)
    return ann


def test_coco_synthetic_file_reads(tmp_path):
    path = _write(tmp_path, _coco_doc())
    (record,) = read_coco_keypoints(path, tmp_path)
    assert record.keypoints.shape == (3, 3)
    np.testing.assert_array_equal(record.keypoints, [[15, 25, 2], [0, 0, 0], [30, 50, 1]])
    np.testing.assert_array_equal(record.box, sanitize_box([10, 20, 30, 40], (100, 80)))
    np.testing.assert_array_equal(record.box, [10, 20, 29, 39])


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"annotations": []}, "missing key 'images'"),
        (_coco_doc(annotations=None), "'annotations' must be a list"),
        ({"images": []}, "missing key 'annotations'"),
        (_coco_doc(images={"id": 7}), "'images' must be a list"),
        ([], "expected a COCO annotation object"),
        (_coco_doc(images=[{"id": 7, "file_name": "a.jpg", "width": 100}]), r"images\[0\] has no 'height'"),
        (_coco_doc(annotations=[_ann(keypoints=[1, 2, 2, 3])]), r"annotation 11: 'keypoints' has 4 values, expected 9"),
        (_coco_doc(annotations=[_ann(bbox=[1, 2, -3, 4])]), r"annotation 11: 'bbox' has a negative size"),
        (_coco_doc(annotations=[_ann(image_id=8)]), r"annotation 11: image_id 8 is not in 'images'"),
        (_coco_doc(annotations=[_ann(keypoints=[1, 2, 3, 0, 0, 0, 0, 0, 0])]), r"annotation 11: keypoint visibility"),
        (_coco_doc(annotations=[_ann(keypoints="none")]), r"annotation 11: 'keypoints' must be a list"),
        (_coco_doc(annotations=[_ann(bbox=[1, "x", 3, 4])]), r"annotation 11: 'bbox' holds a value that is not a number"),
        (_coco_doc(annotations=[_ann(keypoints=[1, None, 2, 0, 0, 0, 0, 0, 0])]), r"annotation 11: 'keypoints' holds a value that is not a finite"),
        (_coco_doc(annotations=[{k: v for k, v in _ann().items() if k != "bbox"}]), r"annotation 11 has no 'bbox'"),
        (_coco_doc(annotations=[_ann(area="big")]), r"annotation 11: 'area' must be a finite number"),
    ],
)
def test_coco_structure_errors(tmp_path, doc, message):
    path = _write(tmp_path, doc)
    with pytest.raises(DataError, match=message) as info:
        read_coco_keypoints(path, tmp_path)
    assert info.value.path == str(path)
    assert str(info.value).startswith(str(path) + ": ")


def test_coco_nan_keypoint_names_the_annotation(tmp_path):
    doc = _coco_doc(annotations=[_ann(), _ann(id=12, keypoints=[math.nan, 1, 2, 0, 0, 0, 0, 0, 0])])
    path = tmp_path / "nan.json"
    path.write_text(json.dumps(doc))   # json writes NaN, Python's reader accepts it
    with pytest.raises(DataError, match=r"annotation 12: 'keypoints' holds a value that is not a finite number"):
        read_coco_keypoints(path, tmp_path)


def test_coco_unreadable_files(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_coco_keypoints(tmp_path / "missing.json", tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        read_coco_keypoints(bad, tmp_path)


def test_coco_filters_crowd_empty_and_degenerate(tmp_path):
    anns = [
        _ann(),
        _ann(id=12, iscrowd=1),
        _ann(id=13, keypoints=[0] * 9, num_keypoints=0),
        _ann(id=14, bbox=[150, 20, 30, 40]),        # starts right of the 100-px image: empty after clipping
        _ann(id=15, area=0),                        # the official loader drops area <= 0
        _ann(id=16, category_id=2, keypoints=None, bbox=None),   # other category: not validated, not kept
    ]
    path = _write(tmp_path, _coco_doc(annotations=anns))
    assert [r.extras["annotation_id"] for r in read_coco_keypoints(path, tmp_path)] == [11]
    assert [r.extras["annotation_id"] for r in read_coco_keypoints(path, tmp_path, train=False)] == [11, 13]


def test_coco_orders_people_by_image(tmp_path):
    images = [{"id": 2, "file_name": "b.jpg", "width": 100, "height": 80},
              {"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}]
    anns = [_ann(id=21, image_id=1), _ann(id=22, image_id=2), _ann(id=23, image_id=1)]
    path = _write(tmp_path, _coco_doc(images=images, annotations=anns))
    assert [r.extras["annotation_id"] for r in read_coco_keypoints(path, tmp_path)] == [22, 21, 23]


def test_coco_detection_errors(tmp_path):
    index = {7: ("a.jpg", 100, 80)}
    good = {"image_id": 7, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.9}
    cases = [
        ({"image_id": 7}, "expected a list of detections"),
        ([good, dict(good, image_id=9)], r"detection 1: image_id 9 is not in the image index"),
        ([dict(good, bbox=[1, 2, 3])], r"detection 0: 'bbox' has 3 values, expected 4"),
        ([dict(good, bbox=[1, 2, 3, -4])], r"detection 0: 'bbox' has a negative size"),
        ([{k: v for k, v in good.items() if k != "score"}], r"detection 0 has no 'score'"),
        ([dict(good, score=None)], r"detection 0: 'score' must be a finite number"),
    ]
    for doc, message in cases:
        path = _write(tmp_path, doc, "det.json")
        with pytest.raises(DataError, match=message):
            read_coco_detections(path, index, tmp_path)
    # Detections of other categories are skipped before the image check.
    path = _write(tmp_path, [good, dict(good, image_id=9, category_id=3)], "det.json")
    assert len(read_coco_detections(path, index, tmp_path)) == 1


# ----------------------------------------------------------------------------------------------------
# LSP / LSPET, real files


def test_lsp_reads_all_people_with_hand_checked_joint(shared_data):
    root = shared_data / "lsp"
    records = read_lsp(root)
    assert len(records) == 1000
    first = records[0]
    assert first.image_path == os.path.join(root, "images", "im0001.jpg")
    assert first.image_id == 1
    # joints.mat, image 1, right ankle: x 29.7465, y 143.3454, flag 0 (visible) -> minus 1 (Matlab 1-based).
    np.testing.assert_allclose(first.keypoints[0], [28.74645941, 142.34544031, 2], atol=1e-7)
    # head top: 38.9884, 15.5655
    np.testing.assert_allclose(first.keypoints[13], [37.9884044, 14.56550525, 2], atol=1e-7)

    raw = scipy.io.loadmat(root / "joints.mat")["joints"]   # 3 x 14 x N
    person, joint = 500, 7
    np.testing.assert_allclose(records[person].keypoints[joint, :2], raw[:2, joint, person] - 1)
    # Every LSP joint is labelled; flag 1 (occluded) -> v 1, flag 0 -> v 2.
    v = np.stack([r.keypoints[:, 2] for r in records])
    flags = raw[2].T
    assert not (v == 0).any()
    np.testing.assert_array_equal(v == 1, flags == 1)
    assert int((v == 1).sum()) == int(flags.sum()) == 990   # 7.07% of 14,000 joints


def test_lsp_box_and_image_size(shared_data):
    records = read_lsp(shared_data / "lsp", indices=[0, 41, 999])
    assert [r.image_id for r in records] == [1, 42, 1000]
    for r in records:
        x, y = r.keypoints[:, 0], r.keypoints[:, 1]
        np.testing.assert_allclose(r.box, [x.min(), y.min(), x.max() - x.min(), y.max() - y.min()])
        height, width = read_image(r.image_path).shape[:2]
        assert r.image_size == (width, height)
    assert records[0].image_size == (70, 160)
    assert read_lsp(shared_data / "lsp", indices=[3], image_sizes=False)[0].image_size is None


def test_lspet_visibility_conversion(shared_data):
    root = shared_data / "lspet"
    records = read_lspet(root)
    assert len(records) == 10000
    assert records[0].image_path == os.path.join(root, "images", "im00001.jpg")
    raw = scipy.io.loadmat(root / "joints.mat")["joints"]   # 14 x 3 x N, flag 1 = visible
    first = records[0]
    # image 1: right ankle (0, -26.11, flag 0) is not annotated; right knee (26.03, 86.41, flag 1) is visible.
    np.testing.assert_array_equal(first.keypoints[0], [0, 0, 0])
    np.testing.assert_allclose(first.keypoints[1], [25.03094352, 85.41022512, 2], atol=1e-7)

    v = np.stack([r.keypoints[:, 2] for r in records])
    flags = raw[:, 2, :].T
    # In all 10,000 every flag-0 joint has a zero or negative coordinate, so flag 0 -> 0, flag 1 -> 2.
    np.testing.assert_array_equal(v == 2, flags == 1)
    np.testing.assert_array_equal(v == 0, flags == 0)
    assert not (v == 1).any()
    unlabelled = np.stack([r.keypoints for r in records])[v == 0]
    assert not unlabelled.any()
    # The three visible joints that lie up to 1.2 px above the top edge stay visible.
    assert records[23].keypoints[13, 2] == 2 and records[23].keypoints[13, 1] == pytest.approx(-1.17444034 - 1)
    # Box = extent of labelled joints only (the unlabelled right ankle at y -26 is ignored).
    labelled = first.keypoints[first.keypoints[:, 2] > 0]
    np.testing.assert_allclose(first.box[:2], labelled[:, :2].min(axis=0))
    np.testing.assert_allclose(first.box[:2] + first.box[2:], labelled[:, :2].max(axis=0))


def test_lsp_standard_split_on_local_copy(shared_data):
    with pytest.raises(DataError, match=r"holds 1000 people; the standard LSP test half \(images 1001-2000\) is absent"):
        lsp_standard_split(shared_data / "lsp", shared_data / "lspet")
    train, test = lsp_standard_split(shared_data / "lsp", shared_data / "lspet", require_test=False, image_sizes=False)
    assert len(train) == 11000 and test == []
    assert train[999].image_path.endswith("im1000.jpg") and train[1000].image_path.endswith("im00001.jpg")


# ----------------------------------------------------------------------------------------------------
# LSP, synthetic files


def _fake_lsp(root: Path, count: int, joints=None, images=None, digits=4) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    ok, jpeg = cv2.imencode(".jpg", np.zeros((12, 10, 3), np.uint8))
    for number in range(1, (count if images is None else images) + 1):
        (root / "images" / f"im{number:0{digits}d}.jpg").write_bytes(jpeg.tobytes())
    if joints is None:
        rng = np.random.default_rng(0)
        joints = np.concatenate([rng.uniform(2, 9, (2, 14, count)), np.zeros((1, 14, count))], axis=0)
    scipy.io.savemat(root / "joints.mat", {"joints": joints})
    return root


def test_lsp_bad_mat_files(tmp_path):
    root = _fake_lsp(tmp_path / "nokey", 3)
    scipy.io.savemat(root / "joints.mat", {"points": np.zeros((3, 14, 3))})
    with pytest.raises(DataError, match=r"not an LSP joints.mat: no key 'joints' \(keys: points\)") as info:
        read_lsp(root)
    assert info.value.path == str(root / "joints.mat")

    root = _fake_lsp(tmp_path / "shape", 3, joints=np.zeros((2, 14, 3)))
    with pytest.raises(DataError, match=r"not an LSP joints.mat: 'joints' has shape 2x14x3, expected 3x14xN"):
        read_lsp(root)

    root = _fake_lsp(tmp_path / "swapped", 3, joints=np.ones((14, 3, 3)))
    with pytest.raises(DataError, match=r"not an LSP joints.mat: 'joints' is 14x3x3, the LSPET layout; use read_lspet"):
        read_lsp(root)
    with pytest.raises(DataError, match=r"not an LSPET joints.mat: 'joints' is 3x14x2, the LSP layout; use read_lsp"):
        read_lspet(_fake_lsp(tmp_path / "swapped2", 2, digits=5))

    root = _fake_lsp(tmp_path / "count", 3, images=2)
    with pytest.raises(DataError, match=r"joints.mat holds 3 people but .* holds 2 images named like im0001.jpg"):
        read_lsp(root)

    flags = np.zeros((3, 14, 2))
    flags[2, 0, 0] = 2
    with pytest.raises(DataError, match="visibility flags must be 0 or 1"):
        read_lsp(_fake_lsp(tmp_path / "flags", 2, joints=flags))

    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "joints.mat").write_bytes(b"this is not a mat file")
    with pytest.raises(DataError, match="not an LSP joints.mat: cannot read it"):
        read_lsp(tmp_path / "garbage")
    with pytest.raises(DataError, match="file not found"):
        read_lsp(tmp_path / "absent")
    with pytest.raises(DataError, match=r"index 3 out of range: joints.mat holds 3 people"):
        read_lsp(_fake_lsp(tmp_path / "range", 3), indices=[0, 3])


def test_lspet_flag0_with_coordinates_is_occluded(tmp_path):
    joints = np.zeros((14, 3, 1))
    joints[:, :2, 0] = np.arange(28).reshape(14, 2) + 1.0
    joints[:, 2, 0] = 1
    joints[3, :, 0] = [5.0, 6.0, 0]      # unflagged but placed: labelled-occluded
    joints[4, :, 0] = [-3.0, 6.0, 0]     # unflagged, negative: not labelled
    joints[5, :, 0] = [0.0, 0.0, 0]      # unflagged at the origin: not labelled
    (record,) = read_lspet(_fake_lsp(tmp_path / "et", 1, joints=joints, digits=5))
    np.testing.assert_array_equal(record.keypoints[3], [4, 5, 1])
    np.testing.assert_array_equal(record.keypoints[4], [0, 0, 0])
    np.testing.assert_array_equal(record.keypoints[5], [0, 0, 0])
    np.testing.assert_array_equal(record.keypoints[0], [0, 1, 2])
    assert record.image_size == (10, 12)


def test_lsp_standard_split_with_full_file(tmp_path):
    root = _fake_lsp(tmp_path / "lsp", 2000)
    train, test = lsp_standard_split(root, image_sizes=False)
    assert len(train) == 1000 and len(test) == 1000
    assert train[-1].image_path.endswith("im1000.jpg")
    assert test[0].image_path.endswith("im1001.jpg") and test[-1].image_path.endswith("im2000.jpg")
    assert test[0].image_id == 1001


def test_jpeg_header_size_matches_decoder(tmp_path):
    image = np.zeros((37, 53, 3), np.uint8)
    for name, params in [("base.jpg", []), ("prog.jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])]:
        ok, data = cv2.imencode(".jpg", image, params)
        (tmp_path / name).write_bytes(data.tobytes())
        assert image_header(str(tmp_path / name)) == ("JPEG", (53, 37))
    ok, png = cv2.imencode(".png", image)
    (tmp_path / "png.jpg").write_bytes(png.tobytes())
    assert image_header(str(tmp_path / "png.jpg"))[0] != "JPEG"
    assert stored_size_wh(str(tmp_path / "png.jpg")) == (53, 37)   # falls back to decoding
