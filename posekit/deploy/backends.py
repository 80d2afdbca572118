"""Inference backends: the same model prepared to run faster (BatchNorm folded into the convolutions, channels-last,
bf16 with fp32 edge layers, ONNX Runtime, OpenVINO), and the choice of the fastest exact one for a device.

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

BACKENDS = ("torch", "torch-channels-last", "torch-folded", "torch-bf16", "onnxruntime", "openvino", "openvino-bf16")
BF16_BACKENDS = ("torch-bf16", "openvino-bf16")

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


def edge_layers(model: nn.Module, example: Optional[Tensor] = None) -> List[str]:
    """Names of the layers at the network's two edges: every parametrised leaf module that reads the input (or a
    tensor computed from the input alone by parameter-free operations: slicing, pooling, concatenation), and every
    one whose output the model returns.

    Found, like :func:`conv_bn_pairs`, by running the model once on ``example`` (default :func:`example_input`) and
    watching the data flow. ``torch-bf16`` keeps these layers in fp32: rounding the normalised image to bf16's 8
    significant bits costs about one grey level before the first convolution sees it, and bf16 heatmaps carry
    steps of 1/256 of their peak into sub-pixel decoding; everything between runs in bf16.
    """
    from torch.overrides import TorchFunctionMode

    if example is None:
        example = example_input(model)
    names = {m: n for n, m in model.named_modules()
             if not any(True for _ in m.children()) and any(True for _ in m.parameters(recurse=False))}
    from_input: Dict[int, Tensor] = {id(example): example}   # id -> tensor, kept alive so ids stay unique
    produced: Dict[int, Tuple[str, Tensor]] = {}
    readers: List[str] = []
    depth = [0]

    def before(module, args):
        if any(from_input.get(id(t)) is t for t in _tensors(args)) and names[module] not in readers:
            readers.append(names[module])
        depth[0] += 1

    def after(module, _args, output):
        depth[0] -= 1
        for t in _tensors(output):
            produced[id(t)] = (names[module], t)

    class Tracer(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            inputs = [t for t in _tensors((args, kwargs)) if t.is_floating_point()]
            if not depth[0] and inputs and all(from_input.get(id(t)) is t for t in inputs):
                for t in _tensors(out):
                    from_input[id(t)] = t
            return out

    handles = [h for m in names for h in (m.register_forward_pre_hook(before), m.register_forward_hook(after))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), Tracer():
            outputs = list(_tensors(model(example)))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    writers = [produced[id(t)][0] for t in outputs if id(t) in produced and produced[id(t)][1] is t]
    return readers + [n for n in dict.fromkeys(writers) if n not in readers]


class Float32Layer(nn.Module):
    """One layer run in fp32 inside a bf16-autocast model: its inputs are cast up and autocast is off within it."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, *args: Any) -> Any:
        device_type = next((t.device.type for t in _tensors(args)), "cpu")
        with torch.autocast(device_type, enabled=False):
            return self.layer(*(a.float() if isinstance(a, Tensor) and a.is_floating_point() else a for a in args))


# What inference code reads from a model besides calling it: carried over to the models that stand in for it.
_MODEL_ATTRIBUTES = ("name", "num_keypoints", "input_channels", "outputs", "center_map_sigma", "input_multiple")


class FastTorchModel(nn.Module):
    """A torch model run with inference tricks; same attributes and call convention as the model it wraps.

    channels_last: weights and inputs in NHWC memory layout (oneDNN's fast convolution path on CPU).
    bf16: run under ``torch.autocast(bfloat16)`` on the model's device type, except the layers at the network's
    edges (:func:`edge_layers`: the layers reading the input, the layers writing the outputs), which stay fp32;
    outputs are returned as float32. The model's edge layers are wrapped in :class:`Float32Layer` in place.
    """

    def __init__(self, model: nn.Module, channels_last: bool = True, bf16: bool = False):
        super().__init__()
        self.model = model.eval()
        self.channels_last = bool(channels_last)
        self.bf16 = bool(bf16)
        self.fp32_layers: List[str] = edge_layers(model) if self.bf16 else []
        for name in self.fp32_layers:
            _set_submodule(model, name, Float32Layer(model.get_submodule(name)))
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


# The backends whose keypoints count as exact (on the shipped trained model, PCK within 0.1 of eager fp32 and >= 99 %
# of keypoints within 1 px of eager's: docs/benchmarks.md), fastest first as measured end to end on HRNet-W32 on a
# 2-core CPU with native bf16. The bf16 ones are exact in that sense because their edge layers stay fp32; they are
# taken only where the CPU computes bf16 natively.
EXACT_CPU_BACKENDS = ("openvino-bf16", "torch-bf16", "openvino", "onnxruntime", "torch-folded", "torch")


def _edge_convolutions(ov_model: Any) -> List[Tuple[Any, List[str]]]:
    """The Convolution nodes of an OpenVINO graph at its two edges, as :func:`edge_layers` finds them in torch: those
    that read an input, or what operations without weights (slices, pooling, concatenations of such) computed from
    the inputs alone; and those whose output reaches a result through operations with one non-constant input only
    (bias additions, reshapes). Each with the names the compiled graph may know it by: its own, and those of the
    operations between it and the result (the CPU plugin fuses a bias addition into the convolution and names the
    fused node after the addition)."""
    found: Dict[str, Tuple[Any, List[str]]] = {}
    # By name: the Python objects wrapping graph nodes are made afresh on every access, so their ids get reused.
    reached = {parameter.get_name() for parameter in ov_model.get_parameters()}

    def sources(node: Any) -> List[Any]:
        return [i.get_source_output().get_node() for i in node.inputs()]

    constant: Dict[str, bool] = {}

    def is_constant(node: Any) -> bool:
        # A Constant, a tensor's shape, or computed from those alone (a bias reshaped to the output's rank).
        name = node.get_name()
        if name not in constant:
            kind = node.get_type_name()
            constant[name] = kind in ("Constant", "ShapeOf") or (kind != "Parameter" and
                                                                 all(is_constant(n) for n in sources(node)))
        return constant[name]

    def variable(nodes: List[Any]) -> List[Any]:
        return [n for n in nodes if not is_constant(n)]

    def downstream(node: Any) -> None:
        for other in [t.get_node() for o in node.outputs() for t in o.get_target_inputs()]:
            if other.get_type_name() == "Convolution":
                found.setdefault(other.get_friendly_name(), (other, [other.get_friendly_name()]))
            elif other.get_type_name() != "Result" and other.get_name() not in reached and \
                    all(n.get_name() in reached for n in variable(sources(other))):
                reached.add(other.get_name())
                downstream(other)

    def upstream(node: Any, between: List[str]) -> None:
        inputs = variable(sources(node))
        if len(inputs) != 1:
            return
        if inputs[0].get_type_name() == "Convolution":
            name = inputs[0].get_friendly_name()
            found.setdefault(name, (inputs[0], [name]))[1].extend(between)
        elif inputs[0].get_type_name() != "Parameter":
            upstream(inputs[0], between + [inputs[0].get_friendly_name()])

    for parameter in ov_model.get_parameters():
        downstream(parameter)
    for result in ov_model.get_results():
        upstream(result, [])
    return list(found.values())


def _keep_edges_f32(ov: Any, core: Any, graph: Any) -> Tuple[Any, List[List[str]]]:
    """``graph`` with its edge convolutions marked to keep f32 under a bf16 inference precision, and the names the
    compiled graph may know each of them by (:func:`_edge_convolutions`)."""
    edges = _edge_convolutions(graph)
    for node, _names in edges:
        node.get_rt_info()["precise_0"] = ""
    # Set from Python the attribute is a plain string; saving and reading the IR turns it into the attribute the
    # CPU plugin obeys.
    with tempfile.TemporaryDirectory(prefix="posekit-openvino-") as folder:
        ov.save_model(graph, str(Path(folder) / "model.xml"), compress_to_fp16=False)
        return core.read_model(str(Path(folder) / "model.xml")), [names for _node, names in edges]


def _runtime_precisions(compiled: Any) -> Dict[str, str]:
    """Precision each operation of the original graph runs in once compiled, by name (fused ones included)."""
    precision: Dict[str, str] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        fused = str(info["originalLayersNames"].astype(str)).split(",") if "originalLayersNames" in info else []
        for name in [op.get_friendly_name(), *fused]:
            if name:
                precision.setdefault(name, str(info["runtimePrecision"].astype(str)))
    return precision


class OpenVinoHeatmapModel(nn.Module):
    """An exported ONNX file run by OpenVINO's CPU plugin, standing in for the torch model it was exported from.

    ``model(x)`` takes an N x C x H x W tensor and returns ``[heatmaps]`` (float32, on x's device); ``attributes``
    (``name``, ``num_keypoints``, ``input_channels``, ``outputs``, ...) are copied from the torch model. Inference
    precision is pinned to f32 (on CPUs with bf16 or AMX, OpenVINO would otherwise run all of it in bf16); with
    ``bf16`` it is bf16 except the convolutions at the network's edges, which are marked to keep f32 (OpenVINO's
    ``precise`` runtime attribute, read back from a saved IR) and checked to run f32 once compiled
    (:func:`edge_layers` says why). The graph is read into memory, so the file may be removed once the model is
    built. Needs ``pip install 'posekit[openvino]'`` (imported only here).
    """

    def __init__(self, onnx_path: PathLike, attributes: Optional[Dict[str, Any]] = None, threads: Optional[int] = None,
                 bf16: bool = False):
        super().__init__()
        try:
            import openvino as ov
        except ImportError:
            raise PosekitError("OpenVINO is not installed: pip install 'posekit[openvino]'") from None
        for attr, value in (attributes or {}).items():
            setattr(self, attr, value)
        core = ov.Core()
        graph = core.read_model(str(onnx_path))
        edges: List[List[str]] = []
        if bf16:
            if not cpu_has_bf16():
                raise PosekitError("the openvino-bf16 backend needs a CPU that computes bf16 natively "
                                   "(AVX512-BF16 or AMX); use --backend openvino")
            graph, edges = _keep_edges_f32(ov, core, graph)
        config = {"INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32", "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads())}
        self.compiled = core.compile_model(graph, "CPU", config)
        if bf16:
            precision = _runtime_precisions(self.compiled)
            ran = [[precision[name] for name in names if name in precision] for names in edges]
            wrong = [f"{names[0]} ({', '.join(got) or 'not found'})" for names, got in zip(edges, ran)
                     if not got or set(got) != {"f32"}]
            if wrong:
                raise PosekitError(f"OpenVINO {ov.__version__} does not keep the edge convolutions in f32 under bf16: "
                                   f"{', '.join(wrong)}; use --backend torch-bf16 or openvino")
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


def backend_unavailable(backend: str) -> Optional[str]:
    """Why ``backend`` cannot run here, or None where it can: its package is not installed, or it is
    ``openvino-bf16`` on a CPU without native bf16 (``torch-bf16`` runs there, emulated and slow)."""
    if backend == "onnxruntime" and not onnxruntime_available():
        return "onnxruntime is not installed (the onnx extra)"
    if backend.startswith("openvino") and not openvino_available():
        return "openvino is not installed (the openvino extra)"
    if backend == "openvino-bf16" and not cpu_has_bf16():
        return "this CPU has no native bf16"
    return None


def auto_backend(device: Union[str, torch.device]) -> str:
    """The backend ``auto`` stands for: the fastest exact one on ``device``. On a GPU plain torch (cuDNN); on a
    CPU with native bf16, OpenVINO in bf16 where it is installed (the ``openvino`` extra), else torch in bf16 (both
    with fp32 edge layers); on other CPUs OpenVINO in f32, else ONNX Runtime where it is installed (the ``onnx``
    extra), else BatchNorm folded into the convs in channels-last."""
    if torch.device(device).type != "cpu":
        return "torch"
    native_bf16 = cpu_has_bf16()
    for backend in EXACT_CPU_BACKENDS:
        if (native_bf16 or backend not in BF16_BACKENDS) and backend_unavailable(backend) is None:
            return backend
    return "torch"


def inference_model(model: nn.Module, backend: str, input_hw: Optional[Tuple[int, int]] = None,
                    onnx_path: Optional[PathLike] = None, threads: Optional[int] = None) -> nn.Module:
    """``model`` prepared for one inference backend (the model itself is left unchanged):

    - ``torch``: the model in eval mode (the reference: plain eager fp32);
    - ``torch-channels-last``: channels-last memory layout, fp32;
    - ``torch-folded``: BatchNorm folded into the convs + channels-last, fp32 (exact to float rounding);
    - ``torch-bf16``: ``torch-folded`` under bf16 autocast, the edge layers in fp32 (fast where the CPU has bf16;
      exact by the rule of docs/benchmarks.md on the shipped trained model, not to float rounding);
    - ``onnxruntime``: exported to ``onnx_path`` (default: a temporary file, removed once loaded) at ``input_hw`` and run by ONNX Runtime
      with ``threads`` threads (default torch's);
    - ``openvino``: exported the same way and run by OpenVINO's CPU plugin in f32 (:class:`OpenVinoHeatmapModel`;
      the ``openvino`` extra);
    - ``openvino-bf16``: the same in bf16 with the edge convolutions in f32 (CPUs with native bf16 only).
    """
    if backend == "torch":
        return model.eval()
    if backend == "torch-channels-last":
        return FastTorchModel(copy.deepcopy(model), channels_last=True)
    if backend in ("torch-folded", "torch-bf16"):
        return FastTorchModel(fold_batchnorm(model), channels_last=True, bf16=backend == "torch-bf16")
    if backend in ("onnxruntime", "openvino", "openvino-bf16"):
        # All three run the exported graph.
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
        return OpenVinoHeatmapModel(onnx_path, attributes, threads=threads, bf16=backend == "openvino-bf16")
    raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")
