from __future__ import annotations

import re
from pathlib import Path

import pytest

from posekit.config import Config, apply_overrides, config_from_dict, load_config, validate
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


# ------------------------------------------------------------------------------------------ allowed values
ENUM_KEYS = {
    "data.format": ("coco", "mpii", "flic", "lsp", "synthetic", "crowdpose", "ochuman", "aic", "posetrack"),
    "data.val_split": ("test", "holdout"),
    "augment.distribution": ("normal", "uniform", "torch7"),
    "augment.half_body_style": ("hrnet", "mspn"),
    "train.optimizer": ("adam", "adamw", "sgd", "rmsprop"),
    "train.lr_schedule": ("multistep", "step", "cosine", "linear", "constant"),
    "train.lr_scale": ("none", "linear"),
    "train.amp": ("auto", "off", "bf16", "fp16"),
    "test.metric": ("coco", "pck", "pckh"),
    "test.nms": ("oks", "soft_oks", "none"),
    "test.decode": ("quarter", "dark"),
}
SHIPPED = CONFIGS + sorted((Path(__file__).resolve().parents[1] / "posekit" / "weights").glob("*.yaml"))


def _nested(key, value):
    section, name = key.split(".")
    return {section: {name: value}}


def test_every_enum_like_field_is_declared_with_its_allowed_values():
    import dataclasses
    import typing

    # A new Literal field needs its line in ENUM_KEYS, and so its tests below.
    declared = {}
    cfg = Config()
    for section in dataclasses.fields(cfg):
        settings = getattr(cfg, section.name)
        if dataclasses.is_dataclass(settings):
            for name, hint in typing.get_type_hints(type(settings)).items():
                if typing.get_origin(hint) is typing.Literal:
                    declared[f"{section.name}.{name}"] = typing.get_args(hint)
    assert declared == ENUM_KEYS


@pytest.mark.parametrize("key", sorted(ENUM_KEYS))
def test_a_value_outside_the_allowed_set_fails_at_load(tmp_path, key):
    import yaml

    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_nested(key, "bogus")))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {key} must be ") and message.endswith(", got 'bogus'")
    assert "\n" not in message and all(value in message for value in ENUM_KEYS[key])
    with pytest.raises(ConfigError, match=f"^<config>: {key} must be .*got 'bogus'$"):
        config_from_dict(_nested(key, "bogus"))
    for value in ENUM_KEYS[key]:   # every allowed value passes the loader (the cross-field rules aside)
        try:
            assert config_from_dict(_nested(key, value)) is not None
        except ConfigError as exc:
            assert f"{key} must be" not in str(exc)


@pytest.mark.parametrize("key", sorted(ENUM_KEYS))
def test_overrides_are_checked_against_the_allowed_values(key):
    with pytest.raises(ConfigError, match=f"^--set: {key} must be .*got 'bogus'$"):
        apply_overrides(Config(), [f"{key}=bogus"])
    with pytest.raises(ConfigError, match=f"^--set: {key} must be .*got 'bogus'$"):
        load_config(CONFIGS[0], [f"{key}=bogus"])


def test_allowed_value_messages_read_as_before():
    # The wording of the checks at the use sites, which tests and users match on.
    with pytest.raises(ConfigError, match=r"^--set: test\.nms must be oks, soft_oks, none, got 'greedy'$"):
        apply_overrides(Config(), ["test.nms=greedy"])
    with pytest.raises(ConfigError, match=r"^--set: train\.lr_scale must be none or linear, got 'sqrt'$"):
        apply_overrides(Config(), ["train.lr_scale=sqrt"])
    with pytest.raises(ConfigError, match=r"train\.optimizer must be adam, adamw, sgd, rmsprop, got 3"):
        config_from_dict({"train": {"optimizer": 3}})


def test_yaml_booleans_are_pointed_out_and_bare_words_work_as_overrides(tmp_path):
    path = tmp_path / "amp.yaml"
    path.write_text("train:\n  amp: off\n")
    with pytest.raises(ConfigError, match="train.amp must be .* got False .*quote the word"):
        load_config(path)
    assert apply_overrides(Config(), ["train.amp=off"]).train.amp == "off"   # YAML's false, taken as the word


# ------------------------------------------------------------------------------------------ cross-field rules
@pytest.mark.parametrize("values, message", [
    ({"data": {"format": "crowdpose", "skeleton": "coco"}},
     "data.format crowdpose holds crowdpose keypoints: set data.skeleton to crowdpose (it is 'coco')"),
    ({"data": {"format": "ochuman", "skeleton": "mpii"}}, "set data.skeleton to ochuman or coco (it is 'mpii')"),
    ({"model": {"num_keypoints": 17}, "data": {"keypoint_subset": [0, 1, 2]}},
     "data.keypoint_subset keeps 3 joints but model.num_keypoints is 17"),
    ({"data": {"format": "lsp", "skeleton": "lsp", "holdout": [900, 1200]}}, "data.holdout must be [first, last] "
     "LSP image numbers within 1-1000, got [900, 1200]"),
    ({"data": {"format": "lsp", "skeleton": "lsp", "holdout": [5]}}, "data.holdout must be [first, last]"),
    ({"data": {"format": "lsp", "skeleton": "lsp", "holdout": [0, 10]}}, "within 1-1000"),
    ({"data": {"format": "lsp", "skeleton": "lsp", "holdout": [20, 10]}}, "within 1-1000"),
    ({"data": {"format": "lsp", "skeleton": "lsp", "val_split": "holdout"}},
     "data.val_split is holdout but data.holdout is not set"),
    ({"data": {"val_split": "holdout", "holdout": [1, 100]}}, "data.val_split is holdout but data.format is coco"),
    ({"train": {"device": "gpu"}}, "train.device must be auto, cpu, cuda or cuda:N, got 'gpu'"),
    ({"train": {"device": "cuda:x"}}, "train.device must be"),
    ({"train": {"batch_size": 0}}, "train.batch_size must be at least 1, got 0"),
    ({"train": {"accumulate_steps": 0}}, "train.accumulate_steps must be at least 1, got 0"),
    ({"train": {"ema_decay": 1.0}}, "train.ema_decay must be in [0, 1), got 1.0"),
    ({"train": {"ema_decay": -0.1}}, "train.ema_decay must be in [0, 1)"),
    ({"train": {"keep_checkpoints": -1}}, "train.keep_checkpoints must be 0 (all) or more, got -1"),
    ({"train": {"lr_reference_batch": -1}}, "train.lr_reference_batch must be 0 or more, got -1"),
    ({"test": {"scales": []}}, "test.scales must list at least one scale factor"),
    ({"test": {"scales": [1.0, -0.5]}}, "test.scales must be positive, got -0.5"),
    ({"test": {"scales": [1.0, float("nan")]}}, "test.scales must be positive, got nan"),
    ({"test": {"use_gt_bbox": False}}, "test.use_gt_bbox is false but test.det_file is not set"),
])
def test_contradicting_settings_fail_at_load(tmp_path, values, message):
    import yaml

    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        config_from_dict(values, "x.yaml")
    assert str(info.value).startswith("x.yaml: ") and "\n" not in str(info.value)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(ConfigError, match=f"^{re.escape(str(path))}: .*{re.escape(message)}"):
        load_config(path)
    overrides = [f"{section}.{key}={yaml.safe_dump(value, default_flow_style=True).strip()}"
                 for section, settings in values.items() for key, value in settings.items()]
    with pytest.raises(ConfigError, match=re.escape(message)):
        apply_overrides(Config(), overrides)


@pytest.mark.parametrize("values", [
    {"data": {"format": "ochuman", "skeleton": "coco"}},
    {"data": {"format": "lsp", "skeleton": "lsp", "holdout": [801, 1000], "val_split": "holdout"}},
    {"data": {"format": "lsp", "skeleton": "lsp", "holdout": [1, 1]}},
    {"model": {"num_keypoints": 3}, "data": {"keypoint_subset": [0, 5, 6]}},
    {"data": {"keypoint_subset": [0, 5, 6]}},     # model.num_keypoints unset: follows the subset
    {"train": {"device": "cuda:1", "ema_decay": 0.999, "keep_checkpoints": 0}},
    {"test": {"use_gt_bbox": False, "det_file": "dets.json", "scales": [0.8, 1.0]}},
])
def test_consistent_settings_pass_validation(values):
    config_from_dict(values)


def test_overrides_are_validated_together_after_the_file(tmp_path):
    # One override alone would contradict the file (crowdpose data, COCO keypoints); both together do not.
    cfg = load_config(CONFIGS[0], ["data.format=crowdpose", "data.skeleton=crowdpose"])
    assert (cfg.data.format, cfg.data.skeleton) == ("crowdpose", "crowdpose")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(CONFIGS[0]))} with --set: data.format crowdpose holds"):
        load_config(CONFIGS[0], ["data.format=crowdpose"])
    path = tmp_path / "split.yaml"
    path.write_text("data:\n  format: lsp\n  skeleton: lsp\n  val_split: holdout\n")
    assert load_config(path, ["data.holdout=[801, 1000]"]).data.holdout == [801, 1000]


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_config_passes_validation(path):
    from posekit.config import validate

    cfg = load_config(path)
    validate(cfg, str(path))
    assert config_from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()


@pytest.mark.parametrize("section,key,value", [("train", "lr_schedule", "cosin"), ("train", "optimizer", "adamm"),
                                               ("test", "metric", "pck3"), ("augment", "distribution", "gauss")])
def test_a_value_set_in_python_after_loading_is_checked_by_validate(section, key, value):
    # Assignments bypass the loader; training and evaluation call validate() again before any work.
    cfg = config_from_dict({})
    setattr(getattr(cfg, section), key, value)
    with pytest.raises(ConfigError, match=rf"{section}\.{key} must be .*got '{value}'"):
        validate(cfg)


def test_an_unknown_keypoint_set_is_refused_when_the_file_is_read(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  skeleton: cocoo\n")
    with pytest.raises(ConfigError, match=r"data\.skeleton must be coco, mpii, .*got 'cocoo'") as caught:
        load_config(path)
    assert str(path) in str(caught.value)
