"""Reading user files into Python objects with errors that name the file."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterable, Sequence, Tuple, Union

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
