"""Keypoints <-> heatmaps, kept apart from models and datasets.

A model declares its supervised outputs as :class:`OutputSpec` data (stride, target kind and its
settings, loss); :func:`build_codec` turns one spec plus the input size into a :class:`HeatmapCodec`
(:mod:`posekit.codecs.base`: ``encode``, ``decode``, ``input_hw`` / ``heatmap_hw``, the grid alignment and
``crop_center_on_heatmap``, and ``target_key``: equal keys, one shared target).

Mapping crop pixels to the image is the crop's inverse affine (:mod:`posekit.evaluation.inference`).
"""
from __future__ import annotations

from typing import Tuple

from ..errors import ConfigError
from .base import LOSSES, SIGMA_TARGETS, TARGETS, ArrayLike, HeatmapCodec, OutputSpec
from .gaussian import DECODINGS, GaussianHeatmap, argmax_quarter_offset, dark_decode, flip_back
from .cpm import CPMBeliefMap
from .megvii import MegviiHeatmap
from .torch7 import Torch7Gaussian


def build_codec(spec: OutputSpec, input_hw: Tuple[int, int], post_process: bool = True, blur_kernel: int = 0,
                decoding: str = "quarter") -> HeatmapCodec:
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
        return CPMBeliefMap(input_hw, heatmap_hw, sigma=spec.sigma, background=spec.background, people=spec.people)
    if spec.target == "megvii":
        kwargs = {"blur_kernel": blur_kernel} if blur_kernel else {}
        return MegviiHeatmap(input_hw, heatmap_hw, kernel=spec.kernel, **kwargs)
    if spec.target == "torch7":
        return Torch7Gaussian(input_hw, heatmap_hw, sigma=spec.sigma, post_process=post_process, border_quirk=spec.quirks)
    raise ValueError(f"unknown target kind {spec.target!r}")


__all__ = ["OutputSpec", "HeatmapCodec", "build_codec", "GaussianHeatmap", "CPMBeliefMap", "MegviiHeatmap",
           "Torch7Gaussian", "argmax_quarter_offset", "dark_decode", "DECODINGS", "flip_back", "ArrayLike", "TARGETS",
           "SIGMA_TARGETS", "LOSSES"]
