"""Drawing: skeletons over images, heatmap overlays, image grids, line charts, atomic image saving.

Depends only on numpy, OpenCV and :mod:`posekit.skeletons` (no matplotlib). Colours are BGR, as
:class:`posekit.skeletons.Skeleton` stores them; pass ``rgb=True`` when drawing on an RGB image.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from .errors import DataError
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


def _nice_ticks(lo: float, hi: float, target: int = 6) -> np.ndarray:
    """Round tick positions (1, 2 or 5 times a power of ten) covering [lo, hi]."""
    raw = (hi - lo) / max(target - 1, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return np.arange(math.floor(lo / step) * step, hi + 0.5 * step, step)


def _format_tick(value: float, step: float) -> str:
    if abs(value) < 1e-12:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.1e}"
    decimals = max(0, -int(math.floor(math.log10(step))))
    return f"{value:.{decimals}f}"


def _series_xy(values) -> Tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 2 and arr.shape[1] == 2:
        x, y = arr[:, 0], arr[:, 1]
    else:
        y = arr.reshape(-1)
        x = np.arange(len(y), dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def plot_curves(
    series: Dict[str, Sequence],
    path: Optional[Union[str, os.PathLike]] = None,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    size: Tuple[int, int] = (480, 640),
) -> np.ndarray:
    """A line chart (RGB image of ``size`` = (height, width)), written to ``path`` when given.

    Each value of ``series`` is either a list of y values (x = 0, 1, 2, ...) or a list of (x, y) pairs.
    Non-finite points are skipped.
    """
    height, width = size
    canvas = np.full((height, width, 3), 255, np.uint8)
    data = {name: _series_xy(values) for name, values in series.items()}
    xs = np.concatenate([x for x, _ in data.values()] + [np.zeros(0)])
    ys = np.concatenate([y for _, y in data.values()] + [np.zeros(0)])
    x_lo, x_hi = (float(xs.min()), float(xs.max())) if xs.size else (0.0, 1.0)
    y_lo, y_hi = (float(ys.min()), float(ys.max())) if ys.size else (0.0, 1.0)
    if x_hi - x_lo < 1e-12:
        x_lo, x_hi = x_lo - 0.5, x_hi + 0.5
    if y_hi - y_lo < 1e-12:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    x_ticks, y_ticks = _nice_ticks(x_lo, x_hi), _nice_ticks(y_lo, y_hi)
    x_lo, x_hi = min(x_lo, x_ticks[0]), max(x_hi, x_ticks[-1])
    y_lo, y_hi = min(y_lo, y_ticks[0]), max(y_hi, y_ticks[-1])

    left, right, top, bottom = 70, 20, 40 if title else 20, 55 if xlabel else 40
    plot_w, plot_h = max(width - left - right, 10), max(height - top - bottom, 10)

    def to_px(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        px = left + (x - x_lo) / (x_hi - x_lo) * plot_w
        py = top + plot_h - (y - y_lo) / (y_hi - y_lo) * plot_h
        return np.stack([px, py], axis=-1)

    black, grey = (0, 0, 0), (225, 225, 225)
    for tick in x_ticks:
        px = int(round(to_px(np.array(tick), np.array(y_lo))[0]))
        cv2.line(canvas, (px, top), (px, top + plot_h), grey, 1)
        label = _format_tick(tick, x_ticks[1] - x_ticks[0] if len(x_ticks) > 1 else 1.0)
        (tw, th), _ = cv2.getTextSize(label, _FONT, 0.4, 1)
        cv2.putText(canvas, label, (px - tw // 2, top + plot_h + th + 8), _FONT, 0.4, black, 1, cv2.LINE_AA)
    for tick in y_ticks:
        py = int(round(to_px(np.array(x_lo), np.array(tick))[1]))
        cv2.line(canvas, (left, py), (left + plot_w, py), grey, 1)
        label = _format_tick(tick, y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else 1.0)
        (tw, th), _ = cv2.getTextSize(label, _FONT, 0.4, 1)
        cv2.putText(canvas, label, (left - tw - 6, py + th // 2), _FONT, 0.4, black, 1, cv2.LINE_AA)
    cv2.rectangle(canvas, (left, top), (left + plot_w, top + plot_h), black, 1)

    for i, (name, (x, y)) in enumerate(data.items()):
        color = PALETTE[i % len(PALETTE)][::-1]   # drawn on an RGB canvas
        pts = np.round(to_px(x, y) * 16).astype(np.int32)
        if len(pts) > 1:
            cv2.polylines(canvas, [pts.reshape(-1, 1, 2)], False, color, 2, cv2.LINE_AA, 4)
        elif len(pts) == 1:
            cv2.circle(canvas, tuple(int(v) for v in pts[0]), 3 * 16, color, -1, cv2.LINE_AA, 4)

    if title:
        (tw, th), _ = cv2.getTextSize(title, _FONT, 0.55, 1)
        cv2.putText(canvas, title, ((width - tw) // 2, top - 14), _FONT, 0.55, black, 1, cv2.LINE_AA)
    if xlabel:
        (tw, _), _ = cv2.getTextSize(xlabel, _FONT, 0.45, 1)
        cv2.putText(canvas, xlabel, (left + (plot_w - tw) // 2, height - 10), _FONT, 0.45, black, 1, cv2.LINE_AA)
    if ylabel:
        (tw, th), _ = cv2.getTextSize(ylabel, _FONT, 0.45, 1)
        strip = np.full((th + 8, tw + 4, 3), 255, np.uint8)
        cv2.putText(strip, ylabel, (2, th + 2), _FONT, 0.45, black, 1, cv2.LINE_AA)
        strip = cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)[:height, :]
        y0 = max(0, top + (plot_h - strip.shape[0]) // 2)
        canvas[y0:y0 + strip.shape[0], 2:2 + strip.shape[1]] = strip[: height - y0, : left - 2]

    # Legend, top right inside the plot.
    names = list(data)
    if names:
        text_w = max(cv2.getTextSize(n, _FONT, 0.4, 1)[0][0] for n in names)
        box_w, row_h = text_w + 40, 18
        x0, y0 = left + plot_w - box_w - 8, top + 8
        cv2.rectangle(canvas, (x0, y0), (x0 + box_w, y0 + row_h * len(names) + 6), (255, 255, 255), -1)
        cv2.rectangle(canvas, (x0, y0), (x0 + box_w, y0 + row_h * len(names) + 6), (160, 160, 160), 1)
        for i, name in enumerate(names):
            cy = y0 + 12 + i * row_h
            cv2.line(canvas, (x0 + 6, cy), (x0 + 26, cy), PALETTE[i % len(PALETTE)][::-1], 2, cv2.LINE_AA)
            cv2.putText(canvas, name, (x0 + 32, cy + 4), _FONT, 0.4, black, 1, cv2.LINE_AA)

    if path is not None:
        save_image(path, canvas)
    return canvas


LEARNING_CURVE_METRICS = {"pck": "PCK", "Mean": "PCKh", "AP": "AP"}


def plot_learning_curve(history: Sequence[Dict[str, object]], path: Optional[Union[str, os.PathLike]] = None,
                        title: str = "") -> np.ndarray:
    """Training loss (top) and the validation metric in % (bottom: PCK, PCKh or COCO AP, whichever the entries
    hold) against epochs, from a training history (the entries of metrics.jsonl); written to ``path`` if given."""
    loss = [(float(e["epochs_done"]), float(e["loss"])) for e in history if "loss" in e and "epochs_done" in e]
    panels = [plot_curves({"training loss": loss}, title=title, ylabel="loss", size=(300, 640))]
    for key, label in LEARNING_CURVE_METRICS.items():
        points = [(float(e["epochs_done"]), 100.0 * float(e[key])) for e in history if key in e]
        if points:
            panels.append(plot_curves({f"validation {label}": points}, xlabel="epoch", ylabel=f"{label} (%)",
                                      size=(300, 640)))
            break
    canvas = np.concatenate(panels, axis=0)
    if path is not None:
        save_image(path, canvas)
    return canvas


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
