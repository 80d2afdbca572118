"""Data-parallel training: two gloo processes on the CPU (spawned, and through torchrun + the CLI).

Both ranks must train on disjoint shares of each epoch, end with identical weights, and leave exactly one
set of checkpoints, logs and metrics written by rank 0.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from posekit.weightfiles import read_state_dict
from posekit.config import config_from_dict
from posekit.training.sampler import EpochSampler
from posekit.build import build_model, load_records
from posekit.evaluation.evaluate import evaluate_model
from posekit.training.optim import scaled_lr
from posekit.training.trainer import train

from conftest import tiny_config as base_config

REPO = Path(__file__).resolve().parents[2]
NUM_TRAIN, BATCH, EPOCHS = 36, 4, 2       # 36 = 2 ranks x 4 per batch x 4 steps + 4 samples left out per epoch


def tiny_config(root: Path, out: Path, **train_values) -> dict:
    return base_config(root, out, train={"epochs": EPOCHS, "batch_size": BATCH, "checkpoint_every": 3,
                                         "keep_checkpoints": 0, **train_values},
                       test={"flip_test": False})


@pytest.fixture(scope="module")
def data_root(synthetic_data) -> Path:
    return synthetic_data(num_train=NUM_TRAIN, num_val=10, seed=2, image_size=(48, 48))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------- sampler
@pytest.mark.parametrize("size,world", [(10, 1), (10, 2), (10, 3), (37, 4), (3, 4)])
def test_sampler_shards_are_equal_disjoint_and_cover_the_permutation(size, world):
    for epoch in (0, 5):
        shards = []
        for rank in range(world):
            sampler = EpochSampler(size, seed=7, rank=rank, world_size=world)
            sampler.set_epoch(epoch)
            shards.append(list(sampler))
        whole = EpochSampler(size, seed=7)
        whole.set_epoch(epoch)
        order = list(whole)
        kept = order[: size - size % world]           # the same permutation, its tail left out
        assert sorted(i for s in shards for i in s) == sorted(kept)
        assert all(len(s) == size // world for s in shards)
        for position in range(size // world):         # batch-wise interleaving of the one permutation
            assert [s[position] for s in shards] == kept[position * world:(position + 1) * world]
    a, b = EpochSampler(37, 7, rank=1, world_size=4), EpochSampler(37, 7, rank=1, world_size=4)
    a.set_epoch(0)
    b.set_epoch(1)
    assert list(a) != list(b)                         # a new order every epoch
    b.set_epoch(0, start=3)
    assert list(b) == list(a)[3:]                     # resuming inside an epoch, per rank


def test_linear_learning_rate_scaling_rule():
    cfg = config_from_dict({"train": {"lr": 1e-3, "batch_size": 32}})
    assert scaled_lr(cfg, 8) == 1e-3                                    # none: as written
    cfg.train.lr_scale = "linear"
    assert scaled_lr(cfg, 8) == pytest.approx(8e-3)                     # reference = one process of 32
    cfg.train.lr_reference_batch = 256
    assert scaled_lr(cfg, 8) == pytest.approx(1e-3)                     # tuned for 8 x 32 already
    cfg.train.accumulate_steps = 2
    assert scaled_lr(cfg, 4) == pytest.approx(1e-3)                     # 4 x 32 x 2 = 256
    cfg.train.lr_scale = "sqrt"
    with pytest.raises(Exception, match="train.lr_scale must be none or linear"):
        scaled_lr(cfg, 2)


# --------------------------------------------------------------------------------------------- 2 processes
def _rank_main(rank: int, world: int, port: int, cfg_dict: dict, val_root: str, out_dir: str) -> None:
    """One spawned process, set up as torchrun would (environment variables only)."""
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    cfg = config_from_dict(cfg_dict)
    steps, messages = [], []
    val = load_records(cfg, "val")
    result = train(cfg, progress=False, log=messages.append, val_records=val,
                   on_step=lambda info: steps.append({k: info[k] for k in ("step", "epoch", "indices", "lr", "loss")}))
    torch.save({k: v.detach().clone() for k, v in result.model.state_dict().items()},
               Path(out_dir) / f"rank{rank}_weights.pt")
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps({
        "steps": steps, "messages": messages, "history": result.history,
        "group_left": dist.is_available() and dist.is_initialized()}))


@pytest.mark.slow
def test_two_gloo_processes_share_the_data_and_agree_on_the_weights(data_root, tmp_path, monkeypatch):
    import torch.multiprocessing as mp

    world = 2
    cfg_dict = tiny_config(data_root, tmp_path / "run", lr_scale="linear")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")        # 2 processes x 1 thread on a small machine
    mp.start_processes(_rank_main, args=(world, free_port(), cfg_dict, str(data_root), str(tmp_path)), nprocs=world,
                       join=True, start_method="spawn")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]
    assert not any(r["group_left"] for r in ranks)                 # process group destroyed at the end

    steps_per_epoch = NUM_TRAIN // world // BATCH                   # 4
    for r in ranks:
        assert [s["step"] for s in r["steps"]] == list(range(1, EPOCHS * steps_per_epoch + 1))
        assert all(s["lr"] == pytest.approx(2e-3) for s in r["steps"])      # linear rule: 1e-3 x 2 processes
    for epoch in range(EPOCHS):
        seen = [[i for s in r["steps"] if s["epoch"] == epoch for i in s["indices"]] for r in ranks]
        assert not set(seen[0]) & set(seen[1])                     # disjoint shares
        assert len(seen[0]) == len(seen[1]) == steps_per_epoch * BATCH
        sampler = EpochSampler(NUM_TRAIN, seed=0)
        sampler.set_epoch(epoch)
        assert sorted(seen[0] + seen[1]) == sorted(list(sampler)[:NUM_TRAIN - NUM_TRAIN % (world * BATCH)])
    # The logged loss is the mean over both ranks, hence the same number in each process.
    assert [s["loss"] for s in ranks[0]["steps"]] == [s["loss"] for s in ranks[1]["steps"]]

    w0, w1 = (torch.load(tmp_path / f"rank{r}_weights.pt", weights_only=True) for r in range(world))
    model = build_model(config_from_dict(cfg_dict), load=False)
    params = {name for name, _ in model.named_parameters()}
    assert all(torch.equal(w0[k], w1[k]) for k in params)        # gradients were all-reduced
    # BN running statistics stay per process without sync_bn: rank 0's are the ones written.
    ckpt = tmp_path / "run" / "checkpoints"
    saved = read_state_dict(ckpt / "step_00000008" / "weights.safetensors")
    assert all(torch.equal(saved[k], w0[k]) for k in w0)

    # One set of outputs, written by rank 0 only.
    assert sorted(p.name for p in ckpt.iterdir()) == ["last", "step_00000003", "step_00000004", "step_00000006",
                                                      "step_00000008"]
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert ranks[1]["messages"] == [] and any(m.startswith("data parallel: 2 processes (gloo)")
                                              for m in ranks[0]["messages"])

    # Evaluation was sharded (5 people each) and gathered: both ranks hold the PCK of all 10, which a single
    # process evaluating rank 0's weights reproduces.
    final = [r["history"][-1]["pck"] for r in ranks]
    assert final[0] == final[1]
    cfg = config_from_dict(cfg_dict)
    model.load_state_dict(w0)
    alone = evaluate_model(cfg, model, load_records(cfg, "val"), progress=False)["pck"]
    assert alone == pytest.approx(final[0], abs=1e-9)


@pytest.mark.slow
def test_torchrun_command_line(data_root, tmp_path):
    import yaml

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(data_root, tmp_path / "run", epochs=1, checkpoint_every=0)))
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(free_port()), "-m", "posekit", "train", str(config), "--no-progress"]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained 4 steps") == 1, done.stdout        # rank 0 reports, rank 1 does not
    assert done.stdout.count("data parallel: 2 processes (gloo)") == 1
    ckpt = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in ckpt.iterdir()) == ["last", "step_00000004"]
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1
    assert np.isfinite(json.loads((tmp_path / "run" / "metrics.jsonl").read_text())["loss"])

