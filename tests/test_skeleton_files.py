"""Keypoint sets from files: the keypoint-set file loader, data.skeleton auto (a COCO file's person category),
left/right detection from names, and the config and build wiring (data.skeleton, model.num_keypoints)."""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from posekit.build import dataset_skeleton, model_num_keypoints
from posekit.config import config_from_dict, load_config
from posekit.errors import ConfigError, DataError
from posekit.skeletons import (SKELETONS, UNIFORM_SIGMA, KeypointSetWarning, coco_file_skeleton,
                               flip_pairs_from_names, load_skeleton_file, mirror_name, name_side,
                               skeleton_from_coco, write_skeleton_file)

FIVE = ["head", "left_hand", "right_hand", "left_foot", "right_foot"]
FIVE_FILE = """\
name: stick5
keypoints: [head, left_hand, right_hand, left_foot, right_foot]
flip_pairs: [[left_hand, right_hand], [left_foot, right_foot]]
limbs: [[head, left_hand], [head, right_hand], [head, left_foot], [head, right_foot]]
sigmas: [0.03, 0.06, 0.06, 0.09, 0.09]
upper_body: [head, left_hand, right_hand]
lower_body: [left_foot, right_foot]
limb_colors: ["#ff8000", [0, 128, 255], "#00c800", [10, 20, 30]]
torso: [head, right_foot]
"""


def _write(tmp_path: Path, text: str, name: str = "set.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _coco(names, skeleton, category_id=1):
    return {"images": [], "annotations": [],
            "categories": [{"id": category_id, "name": "person", "keypoints": names, "skeleton": skeleton}]}


# ------------------------------------------------------------------------------------------ names -> sides
@pytest.mark.parametrize("name, mirror, side", [
    ("left_hand", "right_hand", "l"), ("right_foot", "left_foot", "r"), ("l_wrist", "r_wrist", "l"),
    ("R-knee", "L-knee", "r"), ("hand_left", "hand_right", "l"), ("wrist_R", "wrist_L", "r"),
    ("leftHand", "rightHand", "l"), ("LeftEye", "RightEye", "l"), ("LShoulder", "RShoulder", "l"),
    ("handRight", "handLeft", "r"), ("lefthand", "righthand", "l"), ("LEFT_EAR", "RIGHT_EAR", "l"),
    ("head", None, "c"), ("upright", None, "c"), ("nose", None, "c"), ("lower_lip", None, "c"), ("left", None, "c"),
])
def test_side_words_are_found_at_either_end_of_a_name(name, mirror, side):
    assert mirror_name(name) == mirror
    assert name_side(name) == side


def test_flip_pairs_from_names_match_every_built_in_set():
    # The built-in sets' hand-written flip pairs are exactly what their names say.
    for skeleton in SKELETONS.values():
        pairs, unpaired = flip_pairs_from_names(skeleton.keypoints)
        assert {frozenset(p) for p in pairs} == {frozenset(p) for p in skeleton.flip_pairs}, skeleton.name
        assert unpaired == ()


def test_a_sided_name_without_its_mirror_stays_unpaired():
    pairs, unpaired = flip_pairs_from_names(["head", "left_hand", "right_hand", "left_foot"])
    assert pairs == ((1, 2),) and unpaired == ("left_foot",)


# ------------------------------------------------------------------------------------------ keypoint-set files
@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_a_keypoint_set_file_gives_the_set_it_describes(tmp_path, suffix):
    import yaml

    text = FIVE_FILE if suffix != ".json" else json.dumps(yaml.safe_load(FIVE_FILE))
    skeleton = load_skeleton_file(_write(tmp_path, text, "stick5" + suffix))
    assert skeleton.name == "stick5" and skeleton.keypoints == tuple(FIVE) and skeleton.num_keypoints == 5
    assert skeleton.flip_pairs == ((1, 2), (3, 4))
    assert skeleton.flip_permutation().tolist() == [0, 2, 1, 4, 3]
    assert skeleton.limbs == ((0, 1), (0, 2), (0, 3), (0, 4))
    assert skeleton.sigmas == (0.03, 0.06, 0.06, 0.09, 0.09)
    assert skeleton.upper_body == (0, 1, 2) and skeleton.lower_body == (3, 4) and skeleton.torso == (0, 4)
    # Colours are written RGB ('#rrggbb' or [r, g, b]) and stored BGR, as the built-in sets store them.
    assert skeleton.limb_colors == ((0, 128, 255), (255, 128, 0), (0, 200, 0), (30, 20, 10))


def test_optional_keys_take_their_documented_defaults(tmp_path):
    path = _write(tmp_path, "keypoints: [nose, l_eye, r_eye, l_hip, r_hip, tail]\nlimbs: [[nose, l_eye]]\n")
    with pytest.warns(KeypointSetWarning, match=re.escape(f"{path}: no OKS sigmas")):
        skeleton = load_skeleton_file(path)
    assert skeleton.name == "set"                                  # the file's stem
    assert skeleton.flip_pairs == ((1, 2), (3, 4))                 # from the names
    assert skeleton.sigmas == (UNIFORM_SIGMA,) * 6 and abs(UNIFORM_SIGMA - 1.138 / 17) < 1e-12
    assert skeleton.lower_body == (3, 4) and skeleton.upper_body == (0, 1, 2, 5)
    assert skeleton.torso is None
    assert skeleton.limb_colors == ((0, 128, 255),)                # a left limb: orange, as the built-in sets
    one = load_skeleton_file(_write(tmp_path, "keypoints: [a, b]\nsigmas: 0.04\n", "one.yaml"))
    assert one.sigmas == (0.04, 0.04) and one.flip_pairs == () and one.limbs == ()


def test_a_written_set_reads_back_equal(tmp_path):
    for skeleton in (SKELETONS["coco"], SKELETONS["mpii"], load_skeleton_file(_write(tmp_path, FIVE_FILE))):
        for suffix in (".yaml", ".json"):
            path = tmp_path / f"out_{skeleton.name}{suffix}"
            write_skeleton_file(skeleton, path)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", KeypointSetWarning)    # MPII has no sigmas: the uniform ones
                back = load_skeleton_file(path)
            assert back.keypoints == skeleton.keypoints and back.flip_pairs == skeleton.flip_pairs
            assert back.limbs == skeleton.limbs and back.limb_colors == skeleton.limb_colors
            assert back.upper_body == skeleton.upper_body and back.lower_body == skeleton.lower_body
            assert back.torso == skeleton.torso
            assert np.allclose(back.sigmas, skeleton.sigmas or [UNIFORM_SIGMA] * skeleton.num_keypoints)


@pytest.mark.parametrize("text, problem", [
    ("keypoints: [a, b, a]\n", "keypoint 'a' appears twice (keypoints[0] and keypoints[2])"),
    ("keypoints: []\n", "'keypoints' must be a non-empty list of names"),
    ("limbs: [[a, b]]\n", "'keypoints' must be a non-empty list of names, found None"),
    ("keypoints: [a, 3]\n", "keypoints[1] must be a non-empty name, found 3"),
    ("keypoints: [l_a, r_a]\nflip_pairs: [[l_a, r_b]]\n", "flip_pairs[0]: unknown keypoint 'r_b'; the keypoints are l_a, r_a"),
    ("keypoints: [a, b, c]\nflip_pairs: [[a, b], [b, c]]\n", "flip_pairs: keypoint 'b' is in two pairs"),
    ("keypoints: [a, b]\nflip_pairs: [[a]]\n", "flip_pairs[0] must be a [name, name] pair, found ['a']"),
    ("keypoints: [a, b]\nlimbs: [[a, a]]\n", "limbs[0] joins 'a' to itself"),
    ("keypoints: [a, b]\nlimbs: [[a, hand]]\n", "limbs[0]: unknown keypoint 'hand'"),
    ("keypoints: [a, b]\nsigmas: [0.1, 0.2, 0.3]\n", "sigmas: 3 values for 2 keypoints"),
    ("keypoints: [a, b]\nsigmas: [0.1, -1]\n", "sigmas[1] must be a positive number, found -1"),
    ("keypoints: [a, b]\nsigmas: [0.1, x]\n", "sigmas[1] must be a positive number, found 'x'"),
    ("keypoints: [a, b]\nupper_body: [a]\nlower_body: [a, b]\n", "keypoint 'a' is in both upper_body and lower_body"),
    ("keypoints: [a, b]\nupper_body: [c]\n", "upper_body: unknown keypoint 'c'"),
    ("keypoints: [a, b]\ntorso: [a, z]\n", "torso[0]: unknown keypoint 'z'"),
    ("keypoints: [a, b]\nlimbs: [[a, b]]\nlimb_colors: []\n", "limb_colors: 0 colours for 1 limbs"),
    ("keypoints: [a, b]\nlimbs: [[a, b]]\nlimb_colors: [[0, 0, 300]]\n", "limb_colors[0] must be '#rrggbb' or [r, g, b]"),
    ("keypoints: [a, b]\nflip: [[a, b]]\n", "unknown key 'flip'; a keypoint-set file has name, keypoints, flip_pairs"),
    ("- a\n- b\n", "a keypoint-set file holds a mapping"),
    ("keypoints: [a, b\n", "not valid YAML"),
])
def test_a_bad_keypoint_set_file_is_one_line_naming_the_file_and_the_problem(tmp_path, text, problem):
    path = _write(tmp_path, text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KeypointSetWarning)
        with pytest.raises(ConfigError) as caught:
            load_skeleton_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message, message


def test_a_missing_or_misnamed_keypoint_set_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path / 'nope.yaml'}: keypoint-set file not found")):
        load_skeleton_file(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="a keypoint-set file ends in .yaml, .yml, .json"):
        load_skeleton_file(_write(tmp_path, "keypoints: [a]\n", "set.txt"))


def test_a_changed_file_is_read_again(tmp_path):
    path = _write(tmp_path, "keypoints: [a, b]\nsigmas: 0.1\n")
    assert load_skeleton_file(path).keypoints == ("a", "b")
    path.write_text("keypoints: [a, b, c]\nsigmas: 0.1\n")
    assert load_skeleton_file(path).keypoints == ("a", "b", "c")


# ------------------------------------------------------------------------------------------ auto (COCO files)
def test_auto_reads_names_and_the_one_based_skeleton_of_the_person_category(tmp_path):
    data = _coco(FIVE, [[1, 2], [1, 3], [1, 4], [1, 5]])
    with pytest.warns(KeypointSetWarning, match=r"no OKS sigmas for this keypoint set: 0\.0669"):
        skeleton = skeleton_from_coco(data, "ann.json")
    assert skeleton.keypoints == tuple(FIVE)
    assert skeleton.limbs == ((0, 1), (0, 2), (0, 3), (0, 4))      # COCO's 1-based pairs, 0-based here
    assert skeleton.flip_pairs == ((1, 2), (3, 4))
    assert skeleton.sigmas == (UNIFORM_SIGMA,) * 5
    assert skeleton.lower_body == (3, 4) and skeleton.upper_body == (0, 1, 2)


def test_auto_on_coco_s_own_category_gives_coco_s_set_but_uniform_sigmas():
    coco = SKELETONS["coco"]
    # COCO's files name the joints left_eye, ...; its skeleton field is 1-based.
    names = [n.replace("l_", "left_").replace("r_", "right_") for n in coco.keypoints]
    with pytest.warns(KeypointSetWarning):
        skeleton = skeleton_from_coco(_coco(names, [[a + 1, b + 1] for a, b in coco.limbs]), "person_keypoints.json")
    assert skeleton.limbs == coco.limbs and skeleton.flip_pairs == coco.flip_pairs
    assert skeleton.upper_body == coco.upper_body and skeleton.lower_body == coco.lower_body
    assert skeleton.torso == coco.torso and skeleton.limb_colors == coco.limb_colors


def test_auto_picks_the_category_the_reader_reads():
    data = {"categories": [{"id": 7, "name": "car"}, {"id": 1, "name": "hand", "keypoints": ["a", "b"],
                                                      "skeleton": [[1, 2]]}]}
    with pytest.warns(KeypointSetWarning):
        assert skeleton_from_coco(data, "x.json").name == "hand"


@pytest.mark.parametrize("data, problem", [
    (_coco(FIVE, [[0, 1]]), "category 1: skeleton[0] [0, 1] is outside 1-5 (COCO numbers keypoints from 1)"),
    (_coco(FIVE, [[1, 6]]), "category 1: skeleton[0] [1, 6] is outside 1-5"),
    (_coco(FIVE, [[1, "b"]]), "category 1: skeleton[0] must be a pair of keypoint numbers, found [1, 'b']"),
    (_coco(["a", "a"], []), "category 1: keypoint 'a' appears twice"),
    ({"images": [], "categories": [{"id": 1, "name": "person"}]}, "no category lists 'keypoints'"),
    ({"images": []}, "no 'categories' list"),
    ([], "expected a COCO annotation object"),
])
def test_a_bad_coco_category_is_one_line(data, problem):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KeypointSetWarning)
        with pytest.raises(DataError) as caught:
            skeleton_from_coco(data, "ann.json")
    assert str(caught.value).startswith("ann.json: ") and problem in str(caught.value), str(caught.value)


# ------------------------------------------------------------------------------------------ config and build
def _cfg(root: Path, skeleton: str, **model):
    return config_from_dict({"model": {"name": "hrnet_w16_small", **model},
                             "data": {"format": "coco", "root": str(root), "skeleton": skeleton,
                                      "train_ann": "train.json", "val_ann": "val.json"}})


def test_data_skeleton_accepts_auto_and_an_existing_file_and_refuses_the_rest(tmp_path):
    path = _write(tmp_path, FIVE_FILE)
    assert _cfg(tmp_path, str(path)).data.skeleton == str(path)
    assert _cfg(tmp_path, "auto").data.skeleton == "auto"
    with pytest.raises(ConfigError, match=r"data\.skeleton: keypoint-set file .*missing\.yaml not found"):
        _cfg(tmp_path, str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match=r"data\.skeleton must be coco, .*, auto or a keypoint-set file "
                                          r"\(\.yaml, \.yml, \.json\), got 'stick'"):
        _cfg(tmp_path, "stick")
    with pytest.raises(ConfigError, match="data.skeleton auto reads the keypoint set from a COCO-format annotation "
                                          "file: data.format must be coco or synthetic"):
        config_from_dict({"data": {"format": "mpii", "skeleton": "auto"}})
    cfg_file = _write(tmp_path, f"data:\n  skeleton: {tmp_path / 'gone.json'}\n", "c.yaml")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(cfg_file))}: data.skeleton: keypoint-set file"):
        load_config(cfg_file)


def test_num_keypoints_follows_the_set_unless_given(tmp_path):
    path = _write(tmp_path, FIVE_FILE)
    assert model_num_keypoints(_cfg(tmp_path, "coco")) == 17            # the old default, unchanged
    assert model_num_keypoints(_cfg(tmp_path, "mpii")) == 16
    assert model_num_keypoints(_cfg(tmp_path, str(path))) == 5
    assert model_num_keypoints(_cfg(tmp_path, str(path), num_keypoints=7)) == 7
    (tmp_path / "train.json").write_text(json.dumps(_coco(FIVE[:3], [[1, 2]])))
    with pytest.warns(KeypointSetWarning):
        coco_file_skeleton.cache_clear()
        cfg = _cfg(tmp_path, "auto")
        assert dataset_skeleton(cfg).keypoints == tuple(FIVE[:3]) and model_num_keypoints(cfg) == 3


def test_auto_reads_the_training_file_else_the_validation_file(tmp_path):
    (tmp_path / "val.json").write_text(json.dumps(_coco(FIVE, [])))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KeypointSetWarning)
        assert dataset_skeleton(_cfg(tmp_path, "auto")).num_keypoints == 5
        (tmp_path / "train.json").write_text(json.dumps(_coco(FIVE[:2], [])))
        assert dataset_skeleton(_cfg(tmp_path, "auto")).num_keypoints == 2
    cfg = _cfg(tmp_path / "elsewhere", "auto")
    with pytest.raises(ConfigError, match="data.skeleton auto reads the keypoint names from data.train_ann or "
                                          "data.val_ann, but neither is a file"):
        dataset_skeleton(cfg)
