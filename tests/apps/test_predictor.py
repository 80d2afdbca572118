from __future__ import annotations

import json
from typing import List, Optional

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from posekit.weightfiles import save_weights
from posekit.codecs import GaussianHeatmap, OutputSpec
from posekit.config import config_from_dict
from posekit.data.records import PersonRecord
from posekit.data.synthetic import render_figure
from posekit.build import build_model, make_dataset
from posekit.evaluation.evaluate import Predictions, coco_results, run_inference
from posekit.errors import ConfigError, DataError
from posekit.evaluation.metrics import rescore
from posekit.structures import Pose, as_box_array, clip_box
from posekit.apps.predictor import PosePredictor
from posekit.apps.predict_files import detections_by_file_name
from posekit.skeletons import COCO, SYNTHETIC

INPUT = 64          # crop side (input_size [64, 64])
STRIDE = 4          # HRNet heatmap stride: 16 x 16 heatmaps


def small_cfg(**sections):
    values = {
        "model": {"name": "hrnet_w16_small", "num_keypoints": 14, "sigma": 2.0},
        "data": {"skeleton": "synthetic", "input_size": [INPUT, INPUT]},
        "test": {"batch_size": 4, "flip_test": False},
        "train": {"workers": 0, "device": "cpu"},
    }
    for key, extra in sections.items():
        values[key] = {**values.get(key, {}), **extra}
    return config_from_dict(values)


def random_model(cfg, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(cfg, load=False).eval()


class StubModel(nn.Module):
    """Heatmaps with a Gaussian at fixed crop coordinates, whatever the input; records what it was fed.

    With ``mirrored`` each batch is N plain crops followed by their N mirror images, as the flip test sends them,
    and the mirrored half gets the mirrored coordinates (x' = W - 1 - x, left and right swapped).
    """

    def __init__(self, crop_xy: np.ndarray, skeleton=SYNTHETIC, mirrored: bool = False,
                 center_map_sigma: Optional[float] = None):
        super().__init__()
        self.outputs = [OutputSpec(stride=STRIDE, sigma=2.0)]
        self.num_keypoints = skeleton.num_keypoints
        self.input_channels = 3 + (1 if center_map_sigma else 0)
        if center_map_sigma:
            self.center_map_sigma = center_map_sigma
        self.codec = GaussianHeatmap((INPUT, INPUT), (INPUT // STRIDE, INPUT // STRIDE), sigma=2.0)
        self.crop_xy = np.asarray(crop_xy, dtype=np.float64)
        self.flip_perm = skeleton.flip_permutation()
        self.mirrored = mirrored
        self.calls = 0
        self.seen: List[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        self.seen.append(x.clone())
        xy = self.crop_xy
        self.calls += 1
        heatmap = torch.from_numpy(self.codec.encode(xy, np.full(len(xy), 2.0))[0])
        if not self.mirrored:
            return [heatmap[None].repeat(x.shape[0], 1, 1, 1)]
        mirrored_xy = np.stack([INPUT - 1 - xy[:, 0], xy[:, 1]], axis=1)[self.flip_perm]
        mirrored = torch.from_numpy(self.codec.encode(mirrored_xy, np.full(len(xy), 2.0))[0])
        half = x.shape[0] // 2
        return [torch.cat([heatmap[None].repeat(half, 1, 1, 1), mirrored[None].repeat(half, 1, 1, 1)])]


def figure_on_canvas(seed: int = 3, offset=(150, 70), canvas_hw=(260, 360)):
    """One synthetic figure pasted into a larger RGB canvas: (canvas, keypoints K x 3, tight box)."""
    figure_bgr, keypoints, box = render_figure(np.random.default_rng(seed), (128, 128))
    canvas = np.full((*canvas_hw, 3), 90, np.uint8)
    x0, y0 = offset
    canvas[y0:y0 + 128, x0:x0 + 128] = cv2.cvtColor(figure_bgr, cv2.COLOR_BGR2RGB)
    keypoints = keypoints.copy()
    keypoints[:, :2] += offset
    box = box + np.array([x0, y0, 0, 0])
    return canvas, keypoints, box


def hand_crop(points: np.ndarray, box: np.ndarray, padding: float = 1.25):
    """Image -> crop pixels for a square input, written out: centre the box, take its longer side x padding."""
    x, y, w, h = box
    center = np.array([x + w / 2, y + h / 2])
    side = max(w, h) * padding
    return (points - center) * (INPUT / side) + INPUT / 2, side


# ------------------------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("flip_test", [False, True])
def test_a_person_at_a_known_place_is_found_there_in_image_coordinates(flip_test):
    canvas, keypoints, box = figure_on_canvas()
    crop_xy, side = hand_crop(keypoints[:, :2], box)
    stub = StubModel(crop_xy, mirrored=flip_test)
    predictor = PosePredictor(stub, small_cfg(), flip_test=flip_test)
    poses = predictor(canvas, boxes=[box])
    assert len(poses) == 1 and predictor.skipped_boxes == 0
    pose = poses[0]
    assert pose.keypoints.shape == (14, 2) and pose.scores.shape == (14,)
    one_heatmap_pixel = STRIDE * side / INPUT          # image pixels per heatmap pixel
    error = np.abs(pose.keypoints - keypoints[:, :2])
    assert error.max() <= one_heatmap_pixel, error.max()
    assert stub.calls == 1              # one batch: one forward (the flip test's mirrored crops in the same call)
    assert stub.seen[0].shape[0] == (2 if flip_test else 1)
    np.testing.assert_array_equal(pose.box, box)       # inside the image: kept as given
    assert pose.box_score == 1.0 and pose.track_id is None


@pytest.mark.parametrize("data, center_map", [
    ({}, None),
    ({"color_rgb": False, "box_extension": [0.09, 0.135], "box_padding": 1.1}, None),
    ({}, 21.0),
])
def test_the_model_sees_the_crop_the_evaluation_dataset_makes(tmp_path, data, center_map):
    canvas, keypoints, box = figure_on_canvas()
    path = tmp_path / "canvas.png"                      # lossless, so the file holds exactly the array
    cv2.imwrite(str(path), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    cfg = small_cfg(data=data)
    stub = StubModel(np.zeros((14, 2)), center_map_sigma=center_map)
    PosePredictor(stub, cfg)(canvas, boxes=[box])
    record = PersonRecord(image_path=str(path), keypoints=np.zeros((14, 3)), box=box)
    expected = make_dataset(cfg, [record], [], train=False, model=stub)[0]["image"]
    assert stub.seen[0].shape == (1, 3 + (center_map is not None), INPUT, INPUT)
    # One TopDownCrop cuts and normalises both: bit for bit.
    torch.testing.assert_close(stub.seen[0][0], expected, rtol=0, atol=0)


def test_no_boxes_means_the_whole_image_is_one_person():
    canvas, _, _ = figure_on_canvas()
    height, width = canvas.shape[:2]
    predictor = PosePredictor(StubModel(np.full((14, 2), 32.0)), small_cfg())
    (pose,) = predictor(canvas)
    np.testing.assert_array_equal(pose.box, [0, 0, width, height])
    np.testing.assert_allclose(pose.center, [width / 2, height / 2])
    np.testing.assert_allclose(pose.scale, [max(width, height) * 1.25 / 200] * 2)


def test_bad_boxes_are_skipped_and_counted_and_partial_ones_clipped():
    canvas, _, box = figure_on_canvas()
    height, width = canvas.shape[:2]
    boxes = np.array([
        [*box, 0.9],                      # fine
        [10, 10, 0, 40, 0.8],             # zero width
        [10, 10, 30, -5, 0.8],            # negative height
        [width + 5, 10, 30, 30, 0.8],     # right of the image
        [-80, 10, 50, 30, 0.8],           # left of the image (x + w < 0)
        [10, height, 30, 30, 0.8],        # just below the image
        [np.nan, 10, 30, 30, 0.8],        # not a number
        [-20, -10, 60, 50, 0.7],          # partly outside: cut at the border
    ])
    predictor = PosePredictor(StubModel(np.full((14, 2), 32.0)), small_cfg())
    poses = predictor(canvas, boxes)
    assert predictor.skipped_boxes == 6
    assert [p.box_score for p in poses] == [0.9, 0.7]
    np.testing.assert_array_equal(poses[0].box, box)
    np.testing.assert_array_equal(poses[1].box, [0, 0, 40, 40])
    many = predictor.predict_many([canvas, canvas], [boxes[:3], boxes[3:]])
    assert [len(p) for p in many] == [1, 1]
    assert predictor.skipped_per_image == [2, 4] and predictor.skipped_boxes == 6
    assert predictor(canvas, np.zeros((0, 4))) == [] and predictor.skipped_boxes == 0


def test_clip_box_and_box_arrays_by_hand():
    np.testing.assert_array_equal(clip_box([90, 40, 20, 30], (100, 50)), [90, 40, 10, 10])
    np.testing.assert_array_equal(clip_box([5, 6, 7, 8], (100, 50)), [5, 6, 7, 8])
    assert clip_box([100, 0, 5, 5], (100, 50)) is None
    np.testing.assert_array_equal(as_box_array([1, 2, 3, 4]), [[1, 2, 3, 4, 1]])
    np.testing.assert_array_equal(as_box_array([[1, 2, 3, 4, 0.5]]), [[1, 2, 3, 4, 0.5]])
    with pytest.raises(ValueError, match="N x 4"):
        as_box_array([[1, 2, 3]])


# -------------------------------------------------------------------------------------------- batching
def test_batched_predictions_equal_one_at_a_time():
    canvas_a, _, box_a = figure_on_canvas(seed=1)
    canvas_b, _, box_b = figure_on_canvas(seed=2, offset=(20, 100))
    boxes_a = [box_a, box_a + [5, -8, 20, 10], [0, 0, 200, 150]]
    boxes_b = [box_b, box_b * [1, 1, 0.5, 0.7], [100, 30, 120, 200], box_b + [-10, -10, 20, 20]]
    cfg = small_cfg(test={"batch_size": 3, "flip_test": True})
    model = random_model(cfg)
    batched = PosePredictor(model, cfg).predict_many([canvas_a, canvas_b], [boxes_a, boxes_b])
    single = PosePredictor(model, small_cfg(test={"batch_size": 1, "flip_test": True}))
    one_by_one = [[single(canvas, [b])[0] for b in boxes] for canvas, boxes in ((canvas_a, boxes_a), (canvas_b, boxes_b))]
    assert [len(p) for p in batched] == [3, 4]
    for got_image, want_image in zip(batched, one_by_one):
        for got, want in zip(got_image, want_image):
            np.testing.assert_allclose(got.keypoints, want.keypoints, atol=1e-6)
            np.testing.assert_allclose(got.scores, want.scores, rtol=1e-4, atol=1e-7)
            np.testing.assert_array_equal(got.box, want.box)


def test_predictions_equal_the_evaluation_pipeline(tmp_path):
    """Same boxes, same model: the predictor gives what run_inference (``posekit eval``) gives."""
    records, canvases = [], []
    for i in range(3):
        canvas, keypoints, box = figure_on_canvas(seed=10 + i, offset=(30 * i, 40))
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
        canvases.append(str(path))
        records.append(PersonRecord(image_path=str(path), keypoints=keypoints, box=box, score=0.5 + 0.1 * i, image_id=i))
    cfg = small_cfg(test={"batch_size": 2, "flip_test": True})
    model = random_model(cfg, seed=1)
    expected = run_inference(cfg, model, records, progress=False)
    got = PosePredictor(model, cfg).predict_many(canvases, [[[*r.box, r.score]] for r in records])
    np.testing.assert_allclose(np.stack([p[0].keypoints for p in got]), expected.keypoints, atol=1e-6)
    np.testing.assert_allclose(np.stack([p[0].scores for p in got]), expected.scores, rtol=1e-5)
    np.testing.assert_allclose([p[0].box_score for p in got], expected.box_scores)


def test_a_detector_callable_supplies_the_boxes():
    canvas, _, box = figure_on_canvas()
    seen = []

    def detector(image):
        seen.append(image)
        return np.array([[*box, 0.75], [0, 0, 0, 0, 0.5]])

    predictor = PosePredictor(random_model(small_cfg()), small_cfg())
    poses = predictor(canvas, boxes=detector)
    assert seen[0] is canvas and len(poses) == 1 and predictor.skipped_boxes == 1
    assert poses[0].box_score == 0.75
    np.testing.assert_array_equal(poses[0].keypoints, predictor(canvas, [box])[0].keypoints)
    many = predictor.predict_many([canvas, canvas], detector)
    assert [len(p) for p in many] == [1, 1] and len(seen) == 3
    with pytest.raises(ValueError, match="detector"):
        predictor(canvas, boxes=lambda image: [[1, 2, 3]])


# ------------------------------------------------------------------------------------------ from_config
def test_from_config_with_saved_weights_runs_end_to_end(tmp_path):
    cfg = small_cfg()
    weights = tmp_path / "weights.safetensors"
    save_weights(random_model(cfg, seed=2), weights)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(cfg.to_yaml())
    image_bgr, _, _ = render_figure(np.random.default_rng(7), (96, 128))
    image = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)

    predictor = PosePredictor.from_config(config_path, weights=str(weights), device="cpu")
    assert predictor.flip_test is False and not predictor.model.training
    (pose,) = predictor(image)
    assert pose.keypoints.shape == (14, 2) and np.isfinite(pose.keypoints).all()
    assert pose.scores.shape == (14,) and np.isfinite(pose.scores).all()
    # An untrained net may put its maxima anywhere in the crop, which reaches beyond the image by the padding.
    half = 200 * pose.scale / 2
    assert (np.abs(pose.keypoints - pose.center) <= half + STRIDE).all()
    # A Config object with model.weights set works too, and the flip test can be switched on.
    cfg.model.weights = str(weights)
    flipped = PosePredictor.from_config(cfg, flip_test=True, device="cpu")
    assert flipped.flip_test and cfg.model.weights == str(weights)
    assert len(flipped(image)) == 1


def test_from_config_without_weights_is_a_config_error():
    with pytest.raises(ConfigError, match="no weights"):
        PosePredictor.from_config(small_cfg())


def test_a_model_with_another_keypoint_count_is_refused():
    stub = StubModel(np.zeros((17, 2)), skeleton=COCO)
    with pytest.raises(ConfigError, match="17 keypoints"):
        PosePredictor(stub, small_cfg())


# ----------------------------------------------------------------------------------------------- inputs
def test_a_corrupt_or_missing_image_file_is_a_data_error_naming_it(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 this is not a jpeg")
    predictor = PosePredictor(StubModel(np.zeros((14, 2))), small_cfg())
    with pytest.raises(DataError, match="broken.jpg"):
        predictor(bad)
    with pytest.raises(DataError, match="missing.png"):
        predictor.predict_many([np.zeros((32, 32, 3), np.uint8), str(tmp_path / "missing.png")])


def test_an_image_path_gives_the_same_poses_as_the_array(tmp_path):
    canvas, _, box = figure_on_canvas()
    path = tmp_path / "canvas.png"
    cv2.imwrite(str(path), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    predictor = PosePredictor(random_model(small_cfg()), small_cfg())
    np.testing.assert_array_equal(predictor(path, [box])[0].keypoints, predictor(canvas, [box])[0].keypoints)


def test_image_arrays_must_be_uint8_rgb():
    predictor = PosePredictor(StubModel(np.zeros((14, 2))), small_cfg())
    with pytest.raises(ValueError, match="uint8"):
        predictor(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="H x W x 3"):
        predictor(np.zeros((32, 32, 4), np.uint8))
    assert len(predictor(np.zeros((32, 40), np.uint8))) == 1      # grey is taken as three equal channels


# ----------------------------------------------------------------------------------------------- output
def _pose(keypoints, scores, box=(10.0, 20.0, 40.0, 80.0), box_score=0.9, scale=(0.5, 0.5)):
    return Pose(keypoints=np.asarray(keypoints, float), scores=np.asarray(scores, float), box=np.asarray(box),
                box_score=box_score, center=np.array([30.0, 60.0]), scale=np.asarray(scale))


def test_coco_results_carry_flat_keypoints_and_the_official_rescore():
    predictor = PosePredictor(StubModel(np.zeros((14, 2))), small_cfg())
    rng = np.random.default_rng(0)
    scores = np.array([0.1, 0.5, 0.9, 0.3] + [0.0] * 10)
    poses = [_pose(rng.uniform(0, 100, (14, 2)), scores, box_score=0.8), _pose(rng.uniform(0, 100, (14, 2)), scores * 0.5)]
    results = predictor.to_coco_results(poses, image_id=42)
    assert len(results) == 2
    first = results[0]
    assert set(first) == {"image_id", "category_id", "keypoints", "score"}
    assert first["image_id"] == 42 and first["category_id"] == 1
    assert len(first["keypoints"]) == 3 * 14
    np.testing.assert_allclose(np.reshape(first["keypoints"], (14, 3)), poses[0].keypoints_with_scores)
    # in_vis_thre 0.2: the mean of 0.5, 0.9 and 0.3, times the box score
    assert first["score"] == pytest.approx(0.8 * (0.5 + 0.9 + 0.3) / 3)
    assert results[1]["score"] == pytest.approx(rescore(scores[None] * 0.5, [0.9])[0])
    json.dumps(results)
    assert predictor.to_coco_results([], image_id=1) == []


def test_coco_results_with_oks_nms_drop_a_duplicate_person():
    stub = StubModel(np.zeros((17, 2)), skeleton=COCO)
    predictor = PosePredictor(stub, small_cfg(model={"num_keypoints": 17}, data={"skeleton": "coco"}))
    keypoints = np.random.default_rng(1).uniform(0, 100, (17, 2))
    poses = [_pose(keypoints, np.full(17, 0.6)), _pose(keypoints + 0.5, np.full(17, 0.9)),
             _pose(keypoints + 300, np.full(17, 0.7))]
    kept = predictor.to_coco_results(poses, image_id=3)
    assert len(kept) == 2
    assert kept[0]["score"] == pytest.approx(0.9 * 0.9) and kept[1]["score"] == pytest.approx(0.9 * 0.7)
    assert len(predictor.to_coco_results(poses, image_id=3, nms=False)) == 3


def test_coco_results_of_an_image_are_evaluations_post_processing():
    """to_coco_results and evaluation's coco_results are one path: the same people give the same results."""
    cfg = small_cfg(model={"num_keypoints": 17}, data={"skeleton": "coco"})
    predictor = PosePredictor(StubModel(np.zeros((17, 2)), skeleton=COCO), cfg)
    keypoints = np.random.default_rng(2).uniform(0, 100, (17, 2))
    poses = [_pose(keypoints, np.full(17, 0.6), scale=(0.4, 0.5)), _pose(keypoints + 0.5, np.full(17, 0.9)),
             _pose(keypoints + 300, np.linspace(0, 1, 17), box_score=0.5)]
    preds = Predictions(keypoints=np.stack([p.keypoints for p in poses]), scores=np.stack([p.scores for p in poses]),
                        centers=np.stack([p.center for p in poses]), scales=np.stack([p.scale for p in poses]),
                        image_ids=np.full(3, 5), box_scores=np.array([p.box_score for p in poses]),
                        gt_keypoints=np.zeros((3, 17, 3)))
    assert predictor.to_coco_results(poses, image_id=5) == coco_results(predictor.cfg, preds, COCO)
    for mode in ("soft_oks", "none"):               # test.nms is followed, as evaluation follows it
        predictor.cfg.test.nms = mode
        assert predictor.to_coco_results(poses, image_id=5) == coco_results(predictor.cfg, preds, COCO), mode
    assert len(predictor.to_coco_results(poses, image_id=5)) == 3


def test_draw_returns_an_rgb_image_of_the_same_shape_with_the_skeleton():
    canvas, keypoints, _ = figure_on_canvas()
    predictor = PosePredictor(StubModel(np.zeros((14, 2))), small_cfg())
    pose = _pose(keypoints[:, :2], np.full(14, 0.8))
    drawn = predictor.draw(canvas, [pose])
    assert drawn.shape == canvas.shape and drawn.dtype == np.uint8
    assert (drawn != canvas).any()
    assert np.array_equal(predictor.draw(canvas, [_pose(keypoints[:, :2], np.full(14, 0.1))]), canvas)  # below 0.3
    # a limb is drawn in its RGB colour (the skeleton stores BGR)
    (a, b), bgr = SYNTHETIC.limbs[0], SYNTHETIC.limb_colors[0]
    middle = np.round((keypoints[a, :2] + keypoints[b, :2]) / 2).astype(int)
    np.testing.assert_allclose(drawn[middle[1], middle[0]], bgr[::-1], atol=40)


def test_detections_are_grouped_by_image_file(tmp_path):
    ann = {"images": [{"id": 5, "file_name": "a/x.jpg", "width": 100, "height": 80},
                      {"id": 6, "file_name": "y.jpg", "width": 100, "height": 80},
                      {"id": 7, "file_name": "z.jpg", "width": 100, "height": 80}],
           "annotations": [], "categories": [{"id": 1, "name": "person"}]}
    dets = [{"image_id": 5, "category_id": 1, "bbox": [1, 2, 30, 40], "score": 0.9},
            {"image_id": 5, "category_id": 1, "bbox": [50, 2, 30, 40], "score": 0.2},
            {"image_id": 6, "category_id": 1, "bbox": [3, 4, 5, 6], "score": 0.6},
            {"image_id": 6, "category_id": 2, "bbox": [3, 4, 5, 6], "score": 0.9}]
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    grouped = detections_by_file_name(tmp_path / "dets.json", tmp_path / "ann.json", score_threshold=0.5)
    assert set(grouped) == {"x.jpg", "y.jpg", "z.jpg"}
    assert grouped["x.jpg"][0] == 5 and grouped["z.jpg"][0] == 7
    np.testing.assert_array_equal(grouped["x.jpg"][1], [[1, 2, 30, 40, 0.9]])
    np.testing.assert_array_equal(grouped["y.jpg"][1], [[3, 4, 5, 6, 0.6]])
    assert grouped["z.jpg"][1].shape == (0, 5)          # no detection: nobody, not the whole image


# ------------------------------------------------------------------------------------------ multi-scale test
class BrightSpotModel(nn.Module):
    """Every keypoint's heatmap is the crop's brightness pooled to the heatmap grid: it peaks on the brightest spot."""

    def __init__(self, num_keypoints: int = 14):
        super().__init__()
        self.outputs = [OutputSpec(stride=STRIDE, sigma=2.0)]
        self.num_keypoints = num_keypoints

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        # A 5 x 5 mean centred on input pixel 4g for heatmap pixel g: the HRNet codec's alignment.
        brightness = torch.nn.functional.avg_pool2d(x[:, :3].mean(1, keepdim=True), 5, stride=STRIDE, padding=2,
                                                    count_include_pad=False)
        return [brightness.repeat(1, self.num_keypoints, 1, 1)]


class Recorder(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner, self.seen = inner, []
        self.outputs, self.num_keypoints = inner.outputs, inner.num_keypoints

    def forward(self, x):
        self.seen.append(x.clone())
        return self.inner(x)


def test_scales_of_one_give_exactly_the_single_scale_forward():
    from posekit.evaluation.inference import decode_to_image, predict_heatmaps

    canvas, _, box = figure_on_canvas()
    cfg = small_cfg(test={"scales": [1.0], "flip_test": True})
    model = Recorder(random_model(cfg)).eval()
    predictor = PosePredictor(model, cfg)
    (pose,) = predictor(canvas, [box])
    crops = model.seen[0]
    heatmaps = predict_heatmaps(model.inner, crops, predictor.flip_perm, cfg.test.shift_heatmap)
    coords, scores = decode_to_image(predictor.codec, heatmaps, predictor.crop, pose.center[None], pose.scale[None])
    np.testing.assert_array_equal(pose.keypoints, coords[0])
    np.testing.assert_array_equal(pose.scores, scores[0])


def test_multi_scale_predictions_equal_the_evaluation_pipeline(tmp_path):
    records, paths = [], []
    for i in range(2):
        canvas, keypoints, box = figure_on_canvas(seed=20 + i, offset=(25 * i, 50))
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
        paths.append(str(path))
        records.append(PersonRecord(image_path=str(path), keypoints=keypoints, box=box, score=0.8, image_id=i))
    cfg = small_cfg(test={"batch_size": 2, "flip_test": True, "scales": [0.8, 1.0, 1.25]})
    model = random_model(cfg, seed=4)
    expected = run_inference(cfg, model, records, progress=False)
    got = PosePredictor(model, cfg).predict_many(paths, [[[*r.box, r.score]] for r in records])
    np.testing.assert_allclose(np.stack([p[0].keypoints for p in got]), expected.keypoints, atol=1e-5)
    np.testing.assert_allclose(np.stack([p[0].scores for p in got]), expected.scores, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.stack([p[0].scale for p in got]), expected.scales)
    single = PosePredictor(model, small_cfg(test={"flip_test": True}))(paths[0], [records[0].box])[0]
    assert not np.allclose(single.keypoints, got[0][0].keypoints)    # the other scales did take part


@pytest.mark.parametrize("scales", [[1.0], [0.7, 1.0, 1.4], [1.4]])
def test_multi_scale_keypoints_land_on_a_known_spot_in_image_coordinates(scales):
    spot = np.array([173.0, 121.0])
    yy, xx = np.mgrid[0:260, 0:360]
    blob = 255 * np.exp(-((xx - spot[0]) ** 2 + (yy - spot[1]) ** 2) / (2 * 8.0 ** 2))
    canvas = np.repeat(blob[..., None], 3, axis=2).astype(np.uint8)
    box = np.array([120.0, 70.0, 100.0, 100.0])
    predictor = PosePredictor(BrightSpotModel(), small_cfg(test={"scales": scales}))
    (pose,) = predictor(canvas, [box])
    heatmap_pixel = STRIDE * 125.0 / INPUT                 # the crop is 1.25 x 100 px wide, 64 px input
    assert np.abs(pose.keypoints - spot).max() <= heatmap_pixel / 2, pose.keypoints[0]
    np.testing.assert_allclose(pose.center, box[:2] + box[2:] / 2)


def test_bad_test_scales_are_config_errors():
    with pytest.raises(ConfigError, match="positive"):
        PosePredictor(StubModel(np.zeros((14, 2))), small_cfg(test={"scales": [1.0, -0.5]}))


# ------------------------------------------------------------------------------------- other model objects
class PlainCallable:
    """What an ONNX Runtime wrapper looks like to the predictor: the model attributes and __call__, no torch module."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.outputs, self.num_keypoints = module.outputs, module.num_keypoints
        self.calls = 0

    def __call__(self, batch: torch.Tensor) -> List[torch.Tensor]:
        self.calls += 1
        assert batch.device.type == "cpu"
        with torch.no_grad():
            return [t.clone() for t in self.module(batch)]


def test_a_model_without_parameters_or_to_runs_on_the_cpu():
    canvas, _, box = figure_on_canvas()
    cfg = small_cfg(test={"flip_test": True})
    module = random_model(cfg, seed=5)
    wrapped = PlainCallable(module)
    predictor = PosePredictor(wrapped, cfg)
    assert predictor.device.type == "cpu" and predictor.model is wrapped
    got = predictor(canvas, [box, box + [4, 4, 0, 0]])
    want = PosePredictor(module, cfg)(canvas, [box, box + [4, 4, 0, 0]])
    assert wrapped.calls == 1                                   # one batch, plain + mirrored in one call
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a.keypoints, b.keypoints)


def test_weights_for_another_keypoint_count_are_a_checkpoint_error_naming_the_file(tmp_path):
    from posekit.errors import CheckpointError

    coco_cfg = small_cfg(model={"num_keypoints": 17}, data={"skeleton": "coco"})
    weights = tmp_path / "coco17.safetensors"
    save_weights(random_model(coco_cfg), weights)
    with pytest.raises(CheckpointError, match="coco17.safetensors") as err:
        PosePredictor.from_config(small_cfg(), weights=str(weights), device="cpu")
    assert "(17," in str(err.value) and "(14," in str(err.value)


def test_tracking_through_the_predictor_gives_ids_and_coco_results_carry_them():
    canvas_a, _, box_a = figure_on_canvas(seed=1, offset=(20, 60))
    predictor = PosePredictor(StubModel(np.tile([[20.0, 12.0], [44.0, 52.0]], (7, 1))), small_cfg())
    frames = [np.roll(canvas_a, 3 * t, axis=1) for t in range(4)]
    boxes = [[box_a + [3 * t, 0, 0, 0]] for t in range(4)]
    out = list(predictor.track(frames, boxes))
    assert [[p.track_id for p in poses] for poses in out] == [[0], [0], [0], [0]]
    results = predictor.to_coco_results(out[0], image_id=0, nms=False)
    assert results[0]["track_id"] == 0
    # (frame index, image) pairs and a mapping of boxes by frame index work as well.
    again = list(predictor.track(enumerate(frames), {t: b for t, b in enumerate(boxes)}))
    assert [[p.track_id for p in poses] for poses in again] == [[0], [0], [0], [0]]
    # Boxes outside the frame are counted over the whole run.
    list(predictor.track(frames, [[[500, 0, 10, 10]], *boxes[1:3], [[0, 0, 0, 10], [0, 500, 5, 5]]]))
    assert predictor.skipped_boxes == 3
