"""MSPN against the official code's numbers (spec 4.2-4.4, 4.7): parameter counts, state-dict grammar, output
layout and kernel schedule, the stage wiring, the Megvii codec (kernels, target, decoder) and the losses."""
from __future__ import annotations

import functools
import math
import re

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from posekit.codecs import OutputSpec, build_codec
from posekit.codecs.megvii import MegviiHeatmap, gaussian_kernel_1d, kernel_sigma, reflect101, separable_blur
from posekit.deploy.flops import GIGA, count_macs, count_parameters
from posekit.losses import mspn_l2_loss, mspn_ohkm_loss, total_loss
from posekit.models.mspn import (
    MSPN,
    DownsampleModule,
    UpsampleUnit,
    mspn_1stage,
    mspn_2stage,
    mspn_3stage,
    mspn_4stage,
    load_imagenet_resnet,
    mspn_output_specs,
    torchvision_resnet_to_mspn,
)
from posekit.models.simple_baseline import SimpleBaseline

BUILDERS = (mspn_1stage, mspn_2stage, mspn_3stage, mspn_4stage)


def meta(builder, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return builder(**kwargs)


@functools.lru_cache(maxsize=None)
def official(builder) -> nn.Module:
    """A shared meta-device build of an official-size model (read only: shapes and counts)."""
    return meta(builder)


# ------------------------------------------------------------------------------------------- structure

@pytest.mark.parametrize("builder,params,entries", [
    (mspn_1stage, 25_141_708, 476), (mspn_2stage, 56_867_032, 1008),
    (mspn_3stage, 88_592_356, 1540), (mspn_4stage, 120_317_680, 2072),
])
def test_parameter_counts_and_state_dict_sizes_are_official(builder, params, entries):
    model = official(builder)
    assert count_parameters(model) == params
    assert len(model.state_dict()) == entries


def test_parameter_count_per_keypoint():
    # Each unit's res_conv2 (3x3, 256 -> K, bias) and its BN: 256*9 + 1 + 2 parameters per keypoint, 4 units.
    assert count_parameters(meta(mspn_1stage, num_keypoints=16)) == 25_141_708 - 4 * (256 * 9 + 3)


BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
CBR = rf"(conv\.(weight|bias)|bn\.{BN})"
GRAMMAR = [
    rf"top\.conv\.{CBR}",
    rf"stage\d\.downsample\.layer[1-4]\.\d\.conv_bn_relu[123]\.{CBR}",
    rf"stage\d\.downsample\.layer[1-4]\.0\.downsample\.{CBR}",
    rf"stage\d\.upsample\.up[1-4]\.(u_skip|up_conv|skip1|skip2|cross_conv|res_conv1|res_conv2)\.{CBR}",
]


def test_state_dict_obeys_official_grammar():
    sd = official(mspn_2stage).state_dict()
    pattern = re.compile("|".join(f"(?:{g})" for g in GRAMMAR))
    assert [k for k in sd if not pattern.fullmatch(k)] == []
    # Every conv has a bias (conv_bn_relu).
    convs = [k[:-len(".weight")] for k in sd if k.endswith("conv.weight")]
    assert convs and all(f"{c}.bias" in sd for c in convs)
    assert sd["top.conv.conv.weight"].shape == (64, 3, 7, 7)
    assert sd["stage0.downsample.layer1.0.downsample.conv.weight"].shape == (256, 64, 1, 1)
    assert sd["stage1.downsample.layer4.2.conv_bn_relu3.conv.weight"].shape == (2048, 512, 1, 1)
    assert sd["stage0.downsample.layer3.0.conv_bn_relu2.conv.weight"].shape == (256, 256, 3, 3)
    assert {int(k.split(".")[3]) for k in sd if k.startswith("stage0.downsample.layer3.")} == set(range(6))
    assert sd["stage0.upsample.up1.skip1.conv.weight"].shape == (2048, 2048, 1, 1)
    assert sd["stage0.upsample.up1.skip2.conv.weight"].shape == (2048, 256, 1, 1)
    assert sd["stage0.upsample.up4.cross_conv.conv.weight"].shape == (64, 256, 1, 1)
    assert sd["stage1.upsample.up3.res_conv2.conv.weight"].shape == (17, 256, 3, 3)
    assert sd["stage1.upsample.up2.u_skip.conv.weight"].shape == (256, 1024, 1, 1)
    # up1 has no up_conv; the last stage generates neither skips nor the cross feature; only up4 has cross_conv.
    assert not any(k.startswith("stage0.upsample.up1.up_conv") or k.startswith("stage1.upsample.up1.up_conv") for k in sd)
    assert not any(re.match(r"stage1\.upsample\.up\d\.(skip|cross)", k) for k in sd)
    assert not any(re.match(r"stage0\.upsample\.up[123]\.cross_conv", k) for k in sd)
    assert "stage0.upsample.up3.skip2.bn.running_var" in sd


def test_forward_returns_every_head_at_stride_4():
    model = official(mspn_4stage)
    out = model(torch.zeros(1, 3, 256, 192, device="meta"))
    assert [tuple(o.shape) for o in out] == [(1, 17, 64, 48)] * 16
    out = official(mspn_1stage)(torch.zeros(2, 3, 384, 288, device="meta"))
    assert [tuple(o.shape) for o in out] == [(2, 17, 96, 72)] * 4
    assert model.input_channels == 3 and model.num_keypoints == 17 and model.name == "mspn_4stage"


@pytest.mark.parametrize("shape,shown", [((1, 3, 250, 192), "1 x 3 x 250 x 192"), ((3, 256, 192), "3 x 256 x 192"),
                                         ((1, 4, 256, 192), "1 x 4 x 256 x 192")])
def test_wrong_input_shape_is_one_line_value_error(shape, shown):
    with pytest.raises(ValueError) as info:
        official(mspn_1stage)(torch.zeros(shape, device="meta"))
    assert "\n" not in str(info.value) and "multiples of 32" in str(info.value) and f"got shape {shown}" in str(info.value)


def test_output_specs_follow_coarse_to_fine_schedule():
    specs = official(mspn_2stage).outputs
    assert len(specs) == 8
    assert [s.kernel for s in specs] == [15, 11, 9, 7, 11, 9, 7, 5]
    assert [s.loss for s in specs] == ["mspn_l2"] * 3 + ["mspn_ohkm"] + ["mspn_l2"] * 3 + ["mspn_ohkm"]
    assert [s.weight for s in specs] == [0.25, 0.25, 0.25, 1.0] * 2
    assert all(s.stride == 4 and s.target == "megvii" for s in specs)
    assert specs[-1] == OutputSpec(stride=4, target="megvii", kernel=5, loss="mspn_ohkm", weight=1.0, topk=8)
    four = official(mspn_4stage).outputs
    assert [s.kernel for s in four] == [15, 11, 9, 7] * 3 + [11, 9, 7, 5]
    assert [s.kernel for s in mspn_output_specs(2, coarse_to_fine=False)] == [15, 11, 9, 7] * 2
    assert [s.kernel for s in mspn_output_specs(2, kernels="384x288")] == [23, 17, 13, 9, 17, 13, 9, 7]
    assert [s.kernel for s in mspn_output_specs(1, kernels=(9, 7, 5, 3, 1))] == [7, 5, 3, 1]
    with pytest.raises(ValueError, match="5 positive odd"):
        mspn_output_specs(1, kernels=(9, 7, 5, 3))
    with pytest.raises(ValueError, match="unknown kernel set"):
        mspn_output_specs(1, kernels="512x384")


def test_macs_against_paper():
    """FlopCounterMode/2 = conv multiply-adds (bilinear resizing, BN, adds not counted); paper Table 3 says
    4.4/9.6/14.7/19.9 G — ours are 7-11% higher (see the model report)."""
    gmacs = [round(count_macs(official(b), (256, 192)) / GIGA, 2) for b in BUILDERS]
    assert gmacs == [4.72, 10.49, 16.25, 22.02]


def test_hand_macs_of_one_stage():
    model = official(mspn_1stage)
    hand = []

    def hook(m, _inp, out):
        hand.append(out.shape[2] * out.shape[3] * m.out_channels * m.in_channels * m.kernel_size[0] * m.kernel_size[1])

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    macs = count_macs(model, (256, 192))
    for h in handles:
        h.remove()
    assert macs == sum(hand) == 5_072_646_144


# ------------------------------------------------------------------------------------------- wiring by hand

def _randomise(module: nn.Module) -> None:
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)


def _cbr(x, unit, relu=True, padding=0):
    y = F.batch_norm(F.conv2d(x, unit.conv.weight, unit.conv.bias, padding=padding), unit.bn.running_mean,
                     unit.bn.running_var, unit.bn.weight, unit.bn.bias, eps=unit.bn.eps)
    return torch.relu(y) if relu else y


def test_upsample_unit_by_hand():
    torch.manual_seed(0)
    unit = UpsampleUnit(2, in_channels=8, num_keypoints=3, channels=4, gen_skip=True, gen_cross_conv=True).eval()
    _randomise(unit)
    assert not hasattr(unit, "cross_conv")  # only the finest unit (index 3) makes the cross feature
    x, previous = torch.randn(2, 8, 6, 4), torch.randn(2, 4, 3, 2)
    up = F.interpolate(previous, size=(6, 4), mode="bilinear", align_corners=True)
    out = torch.relu(_cbr(x, unit.u_skip, relu=False) + _cbr(up, unit.up_conv, relu=False))
    heat = _cbr(_cbr(out, unit.res_conv1), unit.res_conv2, relu=False, padding=1)
    heat = F.interpolate(heat, size=(12, 8), mode="bilinear", align_corners=True)
    with torch.no_grad():
        got_out, got_heat, skip1, skip2, cross = unit(x, previous, (12, 8))
    torch.testing.assert_close(got_out, out)
    torch.testing.assert_close(got_heat, heat)
    torch.testing.assert_close(skip1, _cbr(x, unit.skip1))
    torch.testing.assert_close(skip2, _cbr(out, unit.skip2))
    assert cross is None and skip1.shape == (2, 8, 6, 4) and skip2.shape == (2, 8, 6, 4)


def test_skips_are_added_after_each_resnet_layer():
    torch.manual_seed(0)
    module = DownsampleModule(layers=(1, 1, 1, 1), has_skip=True, width=8).eval()
    x = torch.randn(1, 8, 16, 16)
    sizes = [(32, 16), (64, 8), (128, 4), (256, 2)]
    skip1 = [torch.randn(1, c, s, s) for c, s in sizes]
    skip2 = [torch.randn(1, c, s, s) for c, s in sizes]
    with torch.no_grad():
        got = module(x, skip1, skip2)
        expect, y = [], x
        for i, layer in enumerate((module.layer1, module.layer2, module.layer3, module.layer4)):
            y = layer(y) + skip1[i] + skip2[i]
            expect.append(y)
    for g, e in zip(got, expect):
        torch.testing.assert_close(g, e)


def test_next_stage_reads_the_cross_feature_and_skips():
    torch.manual_seed(0)
    model = MSPN(num_keypoints=3, num_stages=2, channels=16, layers=(1, 1, 1, 1), width=8).eval()
    seen = {}
    model.stage0.upsample.up4.cross_conv.register_forward_hook(lambda m, i, o: seen.__setitem__("cross", o))
    model.stage1.downsample.layer1.register_forward_hook(lambda m, i, o: seen.__setitem__("layer1_in", i[0]))
    model.stage0.upsample.up2.skip1.register_forward_hook(lambda m, i, o: seen.__setitem__("skip1_x3", o))
    model.stage1.downsample.layer3.register_forward_hook(lambda m, i, o: seen.__setitem__("layer3_out", o))
    model.stage1.downsample.layer4.register_forward_hook(lambda m, i, o: seen.__setitem__("layer4_in", i[0]))
    model.stage0.upsample.up2.skip2.register_forward_hook(lambda m, i, o: seen.__setitem__("skip2_x3", o))
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert len(out) == 8 and seen["cross"].shape == (1, 8, 16, 16)
    assert seen["layer1_in"] is seen["cross"]
    # layer4 of stage 1 reads layer3's output plus the two 1/16 flows of stage 0's unit up2.
    assert seen["skip1_x3"].shape == seen["skip2_x3"].shape == seen["layer3_out"].shape == (1, 128, 4, 4)
    torch.testing.assert_close(seen["layer4_in"], seen["layer3_out"] + seen["skip1_x3"] + seen["skip2_x3"])
    assert seen["skip2_x3"].abs().max() > 0


def test_official_init():
    torch.manual_seed(0)
    model = MSPN(num_stages=1)
    w = model.stage0.downsample.layer4[0].conv_bn_relu2.conv.weight  # kaiming fan_out: sqrt(2 / (512 * 9))
    assert abs(w.std().item() - math.sqrt(2 / (512 * 9))) < 2e-4
    top = model.top.conv.conv.weight  # PyTorch default: U(+-1/sqrt(fan_in)), std 1/sqrt(3 * 147)
    assert abs(top.std().item() - 1 / math.sqrt(3 * 147)) < 4e-3
    head = model.stage0.upsample.up4.res_conv1.conv.weight  # default init outside the down-sampling module
    assert abs(head.std().item() - 1 / math.sqrt(3 * 256)) < 1e-3
    bns = [m for m in model.stage0.downsample.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in bns)


def test_efficient_mode_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = MSPN(num_keypoints=2, num_stages=2, channels=8, layers=(1, 1, 1, 1), width=8)
    efficient = MSPN(num_keypoints=2, num_stages=2, channels=8, layers=(1, 1, 1, 1), width=8, efficient=True)
    efficient.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 32)
    for model in (plain, efficient):
        sum(o.square().mean() for o in model(x)).backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), efficient.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)
    assert all(p.grad is not None for p in plain.parameters())  # every parameter is used (DDP-safe)


def test_imagenet_resnet_goes_into_the_top_and_every_stage():
    torch.manual_seed(0)
    # SimpleBaseline's backbone has torchvision's key layout: use it as a stand-in ImageNet file.
    resnet = SimpleBaseline(width=8, deconv_channels=8)
    state = {k: v for k, v in resnet.state_dict().items() if not k.startswith(("deconv_layers", "final_layer"))}
    with torch.no_grad():
        for key, value in state.items():
            if value.is_floating_point():
                value.normal_()
                if key.endswith("running_var"):
                    value.abs_().add_(0.5)
    state["fc.weight"], state["fc.bias"] = torch.zeros(10, 256), torch.zeros(10)
    renamed = torchvision_resnet_to_mspn(state, num_stages=2)
    assert renamed["top.conv.conv.weight"] is state["conv1.weight"]
    assert renamed["stage1.downsample.layer3.0.downsample.bn.running_mean"] is state["layer3.0.downsample.1.running_mean"]
    assert renamed["stage0.downsample.layer2.3.conv_bn_relu2.conv.weight"] is state["layer2.3.conv2.weight"]
    model = MSPN(num_stages=2, width=8, channels=16).eval()
    left = load_imagenet_resnet(model, state)
    assert left and all(".upsample." in k for k in left)
    resnet.load_state_dict(state, strict=False)
    resnet.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        y = resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(x))))
        top = model.top(x)
        torch.testing.assert_close(top, y)
        zeros = [torch.zeros_like(f) for f in model.stage0.downsample(top)]
        for stage in (model.stage0, model.stage1):  # stage 1 with zero cross-stage flows
            z = y
            for layer, ours in zip((resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4),
                                   stage.downsample(top, zeros, zeros)):
                z = layer(z)
                torch.testing.assert_close(ours, z)
    with pytest.raises(ValueError, match="not a torchvision ResNet key"):
        torchvision_resnet_to_mspn({"backbone.conv1.weight": torch.zeros(1)}, 1)
    with pytest.raises(ValueError, match="has shape"):
        load_imagenet_resnet(MSPN(num_stages=1, width=16, channels=16), state)


# ------------------------------------------------------------------------------------------- kernels

PROFILES = {  # peak-normalised 1-D profiles x 255 from the centre (spec 4.3)
    15: [255, 236.8, 189.7, 131.1, 78.1, 40.1, 17.8, 6.8],
    11: [255, 225.0, 154.7, 82.8, 34.5, 11.2],
    9: [255, 214.5, 127.6, 53.7, 16.0],
    7: [255, 198.3, 99.2, 28.3],
    5: [255, 170, 42.5],
}


@pytest.mark.parametrize("size", sorted(PROFILES))
def test_kernel_profiles_match_spec(size):
    kernel = gaussian_kernel_1d(size)
    assert kernel.shape == (size,) and kernel.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(kernel, kernel[::-1])
    np.testing.assert_allclose((kernel / kernel.max() * 255)[size // 2:], PROFILES[size], atol=0.051)


def test_kernel_tables_and_sigmas():
    np.testing.assert_array_equal(gaussian_kernel_1d(1), [1.0])
    np.testing.assert_array_equal(gaussian_kernel_1d(3), [0.25, 0.5, 0.25])
    np.testing.assert_array_equal(gaussian_kernel_1d(5), np.array([1, 4, 6, 4, 1]) / 16)
    np.testing.assert_array_equal(gaussian_kernel_1d(7), np.array([1, 3.5, 7, 9, 7, 3.5, 1]) / 32)
    assert [round(kernel_sigma(k), 6) for k in (9, 11, 15, 23)] == [1.7, 2.0, 2.6, 3.8]
    # OpenCV agrees for these sizes in every version; k = 9 is the one OpenCV 5 turned into a table.
    for size in (3, 5, 7, 11, 15):
        np.testing.assert_allclose(gaussian_kernel_1d(size), cv2.getGaussianKernel(size, 0).ravel(), atol=1e-7)
    for bad in (0, 4, -3, 2.5, True):
        with pytest.raises(ValueError, match="positive odd"):
            gaussian_kernel_1d(bad)


def test_reflect101_and_blur_match_opencv_border():
    np.testing.assert_array_equal(reflect101(np.arange(-3, 8), 5), [3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1])
    rng = np.random.default_rng(0)
    maps = rng.random((2, 9, 7))
    kernel = gaussian_kernel_1d(7)
    for m, blurred in zip(maps, separable_blur(maps, kernel)):
        expect = cv2.sepFilter2D(m, cv2.CV_64F, kernel, kernel, borderType=cv2.BORDER_REFLECT_101)
        np.testing.assert_allclose(blurred, expect, atol=1e-12)


# ------------------------------------------------------------------------------------------- encode

@pytest.fixture(scope="module")
def codec15() -> MegviiHeatmap:
    return MegviiHeatmap((256, 192), (64, 48), kernel=15)


def test_encode_peak_at_floor_location(codec15):
    # 103.9 * 48/192 = 25.975 -> column 25 (floor, where HRNet would round to 26); 60.9 * 64/256 = 15.225 -> row 15.
    target, weight = codec15.encode(np.array([[103.9, 60.9]]), np.array([2]))
    assert target.shape == (1, 64, 48) and target.dtype == np.float32
    assert np.unravel_index(target[0].argmax(), (64, 48)) == (15, 25)
    assert target[0].max() == pytest.approx(255.0)
    np.testing.assert_allclose(target[0, 15, 25:33], PROFILES[15], atol=0.051)
    np.testing.assert_allclose(target[0, 15:23, 25], PROFILES[15], atol=0.051)
    assert weight.tolist() == [2.0]


def test_encode_equals_opencv_blur_of_a_one(codec15):
    rng = np.random.default_rng(1)
    xy = rng.uniform([0, 0], [191, 255], (17, 2))
    xy[:3] = [[0, 0], [191, 255], [2.0, 250.0]]  # corners and near-border joints exercise the reflect border
    target, _ = codec15.encode(xy, np.full(17, 2))
    kernel = gaussian_kernel_1d(15)
    for (x, y), t in zip(xy, target):
        one = np.zeros((64, 48))
        one[int(y * 64 / 256), int(x * 48 / 192)] = 1
        expect = cv2.sepFilter2D(one, cv2.CV_64F, kernel, kernel, borderType=cv2.BORDER_REFLECT_101)
        np.testing.assert_allclose(t, expect * 255 / expect.max(), atol=2e-4)


def test_reflect_border_moves_the_peak_of_a_joint_next_to_the_edge():
    # k=5, joint at map column 1: reflect-101 folds the tail, column 0 gets 2 * 4/16 = 0.5 > 6/16 + 1/16 at column 1.
    codec = MegviiHeatmap((36, 36), (9, 9), kernel=5)
    target, _ = codec.encode(np.array([[4.5, 16.2]]), np.array([2]))
    np.testing.assert_allclose(target[0, 4], [255, 223.125, 127.5, 31.875, 0, 0, 0, 0, 0], atol=1e-4)
    at_edge, _ = codec.encode(np.array([[0.0, 16.2]]), np.array([2]))
    np.testing.assert_allclose(at_edge[0, 4, :3], [255, 170, 42.5], atol=1e-4)


def test_in_crop_rule_and_weights_carry_visibility(codec15):
    xy = np.array([[191.0, 255.0], [191.01, 10], [-0.01, 10], [10, 255.2], [50, 50], [60, 60], [np.nan, np.nan],
                   [0.0, 0.0]])
    vis = np.array([2, 2, 1, 2, 0, 1, 2, 1])
    target, weight = codec15.encode(xy, vis)
    assert weight.tolist() == [2, 0, 0, 0, 0, 1, 0, 1]
    peaks = target.reshape(8, -1).max(axis=1)
    assert peaks.tolist() == [255, 0, 0, 0, 0, 255, 0, 255]
    assert np.unravel_index(target[0].argmax(), (64, 48)) == (63, 47)


# ------------------------------------------------------------------------------------------- decode

def _decode_one(codec, heatmap):
    coords, scores = codec.decode(heatmap[None, None])
    return coords[0, 0], scores[0, 0]


@pytest.fixture(scope="module")
def codec5() -> MegviiHeatmap:
    return MegviiHeatmap((256, 192), (64, 48), kernel=7, blur_kernel=5)


def test_decode_quarter_step_toward_second_maximum(codec5):
    hm = np.zeros((64, 48), np.float32)
    hm[30, 20], hm[30, 22] = 200, 100  # blurred: first max (20, 30), second (21, 30)
    coords, score = _decode_one(codec5, hm)
    np.testing.assert_allclose(coords, [20.25 * 4 + 2, 30 * 4 + 2])
    assert score == pytest.approx(200 / 255 + 0.5)


def test_decode_diagonal_step_and_row_major_ties(codec5):
    hm = np.zeros((64, 48), np.float32)
    hm[10, 10] = hm[11, 11] = 255  # ties broken row-major: first (10, 10), second (11, 11)
    coords, _ = _decode_one(codec5, hm)
    step = 0.25 / math.sqrt(2)
    np.testing.assert_allclose(coords, [(10 + step) * 4 + 2, (10 + step) * 4 + 2])
    single = np.zeros((64, 48), np.float32)
    single[10, 10] = 255  # four equal neighbours: the one above comes first in row-major order
    coords, score = _decode_one(codec5, single)
    np.testing.assert_allclose(coords, [10 * 4 + 2, 9.75 * 4 + 2])
    assert score == pytest.approx(1.5)


def test_decode_clamps_and_handles_negative_maps(codec5):
    corner = np.zeros((64, 48), np.float32)
    corner[0, 0] = 255  # second maximum lies in the zero border above: the step leaves the map and is clamped
    coords, _ = _decode_one(codec5, corner)
    np.testing.assert_allclose(coords, [2, 2])
    negative = np.full((64, 48), -1.0, np.float32)  # the padded zero border wins the argmax -> clamped to (0, 0)
    coords, score = _decode_one(codec5, negative)
    np.testing.assert_allclose(coords, [2, 2])
    assert score == pytest.approx(-1 / 255 + 0.5)


def test_decode_score_reads_the_unblurred_map_at_the_rounded_location(codec5):
    hm = np.zeros((64, 48), np.float32)
    hm[40, 12], hm[40, 13], hm[41, 12] = 120, 90, 30
    coords, score = _decode_one(codec5, hm)
    assert coords[0] == pytest.approx(12.25 * 4 + 2) and coords[1] == pytest.approx(40 * 4 + 2)
    assert score == pytest.approx(120 / 255 + 0.5)


def test_encode_decode_round_trip_and_batch(codec15):
    codec = MegviiHeatmap((256, 192), (64, 48), kernel=5)
    xy = np.array([[100.0, 60.0], [20.0, 200.0], [150.0, 30.0]])
    target, _ = codec.encode(xy, np.array([2, 2, 1]))
    batch = torch.from_numpy(np.stack([target, target[::-1].copy()]))
    coords, scores = codec.decode(batch)
    assert coords.shape == (2, 3, 2) and scores.shape == (2, 3)
    # peak at floor(xy / 4) = (25, 15); ties of the 4 neighbours -> the step goes up: y - 0.25
    np.testing.assert_allclose(coords[0, 0], [25 * 4 + 2, 14.75 * 4 + 2])
    np.testing.assert_allclose(coords[1, 2], coords[0, 0])
    assert np.abs(coords[0] - xy).max() < 2.5
    np.testing.assert_allclose(scores, 1.5)
    with pytest.raises(ValueError, match="N x K x h x w"):
        codec.decode(np.zeros((3, 64, 48)))


def test_build_codec_dispatch():
    spec = OutputSpec(stride=4, target="megvii", kernel=9, loss="mspn_l2", weight=0.25)
    codec = build_codec(spec, (256, 256))
    assert isinstance(codec, MegviiHeatmap) and codec.heatmap_hw == (64, 64)
    assert codec.kernel_size == 9 and codec.blur_kernel_size == 5
    assert build_codec(spec, (256, 256), blur_kernel=9).blur_kernel_size == 9


# ------------------------------------------------------------------------------------------- losses

def test_ohkm_picks_the_k_hardest_labelled_joints():
    pred = torch.zeros(1, 10, 2, 2)
    errors = torch.tensor([1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 5.0, 4.0, 6.0, 10.0])
    target = errors.sqrt().view(1, 10, 1, 1).expand(1, 10, 2, 2)  # per-joint mean squared error = errors
    weight = torch.tensor([[2, 1, 2, 2, 2, 2, 2, 2, 2, 0]], dtype=torch.float32)  # joint 9 (error 10) unlabelled
    loss = mspn_ohkm_loss(pred, target, weight, topk=3)
    assert loss.item() == pytest.approx((9 + 8 + 7) / 3)  # v=1 counts (labelled), v=0 does not
    assert mspn_ohkm_loss(pred, target, weight, topk=8).item() == pytest.approx((9 + 8 + 7 + 6 + 5 + 4 + 3 + 2) / 8)
    both = mspn_ohkm_loss(torch.cat([pred, pred]), torch.cat([target, target * 0]), torch.cat([weight, weight]), topk=3)
    assert both.item() == pytest.approx(8.0 / 2)


def test_l2_loss_regresses_non_visible_joints_to_zero():
    pred = torch.full((1, 3, 2, 2), 1.0)
    target = torch.full((1, 3, 2, 2), 3.0)
    weight = torch.tensor([[2.0, 1.0, 0.0]])  # only v=2 keeps its target; v=1 and v=0 are trained toward 0
    assert mspn_l2_loss(pred, target, weight).item() == pytest.approx((4 + 1 + 1) / 3)


def test_losses_fall_on_a_tiny_batch():
    torch.manual_seed(0)
    model = MSPN(num_keypoints=4, num_stages=1, channels=32, layers=(1, 1, 1, 1), width=16)
    rng = np.random.default_rng(0)
    codecs = [build_codec(spec, (64, 64)) for spec in model.outputs]
    targets, weights = [[] for _ in codecs], [[] for _ in codecs]
    for _ in range(2):
        xy, vis = rng.uniform(8, 56, (4, 2)), np.array([2, 2, 1, 2])
        for i, codec in enumerate(codecs):
            t, w = codec.encode(xy, vis)
            targets[i].append(torch.from_numpy(t))
            weights[i].append(torch.from_numpy(w))
    targets = [torch.stack(t) for t in targets]
    weights = [torch.stack(w) for w in weights]
    assert targets[0].shape == (2, 4, 16, 16)
    images = torch.randn(2, 3, 64, 64)
    # Targets peak at 255 while each head ends in BN (unit scale): a large step size lets the BN affine grow.
    optimizer = torch.optim.Adam(model.parameters(), lr=1.0)
    history, first_terms = [], None
    for _ in range(8):
        loss, terms = total_loss(model.outputs, model(images), targets, weights)
        assert len(terms) == 4
        first_terms = first_terms or [t.item() for t in terms]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert all(b < a for a, b in zip(history, history[1:]))
    assert history[-1] < 0.9 * history[0]
    assert all(t.item() < f for t, f in zip(terms, first_terms))
