"""posekit's HRNet-W32 against MMPose's on the same weights: outputs, eager forward time and training-step time.

    python benchmarks/hrnet_vs_mmpose.py [--rounds 10] [--batch 1 8] [--train-batch 8] [--threads 2]

Needs MMPose's HRNet backbone importable (``pip install mmengine mmcv-lite mmpose``; only
``mmpose/models/backbones/hrnet.py`` and what it imports are loaded, so MMPose's compiled extras are not needed).
MMPose's model is its HRNet backbone followed by HeatmapHead's final 1x1 convolution, which is what its
``td-hm_hrnet-w32_8xb64-210e_coco-256x192`` config builds; both get posekit's calibrated random weights (the
same tensors), and their heatmaps must agree to float rounding before anything is timed.

Timing: one process, the two models interleaved round by round (A B A B ...), median of the rounds, so that
the load of a shared machine falls on both alike. The training step is forward + MSE loss + backward + one SGD
step, from identical weights, in train mode.
"""
from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time
import types
from typing import Callable, Dict, List

import torch
from torch import nn

from posekit.deploy.bench import calibrate_random_weights
from posekit.models import create_model

MMPOSE_W32 = dict(
    stage1=dict(num_modules=1, num_branches=1, block="BOTTLENECK", num_blocks=(4,), num_channels=(64,)),
    stage2=dict(num_modules=1, num_branches=2, block="BASIC", num_blocks=(4, 4), num_channels=(32, 64)),
    stage3=dict(num_modules=4, num_branches=3, block="BASIC", num_blocks=(4, 4, 4), num_channels=(32, 64, 128)),
    stage4=dict(num_modules=3, num_branches=4, block="BASIC", num_blocks=(4, 4, 4, 4),
                num_channels=(32, 64, 128, 256)),
)


def mmpose_hrnet_class() -> type:
    """MMPose's HRNet backbone class, loaded without running mmpose/__init__ (which needs compiled mmcv ops)."""
    import mmengine

    site = os.path.dirname(mmengine.__path__[0])
    for name in ("mmpose", "mmpose.models", "mmpose.models.backbones"):
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [os.path.join(site, *name.split("."))]
            sys.modules[name] = package
    return importlib.import_module("mmpose.models.backbones.hrnet").HRNet


class MMPoseTopDown(nn.Module):
    """MMPose's top-down HRNet: backbone, then HeatmapHead's final_layer (no deconvolutions, no extra convs)."""

    def __init__(self, num_keypoints: int = 17):
        super().__init__()
        self.backbone = mmpose_hrnet_class()(extra=MMPOSE_W32, in_channels=3)
        self.final_layer = nn.Conv2d(32, num_keypoints, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.backbone(x)[-1])


def same_weights(posekit_model: nn.Module, mmpose_model: MMPoseTopDown) -> None:
    state = posekit_model.state_dict()
    head = {k[len("final_layer."):]: v for k, v in state.items() if k.startswith("final_layer.")}
    body = {k: v for k, v in state.items() if not k.startswith("final_layer.")}
    mmpose_model.backbone.load_state_dict(body, strict=True)
    mmpose_model.final_layer.load_state_dict(head, strict=True)


def interleaved(runs: Dict[str, Callable[[], None]], rounds: int) -> Dict[str, float]:
    for run in runs.values():       # warm-up: allocator, oneDNN primitives
        run()
        run()
    times: Dict[str, List[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1000 for name, t in times.items()}


def train_step(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> Callable[[], None]:
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)

    def step() -> None:
        out = model(x)
        heatmaps = out[-1] if isinstance(out, (list, tuple)) else out
        loss = ((heatmaps - target) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        mmpose = MMPoseTopDown()
    except ImportError as exc:
        print(f"MMPose's HRNet cannot be imported ({exc}): pip install mmengine mmcv-lite mmpose")
        return 1
    ours = calibrate_random_weights(create_model("hrnet_w32", num_keypoints=17), (256, 192))
    same_weights(ours, mmpose)
    ours.eval(), mmpose.eval()
    x = torch.randn(max(args.batch), 3, 256, 192, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = ours(x)[-1], mmpose(x)
    diff = (a - b).abs().max().item() / a.abs().max().item()
    print(f"torch {torch.__version__}, {args.threads} threads; heatmaps differ by {diff:.2e} of their range")
    if diff > 1e-5:
        print("the two models do not compute the same function: not timing")
        return 1
    print("| measurement | posekit (ms) | MMPose (ms) | posekit / MMPose |\n|---|---|---|---|")
    for batch in args.batch:
        xb = x[:batch].contiguous()

        def forward(model: nn.Module) -> Callable[[], None]:
            def run() -> None:
                with torch.no_grad():
                    model(xb)
            return run

        ms = interleaved({"posekit": forward(ours), "mmpose": forward(mmpose)}, args.rounds)
        print(f"| eager forward, batch {batch} | {ms['posekit']:.1f} | {ms['mmpose']:.1f} | "
              f"{ms['posekit'] / ms['mmpose']:.3f} |", flush=True)
    xt = torch.randn(args.train_batch, 3, 256, 192, generator=torch.Generator().manual_seed(1))
    target = torch.rand(args.train_batch, 17, 64, 48, generator=torch.Generator().manual_seed(2))
    ours.train(), mmpose.train()
    ms = interleaved({"posekit": train_step(ours, xt, target), "mmpose": train_step(mmpose, xt, target)},
                     max(3, args.rounds // 2))
    print(f"| training step, batch {args.train_batch} | {ms['posekit']:.1f} | {ms['mmpose']:.1f} | "
          f"{ms['posekit'] / ms['mmpose']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
