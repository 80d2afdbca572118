"""HRNet (Sun et al., CVPR'19) as in the official ``pose_hrnet.py`` (spec 5.1), with its state-dict keys (spec 5.2).

Module attribute names and nesting (``transition1.1.0.0``, ``stage3.2.fuse_layers.2.0.1.0`` ...) are the
official ones, so official checkpoints load as they are. The model returns a one-element list of
N x K x H/4 x W/4 heatmaps and declares that output in ``outputs``.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import nn

from ..codecs import OutputSpec
from .blocks import BN_MOMENTUM, BasicBlock, Bottleneck, check_input_shape, init_normal, make_layer

# Input height and width must be multiples of this: the lowest-resolution branch is at stride 32 and
# the nearest-neighbour upsampling in the fusion only lines up when every stride-2 conv halves exactly.
INPUT_MULTIPLE = 32


def _downsample_path(in_channels: int, out_channels: int, steps: int) -> nn.Sequential:
    """Fusion path from a higher to a lower resolution: ``steps`` stride-2 3x3 convs.

    All but the last keep ``in_channels`` and end in ReLU; the last maps to ``out_channels`` and has no
    ReLU because the ReLU comes after the sum of all paths.
    """
    convs = []
    for step in range(steps):
        last = step == steps - 1
        out = out_channels if last else in_channels
        layers: List[nn.Module] = [nn.Conv2d(in_channels, out, 3, 2, 1, bias=False), nn.BatchNorm2d(out)]
        if not last:
            layers.append(nn.ReLU(inplace=True))
        convs.append(nn.Sequential(*layers))
    return nn.Sequential(*convs)


class HighResolutionModule(nn.Module):
    """Parallel branches of BasicBlocks followed by the exchange unit (fusion by summation).

    ``fuse_layers[i][j]`` maps branch j to the resolution and width of output i; the diagonal entries are
    ``None`` (identity). With ``multi_scale_output=False`` only output 0 is computed (last module of HRNet).
    """

    def __init__(self, in_channels: Sequence[int], channels: Sequence[int], num_blocks: int,
                 multi_scale_output: bool = True):
        super().__init__()
        if len(in_channels) != len(channels) or len(channels) < 2:
            raise ValueError(f"need >= 2 branches with matching input widths, got {list(in_channels)} -> {list(channels)}")
        self.num_branches = len(channels)
        self.multi_scale_output = multi_scale_output
        self.branches = nn.ModuleList(
            make_layer(BasicBlock, cin, c, num_blocks) for cin, c in zip(in_channels, channels)
        )
        self.out_channels = [c * BasicBlock.expansion for c in channels]
        width = self.out_channels
        fuse_layers = []
        for i in range(self.num_branches if multi_scale_output else 1):
            row: List[Optional[nn.Module]] = []
            for j in range(self.num_branches):
                if j > i:
                    # BN with PyTorch's default momentum here, as in the official code (also 0.1).
                    row.append(nn.Sequential(
                        nn.Conv2d(width[j], width[i], 1, 1, 0, bias=False),
                        nn.BatchNorm2d(width[i]),
                        nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"),
                    ))
                elif j == i:
                    row.append(None)
                else:
                    row.append(_downsample_path(width[j], width[i], i - j))
            fuse_layers.append(nn.ModuleList(row))
        self.fuse_layers = nn.ModuleList(fuse_layers)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: List[torch.Tensor]) -> List[torch.Tensor]:
        x = [branch(xi) for branch, xi in zip(self.branches, x)]
        fused = []
        for i, row in enumerate(self.fuse_layers):
            # Summation order as in the official code (branch 0 first), so results match it bit for bit. The sum
            # goes in place once y is this row's own tensor (a BN or conv output, which autograd does not keep);
            # a branch output itself is read by the other rows and is never written.
            y, own = (x[0], False) if i == 0 else (row[0](x[0]), True)
            for j in range(1, self.num_branches):
                term = x[j] if i == j else row[j](x[j])
                if own and term.dtype == y.dtype:
                    y += term
                else:
                    y, own = y + term, True
            fused.append(self.relu(y))
        return fused


def _transition(prev_channels: Sequence[int], channels: Sequence[int]) -> nn.ModuleList:
    """Entries for existing branches (a 3x3 conv only when the width changes, else ``None``) and new branches.

    A new branch i is made from the last (lowest-resolution) previous output by i + 1 - len(prev) stride-2
    3x3 convs, each with BN and ReLU.
    """
    layers: List[Optional[nn.Module]] = []
    for i, c in enumerate(channels):
        if i < len(prev_channels):
            if prev_channels[i] != c:
                layers.append(nn.Sequential(
                    nn.Conv2d(prev_channels[i], c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)))
            else:
                layers.append(None)
        else:
            convs = []
            steps = i + 1 - len(prev_channels)
            cin = prev_channels[-1]
            for step in range(steps):
                cout = c if step == steps - 1 else cin
                convs.append(nn.Sequential(
                    nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)))
            layers.append(nn.Sequential(*convs))
    return nn.ModuleList(layers)


class HRNet(nn.Module):
    """Pose HRNet: stem (two stride-2 convs + Bottleneck layer1), stages 2-4 with 2/3/4 branches, 1x1 head.

    width: C; the branches have C, 2C, 4C, 8C channels.
    stage_modules: number of HighResolutionModules in stages 2, 3, 4 (official: 1, 4, 3).
    stage_blocks: BasicBlocks per branch in each module of stages 2, 3, 4 (official: 4, 4, 4).
    stem_blocks: Bottlenecks in layer1 (official: 4); stem_width: channels of conv1/conv2 and the
    Bottleneck planes of layer1 (official: 64, so layer1 gives 256).
    final_kernel: 1 (official) or 3 for the head conv.
    sigma: Gaussian sigma (heatmap pixels) declared for the target (2 at 256x192, 3 at 384x288).
    init: "official" (convs ~ N(0, 0.001^2), made for an ImageNet-pretrained backbone) or "kaiming" (He normal,
    fan-out: the usual start for training from scratch).
    """

    def __init__(self, num_keypoints: int = 17, width: int = 32, stage_modules: Sequence[int] = (1, 4, 3),
                 stage_blocks: Sequence[int] = (4, 4, 4), stem_blocks: int = 4, stem_width: int = 64,
                 final_kernel: int = 1, sigma: float = 2.0, init: str = "official", name: str = "hrnet"):
        super().__init__()
        if len(stage_modules) != 3 or len(stage_blocks) != 3:
            raise ValueError(f"stage_modules and stage_blocks need 3 entries (stages 2-4), got "
                             f"{tuple(stage_modules)} and {tuple(stage_blocks)}")
        if init not in ("official", "kaiming"):
            raise ValueError(f"init must be official or kaiming, got {init!r}")
        if final_kernel not in (1, 3):
            raise ValueError(f"final_kernel must be 1 or 3, got {final_kernel}")
        if min(num_keypoints, width, stem_blocks, stem_width, *stage_modules, *stage_blocks) < 1:
            raise ValueError("num_keypoints, width, stem sizes, stage_modules and stage_blocks must be >= 1")
        self.name = name
        self.num_keypoints = int(num_keypoints)
        self.width = int(width)
        self.input_channels = 3
        self.outputs: List[OutputSpec] = [OutputSpec(stride=4, target="gaussian", sigma=float(sigma), loss="mse")]

        self.conv1 = nn.Conv2d(3, stem_width, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width, momentum=BN_MOMENTUM)
        self.conv2 = nn.Conv2d(stem_width, stem_width, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(stem_width, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = make_layer(Bottleneck, stem_width, stem_width, stem_blocks)

        prev = [stem_width * Bottleneck.expansion]
        for stage, (modules, blocks) in enumerate(zip(stage_modules, stage_blocks), start=2):
            channels = [width * 2 ** b for b in range(stage)]
            setattr(self, f"transition{stage - 1}", _transition(prev, channels))
            # The transition already gives every branch its final width, so each module maps channels -> channels.
            units = [HighResolutionModule(channels, channels, blocks, multi_scale_output=not (stage == 4 and m == modules - 1))
                     for m in range(modules)]
            setattr(self, f"stage{stage}", nn.Sequential(*units))
            prev = channels

        self.final_layer = nn.Conv2d(width, self.num_keypoints, kernel_size=final_kernel, stride=1,
                                     padding=1 if final_kernel == 3 else 0)
        self.init_weights(init)

    def init_weights(self, init: str = "official") -> None:
        """Official: conv weights ~ N(0, 0.001^2); kaiming: He normal (fan-out) except the head, which stays
        N(0, 0.001^2) so that the first heatmaps are near zero. Biases 0, BN weight 1 and bias 0 in both."""
        init_normal(self, std=0.001)
        if init == "kaiming":
            for m in self.modules():
                if isinstance(m, nn.Conv2d) and m is not self.final_layer:
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless x is N x 3 x H x W with H and W multiples of 32."""
        check_input_shape(x, self.name, 3, INPUT_MULTIPLE)

    @staticmethod
    def _enter_stage(transition: nn.ModuleList, y_list: List[torch.Tensor]) -> List[torch.Tensor]:
        # New branches grow out of the lowest-resolution output of the previous stage.
        return [y_list[i] if t is None else t(y_list[i] if i < len(y_list) else y_list[-1])
                for i, t in enumerate(transition)]

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        self.check_input(x)
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.layer1(x)
        y_list = self.stage2([x if t is None else t(x) for t in self.transition1])
        y_list = self.stage3(self._enter_stage(self.transition2, y_list))
        y_list = self.stage4(self._enter_stage(self.transition3, y_list))
        return [self.final_layer(y_list[0])]


def hrnet_w32(num_keypoints: int = 17, **kwargs) -> HRNet:
    """HRNet-W32 (28.5 M parameters with 17 keypoints)."""
    return HRNet(num_keypoints, **{"width": 32, "name": "hrnet_w32", **kwargs})


def hrnet_w48(num_keypoints: int = 17, **kwargs) -> HRNet:
    """HRNet-W48 (63.6 M parameters with 17 keypoints)."""
    return HRNet(num_keypoints, **{"width": 48, "name": "hrnet_w48", **kwargs})


def hrnet_w16_small(num_keypoints: int = 17, **kwargs) -> HRNet:
    """A reduced HRNet for CPU demos and tests: width 16, one module per stage, two blocks per branch."""
    defaults = dict(width=16, stage_modules=(1, 1, 1), stage_blocks=(2, 2, 2), stem_blocks=1, stem_width=64,
                    name="hrnet_w16_small")
    return HRNet(num_keypoints, **{**defaults, **kwargs})
