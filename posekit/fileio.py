"""Reading user files into Python objects with errors that name the file."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterable, List, Sequence, Tuple, Union

import numpy as np

from .errors import DataError

PathLike = Union[str, "os.PathLike[str]"]


def read_json(path: PathLike, what: str = "file") -> Any:
    """Parse a JSON file; a missing, unreadable or malformed file raises DataError("<what> not found" ...)."""
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{what} not found", path) from None
    except IsADirectoryError:
        raise DataError("is a directory, expected a JSON file", path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"not valid JSON ({err})", path) from None
    except RecursionError:   # a hostile file of deeply nested brackets
        raise DataError("not usable JSON: nested too deeply", path) from None
    except OSError as err:
        raise DataError(f"cannot read file ({err.strerror})", path) from None


def read_h5_datasets(path: PathLike, required: Sequence[str], optional: Iterable[str], kind: str
                     ) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """The ``required`` and present ``optional`` datasets of an HDF5 file as arrays.

    ``kind`` names what the file should be, with its article ("an MPII annotation file"), for the errors.
    """
    import h5py  # only the h5 readers need it

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError("file not found", path)
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise DataError(f"not {kind}: cannot open it as HDF5 ({err})", path) from None
    with handle:
        missing = [name for name in required if not isinstance(handle.get(name), h5py.Dataset)]
        if missing:
            present = ", ".join(sorted(handle.keys())) or "none"
            raise DataError(f"not {kind}: no dataset {missing[0]!r} (datasets: {present})", path)
        try:
            arrays = {name: np.asarray(handle[name][()]) for name in required}
            extras = {name: np.asarray(handle[name][()]) for name in optional
                      if isinstance(handle.get(name), h5py.Dataset)}
        except (OSError, TypeError, ValueError) as err:
            raise DataError(f"cannot read the datasets ({err})", path) from None
    return arrays, extras


def describe_array(array: np.ndarray) -> str:
    """Shape and dtype of an array, for error messages."""
    shape = " x ".join(map(str, array.shape)) or "a scalar"
    return f"{shape} ({array.dtype})"


def h5_image_names(raw: Any, count: int, path: str) -> List[str]:
    """The N image names of an h5 ``imgname`` dataset, as text; DataError naming the file otherwise."""
    array = np.asarray(raw)
    # Fixed-length byte strings (pose-hg-train's FLIC), variable-length strings, or rows of character codes.
    if array.ndim == 2 and array.dtype.kind in "iu" and len(array) == count:
        array = np.array([bytes(int(c) for c in row if c > 0) for row in array], dtype=object)
    if array.shape != (count,) or array.dtype.kind not in "SUO":
        raise DataError(f"dataset 'imgname' is {describe_array(array)}, expected N = {count} file names", path)
    names = []
    for value in array:
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError("dataset 'imgname' holds a name that is not UTF-8", path) from None
        if not isinstance(value, str) or not value.strip("\0 "):
            raise DataError("dataset 'imgname' holds an empty or non-text name", path)
        names.append(value.strip("\0 "))
    return names
