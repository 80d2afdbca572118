"""The ONNX person detector: each supported layout end to end through its letterbox, built as small ONNX graphs
with the real exports' signatures (no detector weights ship or download).

A fake detector's output is a constant tensor except for its scores, which are read from chosen pixels of the
input tensor (Gather + ScatterND): a score then tells whether the image reached the model letterboxed top-left or
centred, in BGR or RGB, scaled to [0, 1] or not.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from posekit.apps.detector import OnnxPersonDetector, letterbox_ultralytics, letterbox_yolox, nms, num_anchors  # noqa: E402
from posekit.apps.predictor import PosePredictor  # noqa: E402
from posekit.apps.video import predict_video  # noqa: E402
from posekit.build import build_model  # noqa: E402
from posekit.cli import main  # noqa: E402
from posekit.config import config_from_dict  # noqa: E402
from posekit.data.synthetic import render_figure  # noqa: E402
from posekit.errors import PosekitError  # noqa: E402
from posekit.weightfiles import save_weights  # noqa: E402

# A uniform test image: resizing keeps every pixel at these values, so a sampled input pixel is known exactly.
RED, GREEN, BLUE = 200, 100, 50

Sample = Tuple[Tuple[int, ...], Tuple[int, int, int], float]     # (output index, input (c, y, x), factor)


def uniform_image(height: int, width: int) -> np.ndarray:
    image = np.empty((height, width, 3), np.uint8)
    image[:] = (RED, GREEN, BLUE)
    return image


def fake_detector(path: Path, input_name: str, input_shape: Sequence, output_name: str, base: np.ndarray,
                  samples: Sequence[Sample], extra_outputs: Optional[Dict[str, np.ndarray]] = None,
                  output_shape: Optional[Sequence] = None, metadata: Optional[Dict[str, str]] = None) -> Path:
    """An ONNX file with input ``input_name`` of ``input_shape`` whose output ``output_name`` is ``base`` with, at each
    sample's index, the input pixel (c, y, x) times the factor; ``extra_outputs`` are constant outputs."""
    height, width = 640, 640
    if isinstance(input_shape[2], int):
        height, width = input_shape[2], input_shape[3]
    flat_index = np.array([c * height * width + y * width + x for _, (c, y, x), _ in samples], np.int64)
    dynamic = output_shape is not None and not all(isinstance(d, int) for d in output_shape)
    nodes = [
        helper.make_node("Reshape", [input_name, "flat_shape"], ["flat"]),
        helper.make_node("Gather", ["flat", "pixel_index"], ["pixels"], axis=0),
        helper.make_node("Mul", ["pixels", "factors"], ["values"]),
        helper.make_node("ScatterND", ["base", "positions", "values"], ["scattered" if dynamic else output_name]),
    ]
    if dynamic:
        # Reshape to (the input's batch, ..., -1): ONNX Runtime can then no longer tell the output's size on loading,
        # as with a real export with dynamic axes.
        nodes += [helper.make_node("Shape", [input_name], ["input_shape"]),
                  helper.make_node("Slice", ["input_shape", "zero", "one"], ["batch"]),
                  helper.make_node("Concat", ["batch", "inner"], ["out_shape"], axis=0),
                  helper.make_node("Reshape", ["scattered", "out_shape"], [output_name])]
    initializers = [
        numpy_helper.from_array(np.array([-1], np.int64), "flat_shape"),
        numpy_helper.from_array(flat_index, "pixel_index"),
        numpy_helper.from_array(np.array([f for _, _, f in samples], np.float32), "factors"),
        numpy_helper.from_array(base.astype(np.float32), "base"),
        numpy_helper.from_array(np.array([index for index, _, _ in samples], np.int64), "positions"),
    ]
    if dynamic:
        initializers += [numpy_helper.from_array(np.array([0], np.int64), "zero"),
                         numpy_helper.from_array(np.array([1], np.int64), "one"),
                         numpy_helper.from_array(np.array([*base.shape[1:-1], -1], np.int64), "inner")]
    outputs = [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, list(output_shape or base.shape))]
    for name, value in (extra_outputs or {}).items():
        nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name + "_value")))
        dtype = helper.np_dtype_to_tensor_dtype(value.dtype)
        outputs.append(helper.make_tensor_value_info(name, dtype, list(value.shape)))
    graph = helper.make_graph(nodes, "fake_detector",
                              [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(input_shape))],
                              outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    if metadata:
        helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def coco_names() -> Dict[str, str]:
    names = {i: f"class{i}" for i in range(80)}
    names[0] = "person"
    return {"names": repr(names), "imgsz": "[640, 640]"}


# ------------------------------------------------------------------------------------------------ layouts
def test_yolox_end_to_end_dets_go_back_through_the_top_left_letterbox_in_bgr(tmp_path):
    # 500 x 300 image -> ratio min(640/300, 640/500) = 1.28, resized to 640 x 384 at the top-left; rows 384.. are pad.
    dets = np.zeros((1, 6, 5), np.float32)
    dets[0, 0] = [64, 128, 320, 512, 0]        # score: blue (BGR channel 0) at (100, 100) x 0.01 = 0.5
    dets[0, 1] = [320, 0, 640, 256, 0]         # score: pad 114 at (y 500, x 600) x 0.005 = 0.57
    dets[0, 2] = [0, 0, 100, 100, 0.9]         # a bicycle
    dets[0, 3] = [0, 0, 100, 100, 0.2]         # below the threshold
    labels = np.array([[0, 0, 1, 0, 0, 0]], np.int64)
    samples = [((0, 0, 4), (0, 100, 100), 0.01), ((0, 1, 4), (2, 500, 600), 0.005)]
    dets[0, 4] = [100, 400, 200, 600, 0.99]    # in the pad only (image rows 312..469): nothing left after clipping
    path = fake_detector(tmp_path / "yolox_e2e.onnx", "input", [1, 3, 640, 640], "dets", dets, samples,
                         extra_outputs={"labels": labels})
    detector = OnnxPersonDetector(path)
    assert detector.format == "yolox-end2end" and detector.input_hw == (640, 640)
    boxes = detector(uniform_image(300, 500))
    # Rows divided by 1.28 and clipped to the 500 x 300 image, best score first.
    np.testing.assert_allclose(boxes, [[250, 0, 250, 200, 0.57], [50, 100, 200, 200, 0.5]], rtol=1e-5, atol=1e-4)


def test_raw_yolox_head_is_decoded_on_its_grid_nmsed_and_clipped_on_a_tall_image(tmp_path):
    # 300 x 500 image into 416 x 416: ratio 0.832, resized to 249 x 416 at the top-left; columns 249.. are pad.
    anchors = num_anchors((416, 416))
    assert anchors == 52 * 52 + 26 * 26 + 13 * 13 == 3549
    raw = np.zeros((1, anchors, 85), np.float32)
    person = 2704 + 12 * 26 + 10                 # stride 16, grid (10, 12): centre (168, 200), 64 x 128
    raw[0, person, :5] = [0.5, 0.5, np.log(4), np.log(8), 1.0]
    duplicate = 25 * 52 + 21                     # stride 8, grid (21, 25): the same box, lower score
    raw[0, duplicate, :6] = [0.0, 0.0, np.log(8), np.log(16), 1.0, 0.4]
    bicycle = 2704 + 676 + 3 * 13 + 3
    raw[0, bicycle, :7] = [0.5, 0.5, 1.0, 1.0, 0.9, 0.1, 0.9]   # person score 0.9 x 0.1 = 0.09
    edge = 2704 + 676 + 5 * 13 + 8               # stride 32, grid (8, 5): centre (272, 176), 64 x 128
    raw[0, edge, :5] = [0.5, 0.5, np.log(2), np.log(4), 1.0]
    samples = [((0, person, 5), (0, 200, 100), 0.01),      # blue 50 -> 0.5
               ((0, edge, 5), (1, 100, 350), 0.005)]       # pad 114 -> 0.57
    path = fake_detector(tmp_path / "yolox_raw.onnx", "input", [1, 3, 416, 416], "output", raw, samples)
    detector = OnnxPersonDetector(path)
    assert detector.format == "yolox" and detector.input_hw == (416, 416)
    boxes = detector(uniform_image(500, 300))
    edge_xyxy = np.array([240, 112, 304, 240]) / 0.832
    person_xyxy = np.array([136, 136, 200, 264]) / 0.832
    expected = [[edge_xyxy[0], edge_xyxy[1], 300 - edge_xyxy[0], edge_xyxy[3] - edge_xyxy[1], 0.57],
                [person_xyxy[0], person_xyxy[1], 64 / 0.832, 128 / 0.832, 0.5]]
    np.testing.assert_allclose(boxes, expected, rtol=1e-5, atol=1e-4)


def test_raw_yolox_head_exported_with_decoding_is_used_as_it_is(tmp_path):
    raw = np.zeros((1, num_anchors((640, 640)), 6), np.float32)     # a single-class head, input "images"
    raw[0, 100, :5] = [320, 240, 128, 256, 0.8]                     # cx, cy, w, h already in input pixels
    path = fake_detector(tmp_path / "yolox_decoded.onnx", "images", [1, 3, 640, 640], "output", raw,
                         [((0, 100, 5), (0, 10, 10), 0.02)])        # class score: blue 50 x 0.02 = 1.0
    boxes = OnnxPersonDetector(path)(uniform_image(640, 640))
    np.testing.assert_allclose(boxes, [[256, 112, 128, 256, 0.8]], rtol=1e-5)


@pytest.mark.parametrize("dynamic", [False, True])
def test_ultralytics_head_goes_back_through_the_centred_letterbox_in_rgb_over_255(tmp_path, dynamic):
    # 500 x 300 image -> ratio 1.28, resized to 640 x 384 and centred: 128 rows of pad above and below.
    raw = np.zeros((1, 84, 8400), np.float32)
    raw[0, :4, 0] = [320, 320, 128, 256]        # person: red / 255 at (y 300, x 100) = 0.784
    raw[0, :5, 1] = [320, 320, 128, 256, 0.5]   # the same box, lower: suppressed
    raw[0, :4, 2] = [100, 400, 50, 50]
    raw[0, 4, 2], raw[0, 6, 2] = 0.6, 0.9       # person 0.6 but best class 2: not a person (Ultralytics' rule)
    raw[0, :4, 3] = [100, 100, 100, 100]        # in the top pad, partly: pad 114 / 255 at (y 50, x 100)
    samples = [((0, 4, 0), (0, 300, 100), 1.0), ((0, 4, 3), (1, 50, 100), 1.0)]
    input_shape = ["batch", 3, "height", "width"] if dynamic else [1, 3, 640, 640]
    path = fake_detector(tmp_path / "yolo11n.onnx", "images", input_shape, "output0", raw, samples,
                         output_shape=["batch", 84, "anchors"] if dynamic else None, metadata=coco_names())
    detector = OnnxPersonDetector(path)
    assert detector.input_hw == (640, 640)
    assert detector.format == (None if dynamic else "ultralytics")
    boxes = detector(uniform_image(300, 500))
    assert detector.format == "ultralytics"
    # (256, 192, 384, 448) - pad (0, 128), / 1.28; (50, 50, 150, 150) - (0, 128), / 1.28, clipped at y = 0.
    expected = [[200, 50, 100, 200, RED / 255], [50 / 1.28, 0, 100 / 1.28, 22 / 1.28, 114 / 255]]
    np.testing.assert_allclose(boxes, expected, rtol=1e-5, atol=1e-4)


def test_ultralytics_end_to_end_rows_and_the_person_class_from_the_names(tmp_path):
    rows = np.zeros((1, 300, 6), np.float32)
    rows[0, 0] = [64, 192, 192, 448, 0, 3]          # class 3 is 'person' in this file's names
    rows[0, 1] = [0, 128, 640, 512, 0.9, 0]
    path = fake_detector(tmp_path / "yolo_e2e.onnx", "images", [1, 3, 640, 640], "output0", rows,
                         [((0, 0, 4), (0, 320, 320), 1.0)],          # red / 255
                         metadata={"names": "{0: 'car', 1: 'dog', 2: 'cat', 3: 'person'}"})
    detector = OnnxPersonDetector(path)
    assert detector.format == "ultralytics-end2end"
    np.testing.assert_allclose(detector(uniform_image(300, 500)),
                               [[50, 50, 100, 200, RED / 255]], rtol=1e-5, atol=1e-4)


def test_letterboxes_place_the_image_as_their_sources_do():
    image = uniform_image(300, 500)
    canvas, ratio = letterbox_yolox(image, (640, 640))
    assert ratio == pytest.approx(1.28)
    assert (canvas[:384] == (RED, GREEN, BLUE)).all() and (canvas[384:] == 114).all()
    canvas, ratio, pad = letterbox_ultralytics(image, (640, 640))
    assert pad == (0, 128)
    assert (canvas[:128] == 114).all() and (canvas[128:512] == (RED, GREEN, BLUE)).all() and (canvas[512:] == 114).all()
    canvas, _, pad = letterbox_ultralytics(uniform_image(301, 500), (640, 640))    # 385 rows: 127.5 -> 127 / 128
    assert pad == (0, 127) and (canvas[:127] == 114).all() and (canvas[127:512] == (RED, GREEN, BLUE)).all()


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10.0]])
    scores = np.array([0.5, 0.9, 0.7, 0.5])
    # IoU(box 1, box 0) = 90 / 110 = 0.818: suppressed at 0.45, kept at 0.85; box 3 = box 0 goes at either.
    assert nms(boxes, scores, 0.45).tolist() == [1, 2]
    assert nms(boxes, scores, 0.85).tolist() == [1, 2, 0]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


# ----------------------------------------------------------------------------------------------- refusals
def test_unknown_layouts_and_bad_files_are_refused_in_one_line(tmp_path):
    flat = fake_detector(tmp_path / "classifier.onnx", "input", [1, 3, 224, 224], "logits", np.zeros((1, 1000)),
                         [((0, 0), (0, 0, 0), 1.0)])
    with pytest.raises(PosekitError) as error:
        OnnxPersonDetector(flat)
    message = str(error.value)
    assert "\n" not in message and "not a person detector" in message
    assert "input [1 x 3 x 224 x 224]" in message and "logits [1 x 1000]" in message

    odd = fake_detector(tmp_path / "odd.onnx", "images", [1, 3, 640, 640], "output0", np.zeros((1, 7, 100)),
                        [((0, 0, 0), (0, 0, 0), 1.0)])
    with pytest.raises(PosekitError, match=r"A = 8400 for a 640x640 input.*output0 \[1 x 7 x 100\]"):
        OnnxPersonDetector(odd)
    with pytest.raises(PosekitError, match="no such file"):
        OnnxPersonDetector(tmp_path / "missing.onnx")
    (tmp_path / "text.onnx").write_text("not a model")
    with pytest.raises(PosekitError, match="ONNX Runtime cannot load"):
        OnnxPersonDetector(tmp_path / "text.onnx")
    with pytest.raises(PosekitError, match="is 640x640, not 416x416"):
        OnnxPersonDetector(odd, input_size=416)
    cars = fake_detector(tmp_path / "cars.onnx", "images", [1, 3, 640, 640], "output0", np.zeros((1, 6, 8400)),
                         [((0, 0, 0), (0, 0, 0), 1.0)], metadata={"names": "{0: 'car', 1: 'truck'}"})
    with pytest.raises(PosekitError, match="none of its 2 classes is 'person'"):
        OnnxPersonDetector(cars)


# -------------------------------------------------------------------------------------------- predictor
def tiny_cfg():
    return config_from_dict({
        "model": {"name": "hrnet_w16_small", "num_keypoints": 14},
        "data": {"skeleton": "synthetic", "input_size": [64, 64]},
        "test": {"batch_size": 8, "flip_test": False},
        "train": {"workers": 0, "device": "cpu"},
    })


@pytest.fixture
def tiny_predictor_parts():
    cfg = tiny_cfg()
    torch.manual_seed(0)
    model = build_model(cfg, load=False).eval()
    return model, cfg


class CountingDetector:
    def __init__(self, boxes):
        self.boxes = np.asarray(boxes, dtype=np.float64)
        self.calls = 0

    def __call__(self, image):
        self.calls += 1
        return self.boxes


def test_the_predictor_runs_its_detector_where_no_boxes_are_given(tiny_predictor_parts, tmp_path):
    model, cfg = tiny_predictor_parts
    image = uniform_image(60, 90)
    detector = CountingDetector([[5, 5, 30, 40, 0.9], [50, 10, 30, 40, 0.8]])
    predictor = PosePredictor(model, cfg, device="cpu", detector=detector)
    poses = predictor(image)
    assert detector.calls == 1 and [p.box.tolist() for p in poses] == [[5, 5, 30, 40], [50, 10, 30, 40]]
    assert [p.box_score for p in poses] == [0.9, 0.8]
    explicit = predictor(image, boxes=[[0, 0, 20, 20]])                   # explicit boxes win
    assert detector.calls == 1 and len(explicit) == 1 and explicit[0].box.tolist() == [0, 0, 20, 20]
    plain = PosePredictor(model, cfg, device="cpu")(image)                # no detector: the whole image
    assert [p.box.tolist() for p in plain] == [[0, 0, 90, 60]]
    assert len(list(predictor.track([image, image]))) == 2 and detector.calls == 3
    with pytest.raises(TypeError, match="a detector must be"):
        PosePredictor(model, cfg, device="cpu", detector=3)

    # An ONNX path is loaded as an OnnxPersonDetector, through from_config too.
    weights = tmp_path / "w.safetensors"
    save_weights(model, weights)
    dets = np.zeros((1, 1, 5), np.float32)
    dets[0, 0] = [0, 0, 320, 640, 0]
    path = fake_detector(tmp_path / "e2e.onnx", "input", [1, 3, 640, 640], "dets", dets,
                         [((0, 0, 4), (0, 5, 5), 0.01)], extra_outputs={"labels": np.zeros((1, 1), np.int64)})
    built = PosePredictor.from_config(cfg, weights=str(weights), device="cpu", detector=str(path))
    assert isinstance(built.detector, OnnxPersonDetector)
    # 640 x 640 input for a 64 x 64 image: ratio 10, so (0, 0, 320, 640) is the image's left half.
    assert [p.box.tolist() for p in built(uniform_image(64, 64))] == [[0, 0, 32, 64]]


def write_avi(path: Path, frames: List[np.ndarray], fps: float = 10.0) -> Path:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.mark.parametrize("track", [False, True])
def test_in_video_the_detector_runs_every_n_frames(tiny_predictor_parts, tmp_path, track):
    model, cfg = tiny_predictor_parts
    rng = np.random.default_rng(0)
    figure, _, box = render_figure(rng, (64, 64))
    frames = [cv2.cvtColor(figure, cv2.COLOR_BGR2RGB)] * 5
    video = write_avi(tmp_path / "clip.avi", frames)
    detector = CountingDetector([[*box, 0.9]])
    predictor = PosePredictor(model, cfg, device="cpu", detector=detector)
    result = predict_video(predictor, video, tmp_path / "out", track=track, detector_every=2, progress=False)
    assert result.frames == 5 and detector.calls == 3                       # frames 0, 2 and 4
    people = [len(json.loads(p.read_text())["people"]) for p in sorted((tmp_path / "out" / "frames").glob("*.json"))]
    assert people[0] == people[2] == people[4] == 1
    if not track:
        assert people == [1] * 5                      # the last detection's box is used again in between
    detector.calls = 0
    predict_video(predictor, video, tmp_path / "every", track=track, progress=False)
    assert detector.calls == 5
    with pytest.raises(ValueError, match="detector_every"):
        predict_video(predictor, video, tmp_path / "bad", detector_every=0, progress=False)


# ----------------------------------------------------------------------------------------- command line
def two_people_photo(tmp_path: Path) -> Tuple[Path, np.ndarray]:
    """A 480 x 240 photo of two synthetic figures side by side: (file, their boxes x, y, w, h)."""
    rng = np.random.default_rng(5)
    canvas = np.full((240, 480, 3), 90, np.uint8)
    boxes = []
    for x in (20, 250):
        figure, _, box = render_figure(rng, (200, 200))
        canvas[20:220, x:x + 200] = figure
        boxes.append([box[0] + x, box[1] + 20, box[2], box[3]])
    path = tmp_path / "two_people.png"
    cv2.imwrite(str(path), canvas)
    return path, np.array(boxes)


def test_predict_with_a_detector_finds_both_people_in_a_photo(tmp_path, capsys):
    photo, boxes = two_people_photo(tmp_path)
    # A YOLOX end-to-end file whose dets are the two figures in the letterbox's pixels (ratio 640 / 480); their
    # scores are the photo's grey corner (90) x 0.01.
    ratio = 640 / 480
    dets = np.zeros((1, 2, 5), np.float32)
    for row, (x, y, w, h) in zip(dets[0], boxes):
        row[:4] = [x * ratio, y * ratio, (x + w) * ratio, (y + h) * ratio]
    detector = fake_detector(tmp_path / "fake.onnx", "input", [1, 3, 640, 640], "dets", dets,
                             [((0, 0, 4), (0, 0, 0), 0.01), ((0, 1, 4), (1, 0, 0), 0.01)],
                             extra_outputs={"labels": np.zeros((1, 2), np.int64)})
    out = tmp_path / "out"
    assert main(["predict", str(photo), "--detector", str(detector), "--out", str(out), "--no-progress",
                 "--device", "cpu", "--backend", "torch", "--draw"]) == 0
    assert "1 images, 2 people" in capsys.readouterr().out
    people = json.loads((out / "poses.json").read_text())[0]["people"]
    assert len(people) == 2 and len(people[0]["keypoints"]) == 14
    np.testing.assert_allclose([p["box"] for p in people], boxes, atol=1e-3)
    np.testing.assert_allclose([p["box_score"] for p in people], [0.9, 0.9], atol=1e-6)
    assert (out / "drawn" / "two_people.png").is_file()

    # --det-score: both score 0.9, so a threshold of 0.95 leaves nobody.
    out = tmp_path / "strict"
    assert main(["predict", str(photo), "--detector", str(detector), "--det-score", "0.95", "--out", str(out),
                 "--no-progress", "--device", "cpu", "--backend", "torch"]) == 0
    assert json.loads((out / "poses.json").read_text())[0]["people"] == []


def test_predict_detector_flags_are_checked(tmp_path, capsys):
    photo, _ = two_people_photo(tmp_path)
    assert main(["predict", str(photo), "--detector", str(tmp_path / "none.onnx"), "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "none.onnx" in err and "no such file" in err
    assert main(["predict", str(photo), "--detector", "x.onnx", "--det-every", "0", "--no-progress"]) == 2
    assert "--det-every must be 1 or more" in capsys.readouterr().err
    assert main(["predict", str(photo), "--det-every", "3", "--no-progress"]) == 2
    assert "give --detector FILE.onnx too" in capsys.readouterr().err
    assert main(["predict", str(photo), "--detector", "x.onnx", "--det-file", "d.json", "--ann", "a.json",
                 "--no-progress"]) == 2
    assert "use one of them" in capsys.readouterr().err
