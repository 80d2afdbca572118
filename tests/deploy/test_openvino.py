"""The OpenVINO backend (the optional ``openvino`` extra): same heatmaps and poses as PyTorch, any batch size."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

pytest.importorskip("onnx", reason="the openvino extra (onnx, openvino) is not installed: OpenVINO tests skipped")
pytest.importorskip("openvino", reason="the openvino extra (onnx, openvino) is not installed: OpenVINO tests skipped")

from posekit.apps.predictor import PosePredictor  # noqa: E402
from posekit.config import config_from_dict  # noqa: E402
from posekit.deploy import backends  # noqa: E402
from posekit.deploy.backends import OpenVinoHeatmapModel, auto_backend, inference_model  # noqa: E402
from posekit.deploy.bench import calibrate_random_weights  # noqa: E402
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


def test_auto_backend_takes_openvino_where_installed_and_the_next_exact_one_elsewhere(monkeypatch):
    assert auto_backend("cpu") == "openvino" and auto_backend("cuda") == "torch"
    monkeypatch.setattr(backends, "openvino_available", lambda: False)
    assert auto_backend("cpu") == ("onnxruntime" if backends.onnxruntime_available() else "torch-folded")
