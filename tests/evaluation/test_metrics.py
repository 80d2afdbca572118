from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from posekit.errors import ConfigError, DataError
from posekit.evaluation.metrics import (COCO_STAT_NAMES, coco_evaluate, coco_keypoint_results, load_coco_results, nms_per_image, oks_iou, oks_nms, pck, pck_curve, rescore, soft_oks_nms, write_coco_results)
from posekit.skeletons import COCO as COCO_SKELETON

COCO_SIGMAS = np.asarray(COCO_SKELETON.sigmas)


# ----------------------------------------------------------------------------------------------
# PCK
# ----------------------------------------------------------------------------------------------

def _pck_case():
    """Two people, four joints, torso = joints (0, 1)."""
    gt = np.array([
        [[0, 0], [0, 10], [5, 5], [10, 10]],      # torso 10 -> threshold 2 at alpha 0.2
        [[0, 0], [15, 20], [7, 7], [9, 9]],       # torso 25 -> threshold 5
    ], dtype=float)
    pred = gt.copy()
    pred[0, 1] += (0, 2)          # exactly 0.2 * 10: counts
    pred[0, 2] += (0, 2.5)        # 0.25: wrong
    pred[0, 3] += (100, 100)      # unlabelled: must not count at all
    pred[1, 0] += (3, 4)          # exactly 0.2 * 25: counts
    pred[1, 2] += (3, 4.01)       # just over: wrong
    visible = np.array([[2, 1, 2, 0], [2, 2, 1, 2]])
    return pred, gt, visible


def test_pck_hand_computed_threshold_inclusive_and_unlabelled_excluded():
    pred, gt, visible = _pck_case()
    result = pck(pred, gt, visible, torso=(0, 1), alpha=0.2)
    np.testing.assert_array_equal(result["counts"], [2, 2, 2, 1])
    np.testing.assert_array_equal(result["correct"], [2, 2, 0, 1])
    np.testing.assert_allclose(result["per_joint"], [1.0, 1.0, 0.0, 1.0])
    assert result["mean"] == pytest.approx(5 / 7)   # weighted by counts, not (1 + 1 + 0 + 1) / 4
    assert result["excluded_people"] == 0 and result["num_people"] == 2


def test_pck_normaliser_comes_from_ground_truth():
    pred, gt, visible = _pck_case()
    stretched = pred.copy()
    stretched[:, 1] = stretched[:, 0] + 1000 * (gt[:, 1] - gt[:, 0])   # huge predicted torso
    result = pck(stretched, gt, visible, torso=(0, 1))
    # Joint 1 is now far off; the others are judged against the GT torso exactly as before.
    np.testing.assert_allclose(result["per_joint"], [1.0, 0.0, 0.0, 1.0])
    # The FLIC release quirk measures the torso on the prediction: the misses of joint 2 then pass.
    quirk = pck(stretched, gt, visible, torso=(0, 1), normaliser_from="prediction")
    np.testing.assert_allclose(quirk["per_joint"], [1.0, 0.0, 1.0, 1.0])


def test_pck_people_without_a_torso_are_excluded_and_reported():
    pred, gt, visible = _pck_case()
    gt3 = np.concatenate([gt, gt[:1], gt[:1]])
    pred3 = np.concatenate([pred, pred[:1] + 50, pred[:1] + 50])
    vis3 = np.concatenate([visible, visible[:1], visible[:1]])
    vis3[2, 1] = 0               # torso joint unlabelled
    gt3[3, 1] = gt3[3, 0]        # zero-length torso
    result = pck(pred3, gt3, vis3, torso=(0, 1))
    assert result["excluded_people"] == 2
    np.testing.assert_array_equal(result["counts"], [2, 2, 2, 1])
    assert result["mean"] == pytest.approx(5 / 7)


def test_pck_mean_over_chosen_joints_and_never_labelled_joint_is_nan():
    pred, gt, visible = _pck_case()
    visible = visible.copy()
    visible[:, 3] = 0
    result = pck(pred, gt, visible, torso=(0, 1), joints=[1, 2])
    assert math.isnan(result["per_joint"][3]) and result["counts"][3] == 0
    assert result["mean"] == pytest.approx(2 / 4)


def test_pck_curve_agrees_with_pck_and_auc_by_trapezoid():
    pred, gt, visible = _pck_case()
    alphas = [0.0, 0.1, 0.2, 0.3]
    curve = pck_curve(pred, gt, visible, torso=(0, 1), alphas=alphas)
    for i, alpha in enumerate(alphas):
        single = pck(pred, gt, visible, torso=(0, 1), alpha=alpha)
        np.testing.assert_allclose(curve["per_joint"][i], single["per_joint"])
        assert curve["mean"][i] == pytest.approx(single["mean"])
    # hits: alpha 0 -> 3 exact joints (of 7), 0.1 -> 3, 0.2 -> 5, 0.3 -> 7
    np.testing.assert_allclose(curve["mean"], [3 / 7, 3 / 7, 5 / 7, 1.0])
    expected_auc = (0.1 * (3 / 7 + 3 / 7) / 2 + 0.1 * (3 / 7 + 5 / 7) / 2 + 0.1 * (5 / 7 + 1) / 2) / 0.3
    assert curve["auc"] == pytest.approx(expected_auc)


def test_pck_rejects_mismatched_shapes():
    pred, gt, visible = _pck_case()
    with pytest.raises(ValueError, match="shapes differ"):
        pck(pred[:1], gt, visible, torso=(0, 1))
    with pytest.raises(ValueError, match="torso"):
        pck(pred, gt, visible, torso=(0, 9))


# ----------------------------------------------------------------------------------------------
# OKS
# ----------------------------------------------------------------------------------------------

def _person(rng, center=(200.0, 150.0), size=80.0):
    xy = np.asarray(center) + rng.uniform(-size / 2, size / 2, size=(17, 2))
    return np.concatenate([xy, np.full((17, 1), 2.0)], axis=1)


def test_oks_iou_hand_value():
    # One joint, sigma 0.1 -> variance 0.04; areas 100: e = d^2 / 0.04 / 100 / 2 = ln 2 -> OKS 0.5.
    d = math.sqrt(8 * math.log(2))
    value = oks_iou([[0.0, 0.0, 1.0]], [[[d, 0.0, 1.0]], [[0.0, 0.0, 1.0]]], 100.0, 100.0, sigmas=[0.1])
    np.testing.assert_allclose(value, [0.5, 1.0])


def test_oks_iou_uses_mean_of_the_two_areas_and_accepts_flat_rows():
    rng = np.random.default_rng(0)
    g = _person(rng)
    dets = np.stack([g + np.r_[rng.normal(0, 3, 2), 0] for _ in range(4)])
    a = oks_iou(g, dets, 3000.0, np.array([1000.0, 2000.0, 5000.0, 3000.0]))
    b = oks_iou(g.reshape(-1), dets.reshape(4, -1), 3000.0, [1000.0, 2000.0, 5000.0, 3000.0])
    np.testing.assert_allclose(a, b)
    same_mean = oks_iou(g, dets, 2000.0, 2000.0)
    np.testing.assert_allclose(oks_iou(g, dets[:1], 3000.0, 1000.0), same_mean[:1])


def _coco_gt(people, areas, image_ids=None):
    """An in-memory COCO keypoint ground truth: people K x 3, one image each unless image_ids given."""
    image_ids = image_ids or [1] * len(people)
    anns = []
    for n, (kp, area, image_id) in enumerate(zip(people, areas, image_ids)):
        xy = kp[kp[:, 2] > 0, :2]
        x0, y0 = xy.min(axis=0)
        x1, y1 = xy.max(axis=0)
        anns.append({
            "id": n + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0, "area": float(area),
            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
            "keypoints": [float(v) for v in kp.reshape(-1)], "num_keypoints": int((kp[:, 2] > 0).sum()),
        })
    dataset = {
        "images": [{"id": i, "width": 640, "height": 480, "file_name": f"{i}.jpg"} for i in sorted(set(image_ids))],
        "annotations": anns,
        "categories": [{"id": 1, "name": "person", "supercategory": "person",
                        "keypoints": list(COCO_SKELETON.keypoints), "skeleton": []}],
    }
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def test_oks_iou_equals_pycocotools_compute_oks():
    # computeOks divides by the GT area alone and averages over labelled GT joints; with equal areas
    # and every joint labelled it is the same OKS as the official nms.py one.
    rng = np.random.default_rng(1)
    gts = [_person(rng, (200, 150)), _person(rng, (230, 160))]
    area = 4500.0
    dets = [gts[n % 2] + np.c_[rng.normal(0, 2 + n, (17, 2)), np.zeros(17)] for n in range(6)]
    scores = rng.uniform(0.1, 1.0, size=6)
    coco_gt = _coco_gt(gts, [area, area])
    results = [{"image_id": 1, "category_id": 1, "keypoints": d.reshape(-1).tolist(), "score": float(s)}
               for d, s in zip(dets, scores)]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        evaluator.params.kpt_oks_sigmas = COCO_SIGMAS
        evaluator._prepare()
    reference = evaluator.computeOks(1, 1)             # detections sorted by score, descending
    ordered = np.stack(dets)[np.argsort(-scores, kind="mergesort")]
    for j, g in enumerate(gts):
        np.testing.assert_allclose(oks_iou(g, ordered, area, area), reference[:, j], rtol=1e-12)
    assert reference.max() > 0.5 and reference.min() < 0.5


# ----------------------------------------------------------------------------------------------
# NMS and rescoring
# ----------------------------------------------------------------------------------------------

def _duplicates():
    rng = np.random.default_rng(2)
    a = _person(rng)
    near = a + np.c_[np.full((17, 2), 1.0), np.zeros(17)]     # 1 px off: OKS ~0.99
    far = a + np.c_[np.full((17, 2), 150.0), np.zeros(17)]    # another person
    return np.stack([a, near, far]), np.array([0.8, 0.9, 0.7]), np.full(3, 100.0 * 100.0)


def test_oks_nms_drops_duplicates_and_keeps_distinct_people():
    kpts, scores, areas = _duplicates()
    assert oks_iou(kpts[1], kpts[:1], 1e4, 1e4)[0] > 0.9
    np.testing.assert_array_equal(oks_nms(kpts, scores, areas, 0.9), [1, 2])
    # OKS never exceeds 1, so a threshold of 1 suppresses nothing; order is by score.
    np.testing.assert_array_equal(oks_nms(kpts, scores, areas, 1.0), [1, 0, 2])
    assert oks_nms(np.zeros((0, 17, 3)), [], []).size == 0


def test_soft_oks_nms_decays_duplicates_and_stops_at_twenty():
    kpts, scores, areas = _duplicates()
    # After taking index 1, index 0 decays to 0.8 * exp(-oks^2 / 0.9) ~ 0.27 < 0.7.
    np.testing.assert_array_equal(soft_oks_nms(kpts, scores, areas, 0.9), [1, 2, 0])
    many = np.repeat(kpts[:1], 25, axis=0) + np.arange(25)[:, None, None] * np.array([200.0, 0.0, 0.0])
    kept = soft_oks_nms(many, np.linspace(1, 0.5, 25), np.full(25, 1e4), 0.9)
    np.testing.assert_array_equal(kept, np.arange(20))
    np.testing.assert_array_equal(soft_oks_nms(kpts, scores, areas, 0.9, method="linear"), [1, 2, 0])


def test_rescore_hand_computed():
    ks = np.array([[0.1, 0.5, 0.3], [0.2, 0.1, 0.0], [0.9, 0.9, 0.9]])
    np.testing.assert_allclose(rescore(ks, [0.8, 1.0, 0.5], 0.2), [0.8 * 0.4, 0.0, 0.45])


def test_nms_per_image_rescores_groups_and_leaves_input_alone():
    kpts, _, _ = _duplicates()
    kpts = kpts.copy()
    kpts[:, :, 2] = np.array([0.5, 0.6, 0.9])[:, None]       # keypoint scores
    results = [
        {"image_id": 7, "keypoints": kpts[0].reshape(-1).tolist(), "score": 1.0, "area": 1e4},
        {"image_id": 9, "keypoints": kpts[2].tolist(), "score": 0.5},
        {"image_id": 7, "keypoints": kpts[1].reshape(-1).tolist(), "score": 1.0, "area": 1e4},
        {"image_id": 7, "keypoints": kpts[2].reshape(-1).tolist(), "score": 0.5, "area": 1e4},
    ]
    before = json.dumps(results)
    out = nms_per_image(results)
    assert json.dumps(results) == before
    assert [(r["image_id"], r["score"]) for r in out] == [(7, pytest.approx(0.6)), (7, pytest.approx(0.45)),
                                                          (9, pytest.approx(0.45))]
    assert out[0]["keypoints"] == results[2]["keypoints"]


def test_coco_keypoint_results_rescore_then_nms_per_image():
    """The one COCO post-processing path (evaluation and the predictor): A, A' (1 px off) and C in image 7."""
    kpts, _, _ = _duplicates()
    keypoint_scores = np.array([[0.5] * 17, [0.6] * 17, [0.1] * 16 + [0.9]])
    args = ([7, 7, 7], kpts[:, :, :2], keypoint_scores, [1.0, 1.0, 0.5], [1e4] * 3)
    # Rescoring: box score x mean keypoint score above 0.2: A 0.5, A' 0.6, C 0.5 x 0.9 = 0.45.
    oks = coco_keypoint_results(*args, nms="oks", track_ids=[None, 4, 5])
    assert [(r["score"], r.get("track_id")) for r in oks] == [(pytest.approx(0.6), 4), (pytest.approx(0.45), 5)]
    assert list(oks[0]) == ["image_id", "category_id", "keypoints", "score", "track_id"]     # no area
    assert oks[0]["keypoints"] == np.c_[kpts[1, :, :2], keypoint_scores[1]].reshape(-1).tolist()
    assert oks[0]["image_id"] == 7 and oks[0]["category_id"] == 1
    # "none": everyone, as after NMS (by score); None: everyone, in the order given.
    assert [r["score"] for r in coco_keypoint_results(*args, nms="none")] == pytest.approx([0.6, 0.5, 0.45])
    assert [r["score"] for r in coco_keypoint_results(*args, nms=None)] == pytest.approx([0.5, 0.6, 0.45])
    # The same as rescoring + nms_per_image on the results dicts, area dropped afterwards.
    by_hand = nms_per_image([{"image_id": 7, "category_id": 1, "keypoints": np.c_[k[:, :2], s].reshape(-1).tolist(),
                              "score": b, "area": 1e4} for k, s, b in zip(kpts, keypoint_scores, [1.0, 1.0, 0.5])],
                            soft=True)
    assert coco_keypoint_results(*args, nms="soft_oks") == [{k: v for k, v in r.items() if k != "area"} for r in by_hand]
    assert coco_keypoint_results([], np.zeros((0, 17, 2)), np.zeros((0, 17)), [], []) == []
    with pytest.raises(ValueError, match="nms must be oks, soft_oks, none or None, got 'greedy'"):
        coco_keypoint_results(*args, nms="greedy")


# ----------------------------------------------------------------------------------------------
# COCO evaluation
# ----------------------------------------------------------------------------------------------

def _ann_file(shared_data):
    return shared_data / "coco" / "annotations" / "person_keypoints_train2017.json"


def _gt_people(ann_path):
    with open(ann_path) as f:
        dataset = json.load(f)
    return [a for a in dataset["annotations"] if not a["iscrowd"] and a["num_keypoints"] > 0]


def _pycocotools_stats(ann_path, results_path, image_ids=None):
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(ann_path))
        coco_dt = coco_gt.loadRes(str(results_path))
        evaluator = COCOeval(coco_gt, coco_dt, "keypoints")
        evaluator.params.useSegm = None
        if image_ids is not None:
            evaluator.params.imgIds = sorted(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [float(v) for v in evaluator.stats]


def test_coco_evaluate_perfect_results_give_ap_one(shared_data, capsys):
    ann_path = _ann_file(shared_data)
    results = [{"image_id": a["image_id"], "keypoints": a["keypoints"], "score": 1.0} for a in _gt_people(ann_path)]
    stats = coco_evaluate(results, ann_path)
    assert capsys.readouterr().out == ""                       # pycocotools' printing is kept quiet
    assert list(stats) == list(COCO_STAT_NAMES)
    assert stats["AP"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(1.0)
    assert stats["AP50"] == pytest.approx(1.0) and stats["AP75"] == pytest.approx(1.0)
    assert "Average Precision" in stats.summary


def _jittered_results(ann_path, seed=0):
    rng = np.random.default_rng(seed)
    results = []
    for a in _gt_people(ann_path):
        kp = np.asarray(a["keypoints"], dtype=float).reshape(-1, 3)
        labelled = kp[:, 2] > 0
        kp[~labelled, :2] = kp[labelled, :2].mean(axis=0)
        kp[:, :2] += rng.normal(0, 0.08 * math.sqrt(a["area"]), size=(17, 2)) * rng.uniform(0.1, 1.0)
        kp[:, 2] = rng.uniform(0.2, 1.0, 17)
        results.append({"image_id": a["image_id"], "keypoints": kp, "score": float(rng.uniform(0.3, 1.0))})
        if rng.uniform() < 0.3:                               # a false positive beside the person
            fp = kp.copy()
            fp[:, :2] += 3 * math.sqrt(a["area"])
            results.append({"image_id": a["image_id"], "keypoints": fp, "score": float(rng.uniform(0.0, 0.6))})
    return results


def test_coco_evaluate_equals_pycocotools_on_real_subset(shared_data, tmp_path):
    ann_path = _ann_file(shared_data)
    results = _jittered_results(ann_path)
    results_path = write_coco_results(results, tmp_path / "results.json")
    ours = coco_evaluate(load_coco_results(results_path), ann_path)
    reference = _pycocotools_stats(ann_path, results_path)
    assert [ours[name] for name in COCO_STAT_NAMES] == reference
    assert 0.0 < ours["AP"] < 1.0 and 0.0 < ours["AR"] < 1.0
    # Passing the in-memory results (numpy keypoints) gives the same numbers as the file.
    assert dict(coco_evaluate(results, ann_path)) == dict(ours)


def test_coco_evaluate_image_subset_equals_pycocotools(shared_data, tmp_path):
    ann_path = _ann_file(shared_data)
    results = _jittered_results(ann_path, seed=3)
    results_path = write_coco_results(results, tmp_path / "results.json")
    subset = sorted({r["image_id"] for r in results})[:10]
    ours = coco_evaluate(results, ann_path, image_ids=subset)
    assert [ours[n] for n in COCO_STAT_NAMES] == _pycocotools_stats(ann_path, results_path, subset)


def test_coco_evaluate_empty_results_match_zero_detections(shared_data, tmp_path):
    ann_path = _ann_file(shared_data)
    first_image = _gt_people(ann_path)[0]["image_id"]
    # pycocotools cannot load an empty list; one detection far outside every image behaves as none.
    nowhere = [{"image_id": first_image, "category_id": 1, "keypoints": [-1e5, -1e5, 1.0] * 17, "score": 0.01}]
    nowhere_path = tmp_path / "nowhere.json"
    nowhere_path.write_text(json.dumps(nowhere))
    ours = coco_evaluate([], ann_path)
    assert [ours[n] for n in COCO_STAT_NAMES] == _pycocotools_stats(ann_path, nowhere_path)
    assert ours["AP"] == 0.0 and "no results" in ours.summary


def test_coco_evaluate_empty_results_report_minus_one_for_empty_area_range():
    rng = np.random.default_rng(4)
    coco_gt = _coco_gt([_person(rng, size=150.0)], [150.0 * 150.0])      # one large person only
    stats = coco_evaluate([], coco_gt)
    assert stats["AP"] == 0.0 and stats["APl"] == 0.0
    assert stats["APm"] == -1.0 and stats["ARm"] == -1.0


def test_coco_evaluate_with_in_memory_ground_truth_and_custom_sigmas():
    rng = np.random.default_rng(5)
    people = [_person(rng, (100, 100)), _person(rng, (400, 300))]
    coco_gt = _coco_gt(people, [6400.0, 6400.0])
    results = [{"image_id": 1, "keypoints": p, "score": 0.9} for p in people]
    assert coco_evaluate(results, coco_gt)["AP"] == pytest.approx(1.0)
    assert coco_evaluate(results, coco_gt, sigmas=np.full(17, 0.05))["AP"] == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="3 OKS sigmas for 17"):
        coco_evaluate(results, coco_gt, sigmas=[0.1, 0.1, 0.1])


def test_coco_evaluate_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(DataError, match="annotation file not found") as info:
        coco_evaluate([], missing)
    assert str(missing) in str(info.value)
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [], "annotations": [{"id": 1}], "categories": []}')
    with pytest.raises(DataError, match="annotation 0 has no 'image_id'"):
        coco_evaluate([], broken)
    rng = np.random.default_rng(6)
    coco_gt = _coco_gt([_person(rng)], [5000.0])
    with pytest.raises(DataError, match="image_id 42"):
        coco_evaluate([{"image_id": 42, "keypoints": _person(rng), "score": 1.0}], coco_gt)
    with pytest.raises(DataError, match="result 0 has no 'score'"):
        coco_evaluate([{"image_id": 1, "keypoints": _person(rng)}], coco_gt)


def test_write_coco_results_is_plain_json_and_leaves_no_temporary(tmp_path):
    kp = np.arange(51, dtype=np.float32).reshape(17, 3)
    path = write_coco_results([{"image_id": np.int64(5), "keypoints": kp, "score": np.float32(0.5)}],
                              tmp_path / "out" / "results.json")
    data = json.loads(path.read_text())
    assert data == [{"image_id": 5, "category_id": 1, "keypoints": [float(v) for v in range(51)], "score": 0.5}]
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.json"]
    assert load_coco_results(path) == data
    bad = tmp_path / "bad.json"
    bad.write_text('[{"image_id": 1, "keypoints": [1, 2], "score": 1}]')
    with pytest.raises(DataError, match="3 values"):
        load_coco_results(bad)
