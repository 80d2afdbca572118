"""Predictions files for ``posekit score``: every layout of ``docs/scoring.md`` read into N x K x 2 coordinates.

:func:`read_predictions` reads JSON, NumPy, Matlab (HRNet's ``pred.mat``, the MPII evaluation layout,
``keypointsAll`` with ``output_joints``, LSP ``joints``, the CPM release's ``prediction_all``) and h5 files as
stored, with the file type's coordinate origin and the joint names where the file gives them;
:mod:`posekit.evaluation.scoring` maps the columns onto the ground truth's joints and scores them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from ..data.mpii import mat_cell_strings
from ..errors import DataError
from ..fileio import load_mat, mat_keys, mat_variables, read_json, require_file

PathLike = Union[str, "os.PathLike[str]"]

# The joints of the CPM release's FLIC prediction_all (run_benchmark.m: examples.mat's 11 parts less the eyes),
# observer-centric like posekit's FLIC ground truth.
CPM_FLIC_JOINTS: Tuple[str, ...] = ("l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist", "l_hip",
                                    "r_hip", "nose")
# The variables a predictions .mat may hold, in the order they are looked for.
MAT_PREDICTION_VARIABLES: Tuple[str, ...] = ("preds", "pos_pred_src", "prediction_all", "keypointsAll", "joints")


@dataclass
class PredictionFile:
    """Predicted coordinates as stored: N x J x 2, J columns named by ``joint_names`` when the file names them."""

    path: str
    coords: np.ndarray
    layout: str
    one_based: bool                 # the convention of the file type (Matlab / Lua files: 1-based)
    joint_names: Optional[List[str]] = None
    names_from: str = "'output_joints'"     # where joint_names come from, for messages



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
    require_file(path)
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
    mat = _load_prediction_variables(path)

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
            names = mat_cell_strings(mat["output_joints"])
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
                    f"'prediction_all' (K x 2 x N), 'keypointsAll' or 'joints' (keys: {mat_keys(mat)})", path)


def _load_prediction_variables(path: str) -> Dict[str, Any]:
    """The first of :data:`MAT_PREDICTION_VARIABLES` the file holds (plus ``output_joints``), which spares
    decoding a large struct beside a small array (detections.mat's annolist); every name maps to None
    when it holds none of them."""
    present = mat_variables(path, "a predictions .mat")
    first = next((name for name in MAT_PREDICTION_VARIABLES if name in present), None)
    if first is None:
        return {name: None for name in present}
    names = [first] + (["output_joints"] if "output_joints" in present else [])
    return load_mat(path, "a predictions .mat", variable_names=names)


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

