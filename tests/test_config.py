from __future__ import annotations

from pathlib import Path

import pytest

from posekit.config import Config, apply_overrides, load_config
from posekit.errors import ConfigError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_defaults_are_the_official_hrnet_coco_recipe():
    cfg = Config()
    assert cfg.train.optimizer == "adam" and cfg.train.lr == 1e-3 and cfg.train.weight_decay == 0.0
    assert cfg.train.lr_steps == [170, 200] and cfg.train.lr_factor == 0.1 and cfg.train.epochs == 210
    assert cfg.model.sigma is None and cfg.input_hw == (256, 192)
    assert cfg.test.oks_thre == 0.9 and cfg.test.in_vis_thre == 0.2 and cfg.test.shift_heatmap


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_load(path):
    cfg = load_config(path)
    h, w = cfg.input_hw
    assert path.name.endswith(f"_{h}x{w}.yaml")
    family = path.name.split("_")[0].split("-")[0]
    assert cfg.model.name.startswith(family)
    if family == "hrnet":   # sigma 3 at 384x288, 2 otherwise (official yaml)
        assert cfg.model.sigma == (3.0 if h == 384 else 2.0)
    from posekit.models import list_models
    assert cfg.model.name in list_models()


def test_round_trip_through_yaml(tmp_path):
    cfg = load_config(CONFIGS[0], ["train.lr=0.005", "data.input_size=[384, 288]"])
    path = tmp_path / "c.yaml"
    path.write_text(cfg.to_yaml())
    again = load_config(path)
    assert again.to_dict() == cfg.to_dict()
    assert again.train.lr == 0.005 and again.input_hw == (384, 288)


def test_overrides_parse_values_and_keep_strings(tmp_path):
    cfg = apply_overrides(Config(), ["train.epochs=3", "data.root=2017", "model.weights=null", "test.flip_test=false",
                                     "model.kwargs={width: 18}"])
    assert cfg.train.epochs == 3
    assert cfg.data.root == "2017"          # a number-looking folder name stays a string
    assert cfg.model.weights is None and cfg.test.flip_test is False
    assert cfg.model.kwargs == {"width": 18}
    assert isinstance(apply_overrides(Config(), ["train.lr=1"]).train.lr, float)


@pytest.mark.parametrize("override, message", [
    ("train.lrr=1", "unknown key 'train.lrr'"),
    ("train.epochs=abc", "train.epochs must be an integer"),
    ("train.epochs=2.5", "train.epochs must be an integer"),
    ("test.flip_test=maybe", "test.flip_test must be true or false"),
    ("data.input_size=5", "data.input_size must be a list"),
    ("train=3", "train must be a mapping"),
    ("nonsense", "must look like key.sub=value"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Config(), [override])


def test_bad_files_name_the_file(tmp_path):
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("model:\n  name: hrnet_w32\n  depth: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(unknown)
    assert str(unknown) in str(info.value) and "model.depth" in str(info.value)
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    python_tag = tmp_path / "tag.yaml"
    python_tag.write_text("model: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(python_tag)
