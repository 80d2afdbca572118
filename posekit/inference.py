"""From crops to keypoints in image coordinates: forward (with flip test), decode, back-project."""
from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from .codecs import flip_back
from .data.transforms import PIXEL_STD


def final_heatmaps(model: nn.Module, outputs: Sequence[Tensor]) -> Tensor:
    """The output a model is read from at test time: the last declared one."""
    return outputs[-1]


@torch.no_grad()
def predict_heatmaps(
    model: nn.Module,
    images: Tensor,
    flip_perm: Optional[Sequence[int]] = None,
    shift_heatmap: bool = True,
) -> Tensor:
    """Final heatmaps of a batch of crops; with ``flip_perm`` the mirrored crops are averaged in (flip test)."""
    heatmaps = final_heatmaps(model, model(images)).float()
    if flip_perm is not None:
        flipped = final_heatmaps(model, model(images.flip(3))).float()
        # Channels beyond the keypoints (CPM's background) are their own mirror image.
        perm = list(flip_perm) + list(range(len(flip_perm), heatmaps.shape[1]))
        heatmaps = 0.5 * (heatmaps + flip_back(flipped, perm, shift=shift_heatmap))
    return heatmaps


def crop_to_image_batch(points: np.ndarray, centers: np.ndarray, scales: np.ndarray, input_hw: Tuple[int, int]) -> np.ndarray:
    """Unrotated crops: crop pixels (N x K x 2) -> image pixels, the inverse of the crop affine, batched.

    The crop is a similarity with factor 200 * scale_w / input_width on both axes (official ``transform_preds``).
    """
    height, width = input_hw
    factor = (np.asarray(scales, dtype=np.float64)[:, 0] * PIXEL_STD / width)[:, None, None]
    half = np.array([width / 2.0, height / 2.0])
    return np.asarray(centers, dtype=np.float64)[:, None, :] + (points - half) * factor


def decode_to_image(
    codec: Any, heatmaps: Tensor, centers: np.ndarray, scales: np.ndarray, input_hw: Tuple[int, int]
) -> Tuple[np.ndarray, np.ndarray]:
    """Heatmaps -> (N x K x 2 image coordinates, N x K scores)."""
    coords, scores = codec.decode(heatmaps)
    return crop_to_image_batch(coords, centers, scales, input_hw), scores
