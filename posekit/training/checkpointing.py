"""The training checkpoint store: atomic step directories, the ``last`` pointer, pruning, and finding the newest
intact checkpoint to resume from.

Checkpoints are directories ``<output_dir>/checkpoints/step_00001234/`` holding ``weights.safetensors``
(the EMA weights when ``train.ema_decay`` is on), ``state.pt`` (the :class:`~posekit.training.trainer.TrainState`:
optimizer, scheduler, scaler, raw and EMA weights, every RNG state, sampler position, step) and ``manifest.json``
(size and SHA-256 of both). A directory is written under a temporary name, fsynced and renamed, then the one-line
file ``checkpoints/last`` is replaced atomically: a run killed at any moment leaves the previous checkpoint intact.
``--resume`` continues from the newest checkpoint whose files match their manifest; a corrupt or truncated one is
moved to ``checkpoints/corrupt/`` with a one-line warning and the previous one is used.
"""
from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError
from ..fileio import atomic_path, fsync_dir, manifest_problem, write_manifest
from ..weightfiles import save_weights

KEEP_CHECKPOINTS = 3
WEIGHTS_FILE = "weights.safetensors"
STATE_FILE = "state.pt"
_STEP_DIR = re.compile(r"step_(\d+)")


def rng_state() -> Dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _step_dirs(checkpoint_dir: Path) -> List[Path]:
    """The step_N checkpoint directories, oldest first."""
    if not checkpoint_dir.is_dir():
        return []
    found = [(int(m.group(1)), d) for d in checkpoint_dir.iterdir() if d.is_dir() and (m := _STEP_DIR.fullmatch(d.name))]
    return [d for _, d in sorted(found)]


def save_checkpoint(checkpoint_dir: Path, model: nn.Module, state: Dict[str, Any], metadata: Dict[str, str],
                    keep: int = KEEP_CHECKPOINTS) -> Path:
    """Write step_N/{weights.safetensors,state.pt,manifest.json} atomically, point ``last`` at it and keep the
    newest ``keep`` step checkpoints (0 = all)."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    name = f"step_{state['step']:08d}"
    final = checkpoint_dir / name
    tmp = checkpoint_dir / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_weights(model, tmp / WEIGHTS_FILE, metadata={**metadata, "step": str(state["step"])})
    with open(tmp / STATE_FILE, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    write_manifest(tmp, [WEIGHTS_FILE, STATE_FILE])
    fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    with atomic_path(checkpoint_dir / "last") as p:
        Path(p).write_text(name + "\n")
    fsync_dir(checkpoint_dir)
    if keep > 0:
        for old in _step_dirs(checkpoint_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def last_checkpoint(checkpoint_dir: Path) -> Optional[Path]:
    pointer = checkpoint_dir / "last"
    if not pointer.is_file():
        return None
    path = checkpoint_dir / pointer.read_text().strip()
    if not (path / WEIGHTS_FILE).is_file() or not (path / STATE_FILE).is_file():
        raise CheckpointError("the checkpoint named by 'last' is incomplete", path)
    return path


def load_training_state(path: Path) -> Dict[str, Any]:
    try:
        return torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which one
        raise CheckpointError(f"cannot read training state ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
                              path / STATE_FILE) from None


def find_resume_checkpoint(checkpoint_dir: Path, log: Callable[[str], None] = print
                           ) -> Optional[Tuple[Path, Dict[str, Any]]]:
    """The newest intact checkpoint and its training state; None when there is no checkpoint at all.

    A checkpoint whose files do not match its manifest (truncated, corrupt, missing) or whose state cannot be
    read is moved to ``checkpoints/corrupt/`` with a one-line warning, and the previous one is tried; when none
    is intact, CheckpointError. Leftover temporaries of a killed run are removed.
    """
    for stale in checkpoint_dir.glob(".*.tmp") if checkpoint_dir.is_dir() else []:
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    candidates = _step_dirs(checkpoint_dir)[::-1]
    for path in candidates:
        problem = manifest_problem(path, (WEIGHTS_FILE, STATE_FILE))
        state: Optional[Dict[str, Any]] = None
        if problem is None:
            try:
                state = load_training_state(path)
            except CheckpointError as exc:
                problem = exc.problem
        if problem is None:
            if _last_name(checkpoint_dir) != path.name:
                with atomic_path(checkpoint_dir / "last") as p:
                    Path(p).write_text(path.name + "\n")
            return path, state
        # Set aside rather than deleted (it may be inspected) and out of the way of pruning and of 'last'.
        aside = checkpoint_dir / "corrupt" / path.name
        n = 1
        while aside.exists():
            aside, n = checkpoint_dir / "corrupt" / f"{path.name}.{n}", n + 1
        aside.parent.mkdir(exist_ok=True)
        os.replace(path, aside)
        log(f"warning: checkpoint {path} is unusable ({problem}); moved to {aside}, using the previous one")
    if candidates:
        raise CheckpointError(f"no intact checkpoint to resume from ({len(candidates)} moved to corrupt/)", checkpoint_dir)
    return None


def _last_name(checkpoint_dir: Path) -> Optional[str]:
    pointer = checkpoint_dir / "last"
    return pointer.read_text().strip() if pointer.is_file() else None


def cpu_state(module: nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
