"""TrainState: what a checkpoint's state.pt holds, its round trip, files written before it, and a resume under
another process/batch layout; train() checks a config changed in Python after loading."""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from posekit.config import config_from_dict
from posekit.errors import ConfigError
from posekit.training.checkpointing import rng_state
from posekit.training.optim import ModelEMA
from posekit.training.trainer import TrainState, train

# The keys of state.pt as written before TrainState existed (EMA on): old checkpoints must still resume.
OLD_KEYS = {"optimizer", "scheduler", "scaler", "rng", "rng_ranks", "step", "epoch", "batch_in_epoch", "world_size",
            "batch_size", "accumulate_steps", "history", "unreadable", "seen", "epoch_unreadable", "epoch_loss_sum",
            "epoch_loss_count", "model", "ema"}


def make_state(seed: int, ema: bool = True, **layout) -> TrainState:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 ** step)
    return TrainState(model, optimizer, scheduler, torch.amp.GradScaler("cpu", enabled=False),
                      ModelEMA(model, 0.9) if ema else None, **layout)


def take_steps(state: TrainState, steps: int) -> None:
    for _ in range(steps):
        state.model(torch.randn(5, 3)).square().mean().backward()
        state.optimizer.step()
        state.optimizer.zero_grad()
        state.scheduler.step()
        state.ema.update(state.model)
        state.step += 1


def test_state_dict_round_trip_restores_everything():
    saved = make_state(0, batch_size=4)
    take_steps(saved, 3)
    saved.epoch, saved.batch_in_epoch, saved.unreadable, saved.seen = 1, 2, 3, 40
    saved.epoch_unreadable, saved.epoch_loss_sum, saved.epoch_loss_count = 1, 0.75, 2
    saved.history = [{"epoch": 1, "loss": 0.5}]
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    state = saved.state_dict()
    assert set(state) == OLD_KEYS and json.loads(state["history"]) == saved.history
    expected_draw = torch.rand(3)                    # what the RNG gives after the checkpoint

    restored = make_state(1, batch_size=4)           # other initial weights, fresh optimizer
    restored.load_state_dict(state)
    assert torch.equal(torch.rand(3), expected_draw)
    for a, b in ((saved.model, restored.model), (saved.ema.module, restored.ema.module)):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert restored.optimizer.state_dict()["state"][0]["step"] == 3
    assert restored.scheduler.last_epoch == 3 and restored.optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 / 8)
    assert (restored.step, restored.epoch, restored.batch_in_epoch, restored.unreadable, restored.seen) == (3, 1, 2, 3, 40)
    assert (restored.epoch_unreadable, restored.epoch_loss_sum, restored.epoch_loss_count) == (1, 0.75, 2)
    assert restored.history == saved.history


def test_a_state_written_before_the_epoch_counters_still_loads():
    saved = make_state(0, ema=False)
    saved.model(torch.randn(5, 3)).sum().backward()
    saved.optimizer.step()
    state = {"optimizer": saved.optimizer.state_dict(), "scheduler": saved.scheduler.state_dict(),
             "scaler": saved.scaler.state_dict(), "rng": rng_state(), "step": 1, "epoch": 0, "batch_in_epoch": 1,
             "history": "[]", "unreadable": 0, "seen": 4}          # no rng_ranks, layout or epoch counters
    restored = make_state(1, ema=True)
    restored.load_state_dict(state)
    assert (restored.step, restored.batch_in_epoch, restored.epoch_unreadable, restored.epoch_loss_count) == (1, 1, 0, 0)
    # No EMA in the file: the average starts from the (caller-loaded) raw weights.
    assert all(torch.equal(x, y) for x, y in zip(restored.model.state_dict().values(),
                                                  restored.ema.module.state_dict().values()))


def test_another_layout_resumes_after_the_samples_done():
    saved = make_state(0, world_size=1, batch_size=4, accumulate_steps=1)
    saved.batch_in_epoch = 5                          # 5 x 4 = 20 samples of the epoch done
    messages = []
    restored = make_state(0, world_size=2, batch_size=2, accumulate_steps=2)
    restored.load_state_dict(saved.state_dict(), rank=1, log=messages.append)
    # 8 samples a step now: 2 whole steps (16 samples) are done, i.e. 4 batches of 2 per process.
    assert restored.batch_in_epoch == 4
    assert messages == ["warning: the checkpoint was written by 1 process(es) x batch 4 x 1 accumulated; continuing "
                        "the epoch after 16 of its 20 samples done (not an exact resume)"]


def test_train_checks_a_config_changed_after_loading(tmp_path):
    cfg = config_from_dict({"train": {"device": "cpu"}, "output_dir": str(tmp_path / "run")})
    cfg.train.accumulate_steps = 0
    with pytest.raises(ConfigError, match="train.accumulate_steps must be at least 1, got 0"):
        train(cfg, progress=False, log=lambda s: None)
    assert not (tmp_path / "run").exists()            # stopped before any data, model or output
