"""``posekit bench``: inference latency, throughput and achieved GFLOP/s per model x backend x batch size.

Every number comes from one run on one machine: each backend (:data:`posekit.deploy.backends.BACKENDS`) is timed on the
same input, in interleaved rounds (one call of each backend per round) so that load from other processes falls on
all of them alike, and the latency is the median over rounds after warm-up. Accuracy is the final heatmaps'
largest difference from the plain fp32 eager forward (absolute, relative to the heatmaps' largest value, and the
share of keypoints whose heatmap argmax is unchanged). The same run measures the machine's convolution ceiling:
the GFLOP/s of a large 3x3 convolution, the best case the model convolutions can approach.

Without ``weights`` a model gets random weights with realistic activations (He-normal convolutions, BatchNorm
statistics measured on random inputs; see :func:`calibrate_random_weights`): the official initialisations
(std 0.001) give heatmaps of ~1e-10, where any difference would look negligible. Random heatmaps have no clear
peak, so their argmax agreement is a pessimistic figure. GFLOP/s count 2 x the multiply-accumulates of
:mod:`posekit.deploy.flops` (convolutions and matrix products) per second, in units of 1e9.
"""
from __future__ import annotations

import copy
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .backends import BACKENDS, BF16_BACKENDS, backend_unavailable, cpu_has_bf16, inference_model, openvino_available
from ..evaluation.inference import final_heatmaps
from ..models import create_model
from .modelcard import settings_for
from ..weightfiles import load_weights
from .flops import count_macs
from ..fileio import atomic_write_bytes

DEFAULT_MODELS = ("hrnet_w32", "simplebaseline_res50")
DEFAULT_BATCHES = (1, 8)
# The ceiling conv: 256 -> 256 channels, 3x3, on a 64x48 map (HRNet/SimpleBaseline widths at stride 4 of 256x192).
CEILING_SHAPE = (256, 256, 64, 48)


# ------------------------------------------------------------------------------------------------ helpers

def parse_backends(items: Sequence[str]) -> List[str]:
    """Backend names from comma- and/or space-separated items, checked, in the given order, without repeats."""
    names: List[str] = []
    for item in items:
        for name in str(item).split(","):
            name = name.strip()
            if not name:
                continue
            if name not in BACKENDS:
                raise ConfigError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}", "--backend")
            if name not in names:
                names.append(name)
    return names


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one, else platform's processor string."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@torch.no_grad()
def calibrate_random_weights(model: nn.Module, input_hw: Tuple[int, int], seed: int = 0, batch: int = 8) -> nn.Module:
    """Random weights with a trained network's activation scale and conditioning, in place; returns it in eval mode.

    Convolutions get He-normal weights and small random biases, BatchNorm scales in [0.1, 0.3] and small shifts.
    The BatchNorm statistics are then set, in forward order, from what each BN receives on a batch of random
    images in eval mode, as the uncentred second moment (mean 0, "variance" E[x^2]). Centred statistics of random
    images make BN subtract a large mean from nearly constant deep features, a cancellation that amplifies float
    rounding ~50-fold (fp32 and fp64 SimpleBaseline heatmaps then differ by 4e-5 of their range, bf16 ones by 25%),
    which would make every backend look inexact; calibrated this way, fp32 rounding stays at ~1e-6 of the range.
    The small scales keep residual branches from growing the signal stack by stack.
    """
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            fan_in = module.weight[0].numel()
            module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2.0 / max(fan_in, 1)) ** 0.5)
            if module.bias is not None:
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.01)
        elif isinstance(module, nn.BatchNorm2d) and module.weight is not None:
            module.weight.copy_(torch.rand(module.weight.shape, generator=generator) * 0.2 + 0.1)
            module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
    done: set = set()

    def set_statistics(bn: nn.Module, args: Tuple[Tensor, ...]) -> None:
        if bn in done or bn.running_mean is None:
            return
        done.add(bn)
        bn.running_mean.zero_()
        bn.running_var.copy_(args[0].double().pow(2).mean(dim=(0, 2, 3)).to(bn.running_var.dtype))

    handles = [m.register_forward_pre_hook(set_statistics) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    model.eval()
    try:
        channels = int(getattr(model, "input_channels", 3))
        model(torch.randn(batch, channels, int(input_hw[0]), int(input_hw[1]), generator=generator))
    finally:
        for handle in handles:
            handle.remove()
    return model


def _time_ms(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000.0


def conv_ceiling(repeats: int = 5, bf16: bool = False, shape: Tuple[int, int, int, int] = CEILING_SHAPE) -> float:
    """GFLOP/s of one large 3x3 convolution (best of NCHW and channels-last; bf16 under autocast)."""
    cin, cout, height, width = shape
    conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False).eval()
    flops = 2.0 * cin * cout * 9 * height * width
    x = torch.randn(1, cin, height, width)
    best = 0.0
    for layout in (torch.contiguous_format, torch.channels_last):
        layer = copy.deepcopy(conv).to(memory_format=layout)
        xi = x.contiguous(memory_format=layout)

        def call() -> Tensor:
            if bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return layer(xi)
            return layer(xi)

        with torch.inference_mode():
            call()
            times = [_time_ms(call) for _ in range(max(1, repeats))]
        best = max(best, flops / (statistics.median(times) / 1000.0) / 1e9)
    return best


@torch.no_grad()
def float32_rounding(model: nn.Module, input_hw: Tuple[int, int], seed: int = 0) -> float:
    """How far the fp32 eager heatmaps of one random image are from the fp64 ones, relative to their largest value:
    the floor under which differences between fp32 backends are rounding, not error."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, int(getattr(model, "input_channels", 3)), *input_hw, generator=generator)
    single = final_heatmaps(model, model(x)).double()
    double = final_heatmaps(model, copy.deepcopy(model).double()(x.double()))
    return heatmap_differences(double, single)["max_rel_diff"]


def heatmap_differences(reference: Tensor, other: Tensor) -> Dict[str, float]:
    """Largest absolute difference, the same relative to the reference's largest value, and the share of
    (image, keypoint) heatmaps whose argmax position is unchanged."""
    reference, other = reference.float(), other.float()
    diff = float((other - reference).abs().max()) if reference.numel() else 0.0
    scale = float(reference.abs().max()) if reference.numel() else 0.0
    same = (reference.flatten(2).argmax(-1) == other.flatten(2).argmax(-1)).float().mean()
    return {"max_abs_diff": diff, "max_rel_diff": diff / scale if scale > 0 else 0.0,
            "argmax_agreement": float(same)}


# ------------------------------------------------------------------------------------------------ the run

def _build(entry: Union[str, nn.Module], input_hw: Optional[Tuple[int, int]], num_keypoints: Optional[int],
           weights: Optional[str], seed: int) -> Tuple[str, nn.Module, Tuple[int, int], int]:
    if isinstance(entry, nn.Module):
        if input_hw is None:
            raise ValueError("a model passed as a module needs input_hw")
        model = entry
        name = str(getattr(model, "name", type(model).__name__))
        hw = input_hw
    else:
        name = entry
        default_hw, default_k, _ = settings_for(name)[0]
        hw = input_hw or default_hw
        model = create_model(name, num_keypoints=num_keypoints or default_k)
    if weights:
        load_weights(model, weights)
        model.eval()
    elif not isinstance(entry, nn.Module):
        calibrate_random_weights(model, hw, seed=seed)
    model.eval()
    return name, model, (int(hw[0]), int(hw[1])), int(getattr(model, "num_keypoints", 0))


def run_bench(models: Sequence[Union[str, nn.Module]] = DEFAULT_MODELS, input_hw: Optional[Tuple[int, int]] = None,
              batches: Sequence[int] = DEFAULT_BATCHES, backends: Sequence[str] = BACKENDS,
              threads: Optional[int] = None, repeats: int = 10, warmup: int = 2, num_keypoints: Optional[int] = None,
              weights: Optional[str] = None, ceiling: bool = True, seed: int = 0,
              log: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Benchmark ``models`` (names, or modules with ``input_hw`` given) on every backend and batch size.

    ``input_hw``/``num_keypoints`` default to each model's paper setting; ``weights`` (one model only) replaces the
    calibrated random weights. Returns a JSON-ready dict: ``machine``, ``settings``, ``conv_ceiling``, ``models``
    (per model: MACs and :func:`float32_rounding`) and ``results`` (one row per model x backend x batch; see
    :func:`format_table` for the columns).
    """
    backends = parse_backends(backends)
    if not backends:
        raise ConfigError("no backend to benchmark", "--backend")
    batches = [int(b) for b in batches]
    if not batches or min(batches) < 1:
        raise ConfigError(f"batch sizes must be >= 1, got {batches}", "--batch")
    if weights and len(models) != 1:
        raise ConfigError("--weights fits one model; name exactly one", "--weights")
    if repeats < 1 or warmup < 0:
        raise ConfigError(f"need repeats >= 1 and warmup >= 0, got {repeats} and {warmup}", "--repeats")
    say = log or (lambda message: None)
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    threads_used = torch.get_num_threads()
    tmp_dir = tempfile.mkdtemp(prefix="posekit-bench-")
    try:
        machine = {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": threads_used,
                   "torch": torch.__version__, "native_bf16": cpu_has_bf16(), "platform": platform.platform(),
                   "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                   "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
        try:
            import onnxruntime

            machine["onnxruntime"] = onnxruntime.__version__
        except ImportError:
            machine["onnxruntime"] = None
        if openvino_available():
            import openvino

            machine["openvino"] = openvino.__version__.split("-")[0]
        for backend in backends:
            reason = backend_unavailable(backend)
            if reason:
                say(f"{reason}: skipping {backend}")
        backends = [b for b in backends if backend_unavailable(b) is None]
        ceilings: Dict[str, Any] = {"shape": "3x3 conv {}->{} on {}x{}, batch 1".format(*CEILING_SHAPE)}
        if ceiling:
            say("measuring the conv ceiling")
            ceiling_repeats = max(3, min(repeats, 10))
            ceilings["fp32_gflops"] = conv_ceiling(repeats=ceiling_repeats, shape=CEILING_SHAPE)
            ceilings["bf16_gflops"] = conv_ceiling(repeats=ceiling_repeats, bf16=True, shape=CEILING_SHAPE)
        rows: List[Dict[str, Any]] = []
        model_rows: List[Dict[str, Any]] = []
        for entry in models:
            name, model, hw, k = _build(entry, input_hw, num_keypoints, weights, seed)
            say(f"{name} {hw[0]}x{hw[1]}: preparing {', '.join(backends)}")
            macs = count_macs(model, hw, batch=1)
            prepared = {}
            for backend in backends:
                onnx_path = os.path.join(tmp_dir, f"{name}.onnx")
                prepared[backend] = inference_model(model, backend, input_hw=hw, onnx_path=onnx_path,
                                                    threads=threads_used)
            reference_model = model.eval()
            model_rows.append({"model": name, "input_hw": list(hw), "num_keypoints": k, "gmacs_per_image": macs / 1e9,
                               "fp32_rounding_rel": float32_rounding(model, hw, seed)})
            for batch in batches:
                generator = torch.Generator().manual_seed(seed + batch)
                x = torch.randn(batch, int(getattr(model, "input_channels", 3)), *hw, generator=generator)
                say(f"{name} batch {batch}")
                with torch.inference_mode():
                    reference = final_heatmaps(reference_model, reference_model(x)).float()
                    outputs = {}
                    for backend, runner in prepared.items():
                        outputs[backend] = final_heatmaps(runner, runner(x)).float()
                        for _ in range(max(0, warmup - 1)):
                            runner(x)
                    times: Dict[str, List[float]] = {b: [] for b in prepared}
                    for _ in range(repeats):
                        for backend, runner in prepared.items():
                            times[backend].append(_time_ms(lambda: runner(x)))
                eager_ms = statistics.median(times["torch"]) if "torch" in times else None
                for backend in prepared:
                    latency = statistics.median(times[backend])
                    gflops = 2.0 * macs * batch / (latency / 1000.0) / 1e9
                    ceiling_key = "bf16_gflops" if backend in BF16_BACKENDS else "fp32_gflops"
                    row = {
                        "model": name, "input_hw": list(hw), "num_keypoints": k, "backend": backend, "batch": batch,
                        "latency_ms": latency, "latency_min_ms": min(times[backend]),
                        "throughput_ips": batch / (latency / 1000.0),
                        "gmacs_per_image": macs / 1e9, "gflops_per_s": gflops,
                        "ceiling_fraction": gflops / ceilings[ceiling_key] if ceilings.get(ceiling_key) else None,
                        "latency_vs_torch": latency / eager_ms if eager_ms else None,
                        **heatmap_differences(reference, outputs[backend]),
                    }
                    rows.append(row)
            del prepared
        return {"machine": machine,
                "settings": {"models": [r for r in dict.fromkeys(row["model"] for row in rows)],
                             "batches": batches, "backends": backends, "repeats": repeats, "warmup": warmup,
                             "weights": weights or "calibrated random", "seed": seed,
                             "timing": "median over interleaved rounds, one call per backend per round"},
                "conv_ceiling": ceilings, "models": model_rows, "results": rows}
    finally:
        torch.set_num_threads(old_threads)
        shutil.rmtree(tmp_dir, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ output

# No "|" inside a header: it would split the Markdown cell.
TABLE_COLUMNS = ("model", "input", "backend", "batch", "latency (ms)", "vs torch", "img/s", "GFLOP/s",
                 "% of ceiling", "max abs diff", "max rel diff", "same argmax")


def _fmt(value: Optional[float], spec: str) -> str:
    return "–" if value is None else format(value, spec)


def format_table(result: Dict[str, Any]) -> str:
    """The run as Markdown: a header line on the machine and ceiling, then one table row per result."""
    machine, ceil = result["machine"], result["conv_ceiling"]
    lines = [f"{machine['cpu']}, {machine['threads']} threads, torch {machine['torch']}, onnxruntime "
             f"{machine.get('onnxruntime') or 'absent'}, openvino {machine.get('openvino') or 'absent'}, "
             f"native bf16: {'yes' if machine['native_bf16'] else 'no'}, "
             f"OMP_WAIT_POLICY={machine.get('omp_wait_policy') or 'unset'}"]
    load = machine.get("load_average")
    if load and machine.get("cores") and load[0] > machine["cores"]:
        # torch's OpenMP threads busy-wait; when other processes hold the cores they slow down many times over
        # (PASSIVE waiting avoids that, but costs ~40% on an idle machine), while ONNX Runtime's threads here sleep.
        lines.append(f"load average {load[0]:.1f} on {machine['cores']} cores at the start: the machine is busy and "
                     "torch timings are inflated (OMP_WAIT_POLICY=PASSIVE limits that); re-run on an idle machine")
    if "fp32_gflops" in ceil:
        lines.append(f"conv ceiling ({ceil['shape']}): fp32 {ceil['fp32_gflops']:.0f} GFLOP/s, bf16 "
                     f"{ceil['bf16_gflops']:.0f} GFLOP/s")
    floors = [f"`{m['model']}` {m['fp32_rounding_rel']:.1e}" for m in result.get("models", [])]
    if floors:
        lines.append("fp32 rounding floor (fp32 vs fp64 eager, max rel diff): " + ", ".join(floors))
    lines += ["", "| " + " | ".join(TABLE_COLUMNS) + " |", "|" + "---|" * len(TABLE_COLUMNS)]
    for row in result["results"]:
        cells = [f"`{row['model']}`", f"{row['input_hw'][0]}x{row['input_hw'][1]}", row["backend"], str(row["batch"]),
                 _fmt(row["latency_ms"], ".1f"), _fmt(row["latency_vs_torch"], ".2f"),
                 _fmt(row["throughput_ips"], ".1f"),
                 _fmt(row["gflops_per_s"], ".0f"),
                 _fmt(None if row["ceiling_fraction"] is None else 100 * row["ceiling_fraction"], ".0f"),
                 _fmt(row["max_abs_diff"], ".1e"), _fmt(row["max_rel_diff"], ".1e"),
                 f"{100 * row['argmax_agreement']:.1f}%"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(result: Dict[str, Any], path: Union[str, "os.PathLike[str]"]) -> None:
    atomic_write_bytes(path, (json.dumps(result, indent=2, allow_nan=False) + "\n").encode())


__all__ = ["DEFAULT_BATCHES", "DEFAULT_MODELS", "TABLE_COLUMNS", "calibrate_random_weights", "conv_ceiling",
           "cpu_name", "float32_rounding", "format_table", "heatmap_differences", "parse_backends", "run_bench",
           "write_json"]
