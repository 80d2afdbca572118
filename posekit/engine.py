"""Training and evaluation loops: data, model, loss, optimiser and checkpoints wired from a Config.

Checkpoints are directories ``<output_dir>/checkpoints/step_00001234/`` holding ``weights.safetensors``
and ``state.pt`` (optimizer, scheduler, scaler, RNG, position). A directory is written under a temporary
name, fsynced and renamed, then the one-line file ``checkpoints/last`` is replaced atomically: a run killed
at any moment leaves the previous checkpoint intact, and ``--resume`` continues from ``last``.
"""
from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Sampler

from .checkpoints import atomic_path, fsync_dir, load_weights, read_state_dict, save_weights
from .codecs import OutputSpec, build_codec
from .config import Config
from .data.dataset import TopDownDataset
from .data.records import PersonRecord, attach_others
from .errors import CheckpointError, ConfigError, DataError
from .inference import check_test_scales, crop_center_on_heatmap, decode_to_image, predict_heatmaps_multiscale
from .losses import total_loss
from .metrics import COCO_STAT_NAMES
from .models import create_model
from .skeletons import Skeleton, get_skeleton

KEEP_CHECKPOINTS = 3


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
    return [build_codec(s, cfg.input_hw, post_process=cfg.test.post_process, blur_kernel=cfg.test.blur_kernel)
            for s in specs]


def dataset_skeleton(cfg: Config) -> Skeleton:
    """The keypoint set the model sees: cfg.data.skeleton, reduced to cfg.data.keypoint_subset if given."""
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
    if data.format in ("coco", "synthetic"):
        from .data.coco import coco_image_index, read_coco_detections, read_coco_keypoints

        ann = _join(data.root, data.train_ann if train else data.val_ann)
        images = _join(data.root, data.train_images if train else data.val_images)
        if not train and not cfg.test.use_gt_bbox:
            if not cfg.test.det_file:
                raise ConfigError("test.use_gt_bbox is false but test.det_file is not set", "test.det_file")
            records = read_coco_detections(cfg.test.det_file, coco_image_index(ann), images,
                                           score_threshold=cfg.test.image_thre,
                                           num_keypoints=cfg.model.num_keypoints)
        else:
            records = read_coco_keypoints(ann, images, train=train)
    elif data.format == "mpii":
        from .data.mpii import read_mpii_h5, read_mpii_json

        ann = _join(data.root, data.train_ann if train else data.val_ann)
        reader = read_mpii_h5 if ann.endswith(".h5") else read_mpii_json   # Tompson's valid.h5 or HRNet's JSON
        records = reader(ann, _join(data.root, data.train_images if train else data.val_images))
    elif data.format == "flic":
        from .data.flic import read_flic_h5

        records = read_flic_h5(_join(data.root, data.train_ann if train else data.val_ann),
                               _join(data.root, data.train_images if train else data.val_images))
    elif data.format == "lsp":
        from .data.lsp import lsp_standard_split

        # The training half alone is usable where only LSP images 1-1000 are present (as in ../shared/data).
        train_records, test_records = lsp_standard_split(data.root, data.extra_root, require_test=not train)
        records = train_records if train else test_records
    else:
        raise ConfigError(f"data.format must be coco, mpii, flic, lsp or synthetic, got {data.format!r}", "data.format")
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


def make_dataset(cfg: Config, records: Sequence[PersonRecord], codecs: Sequence[Any], train: bool,
                 model: Optional[nn.Module] = None) -> TopDownDataset:
    """The top-down dataset for cfg; a model with ``center_map_sigma`` (CPM) gets its centre-map channel."""
    return TopDownDataset(
        records, dataset_skeleton(cfg), cfg.input_hw, codecs, train=train, augment=cfg.augment,
        mean=cfg.data.mean, std=cfg.data.std, color_rgb=cfg.data.color_rgb, box_padding=cfg.data.box_padding,
        box_extension=cfg.data.box_extension, seed=cfg.train.seed, skip_unreadable=train, center_map_sigma=getattr(model, "center_map_sigma", None),
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
        return order[self.rank::self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.start:].tolist())

    def __len__(self) -> int:
        return max(0, len(self.indices()) - self.start)


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


def build_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    t = cfg.train
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
    return {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }


def _set_rng_state(state: Dict[str, Any]) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])


def save_checkpoint(checkpoint_dir: Path, model: nn.Module, state: Dict[str, Any], metadata: Dict[str, str]) -> Path:
    """Write step_N/{weights.safetensors,state.pt} atomically, point ``last`` at it, keep the newest few."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    name = f"step_{state['step']:08d}"
    final = checkpoint_dir / name
    tmp = checkpoint_dir / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_weights(model, tmp / "weights.safetensors", metadata={**metadata, "step": str(state["step"])})
    with open(tmp / "state.pt", "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    with atomic_path(checkpoint_dir / "last") as p:
        Path(p).write_text(name + "\n")
    fsync_dir(checkpoint_dir)
    steps = sorted(d for d in checkpoint_dir.iterdir() if d.is_dir() and d.name.startswith("step_"))
    for old in steps[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def last_checkpoint(checkpoint_dir: Path) -> Optional[Path]:
    pointer = checkpoint_dir / "last"
    if not pointer.is_file():
        return None
    path = checkpoint_dir / pointer.read_text().strip()
    if not (path / "weights.safetensors").is_file() or not (path / "state.pt").is_file():
        raise CheckpointError("the checkpoint named by 'last' is incomplete", path)
    return path


def load_training_state(path: Path) -> Dict[str, Any]:
    try:
        return torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which one
        raise CheckpointError(f"cannot read training state ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
                              path / "state.pt") from None


# --------------------------------------------------------------------------------------------- training
@dataclass
class TrainResult:
    output_dir: Path
    steps: int
    epochs_done: int
    history: List[Dict[str, Any]] = field(default_factory=list)
    checkpoint: Optional[Path] = None
    stopped_early: bool = False


def _workers(requested: int) -> int:
    """Data-loading processes: as the config asks, but not more than this machine has cores."""
    return max(0, min(requested, os.cpu_count() or 1))


def _append_jsonl(path: Path, entry: Dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _to_device(batch: Dict[str, Any], device: torch.device) -> Tuple[torch.Tensor, List[torch.Tensor], List[torch.Tensor]]:
    nb = device.type == "cuda"
    images = batch["image"].to(device, non_blocking=nb)
    targets = [t.to(device, non_blocking=nb) for t in batch["targets"]]
    weights = [w.to(device, non_blocking=nb) for w in batch["target_weights"]]
    return images, targets, weights


def train(
    cfg: Config,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    val_records: Optional[Sequence[PersonRecord]] = None,
    on_epoch_end: Optional[Callable[[Dict[str, Any]], None]] = None,
) -> TrainResult:
    """Train cfg's model on cfg's data; returns where the checkpoints are and the per-epoch history."""
    from tqdm import tqdm

    t = cfg.train
    out = Path(cfg.output_dir)
    ckpt_dir = out / "checkpoints"
    out.mkdir(parents=True, exist_ok=True)
    device = select_device(t.device)
    amp_enabled, amp_dtype = amp_settings(t.amp, device)
    seed_everything(t.seed)

    resume_from = last_checkpoint(ckpt_dir) if resume else None
    if resume and resume_from is None:
        log(f"no checkpoint in {ckpt_dir}; starting from scratch")
    model = build_model(cfg, load=resume_from is None)
    specs = output_specs(model, cfg)
    codecs = build_codecs(specs, cfg)
    records = load_records(cfg, "train")
    if any(s.people == "all" for s in specs):
        attach_others(records)
    dataset = make_dataset(cfg, records, codecs, train=True, model=model)
    steps_per_epoch = len(dataset) // t.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(f"{len(dataset)} training samples are fewer than one batch of {t.batch_size}", "train.batch_size")
    sampler = EpochSampler(len(dataset), t.seed)
    model.to(device)
    optimizer = build_optimizer(cfg, model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor_fn(cfg, steps_per_epoch))
    scaler = torch.amp.GradScaler(device.type, enabled=amp_enabled and amp_dtype == torch.float16)

    step, epoch, batch_in_epoch = 0, 0, 0
    history: List[Dict[str, Any]] = []
    unreadable, seen = 0, 0
    if resume_from is not None:
        load_weights(model, resume_from / "weights.safetensors")
        state = load_training_state(resume_from)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        step, epoch, batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        history = json.loads(state["history"])
        unreadable, seen = state["unreadable"], state["seen"]
        log(f"resumed from {resume_from} (step {step}, epoch {epoch}, batch {batch_in_epoch})")
    (out / "config.yaml").write_text(cfg.to_yaml())
    metadata = {"model": cfg.model.name, "num_keypoints": str(cfg.model.num_keypoints),
                "skeleton": cfg.data.skeleton, "input_size": "x".join(map(str, cfg.input_hw))}

    def checkpoint() -> Path:
        state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                 "rng": _rng_state(), "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                 "history": json.dumps(history), "unreadable": unreadable, "seen": seen}
        return save_checkpoint(ckpt_dir, model, state, metadata)

    start_time = time.time()
    last_ckpt: Optional[Path] = resume_from
    stopped_early = False
    total_steps = t.epochs * steps_per_epoch if not t.max_steps else min(t.max_steps, t.epochs * steps_per_epoch)
    while epoch < t.epochs and step < total_steps and not stopped_early:
        model.train()
        dataset.set_epoch(epoch)
        sampler.set_epoch(epoch, batch_in_epoch * t.batch_size)
        loader = DataLoader(dataset, batch_size=t.batch_size, sampler=sampler, num_workers=_workers(t.workers),
                            drop_last=True, pin_memory=device.type == "cuda")
        loss_sum, loss_count, epoch_start = 0.0, 0, time.time()
        bar = tqdm(total=steps_per_epoch, initial=batch_in_epoch, desc=f"epoch {epoch + 1}/{t.epochs}",
                   disable=not progress, leave=False, dynamic_ncols=True, mininterval=0.5)
        for batch in loader:
            seen += len(batch["ok"])
            unreadable += int((~batch["ok"]).sum())
            if unreadable and seen >= 100 and unreadable > t.max_unreadable_fraction * seen:
                raise DataError(f"{unreadable} of {seen} training images could not be read "
                                f"(over {t.max_unreadable_fraction:.0%}); stopping", cfg.data.root)
            images, targets, weights = _to_device(batch, device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_enabled):
                preds = model(images)
            loss, _ = total_loss(specs, preds, targets, weights)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower train.lr or check the data")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if t.grad_clip > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            batch_in_epoch += 1
            loss_sum += loss.item()
            loss_count += 1
            elapsed = time.time() - epoch_start
            bar.set_postfix(loss=f"{loss_sum / loss_count:.3g}", img_s=f"{loss_count * t.batch_size / max(elapsed, 1e-9):.1f}")
            bar.update(1)
            if t.checkpoint_every and step % t.checkpoint_every == 0:
                last_ckpt = checkpoint()
            if step >= total_steps or (t.time_limit and time.time() - start_time > t.time_limit):
                stopped_early = batch_in_epoch < steps_per_epoch
                break
        bar.close()
        if batch_in_epoch >= steps_per_epoch:
            epoch += 1
            batch_in_epoch = 0
        entry: Dict[str, Any] = {"epoch": epoch, "epochs_done": round(step / steps_per_epoch, 3), "step": step, "loss": loss_sum / max(loss_count, 1),
                                 "lr": optimizer.param_groups[0]["lr"], "seconds": round(time.time() - epoch_start, 2),
                                 "unreadable_images": unreadable}
        last_epoch = epoch >= t.epochs or step >= total_steps or stopped_early
        if val_records is not None and ((t.eval_every and epoch % t.eval_every == 0) or last_epoch):
            metrics = evaluate_model(cfg, model, val_records, progress=False, write=False)
            entry.update({k: v for k, v in metrics.items() if k in ("pck", "Mean", "Mean@0.1") or k in COCO_STAT_NAMES})
        history.append(entry)
        _append_jsonl(out / "metrics.jsonl", entry)
        if on_epoch_end:
            on_epoch_end(entry)
        log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.items()))
        last_ckpt = checkpoint()
        if t.time_limit and time.time() - start_time > t.time_limit and not last_epoch:
            log(f"time limit of {t.time_limit:.0f} s reached; stopping (resume with --resume)")
            stopped_early = True
    return TrainResult(out, step, epoch, history, last_ckpt, stopped_early)


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
    """Crops every record, runs the model (flip test per cfg.test) and decodes to image coordinates."""
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

    preds = run_inference(cfg, model, records, progress=progress)
    skeleton = dataset_skeleton(cfg)
    if cfg.test.metric == "pck":
        if skeleton.torso is None:
            raise ConfigError(f"keypoint set {skeleton.name!r} has no torso joints for PCK", "test.metric")
        res = metrics.pck(preds.keypoints, preds.gt_keypoints[..., :2], preds.gt_keypoints[..., 2],
                          skeleton.torso, alpha=cfg.test.pck_alpha)
        return {"pck": float(res["mean"]), "per_joint": dict(zip(skeleton.keypoints, map(float, res["per_joint"]))),
                "alpha": cfg.test.pck_alpha, "people": int(res["num_people"]), "excluded_people": int(res["excluded_people"])}
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
        return out
    if cfg.test.metric == "coco":
        results = coco_results(cfg, preds, skeleton)
        path = results_path or Path(cfg.output_dir) / "results" / "keypoints_results.json"
        if write:
            path.parent.mkdir(parents=True, exist_ok=True)
            metrics.write_coco_results(results, path)
        stats = metrics.coco_evaluate(results, _join(cfg.data.root, cfg.data.val_ann), sigmas=skeleton.sigmas)
        stats = dict(stats)
        if write:
            stats["results_file"] = str(path)
        stats["boxes"] = "ground truth" if cfg.test.use_gt_bbox else f"detections ({cfg.test.det_file})"
        return stats
    raise ConfigError(f"test.metric must be coco, pck or pckh, got {cfg.test.metric!r}", "test.metric")


def coco_results(cfg: Config, preds: Predictions, skeleton: Skeleton) -> List[Dict[str, Any]]:
    """Official HRNet post-processing: rescoring, OKS-NMS per image, COCO results dicts."""
    from . import metrics

    kpts = np.concatenate([preds.keypoints, preds.scores[..., None]], axis=-1)
    areas = np.prod(preds.scales * 200.0, axis=1)
    results = [{"image_id": int(i), "category_id": 1, "keypoints": k.reshape(-1).tolist(), "score": float(s), "area": float(a)}
               for i, k, s, a in zip(preds.image_ids, kpts, preds.box_scores, areas)]
    kept = metrics.nms_per_image(results, oks_threshold=cfg.test.oks_thre, keypoint_threshold=cfg.test.in_vis_thre,
                                 sigmas=skeleton.sigmas)
    for r in kept:
        r.pop("area", None)
    return kept
