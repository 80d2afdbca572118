"""Person boxes from a user's ONNX object detector: YOLOX (rtmlib / MMDeploy / the YOLOX repository's export) or
Ultralytics YOLOv8/11, run by ONNX Runtime with NumPy pre- and post-processing (no torchvision, no compiled ops).

``OnnxPersonDetector(path)(image_rgb) -> N x 5`` (x, y, w, h, score in image pixels, best first): the detector
plug-in of :class:`posekit.apps.predictor.PosePredictor`. No weights ship with posekit; the user brings the file.

The layout is recognised from the graph's input and outputs (A = the anchors of strides 8, 16 and 32 on the input,
8400 at 640 x 640, 3549 at 416 x 416; C = the number of classes):

* ``yolox-end2end``: two outputs ``dets`` (1 x N x 5: x1, y1, x2, y2, score) and ``labels`` (1 x N), as MMDeploy
  exports MMDet's YOLOX with its NMS (rtmlib's ``yolox_*_humanart`` / DWPose detector files, input ``input``
  1 x 3 x 640 x 640). Boxes are in the letterboxed input's pixels and already NMSed; rows labelled person are kept.
* ``yolox``: one output 1 x A x (5 + C), the raw head as the YOLOX repository's ``tools/export_onnx.py`` writes it
  (``decode_in_inference = False``): per anchor (dx, dy, log w, log h, objectness, C class scores), objectness
  and classes already through the sigmoid. Decoded as rtmlib's ``YOLOX.postprocess`` does: centre =
  (grid + (dx, dy)) x stride, size = exp(log w, log h) x stride, score = objectness x person class score. A head
  exported with ``decode_in_inference = True`` (cx, cy, w, h already in input pixels) is told apart by its sizes
  (median over the confident anchors above :data:`DECODED_SIZE`) and used as it is.
* ``ultralytics``: one output 1 x (4 + C) x A (``output0`` of ``yolo export format=onnx``, input ``images``):
  cx, cy, w, h in input pixels, then the class scores (no objectness). As in ``ultralytics.utils.ops.
  non_max_suppression`` with ``classes=[0]``, an anchor counts as a person when person is its best class.
* ``ultralytics-end2end``: one output 1 x N x 6 (x1, y1, x2, y2, score, class; ``nms=True`` exports, YOLOv10/26),
  already NMSed.

Pre-processing follows each family's own code. YOLOX (rtmlib ``YOLOX.preprocess``; MMDet's YOLOX test pipeline):
ratio r = min(H_in / H, W_in / W), the image resized (bilinear) to (int(W r), int(H r)) and placed at the *top-left*
of an H_in x W_in canvas of 114, BGR, float 0..255 without normalisation; boxes go back by dividing by r.
Ultralytics (``ultralytics.data.augment.LetterBox``, ``ops.scale_boxes``): the same r, resized to
(round(W r), round(H r)) and *centred* with padding 114 (top = round(dh - 0.1), left = round(dw - 0.1)), RGB,
divided by 255; boxes go back by subtracting that padding and dividing by r.

Post-processing: person class (index 0 of COCO-80, or the single class; for Ultralytics files the class named
``person`` in the file's ``names`` metadata), score > ``score_threshold``, greedy IoU NMS at ``nms_threshold``
(for the raw heads), boxes mapped back to image pixels and clipped to the image; boxes with no area left are dropped.
"""
from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ..errors import CheckpointError, PosekitError

PathLike = Union[str, "os.PathLike[str]"]

STRIDES = (8, 16, 32)
PAD_VALUE = 114
DEFAULT_INPUT_SIZE = 640      # rtmlib's and Ultralytics' default when the file's input size is dynamic
# A raw YOLOX head's log-sizes stay far below this (exp(10) x 8 px is 176,000 px); the sizes of a head exported with
# decode_in_inference = True are pixels, above it for anything worth detecting. The median over the confident anchors
# tells the two apart.
DECODED_SIZE = 10.0
FORMATS = ("yolox-end2end", "yolox", "ultralytics", "ultralytics-end2end")


def num_anchors(input_hw: Tuple[int, int]) -> int:
    """Anchor points of a stride-8/16/32 head on an input of ``input_hw``: sum of (H // s) x (W // s)."""
    return sum((input_hw[0] // s) * (input_hw[1] // s) for s in STRIDES)


def nms(boxes_xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices of the kept boxes, best score first (ties: lower index first).

    A box is dropped when its IoU with a kept, better-scoring box exceeds ``iou_threshold`` (areas (x2 - x1) x
    (y2 - y1), as torchvision's ``nms`` that Ultralytics calls).
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    keep: List[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        low = np.maximum(boxes[best, :2], boxes[rest, :2])
        high = np.minimum(boxes[best, 2:], boxes[rest, 2:])
        inter = np.prod(np.clip(high - low, 0, None), axis=1)
        union = areas[best] + areas[rest] - inter
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def letterbox_yolox(image: np.ndarray, input_hw: Tuple[int, int]) -> Tuple[np.ndarray, float]:
    """rtmlib's YOLOX letterbox: (H_in x W_in x 3 canvas of 114 with the resized image at its top-left, ratio)."""
    height, width = image.shape[:2]
    ratio = min(input_hw[0] / height, input_hw[1] / width)
    new_w, new_h = max(1, int(width * ratio)), max(1, int(height * ratio))
    canvas = np.full((input_hw[0], input_hw[1], 3), PAD_VALUE, dtype=np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return canvas, ratio


def letterbox_ultralytics(image: np.ndarray, input_hw: Tuple[int, int]) -> Tuple[np.ndarray, float, Tuple[int, int]]:
    """Ultralytics' LetterBox (auto=False, scaleup=True): (canvas, ratio, (left, top) padding of scale_boxes)."""
    height, width = image.shape[:2]
    ratio = min(input_hw[0] / height, input_hw[1] / width)
    new_w, new_h = max(1, int(round(width * ratio))), max(1, int(round(height * ratio)))
    dw, dh = (input_hw[1] - new_w) / 2.0, (input_hw[0] - new_h) / 2.0
    top, left = int(round(dh - 0.1)), int(round(dw - 0.1))
    canvas = np.full((input_hw[0], input_hw[1], 3), PAD_VALUE, dtype=np.uint8)
    resized = image if (new_w, new_h) == (width, height) else cv2.resize(image, (new_w, new_h),
                                                                           interpolation=cv2.INTER_LINEAR)
    canvas[top:top + new_h, left:left + new_w] = resized
    # ops.scale_boxes recomputes the padding from the unrounded size; it can differ from `top`/`left` by a pixel.
    pad = (int(round((input_hw[1] - width * ratio) / 2 - 0.1)), int(round((input_hw[0] - height * ratio) / 2 - 0.1)))
    return canvas, ratio, pad


def _dims(shape: Sequence[Any]) -> List[Optional[int]]:
    """A graph shape with symbolic or unknown dimensions as None."""
    return [int(d) if isinstance(d, (int, np.integer)) and d > 0 else None for d in shape]


def _describe(nodes: Sequence[Any]) -> str:
    return ", ".join(f"{n.name} [{' x '.join('?' if d is None else str(d) for d in _dims(n.shape))}]" for n in nodes)


def classify_output(shape: Sequence[Optional[int]], input_hw: Tuple[int, int]) -> Optional[str]:
    """The layout of a single 1 x a x b output (None: not one of ours, or not decidable with unknown dims)."""
    if len(shape) != 3 or shape[0] not in (1, None):
        return None
    a, b = shape[1], shape[2]
    anchors = num_anchors(input_hw)
    if a == anchors and b is not None and b >= 6:
        return "yolox"
    if b == anchors and a is not None and a >= 5:
        return "ultralytics"
    if b == 6 and a is not None and a != anchors:
        return "ultralytics-end2end"
    return None


class OnnxPersonDetector:
    """Person boxes from a YOLOX or Ultralytics YOLO ONNX file (see the module docstring for the layouts).

    ``detector(image_rgb)`` takes an H x W x 3 uint8 RGB image and returns N x 5 float64 rows (x, y, w, h, score)
    in image pixels, best first. ``input_size``: (H, W) or one number, for files whose input size is dynamic
    (default: the file's metadata ``imgsz`` if any, else 640); a file with a fixed size must be given that size.
    ``threads``: ONNX Runtime's intra-op threads (default: its own choice). ``format`` tells the recognised layout.
    A file that is missing, not ONNX, or of another layout raises a one-line :class:`~posekit.errors.PosekitError`.
    """

    def __init__(self, path: PathLike, score_threshold: float = 0.3, nms_threshold: float = 0.45,
                 input_size: Union[None, int, Sequence[int]] = None, threads: Optional[int] = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise PosekitError("an ONNX person detector needs ONNX Runtime: pip install 'posekit[onnx]'") from None
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError("person detector: no such file", self.path)
        if not (np.isfinite(score_threshold) and 0.0 <= score_threshold < 1.0):
            raise PosekitError(f"the detector score threshold must lie in [0, 1), got {score_threshold!r}")
        if not (np.isfinite(nms_threshold) and 0.0 < nms_threshold <= 1.0):
            raise PosekitError(f"the detector NMS IoU threshold must lie in (0, 1], got {nms_threshold!r}")
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or 0)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Idle ORT threads would otherwise spin after each run, taking the cores from the pose model that runs next.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CheckpointError(f"person detector: ONNX Runtime cannot load this file ({first})", self.path) from None
        self.metadata: Dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map or {})
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        found = f"found inputs {_describe(inputs) or 'none'}; outputs {_describe(outputs) or 'none'}"
        layouts = ("YOLOX (dets + labels, or 1 x A x (5 + C)) or Ultralytics YOLO (1 x (4 + C) x A, or 1 x N x 6)")
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or _dims(inputs[0].shape)[1] not in (3, None):
            raise CheckpointError(f"not a person detector posekit reads: expected one 1 x 3 x H x W image input; "
                                  f"{found}", self.path)
        self._input_name = inputs[0].name
        self._input_dtype = np.float16 if "float16" in inputs[0].type else np.float32
        self.input_hw = self._input_hw(_dims(inputs[0].shape)[2:], input_size)
        names = [o.name for o in outputs]
        self.format: Optional[str] = None
        self._output_names = names[:1]
        if "dets" in names and "labels" in names:
            dets = _dims(outputs[names.index("dets")].shape)
            if len(dets) != 3 or dets[2] not in (5, None):
                raise CheckpointError(f"not a person detector posekit reads: 'dets' must be 1 x N x 5; {found}",
                                      self.path)
            self.format, self._output_names = "yolox-end2end", ["dets", "labels"]
        elif len(outputs) == 1 and len(outputs[0].shape) == 3:
            shape = _dims(outputs[0].shape)
            self.format = classify_output(shape, self.input_hw)
            if self.format is None and all(d is not None for d in shape[1:]):
                raise CheckpointError(f"not a person detector posekit reads (expected {layouts} with A = "
                                      f"{num_anchors(self.input_hw)} for a {self.input_hw[0]}x{self.input_hw[1]} "
                                      f"input); {found}", self.path)
            # With dynamic dimensions the layout is decided on the first image, from the actual output.
        else:
            raise CheckpointError(f"not a person detector posekit reads (expected {layouts}); {found}", self.path)
        self._found = found
        self._person: Optional[int] = self._person_from_names()

    def _input_hw(self, static: List[Optional[int]], input_size: Union[None, int, Sequence[int]]) -> Tuple[int, int]:
        if input_size is not None:
            size = (int(input_size), int(input_size)) if np.isscalar(input_size) else tuple(int(v) for v in input_size)
            if len(size) != 2 or min(size) < 32:
                raise PosekitError(f"the detector input size must be H x W of at least 32, got {input_size!r}")
            if all(d is not None for d in static) and tuple(static) != size:
                raise CheckpointError(f"person detector: the file's input is {static[0]}x{static[1]}, not "
                                      f"{size[0]}x{size[1]}", self.path)
            return size  # type: ignore[return-value]
        if all(d is not None for d in static):
            return int(static[0]), int(static[1])  # type: ignore[arg-type]
        try:   # Ultralytics writes imgsz into the metadata, e.g. "[640, 640]"
            value = ast.literal_eval(self.metadata.get("imgsz", ""))
            size = (int(value[0]), int(value[1])) if isinstance(value, (list, tuple)) else (int(value), int(value))
            if min(size) >= 32:
                return size
        except (ValueError, SyntaxError, TypeError, IndexError):
            pass
        return DEFAULT_INPUT_SIZE, DEFAULT_INPUT_SIZE

    def _person_from_names(self) -> Optional[int]:
        """The person class from the file's ``names`` metadata (Ultralytics), None when it has none."""
        try:
            names = ast.literal_eval(self.metadata.get("names", ""))
        except (ValueError, SyntaxError):
            return None
        if isinstance(names, (list, tuple)):
            names = dict(enumerate(names))
        if not isinstance(names, dict) or not names:
            return None
        for index, name in names.items():
            if str(name).strip().lower() == "person":
                return int(index)
        if len(names) == 1:
            return int(next(iter(names)))
        shown = ", ".join(map(str, list(names.values())[:6])) + (", ..." if len(names) > 6 else "")
        raise CheckpointError(f"person detector: none of its {len(names)} classes is 'person' ({shown})", self.path)

    def __repr__(self) -> str:
        return (f"OnnxPersonDetector({str(self.path)!r}, format={self.format or 'undecided'}, "
                f"input={self.input_hw[0]}x{self.input_hw[1]}, score>{self.score_threshold}, nms={self.nms_threshold})")

    @property
    def __name__(self) -> str:      # PosePredictor names a detector by it in error messages
        return self.path.name

    # ------------------------------------------------------------------------------------------ running
    def __call__(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape[:2]:
            raise ValueError(f"the detector takes an H x W x 3 uint8 RGB image, got {image.shape} {image.dtype}")
        height, width = image.shape[:2]
        # An undecided layout (dynamic output dims) is tried as YOLOX first; the output's shape then decides.
        if self.format is None or self.format.startswith("yolox"):
            canvas, ratio = letterbox_yolox(np.ascontiguousarray(image[:, :, ::-1]), self.input_hw)   # BGR
            tensor = canvas.transpose(2, 0, 1)[None].astype(self._input_dtype)
            pad = (0, 0)
        else:
            canvas, ratio, pad = letterbox_ultralytics(image, self.input_hw)
            tensor = (canvas.transpose(2, 0, 1)[None].astype(np.float32) / 255.0).astype(self._input_dtype)
        outputs = self.session.run(self._output_names, {self._input_name: np.ascontiguousarray(tensor)})
        if self.format is None:
            self.format = classify_output(list(outputs[0].shape), self.input_hw)
            if self.format is None:
                raise CheckpointError(f"not a person detector posekit reads: its output is "
                                      f"{' x '.join(map(str, outputs[0].shape))} for a {self.input_hw[0]}x"
                                      f"{self.input_hw[1]} input ({self._found})", self.path)
            if not self.format.startswith("yolox"):
                return self(image)          # run again with Ultralytics' pre-processing
        boxes, scores = self._decode([np.asarray(o, dtype=np.float64) for o in outputs])
        boxes[:, [0, 2]] -= pad[0]
        boxes[:, [1, 3]] -= pad[1]
        boxes /= ratio
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]) & np.isfinite(boxes).all(axis=1)
        boxes, scores = boxes[keep], scores[keep]
        order = np.argsort(-scores, kind="stable")
        boxes, scores = boxes[order], scores[order]
        return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2], scores[:, None]], axis=1)

    def _decode(self, outputs: List[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        """(boxes x1, y1, x2, y2 in input pixels, scores) of the people found, NMSed."""
        person = 0 if self._person is None else self._person
        if self.format == "yolox-end2end":
            dets = outputs[0].reshape(-1, 5)
            labels = outputs[1].reshape(-1)
            keep = (dets[:, 4] > self.score_threshold) & (labels == person)
            return dets[keep, :4].copy(), dets[keep, 4]
        if self.format == "ultralytics-end2end":
            rows = outputs[0].reshape(-1, 6)
            keep = (rows[:, 4] > self.score_threshold) & (rows[:, 5] == person)
            return rows[keep, :4].copy(), rows[keep, 4]
        if self.format == "yolox":
            raw = outputs[0][0]
            classes = raw.shape[1] - 5
            if person >= classes:
                raise CheckpointError(f"person detector: class {person} is not among its {classes}", self.path)
            grids, strides = [], []
            for stride in STRIDES:
                h, w = self.input_hw[0] // stride, self.input_hw[1] // stride
                xv, yv = np.meshgrid(np.arange(w), np.arange(h))
                grids.append(np.stack([xv, yv], axis=2).reshape(-1, 2))
                strides.append(np.full((h * w, 1), stride))
            grid, stride_column = np.concatenate(grids), np.concatenate(strides)
            scores = raw[:, 4] * raw[:, 5 + person]
            keep = scores > self.score_threshold
            scores = scores[keep]
            if keep.any() and np.median(raw[keep, 2:4]) > DECODED_SIZE:
                centre, size = raw[keep, :2], raw[keep, 2:4]          # exported with decode_in_inference = True
            else:
                centre = (raw[keep, :2] + grid[keep]) * stride_column[keep]
                with np.errstate(over="ignore"):
                    size = np.exp(raw[keep, 2:4]) * stride_column[keep]
        else:   # ultralytics
            raw = outputs[0][0].T                     # A x (4 + C)
            class_scores = raw[:, 4:]
            if person >= class_scores.shape[1]:
                raise CheckpointError(f"person detector: class {person} is not among its {class_scores.shape[1]}",
                                      self.path)
            scores = class_scores[:, person]
            keep = (scores > self.score_threshold) & (class_scores.argmax(axis=1) == person)
            centre, size, scores = raw[keep, :2], raw[keep, 2:4], scores[keep]
        boxes = np.concatenate([centre - size / 2.0, centre + size / 2.0], axis=1)
        kept = nms(boxes, scores, self.nms_threshold)
        return boxes[kept], scores[kept]


def as_detector(detector: Union[None, PathLike, Any]) -> Any:
    """None, a callable ``detector(image_rgb) -> N x 4 / N x 5``, or the path of an ONNX file (an
    :class:`OnnxPersonDetector` with its default thresholds)."""
    if detector is None or callable(detector):
        return detector
    if isinstance(detector, (str, os.PathLike)):
        return OnnxPersonDetector(detector)
    raise TypeError(f"a detector must be an ONNX file path or a callable image -> boxes, got {type(detector).__name__}")
