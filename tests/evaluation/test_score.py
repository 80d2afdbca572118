"""posekit score: ground truth and prediction layouts, hand-computed PCKh/PCK, real files, errors, reports."""
from __future__ import annotations

import csv
import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import scipy.io

from posekit.cli import main
from posekit.data.coco import read_coco_keypoints
from posekit.errors import DataError
from posekit.evaluation.report import format_summary_table, plot_pck_curve, write_report
from posekit.evaluation.scoring import (MPII_ABBREVIATIONS, MPII_WITHOUT_PELVIS_THORAX, eval_result, load_ground_truth, read_predictions, score_files, score_pck_arrays, score_predictions)
from posekit.skeletons import LSP, MPII, SYNTHETIC

OFFICIAL_COUNTS = [2115, 2485, 2889, 2888, 2478, 2119, 2878, 2932, 2932, 2932, 2928, 2935, 2944, 2944, 2932, 2909]
PCKH_COLUMNS = ["Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean", "Mean@0.1"]


# ------------------------------------------------------------------------------------------------
# Small files in the official layouts
# ------------------------------------------------------------------------------------------------

def write_mpii_h5(path, part, normalize, visible=None):
    """pose-hg-train layout: part N x 16 x 2 (1-based, (0, 0) = not annotated), normalize = head size."""
    n = len(part)
    with h5py.File(path, "w") as h:
        h["part"] = np.asarray(part, dtype=np.float64)
        h["visible"] = np.ones((n, 16)) if visible is None else visible
        h["center"] = np.full((n, 2), 100.0)
        h["scale"] = np.full(n, 1.25)
        h["normalize"] = np.asarray(normalize, dtype=np.float64)
        h["imgname"] = np.array([b"a.jpg"] * n)
    return str(path)


def mpii_people(n, spacing=40.0):
    """n people, every joint annotated at distinct 1-based spots."""
    part = 100.0 + np.arange(n * 16 * 2, dtype=np.float64).reshape(n, 16, 2) * spacing
    return part


def write_lsp_mat(path, xy, flags=None):
    """LSP joints.mat: 3 x 14 x N (x, y 1-based; flag 1 = occluded)."""
    xy = np.asarray(xy, dtype=np.float64)
    flags = np.zeros(xy.shape[:2]) if flags is None else flags
    joints = np.concatenate([xy, flags[..., None]], axis=2).transpose(2, 1, 0)
    scipy.io.savemat(path, {"joints": joints})
    return str(path)


def score_cli(capsys, argv):
    code = main(["score"] + argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table_row(out: str, name: str):
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == name:
            return cells[1:]
    raise AssertionError(f"no table row {name!r} in:\n{out}")


# ------------------------------------------------------------------------------------------------
# Hand-computed MPII PCKh
# ------------------------------------------------------------------------------------------------

def test_pckh_counts_a_joint_exactly_at_the_threshold(tmp_path, capsys):
    """Official MPII/HRNet rule (spec 1.6): correct <=> distance / head size <= 0.5, so exactly 0.5 counts."""
    part = mpii_people(2)
    gt = write_mpii_h5(tmp_path / "valid.h5", part, [10.0, 10.0])
    pred = part - 1.0                       # 0-based in a .npy
    pred[0, 10] += (3.0, 4.0)               # r_wrist of person 1: distance 5 = 0.5 x 10 -> correct
    pred[1, 10] += (3.0, 4.0 + 1e-6)        # person 2: just beyond -> wrong
    pred[0, 15] += (0.0, 5.0 + 1e-6)        # l_wrist of person 1: wrong
    np.save(tmp_path / "pred.npy", pred)
    [result] = score_files("mpii", gt, [tmp_path / "pred.npy"])
    assert result.per_joint["r_wrist"] == 50.0 and result.per_joint["l_wrist"] == 50.0
    assert result.summary["Wrist"] == 50.0 and result.summary["Elbow"] == 100.0
    # Mean over the 14 joints x 2 people without pelvis/thorax: 2 misses of 28.
    assert result.summary["Mean"] == pytest.approx(100.0 * 26 / 28)
    # At 0.1 (1 px) the joint exactly at 0.5 misses too; the rest sit exactly on the ground truth.
    assert result.summary["Mean@0.1"] == pytest.approx(100.0 * 25 / 28)
    code, out, _ = score_cli(capsys, ["--protocol", "mpii", "--gt", gt, "--pred", str(tmp_path / "pred.npy")])
    assert code == 0 and table_row(out, "pred")[3] == "50.000"


def test_pckh_counts_annotated_invisible_joints_and_leaves_pelvis_thorax_out_of_the_mean(tmp_path):
    part = mpii_people(4)
    part[3, 0] = 0.0                        # r_ankle of person 4 not annotated: (0, 0)
    visible = np.ones((4, 16))
    visible[:, 5] = 0                       # l_ankle annotated but occluded everywhere: still counted
    gt = write_mpii_h5(tmp_path / "valid.h5", part, np.full(4, 20.0), visible)
    pred = part.copy()                      # 1-based .h5 like pose-hg-train's preds
    pred[:3, 5] += 50.0                     # three of the four occluded l_ankles wrong
    pred[:, 6] += 500.0                     # every pelvis wrong
    pred[:, 7] += 500.0                     # every thorax wrong
    pred[3, 0] += 500.0                     # the unannotated r_ankle: wrong but not counted
    with h5py.File(tmp_path / "pred.h5", "w") as h:
        h["preds"] = pred
    [result] = score_files("mpii", gt, [tmp_path / "pred.h5"])
    assert result.counts["l_ankle"] == 4 and result.per_joint["l_ankle"] == 25.0
    assert result.counts["r_ankle"] == 3 and result.per_joint["r_ankle"] == 100.0
    assert result.per_joint["pelvis"] == 0.0 and result.per_joint["thorax"] == 0.0
    assert result.summary["Ankle"] == pytest.approx((100.0 + 25.0) / 2)
    # Mean: 14 joints x 4 people - 1 unannotated = 55 counted, 3 wrong; pelvis/thorax do not enter.
    assert result.summary["Mean"] == pytest.approx(100.0 * 52 / 55)


def test_gt_valid_mat_and_head_box_arithmetic(tmp_path):
    """HRNet's gt_valid.mat layout: head size = 0.6 x ||headbox[1] - headbox[0]||; joints named by dataset_joints."""
    part = mpii_people(2)
    order = np.arange(16)[::-1]             # joints stored in reverse MPII order, named accordingly
    pos = part[:, order].transpose(1, 2, 0)                     # 16 x 2 x N
    missing = np.zeros((16, 2))
    missing[list(order).index(9), 1] = 1                         # person 2's head_top missing
    boxes = np.zeros((2, 2, 2))                                  # corner x (x, y) x person
    boxes[0] = [[10.0, 20.0], [10.0, 20.0]]                     # (x1, y1): (10, 10) and (20, 20)
    boxes[1] = [[40.0, 50.0], [50.0, 60.0]]                     # 30 x 40 boxes: diagonal 50 -> head size 30
    names = np.array([MPII_ABBREVIATIONS[i] for i in order], dtype=object)
    scipy.io.savemat(tmp_path / "gt_valid.mat", {"pos_gt_src": pos, "jnt_missing": missing, "headboxes_src": boxes,
                                                 "dataset_joints": names.reshape(1, -1)})
    gt = load_ground_truth("mpii", tmp_path / "gt_valid.mat")
    np.testing.assert_allclose(gt.head_size, [30.0, 30.0])
    assert gt.keypoints[1, 9, 2] == 0 and gt.keypoints[0, 9, 2] == 2
    expected = part - 1
    expected[1, 9] = 0.0                     # a missing joint reads (0, 0), v = 0
    np.testing.assert_allclose(gt.keypoints[:, :, :2], expected)
    pred = part.copy()
    pred[:, 13] += (9.0, 12.0)              # l_shoulder 15 px off = 0.5 head sizes: correct
    pred[:, 12] += (9.0, 12.1)              # r_shoulder beyond: wrong
    scipy.io.savemat(tmp_path / "pred.mat", {"preds": pred})
    [result] = score_files("mpii", tmp_path / "gt_valid.mat", [tmp_path / "pred.mat"])
    assert result.summary["Shoulder"] == 50.0 and result.counts["head_top"] == 1


# ------------------------------------------------------------------------------------------------
# Hand-computed LSP / FLIC PCK
# ------------------------------------------------------------------------------------------------

def lsp_people(n):
    xy = 50.0 + np.arange(n * 14 * 2, dtype=np.float64).reshape(n, 14, 2) * 7.0
    xy[:, 2] = xy[:, 9] + (30.0, 40.0)       # r_hip: torso ||l_shoulder - r_hip|| = 50 -> threshold 10 at 0.2
    return xy


def test_lsp_pck_exact_threshold_and_occluded_joints(tmp_path):
    xy = lsp_people(2)
    flags = np.zeros((2, 14))
    flags[:, 11] = 1                          # l_wrist occluded (LSP flag 1): counted all the same
    gt = write_lsp_mat(tmp_path / "joints.mat", xy, flags)
    pred = xy - 1.0
    pred[0, 11] += (6.0, 8.0)                 # exactly 0.2 x 50: correct
    pred[1, 11] += (6.0, 8.0 + 1e-6)          # just beyond: wrong
    pred[:, 7] += (0.0, 10.5)                 # r_elbow wrong for both
    np.save(tmp_path / "pred.npy", pred)
    [result] = score_files("lsp", gt, [tmp_path / "pred.npy"])
    assert result.counts["l_wrist"] == 2 and result.per_joint["l_wrist"] == 50.0
    assert result.per_joint["r_elbow"] == 0.0
    assert result.summary["Wrist"] == 75.0 and result.summary["Elbow"] == 50.0
    assert result.summary["Mean"] == pytest.approx(100.0 * 25 / 28)
    assert list(result.summary) == ["Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean"]


def write_flic_h5(path, part):
    n = len(part)
    with h5py.File(path, "w") as h:
        h["part"] = part
        h["visible"] = np.ones((n, 11))
        h["center"] = np.full((n, 2), 240.0)
        h["scale"] = np.full(n, 2.2)
        h["imgname"] = np.array([b"a.jpg"] * n)
    return str(path)


def test_flic_pck_elbows_wrists_and_the_prediction_torso_quirk(tmp_path):
    part = np.zeros((1, 11, 2))
    part[0] = np.arange(22, dtype=np.float64).reshape(11, 2) * 9 + 100
    part[0, 7] = part[0, 0] + (0.0, 50.0)    # r_hip 50 below l_shoulder: torso 50 -> threshold 10
    gt = write_flic_h5(tmp_path / "valid.h5", part)
    pred = part.copy()
    pred[0, 1] += (12.0, 0.0)                # l_elbow 12 px off: wrong with the GT torso
    pred[0, 7] += (0.0, 20.0)                # predicted r_hip 20 px lower: predicted torso 70 -> threshold 14
    with h5py.File(tmp_path / "pred.h5", "w") as h:
        h["preds"] = pred
    [by_gt] = score_files("flic", gt, [tmp_path / "pred.h5"])
    assert list(by_gt.summary) == ["Elbow", "Wrist", "Mean"]
    assert by_gt.summary["Elbow"] == 50.0 and by_gt.summary["Wrist"] == 100.0
    assert by_gt.summary["Mean"] == pytest.approx(100.0 * 9 / 11)
    [by_pred] = score_files("flic", gt, [tmp_path / "pred.h5"], torso_from="prediction")
    assert by_pred.summary["Elbow"] == 100.0     # 12 <= 0.2 x 70
    assert by_pred.per_joint["r_hip"] == 0.0     # 20 > 14


# ------------------------------------------------------------------------------------------------
# Every prediction layout gives the same numbers
# ------------------------------------------------------------------------------------------------

def test_every_prediction_layout_round_trips_to_the_same_numbers(tmp_path):
    part = mpii_people(6)
    gt = write_mpii_h5(tmp_path / "valid.h5", part, np.full(6, 30.0))
    rng = np.random.default_rng(0)
    one_based = part + rng.normal(0, 12.0, part.shape)    # a mix of hits and misses
    zero_based = one_based - 1.0
    with_scores = np.concatenate([zero_based, np.full((6, 16, 1), 0.9)], axis=2)
    files = {}
    files["list.json"] = lambda p: p.write_text(json.dumps(zero_based.tolist()))
    files["scored.json"] = lambda p: p.write_text(json.dumps(with_scores.tolist()))
    files["dict.json"] = lambda p: p.write_text(json.dumps({"preds": zero_based.tolist()}))
    files["a.npy"] = lambda p: np.save(p, zero_based)
    files["b.npz"] = lambda p: np.savez(p, preds=zero_based)
    files["hrnet.mat"] = lambda p: scipy.io.savemat(p, {"preds": one_based})
    files["toolkit.mat"] = lambda p: scipy.io.savemat(p, {"pos_pred_src": one_based.transpose(1, 2, 0)})

    def keypoints_all(p):
        cells = np.empty((1, 6), dtype=object)
        for i in range(6):
            cells[0, i] = one_based[i][list(MPII_WITHOUT_PELVIS_THORAX)]
        names = np.array([MPII_ABBREVIATIONS[j] for j in MPII_WITHOUT_PELVIS_THORAX], dtype=object).reshape(1, -1)
        scipy.io.savemat(p, {"keypointsAll": cells, "output_joints": names})

    files["detections.mat"] = keypoints_all

    def write_h5(p):
        with h5py.File(p, "w") as h:
            h["preds"] = one_based

    files["hg.h5"] = write_h5
    paths = []
    for name, write in files.items():
        write(tmp_path / name)
        paths.append(tmp_path / name)
    results = score_files("mpii", gt, paths, order_check=False)
    reference = results[0]
    assert 0 < reference.summary["Mean"] < 100
    for result in results[1:]:
        assert result.summary == reference.summary, result.name
        if result.name != "detections":
            assert result.per_joint == reference.per_joint
    # keypointsAll carries 14 named joints: pelvis and thorax are not scored, the mean is unchanged.
    assert results[-2].name == "detections" and np.isnan(results[-2].per_joint["pelvis"])
    # The file type decides the origin; --zero-based / --one-based override it.
    [shifted] = score_files("mpii", gt, [tmp_path / "hrnet.mat"], one_based=False, order_check=False)
    assert shifted.summary != reference.summary
    assert read_predictions(tmp_path / "hg.h5").one_based and not read_predictions(tmp_path / "a.npy").one_based


def test_lsp_prediction_in_joints_mat_layouts(tmp_path):
    xy = lsp_people(3)
    gt = write_lsp_mat(tmp_path / "joints.mat", xy)
    scipy.io.savemat(tmp_path / "lspet_layout.mat", {"joints": np.concatenate([xy, np.ones((3, 14, 1))], 2).transpose(1, 2, 0)})
    results = score_files("lsp", gt, [tmp_path / "joints.mat", tmp_path / "lspet_layout.mat"])
    assert all(r.summary["Mean"] == 100.0 for r in results)


def test_cpm_release_prediction_all_files_for_lsp_and_flic(tmp_path, capsys):
    """CPM's run_benchmark.m saves 'prediction_all' K x 2 x N in Matlab pixels: LSP's 14 joints in LSP order,
    FLIC's 11 less the eyes."""
    xy = lsp_people(2)
    gt = write_lsp_mat(tmp_path / "joints.mat", xy)
    pred = xy.copy()                          # Matlab pixels, like the ground truth
    pred[0, 7] += (0.0, 1e4)                  # r_elbow of person 1 wrong
    pred[1, 11] += (6.0, 8.0)                 # exactly 0.2 x 50 once both are 1-based: correct
    path = tmp_path / "LSP_prediction_model_LSP_6s.mat"
    scipy.io.savemat(path, {"prediction_all": pred.transpose(1, 2, 0)})
    code, out, err = score_cli(capsys, ["--protocol", "lsp", "--gt", gt, "--pred", str(path)])
    assert code == 0, err
    [result] = score_files("lsp", gt, [path])
    assert result.per_joint["r_elbow"] == 50.0 and result.per_joint["l_wrist"] == 100.0
    assert result.summary["Mean"] == pytest.approx(100.0 * 27 / 28)
    assert "prediction_all" in read_predictions(path).layout and read_predictions(path).one_based

    part = np.zeros((2, 11, 2))
    part[:] = np.arange(22, dtype=np.float64).reshape(11, 2) * 9 + 100
    part[:, 7] = part[:, 0] + (0.0, 50.0)     # torso 50 -> threshold 10
    part[1] += 3.0
    flic_gt = write_flic_h5(tmp_path / "valid.h5", part)
    nine = part[:, [0, 1, 2, 3, 4, 5, 6, 7, 10]].copy()
    nine[0, 2] += (11.0, 0.0)                 # l_wrist of person 1 wrong
    scipy.io.savemat(tmp_path / "FLIC_prediction_model_FLIC_4s.mat", {"prediction_all": nine.transpose(1, 2, 0)})
    [flic] = score_files("flic", flic_gt, [tmp_path / "FLIC_prediction_model_FLIC_4s.mat"])
    assert flic.summary["Elbow"] == 100.0 and flic.summary["Wrist"] == 75.0
    assert flic.per_joint["nose"] == 100.0 and np.isnan(flic.per_joint["l_eye"]) and np.isnan(flic.per_joint["r_eye"])

    scipy.io.savemat(tmp_path / "bad.mat", {"prediction_all": np.zeros((14, 3, 2))})
    expect_error(capsys, ["--protocol", "lsp", "--gt", gt, "--pred", str(tmp_path / "bad.mat")], "bad.mat",
                 "'prediction_all' has shape 14 x 3 x 2, expected K x 2 x N")


# ------------------------------------------------------------------------------------------------
# Real files in ../shared/data
# ------------------------------------------------------------------------------------------------

@pytest.fixture
def mpii_annot(shared_data):
    folder = shared_data / "mpii" / "annot"
    if not (folder / "valid.h5").is_file():
        pytest.skip("../shared/data/mpii/annot/valid.h5 not present")
    with h5py.File(folder / "valid.h5", "r") as h:
        return folder, h["part"][()], h["normalize"][()]


def test_real_mpii_gt_as_prediction_and_a_hand_checkable_jitter(mpii_annot, tmp_path, capsys):
    folder, part, head = mpii_annot
    with h5py.File(tmp_path / "gt.h5", "w") as h:
        h["preds"] = part
    # Even people: every joint 0.45 head sizes off (inside 0.5); odd people: 0.55 (outside).
    jitter = part.copy()
    factor = np.where(np.arange(len(part)) % 2 == 0, 0.45, 0.55)
    jitter[:, :, 0] += (factor * head)[:, None]
    np.save(tmp_path / "jitter.npy", jitter - 1.0)
    code, out, err = score_cli(capsys, ["--protocol", "mpii", "--gt", str(folder / "valid.h5"),
                                        "--pred", str(tmp_path / "gt.h5"), "--pred", str(tmp_path / "jitter.npy"),
                                        "--out", str(tmp_path / "out")])
    assert code == 0, err
    assert table_row(out, "gt") == ["100.000"] * 9
    annotated = (part != 0).any(axis=2)
    assert annotated.sum(axis=0).tolist() == OFFICIAL_COUNTS
    keep = np.ones(16, dtype=bool)
    keep[[6, 7]] = False
    even = np.arange(len(part)) % 2 == 0
    expected_mean = 100.0 * annotated[even][:, keep].sum() / annotated[:, keep].sum()
    per_joint = 100.0 * annotated[even].sum(axis=0) / annotated.sum(axis=0)
    row = table_row(out, "jitter")
    assert row[7] == f"{expected_mean:.3f}" and row[8] == "0.000"
    assert row[0] == f"{per_joint[9]:.3f}"                       # Head = head_top
    assert row[1] == f"{(per_joint[13] + per_joint[12]) / 2:.3f}"  # Shoulder = mean of left and right
    # The CSV parses back to the printed numbers.
    with open(tmp_path / "out" / "scores.csv") as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    assert [f"{float(rows['jitter'][c]):.3f}" for c in PCKH_COLUMNS] == row
    assert rows["gt"]["people"] == "2958" and rows["gt"]["metric"] == "PCKh@0.5"
    with open(tmp_path / "out" / "per_joint.csv") as f:
        joints = [r for r in csv.DictReader(f) if r["name"] == "jitter"]
    assert [r["joint"] for r in joints] == list(MPII.keypoints)
    np.testing.assert_allclose([float(r["value"]) for r in joints], per_joint, rtol=1e-12)
    assert [int(r["count"]) for r in joints] == OFFICIAL_COUNTS
    check_curve_png(tmp_path / "out" / "pck_curve.png")


def svg_texts(path):
    """The texts of a chart's SVG (written as <text> elements)."""
    return {" ".join(t.itertext()).strip() for t in ET.parse(path).getroot().iter() if t.tag.endswith("}text")}


def check_curve_png(path, size=(480, 640)):
    image = cv2.imread(str(path))
    assert image is not None and image.shape == (*size, 3)
    coloured = (np.ptp(image.astype(int), axis=2) > 60).sum()   # the curves and legend marks, not grey/black text
    assert coloured > 1000


def test_real_mpii_head_sizes_and_the_detections_mat(mpii_annot, tmp_path):
    """valid.h5's normalize = 0.6 x detections.mat's head-box diagonal: same numbers either way.

    detections.mat also holds a method's predictions (keypointsAll, 14 named joints, 1-based) and the
    release-format ground truth (annolist) with the fractional neck / head-top coordinates valid.h5 truncates.
    """
    folder, _, head = mpii_annot
    detections = folder / "detections.mat"
    [from_h5] = score_files("mpii", folder / "valid.h5", [detections])
    [with_boxes] = score_files("mpii", folder / "valid.h5", [detections], head_boxes=detections)
    gt = load_ground_truth("mpii", detections)
    from_annolist = score_predictions(gt, detections)
    np.testing.assert_allclose(gt.head_size, head, rtol=1e-12)
    assert with_boxes.summary == from_h5.summary
    assert from_h5.summary["Mean"] == pytest.approx(82.316, abs=5e-4)
    for column in PCKH_COLUMNS:
        assert abs(from_annolist.summary[column] - from_h5.summary[column]) < 0.6
    # The same through HRNet's gt_valid.mat layout written from the annolist: identical numbers.
    scipy.io.savemat(tmp_path / "gt_valid.mat", {
        "pos_gt_src": (gt.keypoints[..., :2] + 1).transpose(1, 2, 0),
        "jnt_missing": (gt.keypoints[..., 2] == 0).T.astype(np.float64),
        "headboxes_src": np.stack([np.zeros((2, len(gt))), np.stack([gt.head_size / 0.6, np.zeros(len(gt))])]),
    })
    [from_mat] = score_files("mpii", tmp_path / "gt_valid.mat", [detections])
    for column in PCKH_COLUMNS:
        assert from_mat.summary[column] == pytest.approx(from_annolist.summary[column], abs=1e-9)


def test_real_mpii_json_needs_head_boxes_of_the_same_people(mpii_annot, tmp_path, capsys):
    folder, part, head = mpii_annot
    entries = [{"image": f"{i}.jpg", "center": [100.0, 100.0], "scale": 1.0, "joints": part[i].tolist(),
                "joints_vis": (part[i] != 0).any(axis=1).astype(int).tolist()} for i in range(20)]
    (tmp_path / "valid.json").write_text(json.dumps(entries))
    write_mpii_h5(tmp_path / "boxes.h5", part[:20], head[:20])
    write_mpii_h5(tmp_path / "reversed.h5", part[:20][::-1], head[:20][::-1])
    np.save(tmp_path / "pred.npy", part[:20] - 1.0)
    [result] = score_files("mpii", tmp_path / "valid.json", [tmp_path / "pred.npy"], head_boxes=tmp_path / "boxes.h5")
    assert result.summary["Mean"] == 100.0
    base = ["--protocol", "mpii", "--gt", str(tmp_path / "valid.json"), "--pred", str(tmp_path / "pred.npy")]
    code, _, err = score_cli(capsys, base)
    assert code == 2 and "has no head boxes" in err and "valid.json" in err
    code, _, err = score_cli(capsys, base + ["--head-boxes", str(tmp_path / "reversed.h5")])
    assert code == 2 and "reversed.h5" in err and "same people in the same order" in err
    code, _, err = score_cli(capsys, base + ["--head-boxes", str(folder / "valid.h5")])
    assert code == 2 and "holds 2958 people" in err


def test_real_flic_valid_h5(shared_data, tmp_path):
    path = shared_data / "flic" / "annot" / "valid.h5"
    if not path.is_file():
        pytest.skip("../shared/data/flic/annot/valid.h5 not present")
    with h5py.File(path, "r") as h:
        part = h["part"][()]
    torso = np.linalg.norm(part[:, 0] - part[:, 7], axis=1)
    jitter = part - 1.0
    first = np.arange(len(part)) < 600
    jitter[:, :, 1] += np.where(first, 0.15, 0.25)[:, None] * torso[:, None]   # inside / outside 0.2 torso
    (tmp_path / "jitter.json").write_text(json.dumps({"preds": jitter.tolist()}))
    with h5py.File(tmp_path / "gt.h5", "w") as h:
        h["preds"] = part
    perfect, jittered = score_files("flic", path, [tmp_path / "gt.h5", tmp_path / "jitter.json"])
    assert perfect.summary == {"Elbow": 100.0, "Wrist": 100.0, "Mean": 100.0} and perfect.num_people == 1016
    assert jittered.summary["Elbow"] == pytest.approx(100.0 * 600 / 1016)
    assert jittered.summary["Wrist"] == pytest.approx(100.0 * 600 / 1016)
    assert jittered.per_joint["nose"] == pytest.approx(100.0 * 600 / 1016)


def test_real_lsp_joints_mat_and_subset(shared_data, tmp_path, capsys):
    path = shared_data / "lsp" / "joints.mat"
    if not path.is_file():
        pytest.skip("../shared/data/lsp/joints.mat not present")
    joints = scipy.io.loadmat(path)["joints"].transpose(2, 1, 0)       # N x 14 x 3, 1-based
    torso = np.linalg.norm(joints[:, 9, :2] - joints[:, 2, :2], axis=1)
    pred = joints[:, :, :2] - 1.0
    pred[:500, :, 0] += 1e4                                             # the first half far off
    np.save(tmp_path / "pred.npy", pred)
    [whole] = score_files("lsp", path, [tmp_path / "pred.npy"])
    assert whole.summary["Mean"] == 50.0
    assert any("1000 people" in note and "1001-2000" in note for note in whole.notes)
    # --subset keeps people 501-1000; predictions for the whole file are cut the same way.
    code, out, err = score_cli(capsys, ["--protocol", "lsp", "--gt", str(path), "--pred", str(tmp_path / "pred.npy"),
                                        "--subset", "501-1000"])
    assert code == 0, err
    assert table_row(out, "pred") == ["100.00"] * 8 and "scored: people 501-1000 of 1000" in out
    # A hand-checkable jitter: 0.1 torso (inside 0.2) on every joint.
    near = joints[:, :, :2] - 1.0
    near[:, :, 1] += 0.1 * torso[:, None]
    np.save(tmp_path / "near.npy", near)
    [result] = score_files("lsp", path, [tmp_path / "near.npy"], alpha=0.05)
    assert result.summary["Mean"] == 0.0 and result.metric == "PCK@0.05"
    code, _, err = score_cli(capsys, ["--protocol", "lsp", "--gt", str(path), "--pred", str(tmp_path / "pred.npy"),
                                      "--subset", "1001-2000"])
    assert code == 2 and "holds 1000" in err


def test_real_coco_gt_as_results(shared_data, tmp_path, capsys):
    ann = shared_data / "coco" / "annotations" / "person_keypoints_train2017.json"
    if not ann.is_file():
        pytest.skip("../shared/data/coco annotations not present")
    data = json.loads(ann.read_text())
    results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
               for a in data["annotations"] if not a["iscrowd"] and a["num_keypoints"] > 0]
    (tmp_path / "results.json").write_text(json.dumps(results))
    code, out, err = score_cli(capsys, ["--protocol", "coco", "--gt", str(ann), "--pred", str(tmp_path / "results.json"),
                                        "--out", str(tmp_path / "out")])
    assert code == 0, err
    assert table_row(out, "results") == ["1.000"] * 10
    with open(tmp_path / "out" / "scores.csv") as f:
        [row] = list(csv.DictReader(f))
    assert float(row["AP"]) == 1.0 and not (tmp_path / "out" / "pck_curve.png").exists()
    short = [dict(r, keypoints=r["keypoints"][:42]) for r in results]
    (tmp_path / "short.json").write_text(json.dumps(short))
    code, _, err = score_cli(capsys, ["--protocol", "coco", "--gt", str(ann), "--pred", str(tmp_path / "short.json")])
    assert code == 2 and "short.json" in err and "14 keypoints" in err
    unknown = [dict(results[0], image_id=123456789)]
    (tmp_path / "unknown.json").write_text(json.dumps(unknown))
    code, _, err = score_cli(capsys, ["--protocol", "coco", "--gt", str(ann), "--pred", str(tmp_path / "unknown.json")])
    assert code == 2 and "unknown.json" in err and "123456789" in err


# ------------------------------------------------------------------------------------------------
# Bad input: one line, exit status 2, the file and the mismatch named
# ------------------------------------------------------------------------------------------------

@pytest.fixture
def mpii_case(tmp_path):
    part = mpii_people(8)
    gt = write_mpii_h5(tmp_path / "valid.h5", part, np.full(8, 30.0))
    return tmp_path, gt, part


def expect_error(capsys, argv, *fragments):
    code, out, err = score_cli(capsys, argv)
    assert code == 2, out
    line = err.strip()
    assert "\n" not in line and line.startswith("posekit: error:")
    for fragment in fragments:
        assert fragment in line, line


def test_error_wrong_joint_count(mpii_case, capsys):
    tmp_path, gt, part = mpii_case
    np.save(tmp_path / "fourteen.npy", part[:, list(MPII_WITHOUT_PELVIS_THORAX)] - 1)
    expect_error(capsys, ["--protocol", "mpii", "--gt", gt, "--pred", str(tmp_path / "fourteen.npy")],
                 "fourteen.npy", "14 joints per person, MPII has 16", "--joint-ids 0,1,2,3,4,5,8,9")
    # With the ids the 14 joints are scored and pelvis/thorax are left out.
    code, out, _ = score_cli(capsys, ["--protocol", "mpii", "--gt", gt, "--pred", str(tmp_path / "fourteen.npy"),
                                      "--joint-ids", ",".join(map(str, MPII_WITHOUT_PELVIS_THORAX))])
    assert code == 0 and table_row(out, "fourteen") == ["100.000"] * 9 and "not scored: pelvis, thorax" in out


def test_error_wrong_people_count(mpii_case, capsys):
    tmp_path, gt, part = mpii_case
    np.save(tmp_path / "five.npy", part[:5] - 1)
    expect_error(capsys, ["--protocol", "mpii", "--gt", gt, "--pred", str(tmp_path / "five.npy")],
                 "five.npy", "holds 5 predictions", "8 people")


def test_error_nan_coordinates(mpii_case, capsys):
    tmp_path, gt, part = mpii_case
    pred = part - 1
    pred[3, 11, 1] = np.nan
    np.save(tmp_path / "nan.npy", pred)
    expect_error(capsys, ["--protocol", "mpii", "--gt", gt, "--pred", str(tmp_path / "nan.npy")],
                 "nan.npy", "NaN", "person 4", "r_elbow")


def test_error_left_right_swapped_order(mpii_case, capsys):
    tmp_path, gt, part = mpii_case
    np.save(tmp_path / "swapped.npy", part[:, MPII.flip_permutation()] - 1)
    expect_error(capsys, ["--protocol", "mpii", "--gt", gt, "--pred", str(tmp_path / "swapped.npy")],
                 "swapped.npy", "joint order", "r_ankle -> l_ankle", "--no-order-check")
    code, out, _ = score_cli(capsys, ["--protocol", "mpii", "--gt", gt, "--pred", str(tmp_path / "swapped.npy"),
                                      "--no-order-check"])
    assert code == 0 and table_row(out, "swapped")[-2] != "100.000"


def test_error_lsp_order_given_another_datasets_14_joints(tmp_path, capsys):
    xy = lsp_people(10)
    gt = write_lsp_mat(tmp_path / "joints.mat", xy)
    cpm_order = [0, 1, 2, 3, 4, 5, 12, 13, 6, 7, 8, 9, 10, 11]       # CPM's MPII-14 order holding LSP joints
    np.save(tmp_path / "mpii_order.npy", xy[:, cpm_order] - 1)
    expect_error(capsys, ["--protocol", "lsp", "--gt", gt, "--pred", str(tmp_path / "mpii_order.npy")],
                 "mpii_order.npy", "joint order", "LSP order")


def test_error_ground_truth_of_another_protocol(tmp_path, capsys):
    lsp_gt = write_lsp_mat(tmp_path / "joints.mat", lsp_people(2))
    np.save(tmp_path / "pred.npy", np.zeros((2, 16, 2)))
    expect_error(capsys, ["--protocol", "mpii", "--gt", lsp_gt, "--pred", str(tmp_path / "pred.npy")],
                 "joints.mat", "LSP joints.mat", "not MPII ground truth", "--protocol lsp")
    mpii_gt = write_mpii_h5(tmp_path / "valid.h5", mpii_people(2), [10.0, 10.0])
    expect_error(capsys, ["--protocol", "flic", "--gt", mpii_gt, "--pred", str(tmp_path / "pred.npy")],
                 "valid.h5", "MPII annotation h5", "--protocol mpii")
    flic_gt = write_flic_h5(tmp_path / "flic.h5", np.ones((2, 11, 2)))
    expect_error(capsys, ["--protocol", "mpii", "--gt", flic_gt, "--pred", str(tmp_path / "pred.npy")],
                 "flic.h5", "FLIC", "--protocol flic")
    expect_error(capsys, ["--protocol", "coco", "--gt", mpii_gt, "--pred", str(tmp_path / "pred.npy")],
                 "valid.h5", "not COCO ground truth")


def test_error_missing_head_boxes(tmp_path, capsys):
    (tmp_path / "valid.json").write_text(json.dumps([{"image": "a.jpg", "center": [5, 5], "scale": 1.0,
                                                      "joints": [[3.0, 4.0]] * 16, "joints_vis": [1] * 16}]))
    np.save(tmp_path / "pred.npy", np.zeros((1, 16, 2)))
    expect_error(capsys, ["--protocol", "mpii", "--gt", str(tmp_path / "valid.json"), "--pred", str(tmp_path / "pred.npy")],
                 "valid.json", "no head boxes", "--head-boxes")
    # An annolist .mat whose person has no head box.
    rect = np.zeros((1, 1), dtype=[("annopoints", "O")])
    rect[0, 0]["annopoints"] = np.zeros((0, 0))
    annolist = np.zeros((1, 1), dtype=[("annorect", "O")])
    annolist[0, 0]["annorect"] = rect
    scipy.io.savemat(tmp_path / "noboxes.mat", {"annolist": annolist})
    expect_error(capsys, ["--protocol", "mpii", "--gt", str(tmp_path / "noboxes.mat"), "--pred", str(tmp_path / "pred.npy")],
                 "noboxes.mat", "no head box")


def _coco_gt(**changes):
    ann = {"id": 11, "image_id": 7, "category_id": 1, "iscrowd": 0, "area": 1200.0, "bbox": [10, 20, 30, 40],
           "keypoints": [15, 25, 2] * 17, "num_keypoints": 17}
    ann.update(changes)
    return {"images": [{"id": 7, "file_name": "a.jpg", "width": 100, "height": 80}], "annotations": [ann],
            "categories": [{"id": 1, "name": "person", "keypoints": [f"joint{k}" for k in range(17)]}]}


@pytest.mark.parametrize("changes, problem", [
    ({"keypoints": ["15", "25", "2"] * 17}, "annotation 11: 'keypoints' holds a value that is not a number: '15'"),
    ({"keypoints": [math.nan, 25, 2] + [15, 25, 2] * 16}, "annotation 11: 'keypoints' holds a value that is not a finite"),
    ({"bbox": [10, 20, math.inf, 40]}, "annotation 11: 'bbox' holds a value that is not a finite number"),
    ({"bbox": [10, 20, -30, 40]}, "annotation 11: 'bbox' has a negative size"),
    ({"bbox": [10, 20, 0, 40]}, "annotation 11: 'bbox' has zero size 0 x 40"),
    ({"keypoints": [15, 25, 2] * 16}, "annotation 11: 'keypoints' has 48 values, expected 51"),
    ({"bbox": [10, 20, 30]}, "annotation 11: 'bbox' has 3 values, expected 4"),
    ({"area": "big"}, "annotation 11: 'area' must be a finite number >= 0"),
    ({"num_keypoints": "17"}, "annotation 11: 'num_keypoints' must be an integer >= 0"),
])
def test_score_and_the_readers_give_one_verdict_on_corrupt_coco_ground_truth(tmp_path, capsys, changes, problem):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(_coco_gt(**changes)))     # Python's json writes NaN / Infinity and reads them back
    results = [{"image_id": 7, "category_id": 1, "keypoints": [15, 25, 2] * 17, "score": 1.0}]
    (tmp_path / "res.json").write_text(json.dumps(results))
    expect_error(capsys, ["--protocol", "coco", "--gt", str(gt), "--pred", str(tmp_path / "res.json")],
                 f"{gt}: {problem}")
    with pytest.raises(DataError) as reader:
        read_coco_keypoints(gt, tmp_path, train=False)
    assert str(reader.value).startswith(f"{gt}: {problem}")
    gt.write_text(json.dumps(_coco_gt()))
    assert score_cli(capsys, ["--protocol", "coco", "--gt", str(gt), "--pred", str(tmp_path / "res.json")])[0] == 0


def test_error_unreadable_and_unknown_prediction_files(mpii_case, capsys):
    tmp_path, gt, _ = mpii_case
    (tmp_path / "broken.json").write_text("[[1, 2], [3")
    expect_error(capsys, ["--protocol", "mpii", "--gt", gt, "--pred", str(tmp_path / "broken.json")], "broken.json",
                 "not valid JSON")
    scipy.io.savemat(tmp_path / "other.mat", {"something": np.zeros(3)})
    expect_error(capsys, ["--protocol", "mpii", "--gt", gt, "--pred", str(tmp_path / "other.mat")], "other.mat",
                 "'preds'", "keys: something")
    (tmp_path / "preds.txt").write_text("1 2")
    expect_error(capsys, ["--protocol", "mpii", "--gt", gt, "--pred", str(tmp_path / "preds.txt")], "preds.txt",
                 "unknown predictions format")
    (tmp_path / "coco.json").write_text(json.dumps([{"image_id": 1, "keypoints": [0] * 51, "score": 1}]))
    expect_error(capsys, ["--protocol", "mpii", "--gt", gt, "--pred", str(tmp_path / "coco.json")], "coco.json",
                 "--protocol coco")
    expect_error(capsys, ["--protocol", "mpii", "--gt", gt, "--pred", str(tmp_path / "absent.npy")], "absent.npy",
                 "not found")


# ------------------------------------------------------------------------------------------------
# Reports
# ------------------------------------------------------------------------------------------------

def test_report_files_several_predictions_one_curve_each(mpii_case, capsys):
    tmp_path, gt, part = mpii_case
    rng = np.random.default_rng(1)
    for i, sigma in enumerate((2.0, 10.0)):
        np.save(tmp_path / f"p{i}.npy", part - 1 + rng.normal(0, sigma, part.shape))
    out_dir = tmp_path / "report"
    code, out, err = score_cli(capsys, ["--protocol", "mpii", "--gt", gt, "--pred", str(tmp_path / "p0.npy"),
                                        "--pred", str(tmp_path / "p1.npy"), "--name", "sharp", "--name", "blurred",
                                        "--out", str(out_dir)])
    assert code == 0, err
    assert out.splitlines()[1] == "| Arch | " + " | ".join(PCKH_COLUMNS) + " |"     # HRNet's header
    names = {p.name for p in out_dir.iterdir()}
    assert names >= {"scores.md", "scores.csv", "scores.json", "per_joint.csv", "pck_curve.png", "pck_curve.csv"}
    assert names >= {"pck_curve.svg", "per_joint.png", "per_joint.svg"}
    curve_texts, bar_texts = svg_texts(out_dir / "pck_curve.svg"), svg_texts(out_dir / "per_joint.svg")
    assert {"sharp", "blurred", "Normalized distance (head sizes)", "Detection rate (%)",
            "MPII PCKh (mean over joints)"} <= curve_texts
    assert {"sharp", "blurred", "PCKh@0.5 (%)", "MPII PCKh@0.5 per joint"} <= bar_texts
    assert set(MPII.keypoints) <= bar_texts              # one bar group per joint
    assert cv2.imread(str(out_dir / "per_joint.png")).shape == (420, 800, 3)
    markdown = (out_dir / "scores.md").read_text()
    assert "| sharp |" in markdown and "| blurred |" in markdown and "## Per joint" in markdown
    with open(out_dir / "pck_curve.csv") as f:
        series = {(r["name"], r["series"]) for r in csv.DictReader(f)}
    assert ("sharp", "Mean") in series and ("blurred", "Head") in series
    saved = json.loads((out_dir / "scores.json").read_text())
    assert [r["name"] for r in saved] == ["sharp", "blurred"] and len(saved[0]["curve_thresholds"]) == 51
    check_curve_png(out_dir / "pck_curve.png")
    # The curve ends at PCKh@0.5 and starts at 0.
    mean = saved[0]["curve"]["Mean"]
    assert mean[-1] == pytest.approx(saved[0]["summary"]["Mean"]) and mean[0] <= mean[-1]


def test_curve_image_size_and_a_single_result_draws_joint_groups(tmp_path):
    rng = np.random.default_rng(2)
    gt = rng.uniform(0, 200, (30, 14, 2))
    pred = gt + rng.normal(0, 8, gt.shape)
    result = score_pck_arrays(pred, gt, np.ones((30, 14)), LSP, name="model")
    assert list(result.curve) == ["Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean"]
    assert result.curve_thresholds[0] == 0.0 and result.curve_thresholds[-1] == pytest.approx(0.2)
    image = plot_pck_curve([result], tmp_path / "curve.png", size=(300, 400))
    assert image.shape == (300, 400, 3)
    check_curve_png(tmp_path / "curve.png", size=(300, 400))
    plot_pck_curve([result], tmp_path / "curve.svg")
    texts = svg_texts(tmp_path / "curve.svg")
    assert {"Head", "Ankle", "Mean", "LSP PCK", "Normalized distance (torso lengths)"} <= texts
    assert "| Predictions | Head |" in format_summary_table([result])


def test_eval_result_from_per_person_arrays_and_from_the_metrics_alone(tmp_path):
    rng = np.random.default_rng(3)
    gt = np.concatenate([rng.uniform(0, 200, (20, 14, 2)), np.full((20, 14, 1), 2.0)], axis=2)
    pred = gt[..., :2] + rng.normal(0, 10, (20, 14, 2))
    full = eval_result("pck", {}, SYNTHETIC, "hrnet", samples={"pred": pred, "gt": gt}, alpha=0.2)
    assert list(full.summary) == ["Head", "Neck", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean"]
    values = {"pck": full.summary["Mean"] / 100, "per_joint": {j: v / 100 for j, v in full.per_joint.items()},
              "people": 20}
    light = eval_result("pck", values, SYNTHETIC, "hrnet", alpha=0.2)
    for key in full.summary:
        assert light.summary[key] == pytest.approx(full.summary[key])
    assert light.curve_thresholds is None
    written = {p.name for p in write_report([light], tmp_path / "light")}
    assert "pck_curve.png" not in written and "scores.csv" in written


def test_posekit_eval_writes_the_table_and_curve(tmp_path, monkeypatch, capsys):
    """cmd_eval on an MPII config, the model and inference replaced: table (+ curve when given arrays)."""
    import torch

    import posekit.build as build
    import posekit.evaluation.evaluate as evaluate

    part = mpii_people(5)
    annotated = np.ones((5, 16), dtype=bool)
    metrics_out = {c: 100.0 for c in PCKH_COLUMNS}
    metrics_out["table"] = "| Head |"
    for with_samples in (False, True):
        returned = dict(metrics_out)
        if with_samples:
            returned["samples"] = {"pred": part, "gt": part, "annotated": annotated, "head_size": np.full(5, 20.0)}
        monkeypatch.setattr(build, "build_model", lambda cfg: torch.nn.Identity())
        monkeypatch.setattr(build, "load_records", lambda cfg, split: [])
        monkeypatch.setattr(evaluate, "evaluate_model", lambda *a, **k: dict(returned))
        out_dir = tmp_path / ("with" if with_samples else "without")
        config = Path(__file__).resolve().parents[2] / "configs" / "hrnet-w32_mpii_256x256.yaml"
        code = main(["eval", str(config), "--weights", "dummy.safetensors", "--output-dir", str(out_dir),
                     "--json", str(tmp_path / "metrics.json"), "--no-progress"])
        assert code == 0
        assert "samples" not in json.loads((tmp_path / "metrics.json").read_text())
        with open(out_dir / "scores.csv") as f:
            [row] = list(csv.DictReader(f))
        assert float(row["Mean"]) == 100.0 and row["metric"] == "PCKh@0.5"
        assert (out_dir / "pck_curve.png").exists() == with_samples
        assert (out_dir / "pck_curve.svg").exists() == with_samples
        # The per-joint bars come with the per-joint values (the samples here; the table alone has joint groups).
        assert (out_dir / "per_joint.csv").exists() == with_samples
        assert (out_dir / "per_joint.png").exists() == (out_dir / "per_joint.svg").exists() == with_samples
    capsys.readouterr()


def test_eval_report_prints_coco_lines_and_writes_strict_json(tmp_path):
    from posekit.config import config_from_dict
    from posekit.evaluation.report import format_metrics, write_eval_report

    assert format_metrics({"AP": 0.5, "boxes": "ground truth"}) == f"{'AP':<14} 0.5000\n{'boxes':<14} ground truth"
    cfg = config_from_dict({"test": {"metric": "coco"}, "output_dir": str(tmp_path / "run")})
    metrics = {"AP": float("nan"), "samples": {"pred": np.zeros((1, 17, 2))}}
    assert write_eval_report(cfg, metrics, json_path=tmp_path / "m.json") == []    # COCO: no PCK report
    assert json.loads((tmp_path / "m.json").read_text()) == {"AP": None}
    assert "samples" in metrics and not (tmp_path / "run").exists()
