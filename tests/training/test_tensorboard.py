"""train.tensorboard: the scalars a run logs (through a stand-in SummaryWriter: the tensorboard package is an
optional extra), resume purging, and the one-line error when the package is missing."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import posekit.training.tensorboard as tensorboard
from posekit.build import load_records
from posekit.cli import main
from posekit.config import config_from_dict, load_config
from posekit.errors import ConfigError
from posekit.training.tensorboard import TensorBoardLogger
from posekit.training.trainer import train

from conftest import tiny_config


class FakeWriter:
    """Records what SummaryWriter would write."""
    made = []

    def __init__(self, log_dir, purge_step=None):
        self.log_dir, self.purge_step = log_dir, purge_step
        self.scalars, self.flushes, self.closed = [], 0, False
        FakeWriter.made.append(self)

    def add_scalar(self, tag, value, step):
        assert isinstance(value, float) and isinstance(step, int)
        self.scalars.append((tag, value, step))

    def flush(self):
        self.flushes += 1

    def close(self):
        self.closed = True

    def series(self, tag):
        return [(step, value) for t, value, step in self.scalars if t == tag]


@pytest.fixture
def fake_writer(monkeypatch):
    FakeWriter.made = []
    monkeypatch.setattr(tensorboard, "_summary_writer_class", lambda: FakeWriter)
    return FakeWriter


@pytest.fixture(scope="module")
def data_root(synthetic_data) -> Path:
    return synthetic_data(num_train=16, num_val=4, seed=5, image_size=(48, 48))


def test_logger_tags_values_and_ranks(tmp_path):
    logger = TensorBoardLogger(tmp_path / "tb", writer_class=FakeWriter)
    logger.on_step({"step": 7, "epoch": 1, "loss": 0.5, "lr": 1e-3, "rank": 1, "indices": []})   # not rank 0
    assert logger._writer is None
    logger.on_step({"step": 7, "epoch": 1, "loss": 0.5, "lr": 1e-3, "rank": 0, "indices": [1, 2]})
    logger.on_epoch_end({"epoch": 2, "epochs_done": 2.0, "step": 8, "loss": 0.25, "lr": 5e-4, "seconds": 3.5,
                         "unreadable_images": 0, "pck": 0.75, "Mean@0.1": 0.5, "AP .5": 0.4, "best": True})
    writer = logger._writer
    assert writer.log_dir == str(tmp_path / "tb") and writer.purge_step == 7
    assert writer.scalars == [("train/loss", 0.5, 7), ("train/lr", 1e-3, 7),
                              ("epoch/loss", 0.25, 8), ("epoch/lr", 5e-4, 8), ("epoch/seconds", 3.5, 8),
                              ("epoch/unreadable_images", 0.0, 8), ("val/pck", 0.75, 8), ("val/Mean_0.1", 0.5, 8),
                              ("val/AP_.5", 0.4, 8)]
    assert writer.flushes == 1
    logger.close()
    assert writer.closed and logger._writer is None


def test_training_logs_every_step_and_epoch(data_root, tmp_path, fake_writer):
    out = tmp_path / "run"
    cfg = config_from_dict(tiny_config(data_root, out, train={"epochs": 2, "eval_every": 1, "tensorboard": True}))
    steps, entries = [], []
    result = train(cfg, progress=False, log=lambda s: None, val_records=load_records(cfg, "val"),
                   on_step=steps.append, on_epoch_end=entries.append)
    [writer] = fake_writer.made
    assert writer.log_dir == str(out / "tensorboard") and writer.closed and writer.purge_step == 1
    # The caller's callbacks still run, and the logged values are theirs.
    assert writer.series("train/loss") == [(s["step"], pytest.approx(s["loss"])) for s in steps]
    assert writer.series("train/lr") == [(s["step"], pytest.approx(s["lr"])) for s in steps]
    assert len(entries) == 2 == len(result.history)
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for tag, key in (("epoch/loss", "loss"), ("epoch/seconds", "seconds"), ("val/pck", "pck")):
        assert writer.series(tag) == [(h["step"], pytest.approx(h[key])) for h in history]
    assert writer.flushes == 2


def test_resume_purges_from_the_first_step_it_logs(data_root, tmp_path, fake_writer):
    out = tmp_path / "run"
    cfg = config_from_dict(tiny_config(data_root, out, train={"epochs": 2, "max_steps": 3, "tensorboard": True}))
    train(cfg, progress=False, log=lambda s: None)
    cfg.train.max_steps = 0
    train(cfg, resume=True, progress=False, log=lambda s: None)
    first, second = fake_writer.made
    assert [s for s, _ in first.series("train/loss")] == [1, 2, 3]
    assert second.purge_step == 4 and [s for s, _ in second.series("train/loss")] == [4, 5, 6, 7, 8]


def test_missing_tensorboard_is_a_one_line_config_error_before_training(data_root, tmp_path, monkeypatch,
                                                                        capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)   # as if the package were not installed
    out = tmp_path / "run"
    cfg = config_from_dict(tiny_config(data_root, out, train={"tensorboard": True}))
    with pytest.raises(ConfigError, match=r"train\.tensorboard .*pip install tensorboard") as err:
        train(cfg, progress=False, log=lambda s: None)
    assert "\n" not in str(err.value)
    assert not out.exists()                                 # raised before anything was written
    cfg.train.tensorboard = False                           # off (the default): the package is never needed
    assert train(cfg, progress=False, log=lambda s: None).steps == 4
    # The command line prints it as one line and exits with status 2.
    config = tmp_path / "tiny.yaml"
    config.write_text(cfg.to_yaml())
    code = main(["train", str(config), "--output-dir", str(tmp_path / "cli"), "--no-progress",
                 "--set", "train.tensorboard=true"])
    captured = capsys.readouterr()
    assert code == 2
    [line] = [l for l in captured.err.splitlines() if "tensorboard" in l]
    assert "train.tensorboard" in line and "pip install tensorboard" in line


def test_config_key_defaults_off_and_loads(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  tensorboard: true\n")
    assert load_config(path).train.tensorboard is True
    assert load_config(path, ["train.tensorboard=false"]).train.tensorboard is False
    path.write_text("train:\n  epochs: 1\n")
    assert load_config(path).train.tensorboard is False
    path.write_text("train:\n  tensorboard: maybe\n")
    with pytest.raises(ConfigError, match="train.tensorboard"):
        load_config(path)


def test_real_summary_writer_files(data_root, tmp_path):
    """Where the tensorboard package is installed: the event files hold the scalars."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    cfg = config_from_dict(tiny_config(data_root, out, train={"epochs": 1, "tensorboard": True}))
    train(cfg, progress=False, log=lambda s: None)
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/lr", "epoch/loss", "epoch/seconds"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4]
    assert torch.isfinite(torch.tensor([e.value for e in events.Scalars("train/loss")])).all()
