"""Stacked hourglass (Newell et al., ECCV'16) as in the official Torch7 code, and the multi-scale supervised
hourglass of Ke et al. (ICIP'18) built on it.

Stacked hourglass — follows ``princeton-vl/pose-hg-train`` (``hg.lua``, ``layers/Residual.lua``; spec 3.1):

- ``Residual(in, out)``: pre-activation bottleneck BN-ReLU-1x1(out/2)-BN-ReLU-3x3(out/2)-BN-ReLU-1x1(out), skip =
  identity or a 1x1 conv (no BN), plain sum (no activation after it). Every conv has a bias (Torch7 default).
- Stem: 7x7/2 conv + BN + ReLU, Residual(64, 128), 2x2 max-pool, Residual(128, 128), Residual(128, F).
- ``Hourglass(depth, F, modules)``: up1 = modules x Residual on the input; low1 = max-pool then modules x Residual;
  low2 = the next-lower hourglass, or modules x Residual at the bottom; low3 = modules x Residual; output
  up1 + nearest-upsample(low3).
- Per stack: ll = modules x Residual, then ``lin`` (1x1 conv + BN + ReLU), heatmaps = 1x1 conv; before the next
  stack inter <- inter + 1x1(ll) + 1x1(heatmaps). No weight sharing between stacks. Every stack is supervised.
- Defaults nStack 8, nFeats 256, nModules 1, input 256x256 -> 64x64 heatmaps, K = 16 (MPII).
- Initialisation as Torch7's ``reset``: convs U(+-1/sqrt(fan_in)) for weight and bias (PyTorch's default is the
  same bound), BN weight ~ U(0, 1) and bias 0 (Torch7 ``BatchNormalization:reset``; PyTorch would use 1).
- Targets/decoding: :class:`posekit.codecs.torch7.Torch7Gaussian`; loss ``mean_mse`` (Torch7 ``MSECriterion``
  on every stack, weight 1 each).

State-dict keys: the official weights are Torch7 ``.t7`` files (not loadable with safe loading). Attribute names
follow ``bearpaw/pytorch-pose`` (``conv1``, ``layer1-3``, ``hg.{stack}.hg.{level}.{branch}.{block}``, ``res``,
``fc``, ``score``, ``fc_``, ``score_``; Residual ``bn1/conv1/.../downsample.0``), the PyTorch port with released
MPII checkpoints. Its layout is hg.lua's except the stem, which widens one Residual earlier (layer2 = Residual(128,
256), layer3 = Residual(256, 256) against hg.lua's Residual(128, 128), Residual(128, 256)); ``stem="bearpaw"``
builds that stem so its checkpoints load as they are (the loader strips ``module.``; its hg1/hg2/hg4/hg8 use
8/4/2/1 modules: pass ``modules=``). Default ``stem="torch7"``. In a level ``hg.{level}`` (0 = the innermost,
8x8 -> 4x4 for depth 4) branch 0 is up1, 1 low1, 2 low3, 3 (innermost only) the bottom residuals.

Ke et al. multi-scale supervised network — no code was released (spec 3.3); this is the spec 3.4 proposal,
with every choice that the paper does not fix marked [I]:

1. Backbone: the Torch7 stacked hourglass with 4 stacks, 64 features, 1 module [paper: 4 stacks, 64 channels].
2. Side heads ("purple trapezoid" 1x1 convs, F -> K, with bias, no BN/ReLU) on the hourglass decoder's merged
   tensors (up1 + upsample(low3)) at 1/2, 1/4, 1/8 of the stack resolution — 32x32, 16x16, 8x8 for 64x64 maps,
   i.e. strides 8, 16, 32 in input pixels [paper: 1x1 conv at the deconv layers, GT/2, GT/4, GT/8; attaching to
   the merge of each decoder level: I]. Heads in every stack [Fig. 2 suggests it: I]. They are outputs only;
   ``ms_feedback=True`` adds each side heatmap back to its merged tensor through a 1x1 K -> F conv before the
   decoder continues upward, mirroring the inter-stack remap [I, off by default].
3. Down-sampled GT: rendered directly at the side head's resolution by the same Torch7 codec at that stride
   (same sigma in map pixels), so GT/2^k is the Torch7 target of a stride-4·2^k map [I; max-pooling or
   resizing the 64x64 GT are the alternatives, resizing nearly erases a 1.75 px Gaussian at 1/8].
   The Torch7 codec bins a joint with floor(x / stride), so the bins nest across scales exactly as 2x2 max-pool
   and nearest upsampling do in the hourglass. Caveat: the codec reproduces the Lua ``drawGaussian`` left/top
   border quirk by default (see :mod:`posekit.codecs.torch7`), which on the 8x8 GT/8 map moves the targets of
   cells 0-2 (crop x or y < 96 px) one or two cells inward; ``Torch7Gaussian(border_quirk=False)`` draws them
   correctly, but ``build_codec`` cannot select that per output yet.
4. Scales: ``scales`` subset of (2, 4, 8) (any 2^k below the hourglass depth); default (2, 4, 8) as the method
   section describes; the ablation (Fig. 4) and the footnote only use GT/2 and GT/4 (builder
   ``ke_multiscale_hourglass_ablation``).
5. Global keypoint regression network [paper: fully convolutional, input = the last stack's heatmaps
   concatenated with their multi-scale heatmaps]: the last stack's K heatmaps followed by its side heatmaps
   (coarse to fine) bilinearly upsampled to the stack resolution (``align_corners=False``: with floor binning a
   map pixel j at stride s covers crop pixels [s·j, s·j + s), i.e. half-pixel centres, which is what
   ``align_corners=False`` assumes) -> K·(1 + len(scales)) channels (4K for three scales) [upsampling: I].
   ``regressor="hourglass"`` (default) [I]: 1x1 conv (-> F) + BN + ReLU, one depth-4 hourglass of F features,
   modules x Residual, lin, 1x1 -> K: a receptive field covering the whole 64x64 map ("global") built from the
   same conv-deconv pieces. ``regressor="plain"`` [I]: four 7x7 conv (F) + BN + ReLU and a 1x1 -> K, a CPM-stage
   like alternative with a local (25 px) receptive field. ``regression=False`` drops it (ablation).
   Gradients flow from the regression loss into the stacks (end-to-end) [I].
6. Loss: ``sum_mse`` on every output — Ke eq. (1) (1/K) sum_k sum_xy (P - G)^2, batch mean, unlabelled joints
   masked by the target weights; total = plain sum over stacks, scales and the regression output, weights 1
   (``side_weight`` scales the side-head terms) [form: paper; batch mean, masking, regression term: I].
7. Output order: for each stack its side heads (coarse to fine) then its full-resolution heatmaps; the
   regression output last, the one read at test time (without regression: the last stack's heatmaps).
8. Initialisation: Torch7's (BN weight ~ U(0, 1)) for the whole network, side heads and regressor included [I].
9. Test: flip averaging without the one-pixel shift (the Torch7 floor binning makes a plain mirror exact),
   argmax + quarter step + half-pixel offset (the Torch7 codec) [I, as the hourglass code].
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..codecs import OutputSpec
from .blocks import check_input_shape

# Called on each decoder merge of an Hourglass with (factor, merged) where the merge is at 1/factor of the
# hourglass input resolution; what it returns continues up the decoder.
MergeTap = Callable[[int, torch.Tensor], torch.Tensor]


class Residual(nn.Module):
    """Torch7 pre-activation bottleneck: BN-ReLU-1x1(out/2)-BN-ReLU-3x3(out/2)-BN-ReLU-1x1(out) + skip.

    The skip is the identity when ``in_channels == out_channels``, else a 1x1 conv without BN (``downsample``).
    No activation follows the sum.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        if out_channels % 2:
            raise ValueError(f"Residual needs an even number of output channels, got {out_channels}")
        mid = out_channels // 2
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, mid, kernel_size=1, bias=True)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, kernel_size=3, padding=1, bias=True)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_channels, kernel_size=1, bias=True)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (None if in_channels == out_channels
                           else nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=True)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        skip = x if self.downsample is None else self.downsample(x)
        return out + skip


def residuals(in_channels: int, out_channels: int, count: int) -> nn.Sequential:
    """``count`` Residual modules in a row (Torch7's ``for i = 1, nModules`` loops); the first maps the width."""
    return nn.Sequential(*[Residual(in_channels if i == 0 else out_channels, out_channels) for i in range(count)])


def lin(in_channels: int, out_channels: int) -> nn.Sequential:
    """Torch7 ``lin``: 1x1 conv + BN + ReLU."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=True),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class Hourglass(nn.Module):
    """One hourglass (Torch7 ``hourglass(n, f, inp)``), recursive in ``forward``, flat in its parameters.

    ``hg[level]`` serves recursion depth ``level + 1`` (0 = innermost) and holds the Residual stacks
    [up1, low1, low3] plus, at level 0, the bottom stack that replaces the recursion.
    """

    def __init__(self, depth: int = 4, features: int = 256, modules: int = 1):
        super().__init__()
        if depth < 1 or features < 2 or modules < 1:
            raise ValueError(f"Hourglass needs depth >= 1, features >= 2, modules >= 1; "
                             f"got {depth}, {features}, {modules}")
        self.depth = depth
        self.features = features
        levels = []
        for level in range(depth):
            branches = [residuals(features, features, modules) for _ in range(4 if level == 0 else 3)]
            levels.append(nn.ModuleList(branches))
        self.hg = nn.ModuleList(levels)

    def forward(self, x: torch.Tensor, tap: Optional[MergeTap] = None) -> torch.Tensor:
        """The hourglass output (same size as ``x``); ``tap`` sees every decoder merge, coarsest first."""
        return self._level(self.depth, x, tap)

    def _level(self, n: int, x: torch.Tensor, tap: Optional[MergeTap]) -> torch.Tensor:
        up1_branch, low1_branch, low3_branch = self.hg[n - 1][0], self.hg[n - 1][1], self.hg[n - 1][2]
        up1 = up1_branch(x)
        low1 = low1_branch(F.max_pool2d(x, kernel_size=2, stride=2))
        low2 = self._level(n - 1, low1, tap) if n > 1 else self.hg[0][3](low1)
        low3 = low3_branch(low2)
        merged = up1 + F.interpolate(low3, scale_factor=2, mode="nearest")
        if tap is not None:
            merged = tap(2 ** (self.depth - n), merged)
        return merged


class StackedHourglass(nn.Module):
    """Newell et al.'s stacked hourglass (Torch7 ``hg.lua``): returns every stack's K heatmaps at stride 4.

    stacks: nStack; features: nFeats (F); modules: nModules; depth: hourglass depth (4: 64x64 -> 4x4).
    sigma: Torch7 ``hmGauss`` (the target patch is 2·ceil(3 sigma)+1 wide with std 0.25 x that, see the codec).
    target: "torch7" (the original's ``image.gaussian``, effective std 1.75 px for sigma 1) or "gaussian" (an
        exact-sigma Gaussian, the paper's "std 1 px" reading, as bearpaw's port draws it).
    loss: "mean_mse" (Torch7 MSECriterion) or any :data:`posekit.codecs.LOSSES` name.
    torch7_init: Torch7's BN initialisation (weight ~ U(0, 1)); False keeps PyTorch's (weight 1).
    stem: "torch7" (hg.lua) or "bearpaw" (pytorch-pose's stem, to load its checkpoints; see the module docstring).
    """

    input_channels = 3

    def __init__(self, num_keypoints: int = 16, stacks: int = 8, features: int = 256, modules: int = 1,
                 depth: int = 4, sigma: float = 1.0, loss: str = "mean_mse", torch7_init: bool = True,
                 stem: str = "torch7", target: str = "torch7", name: str = "hourglass"):
        super().__init__()
        if target not in ("torch7", "gaussian"):
            raise ValueError(f"target must be 'torch7' or 'gaussian', got {target!r}")
        if stem not in ("torch7", "bearpaw"):
            raise ValueError(f"stem must be 'torch7' or 'bearpaw', got {stem!r}")
        if min(num_keypoints, stacks, modules, depth) < 1 or features < 2 or features % 2:
            raise ValueError(f"need num_keypoints, stacks, modules, depth >= 1 and an even features >= 2; got "
                             f"{num_keypoints}, {stacks}, {modules}, {depth}, {features}")
        self.name = name
        self.num_keypoints = int(num_keypoints)
        self.stacks = int(stacks)
        self.features = int(features)
        self.depth = int(depth)
        self.input_multiple = 4 * 2 ** self.depth
        self.outputs: List[OutputSpec] = [OutputSpec(stride=4, target=target, sigma=float(sigma), loss=loss)
                                          for _ in range(self.stacks)]

        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=True)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = residuals(64, 128, 1)
        self.maxpool = nn.MaxPool2d(2, stride=2)
        # bearpaw widens one Residual earlier than hg.lua (128 -> F, F -> F instead of 128 -> 128, 128 -> F).
        self.layer2 = residuals(128, 128 if stem == "torch7" else features, 1)
        self.layer3 = residuals(128 if stem == "torch7" else features, features, 1)

        last = self.stacks - 1
        self.hg = nn.ModuleList(Hourglass(depth, features, modules) for _ in range(self.stacks))
        self.res = nn.ModuleList(residuals(features, features, modules) for _ in range(self.stacks))
        self.fc = nn.ModuleList(lin(features, features) for _ in range(self.stacks))
        self.score = nn.ModuleList(nn.Conv2d(features, num_keypoints, 1, bias=True) for _ in range(self.stacks))
        # The last stack's prediction is not fed forward, so it has no remap convs (as in hg.lua).
        self.fc_ = nn.ModuleList(nn.Conv2d(features, features, 1, bias=True) for _ in range(last))
        self.score_ = nn.ModuleList(nn.Conv2d(num_keypoints, features, 1, bias=True) for _ in range(last))
        if torch7_init:
            self.init_weights()

    def init_weights(self) -> None:
        """Torch7 ``reset``: BN weight ~ U(0, 1), bias 0; convs keep PyTorch's default, which has Torch7's bound."""
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                nn.init.uniform_(m.weight, 0.0, 1.0)
                nn.init.zeros_(m.bias)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless x is N x 3 x H x W with H and W multiples of 4·2^depth (64 for depth 4)."""
        check_input_shape(x, self.name, 3, self.input_multiple)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """Image -> F features at stride 4."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.maxpool(self.layer1(x))
        return self.layer3(self.layer2(x))

    def stack_head(self, i: int, hourglass_out: torch.Tensor):
        """Stack i's post-hourglass features ``ll`` and its heatmaps."""
        ll = self.fc[i](self.res[i](hourglass_out))
        return ll, self.score[i](ll)

    def remap(self, i: int, inter: torch.Tensor, ll: torch.Tensor, heatmaps: torch.Tensor) -> torch.Tensor:
        """Input of stack i + 1: inter + 1x1(ll) + 1x1(heatmaps)."""
        return inter + self.fc_[i](ll) + self.score_[i](heatmaps)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        self.check_input(x)
        inter = self.stem(x)
        outputs = []
        for i in range(self.stacks):
            ll, heatmaps = self.stack_head(i, self.hg[i](inter))
            outputs.append(heatmaps)
            if i < self.stacks - 1:
                inter = self.remap(i, inter, ll, heatmaps)
        return outputs


class RegressionHourglass(nn.Module):
    """Ke et al.'s global keypoint regression, proposed form: 1x1 (-> F) + BN + ReLU, an hourglass, Residuals,
    lin, 1x1 -> K. Fully convolutional, receptive field over the whole map."""

    def __init__(self, in_channels: int, features: int, num_keypoints: int, depth: int = 4, modules: int = 1):
        super().__init__()
        self.in_channels = in_channels
        self.pre = lin(in_channels, features)
        self.hg = Hourglass(depth, features, modules)
        self.res = residuals(features, features, modules)
        self.fc = lin(features, features)
        self.score = nn.Conv2d(features, num_keypoints, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(self.fc(self.res(self.hg(self.pre(x)))))


class PlainRegressor(nn.Module):
    """Alternative regression network: ``layers`` x (``kernel`` conv + BN + ReLU) and a 1x1 -> K."""

    def __init__(self, in_channels: int, features: int, num_keypoints: int, layers: int = 4, kernel: int = 7):
        super().__init__()
        self.in_channels = in_channels
        body: List[nn.Module] = []
        for i in range(layers):
            body += [nn.Conv2d(in_channels if i == 0 else features, features, kernel, padding=kernel // 2, bias=True),
                     nn.BatchNorm2d(features), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*body)
        self.score = nn.Conv2d(features, num_keypoints, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score(self.body(x))


class MultiScaleHourglass(StackedHourglass):
    """Ke et al. (ICIP'18): stacked hourglass + side heads at the decoder's 1/2, 1/4, 1/8 merges of every stack +
    a global regression network on the last stack's multi-scale heatmaps (see the module docstring).

    scales: down-sampling factors of the supervised decoder merges relative to the stack's map (2 -> GT/2 ...),
        each 2^k with 1 <= k < depth; () gives intermediate supervision only.
    regression / regressor: whether to add the regression network and which ("hourglass" or "plain").
    ms_feedback: add each side heatmap back into its decoder merge through a 1x1 K -> F conv.
    side_weight: loss weight of every side-head output.
    """

    def __init__(self, num_keypoints: int = 16, stacks: int = 4, features: int = 64, scales: Sequence[int] = (2, 4, 8),
                 regression: bool = True, regressor: str = "hourglass", ms_feedback: bool = False,
                 modules: int = 1, depth: int = 4, sigma: float = 1.0, side_weight: float = 1.0,
                 torch7_init: bool = True, name: str = "ke_multiscale_hourglass"):
        allowed = [2 ** k for k in range(1, depth)]
        scales = tuple(int(s) for s in scales)
        if any(s not in allowed for s in scales) or len(set(scales)) != len(scales):
            raise ValueError(f"scales must be distinct values from {tuple(allowed)} (depth {depth}), got {scales}")
        if regressor not in ("hourglass", "plain"):
            raise ValueError(f"regressor must be 'hourglass' or 'plain', got {regressor!r}")
        super().__init__(num_keypoints, stacks, features, modules, depth, sigma, loss="sum_mse",
                         torch7_init=False, name=name)
        # Coarse to fine: the order in which the decoder produces the merges.
        self.scales = tuple(sorted(scales, reverse=True))
        self.regression = bool(regression)
        self.ms_feedback = bool(ms_feedback)
        k = self.num_keypoints
        self.side_heads = nn.ModuleList(
            nn.ModuleList(nn.Conv2d(features, k, 1, bias=True) for _ in self.scales) for _ in range(self.stacks))
        if self.ms_feedback:
            self.side_remaps = nn.ModuleList(
                nn.ModuleList(nn.Conv2d(k, features, 1, bias=True) for _ in self.scales) for _ in range(self.stacks))
        self.regressor: Optional[nn.Module] = None
        if self.regression:
            in_channels = k * (1 + len(self.scales))
            self.regressor = (RegressionHourglass(in_channels, features, k, depth, modules) if regressor == "hourglass"
                              else PlainRegressor(in_channels, features, k))

        main = OutputSpec(stride=4, target="torch7", sigma=float(sigma), loss="sum_mse")
        # Torch7's left/top border defect would shift most of an 8x8 GT/8 target: the side heads get the clean patch.
        side = [OutputSpec(stride=4 * s, target="torch7", sigma=float(sigma), loss="sum_mse", weight=float(side_weight),
                           quirks=False) for s in self.scales]
        self.outputs = (side + [main]) * self.stacks + ([main] if self.regression else [])
        if torch7_init:
            self.init_weights()

    def _side_tap(self, stack: int, collected: List[torch.Tensor]) -> MergeTap:
        index = {s: j for j, s in enumerate(self.scales)}

        def tap(factor: int, merged: torch.Tensor) -> torch.Tensor:
            j = index.get(factor)
            if j is None:
                return merged
            heatmaps = self.side_heads[stack][j](merged)
            collected.append(heatmaps)
            if self.ms_feedback:
                merged = merged + self.side_remaps[stack][j](heatmaps)
            return merged

        return tap

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        self.check_input(x)
        inter = self.stem(x)
        outputs: List[torch.Tensor] = []
        side: List[torch.Tensor] = []
        heatmaps = inter
        for i in range(self.stacks):
            side = []
            ll, heatmaps = self.stack_head(i, self.hg[i](inter, tap=self._side_tap(i, side)))
            outputs += side + [heatmaps]
            if i < self.stacks - 1:
                inter = self.remap(i, inter, ll, heatmaps)
        if self.regressor is not None:
            size = heatmaps.shape[-2:]
            upsampled = [F.interpolate(s, size=size, mode="bilinear", align_corners=False) for s in side]
            outputs.append(self.regressor(torch.cat([heatmaps] + upsampled, dim=1)))
        return outputs


# ------------------------------------------------------------------------------------------------- builders

def hourglass_1stack(num_keypoints: int = 16, **kwargs) -> StackedHourglass:
    """One hourglass, 256 features, 1 module (Torch7 options -nStack 1)."""
    return StackedHourglass(num_keypoints, **{"stacks": 1, "name": "hourglass_1stack", **kwargs})


def hourglass_2stack(num_keypoints: int = 16, **kwargs) -> StackedHourglass:
    """Two stacks, 256 features, 1 module."""
    return StackedHourglass(num_keypoints, **{"stacks": 2, "name": "hourglass_2stack", **kwargs})


def hourglass_4stack(num_keypoints: int = 16, **kwargs) -> StackedHourglass:
    """Four stacks, 256 features, 1 module."""
    return StackedHourglass(num_keypoints, **{"stacks": 4, "name": "hourglass_4stack", **kwargs})


def hourglass_8stack(num_keypoints: int = 16, **kwargs) -> StackedHourglass:
    """The paper's model: 8 stacks, 256 features, 1 module (25,434,112 parameters with 16 keypoints)."""
    return StackedHourglass(num_keypoints, **{"stacks": 8, "name": "hourglass_8stack", **kwargs})


def ke_multiscale_hourglass(num_keypoints: int = 16, **kwargs) -> MultiScaleHourglass:
    """Ke et al.: 4 stacks x 64 features, side supervision GT/2, GT/4, GT/8 in every stack, regression net."""
    return MultiScaleHourglass(num_keypoints, **{"name": "ke_multiscale_hourglass", **kwargs})


def ke_multiscale_hourglass_ablation(num_keypoints: int = 16, **kwargs) -> MultiScaleHourglass:
    """Ke et al.'s best ablation setting (Fig. 4): side supervision GT/2 and GT/4 only, regression net."""
    return MultiScaleHourglass(num_keypoints, **{"scales": (2, 4), "name": "ke_multiscale_hourglass_ablation",
                                                 **kwargs})
