"""The official HRNet Gaussian heatmap: target (spec 1.2), argmax + quarter-offset decoding (spec 1.4),
and flipping heatmaps back for the flip test (spec 1.5)."""
from __future__ import annotations

import math
from typing import Hashable, Optional, Sequence, Tuple

import numpy as np
import torch

from ..config import DECODINGS
from .base import ArrayLike, HeatmapCodec


class GaussianHeatmap(HeatmapCodec):
    """The official HRNet target (spec 1.2) and decoder (argmax + quarter offset, spec 1.4).

    Heatmap point g stands for input pixel ``stride * g`` (the centre is rounded to the nearest cell on encoding,
    and ``decode`` multiplies by the stride).
    """

    def __init__(self, input_hw: Tuple[int, int], heatmap_hw: Tuple[int, int], sigma: float, post_process: bool = True,
                 decoding: str = "quarter", dark_kernel: int = 0):
        if decoding not in DECODINGS:
            raise ValueError(f"decoding must be {' or '.join(DECODINGS)}, got {decoding!r}")
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.heatmap_hw = (int(heatmap_hw[0]), int(heatmap_hw[1]))
        self.sigma = float(sigma)
        self.post_process = post_process
        # quarter: the official HRNet decoder; dark: DARK's Taylor step (post_process does not apply to it)
        self.decoding = decoding
        self.dark_kernel = int(dark_kernel) or dark_kernel_for(self.sigma)
        if self.dark_kernel % 2 == 0 or self.dark_kernel < 3:
            raise ValueError(f"the DARK blur kernel must be odd and >= 3, got {self.dark_kernel}")
        # (x, y) input pixels per heatmap pixel
        self.stride_xy = np.array([input_hw[1] / heatmap_hw[1], input_hw[0] / heatmap_hw[0]], dtype=np.float64)
        # A joint's row and column profiles depend only on its integer centre mu, so the profiles of every centre
        # whose patch can touch the map are tabulated once: encoding is then two table look-ups per joint.
        self._reach = int(math.ceil(3 * self.sigma)) + 2
        self._table_x = self._profile_table(self.heatmap_hw[1])
        self._table_y = self._profile_table(self.heatmap_hw[0])

    def _profile_table(self, length: int) -> np.ndarray:
        """(length + 2 reach) x length: row mu + reach is the clipped 1-D patch of centre mu (official ul/br rule)."""
        tmp = self.sigma * 3
        size = 2 * tmp + 1
        mu = np.arange(-self._reach, length + self._reach, dtype=np.float64)[:, None]
        ul = np.trunc(mu - tmp)
        br = np.trunc(mu + tmp + 1)
        # The patch centre is ul + size // 2 (equal to mu for integer 3 sigma, as the official patch).
        centre = ul + size // 2
        pos = np.arange(length, dtype=np.float64)[None, :]
        profile = np.exp(-((pos - centre) ** 2) / (2 * self.sigma ** 2))
        profile *= (pos >= ul) & (pos < br)
        return profile

    @property
    def grid_offset_xy(self) -> Tuple[float, float]:
        return 0.0, 0.0

    def target_settings(self) -> Tuple[Hashable, ...]:
        return (self.sigma,)

    def encode(self, keypoints: np.ndarray, visible: np.ndarray, others: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
        """keypoints K x 2 (input pixels), visible K (> 0 means supervised) -> heatmaps K x h x w, weights K.

        ``others`` (other people) is accepted for the codec interface and not used: HRNet's target marks
        only the person of the crop. Joints with non-finite coordinates get weight 0 and an empty map."""
        h, w = self.heatmap_hw
        xy = np.asarray(keypoints, dtype=np.float64)[:, :2]
        finite = np.isfinite(xy).all(axis=1)
        tmp = self.sigma * 3
        # int() truncates toward zero in the official code; np.trunc reproduces it for negative values too
        mu = np.trunc(np.where(finite[:, None], xy, 0.0) / self.stride_xy + 0.5)
        ul = np.trunc(mu - tmp)
        br = np.trunc(mu + tmp + 1)
        outside = (ul[:, 0] >= w) | (ul[:, 1] >= h) | (br[:, 0] < 0) | (br[:, 1] < 0)
        drawn = (np.asarray(visible).reshape(-1) > 0) & finite & ~outside
        weight = drawn.astype(np.float32)
        row = np.where(drawn[:, None], mu + self._reach, 0.0).astype(np.intp)
        gx = self._table_x[row[:, 0]]
        gy = self._table_y[row[:, 1]] * drawn[:, None]
        # The float64 product rounded to float32 in NumPy's small buffers: no K x h x w float64 array.
        heatmaps = np.empty((len(xy), h, w), dtype=np.float32)
        np.multiply(gy[:, :, None], gx[:, None, :], out=heatmaps, casting="unsafe")
        return heatmaps, weight

    def decode(self, heatmaps: ArrayLike) -> Tuple[np.ndarray, np.ndarray]:
        """N x K x h x w heatmaps -> (N x K x 2 coordinates in input pixels, N x K scores = max value)."""
        if self.decoding == "dark":
            coords, maxvals = dark_decode(heatmaps, self.dark_kernel)
        else:
            coords, maxvals = argmax_quarter_offset(heatmaps, self.post_process)
        return coords * self.stride_xy, maxvals


def dark_kernel_for(sigma: float) -> int:
    """The odd blur kernel whose OpenCV default sigma, 0.3 ((k - 1) / 2 - 1) + 0.8, is closest to the target's
    sigma: 11 for sigma 2, DARK's setting for HRNet's 64 x 48 heatmaps."""
    half = int(round((sigma - 0.8) / 0.3 + 1))
    return max(3, 2 * half + 1)


def dark_decode(heatmaps: ArrayLike, kernel: int = 11) -> Tuple[np.ndarray, np.ndarray]:
    """DARK decoding (Zhang et al., "Distribution-Aware Coordinate Representation for Human Pose Estimation",
    CVPR 2020) in heatmap pixels: each map is blurred with a ``kernel`` x ``kernel`` Gaussian (then rescaled to its
    original maximum), its log taken, and the argmax moved by one Newton step -H^-1 g of the log map, with central
    differences (first derivatives over +-1 px, second over +-2 px, as the authors' code). Maps whose argmax lies
    within 2 px of the border, or whose Hessian is singular, keep the integer argmax. Returns (N x K x 2
    coordinates, N x K maxima of the unblurred maps); maxima <= 0 give (0, 0), as argmax_quarter_offset.
    """
    import cv2

    hm = heatmaps.detach().float().cpu().numpy() if isinstance(heatmaps, torch.Tensor) else np.asarray(heatmaps, dtype=np.float32)
    coords, maxvals = argmax_quarter_offset(hm, post_process=False)
    n, k, h, w = hm.shape
    if h < 5 or w < 5:
        return coords, maxvals
    border = (kernel - 1) // 2
    blurred = np.empty_like(hm)
    for i in range(n):
        for j in range(k):
            original_max = hm[i, j].max()
            padded = np.zeros((h + 2 * border, w + 2 * border), dtype=np.float32)
            padded[border:-border, border:-border] = hm[i, j]
            smooth = cv2.GaussianBlur(padded, (kernel, kernel), 0)[border:-border, border:-border]
            peak = smooth.max()
            blurred[i, j] = smooth * (original_max / peak) if peak > 0 else smooth
    log = np.log(np.maximum(blurred, 1e-10)).astype(np.float64)
    px = coords[..., 0].astype(np.int64)
    py = coords[..., 1].astype(np.int64)
    inside = (px > 1) & (px < w - 2) & (py > 1) & (py < h - 2) & (maxvals > 0)
    x, y = np.clip(px, 2, w - 3), np.clip(py, 2, h - 3)
    ni, ki = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")

    def at(dy: int, dx: int) -> np.ndarray:
        return log[ni, ki, y + dy, x + dx]

    centre = at(0, 0)
    dx = 0.5 * (at(0, 1) - at(0, -1))
    dy = 0.5 * (at(1, 0) - at(-1, 0))
    dxx = 0.25 * (at(0, 2) - 2 * centre + at(0, -2))
    dyy = 0.25 * (at(2, 0) - 2 * centre + at(-2, 0))
    dxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    det = dxx * dyy - dxy * dxy
    usable = inside & (np.abs(det) > 1e-12)
    safe = np.where(usable, det, 1.0)
    # -H^-1 g for the 2 x 2 Hessian [[dxx, dxy], [dxy, dyy]]
    step_x = -(dyy * dx - dxy * dy) / safe
    step_y = -(dxx * dy - dxy * dx) / safe
    coords = coords.copy()
    coords[..., 0] += np.where(usable, step_x, 0.0)
    coords[..., 1] += np.where(usable, step_y, 0.0)
    return coords, maxvals


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
