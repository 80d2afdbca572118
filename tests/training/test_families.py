"""Every network family goes through the one pipeline: dataset targets from its declared outputs, the one loss,
the training loop, flip-test inference and decoding, evaluation — on small synthetic data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from posekit.config import config_from_dict
from posekit.build import build_model, load_records
from posekit.evaluation.evaluate import evaluate_model
from posekit.training.trainer import train
from posekit.errors import ConfigError

from conftest import tiny_config

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
def synthetic_root(synthetic_data) -> Path:
    return synthetic_data(num_train=8, num_val=4, seed=2, image_size=(96, 96))


def _config(root: Path, out: Path, name: str, kwargs: dict):
    return config_from_dict(tiny_config(root, out, model={"name": name, "kwargs": kwargs},
                                        data={"input_size": [64, 64]},
                                        train={"lr": 1e-4, "lr_schedule": "multistep"}, test={"batch_size": 4}))


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
