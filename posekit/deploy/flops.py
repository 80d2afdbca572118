"""Parameter and multiply-accumulate counts, and the model summary shown by ``posekit info``.

MACs come from ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2). It counts convolutions and
matrix products only, which is also what the pose papers report as "GFLOPs" (HRNet, SimpleBaseline:
conv multiply-adds); BN, ReLU, additions, upsampling and the conv biases are not counted. The papers'
"G" is 2**30.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from ..models import create_model

GIGA = 2 ** 30


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (buffers such as BN running statistics are not parameters)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _forward_counted(model: nn.Module, input_hw: Tuple[int, int], batch: int) -> Tuple[int, List[torch.Tensor]]:
    # Eval mode so that counting never touches BN running statistics of a real model; mode restored after.
    was_training = model.training
    model.eval()
    try:
        channels = getattr(model, "input_channels", 3)   # CPM takes the centre map as a 4th channel
        x = torch.zeros(batch, channels, int(input_hw[0]), int(input_hw[1]), device=_device_of(model))
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            out = model(x)
    finally:
        model.train(was_training)
    outputs = list(out) if isinstance(out, (list, tuple)) else [out]
    return counter.get_total_flops(), outputs


def count_macs(model: nn.Module, input_hw: Tuple[int, int], batch: int = 1) -> int:
    """Multiply-accumulates of one forward pass on a batch of ``input_hw`` (height, width) images.

    Fast on a model built on the meta device (``with torch.device("meta"): model = ...``), which
    computes shapes only.
    """
    flops, _ = _forward_counted(model, input_hw, batch)
    return flops // 2


def model_summary(name: str, input_hw: Tuple[int, int], num_keypoints: int = 17) -> Dict[str, object]:
    """Parameters, MACs (also in G = 2**30 units) and output shapes of a named model at one input size.

    The model is built on the meta device: no memory for weights, no arithmetic, only shapes.
    """
    with torch.device("meta"):
        model = create_model(name, num_keypoints=num_keypoints)
    flops, outputs = _forward_counted(model, input_hw, batch=1)
    macs = flops // 2
    return {
        "name": name,
        "input_hw": (int(input_hw[0]), int(input_hw[1])),
        "num_keypoints": int(num_keypoints),
        "params": count_parameters(model),
        "macs": macs,
        "gmacs": macs / GIGA,
        "output_shapes": [tuple(o.shape) for o in outputs],
        "output_strides": [spec.stride for spec in getattr(model, "outputs", [])],
    }
