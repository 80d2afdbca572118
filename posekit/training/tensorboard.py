"""TensorBoard logs of a training run (``train.tensorboard: true``): the scalars of every optimizer step and every
epoch in ``OUTPUT/tensorboard/``, for ``tensorboard --logdir OUTPUT/tensorboard``.

The writer is ``torch.utils.tensorboard.SummaryWriter``, which needs the ``tensorboard`` package: an optional extra
(``pip install "posekit[tensorboard]"``), because it brings grpcio, protobuf and a web server that training
itself never needs. Every scalar is logged against the global optimizer step, so step and epoch values line up.

Tags: ``train/loss`` and ``train/lr`` each step (the loss averaged over processes); at each epoch end the history
entry's ``epoch/loss`` (epoch mean), ``epoch/lr``, ``epoch/seconds``, ``epoch/unreadable_images`` and the
validation metrics as ``val/<name>`` (``val/pck``, ``val/Mean``, ``val/AP``, ...).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

from ..config import Config
from ..errors import ConfigError

TENSORBOARD_DIR = "tensorboard"
# History-entry keys that say where the entry is (not plotted) and those that are training figures; every other
# number in an entry is a validation metric.
_POSITION_KEYS = frozenset({"epoch", "epochs_done", "step"})
_TRAINING_KEYS = frozenset({"loss", "lr", "seconds", "unreadable_images"})

Callback = Callable[[Dict[str, Any]], None]


def _summary_writer_class():
    """``SummaryWriter``; ImportError when the tensorboard package is missing."""
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter


def require_tensorboard() -> None:
    """ConfigError (one line: the key and the install command) when the tensorboard package is missing."""
    try:
        _summary_writer_class()
    except ImportError:
        raise ConfigError("train.tensorboard is true but the tensorboard package is not installed: "
                          "pip install tensorboard (or pip install \"posekit[tensorboard]\")") from None


def _tag(group: str, key: str) -> str:
    # TensorBoard tags take letters, digits and _ . - / only (it would rename "Mean@0.1" with a warning).
    return f"{group}/" + re.sub(r"[^A-Za-z0-9_.\-/]", "_", key)


class TensorBoardLogger:
    """Writes a training run's scalars under ``log_dir``. The writer opens at the first scalar with
    ``purge_step`` = that step: after ``--resume``, TensorBoard drops what the interrupted run had logged from that
    step on (it is logged again), so the resumed curves have no doubled stretch."""

    def __init__(self, log_dir: Union[str, Path], writer_class: Optional[Callable[..., Any]] = None):
        self.log_dir = Path(log_dir)
        self._writer_class = writer_class
        self._writer: Any = None

    def _open(self, step: int) -> Any:
        if self._writer is None:
            writer_class = self._writer_class or _summary_writer_class()
            self._writer = writer_class(log_dir=str(self.log_dir), purge_step=int(step))
        return self._writer

    def on_step(self, info: Dict[str, Any]) -> None:
        if info.get("rank", 0) != 0:
            return
        step = int(info["step"])
        writer = self._open(step)
        writer.add_scalar("train/loss", float(info["loss"]), step)
        writer.add_scalar("train/lr", float(info["lr"]), step)

    def on_epoch_end(self, entry: Dict[str, Any]) -> None:
        step = int(entry["step"])
        writer = self._open(step)
        for key, value in entry.items():
            if key in _POSITION_KEYS or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            writer.add_scalar(_tag("epoch" if key in _TRAINING_KEYS else "val", key), float(value), step)
        writer.flush()      # an epoch's scalars are on disk when the epoch is over, even if the run dies next

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def chain(self, on_step: Optional[Callback], on_epoch_end: Optional[Callback]) -> Tuple[Callback, Callback]:
        """``on_step`` and ``on_epoch_end`` callbacks that log and then call the given ones (when given)."""
        def step_then(info: Dict[str, Any]) -> None:
            self.on_step(info)
            if on_step:
                on_step(info)

        def epoch_then(entry: Dict[str, Any]) -> None:
            self.on_epoch_end(entry)
            if on_epoch_end:
                on_epoch_end(entry)

        return step_then, epoch_then


def tensorboard_logger(cfg: Config) -> Optional[TensorBoardLogger]:
    """The run's logger in ``cfg.output_dir/tensorboard`` when ``train.tensorboard`` is on (ConfigError at once
    when the package is missing), else None."""
    if not cfg.train.tensorboard:
        return None
    require_tensorboard()
    return TensorBoardLogger(Path(cfg.output_dir) / TENSORBOARD_DIR)
