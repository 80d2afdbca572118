"""Inference backends: the same model prepared to run faster (BatchNorm folded into the convolutions, channels-last,
bf16 autocast, ONNX Runtime), and the choice of the fastest exact one for a device.

:func:`fold_batchnorm` merges every BatchNorm that directly follows a convolution into that convolution (inference
only) and checks the fold in float64; :func:`inference_model` builds the backends that ``posekit bench`` compares
and that :class:`posekit.apps.predictor.PosePredictor` runs.
"""
from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..errors import PosekitError
from .onnx import OnnxHeatmapModel, PathLike, export_onnx, model_name

BACKENDS = ("torch", "torch-channels-last", "torch-folded", "torch-bf16", "onnxruntime", "openvino")

# =========================================================================================== BatchNorm folding

_CONVS = (nn.Conv2d, nn.ConvTranspose2d)


def example_input(model: nn.Module, batch: int = 1) -> Tensor:
    """A zero input the model accepts: its channels, and a square side that is a multiple of its input stride."""
    side = max(64, int(getattr(model, "input_multiple", 64)))
    param = next(iter(model.parameters()), torch.zeros(0))
    return torch.zeros(batch, int(getattr(model, "input_channels", 3)), side, side, device=param.device,
                       dtype=param.dtype if param.is_floating_point() else torch.float32)


def _tensors(obj: Any) -> Iterator[Tensor]:
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


def conv_bn_pairs(model: nn.Module, example: Optional[Tensor] = None) -> List[Tuple[str, str]]:
    """(conv name, BatchNorm name) for every BatchNorm2d that reads nothing but the output of one conv.

    Found by running the model once and watching the data flow: each call of the BN must take a tensor that
    the conv has just produced, every call of that conv must feed that BN, and no other operation may read the
    conv's output (else folding would change what that operation sees).
    """
    from torch.overrides import TorchFunctionMode

    if example is None:
        example = example_input(model)
    names = {m: n for n, m in model.named_modules()}
    produced: Dict[int, Tuple[nn.Module, Tensor]] = {}   # id(output) -> (conv, output); outputs kept alive
    conv_calls: Dict[nn.Module, int] = {}
    bn_sources: Dict[nn.Module, List[Optional[nn.Module]]] = {}
    shared: set = set()
    inside_bn = [0]

    def after_conv(module, _args, output):
        conv_calls[module] = conv_calls.get(module, 0) + 1
        if isinstance(output, Tensor):
            produced[id(output)] = (module, output)

    def before_bn(module, args):
        source = produced.get(id(args[0])) if args else None
        bn_sources.setdefault(module, []).append(source[0] if source is not None and source[1] is args[0] else None)
        inside_bn[0] += 1

    def after_bn(module, _args, _output):
        inside_bn[0] -= 1

    class Readers(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            # Reading sizes or dtypes is harmless; any operation that computes a tensor from the conv output is a
            # reader that folding would change (the BN's own batch_norm call is excluded by inside_bn).
            if not inside_bn[0] and any(True for _ in _tensors(out)):
                for t in _tensors((args, kwargs)):
                    entry = produced.get(id(t))
                    if entry is not None and entry[1] is t:
                        shared.add(entry[0])
            return out

    handles = []
    for module in names:
        if isinstance(module, _CONVS):
            handles.append(module.register_forward_hook(after_conv))
        elif isinstance(module, nn.BatchNorm2d):
            handles.append(module.register_forward_pre_hook(before_bn))
            handles.append(module.register_forward_hook(after_bn))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), Readers():
            model(example)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    bn_count_per_conv: Dict[nn.Module, int] = {}
    for sources in bn_sources.values():
        for conv in sources:
            if conv is not None:
                bn_count_per_conv[conv] = bn_count_per_conv.get(conv, 0) + 1
    pairs = []
    for bn, sources in bn_sources.items():
        conv = sources[0]
        if conv is None or any(s is not conv for s in sources) or conv in shared:
            continue
        if bn_count_per_conv.get(conv) != conv_calls.get(conv) or len(sources) != conv_calls.get(conv):
            continue
        if bn.running_mean is None or bn.running_var is None:
            continue
        pairs.append((names[conv], names[bn]))
    return pairs


@torch.no_grad()
def fold_conv_bn(conv: nn.Module, bn: nn.BatchNorm2d) -> None:
    """conv <- BN(conv(.)) in eval mode: weights scaled per output channel, bias shifted (float64 arithmetic)."""
    scale = bn.running_var.double().add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    shift = -bn.running_mean.double() * scale
    if bn.bias is not None:
        shift = shift + bn.bias.double()
    weight = conv.weight.double()
    if isinstance(conv, nn.ConvTranspose2d):
        groups = conv.groups
        shape = weight.shape      # in x out/groups x kh x kw
        grouped = weight.reshape(groups, shape[0] // groups, shape[1], *shape[2:])
        weight = (grouped * scale.reshape(groups, 1, shape[1], 1, 1)).reshape(shape)
    else:
        weight = weight * scale.reshape(-1, 1, 1, 1)
    bias = shift if conv.bias is None else conv.bias.double() * scale + shift
    conv.weight.copy_(weight.to(conv.weight.dtype))
    if conv.bias is None:
        conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=conv.weight.requires_grad)
    else:
        conv.bias.copy_(bias.to(conv.bias.dtype))


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, module)


# How far folding may move a float64 output, relative to its largest value. The fold's algebra in float64 is exact to
# ~1e-11 of the range even where deep networks amplify rounding (MSPN-4stage with trained-like statistics, whose
# float32 outputs move by ~1e-2 of the range when folded); a misplaced or wrong fold moves them by far more.
FOLD_RTOL = 1e-6


def fold_batchnorm(model: nn.Module, example: Optional[Tensor] = None, inplace: bool = False) -> nn.Module:
    """An inference copy of ``model`` (``inplace``: the model itself) with conv + BatchNorm pairs merged.

    Every BatchNorm2d found by :func:`conv_bn_pairs` is folded into its convolution with its running statistics
    and replaced by ``nn.Identity``; BNs that read anything else (Torch7's pre-activation ``bn1`` after a sum)
    are kept. The result is in eval mode and must not be trained (the statistics are gone). The fold is checked
    first on a float64 CPU copy of the model on ``example`` (default :func:`example_input`): its outputs must stay
    within :data:`FOLD_RTOL` of their largest value, else RuntimeError. Checking in float32 would judge float32
    rounding, which a deep network can amplify past any fixed tolerance although the fold is exact; the folded
    float32 weights are the float64 ones rounded. ``model.folded_batchnorms`` says how many were folded.
    """
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    if example is None:
        example = example_input(model)
    pairs = conv_bn_pairs(model, example)
    _check_fold(model, pairs, example)
    for conv_name, bn_name in pairs:
        fold_conv_bn(model.get_submodule(conv_name), model.get_submodule(bn_name))
        _set_submodule(model, bn_name, nn.Identity())
    model.folded_batchnorms = len(pairs)
    return model


def _check_fold(model: nn.Module, pairs: Sequence[Tuple[str, str]], example: Tensor) -> None:
    """RuntimeError unless folding ``pairs`` leaves a float64 CPU copy's outputs on ``example`` within FOLD_RTOL."""
    reference = copy.deepcopy(model).to(device="cpu", dtype=torch.float64).eval()
    x = example.detach().to(device="cpu", dtype=torch.float64)
    with torch.no_grad():
        before = [o.clone() for o in _tensors(reference(x))]
        for conv_name, bn_name in pairs:
            fold_conv_bn(reference.get_submodule(conv_name), reference.get_submodule(bn_name))
            _set_submodule(reference, bn_name, nn.Identity())
        after = list(_tensors(reference(x)))
    for old, new in zip(before, after):
        if not old.numel():
            continue
        scale, diff = float(old.abs().max()), float((old - new).abs().max())
        if not diff <= FOLD_RTOL * scale:
            raise RuntimeError(f"folding BatchNorm changed {model_name(model)}'s outputs by {diff:.3g} in float64 "
                               f"(largest value {scale:.3g}); a conv output is read elsewhere")


# =========================================================================================== fast inference backends

def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


# What inference code reads from a model besides calling it: carried over to the models that stand in for it.
_MODEL_ATTRIBUTES = ("name", "num_keypoints", "input_channels", "outputs", "center_map_sigma", "input_multiple")


class FastTorchModel(nn.Module):
    """A torch model run with inference tricks; same attributes and call convention as the model it wraps.

    channels_last: weights and inputs in NHWC memory layout (oneDNN's fast convolution path on CPU).
    bf16: run under ``torch.autocast(bfloat16)`` on the model's device type; outputs are returned as float32.
    """

    def __init__(self, model: nn.Module, channels_last: bool = True, bf16: bool = False):
        super().__init__()
        self.model = model.eval()
        self.channels_last = bool(channels_last)
        self.bf16 = bool(bf16)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        for attr in _MODEL_ATTRIBUTES:
            if hasattr(model, attr):
                setattr(self, attr, getattr(model, attr))

    def forward(self, x: Tensor) -> List[Tensor]:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.bf16:
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                outputs = self.model(x)
        else:
            outputs = self.model(x)
        return [o.float().contiguous() for o in outputs]


# Exact backends (fp32; on the shipped trained model, PCK within 0.1 of eager and >= 99 % of keypoints within 1 px:
# docs/benchmarks.md), fastest first as measured on a 2-core CPU (OpenVINO 0.94x ONNX Runtime's time end to end on
# HRNet-W32). torch-bf16 is left out: it is not exact.
EXACT_CPU_BACKENDS = ("openvino", "onnxruntime", "torch-folded", "torch")


class OpenVinoHeatmapModel(nn.Module):
    """An exported ONNX file run by OpenVINO's CPU plugin, standing in for the torch model it was exported from.

    ``model(x)`` takes an N x C x H x W tensor and returns ``[heatmaps]`` (float32, on x's device); ``attributes``
    (``name``, ``num_keypoints``, ``input_channels``, ``outputs``, ...) are copied from the torch model. Inference
    precision is pinned to f32: on CPUs with bf16 or AMX, OpenVINO would otherwise run bf16, which is not exact.
    The graph is read into memory, so the file may be removed once the model is built. Needs ``pip install
    'posekit[openvino]'`` (imported only here).
    """

    def __init__(self, onnx_path: PathLike, attributes: Optional[Dict[str, Any]] = None, threads: Optional[int] = None):
        super().__init__()
        try:
            import openvino as ov
        except ImportError:
            raise PosekitError("OpenVINO is not installed: pip install 'posekit[openvino]'") from None
        for attr, value in (attributes or {}).items():
            setattr(self, attr, value)
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads())}
        self.compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU", config)
        self.request = self.compiled.create_infer_request()

    def forward(self, x: Tensor) -> List[Tensor]:
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        heatmaps = self.request.infer({0: array})[self.compiled.output(0)]
        return [torch.from_numpy(heatmaps.copy()).to(x.device)]


def openvino_available() -> bool:
    """Whether OpenVINO and the ONNX exporter's onnx package can be imported (the ``openvino`` extra)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "openvino"))


def onnxruntime_available() -> bool:
    """Whether ONNX Runtime and the ONNX exporter's onnx package can be imported (the ``onnx`` extra)."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxruntime"))


def auto_backend(device: Union[str, torch.device]) -> str:
    """The backend ``auto`` stands for: the fastest exact one on ``device``. On a GPU plain torch (cuDNN);
    on the CPU OpenVINO where it is installed (the ``openvino`` extra), else ONNX Runtime where that is (the
    ``onnx`` extra), else BatchNorm folded into the convs in channels-last."""
    if torch.device(device).type != "cpu":
        return "torch"
    installed = {"openvino": openvino_available, "onnxruntime": onnxruntime_available}
    for backend in EXACT_CPU_BACKENDS:
        if backend not in installed or installed[backend]():
            return backend
    return "torch"


def inference_model(model: nn.Module, backend: str, input_hw: Optional[Tuple[int, int]] = None,
                    onnx_path: Optional[PathLike] = None, threads: Optional[int] = None) -> nn.Module:
    """``model`` prepared for one inference backend (the model itself is left unchanged):

    - ``torch``: the model in eval mode (the reference: plain eager fp32);
    - ``torch-channels-last``: channels-last memory layout, fp32;
    - ``torch-folded``: BatchNorm folded into the convs + channels-last, fp32 (exact to float rounding);
    - ``torch-bf16``: ``torch-folded`` under bf16 autocast (fast where the CPU has bf16; not exact);
    - ``onnxruntime``: exported to ``onnx_path`` (default: a temporary file, removed once loaded) at ``input_hw`` and run by ONNX Runtime
      with ``threads`` threads (default torch's);
    - ``openvino``: exported the same way and run by OpenVINO's CPU plugin in f32 (:class:`OpenVinoHeatmapModel`;
      the ``openvino`` extra).
    """
    if backend == "torch":
        return model.eval()
    if backend == "torch-channels-last":
        return FastTorchModel(copy.deepcopy(model), channels_last=True)
    if backend in ("torch-folded", "torch-bf16"):
        return FastTorchModel(fold_batchnorm(model), channels_last=True, bf16=backend == "torch-bf16")
    if backend in ("onnxruntime", "openvino"):
        # Both run the exported graph.
        if input_hw is None:
            raise ValueError(f"the {backend} backend needs input_hw (the exported input size)")
        if onnx_path is None:
            # The runtime holds the graph in memory: the file need not outlive this call.
            with tempfile.TemporaryDirectory(prefix=f"posekit-{backend}-") as folder:
                return inference_model(model, backend, input_hw, Path(folder) / f"{model_name(model)}.onnx", threads)
        export_onnx(model, onnx_path, input_hw, verify=False)
        if backend == "onnxruntime":
            return OnnxHeatmapModel(onnx_path, input_hw=input_hw, threads=threads)
        attributes = {attr: getattr(model, attr) for attr in _MODEL_ATTRIBUTES if hasattr(model, attr)}
        return OpenVinoHeatmapModel(onnx_path, attributes, threads=threads)
    raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
