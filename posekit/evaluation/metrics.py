"""Evaluation metrics: torso-normalised PCK (LSP/FLIC), MPII PCKh and the COCO keypoint pipeline.

PCK follows the LSP/FLIC protocol (spec 2.8); PCKh the MPII protocol as HRNet's ``mpii.py::evaluate``
(spec 1.6: head size = 0.6 x head-box diagonal, a joint counts where annotated, mean without pelvis/thorax). The COCO part reproduces the official HRNet test path
(spec 1.7): OKS between one person and many, OKS-NMS and soft-OKS-NMS, rescoring by keypoint
confidence, per-image NMS of a results list, the results JSON, and AP/AR through pycocotools'
``COCOeval`` (COCO AP itself is never re-implemented here).
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import numbers
import os
import tempfile
from os import PathLike
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..config import NMS_MODES
from ..errors import ConfigError, DataError
from ..fileio import read_json
from ..skeletons import COCO as COCO_SKELETON
from ..data.coco import check_coco_people

COCO_STAT_NAMES: Tuple[str, ...] = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")

# Which COCOeval area range each of the ten stats reads (0 all, 1 medium, 2 large), in stats order.
_STAT_AREA_INDEX = (0, 0, 0, 1, 2, 0, 0, 0, 1, 2)


# ----------------------------------------------------------------------------------------------
# PCK
# ----------------------------------------------------------------------------------------------

def _pck_inputs(
    pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, torso: Tuple[int, int], normaliser_from: str
) -> Tuple[np.ndarray, np.ndarray, int]:
    """-> (distance / torso per person and joint, counted mask, number of people excluded)."""
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    visible = np.asarray(visible)
    if pred.ndim != 3 or gt.ndim != 3 or pred.shape[2] < 2 or gt.shape[2] < 2:
        raise ValueError(f"pred and gt must be N x K x 2, got {pred.shape} and {gt.shape}")
    if pred.shape[:2] != gt.shape[:2] or visible.shape != gt.shape[:2]:
        raise ValueError(f"shapes differ: pred {pred.shape}, gt {gt.shape}, visible {visible.shape}")
    num_joints = gt.shape[1]
    a, b = (int(i) for i in torso)
    if not (0 <= a < num_joints and 0 <= b < num_joints):
        raise ValueError(f"torso joints {torso} outside 0..{num_joints - 1}")
    if normaliser_from not in ("gt", "prediction"):
        raise ValueError(f"normaliser_from must be 'gt' or 'prediction', got {normaliser_from!r}")

    pred, gt = pred[..., :2], gt[..., :2]
    labelled = visible > 0
    if normaliser_from == "gt":
        norm = np.linalg.norm(gt[:, a] - gt[:, b], axis=1)
        usable = labelled[:, a] & labelled[:, b]
    else:
        # The FLIC release benchmark's quirk (spec 2.8): the torso measured on the prediction.
        norm = np.linalg.norm(pred[:, a] - pred[:, b], axis=1)
        usable = np.ones(len(norm), dtype=bool)
    usable &= np.isfinite(norm) & (norm > 0)

    dist = np.linalg.norm(pred - gt, axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        # Dividing (as the Matlab benchmarks do) makes a distance of exactly alpha * torso count.
        normalised = dist / norm[:, None]
    counted = labelled & usable[:, None]
    return normalised, counted, int(np.count_nonzero(~usable))


def _weighted_mean(correct: np.ndarray, counts: np.ndarray, joints: Optional[Sequence[int]]) -> np.ndarray:
    """Sum of hits over sum of counts over the chosen joints (last axis); nan where nothing counted."""
    if joints is not None:
        idx = np.asarray(list(joints), dtype=np.int64)
        correct, counts = correct[..., idx], counts[idx]
    total = counts.sum()
    if total == 0:
        return np.full(correct.shape[:-1], np.nan)
    return correct.sum(axis=-1) / total


def pck(
    pred: np.ndarray,
    gt: np.ndarray,
    visible: np.ndarray,
    torso: Tuple[int, int],
    alpha: float = 0.2,
    joints: Optional[Sequence[int]] = None,
    normaliser_from: str = "gt",
) -> Dict[str, Any]:
    """Percentage of correct keypoints with a torso normaliser (LSP / FLIC protocol).

    pred, gt: N x K x 2 (extra columns such as scores or flags are ignored); visible: N x K, a joint
    counts where ``visible > 0`` (labelled, occluded or not — LSP and FLIC score every annotated joint).
    The normaliser of a person is ``||gt[a] - gt[b]||`` for ``torso = (a, b)`` (left shoulder - right
    hip as in evalLSP_official; ``Skeleton.torso``). ``normaliser_from="prediction"`` reproduces the
    FLIC release benchmark, which measures it on the prediction instead.
    A joint is correct where ``distance / torso <= alpha``.

    People whose torso cannot be measured (a torso joint unlabelled, or zero/non-finite length) are
    left out entirely and counted in ``excluded_people``; the LSP files label every joint, so none are
    excluded there.

    Returns a dict: ``per_joint`` (K fractions in [0, 1], nan for a joint never labelled),
    ``counts`` and ``correct`` (K ints), ``mean`` — total hits / total counted joints, i.e. the
    per-joint accuracies weighted by their counts (equal to the plain mean when every joint is
    labelled, as on LSP); restricted to ``joints`` when given (FLIC: elbows and wrists) —
    ``alpha``, ``num_people`` and ``excluded_people``.
    """
    normalised, counted, excluded = _pck_inputs(pred, gt, visible, torso, normaliser_from)
    hits = counted & (normalised <= alpha)
    counts = counted.sum(axis=0)
    correct = hits.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_joint = np.where(counts > 0, correct / np.maximum(counts, 1), np.nan)
    return {
        "per_joint": per_joint,
        "counts": counts,
        "correct": correct,
        "mean": float(_weighted_mean(correct, counts, joints)),
        "alpha": float(alpha),
        "num_people": int(counted.shape[0]),
        "excluded_people": excluded,
    }


def pck_curve(
    pred: np.ndarray,
    gt: np.ndarray,
    visible: np.ndarray,
    torso: Tuple[int, int],
    alphas: Sequence[float],
    joints: Optional[Sequence[int]] = None,
    normaliser_from: str = "gt",
) -> Dict[str, Any]:
    """PCK at each of ``alphas`` (same rules as :func:`pck`), computed in one pass.

    Returns ``alphas`` (A), ``per_joint`` (A x K), ``mean`` (A), ``counts`` (K), ``excluded_people``
    and ``auc``: the area under the mean curve by the trapezoid rule divided by the alpha range
    (so 1.0 is perfect; nan with fewer than two alphas).
    """
    alphas_arr = np.asarray(list(alphas), dtype=np.float64)
    if alphas_arr.ndim != 1 or alphas_arr.size == 0:
        raise ValueError("alphas must be a non-empty sequence of numbers")
    normalised, counted, excluded = _pck_inputs(pred, gt, visible, torso, normaliser_from)
    # A x N x K in one comparison: fine for evaluation-set sizes (thousands of people, tens of alphas).
    hits = counted[None] & (normalised[None] <= alphas_arr[:, None, None])
    correct = hits.sum(axis=1)
    counts = counted.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_joint = np.where(counts > 0, correct / np.maximum(counts, 1), np.nan)
    mean = _weighted_mean(correct, counts, joints)
    if alphas_arr.size >= 2 and alphas_arr[-1] != alphas_arr[0]:
        widths = np.diff(alphas_arr)
        auc = float(np.sum(widths * (mean[1:] + mean[:-1]) / 2) / (alphas_arr[-1] - alphas_arr[0]))
    else:
        auc = float("nan")
    return {
        "alphas": alphas_arr,
        "per_joint": per_joint,
        "mean": mean,
        "counts": counts,
        "excluded_people": excluded,
        "auc": auc,
    }


# ----------------------------------------------------------------------------------------------
# OKS, NMS and rescoring (official HRNet nms.py / coco.py behaviour)
# ----------------------------------------------------------------------------------------------

def _resolve_sigmas(sigmas: Optional[Sequence[float]], num_keypoints: int) -> np.ndarray:
    if sigmas is None:
        if num_keypoints != COCO_SKELETON.num_keypoints:
            raise ConfigError(f"no OKS sigmas for {num_keypoints} keypoints: pass sigmas explicitly")
        return np.asarray(COCO_SKELETON.sigmas, dtype=np.float64)
    sigmas_arr = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    if sigmas_arr.size != num_keypoints:
        raise ConfigError(f"{sigmas_arr.size} OKS sigmas for {num_keypoints} keypoints")
    return sigmas_arr


def _as_person(keypoints: Any) -> np.ndarray:
    """One person as K x 2 coordinates from K x C or a flat (x, y, score) * K list."""
    arr = np.asarray(keypoints, dtype=np.float64)
    if arr.ndim == 1:
        if arr.size % 3:
            raise ValueError(f"flat keypoints need 3 values per joint, got {arr.size}")
        arr = arr.reshape(-1, 3)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(f"keypoints must be K x 2 or K x 3, got shape {arr.shape}")
    return arr[:, :2]


def _as_people(keypoints: Any) -> np.ndarray:
    """People as M x K x 2 from M x K x C or M flat (x, y, score) * K rows."""
    arr = np.asarray(keypoints, dtype=np.float64)
    if arr.ndim == 2:
        if arr.shape[1] % 3:
            raise ValueError(f"flat keypoint rows need 3 values per joint, got {arr.shape[1]}")
        arr = arr.reshape(arr.shape[0], -1, 3)
    if arr.ndim != 3 or arr.shape[2] < 2:
        raise ValueError(f"keypoints must be M x K x 2 or M x K x 3, got shape {arr.shape}")
    return arr[:, :, :2]


def oks_iou(
    g: np.ndarray,
    d: np.ndarray,
    area_g: float,
    area_d: Union[float, np.ndarray],
    sigmas: Optional[Sequence[float]] = None,
) -> np.ndarray:
    """OKS of one person ``g`` against each of ``d``, as the official HRNet ``nms.oks_iou``.

    g: K x 2/3 (or flat); d: M x K x 2/3 (or M x 3K); area_d: scalar or M. Unlike COCOeval's
    ``computeOks`` it averages over **all** K joints and uses the mean of the two areas:
    e_k = d_k^2 / (2 sigma_k)^2 / ((area_g + area_d) / 2 + eps) / 2, OKS = mean_k exp(-e_k).
    Sigmas default to COCO's for 17 keypoints. Returns M values.
    """
    gp = _as_person(g)
    dp = _as_people(d)
    if dp.shape[1] != gp.shape[0]:
        raise ValueError(f"g has {gp.shape[0]} keypoints, d has {dp.shape[1]}")
    variances = (2 * _resolve_sigmas(sigmas, gp.shape[0])) ** 2
    area_d_arr = np.broadcast_to(np.asarray(area_d, dtype=np.float64), (dp.shape[0],))
    sq = np.sum((dp - gp[None]) ** 2, axis=2)
    e = sq / variances[None] / ((float(area_g) + area_d_arr)[:, None] / 2 + np.spacing(1)) / 2
    return np.mean(np.exp(-e), axis=1)


def _nms_inputs(keypoints: Any, scores: Any, areas: Any) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    people = _as_people(keypoints)
    scores_arr = np.asarray(scores, dtype=np.float64).reshape(-1)
    areas_arr = np.broadcast_to(np.asarray(areas, dtype=np.float64), (people.shape[0],))
    if scores_arr.size != people.shape[0]:
        raise ValueError(f"{people.shape[0]} people but {scores_arr.size} scores")
    return people, scores_arr, areas_arr


def oks_nms(
    keypoints: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    threshold: float = 0.9,
    sigmas: Optional[Sequence[float]] = None,
) -> np.ndarray:
    """Greedy OKS-NMS: keep the best, drop the rest whose OKS with it exceeds ``threshold``, repeat.

    keypoints: N x K x 2/3; scores, areas: N (HRNet's area is that of the padded crop box,
    ``prod(scale * 200)``). Returns the kept indices, best score first. Ties in score keep the
    input order (a stable sort; the official ``argsort()[::-1]`` leaves ties unspecified).
    """
    people, scores_arr, areas_arr = _nms_inputs(keypoints, scores, areas)
    order = np.argsort(-scores_arr, kind="stable")
    keep: List[int] = []
    while order.size > 0:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        if rest.size == 0:
            break
        overlap = oks_iou(people[best], people[rest], areas_arr[best], areas_arr[rest], sigmas)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


def soft_oks_nms(
    keypoints: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    threshold: float = 0.9,
    sigmas: Optional[Sequence[float]] = None,
    max_kept: int = 20,
    method: str = "gaussian",
) -> np.ndarray:
    """Soft OKS-NMS as the official ``soft_oks_nms``: nothing is dropped, scores decay instead.

    Repeatedly take the best remaining person, decay the others' scores by ``exp(-oks^2 / threshold)``
    ("gaussian") or, where ``oks >= threshold``, by ``(1 - oks)`` ("linear"), and re-sort; stops after
    ``max_kept`` (20 officially). Returns kept indices in the order taken.
    """
    if method not in ("gaussian", "linear"):
        raise ValueError(f"method must be 'gaussian' or 'linear', got {method!r}")
    people, scores_arr, areas_arr = _nms_inputs(keypoints, scores, areas)
    order = np.argsort(-scores_arr, kind="stable")
    current = scores_arr[order]
    keep: List[int] = []
    while order.size > 0 and len(keep) < max_kept:
        best = int(order[0])
        keep.append(best)
        order, current = order[1:], current[1:]
        if order.size == 0:
            break
        overlap = oks_iou(people[best], people[order], areas_arr[best], areas_arr[order], sigmas)
        if method == "gaussian":
            current = current * np.exp(-(overlap ** 2) / threshold)
        else:
            current = np.where(overlap >= threshold, current * (1 - overlap), current)
        resort = np.argsort(-current, kind="stable")
        order, current = order[resort], current[resort]
    return np.asarray(keep, dtype=np.int64)


def rescore(keypoint_scores: np.ndarray, box_scores: np.ndarray, threshold: float = 0.2) -> np.ndarray:
    """Official COCO rescoring: box score x mean of the keypoint scores above ``threshold`` (strictly).

    keypoint_scores: N x K, box_scores: N. A person with no keypoint score above the threshold gets 0.
    """
    ks = np.asarray(keypoint_scores, dtype=np.float64)
    box = np.asarray(box_scores, dtype=np.float64).reshape(-1)
    if ks.ndim != 2 or ks.shape[0] != box.size:
        raise ValueError(f"keypoint_scores must be N x K with N = {box.size}, got {ks.shape}")
    above = ks > threshold
    num_above = above.sum(axis=1)
    mean_above = np.where(num_above > 0, np.where(above, ks, 0.0).sum(axis=1) / np.maximum(num_above, 1), 0.0)
    return mean_above * box


def _keypoint_box_area(people: np.ndarray) -> np.ndarray:
    """Area of each person's keypoint bounding box (what pycocotools' loadRes uses)."""
    span = people.max(axis=1) - people.min(axis=1)
    return span[:, 0] * span[:, 1]


def nms_per_image(
    results: Sequence[Dict[str, Any]],
    oks_threshold: float = 0.9,
    keypoint_threshold: float = 0.2,
    sigmas: Optional[Sequence[float]] = None,
    soft: bool = False,
    max_kept: int = 20,
) -> List[Dict[str, Any]]:
    """Rescore and OKS-NMS a results list image by image, as HRNet's ``coco.py::evaluate``.

    Each result: ``image_id``, ``keypoints`` (K x 3 or flat, third value the keypoint score),
    ``score`` (the person box score) and optionally ``area`` (HRNet: the padded crop box area
    ``prod(scale * 200)``; where absent, the keypoints' bounding-box area, as pycocotools uses).
    Returns new dicts (inputs are not changed) with ``score`` replaced by the rescored value, grouped
    by image in order of first appearance and, within an image, in the NMS's keep order.
    """
    groups: Dict[Any, List[int]] = {}
    for index, result in enumerate(results):
        groups.setdefault(result["image_id"], []).append(index)

    kept_results: List[Dict[str, Any]] = []
    for indices in groups.values():
        full = np.stack([np.asarray(results[i]["keypoints"], dtype=np.float64).reshape(-1, 3) for i in indices])
        box_scores = np.array([float(results[i]["score"]) for i in indices])
        people = full[:, :, :2]
        fallback_areas = _keypoint_box_area(people)
        areas = np.array([
            float(results[i]["area"]) if "area" in results[i] else fallback_areas[n] for n, i in enumerate(indices)
        ])
        scores = rescore(full[:, :, 2], box_scores, keypoint_threshold)
        if soft:
            keep = soft_oks_nms(people, scores, areas, oks_threshold, sigmas, max_kept=max_kept)
        else:
            keep = oks_nms(people, scores, areas, oks_threshold, sigmas)
        if len(keep) == 0:
            # The official code keeps the whole image when NMS returns nothing.
            keep = np.arange(len(indices))
        for n in keep:
            out = dict(results[indices[n]])
            out["score"] = float(scores[n])
            kept_results.append(out)
    return kept_results


def coco_keypoint_results(
    image_ids: Sequence[Any],
    keypoints: Any,
    keypoint_scores: Any,
    box_scores: Sequence[float],
    areas: Sequence[float],
    *,
    nms: Optional[str] = "oks",
    oks_threshold: float = 0.9,
    keypoint_threshold: float = 0.2,
    sigmas: Optional[Sequence[float]] = None,
    track_ids: Optional[Sequence[Optional[int]]] = None,
) -> List[Dict[str, Any]]:
    """COCO keypoint results ``{image_id, category_id: 1, keypoints: [x, y, score] * K, score}`` after HRNet's
    post-processing (``coco.py::evaluate``): rescoring, then OKS-NMS image by image.

    keypoints: N x K x 2 image coordinates; keypoint_scores: N x K; box_scores, areas: N (HRNet's area is the
    padded crop box, ``prod(scale * 200)``). ``nms``: ``"oks"`` (the official greedy OKS-NMS at
    ``oks_threshold``), ``"soft_oks"``, ``"none"`` (every person kept, each image's people in rescored order, as
    after NMS), or None (rescoring only, people kept in the order given: for people already deduplicated, such
    as tracked ones). ``track_ids``: per person, written as ``track_id`` where not None (PoseTrack-style).
    """
    if nms is not None and nms not in NMS_MODES:
        raise ValueError(f"nms must be {', '.join(NMS_MODES)} or None, got {nms!r}")
    if len(box_scores) == 0:
        return []
    people = np.concatenate([np.asarray(keypoints), np.asarray(keypoint_scores)[..., None]], axis=-1)
    results = [{"image_id": int(i), "category_id": 1, "keypoints": k.reshape(-1).tolist(), "score": float(s),
                "area": float(a)} for i, k, s, a in zip(image_ids, people, box_scores, areas)]
    for result, track_id in zip(results, track_ids or ()):
        if track_id is not None:
            result["track_id"] = int(track_id)
    if nms is None:
        for result, score in zip(results, rescore(people[..., 2], box_scores, keypoint_threshold)):
            result["score"] = float(score)
    else:
        # "none": no OKS exceeds an infinite threshold, so the pass through NMS keeps everyone.
        results = nms_per_image(results, oks_threshold=math.inf if nms == "none" else oks_threshold,
                                keypoint_threshold=keypoint_threshold, sigmas=sigmas, soft=nms == "soft_oks")
    for result in results:
        del result["area"]
    return results


# ----------------------------------------------------------------------------------------------
# COCO results files and evaluation through pycocotools
# ----------------------------------------------------------------------------------------------

def _coco_result(result: Dict[str, Any], index: int, path: Optional[Union[str, PathLike]] = None) -> Dict[str, Any]:
    """A plain-Python COCO keypoint result (image_id, category_id, flat keypoints, score)."""
    if not isinstance(result, dict):
        raise DataError(f"result {index} is not an object", path)
    for key in ("image_id", "keypoints", "score"):
        if key not in result:
            raise DataError(f"result {index} has no {key!r}", path)
    image_id = result["image_id"]
    if isinstance(image_id, numbers.Integral) and not isinstance(image_id, bool):
        image_id = int(image_id)
    elif not isinstance(image_id, str):
        raise DataError(f"result {index}: image_id must be an integer or a string, got {image_id!r}", path)
    try:
        keypoints = np.asarray(result["keypoints"], dtype=np.float64).reshape(-1)
        score = float(result["score"])
        category_id = int(result.get("category_id", 1))
    except (TypeError, ValueError):
        raise DataError(f"result {index}: keypoints, score and category_id must be numbers", path) from None
    if keypoints.size == 0 or keypoints.size % 3:
        raise DataError(f"result {index}: keypoints need 3 values (x, y, score) per joint, got {keypoints.size}", path)
    if not (np.all(np.isfinite(keypoints)) and math.isfinite(score)):
        raise DataError(f"result {index}: keypoints or score not finite", path)
    return {
        "image_id": image_id,
        "category_id": category_id,
        "keypoints": [float(v) for v in keypoints],
        "score": score,
    }


def write_coco_results(results: Iterable[Dict[str, Any]], path: Union[str, PathLike]) -> Path:
    """Write results as a COCO keypoint results JSON, atomically (temporary file + os.replace).

    Each entry becomes ``{image_id, category_id (1 unless given), keypoints: flat [x, y, score] * K,
    score}``; numpy values are converted. Returns the path.
    """
    path = Path(path)
    entries = [_coco_result(r, i) for i, r in enumerate(results)]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(entries, f)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return path


def load_coco_results(path: Union[str, PathLike]) -> List[Dict[str, Any]]:
    """Read a COCO keypoint results JSON (a list of result objects), validated."""
    data = read_json(path, "results file")
    if not isinstance(data, list):
        raise DataError("a COCO results file must hold a list of results", path)
    return [_coco_result(r, i, path) for i, r in enumerate(data)]


class CocoStats(dict):
    """The ten COCO keypoint stats by name (a plain ``dict[str, float]``) plus pycocotools' printout.

    ``summary`` holds the text ``COCOeval.summarize()`` would have printed.
    """

    summary: str = ""


def _load_coco_ground_truth(ann_file: Union[str, PathLike]):
    from pycocotools.coco import COCO

    dataset = read_json(ann_file, "annotation file")
    if not isinstance(dataset, dict):
        raise DataError("a COCO annotation file must hold an object", ann_file)
    for key in ("images", "annotations", "categories"):
        if not isinstance(dataset.get(key), list):
            raise DataError(f"missing key {key!r}", ann_file)
    for i, ann in enumerate(dataset["annotations"]):
        # What COCOeval's keypoint path reads from every ground-truth annotation.
        for key in ("image_id", "category_id", "keypoints", "num_keypoints", "area", "bbox"):
            if not isinstance(ann, dict) or key not in ann:
                raise DataError(f"annotation {i} has no {key!r} (not a keypoint annotation file?)", ann_file)
    # The readers' own validation (strings, NaN, boxes, lengths ...): what training refuses is never scored.
    check_coco_people(dataset, ann_file, required=("num_keypoints", "area"))
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _num_keypoints_of(coco_gt) -> Optional[int]:
    for ann in coco_gt.dataset["annotations"]:
        if len(ann["keypoints"]):
            return len(ann["keypoints"]) // 3
    return None


def _stats_without_results(coco_gt, params) -> Tuple[List[float], str]:
    """What COCOeval reports with no detections: 0 where there are people to find, -1 where none."""
    img_ids, cat_ids = set(params.imgIds), set(params.catIds)
    areas = [
        float(ann["area"])
        for ann in coco_gt.dataset["annotations"]
        if ann["image_id"] in img_ids
        and ann["category_id"] in cat_ids
        and not ann.get("iscrowd", 0)
        and ann["num_keypoints"] > 0
    ]
    stats = []
    for area_index in _STAT_AREA_INDEX:
        low, high = params.areaRng[area_index]
        found = any(low <= a <= high for a in areas)
        stats.append(0.0 if found else -1.0)
    summary = (
        f"no results to evaluate: AP/AR are 0 where the {len(img_ids)} images hold ground-truth people "
        "(-1 where an area range holds none)\n"
    )
    return stats, summary


def coco_evaluate(
    results: Sequence[Dict[str, Any]],
    ann_file: Union[str, PathLike, Any],
    sigmas: Optional[Sequence[float]] = None,
    image_ids: Optional[Iterable[Any]] = None,
) -> CocoStats:
    """COCO keypoint AP/AR of ``results`` through pycocotools ``COCOeval(iouType="keypoints")``.

    results: dicts with ``image_id``, ``keypoints`` (flat or K x 3) and ``score`` (category_id 1 unless
    given). ann_file: a COCO keypoint annotation JSON path, or an already-loaded ``pycocotools.coco.COCO``.
    sigmas: OKS sigmas (COCO's by default for 17 keypoints). image_ids: evaluate on these images only
    (default: every image of the annotation file, as HRNet does — images without results still count).

    Returns :class:`CocoStats` — AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl from
    ``COCOeval.stats`` — with pycocotools' printout kept in ``.summary`` instead of on stdout.
    With no results (pycocotools' loadRes cannot take an empty list) the stats are what COCOeval
    gives for zero detections: 0.0, or -1.0 for an area range without ground-truth people.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    source = None if isinstance(ann_file, COCO) else ann_file
    coco_gt = ann_file if isinstance(ann_file, COCO) else _load_coco_ground_truth(ann_file)
    # Fresh plain dicts: loadRes writes area/bbox/id into the objects it is given.
    entries = [_coco_result(r, i) for i, r in enumerate(results)]

    num_keypoints = _num_keypoints_of(coco_gt)
    if num_keypoints is None:
        raise DataError("no annotation holds keypoints", source)
    sigmas_arr = _resolve_sigmas(sigmas, num_keypoints)
    known_images = set(coco_gt.getImgIds())
    for i, entry in enumerate(entries):
        if len(entry["keypoints"]) != 3 * num_keypoints:
            raise DataError(f"result {i} has {len(entry['keypoints']) // 3} keypoints, the annotations {num_keypoints}", source)
        if entry["image_id"] not in known_images:
            raise DataError(f"result {i} names image_id {entry['image_id']!r}, absent from the annotations", source)

    if image_ids is not None:
        chosen = list(image_ids)
        if not chosen:
            raise ValueError("image_ids is empty: nothing to evaluate on")
        unknown = [i for i in chosen if i not in known_images]
        if unknown:
            raise DataError(f"image_ids absent from the annotations: {unknown[:5]}", source)

    printout = io.StringIO()
    with contextlib.redirect_stdout(printout):
        coco_dt = coco_gt.loadRes(entries) if entries else COCO()
        evaluator = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        evaluator.params.useSegm = None
        evaluator.params.kpt_oks_sigmas = sigmas_arr
        if image_ids is not None:
            evaluator.params.imgIds = sorted(set(chosen))
        if entries:
            evaluator.evaluate()
            evaluator.accumulate()
            summary_out = io.StringIO()
            with contextlib.redirect_stdout(summary_out):
                evaluator.summarize()
            values = [float(v) for v in evaluator.stats]
            summary = summary_out.getvalue()
    if not entries:
        values, summary = _stats_without_results(coco_gt, evaluator.params)

    stats = CocoStats(zip(COCO_STAT_NAMES, values))
    stats.summary = summary
    return stats


# ----------------------------------------------------------------------------------------------
# MPII PCKh
# ----------------------------------------------------------------------------------------------
#
# HRNet's ``mpii.py::evaluate`` (spec 1.6), which MSPN copies. Joints in MPII order
# (posekit.skeletons.MPII: 0 r_ankle ... 6 pelvis, 7 thorax, 8 upper_neck, 9 head_top ... 15 l_wrist).

MPII_PCKH_NUM_JOINTS = 16
PCKH_SC_BIAS = 0.6  # head size = 0.6 x head-box diagonal (MPII's util_get_head_size)
# The columns of HRNet's table: one joint (Head) or a (left, right) pair whose PCKh values are averaged.
PCKH_GROUPS: Tuple[Tuple[str, Tuple[int, ...]], ...] = (
    ("Head", (9,)),
    ("Shoulder", (13, 12)),
    ("Elbow", (14, 11)),
    ("Wrist", (15, 10)),
    ("Hip", (3, 2)),
    ("Knee", (4, 1)),
    ("Ankle", (5, 0)),
)
PCKH_EXCLUDED_FROM_MEAN: Tuple[int, ...] = (6, 7)  # pelvis and thorax (HRNet masks them)
PCKH_TABLE_COLUMNS: Tuple[str, ...] = tuple(name for name, _ in PCKH_GROUPS) + ("Mean", "Mean@0.1")
# HRNet's curve thresholds, 0:0.01:0.5 (51 values).
PCKH_THRESHOLDS = np.arange(0, 0.5 + 0.01, 0.01)
# HRNet's "Mean@0.1" reads pckAll[11] of PCKH_THRESHOLDS, which is 0.11, not 0.1 (HRNet issue #167;
# mmpose fixed the index). Pass low_threshold=HRNET_MEAN01_THRESHOLD to reproduce HRNet's logs exactly.
HRNET_MEAN01_THRESHOLD = float(PCKH_THRESHOLDS[11])


def _pckh_inputs(pred: Any, gt: Any, annotated: Any, head_size: Any) -> Tuple[np.ndarray, np.ndarray]:
    """-> (N x 16 normalised errors, +inf where the joint is not annotated so it never counts; annotated)."""
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    annotated = np.asarray(annotated)
    head = np.asarray(head_size, dtype=np.float64)
    for name, array in (("predictions", pred), ("ground truth", gt)):
        if array.ndim != 3 or array.shape[2] < 2:
            raise ValueError(f"{name} must be N x {MPII_PCKH_NUM_JOINTS} x 2, got shape {array.shape}")
    if pred.shape[0] != gt.shape[0]:
        raise ValueError(f"{pred.shape[0]} predictions for {gt.shape[0]} ground-truth people")
    for name, array in (("predictions", pred), ("ground truth", gt)):
        if array.shape[1] != MPII_PCKH_NUM_JOINTS:
            raise ValueError(f"{name} have {array.shape[1]} joints where MPII PCKh expects {MPII_PCKH_NUM_JOINTS} "
                             "(MPII order, pelvis and thorax included)")
    num_people = gt.shape[0]
    if annotated.shape != (num_people, MPII_PCKH_NUM_JOINTS) or annotated.dtype.kind not in "biuf":
        raise ValueError(f"annotated must be N x {MPII_PCKH_NUM_JOINTS} booleans with N = {num_people}, "
                         f"got shape {annotated.shape} ({annotated.dtype})")
    if head.shape != (num_people,):
        raise ValueError(f"head_size must hold N = {num_people} values, got shape {head.shape}")
    annotated = annotated > 0

    pred, gt = pred[..., :2], gt[..., :2]
    bad = ~np.isfinite(pred).all(axis=2)
    if bad.any():
        person, joint = np.argwhere(bad)[0]
        raise ValueError(f"predictions hold NaN or infinite coordinates ({int(bad.sum())} joints; "
                         f"first: person {person}, joint {joint})")
    bad = annotated & ~np.isfinite(gt).all(axis=2)
    if bad.any():
        person, joint = np.argwhere(bad)[0]
        raise ValueError(f"ground truth holds NaN or infinite coordinates for annotated joints "
                         f"(first: person {person}, joint {joint})")
    bad_head = annotated.any(axis=1) & ~(np.isfinite(head) & (head > 0))
    if bad_head.any():
        person = int(np.argmax(bad_head))
        raise ValueError(f"head_size must be finite and > 0 for every person with an annotated joint "
                         f"(person {person} has {head[person]})")

    with np.errstate(divide="ignore", invalid="ignore"):
        # Divide (as HRNet does) rather than compare against threshold * head: a distance of exactly
        # threshold * head size then counts, as in the official code.
        normalised = np.linalg.norm(pred - gt, axis=2) / head[:, None]
    return np.where(annotated, normalised, np.inf), annotated


def _pckh_correct(normalised: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """T x 16 counts of annotated joints with normalised error <= each threshold (one sort per joint)."""
    ordered = np.sort(normalised, axis=0)  # unannotated joints (+inf) sort last and never count
    return np.stack([np.searchsorted(ordered[:, j], thresholds, side="right")
                     for j in range(ordered.shape[1])], axis=-1)


def _percent(correct: np.ndarray, counts: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(counts > 0, 100.0 * correct / np.maximum(counts, 1), np.nan)


def _pckh_weighted_mean(correct: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """HRNet's sum_j PCKh_j * count_j / sum(count) without pelvis/thorax, i.e. 100 * hits / counted.

    Written as the ratio of sums so that a joint nobody annotated adds nothing instead of a NaN.
    """
    keep = np.ones(MPII_PCKH_NUM_JOINTS, dtype=bool)
    keep[list(PCKH_EXCLUDED_FROM_MEAN)] = False
    total = counts[keep].sum()
    if total == 0:
        return np.full(correct.shape[:-1], np.nan)
    return 100.0 * correct[..., keep].sum(axis=-1) / total


def pckh(
    pred: np.ndarray,
    gt: np.ndarray,
    annotated: np.ndarray,
    head_size: np.ndarray,
    threshold: float = 0.5,
    low_threshold: float = 0.1,
) -> Dict[str, Any]:
    """MPII PCKh as HRNet's ``mpii.py::evaluate`` (spec 1.6).

    pred, gt: N x 16 x 2 in MPII joint order (extra columns such as scores are ignored; both in the
    same pixel convention, the offset cancels); annotated: N x 16, the joints that count — those
    present in the annotation, *not* MPII's visibility flag (``read_mpii_h5`` gives them v > 0);
    head_size: N values, already 0.6 x the head-box diagonal (``extras['head_size']``).
    A joint is correct where ``||pred - gt|| / head_size <= threshold`` and it is annotated.

    Returns a dict: ``per_joint`` (16 PCKh values in percent, nan for a joint never annotated),
    ``counts`` and ``correct`` (16 ints); the columns of HRNet's table — ``Head`` (head_top) and
    ``Shoulder``, ``Elbow``, ``Wrist``, ``Hip``, ``Knee``, ``Ankle`` (the mean of the left and right
    PCKh values) — ``Mean`` (sum_j PCKh_j * count_j / sum of counts, pelvis and thorax excluded) and
    ``Mean@0.1`` (the same at ``low_threshold``); plus ``threshold``, ``low_threshold``, ``num_people``.
    HRNet's own "Mean@0.1" is computed at 0.11 (an index slip): pass
    ``low_threshold=HRNET_MEAN01_THRESHOLD`` to match its logs digit for digit.
    Raises ValueError for mismatched shapes, a joint count other than 16, NaN/inf in the predictions
    (or in annotated ground truth), or a non-positive head size of a person with annotated joints.
    """
    normalised, counted = _pckh_inputs(pred, gt, annotated, head_size)
    correct = _pckh_correct(normalised, np.array([float(threshold), float(low_threshold)]))
    counts = counted.sum(axis=0)
    per_joint = _percent(correct[0], counts)
    result: Dict[str, Any] = {"per_joint": per_joint, "counts": counts, "correct": correct[0]}
    for name, joints in PCKH_GROUPS:
        result[name] = float(np.mean(per_joint[list(joints)]))
    means = _pckh_weighted_mean(correct, counts)
    result["Mean"] = float(means[0])
    result["Mean@0.1"] = float(means[1])
    result.update(threshold=float(threshold), low_threshold=float(low_threshold), num_people=int(len(normalised)))
    return result


def pckh_curve(
    pred: np.ndarray,
    gt: np.ndarray,
    annotated: np.ndarray,
    head_size: np.ndarray,
    thresholds: Sequence[float] = PCKH_THRESHOLDS,
) -> Dict[str, Any]:
    """PCKh at each of ``thresholds`` (HRNet's ``pckAll``: 0, 0.01, ..., 0.5 by default), same rules as :func:`pckh`.

    Returns ``thresholds`` (T), ``per_joint`` (T x 16, percent), ``mean`` (T, the count-weighted mean
    without pelvis and thorax, i.e. ``Mean`` at each threshold) and ``counts`` (16).
    """
    thresholds_arr = np.asarray(list(thresholds), dtype=np.float64)
    if thresholds_arr.ndim != 1 or thresholds_arr.size == 0 or not np.isfinite(thresholds_arr).all():
        raise ValueError("thresholds must be a non-empty sequence of finite numbers")
    normalised, counted = _pckh_inputs(pred, gt, annotated, head_size)
    correct = _pckh_correct(normalised, thresholds_arr)
    counts = counted.sum(axis=0)
    return {
        "thresholds": thresholds_arr,
        "per_joint": _percent(correct, counts),
        "mean": _pckh_weighted_mean(correct, counts),
        "counts": counts,
    }


def format_pckh_table(result: Dict[str, Any], arch: Optional[str] = None, digits: int = 3) -> str:
    """The PCKh columns as the Markdown table HRNet logs: Head | Shoulder | ... | Mean | Mean@0.1.

    ``result`` is what :func:`pckh` returns; ``arch`` adds HRNet's leading "Arch" column. Values get
    ``digits`` decimals (HRNet prints 3).
    """
    missing = [name for name in PCKH_TABLE_COLUMNS if name not in result]
    if missing:
        raise ValueError(f"not a PCKh result: no {', '.join(missing)}")
    names = list(PCKH_TABLE_COLUMNS)
    values = [f"{float(result[name]):.{digits}f}" for name in names]
    if arch is not None:
        names.insert(0, "Arch")
        values.insert(0, arch)
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names), "| " + " | ".join(values) + " |"]
    return "\n".join(lines)
