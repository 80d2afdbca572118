"""Weights on disk: safe reading (safetensors or ``torch.load(weights_only=True)``), checked loading, atomic saving.

Every problem with a user's file becomes a :class:`~posekit.errors.CheckpointError` naming the file: an
unreadable or truncated file, a pickle that would need arbitrary code, a layout without a state dict, or
keys and shapes that do not fit the model.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from .errors import CheckpointError
from .fileio import atomic_write_bytes

PathLike = Union[str, "os.PathLike[str]"]

# Keys under which training scripts commonly nest the weights, tried in this order. ("model" comes after
# "state_dict" because the official HRNet training checkpoint stores the model *name* under "model".)
CONTAINER_KEYS = ("state_dict", "model_state_dict", "model_state", "model", "module", "net", "network",
                  "weights", "params", "best_state_dict")
_MAX_NESTING = 3
_LISTED_KEYS = 5


# --------------------------------------------------------------------------------------------- saving

def _tensors_for_saving(model_or_state_dict: Union[nn.Module, Mapping[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    state = model_or_state_dict.state_dict() if isinstance(model_or_state_dict, nn.Module) else model_or_state_dict
    tensors: Dict[str, torch.Tensor] = {}
    seen_storage = set()
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"state dict entry {key!r} is a {type(value).__name__}, not a tensor")
        t = value.detach().to("cpu").contiguous()
        # safetensors refuses tensors sharing memory (tied weights); a private copy of each repeat is enough.
        ptr = (t.untyped_storage().data_ptr(), t.storage_offset()) if t.numel() else None
        if ptr is not None and ptr in seen_storage:
            t = t.clone()
        elif ptr is not None:
            seen_storage.add(ptr)
        tensors[key] = t
    return tensors


def save_weights(model_or_state_dict: Union[nn.Module, Mapping[str, torch.Tensor]], path: PathLike,
                 metadata: Optional[Mapping[str, object]] = None) -> None:
    """Save weights as safetensors, atomically. ``metadata`` values (str, int, float, bool) are stored as strings."""
    from safetensors.torch import save

    meta: Dict[str, str] = {}
    for key, value in (metadata or {}).items():
        if not isinstance(value, (str, int, float, bool)):
            raise TypeError(f"metadata {key!r}: safetensors stores strings, got {type(value).__name__}")
        meta[str(key)] = str(value)
    data = save(_tensors_for_saving(model_or_state_dict), metadata=meta or None)
    atomic_write_bytes(path, data)


# --------------------------------------------------------------------------------------------- reading

def _is_state_dict(obj: object) -> bool:
    return (isinstance(obj, Mapping) and len(obj) > 0
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()))


def _find_state_dict(obj: object, depth: int = 0) -> Optional[Mapping[str, torch.Tensor]]:
    if _is_state_dict(obj):
        return obj  # type: ignore[return-value]
    if not isinstance(obj, Mapping) or depth >= _MAX_NESTING:
        return None
    for key in CONTAINER_KEYS:
        if key in obj:
            found = _find_state_dict(obj[key], depth + 1)
            if found is not None:
                return found
    return None


def _strip_prefix(state: Mapping[str, torch.Tensor], prefix: str = "module.") -> Dict[str, torch.Tensor]:
    # DataParallel / DistributedDataParallel wrap the model as ".module"; possibly more than once.
    out = dict(state)
    while out and all(k.startswith(prefix) for k in out):
        out = {k[len(prefix):]: v for k, v in out.items()}
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _looks_like_safetensors(path: Path) -> bool:
    # A safetensors file starts with a little-endian u64 header length followed by the JSON header.
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size


def _load_object(path: Path) -> object:
    if path.suffix == ".safetensors" or _looks_like_safetensors(path):
        from safetensors.torch import load_file
        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own SafetensorError and OSError/ValueError variants
            raise CheckpointError(f"not a readable safetensors file ({_first_line(exc)})", path) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc):
            raise CheckpointError("refused to load: the file contains objects that need arbitrary code to "
                                  "unpickle (only tensors and plain containers are accepted)", path) from None
        raise CheckpointError(f"corrupt checkpoint ({_first_line(exc)})", path) from None
    except Exception as exc:  # truncated zip, not a torch file at all, ...
        raise CheckpointError(f"cannot read checkpoint ({_first_line(exc)})", path) from None


def read_state_dict(path: PathLike) -> Dict[str, torch.Tensor]:
    """The tensors of a weights file, keyed by parameter name, on the CPU.

    ``.safetensors`` files are read with safetensors, anything else with ``torch.load(weights_only=True)``.
    Common containers ({"state_dict": ...}, {"model": ...}, ...) are unwrapped and a ``module.`` prefix
    is removed.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("no such file", path)
    obj = _load_object(path)
    state = _find_state_dict(obj)
    if state is None:
        if isinstance(obj, Mapping):
            keys = ", ".join(map(str, list(obj)[:8])) or "none"
            raise CheckpointError(f"no state dict (mapping of names to tensors) found; top-level keys: {keys}", path)
        raise CheckpointError(f"expected a state dict, found a {type(obj).__name__}", path)
    return _strip_prefix(state)


def read_safetensors_metadata(path: PathLike) -> Dict[str, str]:
    """The string metadata stored in a safetensors header ({} when there is none)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError("no such file", path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return dict(f.metadata() or {})
    except Exception as exc:
        raise CheckpointError(f"not a readable safetensors file ({_first_line(exc)})", path) from None


# --------------------------------------------------------------------------------------------- loading

@dataclass
class LoadReport:
    """What did not fit when loading weights (all empty for a perfect fit, except tolerated keys)."""

    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)  # key, file, model

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self) -> str:
        def listed(keys: List[str]) -> str:
            more = f", ... {len(keys) - _LISTED_KEYS} more" if len(keys) > _LISTED_KEYS else ""
            return f" ({', '.join(keys[:_LISTED_KEYS])}{more})" if keys else ""

        text = (f"{len(self.missing)} missing key{'s' * (len(self.missing) != 1)}{listed(self.missing)}, "
                f"{len(self.unexpected)} unexpected{listed(self.unexpected)}")
        if self.mismatched:
            shown = ", ".join(f"{k}: file {tuple(a)} vs model {tuple(b)}" for k, a, b in self.mismatched[:_LISTED_KEYS])
            more = f", ... {len(self.mismatched) - _LISTED_KEYS} more" if len(self.mismatched) > _LISTED_KEYS else ""
            text += f", {len(self.mismatched)} shape mismatch{'es' * (len(self.mismatched) != 1)} ({shown}{more})"
        return text


def compare_state_dicts(model: nn.Module, state: Mapping[str, torch.Tensor]) -> LoadReport:
    """Keys and shapes of ``state`` against ``model``; a missing ``num_batches_tracked`` is not reported."""
    own = model.state_dict()
    report = LoadReport()
    report.missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    report.unexpected = [k for k in state if k not in own]
    report.mismatched = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in state.items()
                         if k in own and tuple(v.shape) != tuple(own[k].shape)]
    return report


def load_weights(model: nn.Module, path: PathLike, strict: bool = True) -> LoadReport:
    """Load a weights file into ``model`` in place.

    strict: any missing key (other than ``num_batches_tracked``), unexpected key or shape mismatch raises
    a CheckpointError naming them, and the model is left unchanged. Not strict: the entries that fit are
    loaded and the rest is returned in the report (e.g. ImageNet weights without a head).
    """
    state = read_state_dict(path)
    report = compare_state_dicts(model, state)
    if strict and not report.ok:
        name = getattr(model, "name", None) or type(model).__name__
        raise CheckpointError(f"does not fit {name}: {report.describe()}", path)
    bad = set(report.unexpected) | {k for k, _, _ in report.mismatched}
    fitting = {k: v for k, v in state.items() if k not in bad}
    # strict=False here only because tolerated num_batches_tracked entries may be absent; the rest was checked.
    model.load_state_dict(fitting, strict=False)
    return report
