"""posekit bench: the table's columns, the JSON's keys, the accuracy columns and the CLI (no timing assertions)."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

try:
    import onnxruntime  # noqa: F401
    HAVE_ORT = True
except ImportError:      # the onnx extra is optional: run_bench then leaves that backend out
    HAVE_ORT = False

from posekit.deploy import bench
from posekit.deploy.bench import (TABLE_COLUMNS, calibrate_random_weights, format_table, heatmap_differences, parse_backends, run_bench)
from posekit.cli import main
from posekit.errors import ConfigError
from posekit.deploy.flops import count_macs
from posekit.models import create_model

TINY = {"width": 8, "stem_width": 16, "stage_modules": (1, 1, 1), "stage_blocks": (1, 1, 1), "stem_blocks": 1}
ROW_KEYS = {"model", "input_hw", "num_keypoints", "backend", "batch", "latency_ms", "latency_min_ms", "throughput_ips",
            "gmacs_per_image", "gflops_per_s", "ceiling_fraction", "latency_vs_torch", "max_abs_diff", "max_rel_diff",
            "argmax_agreement"}


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return calibrate_random_weights(create_model("hrnet_w32", **TINY), (64, 64))


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    """One tiny run: a small HRNet at 64x64, every backend, batches 1 and 2, one timed round, a small ceiling."""
    patch = pytest.MonkeyPatch()
    patch.setattr(bench, "CEILING_SHAPE", (16, 16, 16, 16))
    try:
        return run_bench([tiny_model()], input_hw=(64, 64), batches=[1, 2],
                         backends=["torch,torch-channels-last", "torch-folded", "torch-bf16", "onnxruntime"],
                         repeats=1, warmup=1)
    finally:
        patch.undo()


@pytest.mark.slow
def test_json_has_machine_ceiling_settings_and_one_row_per_backend_and_batch(result):
    assert set(result) == {"machine", "settings", "conv_ceiling", "models", "results"}
    (model_row,) = result["models"]
    assert model_row["model"] == "hrnet_w32" and 0 < model_row["fp32_rounding_rel"] < 1e-4
    assert {"cpu", "cores", "threads", "torch", "native_bf16", "onnxruntime"} <= set(result["machine"])
    assert result["conv_ceiling"]["fp32_gflops"] > 0 and result["conv_ceiling"]["bf16_gflops"] > 0
    assert result["conv_ceiling"]["shape"] == "3x3 conv 16->16 on 16x16, batch 1"
    rows = result["results"]
    backends = ["torch", "torch-channels-last", "torch-folded", "torch-bf16"] + ["onnxruntime"] * HAVE_ORT
    assert result["settings"]["backends"] == backends
    assert [(r["backend"], r["batch"]) for r in rows] == [(b, n) for n in (1, 2) for b in backends]
    for row in rows:
        assert set(row) == ROW_KEYS
        assert row["model"] == "hrnet_w32" and row["input_hw"] == [64, 64] and row["num_keypoints"] == 17
        assert row["latency_ms"] > 0 and row["throughput_ips"] == pytest.approx(row["batch"] * 1000 / row["latency_ms"])
    json.dumps(result, allow_nan=False)          # strict JSON


@pytest.mark.slow
def test_gflops_come_from_the_flop_counter(result):
    macs = count_macs(create_model("hrnet_w32", **TINY), (64, 64))
    for row in result["results"]:
        assert row["gmacs_per_image"] == pytest.approx(macs / 1e9)
        assert row["gflops_per_s"] == pytest.approx(2 * macs * row["batch"] / (row["latency_ms"] / 1000) / 1e9)


@pytest.mark.slow
def test_reference_row_and_folded_batchnorm_give_the_same_heatmaps(result):
    by_backend = {(r["backend"], r["batch"]): r for r in result["results"]}
    for batch in (1, 2):
        ref = by_backend[("torch", batch)]
        assert ref["max_abs_diff"] == 0.0 and ref["argmax_agreement"] == 1.0 and ref["latency_vs_torch"] == 1.0
        for backend in ("torch-channels-last", "torch-folded") + ("onnxruntime",) * HAVE_ORT:
            row = by_backend[(backend, batch)]
            assert row["max_rel_diff"] < 1e-4 and row["argmax_agreement"] == 1.0
        assert by_backend[("torch-bf16", batch)]["max_rel_diff"] > 1e-4     # bf16 is not exact, and says so


@pytest.mark.slow
def test_table_has_the_columns_and_a_row_per_result(result):
    table = format_table(result)
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("| model"))
    assert [c.strip() for c in header.strip("|").split("|")] == list(TABLE_COLUMNS)
    rows = [line for line in lines if line.startswith("| `hrnet_w32`")]
    assert len(rows) == len(result["results"]) == 2 * (4 + HAVE_ORT)
    assert all(len(r.strip("|").split("|")) == len(TABLE_COLUMNS) for r in rows)
    assert "conv ceiling (3x3 conv 16->16 on 16x16, batch 1): fp32" in table
    assert "fp32 rounding floor (fp32 vs fp64 eager, max rel diff): `hrnet_w32` " in table
    assert "| `hrnet_w32` | 64x64 | torch-folded | 2 |" in table


def test_heatmap_differences_by_hand():
    ref = torch.zeros(1, 2, 3, 3)
    ref[0, 0, 1, 1], ref[0, 1, 0, 2] = 2.0, 1.0
    other = ref.clone()
    other[0, 1, 2, 0] = 1.5          # keypoint 1's maximum moves
    assert heatmap_differences(ref, other) == {"max_abs_diff": 1.5, "max_rel_diff": 0.75, "argmax_agreement": 0.5}


def test_calibrated_random_weights_give_order_one_heatmaps():
    model = create_model("simplebaseline_res50", width=8, deconv_channels=16)
    with torch.no_grad():
        official = model.eval()(torch.randn(1, 3, 64, 64))[-1].abs().max()
    calibrate_random_weights(model, (64, 64))
    assert not model.training
    with torch.no_grad():
        calibrated = model(torch.randn(1, 3, 64, 64))[-1].abs().max()
    assert official < 1e-3 and 0.05 < calibrated < 100
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(float(m.running_mean.abs().max()) == 0 and float(m.running_var.min()) >= 0 for m in bns)
    assert all(0.1 <= float(m.weight.detach().min()) and float(m.weight.detach().max()) <= 0.3 for m in bns)


def test_backend_names_are_checked():
    assert parse_backends(["torch,onnxruntime", "torch-bf16", "torch"]) == ["torch", "onnxruntime", "torch-bf16"]
    with pytest.raises(ConfigError, match="--backend: unknown backend 'tensorrt'"):
        parse_backends(["torch,tensorrt"])
    with pytest.raises(ConfigError, match="--batch: batch sizes must be >= 1"):
        run_bench([tiny_model()], input_hw=(64, 64), batches=[0])


@pytest.mark.slow
def test_cli_bench_prints_the_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "hrnet_w16_small", "--input", "64x64", "--batch", "1", "--backend", "torch,torch-folded",
                 "--repeats", "1", "--warmup", "0", "--no-ceiling", "--quiet", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| `hrnet_w16_small` | 64x64 | torch-folded | 1 |" in printed and "conv ceiling" not in printed
    data = json.loads(out.read_text())
    assert [r["backend"] for r in data["results"]] == ["torch", "torch-folded"]
    assert data["results"][1]["max_rel_diff"] < 1e-4 and data["results"][0]["ceiling_fraction"] is None
    assert main(["bench", "hrnet_w32", "--backend", "torch,fast"]) == 2
    assert "unknown backend 'fast'" in capsys.readouterr().err


def test_cli_bench_data_flag_points_at_the_repository_script(capsys):
    # The data-pipeline benchmark times the dataset against its test oracle, so it left the package.
    assert main(["bench", "--data", "cfg.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "python benchmarks/data_pipeline.py --config CONFIG" in err