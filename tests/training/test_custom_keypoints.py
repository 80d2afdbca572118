"""A keypoint set that posekit does not know, end to end: a 5-keypoint COCO-format dataset (head, hands, feet of
the synthetic stick figures) trained with data.skeleton auto and with a keypoint-set file, scored with COCO AP
through pycocotools with the set's sigmas, predicted on, drawn and exported to ONNX."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from posekit.apps.predictor import PosePredictor
from posekit.build import build_model, dataset_skeleton, load_records
from posekit.config import config_from_dict, load_config
from posekit.evaluation import metrics
from posekit.evaluation.evaluate import evaluate_model
from posekit.skeletons import UNIFORM_SIGMA, KeypointSetWarning, coco_file_skeleton
from posekit.training.trainer import train
from posekit.data.synthetic import render_figure
from posekit.errors import ConfigError
from posekit.skeletons import SYNTHETIC
from posekit.weightfiles import read_safetensors_metadata, save_weights

from conftest import randomized, tiny_config

NAMES = ["head", "left_hand", "right_hand", "left_foot", "right_foot"]
FROM_SYNTHETIC = [SYNTHETIC.index(n) for n in ("head", "l_wrist", "r_wrist", "l_ankle", "r_ankle")]
SKELETON_FILE = """\
name: stick5
keypoints: [head, left_hand, right_hand, left_foot, right_foot]
flip_pairs: [[left_hand, right_hand], [left_foot, right_foot]]
limbs: [[head, left_hand], [head, right_hand], [head, left_foot], [head, right_foot]]
sigmas: [0.03, 0.06, 0.06, 0.09, 0.09]
upper_body: [head, left_hand, right_hand]
lower_body: [left_foot, right_foot]
"""


def write_five_keypoint_split(folder: Path, count: int, seed: int, size: int = 64) -> Path:
    """``count`` images of one stick figure each and a COCO keypoints file naming the 5 joints, with COCO's
    1-based ``skeleton``; returns the annotation file."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(count):
        image, keypoints, box = render_figure(np.random.default_rng([seed, i]), (size, size))
        cv2.imwrite(str(folder / "images" / f"{i:04d}.png"), image)
        kps = keypoints[FROM_SYNTHETIC]
        images.append({"id": i, "file_name": f"{i:04d}.png", "width": size, "height": size})
        annotations.append({"id": i + 1, "image_id": i, "category_id": 1, "iscrowd": 0,
                            "keypoints": kps.reshape(-1).tolist(), "num_keypoints": int((kps[:, 2] > 0).sum()),
                            "bbox": box.tolist(), "area": float(box[2] * box[3])})
    category = {"id": 1, "name": "stick", "keypoints": NAMES, "skeleton": [[1, 2], [1, 3], [1, 4], [1, 5]]}
    path = folder / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [category]}))
    return path


@pytest.fixture(scope="module")
def five_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("five")
    write_five_keypoint_split(root / "train", 24, seed=1)
    write_five_keypoint_split(root / "val", 6, seed=2)
    return root


def _config(root: Path, out: Path, skeleton: str, **train_settings):
    values = tiny_config(root, out, data={"format": "coco", "skeleton": skeleton,
                                         "train_images": "train/images", "val_images": "val/images"},
                         train={"max_steps": 2, "batch_size": 4, **train_settings},
                         test={"metric": "coco", "batch_size": 8})
    del values["model"]["num_keypoints"]           # follows the keypoint set
    return config_from_dict(values)


def test_auto_set_trains_evaluates_with_coco_ap_predicts_and_draws(five_root, tmp_path):
    cfg = _config(five_root, tmp_path / "run", "auto")
    coco_file_skeleton.cache_clear()          # read afresh here, whichever test ran first
    with pytest.warns(KeypointSetWarning, match="no OKS sigmas"):
        skeleton = dataset_skeleton(cfg)
    assert skeleton.keypoints == tuple(NAMES) and skeleton.flip_permutation().tolist() == [0, 2, 1, 4, 3]
    assert skeleton.limbs == ((0, 1), (0, 2), (0, 3), (0, 4)) and skeleton.sigmas == (UNIFORM_SIGMA,) * 5
    assert cfg.model.num_keypoints is None

    with warnings.catch_warnings():
        warnings.simplefilter("error")         # the set was read (and warned about) once: no warning again
        result = train(cfg, progress=False, log=lambda s: None)
    assert result.steps == 2 and cfg.model.num_keypoints == 5
    assert read_safetensors_metadata(result.checkpoint / "weights.safetensors")["num_keypoints"] == "5"
    assert "num_keypoints: 5" in (tmp_path / "run" / "config.yaml").read_text()
    # The run's config names the set it was trained with (written beside it), not the training annotations.
    saved = load_config(tmp_path / "run" / "config.yaml")
    assert saved.data.skeleton == str((tmp_path / "run" / "keypoints.yaml").resolve())
    assert dataset_skeleton(saved) == skeleton

    # COCO AP through pycocotools with the set's 5 sigmas: a trained-for-2-steps model scores something in
    # [0, 1]; the ground truth itself scores 1.
    stats = evaluate_model(cfg, result.model.eval(), load_records(cfg, "val"), progress=False, write=False)
    assert set(metrics.COCO_STAT_NAMES) <= set(stats) and 0.0 <= stats["AP"] <= 1.0
    ann = json.loads((five_root / "val" / "annotations.json").read_text())
    perfect = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
               for a in ann["annotations"]]
    assert metrics.coco_evaluate(perfect, str(five_root / "val" / "annotations.json"),
                                 sigmas=skeleton.sigmas)["AP"] == pytest.approx(1.0)

    predictor = PosePredictor.from_config(cfg, weights=result.checkpoint / "weights.safetensors", device="cpu")
    assert predictor.flip_perm.tolist() == [0, 2, 1, 4, 3]
    image = str(five_root / "val" / "images" / "0000.png")
    poses = predictor(image)
    assert len(poses) == 1 and poses[0].keypoints.shape == (5, 2) and poses[0].scores.shape == (5,)
    drawn = predictor.draw(image, poses, score_threshold=0.0)
    original = cv2.cvtColor(cv2.imread(image), cv2.COLOR_BGR2RGB)
    assert drawn.shape == original.shape and (drawn != original).any()
    results = predictor.to_coco_results(poses, image_id=0)
    assert len(results[0]["keypoints"]) == 15


def test_a_keypoint_set_file_sets_sigmas_for_coco_ap(five_root, tmp_path):
    set_file = tmp_path / "stick5.yaml"
    set_file.write_text(SKELETON_FILE)
    cfg = _config(five_root, tmp_path / "run", str(set_file))
    skeleton = dataset_skeleton(cfg)
    assert skeleton.name == "stick5" and skeleton.sigmas == (0.03, 0.06, 0.06, 0.09, 0.09)
    result = train(cfg, progress=False, log=lambda s: None)
    assert result.steps == 2 and result.model.num_keypoints == 5
    val = load_records(cfg, "val")
    assert len(val) == 6 and val[0].keypoints.shape == (5, 3)
    stats = evaluate_model(cfg, result.model.eval(), val, progress=False, write=False)
    assert 0.0 <= stats["AP"] <= 1.0
    # The sigmas reach pycocotools: one keypoint off by a fixed distance costs more OKS with a smaller sigma.
    ann = json.loads((five_root / "val" / "annotations.json").read_text())
    shifted = []
    for a in ann["annotations"]:
        kps = np.asarray(a["keypoints"], dtype=float).reshape(5, 3)
        kps[:, 0] += 0.08 * np.sqrt(a["area"])
        shifted.append({"image_id": a["image_id"], "category_id": 1, "keypoints": kps.reshape(-1).tolist(),
                        "score": 1.0})
    tight = metrics.coco_evaluate(shifted, str(five_root / "val" / "annotations.json"), sigmas=[0.03] * 5)["AP"]
    loose = metrics.coco_evaluate(shifted, str(five_root / "val" / "annotations.json"), sigmas=[0.09] * 5)["AP"]
    assert tight < loose


def test_a_model_of_the_wrong_count_is_refused_with_the_set_named(five_root, tmp_path):
    cfg = _config(five_root, tmp_path / "run", "coco")      # the 17-keypoint set on 5-keypoint data
    with pytest.raises(ConfigError, match=r"the data has 5 keypoints but keypoint set 'coco' \(data.skeleton coco\) "
                                          r"has 17"):
        load_records(cfg, "train")


@pytest.mark.slow
def test_a_five_keypoint_model_exports_to_onnx_and_predicts_the_same(five_root, tmp_path):
    from posekit.deploy.onnx import export_onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KeypointSetWarning)
        cfg = _config(five_root, tmp_path / "run", "auto")
        model = randomized(build_model(cfg))
    weights = tmp_path / "five.safetensors"
    save_weights(model, weights)
    onnx_path = export_onnx(model, tmp_path / "five.onnx", cfg.input_hw)
    image = str(five_root / "val" / "images" / "0001.png")
    by_torch = PosePredictor.from_config(cfg, weights=weights, device="cpu")(image)[0]
    by_onnx = PosePredictor.from_config(cfg, weights=onnx_path, device="cpu")(image)[0]
    assert by_onnx.keypoints.shape == (5, 2)
    np.testing.assert_allclose(by_onnx.keypoints, by_torch.keypoints, atol=1e-3)
    np.testing.assert_allclose(by_onnx.scores, by_torch.scores, atol=1e-4)
