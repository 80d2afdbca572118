"""The recipes shipped inside the package: a CONFIG argument names one (``hrnet-w32_coco_256x192``) or a file.

Rule: an existing path wins; else a bare name (with or without ``.yaml``) is a shipped recipe; eval and predict
look for a shipped trained model of that name first (``hrnet-lite_lsp_128x128`` is both), every other command
and ``load_config`` itself read the recipe.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from posekit.apps.predictor import PosePredictor
from posekit.cli import _predict_config_and_inputs, main
from posekit.config import CONFIGS_DIR, load_config, resolve_config_path, shipped_config_names
from posekit.deploy.convert import CONFIG_DIR, convert_checkpoint, find_base_config
from posekit.errors import ConfigError
from posekit.models import create_model
from posekit.models.pretrained import PRETRAINED, load_config_or_pretrained, verified_weights

ROOT = Path(__file__).resolve().parents[1]
NAME = "hrnet-w32_coco_256x192"


def test_the_recipes_live_in_the_package():
    assert CONFIGS_DIR == ROOT / "posekit" / "configs" and CONFIG_DIR == CONFIGS_DIR
    names = shipped_config_names()
    assert len(names) == 16 and NAME in names and "hrnet-lite_lsp_128x128" in names
    assert names == sorted(p.name[:-len(".yaml")] for p in CONFIGS_DIR.iterdir() if p.suffix == ".yaml")


def test_the_checkout_keeps_configs_as_a_link_to_the_package_folder():
    link = ROOT / "configs"
    if not link.exists():
        pytest.skip("not a checkout with the configs link")
    assert link.resolve() == CONFIGS_DIR
    assert sorted(p.name for p in link.glob("*.yaml")) == sorted(p.name for p in CONFIGS_DIR.glob("*.yaml"))


@pytest.mark.parametrize("argument", [NAME, NAME + ".yaml", NAME + ".yml"])
def test_a_name_with_or_without_suffix_is_the_shipped_recipe(argument, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # no such file here
    assert resolve_config_path(argument) == CONFIGS_DIR / f"{NAME}.yaml"
    cfg = load_config(argument, ["train.lr=0.01"])
    assert cfg.model.name == "hrnet_w32" and cfg.input_hw == (256, 192) and cfg.train.lr == 0.01
    assert cfg.to_dict() == load_config(CONFIGS_DIR / f"{NAME}.yaml", ["train.lr=0.01"]).to_dict()


def test_an_existing_path_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path(f"{NAME}.yaml").write_text("model:\n  name: cpm_6stage\n  num_keypoints: 14\ndata:\n  skeleton: lsp\n")
    Path(NAME).write_text("model:\n  name: hourglass_8stack\n  num_keypoints: 16\ndata:\n  skeleton: mpii\n")
    assert resolve_config_path(f"{NAME}.yaml") == Path(f"{NAME}.yaml")
    assert load_config(f"{NAME}.yaml").model.name == "cpm_6stage"
    assert load_config(NAME).model.name == "hourglass_8stack"
    assert load_config(f"{NAME}.yml").model.name == "hrnet_w32"     # no such file: the shipped one


def test_an_unknown_name_lists_the_close_names_on_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load_config("hrnet-w32_coco_256x19")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("hrnet-w32_coco_256x19: cannot read config")
    close = message.split("close: ")[1].split(" (")[0].split(", ")
    assert close[0] == NAME and set(close) <= set(shipped_config_names())
    with pytest.raises(ConfigError, match=r"no shipped recipe of that name \(posekit configs lists them\)"):
        load_config("nothing-like-it")


def test_a_missing_path_is_never_taken_for_a_name(tmp_path):
    # A folder in the argument means a file: the shipped recipe is only suggested ...
    with pytest.raises(ConfigError, match=rf"cannot read config: no such file .*give the name alone: {NAME}\)"):
        load_config(tmp_path / "configs" / f"{NAME}.yaml")
    # ... and another missing file keeps the reader's message.
    with pytest.raises(ConfigError, match="cannot read config: No such file"):
        load_config(tmp_path / "mine.yaml")


def test_a_shipped_model_and_recipe_of_one_name_keep_each_meaning(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    both = "hrnet-lite_lsp_128x128"
    assert both in PRETRAINED and both in shipped_config_names()
    recipe = load_config(both)                    # train, export, convert, PosePredictor.from_config
    assert recipe.model.weights is None and recipe.train.epochs == 30 and recipe.data.val_split == "holdout"
    shipped = load_config_or_pretrained(both)     # eval, predict
    assert shipped.model.weights == str(verified_weights(both)) and shipped.data.val_split == "test"
    # A recipe that is no shipped model is its recipe for eval and predict too.
    assert load_config_or_pretrained(NAME, ["model.weights=w.pth"]).model.weights == "w.pth"


def test_predict_takes_a_recipe_name_as_its_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _predict_config_and_inputs([NAME, "a.jpg"]) == (NAME, ["a.jpg"])
    assert _predict_config_and_inputs(["hrnet-lite_lsp_128x128", "a.jpg"]) == ("hrnet-lite_lsp_128x128", ["a.jpg"])
    assert _predict_config_and_inputs(["a.jpg", "b.jpg"]) == (None, ["a.jpg", "b.jpg"])
    Path(NAME).mkdir()   # a folder of images of that name is an input
    assert _predict_config_and_inputs([NAME]) == (None, [NAME])


def test_predictor_from_a_recipe_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # The shipped model's recipe builds the shipped model's architecture: its weights load strictly.
    predictor = PosePredictor.from_config("hrnet-lite_lsp_128x128", weights=verified_weights("hrnet-lite_lsp_128x128"),
                                          device="cpu", backend="torch")
    poses = predictor(np.full((96, 64, 3), 128, np.uint8))
    assert len(poses) == 1 and poses[0].keypoints.shape == (14, 2) and np.isfinite(poses[0].keypoints).all()


def test_convert_takes_a_recipe_name_as_its_base_config(tmp_path):
    source = create_model("hrnet_w16_small", num_keypoints=5)
    torch.save(source.state_dict(), tmp_path / "w16.pth")
    result = convert_checkpoint(tmp_path / "w16.pth", "hrnet_w16_small", tmp_path / "out",
                                base_config="hrnet-w32_mpii_256x256")
    assert result.base_config == CONFIGS_DIR / "hrnet-w32_mpii_256x256.yaml"
    cfg = load_config(result.config)
    assert cfg.data.format == "mpii" and cfg.input_hw == (256, 256) and cfg.model.num_keypoints == 5
    assert find_base_config("hrnet_w32", 17) == CONFIGS_DIR / f"{NAME}.yaml"


def test_cli_configs_lists_every_recipe(capsys):
    assert main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "model", "data", "input", "K", "metric", "paper"]
    rows = {line.split()[0].rstrip("*"): line.split() for line in lines[1:] if not line.startswith("*")}
    assert sorted(rows) == shipped_config_names()
    assert rows[NAME][1:6] == ["hrnet_w32", "coco", "256x192", "17", "coco"]
    assert lines[1 + shipped_config_names().index(NAME)].endswith("COCO val2017 AP 0.744 with detection boxes")
    assert rows["cpm-6stg_lsp_368x368"][1:] == ["cpm_6stage", "lsp", "368x368", "14", "pck", "LSP", "PCK@0.2", "84.32"]
    assert any(line.startswith("hrnet-lite_lsp_128x128*") for line in lines)
    assert lines[-1].startswith("* also a shipped trained model: eval and predict by this name use its trained weights")


def test_cli_train_with_an_unknown_name_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "hrnet-w32_coco_265x192"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("posekit: error: hrnet-w32_coco_265x192: cannot read config")
    assert f"close: {NAME}" in err


def test_every_name_the_readme_runs_is_shipped():
    readme = (ROOT / "README.md").read_text()
    command = r"posekit (?:train|eval|predict|export --config|convert .*--config) +([\w.-]+)(?=\s)"
    named = set(re.findall(command, readme))
    recipes = {n for n in named if not Path(n).suffix}    # not photo.jpg, clip.mp4, ...
    assert NAME in recipes
    assert recipes <= set(shipped_config_names()) | set(PRETRAINED), recipes - set(shipped_config_names())
