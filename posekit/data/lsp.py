"""Readers for Leeds Sports Pose (LSP) and LSP-extended (LSPET) ``joints.mat`` files.

Both hold 14 joints per image, one person per image, in the order of :data:`posekit.skeletons.LSP`;
the two files differ in axis order and in the meaning of the flag (see :func:`read_lsp` and
:func:`read_lspet`). Coordinates are treated as Matlab 1-based and shifted by -1 to posekit's 0-based
pixel centres, as CPM's training code does for both files (``data_transformer.cpp``: "from matlab
1-index to c++ 0-index") and as the MPII readers do (spec section 1.1). PCK is unchanged by the shift
as long as predictions are compared in the same frame.

Left and right: the standard ``joints.mat`` files (LSP and LSPET) label joints **person-centric** (PC) —
"left" is the person's left, whichever way they face — and that is what posekit's flip pairs and the LSP results
of the papers assume. Some works report **observer-centric** (OC) results, with left = the side on the image's
left; their ground truth is a separate ``joints.mat`` in the same layout, read by the same functions. The two
conventions cannot be converted into each other without knowing which way each person faces, so scoring OC
predictions needs the OC ground truth (``posekit score --protocol lsp --gt OC/joints.mat``).

The files give no person box: ``box`` is the extent of the labelled joints (the dataset pads it) and
``image_size`` (width, height) is read from the JPEG frame header, without decoding the image (the
stored size: an EXIF rotation would not be applied; these images carry none).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from ..config import LSP_TRAIN_COUNT
from ..errors import DataError
from ..fileio import load_mat, mat_keys
from .images import stored_size_wh
from .records import NOT_LABELLED, OCCLUDED, VISIBLE, PersonRecord

PathLike = Union[str, "os.PathLike[str]"]

NUM_LSP_JOINTS = 14
MATLAB_OFFSET = 1.0
# The standard protocol: LSP images 1-LSP_TRAIN_COUNT (1000) train, 1001-2000 test.
LSP_TOTAL_COUNT = 2000


@dataclass(frozen=True)
class _Format:
    name: str
    layout: Tuple[int, int]   # the first two axes of 'joints'; people are the third
    image: str                # image file name from the 1-based image number
    pattern: "re.Pattern[str]"


_LSP = _Format("LSP", (3, NUM_LSP_JOINTS), "im{:04d}.jpg", re.compile(r"im\d{4}\.jpg"))
_LSPET = _Format("LSPET", (NUM_LSP_JOINTS, 3), "im{:05d}.jpg", re.compile(r"im\d{5}\.jpg"))


def read_lsp_joints(mat_path: PathLike) -> Tuple[np.ndarray, str]:
    """The people of an LSP (3 x 14 x N) or LSPET (14 x 3 x N) ``joints.mat``, the layout told by the shape.

    Returns N x 14 x 3 keypoints as :func:`read_lsp` / :func:`read_lspet` give them (0-based; LSP: every
    joint labelled, v = 1 where occluded; LSPET: joints without coordinates v = 0) and the layout's name,
    "LSP" or "LSPET". Needs no images (for scoring against the ground truth).
    """
    mat_path = os.fspath(mat_path)
    joints = _joints_array(mat_path, _LSP)
    spec = _LSPET if joints.shape[:2] == _LSPET.layout else _LSP
    raw = _load_joints(mat_path, spec, joints)
    return (_lspet_keypoints(raw) if spec is _LSPET else _lsp_keypoints(raw)), spec.name


def _joints_array(mat_path: str, spec: _Format) -> np.ndarray:
    """The numeric ``joints`` array of a joints.mat, 3-D (scipy drops the trailing axis of a one-person file)."""
    not_ours = f"not an {spec.name} joints.mat"
    mat = load_mat(mat_path, f"an {spec.name} joints.mat")
    if "joints" not in mat:
        raise DataError(f"{not_ours}: no key 'joints' (keys: {mat_keys(mat)})", mat_path)
    joints = mat["joints"]
    if not isinstance(joints, np.ndarray) or joints.dtype.kind not in "biuf":
        raise DataError(f"{not_ours}: 'joints' is not a numeric array", mat_path)
    return joints[:, :, None] if joints.ndim == 2 else joints


def _load_joints(mat_path: str, spec: _Format, joints: Optional[np.ndarray] = None) -> np.ndarray:
    """The ``joints`` array of an LSP/LSPET file (read unless given) as N x 14 x 3 (x, y, flag), layout checked."""
    not_ours = f"not an {spec.name} joints.mat"
    if joints is None:
        joints = _joints_array(mat_path, spec)
    shape = "x".join(map(str, joints.shape))
    other = _LSPET if spec is _LSP else _LSP
    if joints.ndim == 3 and joints.shape[:2] == other.layout:
        reader = "read_lspet" if other is _LSPET else "read_lsp"
        raise DataError(f"{not_ours}: 'joints' is {shape}, the {other.name} layout; use {reader}", mat_path)
    if joints.ndim != 3 or joints.shape[:2] != spec.layout:
        raise DataError(
            f"{not_ours}: 'joints' has shape {shape}, expected 3x14xN (LSP: x, y, flag) or 14x3xN (LSPET)", mat_path
        )
    joints = joints.astype(np.float64)
    joints = joints.transpose(2, 1, 0) if spec is _LSP else joints.transpose(2, 0, 1)
    if not np.isfinite(joints).all():
        raise DataError(f"{not_ours}: 'joints' holds NaN or infinity", mat_path)
    if not np.isin(joints[:, :, 2], (0.0, 1.0)).all():
        raise DataError(f"{not_ours}: the visibility flags must be 0 or 1", mat_path)
    return joints


def _check_images(root: str, mat_path: str, count: int, spec: _Format) -> str:
    image_dir = os.path.join(root, "images")
    if not os.path.isdir(image_dir):
        raise DataError(f"no images/ folder beside joints.mat ({image_dir})", mat_path)
    num_images = sum(1 for name in os.listdir(image_dir) if spec.pattern.fullmatch(name))
    if num_images != count:
        example = spec.image.format(1)
        raise DataError(
            f"joints.mat holds {count} people but {image_dir} holds {num_images} images named like {example}",
            mat_path,
        )
    return image_dir


def _select(count: int, indices: Optional[Sequence[int]], mat_path: str) -> np.ndarray:
    if indices is None:
        return np.arange(count)
    selected = np.asarray(list(indices), dtype=np.int64).reshape(-1)
    out_of_range = selected[(selected < 0) | (selected >= count)]
    if out_of_range.size:
        raise DataError(f"index {int(out_of_range[0])} out of range: joints.mat holds {count} people (0-based indices)", mat_path)
    return selected


def _to_records(
    keypoints: np.ndarray,
    selected: np.ndarray,
    image_dir: str,
    spec: _Format,
    image_sizes: bool,
) -> List[PersonRecord]:
    labelled = keypoints[:, :, 2] > 0
    any_labelled = labelled.any(axis=1)
    xs = keypoints[:, :, 0]
    ys = keypoints[:, :, 1]
    x_min = np.where(labelled, xs, np.inf).min(axis=1)
    y_min = np.where(labelled, ys, np.inf).min(axis=1)
    x_max = np.where(labelled, xs, -np.inf).max(axis=1)
    y_max = np.where(labelled, ys, -np.inf).max(axis=1)
    boxes = np.stack([x_min, y_min, x_max - x_min, y_max - y_min], axis=1)

    records = []
    for i in selected:
        number = int(i) + 1
        path = os.path.join(image_dir, spec.image.format(number))
        if not os.path.isfile(path):
            raise DataError("image file not found", path)
        records.append(
            PersonRecord(
                image_path=path,
                keypoints=keypoints[i].copy(),
                box=boxes[i].copy() if any_labelled[i] else None,
                image_id=number,
                image_size=stored_size_wh(path) if image_sizes else None,
            )
        )
    return records


def _lsp_keypoints(raw: np.ndarray) -> np.ndarray:
    keypoints = raw.copy()
    keypoints[:, :, :2] -= MATLAB_OFFSET
    # LSP: flag 1 marks an occluded joint; every joint has coordinates.
    keypoints[:, :, 2] = np.where(raw[:, :, 2] == 0, VISIBLE, OCCLUDED)
    return keypoints


def _lspet_keypoints(raw: np.ndarray) -> np.ndarray:
    flag = raw[:, :, 2]
    # An unannotated LSPET joint has a zero or negative coordinate (all 6,708 flag-0 joints of the
    # first 4,000 do). Visible joints are kept even where they lie a pixel above the image edge.
    missing = (flag == 0) & ((raw[:, :, 0] <= 0) | (raw[:, :, 1] <= 0))
    visibility = np.where(flag == 1, VISIBLE, np.where(missing, NOT_LABELLED, OCCLUDED))
    keypoints = raw.copy()
    keypoints[:, :, :2] -= MATLAB_OFFSET
    keypoints[:, :, 2] = visibility
    keypoints[visibility == NOT_LABELLED] = 0.0
    return keypoints


def read_lsp(root: PathLike, indices: Optional[Sequence[int]] = None, image_sizes: bool = True) -> List[PersonRecord]:
    """Read LSP: ``root/joints.mat`` (``joints``, 3 x 14 x N: x, y, flag) and ``root/images/im%04d.jpg``.

    The flag is 1 for an OCCLUDED joint, so v = 2 where it is 0 and 1 where it is 1; every joint is
    labelled. ``indices`` are 0-based positions in the file (image number = index + 1, which is also
    ``image_id``); None reads all. Coordinates are shifted by -1 (Matlab 1-based -> 0-based, see the
    module docstring); ``box`` is the joints' extent (x, y, w, h); ``image_size`` is (width, height)
    from the JPEG header, or None with ``image_sizes=False``. Raises :class:`DataError` for a file
    without ``joints``, a shape that is not 3 x 14 x N, or a people count that differs from the
    number of ``im####.jpg`` images.
    """
    root = os.fspath(root)
    mat_path = os.path.join(root, "joints.mat")
    raw = _load_joints(mat_path, _LSP)
    image_dir = _check_images(root, mat_path, len(raw), _LSP)
    selected = _select(len(raw), indices, mat_path)
    return _to_records(_lsp_keypoints(raw), selected, image_dir, _LSP, image_sizes)


def read_lspet(root: PathLike, indices: Optional[Sequence[int]] = None, image_sizes: bool = True) -> List[PersonRecord]:
    """Read LSP-extended: ``root/joints.mat`` (``joints``, 14 x 3 x N) and ``root/images/im%05d.jpg``.

    Here the flag is 1 for a VISIBLE joint (the opposite of LSP) and joints that were not annotated
    carry a zero or negative coordinate: those get v = 0 and coordinates (0, 0); flagged joints get
    v = 2 (even the few that sit up to a pixel outside the image); an unflagged joint with positive
    coordinates would get v = 1 (none in the files seen). Coordinates, ``indices``, ``box``,
    ``image_size`` and errors as :func:`read_lsp`; ``box`` is None for a person with no labelled joint.
    """
    root = os.fspath(root)
    mat_path = os.path.join(root, "joints.mat")
    raw = _load_joints(mat_path, _LSPET)
    image_dir = _check_images(root, mat_path, len(raw), _LSPET)
    selected = _select(len(raw), indices, mat_path)
    return _to_records(_lspet_keypoints(raw), selected, image_dir, _LSPET, image_sizes)


def lsp_standard_split(
    lsp_root: PathLike,
    lspet_root: Optional[PathLike] = None,
    require_test: bool = True,
    image_sizes: bool = True,
) -> Tuple[List[PersonRecord], List[PersonRecord]]:
    """The standard LSP protocol: train = LSP images 1-1000 (+ all of LSPET when given), test = 1001-2000.

    The test half needs the full 2,000-person LSP file. When the file holds fewer people this raises
    :class:`DataError` saying so, unless ``require_test=False``: then the test list holds whatever
    lies beyond image 1000 (empty for a 1,000-person copy) and the train list is returned as usual.
    """
    lsp_root = os.fspath(lsp_root)
    mat_path = os.path.join(lsp_root, "joints.mat")
    raw = _load_joints(mat_path, _LSP)
    count = len(raw)
    if count < LSP_TRAIN_COUNT:
        raise DataError(f"joints.mat holds {count} people; the standard LSP training half needs images 1-{LSP_TRAIN_COUNT}", mat_path)
    if require_test and count < LSP_TOTAL_COUNT:
        raise DataError(
            f"joints.mat holds {count} people; the standard LSP test half (images {LSP_TRAIN_COUNT + 1}-{LSP_TOTAL_COUNT}) "
            f"is absent (pass require_test=False to read the training half only)",
            mat_path,
        )
    image_dir = _check_images(lsp_root, mat_path, count, _LSP)
    keypoints = _lsp_keypoints(raw)
    train = _to_records(keypoints, np.arange(LSP_TRAIN_COUNT), image_dir, _LSP, image_sizes)
    test = _to_records(keypoints, np.arange(LSP_TRAIN_COUNT, min(count, LSP_TOTAL_COUNT)), image_dir, _LSP, image_sizes)
    if lspet_root is not None:
        train += read_lspet(lspet_root, image_sizes=image_sizes)
    return train, test
