"""Newell's stacked-hourglass heatmaps as the Torch7 code makes and reads them (``pose-hg-train``: ``img.lua``
``transform``/``drawGaussian``, ``pose.lua`` ``generateSample``/``postprocess``, ``eval.lua`` ``getPreds``; torch
``image.gaussian``; spec 3.1).

Target. ``transform`` maps a joint to the heatmap grid (0-based continuous coordinate x / stride in our crop
convention) and converts it with ``:int()``, a C cast: truncation toward zero, not rounding. ``drawGaussian``
then max-merges an ``image.gaussian(size)`` patch with size = 2·ceil(3 sigma) + 1 centred on that cell.
``image.gaussian``'s own sigma defaults to 0.25 *of the kernel size*, so for ``hmGauss`` sigma = 1 the patch is
7 x 7 with standard deviation 1.75 heatmap pixels and peak 1. Map pixel i thus collects crop positions
[s·i, s·i + s): the bins nest across strides (floor of floor) and mirror exactly under a flip (x -> W - 1 - x
sends bin i to bin w - 1 - i), which is why the hourglass flip test needs no one-pixel shift.

Quirk reproduced (``border_quirk=True``): at the left/top border the Lua clipping takes the patch from index
``max(1, -ul)`` where ``2 - ul`` would be right (1-based ``ul`` = first patch column), so when the patch sticks
out by one pixel the drawn Gaussian is centred one pixel inward, and by two or more pixels two pixels inward
(truncated at the original right end). The right/bottom border is clipped correctly. ``border_quirk=False``
draws the correctly clipped patch.

Weights: 1 for labelled joints (v > 0), 0 otherwise and when the patch lies entirely outside the map
(``drawGaussian`` returns the map untouched). The Torch7 loss (``MSECriterion``) ignores them; Ke et al.'s
``sum_mse`` uses them. ``exact_sigma=True`` draws a true sigma Gaussian instead (bearpaw/pytorch-pose's
``draw_labelmap`` and Ke et al.'s "sigma = 1 px" reading) in the same 2·ceil(3 sigma)+1 window.

Decoding (``getPreds`` + ``postprocess``): argmax (maxima <= 0 give cell (0, 0)), then, if the argmax is not on
the outermost row/column (1-based ``1 < p < res``, i.e. 0-based 1 <= p <= res - 2 — one pixel more than HRNet's
strict ``1 < p < res - 1``), a 0.25·sign step toward the higher neighbour on each axis, then +0.5 before
back-projection. That +0.5 is in heatmap cells and is the centre of the floor bin: cell x covers crop
[s·x, s·x + s), so the crop coordinate is s·(x + 0.5) = s·x + s/2 (a half-stride offset, 2 px at stride 4).
Torch7 also truncates the back-projected *image* coordinate to an integer; that happens after the crop->image
mapping (the engine's job) and is not reproduced. Score = the maximum.
"""
from __future__ import annotations

import math
from typing import Hashable, Optional, Tuple

import numpy as np

from .base import ArrayLike, HeatmapCodec
from .gaussian import argmax_quarter_offset


class Torch7Gaussian(HeatmapCodec):
    """Torch7 hourglass target (``drawGaussian`` of an ``image.gaussian`` patch) and decoder (see module doc)."""

    def __init__(self, input_hw: Tuple[int, int], heatmap_hw: Tuple[int, int], sigma: float = 1.0,
                 post_process: bool = True, exact_sigma: bool = False, border_quirk: bool = True):
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.heatmap_hw = (int(heatmap_hw[0]), int(heatmap_hw[1]))
        self.sigma = float(sigma)
        self.post_process = post_process
        self.exact_sigma = exact_sigma
        self.border_quirk = border_quirk
        self.radius = int(math.ceil(3 * self.sigma))
        self.size = 2 * self.radius + 1
        # image.gaussian(size) with its default sigma 0.25 (relative to the kernel size).
        self.std = self.sigma if exact_sigma else 0.25 * self.size
        # (x, y) input pixels per heatmap pixel
        self.stride_xy = np.array([self.input_hw[1] / self.heatmap_hw[1], self.input_hw[0] / self.heatmap_hw[0]])
        # The profiles of every cell whose patch touches the map (cells -r .. length - 1 + r), tabulated once.
        self._table_y, self._table_x = (
            self._profile(n, np.arange(-self.radius, n + self.radius, dtype=np.float64)) for n in self.heatmap_hw)

    @property
    def grid_offset_xy(self) -> Tuple[float, float]:
        # Floor bins: cell g covers input [stride g, stride (g + 1)), decoded at its centre (Torch7's +0.5).
        return float(self.stride_xy[0]) / 2, float(self.stride_xy[1]) / 2

    def target_settings(self) -> Tuple[Hashable, ...]:
        return self.sigma, self.exact_sigma, self.border_quirk

    def cells(self, keypoints: np.ndarray) -> np.ndarray:
        """K x 2 crop coordinates -> the integer heatmap cells Torch7 draws at (truncation toward zero)."""
        return np.trunc(np.asarray(keypoints, dtype=np.float64)[:, :2] / self.stride_xy)

    def _profile(self, length: int, cell: np.ndarray) -> np.ndarray:
        """K x length: the patch's 1-D profile along one axis, zero outside the (clipped) 2r+1 window."""
        r = self.radius
        lo = cell - r
        centre = cell.copy()
        if self.border_quirk:
            centre += np.where(lo == -1, 1.0, np.where(lo <= -2, 2.0, 0.0))
        pos = np.arange(length, dtype=np.float64)[None, :]
        profile = np.exp(-0.5 * ((pos - centre[:, None]) / self.std) ** 2)
        return profile * ((pos >= lo[:, None]) & (pos <= cell[:, None] + r))

    def encode(self, keypoints: np.ndarray, visibility: np.ndarray,
               others: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
        """keypoints K x 2 (crop pixels), visibility K (COCO flags; > 0 labelled) -> (K x h x w target, K weights).

        ``others`` is accepted for the codec interface and not used (the hourglass target marks one person).
        """
        h, w = self.heatmap_hw
        xy = np.asarray(keypoints, dtype=np.float64)[:, :2]
        labelled = (np.asarray(visibility) > 0) & np.isfinite(xy).all(axis=1)
        cell = self.cells(np.where(labelled[:, None], xy, 0.0))
        r = self.radius
        outside = ((cell[:, 0] - r > w - 1) | (cell[:, 1] - r > h - 1) | (cell[:, 0] + r < 0) | (cell[:, 1] + r < 0))
        drawn = labelled & ~outside
        row = np.where(drawn[:, None], cell + r, 0.0).astype(np.intp)
        profile_y = self._table_y[row[:, 1]] * drawn[:, None]
        # The float64 product rounded to float32 in NumPy's small buffers: no K x h x w float64 array.
        heatmaps = np.empty((len(xy), h, w), dtype=np.float32)
        np.multiply(profile_y[:, :, None], self._table_x[row[:, 0]][:, None, :], out=heatmaps, casting="unsafe")
        return heatmaps, drawn.astype(np.float32)

    def decode(self, heatmaps: ArrayLike) -> Tuple[np.ndarray, np.ndarray]:
        """N x K x h x w heatmaps -> (N x K x 2 crop coordinates, N x K scores = the maxima)."""
        coords, maxvals = argmax_quarter_offset(heatmaps, self.post_process, lowest=1)
        # Torch7's +0.5: the centre of the floor bin, s·(x + 0.5) in crop pixels.
        return (coords + 0.5) * self.stride_xy, maxvals
