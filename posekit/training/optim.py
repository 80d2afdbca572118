"""The optimiser, its learning-rate schedule (warm-up, multi-step, cosine, linear), the learning rate scaled to
the total batch, and the moving average of the weights."""
from __future__ import annotations

import copy
import math
from dataclasses import replace
from typing import Callable, Optional

import torch
from torch import nn

from ..config import Config
from ..errors import ConfigError


def lr_factor_fn(cfg: Config, steps_per_epoch: int) -> Callable[[int], float]:
    """Per-iteration LR multiplier: warm-up, then the schedule (multi-step by epochs, cosine, linear)."""
    t = cfg.train
    total = max(1, t.epochs * steps_per_epoch)
    if t.max_steps:
        total = min(total, t.max_steps)

    def factor(step: int) -> float:
        if t.lr_schedule == "multistep":
            epoch = step // steps_per_epoch
            value = t.lr_factor ** sum(epoch >= m for m in t.lr_steps)
        elif t.lr_schedule == "step":
            value = t.lr_factor ** (step // max(1, t.lr_step_iters))
        elif t.lr_schedule == "cosine":
            value = 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        elif t.lr_schedule == "linear":
            value = max(0.0, 1 - max(0, step - t.warmup_iters) / max(1, total - t.warmup_iters))
        else:   # constant
            value = 1.0
        if step < t.warmup_iters:
            value *= t.warmup_factor + (1 - t.warmup_factor) * step / t.warmup_iters
        return value

    return factor


def scaled_lr(cfg: Config, world_size: int = 1) -> float:
    """train.lr under train.lr_scale: as given (none), or times the total batch over train.lr_reference_batch
    (linear; the reference defaults to train.batch_size, i.e. train.lr is the rate for one process)."""
    t = cfg.train
    if t.lr_scale == "none":
        return t.lr
    if t.lr_scale == "linear":
        reference = t.lr_reference_batch or t.batch_size
        return t.lr * t.batch_size * world_size * t.accumulate_steps / reference
    raise ConfigError(f"train.lr_scale must be none or linear, got {t.lr_scale!r}", "train.lr_scale")


def build_optimizer(cfg: Config, model: nn.Module, lr: Optional[float] = None) -> torch.optim.Optimizer:
    """cfg's optimizer over model's parameters, at ``lr`` (default train.lr)."""
    t = replace(cfg.train, lr=cfg.train.lr if lr is None else lr)
    # A model may carry its paper's per-layer learning-rate multipliers (CPM's Caffe lr_mult / decay_mult).
    params = (model.param_groups(t.lr, t.weight_decay) if hasattr(model, "param_groups")
              else [p for p in model.parameters() if p.requires_grad])
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    # rmsprop: Torch7 optim.rmsprop (Newell): alpha 0.99, eps 1e-8, no momentum
    return torch.optim.RMSprop(params, lr=t.lr, alpha=t.rmsprop_alpha, eps=1e-8, weight_decay=t.weight_decay)


class ModelEMA:
    """Exponential moving average of a model's state: after each optimizer step every floating-point entry
    (weights and BN statistics) becomes ``decay * ema + (1 - decay) * current``; integer entries are copied."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"an EMA decay must be in (0, 1), got {decay}", "train.ema_decay")
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        current = model.state_dict()
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(self.decay).add_(current[name].detach(), alpha=1.0 - self.decay)
            else:
                value.copy_(current[name])
