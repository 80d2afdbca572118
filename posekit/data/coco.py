"""Readers for COCO-format person keypoint annotations and COCO detection-result files.

Both produce :class:`PersonRecord` lists. Ground-truth people follow the official HRNet COCO loader
(``coco.py::_load_coco_keypoint_annotation_kernal``): crowd regions are dropped, boxes are sanitised
against the image size (:func:`posekit.data.transforms.sanitize_box`) and annotations with
``area <= 0`` are dropped; for training, people without a labelled joint are dropped too. Detection
boxes are kept exactly as the detector wrote them (HRNet ``_load_coco_person_detection_results``,
spec section 5.4).

The same reader serves any file in COCO's layout (CrowdPose, OCHuman, AIC, ... in COCO form): the
number of keypoints comes from the person category's ``keypoints`` list when the file has one.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import DataError
from ..fileio import read_json
from .records import PersonRecord
from .transforms import sanitize_box

PathLike = Union[str, "os.PathLike[str]"]

COCO_NUM_KEYPOINTS = 17
PERSON_CATEGORY_ID = 1

# image id -> (file name, width, height)
ImageIndex = Dict[int, Tuple[str, int, int]]


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _image_index_from_data(data: Any, path: PathLike) -> ImageIndex:
    if not isinstance(data, dict):
        raise DataError(f"expected a COCO annotation object at the top level, found {type(data).__name__}", path)
    if "images" not in data:
        raise DataError("missing key 'images'", path)
    images = data["images"]
    if not isinstance(images, list):
        raise DataError(f"'images' must be a list, found {type(images).__name__}", path)
    index: ImageIndex = {}
    for i, image in enumerate(images):
        if not isinstance(image, dict):
            raise DataError(f"images[{i}] is not an object", path)
        for key in ("id", "file_name", "width", "height"):
            if key not in image:
                raise DataError(f"images[{i}] has no {key!r}", path)
        image_id, file_name, width, height = image["id"], image["file_name"], image["width"], image["height"]
        if not _is_int(image_id):
            raise DataError(f"images[{i}]: 'id' must be an integer, found {image_id!r}", path)
        if not isinstance(file_name, str) or not file_name:
            raise DataError(f"image {image_id}: 'file_name' must be a non-empty string", path)
        if not (_is_number(width) and _is_number(height)) or not (0 < width < np.inf and 0 < height < np.inf):
            raise DataError(f"image {image_id}: width/height must be positive finite numbers, found {width!r} x {height!r}",
                            path)
        if int(image_id) in index:
            raise DataError(f"image id {image_id} appears twice in 'images'", path)
        index[int(image_id)] = (file_name, int(width), int(height))
    return index


def coco_image_index(ann_file: PathLike) -> ImageIndex:
    """Map image id -> (file_name, width, height) from a COCO annotation JSON (its ``images`` list)."""
    return _image_index_from_data(read_json(ann_file), ann_file)


def _keypoint_count(data: Dict[str, Any], person_anns: List[Dict[str, Any]], path: PathLike) -> int:
    """K from the person category's keypoint names, else from the first person annotation."""
    categories = data.get("categories")
    if isinstance(categories, list):
        for category in categories:
            if isinstance(category, dict) and category.get("id") == PERSON_CATEGORY_ID:
                names = category.get("keypoints")
                if isinstance(names, list) and names:
                    return len(names)
    for ann in person_anns:
        keypoints = ann.get("keypoints")
        if isinstance(keypoints, list) and keypoints and len(keypoints) % 3 == 0:
            return len(keypoints) // 3
    return COCO_NUM_KEYPOINTS


def _ann_label(ann: Dict[str, Any], position: int) -> str:
    return f"annotation {ann['id']}" if "id" in ann else f"annotations[{position}]"


def _numeric_rows(rows: List[Any], width: int, what: str, labels: List[str], path: PathLike) -> np.ndarray:
    """Stack equal-length numeric lists into an N x width float array; DataError naming the first bad one."""
    for row, label in zip(rows, labels):
        if not isinstance(row, (list, tuple)):
            raise DataError(f"{label}: '{what}' must be a list, found {type(row).__name__}", path)
    lengths = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
    wrong = np.flatnonzero(lengths != width)
    if wrong.size:
        i = int(wrong[0])
        raise DataError(f"{labels[i]}: '{what}' has {lengths[i]} values, expected {width}", path)
    if not rows:
        return np.zeros((0, width), dtype=np.float64)
    # Not np.array(rows, float64): it would turn the string "15" into 15.0 and null into NaN. Numbers alone give an
    # integer or float array; a string, null, bool or nested list another dtype, which is looked at value by value.
    try:
        array = np.array(rows)
    except ValueError:      # ragged: a list inside a row
        array = np.array(rows, dtype=object)
    if array.dtype.kind not in "iuf" or array.ndim != 2:
        for row, label in zip(rows, labels):
            for value in row:
                if value is None:
                    raise DataError(f"{label}: '{what}' holds a value that is not a finite number (NaN, infinity or "
                                    f"null)", path)
                if not _is_number(value):
                    raise DataError(f"{label}: '{what}' holds a value that is not a number: {value!r}", path)
    array = array.astype(np.float64) if array.dtype.kind in "iuf" else np.array(rows, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(array).all(axis=1))
    if bad.size:
        raise DataError(f"{labels[int(bad[0])]}: '{what}' holds a value that is not a finite number (NaN, infinity or null)", path)
    return array


def read_coco_keypoints(
    ann_file: PathLike,
    image_dir: PathLike,
    train: bool = True,
    min_keypoints: int = 1,
    num_keypoints: Optional[int] = None,
) -> List[PersonRecord]:
    """Read the people of a COCO person-keypoints JSON.

    Kept: category 1, not ``iscrowd``, a box that survives :func:`sanitize_box` on the image's
    width/height, ``area > 0`` where the file gives an area, and for training (``train=True``) at
    least ``min_keypoints`` labelled joints (1 = the official "skip people without keypoints"). With
    ``train=False`` every non-crowd person with a valid box is kept, as for evaluation with GT boxes.

    Records come in the order of the file's ``images`` list, then of its ``annotations`` (the
    official loader's order). ``keypoints`` is K x 3 float (x, y, v); ``box`` the sanitised box;
    ``extras['annotation_id']`` the annotation id. K is ``num_keypoints`` when given (the file must
    match), otherwise the person category's keypoint count (:data:`COCO_NUM_KEYPOINTS` for COCO).
    Structural problems (missing lists, wrong types, keypoints not 3K long, non-finite numbers,
    negative box sizes, visibility outside {0, 1, 2}, unknown image ids) raise :class:`DataError`
    naming the file and the annotation.
    """
    return coco_keypoints_from_data(read_json(ann_file), ann_file, image_dir, train=train,
                                    min_keypoints=min_keypoints, num_keypoints=num_keypoints)


class CocoPeople(NamedTuple):
    """The person annotations of a COCO-layout keypoint file, checked (:func:`check_coco_people`)."""

    images: ImageIndex
    annotations: List[Dict[str, Any]]   # category 1, in file order
    labels: List[str]                   # "annotation <id>" (or "annotations[<i>]"), for messages
    boxes: np.ndarray                   # N x 4 (x, y, w, h): finite, no negative size
    keypoints: np.ndarray               # N x K x 3: finite, visibility 0, 1 or 2
    image_positions: np.ndarray         # N: each person's image's position in 'images'


def _is_crowd(ann: Dict[str, Any]) -> bool:
    return bool(ann.get("iscrowd", 0))


def check_coco_people(data: Any, path: PathLike, num_keypoints: Optional[int] = None,
                      required: Sequence[str] = ()) -> CocoPeople:
    """The one validation of COCO-layout ground truth, shared by every COCO-style reader and ``posekit score``.

    DataError naming ``path``, the annotation and the problem for: a missing or mistyped list or key (``required``
    adds keys every person annotation must have, e.g. COCOeval's ``num_keypoints`` and ``area``), a value that is
    not a number (a string, null) or not finite (NaN, infinity), a ``bbox`` of other than 4 or ``keypoints`` of
    other than 3K values, a box of negative size, a box of zero width or height for a person with labelled
    keypoints (one that is trained on and scored; an ``area`` of 0 is the official "drop it" and is left to the
    readers), a visibility other than 0/1/2, an unknown image id, an ``area`` that is not a finite number >= 0,
    a ``num_keypoints`` that is not an integer >= 0 and an ``iscrowd`` other than 0/1. Annotations of other
    categories carry no keypoints and are not ours to check.
    """
    images = _image_index_from_data(data, path)
    if "annotations" not in data:
        raise DataError("missing key 'annotations'", path)
    annotations = data["annotations"]
    if not isinstance(annotations, list):
        raise DataError(f"'annotations' must be a list, found {type(annotations).__name__}", path)

    person_anns: List[Dict[str, Any]] = []
    labels: List[str] = []
    for i, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            raise DataError(f"annotations[{i}] is not an object", path)
        if "category_id" not in ann:
            raise DataError(f"{_ann_label(ann, i)} has no 'category_id'", path)
        # Other categories (a full instances file) carry no keypoints and are not ours to validate.
        if ann["category_id"] != PERSON_CATEGORY_ID:
            continue
        for key in ("image_id", "bbox", "keypoints", *required):
            if key not in ann:
                raise DataError(f"{_ann_label(ann, i)} has no {key!r}", path)
        person_anns.append(ann)
        labels.append(_ann_label(ann, i))

    k = num_keypoints if num_keypoints is not None else _keypoint_count(data, person_anns, path)
    boxes = _numeric_rows([a["bbox"] for a in person_anns], 4, "bbox", labels, path)
    keypoints = _numeric_rows([a["keypoints"] for a in person_anns], 3 * k, "keypoints", labels, path)
    keypoints = keypoints.reshape(-1, k, 3)

    negative = np.flatnonzero((boxes[:, 2] < 0) | (boxes[:, 3] < 0))
    if negative.size:
        i = int(negative[0])
        raise DataError(f"{labels[i]}: 'bbox' has a negative size {boxes[i, 2:].tolist()}", path)
    flags = keypoints[:, :, 2]
    bad_flags = np.flatnonzero(~np.isin(flags, (0.0, 1.0, 2.0)).all(axis=1))
    if bad_flags.size:
        i = int(bad_flags[0])
        raise DataError(f"{labels[i]}: keypoint visibility must be 0, 1 or 2, found {sorted(set(flags[i].tolist()))}", path)

    image_order = {image_id: position for position, image_id in enumerate(images)}
    positions = []
    for ann, label in zip(person_anns, labels):
        image_id = ann["image_id"]
        if not _is_int(image_id) or int(image_id) not in images:
            raise DataError(f"{label}: image_id {image_id!r} is not in 'images'", path)
        positions.append(image_order[int(image_id)])
        area = ann.get("area")
        if area is not None and not (_is_number(area) and 0 <= area < np.inf):
            raise DataError(f"{label}: 'area' must be a finite number >= 0, found {area!r}", path)
        count = ann.get("num_keypoints")
        if count is not None and not (_is_number(count) and 0 <= count < np.inf and float(count).is_integer()):
            raise DataError(f"{label}: 'num_keypoints' must be an integer >= 0, found {count!r}", path)
        if ann.get("iscrowd", 0) not in (0, 1):
            raise DataError(f"{label}: 'iscrowd' must be 0 or 1, found {ann['iscrowd']!r}", path)
    # A labelled person's box is its crop (training, evaluation with GT boxes): one of zero width or height is
    # corrupt, where the official loaders would drop the person without a word. Area 0 is their own drop rule.
    labelled = (flags > 0).any(axis=1)
    kept = np.array([not _is_crowd(a) and a.get("area") != 0 for a in person_anns], dtype=bool)
    empty = np.flatnonzero(labelled & kept & ((boxes[:, 2] == 0) | (boxes[:, 3] == 0)))
    if empty.size:
        i = int(empty[0])
        raise DataError(f"{labels[i]}: 'bbox' has zero size {boxes[i, 2]:g} x {boxes[i, 3]:g} for a person with "
                        f"labelled keypoints", path)
    return CocoPeople(images, person_anns, labels, boxes, keypoints, np.asarray(positions, dtype=np.int64))


def coco_keypoints_from_data(
    data: Any,
    ann_file: PathLike,
    image_dir: PathLike,
    train: bool = True,
    min_keypoints: int = 1,
    num_keypoints: Optional[int] = None,
) -> List[PersonRecord]:
    """:func:`read_coco_keypoints` on an already-parsed COCO object ``data``; ``ann_file`` names it in errors.

    Readers of COCO-like layouts (PoseTrack's per-video files merged, ...) hand their object to this.
    """
    people = check_coco_people(data, ann_file, num_keypoints=num_keypoints)
    images, person_anns, boxes, keypoints = people.images, people.annotations, people.boxes, people.keypoints
    num_labelled = (keypoints[:, :, 2] > 0).sum(axis=1)
    positions = people.image_positions

    records: List[PersonRecord] = []
    # A stable sort by image position reproduces the official per-image iteration order.
    for j in np.argsort(positions, kind="stable"):
        ann = person_anns[j]
        if _is_crowd(ann):
            continue
        if train and num_labelled[j] < min_keypoints:
            continue
        area = ann.get("area")
        if area is not None and area <= 0:
            continue
        image_id = int(ann["image_id"])
        file_name, width, height = images[image_id]
        box = sanitize_box(boxes[j], (width, height))
        if box is None:
            continue
        extras = {"annotation_id": ann["id"]} if "id" in ann else {}
        records.append(
            PersonRecord(
                image_path=os.path.join(image_dir, file_name),
                keypoints=keypoints[j].copy(),
                box=box,
                score=1.0,
                image_id=image_id,
                image_size=(width, height),
                area=None if area is None else float(area),
                extras=extras,
            )
        )
    return records


def read_coco_detections(
    det_file: PathLike,
    image_index: ImageIndex,
    image_dir: PathLike,
    score_threshold: float = 0.0,
    category_id: int = PERSON_CATEGORY_ID,
    num_keypoints: int = COCO_NUM_KEYPOINTS,
    image_ids: Optional[Iterable[int]] = None,
    skip_unknown_images: bool = False,
    max_per_image: int = 0,
) -> List[PersonRecord]:
    """Read a COCO detection-results JSON (a list of ``{image_id, category_id, bbox, score}``).

    Keeps boxes of ``category_id`` with ``score >= score_threshold`` (HRNet: ``IMAGE_THRE`` 0.0),
    as written: no clipping or sanitising, as the official test. ``image_index`` (from
    :func:`coco_image_index`) gives each image's file name and size. A detection on an image it
    does not know raises :class:`DataError`, or is dropped with ``skip_unknown_images`` (a detector
    run on all of val2017 scored against a subset's annotation file). ``image_ids`` keeps only the
    detections of those images (each must be in the index). ``max_per_image`` > 0 keeps only that many
    best-scoring boxes per image (after the score threshold; equal scores keep file order).
    Keypoints are all zero (``num_keypoints`` x 3), the detector's score goes to ``score``, and the
    kept boxes stay in file order.
    """
    if max_per_image < 0:
        raise ValueError(f"max_per_image must be >= 0, got {max_per_image}")
    wanted: Optional[set] = None
    if image_ids is not None:
        wanted = set()
        for image_id in image_ids:
            if not _is_int(image_id) or int(image_id) not in image_index:
                raise DataError(f"image id {image_id!r} asked for is not in the annotation file's images", det_file)
            wanted.add(int(image_id))
    data = read_json(det_file)
    if not isinstance(data, list):
        raise DataError(f"expected a list of detections at the top level, found {type(data).__name__}", det_file)
    kept: List[Dict[str, Any]] = []
    labels: List[str] = []
    for i, det in enumerate(data):
        label = f"detection {i}"
        if not isinstance(det, dict):
            raise DataError(f"{label} is not an object", det_file)
        for key in ("image_id", "category_id", "bbox", "score"):
            if key not in det:
                raise DataError(f"{label} has no {key!r}", det_file)
        if det["category_id"] != category_id:
            continue
        image_id = det["image_id"]
        if not _is_int(image_id):
            raise DataError(f"{label}: image_id must be an integer, found {image_id!r}", det_file)
        if int(image_id) not in image_index:
            if skip_unknown_images:
                continue
            raise DataError(f"{label}: image_id {image_id!r} is not in the image index", det_file)
        if wanted is not None and int(image_id) not in wanted:
            continue
        score = det["score"]
        if not _is_number(score) or not np.isfinite(score):
            raise DataError(f"{label}: 'score' must be a finite number, found {score!r}", det_file)
        kept.append(det)
        labels.append(label)

    boxes = _numeric_rows([d["bbox"] for d in kept], 4, "bbox", labels, det_file)
    negative = np.flatnonzero((boxes[:, 2] < 0) | (boxes[:, 3] < 0))
    if negative.size:
        i = int(negative[0])
        raise DataError(f"{labels[i]}: 'bbox' has a negative size {boxes[i, 2:].tolist()}", det_file)

    chosen = [n for n, det in enumerate(kept) if float(det["score"]) >= score_threshold]
    if max_per_image:
        by_image: Dict[int, List[int]] = {}
        for n in chosen:
            by_image.setdefault(int(kept[n]["image_id"]), []).append(n)
        best = set()
        for members in by_image.values():
            # sorted() is stable: equal scores keep file order.
            best.update(sorted(members, key=lambda n: -float(kept[n]["score"]))[:max_per_image])
        chosen = [n for n in chosen if n in best]

    records: List[PersonRecord] = []
    for n in chosen:
        det = kept[n]
        image_id = int(det["image_id"])
        file_name, width, height = image_index[image_id]
        records.append(
            PersonRecord(
                image_path=os.path.join(image_dir, file_name),
                keypoints=np.zeros((num_keypoints, 3), dtype=np.float64),
                box=boxes[n].copy(),
                score=float(det["score"]),
                image_id=image_id,
                image_size=(width, height),
            )
        )
    return records
