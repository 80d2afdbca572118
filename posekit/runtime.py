"""Where and how a run executes: the device, mixed precision, seeds, determinism, and the torch.distributed
process group that ``torchrun`` sets up (one process per GPU, NCCL; gloo on the CPU)."""
from __future__ import annotations

import contextlib
import itertools
import os
import random
from dataclasses import dataclass
from typing import Any, Iterator, Tuple

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .errors import ConfigError


def model_device(model: Any) -> torch.device:
    """Where the model's tensors live; the CPU for a model without any (an ONNX Runtime or OpenVINO stand-in)."""
    parameters, buffers = getattr(model, "parameters", None), getattr(model, "buffers", None)
    if callable(parameters) and callable(buffers):
        for tensor in itertools.chain(parameters(), buffers()):
            return tensor.device
    return torch.device("cpu")


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


def is_distributed() -> bool:
    """Whether this process is one of several in an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def broadcast_buffers(module: nn.Module) -> None:
    # Without SyncBatchNorm each process keeps its own BN running statistics; rank 0's are the ones saved, so they
    # are also the ones every process evaluates with.
    if is_distributed():
        for buffer in module.buffers():
            dist.broadcast(buffer, 0)


def any_process(flag: bool, device: torch.device) -> bool:
    """True in every process when ``flag`` is true in any (decisions to stop must be taken together)."""
    if not is_distributed():
        return flag
    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)

def data_workers(requested: int) -> int:
    """Data-loading processes: as the config asks, but not more than this machine has cores."""
    return max(0, min(requested, os.cpu_count() or 1))


@contextlib.contextmanager
def determinism(deterministic: bool, device: torch.device) -> Iterator[None]:
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

