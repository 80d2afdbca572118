"""Score reports: the per-joint tables as Markdown and CSV, the PCK curve and the per-joint bars as PNG and SVG.

Every writer takes a list of :class:`posekit.evaluation.scoring.ScoreResult` of one protocol (one per predictions
file or model). The curve is the CPM paper's kind of figure: detection rate (%) against normalised
distance, one line per joint group for one result, one line (the mean) per result for several. The bars: the
detection rate of each joint, one bar per result.
``format_metrics`` and ``write_eval_report`` are what ``posekit eval`` prints and writes for ``evaluate_model``.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..build import dataset_skeleton
from ..config import Config
from ..fileio import atomic_write_bytes
from .scoring import ScoreResult, eval_result
from ..viz import ChartPath, plot_bars, plot_curves

PathLike = Union[str, "os.PathLike[str]"]

PROTOCOL_TITLES = {"mpii": "MPII", "lsp": "LSP", "flic": "FLIC", "coco": "COCO", "pck": ""}
CURVE_SIZE: Tuple[int, int] = (480, 640)   # (height, width) of the PNG
PER_JOINT_SIZE: Tuple[int, int] = (420, 800)
CHART_SUFFIXES = (".png", ".svg")           # every chart of a report is written in both


def _check_results(results: Sequence[ScoreResult]) -> List[str]:
    """The shared summary columns of ``results`` (they must come from one protocol and metric)."""
    if not results:
        raise ValueError("no results to report")
    columns = list(results[0].summary)
    for result in results[1:]:
        if list(result.summary) != columns or result.metric != results[0].metric:
            raise ValueError(f"results of different metrics in one report: {results[0].metric} and {result.metric}")
    return columns


def _cell(value: float, digits: int) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def format_summary_table(results: Sequence[ScoreResult]) -> str:
    """The summary columns as a Markdown table, one row per result.

    MPII: ``| Arch | Head | Shoulder | Elbow | Wrist | Hip | Knee | Ankle | Mean | Mean@0.1 |`` with three
    decimals, as HRNet prints; LSP/FLIC: the joint groups and Mean in percent; COCO: the ten AP/AR stats.
    """
    columns = _check_results(results)
    first = "Arch" if results[0].protocol == "mpii" else "Predictions"
    return _markdown([first] + columns,
                     [[r.name] + [_cell(r.summary[c], r.digits) for c in columns] for r in results])


def format_per_joint_table(results: Sequence[ScoreResult]) -> str:
    """One row per joint: each result's value (percent) and the number of ground-truth joints counted.

    Empty string when no result has per-joint values (COCO).
    """
    _check_results(results)
    joints = list(results[0].per_joint)
    if not joints:
        return ""
    counts = [r.counts for r in results]
    same_counts = all(c == counts[0] for c in counts)
    header = ["Joint"] + [r.name for r in results]
    header += ["Count"] if same_counts else [f"Count ({r.name})" for r in results]
    rows = []
    for joint in joints:
        row = [joint] + [_cell(r.per_joint.get(joint, float("nan")), r.digits) for r in results]
        if same_counts:
            row.append(str(counts[0].get(joint, "")))
        else:
            row += [str(c.get(joint, "")) for c in counts]
        rows.append(row)
    return _markdown(header, rows)


def format_notes(results: Sequence[ScoreResult]) -> str:
    """The notes as Markdown bullets: those shared by every result once, then each result's own."""
    _check_results(results)
    shared = [note for note in results[0].notes if all(note in r.notes for r in results[1:])]
    lines = [f"- {note}" for note in shared]
    if len(results) > 1:
        for result in results:
            own = [note for note in result.notes if note not in shared]
            if own:
                lines.append(f"- {result.name}:")
                lines += [f"  - {note}" for note in own]
    return "\n".join(lines)


def format_report(results: Sequence[ScoreResult]) -> str:
    """The Markdown report: title, summary table, per-joint table and the notes (what was scored, how)."""
    _check_results(results)
    title = " ".join(filter(None, [PROTOCOL_TITLES.get(results[0].protocol, results[0].protocol.upper()),
                                   results[0].metric]))
    parts = [f"# {title}", "", format_summary_table(results)]
    per_joint = format_per_joint_table(results)
    if per_joint:
        parts += ["", "## Per joint", "", per_joint]
    notes = format_notes(results)
    if notes:
        parts += ["", "## Notes", "", notes]
    return "\n".join(parts) + "\n"


def _csv_text(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _csv_number(value: Optional[float]) -> str:
    # repr round-trips exactly, so the CSV parses back to the very number the table rounds.
    return "" if value is None or not math.isfinite(value) else repr(float(value))


def write_summary_csv(results: Sequence[ScoreResult], path: PathLike) -> Path:
    """``name, protocol, metric, people, <summary columns...>``, one row per result (empty cell: n/a)."""
    columns = _check_results(results)
    rows = [[r.name, r.protocol, r.metric, r.num_people] + [_csv_number(r.summary[c]) for c in columns]
            for r in results]
    atomic_write_bytes(path, _csv_text(["name", "protocol", "metric", "people"] + columns, rows).encode())
    return Path(path)


def write_per_joint_csv(results: Sequence[ScoreResult], path: PathLike) -> Path:
    """Long format ``name, joint, value, count`` (value in percent; empty where the joint was never counted)."""
    _check_results(results)
    rows = [[r.name, joint, _csv_number(value), r.counts.get(joint, "")]
            for r in results for joint, value in r.per_joint.items()]
    atomic_write_bytes(path, _csv_text(["name", "joint", "value", "count"], rows).encode())
    return Path(path)


def write_curve_csv(results: Sequence[ScoreResult], path: PathLike) -> Path:
    """Long format ``name, series, threshold, value``: every point of every curve (value in percent)."""
    _check_results(results)
    rows = []
    for r in results:
        if r.curve_thresholds is None:
            continue
        for series, values in r.curve.items():
            rows += [[r.name, series, repr(float(t)), _csv_number(v)] for t, v in zip(r.curve_thresholds, values)]
    atomic_write_bytes(path, _csv_text(["name", "series", "threshold", "value"], rows).encode())
    return Path(path)


def has_curve(results: Sequence[ScoreResult]) -> bool:
    return bool(results) and all(r.curve_thresholds is not None and r.curve for r in results)


def _chart_title(results: Sequence[ScoreResult], what: str) -> str:
    label = PROTOCOL_TITLES.get(results[0].protocol, results[0].protocol.upper())
    return " ".join(filter(None, [label, results[0].metric, what]))


def plot_pck_curve(
    results: Sequence[ScoreResult],
    path: Optional[ChartPath] = None,
    size: Tuple[int, int] = CURVE_SIZE,
    title: Optional[str] = None,
) -> np.ndarray:
    """The PCK curve (RGB image of ``size`` = (height, width)), written to ``path`` when given (one path or a
    list; the suffix chooses PNG or SVG).

    One result: one line per joint group and the mean; several: each result's mean curve, labelled
    by its name. x: normalised distance (head sizes for PCKh, torso lengths for PCK); y: detection rate (%).
    """
    _check_results(results)
    if not has_curve(results):
        raise ValueError("these results hold no PCK curve (COCO, or an evaluation without per-person arrays)")
    if len(results) == 1:
        series = {name: list(zip(results[0].curve_thresholds, values)) for name, values in results[0].curve.items()}
    else:
        series = {r.name: list(zip(r.curve_thresholds, r.curve["Mean"])) for r in results}
    protocol = results[0].protocol
    if title is None:
        label = PROTOCOL_TITLES.get(protocol, protocol.upper())
        kind = results[0].metric.split("@")[0]
        title = " ".join(filter(None, [label, kind, "" if len(results) == 1 else "(mean over joints)"]))
    unit = "head sizes" if protocol == "mpii" else "torso lengths"
    thresholds = results[0].curve_thresholds
    return plot_curves(series, path, title=title, xlabel=f"Normalized distance ({unit})",
                       ylabel="Detection rate (%)", size=size, xlim=(0.0, float(max(thresholds))), ylim=(0.0, 100.0),
                       highlight="Mean" if len(results) == 1 else None)


def plot_per_joint(
    results: Sequence[ScoreResult],
    path: Optional[ChartPath] = None,
    size: Tuple[int, int] = PER_JOINT_SIZE,
    title: Optional[str] = None,
) -> np.ndarray:
    """The per-joint detection rate (%) as bars (RGB image of ``size``): one group per joint, one bar per result
    (labelled by its name); written to ``path`` when given, as :func:`plot_pck_curve`."""
    _check_results(results)
    if not results[0].per_joint:
        raise ValueError("these results hold no per-joint values (COCO)")
    series = {r.name: dict(r.per_joint) for r in results}
    if title is None:
        title = _chart_title(results, "per joint")
    return plot_bars(series, path, title=title, xlabel="joint", ylabel=f"{results[0].metric} (%)", size=size,
                     ylim=(0.0, 100.0))


def write_report(results: Sequence[ScoreResult], out_dir: PathLike, stem: str = "scores") -> List[Path]:
    """Write ``<stem>.md``, ``<stem>.csv``, ``<stem>.json`` and, for PCK protocols, ``per_joint.csv``,
    ``per_joint.png`` / ``.svg`` (bars), and where the results hold curves ``pck_curve.png`` / ``.svg`` and
    ``pck_curve.csv``, into ``out_dir``. Returns the paths written."""
    _check_results(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / f"{stem}.md"]
    atomic_write_bytes(written[0], format_report(results).encode())
    written.append(write_summary_csv(results, out / f"{stem}.csv"))
    json_path = out / f"{stem}.json"
    atomic_write_bytes(json_path, json.dumps([r.to_dict() for r in results], indent=1, allow_nan=False).encode())
    written.append(json_path)
    if results[0].per_joint:
        written.append(write_per_joint_csv(results, out / "per_joint.csv"))
        charts = [out / f"per_joint{suffix}" for suffix in CHART_SUFFIXES]
        plot_per_joint(results, charts)
        written += charts
    if has_curve(results):
        charts = [out / f"pck_curve{suffix}" for suffix in CHART_SUFFIXES]
        plot_pck_curve(results, charts)
        written += charts
        written.append(write_curve_csv(results, out / "pck_curve.csv"))
    return written


# ------------------------------------------------------------------------------------------ posekit eval
def format_metrics(metrics: Dict[str, Any]) -> str:
    """What ``evaluate_model`` returned as ``posekit eval`` prints it: the PCKh table, the PCK per joint, or one
    line per value (COCO's ten AP/AR numbers and the protocol notes)."""
    if "table" in metrics:
        return metrics["table"]
    lines = []
    if "per_joint" in metrics:
        lines.append(f"{'joint':<14} PCK")
        for name, value in metrics["per_joint"].items():
            lines.append(f"{name:<14} {value * 100:6.2f}")
        lines.append(f"{'mean':<14} {metrics['pck'] * 100:6.2f}")
        lines.append(f"PCK@{metrics['alpha']} over {metrics['people']} people ({metrics['excluded_people']} without a "
                     "measurable torso left out)")
    else:
        for key, value in metrics.items():
            lines.append(f"{key:<14} {value:.4f}" if isinstance(value, float) else f"{key:<14} {value}")
    return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    """NaN (a joint never labelled) becomes null: strict JSON has no NaN."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, float) and value != value:
        return None
    return value


def write_eval_report(cfg: Config, metrics: Dict[str, Any], json_path: Optional[PathLike] = None) -> List[Path]:
    """``posekit eval``'s files for what ``evaluate_model`` returned: the metrics as JSON at ``json_path`` (NaN as
    null), and for PCK / PCKh the score report (:func:`write_report`, the curve where the per-person ``samples``
    came back) in ``cfg.output_dir``. The samples are never written as such. Returns the report's files."""
    samples = metrics.get("samples")
    values = {k: v for k, v in metrics.items() if k != "samples"}
    if json_path:
        Path(json_path).write_text(json.dumps(_json_safe(values), indent=2, allow_nan=False))
    if cfg.test.metric not in ("pck", "pckh"):
        return []
    result = eval_result(cfg.test.metric, values, dataset_skeleton(cfg), cfg.model.name, samples,
                         alpha=cfg.test.pck_alpha)
    return write_report([result], cfg.output_dir)
