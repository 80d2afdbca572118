"""Training, checkpoints, resume and evaluation end to end on small synthetic data."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from posekit.weightfiles import read_safetensors_metadata, read_state_dict
from posekit.config import config_from_dict
from posekit.training.sampler import EpochSampler
from posekit.build import load_records, build_model
from posekit.evaluation.evaluate import evaluate_model
from posekit.training.checkpointing import last_checkpoint
from posekit.training.optim import lr_factor_fn
from posekit.training.trainer import train
from posekit.errors import CheckpointError, DataError

from conftest import tiny_config


@pytest.fixture(scope="module")
def synthetic_root(synthetic_data) -> Path:
    return synthetic_data(num_train=192, num_val=48, seed=5, image_size=(96, 96))


def _config(root: Path, out: Path, **train):
    return config_from_dict(tiny_config(
        root, out, model={"kwargs": {"stem_width": 32}}, data={"input_size": [64, 64]},
        augment={"rotation_factor": 15.0, "scale_factor": 0.15},
        train={"epochs": 4, "batch_size": 16, "lr": 3e-3, **train}, test={"batch_size": 48}))


@pytest.mark.slow
def test_short_training_run_lowers_the_loss_and_raises_pck(synthetic_root, tmp_path):
    cfg = _config(synthetic_root, tmp_path / "run", epochs=6)
    val = load_records(cfg, "val")
    before = evaluate_model(cfg, build_model(cfg), val, progress=False)["pck"]
    result = train(cfg, progress=False, log=lambda s: None)
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 6 and result.steps == 6 * (192 // 16)
    assert losses[-1] < 0.7 * losses[0], losses
    model = build_model(cfg, load=False)
    from posekit.weightfiles import load_weights
    load_weights(model, result.checkpoint / "weights.safetensors")
    after = evaluate_model(cfg, model, val, progress=False)
    assert after["pck"] > before + 0.2, (before, after["pck"])
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [1, 2, 3, 4, 5, 6]
    meta = read_safetensors_metadata(result.checkpoint / "weights.safetensors")
    assert meta["model"] == "hrnet_w16_small" and meta["step"] == str(result.steps)


@pytest.mark.slow
def test_resume_continues_where_the_run_stopped(synthetic_root, tmp_path):
    # Uninterrupted: 2 epochs.  Interrupted: stop after 17 steps (mid-epoch 2), then resume to the end.
    full = train(_config(synthetic_root, tmp_path / "full", epochs=2), progress=False, log=lambda s: None)
    part_cfg = _config(synthetic_root, tmp_path / "part", epochs=2, checkpoint_every=17, max_steps=17)
    part = train(part_cfg, progress=False, log=lambda s: None)
    assert part.steps == 17 and part.checkpoint.name == "step_00000017"
    resumed = train(_config(synthetic_root, tmp_path / "part", epochs=2), resume=True, progress=False, log=lambda s: None)
    assert resumed.steps == full.steps == 24
    a = read_state_dict(full.checkpoint / "weights.safetensors")
    b = read_state_dict(resumed.checkpoint / "weights.safetensors")
    assert a.keys() == b.keys()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst < 1e-4, worst
    assert [h["epoch"] for h in resumed.history][-1] == 2


def test_checkpoints_are_complete_and_pruned(synthetic_root, tmp_path):
    cfg = _config(synthetic_root, tmp_path / "run", epochs=1, checkpoint_every=2)
    train(cfg, progress=False, log=lambda s: None)
    ckpt = tmp_path / "run" / "checkpoints"
    steps = sorted(p.name for p in ckpt.iterdir() if p.is_dir())
    assert steps == ["step_00000008", "step_00000010", "step_00000012"]   # the newest three
    assert (ckpt / "last").read_text().strip() == "step_00000012"
    assert not list(ckpt.glob(".*tmp*"))
    state = torch.load(ckpt / "step_00000012" / "state.pt", weights_only=True)
    assert state["step"] == 12 and "optimizer" in state and "rng" in state
    (ckpt / "step_00000012" / "state.pt").write_bytes(b"truncated")
    messages = []
    resumed = train(cfg, resume=True, progress=False, log=messages.append)   # falls back to step 10
    assert any(m.startswith("warning: checkpoint") and "step_00000012" in m and "truncated" in m for m in messages)
    assert any("resumed from" in m and "step_00000010" in m for m in messages) and resumed.steps == 12
    (ckpt / "step_00000012" / "state.pt").unlink()
    with pytest.raises(CheckpointError, match="incomplete"):
        last_checkpoint(ckpt)


def test_too_many_unreadable_images_stop_the_run(synthetic_root, tmp_path):
    import shutil
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    images = sorted((root / "train" / "images").iterdir())
    for path in images[:5]:                      # 5 of 192 = 2.6 % > 1 %
        path.write_bytes(b"not an image")
    cfg = _config(root, tmp_path / "run", epochs=1)
    with pytest.raises(DataError, match="could not be read"):
        train(cfg, progress=False, log=lambda s: None)
    images[0].write_bytes(images[5].read_bytes())
    for path in images[1:5]:
        path.write_bytes(images[5].read_bytes())
    images[0].write_bytes(b"")                   # 1 of 192 is tolerated and counted
    result = train(_config(root, tmp_path / "run2", epochs=1), progress=False, log=lambda s: None)
    assert result.history[-1]["unreadable_images"] == 1


def _break_images(root: Path, indices) -> None:
    """Overwrite the training images of the given sample indices with bytes no decoder reads."""
    records = load_records(_config(root, root / "unused"), "train")
    for i in indices:
        Path(records[i].image_path).write_bytes(b"not an image")


def test_all_unreadable_data_stops_with_one_line_before_any_step_or_checkpoint(synthetic_root, tmp_path):
    import shutil
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    _break_images(root, range(192))
    cfg = _config(root, tmp_path / "run", epochs=1, max_steps=1, checkpoint_every=1)
    steps = []
    with pytest.raises(DataError, match="could not be read") as error:
        train(cfg, progress=False, log=lambda s: None, on_step=steps.append)
    assert "\n" not in str(error.value) and str(root) in str(error.value)
    assert steps == [] and not list((tmp_path / "run").glob("checkpoints/step_*"))


def test_the_unreadable_limit_fires_as_soon_as_it_is_decidable(synthetic_root, tmp_path):
    import shutil
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    first_batch = EpochSampler(192, seed=_config(root, tmp_path / "x").train.seed).indices()[:16]
    _break_images(root, first_batch[:2])       # 2 of 192 > 1 %, known after the first batch
    steps = []
    with pytest.raises(DataError, match="2 of the 192 training samples could not be read"):
        train(_config(root, tmp_path / "run", epochs=1), progress=False, log=lambda s: None, on_step=steps.append)
    assert steps == []


def test_a_batch_without_a_readable_image_takes_no_step(synthetic_root, tmp_path):
    import shutil
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    cfg = _config(root, tmp_path / "run", epochs=1, batch_size=1, max_steps=3)
    bad = int(EpochSampler(192, seed=cfg.train.seed).indices()[1])
    _break_images(root, [bad])                 # 1 of 192: under 1 %, so training goes on without it
    steps = []
    result = train(cfg, progress=False, log=lambda s: None, on_step=steps.append)
    assert result.steps == 3 and [s["step"] for s in steps] == [1, 2, 3]
    assert all(bad not in s["indices"] for s in steps)
    assert all(math.isfinite(s["loss"]) and s["loss"] > 0 for s in steps)


def test_sampler_is_a_seeded_permutation_that_can_start_mid_epoch():
    sampler = EpochSampler(10, seed=3)
    sampler.set_epoch(2)
    order = list(sampler)
    assert sorted(order) == list(range(10))
    sampler.set_epoch(2, start=4)
    assert list(sampler) == order[4:] and len(sampler) == 6
    sampler.set_epoch(3)
    assert list(sampler) != order
    ranks = [EpochSampler(10, 3, rank=r, world_size=2) for r in range(2)]
    for s in ranks:
        s.set_epoch(2)
    assert sorted(list(ranks[0]) + list(ranks[1])) == list(range(10)) and not set(ranks[0]) & set(ranks[1])


def test_learning_rate_schedules():
    cfg = config_from_dict({"train": {"epochs": 210, "lr_steps": [170, 200], "lr_factor": 0.1}})
    f = lr_factor_fn(cfg, steps_per_epoch=10)
    assert f(0) == 1.0 and f(1699) == 1.0 and f(1700) == pytest.approx(0.1) and f(2000) == pytest.approx(0.01)
    cfg = config_from_dict({"train": {"epochs": 10, "lr_schedule": "linear", "warmup_iters": 10, "warmup_factor": 0.1}})
    f = lr_factor_fn(cfg, steps_per_epoch=11)
    assert f(0) == pytest.approx(0.1) and f(5) == pytest.approx(0.55) and f(10) == 1.0 and f(110) == 0.0
    assert f(60) == pytest.approx(0.5)
    cfg = config_from_dict({"train": {"epochs": 4, "lr_schedule": "cosine"}})
    f = lr_factor_fn(cfg, steps_per_epoch=5)
    assert f(0) == 1.0 and f(10) == pytest.approx(0.5) and f(20) == pytest.approx(0.0)


def test_bf16_autocast_trains_on_cpu(synthetic_root, tmp_path):
    cfg = _config(synthetic_root, tmp_path / "run", epochs=1, amp="bf16", max_steps=3)
    result = train(cfg, progress=False, log=lambda s: None)
    assert result.steps == 3 and np.isfinite(result.history[-1]["loss"])


def _small_weights(tmp_path, num_keypoints=17) -> str:
    from posekit.weightfiles import save_weights
    from posekit.models import create_model
    torch.manual_seed(0)
    model = create_model("hrnet_w16_small", num_keypoints=num_keypoints)
    for p in model.parameters():     # the official init gives all-zero heatmaps; make predictions vary
        torch.nn.init.normal_(p, std=0.05)
    path = tmp_path / "w.safetensors"
    save_weights(model, path)
    return str(path)


def test_eval_with_detection_boxes_writes_the_scored_results(shared_data, tmp_path, capsys):
    from posekit.cli import main
    weights = _small_weights(tmp_path)
    samples = shared_data / "samples" / "coco"
    results = tmp_path / "results.json"
    argv = ["eval", str(Path(__file__).resolve().parents[2] / "configs" / "hrnet-w32_coco_256x192.yaml"),
            "--weights", weights, "--det-file", str(samples / "test_coco_det_AP_H_56.json"),
            "--set", "model.name=hrnet_w16_small", "--set", f"data.root={samples}",
            "--set", "data.val_ann=test_coco.json", "--set", "data.val_images=.", "--set", "data.input_size=[128,96]",
            "--set", "train.workers=0", "--output-dir", str(tmp_path / "out"), "--results", str(results),
            "--json", str(tmp_path / "metrics.json"), "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for name in ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"):
        assert f"\n{name} " in "\n" + out
    assert "detections" in out
    scored = json.loads(results.read_text())
    detections = json.loads((samples / "test_coco_det_AP_H_56.json").read_text())
    assert 0 < len(scored) <= len(detections)
    assert {r["image_id"] for r in scored} <= {d["image_id"] for d in detections}
    assert all(len(r["keypoints"]) == 51 and r["category_id"] == 1 for r in scored)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    # rescoring: box score x mean keypoint score above 0.2 never exceeds the box score
    assert all(0 <= r["score"] <= 1 for r in scored) and 0 <= metrics["AP"] <= 1


def test_eval_with_ground_truth_boxes_on_real_coco(shared_data, tmp_path):
    cfg = config_from_dict({
        "model": {"name": "hrnet_w16_small", "weights": _small_weights(tmp_path)},
        "data": {"root": str(shared_data / "coco"), "val_ann": "annotations/person_keypoints_train2017.json",
                 "val_images": "train2017", "input_size": [128, 96]},
        "train": {"workers": 0}, "output_dir": str(tmp_path / "out"),
    })
    records = load_records(cfg, "val")
    assert len(records) == 167          # every non-crowd person with a box, labelled joints or not
    stats = evaluate_model(cfg, build_model(cfg), records, progress=False)
    written = json.loads(Path(stats["results_file"]).read_text())
    assert stats["boxes"] == "ground truth" and 0 < len(written) <= 167
    assert set(stats) >= {"AP", "AR", "APm", "ARl"}


def test_multiscale_test_through_the_engine(synthetic_root, tmp_path):
    from posekit.evaluation.evaluate import run_inference

    cfg = _config(synthetic_root, tmp_path / "ms")
    model = build_model(cfg)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    records = load_records(cfg, "val")
    single = run_inference(cfg, model, records, progress=False)
    cfg.test.scales = [1.0]
    again = run_inference(cfg, model, records, progress=False)
    np.testing.assert_array_equal(single.keypoints, again.keypoints)
    cfg.test.scales = [0.8, 1.0, 1.25]
    multi = run_inference(cfg, model, records, progress=False)
    assert multi.keypoints.shape == single.keypoints.shape and np.isfinite(multi.keypoints).all()
    np.testing.assert_allclose(multi.scales, single.scales)      # decoded in the f = 1 crop
    assert not np.array_equal(multi.scores, single.scores)
