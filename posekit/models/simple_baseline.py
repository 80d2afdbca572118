"""SimpleBaseline (Xiao et al., "Simple Baselines for Human Pose Estimation and Tracking", ECCV'18) as the official
``pose_resnet.py`` of the HRNet repository (``leoxiaobin/deep-high-resolution-net.pytorch``).

A torchvision-layout ResNet (conv1 7x7 s2, bn1, max-pool, layer1..layer4), three transposed convolutions (4x4,
stride 2, padding 1, 256 channels, no bias, each followed by BN and ReLU: keys ``deconv_layers.{0,1,3,4,6,7}``)
and a 1x1 ``final_layer`` (with bias) to K heatmaps at stride 4. Keys match the official checkpoints
(``pose_resnet_50_256x192.pth`` ...) and, for the backbone, torchvision's ImageNet ResNet files.
Target and loss are HRNet's (Gaussian sigma 2 at 256x192, 3 at 384x288; JointsMSELoss).

Paper vs official code (default = code):
- init: the code's training path (ImageNet file present) draws the deconvolutions and the final conv from
  N(0, 0.001^2) with zero final bias and BN 1/0, then loads ImageNet into the backbone. Without ImageNet weights
  the code draws *every* conv from N(0, 0.001^2); this model does that too (with a zero final bias), so the
  backbone is the code's untrained one until a pretrained file is loaded into it.
- ``deconv_kernel`` 4 is the official setting; 3 (padding 1, output padding 1) and 2 (padding 0) are the code's
  other options.
"""
from __future__ import annotations

from typing import List

import torch
from torch import nn

from ..codecs import OutputSpec
from .blocks import BN_MOMENTUM, Bottleneck, check_input_shape, init_normal, make_layer

INPUT_MULTIPLE = 32
RESNET_LAYERS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
# kernel -> (padding, output_padding) giving an exact x2 up-sampling (official _get_deconv_cfg)
DECONV_PADDING = {4: (1, 0), 3: (1, 1), 2: (0, 0)}


class SimpleBaseline(nn.Module):
    """ResNet + deconvolution head.

    depth: 50, 101 or 152 (Bottleneck ResNets). width: ResNet base width (official 64; smaller only for tests and
    CPU demos, no official counterpart). deconv_layers / deconv_channels / deconv_kernel: the head
    (official 3 x 256 channels, kernel 4). final_kernel: 1 (official) or 3. sigma: the target's Gaussian sigma
    in heatmap pixels (2 at 256x192, 3 at 384x288).
    """

    def __init__(self, num_keypoints: int = 17, depth: int = 50, deconv_layers: int = 3, deconv_channels: int = 256,
                 deconv_kernel: int = 4, final_kernel: int = 1, sigma: float = 2.0, width: int = 64,
                 name: str = "simplebaseline"):
        super().__init__()
        if depth not in RESNET_LAYERS:
            raise ValueError(f"depth must be one of {', '.join(map(str, RESNET_LAYERS))}, got {depth}")
        if deconv_kernel not in DECONV_PADDING:
            raise ValueError(f"deconv_kernel must be 4, 3 or 2, got {deconv_kernel}")
        if final_kernel not in (1, 3):
            raise ValueError(f"final_kernel must be 1 or 3, got {final_kernel}")
        if min(num_keypoints, deconv_channels, width) < 1 or deconv_layers < 0:
            raise ValueError("num_keypoints, deconv_channels and width must be >= 1, deconv_layers >= 0")
        self.name = name
        self.num_keypoints = int(num_keypoints)
        self.input_channels = 3
        self.output_stride = 32 // 2 ** deconv_layers
        if self.output_stride < 1:
            raise ValueError(f"at most 5 deconvolution layers (stride 32 -> 1), got {deconv_layers}")
        self.outputs: List[OutputSpec] = [OutputSpec(stride=self.output_stride, target="gaussian", sigma=float(sigma),
                                                     loss="mse")]

        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        in_channels = width
        planes_per_layer = (width, 2 * width, 4 * width, 8 * width)
        for index, (planes, blocks) in enumerate(zip(planes_per_layer, RESNET_LAYERS[depth]), start=1):
            setattr(self, f"layer{index}", make_layer(Bottleneck, in_channels, planes, blocks, 1 if index == 1 else 2))
            in_channels = planes * Bottleneck.expansion

        padding, output_padding = DECONV_PADDING[deconv_kernel]
        head: List[nn.Module] = []
        for _ in range(deconv_layers):
            head += [nn.ConvTranspose2d(in_channels, deconv_channels, deconv_kernel, stride=2, padding=padding,
                                        output_padding=output_padding, bias=False),
                     nn.BatchNorm2d(deconv_channels, momentum=BN_MOMENTUM),
                     nn.ReLU(inplace=True)]
            in_channels = deconv_channels
        self.deconv_layers = nn.Sequential(*head)
        self.final_layer = nn.Conv2d(in_channels, self.num_keypoints, kernel_size=final_kernel, stride=1,
                                     padding=1 if final_kernel == 3 else 0)
        self.init_weights()

    def init_weights(self) -> None:
        """Official: every conv / deconv weight ~ N(0, 0.001^2), final bias 0, BN weight 1 and bias 0."""
        init_normal(self, std=0.001)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless x is N x 3 x H x W with H and W multiples of 32."""
        check_input_shape(x, self.name, 3, INPUT_MULTIPLE)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        self.check_input(x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return [self.final_layer(self.deconv_layers(x))]


def _builder(depth: int, num_keypoints: int, kwargs: dict) -> SimpleBaseline:
    return SimpleBaseline(num_keypoints, **{"depth": depth, "name": f"simplebaseline_res{depth}", **kwargs})


def simplebaseline_res50(num_keypoints: int = 17, **kwargs) -> SimpleBaseline:
    """SimpleBaseline ResNet-50 (33,999,697 parameters with 17 keypoints; 70.4 COCO val AP at 256x192)."""
    return _builder(50, num_keypoints, kwargs)


def simplebaseline_res101(num_keypoints: int = 17, **kwargs) -> SimpleBaseline:
    """SimpleBaseline ResNet-101 (52,991,825 parameters with 17 keypoints)."""
    return _builder(101, num_keypoints, kwargs)


def simplebaseline_res152(num_keypoints: int = 17, **kwargs) -> SimpleBaseline:
    """SimpleBaseline ResNet-152 (68,635,473 parameters with 17 keypoints)."""
    return _builder(152, num_keypoints, kwargs)

