"""Scoring saved predictions against ground truth without a model (``posekit score``).

Reads the ground truth of one protocol (MPII PCKh, LSP and FLIC torso PCK, COCO keypoint AP), reads a
predictions file in one of the layouts of ``docs/scoring.md``, checks that both describe the same people
and joints (count, order, finite coordinates), and returns a :class:`ScoreResult`: the summary columns
the papers print, per-joint values and the PCK curve. :mod:`posekit.report` writes it as Markdown, CSV
and a PNG; the arithmetic itself is :mod:`posekit.metrics`.
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
from .errors import ConfigError, DataError
from .fileio import read_json
from .skeletons import FLIC, LSP, MPII, Skeleton

PathLike = Union[str, "os.PathLike[str]"]

PROTOCOLS: Tuple[str, ...] = ("mpii", "lsp", "flic", "coco")
PROTOCOL_SKELETONS: Dict[str, Skeleton] = {"mpii": MPII, "lsp": LSP, "flic": FLIC}
# The reported threshold of each protocol: PCKh@0.5 (MPII), PCK@0.2 (LSP, FLIC).
DEFAULT_ALPHA: Dict[str, float] = {"mpii": 0.5, "lsp": 0.2, "flic": 0.2}
# The x range of the PCK curves, as the CPM paper's figures (MPII 0-0.5; LSP and FLIC 0-0.2), in steps of 0.01.
CURVE_MAX: Dict[str, float] = {"mpii": 0.5, "lsp": 0.2, "flic": 0.2}
CURVE_STEP = 0.01
SUMMARY_DIGITS: Dict[str, int] = {"mpii": 3, "coco": 3}   # as HRNet prints; PCK tables get 2

# Joint names of the MPII evaluation files (``dataset_joints`` of gt_valid.mat, ``output_joints``), MPII order.
MPII_ABBREVIATIONS: Tuple[str, ...] = ("rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thor", "neck",
                                       "head", "rwri", "relb", "rsho", "lsho", "lelb", "lwri")
# CPM's 14 MPII parts (spec 2.8): MPII without pelvis and thorax.
MPII_WITHOUT_PELVIS_THORAX: Tuple[int, ...] = (0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15)
MPII_SC_BIAS = metrics.PCKH_SC_BIAS
# The joints of the CPM release's FLIC prediction_all (run_benchmark.m: examples.mat's 11 parts less the eyes),
# observer-centric like posekit's FLIC ground truth.
CPM_FLIC_JOINTS: Tuple[str, ...] = ("l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist", "l_hip",
                                    "r_hip", "nose")

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


@dataclass
class GroundTruth:
    """The people of a ground-truth file: N x K x 3 keypoints (0-based; v > 0 where the joint counts)."""

    protocol: str
    path: str
    skeleton: Skeleton
    keypoints: np.ndarray
    head_size: Optional[np.ndarray] = None
    description: str = ""
    file_count: int = 0
    positions: Optional[np.ndarray] = None     # 1-based positions in the file of the people kept (--subset)

    def __len__(self) -> int:
        return len(self.keypoints)


@dataclass
class PredictionFile:
    """Predicted coordinates as stored: N x J x 2, J columns named by ``joint_names`` when the file names them."""

    path: str
    coords: np.ndarray
    layout: str
    one_based: bool                 # the convention of the file type (Matlab / Lua files: 1-based)
    joint_names: Optional[List[str]] = None
    names_from: str = "'output_joints'"     # where joint_names come from, for messages


# ----------------------------------------------------------------------------------------------
# Which protocol a file belongs to (for "a GT file of another protocol" errors)
# ----------------------------------------------------------------------------------------------

def detect_ground_truth(path: PathLike) -> Optional[Tuple[str, str]]:
    """(protocol, description) of a ground-truth file recognised by its content, or None."""
    path = os.fspath(path)
    suffix = Path(path).suffix.lower()
    try:
        if suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as handle:
                part = handle.get("part")
                shape = tuple(part.shape) if isinstance(part, h5py.Dataset) else ()
            if len(shape) == 3 and shape[1:] == (16, 2):
                return "mpii", "an MPII annotation h5 (part N x 16 x 2)"
            if len(shape) == 3 and shape[1:] == (11, 2):
                return "flic", "a FLIC annotation h5 (part N x 11 x 2)"
            return None
        if suffix == ".mat":
            import scipy.io

            shapes = {name: shape for name, shape, _ in scipy.io.whosmat(path)}
            names = set(shapes)
            if "pos_gt_src" in names:
                return "mpii", "an MPII evaluation ground truth .mat (pos_gt_src)"
            if "annolist" in names:
                return "mpii", "an MPII annotation .mat (annolist)"
            if "examples" in names:
                return "flic", "a FLIC examples.mat"
            if "joints" in names:
                shape = shapes["joints"]
                if tuple(shape[:2]) == (3, 14):
                    return "lsp", "an LSP joints.mat (3 x 14 x N)"
                if tuple(shape[:2]) == (14, 3):
                    return "lsp", "an LSPET joints.mat (14 x 3 x N)"
            return None
        if suffix == ".json":
            data = read_json(path)
            if isinstance(data, dict) and "annotations" in data and "images" in data:
                return "coco", "a COCO annotation file"
            if isinstance(data, list) and data and isinstance(data[0], dict) and "joints_vis" in data[0]:
                return "mpii", "an MPII annotation JSON (HRNet layout)"
            return None
    except (OSError, ValueError, DataError, NotImplementedError, TypeError):
        return None
    return None


def _refuse_other_protocol(protocol: str, path: str) -> None:
    found = detect_ground_truth(path)
    if found is not None and found[0] != protocol:
        raise DataError(f"this is {found[1]}, not {protocol.upper()} ground truth: use --protocol {found[0]}", path)


def _require_file(path: str) -> None:
    if not os.path.isfile(path):
        raise DataError("file not found", path)


def _loadmat(path: str, what: str, wanted: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """The variables of a .mat file; with ``wanted``, only the first of them the file holds (plus
    ``output_joints``), which spares decoding a large struct beside a small array."""
    import scipy.io

    _require_file(path)
    try:
        names = None
        if wanted is not None:
            present = {name for name, _, _ in scipy.io.whosmat(path)}
            first = next((name for name in wanted if name in present), None)
            if first is None:
                return {name: None for name in present}
            names = [first] + (["output_joints"] if "output_joints" in present else [])
        return scipy.io.loadmat(path, variable_names=names)
    except Exception as err:  # scipy raises several unrelated types for a corrupt or non-.mat file
        raise DataError(f"not {what}: cannot read it as a .mat file ({err})", path) from None


def _mat_keys(mat: Dict[str, Any]) -> str:
    return ", ".join(sorted(k for k in mat if not k.startswith("__"))) or "none"


# ----------------------------------------------------------------------------------------------
# Ground truth
# ----------------------------------------------------------------------------------------------

def parse_subset(text: str) -> Tuple[int, int]:
    """``"1001-2000"`` -> (1001, 2000): 1-based positions in the ground-truth file, both included."""
    match = re.fullmatch(r"\s*(\d+)\s*[-:]\s*(\d+)\s*", str(text))
    if not match:
        raise ConfigError(f"--subset must look like 1001-2000 (1-based, both ends included), got {text!r}")
    first, last = int(match.group(1)), int(match.group(2))
    if first < 1 or last < first:
        raise ConfigError(f"--subset {text}: need 1 <= first <= last")
    return first, last


def load_ground_truth(
    protocol: str,
    path: PathLike,
    head_boxes: Optional[PathLike] = None,
    subset: Optional[Tuple[int, int]] = None,
) -> GroundTruth:
    """The people of a ground-truth file of ``protocol`` (mpii, lsp or flic; COCO: :func:`score_coco`).

    mpii: ``valid.h5`` (pose-hg-train layout; head sizes from ``normalize``), an evaluation ``.mat``
    with ``pos_gt_src``/``jnt_missing``/``headboxes_src`` (HRNet's gt_valid.mat), a ``.mat`` with
    ``annolist`` (one ``annorect`` per person with head box x1 y1 x2 y2 and ``annopoints``, like
    ``detections.mat``) or an HRNet-layout JSON (which has no head boxes: ``head_boxes`` must name one
    of the other files for the same people). lsp: ``joints.mat`` (LSP 3 x 14 x N or LSPET 14 x 3 x N).
    flic: ``valid.h5`` or the release ``examples.mat`` (its test split). ``head_boxes`` (mpii only)
    replaces the head sizes; its joints must agree with the ground truth's (same people, same order).
    ``subset`` = (first, last) keeps those 1-based positions of the file.
    """
    path = os.fspath(path)
    if protocol not in PROTOCOL_SKELETONS:
        raise ConfigError(f"protocol must be one of {', '.join(PROTOCOL_SKELETONS)} here, got {protocol!r}")
    _require_file(path)
    _refuse_other_protocol(protocol, path)
    if head_boxes is not None and protocol != "mpii":
        raise ConfigError("--head-boxes applies to --protocol mpii only")
    if protocol == "mpii":
        gt = _mpii_ground_truth(path, None if head_boxes is None else os.fspath(head_boxes))
    elif protocol == "lsp":
        gt = _lsp_ground_truth(path)
    else:
        gt = _flic_ground_truth(path)
    gt.file_count = len(gt.keypoints)
    gt.positions = np.arange(1, gt.file_count + 1)
    if subset is not None:
        first, last = subset
        if last > gt.file_count:
            raise DataError(f"--subset {first}-{last} asks for people up to {last}, the file holds {gt.file_count}", path)
        keep = np.arange(first - 1, last)
        gt.keypoints, gt.positions = gt.keypoints[keep], gt.positions[keep]
        if gt.head_size is not None:
            gt.head_size = gt.head_size[keep]
    return gt


def _mpii_ground_truth(path: str, head_boxes: Optional[str]) -> GroundTruth:
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        from .data.mpii import read_mpii_json

        records = read_mpii_json(path, "")
        keypoints = np.stack([r.keypoints for r in records]) if records else np.zeros((0, 16, 3))
        gt = GroundTruth("mpii", path, MPII, keypoints, None, f"MPII JSON (HRNet layout, {len(keypoints)} people)")
        if head_boxes is None:
            raise DataError("an MPII JSON has no head boxes: pass --head-boxes FILE (valid.h5, gt_valid.mat or "
                            "detections.mat of the same people, same order)", path)
    else:
        gt = _mpii_boxed_ground_truth(path)
    if head_boxes is not None:
        _require_file(head_boxes)
        if Path(head_boxes).suffix.lower() == ".json":
            raise DataError("a head-box file must be valid.h5, a gt_valid.mat (headboxes_src) or an annolist .mat "
                            "(x1 y1 x2 y2)", head_boxes)
        _refuse_other_protocol("mpii", head_boxes)
        boxes = _mpii_boxed_ground_truth(head_boxes)
        _check_same_people(gt, boxes, head_boxes)
        gt.head_size = boxes.head_size
        gt.description += f"; head sizes from {head_boxes} ({boxes.description})"
    return gt


def _mpii_boxed_ground_truth(path: str) -> GroundTruth:
    """MPII ground truth from a file that carries head sizes: valid.h5, gt_valid.mat or an annolist .mat."""
    suffix = Path(path).suffix.lower()
    if suffix in (".h5", ".hdf5"):
        from .data.mpii import read_mpii_h5

        records = read_mpii_h5(path, "")
        keypoints = np.stack([r.keypoints for r in records])
        head = np.array([r.extras["head_size"] for r in records])
        return GroundTruth("mpii", path, MPII, keypoints, head,
                           f"MPII valid.h5 (pose-hg-train layout, {len(records)} people; head size = its 'normalize', "
                           "0.6 x head-box diagonal)")
    if suffix != ".mat":
        raise DataError("MPII ground truth must be valid.h5, a .mat (gt_valid.mat or annolist) or an HRNet JSON", path)
    mat = _loadmat(path, "MPII ground truth")
    if "pos_gt_src" in mat:
        return _read_gt_valid_mat(mat, path)
    if "annolist" in mat:
        return _read_annolist_mat(mat, path)
    raise DataError(f"not MPII ground truth: no 'pos_gt_src' (gt_valid.mat) or 'annolist' (keys: {_mat_keys(mat)})",
                    path)


def _joint_names_order(raw: Any, count: int, path: str, what: str) -> Optional[np.ndarray]:
    """Indices into MPII order for the joints named by a Matlab cell of strings (None when absent)."""
    if raw is None:
        return None
    names = [str(np.asarray(item).reshape(-1)[0]) if np.asarray(item).size else "" for item in np.asarray(raw).reshape(-1)]
    if len(names) != count:
        raise DataError(f"'{what}' names {len(names)} joints, the arrays hold {count}", path)
    return np.array([_mpii_joint_index(name, path, what) for name in names])


def _mpii_joint_index(name: str, path: str, what: str) -> int:
    key = name.strip().lower()
    if key in MPII_ABBREVIATIONS:
        return MPII_ABBREVIATIONS.index(key)
    if key in MPII.keypoints:
        return MPII.keypoints.index(key)
    raise DataError(f"'{what}' names an unknown MPII joint {name!r} (known: {', '.join(MPII_ABBREVIATIONS)})", path)


def _read_gt_valid_mat(mat: Dict[str, Any], path: str) -> GroundTruth:
    """HRNet's gt_valid.mat: pos_gt_src 16 x 2 x N, jnt_missing 16 x N, headboxes_src 2 x 2 x N (1-based)."""
    arrays = {}
    for name in ("pos_gt_src", "jnt_missing", "headboxes_src"):
        if name not in mat:
            raise DataError(f"not an MPII gt_valid.mat: no {name!r} (keys: {_mat_keys(mat)})", path)
        array = np.asarray(mat[name])
        if array.dtype.kind not in "biuf":
            raise DataError(f"not an MPII gt_valid.mat: {name!r} is not numeric", path)
        arrays[name] = array.astype(np.float64)
    pos, missing, boxes = arrays["pos_gt_src"], arrays["jnt_missing"], arrays["headboxes_src"]
    # Matlab drops a trailing singleton axis: a one-person file has 16 x 2, 16 x 1 and 2 x 2 arrays.
    if pos.ndim == 2:
        pos = pos[:, :, None]
    if boxes.ndim == 2:
        boxes = boxes[:, :, None]
    if missing.ndim == 1:
        missing = missing[:, None]
    count = pos.shape[-1]
    joints = pos.shape[0]
    if pos.shape[1:] != (2, count) or missing.shape != (joints, count) or boxes.shape != (2, 2, count):
        raise DataError(f"not an MPII gt_valid.mat: pos_gt_src {pos.shape}, jnt_missing {missing.shape}, "
                        f"headboxes_src {boxes.shape}; expected K x 2 x N, K x N, 2 x 2 x N", path)
    order = _joint_names_order(mat.get("dataset_joints"), joints, path, "dataset_joints")
    if order is None:
        if joints != 16:
            raise DataError(f"pos_gt_src holds {joints} joints, MPII has 16", path)
        order = np.arange(16)
    if sorted(order.tolist()) != list(range(16)):
        raise DataError("'dataset_joints' must name each of MPII's 16 joints once", path)
    annotated = np.zeros((count, 16), dtype=bool)
    annotated[:, order] = (missing == 0).T
    coords = np.zeros((count, 16, 2))
    coords[:, order] = pos.transpose(2, 0, 1) - 1.0
    if not np.isfinite(coords[annotated]).all():
        raise DataError("pos_gt_src holds NaN or infinity for a joint that is not missing", path)
    keypoints = np.concatenate([np.where(annotated[..., None], coords, 0.0), 2.0 * annotated[..., None]], axis=2)
    diagonal = np.linalg.norm(boxes[1] - boxes[0], axis=0)
    return GroundTruth("mpii", path, MPII, keypoints, diagonal * MPII_SC_BIAS,
                       f"MPII evaluation .mat (pos_gt_src / jnt_missing / headboxes_src, {count} people; "
                       "head size = 0.6 x head-box diagonal)")


def _mat_number(value: Any) -> Optional[float]:
    array = np.asarray(value).reshape(-1)
    if array.size != 1 or array.dtype.kind not in "biuf":
        return None
    return float(array[0])


def _read_annolist_mat(mat: Dict[str, Any], path: str) -> GroundTruth:
    """The MPII release struct: annolist(i).annorect(j) with head box x1 y1 x2 y2 and annopoints.point (id, x, y).

    Every annorect is one person, in file order (the shared detections.mat: one per entry, 2,958).
    """
    annolist = np.asarray(mat["annolist"]).reshape(-1)
    if annolist.dtype.names is None or "annorect" not in annolist.dtype.names:
        raise DataError("not an MPII annotation .mat: 'annolist' has no field 'annorect'", path)
    coords, annotated, head = [], [], []
    for i, entry in enumerate(annolist):
        rects = np.asarray(entry["annorect"]).reshape(-1)
        if rects.size == 0:
            continue
        if rects.dtype.names is None:
            raise DataError(f"annolist({i + 1}).annorect is not a struct", path)
        for j, rect in enumerate(rects):
            where = f"annolist({i + 1}).annorect({j + 1})"
            box = [(_mat_number(rect[k]) if k in rects.dtype.names else None) for k in ("x1", "y1", "x2", "y2")]
            if any(v is None for v in box):
                raise DataError(f"{where} has no head box (x1, y1, x2, y2)", path)
            head.append(MPII_SC_BIAS * math.hypot(box[2] - box[0], box[3] - box[1]))
            xy, labelled = np.zeros((16, 2)), np.zeros(16, dtype=bool)
            points = np.asarray(rect["annopoints"]).reshape(-1) if "annopoints" in rects.dtype.names else np.zeros(0)
            if points.size and points.dtype.names and "point" in points.dtype.names:
                for point in np.asarray(points[0]["point"]).reshape(-1):
                    joint, x, y = (_mat_number(point[k]) for k in ("id", "x", "y"))
                    if joint is None or x is None or y is None or not 0 <= joint < 16 or joint != int(joint):
                        raise DataError(f"{where}: an annopoints point without a joint id 0-15 and x, y", path)
                    xy[int(joint)] = (x - 1.0, y - 1.0)
                    labelled[int(joint)] = True
            coords.append(xy)
            annotated.append(labelled)
    if not coords:
        raise DataError("'annolist' holds no annorect", path)
    keypoints = np.concatenate([np.stack(coords), 2.0 * np.stack(annotated)[..., None]], axis=2)
    return GroundTruth("mpii", path, MPII, keypoints, np.array(head),
                       f"MPII annolist .mat ({len(coords)} people; head size = 0.6 x head-box diagonal)")


def _check_same_people(gt: GroundTruth, other: GroundTruth, other_path: str) -> None:
    """The head-box file must list the ground truth's people in the same order (joints agree within 1 px)."""
    if len(other) != len(gt):
        raise DataError(f"holds {len(other)} people, the ground truth {gt.path} {len(gt)}: head boxes must be "
                        "for the same people in the same order", other_path)
    both = (gt.keypoints[..., 2] > 0) & (other.keypoints[..., 2] > 0)
    # pose-hg-train's h5 keeps only the integer part of some coordinates: up to 1 px apart.
    apart = both & (np.abs(gt.keypoints[..., :2] - other.keypoints[..., :2]) > 1.0 + 1e-6).any(axis=2)
    if apart.any():
        person, joint = (int(v) for v in np.argwhere(apart)[0])
        raise DataError(f"its people differ from the ground truth's ({int(apart.any(axis=1).sum())} people; first: "
                        f"person {person + 1}, {MPII.keypoints[joint]}): head boxes must be for the same people in "
                        "the same order", other_path)


def _lsp_ground_truth(path: str) -> GroundTruth:
    from .data import lsp

    if Path(path).suffix.lower() != ".mat":
        raise DataError("LSP ground truth is a joints.mat (LSP 3 x 14 x N or LSPET 14 x 3 x N)", path)
    mat = _loadmat(path, "an LSP joints.mat")
    joints = mat.get("joints")
    if not isinstance(joints, np.ndarray):
        raise DataError(f"not an LSP joints.mat: no key 'joints' (keys: {_mat_keys(mat)})", path)
    if joints.shape[:2] == (14, 3):
        raw = lsp._load_joints(path, lsp._LSPET)
        keypoints = lsp._lspet_keypoints(raw)
        what = "LSPET joints.mat (14 x 3 x N, flag 1 = visible; joints without coordinates not counted)"
    else:
        raw = lsp._load_joints(path, lsp._LSP)
        keypoints = lsp._lsp_keypoints(raw)
        what = "LSP joints.mat (3 x 14 x N, flag 1 = occluded; every joint counts)"
    return GroundTruth("lsp", path, LSP, keypoints, None, f"{what}, {len(keypoints)} people")


def _flic_ground_truth(path: str) -> GroundTruth:
    from .data.flic import read_flic_examples_mat, read_flic_h5

    suffix = Path(path).suffix.lower()
    if suffix in (".h5", ".hdf5"):
        records = read_flic_h5(path, "")
        what = "FLIC h5 (pose-hg-train layout, observer-centric left/right)"
    elif suffix == ".mat":
        records = read_flic_examples_mat(path, "", split="test")
        what = "FLIC examples.mat, test split (istest), observer-centric left/right"
    else:
        raise DataError("FLIC ground truth is valid.h5 (pose-hg-train layout) or the release examples.mat", path)
    keypoints = np.stack([r.keypoints for r in records]) if records else np.zeros((0, 11, 3))
    return GroundTruth("flic", path, FLIC, keypoints, None, f"{what}, {len(records)} people")


# ----------------------------------------------------------------------------------------------
# Predictions files
# ----------------------------------------------------------------------------------------------

def read_predictions(path: PathLike) -> PredictionFile:
    """The predicted coordinates of a file, as stored (see docs/scoring.md for every layout).

    ``.json``: a list of K x 2 / K x 3 arrays, or {"preds": ...}; ``.npy``: N x K x 2/3; ``.npz``: array
    ``preds`` (or its only array); ``.mat``: ``preds`` N x K x 2/3 (HRNet's pred.mat), ``pos_pred_src``
    K x 2 x N (the MPII evaluation layout), ``keypointsAll`` (1 x N cell of J x 2) with ``output_joints``
    naming the joints, or ``joints`` in an LSP (2/3 x K x N) or LSPET (K x 2/3 x N) layout; ``.h5``:
    dataset ``preds`` N x K x 2/3. A third column (a score or flag) is ignored.
    ``.mat`` and ``.h5`` files are 1-based by default (Matlab, Lua), the others 0-based.
    """
    path = os.fspath(path)
    _require_file(path)
    suffix = Path(path).suffix.lower()
    if suffix == ".json":
        coords, layout = _json_predictions(path)
        return PredictionFile(path, coords, layout, one_based=False)
    if suffix in (".npy", ".npz"):
        coords, layout = _numpy_predictions(path, suffix)
        return PredictionFile(path, coords, layout, one_based=False)
    if suffix == ".mat":
        coords, layout, names = _mat_predictions(path)
        names_from = "the CPM FLIC layout" if "prediction_all" in layout else "'output_joints'"
        return PredictionFile(path, coords, layout, one_based=True, joint_names=names, names_from=names_from)
    if suffix in (".h5", ".hdf5"):
        coords, layout = _h5_predictions(path)
        return PredictionFile(path, coords, layout, one_based=True)
    raise DataError("unknown predictions format: expected .json, .npy, .npz, .mat or .h5 (see docs/scoring.md)", path)


def _people_joints_xy(array: Any, path: str, what: str) -> np.ndarray:
    """An N x K x 2/3 numeric array -> N x K x 2 float64; DataError naming the file otherwise."""
    try:
        array = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{what} is not a numeric N x K x 2 array (people with different joint counts?)", path) from None
    if array.ndim != 3 or array.shape[2] not in (2, 3) or array.shape[1] == 0:
        shape = " x ".join(map(str, array.shape)) or "a scalar"
        raise DataError(f"{what} has shape {shape}, expected N x K x 2 (or N x K x 3 with a score)", path)
    if array.shape[0] == 0:
        raise DataError(f"{what} holds no predictions", path)
    return array[..., :2]


def _json_predictions(path: str) -> Tuple[np.ndarray, str]:
    data = read_json(path, "predictions file")
    if isinstance(data, dict):
        if "preds" not in data:
            raise DataError(f"a JSON object of predictions needs the key 'preds' (keys: {', '.join(map(str, data)) or 'none'})",
                            path)
        return _people_joints_xy(data["preds"], path, "'preds'"), "JSON {\"preds\": N x K x 2}"
    if isinstance(data, list) and data and isinstance(data[0], dict):
        if "image_id" in data[0] and "keypoints" in data[0]:
            raise DataError("this is a COCO results file: score it with --protocol coco", path)
        raise DataError("a JSON list of predictions must hold one K x 2 (or K x 3) array per person", path)
    if not isinstance(data, list):
        raise DataError("JSON predictions must be a list of K x 2 arrays or {\"preds\": ...}", path)
    return _people_joints_xy(data, path, "the JSON list"), "JSON list of K x 2 arrays"


def _numpy_predictions(path: str, suffix: str) -> Tuple[np.ndarray, str]:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"cannot read it as a NumPy file ({err})", path) from None
    if suffix == ".npy":
        if not isinstance(loaded, np.ndarray):
            raise DataError("not a .npy array", path)
        return _people_joints_xy(loaded, path, "the array"), ".npy N x K x 2"
    with loaded:
        names = list(loaded.files)
        if "preds" in names:
            key = "preds"
        elif len(names) == 1:
            key = names[0]
        else:
            raise DataError(f"a .npz of predictions needs the array 'preds' (arrays: {', '.join(names) or 'none'})", path)
        return _people_joints_xy(loaded[key], path, f"array {key!r}"), f".npz array {key!r} (N x K x 2)"


def _mat_predictions(path: str) -> Tuple[np.ndarray, str, Optional[List[str]]]:
    mat = _loadmat(path, "a predictions .mat",
                   wanted=("preds", "pos_pred_src", "prediction_all", "keypointsAll", "joints"))

    def numeric(name: str) -> np.ndarray:
        array = np.asarray(mat[name])
        if array.dtype.kind not in "biuf":
            raise DataError(f"{name!r} is not a numeric array", path)
        return array.astype(np.float64)

    if "preds" in mat:
        return _people_joints_xy(numeric("preds"), path, "'preds'"), ".mat 'preds' (N x K x 2)", None
    if "pos_pred_src" in mat:
        array = numeric("pos_pred_src")
        if array.ndim == 2:       # Matlab drops the trailing axis of a one-person K x 2 x 1
            array = array[:, :, None]
        if array.ndim != 3 or array.shape[1] != 2:
            raise DataError(f"'pos_pred_src' has shape {' x '.join(map(str, array.shape))}, expected K x 2 x N", path)
        return _people_joints_xy(array.transpose(2, 0, 1), path, "'pos_pred_src'"), ".mat 'pos_pred_src' (K x 2 x N)", None
    if "prediction_all" in mat:
        # The CPM release's benchmark files (testing/src/run_benchmark.m): K x 2 x N, Matlab pixels, LSP's 14
        # joints in LSP order or FLIC's 9 (its 11 less the eyes).
        array = numeric("prediction_all")
        if array.ndim == 2:
            array = array[:, :, None]
        if array.ndim != 3 or array.shape[1] != 2:
            raise DataError(f"'prediction_all' has shape {' x '.join(map(str, array.shape))}, expected K x 2 x N", path)
        coords = _people_joints_xy(array.transpose(2, 0, 1), path, "'prediction_all'")
        names = list(CPM_FLIC_JOINTS) if coords.shape[1] == len(CPM_FLIC_JOINTS) else None
        return coords, ".mat 'prediction_all' (K x 2 x N, the CPM release)", names
    if "keypointsAll" in mat:
        cells = np.asarray(mat["keypointsAll"]).reshape(-1)
        people = []
        for n, cell in enumerate(cells):
            person = np.asarray(cell)
            if person.dtype.kind not in "biuf" or person.ndim != 2 or person.shape[1] < 2 or person.size == 0:
                raise DataError(f"keypointsAll{{{n + 1}}} is not a J x 2 array (no prediction for this person?)", path)
            people.append(person[:, :2].astype(np.float64))
        if len({p.shape for p in people}) > 1:
            raise DataError("keypointsAll holds people with different joint counts", path)
        names = None
        if "output_joints" in mat:
            names = [str(np.asarray(item).reshape(-1)[0]) for item in np.asarray(mat["output_joints"]).reshape(-1)]
        return _people_joints_xy(np.stack(people) if people else np.zeros((0, 0, 2)), path, "'keypointsAll'"), \
            ".mat 'keypointsAll' (cell of J x 2)" + (" with 'output_joints'" if names else ""), names
    if "joints" in mat:
        array = numeric("joints")
        if array.ndim == 2:
            array = array[:, :, None]
        if array.ndim == 3 and array.shape[0] in (2, 3):
            return _people_joints_xy(array.transpose(2, 1, 0), path, "'joints'"), ".mat 'joints' (LSP layout, 2/3 x K x N)", None
        if array.ndim == 3 and array.shape[1] in (2, 3):
            return _people_joints_xy(array.transpose(2, 0, 1), path, "'joints'"), ".mat 'joints' (LSPET layout, K x 2/3 x N)", None
        raise DataError(f"'joints' has shape {' x '.join(map(str, array.shape))}, expected 2/3 x K x N or K x 2/3 x N", path)
    raise DataError("no predictions in this .mat: expected 'preds' (N x K x 2), 'pos_pred_src' (K x 2 x N), "
                    f"'prediction_all' (K x 2 x N), 'keypointsAll' or 'joints' (keys: {_mat_keys(mat)})", path)


def _h5_predictions(path: str) -> Tuple[np.ndarray, str]:
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise DataError(f"cannot open it as HDF5 ({err})", path) from None
    with handle:
        if not isinstance(handle.get("preds"), h5py.Dataset):
            datasets = ", ".join(sorted(handle.keys())) or "none"
            raise DataError(f"no dataset 'preds' (N x K x 2) in this h5 (datasets: {datasets})", path)
        array = np.asarray(handle["preds"][()])
    if array.dtype.kind not in "biuf":
        raise DataError("dataset 'preds' is not numeric", path)
    return _people_joints_xy(array, path, "dataset 'preds'"), ".h5 dataset 'preds' (N x K x 2)"


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
    """MPII PCKh of N x 16 x 2 arrays (:func:`posekit.metrics.pckh`) as a :class:`ScoreResult` with its curve.

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
    """Torso PCK of N x K x 2 arrays (:func:`posekit.metrics.pck`) as a :class:`ScoreResult` with its curve.

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
            columns = [_mpii_joint_index(n, pf.path, "output_joints") for n in pf.joint_names]
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
    """COCO keypoint AP/AR of a results JSON through pycocotools (:func:`posekit.metrics.coco_evaluate`).

    Every image of the annotation file counts (as HRNet evaluates). Results naming an image absent from
    the annotations, or with another keypoint count, raise :class:`DataError` naming the results file.
    """
    gt_path, pred_path = os.fspath(gt_path), os.fspath(pred_path)
    _require_file(gt_path)
    _refuse_other_protocol("coco", gt_path)
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
