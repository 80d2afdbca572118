"""The learning curve of a training run, redrawn from its ``metrics.jsonl`` after every epoch."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, Union

from ..viz import plot_learning_curve

PathLike = Union[str, "os.PathLike[str]"]


def write_learning_curve(output_dir: PathLike, title: str = "") -> Path:
    """Draw ``output_dir/learning_curve.png`` and ``.svg`` from the run's whole history, ``output_dir/metrics.jsonl``
    (rewritten on resume, so a resumed run's curve has every epoch). Returns the PNG's path."""
    out = Path(output_dir)
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    path = out / "learning_curve.png"
    plot_learning_curve(history, [path, path.with_suffix(".svg")], title=title)
    return path


def learning_curve_writer(output_dir: PathLike, title: str = "") -> Callable[[Dict[str, Any]], None]:
    """An ``on_epoch_end`` for :func:`posekit.training.trainer.train` that redraws the learning curve."""
    return lambda entry: write_learning_curve(output_dir, title)
