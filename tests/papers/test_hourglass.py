"""Stacked hourglass (Torch7 layout), Ke et al.'s multi-scale supervised hourglass, and the Torch7 heatmap codec."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from posekit.codecs import OutputSpec, build_codec
from posekit.codecs.torch7 import Torch7Gaussian
from posekit.deploy.flops import count_macs, count_parameters
from posekit.losses import total_loss
from posekit.models.hourglass import (
    Hourglass, MultiScaleHourglass, PlainRegressor, RegressionHourglass, Residual, StackedHourglass,
    hourglass_1stack, hourglass_2stack, hourglass_4stack, hourglass_8stack, ke_multiscale_hourglass,
    ke_multiscale_hourglass_ablation,
)


def on_meta(builder, **kwargs):
    with torch.device("meta"):
        return builder(**kwargs)


def meta_forward(model: nn.Module, hw=(256, 256)):
    with torch.no_grad():
        return model(torch.zeros(1, 3, *hw, device="meta"))


# ------------------------------------------------------------------------------- independent parameter count

def conv_params(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout  # every Torch7 conv has a bias


def bn_params(c: int) -> int:
    return 2 * c


def residual_params(cin: int, cout: int) -> int:
    mid = cout // 2
    n = bn_params(cin) + conv_params(cin, mid, 1) + bn_params(mid) + conv_params(mid, mid, 3)
    n += bn_params(mid) + conv_params(mid, cout, 1)
    return n + (conv_params(cin, cout, 1) if cin != cout else 0)


def hourglass_params(depth: int, f: int, modules: int) -> int:
    # up1, low1, low3 at every level, plus the bottom residuals in place of the innermost recursion
    return (3 * depth + 1) * modules * residual_params(f, f)


def stacked_params(k: int, stacks: int, f: int, modules: int = 1, depth: int = 4, stem: str = "torch7") -> int:
    n = conv_params(3, 64, 7) + bn_params(64) + residual_params(64, 128)
    n += residual_params(128, 128) + residual_params(128, f) if stem == "torch7" else \
        residual_params(128, f) + residual_params(f, f)
    for i in range(stacks):
        n += hourglass_params(depth, f, modules) + modules * residual_params(f, f)
        n += conv_params(f, f, 1) + bn_params(f) + conv_params(f, k, 1)
        if i < stacks - 1:
            n += conv_params(f, f, 1) + conv_params(k, f, 1)
    return n


@pytest.mark.slow
def test_parameter_counts_from_layer_list():
    assert count_parameters(on_meta(hourglass_8stack)) == stacked_params(16, 8, 256) == 25_434_112
    assert count_parameters(on_meta(hourglass_1stack)) == stacked_params(16, 1, 256)
    assert count_parameters(on_meta(hourglass_2stack)) == stacked_params(16, 2, 256)
    assert count_parameters(on_meta(hourglass_4stack)) == stacked_params(16, 4, 256)
    assert count_parameters(on_meta(hourglass_8stack, num_keypoints=17)) == stacked_params(17, 8, 256)
    assert count_parameters(on_meta(hourglass_2stack, modules=4)) == stacked_params(16, 2, 256, modules=4)
    # bearpaw's stem (verified by loading a bearpaw hg8 state dict and comparing outputs: 25,594,624).
    assert count_parameters(on_meta(hourglass_8stack, stem="bearpaw")) == stacked_params(16, 8, 256, stem="bearpaw") \
        == 25_594_624


def test_ke_parameter_count_from_layer_list():
    k, f, stacks = 16, 64, 4
    backbone = stacked_params(k, stacks, f)
    side = stacks * 3 * conv_params(f, k, 1)
    regression = (conv_params(4 * k, f, 1) + bn_params(f) + hourglass_params(4, f, 1) + residual_params(f, f)
                  + conv_params(f, f, 1) + bn_params(f) + conv_params(f, k, 1))
    assert count_parameters(on_meta(ke_multiscale_hourglass)) == backbone + side + regression == 1_163_728
    feedback = on_meta(ke_multiscale_hourglass, ms_feedback=True)
    assert count_parameters(feedback) == 1_163_728 + stacks * 3 * conv_params(k, f, 1)


def test_macs_at_256():
    assert count_macs(on_meta(hourglass_8stack), (256, 256)) == 27_440_185_344
    assert count_macs(on_meta(ke_multiscale_hourglass), (256, 256)) == 2_415_116_288


# ------------------------------------------------------------------------------------------------ layout

def test_residual_layout_and_skip():
    block = Residual(64, 128)
    names = [n for n, _ in block.named_children()]
    assert names == ["bn1", "conv1", "bn2", "conv2", "bn3", "conv3", "relu", "downsample"]
    assert (block.conv1.in_channels, block.conv1.out_channels, block.conv1.kernel_size) == (64, 64, (1, 1))
    assert (block.conv2.in_channels, block.conv2.out_channels, block.conv2.kernel_size, block.conv2.padding) == \
        (64, 64, (3, 3), (1, 1))
    assert (block.conv3.in_channels, block.conv3.out_channels, block.conv3.kernel_size) == (64, 128, (1, 1))
    assert [bn.num_features for bn in (block.bn1, block.bn2, block.bn3)] == [64, 64, 64]
    assert all(c.bias is not None for c in block.modules() if isinstance(c, nn.Conv2d))
    skip = block.downsample
    assert len(skip) == 1 and isinstance(skip[0], nn.Conv2d) and skip[0].kernel_size == (1, 1)
    assert Residual(32, 32).downsample is None
    with pytest.raises(ValueError, match="even"):
        Residual(8, 7)


def test_residual_forward_is_preactivation_sum():
    torch.manual_seed(0)
    block = Residual(6, 8).eval()
    for bn in (block.bn1, block.bn2, block.bn3):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 6, 5, 5)

    def bn(m, t):
        return (t - m.running_mean[None, :, None, None]) / torch.sqrt(m.running_var[None, :, None, None] + m.eps) \
            * m.weight[None, :, None, None] + m.bias[None, :, None, None]

    y = F.conv2d(F.relu(bn(block.bn1, x)), block.conv1.weight, block.conv1.bias)
    y = F.conv2d(F.relu(bn(block.bn2, y)), block.conv2.weight, block.conv2.bias, padding=1)
    y = F.conv2d(F.relu(bn(block.bn3, y)), block.conv3.weight, block.conv3.bias)
    skip = block.downsample[0]
    expected = y + F.conv2d(x, skip.weight, skip.bias)
    with torch.no_grad():
        out = block(x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert (out < 0).any()  # no ReLU after the sum
    identity = Residual(8, 8).eval()
    with torch.no_grad():
        x8 = torch.randn(1, 8, 3, 3)
        inner = identity.conv3(identity.relu(identity.bn3(identity.conv2(identity.relu(identity.bn2(
            identity.conv1(identity.relu(identity.bn1(x8)))))))))
        torch.testing.assert_close(identity(x8), inner + x8)


def test_hourglass_recursion_by_hand_and_taps():
    torch.manual_seed(1)
    hg = Hourglass(depth=2, features=8, modules=1).eval()
    assert [len(level) for level in hg.hg] == [4, 3]
    x = torch.randn(1, 8, 8, 8)
    with torch.no_grad():
        up = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731
        inner_in = hg.hg[1][1](F.max_pool2d(x, 2))
        inner = hg.hg[0][0](inner_in) + up(hg.hg[0][2](hg.hg[0][3](hg.hg[0][1](F.max_pool2d(inner_in, 2)))))
        expected = hg.hg[1][0](x) + up(hg.hg[1][2](inner))
        torch.testing.assert_close(hg(x), expected)
        seen = []
        out = hg(x, tap=lambda factor, t: seen.append((factor, tuple(t.shape))) or t)
        torch.testing.assert_close(out, expected)
        assert seen == [(2, (1, 8, 4, 4)), (1, (1, 8, 8, 8))]
        # What the tap returns continues up the decoder.
        shifted = hg(x, tap=lambda factor, t: t + 1 if factor == 2 else t)
        assert not torch.allclose(shifted, expected)


def test_stacked_forward_by_hand():
    torch.manual_seed(2)
    model = StackedHourglass(num_keypoints=3, stacks=2, features=8, depth=2).eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        m = model
        t = F.relu(m.bn1(m.conv1(x)))
        inter = m.layer3(m.layer2(F.max_pool2d(m.layer1(t), 2)))
        assert inter.shape == (1, 8, 4, 4)
        ll0 = m.fc[0](m.res[0](m.hg[0](inter)))
        h0 = m.score[0](ll0)
        inter1 = inter + m.fc_[0](ll0) + m.score_[0](h0)
        h1 = m.score[1](m.fc[1](m.res[1](m.hg[1](inter1))))
        out = model(x)
    assert len(out) == 2
    torch.testing.assert_close(out[0], h0)
    torch.testing.assert_close(out[1], h1)
    assert len(model.fc_) == len(model.score_) == 1  # no remap after the last stack
    assert [type(layer) for layer in m.fc[0]] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]


KEY = re.compile(
    r"conv1\.(weight|bias)|bn1\.\w+"
    r"|layer[123]\.0\.(bn[123]|conv[123]|downsample\.0)\.\w+"
    r"|hg\.[0-7]\.hg\.[0-3]\.[0-3]\.0\.(bn[123]|conv[123])\.\w+"
    r"|res\.[0-7]\.0\.(bn[123]|conv[123])\.\w+"
    r"|fc\.[0-7]\.[01]\.\w+|score\.[0-7]\.(weight|bias)|fc_\.[0-6]\.(weight|bias)|score_\.[0-6]\.(weight|bias)"
)


def test_state_dict_keys_follow_bearpaw_layout():
    sd = on_meta(hourglass_8stack).state_dict()
    assert [k for k in sd if not KEY.fullmatch(k)] == []
    assert sd["hg.0.hg.0.3.0.conv2.weight"].shape == (128, 128, 3, 3)  # bottom residuals only at level 0
    assert not any(k.startswith("hg.0.hg.1.3.") for k in sd)
    assert sd["score.7.weight"].shape == (16, 256, 1, 1)
    assert sd["score_.6.weight"].shape == (256, 16, 1, 1)
    assert "layer3.0.downsample.0.weight" in sd and "layer2.0.downsample.0.weight" not in sd
    bearpaw = on_meta(hourglass_8stack, stem="bearpaw").state_dict()
    assert sd.keys() ^ bearpaw.keys() == {"layer2.0.downsample.0.weight", "layer2.0.downsample.0.bias",
                                          "layer3.0.downsample.0.weight", "layer3.0.downsample.0.bias"}


def test_torch7_init_bn_uniform():
    torch.manual_seed(0)
    model = StackedHourglass(num_keypoints=2, stacks=1, features=16, depth=1)
    weights = torch.cat([m.weight for m in model.modules() if isinstance(m, nn.BatchNorm2d)])
    assert 0 <= weights.min() and weights.max() <= 1 and weights.std() > 0.1
    plain = StackedHourglass(num_keypoints=2, stacks=1, features=16, depth=1, torch7_init=False)
    assert all(torch.all(m.weight == 1) for m in plain.modules() if isinstance(m, nn.BatchNorm2d))


# ------------------------------------------------------------------------------------------- outputs, seam

def test_stacked_outputs_and_shapes():
    model = on_meta(hourglass_8stack)
    out = meta_forward(model)
    assert [tuple(o.shape) for o in out] == [(1, 16, 64, 64)] * 8
    assert len(model.outputs) == 8
    assert {(s.stride, s.target, s.sigma, s.loss) for s in model.outputs} == {(4, "torch7", 1.0, "mean_mse")}
    assert model.name == "hourglass_8stack" and model.num_keypoints == 16 and model.input_channels == 3
    assert [tuple(o.shape) for o in meta_forward(model, (128, 192))] == [(1, 16, 32, 48)] * 8
    assert len(on_meta(hourglass_1stack).outputs) == 1 and len(on_meta(hourglass_4stack).outputs) == 4


@pytest.mark.parametrize("shape", [(1, 3, 256, 250), (1, 3, 96, 128), (1, 1, 256, 256), (3, 256, 256)])
def test_input_shape_errors(shape):
    model = on_meta(hourglass_2stack)
    with pytest.raises(ValueError, match=r"multiples of 64, got shape"):
        model(torch.zeros(*shape, device="meta"))


def test_ke_outputs_strides_and_shapes():
    model = on_meta(ke_multiscale_hourglass)
    out = meta_forward(model)
    per_stack = [(1, 16, 8, 8), (1, 16, 16, 16), (1, 16, 32, 32), (1, 16, 64, 64)]
    assert [tuple(o.shape) for o in out] == per_stack * 4 + [(1, 16, 64, 64)]
    assert [s.stride for s in model.outputs] == [32, 16, 8, 4] * 4 + [4]
    assert {(s.target, s.sigma, s.loss) for s in model.outputs} == {("torch7", 1.0, "sum_mse")}
    assert model.stacks == 4 and model.features == 64 and model.scales == (8, 4, 2)
    assert isinstance(model.regressor, RegressionHourglass)
    # Every declared output has a codec whose target has exactly the output's size.
    for spec, o in zip(model.outputs, out):
        assert build_codec(spec, (256, 256)).heatmap_hw == tuple(o.shape[-2:])


def test_ke_regression_input_has_4k_channels():
    model = on_meta(ke_multiscale_hourglass)
    seen = []
    model.regressor.register_forward_hook(lambda m, inp, out: seen.append(tuple(inp[0].shape)))
    meta_forward(model)
    assert seen == [(1, 64, 64, 64)] and model.regressor.in_channels == 64
    assert model.regressor.pre[0].in_channels == 64
    plain = on_meta(ke_multiscale_hourglass, regressor="plain")
    assert isinstance(plain.regressor, PlainRegressor) and plain.regressor.body[0].in_channels == 64
    assert tuple(meta_forward(plain)[-1].shape) == (1, 16, 64, 64)


@pytest.mark.parametrize("scales,strides", [
    ((), [4]), ((2,), [8, 4]), ((2, 4), [16, 8, 4]), ((4, 2, 8), [32, 16, 8, 4]),
])
@pytest.mark.parametrize("regression", [True, False])
def test_ke_ablation_switches(scales, strides, regression):
    model = on_meta(ke_multiscale_hourglass, scales=scales, regression=regression)
    out = meta_forward(model)
    expected = strides * 4 + ([4] if regression else [])
    assert [s.stride for s in model.outputs] == expected
    assert [256 // o.shape[-1] for o in out] == expected
    assert (model.regressor is None) != regression
    if regression:
        assert model.regressor.in_channels == 16 * len(strides)


def test_ke_ablation_builder_and_errors():
    model = on_meta(ke_multiscale_hourglass_ablation)
    assert model.scales == (4, 2) and model.name == "ke_multiscale_hourglass_ablation"
    assert len(model.outputs) == 13
    with pytest.raises(ValueError, match="scales"):
        on_meta(ke_multiscale_hourglass, scales=(16,))
    with pytest.raises(ValueError, match="scales"):
        on_meta(ke_multiscale_hourglass, scales=(2, 2))
    with pytest.raises(ValueError, match="regressor"):
        on_meta(ke_multiscale_hourglass, regressor="mlp")
    assert count_parameters(on_meta(ke_multiscale_hourglass, regression=False)) == \
        stacked_params(16, 4, 64) + 4 * 3 * conv_params(64, 16, 1)


def test_ke_side_heads_read_decoder_merges_and_regression_reads_last_stack():
    torch.manual_seed(3)
    model = MultiScaleHourglass(num_keypoints=2, stacks=2, features=8, scales=(2, 4), depth=3).eval()
    x = torch.rand(1, 3, 64, 64)
    merges = []
    with torch.no_grad():
        inter = model.stem(x)
        ll, h0 = model.stack_head(0, model.hg[0](inter))
        inter1 = model.remap(0, inter, ll, h0)
        hg_out = model.hg[1](inter1, tap=lambda f, t: merges.append((f, t)) or t)
        _, h1 = model.stack_head(1, hg_out)
        out = model(x)
    assert [f for f, _ in merges] == [4, 2, 1]
    side4 = model.side_heads[1][0](merges[0][1])
    side2 = model.side_heads[1][1](merges[1][1])
    torch.testing.assert_close(out[3], side4)
    torch.testing.assert_close(out[4], side2)
    torch.testing.assert_close(out[5], h1)
    up = [F.interpolate(s, size=(16, 16), mode="bilinear", align_corners=False) for s in (side4, side2)]
    with torch.no_grad():
        torch.testing.assert_close(out[6], model.regressor(torch.cat([h1] + up, dim=1)))


def test_ms_feedback_with_zero_remaps_equals_no_feedback():
    torch.manual_seed(4)
    plain = MultiScaleHourglass(num_keypoints=2, stacks=2, features=8, depth=2, scales=(2,)).eval()
    feedback = MultiScaleHourglass(num_keypoints=2, stacks=2, features=8, depth=2, scales=(2,), ms_feedback=True).eval()
    missing = feedback.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == sorted(f"side_remaps.{s}.0.{p}" for s in range(2) for p in ("weight", "bias"))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for m in feedback.side_remaps.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.zero_()
                m.bias.zero_()
        for a, b in zip(plain(x), feedback(x)):
            torch.testing.assert_close(a, b)
        feedback.side_remaps[0][0].bias.fill_(0.5)
        out_plain, out_fb = plain(x), feedback(x)
    torch.testing.assert_close(out_plain[0], out_fb[0])  # the side head itself is read before the feedback
    assert not torch.allclose(out_plain[1], out_fb[1])


# ---------------------------------------------------------------------------------------- Torch7 codec

def lua_draw_gaussian(img: np.ndarray, pt, sigma: float) -> bool:
    """pose-hg-train ``drawGaussian`` transliterated with 1-based indices (pt 1-based integer x, y)."""
    h, w = img.shape
    tmp = math.ceil(3 * sigma)
    ul = [math.floor(pt[0] - tmp), math.floor(pt[1] - tmp)]
    br = [math.floor(pt[0] + tmp), math.floor(pt[1] + tmp)]
    if ul[0] > w or ul[1] > h or br[0] < 1 or br[1] < 1:
        return False
    size = 2 * tmp + 1
    # image.gaussian(size): amplitude 1, sigma 0.25 of the size, mean at 0.5 * size + 0.5 (1-based)
    u = np.arange(1, size + 1)
    g1 = np.exp(-0.5 * ((u - (0.5 * size + 0.5)) / (0.25 * size)) ** 2)
    g = g1[:, None] * g1[None, :]
    g_x = [max(1, -ul[0]), min(br[0], w) - max(1, ul[0]) + max(1, -ul[0])]
    g_y = [max(1, -ul[1]), min(br[1], h) - max(1, ul[1]) + max(1, -ul[1])]
    img_x = [max(1, ul[0]), min(br[0], w)]
    img_y = [max(1, ul[1]), min(br[1], h)]
    region = img[img_y[0] - 1:img_y[1], img_x[0] - 1:img_x[1]]
    region[...] = np.maximum(region, g[g_y[0] - 1:g_y[1], g_x[0] - 1:g_x[1]])
    return True


def test_patch_is_size_7_with_std_1_75():
    codec = Torch7Gaussian((256, 256), (64, 64), sigma=1.0)
    assert (codec.size, codec.std) == (7, 1.75)
    target, weight = codec.encode(np.array([[120.0, 80.0]]), np.array([2]))
    hm = target[0]
    assert weight.tolist() == [1.0] and hm[20, 30] == 1.0
    support = np.argwhere(hm > 0)
    assert support.min(0).tolist() == [17, 27] and support.max(0).tolist() == [23, 33]
    expected_row = np.exp(-0.5 * (np.arange(-3, 4) / 1.75) ** 2)
    np.testing.assert_allclose(hm[20, 27:34], expected_row, rtol=1e-6)
    np.testing.assert_allclose(hm[20, 31], 0.8493658, rtol=1e-6)  # exp(-1 / (2 * 1.75^2))
    np.testing.assert_allclose(hm[23, 33], np.exp(-9 / 1.75 ** 2), rtol=1e-6)
    assert Torch7Gaussian((256, 256), (64, 64), sigma=2.0).size == 13
    assert Torch7Gaussian((256, 256), (64, 64), sigma=2.0).std == 3.25


def test_cell_is_truncated_not_rounded():
    codec = Torch7Gaussian((256, 256), (64, 64))
    xy = np.array([[103.9, 7.99], [3.99, 4.0], [-2.0, -3.9], [-4.0, 255.9]])
    assert codec.cells(xy).tolist() == [[25, 1], [0, 1], [0, 0], [-1, 63]]
    target, weight = codec.encode(xy[:1], np.array([1]))
    assert np.unravel_index(target[0].argmax(), target[0].shape) == (3, 25)  # border quirk moves y = 1 to 3
    exact = Torch7Gaussian((256, 256), (64, 64), border_quirk=False).encode(xy[:1], np.array([1]))[0]
    assert np.unravel_index(exact[0].argmax(), exact[0].shape) == (1, 25)


def test_encode_matches_lua_draw_gaussian_everywhere():
    rng = np.random.default_rng(0)
    xy = rng.uniform(-30, 290, size=(400, 2))
    xy[:40, 0] = np.arange(-20, 20)  # every cell near the left border
    xy[40:80, 1] = np.arange(236, 276)
    codec = Torch7Gaussian((256, 256), (64, 64))
    target, weight = codec.encode(xy, np.full(400, 2))
    for j in range(len(xy)):
        oracle = np.zeros((64, 64))
        p1 = (int(xy[j, 0] / 4) + 1, int(xy[j, 1] / 4) + 1)  # Torch7 transform: C truncation, then 1-based
        drawn = lua_draw_gaussian(oracle, p1, 1.0)
        np.testing.assert_allclose(target[j], oracle, rtol=1e-6, atol=1e-7, err_msg=f"joint {xy[j]}")
        assert weight[j] == float(drawn)
    assert 0 < weight.sum() < 400


def test_border_quirk_shifts_left_border_only():
    codec = Torch7Gaussian((256, 256), (64, 64))
    row = lambda x: codec.encode(np.array([[x, 128.0]]), np.array([2]))[0][0, 32]  # noqa: E731
    g = np.exp(-0.5 * (np.arange(-6, 7) / 1.75) ** 2)
    # cell 2: patch sticks out by 1 -> centred one pixel inward (column 3), right end still at 5
    np.testing.assert_allclose(row(8.0)[:7], np.r_[g[3:9], 0], rtol=1e-6)
    # cell 1 and cell 0: out by 2 and 3 -> two pixels inward
    np.testing.assert_allclose(row(4.0)[:6], np.r_[g[3:8], 0], rtol=1e-6)
    np.testing.assert_allclose(row(0.0)[:5], np.r_[g[4:8], 0], rtol=1e-6)
    # right border: cell 62 -> columns 59..63 of a correctly centred patch
    np.testing.assert_allclose(row(249.0)[59:], g[3:8], rtol=1e-6)
    fixed = Torch7Gaussian((256, 256), (64, 64), border_quirk=False)
    np.testing.assert_allclose(fixed.encode(np.array([[4.0, 128.0]]), np.array([2]))[0][0, 32, :5], g[5:10], rtol=1e-6)


def test_weights_and_clipping():
    codec = Torch7Gaussian((256, 256), (64, 64))
    xy = np.array([[100.0, 100.0], [100.0, 100.0], [100.0, 100.0], [267.9, 100.0], [268.0, 100.0],
                   [-12.0, 100.0], [-16.0, 100.0], [np.nan, np.nan]])
    vis = np.array([2, 1, 0, 2, 2, 2, 2, 0])
    target, weight = codec.encode(xy, vis)
    # cell 66: one column (63) left; cell 67 entirely outside; cell -3 touches column 0; cell -4 outside
    assert weight.tolist() == [1, 1, 0, 1, 0, 1, 0, 0]
    assert target[2].max() == 0 and target[4].max() == 0 and target[6].max() == 0 and target[7].max() == 0
    assert np.flatnonzero(target[3].max(0)).tolist() == [63]
    np.testing.assert_allclose(target[3][25, 63], np.exp(-0.5 * (3 / 1.75) ** 2), rtol=1e-6)
    assert np.flatnonzero(target[5].max(0)).tolist() == [0]
    # the quirk: cell -3 draws the value one pixel from the centre at column 0 (the Lua index max(1, -ul))
    np.testing.assert_allclose(target[5][25, 0], np.exp(-0.5 / 1.75 ** 2), rtol=1e-6)
    assert target.dtype == np.float32 and weight.dtype == np.float32 and target.shape == (8, 64, 64)


def test_exact_sigma_option():
    codec = Torch7Gaussian((256, 256), (64, 64), sigma=1.0, exact_sigma=True)
    hm = codec.encode(np.array([[120.0, 80.0]]), np.array([2]))[0][0]
    np.testing.assert_allclose(hm[20, 27:34], np.exp(-0.5 * np.arange(-3, 4) ** 2), rtol=1e-6)
    assert (hm > 0).sum() == 49


def test_flip_needs_no_shift():
    """Floor bins mirror exactly: encode(W - 1 - x) is the mirrored encode(x) for integer crop pixels."""
    codec = Torch7Gaussian((256, 256), (64, 64), border_quirk=False)
    xs = np.arange(0, 256, dtype=np.float64)
    xy = np.stack([xs, np.full_like(xs, 100.0)], 1)
    mirrored = np.stack([255 - xs, np.full_like(xs, 100.0)], 1)
    vis = np.full(len(xs), 2)
    np.testing.assert_array_equal(codec.encode(xy, vis)[0][..., ::-1], codec.encode(mirrored, vis)[0])


def test_decode_round_trip_within_half_cell():
    rng = np.random.default_rng(1)
    xy = rng.uniform(16, 240, size=(2, 16, 2))
    for stride, hw in ((4, (64, 64)), (8, (32, 32)), (32, (8, 8))):
        built = build_codec(OutputSpec(stride=stride, target="torch7", sigma=1.0), (256, 256))
        assert isinstance(built, Torch7Gaussian) and built.heatmap_hw == hw and built.border_quirk
        # At stride 4 these joints are clear of the left/top border band; on coarser maps the Lua border
        # quirk would move cells 0-2, so the round trip is checked on the correctly clipped patch there.
        codec = built if stride == 4 else Torch7Gaussian((256, 256), hw, border_quirk=False)
        maps = np.stack([codec.encode(p, np.full(16, 2))[0] for p in xy])
        coords, scores = codec.decode(torch.from_numpy(maps))
        # A symmetric patch gives no quarter step: the result is the centre of the floor bin.
        np.testing.assert_allclose(coords, (np.floor(xy / stride) + 0.5) * stride)
        assert np.abs(coords - xy).max() <= stride / 2
        np.testing.assert_array_equal(scores, 1.0)


def test_decode_quarter_step_borders_and_offset():
    codec = Torch7Gaussian((256, 256), (64, 64))
    hm = np.zeros((1, 6, 64, 64), dtype=np.float32)
    hm[0, 0, 20, 10] = 1.0
    hm[0, 0, 20, 11] = 0.5   # right neighbour higher -> +0.25 in x
    hm[0, 0, 19, 10] = 0.5   # upper neighbour higher -> -0.25 in y
    hm[0, 1, 30, 1] = 1.0
    hm[0, 1, 30, 2] = 0.3    # column 1 is stepped (Torch7: 1 < p < res in 1-based)
    hm[0, 2, 30, 0] = 1.0
    hm[0, 2, 30, 1] = 0.3    # column 0: no step
    hm[0, 3, 62, 40] = 1.0
    hm[0, 3, 61, 40] = 0.3   # row 62 = res - 2 is stepped
    hm[0, 4, 63, 40] = 1.0
    hm[0, 4, 62, 40] = 0.3   # last row: no step
    hm[0, 5] = -1.0          # maximum <= 0 -> cell (0, 0)
    coords, scores = codec.decode(hm)
    np.testing.assert_allclose(coords[0], 4 * (np.array([
        [10.25, 19.75], [1.25, 30], [0, 30], [40, 61.75], [40, 63], [0, 0]]) + 0.5))
    np.testing.assert_allclose(scores[0], [1, 1, 1, 1, 1, -1])
    plain = Torch7Gaussian((256, 256), (64, 64), post_process=False)
    np.testing.assert_allclose(plain.decode(hm)[0][0, 0], [42.0, 82.0])


def test_decode_tiny_maps_skip_the_step():
    codec = Torch7Gaussian((64, 64), (2, 2))
    hm = np.array([[[[0.1, 0.9], [0.2, 0.3]]]], dtype=np.float32)
    coords, scores = codec.decode(hm)
    np.testing.assert_allclose(coords[0, 0], [48.0, 16.0])
    np.testing.assert_allclose(scores[0, 0], 0.9, rtol=1e-6)


# ------------------------------------------------------------------------------------------------ training

def _fit(model: nn.Module, input_hw, steps: int = 8, lr: float = 2e-3):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    k = model.num_keypoints
    codecs = [build_codec(spec, input_hw) for spec in model.outputs]
    xy = rng.uniform(8, input_hw[1] - 8, size=(2, k, 2))
    vis = np.array([[2] * (k - 1) + [0]] * 2)
    targets, weights = [], []
    for codec in codecs:
        pairs = [codec.encode(p, v) for p, v in zip(xy, vis)]
        targets.append(torch.from_numpy(np.stack([t for t, _ in pairs])))
        weights.append(torch.from_numpy(np.stack([w for _, w in pairs])))
    images = torch.rand(2, 3, *input_hw)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss, terms = total_loss(model.outputs, model(images), targets, weights)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses, terms


def test_stacked_hourglass_loss_falls():
    torch.manual_seed(0)
    model = StackedHourglass(num_keypoints=4, stacks=2, features=16, depth=3)
    losses, terms = _fit(model, (32, 32), steps=10)
    assert len(terms) == 2
    assert losses[-1] < 0.8 * losses[0]


def test_ke_loss_falls_on_every_output():
    torch.manual_seed(0)
    model = MultiScaleHourglass(num_keypoints=4, stacks=2, features=16, scales=(2, 4, 8))
    losses, terms = _fit(model, (64, 64), steps=10, lr=1e-3)
    assert len(terms) == 9
    assert losses[-1] < 0.6 * losses[0]


def test_ke_side_heads_get_the_clean_border_and_stacks_the_torch7_one():
    from posekit.codecs import build_codec

    model = on_meta(ke_multiscale_hourglass)
    side = [s for s in model.outputs if s.stride > 4]
    main = [s for s in model.outputs if s.stride == 4]
    assert side and all(not s.quirks for s in side) and all(s.quirks for s in main)
    assert build_codec(side[0], (256, 256)).border_quirk is False
    assert build_codec(main[0], (256, 256)).border_quirk is True


def test_exact_sigma_target_option():
    from posekit.codecs import GaussianHeatmap, build_codec

    model = on_meta(hourglass_2stack, target="gaussian", sigma=1.0)
    assert all(s.target == "gaussian" and s.sigma == 1.0 for s in model.outputs)
    codec = build_codec(model.outputs[-1], (256, 256))
    assert isinstance(codec, GaussianHeatmap)
    heatmap, _ = codec.encode(np.array([[128.0, 128.0]]), np.array([2]))
    assert heatmap[0, 32, 33] == pytest.approx(np.exp(-0.5))     # a true sigma of 1 heatmap px
