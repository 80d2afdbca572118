"""Scoring saved predictions against ground truth without a model (``posekit score``).

Takes the ground truth of one protocol (MPII PCKh, LSP and FLIC torso PCK, COCO keypoint AP; read by
:mod:`posekit.evaluation.ground_truth`) and a predictions file in one of the layouts of ``docs/scoring.md``
(read by :mod:`posekit.evaluation.prediction_files`), checks that both describe the same people and joints
(count, order, finite coordinates), and returns a :class:`ScoreResult`: the summary columns the papers
print, per-joint values and the PCK curve. :mod:`posekit.evaluation.report` writes it as Markdown, CSV and a
PNG; the arithmetic itself is :mod:`posekit.evaluation.metrics`.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import metrics
from .ground_truth import (PROTOCOL_SKELETONS, GroundTruth, detect_ground_truth, load_ground_truth, parse_subset,
                           refuse_other_protocol)
from .prediction_files import CPM_FLIC_JOINTS, PredictionFile, read_predictions
from ..data.mpii import MPII_ABBREVIATIONS, mpii_joint_index
from ..errors import ConfigError, DataError
from ..fileio import require_file
from ..skeletons import FLIC, LSP, MPII, Skeleton

PathLike = Union[str, "os.PathLike[str]"]

PROTOCOLS: Tuple[str, ...] = ("mpii", "lsp", "flic", "coco")
# The reported threshold of each protocol: PCKh@0.5 (MPII), PCK@0.2 (LSP, FLIC).
DEFAULT_ALPHA: Dict[str, float] = {"mpii": 0.5, "lsp": 0.2, "flic": 0.2}
# The x range of the PCK curves, as the CPM paper's figures (MPII 0-0.5; LSP and FLIC 0-0.2), in steps of 0.01.
CURVE_MAX: Dict[str, float] = {"mpii": 0.5, "lsp": 0.2, "flic": 0.2}
CURVE_STEP = 0.01
SUMMARY_DIGITS: Dict[str, int] = {"mpii": 3, "coco": 3}   # as HRNet prints; PCK tables get 2

# CPM's 14 MPII parts (spec 2.8): MPII without pelvis and thorax.
MPII_WITHOUT_PELVIS_THORAX: Tuple[int, ...] = (0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15)

# Summary columns of the PCK tables: a name and the joints whose PCK values are averaged.
# LSP: the columns of the papers' LSP tables; posekit's Head averages neck and head top.
LSP_GROUPS: Tuple[Tuple[str, Tuple[int, ...]], ...] = (
    ("Head", (12, 13)), ("Shoulder", (8, 9)), ("Elbow", (7, 10)), ("Wrist", (6, 11)),
    ("Hip", (2, 3)), ("Knee", (1, 4)), ("Ankle", (0, 5)),
)
# FLIC: the papers report elbows and wrists (MODEC, CPM Table 4).
FLIC_GROUPS: Tuple[Tuple[str, Tuple[int, ...]], ...] = (("Elbow", (1, 4)), ("Wrist", (2, 5)))

# A prediction order is refused when some reordering of its joints fits the ground truth this much better.
ORDER_CHECK_RATIO = 0.5
ORDER_CHECK_MIN_PEOPLE = 5


@dataclass
class ScoreResult:
    """The scores of one predictions file (or one evaluated model) under one protocol.

    ``summary``: the table columns in order (PCK protocols in percent, COCO as pycocotools' fractions);
    ``per_joint`` and ``counts``: per joint of the dataset (percent; number of ground-truth joints
    counted); ``curve``: series name -> detection rate (percent) at each of ``curve_thresholds``;
    ``notes``: what was scored (files, people, coordinate origin, joints left out).
    """

    name: str
    protocol: str
    metric: str
    summary: Dict[str, float]
    per_joint: Dict[str, float] = field(default_factory=dict)
    counts: Dict[str, int] = field(default_factory=dict)
    curve_thresholds: Optional[np.ndarray] = None
    curve: Dict[str, np.ndarray] = field(default_factory=dict)
    num_people: int = 0
    notes: List[str] = field(default_factory=list)
    digits: int = 2

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-safe values (NaN -> None)."""
        def clean(value: Any) -> Any:
            if isinstance(value, dict):
                return {str(k): clean(v) for k, v in value.items()}
            if isinstance(value, (list, tuple, np.ndarray)):
                return [clean(v) for v in value]
            if isinstance(value, (np.integer,)):
                return int(value)
            if isinstance(value, (float, np.floating)):
                return None if not math.isfinite(float(value)) else float(value)
            return value

        return clean({
            "name": self.name, "protocol": self.protocol, "metric": self.metric, "summary": self.summary,
            "per_joint": self.per_joint, "counts": self.counts, "num_people": self.num_people,
            "curve_thresholds": [] if self.curve_thresholds is None else self.curve_thresholds,
            "curve": self.curve, "notes": self.notes,
        })


# ----------------------------------------------------------------------------------------------
# Scoring arrays
# ----------------------------------------------------------------------------------------------

def curve_thresholds(maximum: float, step: float = CURVE_STEP) -> np.ndarray:
    """0, step, ..., maximum (rounded so that 0.07 is 0.07): the x values of a PCK curve."""
    count = int(math.floor(maximum / step + 1e-9)) + 1
    values = np.round(np.arange(count) * step, 10)
    if values[-1] < maximum - 1e-12:
        values = np.append(values, maximum)
    return values


def pck_groups(skeleton: Skeleton) -> Tuple[Tuple[str, Tuple[int, ...]], ...]:
    """The summary columns of a PCK table: LSP's and FLIC's as the papers, else joints paired by name (l_/r_)."""
    base = skeleton.name.split("[")[0]
    if base == "lsp" and skeleton.num_keypoints == LSP.num_keypoints:
        return LSP_GROUPS
    if base == "flic" and skeleton.num_keypoints == FLIC.num_keypoints:
        return FLIC_GROUPS
    groups: Dict[str, List[int]] = {}
    for index, name in enumerate(skeleton.keypoints):
        stem = re.sub(r"^(l|r|left|right)_", "", name)
        groups.setdefault(stem.replace("_", " ").capitalize(), []).append(index)
    return tuple((name, tuple(joints)) for name, joints in groups.items())


def _group_values(per_joint: np.ndarray, groups: Sequence[Tuple[str, Sequence[int]]]) -> Dict[str, np.ndarray]:
    """Mean of each group's per-joint values along the last axis (NaN where one of them is NaN, as HRNet)."""
    return {name: np.mean(per_joint[..., list(joints)], axis=-1) for name, joints in groups}


def score_pckh_arrays(
    pred: np.ndarray,
    gt: np.ndarray,
    annotated: np.ndarray,
    head_size: np.ndarray,
    name: str = "predictions",
    threshold: float = 0.5,
    low_threshold: float = 0.1,
    curve_max: float = CURVE_MAX["mpii"],
) -> ScoreResult:
    """MPII PCKh of N x 16 x 2 arrays (:func:`posekit.evaluation.metrics.pckh`) as a :class:`ScoreResult` with its curve.

    Summary columns as HRNet prints: Head, Shoulder, Elbow, Wrist, Hip, Knee, Ankle, Mean, Mean@0.1
    (``low_threshold``; HRNet's own code uses 0.11). Curve series: those groups and Mean, at
    0, 0.01, ..., max(curve_max, threshold).
    """
    result = metrics.pckh(pred, gt, annotated, head_size, threshold=threshold, low_threshold=low_threshold)
    thresholds = curve_thresholds(max(curve_max, threshold))
    curve = metrics.pckh_curve(pred, gt, annotated, head_size, thresholds=thresholds)
    series = _group_values(curve["per_joint"], metrics.PCKH_GROUPS)
    series["Mean"] = curve["mean"]
    return ScoreResult(
        name=name, protocol="mpii", metric=f"PCKh@{threshold:g}",
        summary={column: float(result[column]) for column in metrics.PCKH_TABLE_COLUMNS},
        per_joint={j: float(v) for j, v in zip(MPII.keypoints, result["per_joint"])},
        counts={j: int(c) for j, c in zip(MPII.keypoints, result["counts"])},
        curve_thresholds=thresholds, curve=series, num_people=int(result["num_people"]),
        notes=[f"PCKh: correct where distance / head size <= {threshold:g} (head size = 0.6 x head-box diagonal); "
               "a joint counts where annotated (occluded or not); Mean and Mean@0.1 weight the joints by their "
               "counts and leave out pelvis and thorax" + (f"; Mean@0.1 computed at {low_threshold:g}"
                                                           if abs(low_threshold - 0.1) > 1e-12 else "")],
        digits=SUMMARY_DIGITS["mpii"],
    )


def score_pck_arrays(
    pred: np.ndarray,
    gt: np.ndarray,
    visible: np.ndarray,
    skeleton: Skeleton,
    name: str = "predictions",
    alpha: float = 0.2,
    normaliser_from: str = "gt",
    curve_max: float = 0.2,
    protocol: Optional[str] = None,
) -> ScoreResult:
    """Torso PCK of N x K x 2 arrays (:func:`posekit.evaluation.metrics.pck`) as a :class:`ScoreResult` with its curve.

    The torso is ``skeleton.torso`` (left shoulder - right hip for LSP and FLIC), measured on the ground
    truth (``normaliser_from="prediction"``: FLIC's release-benchmark quirk). Summary columns: the
    groups of :func:`pck_groups` and Mean (all counted joints); values in percent.
    """
    if skeleton.torso is None:
        raise ConfigError(f"keypoint set {skeleton.name!r} has no torso joints for PCK")
    if protocol is None:
        base = skeleton.name.split("[")[0]
        protocol = base if base in ("lsp", "flic") else "pck"
    groups = pck_groups(skeleton)
    result = metrics.pck(pred, gt, visible, skeleton.torso, alpha=alpha, normaliser_from=normaliser_from)
    thresholds = curve_thresholds(max(curve_max, alpha))
    curve = metrics.pck_curve(pred, gt, visible, skeleton.torso, thresholds, normaliser_from=normaliser_from)
    per_joint = 100.0 * result["per_joint"]
    summary = {k: float(v) for k, v in _group_values(per_joint, groups).items()}
    summary["Mean"] = 100.0 * float(result["mean"])
    series = _group_values(100.0 * curve["per_joint"], groups)
    series["Mean"] = 100.0 * curve["mean"]
    a, b = skeleton.torso
    torso = f"||{skeleton.keypoints[a]} - {skeleton.keypoints[b]}|| of the {'prediction' if normaliser_from == 'prediction' else 'ground truth'}"
    notes = [f"PCK: correct where distance / torso <= {alpha:g}, torso = {torso}; every labelled joint counts "
             "(occluded or not); Mean = all counted joints"]
    averaged = [f"{name} = " + " + ".join(skeleton.keypoints[j] for j in joints) for name, joints in groups
                if len(joints) > 1 or name.lower() != skeleton.keypoints[joints[0]]]
    if averaged:
        notes.append("columns: " + "; ".join(averaged) + " (means of the joints' PCK)")
    if result["excluded_people"]:
        notes.append(f"{result['excluded_people']} people without a measurable torso left out")
    return ScoreResult(
        name=name, protocol=protocol, metric=f"PCK@{alpha:g}", summary=summary,
        per_joint={j: float(v) for j, v in zip(skeleton.keypoints, per_joint)},
        counts={j: int(c) for j, c in zip(skeleton.keypoints, result["counts"])},
        curve_thresholds=thresholds, curve=series, num_people=int(result["num_people"]),
        notes=notes, digits=SUMMARY_DIGITS.get(protocol, 2),
    )


# ----------------------------------------------------------------------------------------------
# Scoring a predictions file
# ----------------------------------------------------------------------------------------------

def _joint_columns(pf: PredictionFile, gt: GroundTruth, joint_ids: Optional[Sequence[int]]) -> np.ndarray:
    """For each stored joint column, its index in the dataset's order."""
    skeleton, stored = gt.skeleton, pf.coords.shape[1]
    if pf.joint_names is not None:
        if joint_ids is not None:
            raise ConfigError(f"{pf.path} names its joints ({pf.names_from}): --joint-ids is not needed")
        if len(pf.joint_names) != stored:
            raise DataError(f"{pf.names_from} names {len(pf.joint_names)} joints, the predictions hold {stored}", pf.path)
        if gt.protocol == "mpii":
            columns = [mpii_joint_index(n, pf.path, "output_joints") for n in pf.joint_names]
        else:
            unknown = [n for n in pf.joint_names if n not in skeleton.keypoints]
            if unknown:
                raise DataError(f"{pf.names_from} names {unknown[0]!r}, not a {skeleton.name.upper()} joint "
                                f"({', '.join(skeleton.keypoints)})", pf.path)
            columns = [skeleton.keypoints.index(n) for n in pf.joint_names]
    elif joint_ids is not None:
        columns = [int(i) for i in joint_ids]
        if len(columns) != stored:
            raise DataError(f"holds {stored} joints per person but --joint-ids lists {len(columns)}", pf.path)
        if not all(0 <= c < skeleton.num_keypoints for c in columns):
            raise ConfigError(f"--joint-ids must be {skeleton.name.upper()} joint indices 0-{skeleton.num_keypoints - 1}")
    else:
        if stored != skeleton.num_keypoints:
            hint = ""
            if gt.protocol == "mpii" and stored == len(MPII_WITHOUT_PELVIS_THORAX):
                hint = ("; for MPII's joints without pelvis and thorax (CPM's 14) pass --joint-ids "
                        + ",".join(map(str, MPII_WITHOUT_PELVIS_THORAX)))
            raise DataError(f"holds {stored} joints per person, {gt.protocol.upper()} has {skeleton.num_keypoints} "
                            f"({', '.join(skeleton.keypoints)}){hint}", pf.path)
        columns = list(range(stored))
    if len(set(columns)) != len(columns):
        raise DataError("two joint columns map to the same joint", pf.path)
    return np.asarray(columns, dtype=np.int64)


def _select_people(coords: np.ndarray, gt: GroundTruth, path: str) -> np.ndarray:
    count, wanted = len(coords), len(gt)
    if count == wanted:
        return coords
    subset = gt.positions is not None and wanted != gt.file_count
    if subset and count == gt.file_count:
        # One row per person of the whole file: keep the rows of the --subset.
        return coords[gt.positions - 1]
    hint = ""
    if gt.protocol == "lsp" and not subset and gt.file_count == 2000 and count == 1000:
        hint = "; the standard LSP test half is --subset 1001-2000"
    elif subset:
        hint = f" (--subset keeps {wanted} of the file's {gt.file_count})"
    raise DataError(f"holds {count} predictions, the ground truth {gt.path} {wanted} people{hint}", path)


def _check_finite(coords: np.ndarray, skeleton_names: Sequence[str], path: str, rows: np.ndarray) -> None:
    bad = ~np.isfinite(coords).all(axis=2)
    if bad.any():
        person, column = (int(v) for v in np.argwhere(bad)[0])
        raise DataError(f"NaN or infinite coordinates in {int(bad.sum())} predicted joints (first: person "
                        f"{int(rows[person])}, joint {skeleton_names[column]})", path)


def check_joint_order(
    pred: np.ndarray,
    gt: np.ndarray,
    counted: np.ndarray,
    normaliser: np.ndarray,
    skeleton: Skeleton,
    path: str,
    unit: str,
) -> None:
    """Refuse predictions whose joints fit the ground truth far better in another order (a swapped left/right,
    another dataset's order): the best one-to-one reassignment of predicted to ground-truth joints, by median
    normalised distance, must not halve the total of the order as given.
    """
    usable = np.isfinite(normaliser) & (normaliser > 0)
    joints = np.flatnonzero(counted[usable].sum(axis=0) >= ORDER_CHECK_MIN_PEOPLE)
    if usable.sum() < ORDER_CHECK_MIN_PEOPLE or len(joints) < 2:
        return
    from scipy.optimize import linear_sum_assignment

    p, g, c, norm = pred[usable][:, joints], gt[usable][:, joints], counted[usable][:, joints], normaliser[usable]
    distance = np.linalg.norm(p[:, :, None, :] - g[:, None, :, :], axis=3) / norm[:, None, None]
    distance = np.where(c[:, None, :], distance, np.nan)
    predicted_any = c.any(axis=1)  # predicted joints are compared on people with any counted joint
    with np.errstate(all="ignore"):
        cost = np.nanmedian(distance[predicted_any], axis=0)
    cost = np.where(np.isfinite(cost), cost, 1e6)
    as_given = float(np.trace(cost))
    rows, cols = linear_sum_assignment(cost)
    best = float(cost[rows, cols].sum())
    if as_given > 0 and best < ORDER_CHECK_RATIO * as_given:
        moved = [(skeleton.keypoints[joints[r]], skeleton.keypoints[joints[k]]) for r, k in zip(rows, cols) if r != k]
        shown = ", ".join(f"{a} -> {b}" for a, b in moved[:4]) + (", ..." if len(moved) > 4 else "")
        raise DataError(f"joint order: the predictions fit the ground truth far better reordered ({shown}; median "
                        f"distance {best / len(rows):.2f} vs {as_given / len(rows):.2f} {unit} as given): save them in "
                        f"{skeleton.name.upper()} order (docs/scoring.md) or pass --no-order-check", path)


def score_predictions(
    gt: GroundTruth,
    pred_path: PathLike,
    name: Optional[str] = None,
    alpha: Optional[float] = None,
    one_based: Optional[bool] = None,
    joint_ids: Optional[Sequence[int]] = None,
    torso_from: str = "gt",
    order_check: bool = True,
    low_threshold: float = 0.1,
) -> ScoreResult:
    """Score one predictions file against loaded ground truth (mpii, lsp or flic).

    ``one_based`` None: the file type's convention (.mat/.h5 1-based, .json/.npy/.npz 0-based);
    ``joint_ids``: the dataset joint of each stored column (joints not predicted are not scored);
    ``torso_from``: "gt" or "prediction" (FLIC's release-benchmark quirk); ``low_threshold``: the
    threshold of MPII's Mean@0.1 column. Raises :class:`DataError` naming the predictions file for a
    joint count, joint order or people count that does not fit, and for NaN coordinates.
    """
    pf = read_predictions(pred_path)
    skeleton = gt.skeleton
    columns = _joint_columns(pf, gt, joint_ids)
    coords = _select_people(pf.coords, gt, pf.path)
    rows = gt.positions if gt.positions is not None else np.arange(1, len(gt) + 1)
    _check_finite(coords, [skeleton.keypoints[c] for c in columns], pf.path, rows)
    shift = pf.one_based if one_based is None else one_based
    pred = np.zeros((len(gt), skeleton.num_keypoints, 2))
    pred[:, columns] = coords - (1.0 if shift else 0.0)
    predicted = np.zeros(skeleton.num_keypoints, dtype=bool)
    predicted[columns] = True
    counted = (gt.keypoints[..., 2] > 0) & predicted[None]
    gt_xy = gt.keypoints[..., :2]
    name = name or Path(pf.path).stem
    alpha = DEFAULT_ALPHA[gt.protocol] if alpha is None else float(alpha)

    if gt.protocol == "mpii":
        if gt.head_size is None:
            raise DataError("no head boxes for PCKh: pass --head-boxes FILE", gt.path)
        if order_check:
            check_joint_order(pred, gt_xy, counted, gt.head_size, skeleton, pf.path, "head sizes")
        try:
            result = score_pckh_arrays(pred, gt_xy, counted, gt.head_size, name=name, threshold=alpha,
                                       low_threshold=low_threshold)
        except ValueError as err:
            raise DataError(str(err), gt.path) from None
    else:
        a, b = skeleton.torso
        if not (predicted[a] and predicted[b]):
            raise DataError(f"predicts no {skeleton.keypoints[a]} or {skeleton.keypoints[b]}: PCK needs both torso "
                            "joints (--joint-ids)", pf.path)
        if order_check:
            torso = np.where(counted[:, a] & counted[:, b], np.linalg.norm(gt_xy[:, a] - gt_xy[:, b], axis=1), np.nan)
            check_joint_order(pred, gt_xy, counted, torso, skeleton, pf.path, "torso lengths")
        result = score_pck_arrays(pred, gt_xy, counted, skeleton, name=name, alpha=alpha, normaliser_from=torso_from,
                                  curve_max=CURVE_MAX[gt.protocol], protocol=gt.protocol)

    scored = f"people {int(rows[0])}-{int(rows[-1])} of {gt.file_count}" if len(gt) != gt.file_count else \
        f"all {gt.file_count} people"
    result.notes[:0] = [
        f"ground truth: {gt.path} ({gt.description}); scored: {scored}",
        f"predictions: {pf.path} ({pf.layout}; {'1-based, shifted by -1' if shift else '0-based'}"
        f"{' (the default for this file type)' if one_based is None else ''})",
    ]
    unscored = [skeleton.keypoints[j] for j in range(skeleton.num_keypoints) if not predicted[j]]
    if unscored:
        result.notes.append(f"not predicted, not scored: {', '.join(unscored)}")
    if gt.protocol == "lsp" and gt.file_count < 2000 and len(gt) == gt.file_count:
        result.notes.append(f"this joints.mat holds {gt.file_count} people (the standard LSP test half is images "
                            "1001-2000 of the full 2,000-person file)")
    return result


def score_coco(gt_path: PathLike, pred_path: PathLike, name: Optional[str] = None) -> ScoreResult:
    """COCO keypoint AP/AR of a results JSON through pycocotools (:func:`posekit.evaluation.metrics.coco_evaluate`).

    Every image of the annotation file counts (as HRNet evaluates). Results naming an image absent from
    the annotations, or with another keypoint count, raise :class:`DataError` naming the results file.
    """
    gt_path, pred_path = os.fspath(gt_path), os.fspath(pred_path)
    require_file(gt_path)
    refuse_other_protocol("coco", gt_path)
    if Path(gt_path).suffix.lower() != ".json":
        raise DataError("COCO ground truth is a keypoint annotation JSON", gt_path)
    coco_gt = metrics._load_coco_ground_truth(gt_path)
    results = metrics.load_coco_results(pred_path)
    num_keypoints = metrics._num_keypoints_of(coco_gt)
    if num_keypoints is None:
        raise DataError("no annotation holds keypoints", gt_path)
    images = set(coco_gt.getImgIds())
    for i, entry in enumerate(results):
        if len(entry["keypoints"]) != 3 * num_keypoints:
            raise DataError(f"result {i} has {len(entry['keypoints']) // 3} keypoints, the annotations of {gt_path} "
                            f"{num_keypoints}", pred_path)
        if entry["image_id"] not in images:
            raise DataError(f"result {i} names image_id {entry['image_id']!r}, absent from {gt_path}", pred_path)
    if num_keypoints != metrics.COCO_SKELETON.num_keypoints:
        raise DataError(f"the annotations hold {num_keypoints} keypoints per person: the OKS sigmas here are "
                        f"COCO's, for {metrics.COCO_SKELETON.num_keypoints}", gt_path)
    stats = metrics.coco_evaluate(results, coco_gt)
    people = sum(1 for a in coco_gt.dataset["annotations"] if not a.get("iscrowd", 0) and a["num_keypoints"] > 0)
    return ScoreResult(
        name=name or Path(pred_path).stem, protocol="coco", metric="COCO keypoint AP (OKS)",
        summary={k: float(stats[k]) for k in metrics.COCO_STAT_NAMES}, num_people=people,
        notes=[f"ground truth: {gt_path} ({len(images)} images, {people} people with keypoints)",
               f"predictions: {pred_path} ({len(results)} results, COCO results JSON)",
               "AP/AR by pycocotools COCOeval(iouType='keypoints') over every image of the annotation file; "
               "the person boxes are whatever produced the results (ground-truth or detector boxes)"],
        digits=SUMMARY_DIGITS["coco"],
    )


def unique_names(paths: Sequence[str], names: Optional[Sequence[str]] = None) -> List[str]:
    """Labels for predictions files: ``names`` as given, else the file stems (the path where stems repeat)."""
    if names:
        if len(names) != len(paths):
            raise ConfigError(f"{len(names)} --name for {len(paths)} --pred: give one name per predictions file")
        if len(set(names)) != len(names):
            raise ConfigError("--name values must differ")
        return list(names)
    stems = [Path(p).stem for p in paths]
    files = [Path(p).name for p in paths]
    labels = [stem if stems.count(stem) == 1 else file if files.count(file) == 1 else str(p)
              for stem, file, p in zip(stems, files, paths)]
    return [label if labels.count(label) == 1 else f"{label} ({i + 1})" for i, label in enumerate(labels)]


def score_files(
    protocol: str,
    gt_path: PathLike,
    pred_paths: Sequence[PathLike],
    names: Optional[Sequence[str]] = None,
    alpha: Optional[float] = None,
    head_boxes: Optional[PathLike] = None,
    subset: Optional[Tuple[int, int]] = None,
    one_based: Optional[bool] = None,
    joint_ids: Optional[Sequence[int]] = None,
    torso_from: str = "gt",
    order_check: bool = True,
    low_threshold: float = 0.1,
) -> List[ScoreResult]:
    """Score each predictions file against one ground truth: what ``posekit score`` runs.

    Options as :func:`load_ground_truth` and :func:`score_predictions`; COCO takes none of them.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    paths = [os.fspath(p) for p in pred_paths]
    if not paths:
        raise ConfigError("no predictions file: pass --pred FILE")
    labels = unique_names(paths, names)
    if protocol == "coco":
        unused = [flag for flag, value in (("--alpha", alpha), ("--head-boxes", head_boxes), ("--subset", subset),
                                           ("--joint-ids", joint_ids)) if value is not None]
        if unused or one_based is not None or torso_from != "gt":
            raise ConfigError(f"{', '.join(unused) or 'coordinate and torso options'} do not apply to --protocol coco")
        return [score_coco(gt_path, p, name) for p, name in zip(paths, labels)]
    if torso_from not in ("gt", "prediction"):
        raise ConfigError(f"--torso-from must be gt or prediction, got {torso_from!r}")
    if torso_from != "gt" and protocol == "mpii":
        raise ConfigError("--torso-from applies to lsp and flic (PCKh uses head boxes)")
    if alpha is not None and not (math.isfinite(alpha) and alpha > 0):
        raise ConfigError(f"--alpha must be a number > 0, got {alpha}")
    gt = load_ground_truth(protocol, gt_path, head_boxes=head_boxes, subset=subset)
    return [score_predictions(gt, p, name=name, alpha=alpha, one_based=one_based, joint_ids=joint_ids,
                              torso_from=torso_from, order_check=order_check, low_threshold=low_threshold)
            for p, name in zip(paths, labels)]


# ----------------------------------------------------------------------------------------------
# posekit eval
# ----------------------------------------------------------------------------------------------

def eval_result(
    metric: str,
    values: Dict[str, Any],
    skeleton: Skeleton,
    name: str,
    samples: Optional[Dict[str, np.ndarray]] = None,
    alpha: float = 0.2,
) -> ScoreResult:
    """A :class:`ScoreResult` for what ``evaluate_model`` returned (metric "pck" or "pckh").

    With ``samples`` (per-person arrays: pck ``pred`` N x K x 2 and ``gt`` N x K x 3; pckh ``pred``,
    ``gt`` N x 16 x 2, ``annotated`` N x 16, ``head_size`` N) the result is recomputed in full, curve
    included; without, the table comes from ``values`` alone (no curve; PCKh without per-joint values).
    """
    if samples is not None:
        if metric == "pckh":
            result = score_pckh_arrays(samples["pred"], samples["gt"], samples["annotated"], samples["head_size"],
                                       name=name)
        else:
            gt = np.asarray(samples["gt"])
            result = score_pck_arrays(samples["pred"], gt[..., :2], gt[..., 2], skeleton, name=name, alpha=alpha)
        return result
    if metric == "pckh":
        return ScoreResult(name=name, protocol="mpii", metric="PCKh@0.5",
                           summary={c: float(values[c]) for c in metrics.PCKH_TABLE_COLUMNS},
                           notes=["per-joint values and the curve need the per-person arrays"],
                           digits=SUMMARY_DIGITS["mpii"])
    groups = pck_groups(skeleton)
    per_joint = np.array([100.0 * float(values["per_joint"][j]) for j in skeleton.keypoints])
    summary = {k: float(v) for k, v in _group_values(per_joint, groups).items()}
    summary["Mean"] = 100.0 * float(values["pck"])
    base = skeleton.name.split("[")[0]
    return ScoreResult(name=name, protocol=base if base in ("lsp", "flic") else "pck", metric=f"PCK@{alpha:g}",
                       summary=summary, per_joint=dict(zip(skeleton.keypoints, per_joint.tolist())),
                       num_people=int(values.get("people", 0)),
                       notes=["the curve needs the per-person arrays"])


# The scoring API as ``posekit score`` and ``posekit eval`` use it, with the ground-truth and predictions-file
# readers it is built on (importable from here as before they had modules of their own).
__all__ = ["PROTOCOLS", "PROTOCOL_SKELETONS", "DEFAULT_ALPHA", "CURVE_MAX", "CURVE_STEP", "SUMMARY_DIGITS",
           "MPII_ABBREVIATIONS", "MPII_WITHOUT_PELVIS_THORAX", "CPM_FLIC_JOINTS", "LSP_GROUPS", "FLIC_GROUPS",
           "ScoreResult", "GroundTruth", "PredictionFile", "detect_ground_truth", "parse_subset", "load_ground_truth",
           "read_predictions", "curve_thresholds", "pck_groups", "score_pckh_arrays", "score_pck_arrays",
           "check_joint_order", "score_predictions", "score_coco", "unique_names", "score_files", "eval_result"]
