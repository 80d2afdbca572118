"""Fixtures shared by the test suite: the real data beside the repository, one synthetic dataset factory, one
tiny training config factory, and one way to give a model non-trivial weights.

Tiers: ``pytest -m "not slow"`` is the quick loop (seconds to a couple of minutes); tests marked ``slow`` start
subprocesses (the CLI, torchrun), export ONNX graphs or train for many steps. ``.ci/run`` runs everything.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable, Dict, Tuple

import numpy as np
import pytest
import torch
from torch import nn

from posekit.data.synthetic import synthetic_splits

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The real pose data beside the repo (../shared/data); tests using it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present: real-data test skipped")
    return SHARED_DATA


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Callable[..., Path]:
    """``synthetic_data(num_train, num_val, seed, image_size)`` -> the root of a synthetic COCO-layout dataset
    (``train/`` and ``val/`` with ``annotations.json``), made once per distinct set of arguments in the session."""
    made: Dict[Tuple[Any, ...], Path] = {}

    def make(num_train: int = 32, num_val: int = 4, seed: int = 0, image_size: Tuple[int, int] = (48, 48)) -> Path:
        key = (num_train, num_val, seed, tuple(image_size))
        if key not in made:
            root = tmp_path_factory.mktemp(f"synthetic_{num_train}_{num_val}_{seed}")
            synthetic_splits(root, num_train=num_train, num_val=num_val, seed=seed, image_size=tuple(image_size))
            made[key] = root
        return made[key]

    return make


def tiny_config(root: Path, out: Path, **sections: Dict[str, Any]) -> Dict[str, Any]:
    """The config dict of a tiny HRNet (width 8) trained on a synthetic dataset at ``root``, writing to ``out``.
    Each keyword is a config section whose keys replace the defaults' (``train={"epochs": 3}``, ``model={"kwargs":
    {...}}`` replaces the whole kwargs); ``output_dir`` is the one plain value."""
    base = {
        "model": {"name": "hrnet_w16_small", "num_keypoints": 14, "kwargs": {"width": 8, "stem_width": 16}},
        "data": {"format": "synthetic", "root": str(root), "skeleton": "synthetic",
                 "train_ann": "train/annotations.json", "train_images": "train",
                 "val_ann": "val/annotations.json", "val_images": "val", "input_size": [32, 32]},
        "augment": {"half_body_prob": 0.0},
        "train": {"epochs": 1, "batch_size": 4, "lr": 1e-3, "lr_schedule": "constant", "workers": 0,
                  "eval_every": 0, "checkpoint_every": 0, "device": "cpu"},
        "test": {"metric": "pck", "batch_size": 16},
        "output_dir": str(out),
    }
    config = copy.deepcopy(base)
    for section, values in sections.items():
        config[section] = {**config.get(section, {}), **values} if isinstance(values, dict) else values
    return config


def randomized(model: nn.Module, seed: int = 0, batches_tracked: int = 5) -> nn.Module:
    """Non-trivial weights and BatchNorm statistics, so that equal outputs mean equal weights."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                t.fill_(batches_tracked)
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
    return model.eval()


EMPTY_MAT = np.zeros((0, 0))        # what scipy.io reads for a MATLAB [] (an empty field of a struct)


def mat_structs(items):
    """A 1 x n MATLAB struct array as scipy.io writes and reads it (fields: the union of the dicts' keys; a missing
    one is left empty [])."""
    fields = []
    for item in items:
        fields += [k for k in item if k not in fields]
    array = np.zeros((1, len(items)), dtype=[(f, object) for f in fields])
    for n, item in enumerate(items):
        for f in fields:
            array[0, n][f] = item.get(f, EMPTY_MAT)
    return array


class TwoConvs(nn.Module):
    """Two convolutions, both at an edge of the network (one reads the input, one writes the heatmaps): under the
    bf16 backends, which keep the edge layers in fp32, nothing is left to run in bf16."""

    name, num_keypoints, input_channels = "two_convs", 5, 3

    def __init__(self):
        super().__init__()
        self.first, self.head = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 5, 1)

    def forward(self, x):
        return [self.head(torch.relu(self.first(x)))]
