"""MSPN's heatmaps (official megvii code, spec 4.3, 4.4, 4.7): a 1 blurred by an OpenCV-style Gaussian kernel
and scaled to a peak of 255; decoded by blur, argmax and a quarter step toward the second maximum.

The kernels are generated here rather than by OpenCV: MSPN's targets come from ``cv2.GaussianBlur(map, (k, k), 0)``
of OpenCV 3.x/4.x, and OpenCV 5 changed the k=9 kernel (spec 4.3). The blur itself (separable, reflect-101
border as ``cv2.GaussianBlur``'s default) uses our kernels too.
"""
from __future__ import annotations

from typing import Hashable, Optional, Tuple

import numpy as np
import torch
from scipy.ndimage import correlate1d

from .base import ArrayLike, HeatmapCodec

# OpenCV's getGaussianKernel table for sigma <= 0 and odd sizes up to 7 (binomial coefficients).
_SMALL_KERNELS = {
    1: (1.0,),
    3: (0.25, 0.5, 0.25),
    5: (0.0625, 0.25, 0.375, 0.25, 0.0625),
    7: (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125),
}

# The official test pads each heatmap with this many zero pixels before blurring it (spec 4.7).
DECODE_BORDER = 10
SHIFT_RATIO = 0.25


def kernel_sigma(size: int) -> float:
    """The sigma OpenCV 3.x/4.x derives from an odd kernel size when sigma <= 0: 0.3((k-1)/2 - 1) + 0.8."""
    return 0.3 * ((size - 1) * 0.5 - 1) + 0.8


def gaussian_kernel_1d(size: int) -> np.ndarray:
    """``cv2.getGaussianKernel(size, 0)`` of OpenCV 3.x/4.x, as float64 summing to 1.

    Sizes 1, 3, 5, 7 are binomial tables; larger odd sizes sample a Gaussian of :func:`kernel_sigma`.
    """
    if isinstance(size, bool) or int(size) != size or size < 1 or size % 2 == 0:
        raise ValueError(f"Gaussian kernel size must be a positive odd integer, got {size!r}")
    size = int(size)
    if size in _SMALL_KERNELS:
        return np.array(_SMALL_KERNELS[size], dtype=np.float64)
    sigma = kernel_sigma(size)
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    kernel = np.exp(-offsets ** 2 / (2 * sigma ** 2))
    return kernel / kernel.sum()


def reflect101(index: np.ndarray, length: int) -> np.ndarray:
    """OpenCV's BORDER_REFLECT_101 index map (gfedcb|abcdefgh|gfedcba), repeated for far-out indices."""
    index = np.asarray(index, dtype=np.int64).copy()
    if length == 1:
        return np.zeros_like(index)
    period = 2 * (length - 1)
    index = np.mod(index, period)
    return np.where(index >= length, period - index, index)


def _tap_indices(length: int, size: int) -> np.ndarray:
    """length x size: the source index each kernel tap reads for each output pixel (reflect-101 border)."""
    radius = size // 2
    return reflect101(np.arange(length)[:, None] + np.arange(size)[None, :] - radius, length)


def separable_blur(maps: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Blur ... x h x w maps with the same 1-D kernel along x and y, reflect-101 border (cv2.GaussianBlur).

    Computed in float64 for any leading shape. scipy's "mirror" mode is OpenCV's BORDER_REFLECT_101.
    """
    maps = np.asarray(maps, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    return correlate1d(correlate1d(maps, kernel, axis=-1, mode="mirror"), kernel, axis=-2, mode="mirror")


def _to_numpy(heatmaps: ArrayLike) -> np.ndarray:
    if isinstance(heatmaps, torch.Tensor):
        return heatmaps.detach().to("cpu", torch.float64).numpy()
    return np.asarray(heatmaps, dtype=np.float64)


class MegviiHeatmap(HeatmapCodec):
    """Official MSPN target (``generate_heatmap``) and decoder (``test.py::get_results``).

    input_hw / heatmap_hw: crop and heatmap (height, width), e.g. (256, 192) and (64, 48).
    kernel: the target's Gaussian kernel size (15, 11, 9, 7, 5 from coarse to fine supervision).
    blur_kernel: the decoding blur (5 for COCO, 9 for MPII in the official configs).

    Weights are the COCO visibility flags (0/1/2), zeroed for joints outside the crop, so that MSPN's losses can
    tell visible (> 1) from labelled (> 0) joints.
    """

    def __init__(self, input_hw: Tuple[int, int], heatmap_hw: Tuple[int, int], kernel: int, blur_kernel: int = 5):
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.heatmap_hw = (int(heatmap_hw[0]), int(heatmap_hw[1]))
        if min(self.input_hw + self.heatmap_hw) < 1:
            raise ValueError(f"input and heatmap sizes must be positive, got {self.input_hw} and {self.heatmap_hw}")
        self.kernel_size = int(kernel)
        self.kernel = gaussian_kernel_1d(kernel)
        self.blur_kernel_size = int(blur_kernel)
        self.blur_kernel = gaussian_kernel_1d(blur_kernel)
        # (x, y) input pixels per heatmap pixel
        self.stride_xy = np.array([self.input_hw[1] / self.heatmap_hw[1], self.input_hw[0] / self.heatmap_hw[0]])
        h, w = self.heatmap_hw
        # Blurring a single 1 is separable: each axis' profile sums the taps whose reflected source is the 1.
        # Row i of a table is the profile of an impulse at i, so a joint's target is two look-ups.
        self._table_y = self._impulse_profiles(h)
        self._table_x = self._impulse_profiles(w)
        # The peak of an outer product of non-negative profiles is the product of their peaks.
        self._peak_y = self._table_y.max(axis=1)
        self._peak_x = self._table_x.max(axis=1)

    def _impulse_profiles(self, length: int) -> np.ndarray:
        """length x length: row i is the reflect-101 blur of an impulse at i, read along the axis."""
        taps = _tap_indices(length, len(self.kernel))
        return ((taps[None] == np.arange(length)[:, None, None]) * self.kernel).sum(axis=2)

    @property
    def grid_offset_xy(self) -> Tuple[float, float]:
        # Floor bins: cell g covers input [stride g, stride (g + 1)), decoded at its centre stride g + stride / 2.
        return float(self.stride_xy[0]) / 2, float(self.stride_xy[1]) / 2

    def target_settings(self) -> Tuple[Hashable, ...]:
        # The decoding blur does not shape the target.
        return (self.kernel_size,)

    def weights(self, xy: np.ndarray, visibility: np.ndarray) -> np.ndarray:
        """Visibility flags, with 0 for joints outside [0, W_in - 1] x [0, H_in - 1] or with non-finite coordinates."""
        xy = np.asarray(xy, dtype=np.float64)
        weight = np.asarray(visibility, dtype=np.float32).copy()
        with np.errstate(invalid="ignore"):
            inside = ((xy[:, 0] >= 0) & (xy[:, 0] <= self.input_hw[1] - 1)
                      & (xy[:, 1] >= 0) & (xy[:, 1] <= self.input_hw[0] - 1))
        weight[~inside] = 0.0
        return weight

    def encode(self, xy: np.ndarray, visibility: np.ndarray, others: Optional[np.ndarray] = None
               ) -> Tuple[np.ndarray, np.ndarray]:
        """K x 2 crop pixels and K visibility flags -> (K x h x w targets on a 0..255 scale, K weights).

        Joints with weight >= 1 get a 1 at floor(coordinate x heatmap/input), blurred and scaled to a peak of
        255; the others an empty map. ``others`` is part of the codec interface and unused (MSPN marks one person).
        """
        h, w = self.heatmap_hw
        weight = self.weights(xy, visibility)
        drawn = weight >= 1
        xy = np.where(drawn[:, None], np.asarray(xy, dtype=np.float64), 0.0)
        # int() in the official code; coordinates are >= 0 here (in-crop rule), so it is floor.
        col = np.floor(xy[:, 0] * w / self.input_hw[1]).astype(np.int64)
        row = np.floor(xy[:, 1] * h / self.input_hw[0]).astype(np.int64)
        heatmaps = self._table_y[row][:, :, None] * self._table_x[col][:, None, :]
        peak = self._peak_y[row] * self._peak_x[col]
        scale = np.where(drawn & (peak > 1e-8), 255.0 / np.maximum(peak, 1e-300), 0.0)
        out = np.empty((len(weight), h, w), dtype=np.float32)
        np.multiply(heatmaps, scale[:, None, None], out=out, casting="unsafe")
        return out, weight

    def decode(self, heatmaps: ArrayLike) -> Tuple[np.ndarray, np.ndarray]:
        """N x K x h x w heatmaps (0..255 scale) -> (N x K x 2 crop pixels, N x K scores = value/255 + 0.5).

        Per map: zero border of 10, blur, argmax; the second argmax (after zeroing the first) gives the
        direction of a 0.25-pixel step; clamp to the map; crop pixel = stride * x + stride / 2. The score reads
        the un-blurred map at the rounded location.
        """
        raw = _to_numpy(heatmaps)
        if raw.ndim != 4:
            raise ValueError(f"expected N x K x h x w heatmaps, got shape {tuple(raw.shape)}")
        n, k, h, w = raw.shape
        b = DECODE_BORDER
        padded = np.zeros((n, k, h + 2 * b, w + 2 * b))
        padded[:, :, b:b + h, b:b + w] = raw
        flat = separable_blur(padded, self.blur_kernel).reshape(n * k, -1)
        rows = np.arange(n * k)
        first = flat.argmax(axis=1)
        flat[rows, first] = 0.0
        second = flat.argmax(axis=1)
        pw = w + 2 * b
        x, y = (first % pw - b).astype(np.float64), (first // pw - b).astype(np.float64)
        dx, dy = second % pw - b - x, second // pw - b - y
        length = np.sqrt(dx ** 2 + dy ** 2)
        step = np.where(length > 1e-3, SHIFT_RATIO / np.maximum(length, 1e-3), 0.0)
        x = np.clip(x + step * dx, 0, w - 1)
        y = np.clip(y + step * dy, 0, h - 1)
        scores = raw.reshape(n * k, h, w)[rows, np.rint(y).astype(np.int64), np.rint(x).astype(np.int64)] / 255 + 0.5
        coords = np.stack([x * self.stride_xy[0] + self.stride_xy[0] / 2,
                           y * self.stride_xy[1] + self.stride_xy[1] / 2], axis=-1)
        return coords.reshape(n, k, 2), scores.reshape(n, k)


__all__ = ["MegviiHeatmap", "gaussian_kernel_1d", "kernel_sigma", "separable_blur", "reflect101"]
