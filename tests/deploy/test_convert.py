"""posekit convert: official and MMPose key layouts -> posekit weights + config; refusals; safe loading; the CLI.

The foreign files are built here: a small posekit model with random weights is renamed into the foreign layout
by the inverse mappings below, written from the documented layouts (official HRNet / SimpleBaseline / MSPN
code, MMPose 1.x ``TopdownPoseEstimator`` + HRNet / ResNet / MSPN backbones and ``HeatmapHead`` / ``MSPNHead``)
independently of posekit.deploy.convert, and saved with torch.save.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from posekit.weightfiles import read_safetensors_metadata, read_state_dict
from posekit.cli import main
from posekit.config import load_config
from posekit.deploy.convert import (convert_checkpoint, convert_state_dict, detect_family, detect_source, find_base_config)
from posekit.build import build_model
from posekit.errors import CheckpointError
from posekit.models import create_model
from conftest import randomized

HRNET_SMALL = dict(num_keypoints=5)
SB_SMALL = dict(num_keypoints=6, width=8, deconv_channels=16)
MSPN_SMALL = dict(num_keypoints=4, width=8, channels=16, layers=(2, 1, 1, 1))


def build(name: str, seed: int = 0, **kwargs) -> nn.Module:
    return randomized(create_model(name, **kwargs), seed)


def run(model: nn.Module, size=(32, 32)):
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        return model.eval()(x)


def same_outputs(a: nn.Module, b: nn.Module, size=(32, 32)) -> bool:
    return all(torch.equal(p, q) for p, q in zip(run(a, size), run(b, size)))


def same_tensors(state: Dict[str, torch.Tensor], model: nn.Module) -> bool:
    own = model.state_dict()
    return set(state) == set(own) and all(torch.equal(state[k], v) for k, v in own.items())


# ------------------------------------------------------------------ inverse mappings (posekit -> foreign layout)

def to_mmpose_heatmap(state: Dict[str, torch.Tensor], head: str = "head") -> Dict[str, torch.Tensor]:
    """HRNet / ResNet backbone + HeatmapHead: the head owns deconv_layers and final_layer, the rest is backbone."""
    return {(f"{head}.{k}" if k.split(".")[0] in ("deconv_layers", "final_layer") else f"backbone.{k}"): v
            for k, v in state.items()}


def to_mmpose_mspn(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """MMPose MSPN backbone + MSPNHead; MMPose's convs before BN have no bias (the source model's are 0)."""
    unit_names = {"u_skip": "in_skip", "skip1": "out_skip1", "skip2": "out_skip2", "up_conv": "up_conv",
                  "cross_conv": "cross_conv"}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[-2] == "conv" and parts[-1] == "bias":
            assert not value.any(), key
            continue
        if parts[0] == "top":                       # top.conv.{conv,bn}.X
            out["backbone.top.top.0." + ".".join(parts[2:])] = value
            continue
        stage = int(parts[0][len("stage"):])
        if parts[1] == "downsample":                # stageS.downsample.layerL.B.<module>...
            layer, block, module, rest = parts[2], parts[3], parts[4], parts[5:]
            if module.startswith("conv_bn_relu"):   # conv_bn_reluI.{conv,bn}.X -> convI.X / bnI.X
                index = module[len("conv_bn_relu"):]
                name = f"{rest[0]}{index}." + ".".join(rest[1:])
            else:                                   # downsample.{conv,bn}.X stays
                name = ".".join([module] + rest)
            out[f"backbone.multi_stage_mspn.{stage}.downsample.{layer}.{block}.{name}"] = value
            continue
        unit, module, rest = parts[2], parts[3], parts[4:]     # stageS.upsample.upU.<module>.{conv,bn}.X
        if module.startswith("res_conv"):
            index = 4 * stage + int(unit[2:]) - 1
            out[f"head.predict_layers.{index}.conv_layers.{int(module[-1]) - 1}." + ".".join(rest)] = value
        else:
            out[f"backbone.multi_stage_mspn.{stage}.upsample.{unit}.{unit_names[module]}." + ".".join(rest)] = value
    return out


def mmpose_checkpoint(state: Dict[str, torch.Tensor]) -> dict:
    """An MMEngine checkpoint: numpy arrays in meta, the input statistics as buffers."""
    weights = dict(state)
    weights["data_preprocessor.mean"] = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    weights["data_preprocessor.std"] = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
    meta = {"mmpose_version": "1.3.2", "epoch": 210,
            "dataset_meta": {"sigmas": np.array([0.026, 0.025, 0.025]), "flip_indices": [0, 2, 1],
                             "keypoint_colors": np.zeros((3, 3), dtype=np.uint8)}}
    return {"meta": meta, "state_dict": weights}


def zero_conv_biases(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith(".conv.bias"):
                t.zero_()
    return model


# -------------------------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("wrap", ["plain", "training"])
def test_official_hrnet_plain_and_training_checkpoint(tmp_path, wrap):
    source = build("hrnet_w16_small", **HRNET_SMALL)
    state = source.state_dict()
    if wrap == "training":   # official train checkpoint: DataParallel prefixes, the model *name* under "model"
        obj = {"epoch": 140, "model": "pose_hrnet", "perf": 0.74,
               "state_dict": {"module." + k: v for k, v in state.items()}}
    else:
        obj = dict(state)
    torch.save(obj, tmp_path / "pose_hrnet.pth")
    result = convert_checkpoint(tmp_path / "pose_hrnet.pth", "hrnet_w16_small", tmp_path / "out")
    assert (result.report.source, result.report.detected, result.report.num_keypoints) == ("official", True, 5)
    assert result.report.mapped == len(state) and result.report.renamed == 0 and not result.report.unused
    target = create_model("hrnet_w16_small", num_keypoints=5)
    target.load_state_dict(read_state_dict(result.weights))
    assert same_tensors(dict(state), target)
    assert same_outputs(source, target)
    meta = read_safetensors_metadata(result.weights)
    assert meta["source"] == "pose_hrnet.pth" and meta["source_layout"] == "official"
    assert meta["model"] == "hrnet_w16_small" and meta["num_keypoints"] == "5"


def test_official_simplebaseline_without_bn_counters(tmp_path):
    source = build("simplebaseline_res50", **SB_SMALL)
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert {"deconv_layers.0.weight", "deconv_layers.4.running_var", "final_layer.bias"} <= set(state)
    torch.save(state, tmp_path / "pose_resnet_50.pth")
    kwargs = {k: v for k, v in SB_SMALL.items() if k != "num_keypoints"}
    result = convert_checkpoint(tmp_path / "pose_resnet_50.pth", "simplebaseline_res50", tmp_path / "out",
                                model_kwargs=kwargs)
    assert result.report.counters_added == sum(k.endswith("num_batches_tracked") for k in source.state_dict())
    target = create_model("simplebaseline_res50", **SB_SMALL)
    target.load_state_dict(read_state_dict(result.weights))
    assert same_outputs(source, target)


def test_official_mspn_iteration_checkpoint(tmp_path):
    source = build("mspn_2stage", **MSPN_SMALL)
    state = source.state_dict()
    obj = {"model": {"module." + k: v for k, v in state.items()}, "iteration": 96000}
    torch.save(obj, tmp_path / "iter-96000.pth")
    kwargs = {k: v for k, v in MSPN_SMALL.items() if k != "num_keypoints"}
    result = convert_checkpoint(tmp_path / "iter-96000.pth", "mspn_2stage", tmp_path / "out", model_kwargs=kwargs)
    assert (result.report.source, result.report.num_keypoints, result.report.renamed) == ("mspn", 4, 0)
    target = create_model("mspn_2stage", **MSPN_SMALL)
    target.load_state_dict(read_state_dict(result.weights))
    assert same_tensors(dict(state), target)
    assert same_outputs(source, target)


@pytest.mark.parametrize("head", ["head", "keypoint_head"])   # MMPose 1.x and 0.x names of the head
def test_mmpose_hrnet(tmp_path, head):
    source = build("hrnet_w16_small", seed=1, **HRNET_SMALL)
    foreign = to_mmpose_heatmap(source.state_dict(), head)
    assert f"{head}.final_layer.weight" in foreign and "backbone.stage4.0.fuse_layers.0.3.0.weight" in foreign
    torch.save(mmpose_checkpoint(foreign), tmp_path / "td-hm_hrnet.pth")
    result = convert_checkpoint(tmp_path / "td-hm_hrnet.pth", "hrnet_w16_small", tmp_path / "out")
    report = result.report
    assert (report.source, report.detected) == ("mmpose", True)
    assert sorted(report.unused) == ["data_preprocessor.mean", "data_preprocessor.std"]
    assert report.mapped == report.renamed == len(foreign) and not report.zero_biases
    target = create_model("hrnet_w16_small", num_keypoints=5)
    target.load_state_dict(read_state_dict(result.weights))
    assert same_tensors(source.state_dict(), target)
    assert same_outputs(source, target)
    cfg = load_config(result.config)
    assert cfg.data.color_rgb is True
    assert cfg.data.mean == pytest.approx([0.485, 0.456, 0.406]) and cfg.data.std == pytest.approx([0.229, 0.224, 0.225])


def test_mmpose_simplebaseline_with_config_from_the_recipe(tmp_path):
    source = build("simplebaseline_res50", seed=2, **{**SB_SMALL, "num_keypoints": 17})
    foreign = to_mmpose_heatmap(source.state_dict())
    assert "head.deconv_layers.7.running_mean" in foreign and "backbone.layer4.2.bn3.weight" in foreign
    torch.save(mmpose_checkpoint(foreign), tmp_path / "res50.pth")
    kwargs = {k: v for k, v in SB_SMALL.items() if k != "num_keypoints"}
    result = convert_checkpoint(tmp_path / "res50.pth", "simplebaseline_res50", tmp_path / "out", model_kwargs=kwargs)
    assert result.base_config is not None and result.base_config.name == "simplebaseline-res50_coco_256x192.yaml"
    cfg = load_config(result.config)
    # The recipe's input size and schedule, MMPose's RGB input (the official SimpleBaseline reads BGR).
    assert cfg.data.input_size == [256, 192] and cfg.train.lr_steps == [90, 120]
    assert cfg.data.color_rgb is True and cfg.model.kwargs == kwargs
    assert Path(cfg.model.weights) == result.weights.resolve() and cfg.model.pretrained is None
    model = build_model(cfg)   # loads model.weights strictly
    assert same_outputs(source, model)


def test_mmpose_mspn(tmp_path):
    source = zero_conv_biases(build("mspn_2stage", seed=3, **MSPN_SMALL))
    foreign = to_mmpose_mspn(source.state_dict())
    assert {"backbone.top.top.0.conv.weight", "backbone.multi_stage_mspn.1.downsample.layer1.1.bn2.running_var",
            "backbone.multi_stage_mspn.0.downsample.layer2.0.downsample.conv.weight",
            "backbone.multi_stage_mspn.0.upsample.up4.cross_conv.bn.bias",
            "backbone.multi_stage_mspn.0.upsample.up2.out_skip2.conv.weight",
            "head.predict_layers.7.conv_layers.1.conv.weight"} <= set(foreign)
    torch.save(mmpose_checkpoint(foreign), tmp_path / "mspn.pth")
    kwargs = {k: v for k, v in MSPN_SMALL.items() if k != "num_keypoints"}
    result = convert_checkpoint(tmp_path / "mspn.pth", "mspn_2stage", tmp_path / "out", model_kwargs=kwargs)
    report = result.report
    assert report.source == "mmpose" and report.num_keypoints == 4
    conv_biases = [k for k in source.state_dict() if k.endswith(".conv.bias")]
    assert sorted(report.zero_biases) == sorted(conv_biases)
    target = create_model("mspn_2stage", **MSPN_SMALL)
    target.load_state_dict(read_state_dict(result.weights))
    assert same_tensors(source.state_dict(), target)
    assert same_outputs(source, target)   # all 8 heatmap outputs
    cfg = load_config(result.config)
    assert cfg.data.box_padding == 1.25 and cfg.data.box_extension == [0.0, 0.0]


@pytest.mark.parametrize("module", ["numpy.core.multiarray", "numpy._core.multiarray"])
def test_mmengine_metadata_pickled_by_either_numpy_is_read(tmp_path, module):
    """numpy 1.x pickles arrays under numpy.core, numpy 2 under numpy._core: a checkpoint written by either is read
    under the numpy installed (both ends of the declared range are tested in CI)."""
    import io

    from posekit.deploy.convert import read_foreign_state_dict

    buffer = io.BytesIO()
    obj = {"meta": {"dataset_meta": {"sigmas": np.array([0.026, 0.025]), "epoch": np.int64(210)}},
           "state_dict": {"w": torch.ones(2)}}
    torch.save(obj, buffer, _use_new_zipfile_serialization=False)   # protocol 2: module names as plain text
    data = buffer.getvalue()
    for name in (b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"):
        data = data.replace(name, module.encode() + b"\n")
    assert module.encode() in data
    (tmp_path / "mmengine.pth").write_bytes(data)
    state = read_foreign_state_dict(tmp_path / "mmengine.pth")
    assert list(state) == ["w"] and torch.equal(state["w"], torch.ones(2))


def test_convert_state_dict_in_memory():
    source = build("hrnet_w16_small", seed=4, **HRNET_SMALL)
    state, report = convert_state_dict(to_mmpose_heatmap(source.state_dict()), "hrnet_w16_small", "mmpose")
    assert not report.detected and report.num_keypoints == 5
    target = create_model("hrnet_w16_small", num_keypoints=5)
    target.load_state_dict(state)
    assert same_outputs(source, target)
    assert "keys mapped" in report.describe() and "mmpose (given)" in report.describe()


# -------------------------------------------------------------------------------------------- detection

def test_layout_and_family_detection():
    hrnet = create_model("hrnet_w16_small", num_keypoints=5).state_dict()
    sb = create_model("simplebaseline_res50", **SB_SMALL).state_dict()
    mspn = create_model("mspn_1stage", **MSPN_SMALL).state_dict()
    cpm = create_model("cpm_2stage").state_dict()
    hourglass = create_model("hourglass_1stack", features=16, depth=2).state_dict()
    assert [detect_source(s) for s in (hrnet, sb, cpm, hourglass)] == ["official"] * 4
    assert detect_source(mspn) == "mspn"
    assert [detect_family(s, "official") for s in (hrnet, sb, cpm, hourglass)] == [
        "hrnet", "simple_baseline", "cpm", "hourglass"]
    assert detect_family(mspn, "mspn") == "mspn"
    assert detect_source(to_mmpose_heatmap(hrnet)) == "mmpose"
    assert detect_family(to_mmpose_heatmap(hrnet), "mmpose") == "hrnet"
    assert detect_family(to_mmpose_heatmap(sb), "mmpose") == "simple_baseline"
    zero = {k: torch.zeros_like(v) if k.endswith(".conv.bias") else v for k, v in mspn.items()}
    assert detect_family(to_mmpose_mspn(zero), "mmpose") == "mspn"


def test_base_config_is_the_recipe_of_the_model_and_keypoint_count():
    assert find_base_config("hrnet_w32", 17).name == "hrnet-w32_coco_256x192.yaml"
    assert find_base_config("hrnet_w32", 16).name == "hrnet-w32_mpii_256x256.yaml"
    assert find_base_config("mspn_4stage", 16).name == "mspn-4stg_mpii_256x256.yaml"
    assert find_base_config("hrnet_w32", 3) is None


# -------------------------------------------------------------------------------------------- refusals

def test_another_keypoint_count_names_the_key_and_shapes(tmp_path):
    source = build("hrnet_w16_small", **HRNET_SMALL)
    torch.save(source.state_dict(), tmp_path / "w.pth")
    with pytest.raises(CheckpointError) as info:
        convert_checkpoint(tmp_path / "w.pth", "hrnet_w16_small", tmp_path / "out", num_keypoints=17)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "w.pth") + ": does not fit hrnet_w16_small")
    assert "final_layer.weight: file (5, 16, 1, 1) vs model (17, 16, 1, 1)" in message
    assert "\n" not in message and "look like" not in message
    # The same through MMPose names: the error names the posekit key, with no layout hint (the layout was right).
    torch.save(to_mmpose_heatmap(source.state_dict()), tmp_path / "mm.pth")
    with pytest.raises(CheckpointError) as info:
        convert_checkpoint(tmp_path / "mm.pth", "hrnet_w16_small", tmp_path / "out", num_keypoints=4)
    assert "(mmpose layout): final_layer.weight: file (5, 16, 1, 1) vs model (4, 16, 1, 1)" in str(info.value)
    assert "look like" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_another_model_of_the_same_family_names_the_first_mismatch(tmp_path):
    torch.save(build("hrnet_w16_small", **HRNET_SMALL).state_dict(), tmp_path / "w16.pth")
    with pytest.raises(CheckpointError, match=r"does not fit hrnet_w16_small \(official layout\): "
                                              r"transition1\.0\.0\.weight: file \(16, 256, 3, 3\) vs model "
                                              r"\(8, 256, 3, 3\)"):
        convert_checkpoint(tmp_path / "w16.pth", "hrnet_w16_small", tmp_path / "out", model_kwargs={"width": 8})


def test_another_family_is_named(tmp_path):
    kwargs = {k: v for k, v in MSPN_SMALL.items() if k != "num_keypoints"}
    torch.save({"model": build("mspn_1stage", **MSPN_SMALL).state_dict()}, tmp_path / "iter-1.pth")
    with pytest.raises(CheckpointError, match="holds an MSPN \\(mspn layout\\), not an HRNet: it cannot become hrnet_w32"):
        convert_checkpoint(tmp_path / "iter-1.pth", "hrnet_w32", tmp_path / "out")
    # Fewer stages than the model: the first model key that the file lacks (stage 0 of two hands skips on).
    with pytest.raises(CheckpointError, match=r"stage0\.upsample\.up1\.skip1\.conv\.weight of the model is not in "
                                              r"the file \(0 shape mismatches, \d+ missing, 0 unexpected\)"):
        convert_checkpoint(tmp_path / "iter-1.pth", "mspn_2stage", tmp_path / "out", model_kwargs=kwargs)


def test_wrong_layout_given_explicitly_gets_a_hint(tmp_path):
    foreign = to_mmpose_heatmap(build("hrnet_w16_small", **HRNET_SMALL).state_dict())
    torch.save(foreign, tmp_path / "mm.pth")
    with pytest.raises(CheckpointError, match=r"conv1\.weight of the model is not in the file .*the keys look like "
                                              r"the mmpose layout \(try --from auto\)"):
        convert_checkpoint(tmp_path / "mm.pth", "hrnet_w16_small", tmp_path / "out", source="official")


def mmpose_cpm_keys() -> Dict[str, torch.Tensor]:
    """Key names (shapes irrelevant) of MMPose's CPM backbone: ConvModules with BatchNorm, no centre map."""
    names = ["backbone.stem.0.conv.weight", "backbone.stem.0.bn.weight", "backbone.stem.0.bn.running_var",
             "backbone.stem.9.conv.weight", "backbone.stem.9.conv.bias", "backbone.middle.0.conv.weight",
             "backbone.cpm_stages.0.model.0.conv.weight", "backbone.cpm_stages.0.model.0.bn.weight",
             "backbone.middle_conv.0.0.conv.weight", "backbone.out_convs.0.1.conv.weight"]
    return {n: torch.zeros(2) for n in names}


def mmpose_hourglass_keys() -> Dict[str, torch.Tensor]:
    """Key names of MMPose's HourglassNet (CornerNet Hourglass-52) + HeatmapHead."""
    names = ["backbone.stem.0.conv.weight", "backbone.stem.1.0.conv1.weight",
             "backbone.hourglass_modules.0.up1.0.conv1.weight", "backbone.hourglass_modules.0.low1.0.bn1.weight",
             "backbone.hourglass_modules.0.low2.up1.0.conv2.weight", "backbone.out_convs.0.conv.weight",
             "head.final_layer.weight", "head.final_layer.bias"]
    return {n: torch.zeros(2) for n in names}


def test_mmpose_cpm_and_hourglass_are_refused_with_the_reason(tmp_path):
    torch.save({"state_dict": mmpose_cpm_keys()}, tmp_path / "cpm.pth")
    with pytest.raises(CheckpointError) as info:
        convert_checkpoint(tmp_path / "cpm.pth", "cpm_6stage", tmp_path / "out")
    assert "BatchNorm" in str(info.value) and "centre map" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match="BatchNorm"):
        convert_checkpoint(tmp_path / "cpm.pth", "cpm_6stage_topdown", tmp_path / "out")
    with pytest.raises(CheckpointError, match="holds an MMPose CPM \\(mmpose layout\\), not an HRNet"):
        convert_checkpoint(tmp_path / "cpm.pth", "hrnet_w32", tmp_path / "out")

    torch.save({"meta": {}, "state_dict": mmpose_hourglass_keys()}, tmp_path / "hg.pth")
    with pytest.raises(CheckpointError, match="CornerNet's Hourglass-52/104"):
        convert_checkpoint(tmp_path / "hg.pth", "hourglass_8stack", tmp_path / "out")
    assert not (tmp_path / "out").exists()


class CreatesAFile:
    """Unpickling this calls open(path, "w"): a stand-in for arbitrary code in a hostile checkpoint."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_malicious_pickle_is_refused_without_running(tmp_path, capsys):
    marker = tmp_path / "pwned.txt"
    state = create_model("hrnet_w16_small", num_keypoints=5).state_dict()
    torch.save({"state_dict": state, "meta": {"config": CreatesAFile(marker)}}, tmp_path / "evil.pth")
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="refused to load"):
        convert_checkpoint(tmp_path / "evil.pth", "hrnet_w16_small", tmp_path / "out")
    assert main(["convert", str(tmp_path / "evil.pth"), "--model", "hrnet_w16_small", "--out",
                 str(tmp_path / "out")]) == 2
    assert "refused to load" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "out").exists()


# -------------------------------------------------------------------------------------------- CLI

def test_cli_end_to_end(tmp_path, capsys):
    source = build("hrnet_w16_small", seed=5, **HRNET_SMALL)
    torch.save(mmpose_checkpoint(to_mmpose_heatmap(source.state_dict())), tmp_path / "mm.pth")
    out = tmp_path / "converted"
    assert main(["convert", str(tmp_path / "mm.pth"), "--model", "hrnet_w16_small", "--out", str(out),
                 "--set", "data.input_size=[64, 64]"]) == 0
    printed = capsys.readouterr().out
    assert "source layout  mmpose (detected)" in printed and "(5 keypoints)" in printed
    assert f"keys mapped    {len(source.state_dict())}" in printed
    assert "unused keys    2 (data_preprocessor.mean, data_preprocessor.std)" in printed
    assert "shape mismatch 0" in printed and "config from defaults" in printed
    text = (out / "config.yaml").read_text()
    assert text.startswith("# hrnet_w16_small converted by posekit convert from mm.pth (mmpose layout)")
    assert yaml.safe_load(text)["model"]["weights"] == str((out / "weights.safetensors").resolve())
    cfg = load_config(out / "config.yaml")
    assert cfg.data.input_size == [64, 64] and cfg.model.num_keypoints == 5
    assert same_outputs(source, build_model(cfg))


def test_cli_errors_are_one_line(tmp_path, capsys):
    torch.save(build("hrnet_w16_small", **HRNET_SMALL).state_dict(), tmp_path / "w.pth")
    assert main(["convert", str(tmp_path / "w.pth"), "--model", "hrnet_w16_small", "--num-keypoints", "3",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "final_layer.weight: file (5, 16, 1, 1) vs model (3, 16, 1, 1)" in err
    assert main(["convert", str(tmp_path / "w.pth"), "--model", "hrnet_w16_small", "--model-kwargs", "[1, 2]",
                 "--out", str(tmp_path / "o")]) == 2
    assert "--model-kwargs must be a YAML mapping" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "w.pth"), "--model", "no_such_net", "--out", str(tmp_path / "o")]) == 2
    assert "unknown model 'no_such_net'" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "missing.pth"), "--model", "hrnet_w32", "--out", str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
