"""Files: reading user files into Python objects with errors that name the file, writing files atomically
(a reader sees the old file or the complete new one, never a torn one), and manifests of sizes and hashes."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

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


# --------------------------------------------------------------------------------------------- atomic writes

def fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not possible on every platform (e.g. Windows), hence best effort.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on normal exit it is fsynced and renamed onto ``path``.

    A crash or an exception leaves any previous file at ``path`` untouched (the temporary is removed on
    exceptions). Usage: ``with atomic_path(p) as tmp: torch.save(state, tmp)``.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.{uuid.uuid4().hex[:12]}.tmp"
    # Created by open() rather than mkstemp so that the final file gets the usual umask permissions.
    with open(tmp, "xb"):
        pass
    try:
        yield tmp
        with open(tmp, "r+b") as f:
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(final.parent)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the complete new one."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def append_jsonl(path: PathLike, entry: Dict[str, Any]) -> None:
    """Append one JSON line and make it durable (a log that survives a kill up to its last complete line)."""
    with open(path, "a") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


# --------------------------------------------------------------------------------------------- integrity

MANIFEST_NAME = "manifest.json"
_HASH_CHUNK = 1 << 20


def file_sha256(path: PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(directory: PathLike, names: List[str]) -> Path:
    """Write ``directory/manifest.json`` listing the size and SHA-256 of each named file in it (atomically)."""
    directory = Path(directory)
    files = {name: {"bytes": (directory / name).stat().st_size, "sha256": file_sha256(directory / name)}
             for name in names}
    path = directory / MANIFEST_NAME
    atomic_write_bytes(path, json.dumps({"format": 1, "files": files}, indent=1).encode())
    return path


def manifest_problem(directory: PathLike, required: Tuple[str, ...] = ()) -> Optional[str]:
    """Why the files of a checkpoint directory cannot be trusted, or None when they can.

    Each file of the manifest must exist with its recorded size and SHA-256 (a truncated or overwritten file
    fails), and each ``required`` file must exist. A directory without a manifest (written by an older
    version) is only checked for the required files.
    """
    directory = Path(directory)
    for name in required:
        if not (directory / name).is_file():
            return f"{name} is missing"
    manifest = directory / MANIFEST_NAME
    if not manifest.is_file():
        return None
    try:
        files = json.loads(manifest.read_text())["files"]
        entries = [(str(name), int(e["bytes"]), str(e["sha256"])) for name, e in files.items()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"unreadable {MANIFEST_NAME} ({type(exc).__name__})"
    for name, size, sha in entries:
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        actual = path.stat().st_size
        if actual != size:
            return f"{name} has {actual} bytes, the manifest says {size} (truncated?)"
        if file_sha256(path) != sha:
            return f"{name} does not match its SHA-256 in {MANIFEST_NAME} (corrupt)"
    return None


@contextlib.contextmanager
def redirect_fds(fds: Sequence[int], target: int) -> Iterator[None]:
    """Point the process's file descriptors ``fds`` (1: stdout, 2: stderr) at the open descriptor ``target`` for
    the duration: what C and C++ libraries print there themselves goes there too. Python's own buffered output is
    flushed on entry and exit, so it lands where it was written. Without such descriptors (an embedded
    interpreter) the streams are left alone."""
    _flush_streams(fds)
    saved: List[Tuple[int, int]] = []
    try:
        for fd in fds:
            saved.append((fd, os.dup(fd)))
            os.dup2(target, fd)
    except OSError:
        _restore_fds(saved)
        saved = []
    try:
        yield
    finally:
        _flush_streams(fds)
        _restore_fds(saved)


def _flush_streams(fds: Sequence[int]) -> None:
    streams = {1: sys.stdout, 2: sys.stderr}
    for fd in fds:
        try:
            streams[fd].flush()
        except (KeyError, AttributeError, ValueError, OSError):   # no such stream, or it is closed
            pass


def _restore_fds(saved: List[Tuple[int, int]]) -> None:
    for fd, old in reversed(saved):
        os.dup2(old, fd)
        os.close(old)


# --------------------------------------------------------------------------------------------- Matlab files

def require_file(path: PathLike) -> None:
    """DataError("file not found") naming ``path`` unless it is a regular file."""
    if not os.path.isfile(path):
        raise DataError("file not found", path)


def mat_variables(path: PathLike, what: str) -> Dict[str, Tuple[int, ...]]:
    """Name -> shape of each variable of a .mat file, read from its headers without decoding the data.

    ``what`` names what the file should be, with its article ("an LSP joints.mat"), for the errors.
    """
    import scipy.io  # only the .mat readers need it

    require_file(path)
    try:
        return {name: tuple(shape) for name, shape, _ in scipy.io.whosmat(os.fspath(path))}
    except Exception as err:  # scipy raises several unrelated types for a corrupt or non-.mat file
        raise DataError(f"not {what}: cannot read it as a .mat file ({err})", path) from None


def load_mat(path: PathLike, what: str, variable_names: Optional[Sequence[str]] = None, **options: Any
             ) -> Dict[str, Any]:
    """The variables of a .mat file (``scipy.io.loadmat(path, variable_names, **options)``).

    A missing, corrupt or non-.mat file raises DataError("not <what>: cannot read it as a .mat file (...)")
    naming it; ``what`` carries its article ("a FLIC examples.mat").
    """
    import scipy.io  # only the .mat readers need it

    require_file(path)
    try:
        return scipy.io.loadmat(os.fspath(path), variable_names=variable_names, **options)
    except Exception as err:  # scipy raises several unrelated types for a corrupt or non-.mat file
        raise DataError(f"not {what}: cannot read it as a .mat file ({err})", path) from None


def mat_keys(names: Iterable[str]) -> str:
    """The variable names of a .mat file (a loadmat dict or names), for error messages: "a, b" or "none"."""
    return ", ".join(sorted(k for k in names if not k.startswith("__"))) or "none"
