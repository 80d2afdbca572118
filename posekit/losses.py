"""Heatmap losses and the weighted sum over a model's declared outputs."""
from __future__ import annotations

from typing import List, Sequence, Tuple

from torch import Tensor

from .codecs import OutputSpec


def joints_mse_loss(pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Official HRNet ``JointsMSELoss(use_target_weight=True)``: mean over joints of 0.5 * MSE(pred*w, gt*w).

    pred/target N x K x H x W, weight N x K. Each joint's MSE averages over batch and pixels.
    """
    w = weight[:, :, None, None]
    per_joint = ((pred * w - target * w) ** 2).mean(dim=(0, 2, 3))
    return 0.5 * per_joint.mean()


def ohkm_mse_loss(pred: Tensor, target: Tensor, weight: Tensor, topk: int = 8) -> Tensor:
    """Online hard keypoint mining (official HRNet ``JointsOHKMMSELoss``): per sample, the mean of the
    ``topk`` largest per-joint losses 0.5 * mean_pixels((pred*w - gt*w)^2); then the batch mean."""
    w = weight[:, :, None, None]
    per_joint = 0.5 * ((pred * w - target * w) ** 2).mean(dim=(2, 3))
    k = min(topk, per_joint.shape[1])
    hardest, _ = per_joint.topk(k, dim=1)
    return hardest.mean(dim=1).mean()


def output_loss(spec: OutputSpec, pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    if spec.loss == "mse":
        return joints_mse_loss(pred, target, weight)
    if spec.loss == "ohkm":
        return ohkm_mse_loss(pred, target, weight, spec.topk)
    raise ValueError(f"unknown loss {spec.loss!r}")


def total_loss(
    specs: Sequence[OutputSpec],
    preds: Sequence[Tensor],
    targets: Sequence[Tensor],
    weights: Sequence[Tensor],
) -> Tuple[Tensor, List[Tensor]]:
    """Sum of each declared output's loss times its weight; also returns the per-output terms."""
    if not (len(specs) == len(preds) == len(targets) == len(weights)):
        raise ValueError(f"{len(preds)} outputs for {len(specs)} declared outputs and {len(targets)} targets")
    terms = [output_loss(s, p.float(), t, w) for s, p, t, w in zip(specs, preds, targets, weights)]
    total = sum(s.weight * term for s, term in zip(specs, terms))
    return total, terms
