"""ONNX export of a model's final heatmaps, and an ONNX Runtime model that stands in for the torch one.

* :func:`export_onnx` writes the final heatmaps (the output read at test time, :func:`posekit.evaluation.inference.final_heatmaps`)
  of a model as a single ONNX output named ``heatmaps``, with a dynamic batch axis and a fixed input size. The
  intermediate supervision outputs (earlier stages/stacks, side heads) are not exported: inference never reads
  them, and the exporter drops the layers only they need. Model name, keypoint count, input size, the declared
  final output and the posekit version go into the ONNX ``metadata_props``.
* :class:`OnnxHeatmapModel` runs such a file with ONNX Runtime and stands in for the torch model wherever
  inference code calls it (``predict_heatmaps``, :class:`posekit.apps.predictor.PosePredictor`).

The exporter is torch's TorchScript-based one (``torch.onnx.export(dynamo=False)``): it exports every network
family, matches PyTorch to float32 rounding and needs no onnxscript. The dynamo exporter (``exporter="dynamo"``,
needs onnxscript) gives the same heatmaps at 3-20 times the export time; it is used automatically where a future
torch no longer has the TorchScript exporter.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..codecs import OutputSpec
from ..errors import CheckpointError, PosekitError
from ..evaluation.inference import final_heatmaps
from .. import __version__
from ..fileio import atomic_write_bytes, redirect_fds

PathLike = Union[str, "os.PathLike[str]"]

# Bumped whenever the exported graph's contract (input/output layout, metadata keys) changes; files of another
# format are refused with a request to export again.
EXPORT_FORMAT = 1
DEFAULT_OPSET = 17
MIN_OPSET = 13          # the oldest opset the exporter and the parity tests are run with
INPUT_NAME = "input"
OUTPUT_NAME = "heatmaps"


class ExportError(PosekitError):
    """A model that cannot be exported (an operator ONNX has no translation for), named with the op and module."""


def _posekit_version() -> str:
    return __version__


def model_name(model: nn.Module) -> str:
    return str(getattr(model, "name", None) or type(model).__name__)


# =========================================================================================== ONNX export

class FinalHeatmaps(nn.Module):
    """``model`` reduced to the output inference reads: ``x -> final_heatmaps(model, model(x))``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return final_heatmaps(self.model, self.model(x))


@contextlib.contextmanager
def _quiet_fds() -> Iterator[List[str]]:
    """Route the process's stdout/stderr (C++ included) into a buffer; the exporter dumps whole graphs there."""
    captured: List[str] = []
    with tempfile.TemporaryFile(mode="w+b") as sink:
        try:
            with redirect_fds((1, 2), sink.fileno()):
                yield captured
        finally:
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", "replace"))


def _failing_op(exc: BaseException) -> Optional[str]:
    """The aten operator named in an exporter error ('aten::histc'), if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = str(exc)
        found = re.search(r"operator '(aten::\w+)'", text) or re.search(r"torch\.ops\.aten\.(\w+)", text)
        if found:
            name = found.group(1)
            return name if name.startswith("aten::") else f"aten::{name}"
        exc = exc.__cause__ or exc.__context__
    return None


def _module_of_op_in_graph_dump(dump: str, op: str) -> Optional[str]:
    # The TorchScript exporter prints the traced graph on failure; each node carries its module scope, e.g.
    # "... = aten::histc(%80, ...), scope: pkg.M::/torch.nn.modules.container.Sequential::block/pkg.Inner::block.1"
    for line in dump.splitlines():
        if f"= {op}(" in line and "scope:" in line:
            scope = line.split("scope:", 1)[1].split(" # ", 1)[0].strip()
            last = scope.rsplit("/", 1)[-1]
            cls, _, path = last.partition("::")
            path = path.strip()
            return f"{path} ({cls.rsplit('.', 1)[-1]})" if path else None
    return None


def _module_calling_op(model: nn.Module, example: Tensor, op: str) -> Optional[str]:
    """The innermost submodule that runs aten ``op`` in a forward pass (via module hooks + a dispatch mode)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    names = {m: n for n, m in model.named_modules()}
    stack: List[str] = []
    found: List[str] = []
    wanted = op.split("::", 1)[-1]

    class Spy(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if not found and func.__name__.split(".")[0] == wanted and stack:
                found.append(stack[-1])
            return func(*args, **(kwargs or {}))

    def enter(module, _args):
        stack.append(names.get(module, "?"))

    def leave(module, _args, _out):
        stack.pop()

    handles = []
    for module in names:
        handles.append(module.register_forward_pre_hook(enter))
        handles.append(module.register_forward_hook(leave))
    try:
        with torch.no_grad(), Spy():
            model(example)
    except Exception:
        return None
    finally:
        for h in handles:
            h.remove()
    if not found or not found[0]:
        return None
    path = found[0]
    module = dict(model.named_modules()).get(path)
    return f"{path} ({type(module).__name__})" if module is not None else path


def _run_exporter(wrapper: nn.Module, example: Tensor, path: str, opset: int, dynamic_batch: bool,
                  exporter: str) -> None:
    import warnings

    if exporter == "torchscript":
        axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper, (example,), path, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              opset_version=opset, dynamic_axes=axes, do_constant_folding=True, dynamo=False)
    else:
        shapes = {"x": {0: torch.export.Dim("batch", min=1)}} if dynamic_batch else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(wrapper, (example,), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                        opset_version=opset, dynamic_shapes=shapes, dynamo=True, verbose=False)
        program.save(path, external_data=False)


def export_metadata(model: nn.Module, input_hw: Tuple[int, int], opset: int, exporter: str) -> Dict[str, str]:
    """The ``metadata_props`` written into an exported file (all strings)."""
    specs = list(getattr(model, "outputs", []) or [])
    meta = {
        "posekit.format": str(EXPORT_FORMAT),
        "posekit.version": _posekit_version(),
        "posekit.model": model_name(model),
        "posekit.num_keypoints": str(int(getattr(model, "num_keypoints", 0))),
        "posekit.input_hw": f"{int(input_hw[0])}x{int(input_hw[1])}",
        "posekit.input_channels": str(int(getattr(model, "input_channels", 3))),
        "posekit.opset": str(int(opset)),
        "posekit.deploy.onnxer": exporter,
        "posekit.torch_version": torch.__version__.split("+")[0],
    }
    if specs:
        meta["posekit.output_spec"] = json.dumps(dataclasses.asdict(specs[-1]), sort_keys=True)
    center_sigma = getattr(model, "center_map_sigma", None)
    if center_sigma is not None:
        meta["posekit.center_map_sigma"] = repr(float(center_sigma))
    return meta


def export_onnx(model: nn.Module, path: PathLike, input_hw: Tuple[int, int], opset: int = DEFAULT_OPSET,
                dynamic_batch: bool = True, exporter: str = "torchscript", verify: bool = True) -> Path:
    """Export ``model``'s final heatmaps to ONNX at ``path`` (written atomically); returns the path.

    The graph has one input ``input`` (N x C x H x W, float32, C = ``model.input_channels``: 4 for CPM with its
    centre map) and one output ``heatmaps`` (N x K' x h x w); N is dynamic with ``dynamic_batch``, H x W is
    ``input_hw``. The model is exported in eval mode and its mode is restored afterwards. With ``verify`` (and
    onnxruntime installed) the file is run once on random images and compared with PyTorch; a difference above
    1e-3 of the heatmaps' range (at least 1) raises: a broken export, not float32 rounding. An operator that ONNX
    cannot express raises :class:`ExportError` naming the op and, where it can be found, the module that runs it.
    """
    if exporter not in ("torchscript", "dynamo"):
        raise ValueError(f"exporter must be 'torchscript' or 'dynamo', got {exporter!r}")
    opset = int(opset)
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is older than the oldest supported, {MIN_OPSET}")
    try:
        import onnx
    except ImportError:
        raise PosekitError("ONNX export needs the onnx package: pip install 'posekit[onnx]'") from None
    if opset > onnx.defs.onnx_opset_version():
        raise ValueError(f"opset {opset} is newer than this onnx package knows ({onnx.defs.onnx_opset_version()})")
    height, width = int(input_hw[0]), int(input_hw[1])
    channels = int(getattr(model, "input_channels", 3))
    # Batch 2 for tracing, so that nothing gets specialised to a batch of one.
    param = next(iter(model.parameters()), torch.zeros(0))
    example = torch.zeros(2, channels, height, width, device=param.device,
                          dtype=param.dtype if param.is_floating_point() else torch.float32)
    was_training = model.training
    wrapper = FinalHeatmaps(model).eval()
    if exporter == "torchscript" and not _has_torchscript_exporter():
        exporter = "dynamo"
    # Random images for the parity check (zeros would only test the biases).
    check = torch.randn(example.shape, generator=torch.Generator().manual_seed(0)).to(example)
    try:
        with torch.no_grad():
            reference = wrapper(check)    # a wrong input size fails here, with the model's own message
        out_path = Path(path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
            raw = os.path.join(tmp, "raw.onnx")
            try:
                with _quiet_fds() as dump:
                    _run_exporter(wrapper, example, raw, opset, dynamic_batch, exporter)
            except Exception as exc:
                raise _export_error(exc, model, example, dump, exporter) from None
            proto = onnx.load(raw)
        proto.producer_name = "posekit"
        proto.producer_version = _posekit_version()
        proto.doc_string = f"posekit {model_name(model)}: final heatmaps of a {height}x{width} input"
        del proto.metadata_props[:]
        for key, value in export_metadata(model, (height, width), opset, exporter).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        atomic_write_bytes(out_path, proto.SerializeToString())
    finally:
        model.train(was_training)
    if verify:
        try:
            _verify_export(out_path, check.float().cpu(), reference.float().cpu())
        except ExportError:
            out_path.unlink(missing_ok=True)    # never leave a wrong model behind
            raise
    return out_path


def _has_torchscript_exporter() -> bool:
    import inspect

    try:
        return "dynamic_axes" in inspect.signature(torch.onnx.export).parameters
    except (TypeError, ValueError):
        return False


def _export_error(exc: Exception, model: nn.Module, example: Tensor, dump: List[str], exporter: str) -> PosekitError:
    op = _failing_op(exc)
    name = model_name(model)
    if op is None:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return ExportError(f"{name}: the {exporter} ONNX exporter failed ({type(exc).__name__}: {first})")
    where = _module_of_op_in_graph_dump("".join(dump), op) if dump else None
    if where is None:
        where = _module_calling_op(model, example, op)
    # FinalHeatmaps wraps the model as ".model"; report paths inside the user's model.
    if where and where.startswith("model."):
        where = where[len("model."):]
    place = f" in module {where}" if where else ""
    return ExportError(f"{name}: operator {op}{place} cannot be exported to ONNX ({exporter} exporter)")


def _verify_export(path: Path, example: Tensor, reference: Tensor) -> None:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return
    onnx_model = OnnxHeatmapModel(path)
    got = onnx_model(example)[0]
    scale = max(float(reference.abs().max()), 1e-12)
    diff = float((got - reference).abs().max())
    if not diff <= 1e-3 * max(scale, 1.0):
        raise ExportError(f"the exported heatmaps differ from PyTorch's by {diff:.3g} (largest value {scale:.3g})",
                          path)


# =========================================================================================== ONNX Runtime

def _metadata_int(meta: Dict[str, str], key: str, path: PathLike) -> int:
    try:
        return int(meta[key])
    except (KeyError, ValueError):
        raise CheckpointError(f"posekit ONNX metadata {key!r} is missing or not a number", path) from None


def _parse_hw(text: str) -> Tuple[int, int]:
    h, w = str(text).lower().split("x")
    return int(h), int(w)


class OnnxHeatmapModel(nn.Module):
    """An exported model run by ONNX Runtime, usable wherever inference code calls a posekit model.

    Attributes as on the torch models: ``name``, ``num_keypoints``, ``input_channels``, ``outputs`` (the one
    exported output's :class:`~posekit.codecs.OutputSpec`), ``center_map_sigma`` (CPM), plus ``input_hw`` and
    ``metadata``. ``model(x)`` takes an N x C x H x W tensor and returns ``[heatmaps]`` (float32, on x's device).

    The file is checked on opening: not an ONNX file, an ONNX file without posekit metadata, one of another export
    format, an opset outside [13, what the onnx package knows], or (when ``input_hw`` / ``num_keypoints`` are
    given) another input size or keypoint count each raise a one-line :class:`~posekit.errors.CheckpointError`.
    """

    def __init__(self, path: PathLike, input_hw: Optional[Sequence[int]] = None, num_keypoints: Optional[int] = None,
                 threads: Optional[int] = None, providers: Optional[Sequence[str]] = None):
        super().__init__()
        try:
            import onnx
            import onnxruntime as ort
        except ImportError:
            raise PosekitError("ONNX support is not installed: pip install 'posekit[onnx]'") from None
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError("no such file", self.path)
        # The header first (metadata, opset; external weight files are not read), so that a file of another
        # version is named as such rather than failing somewhere inside ONNX Runtime.
        try:
            proto = onnx.load(str(self.path), load_external_data=False)
        except Exception:
            raise CheckpointError("not an ONNX model (the file does not parse as one)", self.path) from None
        if not proto.HasField("graph") or not proto.opset_import:
            raise CheckpointError("not an ONNX model (no graph or no opset)", self.path)
        meta = {entry.key: entry.value for entry in proto.metadata_props}
        opsets = {entry.domain: int(entry.version) for entry in proto.opset_import}
        opset = opsets.get("", opsets.get("ai.onnx"))
        del proto
        self._check_metadata(meta, opset, onnx.defs.onnx_opset_version())
        self.metadata = meta
        self.opset = opset
        self.name = meta.get("posekit.model", "onnx")
        self.num_keypoints = _metadata_int(meta, "posekit.num_keypoints", self.path)
        self.input_channels = _metadata_int(meta, "posekit.input_channels", self.path)
        try:
            self.input_hw = _parse_hw(meta["posekit.input_hw"])
        except (KeyError, ValueError):
            raise CheckpointError("posekit ONNX metadata 'posekit.input_hw' is missing or not HxW", self.path) from None
        spec = meta.get("posekit.output_spec")
        try:
            self.outputs: List[OutputSpec] = [OutputSpec(**json.loads(spec))] if spec else []
        except (TypeError, ValueError):
            raise CheckpointError("posekit ONNX metadata 'posekit.output_spec' is unreadable", self.path) from None
        if "posekit.center_map_sigma" in meta:
            self.center_map_sigma = float(meta["posekit.center_map_sigma"])
        if input_hw is not None and tuple(int(v) for v in input_hw) != self.input_hw:
            h, w = (int(v) for v in input_hw)
            raise CheckpointError(f"exported for {self.input_hw[0]}x{self.input_hw[1]} input, not {h}x{w}: export "
                                  "it again at this input size", self.path)
        if num_keypoints is not None and int(num_keypoints) != self.num_keypoints:
            raise CheckpointError(f"exported with {self.num_keypoints} keypoints, not {int(num_keypoints)}", self.path)

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Idle ORT threads otherwise spin for a while after each run, taking the cores from whatever runs next
        # (torch in the same process, the data pipeline).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(self.path), options,
                                                providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CheckpointError(f"ONNX Runtime cannot load this model ({first})", self.path) from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or not outputs or len(inputs[0].shape) != 4:
            raise CheckpointError(f"expected one N x C x H x W input, found {len(inputs)} inputs "
                                  f"{[list(i.shape) for i in inputs]}", self.path)
        self._input_name = inputs[0].name
        self._output_name = outputs[0].name

    def _check_metadata(self, meta: Dict[str, str], opset: Optional[int], newest: int) -> None:
        if "posekit.format" not in meta:
            raise CheckpointError("an ONNX model without posekit metadata (export it with `posekit export`)", self.path)
        version = meta.get("posekit.version", "?")
        if meta["posekit.format"] != str(EXPORT_FORMAT):
            raise CheckpointError(f"exported by posekit {version} in ONNX export format {meta['posekit.format']}; "
                                  f"posekit {_posekit_version()} reads format {EXPORT_FORMAT}: export it again",
                                  self.path)
        if opset is None or not MIN_OPSET <= opset <= newest:
            raise CheckpointError(f"ONNX opset {opset} (exported by posekit {version}) is outside the supported "
                                  f"{MIN_OPSET}..{newest}: export it again", self.path)

    def forward(self, x: Tensor) -> List[Tensor]:
        height, width = self.input_hw
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.input_channels, height, width):
            raise ValueError(f"{self.name} (ONNX, {self.path.name}) expects an N x {self.input_channels} x {height} x "
                             f"{width} input, got shape {' x '.join(map(str, x.shape)) or 'scalar'}")
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        heatmaps = self.session.run([self._output_name], {self._input_name: array})[0]
        return [torch.from_numpy(heatmaps).to(x.device)]

    def extra_repr(self) -> str:
        return f"{self.path}, model={self.name}, input={self.input_hw[0]}x{self.input_hw[1]}"
