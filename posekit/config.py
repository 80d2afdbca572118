"""Configs: plain YAML files mapped onto dataclasses, with ``--set key=value`` overrides.

Every recipe number of a paper lives in its YAML file; the defaults below are the official HRNet COCO
recipe so that a short YAML only states what differs. Unknown keys, wrong types, values outside a setting's
allowed set and settings that contradict each other (:func:`validate`) are errors that name the file and the key,
raised when the file is read rather than when the setting is first used.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, Union

import yaml

from .errors import ConfigError
from .skeletons import AUTO, SKELETONS, is_skeleton_file

# The allowed values of every enum-like setting. The field annotations below name these types, so the loader
# checks them when a file or an override is read; the modules that act on a setting import the tuples from here
# (this module imports nothing of posekit but errors, so every module can).
DataFormat = Literal["coco", "mpii", "flic", "lsp", "synthetic", "crowdpose", "ochuman", "aic", "posetrack"]
ValSplit = Literal["test", "holdout"]
Distribution = Literal["normal", "uniform", "torch7"]
HalfBodyStyle = Literal["hrnet", "mspn"]
Optimizer = Literal["adam", "adamw", "sgd", "rmsprop"]
LrSchedule = Literal["multistep", "step", "cosine", "linear", "constant"]
LrScale = Literal["none", "linear"]
Amp = Literal["auto", "off", "bf16", "fp16"]
Metric = Literal["coco", "pck", "pckh"]
NmsMode = Literal["oks", "soft_oks", "none"]
Decoding = Literal["quarter", "dark"]

VAL_SPLITS: Tuple[str, ...] = typing.get_args(ValSplit)
NMS_MODES: Tuple[str, ...] = typing.get_args(NmsMode)
DECODINGS: Tuple[str, ...] = typing.get_args(Decoding)

# data.format -> the keypoint set its files are in, and the data.skeleton names that fit it.
FORMAT_SKELETONS: Dict[str, Tuple[str, ...]] = {
    "crowdpose": ("crowdpose",),
    "ochuman": ("ochuman", "coco"),
    "aic": ("aic",),
    "posetrack": ("posetrack",),
}
# LSP's standard protocol: images 1-1000 train, 1001-2000 test; data.holdout is taken from the training half.
LSP_TRAIN_COUNT = 1000
# train.device: auto or a device that training knows (select_device, amp_settings and sync_bn handle CPU and CUDA).
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")
# The recipes shipped inside the package (posekit configs lists them): a config argument may name one.
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"


@dataclass
class ModelConfig:
    name: str = "hrnet_w32"
    # null (the default) = the keypoint set's count (data.skeleton, after data.keypoint_subset), set by
    # build.build_model; a number must match the data.
    num_keypoints: Optional[int] = None
    # Gaussian sigma of the final output (heatmap px; CPM: input px); other outputs keep their declared ratio
    # to it. null = the sigmas the model declares.
    sigma: Optional[float] = None
    # Weights for the whole model (posekit safetensors or an official checkpoint) ...
    weights: Optional[str] = None
    # ... or for the backbone only (ImageNet, official key names; the head stays initialised).
    pretrained: Optional[str] = None
    # Extra keyword arguments for the builder (e.g. width, stage_modules for a custom HRNet).
    kwargs: Dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    # coco | mpii (HRNet's JSON layout; or Tompson's valid.h5; or the release .mat: its train split for
    # training, its test split for val) | flic (train.h5 / valid.h5) | lsp | synthetic (COCO layout) |
    # crowdpose | ochuman | aic (COCO-converted or release JSON) | posetrack (COCO layout or a directory of
    # per-video JSONs); the last four need data.skeleton of the same name (ochuman: or coco)
    format: DataFormat = "coco"
    root: str = "data/coco"
    skeleton: str = "coco"
    # Train and test on these joints of the dataset, in this order (CPM's 14 of MPII's 16); null = all.
    keypoint_subset: Optional[List[int]] = None
    train_ann: str = "annotations/person_keypoints_train2017.json"
    train_images: str = "train2017"
    val_ann: str = "annotations/person_keypoints_val2017.json"
    val_images: str = "val2017"
    # LSP only: the LSP-extended folder (training data added to LSP's first 1000 images).
    extra_root: Optional[str] = None
    # LSP only: [first, last] LSP image numbers (1-based, inclusive, within 1-1000) kept out of training as a
    # validation split of one's own, so that the benchmark's test half (1001-2000) is never used for tuning.
    holdout: Optional[List[int]] = None
    # What evaluation scores (posekit eval and the periodic evaluation while training): test (the benchmark's
    # test split) | holdout (data.holdout).
    val_split: ValSplit = "test"
    input_size: List[int] = field(default_factory=lambda: [256, 192])   # height, width
    box_padding: float = 1.25
    # Test-time growth of box width and height before the aspect fit (MSPN: 0.09, 0.135; training uses
    # augment.box_extension instead).
    box_extension: List[float] = field(default_factory=lambda: [0.0, 0.0])
    color_rgb: bool = True
    mean: List[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: List[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    # Cap on the number of records read per split (0 = all); for smoke runs.
    limit: int = 0
    # Training decodes a JPEG at 1/2, 1/4 or 1/8 of its size when the crop window is that many times the input
    # (DCT scaling: faster, and the crop is area-averaged instead of bilinear-sampled); false = full-size decoding,
    # the exact pixels of the official pipeline. Evaluation always decodes at full size.
    reduced_decode: bool = True


@dataclass
class AugmentConfig:
    flip: bool = True
    # How scale and rotation are drawn (f = scale_factor, r = rotation_factor):
    #   normal (official HRNet / SimpleBaseline): s *= clip(N(0,1) f + 1, 1 - f, 1 + f), rot = clip(N(0,1) r, -2r, 2r)
    #   uniform (CPM, MSPN): s *= U(1 - f, 1 + f), rot = U(-r, r)
    #   torch7 (Newell's hourglass): s *= 2^clip(N(0,1) f, -2f, 2f), rot = clip(N(0,1) r, -2r, 2r)
    # the rotation is applied with probability rotation_prob, else 0.
    distribution: Distribution = "normal"
    # MSPN's training box: width/height x (1 + box_extension) x (1 + U(0,1) random_box_extension) before the
    # aspect fit, and the scale multiplied by scale_shrink before the random scale (0.05 / 0.6, 0.8 / 0.8 on COCO).
    box_extension: List[float] = field(default_factory=lambda: [0.0, 0.0])
    random_box_extension: List[float] = field(default_factory=lambda: [0.0, 0.0])
    scale_shrink: float = 1.0
    scale_factor: float = 0.35
    rotation_factor: float = 45.0
    rotation_prob: float = 0.6          # official HRNet (paper: U(-45, 45) always)
    half_body_prob: float = 0.3
    half_body_min_joints: int = 8       # half-body needs more than this many labelled joints
    half_body_scale: float = 1.5
    half_body_style: HalfBodyStyle = "hrnet"    # hrnet | mspn (see transforms.half_body_center_scale)
    half_body_extension: List[float] = field(default_factory=lambda: [0.6, 0.8])   # mspn style only
    # Joints that count as upper body for the half-body crop (null: the keypoint set's; MSPN on COCO adds the hips)
    half_body_upper: Optional[List[int]] = None
    # Per-channel colour multiplier U(lo, hi) on the [0, 1] image, clamped (Newell's hourglass: [0.6, 1.4]); null = off
    color_jitter: Optional[List[float]] = None


@dataclass
class TrainConfig:
    epochs: int = 210
    batch_size: int = 32                # per process
    optimizer: Optimizer = "adam"       # adam | adamw | sgd | rmsprop
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0           # the official yaml's 1e-4 is not passed to Adam
    # multistep (at the epochs in lr_steps) | step (every lr_step_iters iterations, Caffe "step") |
    # cosine | linear (per iteration, to 0 at the end) | constant
    lr_schedule: LrSchedule = "multistep"
    lr_steps: List[int] = field(default_factory=lambda: [170, 200])
    lr_step_iters: int = 0
    lr_factor: float = 0.1
    rmsprop_alpha: float = 0.99
    warmup_iters: int = 0
    warmup_factor: float = 0.001
    workers: int = 4
    amp: Amp = "auto"                   # auto (bf16/fp16 on CUDA, off on CPU) | off | bf16 | fp16
    device: str = "auto"                # auto | cpu | cuda | cuda:N
    seed: int = 0
    checkpoint_every: int = 1000        # steps; a checkpoint is also written at every epoch end
    eval_every: int = 10                # epochs; 0 = only at the end
    max_steps: int = 0                  # stop after this many steps in total (0 = run all epochs)
    time_limit: float = 0.0             # seconds; stop (with a checkpoint) when reached (0 = none)
    max_unreadable_fraction: float = 0.01
    grad_clip: float = 0.0              # max global gradient norm (after unscaling fp16 gradients); 0 = no clipping
    # Optimizer steps take the gradient of this many batches (effective batch: batch_size x processes x this).
    accumulate_steps: int = 1
    # Exponential moving average of the weights (0 = off): ema = d * ema + (1 - d) * w after every optimizer
    # step. When on, the EMA weights are the ones evaluated and saved as weights.safetensors; the raw weights
    # and the EMA are both in the training state (state.pt) for --resume.
    ema_decay: float = 0.0
    # Learning rate under data parallelism: none (train.lr as given) | linear (Goyal et al.: train.lr x
    # batch_size x processes x accumulate_steps / lr_reference_batch).
    lr_scale: LrScale = "none"
    lr_reference_batch: int = 0         # the total batch train.lr was tuned for; 0 = train.batch_size (1 process)
    sync_bn: bool = False               # SyncBatchNorm across processes (CUDA only; batch statistics of all GPUs)
    keep_checkpoints: int = 3           # newest step checkpoints kept; 0 = all
    # Model and batches in channels-last memory layout (NHWC): about 1.3x faster training steps on CPUs with
    # oneDNN (bf16) and on tensor-core GPUs; the weights saved are the same tensors.
    channels_last: bool = False
    # torch.use_deterministic_algorithms for the run (and cuDNN autotuning off): bit-identical reruns and
    # resumes on the same hardware and thread count, at some speed cost on GPUs.
    deterministic: bool = False
    # Scalars (loss and lr per step, epoch loss, seconds, validation metrics) to OUTPUT/tensorboard/ for
    # TensorBoard (rank 0). Needs the optional tensorboard package (pip install "posekit[tensorboard]").
    tensorboard: bool = False


@dataclass
class TestConfig:
    metric: Metric = "coco"             # coco | pck (torso, LSP/FLIC) | pckh (MPII)
    batch_size: int = 32
    flip_test: bool = True
    shift_heatmap: bool = True
    post_process: bool = True
    use_gt_bbox: bool = True            # true: GT boxes; false: the boxes of det_file (COCO detection results)
    det_file: Optional[str] = None
    image_thre: float = 0.0             # detections with score >= this are kept (HRNet: 0.0)
    det_category_id: int = 1            # the detections' category taken as people (COCO: 1)
    # Detections on images absent from the GT annotation file: false = error, true = dropped (a detector run on
    # all of val2017 scored against a subset's annotations).
    det_skip_unknown_images: bool = False
    det_max_per_image: int = 0          # keep the k best-scoring detections per image (0 = all)
    # COCO-style formats: evaluate on these image ids only (null = every image of the annotation file): both the
    # people read (GT boxes or detections) and the images COCOeval scores.
    image_ids: Optional[List[int]] = None
    in_vis_thre: float = 0.2
    # Person NMS before COCO scoring (spec 1.7): oks (HRNet default: greedy, drops OKS > oks_thre) |
    # soft_oks (HRNet TEST.SOFT_NMS: Gaussian score decay, at most 20 kept) | none (rescoring only, all kept)
    nms: NmsMode = "oks"
    oks_thre: float = 0.9
    pck_alpha: float = 0.2
    blur_kernel: int = 0                # MSPN decoding blur (5 COCO, 9 MPII), DARK's blur; 0 = the codec's default
    # Decoding of Gaussian heatmaps: quarter (official HRNet: argmax + 0.25 px toward the higher neighbour) |
    # dark (Zhang et al. CVPR 2020: blur, log, one Newton step; most useful on coarse heatmaps)
    decode: Decoding = "quarter"
    # Multi-scale test: each person is also cropped around the same centre with a window f times the usual one
    # (box_padding x f), and the heatmaps, resampled into the f = 1 crop, are averaged. [1.0] = single scale.
    # CPM's release searches image magnifications m = 0.7 .. 1.3 (spec 2.7): that is f = 1 / m.
    scales: List[float] = field(default_factory=lambda: [1.0])


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)
    output_dir: str = "runs/default"

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @property
    def input_hw(self) -> Tuple[int, int]:
        return int(self.data.input_size[0]), int(self.data.input_size[1])


def _check_type(value: Any, annotation: Any, where: str, source: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Union:
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _check_type(value, inner[0], where, source)
    if annotation is Any:
        return value
    if origin is Literal:
        # type() too: YAML's true must not pass for a 1, nor 1 for a 1.0
        if not any(type(value) is type(allowed) and value == allowed for allowed in args):
            hint = " (YAML reads a bare on/off/yes/no as a boolean: quote the word)" if isinstance(value, bool) else ""
            raise ConfigError(f"{where} must be {_alternatives(args)}, got {value!r}{hint}", source)
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}", source)
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}", source)
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}", source)
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}", source)
        return value
    if origin in (list, List):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}", source)
        return [_check_type(v, args[0], f"{where}[{i}]", source) for i, v in enumerate(value)]
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}", source)
        return dict(value)
    return value


def _apply(obj: Any, values: Dict[str, Any], prefix: str, source: str) -> None:
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in values.items():
        where = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown key {where!r} (known: {', '.join(sorted(names))})", source)
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where} must be a mapping, got {value!r}", source)
            _apply(current, value, where + ".", source)
        else:
            setattr(obj, key, _check_type(value, hints[key], where, source))


def config_from_dict(values: Dict[str, Any], source: str = "<config>") -> Config:
    """A Config from plain values (a parsed YAML document), checked as a file is (``source`` names it)."""
    cfg = _from_values(values, source)
    validate(cfg, source)
    return cfg


def shipped_config_names() -> List[str]:
    """The names of the recipes shipped in ``posekit/configs`` (file names less ``.yaml``), sorted."""
    return sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path: Union[str, Path]) -> Path:
    """The YAML file a config argument means: an existing path as it is, else the shipped recipe of that name
    (``hrnet-w32_coco_256x192``, with or without ``.yaml``).

    A bare name that is neither is a ConfigError listing the close shipped names. A path with a folder in it is
    never taken for a name (a missing one is returned for the reader to report), so a recipe is only used
    where its name alone was given.
    """
    path = Path(name_or_path)
    if path.exists():
        return path
    text = os.fspath(name_or_path)
    name = text[:-len(path.suffix)] if path.suffix in (".yaml", ".yml") else text
    names = shipped_config_names()
    if "/" in text or os.sep in text:
        if path.stem in names:
            raise ConfigError(f"cannot read config: no such file (to use the recipe shipped in the package "
                              f"under that name, give the name alone: {path.stem})", text)
        return path
    if name in names:
        return CONFIGS_DIR / f"{name}.yaml"
    close = difflib.get_close_matches(name, names, n=4, cutoff=0.5)
    raise ConfigError(f"cannot read config: no such file and no shipped recipe of that name"
                      f"{'; close: ' + ', '.join(close) if close else ''} (posekit configs lists them)", text)


def load_config(path: Optional[Union[str, Path]], overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config (a path, a shipped recipe's name as :func:`resolve_config_path` finds it, or None:
    the defaults) and apply ``key.sub=value`` overrides (values parsed as YAML)."""
    values: Dict[str, Any] = {}
    source = str(path) if path is not None else "<defaults>"
    if path is not None:
        path = resolve_config_path(path)
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read config: {exc.strerror}", path) from None
        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"not valid YAML: {str(exc).splitlines()[0]}", path) from None
    cfg = _from_values(values, source)
    _override(cfg, overrides)
    # Validated once, after the overrides: together they may settle what the file alone leaves contradictory
    # (--set data.format=crowdpose --set data.skeleton=crowdpose on a COCO config).
    validate(cfg, f"{source} with --set" if overrides else source)
    return cfg


def apply_overrides(cfg: Config, overrides: Sequence[str]) -> Config:
    """Apply ``key.sub=value`` overrides to cfg (in place) and validate the result."""
    _override(cfg, overrides)
    validate(cfg, "--set")
    return cfg


def validate(cfg: Config, source: str = "<config>") -> None:
    """The rules between settings (and the ranges) that the config alone decides; a ConfigError names the first
    broken one. Loading calls it, so that a contradiction stops a run before any data or model is read; training
    and evaluation call it again, for a config changed in Python after loading."""
    _check_choices(cfg, "", source)
    data, train, test = cfg.data, cfg.train, cfg.test

    # A keypoint-set file (or auto: the COCO annotation file's own set) is read where the set is needed
    # (build.dataset_skeleton); here only that it is there.
    if data.skeleton not in SKELETONS and data.skeleton != AUTO:
        if not is_skeleton_file(data.skeleton):
            raise ConfigError(f"data.skeleton must be {', '.join(SKELETONS)}, auto or a keypoint-set file "
                              f"(.yaml, .yml, .json), got {data.skeleton!r}", source)
        if not Path(data.skeleton).is_file():
            raise ConfigError(f"data.skeleton: keypoint-set file {data.skeleton} not found", source)
    if data.skeleton == AUTO and data.format not in ("coco", "synthetic"):
        raise ConfigError(f"data.skeleton auto reads the keypoint set from a COCO-format annotation file: "
                          f"data.format must be coco or synthetic (it is {data.format})", source)
    fitting = FORMAT_SKELETONS.get(data.format)
    if fitting is not None and data.skeleton not in fitting:
        raise ConfigError(f"data.format {data.format} holds {fitting[0]} keypoints: set data.skeleton to "
                          f"{' or '.join(fitting)} (it is {data.skeleton!r})", source)
    if (data.keypoint_subset is not None and cfg.model.num_keypoints is not None
            and len(data.keypoint_subset) != cfg.model.num_keypoints):
        raise ConfigError(f"data.keypoint_subset keeps {len(data.keypoint_subset)} joints but model.num_keypoints "
                          f"is {cfg.model.num_keypoints}", source)
    if data.holdout is not None and (len(data.holdout) != 2
                                     or not 1 <= data.holdout[0] <= data.holdout[1] <= LSP_TRAIN_COUNT):
        raise ConfigError(f"data.holdout must be [first, last] LSP image numbers within 1-{LSP_TRAIN_COUNT}, "
                          f"got {data.holdout}", source)
    if data.val_split == "holdout":
        # Only the LSP reader holds images out; any other format would silently score its test split.
        if data.format != "lsp":
            raise ConfigError(f"data.val_split is holdout but data.format is {data.format} (a holdout split is "
                              f"LSP's: data.format lsp)", source)
        if data.holdout is None:
            raise ConfigError("data.val_split is holdout but data.holdout is not set", source)

    if not _DEVICE.fullmatch(train.device):
        raise ConfigError(f"train.device must be auto, cpu, cuda or cuda:N, got {train.device!r}", source)
    if train.batch_size < 1:
        raise ConfigError(f"train.batch_size must be at least 1, got {train.batch_size}", source)
    if train.accumulate_steps < 1:
        raise ConfigError(f"train.accumulate_steps must be at least 1, got {train.accumulate_steps}", source)
    if not 0.0 <= train.ema_decay < 1.0:
        raise ConfigError(f"train.ema_decay must be in [0, 1), got {train.ema_decay}", source)
    if train.keep_checkpoints < 0:
        raise ConfigError(f"train.keep_checkpoints must be 0 (all) or more, got {train.keep_checkpoints}", source)
    if train.lr_reference_batch < 0:
        raise ConfigError(f"train.lr_reference_batch must be 0 or more, got {train.lr_reference_batch}", source)

    if not test.scales:
        raise ConfigError("test.scales must list at least one scale factor (1.0 = the usual crop)", source)
    bad_scales = [f for f in test.scales if not math.isfinite(f) or f <= 0]
    if bad_scales:
        raise ConfigError(f"test.scales must be positive, got {bad_scales[0]!r}", source)
    if not test.use_gt_bbox and not test.det_file:
        raise ConfigError("test.use_gt_bbox is false but test.det_file is not set", source)


def _check_choices(obj: Any, prefix: str, source: str) -> None:
    """Every enum-like (Literal) setting again: assignments in Python bypass the loader's check."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _check_choices(value, f"{prefix}{f.name}.", source)
        elif typing.get_origin(hints[f.name]) is Literal:
            _check_type(value, hints[f.name], f"{prefix}{f.name}", source)


def _alternatives(values: Sequence[Any]) -> str:
    # The wording of the use-site checks these replace ("none or linear", "oks, soft_oks, none"): bare values,
    # each one a word that can be pasted back into the YAML.
    words = [str(v) for v in values]
    return " or ".join(words) if len(words) == 2 else ", ".join(words)


def _from_values(values: Dict[str, Any], source: str) -> Config:
    cfg = Config()
    if values:
        if not isinstance(values, dict):
            raise ConfigError("top level must be a mapping", source)
        _apply(cfg, values, "", source)
    return cfg


def _override(cfg: Config, overrides: Sequence[str]) -> None:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value", "--set")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        nested: Dict[str, Any] = {}
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        # A bare word that YAML reads as a number or a boolean stays valid for str fields (a folder named 2017,
        # train.amp=off).
        try:
            _apply(cfg, nested, "", "--set")
        except ConfigError:
            if not isinstance(value, str):
                node[parts[-1]] = raw
                _apply(cfg, nested, "", "--set")
            else:
                raise
