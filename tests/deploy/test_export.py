"""ONNX export and the ONNX Runtime model (parity with PyTorch for every family, metadata, refusals), BatchNorm
folding and the fast inference backends."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

onnx = pytest.importorskip("onnx", reason="the onnx extra (onnx, onnxruntime) is not installed: ONNX export tests skipped")
pytest.importorskip("onnxruntime", reason="the onnx extra (onnx, onnxruntime) is not installed: ONNX export tests skipped")

from conftest import TwoConvs  # noqa: E402
from posekit.deploy.bench import calibrate_random_weights  # noqa: E402
from posekit.weightfiles import save_weights  # noqa: E402
from posekit.cli import main  # noqa: E402
from posekit.errors import CheckpointError, PosekitError  # noqa: E402
from posekit.deploy.backends import (Float32Layer, conv_bn_pairs, edge_layers, fold_batchnorm,  # noqa: E402
                                     inference_model)
from posekit.deploy.onnx import EXPORT_FORMAT, ExportError, OnnxHeatmapModel, export_onnx  # noqa: E402
from posekit.evaluation.inference import predict_heatmaps  # noqa: E402
from posekit.models import create_model  # noqa: E402

pytestmark = pytest.mark.slow     # every test here exports an ONNX graph

# Small widths of every family (name, builder options, input H x W); CPM takes the centre map as a 4th channel.
FAMILIES = {
    "hrnet_w32": ({"width": 8, "stem_width": 16, "stage_modules": (1, 1, 1), "stage_blocks": (1, 1, 1),
                   "stem_blocks": 1}, (96, 64)),
    "cpm_2stage": ({}, (32, 32)),
    "cpm_6stage_topdown": ({"stages": 2}, (32, 40)),
    "hourglass_2stack": ({"features": 16}, (64, 64)),
    "ke_multiscale_hourglass": ({"features": 16, "stacks": 2}, (64, 64)),
    "mspn_2stage": ({"width": 8, "channels": 16, "layers": (1, 1, 1, 1)}, (64, 64)),
    "simplebaseline_res50": ({"width": 8, "deconv_channels": 16}, (64, 64)),
}


def small_model(name: str, seed: int = 0) -> nn.Module:
    kwargs, hw = FAMILIES[name]
    torch.manual_seed(seed)
    # Realistic activations: with the official std-0.001 inits the heatmaps are ~1e-10 and any export would "match".
    return calibrate_random_weights(create_model(name, **kwargs), hw, seed=seed)


def inputs(model: nn.Module, batch: int, hw, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, getattr(model, "input_channels", 3), *hw, generator=generator)


def assert_same_heatmaps(got: torch.Tensor, model: nn.Module, x: torch.Tensor, expected: torch.Tensor) -> None:
    """``got`` equals PyTorch's float32 ``expected`` within 1e-4 of the heatmaps' range, give or take PyTorch's own
    float32 rounding error (measured against a float64 run): random deep networks amplify rounding, so that two
    correct float32 computations can differ by more than 1e-4 (the hourglass: float32 PyTorch is 1e-3 off float64,
    ONNX Runtime 3e-4)."""
    with torch.no_grad():
        exact = copy.deepcopy(model).double()(x.double())[-1]
    rounding = float((expected.double() - exact).abs().max())
    scale = max(1.0, float(expected.abs().max()))
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert float((got - expected).abs().max()) <= 1e-4 * scale + 2 * rounding


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Each family exported once: name -> (model, path)."""
    root = tmp_path_factory.mktemp("onnx")
    return {name: (model, export_onnx(model, root / f"{name}.onnx", FAMILIES[name][1]))
            for name, model in ((n, small_model(n)) for n in FAMILIES)}


# ------------------------------------------------------------------------------------------------ parity

@pytest.mark.parametrize("name", list(FAMILIES))
def test_exported_heatmaps_equal_pytorch_eval_heatmaps_at_batch_1_and_3(exported, name):
    model, path = exported[name]
    onnx_model = OnnxHeatmapModel(path, input_hw=FAMILIES[name][1])
    for batch in (1, 3):
        x = inputs(model, batch, FAMILIES[name][1], seed=batch)
        with torch.no_grad():
            expected = model(x)[-1]
        got = onnx_model(x)
        assert isinstance(got, list) and len(got) == 1
        assert float(expected.abs().max()) > 0.1         # a meaningful scale, not ~0 everywhere
        assert_same_heatmaps(got[0], model, x, expected)


def test_onnx_model_has_the_torch_model_attributes(exported):
    model, path = exported["cpm_2stage"]
    onnx_model = OnnxHeatmapModel(path)
    assert onnx_model.name == "cpm_2stage" and onnx_model.num_keypoints == model.num_keypoints == 17
    assert onnx_model.input_channels == 4 and onnx_model.center_map_sigma == model.center_map_sigma == 21.0
    assert onnx_model.outputs == [model.outputs[-1]] and onnx_model.input_hw == (32, 32)
    hg_model, hg_path = exported["hourglass_2stack"]
    hg = OnnxHeatmapModel(hg_path)
    assert hg.input_channels == 3 and not hasattr(hg, "center_map_sigma")
    assert hg.outputs == [hg_model.outputs[-1]] and hg.outputs[0].target == "torch7"
    # nn.Module conveniences the predictor uses.
    assert hg.eval() is hg and list(hg.parameters()) == []


def test_metadata_props_name_model_keypoints_input_and_version(exported):
    from posekit import __version__

    proto = onnx.load(str(exported["hrnet_w32"][1]))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["posekit.model"] == "hrnet_w32" and meta["posekit.num_keypoints"] == "17"
    assert meta["posekit.input_hw"] == "96x64" and meta["posekit.version"] == __version__
    assert meta["posekit.format"] == str(EXPORT_FORMAT) and meta["posekit.opset"] == "17"
    assert [o.version for o in proto.opset_import if o.domain == ""] == [17]
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == ["heatmaps"]
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.HasField("dim_value")      # dynamic batch


def test_flip_test_through_onnx_equals_flip_test_through_torch(exported):
    model, path = exported["simplebaseline_res50"]
    x = inputs(model, 2, (64, 64))
    perm = list(range(17))
    perm[1], perm[2] = 2, 1
    expected = predict_heatmaps(model, x, flip_perm=perm)
    got = predict_heatmaps(OnnxHeatmapModel(path), x, flip_perm=perm)
    assert float((got - expected).abs().max()) <= 1e-4 * max(1.0, float(expected.abs().max()))
    assert not torch.allclose(got, model(x)[-1], atol=1e-2)      # the flipped pass did count


def test_static_batch_export_and_mode_restored(tmp_path):
    model = small_model("simplebaseline_res50").train()
    path = export_onnx(model, tmp_path / "static.onnx", (64, 64), dynamic_batch=False)
    assert model.training                                  # the caller's mode is restored
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [2, 3, 64, 64]


def test_full_size_hrnet_w32_export_matches(tmp_path):
    model = create_model("hrnet_w32")
    for m in model.modules():           # scale the official init up so the heatmaps are O(1)
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
    model.eval()
    path = export_onnx(model, tmp_path / "hrnet_w32.onnx", (256, 192))   # verify=True runs it once
    x = inputs(model, 1, (256, 192))
    with torch.no_grad():
        expected = model(x)[-1]
    got = OnnxHeatmapModel(path, input_hw=(256, 192), num_keypoints=17)(x)[0]
    assert got.shape == (1, 17, 64, 48) and float(expected.abs().max()) > 0.1
    assert float((got - expected).abs().max()) <= 1e-4 * max(1.0, float(expected.abs().max()))


def test_dynamo_exporter_gives_the_same_heatmaps(tmp_path):
    pytest.importorskip("onnxscript", reason="onnxscript (needed only by the dynamo exporter) is not installed")
    model = small_model("hrnet_w32")
    path = export_onnx(model, tmp_path / "dynamo.onnx", (96, 64), exporter="dynamo")
    x = inputs(model, 3, (96, 64))
    with torch.no_grad():
        expected = model(x)[-1]
    assert_same_heatmaps(OnnxHeatmapModel(path)(x)[0], model, x, expected)
    assert OnnxHeatmapModel(path).metadata["posekit.deploy.onnxer"] == "dynamo"


# ------------------------------------------------------------------------------------------------ refusals

class Histogram(nn.Module):
    def forward(self, x):
        return torch.histc(x, bins=4).reshape(1, 4, 1, 1).expand(x.shape[0], 4, 1, 1)


class WithUnexportableOp(nn.Module):
    name = "toy"
    num_keypoints = 4
    input_channels = 3

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        self.head = nn.Sequential(nn.ReLU(), Histogram())

    def forward(self, x):
        return [self.head(self.conv(x))]


def test_an_op_onnx_cannot_express_is_named_with_its_module(tmp_path):
    with pytest.raises(ExportError, match=r"toy: operator aten::histc in module head\.1 \(Histogram\) cannot be "
                                          r"exported to ONNX") as info:
        export_onnx(WithUnexportableOp(), tmp_path / "toy.onnx", (8, 8))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "toy.onnx").exists()


def test_an_op_the_dynamo_exporter_cannot_express_is_named_with_its_module(tmp_path):
    pytest.importorskip("onnxscript", reason="onnxscript (needed only by the dynamo exporter) is not installed")
    with pytest.raises(ExportError, match=r"operator aten::histc in module head\.1 \(Histogram\)"):
        export_onnx(WithUnexportableOp(), tmp_path / "toy.onnx", (8, 8), exporter="dynamo")


def test_non_onnx_and_missing_files_are_one_line_errors(tmp_path):
    junk = tmp_path / "weights.onnx"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(CheckpointError, match="weights.onnx: not an ONNX model"):
        OnnxHeatmapModel(junk)
    with pytest.raises(CheckpointError, match="missing.onnx: no such file"):
        OnnxHeatmapModel(tmp_path / "missing.onnx")


def _rewrite(src, dst, edit):
    proto = onnx.load(str(src))
    edit(proto)
    onnx.save(proto, str(dst))
    return dst


def test_files_from_other_versions_or_without_metadata_are_refused(exported, tmp_path):
    _, path = exported["simplebaseline_res50"]

    def strip(proto):
        del proto.metadata_props[:]

    def other_format(proto):
        for p in proto.metadata_props:
            if p.key == "posekit.format":
                p.value = "99"
            if p.key == "posekit.version":
                p.value = "9.0.0"

    def old_opset(proto):
        for o in proto.opset_import:
            if o.domain == "":
                o.version = 9

    with pytest.raises(CheckpointError, match="without posekit metadata"):
        OnnxHeatmapModel(_rewrite(path, tmp_path / "plain.onnx", strip))
    with pytest.raises(CheckpointError, match=r"exported by posekit 9\.0\.0 in ONNX export format 99; .* reads format "
                                              rf"{EXPORT_FORMAT}: export it again"):
        OnnxHeatmapModel(_rewrite(path, tmp_path / "future.onnx", other_format))
    with pytest.raises(CheckpointError, match=r"ONNX opset 9 .* outside the supported 13\.\."):
        OnnxHeatmapModel(_rewrite(path, tmp_path / "old.onnx", old_opset))


def test_wrong_input_size_or_keypoint_count_is_refused(exported):
    model, path = exported["hourglass_2stack"]
    with pytest.raises(CheckpointError, match=r"exported for 64x64 input, not 128x128"):
        OnnxHeatmapModel(path, input_hw=(128, 128))
    with pytest.raises(CheckpointError, match="exported with 17 keypoints, not 16"):
        OnnxHeatmapModel(path, num_keypoints=16)
    with pytest.raises(ValueError, match=r"expects an N x 3 x 64 x 64 input, got shape 1 x 3 x 128 x 128"):
        OnnxHeatmapModel(path)(torch.zeros(1, 3, 128, 128))


def test_export_at_an_input_size_the_model_refuses_is_its_own_error(tmp_path):
    with pytest.raises(ValueError, match="multiples of 32"):
        export_onnx(small_model("simplebaseline_res50"), tmp_path / "bad.onnx", (60, 64))


# ------------------------------------------------------------------------------------------------ CLI

def test_cli_export_from_config_and_weights(tmp_path, capsys):
    model = small_model("hrnet_w32")
    save_weights(model, tmp_path / "w.safetensors")
    kwargs = FAMILIES["hrnet_w32"][0]
    (tmp_path / "c.yaml").write_text(
        "model:\n  name: hrnet_w32\n  num_keypoints: 17\n  kwargs: {width: 8, stem_width: 16, stage_modules: [1, 1, 1],"
        " stage_blocks: [1, 1, 1], stem_blocks: 1}\ndata:\n  input_size: [96, 64]\n")
    assert kwargs["width"] == 8
    out = tmp_path / "m.onnx"
    assert main(["export", "--config", str(tmp_path / "c.yaml"), "--weights", str(tmp_path / "w.safetensors"),
                 "--format", "onnx", "--out", str(out)]) == 0
    assert "hrnet_w32, 17 keypoints, input 96x64" in capsys.readouterr().out
    x = inputs(model, 2, (96, 64))
    with torch.no_grad():
        expected = model(x)[-1]
    assert_same_heatmaps(OnnxHeatmapModel(out)(x)[0], model, x, expected)
    assert main(["export", "--model", "hrnet_w32", "--out", str(tmp_path / "x.onnx")]) == 2
    assert "no weights" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ BN folding

@pytest.mark.parametrize("name", list(FAMILIES))
def test_folding_batchnorm_is_exact(name):
    # In float64, so that the check sees the algebra and not float32 rounding (which random deep networks amplify).
    model = small_model(name).double()
    x = inputs(model, 2, FAMILIES[name][1]).double()
    with torch.no_grad():
        expected = model(x)
    folded = fold_batchnorm(model)
    with torch.no_grad():
        got = folded(x)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert float((a - b).abs().max()) <= 1e-9 * max(1.0, float(b.abs().max()))
    bns = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    left = sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert folded.folded_batchnorms == bns - left and not folded.training
    assert model is not folded and sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == bns


def test_which_batchnorms_fold():
    # HRNet, SimpleBaseline, MSPN: every BN follows a conv. Torch7's pre-activation Residual: bn1 reads the block
    # input (a sum or a ReLU output), bn2/bn3 follow conv1/conv2.
    assert fold_batchnorm(small_model("hrnet_w32")).folded_batchnorms == sum(
        isinstance(m, nn.BatchNorm2d) for m in small_model("hrnet_w32").modules())
    pairs = dict((bn, conv) for conv, bn in conv_bn_pairs(small_model("hourglass_2stack")))
    assert pairs["hg.0.hg.0.0.0.bn2"] == "hg.0.hg.0.0.0.conv1"
    assert pairs["hg.0.hg.0.0.0.bn3"] == "hg.0.hg.0.0.0.conv2"
    assert "hg.0.hg.0.0.0.bn1" not in pairs and pairs["bn1"] == "conv1"


class ConvReadTwice(nn.Module):
    """conv -> BN, and the conv output is also added to the result: the BN must not be folded."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.up = nn.ConvTranspose2d(4, 6, 4, stride=2, padding=1, groups=2, bias=False)
        self.bn_up = nn.BatchNorm2d(6)

    def forward(self, x):
        y = self.conv(x)
        z = self.bn(y) + y
        return [self.bn_up(self.up(z))]


def test_shared_conv_outputs_stay_unfolded_and_grouped_deconvs_fold():
    model = ConvReadTwice()
    calibrate_random_weights(model, (8, 8))
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = model(x)[0]
    folded = fold_batchnorm(model, example=x)
    assert conv_bn_pairs(model, x) == [("up", "bn_up")]
    assert isinstance(folded.bn, nn.BatchNorm2d) and isinstance(folded.bn_up, nn.Identity)
    with torch.no_grad():
        assert torch.allclose(folded(x)[0], expected, atol=1e-5)


def trained_like_statistics(model: nn.Module, hw, batches: int = 20, seed: int = 5) -> nn.Module:
    """BatchNorm running statistics as training leaves them: PyTorch's running averages (momentum 0.1) of what each
    BN sees over a few training-mode batches, so centred and not quite the eval-time statistics, unlike
    calibrate_random_weights'. Deep networks then subtract large means from nearly constant features and amplify
    float32 rounding: MSPN-4stage's outputs move by ~1e-2 of their range when BN is folded in float32, though the
    fold is exact to ~1e-11 in float64."""
    generator = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(4, 3, *hw, generator=generator) * 0.5 + 0.3)
    return model.eval()


@pytest.fixture(scope="module")
def mspn_4stage_trained_like():
    torch.manual_seed(0)
    model = calibrate_random_weights(create_model("mspn_4stage"), (64, 64))
    return trained_like_statistics(model, (64, 64))


def test_folding_is_checked_in_float64_so_a_deep_exact_fold_passes(mspn_4stage_trained_like):
    model = mspn_4stage_trained_like
    x = torch.zeros(1, 3, 64, 64)
    folded = fold_batchnorm(model, example=x)        # checked in float64 (to FOLD_RTOL of the range): passes
    assert folded.folded_batchnorms == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    # The premise: in float32 the same exact fold moves some output by more than the old check's 1e-3 of its range.
    with torch.no_grad():
        moved = max(float((a - b).abs().max()) / float(a.abs().max()) for a, b in zip(model(x), folded(x)))
    assert moved > 1e-3, moved
    for backend in ("torch-folded", "torch-bf16"):
        assert inference_model(copy.deepcopy(model), backend) is not None


def test_a_wrong_fold_is_refused(mspn_4stage_trained_like, monkeypatch):
    import posekit.deploy.backends as export

    def fold_without_the_mean(conv, bn):
        saved = bn.running_mean.clone()
        bn.running_mean.zero_()
        try:
            original(conv, bn)
        finally:
            bn.running_mean.copy_(saved)

    original = export.fold_conv_bn
    monkeypatch.setattr(export, "fold_conv_bn", fold_without_the_mean)
    with pytest.raises(RuntimeError, match="folding BatchNorm changed"):
        fold_batchnorm(mspn_4stage_trained_like, example=torch.zeros(1, 3, 64, 64))
    monkeypatch.setattr(export, "fold_conv_bn", original)
    # A misplaced fold: the conv whose output is also read by the sum.
    model = calibrate_random_weights(ConvReadTwice(), (8, 8))
    monkeypatch.setattr(export, "conv_bn_pairs", lambda m, x=None: [("conv", "bn"), ("up", "bn_up")])
    with pytest.raises(RuntimeError, match="folding BatchNorm changed"):
        fold_batchnorm(model, example=torch.randn(2, 3, 8, 8))


def test_inference_backends_give_the_same_heatmaps(tmp_path):
    model = small_model("simplebaseline_res50")
    x = inputs(model, 2, (64, 64))
    with torch.no_grad():
        expected = model(x)[-1]
    for backend in ("torch", "torch-channels-last", "torch-folded", "onnxruntime"):
        runner = inference_model(copy.deepcopy(model), backend, input_hw=(64, 64), onnx_path=tmp_path / "m.onnx")
        assert runner.num_keypoints == 17 and runner.outputs[-1] == model.outputs[-1]
        with torch.no_grad():
            got = runner(x)[-1]
        assert_same_heatmaps(got, model, x, expected)
        if backend == "torch":
            assert torch.equal(got, expected)
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        inference_model(model, "tensorrt")


class Shallow(nn.Module):
    """Three conv-BN-ReLU layers: well conditioned, so bf16's ~3 significant digits show as ~1e-2 differences
    (deep random networks amplify them to tens of percent; `posekit bench` reports the real models)."""

    name, num_keypoints, input_channels = "shallow", 5, 3

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                                  nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                                  nn.Conv2d(32, 5, 1))

    def forward(self, x):
        return [self.body(x)]


def test_bf16_backend_is_close_on_a_well_conditioned_network():
    model = calibrate_random_weights(Shallow(), (32, 32))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)[-1]
        got = inference_model(model, "torch-bf16")(x)[-1]
    assert got.dtype == torch.float32 and got.is_contiguous()
    assert float((got - expected).abs().max()) <= 3e-2 * float(expected.abs().max())


class TwoEdges(nn.Module):
    """Its first layers read a slice and a pooled channel of the input; one output comes straight from a conv, the
    other from a conv's output changed afterwards (no layer writes it); ``middle`` is at neither edge."""

    name, num_keypoints, input_channels = "two_edges", 2, 4

    def __init__(self):
        super().__init__()
        self.first = nn.Conv2d(3, 8, 3, padding=1)
        self.center = nn.Conv2d(1, 8, 1)
        self.middle = nn.Conv2d(16, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 2, 1)
        self.side = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        a = torch.relu(self.first(x[:, :3]))
        c = self.center(nn.functional.avg_pool2d(x[:, 3:], 3, stride=1, padding=1))
        m = torch.relu(self.middle(torch.cat([a, c], 1)))
        return [self.side(m) * 2 + 1, self.head(m)]


def test_edge_layers_are_the_readers_of_the_input_and_the_writers_of_the_outputs():
    assert edge_layers(TwoEdges()) == ["first", "center", "head"]
    assert edge_layers(fold_batchnorm(Shallow())) == ["body.0", "body.6"]
    for name, expected in (("hrnet_w32", ["conv1", "final_layer"]), ("simplebaseline_res50", ["conv1", "final_layer"]),
                           ("cpm_2stage", ["conv1_stage1", "conv1_stage2", "conv7_stage1", "Mconv5_stage2"])):
        assert edge_layers(small_model(name)) == expected, name


def test_bf16_backend_keeps_the_edge_layers_in_fp32():
    torch.manual_seed(0)
    model = calibrate_random_weights(Shallow(), (32, 32))
    runner = inference_model(model, "torch-bf16")
    assert runner.fp32_layers == ["body.0", "body.6"]
    dtypes = {}
    for name, module in runner.model.named_modules():
        if name in ("body.0", "body.3", "body.6"):
            module.register_forward_hook(lambda m, a, out, name=name: dtypes.update({name: out.dtype}))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        runner(x)
    assert dtypes == {"body.0": torch.float32, "body.3": torch.bfloat16, "body.6": torch.float32}
    assert isinstance(runner.model.body[0], Float32Layer)
    # Two convs, both at an edge: nothing is left to run in bf16, so the result is fp32's to float rounding.
    two = calibrate_random_weights(TwoConvs(), (32, 32))
    with torch.no_grad():
        expected = two(x)[-1]
        got = inference_model(two, "torch-bf16")(x)[-1]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            all_bf16 = two(x)[-1].float()
    assert float((got - expected).abs().max()) <= 1e-5 * float(expected.abs().max())
    assert float((all_bf16 - expected).abs().max()) > 1e-3 * float(expected.abs().max())    # bf16 would show


def test_predictor_runs_an_onnx_model_like_the_torch_model(tmp_path):
    from posekit.config import config_from_dict
    from posekit.apps.predictor import PosePredictor

    cfg = config_from_dict({"model": {"name": "hrnet_w32", "num_keypoints": 14, "kwargs": FAMILIES["hrnet_w32"][0]},
                            "data": {"skeleton": "synthetic", "input_size": [96, 64]},
                            "test": {"batch_size": 2, "flip_test": True}, "train": {"workers": 0, "device": "cpu"}})
    torch.manual_seed(0)
    model = calibrate_random_weights(create_model("hrnet_w32", num_keypoints=14, **FAMILIES["hrnet_w32"][0]), (96, 64))
    path = export_onnx(model, tmp_path / "p.onnx", (96, 64))
    image = np.random.default_rng(0).integers(0, 255, (120, 90, 3), dtype=np.uint8)
    boxes = [[5, 10, 60, 90], [20, 0, 50, 70], [0, 0, 90, 120]]
    expected = PosePredictor(model, cfg)(image, boxes)
    got = PosePredictor(OnnxHeatmapModel(path, input_hw=cfg.input_hw), cfg)(image, boxes)
    assert len(got) == len(expected) == 3
    for a, b in zip(got, expected):
        assert np.allclose(a.keypoints, b.keypoints, atol=1e-3) and np.allclose(a.scores, b.scores, atol=1e-4)


def test_from_config_and_predict_cli_run_every_backend_like_plain_torch(tmp_path):
    import json

    import cv2

    from posekit.weightfiles import save_weights
    from posekit.cli import main
    from posekit.config import config_from_dict
    from posekit.apps.predictor import PosePredictor

    kwargs = FAMILIES["hrnet_w32"][0]
    cfg = config_from_dict({"model": {"name": "hrnet_w32", "num_keypoints": 14, "kwargs": kwargs},
                            "data": {"skeleton": "synthetic", "input_size": [96, 64]},
                            "test": {"batch_size": 2, "flip_test": True}, "train": {"workers": 0, "device": "cpu"}})
    torch.manual_seed(0)
    model = calibrate_random_weights(create_model("hrnet_w32", num_keypoints=14, **kwargs), (96, 64))
    weights = tmp_path / "w.safetensors"
    save_weights(model, weights)
    config = tmp_path / "config.yaml"
    config.write_text(cfg.to_yaml())
    onnx_file = export_onnx(model, tmp_path / "w.onnx", (96, 64))
    image = np.random.default_rng(1).integers(0, 255, (120, 90, 3), dtype=np.uint8)
    boxes = [[5, 10, 60, 90], [0, 0, 90, 120]]

    expected = PosePredictor.from_config(config, weights=str(weights), device="cpu")(image, boxes)
    runs = {backend: PosePredictor.from_config(config, weights=str(weights), device="cpu", backend=backend)
            for backend in ("torch-folded", "torch-channels-last", "onnxruntime")}
    runs["onnx file"] = PosePredictor.from_config(config, weights=str(onnx_file))
    assert isinstance(runs["onnx file"].model, OnnxHeatmapModel) and isinstance(runs["onnxruntime"].model, OnnxHeatmapModel)
    for backend, predictor in runs.items():
        got = predictor(image, boxes)
        for a, b in zip(got, expected):
            assert np.allclose(a.keypoints, b.keypoints, atol=1e-3), backend
            assert np.allclose(a.scores, b.scores, atol=1e-4), backend
    with pytest.raises(PosekitError, match="unknown backend"):
        PosePredictor.from_config(config, weights=str(weights), backend="tensorrt")
    with pytest.raises(PosekitError, match="onnxruntime backend"):
        PosePredictor.from_config(config, weights=str(onnx_file), backend="torch-bf16")

    picture = tmp_path / "person.png"
    cv2.imwrite(str(picture), image[..., ::-1])
    outputs = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / backend
        assert main(["predict", str(config), str(picture), "--weights", str(weights), "--backend", backend,
                     "--out", str(out), "--no-progress"]) == 0
        outputs[backend] = json.loads((out / "poses.json").read_text())
    (torch_entry,), (onnx_entry,) = outputs["torch"], outputs["onnxruntime"]
    a = np.array(torch_entry["people"][0]["keypoints"], dtype=float)
    b = np.array(onnx_entry["people"][0]["keypoints"], dtype=float)
    assert a.shape == b.shape and np.allclose(a, b, atol=1e-3)


def test_predict_and_eval_accept_every_backend_by_name():
    import argparse

    from posekit.cli import build_parser
    from posekit.deploy.backends import BACKENDS

    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("predict", "eval"):
        backend = next(a for a in subparsers.choices[command]._actions if a.dest == "backend")
        assert backend.choices == ["auto", *BACKENDS]     # written out in cli.py so that parsing imports no torch
