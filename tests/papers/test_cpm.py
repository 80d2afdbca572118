"""CPM against the release prototxt (spec 2.2), its Caffe belief maps (2.3, 2.4), decoding (2.7), the seam."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from posekit.codecs import GaussianHeatmap, OutputSpec, build_codec
from posekit.codecs.cpm import EXPONENT_CUTOFF, CPMBeliefMap, center_map, cubic_upsample_matrix
from posekit.deploy.flops import count_parameters
from posekit.losses import total_loss
from posekit.models.cpm import (CPM, cpm_1stage, cpm_2stage, cpm_3stage, cpm_4stage, cpm_5stage, cpm_6stage,
                                cpm_6stage_topdown)

BUILDERS = [cpm_1stage, cpm_2stage, cpm_3stage, cpm_4stage, cpm_5stage, cpm_6stage]


def meta(builder, **kwargs) -> CPM:
    with torch.device("meta"):
        return builder(**kwargs)


def params_of(model: nn.Module, layers) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if name.split(".")[0] in layers)


def small_input(model: CPM, hw=(64, 64), batch=1, seed=0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, 3, *hw, generator=gen)
    if not model.center_map:
        return image
    centre = torch.from_numpy(center_map(hw, sigma=6.0))[None, None].expand(batch, 1, *hw)
    return torch.cat([image, centre], dim=1)


def caffe_put_gaussian_maps(entry, cx, cy, stride, sigma):
    """Caffe ``putGaussianMaps`` transcribed loop by loop, as the reference for the vectorised codec."""
    start = stride / 2.0 - 0.5
    grid_y, grid_x = entry.shape
    for g_y in range(grid_y):
        for g_x in range(grid_x):
            x = start + g_x * stride
            y = start + g_y * stride
            exponent = ((x - cx) ** 2 + (y - cy) ** 2) / 2.0 / sigma / sigma
            if exponent > 4.6052:
                continue
            entry[g_y, g_x] += math.exp(-exponent)
            if entry[g_y, g_x] > 1:
                entry[g_y, g_x] = 1


# ------------------------------------------------------------------------------------------- architecture

def test_parameter_counts_exact_total_and_per_part():
    model = meta(cpm_6stage)
    assert count_parameters(model) == 31_219_866
    stage1 = [f"conv{i}_stage1" for i in range(1, 8)]
    trunk = ["conv1_stage2", "conv2_stage2", "conv3_stage2"]
    assert params_of(model, stage1) == 4_386_095
    assert params_of(model, trunk) == 2_685_696
    for t in range(2, 7):
        feature = "conv4_stage2" if t == 2 else f"conv1_stage{t}"
        assert params_of(model, [feature] + [f"Mconv{i}_stage{t}" for i in range(1, 6)]) == 4_829_615
    # Every parameter belongs to one of these parts.
    assert 4_386_095 + 2_685_696 + 5 * 4_829_615 == 31_219_866


def test_builders_count_one_stage_more_each():
    counts = [count_parameters(meta(b)) for b in BUILDERS]
    assert counts[0] == 4_386_095
    assert counts[1] == 4_386_095 + 2_685_696 + 4_829_615
    assert np.diff(counts[1:]).tolist() == [4_829_615] * 4
    assert [meta(b).name for b in BUILDERS] == [f"cpm_{t}stage" for t in range(1, 7)]


def test_flic_and_topdown_counts():
    # FLIC: 9 parts + background, no centre map, 4 stages: conv7 and every Mconv5 lose 5 outputs, every
    # Mconv1 6 inputs (5 beliefs + the centre map).
    flic = meta(lambda: CPM(num_parts=9, stages=4, center_map=False))
    stage = 4_829_615 - 6 * 128 * 121 - 5 * 129
    assert count_parameters(flic) == (4_386_095 - 5 * 513) + 2_685_696 + 3 * stage == 21_277_352
    # Top-down: no background (one output fewer everywhere), no centre map.
    topdown = meta(cpm_6stage_topdown)
    assert count_parameters(topdown) == 31_219_866 - 513 - 5 * (2 * 128 * 121 + 129) == 31_063_828


def test_layer_names_and_shapes_follow_the_prototxt():
    sd = meta(cpm_6stage).state_dict()
    assert sd["conv1_stage1.weight"].shape == (128, 3, 9, 9)
    assert sd["conv4_stage1.weight"].shape == (32, 128, 5, 5)
    assert sd["conv5_stage1.weight"].shape == (512, 32, 9, 9)
    assert sd["conv7_stage1.weight"].shape == (15, 512, 1, 1)
    assert sd["conv1_stage2.weight"].shape == (128, 3, 9, 9)
    assert sd["conv4_stage2.weight"].shape == (32, 128, 5, 5)
    assert sd["conv1_stage6.weight"].shape == (32, 128, 5, 5)
    # Stages >= 2 read [32 features, 15 beliefs, 1 centre map] = 48 channels.
    assert sd["Mconv1_stage2.weight"].shape == (128, 32 + 15 + 1, 11, 11)
    assert sd["Mconv3_stage4.weight"].shape == (128, 128, 11, 11)
    assert sd["Mconv4_stage5.weight"].shape == (128, 128, 1, 1)
    assert sd["Mconv5_stage6.bias"].shape == (15,)
    assert len(sd) == 2 * (7 + 3 + 5 * 6)
    assert "conv1_stage2.weight" not in meta(cpm_1stage).state_dict()


def test_outputs_at_368_are_46x46_with_background():
    model = meta(cpm_6stage)
    assert model.input_channels == 4 and model.num_keypoints == 14
    out = model(torch.zeros(1, 4, 368, 368))
    assert [tuple(o.shape) for o in out] == [(1, 15, 46, 46)] * 6
    assert [tuple(o.shape) for o in model(torch.zeros(2, 4, 368, 256))] == [(2, 15, 46, 32)] * 6


def test_ceil_pooling_and_caffe_average_divisor():
    centre = torch.ones(1, 1, 368, 368)
    pooled = meta(cpm_6stage).pool_center_lower
    assert tuple(pooled(centre.to("meta")).shape) == (1, 1, 46, 46)
    # Floor rounding (a naive port) loses a row and a column.
    assert tuple(nn.AvgPool2d(9, 8)(centre).shape) == (1, 1, 45, 45)
    # Caffe divides an edge window by its in-image size (pad 0): ones stay ones in the last (8-wide) window.
    real = CPM(num_parts=2, stages=2).pool_center_lower
    assert torch.allclose(real(centre), torch.ones(1, 1, 46, 46))
    floor_model = meta(lambda: cpm_2stage(pool_ceil=False))
    assert [tuple(o.shape) for o in floor_model(torch.zeros(1, 4, 368, 368))] == [(1, 15, 45, 45)] * 2


def test_stage_input_order_features_beliefs_centre_and_trunk_computed_once():
    torch.manual_seed(0)
    model = CPM(num_parts=3, stages=3).eval()
    x = small_input(model)
    seen = {}
    calls = []
    hooks = [
        model.Mconv1_stage3.register_forward_hook(lambda m, i, o: seen.__setitem__("concat3", i[0])),
        model.pool3_stage2.register_forward_hook(lambda m, i, o: seen.__setitem__("trunk", o)),
        model.conv1_stage3.register_forward_hook(lambda m, i, o: seen.__setitem__("feat3_in", i[0])),
        model.conv1_stage2.register_forward_hook(lambda m, i, o: calls.append(1)),
    ]
    with torch.no_grad():
        out = model(x)
    for h in hooks:
        h.remove()
    assert len(calls) == 1
    assert seen["feat3_in"] is seen["trunk"]
    concat = seen["concat3"]
    assert concat.shape[1] == 32 + 4 + 1 == model.Mconv1_stage3.in_channels
    with torch.no_grad():
        features = F.relu(model.conv1_stage3(seen["trunk"]))
        centre = F.avg_pool2d(x[:, 3:], 9, 8, ceil_mode=True)
    assert torch.equal(concat[:, :32], features)
    assert torch.equal(concat[:, 32:36], out[1])
    assert torch.equal(concat[:, 36:], centre)


def test_stage1_sees_only_the_image_and_later_stages_see_the_centre_map():
    torch.manual_seed(0)
    model = CPM(num_parts=3, stages=2).eval()
    x = small_input(model)
    moved = x.clone()
    moved[:, 3] = torch.roll(moved[:, 3], shifts=16, dims=-1)
    with torch.no_grad():
        a, b = model(x), model(moved)
    assert torch.equal(a[0], b[0])
    assert not torch.equal(a[1], b[1])


def test_share_feature_conv_option_uses_one_5x5_conv():
    shared = meta(lambda: cpm_6stage(share_feature_conv=True))
    names = {k.split(".")[0] for k in shared.state_dict()}
    assert "conv4_stage2" in names and not any(f"conv1_stage{t}" in names for t in range(3, 7))
    assert count_parameters(shared) == 31_219_866 - 4 * 102_432


def test_dropout_only_in_stage1_and_only_in_training():
    drops = [name for name, m in CPM(num_parts=2, stages=2).named_modules() if isinstance(m, nn.Dropout)]
    assert drops == ["drop1_stage1", "drop2_stage1"]
    torch.manual_seed(0)
    model = CPM(num_parts=2, stages=2)
    x = small_input(model)
    with torch.no_grad():
        model.train()
        t1, t2 = model(x), model(x)
        model.eval()
        e1, e2 = model(x), model(x)
    assert not torch.equal(t1[0], t2[0])
    assert torch.equal(e1[0], e2[0]) and torch.equal(e1[1], e2[1])
    plain = CPM(num_parts=2, stages=2, dropout_stage1=False).train()
    with torch.no_grad():
        assert torch.equal(plain(x)[1], plain(x)[1])


def test_init_gaussian_001_and_zero_bias():
    torch.manual_seed(0)
    model = cpm_2stage()
    weight = model.Mconv2_stage2.weight
    assert abs(weight.std().item() - 0.01) < 2e-4 and abs(weight.mean().item()) < 2e-4
    assert all(float(m.bias.detach().abs().max()) == 0.0 for m in model.modules() if isinstance(m, nn.Conv2d))


def test_param_groups_carry_caffe_lr_multipliers():
    model = meta(cpm_3stage)
    groups = model.param_groups(8e-5, weight_decay=5e-4)
    by_name = {g["name"]: g for g in groups}
    assert set(by_name) == {"stage1_weight", "stage1_bias", "weight", "bias"}
    assert by_name["stage1_weight"]["lr"] == pytest.approx(4e-4)
    assert by_name["stage1_bias"]["lr"] == pytest.approx(8e-4)
    assert by_name["weight"]["lr"] == pytest.approx(8e-5)
    assert by_name["bias"]["lr"] == pytest.approx(1.6e-4)
    assert by_name["stage1_bias"]["weight_decay"] == 0.0 and by_name["bias"]["weight_decay"] == 0.0
    assert by_name["weight"]["weight_decay"] == 5e-4 and by_name["stage1_weight"]["weight_decay"] == 5e-4
    assert len(by_name["stage1_weight"]["params"]) == 7 and len(by_name["stage1_bias"]["params"]) == 7
    # Every parameter exactly once.
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    assert "weight_decay" not in {g["name"]: g for g in model.param_groups(1.0)}["weight"]
    optimiser = torch.optim.SGD(CPM(num_parts=2, stages=2).param_groups(8e-5, 5e-4), lr=8e-5, momentum=0.9)
    assert [g["lr"] for g in optimiser.param_groups] == pytest.approx([4e-4, 8e-4, 8e-5, 1.6e-4])


def test_declared_outputs_and_codecs():
    model = meta(cpm_6stage)
    assert len(model.outputs) == 6
    assert model.outputs[0] == OutputSpec(stride=8, target="cpm", sigma=7.0, loss="cpm", people="all", background=True)
    assert all(s == OutputSpec(stride=8, target="cpm", sigma=7.0, loss="cpm", people="self", background=True)
               for s in model.outputs[1:])
    codec = build_codec(model.outputs[0], (368, 368))
    assert isinstance(codec, CPMBeliefMap)
    assert codec.heatmap_hw == (46, 46) and codec.people == "all" and codec.sigma == 7.0 and codec.background


def test_topdown_variant():
    model = meta(cpm_6stage_topdown)
    assert model.name == "cpm_6stage_topdown" and model.input_channels == 3
    assert not hasattr(model, "pool_center_lower")
    assert model.Mconv1_stage2.in_channels == 32 + 14
    out = model(torch.zeros(2, 3, 256, 192))
    assert [tuple(o.shape) for o in out] == [(2, 14, 32, 24)] * 6
    assert all(s == OutputSpec(stride=8, target="gaussian", sigma=2.0, loss="mse") for s in model.outputs)
    codec = build_codec(model.outputs[-1], (256, 192))
    assert isinstance(codec, GaussianHeatmap) and codec.heatmap_hw == (32, 24)
    with pytest.raises(ValueError, match="background"):
        CPM(target="gaussian", background=True)


@pytest.mark.parametrize("shape,builder", [
    ((1, 3, 368, 368), cpm_6stage),
    ((1, 4, 370, 368), cpm_6stage),
    ((4, 368, 368), cpm_6stage),
    ((1, 4, 368, 368), cpm_6stage_topdown),
])
def test_bad_input_shapes_raise(shape, builder):
    model = meta(builder)
    with pytest.raises(ValueError, match=rf"N x {model.input_channels} x H x W .* multiples of 8, got shape "
                                         + " x ".join(map(str, shape))):
        model(torch.zeros(shape, device="meta"))


def test_macs_at_368():
    model = meta(cpm_6stage)
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros(1, 4, 368, 368))
    # Conv multiply-adds: sum over convs of H_out * W_out * C_out * C_in * k * k.
    stage1 = (368 ** 2 * 128 * 3 * 81 + 184 ** 2 * 128 * 128 * 81 + 92 ** 2 * 128 * 128 * 81
              + 46 ** 2 * (32 * 128 * 25 + 512 * 32 * 81 + 512 * 512 + 15 * 512))
    trunk = 368 ** 2 * 128 * 3 * 81 + 184 ** 2 * 128 * 128 * 81 + 92 ** 2 * 128 * 128 * 81
    later = 46 ** 2 * (32 * 128 * 25 + 128 * 48 * 121 + 2 * 128 * 128 * 121 + 128 * 128 + 15 * 128)
    assert counter.get_total_flops() // 2 == stage1 + trunk + 5 * later == 175_437_729_280


# ------------------------------------------------------------------------------------------- belief maps

def test_encode_matches_caffe_loops_for_several_people():
    rng = np.random.default_rng(1)
    codec = CPMBeliefMap((64, 48), (8, 6), sigma=7.0, background=True, people="all")
    xy = rng.uniform(-5, 60, size=(5, 2))
    vis = np.array([2, 1, 0, 2, 2])
    others = np.concatenate([rng.uniform(0, 50, size=(2, 5, 2)), np.array([[2, 0, 1, 2, 2], [1, 2, 2, 0, 2]])[..., None]], 2)
    others[0, 4, :2] = xy[4] + [3.0, 1.0]  # overlapping joints of two people
    target, weight = codec.encode(xy, vis, others)
    expected = np.zeros((6, 8, 6))
    for k in range(5):
        for person, flag in [(xy[k], vis[k])] + [(o[k, :2], o[k, 2]) for o in others]:
            if flag > 0:
                caffe_put_gaussian_maps(expected[k], person[0], person[1], 8, 7.0)
    expected[5] = np.maximum(1 - expected[:5].max(axis=0), 0)
    assert target.shape == (6, 8, 6) and target.dtype == np.float32
    np.testing.assert_allclose(target, expected, atol=1e-6)
    assert target[4].max() == 1.0  # the overlap was clipped
    np.testing.assert_array_equal(weight, np.ones(6, dtype=np.float32))


def test_peak_on_the_offset_grid_and_sigma_in_input_pixels():
    codec = CPMBeliefMap((368, 368), (46, 46))
    # Cell (row 20, column 10) is centred on crop pixel (3.5 + 80, 3.5 + 160).
    target, _ = codec.encode(np.array([[83.5, 163.5]]), np.array([2]))
    assert target.shape == (2, 46, 46)
    assert target[0, 20, 10] == 1.0 and np.argmax(target[0]) == 20 * 46 + 10
    assert target[0, 20, 11] == pytest.approx(math.exp(-64 / 98))  # 8 px away, sigma 7 px
    assert target[0, 21, 11] == pytest.approx(math.exp(-128 / 98))
    # Half-way between two cells both get exp(-4^2 / (2 * 7^2)).
    between, _ = codec.encode(np.array([[87.5, 163.5]]), np.array([2]))
    assert between[0, 20, 10] == pytest.approx(math.exp(-16 / 98)) == pytest.approx(between[0, 20, 11])


def test_cutoff_below_one_percent():
    codec = CPMBeliefMap((368, 368), (46, 46), background=False)
    target, _ = codec.encode(np.array([[83.5, 163.5]]), np.array([2]))
    # Kept cells: 64 * (dx^2 + dy^2) / 98 <= 4.6052, i.e. dx^2 + dy^2 <= 7: 1 + 4 + 4 + 4 + 8 = 21 cells.
    rows, cols = np.nonzero(target[0])
    offsets = sorted(zip(rows - 20, cols - 10))
    assert len(offsets) == 21
    assert all(dy * dy + dx * dx <= 7 for dy, dx in offsets)
    assert target[0, 22, 12] == 0.0  # (2, 2): exponent 512 / 98 = 5.2 > 4.6052
    assert target[0, 20, 13] == 0.0  # (0, 3): exponent 5.9
    assert target[0][target[0] > 0].min() == pytest.approx(math.exp(-320 / 98))
    assert EXPONENT_CUTOFF == 4.6052


def test_two_overlapping_people_are_added_then_clipped():
    codec = CPMBeliefMap((368, 368), (46, 46), people="all")
    xy = np.array([[83.5, 163.5]])
    others = np.array([[[99.5, 163.5, 2.0]]])  # the same joint of another person, two cells to the right
    target, _ = codec.encode(xy, np.array([2]), others)
    # The cell between them: 2 * exp(-64/98) = 1.04 -> 1.
    assert target[0, 20, 11] == 1.0
    assert target[0, 20, 10] == 1.0 and target[0, 20, 12] == 1.0
    assert target[0, 21, 11] == pytest.approx(2 * math.exp(-128 / 98))  # 0.54: added, below 1
    assert target[1, 20, 11] == 0.0 and target[1, 21, 11] == pytest.approx(1 - 2 * math.exp(-128 / 98), abs=1e-6)


def test_background_is_one_minus_max_of_parts():
    codec = CPMBeliefMap((368, 368), (46, 46))
    xy = np.array([[100.0, 100.0], [110.0, 104.0], [300.0, 50.0]])
    target, weight = codec.encode(xy, np.array([2, 1, 2]))
    assert target.shape == (4, 46, 46) and weight.shape == (4,)
    np.testing.assert_allclose(target[3], np.maximum(1 - target[:3].max(axis=0), 0), atol=1e-6)
    assert target[3, 0, 45] == 1.0 and target[3].min() >= 0.0
    empty, _ = codec.encode(np.zeros((3, 2)), np.zeros(3))
    assert not empty[:3].any() and (empty[3] == 1).all()


def test_all_people_versus_self_and_visibility_mapping():
    xy = np.array([[83.5, 163.5], [200.0, 200.0]])
    vis = np.array([2, 0])  # COCO v = 0: not drawn (Caffe's isVisible 2)
    others = np.array([[[283.5, 43.5, 1.0], [50.0, 50.0, 0.0]]])
    own, _ = CPMBeliefMap((368, 368), (46, 46), people="self").encode(xy, vis, others)
    every, _ = CPMBeliefMap((368, 368), (46, 46), people="all").encode(xy, vis, others)
    assert own[0, 5, 35] == 0.0 and every[0, 5, 35] == 1.0  # the other person's occluded (v=1) joint
    assert not own[1].any() and not every[1].any()  # unlabelled joints of either person
    np.testing.assert_array_equal(own[0, 15:25, :20], every[0, 15:25, :20])
    assert every[2, 5, 35] == 0.0 and own[2, 5, 35] == 1.0  # background follows the drawn set
    nan, _ = CPMBeliefMap((368, 368), (46, 46)).encode(np.array([[np.nan, 5.0]]), np.array([2]))
    assert not nan[0].any()
    with pytest.raises(ValueError, match="others must be M x 2 x 3"):
        CPMBeliefMap((368, 368), (46, 46), people="all").encode(xy, vis, np.zeros((1, 3, 3)))


# ------------------------------------------------------------------------------------------- decoding

def test_upsample_matrix_is_matlab_bicubic():
    m = cubic_upsample_matrix(46, 8)
    assert m.shape == (368, 46)
    np.testing.assert_allclose(m.sum(axis=1), 1.0)
    # Output pixel 4 samples map coordinate 4.5 / 8 - 0.5 = 0.0625: taps -1, 0, 1, 2 at distances
    # 1.0625, 0.0625, 0.9375, 1.9375 with Keys a = -0.5; tap -1 mirrors onto 0.
    def keys(t):
        return 1.5 * t ** 3 - 2.5 * t ** 2 + 1 if t <= 1 else -0.5 * t ** 3 + 2.5 * t ** 2 - 4 * t + 2
    w = [keys(1.0625), keys(0.0625), keys(0.9375), keys(1.9375)]
    np.testing.assert_allclose(m[4, :3], [w[0] + w[1], w[2], w[3]])
    # Cell centres land on 8g + 3.5: the average of output pixels 8g + 3 and 8g + 4 reproduces a linear ramp.
    ramp = np.arange(46, dtype=np.float64)
    up = m @ ramp
    np.testing.assert_allclose(up[8 * 10 + 3] + up[8 * 10 + 4], 2 * 10, atol=1e-12)
    # Border taps mirror symmetrically (Matlab), so output pixel 0 reads map cells 1, 0, 0, 1.
    assert np.count_nonzero(m[0]) == 2


def test_upsample_with_a_075_equals_torch_bicubic_inside():
    rng = np.random.default_rng(0)
    maps = rng.random((2, 12, 10)).astype(np.float32)
    codec = CPMBeliefMap((96, 80), (12, 10), cubic_a=-0.75)
    ours = codec.upsample(maps)
    theirs = F.interpolate(torch.from_numpy(maps)[None], scale_factor=8, mode="bicubic", align_corners=False)[0].numpy()
    # PyTorch replicates the edge where Matlab mirrors: equal away from the 4 border pixels.
    np.testing.assert_allclose(ours[:, 4:-4, 4:-4], theirs[:, 4:-4, 4:-4], atol=1e-5)


@pytest.mark.parametrize("cubic_a,bound", [(-0.5, 1.6), (-0.75, 1.0)])
def test_decode_encode_round_trip(cubic_a, bound):
    rng = np.random.default_rng(0)
    codec = CPMBeliefMap((368, 368), (46, 46), cubic_a=cubic_a)
    xy = rng.uniform(16, 352, size=(3, 40, 2))
    targets = np.stack([codec.encode(p, np.full(40, 2))[0] for p in xy])
    coords, scores = codec.decode(torch.from_numpy(targets))
    assert coords.shape == (3, 40, 2) and scores.shape == (3, 40)
    # Argmax to whole crop pixels; Matlab's softer kernel pulls the maximum up to ~1.4 px towards a cell centre.
    assert np.abs(coords - xy).max() <= bound
    assert (scores > 0.6).all() and (scores < 1.1).all()


def test_decode_drops_background_and_reads_peak_on_cell_centres():
    codec = CPMBeliefMap((368, 368), (46, 46))
    xy = np.array([[83.5, 163.5], [203.5, 203.5]])  # on cell centres: upsampled pixels 83/84 tie
    target, _ = codec.encode(xy, np.array([2, 2]))
    coords, scores = codec.decode(target[None])
    assert coords.shape == (1, 2, 2)
    assert np.abs(coords[0] - xy).max() == 0.5
    with pytest.raises(ValueError, match="46 x 46"):
        codec.decode(np.zeros((1, 3, 45, 45)))


def test_center_map():
    cmap = center_map((368, 368))
    assert cmap.shape == (368, 368) and cmap.dtype == np.float32
    assert cmap[184, 184] == 1.0 and np.argmax(cmap) == 184 * 368 + 184
    assert cmap[184, 184 + 21] == pytest.approx(math.exp(-0.5))
    assert cmap[184, 184 + 63] == pytest.approx(math.exp(-63 ** 2 / 882))  # exponent 4.50: kept
    assert cmap[184, 184 + 64] == 0.0  # exponent 4.64 > 4.6052
    small = center_map((24, 20), sigma=3.0, center_xy=(7.0, 9.5))
    expected = np.zeros((24, 20))
    caffe_put_gaussian_maps(expected, 7.0, 9.5, 1, 3.0)
    np.testing.assert_allclose(small, expected, atol=1e-7)
    pooled = F.avg_pool2d(torch.from_numpy(cmap)[None, None], 9, 8, ceil_mode=True)
    assert tuple(pooled.shape) == (1, 1, 46, 46)


# ------------------------------------------------------------------------------------------- training

def test_loss_falls_on_a_tiny_batch():
    torch.manual_seed(0)
    hw = (64, 64)
    model = cpm_2stage(num_keypoints=3)
    codecs = [build_codec(spec, hw) for spec in model.outputs]
    assert codecs[0].people == "all" and codecs[1].people == "self"
    rng = np.random.default_rng(0)
    targets, weights = [[], []], [[], []]
    for _ in range(2):
        xy = rng.uniform(8, 56, size=(3, 2))
        others = np.concatenate([rng.uniform(8, 56, size=(1, 3, 2)), np.full((1, 3, 1), 2.0)], axis=2)
        for i, codec in enumerate(codecs):
            t, w = codec.encode(xy, np.array([2, 2, 1]), others)
            targets[i].append(torch.from_numpy(t))
            weights[i].append(torch.from_numpy(w))
    targets = [torch.stack(t) for t in targets]
    weights = [torch.stack(w) for w in weights]
    assert not torch.equal(targets[0], targets[1])  # stage 1 also marks the other person
    x = small_input(model, hw, batch=2)
    # Caffe's solver shape: SGD, momentum 0.9, the per-layer multipliers (a larger base lr for 8 steps).
    optimiser = torch.optim.SGD(model.param_groups(2e-4), lr=2e-4, momentum=0.9)
    losses = []
    for _ in range(8):
        loss, terms = total_loss(model.outputs, model(x), targets, weights)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert len(terms) == 2
    # The Caffe loss at init (outputs ~ 0) is about 1/2 * sum(target^2) per sample.
    assert losses[0] == pytest.approx(sum(0.5 * float((t ** 2).sum()) / 2 for t in targets), rel=0.05)
    assert losses[-1] < 0.6 * losses[0]
