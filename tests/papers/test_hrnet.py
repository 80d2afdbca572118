"""HRNet structure against the official key grammar (spec 5.2), counts, MACs, fusion by hand, the seam."""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from posekit.codecs import OutputSpec
from posekit.errors import ConfigError
from posekit.deploy.flops import count_macs, count_parameters, model_summary
from posekit.models import HRNet, create_model, list_models
from posekit.models.blocks import BasicBlock, Bottleneck, make_layer
from posekit.models.hrnet import HighResolutionModule, hrnet_w16_small, hrnet_w32


@pytest.fixture(scope="module")
def w32() -> HRNet:
    torch.manual_seed(0)
    return hrnet_w32()


def meta_model(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kwargs)


# ------------------------------------------------------------------------------------------- key grammar

BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
GRAMMAR = [
    r"conv[12]\.weight", rf"bn[12]\.{BN}",
    r"layer1\.[0-3]\.conv[123]\.weight", rf"layer1\.[0-3]\.bn[123]\.{BN}",
    r"layer1\.0\.downsample\.0\.weight", rf"layer1\.0\.downsample\.1\.{BN}",
    r"transition1\.0\.0\.weight", rf"transition1\.0\.1\.{BN}",
    r"transition1\.1\.0\.0\.weight", rf"transition1\.1\.0\.1\.{BN}",
    r"transition2\.2\.0\.0\.weight", rf"transition2\.2\.0\.1\.{BN}",
    r"transition3\.3\.0\.0\.weight", rf"transition3\.3\.0\.1\.{BN}",
    r"stage[234]\.\d\.branches\.[0-3]\.[0-3]\.conv[12]\.weight",
    rf"stage[234]\.\d\.branches\.[0-3]\.[0-3]\.bn[12]\.{BN}",
    # j > i: conv1x1 + BN (index 2 is the parameter-free Upsample)
    r"stage[234]\.\d\.fuse_layers\.\d\.\d\.0\.weight", rf"stage[234]\.\d\.fuse_layers\.\d\.\d\.1\.{BN}",
    # j < i: stride-2 conv chain
    r"stage[234]\.\d\.fuse_layers\.\d\.\d\.\d\.0\.weight", rf"stage[234]\.\d\.fuse_layers\.\d\.\d\.\d\.1\.{BN}",
    r"final_layer\.(weight|bias)",
]


def test_state_dict_obeys_official_grammar(w32):
    sd = w32.state_dict()
    assert len(sd) == 1754
    assert sum(k.endswith("num_batches_tracked") for k in sd) == 292
    pattern = re.compile("|".join(f"(?:{g})" for g in GRAMMAR))
    assert [k for k in sd if not pattern.fullmatch(k)] == []
    # Spec 5.2 example shapes.
    assert sd["transition1.0.0.weight"].shape == (32, 256, 3, 3)
    assert sd["transition1.1.0.0.weight"].shape == (64, 256, 3, 3)
    assert sd["stage4.0.fuse_layers.3.0.2.0.weight"].shape == (256, 32, 3, 3)
    assert sd["final_layer.weight"].shape == (17, 32, 1, 1)
    assert sd["final_layer.bias"].shape == (17,)
    assert sd["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    # Existing branches pass through transitions 2 and 3 without parameters.
    assert not any(re.match(r"transition2\.[01]\.|transition3\.[012]\.", k) for k in sd)
    # Module counts per stage (1, 4, 3) and the single-output last module.
    assert {int(k.split(".")[1]) for k in sd if k.startswith("stage3.")} == {0, 1, 2, 3}
    last = {".".join(k.split(".")[3:5]) for k in sd if k.startswith("stage4.2.fuse_layers.")}
    assert last == {"0.1", "0.2", "0.3"}
    assert "stage4.1.fuse_layers.3.2.0.0.weight" in sd
    assert "stage4.0.fuse_layers.2.0.1.0.weight" in sd and "stage4.0.fuse_layers.2.0.2.0.weight" not in sd


def test_parameter_counts_exact():
    assert count_parameters(meta_model("hrnet_w32")) == 28_536_113
    assert count_parameters(meta_model("hrnet_w48")) == 63_595_745
    assert count_parameters(meta_model("hrnet_w32", num_keypoints=16)) == 28_536_113 - 33


@pytest.mark.parametrize("name,hw,gmacs", [
    ("hrnet_w32", (256, 192), 7.1), ("hrnet_w48", (256, 192), 14.6),
    ("hrnet_w32", (384, 288), 16.0), ("hrnet_w48", (384, 288), 32.9),
])
def test_macs_match_papers(name, hw, gmacs):
    summary = model_summary(name, hw)
    assert round(summary["gmacs"], 1) == gmacs
    assert summary["output_shapes"] == [(1, 17, hw[0] // 4, hw[1] // 4)]


def test_macs_equal_conv_multiply_adds():
    """FlopCounterMode/2 equals the papers' conv-only count: sum of H_out*W_out*C_out*C_in*k*k."""
    model = meta_model("hrnet_w32")
    hand = []

    def hook(m, _inp, out):
        kh, kw = m.kernel_size
        hand.append(out.shape[0] * out.shape[2] * out.shape[3] * m.out_channels * m.in_channels // m.groups * kh * kw)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    macs = count_macs(model, (256, 192))
    for h in handles:
        h.remove()
    assert macs == sum(hand) == 7_645_003_776
    assert count_macs(model, (256, 192), batch=2) == 2 * macs


def test_count_macs_leaves_bn_statistics_alone():
    model = hrnet_w16_small()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_macs(model, (64, 64))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ------------------------------------------------------------------------------------------- seam, errors

def test_forward_seam_and_outputs(w32):
    w32.eval()
    with torch.no_grad():
        out = w32(torch.randn(2, 3, 64, 96))
    assert isinstance(out, list) and len(out) == 1
    assert out[0].shape == (2, 17, 16, 24)
    assert w32.num_keypoints == 17
    assert w32.outputs == [OutputSpec(stride=4, target="gaussian", sigma=2.0, loss="mse")]
    assert hrnet_w32(sigma=3.0).outputs[0].sigma == 3.0


@pytest.mark.parametrize("shape,shown", [
    ((3, 256, 192), "3 x 256 x 192"),
    ((1, 1, 256, 192), "1 x 1 x 256 x 192"),
    ((1, 3, 250, 192), "1 x 3 x 250 x 192"),
    ((1, 3, 256, 200), "1 x 3 x 256 x 200"),
])
def test_wrong_input_shape_is_one_line_value_error(shape, shown):
    model = meta_model("hrnet_w16_small")
    with pytest.raises(ValueError) as info:
        model(torch.zeros(shape, device="meta"))
    message = str(info.value)
    assert "\n" not in message
    assert "N x 3 x H x W" in message and "multiples of 32" in message and f"got shape {shown}" in message


def test_official_init(w32):
    fresh = hrnet_w32()
    convs = [m for m in fresh.modules() if isinstance(m, nn.Conv2d)]
    weights = torch.cat([m.weight.flatten() for m in convs])
    assert abs(weights.std().item() - 0.001) < 2e-5 and abs(weights.mean().item()) < 2e-5
    assert torch.all(fresh.final_layer.bias == 0)
    assert all(m.bias is None for m in convs if m is not fresh.final_layer)
    bns = [m for m in fresh.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) and m.momentum == 0.1 for m in bns)


def test_small_model_trains_every_parameter():
    torch.manual_seed(0)
    model = hrnet_w16_small(num_keypoints=5)
    out = model(torch.randn(2, 3, 64, 64))
    assert out[0].shape == (2, 5, 16, 16)
    out[0].square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())  # no unused parameters (DDP-safe)


def test_builder_options():
    model = hrnet_w16_small(stage_blocks=(1, 1, 1), final_kernel=3)
    assert len(model.stage2[0].branches[0]) == 1
    assert model.final_layer.kernel_size == (3, 3) and model.final_layer.padding == (1, 1)
    assert len(hrnet_w32(stage_modules=(1, 2, 2)).stage3) == 2
    with pytest.raises(ValueError, match="3 entries"):
        HRNet(stage_modules=(1, 4))


def test_factory():
    assert {"hrnet_w32", "hrnet_w48", "hrnet_w16_small"} <= set(list_models())
    assert list_models() == sorted(list_models())
    model = create_model("hrnet_w16_small", num_keypoints=16)
    assert model.num_keypoints == 16 and model.final_layer.out_channels == 16
    with pytest.raises(ConfigError, match=r"unknown model 'hrnet_w99'; known models: .*hrnet_w32"):
        create_model("hrnet_w99")
    with pytest.raises(ConfigError, match="colour"):
        create_model("hrnet_w16_small", colour=3)


# ------------------------------------------------------------------------------------------- blocks, fusion

def test_blocks_follow_resnet_v1_layout():
    layer = make_layer(Bottleneck, 64, 64, 2, stride=2)
    keys = set(layer.state_dict())
    assert {"0.downsample.0.weight", "0.downsample.1.running_var", "1.conv3.weight", "1.bn3.bias"} <= keys
    assert not any(k.startswith("1.downsample") for k in keys)
    assert layer[0].conv2.stride == (2, 2) and layer[0].conv1.stride == (1, 1)  # stride on the 3x3
    assert layer[0].downsample[0].stride == (2, 2)
    assert layer(torch.zeros(1, 64, 8, 8)).shape == (1, 256, 4, 4)
    assert make_layer(BasicBlock, 32, 32, 3)[0].downsample is None
    assert make_layer(BasicBlock, 16, 32, 1)[0].downsample is not None


def test_fuse_path_shapes_and_relus(w32):
    module = w32.stage4[0]
    down = module.fuse_layers[3][0]  # branch 0 (stride 4) -> branch 3 (stride 32): three stride-2 convs
    assert len(down) == 3
    assert [type(m[-1]).__name__ for m in down] == ["ReLU", "ReLU", "BatchNorm2d"]
    assert [(m[0].in_channels, m[0].out_channels, m[0].stride) for m in down] == [
        (32, 32, (2, 2)), (32, 32, (2, 2)), (32, 256, (2, 2))]
    up = module.fuse_layers[0][3]  # branch 3 -> branch 0: conv1x1 256->32, BN, nearest x8
    assert up[0].kernel_size == (1, 1) and up[2].scale_factor == 8 and up[2].mode == "nearest"
    assert [module.fuse_layers[i][i] for i in range(4)] == [None] * 4
    with torch.no_grad():
        assert down(torch.randn(1, 32, 64, 48)).shape == (1, 256, 8, 6)
        assert up(torch.randn(1, 256, 8, 6)).shape == (1, 32, 64, 48)


def test_two_branch_fusion_by_hand():
    torch.manual_seed(1)
    module = HighResolutionModule([4, 8], [4, 8], num_blocks=1).eval()
    module.branches = nn.ModuleList([nn.Identity(), nn.Identity()])  # isolate the exchange unit
    with torch.no_grad():
        for p in module.parameters():
            p.normal_()
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    x0, x1 = torch.randn(2, 4, 8, 6), torch.randn(2, 8, 4, 3)

    def bn(t, m):
        shape = (1, -1, 1, 1)
        return ((t - m.running_mean.view(shape)) / torch.sqrt(m.running_var.view(shape) + m.eps)
                * m.weight.view(shape) + m.bias.view(shape))

    up_conv, up_bn = module.fuse_layers[0][1][0], module.fuse_layers[0][1][1]
    low = bn(F.conv2d(x1, up_conv.weight), up_bn)
    expect0 = torch.relu(x0 + low.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))
    down_conv, down_bn = module.fuse_layers[1][0][0][0], module.fuse_layers[1][0][0][1]
    expect1 = torch.relu(bn(F.conv2d(x0, down_conv.weight, stride=2, padding=1), down_bn) + x1)
    with torch.no_grad():
        y0, y1 = module([x0, x1])
    torch.testing.assert_close(y0, expect0, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y1, expect1, rtol=1e-5, atol=1e-5)


def _official_forward(module: HighResolutionModule, x):
    """HRNet's pose_hrnet.py HighResolutionModule.forward as released: every fusion sum out of place."""
    x = [branch(xi) for branch, xi in zip(module.branches, x)]
    fused = []
    for i in range(len(module.fuse_layers)):
        y = x[0] if i == 0 else module.fuse_layers[i][0](x[0])
        for j in range(1, module.num_branches):
            y = y + x[j] if i == j else y + module.fuse_layers[i][j](x[j])
        fused.append(module.relu(y))
    return fused


def test_fusion_sums_in_place_with_the_official_values_and_gradients_bit_for_bit():
    import copy

    from torch.overrides import TorchFunctionMode

    torch.manual_seed(3)
    widths = [4, 8, 16, 32]
    module = HighResolutionModule(widths, widths, num_blocks=1)          # training mode: BN batch statistics
    inputs = [torch.randn(2, c, 32 >> k, 24 >> k) for k, c in enumerate(widths)]
    results = []
    for forward in (lambda m, x: m(x), _official_forward):
        m = copy.deepcopy(module)
        x = [t.clone().requires_grad_() for t in inputs]
        out = forward(m, x)
        sum(o.square().sum() * (k + 1) for k, o in enumerate(out)).backward()
        results.append((out, [t.grad for t in x], [p.grad for p in m.parameters()],
                        [b.clone() for b in m.buffers()]))
    for ours, official in zip(*results):
        assert all(torch.equal(a, b) for a, b in zip(ours, official))

    class CountAdds(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.names = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            name = getattr(func, "__name__", "")
            if "add" in name:
                self.names.append(name)
            return func(*args, **(kwargs or {}))

    module.branches = nn.ModuleList([nn.Identity()] * len(widths))       # the exchange unit alone
    module.eval()
    kept = [t.clone() for t in inputs]
    with torch.no_grad(), CountAdds() as counted:
        module(inputs)
    assert all(torch.equal(a, b) for a, b in zip(inputs, kept))              # the branch outputs are not written
    # 4 outputs x 3 sums: one new tensor (branch 0's output is read by every row and stays untouched), 11 in place.
    out_of_place = [n for n in counted.names if not n.endswith("_") and n != "__iadd__"]
    assert len(out_of_place) == 1 and len(counted.names) == 12, counted.names
