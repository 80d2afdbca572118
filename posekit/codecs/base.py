"""What every codec is and what a model declares about each supervised output.

A model declares its outputs as :class:`OutputSpec` data; :func:`posekit.codecs.build_codec` turns one spec plus
the input size into a :class:`HeatmapCodec`. Callers (dataset, training, evaluation, predictor) use only this
interface: which codec class sits behind it is the codecs' business.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Hashable, Optional, Tuple, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]

TARGETS = ("gaussian", "cpm", "megvii", "torch7")
# Targets drawn as a Gaussian of standard deviation ``OutputSpec.sigma``; MSPN's "megvii" targets are a blur of
# ``OutputSpec.kernel`` pixels instead, and carry no sigma.
SIGMA_TARGETS = ("gaussian", "cpm", "torch7")
LOSSES = ("mse", "ohkm", "cpm", "mspn_l2", "mspn_ohkm", "mean_mse", "sum_mse")


@dataclass(frozen=True)
class OutputSpec:
    """What one supervised output of a model is trained against (declared next to the model's builder).

    stride: input pixels per heatmap pixel (4 for HRNet, 8 for CPM, 8/16/32 for side heads).
    target: "gaussian" (official HRNet: integer centre, peak 1), "cpm" (CPM belief maps, sigma in input
        pixels on the stride grid), "megvii" (MSPN: kernel-blurred, peak 255), "torch7" (Newell's
        ``image.gaussian`` patch).
    sigma: Gaussian standard deviation in heatmap pixels (input pixels for "cpm"); unused by "megvii" targets
        (see :attr:`carries_sigma`).
    kernel: Gaussian kernel size for "megvii" targets (coarse-to-fine schedule).
    loss: "mse" (HRNet JointsMSELoss with target weights), "ohkm" (HRNet OHKM, ``topk``), "cpm" (Caffe
        EuclideanLoss 1/(2N) sum), "mspn_l2" (GT masked where not visible), "mspn_ohkm" (MSPN OHKM, ``topk``),
        "mean_mse" (Torch7 MSECriterion, mean over all elements), "sum_mse" (Ke et al. eq. 1: sum over
        pixels, mean over keypoints and batch, target weights).
    weight: multiplier of this output's loss in the total.
    people: "self" (the person of the crop) or "all" (every annotated person, CPM stage 1).
    background: add a background channel max(1 - max_k target_k, 0) (CPM).
    quirks: reproduce the official code's known defects in the target where a codec has one (Torch7's
        ``drawGaussian`` moves a patch cut by the left/top border inwards); outputs where the defect would
        distort the target badly (Ke's coarse side heads) declare False.
    """

    stride: int = 4
    target: str = "gaussian"
    sigma: float = 2.0
    kernel: int = 0
    loss: str = "mse"
    weight: float = 1.0
    topk: int = 8
    people: str = "self"
    background: bool = False
    quirks: bool = True

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"unknown target {self.target!r}; known: {', '.join(TARGETS)}")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}; known: {', '.join(LOSSES)}")
        if self.people not in ("self", "all"):
            raise ValueError(f"people must be 'self' or 'all', got {self.people!r}")

    @property
    def carries_sigma(self) -> bool:
        """Whether ``sigma`` shapes this output's target (False for MSPN's kernel-blurred "megvii" targets)."""
        return self.target in SIGMA_TARGETS


class HeatmapCodec(ABC):
    """Keypoints in input-crop pixels <-> heatmaps of one supervised output.

    ``input_hw`` / ``heatmap_hw``: the (height, width) of the crop and of the target; the target's channels are
    the K keypoints, then any extra channel (CPM's background).
    """

    input_hw: Tuple[int, int]
    heatmap_hw: Tuple[int, int]

    @abstractmethod
    def encode(self, keypoints: np.ndarray, visibility: np.ndarray,
               others: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
        """K x 2 crop pixels, K raw COCO flags (0 unlabelled, 1 occluded, 2 visible; the dataset sets 0 for joints
        it cannot use), ``others`` M x K x 3 other people in the crop (targets that mark everyone, as CPM's first
        stage; the others ignore it) -> (C x h x w float32 target, C float32 weights)."""

    @abstractmethod
    def decode(self, heatmaps: ArrayLike) -> Tuple[np.ndarray, np.ndarray]:
        """N x C x h x w heatmaps -> (N x K x 2 coordinates in input-crop pixels, N x K scores)."""

    @property
    @abstractmethod
    def grid_offset_xy(self) -> Tuple[float, float]:
        """The input pixel (x, y) that heatmap point (0, 0) stands for: heatmap point g is input pixel
        ``stride * g + offset``, the alignment that this codec's encode and decode share."""

    @abstractmethod
    def target_settings(self) -> Tuple[Hashable, ...]:
        """Every setting besides the sizes that shapes ``encode``'s output (decoding settings are left out)."""

    @property
    def target_key(self) -> Hashable:
        """Equal keys: equal targets for equal keypoints, so a sample's target is encoded once for all outputs
        sharing a key (MSPN repeats 5 kernels over 16 outputs, the hourglass one target over its stacks)."""
        return (type(self).__name__, self.input_hw, self.heatmap_hw, self.target_settings())

    def crop_center_on_heatmap(self) -> Tuple[float, float]:
        """The heatmap point (x, y) that the crop centre, input pixel (W/2, H/2), falls on. Multi-scale test
        resamples every scale's maps about this point, so it follows the alignment of the codec that decodes."""
        (in_h, in_w), (hm_h, hm_w) = self.input_hw, self.heatmap_hw
        stride_x, stride_y = in_w / hm_w, in_h / hm_h
        offset_x, offset_y = self.grid_offset_xy
        return (in_w / 2 - offset_x) / stride_x, (in_h / 2 - offset_y) / stride_y


__all__ = ["ArrayLike", "HeatmapCodec", "OutputSpec", "TARGETS", "SIGMA_TARGETS", "LOSSES"]
