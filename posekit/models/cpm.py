"""Convolutional Pose Machines (Wei et al., CVPR'16) as in the released Caffe model (spec 2.2).

Follows ``model/_trained_MPI/pose_deploy_centerMap.prototxt`` of shihenw/convolutional-pose-machines-release
(identical for ``_trained_LEEDS_PC``; ``_trained_FLIC/pose_deploy.prototxt`` is ``center_map=False``) and the
training net written by its ``training/genProto.py``. Modules are named after the prototxt layers
(``conv1_stage1`` ... ``conv7_stage1``, the shared trunk ``conv1_stage2`` ... ``conv3_stage2``, the per-stage
5x5 convs ``conv4_stage2`` / ``conv1_stage{t}``, ``Mconv1_stage{t}`` ... ``Mconv5_stage{t}``), so that a
future Caffe converter maps each layer's two blobs onto ``<name>.weight`` / ``<name>.bias``.

Layout (P parts, T stages, input N x 4 x 368 x 368 = BGR image + centre map):

- stage 1 on the image only: 9x9 convs (128) with 3x3/2 max pools to stride 8, 5x5 (32), 9x9 (512),
  1x1 (512), 1x1 (P+1) -> b_1;
- the 9x9 image-feature trunk ``conv1..3_stage2`` (with pools) is computed once and feeds every stage >= 2;
- stage t >= 2: its own 5x5 conv (32) on the trunk, concatenated as [features (32), b_{t-1} (P+1), centre
  map (1)], then three 11x11 convs (128), a 1x1 (128) and a 1x1 (P+1) -> b_t;
- ReLU after every conv except each stage's last; channel P (the last) of every output is the background.

Where paper and official code differ (default = official code; the paper's reading as an option):

- Pooling: Caffe rounds pooled sizes up (368 -> 184 -> 92 -> 46); ``pool_ceil=False`` gives PyTorch's floor
  rounding (45 x 45 maps at 368, which no codec at stride 8 matches; kept for comparison only).
- Centre map: the paper says "an extra heatmap channel ... cascaded at the cascading point of each
  subsequent stage"; the code average-pools the input's 4th channel 9x9/8 (``pool_center_lower``) and
  appends it last in every stage's concat. ``center_map=False`` is the FLIC model (3-channel input).
- Shared weights: the paper shares "the convolutional layers for image features (x2 ... xT)"; the code shares
  the 9x9 trunk but gives every stage its own 5x5 conv. ``share_feature_conv=True`` reuses ``conv4_stage2``
  in every stage (the other reading of the paper).
- Stage-1 receptive field: paper 160 px, layer arithmetic 167 px (nothing to choose).
- Dropout 0.5 after the ReLUs of conv5_stage1 and conv6_stage1 exists only in the training net genProto
  writes (``dropout_stage1``); it is inactive in eval mode, as in the deploy net.
- Loss: the paper's Eq. 4 sums squared errors; Caffe's EuclideanLoss divides by 2N (the "cpm" loss).

Initialisation is genProto's: conv weights ~ N(0, 0.01^2), biases 0. Its per-layer learning-rate multipliers
(stage-1 convs: weights x5, biases x10; all others x1 / x2; no weight decay on biases) are an optimiser
matter: :meth:`CPM.param_groups` returns them as torch optimiser parameter groups.

``cpm_6stage_topdown`` is NOT the released model: a modern top-down variant with the same layers but no
centre map, no background channel, HRNet-style Gaussian targets (sigma 2 heatmap px) and the weighted MSE.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..codecs import OutputSpec
from .blocks import check_input_shape

# Three stride-2 pools: input height and width must be multiples of 8 for the maps to be exactly H/8 x W/8.
STRIDE = 8
IMAGE_CHANNELS = 3
CENTER_MAP_SIGMA = 21.0   # input px (Caffe sigma_center default; release config.m)
STAGE1_WEIGHT_LR_MULT = 5.0
STAGE1_BIAS_LR_MULT = 10.0
WEIGHT_LR_MULT = 1.0
BIAS_LR_MULT = 2.0


class CPM(nn.Module):
    """Convolutional Pose Machine (see the module docstring for the layout and the options).

    num_parts: P; every output has P+1 channels with ``background`` (background last), else P.
    stages: T >= 1; forward returns the T belief maps b_1 ... b_T (the last is read at test time).
    center_map: the input has a 4th channel, the centre map (:func:`posekit.codecs.cpm.center_map`),
        pooled 9x9/8 and appended to every stage >= 2's concat.
    dropout_stage1: Dropout(0.5) after conv5_stage1 and conv6_stage1 (training only).
    pool_ceil: Caffe's ceil rounding in the pools (official); False = floor rounding.
    share_feature_conv: one 5x5 feature conv (``conv4_stage2``) for all stages >= 2 (a paper reading).
    target / sigma / loss: what the outputs are declared against: "cpm" belief maps (sigma 7 input px,
        Caffe loss; stage 1 against every person, later stages against the person of the crop), or
        "gaussian" (HRNet target, sigma in heatmap px, loss "mse") for the top-down variant.
    """

    def __init__(self, num_parts: int = 14, stages: int = 6, center_map: bool = True, background: bool = True,
                 dropout_stage1: bool = True, pool_ceil: bool = True, share_feature_conv: bool = False,
                 target: str = "cpm", sigma: Optional[float] = None, loss: Optional[str] = None,
                 name: str = "cpm"):
        super().__init__()
        if num_parts < 1 or stages < 1:
            raise ValueError(f"num_parts and stages must be >= 1, got {num_parts} and {stages}")
        if target not in ("cpm", "gaussian"):
            raise ValueError(f"target must be 'cpm' or 'gaussian', got {target!r}")
        if target == "gaussian" and background:
            raise ValueError("the 'gaussian' target has no background channel: use background=False")
        self.name = name
        self.num_keypoints = int(num_parts)
        self.num_stages = int(stages)
        self.center_map = bool(center_map)
        # Read by the dataset, which appends the Gaussian centre map (sigma 21 px, spec 2.3) as the 4th channel.
        self.center_map_sigma = CENTER_MAP_SIGMA if center_map else None
        self.background = bool(background)
        self.share_feature_conv = bool(share_feature_conv)
        self.input_channels = IMAGE_CHANNELS + (1 if center_map else 0)
        self.out_channels = self.num_keypoints + (1 if background else 0)
        if target == "cpm":
            sigma = 7.0 if sigma is None else float(sigma)
            loss = loss or "cpm"
            # Spec 2.4: stage 1 learns every person's parts (local evidence cannot tell people apart);
            # later stages, which see the centre map, learn the person of the crop only.
            self.outputs: List[OutputSpec] = [
                OutputSpec(stride=STRIDE, target="cpm", sigma=sigma, loss=loss, people="all" if t == 1 else "self",
                           background=self.background)
                for t in range(1, stages + 1)]
        else:
            sigma = 2.0 if sigma is None else float(sigma)
            self.outputs = [OutputSpec(stride=STRIDE, target="gaussian", sigma=sigma, loss=loss or "mse",
                                       background=self.background) for _ in range(stages)]

        def pool() -> nn.MaxPool2d:
            return nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=pool_ceil)

        def conv(cin: int, cout: int, k: int) -> nn.Conv2d:
            return nn.Conv2d(cin, cout, kernel_size=k, stride=1, padding=k // 2, bias=True)

        p1 = self.out_channels
        # Stage 1: local image evidence only.
        self.conv1_stage1 = conv(IMAGE_CHANNELS, 128, 9)
        self.pool1_stage1 = pool()
        self.conv2_stage1 = conv(128, 128, 9)
        self.pool2_stage1 = pool()
        self.conv3_stage1 = conv(128, 128, 9)
        self.pool3_stage1 = pool()
        self.conv4_stage1 = conv(128, 32, 5)
        self.conv5_stage1 = conv(32, 512, 9)
        self.drop1_stage1 = nn.Dropout(0.5) if dropout_stage1 else nn.Identity()
        self.conv6_stage1 = conv(512, 512, 1)
        self.drop2_stage1 = nn.Dropout(0.5) if dropout_stage1 else nn.Identity()
        self.conv7_stage1 = conv(512, p1, 1)

        if stages > 1:
            # The 9x9 image-feature trunk shared by every later stage.
            self.conv1_stage2 = conv(IMAGE_CHANNELS, 128, 9)
            self.pool1_stage2 = pool()
            self.conv2_stage2 = conv(128, 128, 9)
            self.pool2_stage2 = pool()
            self.conv3_stage2 = conv(128, 128, 9)
            self.pool3_stage2 = pool()
            if center_map:
                self.pool_center_lower = nn.AvgPool2d(kernel_size=9, stride=STRIDE, padding=0, ceil_mode=pool_ceil)
        concat = 32 + p1 + (1 if center_map else 0)
        for t in range(2, stages + 1):
            if t == 2 or not share_feature_conv:
                setattr(self, self._feature_conv_name(t), conv(128, 32, 5))
            setattr(self, f"Mconv1_stage{t}", conv(concat, 128, 11))
            setattr(self, f"Mconv2_stage{t}", conv(128, 128, 11))
            setattr(self, f"Mconv3_stage{t}", conv(128, 128, 11))
            setattr(self, f"Mconv4_stage{t}", conv(128, 128, 1))
            setattr(self, f"Mconv5_stage{t}", conv(128, p1, 1))
        self.init_weights()

    def _feature_conv_name(self, stage: int) -> str:
        if stage == 2 or self.share_feature_conv:
            return "conv4_stage2"
        return f"conv1_stage{stage}"

    def init_weights(self) -> None:
        """genProto's fillers: conv weights Gaussian std 0.01, biases constant 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.constant_(m.bias, 0.0)

    def param_groups(self, base_lr: float, weight_decay: Optional[float] = None) -> List[Dict[str, object]]:
        """Optimiser parameter groups with genProto's per-layer multipliers (Caffe ``lr_mult``/``decay_mult``).

        Four groups: stage-1 conv weights (lr x5), stage-1 biases (x10), all other weights (x1), all other
        biases (x2). Biases get weight decay 0 (``decay_mult: 0``); weights get ``weight_decay`` when given,
        else the optimiser's default. Each group carries ``lr_mult`` and ``name`` too, for logging; a step
        scheduler multiplies every group's lr alike, which keeps the ratios as Caffe does.
        Usage: ``torch.optim.SGD(model.param_groups(8e-5, 5e-4), lr=8e-5, momentum=0.9)``.
        """
        buckets: Dict[str, List[nn.Parameter]] = {"stage1_weight": [], "stage1_bias": [], "weight": [], "bias": []}
        for param_name, param in self.named_parameters():
            layer, kind = param_name.rsplit(".", 1)
            prefix = "stage1_" if layer.endswith("_stage1") else ""
            buckets[prefix + kind].append(param)
        mults = {"stage1_weight": STAGE1_WEIGHT_LR_MULT, "stage1_bias": STAGE1_BIAS_LR_MULT,
                 "weight": WEIGHT_LR_MULT, "bias": BIAS_LR_MULT}
        groups: List[Dict[str, object]] = []
        for key, params in buckets.items():
            if not params:
                continue
            group: Dict[str, object] = {"params": params, "lr": base_lr * mults[key], "lr_mult": mults[key],
                                        "name": key}
            if key.endswith("bias"):
                group["weight_decay"] = 0.0
            elif weight_decay is not None:
                group["weight_decay"] = float(weight_decay)
            groups.append(group)
        return groups

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless x is N x input_channels x H x W with H and W multiples of 8."""
        check_input_shape(x, self.name, self.input_channels, STRIDE,
                          "image + centre map" if self.center_map else "image")

    def _stage1(self, image: torch.Tensor) -> torch.Tensor:
        y = self.pool1_stage1(F.relu(self.conv1_stage1(image)))
        y = self.pool2_stage1(F.relu(self.conv2_stage1(y)))
        y = self.pool3_stage1(F.relu(self.conv3_stage1(y)))
        y = F.relu(self.conv4_stage1(y))
        y = self.drop1_stage1(F.relu(self.conv5_stage1(y)))
        y = self.drop2_stage1(F.relu(self.conv6_stage1(y)))
        return self.conv7_stage1(y)

    def _trunk(self, image: torch.Tensor) -> torch.Tensor:
        y = self.pool1_stage2(F.relu(self.conv1_stage2(image)))
        y = self.pool2_stage2(F.relu(self.conv2_stage2(y)))
        return self.pool3_stage2(F.relu(self.conv3_stage2(y)))

    def _stage(self, t: int, trunk: torch.Tensor, beliefs: torch.Tensor, center: Optional[torch.Tensor]) -> torch.Tensor:
        features = F.relu(getattr(self, self._feature_conv_name(t))(trunk))
        parts = [features, beliefs] if center is None else [features, beliefs, center]
        y = torch.cat(parts, dim=1)
        for i in range(1, 5):
            y = F.relu(getattr(self, f"Mconv{i}_stage{t}")(y))
        return getattr(self, f"Mconv5_stage{t}")(y)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        self.check_input(x)
        image = x[:, :IMAGE_CHANNELS]
        beliefs = self._stage1(image)
        outputs = [beliefs]
        if self.num_stages > 1:
            trunk = self._trunk(image)
            center = self.pool_center_lower(x[:, IMAGE_CHANNELS:]) if self.center_map else None
            for t in range(2, self.num_stages + 1):
                beliefs = self._stage(t, trunk, beliefs, center)
                outputs.append(beliefs)
        return outputs


def _build(stages: int, num_keypoints: int, kwargs: dict) -> CPM:
    return CPM(**{"num_parts": num_keypoints, "stages": stages, "name": f"cpm_{stages}stage", **kwargs})


def cpm_1stage(num_keypoints: int = 14, **kwargs) -> CPM:
    """Stage 1 of the released CPM alone (4.39 M parameters with 14 parts)."""
    return _build(1, num_keypoints, kwargs)


def cpm_2stage(num_keypoints: int = 14, **kwargs) -> CPM:
    """Released CPM with 2 stages (11.90 M parameters with 14 parts)."""
    return _build(2, num_keypoints, kwargs)


def cpm_3stage(num_keypoints: int = 14, **kwargs) -> CPM:
    """Released CPM with 3 stages (16.73 M parameters with 14 parts)."""
    return _build(3, num_keypoints, kwargs)


def cpm_4stage(num_keypoints: int = 14, **kwargs) -> CPM:
    """Released CPM with 4 stages, the paper's FLIC depth (21.56 M parameters with 14 parts)."""
    return _build(4, num_keypoints, kwargs)


def cpm_5stage(num_keypoints: int = 14, **kwargs) -> CPM:
    """Released CPM with 5 stages (26.39 M parameters with 14 parts)."""
    return _build(5, num_keypoints, kwargs)


def cpm_6stage(num_keypoints: int = 14, **kwargs) -> CPM:
    """The released MPII/LSP CPM: 6 stages, centre map, background (31,219,866 parameters with 14 parts)."""
    return _build(6, num_keypoints, kwargs)


def cpm_6stage_topdown(num_keypoints: int = 14, **kwargs) -> CPM:
    """NOT the released model: the 6-stage layers as a modern top-down network (3-channel input, no centre
    map, no background channel, HRNet Gaussian targets with sigma 2 heatmap px at stride 8, weighted MSE)."""
    defaults = dict(num_parts=num_keypoints, stages=6, center_map=False, background=False, target="gaussian",
                    name="cpm_6stage_topdown")
    return CPM(**{**defaults, **kwargs})
