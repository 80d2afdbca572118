"""MPII Human Pose in the JSON layout of the official HRNet / MSPN code (``annot/{train,valid}.json``).

Each entry: ``image``, ``center`` (x, y), ``scale`` (person height / 200), ``joints`` (16 x 2) and
``joints_vis`` (16, 1 = annotated). As both official loaders (spec 1.1): the centre moves down by 15 * scale
(MPII's centre sits high on the body), and the Matlab 1-based coordinates become 0-based (centre and joints
minus 1). The dataset pads the scale by ``data.box_padding`` (1.25 in HRNet's recipe).
Annotated joints get v = 2: the JSON does not tell occluded from visible (MSPN stores them the same way).
The release ``.mat``, ``valid.h5`` and the PCKh protocol come with the MPII evaluation work.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List

import numpy as np

from ..errors import DataError
from ..fileio import read_json
from .records import VISIBLE, PersonRecord

NUM_MPII_JOINTS = 16


def read_mpii_json(ann_file: str, image_dir: str) -> List[PersonRecord]:
    """Read an HRNet-layout MPII JSON into person records (one per entry, file order)."""
    data = read_json(ann_file)
    if not isinstance(data, list):
        raise DataError(f"expected a list of people at the top level, found {type(data).__name__}", ann_file)
    records: List[PersonRecord] = []
    for i, entry in enumerate(data):
        records.append(_record(entry, i, ann_file, image_dir))
    return records


def _record(entry: Any, index: int, ann_file: str, image_dir: str) -> PersonRecord:
    where = f"entry {index}"
    if not isinstance(entry, dict):
        raise DataError(f"{where} is not an object", ann_file)
    for key in ("image", "center", "scale", "joints", "joints_vis"):
        if key not in entry:
            raise DataError(f"{where} has no {key!r}", ann_file)
    try:
        joints = np.asarray(entry["joints"], dtype=np.float64)
        vis = np.asarray(entry["joints_vis"], dtype=np.float64)
        center = np.asarray(entry["center"], dtype=np.float64)
        scale = float(entry["scale"])
    except (TypeError, ValueError):
        raise DataError(f"{where}: joints, joints_vis, center and scale must be numbers", ann_file) from None
    if joints.shape != (NUM_MPII_JOINTS, 2) or vis.shape != (NUM_MPII_JOINTS,) or center.shape != (2,):
        raise DataError(f"{where}: expected 16 x 2 joints, 16 joints_vis and a 2-value center, got "
                        f"{joints.shape}, {vis.shape}, {center.shape}", ann_file)
    if not (np.isfinite(joints).all() and np.isfinite(center).all() and np.isfinite(scale)) or scale <= 0:
        raise DataError(f"{where}: non-finite coordinates or a scale <= 0", ann_file)
    if center[0] != -1:
        center[1] += 15 * scale
    center -= 1
    keypoints = np.zeros((NUM_MPII_JOINTS, 3))
    labelled = vis > 0
    keypoints[labelled, :2] = joints[labelled] - 1
    keypoints[labelled, 2] = VISIBLE
    extras: Dict[str, Any] = {}
    return PersonRecord(image_path=os.path.join(image_dir, str(entry["image"])), keypoints=keypoints,
                        center=center, scale=np.array([scale, scale]), extras=extras)
