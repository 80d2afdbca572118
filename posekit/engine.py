"""Training and evaluation loops: data, model, loss, optimiser and checkpoints wired from a Config.

Checkpoints are directories ``<output_dir>/checkpoints/step_00001234/`` holding ``weights.safetensors``
(the EMA weights when ``train.ema_decay`` is on), ``state.pt`` (optimizer, scheduler, scaler, raw and EMA
weights, every RNG state, sampler position, step) and ``manifest.json`` (size and SHA-256 of both). A
directory is written under a temporary name, fsynced and renamed, then the one-line file ``checkpoints/last``
is replaced atomically: a run killed at any moment leaves the previous checkpoint intact. ``--resume``
continues from the newest checkpoint whose files match their manifest; a corrupt or truncated one is moved
to ``checkpoints/corrupt/`` with a one-line warning and the previous one is used.

Under ``torchrun`` (WORLD_SIZE > 1 in the environment) :func:`train` runs DistributedDataParallel: NCCL on
GPUs, gloo on the CPU, an equal share of every epoch's permutation per process, losses averaged across
processes, evaluation sharded and gathered, and only rank 0 writes checkpoints, logs and metrics.jsonl.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import re
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Sampler

from .checkpoints import (atomic_path, compare_state_dicts, fsync_dir, load_weights, manifest_problem, read_state_dict,
                          save_weights, write_manifest)
from .codecs import OutputSpec, build_codec
from .config import Config
from .data.dataset import TopDownDataset, collate_samples
from .data.lsp import LSP_TRAIN_COUNT
from .data.records import PersonRecord, attach_others
from .errors import CheckpointError, ConfigError, DataError
from .inference import check_test_scales, crop_center_on_heatmap, decode_to_image, predict_heatmaps_multiscale
from .losses import total_loss
from .metrics import COCO_STAT_NAMES
from .models import create_model
from .skeletons import Skeleton, get_skeleton

KEEP_CHECKPOINTS = 3
WEIGHTS_FILE = "weights.safetensors"
STATE_FILE = "state.pt"
_STEP_DIR = re.compile(r"step_(\d+)")


# ----------------------------------------------------------------------------------------------- setup
def select_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available", "train.device")
    return device


def amp_settings(amp: str, device: torch.device) -> Tuple[bool, torch.dtype]:
    """(enabled, dtype) of autocast. 'auto' uses bf16 on CUDA GPUs that have it, fp16 on older ones, and
    stays in fp32 on CPU, where bf16 convolutions are slower than fp32 on most processors."""
    if amp == "off":
        return False, torch.float32
    if amp == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("train.amp=bf16 but this GPU has no bfloat16 support (use fp16 or auto)", "train.amp")
        return True, torch.bfloat16
    if amp == "fp16":
        if device.type != "cuda":
            raise ConfigError("train.amp=fp16 needs a CUDA device (use bf16 on CPU)", "train.amp")
        return True, torch.float16
    if amp == "auto":
        if device.type == "cuda":
            return True, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return False, torch.float32
    raise ConfigError(f"train.amp must be auto, off, bf16 or fp16, got {amp!r}", "train.amp")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------------------ distributed
@dataclass(frozen=True)
class DistInfo:
    """This process's place in a data-parallel run (rank 0 of 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""
    started_here: bool = False      # train() created the process group, so it also destroys it

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer", name) from None


def init_distributed(device_name: str = "auto") -> Tuple[DistInfo, torch.device]:
    """The process group and this process's device.

    Under torchrun (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in the environment, WORLD_SIZE > 1)
    the group is created from the environment: NCCL when the device is a GPU, each process on GPU LOCAL_RANK,
    gloo on the CPU. A group the caller already created is used as it is. Otherwise one process on
    ``select_device(device_name)``.
    """
    device = select_device(device_name)
    if dist.is_available() and dist.is_initialized():
        rank, world, started = dist.get_rank(), dist.get_world_size(), False
    else:
        world = _env_int("WORLD_SIZE", 1)
        if world <= 1:
            return DistInfo(), device
        if not dist.is_available():
            raise ConfigError("WORLD_SIZE > 1 but this PyTorch was built without torch.distributed", "WORLD_SIZE")
        rank, started = _env_int("RANK", 0), True
    local_rank = _env_int("LOCAL_RANK", rank)
    if device.type == "cuda" and world > 1:
        # One GPU per process, chosen by LOCAL_RANK (an explicit cuda:N only makes sense for a single process).
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK is {local_rank} but only {torch.cuda.device_count()} GPUs are visible",
                              "LOCAL_RANK")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if started:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://")
    return DistInfo(rank, world, local_rank, str(dist.get_backend()), started), device


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _broadcast_buffers(module: nn.Module) -> None:
    # Without SyncBatchNorm each process keeps its own BN running statistics; rank 0's are the ones saved, so they
    # are also the ones every process evaluates with.
    if _distributed():
        for buffer in module.buffers():
            dist.broadcast(buffer, 0)


def _any_process(flag: bool, device: torch.device) -> bool:
    """True in every process when ``flag`` is true in any (decisions to stop must be taken together)."""
    if not _distributed():
        return flag
    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def build_model(cfg: Config, load: bool = True) -> nn.Module:
    model = create_model(cfg.model.name, num_keypoints=cfg.model.num_keypoints, **cfg.model.kwargs)
    if load and cfg.model.pretrained:
        state = read_state_dict(cfg.model.pretrained)
        own = model.state_dict()
        usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape and not k.startswith("final_layer")}
        if not usable:
            raise CheckpointError(f"no backbone key of {cfg.model.name} found", cfg.model.pretrained)
        model.load_state_dict(usable, strict=False)
    if load and cfg.model.weights:
        load_weights(model, cfg.model.weights)
    return model


def output_specs(model: nn.Module, cfg: Config) -> List[OutputSpec]:
    """The model's declared outputs; with cfg.model.sigma, the Gaussian sigmas are rescaled so that the final
    output has it (kernel-based MSPN targets are left alone)."""
    specs = list(model.outputs)
    if cfg.model.sigma is None:
        return specs
    factor = cfg.model.sigma / specs[-1].sigma
    return [replace(s, sigma=s.sigma * factor) if s.target in ("gaussian", "cpm", "torch7") else s for s in specs]


def build_codecs(specs: Sequence[OutputSpec], cfg: Config) -> List[Any]:
    return [build_codec(s, cfg.input_hw, post_process=cfg.test.post_process, blur_kernel=cfg.test.blur_kernel,
                        decoding=cfg.test.decode)
            for s in specs]


def dataset_skeleton(cfg: Config) -> Skeleton:
    """The keypoint set the model sees: cfg.data.skeleton, reduced to cfg.data.keypoint_subset if given."""
    from .data.cocostyle import check_format_skeleton

    check_format_skeleton(cfg.data.format, cfg.data.skeleton)
    skeleton = get_skeleton(cfg.data.skeleton)
    if cfg.data.keypoint_subset is not None:
        skeleton = skeleton.subset(cfg.data.keypoint_subset)
    return skeleton


def _join(root: str, path: str) -> str:
    return path if os.path.isabs(path) else os.path.join(root, path)


def load_records(cfg: Config, split: str) -> List[PersonRecord]:
    """The person records of one split ('train' or 'val') of the configured dataset."""
    data = cfg.data
    train = split == "train"
    if data.format in ("coco", "synthetic", "crowdpose", "ochuman", "aic", "posetrack"):
        from .data.coco import read_coco_detections
        from .data.cocostyle import check_format_skeleton, cocostyle_image_index, read_cocostyle

        check_format_skeleton(data.format, data.skeleton)
        ann = _join(data.root, data.train_ann if train else data.val_ann)
        images = _join(data.root, data.train_images if train else data.val_images)
        if not train and not cfg.test.use_gt_bbox:
            if not cfg.test.det_file:
                raise ConfigError("test.use_gt_bbox is false but test.det_file is not set", "test.det_file")
            records = read_coco_detections(cfg.test.det_file, cocostyle_image_index(data.format, ann), images,
                                           score_threshold=cfg.test.image_thre,
                                           category_id=cfg.test.det_category_id,
                                           num_keypoints=cfg.model.num_keypoints, image_ids=cfg.test.image_ids,
                                           skip_unknown_images=cfg.test.det_skip_unknown_images,
                                           max_per_image=cfg.test.det_max_per_image)
        else:
            records = read_cocostyle(data.format, ann, images, train=train)
            if not train and cfg.test.image_ids is not None:
                wanted = set(cfg.test.image_ids)
                records = [r for r in records if r.image_id in wanted]
    elif data.format == "mpii":
        from .data.mpii import read_mpii_h5, read_mpii_json, read_mpii_release_mat

        ann = _join(data.root, data.train_ann if train else data.val_ann)
        image_dir = _join(data.root, data.train_images if train else data.val_images)
        if ann.endswith(".mat"):
            # The release: its train split to train on; its test split (no joints) to predict on.
            records = read_mpii_release_mat(ann, image_dir, split="train" if train else "test")
        else:
            reader = read_mpii_h5 if ann.endswith(".h5") else read_mpii_json   # Tompson's valid.h5 or HRNet's JSON
            records = reader(ann, image_dir)
    elif data.format == "flic":
        from .data.flic import read_flic_h5

        records = read_flic_h5(_join(data.root, data.train_ann if train else data.val_ann),
                               _join(data.root, data.train_images if train else data.val_images))
    elif data.format == "lsp":
        from .data.lsp import lsp_standard_split

        holdout = _lsp_holdout(data)
        use_holdout = not train and data.val_split == "holdout"
        # The training half alone is usable where only LSP images 1-1000 are present (as in ../shared/data).
        train_records, test_records = lsp_standard_split(data.root, data.extra_root,
                                                         require_test=not train and not use_holdout)
        lsp_ids = set(range(holdout[0], holdout[1] + 1)) if holdout else set()
        # LSP's own records come first and carry their image number; LSPET's follow (never held out).
        held = [r for r in train_records[:LSP_TRAIN_COUNT] if r.image_id in lsp_ids]
        if train:
            records = [r for i, r in enumerate(train_records) if i >= LSP_TRAIN_COUNT or r.image_id not in lsp_ids]
        else:
            records = held if use_holdout else test_records
    else:
        raise ConfigError(f"data.format must be coco, mpii, flic, lsp, synthetic, crowdpose, ochuman, aic or posetrack, "
                          f"got {data.format!r}", "data.format")
    if data.limit:
        records = records[: data.limit]
    if data.keypoint_subset is not None:
        dataset_skeleton(cfg)   # validates the indices against the keypoint set
        index = list(data.keypoint_subset)
        for r in records:
            if max(index) >= r.keypoints.shape[0]:
                raise ConfigError(f"data.keypoint_subset names joint {max(index)} but the data has "
                                  f"{r.keypoints.shape[0]}", "data.keypoint_subset")
            r.keypoints = r.keypoints[index]
    for r in records[:1]:
        if r.keypoints.shape[0] != cfg.model.num_keypoints:
            raise ConfigError(f"the data has {r.keypoints.shape[0]} keypoints but model.num_keypoints is "
                              f"{cfg.model.num_keypoints}", "model.num_keypoints")
    return records


def _primary_metric(cfg: Config, metrics: Dict[str, Any]) -> Optional[float]:
    """The number that ranks evaluations of cfg.test.metric (PCK mean, PCKh mean, COCO AP); None if absent."""
    key = {"pck": "pck", "pckh": "Mean", "coco": "AP"}.get(cfg.test.metric)
    value = metrics.get(key) if key else None
    return float(value) if isinstance(value, (int, float)) else None


VAL_SPLITS = ("test", "holdout")


def _lsp_holdout(data: Any) -> Optional[Tuple[int, int]]:
    """data.holdout checked: None, or (first, last) LSP image numbers within the training half."""
    if data.val_split not in VAL_SPLITS:
        raise ConfigError(f"data.val_split must be {' or '.join(VAL_SPLITS)}, got {data.val_split!r}", "data.val_split")
    if data.holdout is None:
        if data.val_split == "holdout":
            raise ConfigError("data.val_split is holdout but data.holdout is not set", "data.holdout")
        return None
    if len(data.holdout) != 2 or not 1 <= data.holdout[0] <= data.holdout[1] <= LSP_TRAIN_COUNT:
        raise ConfigError(f"data.holdout must be [first, last] LSP image numbers within 1-{LSP_TRAIN_COUNT}, "
                          f"got {data.holdout}", "data.holdout")
    return int(data.holdout[0]), int(data.holdout[1])


def make_dataset(cfg: Config, records: Sequence[PersonRecord], codecs: Sequence[Any], train: bool,
                 model: Optional[nn.Module] = None) -> TopDownDataset:
    """The top-down dataset for cfg; a model with ``center_map_sigma`` (CPM) gets its centre-map channel."""
    return TopDownDataset(
        records, dataset_skeleton(cfg), cfg.input_hw, codecs, train=train, augment=cfg.augment,
        mean=cfg.data.mean, std=cfg.data.std, color_rgb=cfg.data.color_rgb, box_padding=cfg.data.box_padding,
        box_extension=cfg.data.box_extension, seed=cfg.train.seed, skip_unreadable=train, center_map_sigma=getattr(model, "center_map_sigma", None),
        reduced_decode=train and cfg.data.reduced_decode,
    )


class EpochSampler(Sampler):
    """A permutation seeded by (seed, epoch), starting at ``start`` (for resuming inside an epoch).

    ``rank``/``world_size`` give each distributed process an interleaved share of the permutation.
    """

    def __init__(self, size: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1):
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def indices(self) -> np.ndarray:
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(self.size) if self.shuffle
                 else np.arange(self.size))
        # Equal shares: the last size % world_size entries of the permutation sit this epoch out, because
        # processes stepping different numbers of batches would wait for each other forever.
        order = order[: self.size - self.size % self.world_size]
        return order[self.rank::self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.start:].tolist())

    def __len__(self) -> int:
        return max(0, len(self.indices()) - self.start)


class _EpochIndexed(Dataset):
    """``dataset[(epoch, index)]``: the epoch travels with each index, so that persistent worker processes (which
    hold their own copy of the dataset) draw that epoch's augmentation."""

    def __init__(self, dataset: TopDownDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Tuple[int, int]) -> Dict[str, Any]:
        epoch, index = key
        self.dataset.set_epoch(epoch)
        return self.dataset[index]


class _WithEpoch(Sampler):
    def __init__(self, sampler: EpochSampler):
        self.sampler = sampler

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        epoch = self.sampler.epoch
        return ((epoch, index) for index in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def lr_factor_fn(cfg: Config, steps_per_epoch: int) -> Callable[[int], float]:
    """Per-iteration LR multiplier: warm-up, then the schedule (multi-step by epochs, cosine, linear)."""
    t = cfg.train
    total = max(1, t.epochs * steps_per_epoch)
    if t.max_steps:
        total = min(total, t.max_steps)

    def factor(step: int) -> float:
        if t.lr_schedule == "multistep":
            epoch = step // steps_per_epoch
            value = t.lr_factor ** sum(epoch >= m for m in t.lr_steps)
        elif t.lr_schedule == "step":
            value = t.lr_factor ** (step // max(1, t.lr_step_iters))
        elif t.lr_schedule == "cosine":
            value = 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
        elif t.lr_schedule == "linear":
            value = max(0.0, 1 - max(0, step - t.warmup_iters) / max(1, total - t.warmup_iters))
        elif t.lr_schedule == "constant":
            value = 1.0
        else:
            raise ConfigError(f"train.lr_schedule must be multistep, step, cosine, linear or constant, got {t.lr_schedule!r}",
                              "train.lr_schedule")
        if step < t.warmup_iters:
            value *= t.warmup_factor + (1 - t.warmup_factor) * step / t.warmup_iters
        return value

    factor(0)
    return factor


def scaled_lr(cfg: Config, world_size: int = 1) -> float:
    """train.lr under train.lr_scale: as given (none), or times the total batch over train.lr_reference_batch
    (linear; the reference defaults to train.batch_size, i.e. train.lr is the rate for one process)."""
    t = cfg.train
    if t.lr_scale == "none":
        return t.lr
    if t.lr_scale == "linear":
        reference = t.lr_reference_batch or t.batch_size
        return t.lr * t.batch_size * world_size * t.accumulate_steps / reference
    raise ConfigError(f"train.lr_scale must be none or linear, got {t.lr_scale!r}", "train.lr_scale")


def build_optimizer(cfg: Config, model: nn.Module, lr: Optional[float] = None) -> torch.optim.Optimizer:
    """cfg's optimizer over model's parameters, at ``lr`` (default train.lr)."""
    t = replace(cfg.train, lr=cfg.train.lr if lr is None else lr)
    # A model may carry its paper's per-layer learning-rate multipliers (CPM's Caffe lr_mult / decay_mult).
    params = (model.param_groups(t.lr, t.weight_decay) if hasattr(model, "param_groups")
              else [p for p in model.parameters() if p.requires_grad])
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    if t.optimizer == "rmsprop":
        # Torch7 optim.rmsprop (Newell): alpha 0.99, eps 1e-8, no momentum
        return torch.optim.RMSprop(params, lr=t.lr, alpha=t.rmsprop_alpha, eps=1e-8, weight_decay=t.weight_decay)
    raise ConfigError(f"train.optimizer must be adam, adamw, sgd or rmsprop, got {t.optimizer!r}", "train.optimizer")


# ------------------------------------------------------------------------------------------ checkpoints
def _rng_state() -> Dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _step_dirs(checkpoint_dir: Path) -> List[Path]:
    """The step_N checkpoint directories, oldest first."""
    if not checkpoint_dir.is_dir():
        return []
    found = [(int(m.group(1)), d) for d in checkpoint_dir.iterdir() if d.is_dir() and (m := _STEP_DIR.fullmatch(d.name))]
    return [d for _, d in sorted(found)]


def save_checkpoint(checkpoint_dir: Path, model: nn.Module, state: Dict[str, Any], metadata: Dict[str, str],
                    keep: int = KEEP_CHECKPOINTS) -> Path:
    """Write step_N/{weights.safetensors,state.pt,manifest.json} atomically, point ``last`` at it and keep the
    newest ``keep`` step checkpoints (0 = all)."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    name = f"step_{state['step']:08d}"
    final = checkpoint_dir / name
    tmp = checkpoint_dir / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_weights(model, tmp / WEIGHTS_FILE, metadata={**metadata, "step": str(state["step"])})
    with open(tmp / STATE_FILE, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    write_manifest(tmp, [WEIGHTS_FILE, STATE_FILE])
    fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    with atomic_path(checkpoint_dir / "last") as p:
        Path(p).write_text(name + "\n")
    fsync_dir(checkpoint_dir)
    if keep > 0:
        for old in _step_dirs(checkpoint_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def last_checkpoint(checkpoint_dir: Path) -> Optional[Path]:
    pointer = checkpoint_dir / "last"
    if not pointer.is_file():
        return None
    path = checkpoint_dir / pointer.read_text().strip()
    if not (path / WEIGHTS_FILE).is_file() or not (path / STATE_FILE).is_file():
        raise CheckpointError("the checkpoint named by 'last' is incomplete", path)
    return path


def load_training_state(path: Path) -> Dict[str, Any]:
    try:
        return torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which one
        raise CheckpointError(f"cannot read training state ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
                              path / STATE_FILE) from None


def find_resume_checkpoint(checkpoint_dir: Path, log: Callable[[str], None] = print
                           ) -> Optional[Tuple[Path, Dict[str, Any]]]:
    """The newest intact checkpoint and its training state; None when there is no checkpoint at all.

    A checkpoint whose files do not match its manifest (truncated, corrupt, missing) or whose state cannot be
    read is moved to ``checkpoints/corrupt/`` with a one-line warning, and the previous one is tried; when none
    is intact, CheckpointError. Leftover temporaries of a killed run are removed.
    """
    for stale in checkpoint_dir.glob(".*.tmp") if checkpoint_dir.is_dir() else []:
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    candidates = _step_dirs(checkpoint_dir)[::-1]
    for path in candidates:
        problem = manifest_problem(path, (WEIGHTS_FILE, STATE_FILE))
        state: Optional[Dict[str, Any]] = None
        if problem is None:
            try:
                state = load_training_state(path)
            except CheckpointError as exc:
                problem = exc.problem
        if problem is None:
            if _last_name(checkpoint_dir) != path.name:
                with atomic_path(checkpoint_dir / "last") as p:
                    Path(p).write_text(path.name + "\n")
            return path, state
        # Set aside rather than deleted (it may be inspected) and out of the way of pruning and of 'last'.
        aside = checkpoint_dir / "corrupt" / path.name
        n = 1
        while aside.exists():
            aside, n = checkpoint_dir / "corrupt" / f"{path.name}.{n}", n + 1
        aside.parent.mkdir(exist_ok=True)
        os.replace(path, aside)
        log(f"warning: checkpoint {path} is unusable ({problem}); moved to {aside}, using the previous one")
    if candidates:
        raise CheckpointError(f"no intact checkpoint to resume from ({len(candidates)} moved to corrupt/)", checkpoint_dir)
    return None


def _last_name(checkpoint_dir: Path) -> Optional[str]:
    pointer = checkpoint_dir / "last"
    return pointer.read_text().strip() if pointer.is_file() else None


def _cpu_state(module: nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------------------------- training
class ModelEMA:
    """Exponential moving average of a model's state: after each optimizer step every floating-point entry
    (weights and BN statistics) becomes ``decay * ema + (1 - decay) * current``; integer entries are copied."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"an EMA decay must be in (0, 1), got {decay}", "train.ema_decay")
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        current = model.state_dict()
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(self.decay).add_(current[name].detach(), alpha=1.0 - self.decay)
            else:
                value.copy_(current[name])


@dataclass
class TrainResult:
    output_dir: Path
    steps: int
    epochs_done: int
    history: List[Dict[str, Any]] = field(default_factory=list)
    checkpoint: Optional[Path] = None
    stopped_early: bool = False
    model: Optional[nn.Module] = None       # the trained model, raw weights (not wrapped in DDP)
    ema: Optional[nn.Module] = None         # its moving average when train.ema_decay > 0


def _workers(requested: int) -> int:
    """Data-loading processes: as the config asks, but not more than this machine has cores."""
    return max(0, min(requested, os.cpu_count() or 1))


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker's torch and random generators from the loader's generator; NumPy's global one too.
    # (The dataset itself draws from generators seeded by (seed, epoch, index), whichever worker runs it.)
    np.random.seed(torch.initial_seed() % 2**32)


def _append_jsonl(path: Path, entry: Dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _to_device(batch: Dict[str, Any], device: torch.device) -> Tuple[torch.Tensor, List[torch.Tensor], List[torch.Tensor]]:
    nb = device.type == "cuda"
    moved: Dict[int, torch.Tensor] = {}

    def once(tensors: List[torch.Tensor]) -> List[torch.Tensor]:
        # Outputs with identical targets share one tensor in the batch (collate_samples): copy it once.
        for t in tensors:
            if id(t) not in moved:
                moved[id(t)] = t.to(device, non_blocking=nb)
        return [moved[id(t)] for t in tensors]

    images = batch["image"].to(device, non_blocking=nb)
    return images, once(batch["targets"]), once(batch["target_weights"])


def _check_train_config(cfg: Config) -> None:
    t = cfg.train
    if t.batch_size < 1:
        raise ConfigError(f"train.batch_size must be at least 1, got {t.batch_size}", "train.batch_size")
    if t.accumulate_steps < 1:
        raise ConfigError(f"train.accumulate_steps must be at least 1, got {t.accumulate_steps}", "train.accumulate_steps")
    if not 0.0 <= t.ema_decay < 1.0:
        raise ConfigError(f"train.ema_decay must be in [0, 1), got {t.ema_decay}", "train.ema_decay")
    if t.keep_checkpoints < 0:
        raise ConfigError(f"train.keep_checkpoints must be 0 (all) or more, got {t.keep_checkpoints}", "train.keep_checkpoints")
    if t.lr_reference_batch < 0:
        raise ConfigError(f"train.lr_reference_batch must be 0 or more, got {t.lr_reference_batch}", "train.lr_reference_batch")
    scaled_lr(cfg)


@contextlib.contextmanager
def _determinism(deterministic: bool, device: torch.device) -> Iterator[None]:
    """train.deterministic for the duration of a run; the global switches are restored afterwards."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.backends.cudnn.benchmark)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")   # deterministic cuBLAS needs it
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    else:
        # Fixed input size: cuDNN's autotuner picks the fastest kernels once.
        torch.backends.cudnn.benchmark = device.type == "cuda"
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.benchmark = previous[2]


def _resume_position(state: Dict[str, Any], cfg: Config, world: int, log: Callable[[str], None]) -> int:
    """Batches of the current epoch already done by each process, converted when the number of processes or the
    batch size changed since the checkpoint (the first samples of the epoch's permutation are the ones done)."""
    t = cfg.train
    done = int(state["batch_in_epoch"])
    saved = (int(state.get("world_size", world)), int(state.get("batch_size", t.batch_size)),
             int(state.get("accumulate_steps", t.accumulate_steps)))
    if saved == (world, t.batch_size, t.accumulate_steps):
        return done
    samples = done * saved[0] * saved[1]
    per_step = world * t.batch_size * t.accumulate_steps
    converted = samples // per_step * t.accumulate_steps
    log(f"warning: the checkpoint was written by {saved[0]} process(es) x batch {saved[1]} x {saved[2]} accumulated; "
        f"continuing the epoch after {converted * world * t.batch_size} of its {samples} samples done (not an exact resume)")
    return converted


def train(
    cfg: Config,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    val_records: Optional[Sequence[PersonRecord]] = None,
    on_epoch_end: Optional[Callable[[Dict[str, Any]], None]] = None,
    on_step: Optional[Callable[[Dict[str, Any]], None]] = None,
) -> TrainResult:
    """Train cfg's model on cfg's data; returns where the checkpoints are and the per-epoch history.

    Run under torchrun for data parallelism (see the module docstring). ``on_step`` is called in every process
    after each optimizer step with ``step``, ``epoch``, ``loss`` (mean over processes), ``lr`` (the rate of that
    step), ``rank`` and ``indices`` (the dataset indices this process trained on in that step);
    ``on_epoch_end`` (rank 0 only) with each history entry.
    """
    _check_train_config(cfg)
    dist_info, device = init_distributed(cfg.train.device)
    try:
        with _determinism(cfg.train.deterministic, device):
            return _train(cfg, dist_info, device, resume, progress, log, val_records, on_epoch_end, on_step)
    finally:
        if dist_info.started_here and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: Config, dist_info: DistInfo, device: torch.device, resume: bool, progress: bool,
           log: Callable[[str], None], val_records: Optional[Sequence[PersonRecord]],
           on_epoch_end: Optional[Callable[[Dict[str, Any]], None]],
           on_step: Optional[Callable[[Dict[str, Any]], None]]) -> TrainResult:
    from tqdm import tqdm

    t = cfg.train
    main, world, acc = dist_info.is_main, dist_info.world_size, t.accumulate_steps

    def say(message: str) -> None:
        if main:
            log(message)

    out = Path(cfg.output_dir)
    ckpt_dir = out / "checkpoints"
    if main:
        out.mkdir(parents=True, exist_ok=True)
    amp_enabled, amp_dtype = amp_settings(t.amp, device)
    seed_everything(t.seed)

    found = find_resume_checkpoint(ckpt_dir, say) if resume and main else None
    if resume and dist_info.enabled:
        # Rank 0 alone checks the checkpoints (and sets corrupt ones aside); the others read the one it chose.
        chosen = [None if found is None else str(found[0])]
        dist.broadcast_object_list(chosen, src=0)
        if not main and chosen[0] is not None:
            found = (Path(chosen[0]), load_training_state(Path(chosen[0])))
    if resume and found is None:
        say(f"no checkpoint in {ckpt_dir}; starting from scratch")
    resume_from, state = found if found is not None else (None, None)

    model = build_model(cfg, load=resume_from is None)
    specs = output_specs(model, cfg)
    codecs = build_codecs(specs, cfg)
    records = load_records(cfg, "train")
    if any(s.people == "all" for s in specs):
        attach_others(records)
    dataset = make_dataset(cfg, records, codecs, train=True, model=model)
    steps_per_epoch = len(dataset) // world // t.batch_size // acc
    if steps_per_epoch == 0:
        detail = f" ({world} processes x {t.batch_size} x {acc} accumulated)" if world * acc > 1 else ""
        raise ConfigError(f"{len(dataset)} training samples are fewer than one batch of {world * t.batch_size * acc}"
                          f"{detail}", "train.batch_size")
    batches_per_epoch = steps_per_epoch * acc
    sampler = EpochSampler(len(dataset), t.seed, rank=dist_info.rank, world_size=world)
    model.to(device)
    memory_format = torch.channels_last if t.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    if t.sync_bn and dist_info.enabled:
        if device.type != "cuda":
            raise ConfigError("train.sync_bn needs CUDA devices (PyTorch's SyncBatchNorm has no CPU version)", "train.sync_bn")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    lr = scaled_lr(cfg, world)
    optimizer = build_optimizer(cfg, model, lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor_fn(cfg, steps_per_epoch))
    scaler = torch.amp.GradScaler(device.type, enabled=amp_enabled and amp_dtype == torch.float16)
    ema = ModelEMA(model, t.ema_decay) if t.ema_decay > 0 else None

    step, epoch, batch_in_epoch = 0, 0, 0
    history: List[Dict[str, Any]] = []
    unreadable, seen = 0, 0
    epoch_unreadable = 0    # unreadable samples drawn so far this epoch, all processes
    epoch_loss_sum, epoch_loss_count = 0.0, 0
    if resume_from is not None:
        assert state is not None
        if "model" in state:        # weights.safetensors holds the EMA; the raw weights are in the state
            report = compare_state_dicts(model, state["model"])
            if not report.ok:
                raise CheckpointError(f"does not fit {cfg.model.name}: {report.describe()}", resume_from / STATE_FILE)
            model.load_state_dict(state["model"], strict=False)
        else:
            load_weights(model, resume_from / WEIGHTS_FILE)
        if ema is not None:
            ema.module.load_state_dict(state["ema"] if "ema" in state else model.state_dict())
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        per_rank = state.get("rng_ranks") or [state["rng"]]
        _set_rng_state(per_rank[dist_info.rank] if len(per_rank) == world else state["rng"])
        step, epoch = int(state["step"]), int(state["epoch"])
        batch_in_epoch = _resume_position(state, cfg, world, say)
        history = json.loads(state["history"])
        unreadable, seen = int(state["unreadable"]), int(state["seen"])
        epoch_unreadable = int(state.get("epoch_unreadable", 0))
        epoch_loss_sum, epoch_loss_count = float(state.get("epoch_loss_sum", 0.0)), int(state.get("epoch_loss_count", 0))
        say(f"resumed from {resume_from} (step {step}, epoch {epoch}, batch {batch_in_epoch})")
        if main:
            # Epochs logged after this checkpoint by the killed run are logged again by this one.
            with atomic_path(out / "metrics.jsonl") as tmp:
                Path(tmp).write_text("".join(json.dumps(entry) + "\n" for entry in history))
    if main:
        (out / "config.yaml").write_text(cfg.to_yaml())
    metadata = {"model": cfg.model.name, "num_keypoints": str(cfg.model.num_keypoints),
                "skeleton": cfg.data.skeleton, "input_size": "x".join(map(str, cfg.input_hw))}
    if ema is not None:
        metadata["ema_decay"] = str(t.ema_decay)
    net: nn.Module = model
    if dist_info.enabled:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        say(f"data parallel: {world} processes ({dist_info.backend}), batch {t.batch_size} per process"
            f"{f' x {acc} accumulated' if acc > 1 else ''}, lr {lr:g}"
            f"{f' ({t.lr:g} scaled {t.lr_scale})' if lr != t.lr else ''}")
    elif lr != t.lr:
        say(f"lr {lr:g} ({t.lr:g} scaled {t.lr_scale})")

    def checkpoint() -> Path:
        rng_ranks: List[Any] = [_rng_state()]
        if dist_info.enabled:
            rng_ranks = [None] * world
            dist.all_gather_object(rng_ranks, _rng_state())
        if not main:
            return ckpt_dir / f"step_{step:08d}"
        state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                 "rng": rng_ranks[0], "rng_ranks": rng_ranks, "step": step, "epoch": epoch,
                 "batch_in_epoch": batch_in_epoch, "world_size": world, "batch_size": t.batch_size,
                 "accumulate_steps": acc, "history": json.dumps(history), "unreadable": unreadable, "seen": seen,
                 "epoch_unreadable": epoch_unreadable,
                 "epoch_loss_sum": epoch_loss_sum, "epoch_loss_count": epoch_loss_count}
        if ema is not None:
            state["model"], state["ema"] = _cpu_state(model), _cpu_state(ema.module)
        return save_checkpoint(ckpt_dir, ema.module if ema is not None else model, state, metadata,
                               keep=t.keep_checkpoints)

    workers = _workers(t.workers)
    # One loader for the whole run (persistent workers); its own generator seeds the workers, so creating it
    # leaves the global torch RNG, which is checkpointed, untouched.
    loader = DataLoader(_EpochIndexed(dataset), batch_size=t.batch_size, sampler=_WithEpoch(sampler),
                        num_workers=workers, drop_last=True, pin_memory=device.type == "cuda",
                        persistent_workers=workers > 0, worker_init_fn=_seed_worker if workers else None,
                        collate_fn=collate_samples,
                        generator=torch.Generator().manual_seed(t.seed))
    start_time = time.time()
    last_ckpt: Optional[Path] = resume_from
    stopped_early = False
    total_steps = t.epochs * steps_per_epoch if not t.max_steps else min(t.max_steps, t.epochs * steps_per_epoch)
    while epoch < t.epochs and step < total_steps and not stopped_early:
        net.train()
        sampler.set_epoch(epoch, batch_in_epoch * t.batch_size)
        epoch_start, steps_timed = time.time(), 0
        bar = tqdm(total=steps_per_epoch, initial=batch_in_epoch // acc, desc=f"epoch {epoch + 1}/{t.epochs}",
                   disable=not (progress and main), leave=False, dynamic_ncols=True, mininterval=0.5)
        group_loss = torch.zeros((), device=device)
        group_seen, group_unreadable, group_indices = 0, 0, []
        for batch in loader:
            last_of_group = (batch_in_epoch + 1) % acc == 0
            # A batch of unreadable images only (zeros, zero target weight) has no gradient, and its forward would
            # pull the BatchNorm running statistics towards zero images: a single process skips it. DDP processes
            # must all run theirs (the forward and the backward are collective).
            if dist_info.enabled or bool(batch["ok"].any()):
                images, targets, weights = _to_device(batch, device)
                images = images.contiguous(memory_format=memory_format)
                # Gradients of the first batches of a group stay local; the last backward all-reduces their sum.
                sync = net.no_sync() if dist_info.enabled and not last_of_group else contextlib.nullcontext()
                with sync:
                    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_enabled):
                        preds = net(images)
                    loss, _ = total_loss(specs, preds, targets, weights)
                    scaler.scale(loss / acc).backward()
                group_loss += loss.detach().float()
            group_seen += len(batch["ok"])
            group_unreadable += int((~batch["ok"]).sum())
            group_indices += batch["index"].tolist()
            batch_in_epoch += 1
            if not last_of_group:
                continue
            out_of_time = bool(t.time_limit) and time.time() - start_time > t.time_limit
            # One all-reduce gives every process the same mean loss, image counts and stop decision.
            totals = torch.stack([group_loss / acc, *torch.tensor([group_unreadable, group_seen, out_of_time],
                                                                  dtype=torch.float32, device=device)])
            if dist_info.enabled:
                dist.all_reduce(totals)
            mean_loss, group_unreadable_all, group_seen_all, stop = totals.tolist()
            mean_loss /= world
            seen += int(group_seen_all)
            unreadable += int(group_unreadable_all)
            epoch_unreadable += int(group_unreadable_all)
            # A sample is drawn at most once an epoch, so this epoch's count is a lower bound on the unreadable
            # share of the training set: the moment it is over the limit, the run stops, whatever the rest holds.
            if epoch_unreadable > t.max_unreadable_fraction * len(dataset):
                raise DataError(f"{epoch_unreadable} of the {len(dataset)} training samples could not be read "
                                f"(over {t.max_unreadable_fraction:.0%}); stopping", cfg.data.root)
            if group_unreadable_all >= group_seen_all:
                # Not one readable image in the group: no step (momentum and weight decay would still move the
                # weights, and the schedule would advance), no loss logged, no checkpoint.
                optimizer.zero_grad(set_to_none=True)
                group_loss = torch.zeros((), device=device)
                group_seen, group_unreadable, group_indices = 0, 0, []
                if stop > 0:
                    stopped_early = batch_in_epoch < batches_per_epoch
                    break
                if batch_in_epoch >= batches_per_epoch:
                    break
                continue
            if not math.isfinite(mean_loss):
                raise FloatingPointError(f"loss became {mean_loss} at step {step}; lower train.lr or check the data")
            if t.grad_clip > 0:
                scaler.unscale_(optimizer)      # clip the true gradients, not the fp16-scaled ones
                nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
            step_lr = optimizer.param_groups[0]["lr"]
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            if ema is not None:
                ema.update(model)
            step += 1
            steps_timed += 1
            epoch_loss_sum += mean_loss
            epoch_loss_count += 1
            elapsed = time.time() - epoch_start
            bar.set_postfix(loss=f"{epoch_loss_sum / epoch_loss_count:.3g}",
                            img_s=f"{steps_timed * t.batch_size * acc * world / max(elapsed, 1e-9):.1f}")
            bar.update(1)
            if on_step:
                on_step({"step": step, "epoch": epoch, "loss": mean_loss, "lr": step_lr, "rank": dist_info.rank,
                         "indices": group_indices})
            group_loss = torch.zeros((), device=device)
            group_seen, group_unreadable, group_indices = 0, 0, []
            if t.checkpoint_every and step % t.checkpoint_every == 0:
                last_ckpt = checkpoint()
            if step >= total_steps or stop > 0:
                stopped_early = batch_in_epoch < batches_per_epoch
                break
            if batch_in_epoch >= batches_per_epoch:
                break
        bar.close()
        if batch_in_epoch >= batches_per_epoch:
            epoch += 1
            batch_in_epoch = 0
            epoch_unreadable = 0
        entry: Dict[str, Any] = {"epoch": epoch, "epochs_done": round(step / steps_per_epoch, 3), "step": step,
                                 "loss": epoch_loss_sum / max(epoch_loss_count, 1),
                                 "lr": optimizer.param_groups[0]["lr"], "seconds": round(time.time() - epoch_start, 2),
                                 "unreadable_images": unreadable}
        if batch_in_epoch == 0:
            epoch_loss_sum, epoch_loss_count = 0.0, 0
        last_epoch = epoch >= t.epochs or step >= total_steps or stopped_early
        if val_records is not None and ((t.eval_every and epoch % t.eval_every == 0) or last_epoch):
            evaluated = ema.module if ema is not None else model
            _broadcast_buffers(evaluated)
            metrics = evaluate_model(cfg, evaluated, val_records, progress=False, write=False)
            entry.update({k: v for k, v in metrics.items() if k in ("pck", "Mean", "Mean@0.1") or k in COCO_STAT_NAMES})
            score = _primary_metric(cfg, metrics)
            if main and score is not None and score > max((_primary_metric(cfg, h) or -1.0 for h in history), default=-1.0):
                # The best weights so far, kept apart from the rolling checkpoints (a time limit or a late
                # decline must not lose them).
                save_weights(evaluated, out / "best" / WEIGHTS_FILE, metadata={**metadata, "epoch": str(epoch),
                                                                               "val_metric": f"{score:.6g}"})
                entry["best"] = True
        history.append(entry)
        if main:
            _append_jsonl(out / "metrics.jsonl", entry)
            if on_epoch_end:
                on_epoch_end(entry)
        say(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.items()))
        last_ckpt = checkpoint()
        if _any_process(bool(t.time_limit) and time.time() - start_time > t.time_limit, device) and not last_epoch:
            say(f"time limit of {t.time_limit:.0f} s reached; stopping (resume with --resume)")
            stopped_early = True
    if dist_info.enabled:
        dist.barrier()      # nobody leaves (and destroys the group) while rank 0 still writes
    return TrainResult(out, step, epoch, history, last_ckpt, stopped_early, model=model,
                       ema=ema.module if ema is not None else None)


# ------------------------------------------------------------------------------------------- evaluation
@dataclass
class Predictions:
    keypoints: np.ndarray        # N x K x 2 image coordinates
    scores: np.ndarray           # N x K heatmap maxima
    centers: np.ndarray
    scales: np.ndarray
    image_ids: np.ndarray
    box_scores: np.ndarray
    gt_keypoints: np.ndarray     # N x K x 3 as annotated


def run_inference(cfg: Config, model: nn.Module, records: Sequence[PersonRecord], progress: bool = True) -> Predictions:
    """Crops every record, runs the model (flip test per cfg.test) and decodes to image coordinates.

    In a process group of several processes (training under torchrun) each process predicts one contiguous
    share of the records and every process receives all predictions, in the records' order.
    """
    if not _distributed():
        return _run_inference_shard(cfg, model, records, progress)
    rank, world = dist.get_rank(), dist.get_world_size()
    bounds = [len(records) * r // world for r in range(world + 1)]
    mine = _run_inference_shard(cfg, model, list(records)[bounds[rank]:bounds[rank + 1]], progress and rank == 0)
    shares: List[Any] = [None] * world
    dist.all_gather_object(shares, mine)
    filled = [s for s in shares if len(s.image_ids)]
    if not filled:
        return shares[0]
    return Predictions(*(np.concatenate([getattr(s, f) for s in filled]) for f in Predictions.__dataclass_fields__))


def _run_inference_shard(cfg: Config, model: nn.Module, records: Sequence[PersonRecord], progress: bool) -> Predictions:
    from tqdm import tqdm

    device = next(model.parameters()).device
    specs = output_specs(model, cfg)
    codec = build_codecs(specs, cfg)[-1]
    test_scales = check_test_scales(cfg.test.scales)
    center_xy = crop_center_on_heatmap(codec)
    # One dataset per scale factor f: the same centre with box_padding x f, i.e. a window f times larger.
    workers = -(-_workers(min(cfg.train.workers, 4)) // len(test_scales))
    loaders = [DataLoader(make_dataset(replace(cfg, data=replace(cfg.data, box_padding=cfg.data.box_padding * f)),
                                       records, [], train=False, model=model),
                          batch_size=cfg.test.batch_size, shuffle=False, num_workers=workers)
               for f in test_scales]
    flip_perm = dataset_skeleton(cfg).flip_permutation() if cfg.test.flip_test else None
    was_training = model.training
    model.eval()
    parts: Dict[str, List[np.ndarray]] = {k: [] for k in ("kp", "sc", "c", "s", "id", "bs", "gt")}
    for batches in tqdm(zip(*loaders), total=len(loaders[0]), desc="inference", disable=not progress, leave=False,
                        dynamic_ncols=True):
        crops = [b["image"].to(device) for b in batches]
        heatmaps = predict_heatmaps_multiscale(model, crops, test_scales, flip_perm, cfg.test.shift_heatmap, center_xy)
        batch = batches[0]
        # Decoded in the f = 1 crop: its centre, and the first scale's window divided by its factor.
        centers, scales = batch["center"].numpy(), batch["scale"].numpy() / test_scales[0]
        coords, scores = decode_to_image(codec, heatmaps, centers, scales, cfg.input_hw)
        for key, value in (("kp", coords), ("sc", scores), ("c", centers), ("s", scales), ("id", batch["image_id"].numpy()),
                           ("bs", batch["score"].numpy()), ("gt", batch["keypoints"].numpy())):
            parts[key].append(value)
    model.train(was_training)
    cat = {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in parts.items()}
    return Predictions(cat["kp"], cat["sc"], cat["c"], cat["s"], cat["id"], cat["bs"], cat["gt"])


def evaluate_model(cfg: Config, model: nn.Module, records: Sequence[PersonRecord], progress: bool = True,
                   write: bool = True, results_path: Optional[Path] = None) -> Dict[str, Any]:
    """Metrics of cfg.test.metric on the given records (COCO: all ten AP/AR numbers; PCK: per joint)."""
    from . import metrics

    if cfg.test.metric == "coco":
        check_nms(cfg)   # before the (long) inference
    preds = run_inference(cfg, model, records, progress=progress)
    skeleton = dataset_skeleton(cfg)
    if cfg.test.metric == "pck":
        if skeleton.torso is None:
            raise ConfigError(f"keypoint set {skeleton.name!r} has no torso joints for PCK", "test.metric")
        res = metrics.pck(preds.keypoints, preds.gt_keypoints[..., :2], preds.gt_keypoints[..., 2],
                          skeleton.torso, alpha=cfg.test.pck_alpha)
        return {"pck": float(res["mean"]), "per_joint": dict(zip(skeleton.keypoints, map(float, res["per_joint"]))),
                "alpha": cfg.test.pck_alpha, "people": int(res["num_people"]), "excluded_people": int(res["excluded_people"]),
                # per-person arrays for the PCK curve and reports (posekit eval); not printed or logged
                "samples": {"pred": preds.keypoints, "gt": preds.gt_keypoints}}
    if cfg.test.metric == "pckh":
        head_size = np.array([r.extras.get("head_size", np.nan) for r in records], dtype=np.float64)
        if not np.isfinite(head_size).all():
            raise ConfigError("test.metric pckh needs MPII head sizes: use the valid.h5 annotations "
                              "(data.val_ann: annot/valid.h5)", "test.metric")
        pred, gt, annotated = preds.keypoints, preds.gt_keypoints[..., :2], preds.gt_keypoints[..., 2] > 0
        if cfg.data.keypoint_subset is not None:
            # A subset of MPII's joints (CPM's 14 parts) is scored in MPII's order; the joints the model does not
            # predict (pelvis, thorax) count as unannotated, as the release's benchmark leaves them out.
            n, index = len(pred), list(cfg.data.keypoint_subset)
            pred16, gt16, ann16 = np.zeros((n, 16, 2)), np.zeros((n, 16, 2)), np.zeros((n, 16), dtype=bool)
            pred16[:, index], gt16[:, index], ann16[:, index] = pred, gt, annotated
            pred, gt, annotated = pred16, gt16, ann16
        if pred.shape[1] != 16:
            raise ConfigError(f"PCKh is defined on MPII's 16 joints; the model predicts {pred.shape[1]}", "test.metric")
        res = metrics.pckh(pred, gt, annotated, head_size)
        out = {k: float(res[k]) for k in ("Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Mean", "Mean@0.1")}
        out["table"] = metrics.format_pckh_table(res)
        out["samples"] = {"pred": pred, "gt": gt, "annotated": annotated, "head_size": head_size}
        return out
    if cfg.test.metric == "coco":
        results = coco_results(cfg, preds, skeleton)
        path = results_path or Path(cfg.output_dir) / "results" / "keypoints_results.json"
        if write:
            path.parent.mkdir(parents=True, exist_ok=True)
            metrics.write_coco_results(results, path)
        stats = metrics.coco_evaluate(results, _join(cfg.data.root, cfg.data.val_ann), sigmas=skeleton.sigmas,
                                      image_ids=cfg.test.image_ids)
        stats = dict(stats)
        if write:
            stats["results_file"] = str(path)
        stats["boxes"] = "ground truth" if cfg.test.use_gt_bbox else f"detections ({cfg.test.det_file})"
        stats["nms"] = cfg.test.nms if cfg.test.nms == "none" else f"{cfg.test.nms} (threshold {cfg.test.oks_thre:g})"
        return stats
    raise ConfigError(f"test.metric must be coco, pck or pckh, got {cfg.test.metric!r}", "test.metric")


NMS_MODES = ("oks", "soft_oks", "none")


def check_nms(cfg: Config) -> None:
    if cfg.test.nms not in NMS_MODES:
        raise ConfigError(f"test.nms must be {', '.join(NMS_MODES)}, got {cfg.test.nms!r}", "test.nms")


def coco_results(cfg: Config, preds: Predictions, skeleton: Skeleton) -> List[Dict[str, Any]]:
    """Official HRNet post-processing: rescoring, OKS-NMS per image, COCO results dicts."""
    from . import metrics

    kpts = np.concatenate([preds.keypoints, preds.scores[..., None]], axis=-1)
    areas = np.prod(preds.scales * 200.0, axis=1)
    results = [{"image_id": int(i), "category_id": 1, "keypoints": k.reshape(-1).tolist(), "score": float(s), "area": float(a)}
               for i, k, s, a in zip(preds.image_ids, kpts, preds.box_scores, areas)]
    check_nms(cfg)
    # "none": rescoring only — no OKS exceeds an infinite threshold, so every person is kept.
    threshold = math.inf if cfg.test.nms == "none" else cfg.test.oks_thre
    kept = metrics.nms_per_image(results, oks_threshold=threshold, keypoint_threshold=cfg.test.in_vis_thre,
                                 sigmas=skeleton.sigmas, soft=cfg.test.nms == "soft_oks")
    for r in kept:
        r.pop("area", None)
    return kept
