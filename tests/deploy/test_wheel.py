"""posekit installed from its wheel, run from a folder outside the repository: the shipped recipes and the shipped
model travel inside the package, and the commands take their names."""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
import yaml

from posekit.config import shipped_config_names

ROOT = Path(__file__).resolve().parents[2]
# The interpreter the test environment was made from. The fresh environment sees its site-packages
# (--system-site-packages) and this environment's (a .pth file), so that it needs nothing installed but the wheel
# and nothing is downloaded; its own site-packages come first, so posekit is the wheel's.
BASE_PYTHON = Path(sys.base_prefix) / "bin" / "python3"
DEPENDENCIES = "import torch, numpy, cv2, scipy, h5py, pycocotools, safetensors, yaml, tqdm, matplotlib"


def run(args: List[str], cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def wheel_python(tmp_path_factory) -> Path:
    """The python of a fresh environment with only the posekit wheel installed (dependencies: the base's)."""
    if not BASE_PYTHON.is_file():
        pytest.skip(f"no base interpreter {BASE_PYTHON} to make a fresh environment with")
    tmp = tmp_path_factory.mktemp("wheel")
    # Built from a copy of the package: setuptools reuses a build/ folder beside pyproject.toml, so a stale one in
    # the checkout could slip files into the wheel that the sources no longer have.
    src = tmp / "src"
    shutil.copytree(ROOT / "posekit", src / "posekit", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    built = run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", src,
                 "-w", tmp / "dist"], cwd=tmp)
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp / "dist").glob("posekit-*.whl")
    venv = tmp / "venv"
    # No pip of its own (ensurepip is slow): the one of the environments it sees installs into it.
    made = run([BASE_PYTHON, "-m", "venv", "--system-site-packages", "--without-pip", venv], cwd=tmp)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    if sys.prefix != sys.base_prefix:
        # A plain path line: the test environment's own .pth files (an editable posekit) are not run.
        purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp)
        Path(purelib.stdout.strip(), "test-environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    if run([python, "-c", DEPENDENCIES], cwd=tmp).returncode != 0:
        pytest.skip("the fresh environment does not find posekit's dependencies (no download in tests)")
    # --ignore-installed: a posekit the base environment may hold (an editable install) is left alone.
    installed = run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed", wheel],
                    cwd=tmp)
    assert installed.returncode == 0, installed.stderr
    return python


@pytest.mark.slow
def test_wheel_ships_the_recipes_and_commands_take_their_names(wheel_python, synthetic_data, tmp_path):
    elsewhere = tmp_path / "elsewhere"     # no configs/ folder, not the checkout
    elsewhere.mkdir()
    where = run([wheel_python, "-c", "import posekit; print(posekit.__file__)"], cwd=elsewhere)
    assert Path(where.stdout.strip()).is_relative_to(wheel_python.parent.parent), where.stdout + where.stderr

    listed = run([wheel_python, "-m", "posekit", "configs"], cwd=elsewhere)
    assert listed.returncode == 0, listed.stderr
    rows = [line.split()[0].rstrip("*") for line in listed.stdout.splitlines()[1:] if not line.startswith("*")]
    assert rows == shipped_config_names() and len(rows) == 16

    # Train a shipped recipe by its name on a tiny synthetic set: one step.
    root = synthetic_data(num_train=8, num_val=2)
    data = {"format": "synthetic", "skeleton": "synthetic", "root": root, "extra_root": "null", "holdout": "null",
            "val_split": "test", "train_ann": "train/annotations.json", "train_images": "train",
            "val_ann": "val/annotations.json", "val_images": "val"}
    train = {"max_steps": 1, "batch_size": 2, "workers": 0, "eval_every": 0, "amp": "off", "device": "cpu",
             "time_limit": 0}
    overrides = [f"data.{k}={v}" for k, v in data.items()] + [f"train.{k}={v}" for k, v in train.items()]
    trained = run([wheel_python, "-m", "posekit", "train", "hrnet-lite_lsp_128x128", "--no-progress",
                   "--output-dir", "out"] + [a for o in overrides for a in ("--set", o)], cwd=elsewhere)
    assert trained.returncode == 0, trained.stderr
    assert "trained 1 steps" in trained.stdout
    used = yaml.safe_load((elsewhere / "out" / "config.yaml").read_text())
    assert used["model"]["kwargs"]["stage_modules"] == [1, 1, 1] and used["data"]["input_size"] == [128, 128]

    # The same name for predict is the shipped trained model (its weights come with the wheel too).
    image = sorted((root / "train" / "images").iterdir())[0]
    predicted = run([wheel_python, "-m", "posekit", "predict", "hrnet-lite_lsp_128x128", image, "--out", "preds",
                     "--no-progress"], cwd=elsewhere)
    assert predicted.returncode == 0, predicted.stderr
    poses = json.loads((elsewhere / "preds" / "poses.json").read_text())
    assert len(poses) == 1 and len(poses[0]["people"][0]["keypoints"]) == 14

    # A name that is neither a file nor a recipe: one line with the close names.
    wrong = run([wheel_python, "-m", "posekit", "eval", "hrnet-w32_coco_265x192", "--weights", "w.pth"], cwd=elsewhere)
    assert wrong.returncode == 2 and len(wrong.stderr.strip().splitlines()) == 1
    assert "close: hrnet-w32_coco_256x192" in wrong.stderr
