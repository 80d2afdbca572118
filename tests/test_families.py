"""Every network family goes through the one pipeline: dataset targets from its declared outputs, the one loss,
the training loop, flip-test inference and decoding, evaluation — on small synthetic data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from posekit.config import config_from_dict
from posekit.data.synthetic import synthetic_splits
from posekit.engine import build_model, evaluate_model, load_records, train
from posekit.errors import ConfigError

FAMILIES = {
    "hrnet_w16_small": {"stem_width": 32},
    "cpm_2stage": {},
    "cpm_6stage_topdown": {"stages": 2},
    "hourglass_2stack": {"features": 32},
    "ke_multiscale_hourglass": {"features": 16, "stacks": 2},
    "mspn_2stage": {"width": 16, "channels": 32},
    "simplebaseline_res50": {"width": 16, "deconv_channels": 32},
}


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("families")
    synthetic_splits(root, num_train=8, num_val=4, seed=2, image_size=(96, 96))
    return root


def _config(root: Path, out: Path, name: str, kwargs: dict):
    return config_from_dict({
        "model": {"name": name, "num_keypoints": 14, "kwargs": kwargs},
        "data": {"format": "synthetic", "root": str(root), "skeleton": "synthetic",
                 "train_ann": "train/annotations.json", "train_images": "train",
                 "val_ann": "val/annotations.json", "val_images": "val", "input_size": [64, 64]},
        "augment": {"half_body_prob": 0.0},
        "train": {"epochs": 1, "batch_size": 4, "lr": 1e-4, "workers": 0, "eval_every": 0, "checkpoint_every": 0,
                  "device": "cpu"},
        "test": {"metric": "pck", "batch_size": 4, "flip_test": True},
        "output_dir": str(out),
    })


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_trains_and_evaluates_through_the_engine(synthetic_root, tmp_path, name):
    cfg = _config(synthetic_root, tmp_path / name, name, FAMILIES[name])
    result = train(cfg, progress=False, log=lambda s: None)
    assert result.steps == 2 and np.isfinite(result.history[-1]["loss"])
    model = build_model(cfg, load=False)
    assert len(model.outputs) >= 1
    metrics = evaluate_model(cfg, model, load_records(cfg, "val"), progress=False)
    assert 0.0 <= metrics["pck"] <= 1.0 and len(metrics["per_joint"]) == 14


def test_wrong_keypoint_count_for_the_data_is_a_clear_error(synthetic_root, tmp_path):
    cfg = _config(synthetic_root, tmp_path / "k", "hrnet_w16_small", {})
    cfg.model.num_keypoints = 17
    with pytest.raises(ConfigError, match="the data has 14 keypoints but model.num_keypoints is 17"):
        load_records(cfg, "train")
