"""CPM belief maps as the released Caffe code makes them (spec 2.4), their decoding (spec 2.7), and the
centre map fed as the 4th input channel (spec 2.3).

Alignment: Caffe's ``putGaussianMaps`` puts heatmap cell g on crop coordinate ``start + stride * g`` with
``start = stride / 2 - 0.5`` (3.5 at stride 8), i.e. the cell is the centre of the stride x stride block of
crop pixels it covers. Matlab's ``imresize(map, 8)`` (the release's test code) uses the same half-pixel
alignment: upsampled pixel u samples map coordinate (u + 0.5) / 8 - 0.5, so cell g lands on u = 8g + 3.5.
Hence after upsampling, pixel u *is* crop pixel u and the argmax needs no offset.
"""
from __future__ import annotations

from typing import Hashable, Optional, Tuple

import numpy as np
import torch

from .base import ArrayLike, HeatmapCodec

# Caffe skips grid points whose exponent d^2 / (2 sigma^2) exceeds this (literally 4.6052 ~ ln 100: values < 1 %).
EXPONENT_CUTOFF = 4.6052
# Matlab's bicubic kernel (Keys, a = -0.5). PyTorch's and OpenCV's bicubic use a = -0.75.
MATLAB_CUBIC_A = -0.5


def _gaussian_sum(points: np.ndarray, labelled: np.ndarray, xs: np.ndarray, ys: np.ndarray, sigma: float) -> np.ndarray:
    """Caffe ``putGaussianMaps`` for every point at once, summed over people and clipped to 1.

    points M x K x 2, labelled M x K (bool), xs / ys the grid's coordinates -> K x len(ys) x len(xs).
    Summing first and clipping once equals Caffe's add-then-clip per person: every term is >= 0.
    """
    m, k = labelled.shape
    out = np.zeros((k, len(ys), len(xs)), dtype=np.float64)
    if m == 0 or not labelled.any():
        return out
    safe = np.where(labelled[..., None], points, 0.0)
    ex = (xs[None, None, :] - safe[..., :1]) ** 2 / (2.0 * sigma * sigma)  # M x K x w
    ey = (ys[None, None, :] - safe[..., 1:]) ** 2 / (2.0 * sigma * sigma)  # M x K x h
    # The smallest exponent of a joint on the grid is min(ey) + min(ex): joints that cannot pass the cutoff, and
    # people with none that can (others far outside the crop), only add exact zeros and are left out.
    reaches = labelled & (ex.min(axis=2) + ey.min(axis=2) <= EXPONENT_CUTOFF)
    people = reaches.any(axis=1)
    if not people.any():
        return out
    ex, ey, reaches = ex[people], ey[people], reaches[people]
    exponent = ey[..., :, None] + ex[..., None, :]
    # exp only inside the cutoff disc (about 1 % of the grid at CPM's sigma): the same values, far fewer exp calls.
    inside = (exponent <= EXPONENT_CUTOFF) & reaches[..., None, None]
    values = np.zeros_like(exponent)
    values[inside] = np.exp(-exponent[inside])
    return np.minimum(values.sum(axis=0), 1.0)


def center_map(input_hw: Tuple[int, int], sigma: float = 21.0, center_xy: Optional[Tuple[float, float]] = None) -> np.ndarray:
    """The centre-map input channel (H x W float32): a Gaussian of ``sigma`` input pixels at ``center_xy``.

    Default centre: (W / 2, H / 2), where the crop affine puts the person's centre (Caffe's training crop puts
    ``objpos`` there too). As Caffe's training transform: evaluated on every pixel, values clipped to <= 1
    and those below 1 % (exponent > 4.6052) set to 0. (The release's Matlab test code omits the 1 % cutoff and
    centres at 1-based 184 = 0-based 183 because its crop is cut one pixel differently; not reproduced.)
    """
    height, width = int(input_hw[0]), int(input_hw[1])
    cx, cy = (width / 2.0, height / 2.0) if center_xy is None else (float(center_xy[0]), float(center_xy[1]))
    point = np.array([[[cx, cy]]], dtype=np.float64)
    xs = np.arange(width, dtype=np.float64)
    ys = np.arange(height, dtype=np.float64)
    return _gaussian_sum(point, np.ones((1, 1), dtype=bool), xs, ys, float(sigma))[0].astype(np.float32)


def cubic_upsample_matrix(in_len: int, factor: int, a: float = MATLAB_CUBIC_A) -> np.ndarray:
    """(in_len * factor) x in_len matrix of bicubic upsampling by an integer ``factor``, half-pixel aligned.

    With the default ``a = -0.5`` this is Matlab's ``imresize(..., 'bicubic')`` for enlargement: Keys kernel,
    weights normalised to sum 1, out-of-range taps mirrored symmetrically (index -1 -> 0, -2 -> 1). With
    ``a = -0.75`` it equals PyTorch's / OpenCV's bicubic away from the borders (they replicate the edge).
    """
    out_len = in_len * factor
    x = (np.arange(out_len, dtype=np.float64) + 0.5) / factor - 0.5
    taps = np.floor(x)[:, None] + np.arange(-1, 3)[None, :]
    t = np.abs(x[:, None] - taps)
    weights = np.where(t <= 1, (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1,
                       np.where(t < 2, a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a, 0.0))
    weights /= weights.sum(axis=1, keepdims=True)
    idx = taps.astype(np.int64)
    idx = np.where(idx < 0, -idx - 1, idx)
    idx = np.where(idx >= in_len, 2 * in_len - 1 - idx, idx)
    idx = np.clip(idx, 0, in_len - 1)  # only reachable for in_len < 2
    matrix = np.zeros((out_len, in_len), dtype=np.float64)
    np.add.at(matrix, (np.repeat(np.arange(out_len), 4), idx.ravel()), weights.ravel())
    return matrix


class CPMBeliefMap(HeatmapCodec):
    """CPM's ideal belief maps (Caffe ``generateLabelMap``) and their decoding (release ``applyModel.m``).

    input_hw / heatmap_hw: crop and map sizes (368 x 368 -> 46 x 46, stride 8).
    sigma: Gaussian standard deviation in INPUT pixels (Caffe default 7).
    background: append the background channel max(1 - max_k part_k, 0) (last channel).
    people: "self" draws the person of the crop only (stages >= 2); "all" also draws ``others`` (stage 1).
    cubic_a: bicubic kernel parameter of the decoder's upsampling (-0.5 Matlab, -0.75 PyTorch/OpenCV).
    """

    def __init__(self, input_hw: Tuple[int, int], heatmap_hw: Tuple[int, int], sigma: float = 7.0,
                 background: bool = True, people: str = "self", cubic_a: float = MATLAB_CUBIC_A):
        if people not in ("self", "all"):
            raise ValueError(f"people must be 'self' or 'all', got {people!r}")
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.heatmap_hw = (int(heatmap_hw[0]), int(heatmap_hw[1]))
        if self.input_hw[0] % self.heatmap_hw[0] or self.input_hw[1] % self.heatmap_hw[1]:
            raise ValueError(f"input size {self.input_hw} is not an integer multiple of the heatmap size {self.heatmap_hw}")
        self.sigma = float(sigma)
        self.background = bool(background)
        self.people = people
        self.cubic_a = float(cubic_a)
        self.stride_xy = (self.input_hw[1] // self.heatmap_hw[1], self.input_hw[0] // self.heatmap_hw[0])
        sx, sy = self.stride_xy
        # Caffe: cell g sits on crop coordinate start + stride * g, start = stride / 2 - 0.5.
        self.grid_x = sx / 2.0 - 0.5 + sx * np.arange(self.heatmap_hw[1], dtype=np.float64)
        self.grid_y = sy / 2.0 - 0.5 + sy * np.arange(self.heatmap_hw[0], dtype=np.float64)
        self._upsample_y = cubic_upsample_matrix(self.heatmap_hw[0], sy, self.cubic_a).astype(np.float32)
        self._upsample_x = cubic_upsample_matrix(self.heatmap_hw[1], sx, self.cubic_a).astype(np.float32)

    @property
    def grid_offset_xy(self) -> Tuple[float, float]:
        # Caffe's grid: cell g on start + stride * g, start = stride / 2 - 0.5 (the module docstring).
        sx, sy = self.stride_xy
        return sx / 2 - 0.5, sy / 2 - 0.5

    def target_settings(self) -> Tuple[Hashable, ...]:
        # cubic_a only shapes decoding.
        return self.sigma, self.background, self.people

    def encode(self, xy: np.ndarray, visibility: np.ndarray, others: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
        """xy K x 2 (crop px), visibility K (COCO flags), others M x K x 3 or None -> (C x h x w, C ones).

        A joint is drawn when labelled (COCO v >= 1, finite coordinates). Caffe's own flag has the opposite
        sense (isVisible 0 occluded / 1 visible are drawn, 2 = unlabelled or outside the image is not), so COCO
        v = 0 <-> Caffe 2. Weights are all 1: Caffe's EuclideanLoss has none, so unlabelled joints are
        regressed to empty maps (and the "cpm" loss ignores weights anyway).
        """
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        visibility = np.asarray(visibility).reshape(-1)
        if len(visibility) != len(xy):
            raise ValueError(f"{len(xy)} keypoints but {len(visibility)} visibility flags")
        num = len(xy)
        points = xy[None]
        labelled = ((visibility > 0) & np.isfinite(xy).all(axis=1))[None]
        if self.people == "all" and others is not None and len(others):
            others = np.asarray(others, dtype=np.float64)
            if others.ndim != 3 or others.shape[1:] != (num, 3):
                raise ValueError(f"others must be M x {num} x 3, got shape {others.shape}")
            points = np.concatenate([points, others[..., :2]], axis=0)
            labelled = np.concatenate([labelled, (others[..., 2] > 0) & np.isfinite(others[..., :2]).all(axis=2)], axis=0)
        parts = _gaussian_sum(points, labelled, self.grid_x, self.grid_y, self.sigma)
        if self.background:
            maximum = parts.max(axis=0) if num else np.zeros(self.heatmap_hw)
            parts = np.concatenate([parts, np.maximum(1.0 - maximum, 0.0)[None]], axis=0)
        return parts.astype(np.float32), np.ones(len(parts), dtype=np.float32)

    def upsample(self, heatmaps: np.ndarray) -> np.ndarray:
        """... x h x w maps -> ... x H x W, bicubic by the stride (Matlab ``imresize(map, stride)``)."""
        return self._upsample_y @ np.asarray(heatmaps, dtype=np.float32) @ self._upsample_x.T

    def decode(self, heatmaps: ArrayLike) -> Tuple[np.ndarray, np.ndarray]:
        """N x C x h x w beliefs -> (N x K x 2 crop px, N x K scores), K = C minus the background channel.

        As the release's test code: each part map is upsampled to the crop size by bicubic interpolation and
        its argmax taken (no sub-pixel refinement); the score is the upsampled map's maximum. Because of the
        shared half-pixel alignment (module docstring) the argmax pixel is the crop pixel itself.
        """
        hm = heatmaps.detach().float().cpu().numpy() if isinstance(heatmaps, torch.Tensor) else np.asarray(heatmaps, dtype=np.float32)
        if hm.ndim != 4 or hm.shape[2:] != self.heatmap_hw:
            raise ValueError(f"expected N x C x {self.heatmap_hw[0]} x {self.heatmap_hw[1]} heatmaps, got shape {hm.shape}")
        if self.background:
            hm = hm[:, :-1]
        n, k = hm.shape[:2]
        coords = np.zeros((n, k, 2), dtype=np.float64)
        scores = np.zeros((n, k), dtype=np.float64)
        width = self.input_hw[1]
        # One sample at a time: a batch of 368 x 368 maps would take hundreds of MB at once.
        for i in range(n):
            flat = self.upsample(hm[i]).reshape(k, -1)
            idx = flat.argmax(axis=1)
            coords[i, :, 0] = idx % width
            coords[i, :, 1] = idx // width
            scores[i] = flat[np.arange(k), idx]
        return coords, scores


__all__ = ["CPMBeliefMap", "center_map", "cubic_upsample_matrix", "EXPONENT_CUTOFF"]
