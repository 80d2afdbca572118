"""The official HRNet Gaussian heatmap: target (spec 1.2), argmax + quarter-offset decoding (spec 1.4),
and flipping heatmaps back for the flip test (spec 1.5)."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]


class GaussianHeatmap:
    """The official HRNet target (spec 1.2) and decoder (argmax + quarter offset, spec 1.4)."""

    def __init__(self, input_hw: Tuple[int, int], heatmap_hw: Tuple[int, int], sigma: float, post_process: bool = True):
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.heatmap_hw = (int(heatmap_hw[0]), int(heatmap_hw[1]))
        self.sigma = float(sigma)
        self.post_process = post_process
        # (x, y) input pixels per heatmap pixel
        self.stride_xy = np.array([input_hw[1] / heatmap_hw[1], input_hw[0] / heatmap_hw[0]], dtype=np.float64)

    def encode(self, keypoints: np.ndarray, visible: np.ndarray, others: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
        """keypoints K x 2 (input pixels), visible K (> 0 means supervised) -> heatmaps K x h x w, weights K.

        ``others`` (other people) is accepted for the codec interface and not used: HRNet's target marks
        only the person of the crop."""
        h, w = self.heatmap_hw
        num = keypoints.shape[0]
        weight = (np.asarray(visible) > 0).astype(np.float32)
        tmp = self.sigma * 3
        size = 2 * tmp + 1
        # int() truncates toward zero in the official code; np.trunc reproduces it for negative values too
        mu = np.trunc(keypoints / self.stride_xy + 0.5)
        ul = np.trunc(mu - tmp)
        br = np.trunc(mu + tmp + 1)
        outside = (ul[:, 0] >= w) | (ul[:, 1] >= h) | (br[:, 0] < 0) | (br[:, 1] < 0)
        weight[outside] = 0.0
        # The patch centre is ul + size // 2 (equal to mu for integer 3 sigma, as the official patch).
        centre = ul + size // 2
        xs = np.arange(w, dtype=np.float64)
        ys = np.arange(h, dtype=np.float64)
        gx = np.exp(-((xs[None, :] - centre[:, :1]) ** 2) / (2 * self.sigma ** 2))
        gy = np.exp(-((ys[None, :] - centre[:, 1:]) ** 2) / (2 * self.sigma ** 2))
        gx *= (xs[None, :] >= ul[:, :1]) & (xs[None, :] < br[:, :1])
        gy *= (ys[None, :] >= ul[:, 1:]) & (ys[None, :] < br[:, 1:])
        heatmaps = gy[:, :, None] * gx[:, None, :]
        heatmaps *= (weight > 0.5)[:, None, None]
        return heatmaps.astype(np.float32).reshape(num, h, w), weight

    def decode(self, heatmaps: ArrayLike) -> Tuple[np.ndarray, np.ndarray]:
        """N x K x h x w heatmaps -> (N x K x 2 coordinates in input pixels, N x K scores = max value)."""
        coords, maxvals = argmax_quarter_offset(heatmaps, self.post_process)
        return coords * self.stride_xy, maxvals


def argmax_quarter_offset(heatmaps: ArrayLike, post_process: bool = True, lowest: int = 2) -> Tuple[np.ndarray, np.ndarray]:
    """Official ``get_final_preds`` on heatmap coordinates: argmax, then 0.25 px toward the higher neighbour.

    The step is taken where lowest <= x, y and x <= w - 2, y <= h - 2: HRNet's strict ``1 < p < size - 1`` is
    lowest = 2; Torch7's ``1 < p < res`` in 1-based coordinates is lowest = 1.
    Returns coordinates in heatmap pixels (N x K x 2) and the maxima (N x K). Maxima <= 0 give (0, 0).
    """
    hm = heatmaps.detach().float().cpu().numpy() if isinstance(heatmaps, torch.Tensor) else np.asarray(heatmaps, dtype=np.float32)
    n, k, h, w = hm.shape
    flat = hm.reshape(n, k, h * w)
    idx = flat.argmax(axis=2)
    maxvals = np.take_along_axis(flat, idx[..., None], axis=2)[..., 0]
    coords = np.stack([idx % w, idx // w], axis=-1).astype(np.float64)
    coords *= (maxvals > 0)[..., None]
    if post_process and h >= 3 and w >= 3:   # smaller maps have no neighbours on both sides
        px = np.floor(coords[..., 0] + 0.5).astype(np.int64)
        py = np.floor(coords[..., 1] + 0.5).astype(np.int64)
        inside = (px >= lowest) & (px <= w - 2) & (py >= lowest) & (py <= h - 2)
        pxc, pyc = np.clip(px, 1, w - 2), np.clip(py, 1, h - 2)
        ni, ki = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
        dx = hm[ni, ki, pyc, pxc + 1] - hm[ni, ki, pyc, pxc - 1]
        dy = hm[ni, ki, pyc + 1, pxc] - hm[ni, ki, pyc - 1, pxc]
        coords[..., 0] += np.where(inside, 0.25 * np.sign(dx), 0.0)
        coords[..., 1] += np.where(inside, 0.25 * np.sign(dy), 0.0)
    return coords, maxvals.astype(np.float64)


def flip_back(heatmaps: torch.Tensor, flip_perm: Sequence[int], shift: bool = True) -> torch.Tensor:
    """Heatmaps of a mirrored input -> heatmaps of the original (width reversed, left/right swapped).

    ``shift`` moves the result one pixel right (column 0 keeps its value), as the official HRNet flip test
    does to compensate the x' = W - 1 - x mirroring on the coarser heatmap grid.
    """
    out = heatmaps.flip(-1)[:, list(flip_perm)]
    if shift:
        out = out.clone()
        out[..., 1:] = out[..., :-1].clone()
    return out
