"""Keypoints <-> heatmaps, kept apart from models and datasets.

A model declares its supervised outputs as :class:`OutputSpec` data (stride, target kind and its
settings, loss); :func:`build_codec` turns one spec plus the input size into a codec. Every codec has

- ``heatmap_hw``: the (height, width) of its target; the channels are the K keypoints, then any extra
  channel (CPM's background);
- ``encode(xy, visibility, others=None) -> (target C x h x w, weight C)``: ``xy`` K x 2 keypoints in
  input-crop pixels, ``visibility`` K raw COCO flags (0 unlabelled, 1 occluded, 2 visible; the dataset
  sets 0 for joints it cannot use), ``others`` M x K x 3 other people in the same crop (for targets that
  mark every person, as CPM's first stage);
- ``decode(heatmaps N x C x h x w) -> (coords N x K x 2 in input-crop pixels, scores N x K)``.

Mapping crop pixels to the image is the crop's inverse affine (:mod:`posekit.inference`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Tuple

from ..errors import ConfigError
from .gaussian import DECODINGS, ArrayLike, GaussianHeatmap, argmax_quarter_offset, dark_decode, flip_back

TARGETS = ("gaussian", "cpm", "megvii", "torch7")
LOSSES = ("mse", "ohkm", "cpm", "mspn_l2", "mspn_ohkm", "mean_mse", "sum_mse")


@dataclass(frozen=True)
class OutputSpec:
    """What one supervised output of a model is trained against (declared next to the model's builder).

    stride: input pixels per heatmap pixel (4 for HRNet, 8 for CPM, 8/16/32 for side heads).
    target: "gaussian" (official HRNet: integer centre, peak 1), "cpm" (CPM belief maps, sigma in input
        pixels on the stride grid), "megvii" (MSPN: kernel-blurred, peak 255), "torch7" (Newell's
        ``image.gaussian`` patch).
    sigma: Gaussian standard deviation in heatmap pixels (input pixels for "cpm").
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


def build_codec(spec: OutputSpec, input_hw: Tuple[int, int], post_process: bool = True, blur_kernel: int = 0,
                decoding: str = "quarter") -> Any:
    """The codec for one declared output at a given input size.

    ``blur_kernel`` (MSPN decoding: 5 for COCO, 9 for MPII; DARK's blur; 0 = the codec's default).
    ``decoding``: quarter (each family's own decoder) or dark (DARK's Taylor step; Gaussian targets only).
    """
    heatmap_hw = (input_hw[0] // spec.stride, input_hw[1] // spec.stride)
    if decoding != "quarter" and spec.target != "gaussian":
        raise ConfigError(f"test.decode {decoding!r} applies to Gaussian heatmaps (HRNet, SimpleBaseline), "
                          f"not to {spec.target!r} targets", "test.decode")
    if spec.target == "gaussian":
        try:
            return GaussianHeatmap(input_hw, heatmap_hw, spec.sigma, post_process=post_process, decoding=decoding,
                                   dark_kernel=blur_kernel)
        except ValueError as exc:
            raise ConfigError(str(exc), "test.decode") from None
    if spec.target == "cpm":
        from .cpm import CPMBeliefMap
        return CPMBeliefMap(input_hw, heatmap_hw, sigma=spec.sigma, background=spec.background, people=spec.people)
    if spec.target == "megvii":
        from .megvii import MegviiHeatmap
        kwargs = {"blur_kernel": blur_kernel} if blur_kernel else {}
        return MegviiHeatmap(input_hw, heatmap_hw, kernel=spec.kernel, **kwargs)
    if spec.target == "torch7":
        from .torch7 import Torch7Gaussian
        return Torch7Gaussian(input_hw, heatmap_hw, sigma=spec.sigma, post_process=post_process, border_quirk=spec.quirks)
    raise ValueError(f"unknown target kind {spec.target!r}")


__all__ = ["OutputSpec", "build_codec", "GaussianHeatmap", "argmax_quarter_offset", "dark_decode", "DECODINGS", "flip_back", "ArrayLike",
           "TARGETS", "LOSSES"]
