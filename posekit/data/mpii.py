"""MPII Human Pose in the JSON layout of the official HRNet / MSPN code (``annot/{train,valid}.json``).

Each entry: ``image``, ``center`` (x, y), ``scale`` (person height / 200), ``joints`` (16 x 2) and
``joints_vis`` (16, 1 = annotated). As both official loaders (spec 1.1): the centre moves down by 15 * scale
(MPII's centre sits high on the body), and the Matlab 1-based coordinates become 0-based (centre and joints
minus 1). The dataset pads the scale by ``data.box_padding`` (1.25 in HRNet's recipe).
Annotated joints get v = 2: the JSON does not tell occluded from visible (MSPN stores them the same way).
:func:`read_mpii_h5` reads the Tompson / pose-hg-train ``annot/valid.h5`` layout into the same records
(PCKh itself: ``posekit.evaluation.metrics.pckh``), :func:`read_mpii_release_mat` the official release
``mpii_human_pose_v1_u12_1.mat`` and :func:`read_mpii_eval_mat` the evaluation ``.mat`` files (HRNet's
``gt_valid.mat``; an ``annolist`` of the release's structs such as the shared ``detections.mat``) into plain
arrays. All ``.mat`` annotations are parsed here, one annorect parser for the release and ``annolist`` files.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import ConfigError, DataError
from ..fileio import describe_array, h5_image_names, load_mat, mat_keys, mat_variables, read_h5_datasets, read_json
from ..skeletons import MPII
from .records import OCCLUDED, VISIBLE, PersonRecord

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
    if not isinstance(entry["image"], str) or not entry["image"]:
        raise DataError(f"{where}: 'image' must be a file name, found {entry['image']!r}", ann_file)
    try:
        raw = [np.asarray(entry[key]) for key in ("joints", "joints_vis", "center", "scale")]
    except (TypeError, ValueError):   # ragged lists
        raw = []
    # Checked before converting: np.asarray(..., float) would silently accept "1.5" and true.
    if len(raw) != 4 or any(a.dtype.kind not in "iuf" for a in raw) or raw[3].shape != ():
        raise DataError(f"{where}: joints, joints_vis, center and scale must be numbers", ann_file)
    joints, vis, center = (a.astype(np.float64) for a in raw[:3])
    scale = float(raw[3])
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
# PCKh's head size: SC_BIAS x head-box diagonal (HRNet mpii.py::evaluate).
HEAD_SIZE_FACTOR = 0.6
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


# ----------------------------------------------------------------------------------------------
# The official release ``mpii_human_pose_v1_u12_1.mat``
# ----------------------------------------------------------------------------------------------

# Per MPII's README: RELEASE.annolist(i).image.name; .annorect(j).{x1, y1, x2, y2} (head box), .scale (person
# height / 200 px), .objpos.{x, y} (rough body centre), .annopoints.point(p).{id (0-based MPII joint), x, y,
# is_visible}; .vidx / .frame_sec. RELEASE.img_train(i) (1 train, 0 test), single_person{i} (1-based annorect
# indices of sufficiently separated people), act(i).{cat_name, act_name, act_id}, video_list{v} (YouTube ids).
RELEASE_SPLITS = ("train", "test", "all")


def _mat_items(value: Any) -> List[Any]:
    """A loadmat(squeeze_me=True) value as a list: one struct, a struct array, or nothing (empty / missing)."""
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        return list(value.reshape(-1))
    return [value]


def _mat_number(value: Any) -> Optional[float]:
    """A scalar field as float; None where MATLAB left it empty. Strings holding a number are accepted."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return float(text)
        except ValueError:
            raise TypeError(f"not a number: {value!r}") from None
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return None
        if value.size != 1:
            raise TypeError(f"expected one number, found {value.size}")
        return _mat_number(value.reshape(-1)[0])
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    raise TypeError(f"not a number: {type(value).__name__}")


def _mat_text(value: Any) -> Optional[str]:
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray) and value.size == 1:
        return _mat_text(value.reshape(-1)[0])
    return None


def _field(struct: Any, name: str) -> Any:
    return getattr(struct, name, None)


def read_mpii_release_mat(
    mat_file: str,
    image_dir: str,
    split: str = "train",
    single_person_only: bool = False,
    min_joints: Optional[int] = None,
) -> List[PersonRecord]:
    """Read the people of the MPII release annotation ``mpii_human_pose_v1_u12_1.mat`` (RELEASE struct).

    ``split``: "train" (``img_train`` 1), "test" (``img_train`` 0: people have only ``objpos`` and
    ``scale``, for predictions to submit) or "all". ``single_person_only`` keeps the people listed in
    ``single_person`` (the single-person benchmark's). ``min_joints``: people with fewer annotated
    joints are skipped (default 1 for "train", 0 otherwise). A person without ``objpos`` or a positive
    ``scale`` cannot be cropped and is skipped.

    Records follow :func:`read_mpii_json` (HRNet's JSON was converted from this file): centre =
    objpos moved down by 15 x scale, then centre and joints -1 (Matlab 1-based -> 0-based); ``scale`` is
    the release's (the dataset's ``box_padding`` applies HRNet's 1.25). A joint with ``is_visible`` 0 gets
    v = 1 (annotated, occluded), 1 gets v = 2; where ``is_visible`` is missing or empty (many release
    points) v = 2, as HRNet's JSON marks every annotated joint. Unannotated joints are (0, 0, 0).
    ``extras``: ``index`` / ``person`` (0-based image and annorect index), ``head_box`` (x1, y1, x2, y2,
    0-based) and ``head_size`` = 0.6 x head-box diagonal (the PCKh normaliser, as ``valid.h5``'s
    ``normalize``) where the head box is present, ``visible`` (16 bools, v == 2), ``single_person``,
    ``train``, and ``activity`` / ``video_id`` where the file has them.
    Raises :class:`DataError` naming the file for an unreadable file, no RELEASE struct, ``img_train`` of
    another length than ``annolist``, a joint id outside 0..15 or given twice, non-numeric coordinates.
    """
    if split not in RELEASE_SPLITS:
        raise ConfigError(f"MPII release split must be one of {', '.join(RELEASE_SPLITS)}, got {split!r}")
    if min_joints is None:
        min_joints = 1 if split == "train" else 0
    path = os.fspath(mat_file)
    not_ours = "not an MPII release .mat"
    mat = load_mat(path, "an MPII release .mat", struct_as_record=False, squeeze_me=True)
    release = mat.get("RELEASE")
    if release is None or _field(release, "annolist") is None or _field(release, "img_train") is None:
        raise DataError(f"{not_ours}: no RELEASE struct with annolist and img_train (keys: {mat_keys(mat)})", path)
    annolist = _mat_items(release.annolist)
    try:
        img_train = np.atleast_1d(np.asarray(release.img_train, dtype=np.float64)).reshape(-1)
    except (TypeError, ValueError):
        raise DataError(f"{not_ours}: img_train is not numeric", path) from None
    if img_train.size != len(annolist):
        raise DataError(f"{not_ours}: img_train has {img_train.size} entries, annolist {len(annolist)}", path)
    single = _mat_items(_field(release, "single_person"))
    if single_person_only and len(single) != len(annolist):
        raise DataError(f"{not_ours}: single_person_only needs single_person for each of the {len(annolist)} images",
                        path)
    acts = _mat_items(_field(release, "act"))
    videos = [_mat_text(v) for v in _mat_items(_field(release, "video_list"))]

    image_dir = os.fspath(image_dir)
    records: List[PersonRecord] = []
    for index, entry in enumerate(annolist):
        where = f"annolist({index + 1})"
        is_train = img_train[index] == 1
        if (split == "train" and not is_train) or (split == "test" and is_train):
            continue
        name = _mat_text(_field(_field(entry, "image"), "name"))
        if not name:
            raise DataError(f"{not_ours}: {where}.image.name is not a file name", path)
        try:
            listed = [_mat_number(v) for v in _mat_items(single[index])] if index < len(single) else []
        except TypeError:
            raise DataError(f"{not_ours}: single_person{{{index + 1}}} is not a list of numbers", path) from None
        singles = {int(v) for v in listed if v is not None}
        common: Dict[str, Any] = {"train": bool(is_train)}
        if index < len(acts):
            activity = _mat_text(_field(acts[index], "act_name"))
            if activity:
                common["activity"] = activity
        try:
            vidx = _mat_number(_field(entry, "vidx"))
        except TypeError:
            vidx = None
        if vidx is not None and 1 <= vidx <= len(videos) and videos[int(vidx) - 1]:
            common["video_id"] = videos[int(vidx) - 1]
        for ridx, rect in enumerate(_mat_items(_field(entry, "annorect"))):
            if single_person_only and ridx + 1 not in singles:
                continue
            record = _release_person(rect, f"{where}.annorect({ridx + 1})", path, not_ours)
            if record is None or record.num_labelled < min_joints:
                continue
            record.image_path = os.path.join(image_dir, name)
            record.extras.update(common, index=index, person=ridx, single_person=ridx + 1 in singles)
            records.append(record)
    return records


def _release_person(rect: Any, where: str, path: str, not_ours: str) -> Optional[PersonRecord]:
    try:
        scale = _mat_number(_field(rect, "scale"))
        objpos = _field(rect, "objpos")
        cx = _mat_number(_field(objpos, "x")) if objpos is not None else None
        cy = _mat_number(_field(objpos, "y")) if objpos is not None else None
    except TypeError as err:
        raise DataError(f"{not_ours}: {where}: {err}", path) from None
    corners = _head_box(rect, where, path, not_ours)
    if scale is None or cx is None or cy is None or not (np.isfinite([scale, cx, cy]).all() and scale > 0):
        return None
    keypoints = _annorect_keypoints(rect, where, path, not_ours)
    extras: Dict[str, Any] = {"visible": keypoints[:, 2] == VISIBLE}
    if corners is not None:
        box = np.array(corners, dtype=np.float64)
        if np.isfinite(box).all():
            extras["head_box"] = box - MATLAB_OFFSET
            extras["head_size"] = HEAD_SIZE_FACTOR * float(np.hypot(box[2] - box[0], box[3] - box[1]))
    center = np.array([cx, cy + 15 * scale]) - MATLAB_OFFSET
    return PersonRecord(image_path="", keypoints=keypoints, center=center, scale=np.array([scale, scale]),
                        extras=extras)


def _head_box(rect: Any, where: str, path: str, not_ours: str) -> Optional[List[float]]:
    """An annorect's head box x1, y1, x2, y2 (Matlab pixels), or None where a corner is absent or empty."""
    try:
        corners = [_mat_number(_field(rect, k)) for k in ("x1", "y1", "x2", "y2")]
    except TypeError as err:
        raise DataError(f"{not_ours}: {where}: {err}", path) from None
    return None if any(c is None for c in corners) else corners


def _annorect_keypoints(rect: Any, where: str, path: str, not_ours: str) -> np.ndarray:
    """16 x 3 keypoints of an annorect's annopoints.point(p).{id, x, y, is_visible}: 0-based; v = 1 where
    is_visible is 0, else 2 (also where it is missing or empty); (0, 0, 0) for joints not annotated."""
    keypoints = np.zeros((NUM_MPII_JOINTS, 3))
    annopoints = _field(rect, "annopoints")
    points = _mat_items(_field(annopoints, "point")) if annopoints is not None and not isinstance(annopoints, np.ndarray) else []
    for n, point in enumerate(points):
        label = f"{where}.annopoints.point({n + 1})"
        try:
            joint, x, y = (_mat_number(_field(point, k)) for k in ("id", "x", "y"))
            flag = _mat_number(_field(point, "is_visible"))
        except TypeError as err:
            raise DataError(f"{not_ours}: {label}: {err}", path) from None
        if joint is None or not 0 <= joint < NUM_MPII_JOINTS or joint != int(joint):
            raise DataError(f"{not_ours}: {label}: joint id must be 0..15, found {joint!r}", path)
        if x is None or y is None or not np.isfinite([x, y]).all():
            raise DataError(f"{not_ours}: {label}: x and y must be finite numbers", path)
        joint = int(joint)
        if keypoints[joint, 2] > 0:
            raise DataError(f"{not_ours}: {label}: joint {joint} is annotated twice", path)
        keypoints[joint] = (x - MATLAB_OFFSET, y - MATLAB_OFFSET, OCCLUDED if flag == 0 else VISIBLE)
    return keypoints


# ----------------------------------------------------------------------------------------------
# Evaluation .mat files: HRNet's ``gt_valid.mat`` and ``annolist`` files such as ``detections.mat``
# ----------------------------------------------------------------------------------------------

# Joint names of the MPII evaluation files (``dataset_joints`` of gt_valid.mat, ``output_joints``), MPII order.
MPII_ABBREVIATIONS: Tuple[str, ...] = ("rank", "rkne", "rhip", "lhip", "lkne", "lank", "pelv", "thor", "neck",
                                       "head", "rwri", "relb", "rsho", "lsho", "lelb", "lwri")


@dataclass
class MpiiEvalPeople:
    """The people of an MPII evaluation .mat, in file order: ``keypoints`` N x 16 x 3 (0-based; v = 2 where
    annotated, else (0, 0, 0)) and ``head_size`` N (0.6 x head-box diagonal, PCKh's normaliser)."""

    keypoints: np.ndarray
    head_size: np.ndarray
    layout: str        # "gt_valid" (pos_gt_src / jnt_missing / headboxes_src) or "annolist"

    def __len__(self) -> int:
        return len(self.keypoints)


def mpii_joint_index(name: str, path: str, what: str) -> int:
    """MPII index of a joint named as the evaluation files (``rank``, ...) or as posekit (``r_ankle``, ...)."""
    key = name.strip().lower()
    if key in MPII_ABBREVIATIONS:
        return MPII_ABBREVIATIONS.index(key)
    if key in MPII.keypoints:
        return MPII.keypoints.index(key)
    raise DataError(f"'{what}' names an unknown MPII joint {name!r} (known: {', '.join(MPII_ABBREVIATIONS)})", path)


def mat_cell_strings(raw: Any) -> List[str]:
    """The strings of a Matlab cell array of strings (loadmat's default layout); "" for an empty cell."""
    return [str(np.asarray(item).reshape(-1)[0]) if np.asarray(item).size else "" for item in np.asarray(raw).reshape(-1)]


def read_mpii_eval_mat(mat_file: str) -> MpiiEvalPeople:
    """Read the people of an MPII evaluation ground-truth .mat, recognised by its variables.

    HRNet's ``gt_valid.mat``: ``pos_gt_src`` K x 2 x N, ``jnt_missing`` K x N and ``headboxes_src``
    2 x 2 x N (Matlab 1-based), joints in MPII order or named by ``dataset_joints``. An ``annolist`` of the
    release's structs (the shared ``detections.mat``): every ``annorect`` is one person, in file order, with
    its head box x1 y1 x2 y2 (required) and ``annopoints``, parsed as :func:`read_mpii_release_mat` does.
    Raises :class:`DataError` naming the file for an unreadable file, neither layout, or arrays that do
    not fit.
    """
    path = os.fspath(mat_file)
    variables = mat_variables(path, "MPII ground truth")
    if "pos_gt_src" in variables:
        return _gt_valid_people(load_mat(path, "MPII ground truth"), path)
    if "annolist" in variables:
        mat = load_mat(path, "MPII ground truth", variable_names=["annolist"], struct_as_record=False,
                       squeeze_me=True)
        return _annolist_people(mat["annolist"], path)
    raise DataError(f"not MPII ground truth: no 'pos_gt_src' (gt_valid.mat) or 'annolist' (keys: {mat_keys(variables)})",
                    path)


def _gt_valid_people(mat: Dict[str, Any], path: str) -> MpiiEvalPeople:
    arrays = {}
    for name in ("pos_gt_src", "jnt_missing", "headboxes_src"):
        if name not in mat:
            raise DataError(f"not an MPII gt_valid.mat: no {name!r} (keys: {mat_keys(mat)})", path)
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
    order = None
    if mat.get("dataset_joints") is not None:
        names = mat_cell_strings(mat["dataset_joints"])
        if len(names) != joints:
            raise DataError(f"'dataset_joints' names {len(names)} joints, the arrays hold {joints}", path)
        order = np.array([mpii_joint_index(name, path, "dataset_joints") for name in names])
    if order is None:
        if joints != NUM_MPII_JOINTS:
            raise DataError(f"pos_gt_src holds {joints} joints, MPII has 16", path)
        order = np.arange(NUM_MPII_JOINTS)
    if sorted(order.tolist()) != list(range(NUM_MPII_JOINTS)):
        raise DataError("'dataset_joints' must name each of MPII's 16 joints once", path)
    annotated = np.zeros((count, NUM_MPII_JOINTS), dtype=bool)
    annotated[:, order] = (missing == 0).T
    coords = np.zeros((count, NUM_MPII_JOINTS, 2))
    coords[:, order] = pos.transpose(2, 0, 1) - MATLAB_OFFSET
    if not np.isfinite(coords[annotated]).all():
        raise DataError("pos_gt_src holds NaN or infinity for a joint that is not missing", path)
    keypoints = np.concatenate([np.where(annotated[..., None], coords, 0.0), VISIBLE * annotated[..., None]], axis=2)
    diagonal = np.linalg.norm(boxes[1] - boxes[0], axis=0)
    return MpiiEvalPeople(keypoints, diagonal * HEAD_SIZE_FACTOR, "gt_valid")


def _annolist_people(annolist: Any, path: str) -> MpiiEvalPeople:
    not_ours = "not an MPII annotation .mat"
    entries = _mat_items(annolist)
    if not entries or not all(_is_struct(entry) and "annorect" in entry._fieldnames for entry in entries):
        raise DataError(f"{not_ours}: 'annolist' has no field 'annorect'", path)
    keypoints, head = [], []
    for i, entry in enumerate(entries):
        for j, rect in enumerate(_mat_items(entry.annorect)):
            where = f"annolist({i + 1}).annorect({j + 1})"
            if not _is_struct(rect):
                raise DataError(f"annolist({i + 1}).annorect is not a struct", path)
            box = _head_box(rect, where, path, not_ours)
            if box is None:
                raise DataError(f"{where} has no head box (x1, y1, x2, y2)", path)
            head.append(HEAD_SIZE_FACTOR * math.hypot(box[2] - box[0], box[3] - box[1]))
            person = _annorect_keypoints(rect, where, path, not_ours)
            # Every annotated joint counts for PCKh, occluded or not.
            person[:, 2] = np.where(person[:, 2] > 0, VISIBLE, 0.0)
            keypoints.append(person)
    if not keypoints:
        raise DataError("'annolist' holds no annorect", path)
    return MpiiEvalPeople(np.stack(keypoints), np.array(head), "annolist")


def _is_struct(value: Any) -> bool:
    # loadmat(struct_as_record=False) gives mat_struct objects, which list their fields in _fieldnames.
    return hasattr(value, "_fieldnames")
