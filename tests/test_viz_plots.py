"""The charts of posekit.viz (matplotlib): the data lands where the axes put it, legends stay outside the data
area, PNG and SVG both written (the suffix chooses), labels and titles present, one-line errors."""
from __future__ import annotations

import sys
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest

import posekit.viz as viz
from posekit.errors import DataError, PosekitError
from posekit.viz import plot_bars, plot_curves, plot_learning_curve

BLUE, ORANGE = (0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)   # the first two series colours (RGB)
RED_STAR = (0xD6, 0x27, 0x28)


@pytest.fixture
def captured_axes(monkeypatch):
    """Every Axes a chart puts a legend beside, so that a test can map data to pixels with its transform."""
    found = []
    place = viz._legend_outside

    def spy(axes):
        found.append(axes)
        place(axes)

    monkeypatch.setattr(viz, "_legend_outside", spy)
    return found


def pixel_of(axes, x, y, height):
    """Image (row, column) of the data point (x, y): display coordinates count from the bottom-left corner."""
    px, py = axes.transData.transform((x, y))
    return int(round(height - py)), int(round(px))


def near(image, row_col, color, tolerance=40, radius=1):
    r, c = row_col
    patch = image[r - radius:r + radius + 1, c - radius:c + radius + 1].reshape(-1, 3).astype(int)
    return bool((np.abs(patch - np.array(color)).max(axis=1) <= tolerance).any())


def svg_texts(path):
    """Every text of an SVG (matplotlib writes text as <text> elements: svg.fonttype none)."""
    root = ET.parse(path).getroot()
    return [" ".join(t.itertext()).strip() for t in root.iter() if t.tag.endswith("}text")]


def overlaps(a, b):
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_curves_are_drawn_at_their_data_coordinates(tmp_path, captured_axes):
    series = {"rising": [(0, 0), (10, 100)], "flat": [(0, 25), (10, 25)]}
    image = plot_curves(series, tmp_path / "c.png", title="two lines", xlabel="x (px)", ylabel="y (%)",
                        size=(360, 560), xlim=(0, 10), ylim=(0, 100))
    assert image.shape == (360, 560, 3) and image.dtype == np.uint8
    [axes] = captured_axes
    assert near(image, pixel_of(axes, 5, 50, 360), BLUE)        # the rising line passes (5, 50)
    assert near(image, pixel_of(axes, 2, 20, 360), BLUE)
    assert near(image, pixel_of(axes, 7.5, 25, 360), ORANGE)    # the flat one, y = 25
    assert not near(image, pixel_of(axes, 2.5, 75, 360), BLUE, radius=3)     # nothing where there is no data
    assert not near(image, pixel_of(axes, 2.5, 75, 360), ORANGE, radius=3)
    # The legend is outside the data area and inside the figure.
    renderer = axes.figure.canvas.get_renderer()
    legend, data_area = axes.get_legend().get_window_extent(renderer), axes.get_window_extent(renderer)
    assert not overlaps(legend, data_area)
    assert legend.x1 <= 560 and legend.y0 >= 0
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["rising", "flat"]
    # The PNG on disk is the returned image.
    decoded = cv2.imread(str(tmp_path / "c.png"))
    assert np.array_equal(decoded[..., ::-1], image)


def test_highlighted_series_is_black_and_drawn_on_top(captured_axes):
    image = plot_curves({"a": [(0, 50), (1, 50)], "Mean": [(0, 50), (1, 50)]}, size=(300, 400),
                        xlim=(0, 1), ylim=(0, 100), highlight="Mean")
    [axes] = captured_axes
    assert near(image, pixel_of(axes, 0.5, 50, 300), (0, 0, 0), tolerance=30, radius=0)


def test_png_and_svg_from_one_call_hold_the_labels(tmp_path):
    paths = [tmp_path / "out" / "chart.png", tmp_path / "out" / "chart.svg"]
    image = plot_curves({"train loss": [3.0, 2.0, 1.5], "val PCK": [(0, 1.0), (2, 2.5)]}, paths,
                        title="a title", xlabel="epoch", ylabel="value (units)", size=(300, 400))
    assert cv2.imread(str(paths[0])).shape == (300, 400, 3) == image.shape
    texts = svg_texts(paths[1])
    for label in ("a title", "epoch", "value (units)", "train loss", "val PCK"):
        assert label in texts
    root = ET.parse(paths[1]).getroot()
    assert float(root.get("width").rstrip("pt")) == pytest.approx(400 * 72 / 100, abs=0.1)    # 400 px at 100 dpi
    # Same chart, same bytes (no date, fixed element ids), and no temporary file left.
    first = paths[1].read_bytes()
    plot_curves({"train loss": [3.0, 2.0, 1.5], "val PCK": [(0, 1.0), (2, 2.5)]}, paths[1],
                title="a title", xlabel="epoch", ylabel="value (units)", size=(300, 400))
    assert paths[1].read_bytes() == first
    assert sorted(p.name for p in paths[0].parent.iterdir()) == ["chart.png", "chart.svg"]


def test_empty_and_tiny_charts_still_render():
    assert plot_curves({}, size=(120, 160)).shape == (120, 160, 3)
    assert plot_bars({}, size=(100, 140)).shape == (100, 140, 3)
    one_point = plot_curves({"only": [(1.0, 2.0)]}, size=(200, 300))
    assert (np.ptp(one_point.astype(int), axis=2) > 60).any()            # the single point is drawn (a marker)


def test_bars_stand_at_their_categories_with_their_heights(tmp_path, captured_axes):
    series = {"sharp": {"head": 90.0, "neck": 40.0, "wrist": float("nan")},
              "blurred": {"head": 20.0, "neck": 80.0, "wrist": 60.0}}
    image = plot_bars(series, [tmp_path / "b.png", tmp_path / "b.svg"], title="per joint", xlabel="joint",
                      ylabel="PCK (%)", size=(400, 700), ylim=(0, 100))
    [axes] = captured_axes
    assert [t.get_text() for t in axes.get_xticklabels()] == ["head", "neck", "wrist"]
    # Group i is centred at x = i; with two series the first bar is left of the centre, the second right.
    left, right = -0.2, 0.2
    assert near(image, pixel_of(axes, 0 + left, 85, 400), BLUE, radius=0)
    assert not near(image, pixel_of(axes, 0 + right, 85, 400), ORANGE, radius=2)    # blurred head is 20 tall
    assert near(image, pixel_of(axes, 0 + right, 10, 400), ORANGE, radius=0)
    assert near(image, pixel_of(axes, 1 + right, 75, 400), ORANGE, radius=0)
    assert not near(image, pixel_of(axes, 1 + left, 45, 400), BLUE, radius=2)       # sharp neck is 40 tall
    assert not near(image, pixel_of(axes, 2 + left, 5, 400), BLUE, radius=2)        # n/a: no bar
    texts = svg_texts(tmp_path / "b.svg")
    for label in ("per joint", "joint", "PCK (%)", "sharp", "blurred", "head", "wrist", "n/a"):
        assert label in texts
    assert "90.0" not in texts            # values on bars only with one series (they would crowd)
    plot_bars({"only": series["sharp"]}, tmp_path / "one.svg")
    assert {"90.0", "40.0", "n/a"} <= set(svg_texts(tmp_path / "one.svg"))


HISTORY = [{"epoch": 1, "epochs_done": 1.0, "step": 10, "loss": 0.004, "pck": 0.40},
           {"epoch": 2, "epochs_done": 2.0, "step": 20, "loss": 0.003, "pck": 0.62, "best": True},
           {"epoch": 3, "epochs_done": 3.0, "step": 30, "loss": 0.0025, "pck": 0.55}]


def test_learning_curve_marks_the_best_epoch(tmp_path, captured_axes):
    image = plot_learning_curve(HISTORY, [tmp_path / "lc.png", tmp_path / "lc.svg"], title="tiny run")
    assert image.shape == (600, 640, 3)
    loss_axes, metric_axes = captured_axes
    assert near(image, pixel_of(metric_axes, 2.0, 62.0, 600), RED_STAR, radius=1)    # the star at the best epoch
    assert near(image, pixel_of(metric_axes, 1.5, 51.0, 600), ORANGE)                 # PCK in %: 40 -> 62
    assert near(image, pixel_of(loss_axes, 2.5, 0.00275, 600), BLUE)
    renderer = metric_axes.figure.canvas.get_renderer()
    for axes in (loss_axes, metric_axes):
        assert not overlaps(axes.get_legend().get_window_extent(renderer), axes.get_window_extent(renderer))
    texts = svg_texts(tmp_path / "lc.svg")
    for label in ("tiny run", "epoch", "loss", "PCK (%)", "validation PCK", "best: 62.0 %"):
        assert any(label in t for t in texts), label
    # Without a "best" flag (older histories) the highest value is marked.
    unflagged = [{k: v for k, v in e.items() if k != "best"} for e in HISTORY]
    plot_learning_curve(unflagged, tmp_path / "old.svg")
    assert any("best: 62.0 %" in t for t in svg_texts(tmp_path / "old.svg"))
    # PCKh histories plot "Mean"; before the first evaluation there is only the loss panel.
    mpii = [{"epochs_done": 1.0, "loss": 0.01, "Mean": 0.7}]
    plot_learning_curve(mpii, tmp_path / "mpii.svg")
    assert "PCKh (%)" in svg_texts(tmp_path / "mpii.svg")
    assert plot_learning_curve([{"epochs_done": 1.0, "loss": 0.004}]).shape == (300, 640, 3)


def test_missing_matplotlib_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)       # import matplotlib now raises ImportError
    with pytest.raises(PosekitError, match=r"charts need matplotlib.*pip install matplotlib") as err:
        plot_curves({"a": [1, 2]})
    assert "\n" not in str(err.value)


def test_unwritable_chart_path_is_a_data_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match="cannot write chart") as err:
        plot_curves({"a": [1, 2]}, tmp_path / "file" / "c.svg")
    assert "c.svg" in str(err.value)
    with pytest.raises(DataError, match="cannot write image"):
        plot_curves({"a": [1, 2]}, tmp_path / "file" / "c.png")
