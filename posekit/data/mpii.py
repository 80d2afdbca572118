"""MPII Human Pose in the JSON layout of the official HRNet / MSPN code (``annot/{train,valid}.json``).

Each entry: ``image``, ``center`` (x, y), ``scale`` (person height / 200), ``joints`` (16 x 2) and
``joints_vis`` (16, 1 = annotated). As both official loaders (spec 1.1): the centre moves down by 15 * scale
(MPII's centre sits high on the body), and the Matlab 1-based coordinates become 0-based (centre and joints
minus 1). The dataset pads the scale by ``data.box_padding`` (1.25 in HRNet's recipe).
Annotated joints get v = 2: the JSON does not tell occluded from visible (MSPN stores them the same way).
:func:`read_mpii_h5` reads the Tompson / pose-hg-train ``annot/valid.h5`` layout into the same records
(PCKh itself: ``posekit.metrics.pckh``).
"""
from __future__ import annotations

import os
from typing import Any, Dict, List

import numpy as np

from ..errors import DataError
from ..fileio import describe_array, h5_image_names, read_h5_datasets, read_json
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


# ----------------------------------------------------------------------------------------------
# pose-hg-train / Tompson ``annot/*.h5``
# ----------------------------------------------------------------------------------------------

MATLAB_OFFSET = 1.0
# pose-hg-train's h5 stores the crop already adjusted as HRNet adjusts the JSON (spec 1.1):
# center = objpos + (0, 15 * s) and scale = 1.25 * s, with s the release's person scale.
HG_SCALE_PADDING = 1.25

_H5_REQUIRED = ("part", "visible", "center", "scale", "normalize", "imgname")
_H5_EXTRAS = {"index": "index", "person": "person", "torsoangle": "torso_angle"}


def read_mpii_h5(h5_file: str, image_dir: str) -> List[PersonRecord]:
    """Read an MPII annotation file in the Tompson / pose-hg-train layout (``annot/valid.h5``: 2,958 people).

    Datasets: ``part`` N x 16 x 2, ``visible`` N x 16, ``center`` N x 2, ``scale`` N, ``normalize`` N,
    ``imgname`` N; ``index``, ``person`` (0-based image / person of the MPII release) and ``torsoangle``
    are optional and land in ``extras`` (``index``, ``person``, ``torso_angle``).
    Checked on the shared ``valid.h5`` against the release-format ``detections.mat`` (same people, same
    order) and HRNet's sample JSON:

    * ``part`` holds the release's Matlab 1-based coordinates (as HRNet's JSON, except that the h5 keeps
      only the integer part of the release's fractional neck / head-top values: up to 1 px lower), so
      joints become 0-based by -1, as in :func:`read_mpii_json`. A joint absent from the annotation is
      (0, 0). A joint is *annotated* where its coordinates are not (0, 0): that reproduces the official
      ``jnt_missing`` of the PCKh ground truth exactly. "Both coordinates > 0" would drop 45 annotated
      joints lying above or left of the image (43 head tops, 2 necks) which the official PCKh counts.
      Annotated joints get v = 2 (HRNet's ``joints_vis``), the rest v = 0 with (0, 0).
      ``visible`` is 0 for 10,243 annotated but occluded joints (e.g. 2,878 annotated pelvises, 1,620
      "visible"): it must not decide what PCKh counts; it is kept as ``extras['visible']`` (16 bools).
    * ``center``/``scale`` already carry HRNet's adjustment (centre 15 x scale lower, scale x 1.25), so
      this reader undoes the padding (scale / 1.25) and does not shift again: the records equal
      :func:`read_mpii_json`'s for the same people, and the dataset's ``box_padding`` applies 1.25 once.
      The centre becomes 0-based (-1).
    * ``normalize`` is 0.6 x the head-box diagonal (to 1e-13 of detections.mat's head boxes): it is
      ``extras['head_size']``, the PCKh normaliser.

    Image paths are ``image_dir/imgname`` (not checked: annotations come without images).
    Raises :class:`DataError` naming the file for a missing or non-HDF5 file, a missing dataset, a
    dataset of the wrong shape, or non-finite/non-positive values.
    """
    path = os.fspath(h5_file)
    arrays, optional = read_h5_datasets(path, _H5_REQUIRED, _H5_EXTRAS, "an MPII annotation file")

    count = len(arrays["part"]) if arrays["part"].ndim else -1
    expected = {"part": (NUM_MPII_JOINTS, 2), "visible": (NUM_MPII_JOINTS,), "center": (2,), "scale": (),
                "normalize": ()}
    for name, per_person in {**expected, **{name: () for name in optional}}.items():
        array = arrays.get(name, optional.get(name))
        if array.shape != (count, *per_person) or array.dtype.kind not in "biuf":
            want = " x ".join(["N", *map(str, per_person)])
            raise DataError(f"dataset {name!r} is {describe_array(array)}, expected numbers of shape {want} "
                            f"(N = {count} people in 'part')", path)
    names = h5_image_names(arrays["imgname"], count, path)
    for name, array in optional.items():
        if not np.isfinite(array.astype(np.float64)).all():
            raise DataError(f"dataset {name!r} holds non-finite values", path)

    parts = arrays["part"].astype(np.float64)
    centers = arrays["center"].astype(np.float64)
    scales = arrays["scale"].astype(np.float64)
    head_sizes = arrays["normalize"].astype(np.float64)
    for name, values in (("part", parts), ("center", centers)):
        if not np.isfinite(values).all():
            raise DataError(f"dataset {name!r} holds NaN or infinity", path)
    for name, values in (("scale", scales), ("normalize", head_sizes)):
        if not (np.isfinite(values).all() and (values > 0).all()):
            raise DataError(f"dataset {name!r} holds non-finite values or values <= 0", path)

    annotated = (parts != 0).any(axis=2)
    keypoints = np.zeros((count, NUM_MPII_JOINTS, 3))
    keypoints[..., :2] = np.where(annotated[..., None], parts - MATLAB_OFFSET, 0.0)
    keypoints[..., 2] = np.where(annotated, VISIBLE, 0)
    visible = arrays["visible"] > 0
    image_dir = os.fspath(image_dir)
    records: List[PersonRecord] = []
    for i in range(count):
        extras: Dict[str, Any] = {"head_size": float(head_sizes[i]), "visible": visible[i]}
        for name, key in _H5_EXTRAS.items():
            if name in optional:
                value = optional[name][i].item()
                extras[key] = int(value) if key in ("index", "person") else value
        scale = scales[i] / HG_SCALE_PADDING
        records.append(PersonRecord(
            image_path=os.path.join(image_dir, names[i]),
            keypoints=keypoints[i],
            center=centers[i] - MATLAB_OFFSET,
            scale=np.array([scale, scale]),
            extras=extras,
        ))
    return records
