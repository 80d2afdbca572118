"""Drawing: skeletons over images, heatmap overlays, image grids, charts, atomic image saving.

Drawing on images uses numpy and OpenCV; the charts (line, grouped bar, learning curve; PNG, SVG) use matplotlib,
imported on the first chart. Colours are BGR, as :class:`posekit.skeletons.Skeleton` stores them; pass
``rgb=True`` when drawing on an RGB image.
"""
from __future__ import annotations

import io
import math
import os
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from .errors import DataError, PosekitError
from .fileio import atomic_write_bytes
from .skeletons import Skeleton

# Ten distinguishable BGR colours for chart series (the usual "tab10" palette).
PALETTE = ((180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148),
           (75, 86, 140), (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23))
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _as_color_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(image)


def _joint_colors(skeleton: Skeleton) -> List[Tuple[int, int, int]]:
    """Each joint takes the colour of the first limb that touches it (white where none does)."""
    colors: List[Tuple[int, int, int]] = [(255, 255, 255)] * skeleton.num_keypoints
    for (a, b), color in reversed(list(zip(skeleton.limbs, skeleton.limb_colors))):
        colors[a] = colors[b] = tuple(color)
    return colors


def draw_skeleton(
    image: np.ndarray,
    keypoints: np.ndarray,
    skeleton: Skeleton,
    scores: Optional[np.ndarray] = None,
    score_threshold: float = 0.3,
    radius: Optional[int] = None,
    thickness: Optional[int] = None,
    rgb: bool = False,
) -> np.ndarray:
    """A copy of ``image`` with limbs and joint dots drawn.

    ``keypoints`` is K x 2 or K x 3; without ``scores`` the third column serves as the score, so
    COCO visibility flags (0 hidden, 1/2 shown) and predicted confidences both work. Joints scoring
    below ``score_threshold`` or with non-finite coordinates are hidden, and so are their limbs.
    """
    canvas = _as_color_image(image).copy()
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.ndim != 2 or keypoints.shape[0] != skeleton.num_keypoints or keypoints.shape[1] not in (2, 3):
        raise ValueError(f"keypoints must be {skeleton.num_keypoints} x 2 or x 3, got {keypoints.shape}")
    if scores is None:
        scores = keypoints[:, 2] if keypoints.shape[1] == 3 else np.ones(len(keypoints))
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    shown = (scores >= score_threshold) & np.isfinite(keypoints[:, :2]).all(axis=1)

    size = min(canvas.shape[:2])
    thickness = thickness if thickness is not None else max(1, int(round(size / 150)))
    radius = radius if radius is not None else max(2, int(round(1.5 * thickness)) + 1)
    flip = (lambda c: tuple(c[::-1])) if rgb else (lambda c: tuple(c))
    shift = 4   # sub-pixel precision, so that dots sit exactly on fractional coordinates
    points = [(int(round(x * 16)), int(round(y * 16))) for x, y in np.nan_to_num(keypoints[:, :2])]
    for (a, b), color in zip(skeleton.limbs, skeleton.limb_colors):
        if shown[a] and shown[b]:
            cv2.line(canvas, points[a], points[b], flip(color), thickness, cv2.LINE_AA, shift)
    for k, color in enumerate(_joint_colors(skeleton)):
        if shown[k]:
            cv2.circle(canvas, points[k], radius * 16, flip(color), -1, cv2.LINE_AA, shift)
    return canvas


def track_color(track_id: int) -> Tuple[int, int, int]:
    """A BGR colour for a track id (the chart palette, cycling), so that one person keeps one colour."""
    return PALETTE[int(track_id) % len(PALETTE)]


def draw_label(image: np.ndarray, text: str, origin_xy: Tuple[float, float], color: Tuple[int, int, int],
               rgb: bool = False, scale: Optional[float] = None) -> np.ndarray:
    """``image`` (changed in place and returned) with ``text`` on a filled box of ``color`` (BGR) whose lower-left
    corner is at ``origin_xy``, kept inside the image; the text is black or white, whichever reads better."""
    canvas = image
    height, width = canvas.shape[:2]
    scale = scale if scale is not None else max(0.35, min(height, width) / 700.0)
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, 1)
    x = int(np.clip(round(origin_xy[0]), 0, max(0, width - tw - 4)))
    y = int(np.clip(round(origin_xy[1]), th + base + 2, height - 1))
    fill = tuple(int(c) for c in (color[::-1] if rgb else color))
    ink = (0, 0, 0) if sum(color) > 380 else (255, 255, 255)
    cv2.rectangle(canvas, (x, y - th - base - 2), (x + tw + 4, y), fill, -1)
    cv2.putText(canvas, text, (x + 2, y - base), _FONT, scale, ink, 1, cv2.LINE_AA)
    return canvas


def overlay_heatmaps(image: np.ndarray, heatmaps: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the per-pixel maximum of K x h x w heatmaps (resized to the image) as a JET colour map."""
    canvas = _as_color_image(image)
    heat = np.asarray(heatmaps, dtype=np.float32)
    heat = heat.max(axis=0) if heat.ndim == 3 else heat
    heat = cv2.resize(heat, (canvas.shape[1], canvas.shape[0]), interpolation=cv2.INTER_LINEAR)
    heat = (np.clip(heat, 0.0, 1.0) * 255).astype(np.uint8)
    return cv2.addWeighted(canvas, 1.0 - alpha, cv2.applyColorMap(heat, cv2.COLORMAP_JET), alpha, 0.0)


def make_grid(images: Sequence[np.ndarray], columns: int, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile images row by row; each is resized to the first one's size. Empty cells are ``pad_value``."""
    if not images:
        raise ValueError("make_grid needs at least one image")
    columns = max(1, min(int(columns), len(images)))
    tiles = [_as_color_image(im) for im in images]
    height, width = tiles[0].shape[:2]
    rows = math.ceil(len(tiles) / columns)
    grid = np.full((rows * height + (rows + 1) * pad, columns * width + (columns + 1) * pad, 3), pad_value, np.uint8)
    for i, tile in enumerate(tiles):
        if tile.shape[:2] != (height, width):
            tile = cv2.resize(tile, (width, height), interpolation=cv2.INTER_AREA)
        r, c = divmod(i, columns)
        y, x = pad + r * (height + pad), pad + c * (width + pad)
        grid[y:y + height, x:x + width] = tile
    return grid


# ------------------------------------------------------------------------------------------------------ charts
# Charts are drawn with matplotlib's object-oriented API on an Agg canvas: no pyplot state (safe in threads, no
# display needed). matplotlib is a dependency of posekit, imported here on the first chart so that `import posekit`
# and `posekit predict` do not pay its start-up time.

CHART_DPI = 100
# Suffixes written by matplotlib as vector files; any other suffix is a raster image encoded by save_image.
VECTOR_SUFFIXES = (".svg", ".pdf")
# Vector files without a date and with fixed element ids, so that the same chart gives the same bytes; text stays
# text in SVG (searchable, selectable, smaller than glyph outlines).
_VECTOR_METADATA = {".svg": {"Date": None}, ".pdf": {"CreationDate": None}}
_CHART_STYLE = {
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9,
    "legend.fontsize": 9, "figure.titlesize": 11, "axes.grid": True, "grid.color": "#dddddd", "grid.linewidth": 0.8,
    "axes.axisbelow": True, "axes.spines.top": False, "axes.spines.right": False, "lines.linewidth": 1.8,
    "svg.fonttype": "none", "svg.hashsalt": "posekit", "figure.facecolor": "white", "savefig.facecolor": "white",
}
LEARNING_CURVE_METRICS = {"pck": "PCK", "Mean": "PCKh", "AP": "AP"}
MARKER_MAX_POINTS = 15      # series with more points are plain lines (markers would hide the shape)
ChartPath = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]


def _matplotlib():
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PosekitError("charts need matplotlib, which is missing: pip install matplotlib") from None
    return matplotlib, Figure, FigureCanvasAgg


def _series_color(index: int) -> str:
    b, g, r = PALETTE[index % len(PALETTE)]      # the same palette as track colours (stored BGR)
    return f"#{r:02x}{g:02x}{b:02x}"


def _chart_paths(path: Optional[ChartPath]) -> List[Path]:
    if path is None:
        return []
    if isinstance(path, (str, os.PathLike)):
        return [Path(path)]
    return [Path(p) for p in path]


def _chart(size: Tuple[int, int], draw, path: Optional[ChartPath]) -> np.ndarray:
    """Make a figure of ``size`` = (height, width) pixels, let ``draw(figure)`` fill it, and return the rendered
    RGB image of exactly that size; written to each of ``path`` (one path or several, e.g. a PNG and an SVG).

    Constrained layout keeps titles, labels and legends outside the data area inside the figure; on a figure too
    small for them matplotlib shrinks what it can, and its warning about that is not the user's concern.
    """
    matplotlib, Figure, FigureCanvasAgg = _matplotlib()
    height, width = int(size[0]), int(size[1])
    with matplotlib.rc_context(_CHART_STYLE), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        # A hair over the size, so that inches x dpi never rounds down a pixel.
        figure = Figure(figsize=((width + 0.01) / CHART_DPI, (height + 0.01) / CHART_DPI), dpi=CHART_DPI,
                        layout="constrained")
        canvas = FigureCanvasAgg(figure)
        draw(figure)
        canvas.draw()
        image = np.ascontiguousarray(np.asarray(canvas.buffer_rgba())[:height, :width, :3])
        for target in _chart_paths(path):
            suffix = target.suffix.lower()
            if suffix not in VECTOR_SUFFIXES:
                save_image(target, image)
                continue
            buffer = io.BytesIO()
            figure.savefig(buffer, format=suffix[1:], metadata=_VECTOR_METADATA[suffix])
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(target, buffer.getvalue())
            except OSError as e:
                raise DataError(f"cannot write chart: {e.strerror or e}", target) from None
    return image


def _series_xy(values) -> Tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 2:
        x, y = arr[:, 0], arr[:, 1]
    else:
        y = arr.reshape(-1)
        x = np.arange(len(y), dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def _legend_outside(axes) -> None:
    """The legend to the right of the data area, never over a curve."""
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)


def _no_data(axes) -> None:
    axes.text(0.5, 0.5, "no data", transform=axes.transAxes, ha="center", va="center", color="#888888")


def plot_curves(
    series: Dict[str, Sequence],
    path: Optional[ChartPath] = None,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    size: Tuple[int, int] = (480, 640),
    xlim: Optional[Tuple[float, float]] = None,
    ylim: Optional[Tuple[float, float]] = None,
    highlight: Optional[str] = None,
) -> np.ndarray:
    """A line chart (RGB image of ``size`` = (height, width)), written to ``path`` when given: one path or a list;
    the suffix chooses the format (``.svg`` / ``.pdf`` vector, anything else a raster image, e.g. ``.png``).

    Each value of ``series`` is either a list of y values (x = 0, 1, 2, ...) or a list of (x, y) pairs; non-finite
    points are skipped. Series with few points get a marker on each. The series named ``highlight`` is drawn
    black and thicker (e.g. the mean over joints). The legend sits to the right of the data area.
    """
    data = {name: _series_xy(values) for name, values in series.items()}

    def draw(figure) -> None:
        axes = figure.add_subplot()
        for i, (name, (x, y)) in enumerate(data.items()):
            emphasised = name == highlight
            axes.plot(x, y, label=name, color="black" if emphasised else _series_color(i),
                      linewidth=2.6 if emphasised else None, zorder=3 if emphasised else 2,
                      marker="o" if len(x) <= MARKER_MAX_POINTS else None, markersize=3.5)
        if not any(len(x) for x, _ in data.values()):
            _no_data(axes)
        axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
        if xlim is not None:
            axes.set_xlim(*xlim)
        if ylim is not None:
            axes.set_ylim(*ylim)
        _legend_outside(axes)

    return _chart(size, draw, path)


def plot_bars(
    series: Dict[str, Dict[str, float]],
    path: Optional[ChartPath] = None,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    size: Tuple[int, int] = (420, 800),
    ylim: Optional[Tuple[float, float]] = None,
) -> np.ndarray:
    """A grouped bar chart (RGB image of ``size``), written to ``path`` as :func:`plot_curves` does.

    ``series`` maps a series name (e.g. a predictions file) to {category (e.g. a joint): value}; there is one
    group per category (in the order of first appearance) with one bar per series. Non-finite values get no bar
    and an "n/a" at the base. With one series each bar carries its value.
    """
    categories: List[str] = []
    for values in series.values():
        categories += [c for c in values if c not in categories]

    def draw(figure) -> None:
        axes = figure.add_subplot()
        count = max(len(series), 1)
        width = 0.8 / count
        centres = np.arange(len(categories), dtype=np.float64)
        for i, (name, values) in enumerate(series.items()):
            heights = np.array([float(values.get(c, float("nan"))) for c in categories])
            where = centres - 0.4 + width * (i + 0.5)
            shown = np.isfinite(heights)
            bars = axes.bar(where[shown], heights[shown], width * 0.92, label=name, color=_series_color(i),
                            zorder=2)
            if len(series) == 1:
                axes.bar_label(bars, fmt="%.1f", padding=2, fontsize=7)
            for x in where[~shown]:
                axes.text(x, 0, "n/a", rotation=90, ha="center", va="bottom", fontsize=7, color="#666666")
        if not categories:
            _no_data(axes)
        axes.set_xticks(centres, categories, rotation=45, ha="right", rotation_mode="anchor")
        axes.set_xlim(-0.6, max(len(categories), 1) - 0.4)
        axes.grid(False, axis="x")
        axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
        if ylim is not None:
            axes.set_ylim(*ylim)
        _legend_outside(axes)

    return _chart(size, draw, path)


def _best_entry(history: Sequence[Dict[str, object]], key: str) -> Optional[Dict[str, object]]:
    """The epoch whose weights the run kept as best (the last one flagged "best"); the first highest value when no
    entry is flagged (a history from before the flag)."""
    scored = [e for e in history if key in e and "epochs_done" in e]
    flagged = [e for e in scored if e.get("best")]
    if flagged:
        return flagged[-1]
    return max(scored, key=lambda e: float(e[key]), default=None)


def _percent_range(low: float, high: float, least: float = 10.0) -> Tuple[float, float]:
    """y limits for values in % (within [0, 100]): the data with a margin, and at least ``least`` points tall so
    that a flat or single value does not fill the panel with ticks a hundredth apart."""
    margin = max(1.0, 0.08 * (high - low))
    low, high = max(0.0, low - margin), min(100.0, high + margin)
    if high - low < least:
        middle = min(max((low + high) / 2, least / 2), 100.0 - least / 2)
        low, high = middle - least / 2, middle + least / 2
    return low, high


def plot_learning_curve(history: Sequence[Dict[str, object]], path: Optional[ChartPath] = None,
                        title: str = "") -> np.ndarray:
    """Training loss (top) and the validation metric in % (bottom: PCK, PCKh or COCO AP, whichever the entries
    hold) against epochs, from a training history (the entries of metrics.jsonl), the best epoch marked in both;
    640 wide, 600 high (300 while there is no validation metric yet). Written to ``path`` if given."""
    loss = [(float(e["epochs_done"]), float(e["loss"])) for e in history if "loss" in e and "epochs_done" in e]
    metric = next(((key, label) for key, label in LEARNING_CURVE_METRICS.items() if any(key in e for e in history)),
                  None)

    def draw(figure) -> None:
        panels = figure.subplots(2 if metric else 1, 1, sharex=True, squeeze=False)[:, 0]
        x, y = _series_xy(loss)
        panels[0].plot(x, y, color=_series_color(0), marker="o" if len(x) <= MARKER_MAX_POINTS else None,
                       markersize=3.5, label="training loss\n(epoch mean)")
        if not len(x):
            _no_data(panels[0])
        panels[0].set_ylabel("loss")
        if metric:
            key, label = metric
            x, y = _series_xy([(float(e["epochs_done"]), 100.0 * float(e[key])) for e in history
                               if key in e and "epochs_done" in e])
            panels[1].plot(x, y, color=_series_color(1), marker="o" if len(x) <= MARKER_MAX_POINTS else None,
                           markersize=3.5, label=f"validation {label}")
            panels[1].set_ylabel(f"{label} (%)")
            if len(y):
                panels[1].set_ylim(*_percent_range(float(y.min()), float(y.max())))
            best = _best_entry(history, key)
            if best is not None:
                epoch, value = float(best["epochs_done"]), 100.0 * float(best[key])
                for axes in panels:
                    axes.axvline(epoch, color="#555555", linestyle=":", linewidth=1.2, zorder=1)
                panels[1].plot([epoch], [value], linestyle="none", marker="*", markersize=13, color="#d62728",
                               zorder=4, clip_on=False, label=f"best: {value:.1f} %\nat epoch {epoch:g}")
        epochs = [float(e["epochs_done"]) for e in history if "epochs_done" in e]
        if epochs and max(epochs) - min(epochs) < 2:
            # A run of one or two epochs: whole epochs around the points, not ticks at 0.96, 0.98, ...
            panels[-1].set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        panels[-1].set_xlabel("epoch")
        panels[-1].xaxis.get_major_locator().set_params(integer=True, min_n_ticks=1)
        for axes in panels:
            _legend_outside(axes)
        if title:
            figure.suptitle(title)

    return _chart((600 if metric else 300, 640), draw, path)


def save_image(path: Union[str, os.PathLike], image_rgb: np.ndarray) -> None:
    """Encode by the file extension and write atomically (temporary file + rename). Raises DataError."""
    path = Path(path)
    image = _as_color_image(image_rgb)
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    try:
        ok, encoded = cv2.imencode(path.suffix or ".png", image)
    except cv2.error:
        ok = False
    if not ok:
        raise DataError(f"cannot encode an image as {path.suffix or 'an unnamed format'!r}", path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(encoded.tobytes())
        os.replace(tmp, path)
    except OSError as e:
        if tmp.exists():
            tmp.unlink()
        raise DataError(f"cannot write image: {e.strerror or e}", path) from None
