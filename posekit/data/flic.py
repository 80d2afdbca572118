"""Readers for FLIC (Frames Labeled In Cinema, Sapp & Taskar CVPR'13): pose-hg-train's ``annot/*.h5`` and
the original release's ``examples.mat``.

Both give the 11 annotated upper-body joints in the order of :data:`posekit.skeletons.FLIC` (l_shoulder,
l_elbow, l_wrist, r_shoulder, r_elbow, r_wrist, l_hip, r_hip, l_eye, r_eye, nose) = parts 1-7, 10, 13, 14,
17 of the release's 29-part ``coords`` (MODEC's ``lookupPart``), one record per annotated person.
Checked against the release ``examples.mat`` (5,003 people: 3,987 ``istrain``, 1,016 ``istest``) and the
h5 files: ``index`` is the person's 0-based position in ``examples``, and the parts are the release's
values, except for left/right:

* The release labels are person-centric (anatomical): for about 5% of people (199 train, 48 test, the
  ones seen from behind) the left shoulder lies to the LEFT of the right one in the image.
* pose-hg-train's ``train.h5``/``valid.h5`` (the files in ``shared/data/flic``) swap every left/right pair
  of exactly those people, so that "left" is always the joint on the image's right (every one of the
  5,003 people: l_shoulder x > r_shoulder x and l_hip x > r_hip x). This is what MODEC's evaluation
  (``flip_backwards_facing_groundtruth``) and CPM's ``genJSON.m`` ("FLIC is OC": swap when
  R_Shoulder x > L_Shoulder x) do too: observer-centric labels, the FLIC protocol's convention.
  The unswapped copies are pose-hg-train's ``*_personcentric.h5``. (Spec 2.4 words the CPM swap as
  "observer-centric to person-centric"; the data shows it is the other way round.)

Coordinates are treated as Matlab 1-based, like the other readers (CPM's ``data_transformer.cpp`` shifts
FLIC by -1 with everything else; pose-hg-train's Lua is 1-based): joints and centre minus 1.

Crop: pose-hg-train's ``center`` is (torso-box x-centre, image height / 2 = 240) and ``scale`` is 2.2 for
every person, i.e. a fixed 440-px square covering the height of the 720 x 480 frames, not a person size;
:func:`read_flic_examples_mat` builds the same values from ``torsobox``/``imgdims``. Every joint of every
person is annotated (``visible`` is 1 throughout; a few lie up to ~7 px outside the frame), so all get
v = 2; a joint with ``visible`` 0 (or NaN in the .mat) would get v = 0 and coordinates (0, 0).
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, Union

import numpy as np

from ..errors import ConfigError, DataError
from ..fileio import describe_array, h5_image_names, load_mat, mat_keys, read_h5_datasets
from ..skeletons import FLIC
from .records import NOT_LABELLED, VISIBLE, PersonRecord

PathLike = Union[str, "os.PathLike[str]"]

NUM_FLIC_JOINTS = 11
# 1-based positions of the 11 annotated joints among the release's 29 parts (MODEC lookupPart.m).
FLIC_RELEASE_PARTS = (1, 2, 3, 4, 5, 6, 7, 10, 13, 14, 17)
NUM_RELEASE_PARTS = 29
MATLAB_OFFSET = 1.0
HG_FLIC_SCALE = 2.2          # pose-hg-train's scale for every FLIC person (crop side 440 px)
CPM_SCALE_PER_TORSO_PX = 0.0110   # CPM genJSON: scale_provided = 0.0110 * torso-box height

_H5_REQUIRED = ("part", "visible", "center", "scale", "imgname")
_H5_EXTRAS = {"index": "index", "person": "person", "normalize": "normalize", "torsoangle": "torso_angle"}
_MAT_REQUIRED = ("coords", "filepath", "torsobox", "imgdims", "istrain", "istest")


def read_flic_h5(h5_file: PathLike, image_dir: PathLike) -> List[PersonRecord]:
    """Read a pose-hg-train FLIC annotation file (``train.h5`` 3,987 people, ``valid.h5`` 1,016).

    Datasets: ``part`` N x 11 x 2, ``visible`` N x 11 (0/1), ``center`` N x 2, ``scale`` N, ``imgname`` N;
    ``index``, ``person``, ``normalize``, ``torsoangle`` (N each) are optional and land in ``extras``
    (as ``index``, ``person``, ``normalize``, ``torso_angle``). ``normalize`` is pose-hg-train's own
    torso length (within a few % of |l_shoulder - r_hip| for most people, up to 79 px off for some);
    PCK here uses the ground-truth joints instead. ``torso_angle`` is the tilt in degrees of the
    hip-midpoint -> shoulder-midpoint vector from upright, positive towards +x.
    Records get ``center``/``scale`` (scale as [s, s]), image path ``image_dir/imgname`` (not checked:
    the shared copy has no images), keypoints 0-based with v = 2 where ``visible`` is 1, else 0.
    Raises :class:`DataError` naming the file for a missing or non-HDF5 file, a missing dataset, a
    shape that does not fit, non-finite values or a ``visible`` other than 0/1.
    """
    path = os.fspath(h5_file)
    arrays, extras = read_h5_datasets(path, _H5_REQUIRED, _H5_EXTRAS, "a FLIC annotation file")

    count = len(arrays["part"]) if np.ndim(arrays["part"]) else -1
    expected = {"part": (NUM_FLIC_JOINTS, 2), "visible": (NUM_FLIC_JOINTS,), "center": (2,), "scale": ()}
    for name, per_person in expected.items():
        array = np.asarray(arrays[name])
        if array.shape != (count, *per_person) or array.dtype.kind not in "biuf":
            want = " x ".join(["N", *map(str, per_person)])
            raise DataError(f"dataset {name!r} is {describe_array(array)}, expected numbers of shape {want} "
                            f"(N = {count} people in 'part')", path)
    for name in extras:
        if np.shape(extras[name]) != (count,):
            raise DataError(f"dataset {name!r} is {describe_array(np.asarray(extras[name]))}, expected N = {count} values",
                            path)
    names = h5_image_names(arrays["imgname"], count, path)

    parts = np.asarray(arrays["part"], dtype=np.float64)
    visible = np.asarray(arrays["visible"], dtype=np.float64)
    centers = np.asarray(arrays["center"], dtype=np.float64)
    scales = np.asarray(arrays["scale"], dtype=np.float64)
    if not np.isin(visible, (0.0, 1.0)).all():
        raise DataError("dataset 'visible' must hold only 0 and 1", path)
    labelled = visible > 0
    if not np.isfinite(parts[labelled]).all():
        raise DataError("dataset 'part' holds NaN or infinity for a visible joint", path)
    if not (np.isfinite(centers).all() and np.isfinite(scales).all()) or (scales <= 0).any():
        raise DataError("datasets 'center'/'scale' hold non-finite values or a scale <= 0", path)

    keypoints = np.zeros((count, NUM_FLIC_JOINTS, 3))
    keypoints[..., :2] = np.where(labelled[..., None], parts - MATLAB_OFFSET, 0.0)
    keypoints[..., 2] = np.where(labelled, VISIBLE, NOT_LABELLED)
    image_dir = os.fspath(image_dir)
    records = []
    for i in range(count):
        record_extras: Dict[str, Any] = {key: extras[name][i].item() for name, key in _H5_EXTRAS.items()
                                         if name in extras}
        records.append(PersonRecord(
            image_path=os.path.join(image_dir, names[i]),
            keypoints=keypoints[i],
            center=centers[i] - MATLAB_OFFSET,
            scale=np.array([scales[i], scales[i]]),
            extras=record_extras,
        ))
    return records


def read_flic_examples_mat(
    mat_file: PathLike,
    image_dir: PathLike,
    split: str = "train",
    observer_centric: bool = True,
) -> List[PersonRecord]:
    """Read the FLIC release ``examples.mat``: the people of one split, in file order.

    ``examples`` is a struct array with (at least) ``coords`` 2 x 29 (NaN where a part is not annotated),
    ``filepath``, ``imgdims`` (height, width, channels), ``torsobox`` (x1, y1, x2, y2), ``istrain`` and
    ``istest``. ``split`` is "train" (``istrain``, 3,987 people in the release) or "test" (``istest``,
    1,016). With ``observer_centric`` (the default, the FLIC protocol's labels and those of
    pose-hg-train's ``train.h5``/``valid.h5``), a person whose right shoulder lies to the right of the
    left one in the image has every left/right pair swapped (``extras['lr_swapped']``); False keeps the
    release's person-centric labels. Coordinates -1 (Matlab 1-based); a NaN joint gets v = 0 and (0, 0).
    Crop as pose-hg-train: ``center`` = (torso-box x-centre, image height / 2) - 1, ``scale`` = 2.2;
    so the train/test records equal :func:`read_flic_h5`'s of ``train.h5``/``valid.h5`` (keypoints,
    centre, scale, path, ``extras['index']``). ``extras`` also holds ``torso_box`` (0-based x1, y1, x2, y2)
    and CPM's crop (spec 2.7): ``cpm_center`` = (box x-centre, 0.7 y1 + 0.3 y2) - 1 and ``cpm_scale`` =
    0.0110 x torso-box height. ``image_size`` is (width, height) from ``imgdims``.
    Raises :class:`DataError` naming the file for a missing or unreadable file, no ``examples`` struct,
    a missing field or a field of the wrong size, and :class:`ConfigError` for an unknown split.
    """
    if split not in ("train", "test"):
        raise ConfigError(f"FLIC split must be 'train' or 'test', got {split!r}")
    path = os.fspath(mat_file)
    not_ours = "not a FLIC examples.mat"
    mat = load_mat(path, "a FLIC examples.mat")
    examples = mat.get("examples")
    if not isinstance(examples, np.ndarray) or examples.dtype.names is None:
        raise DataError(f"{not_ours}: no struct array 'examples' (keys: {mat_keys(mat)})", path)
    missing = [name for name in _MAT_REQUIRED if name not in examples.dtype.names]
    if missing:
        raise DataError(f"{not_ours}: 'examples' has no field {missing[0]!r}", path)

    flag = "istrain" if split == "train" else "istest"
    image_dir = os.fspath(image_dir)
    columns = [FLIC_RELEASE_PARTS[k] - 1 for k in range(NUM_FLIC_JOINTS)]
    swap = FLIC.flip_permutation()
    left, right = FLIC.index("l_shoulder"), FLIC.index("r_shoulder")
    records = []
    for index, example in enumerate(examples.reshape(-1)):
        where = f"examples({index + 1})"
        if _scalar(example[flag], f"{where}.{flag}", path) == 0:
            continue
        coords = _numbers(example["coords"], (2, NUM_RELEASE_PARTS), f"{where}.coords", path)
        box = _numbers(example["torsobox"], (4,), f"{where}.torsobox", path)
        dims = _numbers(example["imgdims"], None, f"{where}.imgdims", path)
        if dims.size < 2 or not np.isfinite(box).all() or not np.isfinite(dims[:2]).all():
            raise DataError(f"{not_ours}: {where} needs a finite torsobox and imgdims (height, width, ...)", path)
        joints = coords[:, columns].T
        annotated = np.isfinite(joints).all(axis=1)
        keypoints = np.zeros((NUM_FLIC_JOINTS, 3))
        keypoints[annotated, :2] = joints[annotated] - MATLAB_OFFSET
        keypoints[annotated, 2] = VISIBLE
        swapped = bool(observer_centric and annotated[left] and annotated[right]
                       and keypoints[right, 0] > keypoints[left, 0])
        if swapped:
            keypoints = keypoints[swap]
        x1, y1, x2, y2 = box
        height, width = float(dims[0]), float(dims[1])
        records.append(PersonRecord(
            image_path=os.path.join(image_dir, _text(example["filepath"], f"{where}.filepath", path)),
            keypoints=keypoints,
            center=np.array([(x1 + x2) / 2, height / 2]) - MATLAB_OFFSET,
            scale=np.array([HG_FLIC_SCALE, HG_FLIC_SCALE]),
            image_size=(int(width), int(height)),
            extras={
                "index": index,
                "lr_swapped": swapped,
                "torso_box": box - MATLAB_OFFSET,
                "cpm_center": np.array([(x1 + x2) / 2, 0.7 * y1 + 0.3 * y2]) - MATLAB_OFFSET,
                "cpm_scale": CPM_SCALE_PER_TORSO_PX * (y2 - y1),
            },
        ))
    return records


def _numbers(value: Any, shape: Any, where: str, path: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise DataError(f"not a FLIC examples.mat: {where} is not numeric", path)
    array = array.astype(np.float64)
    if shape is None:
        return array.reshape(-1)
    if array.shape != shape and array.size == int(np.prod(shape)) and len(shape) == 1:
        array = array.reshape(shape)
    if array.shape != shape:
        want = " x ".join(map(str, shape))
        raise DataError(f"not a FLIC examples.mat: {where} is {' x '.join(map(str, array.shape))}, expected {want}",
                        path)
    return array


def _scalar(value: Any, where: str, path: str) -> float:
    array = _numbers(value, None, where, path)
    if array.size != 1:
        raise DataError(f"not a FLIC examples.mat: {where} should be one number, got {array.size}", path)
    return float(array[0])


def _text(value: Any, where: str, path: str) -> str:
    array = np.asarray(value).reshape(-1)
    if array.size != 1 or not isinstance(array[0], str) or not array[0]:
        raise DataError(f"not a FLIC examples.mat: {where} is not a file name", path)
    return str(array[0])
