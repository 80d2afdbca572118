"""The model card: every builder's parameters and multiply-adds beside the papers' figures, and the recipe of
each shipped config. ``posekit info --card docs/models.md`` writes it; nothing in it is typed by hand.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from ..config import CONFIGS_DIR, Config, load_config
from ..models import create_model, list_models
from ..models.pretrained import PRETRAINED
from .flops import model_summary


@dataclass(frozen=True)
class PaperFigure:
    input_hw: Tuple[int, int]
    num_keypoints: int
    params_m: Optional[float]       # millions, as printed in the paper's table
    gmacs: Optional[float]          # the papers' "GFLOPs" (multiply-adds / 2^30)
    source: str


# HRNet paper Table 1 (COCO, 256x192 / 384x288) and Table 4 (MPII, 256x256); MSPN paper Table 3; CPM and the
# Ke et al. network give no such table (their parameter counts are those of the official / proposed layers).
PAPER_FIGURES: Dict[str, List[PaperFigure]] = {
    "hrnet_w32": [PaperFigure((256, 192), 17, 28.5, 7.1, "HRNet Table 1"),
                  PaperFigure((384, 288), 17, 28.5, 16.0, "HRNet Table 1"),
                  PaperFigure((256, 256), 16, 28.5, 9.5, "HRNet Table 4")],
    "hrnet_w48": [PaperFigure((256, 192), 17, 63.6, 14.6, "HRNet Table 1"),
                  PaperFigure((384, 288), 17, 63.6, 32.9, "HRNet Table 1")],
    "simplebaseline_res50": [PaperFigure((256, 192), 17, 34.0, 8.9, "HRNet Table 1")],
    "simplebaseline_res101": [PaperFigure((256, 192), 17, 53.0, 12.4, "HRNet Table 1")],
    "simplebaseline_res152": [PaperFigure((256, 192), 17, 68.6, 15.7, "HRNet Table 1"),
                              PaperFigure((384, 288), 17, 68.6, 35.6, "HRNet Table 1"),
                              PaperFigure((256, 256), 16, 68.6, 20.9, "HRNet Table 4")],
    "hourglass_8stack": [PaperFigure((256, 192), 17, 25.1, 14.3, "HRNet Table 1"),
                         PaperFigure((256, 256), 16, 25.1, 19.1, "HRNet Table 4")],
    "mspn_1stage": [PaperFigure((256, 192), 17, None, 4.4, "MSPN Table 3")],
    "mspn_2stage": [PaperFigure((256, 192), 17, None, 9.6, "MSPN Table 3")],
    "mspn_3stage": [PaperFigure((256, 192), 17, None, 14.7, "MSPN Table 3")],
    "mspn_4stage": [PaperFigure((256, 192), 17, None, 19.9, "MSPN Table 3")],
}

# The input size and keypoint count each family is counted at when the papers give no figure.
DEFAULT_SETTING: Dict[str, Tuple[Tuple[int, int], int]] = {
    "cpm": ((368, 368), 14), "hourglass": ((256, 256), 16), "ke": ((256, 256), 16),
    "mspn": ((256, 192), 17), "simplebaseline": ((256, 192), 17), "hrnet": ((256, 192), 17),
}


def _default_setting(name: str) -> Tuple[Tuple[int, int], int]:
    for prefix, setting in DEFAULT_SETTING.items():
        if name.startswith(prefix):
            return setting
    return (256, 192), 17


def settings_for(name: str) -> List[Tuple[Tuple[int, int], int, Optional[PaperFigure]]]:
    figures = PAPER_FIGURES.get(name)
    if figures:
        return [(f.input_hw, f.num_keypoints, f) for f in figures]
    hw, k = _default_setting(name)
    return [(hw, k, None)]


def forward_ms(name: str, input_hw: Tuple[int, int], num_keypoints: int, batch: int, repeats: int = 3) -> float:
    """Median CPU forward time (ms) of an eval-mode model at a batch size, after one warm-up run."""
    model = create_model(name, num_keypoints=num_keypoints).eval()
    x = torch.randn(batch, getattr(model, "input_channels", 3), *input_hw)
    times = []
    with torch.inference_mode():
        model(x)
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - start) * 1000)
    return sorted(times)[len(times) // 2]


def describe_model(name: str, input_hw: Tuple[int, int], num_keypoints: Optional[int] = None,
                   bench: bool = False) -> str:
    """What ``posekit info MODEL`` prints: parameters, multiply-adds, output shapes and, with ``bench``, the CPU
    forward time at batch 1 and 8."""
    summary = model_summary(name, input_hw, num_keypoints=num_keypoints)
    lines = [f"model        {name}",
             f"input        {input_hw[0]}x{input_hw[1]}",
             f"parameters   {summary['params']:,}",
             f"MACs         {summary['macs']:,}  ({summary['gmacs']:.1f} G, MACs / 2^30 as in the papers' tables)"]
    lines += [f"output {i}     {tuple(shape)}" for i, shape in enumerate(summary.get("output_shapes", []))]
    if bench:
        for batch in (1, 8):
            ms = forward_ms(name, input_hw, num_keypoints, batch)
            lines.append(f"CPU forward  batch {batch}: {ms:.1f} ms ({torch.get_num_threads()} threads)")
    return "\n".join(lines)


def _recipe(cfg: Config) -> str:
    t = cfg.train
    sched = t.lr_schedule
    if t.lr_schedule == "multistep":
        sched += f" x{t.lr_factor:g} at epochs {t.lr_steps}"
    elif t.lr_schedule == "step":
        sched += f" x{t.lr_factor:g} every {t.lr_step_iters} it"
    if t.warmup_iters:
        sched += f", warm-up {t.warmup_iters} it"
    length = f"{t.max_steps} it" if t.max_steps else f"{t.epochs} epochs"
    return (f"{cfg.data.format} {cfg.input_hw[0]}x{cfg.input_hw[1]}, K={cfg.model.num_keypoints}, "
            f"{t.optimizer} lr {t.lr:g} wd {t.weight_decay:g}, {sched}, {length}, batch {t.batch_size}, "
            f"metric {cfg.test.metric}, flip test {'on' if cfg.test.flip_test else 'off'}")


def _reference(path: Path) -> str:
    """The paper's figure that a recipe's header comment quotes ("Reference: ..."), without its asides."""
    header = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("#").strip())
    _, found, after = " ".join(header).partition("Reference:")
    return re.split(r" \(|; |\.(?: |$)", after.strip(), maxsplit=1)[0].strip() if found else ""


def describe_configs(configs_dir: Path = CONFIGS_DIR) -> str:
    """The recipes in ``configs_dir`` (default: those shipped in the package), one line each: name, model, data
    format, input size, keypoints, metric and the paper's figure it aims at (``posekit configs``)."""
    rows = [("name", "model", "data", "input", "K", "metric", "paper")]
    for path in sorted(Path(configs_dir).glob("*.yaml")):
        cfg = load_config(path)
        rows.append((path.stem + ("*" if path.stem in PRETRAINED else ""), cfg.model.name, cfg.data.format,
                     f"{cfg.input_hw[0]}x{cfg.input_hw[1]}", str(cfg.model.num_keypoints), cfg.test.metric,
                     _reference(path)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join([cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]).rstrip() for row in rows]
    if any(row[0].endswith("*") for row in rows):
        lines.append("* also a shipped trained model: eval and predict by this name use its trained weights "
                     "(posekit info --pretrained); train, export and convert use the recipe")
    return "\n".join(lines)


def model_card(configs_dir: Optional[Path] = None) -> str:
    lines = ["# posekit model card", "",
             "Generated by `posekit info --card docs/models.md`. Parameters are exact; multiply-adds are counted by",
             "PyTorch's FlopCounterMode (convolutions and matrix products; FLOPs / 2) and given as MACs / 2^30, the unit",
             "the papers' tables call GFLOPs. The papers' figures are beside ours where they printed one.", "",
             "How the counts relate: HRNet, hourglass and CPM are plain convolutions and match the papers' convention.",
             "SimpleBaseline's published figures come from the HRNet repository's summary tool, which charges each",
             "stride-2 transposed convolution its weight size times its *output* pixels (4x its real cost); with that",
             "convention the count is 8.99 / 12.38 / 15.77 G. MSPN's Table 3 figures are 7-11 % below the released",
             "network's count (its cross-stage 1x1 convolutions alone add 1.1 G per stage); the paper's own tables do",
             "not add up with each other, so the gap is left as found. The 8-stack hourglass counts 1.34x the figure",
             "HRNet's tables quote for it at both input sizes (a constant ratio: a counting convention of that",
             "table, not a layer difference; our parameters, 25.4 M, are within 1.3 % of its 25.1 M).", "",
             "| model | input | K | parameters | paper params (M) | MACs / 2^30 | paper | source |",
             "|---|---|---|---|---|---|---|---|"]
    for name in list_models():
        for hw, k, fig in settings_for(name):
            summary = model_summary(name, hw, num_keypoints=k)
            paper_p = f"{fig.params_m:.1f}" if fig and fig.params_m is not None else "–"
            paper_g = f"{fig.gmacs:.1f}" if fig and fig.gmacs is not None else "–"
            lines.append(f"| `{name}` | {hw[0]}×{hw[1]} | {k} | {summary['params']:,} | {paper_p} | "
                         f"{summary['gmacs']:.2f} | {paper_g} | {fig.source if fig else '–'} |")
    if configs_dir is not None and Path(configs_dir).is_dir():
        lines += ["", "## Recipes of the shipped configs", "", "| config | model | recipe |", "|---|---|---|"]
        for path in sorted(Path(configs_dir).glob("*.yaml")):
            cfg = load_config(path)
            lines.append(f"| `{path.name}` | `{cfg.model.name}` | {_recipe(cfg)} |")
    return "\n".join(lines) + "\n"
