"""The OpenVINO backend (the optional ``openvino`` extra): same heatmaps and poses as PyTorch, any batch size."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

pytest.importorskip("onnx", reason="the openvino extra (onnx, openvino) is not installed: OpenVINO tests skipped")
pytest.importorskip("openvino", reason="the openvino extra (onnx, openvino) is not installed: OpenVINO tests skipped")

from conftest import TwoConvs  # noqa: E402
from posekit.apps.predictor import PosePredictor  # noqa: E402
from posekit.config import config_from_dict  # noqa: E402
from posekit.deploy import backends  # noqa: E402
from posekit.deploy.backends import OpenVinoHeatmapModel, auto_backend, inference_model  # noqa: E402
from posekit.deploy.bench import calibrate_random_weights  # noqa: E402
from posekit.errors import PosekitError  # noqa: E402
from posekit.evaluation.inference import predict_heatmaps  # noqa: E402
from posekit.models import create_model  # noqa: E402
from posekit.skeletons import COCO  # noqa: E402
from posekit.weightfiles import save_weights  # noqa: E402

pytestmark = pytest.mark.slow     # exports an ONNX graph

SMALL_HRNET = {"width": 8, "stem_width": 16, "stage_modules": (1, 1, 1), "stage_blocks": (1, 1, 1), "stem_blocks": 1}


def small_hrnet(num_keypoints: int = 17) -> torch.nn.Module:
    torch.manual_seed(0)
    return calibrate_random_weights(create_model("hrnet_w32", num_keypoints=num_keypoints, **SMALL_HRNET), (96, 64))


def test_openvino_heatmaps_equal_torch_at_every_batch_size_and_under_flip_test(tmp_path):
    model = small_hrnet()
    runner = inference_model(copy.deepcopy(model), "openvino", input_hw=(96, 64), onnx_path=tmp_path / "m.onnx")
    assert isinstance(runner, OpenVinoHeatmapModel)
    assert runner.num_keypoints == 17 and runner.outputs[-1] == model.outputs[-1]
    x = torch.randn(5, 3, 96, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)[-1]
        scale = float(expected.abs().max())
        for batch in (1, 5, 2):                 # the exported batch axis is dynamic: any size, in any order
            got = runner(x[:batch])[-1]
            assert got.shape == expected[:batch].shape and got.dtype == torch.float32
            assert float((got - expected[:batch]).abs().max()) <= 1e-4 * scale
    perm = COCO.flip_permutation()
    flipped = predict_heatmaps(runner, x, perm)
    assert float((flipped - predict_heatmaps(model, x, perm)).abs().max()) <= 1e-4 * scale
    assert not torch.allclose(flipped, expected, atol=1e-3 * scale)        # the mirrored half did count


def test_predictor_on_openvino_gives_torch_poses(tmp_path):
    cfg = config_from_dict({"model": {"name": "hrnet_w32", "num_keypoints": 14, "kwargs": SMALL_HRNET},
                            "data": {"skeleton": "synthetic", "input_size": [96, 64]},
                            "test": {"batch_size": 2, "flip_test": True}, "train": {"workers": 0, "device": "cpu"}})
    weights = tmp_path / "w.safetensors"
    save_weights(small_hrnet(14), weights)
    image = np.random.default_rng(1).integers(0, 255, (120, 90, 3), dtype=np.uint8)
    boxes = [[5, 10, 60, 90], [0, 0, 90, 120], [20, 20, 40, 50]]
    expected = PosePredictor.from_config(cfg, weights=str(weights), device="cpu")(image, boxes)
    predictor = PosePredictor.from_config(cfg, weights=str(weights), device="cpu", backend="openvino")
    assert predictor.backend == "openvino" and isinstance(predictor.model, OpenVinoHeatmapModel)
    got = predictor(image, boxes)
    assert len(got) == len(expected) == 3
    for a, b in zip(got, expected):
        assert np.allclose(a.keypoints, b.keypoints, atol=1e-3)
        assert np.allclose(a.scores, b.scores, atol=1e-4)


def runtime_precisions(runner: OpenVinoHeatmapModel) -> dict:
    return {op.get_friendly_name(): str(op.get_rt_info()["runtimePrecision"].astype(str))
            for op in runner.compiled.get_runtime_model().get_ordered_ops()
            if str(op.get_rt_info()["layerType"].astype(str)) == "Convolution"}


needs_bf16 = pytest.mark.skipif(not backends.cpu_has_bf16(), reason="this CPU has no native bf16: openvino-bf16 refused")


@needs_bf16
def test_openvino_bf16_runs_the_edge_convolutions_in_f32_and_the_rest_in_bf16(tmp_path):
    model = small_hrnet()
    runner = inference_model(copy.deepcopy(model), "openvino-bf16", input_hw=(96, 64), onnx_path=tmp_path / "m.onnx")
    precisions = runtime_precisions(runner)
    f32 = [name for name, p in precisions.items() if p == "f32"]
    # The head's conv may be named after the bias addition fused into it, i.e. after the output.
    assert len(f32) == 2 and f32[0].startswith("/model/conv1/"), precisions
    assert f32[1] in ("heatmaps", "/model/final_layer/Conv/WithoutBiases"), precisions
    assert len(precisions) > 20 and set(p for name, p in precisions.items() if name not in f32) == {"bf16"}
    x = torch.randn(3, 3, 96, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x)[-1]
        got = runner(x)[-1]
    assert got.dtype == torch.float32 and 1e-4 < float((got - expected).abs().max()) / float(expected.abs().max()) < 0.1
    # Both convs at an edge: f32's result to float rounding (all-bf16 OpenVINO is 1e-2 off on the same network).
    two = calibrate_random_weights(TwoConvs(), (32, 32))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = two(x)[-1]
        got = inference_model(two, "openvino-bf16", input_hw=(32, 32))(x)[-1]
    assert float((got - expected).abs().max()) <= 1e-5 * float(expected.abs().max())


def test_openvino_finds_the_edge_convolutions_torch_finds(tmp_path):
    import openvino as ov

    from posekit.deploy.backends import _edge_convolutions, edge_layers
    from posekit.deploy.onnx import export_onnx

    small = {"hrnet_w32": (SMALL_HRNET, (96, 64)), "cpm_2stage": ({}, (32, 32)),
             "simplebaseline_res50": ({"width": 8, "deconv_channels": 16}, (64, 64))}
    for name, (kwargs, hw) in small.items():
        torch.manual_seed(0)
        model = create_model(name, num_keypoints=5, **kwargs).eval()
        export_onnx(model, tmp_path / f"{name}.onnx", hw, verify=False)
        graph = ov.Core().read_model(str(tmp_path / f"{name}.onnx"))
        # The exporter names a node after its module's path: /model/<top-level module>/... (these are all top level).
        found = {node.get_friendly_name().split("/")[2] for node, _names in _edge_convolutions(graph)}
        # The export holds the final heatmaps only: CPM's earlier stages write no output there.
        assert found == {layer[len("model."):] for layer in edge_layers(FinalOutput(model))}, name


class FinalOutput(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model, self.input_channels = model, model.input_channels
        self.input_multiple = getattr(model, "input_multiple", 1)

    def forward(self, x):
        return [self.model(x)[-1]]


@needs_bf16
def test_openvino_bf16_is_refused_where_the_edges_would_not_stay_f32(tmp_path, monkeypatch):
    model = TwoConvs()
    onnx_file = tmp_path / "m.onnx"
    inference_model(model, "openvino", input_hw=(32, 32), onnx_path=onnx_file)
    monkeypatch.setattr(backends, "_keep_edges_f32", lambda ov, core, graph: (
        graph, [names for _node, names in backends._edge_convolutions(graph)]))
    with pytest.raises(PosekitError, match=r"does not keep the edge convolutions in f32 under bf16: .*\(bf16\)"):
        OpenVinoHeatmapModel(onnx_file, bf16=True)
    monkeypatch.setattr(backends, "cpu_has_bf16", lambda: False)
    with pytest.raises(PosekitError, match="needs a CPU that computes bf16 natively"):
        OpenVinoHeatmapModel(onnx_file, bf16=True)
    assert backends.backend_unavailable("openvino-bf16") == "this CPU has no native bf16"
    assert backends.backend_unavailable("torch-bf16") is None and backends.backend_unavailable("openvino") is None


def test_auto_backend_takes_the_fastest_exact_installed_backend_for_this_cpu(monkeypatch):
    native = backends.cpu_has_bf16()
    assert auto_backend("cpu") == ("openvino-bf16" if native else "openvino") and auto_backend("cuda") == "torch"
    monkeypatch.setattr(backends, "openvino_available", lambda: False)
    fp32 = "onnxruntime" if backends.onnxruntime_available() else "torch-folded"
    assert auto_backend("cpu") == ("torch-bf16" if native else fp32)
    monkeypatch.setattr(backends, "cpu_has_bf16", lambda: False)
    assert auto_backend("cpu") == fp32
    monkeypatch.setattr(backends, "openvino_available", lambda: True)
    assert auto_backend("cpu") == "openvino"
