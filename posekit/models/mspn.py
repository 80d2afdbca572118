"""MSPN, the multi-stage pose network of Li et al., "Rethinking on Multi-Stage Networks for Human Pose
Estimation" (arXiv 1901.00148), as in the official ``megvii-detection/MSPN`` code (``exps/mspn.2xstg.coco/
network.py``, spec 4.2).

Every convolution is ``conv_bn_relu``: a conv *with bias*, BN, and an optional ReLU. A ResNet top (7x7 stride 2
+ max-pool) runs once; each stage is a ResNet-50 down-sampling module (layers [3, 4, 6, 3]) and an up-sampling
module of four units (256 channels, coarse 1/32 to fine 1/4), each unit predicting heatmaps that are
bilinearly up-sampled to the stride-4 output. Every stage but the last hands two 1x1 flows per scale (``skip1``
from the unit's lateral input, ``skip2`` from its output) to the next stage, which adds them after each of its
ResNet layers, and a 1x1 ``cross_conv`` (256 -> 64 at 1/4) that replaces the ResNet top as the next stage's input.
Module names reproduce the official state-dict keys (``top.conv.conv.weight``,
``stage1.downsample.layer3.0.conv_bn_relu2.bn.running_var``, ``stage0.upsample.up4.cross_conv.conv.bias`` ...),
so official checkpoints (``iter-N.pth['model']``) load as they are.

``forward`` returns all 4 x S heatmaps (stage by stage, coarse to fine); the last one, the last stage's finest
unit, is the prediction. Targets (spec 4.3): label kernels (15, 11, 9, 7, 5); unit j of every stage uses kernel
j, the last stage uses j + 1 (coarse-to-fine), i.e. 11, 9, 7, 5. Loss (spec 4.4): plain L2 x 0.25 on the three
coarse units (GT masked to visible joints), OHKM top-8 x 1 on the finest.

Paper vs official code (default = code):
- cross-stage aggregation: the paper's Fig. 2 feeds the flows into the next stage's down-sampling; the code adds
  them *after* each ResNet layer (x_l + skip1_l + skip2_l is the input of layer l+1). The code is followed.
- the paper's two-stage ablation (Table 7) says kernels (7, 5) for the finest units; the code's schedule (all
  four units supervised with 15/11/9/7, last stage 11/9/7/5) gives exactly that for 2 stages. ``coarse_to_fine
  =False`` supervises the last stage like the others (Table 7 setting 1, for two stages).
- 384x288: the official repository has no configuration; ``kernels="384x288"`` selects (23, 17, 13, 9, 7) — the
  first four are the 96x72 kernels of CPN (the group's predecessor, spec 4.3), the fifth is a proposal (spec 4.3,
  [I]).
- init: Kaiming-normal (fan_out) for the convs of each down-sampling module, BN 1/0 there, PyTorch defaults
  elsewhere — as the code. ImageNet ResNet-50 weights: the code loads a renamed file (not shipped) by
  longest-suffix key matching, so which stages receive them is unknown; :func:`load_imagenet_resnet` loads a
  torchvision-layout file into the top and *every* stage (as MMPose, spec 4.2 recommendation) and zeroes the
  loaded convs' biases.
- ``width`` (ResNet base width, official 64) and ``channels`` (up-sampling width, official 256) exist to make
  small models for tests and CPU demos; anything but 64 / 256 has no official counterpart.
- ``efficient=True`` recomputes every conv_bn_relu in the backward pass (the official ``RUN_EFFICIENT``, used for
  MPII) to save memory; results are the same.
- FLOPs: paper Table 3 gives 4.4 / 9.6 / 14.7 / 19.9 G for 1-4 stages at 256x192; the official network has
  4.72 / 10.49 / 16.25 / 22.02 G conv multiply-adds (2^30 units, bilinear resizing not counted). The paper's
  per-stage increment (~5.2 G) is below the code's (5.77 G, of which 1.10 G are the skip1/skip2 1x1 convs).
"""
from __future__ import annotations

import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..codecs import OutputSpec
from .blocks import check_input_shape

INPUT_MULTIPLE = 32
RESNET50_LAYERS = (3, 4, 6, 3)

# Label kernel sets (coarse to fine); unit j of a stage uses kernels[j], the last stage kernels[j + 1].
GAUSSIAN_KERNELS = {
    "256x192": (15, 11, 9, 7, 5),   # official COCO (and MPII 256x256) [MSPN attribute.py]
    "384x288": (23, 17, 13, 9, 7),  # proposal: CPN's 96x72 kernels + 7 (spec 4.3, not in the MSPN repo)
}


class ConvBnRelu(nn.Module):
    """Official ``conv_bn_relu``: Conv2d with bias -> BN -> optional ReLU (keys ``conv.*``, ``bn.*``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 relu: bool = True, efficient: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding)
        self.bn = nn.BatchNorm2d(out_channels)
        self.has_relu = relu
        self.efficient = efficient

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.has_relu else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.efficient and self.training and torch.is_grad_enabled():
            return checkpoint(self._run, x, use_reentrant=False)
        return self._run(x)


class MSPNBottleneck(nn.Module):
    """ResNet v1 bottleneck with MSPN's naming: conv_bn_relu1 (1x1), conv_bn_relu2 (3x3, stride), conv_bn_relu3
    (1x1, x4 channels, no ReLU), shortcut ``downsample`` (1x1 conv + BN) when the shape changes."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None,
                 efficient: bool = False):
        super().__init__()
        self.conv_bn_relu1 = ConvBnRelu(in_channels, planes, 1, efficient=efficient)
        self.conv_bn_relu2 = ConvBnRelu(planes, planes, 3, stride, 1, efficient=efficient)
        self.conv_bn_relu3 = ConvBnRelu(planes, planes * self.expansion, 1, relu=False, efficient=efficient)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_bn_relu3(self.conv_bn_relu2(self.conv_bn_relu1(x)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class ResNetTop(nn.Module):
    """7x7 stride-2 conv_bn_relu (3 -> 64) and a 3x3 stride-2 max-pool: the stride-4 input of stage 0."""

    def __init__(self, width: int = 64, efficient: bool = False):
        super().__init__()
        self.conv = ConvBnRelu(3, width, 7, 2, 3, efficient=efficient)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.conv(x))


def _planes(width: int) -> Tuple[int, ...]:
    return (width, 2 * width, 4 * width, 8 * width)


def _lateral_channels(width: int) -> Tuple[int, ...]:
    """Down-sampling outputs seen by units up1..up4 (coarse to fine): 2048, 1024, 512, 256 for width 64."""
    return tuple(p * MSPNBottleneck.expansion for p in reversed(_planes(width)))


def _resnet_layer(in_channels: int, planes: int, blocks: int, stride: int, efficient: bool) -> nn.Sequential:
    downsample = None
    if stride != 1 or in_channels != planes * MSPNBottleneck.expansion:
        downsample = ConvBnRelu(in_channels, planes * MSPNBottleneck.expansion, 1, stride, relu=False,
                                efficient=efficient)
    layers = [MSPNBottleneck(in_channels, planes, stride, downsample, efficient)]
    layers += [MSPNBottleneck(planes * MSPNBottleneck.expansion, planes, efficient=efficient) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class DownsampleModule(nn.Module):
    """ResNet layer1..layer4 (64 -> 256, 512, 1024, 2048 channels at strides 4..32 for width 64).

    With ``has_skip`` the previous stage's two flows are added after each layer (official placement).
    """

    def __init__(self, layers: Sequence[int] = RESNET50_LAYERS, has_skip: bool = False, width: int = 64,
                 efficient: bool = False):
        super().__init__()
        self.has_skip = has_skip
        in_channels = width
        for index, (planes, blocks) in enumerate(zip(_planes(width), layers), start=1):
            setattr(self, f"layer{index}", _resnet_layer(in_channels, planes, blocks, 1 if index == 1 else 2, efficient))
            in_channels = planes * MSPNBottleneck.expansion
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor, skip1: Optional[List[torch.Tensor]] = None,
                skip2: Optional[List[torch.Tensor]] = None) -> List[torch.Tensor]:
        """Returns [x1, x2, x3, x4] (fine to coarse); skips are given fine to coarse too."""
        features = []
        for index, layer in enumerate((self.layer1, self.layer2, self.layer3, self.layer4)):
            x = layer(x)
            if self.has_skip:
                x = x + skip1[index] + skip2[index]
            features.append(x)
        return features


def _resize(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    # align_corners=True at the same size samples exactly the input pixels: skip the no-op.
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class UpsampleUnit(nn.Module):
    """One scale of the up-sampling path (``index`` 0 = 1/32 ... 3 = 1/4).

    out = ReLU(u_skip(x) + up_conv(bilinear(previous out))); heatmaps = res_conv2(res_conv1(out)) resized to the
    output size; optional skip1(x), skip2(out) for the next stage and, at index 3, cross_conv(out).
    """

    def __init__(self, index: int, in_channels: int, num_keypoints: int, channels: int = 256,
                 gen_skip: bool = False, gen_cross_conv: bool = False, cross_channels: int = 64,
                 efficient: bool = False):
        super().__init__()
        self.index = index
        self.u_skip = ConvBnRelu(in_channels, channels, 1, relu=False, efficient=efficient)
        if index > 0:
            self.up_conv = ConvBnRelu(channels, channels, 1, relu=False, efficient=efficient)
        self.gen_skip = gen_skip
        if gen_skip:
            self.skip1 = ConvBnRelu(in_channels, in_channels, 1, efficient=efficient)
            self.skip2 = ConvBnRelu(channels, in_channels, 1, efficient=efficient)
        self.gen_cross_conv = gen_cross_conv and index == 3
        if self.gen_cross_conv:
            self.cross_conv = ConvBnRelu(channels, cross_channels, 1, efficient=efficient)
        self.res_conv1 = ConvBnRelu(channels, channels, 1, efficient=efficient)
        self.res_conv2 = ConvBnRelu(channels, num_keypoints, 3, 1, 1, relu=False, efficient=efficient)

    def forward(self, x: torch.Tensor, previous: Optional[torch.Tensor], output_size: Tuple[int, int]):
        out = self.u_skip(x)
        if self.index > 0:
            out = out + self.up_conv(_resize(previous, tuple(x.shape[-2:])))
        out = F.relu(out)
        heatmaps = _resize(self.res_conv2(self.res_conv1(out)), output_size)
        skip1 = self.skip1(x) if self.gen_skip else None
        skip2 = self.skip2(out) if self.gen_skip else None
        cross = self.cross_conv(out) if self.gen_cross_conv else None
        return out, heatmaps, skip1, skip2, cross


class UpsampleModule(nn.Module):
    """Units up1 (on x4, 1/32) .. up4 (on x1, 1/4)."""

    def __init__(self, num_keypoints: int, channels: int = 256, gen_skip: bool = False, gen_cross_conv: bool = False,
                 width: int = 64, efficient: bool = False):
        super().__init__()
        for index, in_channels in enumerate(_lateral_channels(width)):
            setattr(self, f"up{index + 1}", UpsampleUnit(index, in_channels, num_keypoints, channels, gen_skip,
                                                         gen_cross_conv, width, efficient))

    def forward(self, features: List[torch.Tensor]):
        """features [x1, x2, x3, x4] -> (heatmaps coarse to fine, skip1 / skip2 fine to coarse, cross feature)."""
        output_size = tuple(features[0].shape[-2:])
        out, heatmaps, skip1, skip2, cross = None, [], [], [], None
        for unit, x in zip((self.up1, self.up2, self.up3, self.up4), reversed(features)):
            out, res, s1, s2, c = unit(x, out, output_size)
            heatmaps.append(res)
            skip1.insert(0, s1)
            skip2.insert(0, s2)
            cross = c if c is not None else cross
        return heatmaps, skip1, skip2, cross


class SingleStageModule(nn.Module):
    """One MSPN stage: ``downsample`` (ResNet-50 body) then ``upsample`` (four units)."""

    def __init__(self, num_keypoints: int, has_skip: bool, gen_skip: bool, channels: int = 256,
                 layers: Sequence[int] = RESNET50_LAYERS, width: int = 64, efficient: bool = False):
        super().__init__()
        self.downsample = DownsampleModule(layers, has_skip, width, efficient)
        self.upsample = UpsampleModule(num_keypoints, channels, gen_skip, gen_skip, width, efficient)

    def forward(self, x, skip1, skip2):
        return self.upsample(self.downsample(x, skip1, skip2))


def _kernel_set(kernels: Union[str, Sequence[int]]) -> Tuple[int, ...]:
    if isinstance(kernels, str):
        if kernels not in GAUSSIAN_KERNELS:
            raise ValueError(f"unknown kernel set {kernels!r}; known: {', '.join(GAUSSIAN_KERNELS)}")
        return GAUSSIAN_KERNELS[kernels]
    values = tuple(int(k) for k in kernels)
    if len(values) != 5 or any(k < 1 or k % 2 == 0 for k in values):
        raise ValueError(f"kernels needs 5 positive odd sizes (coarse to fine), got {tuple(kernels)}")
    return values


def mspn_output_specs(num_stages: int, kernels: Union[str, Sequence[int]] = "256x192", coarse_to_fine: bool = True,
                      topk: int = 8) -> List[OutputSpec]:
    """The 4 x num_stages supervised outputs in forward order (official ``_calculate_loss``)."""
    table = _kernel_set(kernels)
    specs = []
    for stage in range(num_stages):
        shift = 1 if coarse_to_fine and stage == num_stages - 1 else 0
        for unit in range(4):
            if unit < 3:
                specs.append(OutputSpec(stride=4, target="megvii", kernel=table[unit + shift], loss="mspn_l2",
                                        weight=0.25))
            else:
                specs.append(OutputSpec(stride=4, target="megvii", kernel=table[unit + shift], loss="mspn_ohkm",
                                        weight=1.0, topk=topk))
    return specs


class MSPN(nn.Module):
    """Multi-stage pose network.

    num_stages: 1 to 4 in the paper (any >= 1 works). channels: width of the up-sampling path (official 256).
    layers: ResNet blocks per layer of each stage (official ResNet-50: 3, 4, 6, 3).
    width: ResNet base width (official 64: the top and layer1 planes; layers give 4x, 8x, 16x, 32x channels; the
        cross feature has this many channels). Smaller widths are for tests and CPU demos only.
    kernels: label kernel set, "256x192" (official), "384x288" (proposal) or 5 odd sizes coarse to fine.
    coarse_to_fine: the last stage uses the next finer kernel of each unit (official True).
    topk: joints kept by the OHKM loss of the finest unit (official 8).
    efficient: recompute conv_bn_relu activations in backward (official RUN_EFFICIENT) to save memory.
    """

    def __init__(self, num_keypoints: int = 17, num_stages: int = 2, channels: int = 256,
                 layers: Sequence[int] = RESNET50_LAYERS, kernels: Union[str, Sequence[int]] = "256x192",
                 coarse_to_fine: bool = True, topk: int = 8, width: int = 64, efficient: bool = False,
                 name: str = "mspn"):
        super().__init__()
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"layers needs 4 positive block counts, got {tuple(layers)}")
        if min(num_keypoints, num_stages, channels, topk, width) < 1:
            raise ValueError("num_keypoints, num_stages, channels, topk and width must be >= 1")
        self.name = name
        self.num_keypoints = int(num_keypoints)
        self.num_stages = int(num_stages)
        self.input_channels = 3
        self.outputs: List[OutputSpec] = mspn_output_specs(num_stages, kernels, coarse_to_fine, topk)
        self.top = ResNetTop(width, efficient)
        for stage in range(num_stages):
            last = stage == num_stages - 1
            setattr(self, f"stage{stage}", SingleStageModule(num_keypoints, has_skip=stage > 0, gen_skip=not last,
                                                             channels=channels, layers=layers, width=width,
                                                             efficient=efficient))

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless x is N x 3 x H x W with H and W multiples of 32."""
        check_input_shape(x, self.name, 3, INPUT_MULTIPLE)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        self.check_input(x)
        x = self.top(x)
        skip1 = skip2 = None
        heatmaps: List[torch.Tensor] = []
        for stage in range(self.num_stages):
            res, skip1, skip2, x = getattr(self, f"stage{stage}")(x, skip1, skip2)
            heatmaps.extend(res)
        return heatmaps


_TORCHVISION_KEY = re.compile(r"(layer[1-4]\.\d+)\.(conv|bn)([123])\.(.+)|(layer[1-4]\.0)\.downsample\.([01])\.(.+)"
                              r"|(conv1|bn1)\.(.+)")


def torchvision_resnet_to_mspn(resnet_state: Mapping[str, torch.Tensor], num_stages: int) -> Dict[str, torch.Tensor]:
    """A torchvision-layout ResNet state dict (conv1, bn1, layer1..4, fc) renamed for MSPN: conv1/bn1 go to
    ``top``, the layers to every stage's down-sampling module (as MMPose does); ``fc`` is dropped.

    Keys that are not part of a ResNet body raise ValueError (wrong file)."""
    renamed: Dict[str, torch.Tensor] = {}
    for key, value in resnet_state.items():
        if key.startswith("fc."):
            continue
        match = _TORCHVISION_KEY.fullmatch(key)
        if match is None:
            raise ValueError(f"not a torchvision ResNet key: {key!r}")
        block, kind, index, rest, first, part, rest2, stem, rest3 = match.groups()
        if stem is not None:
            renamed[f"top.conv.{'conv' if stem == 'conv1' else 'bn'}.{rest3}"] = value
            continue
        for stage in range(num_stages):
            if block is not None:
                name = f"stage{stage}.downsample.{block}.conv_bn_relu{index}.{kind}.{rest}"
            else:
                name = f"stage{stage}.downsample.{first}.downsample.{'conv' if part == '0' else 'bn'}.{rest2}"
            renamed[name] = value
    return renamed


def load_imagenet_resnet(model: MSPN, resnet_state: Mapping[str, torch.Tensor]) -> List[str]:
    """Load ImageNet ResNet weights (torchvision layout) into ``model.top`` and every stage's down-sampling module.

    The biases of the loaded convs are set to 0 (torchvision convs have none), so each stage's body computes
    exactly the pretrained ResNet. Returns the model keys left as initialised (the up-sampling path); a key of
    the right name but another shape raises ValueError (e.g. ResNet-101 weights for a ResNet-50 body)."""
    renamed = torchvision_resnet_to_mspn(resnet_state, model.num_stages)
    own = model.state_dict()
    for key, value in renamed.items():
        if key not in own:
            raise ValueError(f"ResNet key {key!r} has no place in {model.name} (another depth?)")
        if tuple(own[key].shape) != tuple(value.shape):
            raise ValueError(f"ResNet weight {key!r} has shape {tuple(value.shape)}, the model needs "
                             f"{tuple(own[key].shape)}")
    model.load_state_dict(renamed, strict=False)
    with torch.no_grad():
        for key in renamed:
            if key.endswith(".conv.weight"):
                bias = key[:-len("weight")] + "bias"
                model.get_parameter(bias).zero_()
    loaded = set(renamed) | {k[:-len("weight")] + "bias" for k in renamed if k.endswith(".conv.weight")}
    return [k for k in own if k not in loaded]


def mspn_1stage(num_keypoints: int = 17, **kwargs) -> MSPN:
    """One-stage MSPN (25.1 M parameters with 17 keypoints; COCO minival 71.5 AP at 256x192 in the paper)."""
    return MSPN(num_keypoints, **{"num_stages": 1, "name": "mspn_1stage", **kwargs})


def mspn_2stage(num_keypoints: int = 17, **kwargs) -> MSPN:
    """Two-stage MSPN, the official released configuration (56.9 M parameters; 74.5 AP)."""
    return MSPN(num_keypoints, **{"num_stages": 2, "name": "mspn_2stage", **kwargs})


def mspn_3stage(num_keypoints: int = 17, **kwargs) -> MSPN:
    """Three-stage MSPN (88.6 M parameters; 75.2 AP)."""
    return MSPN(num_keypoints, **{"num_stages": 3, "name": "mspn_3stage", **kwargs})


def mspn_4stage(num_keypoints: int = 17, **kwargs) -> MSPN:
    """Four-stage MSPN (120.3 M parameters; 75.9 AP at 256x192, 76.1 test-dev AP at 384x288)."""
    return MSPN(num_keypoints, **{"num_stages": 4, "name": "mspn_4stage", **kwargs})
