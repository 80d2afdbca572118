"""The posekit command: output of `info`, and bad input as one line with exit status 2."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from posekit.cli import main

CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "hrnet-w32_coco_256x192.yaml")


@pytest.mark.parametrize("model, hw, params, gmacs", [
    ("hrnet_w32", "256x192", "28,536,113", "7.1 G"),
    ("hrnet_w48", "256x192", "63,595,745", "14.6 G"),
    ("hrnet_w32", "384x288", "28,536,113", "16.0 G"),
    ("hrnet_w48", "384x288", "63,595,745", "32.9 G"),
])
def test_info_prints_the_papers_figures(capsys, model, hw, params, gmacs):
    assert main(["info", model, "--input", hw]) == 0
    out = capsys.readouterr().out
    assert params in out and f"({gmacs}" in out


def test_info_lists_models(capsys):
    assert main(["info"]) == 0
    assert set(capsys.readouterr().out.split()) >= {"hrnet_w32", "hrnet_w48", "hrnet_w16_small"}


def _one_line_error(capsys, argv, *fragments):
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in captured.err, captured.err
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_bad_inputs_are_one_line_errors(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochz: 3\n")
    _one_line_error(capsys, ["train", str(bad)], str(bad), "unknown key 'train.epochz'")
    _one_line_error(capsys, ["train", CONFIG, "--set", "train.lr=fast"], "train.lr must be a number")
    _one_line_error(capsys, ["eval", CONFIG], "no weights")
    _one_line_error(capsys, ["info", "hrnet_w99"], "unknown model 'hrnet_w99'")
    _one_line_error(capsys, ["info", "hrnet_w32", "--input", "250x192"], "multiples of 32")
    missing = tmp_path / "nowhere"
    _one_line_error(capsys, ["train", CONFIG, "--set", f"data.root={missing}", "--set", "train.eval_every=0",
                             "--output-dir", str(tmp_path / "o")], str(missing))
    garbage = tmp_path / "w.pth"
    garbage.write_bytes(b"\x80\x04not a checkpoint")
    _one_line_error(capsys, ["eval", CONFIG, "--weights", str(garbage), "--set", f"data.root={missing}"], str(garbage))


@pytest.mark.slow
def test_module_entry_point_and_debug_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("nope: 1\n")
    run = subprocess.run([sys.executable, "-m", "posekit", "train", str(bad)], capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.startswith("posekit: error:") and "Traceback" not in run.stderr
    run = subprocess.run([sys.executable, "-m", "posekit", "--debug", "train", str(bad)], capture_output=True, text=True)
    assert run.returncode != 0 and "Traceback" in run.stderr


def test_predict_on_real_images_with_their_detection_boxes(shared_data, tmp_path, capsys):
    import json

    import torch

    from posekit.weightfiles import save_weights
    from posekit.models import create_model

    torch.manual_seed(0)
    model = create_model("hrnet_w16_small", num_keypoints=17)
    weights = tmp_path / "w.safetensors"
    save_weights(model, weights)
    samples = shared_data / "samples" / "coco"
    out = tmp_path / "pred"
    argv = ["predict", CONFIG, str(samples), "--weights", str(weights), "--det-file",
            str(samples / "test_coco_det_AP_H_56.json"), "--ann", str(samples / "test_coco.json"),
            "--score-threshold", "0.3", "--set", "model.name=hrnet_w16_small", "--set", "data.input_size=[128, 96]",
            "--out", str(out), "--draw", "--no-progress"]
    assert main(argv) == 0
    assert "4 images" in capsys.readouterr().out
    poses = json.loads((out / "poses.json").read_text())
    detections = json.loads((samples / "test_coco_det_AP_H_56.json").read_text())
    assert len(poses) == 4
    assert sum(len(e["people"]) for e in poses) == sum(d["score"] >= 0.3 for d in detections) - sum(e["skipped_boxes"] for e in poses)
    results = json.loads((out / "keypoints_results.json").read_text())
    assert results and all(len(r["keypoints"]) == 51 for r in results)
    assert len(list((out / "drawn").glob("*.png"))) == 4
    _one_line_error(capsys, ["predict", CONFIG, str(tmp_path / "missing.jpg"), "--weights", str(weights),
                             "--set", "model.name=hrnet_w16_small"], "missing.jpg")


@pytest.mark.slow
def test_output_cut_short_by_the_reader_is_not_a_traceback():
    # `posekit configs | head`: the reader may be gone before posekit writes (here it never reads at all).
    command = f"{sys.executable} -m posekit configs | true"
    done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=120)
    assert done.stderr == ""
