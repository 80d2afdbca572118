"""Ground truth for ``posekit score``: which protocol a file belongs to, and the people of a ground-truth file.

:func:`load_ground_truth` reads MPII (``valid.h5``, HRNet's ``gt_valid.mat``, an ``annolist`` .mat, an HRNet
JSON with head boxes from another file), LSP / LSPET ``joints.mat`` and FLIC (``valid.h5``, ``examples.mat``)
through the readers of :mod:`posekit.data` into one :class:`GroundTruth`: N x K x 3 keypoints, MPII's head
sizes, and what was read. :mod:`posekit.evaluation.scoring` scores predictions against it.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np

from ..data.flic import read_flic_examples_mat, read_flic_h5
from ..data.lsp import read_lsp_joints
from ..data.mpii import read_mpii_eval_mat, read_mpii_h5, read_mpii_json
from ..errors import ConfigError, DataError
from ..fileio import mat_variables, read_json, require_file
from ..skeletons import FLIC, LSP, MPII, Skeleton

PathLike = Union[str, "os.PathLike[str]"]

PROTOCOL_SKELETONS: Dict[str, Skeleton] = {"mpii": MPII, "lsp": LSP, "flic": FLIC}


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
            shapes = mat_variables(path, "a .mat file")
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


def refuse_other_protocol(protocol: str, path: str) -> None:
    """DataError naming ``path`` when its content shows it is ground truth of another protocol."""
    found = detect_ground_truth(path)
    if found is not None and found[0] != protocol:
        raise DataError(f"this is {found[1]}, not {protocol.upper()} ground truth: use --protocol {found[0]}", path)



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
    require_file(path)
    refuse_other_protocol(protocol, path)
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
        records = read_mpii_json(path, "")
        keypoints = np.stack([r.keypoints for r in records]) if records else np.zeros((0, 16, 3))
        gt = GroundTruth("mpii", path, MPII, keypoints, None, f"MPII JSON (HRNet layout, {len(keypoints)} people)")
        if head_boxes is None:
            raise DataError("an MPII JSON has no head boxes: pass --head-boxes FILE (valid.h5, gt_valid.mat or "
                            "detections.mat of the same people, same order)", path)
    else:
        gt = _mpii_boxed_ground_truth(path)
    if head_boxes is not None:
        require_file(head_boxes)
        if Path(head_boxes).suffix.lower() == ".json":
            raise DataError("a head-box file must be valid.h5, a gt_valid.mat (headboxes_src) or an annolist .mat "
                            "(x1 y1 x2 y2)", head_boxes)
        refuse_other_protocol("mpii", head_boxes)
        boxes = _mpii_boxed_ground_truth(head_boxes)
        _check_same_people(gt, boxes, head_boxes)
        gt.head_size = boxes.head_size
        gt.description += f"; head sizes from {head_boxes} ({boxes.description})"
    return gt


def _mpii_boxed_ground_truth(path: str) -> GroundTruth:
    """MPII ground truth from a file that carries head sizes: valid.h5, gt_valid.mat or an annolist .mat."""
    suffix = Path(path).suffix.lower()
    if suffix in (".h5", ".hdf5"):
        records = read_mpii_h5(path, "")
        keypoints = np.stack([r.keypoints for r in records])
        head = np.array([r.extras["head_size"] for r in records])
        return GroundTruth("mpii", path, MPII, keypoints, head,
                           f"MPII valid.h5 (pose-hg-train layout, {len(records)} people; head size = its 'normalize', "
                           "0.6 x head-box diagonal)")
    if suffix != ".mat":
        raise DataError("MPII ground truth must be valid.h5, a .mat (gt_valid.mat or annolist) or an HRNet JSON", path)
    people = read_mpii_eval_mat(path)
    layout = ("evaluation .mat (pos_gt_src / jnt_missing / headboxes_src, " if people.layout == "gt_valid"
              else "annolist .mat (")
    return GroundTruth("mpii", path, MPII, people.keypoints, people.head_size,
                       f"MPII {layout}{len(people)} people; head size = 0.6 x head-box diagonal)")




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
    if Path(path).suffix.lower() != ".mat":
        raise DataError("LSP ground truth is a joints.mat (LSP 3 x 14 x N or LSPET 14 x 3 x N)", path)
    keypoints, layout = read_lsp_joints(path)
    if layout == "LSPET":
        what = "LSPET joints.mat (14 x 3 x N, flag 1 = visible; joints without coordinates not counted)"
    else:
        what = "LSP joints.mat (3 x 14 x N, flag 1 = occluded; every joint counts)"
    return GroundTruth("lsp", path, LSP, keypoints, None, f"{what}, {len(keypoints)} people")


def _flic_ground_truth(path: str) -> GroundTruth:
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

