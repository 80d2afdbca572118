"""Weights from elsewhere -> posekit: key renaming, checks, and ``posekit convert`` (safetensors + a config).

Source layouts (``source``):

- ``official``: the official HRNet / SimpleBaseline ``.pth`` files (``leoxiaobin/deep-high-resolution-net.pytorch``:
  a plain state dict, or a training checkpoint ``{"state_dict": ...}`` with ``module.`` prefixes) and posekit's
  own layout. posekit's HRNet and SimpleBaseline already use these key names: nothing is renamed.
- ``mspn``: the official MSPN ``iter-N.pth`` (``megvii-research/MSPN``, weights under ``["model"]``); keys as
  posekit's MSPN, nothing renamed.
- ``mmpose``: MMPose 1.x ``TopdownPoseEstimator`` checkpoints (``{"meta": ..., "state_dict": ...}``, keys
  ``backbone.*`` / ``head.*``; MMPose 0.x files name the head ``keypoint_head.*``, accepted too):

  * HRNet backbone + ``HeatmapHead`` without deconvolutions: ``backbone.X`` -> ``X``, ``head.final_layer.*`` ->
    ``final_layer.*`` (MMPose's HRNet keeps the official module names).
  * ResNet backbone + ``HeatmapHead`` with deconvolutions (SimpleBaseline): ``backbone.X`` -> ``X``,
    ``head.deconv_layers.N`` -> ``deconv_layers.N``, ``head.final_layer`` -> ``final_layer``. ResNetV1d (deep
    stem, ``backbone.stem.*``) has no counterpart.
  * MSPN backbone + ``MSPNHead``: ``backbone.top.top.0`` -> ``top.conv``; ``backbone.multi_stage_mspn.S`` ->
    ``stageS``; in the bottlenecks ``convI`` / ``bnI`` -> ``conv_bn_reluI.conv`` / ``.bn``; in the up-sampling
    units ``in_skip`` -> ``u_skip``, ``out_skip1/2`` -> ``skip1/2``; ``head.predict_layers.N.conv_layers.0/1``
    -> ``stage{N // 4}.upsample.up{N % 4 + 1}.res_conv1/2``. MMPose's convs before a BatchNorm have no bias,
    the official ones do: those biases are set to 0, which computes the same function. PRM (RSN) has no
    counterpart.
  * CPM: refused. MMPose's CPM puts BatchNorm after every conv, pads its max-pools (padding 1, floor rounding,
    so every pooling window sits one pixel off the Caffe pools of posekit's CPM) and has no centre map and no
    background channel; posekit's CPM (and its ``cpm_6stage_topdown`` variant) is the released Caffe network
    without BatchNorm, so no renaming gives the same function.
  * Hourglass: refused. MMPose's ``HourglassNet`` is CornerNet's Hourglass-52/104 (post-activation BasicBlocks,
    stride-2 convs instead of max-pooling, widths 256-384-512 over five levels, a 3x3 conv head per stack);
    posekit's hourglass is Newell's (pre-activation bottleneck Residuals, 2x2 max-pooling, one width).

``auto`` tells the layouts apart by key patterns (``backbone.`` / ``head.`` -> mmpose, ``top.conv.`` /
``stageN.downsample.`` -> mspn, else official). Keys that carry no weights of the network (MMPose's
``data_preprocessor.mean/std``, loss-module buffers) are reported as unused; any other key, missing key or
shape mismatch is a one-line :class:`~posekit.errors.CheckpointError` naming the first offending key.

Files are read with ``torch.load(weights_only=True)`` (see :mod:`posekit.weightfiles`); the only classes added
to its allowlist are numpy's array and dtype reconstruction, because MMEngine stores numpy arrays in the
checkpoint's ``meta`` (dataset sigmas, colours). Those rebuild data, never call user code; anything else that
needs a global (a class, a function) is still refused.
"""
from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import yaml
from torch import nn

from ..fileio import atomic_write_bytes
from ..weightfiles import compare_state_dicts, read_state_dict, save_weights
from ..config import CONFIGS_DIR, Config, apply_overrides, config_from_dict, load_config, resolve_config_path
from ..errors import CheckpointError, ConfigError
from ..models import MODELS, create_model, list_models

SOURCES = ("auto", "official", "mmpose", "mspn")
CONFIG_DIR = CONFIGS_DIR
WEIGHTS_NAME = "weights.safetensors"
CONFIG_NAME = "config.yaml"

FAMILY_TITLES = {"hrnet": "HRNet", "simple_baseline": "SimpleBaseline", "mspn": "MSPN", "cpm": "CPM",
                 "hourglass": "stacked hourglass"}
_ARTICLES = {"hrnet": "an", "simple_baseline": "a", "mspn": "an", "cpm": "a", "hourglass": "a"}
# The key whose first dimension is the number of output channels (K, or K + 1 for CPM's background).
KEYPOINT_KEYS = {"hrnet": "final_layer.weight", "simple_baseline": "final_layer.weight",
                 "mspn": "stage0.upsample.up4.res_conv2.conv.weight", "hourglass": "score.0.weight",
                 "cpm": "conv7_stage1.weight"}

MMPOSE_REFUSALS = {
    "cpm": "MMPose's CPM cannot be mapped onto posekit's CPM: it has BatchNorm after every conv, zero-padded "
           "max-pools (padding 1, floor rounding: every window one pixel off the Caffe pools), no centre map and "
           "no background channel, while posekit's CPM is the released Caffe network without BatchNorm",
    "hourglass": "MMPose's HourglassNet cannot be mapped onto posekit's hourglass: it is CornerNet's Hourglass-52/104 "
                 "(post-activation BasicBlocks, stride-2 convs instead of max-pooling, widths 256-384-512 over five "
                 "levels, a 3x3 conv head per stack), not Newell's network (pre-activation bottleneck Residuals, "
                 "2x2 max-pooling, one width)",
}

# MMEngine and the numpy it ran with pickle dataset metadata as numpy arrays; numpy 1.x wrote them under
# numpy.core, numpy 2.x under numpy._core, and either file may meet either numpy: both names are allowed.
# The functions come from the installed numpy's own module: numpy 1.26's numpy._core is a stub without
# multiarray as an attribute, numpy 2's numpy.core a deprecated alias.
_NUMPY_MULTIARRAY = "numpy._core.multiarray" if int(np.__version__.split(".")[0]) >= 2 else "numpy.core.multiarray"


def _numpy_safe_globals() -> List[Any]:
    multiarray = importlib.import_module(_NUMPY_MULTIARRAY)
    entries: List[Any] = [np.ndarray, np.dtype]
    for name in ("_reconstruct", "scalar"):
        function = getattr(multiarray, name)
        entries += [(function, f"numpy.core.multiarray.{name}"), (function, f"numpy._core.multiarray.{name}")]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        entries += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return entries


def read_foreign_state_dict(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """:func:`posekit.weightfiles.read_state_dict` with numpy array reconstruction allowed (MMEngine meta)."""
    with torch.serialization.safe_globals(_numpy_safe_globals()):
        return read_state_dict(path)


# ------------------------------------------------------------------------------------------------ detection

def model_family(model_name: str) -> str:
    """'hrnet', 'simple_baseline', 'mspn', 'cpm' or 'hourglass': the module that builds ``model_name``."""
    builder = MODELS.get(model_name)
    if builder is None:
        raise ConfigError(f"unknown model {model_name!r}; known models: {', '.join(list_models())}")
    return builder.__module__.rsplit(".", 1)[-1]


def _is_mmpose(keys: Sequence[str]) -> bool:
    return any(k.startswith(("backbone.", "head.", "keypoint_head.")) for k in keys)


def _is_official_mspn(keys: Sequence[str]) -> bool:
    return any(k.startswith("top.conv.") or re.match(r"stage\d+\.(downsample|upsample)\.", k) for k in keys)


def detect_source(state: Mapping[str, torch.Tensor]) -> str:
    """'mmpose', 'mspn' or 'official' from the key names of a state dict."""
    keys = list(state)
    if _is_mmpose(keys):
        return "mmpose"
    if _is_official_mspn(keys):
        return "mspn"
    return "official"


def detect_family(state: Mapping[str, torch.Tensor], source: str) -> Optional[str]:
    """The network family a state dict of the given layout holds, or None when the keys do not say."""
    keys = set(state)

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    if source == "mmpose":
        if has("backbone.multi_stage_mspn.") or has("head.predict_layers.") or has("keypoint_head.predict_layers."):
            return "mspn"
        if has("backbone.cpm_stages.") or has("backbone.middle."):
            return "cpm"
        if has("backbone.hourglass_modules."):
            return "hourglass"
        if has("backbone.transition1."):
            return "hrnet"
        if has("backbone.layer1."):
            return "simple_baseline"
        return None
    if has("top.conv.") or has("stage0.downsample."):
        return "mspn"
    if has("transition1."):
        return "hrnet"
    if has("deconv_layers.") or (has("layer4.") and has("final_layer.")):
        return "simple_baseline"
    if has("conv1_stage1."):
        return "cpm"
    if has("hg.0.") and has("score.0."):
        return "hourglass"
    return None


# ------------------------------------------------------------------------------------------------- renaming

def _is_unused(key: str) -> bool:
    # Not weights of the network: MMPose's input normalisation buffers and any loss module's buffers.
    parts = key.split(".")
    return parts[0] == "data_preprocessor" or any(p.startswith(("loss", "criterion")) for p in parts[:-1])


_MSPN_BACKBONE_RULES: List[Tuple[re.Pattern, str]] = [
    (re.compile(r"top\.top\.0\.(conv|bn)\.(.+)"), r"top.conv.\1.\2"),
    (re.compile(r"multi_stage_mspn\.(\d+)\.downsample\.(layer\d+\.\d+)\.conv([123])\.(.+)"),
     r"stage\1.downsample.\2.conv_bn_relu\3.conv.\4"),
    (re.compile(r"multi_stage_mspn\.(\d+)\.downsample\.(layer\d+\.\d+)\.bn([123])\.(.+)"),
     r"stage\1.downsample.\2.conv_bn_relu\3.bn.\4"),
    (re.compile(r"multi_stage_mspn\.(\d+)\.downsample\.(layer\d+\.\d+)\.downsample\.(conv|bn)\.(.+)"),
     r"stage\1.downsample.\2.downsample.\3.\4"),
    (re.compile(r"multi_stage_mspn\.(\d+)\.upsample\.(up\d+)\.in_skip\.(.+)"), r"stage\1.upsample.\2.u_skip.\3"),
    (re.compile(r"multi_stage_mspn\.(\d+)\.upsample\.(up\d+)\.out_skip([12])\.(.+)"), r"stage\1.upsample.\2.skip\3.\4"),
    (re.compile(r"multi_stage_mspn\.(\d+)\.upsample\.(up\d+)\.(up_conv|cross_conv)\.(.+)"),
     r"stage\1.upsample.\2.\3.\4"),
]
_MSPN_HEAD_RULE = re.compile(r"predict_layers\.(\d+)\.conv_layers\.([01])\.(.+)")
MSPN_UNITS = 4


def _mmpose_mspn_name(part: str, rest: str) -> Optional[str]:
    if part == "backbone":
        for pattern, template in _MSPN_BACKBONE_RULES:
            match = pattern.fullmatch(rest)
            if match:
                return match.expand(template)
        return None
    match = _MSPN_HEAD_RULE.fullmatch(rest)
    if match is None:
        return None
    index, layer, tail = int(match.group(1)), int(match.group(2)), match.group(3)
    return f"stage{index // MSPN_UNITS}.upsample.up{index % MSPN_UNITS + 1}.res_conv{layer + 1}.{tail}"


def rename_keys(state: Mapping[str, torch.Tensor], family: str, source: str
                ) -> Tuple[Dict[str, torch.Tensor], Dict[str, str], List[str]]:
    """(renamed state, new name -> name in the file, unused file keys) for a family and a concrete layout.

    Keys without a rule keep their name (official layouts, or an MMPose part posekit does not have, such as a
    neck or RSN's PRM) so that the fit check names them.
    """
    renamed: Dict[str, torch.Tensor] = {}
    origin: Dict[str, str] = {}
    unused: List[str] = []
    for key, value in state.items():
        if _is_unused(key):
            unused.append(key)
            continue
        new = key
        if source == "mmpose":
            part, _, rest = key.partition(".")
            if part == "keypoint_head":   # MMPose 0.x name of the head
                part = "head"
            if part not in ("backbone", "head"):
                pass
            elif family == "mspn":
                new = _mmpose_mspn_name(part, rest) or key
            else:
                # HRNet and ResNet + HeatmapHead: MMPose keeps the official module names under the prefixes.
                new = rest
        if new in renamed:
            raise CheckpointError(f"two keys of the file map onto {new!r} (one is {key!r})")
        renamed[new] = value
        origin[new] = key
    return renamed, origin, unused


# ------------------------------------------------------------------------------------------------ conversion

@dataclass
class ConvertReport:
    """What a conversion did."""

    model: str
    source: str                       # the layout used: official | mspn | mmpose
    detected: bool                    # True when the layout was found by --from auto
    num_keypoints: int
    mapped: int = 0                   # model tensors taken from the file
    renamed: int = 0                  # ... of which had another name in the file
    unused: List[str] = field(default_factory=list)          # file keys that carry no network weights
    zero_biases: List[str] = field(default_factory=list)     # conv biases absent in the file, set to 0
    counters_added: int = 0           # BatchNorm num_batches_tracked absent in the file, set to 0
    notes: List[str] = field(default_factory=list)

    def describe(self) -> str:
        how = "detected" if self.detected else "given"
        lines = [f"model          {self.model} ({self.num_keypoints} keypoints)",
                 f"source layout  {self.source} ({how})",
                 f"keys mapped    {self.mapped} ({self.renamed} renamed)",
                 "shape mismatch 0"]
        shown = ", ".join(self.unused[:5]) + (f", ... {len(self.unused) - 5} more" if len(self.unused) > 5 else "")
        lines.append(f"unused keys    {len(self.unused)}" + (f" ({shown})" if self.unused else ""))
        if self.zero_biases:
            lines.append(f"zero biases    {len(self.zero_biases)} (convs followed by BatchNorm have none in the file)")
        if self.counters_added:
            lines.append(f"BN counters    {self.counters_added} num_batches_tracked absent in the file, set to 0")
        lines += [f"note           {n}" for n in self.notes]
        return "\n".join(lines)


def _resolve_source(state: Mapping[str, torch.Tensor], source: str) -> Tuple[str, bool]:
    if source not in SOURCES:
        raise ConfigError(f"unknown source layout {source!r}; choose one of {', '.join(SOURCES)}")
    if source == "auto":
        return detect_source(state), True
    return source, False


def _check_family(state: Mapping[str, torch.Tensor], model_name: str, family: str, source: str) -> None:
    found = detect_family(state, source)
    if found is not None and found != family:
        held = f"an MMPose {FAMILY_TITLES[found]}" if source == "mmpose" else f"{_ARTICLES[found]} {FAMILY_TITLES[found]}"
        raise CheckpointError(f"the file holds {held} ({source} layout), not {_ARTICLES[family]} "
                              f"{FAMILY_TITLES[family]}: it cannot become {model_name}")
    if source == "mmpose" and family in MMPOSE_REFUSALS:
        raise CheckpointError(MMPOSE_REFUSALS[family])
    if source == "mspn" and family != "mspn":
        raise CheckpointError(f"the official MSPN layout only fits the MSPN models, not {model_name}")


def _shape_only_model(model_name: str, num_keypoints: Optional[int], kwargs: Mapping[str, Any]) -> nn.Module:
    # Built on the meta device: names and shapes only, no memory and no initialisation (seconds for MSPN-4).
    with torch.device("meta"):
        if num_keypoints is None:
            return create_model(model_name, **dict(kwargs))
        return create_model(model_name, num_keypoints=num_keypoints, **dict(kwargs))


def infer_num_keypoints(state: Mapping[str, torch.Tensor], model_name: str,
                        model_kwargs: Optional[Mapping[str, Any]] = None) -> Optional[int]:
    """K from the output layer of a posekit-named state dict (None when that layer is absent)."""
    family = model_family(model_name)
    weight = state.get(KEYPOINT_KEYS[family])
    if weight is None or weight.dim() < 1:
        return None
    outputs = int(weight.shape[0])
    if family == "cpm":
        # Whether the model adds a background channel depends on the builder and its options: ask the model.
        probe = _shape_only_model(model_name, 1, model_kwargs or {})
        outputs -= probe.out_channels - probe.num_keypoints
    return outputs if outputs >= 1 else None


def _fit_error(model: nn.Module, state: Mapping[str, torch.Tensor], model_name: str, source: str,
               looks_like: str) -> Optional[str]:
    report = compare_state_dicts(model, state)
    if report.ok:
        return None
    missing, mismatched = set(report.missing), {k: (a, b) for k, a, b in report.mismatched}
    first = None
    for key in model.state_dict():
        if key in mismatched:
            a, b = mismatched[key]
            first = f"{key}: file {tuple(a)} vs model {tuple(b)}"
            break
        if key in missing:
            first = f"{key} of the model is not in the file"
            break
    if first is None:
        first = f"{report.unexpected[0]} of the file has no place in the model"
    counts = (f"{len(report.mismatched)} shape mismatch{'es' * (len(report.mismatched) != 1)}, "
              f"{len(report.missing)} missing, {len(report.unexpected)} unexpected")
    hint = f"; the keys look like the {looks_like} layout (try --from auto)" if looks_like != source else ""
    return f"does not fit {model_name} ({source} layout): {first} ({counts}){hint}"


def convert_state_dict(state: Mapping[str, torch.Tensor], model_name: str, source: str = "auto",
                       num_keypoints: Optional[int] = None, model_kwargs: Optional[Mapping[str, Any]] = None
                       ) -> Tuple[Dict[str, torch.Tensor], ConvertReport]:
    """A foreign state dict as the complete state dict of ``model_name``, and what was done.

    source: auto | official | mspn | mmpose. num_keypoints: None reads K from the file's output layer.
    model_kwargs: builder options (e.g. ``{"width": 16}``). Raises CheckpointError (no path) when the file is
    another model, another K, or an architecture posekit cannot reproduce.
    """
    family = model_family(model_name)
    layout, detected = _resolve_source(state, source)
    _check_family(state, model_name, family, layout)
    renamed, origin, unused = rename_keys(state, family, layout)
    kwargs = dict(model_kwargs or {})
    if num_keypoints is None:
        num_keypoints = infer_num_keypoints(renamed, model_name, kwargs)
    model = _shape_only_model(model_name, num_keypoints, kwargs)
    own = model.state_dict()

    zero_biases: List[str] = []
    if layout == "mmpose":
        # MMPose builds a conv followed by BatchNorm without bias; posekit's MSPN (as the official code) has one.
        for key, value in own.items():
            if key.endswith(".conv.bias") and key not in renamed and key[:-len("bias")] + "weight" in renamed:
                renamed[key] = torch.zeros(value.shape, dtype=value.dtype)
                zero_biases.append(key)
    counters = 0
    for key, value in own.items():
        if key.endswith("num_batches_tracked") and key not in renamed:
            renamed[key] = torch.zeros(value.shape, dtype=value.dtype)
            counters += 1

    problem = _fit_error(model, renamed, model_name, layout, detect_source(state))
    if problem is not None:
        raise CheckpointError(problem)
    report = ConvertReport(model=model_name, source=layout, detected=detected,
                           num_keypoints=int(model.num_keypoints), mapped=len(origin),
                           renamed=sum(1 for new, old in origin.items() if new != old),
                           unused=unused, zero_biases=zero_biases, counters_added=counters)
    # In the model's order and dtypes (a half-precision file becomes the model's float32).
    converted = {k: renamed[k].detach().to(dtype=v.dtype) for k, v in own.items()}
    return converted, report


# ------------------------------------------------------------------------------------------------ configs

def find_base_config(model_name: str, num_keypoints: int, config_dir: Path = CONFIG_DIR) -> Optional[Path]:
    """The first shipped recipe (posekit/configs/*.yaml, by name) for this model and keypoint count, or None."""
    if not config_dir.is_dir():
        return None
    for path in sorted(config_dir.glob("*.yaml")):
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        model = values.get("model") if isinstance(values, dict) else None
        if isinstance(model, dict) and model.get("name") == model_name and model.get("num_keypoints") == num_keypoints:
            return path
    return None


def _mmpose_input_statistics(state: Mapping[str, torch.Tensor]) -> Tuple[List[float], List[float]]:
    # MMPose configs normalise RGB images (bgr_to_rgb=True) with 0-255 statistics; ImageNet's when not stored.
    mean, std = state.get("data_preprocessor.mean"), state.get("data_preprocessor.std")
    if mean is not None and std is not None and mean.numel() == 3 and std.numel() == 3:
        return ([round(float(v) / 255.0, 6) for v in mean.flatten()],
                [round(float(v) / 255.0, 6) for v in std.flatten()])
    return [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def _build_config(model_name: str, num_keypoints: int, base: Optional[Path], kwargs: Mapping[str, Any],
                  overrides: Sequence[str]) -> Config:
    cfg = load_config(base) if base is not None else config_from_dict({})
    if base is None:
        cfg.output_dir = f"runs/{model_name}-converted"
    cfg.model.name = model_name
    cfg.model.num_keypoints = num_keypoints
    cfg.model.kwargs = {**cfg.model.kwargs, **dict(kwargs)}
    apply_overrides(cfg, overrides)
    return cfg


@dataclass
class ConvertResult:
    weights: Path
    config: Path
    base_config: Optional[Path]
    report: ConvertReport


def convert_checkpoint(src: Union[str, Path], model_name: str, out_dir: Union[str, Path], source: str = "auto",
                       num_keypoints: Optional[int] = None, model_kwargs: Optional[Mapping[str, Any]] = None,
                       base_config: Optional[Union[str, Path]] = None, overrides: Sequence[str] = ()
                       ) -> ConvertResult:
    """Convert the weights file ``src`` for ``model_name``; write OUT/weights.safetensors and OUT/config.yaml.

    The config starts from ``base_config``, else from the configs/*.yaml of this model and keypoint count
    (else the defaults); its model.kwargs, merged with ``model_kwargs``, go to the builder; ``overrides`` are
    ``key=value`` settings applied last. MMPose weights get MMPose's input convention (RGB, its mean/std).
    Nothing is written when the file cannot be converted.
    """
    src = Path(src)
    out_dir = Path(out_dir)
    state = read_foreign_state_dict(src)
    family = model_family(model_name)
    layout, detected = _resolve_source(state, source)
    try:
        _check_family(state, model_name, family, layout)
        if num_keypoints is None:
            renamed = rename_keys(state, family, layout)[0]
            num_keypoints = infer_num_keypoints(renamed, model_name, model_kwargs)
        if num_keypoints is None:
            num_keypoints = int(_shape_only_model(model_name, None, model_kwargs or {}).num_keypoints)
        base = (resolve_config_path(base_config) if base_config is not None
                else find_base_config(model_name, num_keypoints))
        cfg = _build_config(model_name, num_keypoints, base, model_kwargs or {}, overrides)
        converted, report = convert_state_dict(state, model_name, layout, num_keypoints, cfg.model.kwargs)
    except CheckpointError as exc:
        if exc.path is not None:
            raise
        raise CheckpointError(exc.problem, src) from None
    report.detected = detected

    if layout == "mmpose":
        cfg.data.color_rgb = True
        cfg.data.mean, cfg.data.std = _mmpose_input_statistics(state)
        report.notes.append(f"input: RGB, mean {cfg.data.mean}, std {cfg.data.std} (MMPose's data_preprocessor)")
        if family == "mspn":
            # MMPose crops MSPN's test boxes like every top-down model (x1.25), not with the official extension.
            cfg.data.box_padding = 1.25
            cfg.data.box_extension = [0.0, 0.0]
            report.notes.append("test box: padding 1.25, no extension (MMPose's GetBBoxCenterScale)")
    if base is None:
        report.notes.append(f"no configs/*.yaml for {model_name} with {num_keypoints} keypoints: config from defaults")

    weights_path = out_dir / WEIGHTS_NAME
    config_path = out_dir / CONFIG_NAME
    cfg.model.weights = str(weights_path.resolve())
    cfg.model.pretrained = None
    metadata = {"model": model_name, "num_keypoints": str(num_keypoints), "source": src.name,
                "source_layout": layout, "converted_by": "posekit convert",
                "model_kwargs": json.dumps(cfg.model.kwargs, sort_keys=True)}
    save_weights(converted, weights_path, metadata=metadata)
    header = (f"# {model_name} converted by posekit convert from {src.name} ({layout} layout)"
              f"{f'; base config {base.name}' if base is not None else ''}\n")
    atomic_write_bytes(config_path, (header + cfg.to_yaml()).encode())
    return ConvertResult(weights=weights_path, config=config_path, base_config=base, report=report)


__all__ = ["SOURCES", "ConvertReport", "ConvertResult", "convert_checkpoint", "convert_state_dict", "detect_family",
           "detect_source", "find_base_config", "infer_num_keypoints", "model_family", "read_foreign_state_dict",
           "rename_keys"]
