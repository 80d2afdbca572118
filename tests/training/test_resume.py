"""Exact resume after SIGKILL, and checkpoint integrity (hash manifest, fallback, keep-last-K).

The kill test runs ``python -m posekit train`` in a subprocess, waits until a checkpoint at or after step K
exists, sends SIGKILL (the run is then somewhere after step K, possibly inside a checkpoint write), resumes
with ``--resume`` and compares every tensor with an uninterrupted run: they must be bit-identical
(deterministic mode, one thread, CPU).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from posekit.fileio import MANIFEST_NAME
from posekit.weightfiles import read_state_dict
from posekit.config import config_from_dict
from posekit.training.checkpointing import find_resume_checkpoint, last_checkpoint
from posekit.training.trainer import train
from posekit.errors import CheckpointError

from conftest import tiny_config as base_config

REPO = Path(__file__).resolve().parents[2]
NUM_TRAIN, BATCH, EPOCHS = 40, 4, 3          # 10 steps per epoch, 30 in all


def tiny_config(root: Path, out: Path, **train_values) -> dict:
    return base_config(root, out, augment={"half_body_prob": 0.3, "half_body_min_joints": 4},
                       train={"epochs": EPOCHS, "batch_size": BATCH, "lr": 2e-3, "lr_schedule": "cosine",
                              "warmup_iters": 5, "checkpoint_every": 2, "deterministic": True, "ema_decay": 0.9,
                              **train_values},
                       test={"batch_size": 32})


@pytest.fixture(scope="module")
def data_root(synthetic_data) -> Path:
    return synthetic_data(num_train=NUM_TRAIN, num_val=4, seed=3, image_size=(48, 48))


def posekit_train(config: dict, path: Path, *extra: str) -> subprocess.Popen:
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(name, None)
    return subprocess.Popen([sys.executable, "-m", "posekit", "train", str(path), "--no-progress", *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
    return out


@pytest.fixture(scope="module")
def uninterrupted(data_root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    finished(posekit_train(tiny_config(data_root, out / "run"), out / "config.yaml"))
    return out / "run"


def tensors_of_state(state, prefix=""):
    """Every tensor of a nested training state, by its path."""
    if isinstance(state, torch.Tensor):
        yield prefix, state
    elif isinstance(state, dict):
        for key, value in state.items():
            yield from tensors_of_state(value, f"{prefix}/{key}")
    elif isinstance(state, (list, tuple)):
        for i, value in enumerate(state):
            yield from tensors_of_state(value, f"{prefix}/{i}")


@pytest.mark.slow
@pytest.mark.parametrize("workers,kill_after", [(0, 7), (2, 16)])
def test_killed_and_resumed_run_is_bit_identical(data_root, uninterrupted, tmp_path, workers, kill_after):
    config = tiny_config(data_root, tmp_path / "run", workers=workers)
    ckpt = tmp_path / "run" / "checkpoints"
    process = posekit_train(config, tmp_path / "config.yaml")
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        last = (ckpt / "last").read_text().strip() if (ckpt / "last").is_file() else ""
        if last and int(last.split("_")[1]) >= kill_after:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (ckpt / f"step_{NUM_TRAIN // BATCH * EPOCHS:08d}").exists()

    log = finished(posekit_train(config, tmp_path / "config.yaml", "--resume"))
    assert "resumed from" in log and "trained 30 steps" in log

    final = "checkpoints/step_00000030"
    for name in ("weights.safetensors",):
        a, b = read_state_dict(uninterrupted / final / name), read_state_dict(tmp_path / "run" / final / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "EMA weights differ"
    a = dict(tensors_of_state(torch.load(uninterrupted / final / "state.pt", weights_only=True)))
    b = dict(tensors_of_state(torch.load(tmp_path / "run" / final / "state.pt", weights_only=True)))
    # Raw weights, EMA, Adam moments and step counts, every RNG state: all equal.
    assert a.keys() == b.keys()
    assert sum(k.startswith("/model/") for k in a) > 100 and sum(k.startswith("/optimizer/state/") for k in a) > 100
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # metrics.jsonl is rewritten from the checkpoint's history on resume: no epoch twice.
    entries = [[json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
               for run in (uninterrupted, tmp_path / "run")]
    assert [[{k: v for k, v in e.items() if k != "seconds"} for e in run] for run in entries[:1]] == \
           [[{k: v for k, v in e.items() if k != "seconds"} for e in run] for run in entries[1:]]


# --------------------------------------------------------------------------------------------- integrity
@pytest.fixture(scope="module")
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def short_config(data_root: Path, out: Path, **train_values):
    # 24 samples / batch 4: one epoch of 6 steps, a checkpoint after each.
    values = tiny_config(data_root, out, **{"epochs": 1, "checkpoint_every": 1, "keep_checkpoints": 0,
                                            "lr_schedule": "constant", "warmup_iters": 0, "ema_decay": 0.0,
                                            **train_values})
    values["data"]["limit"] = 24
    return config_from_dict(values)


@pytest.fixture(scope="module")
def six_checkpoints(data_root, tmp_path_factory, single_thread) -> Path:
    out = tmp_path_factory.mktemp("six") / "run"
    result = train(short_config(data_root, out), progress=False, log=lambda s: None)
    assert result.steps == 6
    return out


def copy_run(run: Path, tmp_path: Path) -> Path:
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run" / "checkpoints"


def test_every_checkpoint_has_a_hash_manifest(six_checkpoints):
    ckpt = six_checkpoints / "checkpoints"
    assert sorted(p.name for p in ckpt.iterdir()) == ["last"] + [f"step_{i:08d}" for i in range(1, 7)]
    manifest = json.loads((ckpt / "step_00000006" / MANIFEST_NAME).read_text())
    assert set(manifest["files"]) == {"weights.safetensors", "state.pt"}
    import hashlib
    for name, entry in manifest["files"].items():
        data = (ckpt / "step_00000006" / name).read_bytes()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_corrupt_last_checkpoint_falls_back_to_the_previous(six_checkpoints, tmp_path):
    ckpt = copy_run(six_checkpoints, tmp_path)
    weights = ckpt / "step_00000006" / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF                                   # one flipped bit pattern, same size: only the hash sees it
    weights.write_bytes(bytes(data))
    (ckpt / ".step_00000007.tmp").mkdir()             # a write the kill interrupted
    messages = []
    path, state = find_resume_checkpoint(ckpt, messages.append)
    assert path.name == "step_00000005" and state["step"] == 5
    assert len(messages) == 1 and "\n" not in messages[0]
    assert messages[0].startswith(f"warning: checkpoint {ckpt / 'step_00000006'} is unusable (weights.safetensors "
                                  "does not match its SHA-256")
    assert (ckpt / "corrupt" / "step_00000006").is_dir() and not (ckpt / "step_00000006").exists()
    assert not (ckpt / ".step_00000007.tmp").exists()
    assert last_checkpoint(ckpt).name == "step_00000005"


def test_truncated_state_falls_back_and_the_resumed_run_matches(six_checkpoints, data_root, tmp_path, single_thread):
    ckpt = copy_run(six_checkpoints, tmp_path)
    state = ckpt / "step_00000006" / "state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    messages = []
    result = train(short_config(data_root, tmp_path / "run"), resume=True, progress=False, log=messages.append)
    warning = [m for m in messages if m.startswith("warning:")]
    assert len(warning) == 1 and "state.pt has" in warning[0] and "(truncated?)" in warning[0]
    assert any(m.startswith("resumed from") and "step_00000005" in m for m in messages)
    assert result.steps == 6
    a = read_state_dict(six_checkpoints / "checkpoints" / "step_00000006" / "weights.safetensors")
    b = read_state_dict(ckpt / "step_00000006" / "weights.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_no_intact_checkpoint_is_an_error_and_missing_files_are_named(six_checkpoints, tmp_path):
    ckpt = copy_run(six_checkpoints, tmp_path)
    (ckpt / "step_00000006" / "state.pt").unlink()
    for i in range(1, 6):
        (ckpt / f"step_{i:08d}" / MANIFEST_NAME).write_text("{not json")
    messages = []
    with pytest.raises(CheckpointError, match=r"checkpoints: no intact checkpoint to resume from \(6 moved to corrupt/\)"):
        find_resume_checkpoint(ckpt, messages.append)
    assert "(state.pt is missing)" in messages[0] and all("unreadable manifest.json" in m for m in messages[1:])
    assert find_resume_checkpoint(tmp_path / "nothing", messages.append) is None


def test_keep_last_k_checkpoints(data_root, tmp_path, single_thread):
    train(short_config(data_root, tmp_path / "run", keep_checkpoints=2), progress=False, log=lambda s: None)
    ckpt = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in ckpt.iterdir()) == ["last", "step_00000005", "step_00000006"]
