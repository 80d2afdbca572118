"""From crops to keypoints in image coordinates: forward (with flip and multi-scale test), decode, back-project.

Multi-scale test: for each factor f the same person is cropped around the same centre with a window f times
the usual one (scale s * f), at the same input size. Each crop's final heatmaps are resampled into the frame
of the f = 1 crop and the scales are averaged (HRNet / MMPose; CPM's release sums, which has the same argmax);
the codec then decodes the averaged maps and the f = 1 crop's centre/scale back-project them.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..codecs import HeatmapCodec, flip_back
from ..data.topdown import TopDownCrop
from ..errors import ConfigError


def final_heatmaps(model: nn.Module, outputs: Sequence[Tensor]) -> Tensor:
    """The output a model is read from at test time: the last declared one."""
    return outputs[-1]


# The most input pixels one model call gets on the CPU: eight 256x192 crops. Larger batches run slower per crop
# there (HRNet-W32 eager: 100 ms per crop in batches of 8, 125-135 ms in batches of 16-64, on 2 cores), the
# activations no longer fitting the caches; smaller ones pay the per-call overhead. GPUs take the whole batch.
CPU_PIXELS_PER_CALL = 8 * 256 * 192


def _model_calls(model: nn.Module, images: Tensor) -> Tensor:
    """Final heatmaps of ``images`` (float32), in calls of at most CPU_PIXELS_PER_CALL input pixels on the CPU."""
    per_call = images.shape[0]
    if images.device.type == "cpu":
        per_call = max(1, CPU_PIXELS_PER_CALL // max(1, images.shape[-1] * images.shape[-2]))
    if images.shape[0] <= per_call:
        return final_heatmaps(model, model(images)).float()
    return torch.cat([final_heatmaps(model, model(part)).float() for part in images.split(per_call)])


@torch.no_grad()
def predict_heatmaps(
    model: nn.Module,
    images: Tensor,
    flip_perm: Optional[Sequence[int]] = None,
    shift_heatmap: bool = True,
) -> Tensor:
    """Final heatmaps of a batch of crops; with ``flip_perm`` the mirrored crops are averaged in (flip test).

    The crops and their mirror images go through the model together, as one batch of 2N where that is small (one
    person: one call instead of two), on the CPU in calls of at most :data:`CPU_PIXELS_PER_CALL` input pixels.
    """
    if flip_perm is None:
        return _model_calls(model, images)
    count = images.shape[0]
    both = _model_calls(model, torch.cat([images, images.flip(3)]))
    heatmaps, flipped = both[:count], both[count:]
    # Channels beyond the keypoints (CPM's background) are their own mirror image.
    perm = list(flip_perm) + list(range(len(flip_perm), heatmaps.shape[1]))
    return 0.5 * (heatmaps + flip_back(flipped, perm, shift=shift_heatmap))


def decode_to_image(
    codec: HeatmapCodec, heatmaps: Tensor, crop: TopDownCrop, centers: np.ndarray, scales: np.ndarray
) -> Tuple[np.ndarray, np.ndarray]:
    """Heatmaps of the crops ``crop`` cut at ``centers`` / ``scales`` -> (N x K x 2 image coordinates, N x K scores)."""
    coords, scores = codec.decode(heatmaps)
    return crop.to_image(coords, centers, scales), scores


# ------------------------------------------------------------------------------------------ multi-scale test
def crop_center_on_heatmap(codec: HeatmapCodec) -> Tuple[float, float]:
    """The heatmap point (x, y) that the crop centre, input pixel (W/2, H/2), falls on under ``codec``'s alignment
    (:meth:`HeatmapCodec.crop_center_on_heatmap`): scales are resampled about it."""
    if not isinstance(codec, HeatmapCodec):
        raise ValueError(f"no heatmap alignment known for {type(codec).__name__}: not a posekit.codecs.HeatmapCodec")
    return codec.crop_center_on_heatmap()


def check_test_scales(scales: Sequence[float], where: str = "test.scales") -> List[float]:
    """The multi-scale factors of a config as floats; empty, non-finite or non-positive ones are a ConfigError."""
    values = [float(f) for f in scales]
    if not values:
        raise ConfigError("must list at least one scale factor (1.0 = the usual crop)", where)
    bad = [f for f in values if not math.isfinite(f) or f <= 0]
    if bad:
        raise ConfigError(f"scale factors must be positive, got {bad[0]!r}", where)
    return values


def heatmaps_to_base_frame(heatmaps: Tensor, factor: float,
                           center_xy: Optional[Tuple[float, float]] = None) -> Tensor:
    """Heatmaps of the crop with window factor ``factor`` -> the same maps in the frame of the f = 1 crop.

    Base pixel (x, y) reads the f-crop at ((x - cx) / f + cx, (y - cy) / f + cy), where (cx, cy) is the heatmap
    point of the crop centre (:func:`crop_center_on_heatmap`; default (w / 2, h / 2), the HRNet Gaussian's).
    Bilinear, zero outside the f-crop's map; f = 1 returns the maps untouched.
    """
    if heatmaps.ndim != 4:
        raise ValueError(f"expected N x C x h x w heatmaps, got shape {tuple(heatmaps.shape)}")
    factor = float(factor)
    if not math.isfinite(factor) or factor <= 0:
        raise ValueError(f"scale factor must be positive, got {factor!r}")
    if factor == 1.0:
        return heatmaps
    n, _, h, w = heatmaps.shape
    cx, cy = (w / 2.0, h / 2.0) if center_xy is None else (float(center_xy[0]), float(center_xy[1]))
    xs = (torch.arange(w, dtype=torch.float64) - cx) / factor + cx
    ys = (torch.arange(h, dtype=torch.float64) - cy) / factor + cy
    # grid_sample with align_corners=False puts pixel centre i at (2i + 1) / size - 1: pixel centres stay at
    # integers, as in every codec, and taps beyond the map read zeros.
    gx = (2.0 * xs + 1.0) / w - 1.0
    gy = (2.0 * ys + 1.0) / h - 1.0
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)
    grid = grid.to(device=heatmaps.device, dtype=heatmaps.dtype).expand(n, h, w, 2)
    return F.grid_sample(heatmaps, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@torch.no_grad()
def predict_heatmaps_multiscale(
    model: nn.Module,
    crops_per_scale: Sequence[Tensor],
    scales: Sequence[float],
    flip_perm: Optional[Sequence[int]] = None,
    shift_heatmap: bool = True,
    center_xy: Optional[Tuple[float, float]] = None,
) -> Tensor:
    """Final heatmaps of a batch, averaged over scales, in the frame of the f = 1 crop.

    ``crops_per_scale[i]`` is the batch cropped around the same centres with scale s * ``scales[i]`` (same input
    size). Each is run through :func:`predict_heatmaps` (flip test when ``flip_perm`` is given), resampled by
    :func:`heatmaps_to_base_frame` about ``center_xy`` and averaged. With ``scales == [1.0]`` this is
    ``predict_heatmaps`` exactly. Decode the result with the codec and back-project with the f = 1 centre/scale.
    """
    crops_per_scale, scales = list(crops_per_scale), [float(f) for f in scales]
    if not scales:
        raise ValueError("at least one scale is needed")
    if len(crops_per_scale) != len(scales):
        raise ValueError(f"{len(crops_per_scale)} crop batches for {len(scales)} scales")
    bad = [f for f in scales if not math.isfinite(f) or f <= 0]
    if bad:
        raise ValueError(f"scale factors must be positive, got {bad[0]!r}")
    first = crops_per_scale[0]
    for f, crops in zip(scales, crops_per_scale):
        if crops.ndim != 4:
            raise ValueError(f"crops of scale {f} must be N x C x H x W, got shape {tuple(crops.shape)}")
        if crops.shape[0] != first.shape[0]:
            raise ValueError(f"crops of scale {f} have batch size {crops.shape[0]}, those of scale {scales[0]} "
                             f"{first.shape[0]}")
        if crops.shape[1:] != first.shape[1:]:
            raise ValueError(f"crops of scale {f} have shape {tuple(crops.shape[1:])}, those of scale {scales[0]} "
                             f"{tuple(first.shape[1:])}: every scale is cropped to the same input size")
    total: Optional[Tensor] = None
    for f, crops in zip(scales, crops_per_scale):
        heatmaps = heatmaps_to_base_frame(predict_heatmaps(model, crops, flip_perm, shift_heatmap), f, center_xy)
        total = heatmaps if total is None else total + heatmaps
    assert total is not None
    return total if len(scales) == 1 else total / len(scales)
