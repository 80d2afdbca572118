"""Heatmap losses of the four papers' official code, and the weighted sum over a model's declared outputs.

Each loss takes pred / target N x C x H x W and the codec's weights N x C (what a weight value means is the
codec's: HRNet's are 0/1, MSPN's carry COCO's visibility 0/1/2 so that its loss can tell visible joints).
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

from torch import Tensor

from .codecs import OutputSpec


def joints_mse_loss(pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Official HRNet ``JointsMSELoss(use_target_weight=True)``: mean over joints of 0.5 * MSE(pred*w, gt*w).

    Each joint's MSE averages over batch and pixels.
    """
    w = weight[:, :, None, None]
    per_joint = ((pred * w - target * w) ** 2).mean(dim=(0, 2, 3))
    return 0.5 * per_joint.mean()


def ohkm_mse_loss(pred: Tensor, target: Tensor, weight: Tensor, topk: int = 8) -> Tensor:
    """Official HRNet ``JointsOHKMMSELoss``: per sample, the mean of the ``topk`` largest per-joint losses
    0.5 * mean_pixels((pred*w - gt*w)^2); then the batch mean."""
    w = weight[:, :, None, None]
    per_joint = 0.5 * ((pred * w - target * w) ** 2).mean(dim=(2, 3))
    hardest, _ = per_joint.topk(min(topk, per_joint.shape[1]), dim=1)
    return hardest.mean(dim=1).mean()


def cpm_euclidean_loss(pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Caffe ``EuclideanLoss`` as CPM uses it per stage: 1/(2N) * sum over channels (background included)
    and pixels of (pred - gt)^2. No target weights: unlabelled parts are regressed to empty maps."""
    return ((pred - target) ** 2).sum() / (2 * pred.shape[0])


def mspn_l2_loss(pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """MSPN ``JointsL2Loss`` at the coarse units: the GT (not the prediction) is zeroed where a joint is not
    visible (weight <= 1), so such joints are regressed to zero; per-sample mean over K*H*W, batch mean."""
    visible = (weight > 1).to(target.dtype)[:, :, None, None]
    return ((pred - target * visible) ** 2).mean(dim=(1, 2, 3)).mean()


def mspn_ohkm_loss(pred: Tensor, target: Tensor, weight: Tensor, topk: int = 8) -> Tensor:
    """MSPN OHKM at the finest unit: per-joint mean over pixels of (pred - gt)^2 (GT not masked), times
    labelled (weight > 0); the ``topk`` largest per sample averaged; batch mean."""
    labelled = (weight > 0).to(pred.dtype)
    per_joint = ((pred - target) ** 2).mean(dim=(2, 3)) * labelled
    hardest, _ = per_joint.topk(min(topk, per_joint.shape[1]), dim=1)
    return hardest.mean(dim=1).mean()


def mean_mse_loss(pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Torch7 ``MSECriterion`` (Newell's hourglass): mean over every element, no target weights."""
    return ((pred - target) ** 2).mean()


def sum_mse_loss(pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Ke et al. eq. (1): (1/K) sum_k sum_{x,y} (P - G)^2, unlabelled joints masked, batch mean."""
    w = (weight > 0).to(pred.dtype)[:, :, None, None]
    return ((pred - target) ** 2 * w).sum(dim=(2, 3)).mean(dim=1).mean()


def output_loss(spec: OutputSpec, pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """The loss ``spec.loss`` names, for one output (without ``spec.weight``)."""
    if pred.shape != target.shape:
        raise ValueError(f"output of shape {tuple(pred.shape)} for a target of shape {tuple(target.shape)}")
    if spec.loss == "mse":
        return joints_mse_loss(pred, target, weight)
    if spec.loss == "ohkm":
        return ohkm_mse_loss(pred, target, weight, spec.topk)
    if spec.loss == "cpm":
        return cpm_euclidean_loss(pred, target, weight)
    if spec.loss == "mspn_l2":
        return mspn_l2_loss(pred, target, weight)
    if spec.loss == "mspn_ohkm":
        return mspn_ohkm_loss(pred, target, weight, spec.topk)
    if spec.loss == "mean_mse":
        return mean_mse_loss(pred, target, weight)
    if spec.loss == "sum_mse":
        return sum_mse_loss(pred, target, weight)
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
