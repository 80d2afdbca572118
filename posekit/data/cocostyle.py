"""Readers for the COCO-like multi-person sets: CrowdPose, OCHuman, AI Challenger and PoseTrack 2018.

All four are read through :mod:`posekit.data.coco` (same filtering: crowd regions dropped, boxes
sanitised, people without a labelled joint dropped for training), with what differs per set:

* **CrowdPose** (14 joints): COCO layout; each image's ``crowdIndex`` lands in ``extras['crowd_index']``
  (CrowdPose's easy / medium / hard split is by that index).
* **OCHuman** (COCO's 17 joints): the COCO-layout files (``ochuman_coco_format_*.json``).
* **AI Challenger** (14 joints): the COCO-converted layout (MMPose's ``aic_{train,val}.json``) or the
  release's own JSON: a list of ``{image_id: <sha1>, human_annotations: {humanN: [x1, y1, x2, y2]},
  keypoint_annotations: {humanN: [x, y, v] * 14}}`` with v = 1 visible, 2 occluded, 3 not labelled
  (AI_Challenger_2017 ``keypoint_eval.py`` counts v == 1 as visible). The release layout is converted
  as the COCO one was: v 1/2/3 -> 2/1/0 (unlabelled joints at (0, 0)), box -> (x1, y1, x2 - x1, y2 - y1),
  people in ``humanN`` order — checked against the shared sample of both layouts.
* **PoseTrack 2018** (17 joints, head_bottom / head_top instead of the eyes): a COCO-layout file, or
  the release's directory of per-video JSON files (one COCO-like object per video; images carry
  ``vid_id``, ``frame_id``, ``is_labeled``; people carry ``track_id`` and ``bbox_head``). Each record
  has ``extras['track_id']``, ``extras['head_box']`` (x, y, w, h) and ``extras['head_size']`` =
  0.6 x head-box diagonal (PoseTrack's PCKh normaliser, as MPII's).

Every reader checks the file's keypoint names (where the person category lists them) against the
keypoint set, so a CrowdPose file read as AIC — both 14 joints, different orders — is an error, not a
silently permuted skeleton.
"""
from __future__ import annotations

import math
import os
import re
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..config import FORMAT_SKELETONS
from ..errors import ConfigError, DataError
from ..fileio import read_json
from ..skeletons import AIC, CROWDPOSE, OCHUMAN, POSETRACK, Skeleton
from .coco import (
    PERSON_CATEGORY_ID,
    ImageIndex,
    PathLike,
    _image_index_from_data,
    coco_image_index,
    coco_keypoints_from_data,
    read_coco_keypoints,
)
from .images import stored_size_wh
from .records import NOT_LABELLED, OCCLUDED, VISIBLE, PersonRecord
from .transforms import sanitize_box

# The data.format values these readers take: COCO's, the synthetic set's, and those of FORMAT_SKELETONS
# (data.format -> the keypoint set its files are in, and the data.skeleton names that fit it).
COCO_STYLE_FORMATS = ("coco", "synthetic", *FORMAT_SKELETONS)

# PCKh's head size, as MPII's: 0.6 x the head-box diagonal.
HEAD_SIZE_FACTOR = 0.6

_NAME_ALIASES = {"head": "head_top", "top_head": "head_top", "headtop": "head_top"}


def _normalise_name(name: str) -> str:
    name = re.sub(r"[\s\-]+", "_", name.strip().lower())
    for long, short in (("left_", "l_"), ("right_", "r_")):
        if name.startswith(long):
            name = short + name[len(long):]
    return _NAME_ALIASES.get(name, name)


def _check_keypoint_names(data: Any, skeleton: Skeleton, dataset: str, path: PathLike) -> None:
    """DataError when the person category names other joints (or another order) than ``skeleton``."""
    categories = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(categories, list):
        return
    for category in categories:
        if not isinstance(category, dict) or category.get("id") != PERSON_CATEGORY_ID:
            continue
        names = category.get("keypoints")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            return
        found = [_normalise_name(n) for n in names]
        if found != list(skeleton.keypoints):
            raise DataError(f"the person category's keypoints {names} are not {dataset}'s "
                            f"{list(skeleton.keypoints)} (is this a {dataset} file?)", path)
        return


def _read_object(ann_file: PathLike) -> Any:
    data = read_json(ann_file)
    if not isinstance(data, dict):
        raise DataError(f"expected a COCO annotation object at the top level, found {type(data).__name__}", ann_file)
    return data


def _read_checked(ann_file: PathLike, image_dir: PathLike, train: bool, skeleton: Skeleton, dataset: str,
                  data: Optional[Any] = None) -> List[PersonRecord]:
    data = _read_object(ann_file) if data is None else data
    _check_keypoint_names(data, skeleton, dataset, ann_file)
    return coco_keypoints_from_data(data, ann_file, image_dir, train=train, num_keypoints=skeleton.num_keypoints)


# ---------------------------------------------------------------------------------------------- CrowdPose


def read_crowdpose(ann_file: PathLike, image_dir: PathLike, train: bool = True) -> List[PersonRecord]:
    """People of a CrowdPose JSON (14 joints); ``extras['crowd_index']`` is the image's ``crowdIndex``."""
    data = _read_object(ann_file)
    records = _read_checked(ann_file, image_dir, train, CROWDPOSE, "CrowdPose", data)
    crowd_index: Dict[int, float] = {}
    for image in data.get("images", []):
        value = image.get("crowdIndex") if isinstance(image, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            crowd_index[image["id"]] = float(value)
    for record in records:
        if record.image_id in crowd_index:
            record.extras["crowd_index"] = crowd_index[record.image_id]
    return records


# ---------------------------------------------------------------------------------------------- OCHuman


def read_ochuman(ann_file: PathLike, image_dir: PathLike, train: bool = True) -> List[PersonRecord]:
    """People of an OCHuman COCO-layout JSON (COCO's 17 joints)."""
    return _read_checked(ann_file, image_dir, train, OCHUMAN, "OCHuman")


# ---------------------------------------------------------------------------------------------- AI Challenger

# Release visibility -> COCO's: 1 visible, 2 labelled but occluded, 3 not labelled.
_AIC_FLAGS = {1: VISIBLE, 2: OCCLUDED, 3: NOT_LABELLED}


def _human_order(key: str) -> Tuple[float, str]:
    """human1, human2, ..., human10 in number order (the converted files' order); other keys last."""
    match = re.fullmatch(r"human(\d+)", key)
    return (float(match.group(1)), key) if match else (math.inf, key)


def _finite_numbers(value: Any, count: int) -> Optional[np.ndarray]:
    if not isinstance(value, list) or len(value) != count:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return None
    array = np.asarray(value, dtype=np.float64)
    return array if np.isfinite(array).all() else None


def _read_aic_release(data: List[Any], ann_file: PathLike, image_dir: PathLike, train: bool,
                      image_sizes: bool) -> List[PersonRecord]:

    k = AIC.num_keypoints
    image_dir = os.fspath(image_dir)
    records: List[PersonRecord] = []
    for position, entry in enumerate(data):
        where = f"entry {position}"
        if not isinstance(entry, dict):
            raise DataError(f"{where} is not an object", ann_file)
        for key in ("image_id", "keypoint_annotations", "human_annotations"):
            if key not in entry:
                raise DataError(f"{where} has no {key!r}", ann_file)
        name, keypoint_annos, boxes = entry["image_id"], entry["keypoint_annotations"], entry["human_annotations"]
        if not isinstance(name, str) or not name:
            raise DataError(f"{where}: 'image_id' must be the image's name, found {name!r}", ann_file)
        if not isinstance(keypoint_annos, dict) or not isinstance(boxes, dict):
            raise DataError(f"image {name}: keypoint_annotations and human_annotations must be objects", ann_file)
        file_name = name if name.lower().endswith((".jpg", ".jpeg", ".png")) else name + ".jpg"
        image_path = os.path.join(image_dir, file_name)
        size = stored_size_wh(image_path) if image_sizes and os.path.isfile(image_path) else None
        for human in sorted(keypoint_annos, key=_human_order):
            label = f"image {name}, {human}"
            raw = _finite_numbers(keypoint_annos[human], 3 * k)
            if raw is None:
                raise DataError(f"{label}: keypoints must be {3 * k} finite numbers", ann_file)
            if human not in boxes:
                raise DataError(f"{label} has no box in human_annotations", ann_file)
            corners = _finite_numbers(boxes[human], 4)
            if corners is None:
                raise DataError(f"{label}: the box must be 4 finite numbers x1, y1, x2, y2", ann_file)
            raw = raw.reshape(k, 3)
            flags = raw[:, 2]
            if not np.isin(flags, list(_AIC_FLAGS)).all():
                raise DataError(f"{label}: keypoint visibility must be 1, 2 or 3, found {sorted(set(flags.tolist()))}",
                                ann_file)
            keypoints = np.zeros((k, 3))
            keypoints[:, 2] = [_AIC_FLAGS[int(f)] for f in flags]
            labelled = keypoints[:, 2] > 0
            keypoints[labelled, :2] = raw[labelled, :2]
            if train and not labelled.any():
                continue
            x1, y1, x2, y2 = corners
            if x2 < x1 or y2 < y1:
                raise DataError(f"{label}: box {corners.tolist()} has x2 < x1 or y2 < y1", ann_file)
            if labelled.any() and (x2 == x1 or y2 == y1):     # as check_coco_people for the COCO layout
                raise DataError(f"{label}: box {corners.tolist()} has zero size for a person with labelled keypoints",
                                ann_file)
            # Unknown image size: only the clipping at the right / bottom border is skipped.
            box = sanitize_box((x1, y1, x2 - x1, y2 - y1), size if size is not None else (math.inf, math.inf))
            if box is None:
                continue
            records.append(PersonRecord(
                image_path=image_path, keypoints=keypoints, box=box, image_id=position + 1, image_size=size,
                extras={"image_name": name, "human": human},
            ))
    return records


def read_aic(ann_file: PathLike, image_dir: PathLike, train: bool = True, image_sizes: bool = True) -> List[PersonRecord]:
    """People of an AI Challenger keypoint file, release layout (a list) or COCO-converted (an object).

    Release layout: ``image_id`` + ".jpg" under ``image_dir``; ``image_id`` of the records is the
    1-based position in the file (the release's ids are file names: ``extras['image_name']``);
    ``image_size`` from the JPEG header where the image exists and ``image_sizes`` is true.
    """
    data = read_json(ann_file)
    if isinstance(data, list):
        return _read_aic_release(data, ann_file, image_dir, train, image_sizes)
    if not isinstance(data, dict):
        raise DataError(f"expected an AIC annotation list or COCO object, found {type(data).__name__}", ann_file)
    return _read_checked(ann_file, image_dir, train, AIC, "AI Challenger", data)


# ---------------------------------------------------------------------------------------------- PoseTrack


def _posetrack_files(path: PathLike) -> List[str]:
    path = os.fspath(path)
    if os.path.isdir(path):
        files = sorted(os.path.join(path, n) for n in os.listdir(path) if n.endswith(".json"))
        if not files:
            raise DataError("no per-video .json files in the directory", path)
        return files
    return [path]


def _merge_posetrack(path: PathLike) -> Dict[str, Any]:
    """One COCO object from a PoseTrack file or a directory of per-video files (sorted by name)."""
    merged: Dict[str, Any] = {"images": [], "annotations": [], "categories": None}
    for file in _posetrack_files(path):
        data = _read_object(file)
        for key in ("images", "annotations"):
            if key not in data:
                raise DataError(f"missing key {key!r}", file)
            if not isinstance(data[key], list):
                raise DataError(f"{key!r} must be a list, found {type(data[key]).__name__}", file)
            merged[key].extend(data[key])
        _check_keypoint_names(data, POSETRACK, "PoseTrack", file)
        if merged["categories"] is None:
            merged["categories"] = data.get("categories")
    return merged


def _keypoint_box(keypoints: Any) -> Optional[List[float]]:
    values = np.asarray(keypoints, dtype=np.float64).reshape(-1, 3)
    labelled = values[values[:, 2] > 0, :2]
    if not len(labelled):
        return None
    (x1, y1), (x2, y2) = labelled.min(axis=0), labelled.max(axis=0)
    return [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]


def read_posetrack(ann_path: PathLike, image_dir: PathLike, train: bool = True) -> List[PersonRecord]:
    """People of PoseTrack 2018: a COCO-layout JSON or the release's directory of per-video JSONs.

    ``image_dir`` is the dataset root (file names read ``images/val/<video>/<frame>.jpg``). A person
    without ``bbox`` gets the box of its labelled joints, one without ``keypoints`` 17 unlabelled
    joints (PoseTrack's metric ignores such people; they are kept only as GT boxes for evaluation).
    """
    merged = _merge_posetrack(ann_path)
    annotations = []
    for ann in merged["annotations"]:
        if isinstance(ann, dict) and ann.get("category_id", PERSON_CATEGORY_ID) == PERSON_CATEGORY_ID:
            ann = dict(ann)
            ann.setdefault("category_id", PERSON_CATEGORY_ID)
            ann.setdefault("keypoints", [0] * (3 * POSETRACK.num_keypoints))
            if "bbox" not in ann:
                values = ann["keypoints"]
                if _finite_numbers(values, 3 * POSETRACK.num_keypoints) is None:
                    raise DataError(f"annotation {ann.get('id', '?')}: no 'bbox', and 'keypoints' are not "
                                    f"{3 * POSETRACK.num_keypoints} finite numbers", ann_path)
                box = _keypoint_box(values)
                # Neither a box nor labelled joints spanning an area: nothing to crop (sanitize_box would drop a
                # box of zero width or height anyway; one from the file itself is refused as corrupt).
                if box is None or box[2] == 0 or box[3] == 0:
                    continue
                ann["bbox"] = box
        annotations.append(ann)
    merged["annotations"] = annotations
    records = coco_keypoints_from_data(merged, ann_path, image_dir, train=train,
                                       num_keypoints=POSETRACK.num_keypoints)
    by_id = {a["id"]: a for a in annotations if isinstance(a, dict) and "id" in a}
    for record in records:
        ann = by_id.get(record.extras.get("annotation_id"))
        if ann is None:
            continue
        if "track_id" in ann:
            record.extras["track_id"] = ann["track_id"]
        head = _finite_numbers(ann.get("bbox_head"), 4)
        if head is not None:
            record.extras["head_box"] = head
            record.extras["head_size"] = HEAD_SIZE_FACTOR * float(np.hypot(head[2], head[3]))
    return records


def posetrack_image_index(ann_path: PathLike) -> ImageIndex:
    """image id -> (file name, width, height) over a PoseTrack file or per-video directory."""
    return _image_index_from_data(_merge_posetrack(ann_path), ann_path)


# ---------------------------------------------------------------------------------------------- by format


def check_format_skeleton(data_format: str, skeleton_name: str) -> None:
    """ConfigError when data.skeleton cannot be the keypoint set of data.format's files."""
    fitting = FORMAT_SKELETONS.get(data_format)
    if fitting is not None and skeleton_name not in fitting:
        raise ConfigError(f"data.format {data_format} holds {fitting[0]} keypoints: set data.skeleton to "
                          f"{' or '.join(fitting)} (it is {skeleton_name!r})", "data.skeleton")


def read_cocostyle(data_format: str, ann_path: PathLike, image_dir: PathLike, train: bool = True) -> List[PersonRecord]:
    """The ground-truth people of a file of one of :data:`COCO_STYLE_FORMATS`."""
    if data_format in ("coco", "synthetic"):
        return read_coco_keypoints(ann_path, image_dir, train=train)
    readers = {"crowdpose": read_crowdpose, "ochuman": read_ochuman, "aic": read_aic, "posetrack": read_posetrack}
    if data_format not in readers:
        raise ConfigError(f"not a COCO-style data.format: {data_format!r}", "data.format")
    return readers[data_format](ann_path, image_dir, train=train)


def cocostyle_image_index(data_format: str, ann_path: PathLike) -> ImageIndex:
    """Image index (for detection files) of a COCO-style annotation file of ``data_format``."""
    if data_format == "posetrack":
        return posetrack_image_index(ann_path)
    if data_format == "aic":
        data = read_json(ann_path)
        if isinstance(data, list):
            raise DataError("detection boxes need the COCO-layout AIC file (the release layout has no integer "
                            "image ids)", ann_path)
        return _image_index_from_data(data, ann_path)
    return coco_image_index(ann_path)


__all__ = [
    "COCO_STYLE_FORMATS", "FORMAT_SKELETONS", "check_format_skeleton", "cocostyle_image_index",
    "posetrack_image_index", "read_aic", "read_cocostyle", "read_crowdpose", "read_ochuman", "read_posetrack",
]
