"""The training loop: data → loss → backward → step, with gradient accumulation, AMP, DDP under ``torchrun``,
an EMA of the weights, evaluation every few epochs, the best weights kept apart, and checkpoints that a killed
run resumes from exactly.

Under ``torchrun`` (WORLD_SIZE > 1 in the environment) :func:`train` runs DistributedDataParallel: NCCL on
GPUs, gloo on the CPU, an equal share of every epoch's permutation per process, losses averaged across
processes, evaluation sharded and gathered, and only rank 0 writes checkpoints, logs and metrics.jsonl.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..build import build_codecs, build_model, dataset_skeleton, load_records, make_dataset, output_specs
from ..codecs.base import OutputSpec
from ..config import Config, validate
from ..data.dataset import TopDownDataset, collate_samples
from ..data.records import PersonRecord, attach_others
from ..errors import CheckpointError, ConfigError, DataError
from ..evaluation.evaluate import evaluate_model, primary_metric
from ..evaluation.metrics import COCO_STAT_NAMES
from ..fileio import append_jsonl, atomic_path
from ..losses import total_loss
from ..runtime import (DistInfo, amp_settings, any_process, broadcast_buffers, data_workers, determinism,
                       init_distributed, seed_everything)
from ..skeletons import AUTO, write_skeleton_file
from ..weightfiles import compare_state_dicts, load_weights, save_weights
from .checkpointing import (STATE_FILE, WEIGHTS_FILE, cpu_state, find_resume_checkpoint, load_training_state,
                            rng_state, save_checkpoint, set_rng_state)
from .optim import ModelEMA, build_optimizer, lr_factor_fn, scaled_lr
from .sampler import EpochIndexed, EpochSampler, WithEpoch, seed_worker
from .tensorboard import tensorboard_logger


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


@dataclass
class TrainState:
    """Everything a resumed run needs besides the data: the model and its EMA, the optimizer, schedule and gradient
    scaler, the position in the epoch's permutation, the counters and the history so far. ``state_dict()`` is the
    content of a checkpoint's ``state.pt``; ``load_state_dict()`` reads it back, including the files written before
    this class existed (the same keys).

    ``world_size``, ``batch_size`` and ``accumulate_steps`` are this run's layout: a checkpoint written under
    another one resumes at the equivalent sample of the epoch (not exactly)."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    ema: Optional[ModelEMA]
    world_size: int = 1
    batch_size: int = 1
    accumulate_steps: int = 1
    step: int = 0                   # optimizer steps taken
    epoch: int = 0                  # epochs completed
    batch_in_epoch: int = 0         # batches of the current epoch done by each process
    history: List[Dict[str, Any]] = field(default_factory=list)
    unreadable: int = 0             # unreadable samples drawn so far, all processes
    seen: int = 0                   # samples drawn so far, all processes
    epoch_unreadable: int = 0       # unreadable samples drawn so far this epoch, all processes
    epoch_loss_sum: float = 0.0     # of the per-step mean losses of the current epoch
    epoch_loss_count: int = 0

    @property
    def weights(self) -> nn.Module:
        """The weights that are saved, evaluated and kept as the best: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.model

    def state_dict(self, rng_ranks: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
        """``rng_ranks``: every process's RNG state in rank order (gathered by the caller under DDP); by default
        this process's."""
        rng_ranks = rng_ranks if rng_ranks is not None else [rng_state()]
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "scaler": self.scaler.state_dict(), "rng": rng_ranks[0], "rng_ranks": rng_ranks,
                 "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                 "world_size": self.world_size, "batch_size": self.batch_size,
                 "accumulate_steps": self.accumulate_steps, "history": json.dumps(self.history),
                 "unreadable": self.unreadable, "seen": self.seen, "epoch_unreadable": self.epoch_unreadable,
                 "epoch_loss_sum": self.epoch_loss_sum, "epoch_loss_count": self.epoch_loss_count}
        if self.ema is not None:    # weights.safetensors holds the EMA, so the raw weights travel here
            state["model"], state["ema"] = cpu_state(self.model), cpu_state(self.ema.module)
        return state

    def load_state_dict(self, state: Dict[str, Any], rank: int = 0, log: Callable[[str], None] = print) -> None:
        """Restore from ``state`` (a ``state.pt``). The raw weights come from ``state['model']`` when it is there;
        otherwise the caller has loaded them (from the checkpoint's weights file) already."""
        if "model" in state:
            self.model.load_state_dict(state["model"], strict=False)
        if self.ema is not None:
            self.ema.module.load_state_dict(state["ema"] if "ema" in state else self.model.state_dict())
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        per_rank = state.get("rng_ranks") or [state["rng"]]
        set_rng_state(per_rank[rank] if len(per_rank) == self.world_size else state["rng"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.batch_in_epoch = self._position(state, log)
        self.history = json.loads(state["history"])
        self.unreadable, self.seen = int(state["unreadable"]), int(state["seen"])
        self.epoch_unreadable = int(state.get("epoch_unreadable", 0))
        self.epoch_loss_sum = float(state.get("epoch_loss_sum", 0.0))
        self.epoch_loss_count = int(state.get("epoch_loss_count", 0))

    def _position(self, state: Dict[str, Any], log: Callable[[str], None]) -> int:
        """Batches of the current epoch already done by each process, converted when the number of processes or
        the batch size changed since the checkpoint (the first samples of the epoch's permutation are the ones
        done)."""
        done = int(state["batch_in_epoch"])
        world, batch, acc = self.world_size, self.batch_size, self.accumulate_steps
        saved = (int(state.get("world_size", world)), int(state.get("batch_size", batch)),
                 int(state.get("accumulate_steps", acc)))
        if saved == (world, batch, acc):
            return done
        samples = done * saved[0] * saved[1]
        converted = samples // (world * batch * acc) * acc
        log(f"warning: the checkpoint was written by {saved[0]} process(es) x batch {saved[1]} x {saved[2]} "
            f"accumulated; continuing the epoch after {converted * world * batch} of its {samples} samples done "
            f"(not an exact resume)")
        return converted


@dataclass
class TrainRun:
    """What a run sets up once and never checkpoints: the settings, the process group, the data and the model's
    DDP wrapper."""

    cfg: Config
    dist: DistInfo
    device: torch.device
    say: Callable[[str], None]          # logs on rank 0, nothing elsewhere
    net: nn.Module                      # the model, wrapped in DDP under torchrun
    specs: List[OutputSpec]
    dataset_size: int
    sampler: EpochSampler
    loader: DataLoader
    steps_per_epoch: int
    total_steps: int
    amp_enabled: bool
    amp_dtype: torch.dtype
    memory_format: torch.memory_format
    metadata: Dict[str, str]            # written into every weights file
    start_time: float = field(default_factory=time.time)

    @property
    def batches_per_epoch(self) -> int:
        return self.steps_per_epoch * self.cfg.train.accumulate_steps

    @property
    def out(self) -> Path:
        return Path(self.cfg.output_dir)


@dataclass
class StepStats:
    """One accumulation group as every process saw it."""

    stepped: bool               # False: not one readable image in the group, so no optimizer step
    loss: float                 # mean over the group's batches and the processes
    lr: float                   # the rate of the step
    indices: List[int]          # the dataset indices this process trained on
    stop: bool                  # the time limit was reached in some process


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
    ``on_epoch_end`` (rank 0 only) with each history entry. With ``train.tensorboard`` rank 0 also logs both to
    OUTPUT/tensorboard/ (:mod:`posekit.training.tensorboard`).
    """
    validate(cfg)       # again: a config changed in Python after loading is checked too
    board = tensorboard_logger(cfg)     # before anything starts: a missing package is a one-line ConfigError
    dist_info, device = init_distributed(cfg.train.device)
    if board is not None and dist_info.is_main:
        on_step, on_epoch_end = board.chain(on_step, on_epoch_end)
    try:
        with determinism(cfg.train.deterministic, device):
            return _train(cfg, dist_info, device, resume, progress, log, val_records, on_epoch_end, on_step)
    finally:
        if board is not None:
            board.close()
        if dist_info.started_here and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: Config, dist_info: DistInfo, device: torch.device, resume: bool, progress: bool,
           log: Callable[[str], None], val_records: Optional[Sequence[PersonRecord]],
           on_epoch_end: Optional[Callable[[Dict[str, Any]], None]],
           on_step: Optional[Callable[[Dict[str, Any]], None]]) -> TrainResult:
    t = cfg.train
    say: Callable[[str], None] = log if dist_info.is_main else (lambda message: None)
    if dist_info.is_main:
        Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
    amp = amp_settings(t.amp, device)
    seed_everything(t.seed)
    found = _find_checkpoint(Path(cfg.output_dir) / "checkpoints", dist_info, say) if resume else None
    run, state = _build(cfg, dist_info, device, say, amp, found)
    last_checkpoint, stopped_early = (found[0] if found else None), False
    while state.epoch < t.epochs and state.step < run.total_steps and not stopped_early:
        epoch_start = time.time()
        stopped_early = _train_epoch(run, state, progress, on_step)
        entry = _end_epoch(run, state, seconds=time.time() - epoch_start)
        last_epoch = state.epoch >= t.epochs or state.step >= run.total_steps or stopped_early
        if val_records is not None and ((t.eval_every and state.epoch % t.eval_every == 0) or last_epoch):
            entry.update(_evaluate(run, state, val_records))
        _record_epoch(run, state, entry, on_epoch_end)
        last_checkpoint = _checkpoint(run, state)
        if _out_of_time(run, every_process=True) and not last_epoch:
            say(f"time limit of {t.time_limit:.0f} s reached; stopping (resume with --resume)")
            stopped_early = True
    if dist_info.enabled:
        dist.barrier()      # nobody leaves (and destroys the group) while rank 0 still writes
    return TrainResult(run.out, state.step, state.epoch, state.history, last_checkpoint, stopped_early,
                       model=state.model, ema=state.ema.module if state.ema is not None else None)


def _write_run_config(cfg: Config) -> None:
    """OUTPUT/config.yaml; a keypoint set read from the annotation file (data.skeleton: auto) is written beside it
    as OUTPUT/keypoints.yaml and named there, so that the run's config predicts without the training data."""
    saved = cfg
    if cfg.data.skeleton == AUTO:
        path = (Path(cfg.output_dir) / "keypoints.yaml").resolve()
        write_skeleton_file(dataset_skeleton(replace(cfg, data=replace(cfg.data, keypoint_subset=None))), path)
        saved = replace(cfg, data=replace(cfg.data, skeleton=str(path)))
    (Path(cfg.output_dir) / "config.yaml").write_text(saved.to_yaml())


def _find_checkpoint(checkpoint_dir: Path, dist_info: DistInfo, say: Callable[[str], None]
                     ) -> Optional[Tuple[Path, Dict[str, Any]]]:
    """The newest intact checkpoint and its state; None (start from scratch) when there is none."""
    found = find_resume_checkpoint(checkpoint_dir, say) if dist_info.is_main else None
    if dist_info.enabled:
        # Rank 0 alone checks the checkpoints (and sets corrupt ones aside); the others read the one it chose.
        chosen = [None if found is None else str(found[0])]
        dist.broadcast_object_list(chosen, src=0)
        if not dist_info.is_main and chosen[0] is not None:
            found = (Path(chosen[0]), load_training_state(Path(chosen[0])))
    if found is None:
        say(f"no checkpoint in {checkpoint_dir}; starting from scratch")
    return found


def _build(cfg: Config, dist_info: DistInfo, device: torch.device, say: Callable[[str], None],
           amp: Tuple[bool, torch.dtype], checkpoint: Optional[Tuple[Path, Dict[str, Any]]]) -> Tuple[TrainRun, TrainState]:
    """The model, data, optimizer and schedule that cfg describes, restored from ``checkpoint`` when given (before
    DDP wraps the model). Keep the steps in this order: building the model draws from the seeded RNGs, and a
    run must draw what an uninterrupted one would."""
    t, world, acc = cfg.train, dist_info.world_size, cfg.train.accumulate_steps
    model = build_model(cfg, load=checkpoint is None)
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
    sampler = EpochSampler(len(dataset), t.seed, rank=dist_info.rank, world_size=world)
    memory_format = torch.channels_last if t.channels_last else torch.contiguous_format
    model.to(device)
    model.to(memory_format=memory_format)
    if t.sync_bn and dist_info.enabled:
        if device.type != "cuda":
            raise ConfigError("train.sync_bn needs CUDA devices (PyTorch's SyncBatchNorm has no CPU version)", "train.sync_bn")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    lr = scaled_lr(cfg, world)
    optimizer = build_optimizer(cfg, model, lr=lr)
    state = TrainState(model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor_fn(cfg, steps_per_epoch)),
                       torch.amp.GradScaler(device.type, enabled=amp[0] and amp[1] == torch.float16),
                       ModelEMA(model, t.ema_decay) if t.ema_decay > 0 else None,
                       world_size=world, batch_size=t.batch_size, accumulate_steps=acc)
    if checkpoint is not None:
        _resume(cfg, state, *checkpoint, dist_info, say)
    if dist_info.is_main:
        _write_run_config(cfg)
    net: nn.Module = model
    scaled = f" ({t.lr:g} scaled {t.lr_scale})" if lr != t.lr else ""
    if dist_info.enabled:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        say(f"data parallel: {world} processes ({dist_info.backend}), batch {t.batch_size} per process"
            f"{f' x {acc} accumulated' if acc > 1 else ''}, lr {lr:g}{scaled}")
    elif scaled:
        say(f"lr {lr:g}{scaled}")
    metadata = {"model": cfg.model.name, "num_keypoints": str(cfg.model.num_keypoints),
                "skeleton": cfg.data.skeleton, "input_size": "x".join(map(str, cfg.input_hw))}
    if state.ema is not None:
        metadata["ema_decay"] = str(t.ema_decay)
    total_steps = t.epochs * steps_per_epoch if not t.max_steps else min(t.max_steps, t.epochs * steps_per_epoch)
    run = TrainRun(cfg, dist_info, device, say, net, specs, len(dataset), sampler, _loader(dataset, sampler, cfg, device),
               steps_per_epoch, total_steps, amp[0], amp[1], memory_format, metadata)
    return run, state


def _resume(cfg: Config, state: TrainState, path: Path, saved: Dict[str, Any], dist_info: DistInfo,
            say: Callable[[str], None]) -> None:
    if "model" in saved:        # weights.safetensors holds the EMA; the raw weights are in the state
        report = compare_state_dicts(state.model, saved["model"])
        if not report.ok:
            raise CheckpointError(f"does not fit {cfg.model.name}: {report.describe()}", path / STATE_FILE)
    else:
        load_weights(state.model, path / WEIGHTS_FILE)
    state.load_state_dict(saved, dist_info.rank, say)
    say(f"resumed from {path} (step {state.step}, epoch {state.epoch}, batch {state.batch_in_epoch})")
    if dist_info.is_main:
        # Epochs logged after this checkpoint by the killed run are logged again by this one.
        with atomic_path(Path(cfg.output_dir) / "metrics.jsonl") as tmp:
            Path(tmp).write_text("".join(json.dumps(entry) + "\n" for entry in state.history))


def _loader(dataset: TopDownDataset, sampler: EpochSampler, cfg: Config, device: torch.device) -> DataLoader:
    # One loader for the whole run (persistent workers); its own generator seeds the workers, so creating it
    # leaves the global torch RNG, which is checkpointed, untouched.
    t = cfg.train
    workers = data_workers(t.workers)
    return DataLoader(EpochIndexed(dataset), batch_size=t.batch_size, sampler=WithEpoch(sampler),
                      num_workers=workers, drop_last=True, pin_memory=device.type == "cuda",
                      persistent_workers=workers > 0, worker_init_fn=seed_worker if workers else None,
                      collate_fn=collate_samples, generator=torch.Generator().manual_seed(t.seed))


def _train_epoch(run: TrainRun, state: TrainState, progress: bool,
                 on_step: Optional[Callable[[Dict[str, Any]], None]]) -> bool:
    """The rest of the current epoch, one optimizer step per accumulation group; True when it stopped inside the
    epoch (time limit, max_steps)."""
    t, acc = run.cfg.train, state.accumulate_steps
    run.net.train()
    run.sampler.set_epoch(state.epoch, state.batch_in_epoch * t.batch_size)
    start, steps = time.time(), 0
    bar = tqdm(total=run.steps_per_epoch, initial=state.batch_in_epoch // acc, desc=f"epoch {state.epoch + 1}/{t.epochs}",
               disable=not (progress and run.dist.is_main), leave=False, dynamic_ncols=True, mininterval=0.5)
    batches = iter(run.loader)
    try:
        while state.batch_in_epoch < run.batches_per_epoch:
            stats = run_step(run, state, batches)
            if stats.stepped:
                steps += 1
                images_per_s = steps * t.batch_size * acc * state.world_size / max(time.time() - start, 1e-9)
                bar.set_postfix(loss=f"{state.epoch_loss_sum / state.epoch_loss_count:.3g}", img_s=f"{images_per_s:.1f}")
                bar.update(1)
                if on_step:
                    on_step({"step": state.step, "epoch": state.epoch, "loss": stats.loss, "lr": stats.lr,
                             "rank": run.dist.rank, "indices": stats.indices})
                if t.checkpoint_every and state.step % t.checkpoint_every == 0:
                    _checkpoint(run, state)
            if stats.stop or state.step >= run.total_steps:
                return state.batch_in_epoch < run.batches_per_epoch
        return False
    finally:
        bar.close()


def run_step(run: TrainRun, state: TrainState, batches: Iterator[Dict[str, Any]]) -> StepStats:
    """One optimizer step from the next ``accumulate_steps`` batches: the forward and backward of each (DDP
    all-reduces the gradients' sum on the last backward), then the step, clipped and scaled as cfg says, on their
    mean. A group without one readable image takes no step."""
    t, acc = run.cfg.train, state.accumulate_steps
    group_loss = torch.zeros((), device=run.device)
    seen, unreadable, indices = 0, 0, []
    for i in range(acc):
        batch = next(batches)
        # A batch of unreadable images only (zeros, zero target weight) has no gradient, and its forward would
        # pull the BatchNorm running statistics towards zero images: a single process skips it. DDP processes
        # must all run theirs (the forward and the backward are collective).
        if run.dist.enabled or bool(batch["ok"].any()):
            images, targets, weights = _to_device(batch, run.device)
            images = images.contiguous(memory_format=run.memory_format)
            # Gradients of the first batches of a group stay local; the last backward all-reduces their sum.
            sync = run.net.no_sync() if run.dist.enabled and i < acc - 1 else contextlib.nullcontext()
            with sync:
                with torch.autocast(run.device.type, dtype=run.amp_dtype, enabled=run.amp_enabled):
                    preds = run.net(images)
                loss, _ = total_loss(run.specs, preds, targets, weights)
                state.scaler.scale(loss / acc).backward()
            group_loss += loss.detach().float()
        seen += len(batch["ok"])
        unreadable += int((~batch["ok"]).sum())
        indices += batch["index"].tolist()
        state.batch_in_epoch += 1
    # One all-reduce gives every process the same mean loss, image counts and stop decision.
    totals = torch.stack([group_loss / acc, *torch.tensor([unreadable, seen, _out_of_time(run)],
                                                          dtype=torch.float32, device=run.device)])
    if run.dist.enabled:
        dist.all_reduce(totals)
    mean_loss, unreadable_all, seen_all, stop = totals.tolist()
    mean_loss /= state.world_size
    state.seen += int(seen_all)
    state.unreadable += int(unreadable_all)
    state.epoch_unreadable += int(unreadable_all)
    _check_unreadable_share(run, state)
    lr = state.optimizer.param_groups[0]["lr"]
    if unreadable_all >= seen_all:
        # Not one readable image in the group: no step (momentum and weight decay would still move the weights,
        # and the schedule would advance), no loss logged, no checkpoint.
        state.optimizer.zero_grad(set_to_none=True)
        return StepStats(False, mean_loss, lr, indices, stop > 0)
    if not math.isfinite(mean_loss):
        raise FloatingPointError(f"loss became {mean_loss} at step {state.step}; lower train.lr or check the data")
    if t.grad_clip > 0:
        state.scaler.unscale_(state.optimizer)      # clip the true gradients, not the fp16-scaled ones
        nn.utils.clip_grad_norm_(state.model.parameters(), t.grad_clip)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.optimizer.zero_grad(set_to_none=True)
    state.scheduler.step()
    if state.ema is not None:
        state.ema.update(state.model)
    state.step += 1
    state.epoch_loss_sum += mean_loss
    state.epoch_loss_count += 1
    return StepStats(True, mean_loss, lr, indices, stop > 0)


def _out_of_time(run: TrainRun, every_process: bool = False) -> bool:
    """Whether train.time_limit has passed (``every_process``: in any process, decided by all of them together)."""
    t = run.cfg.train
    over = bool(t.time_limit) and time.time() - run.start_time > t.time_limit
    return any_process(over, run.device) if every_process else over


def _check_unreadable_share(run: TrainRun, state: TrainState) -> None:
    # A sample is drawn at most once an epoch, so this epoch's count is a lower bound on the unreadable share of
    # the training set: the moment it is over the limit, the run stops, whatever the rest holds.
    t = run.cfg.train
    if state.epoch_unreadable > t.max_unreadable_fraction * run.dataset_size:
        raise DataError(f"{state.epoch_unreadable} of the {run.dataset_size} training samples could not be read "
                        f"(over {t.max_unreadable_fraction:.0%}); stopping", run.cfg.data.root)


def _end_epoch(run: TrainRun, state: TrainState, seconds: float) -> Dict[str, Any]:
    """The epoch's history entry (of its part so far when the run stopped inside it); a complete epoch moves the
    state on to the next one."""
    if state.batch_in_epoch >= run.batches_per_epoch:
        state.epoch += 1
        state.batch_in_epoch = 0
        state.epoch_unreadable = 0
    entry: Dict[str, Any] = {"epoch": state.epoch, "epochs_done": round(state.step / run.steps_per_epoch, 3),
                             "step": state.step, "loss": state.epoch_loss_sum / max(state.epoch_loss_count, 1),
                             "lr": state.optimizer.param_groups[0]["lr"], "seconds": round(seconds, 2),
                             "unreadable_images": state.unreadable}
    if state.batch_in_epoch == 0:
        state.epoch_loss_sum, state.epoch_loss_count = 0.0, 0
    return entry


def _evaluate(run: TrainRun, state: TrainState, val_records: Sequence[PersonRecord]) -> Dict[str, Any]:
    """The validation metrics for the history entry; the weights go to OUTPUT/best/ when their score beats every
    earlier epoch's (kept apart from the rolling checkpoints: a time limit or a late decline must not lose them)."""
    cfg, weights = run.cfg, state.weights
    broadcast_buffers(weights)
    metrics = evaluate_model(cfg, weights, val_records, progress=False, write=False)
    found = {k: v for k, v in metrics.items() if k in ("pck", "Mean", "Mean@0.1") or k in COCO_STAT_NAMES}
    score = primary_metric(cfg, metrics)
    best = max((primary_metric(cfg, h) or -1.0 for h in state.history), default=-1.0)
    if run.dist.is_main and score is not None and score > best:
        save_weights(weights, run.out / "best" / WEIGHTS_FILE,
                     metadata={**run.metadata, "epoch": str(state.epoch), "val_metric": f"{score:.6g}"})
        found["best"] = True
    return found


def _record_epoch(run: TrainRun, state: TrainState, entry: Dict[str, Any],
                  on_epoch_end: Optional[Callable[[Dict[str, Any]], None]]) -> None:
    state.history.append(entry)
    if run.dist.is_main:
        append_jsonl(run.out / "metrics.jsonl", entry)
        if on_epoch_end:
            on_epoch_end(entry)
    run.say(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.items()))


def _checkpoint(run: TrainRun, state: TrainState) -> Path:
    """Save the state (every process's RNG state with it; rank 0 writes) and return the checkpoint's directory."""
    checkpoint_dir = run.out / "checkpoints"
    rng_ranks: List[Any] = [rng_state()]
    if run.dist.enabled:
        rng_ranks = [None] * run.dist.world_size
        dist.all_gather_object(rng_ranks, rng_state())
    if not run.dist.is_main:
        return checkpoint_dir / f"step_{state.step:08d}"
    return save_checkpoint(checkpoint_dir, state.weights, state.state_dict(rng_ranks), run.metadata,
                           keep=run.cfg.train.keep_checkpoints)
