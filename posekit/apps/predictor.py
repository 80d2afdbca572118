"""Poses from images with a trained model: the practitioner's API (no annotation files needed).

:class:`PosePredictor` crops each person box exactly as the evaluation pipeline does (TopDownDataset's crop
centre/scale with the config's padding and box extension, its normalisation and colour order, CPM's centre-map
channel), runs the crops of one or several images through the model in batches of ``cfg.test.batch_size``
with the configured flip test, decodes the final output with its codec and maps the keypoints back to image
pixels. Given the same boxes, it returns what ``posekit eval`` computes.

Boxes are (x, y, w, h) in image pixels, covering [x, x + w) x [y, y + h); the whole image is (0, 0, W, H).
A box is clipped to the image; a box with no area left (zero or negative size, entirely outside the image,
or not finite) is skipped and counted in :attr:`PosePredictor.skipped_boxes`.

Detector plug-in: wherever boxes are accepted, a callable ``detector(image) -> N x 5`` may be passed instead.
It receives the RGB image (H x W x 3 uint8, not to be modified) and returns one row per person:
x, y, w, h in image pixels and a score (N x 4 rows mean score 1). Filtering by score is the detector's job.
A predictor built with ``detector=`` (a callable, or the path of a YOLOX / Ultralytics YOLO ONNX file, see
:mod:`posekit.apps.detector`) runs it wherever no boxes are given; boxes given explicitly win.

Multi-scale test (``cfg.test.scales``, e.g. [0.8, 1.0, 1.2]): each person is also cropped with windows f times
the usual one around the same centre; the heatmaps are brought into the f = 1 crop's frame and averaged
(:func:`posekit.evaluation.inference.predict_heatmaps_multiscale`), as ``posekit eval`` does.

Video: :meth:`PosePredictor.track` runs the flow-based pose tracker of :mod:`posekit.apps.tracking` over a stream of
frames (e.g. a :class:`posekit.apps.video.VideoReader`) and yields each frame's poses with ``track_id`` set.

The model is only ever called as ``model(batch) -> [heatmaps, ...]`` (in :mod:`posekit.evaluation.inference`), and needs the
attributes our models declare (``outputs``, ``num_keypoints``; ``center_map_sigma`` for CPM). Anything with those,
an ONNX Runtime wrapper for instance, can stand in for the PyTorch module; without parameters it runs on the CPU.
"""
from __future__ import annotations

import copy
import itertools
import os
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from ..build import build_codecs, build_model, dataset_skeleton, output_specs
from ..config import Config, load_config
from ..data.images import read_image
from ..data.topdown import TopDownCrop
from ..deploy.backends import BACKENDS, auto_backend, inference_model
from ..deploy.onnx import OnnxHeatmapModel
from ..errors import ConfigError, DataError
from ..evaluation import metrics
from ..evaluation.inference import check_test_scales, crop_center_on_heatmap, decode_to_image, predict_heatmaps_multiscale
from ..models.pretrained import DEFAULT_PRETRAINED, pretrained_config
from ..runtime import model_device, select_device
from ..structures import Pose, as_box_array, clip_box
from ..viz import draw_label, draw_skeleton, track_color
from ..weightfiles import load_weights
from .detector import as_detector
from .tracking import PoseTracker

ImageLike = Union[np.ndarray, str, "os.PathLike[str]"]
Detector = Callable[[np.ndarray], Any]
BoxesLike = Union[None, np.ndarray, Sequence[Sequence[float]], Detector]



def load_rgb(image: ImageLike) -> np.ndarray:
    """An H x W x 3 uint8 RGB array from an array (H x W grey is expanded) or an image file (DataError)."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(os.fspath(image), rgb=True, apply_orientation=True)   # photos as a viewer shows them
    if not isinstance(image, np.ndarray):
        raise TypeError(f"an image must be a numpy array or a path, got {type(image).__name__}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"an image array must be H x W x 3 uint8 (RGB), got {image.shape} {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"an image array must not be empty, got {image.shape}")
    return image


class PosePredictor:
    """Top-down pose estimation on images and video.

    * ``predictor(image, boxes=None) -> [Pose, ...]``: one image (RGB array or path); boxes N x 4 / N x 5, a
      detector callable, or None for the whole image.
    * ``predictor.predict_many(images, boxes_per_image)``: many images; the crops of consecutive images share
      batches of ``cfg.test.batch_size``.
    * ``predictor.track(frames, boxes=None, tracker=None, fps=None)``: a generator of each frame's poses with
      ``track_id`` set (:mod:`posekit.apps.tracking`). ``frames``: RGB arrays or ``(frame_index, array)`` pairs (what
      :meth:`posekit.apps.video.VideoReader.indexed` yields; the index times the frame rate drives the smoothing).
      ``boxes``: None (single-person: the whole frame until someone is tracked, then the propagated box), a
      detector callable, or one entry per frame (boxes, None or a detector).
    * ``to_coco_results`` / ``draw`` for output.

    Flip test per ``cfg.test.flip_test`` (or the ``flip_test`` argument); multi-scale test per ``cfg.test.scales``.
    After every call, ``skipped_boxes`` holds the number of boxes left out because nothing of them lay inside
    their image (the total over all images for :meth:`predict_many`; ``skipped_per_image`` has the split; for
    :meth:`track`, the running total over the frames so far).
    """

    def __init__(self, model: nn.Module, cfg: Config, device: Optional[str] = None, flip_test: Optional[bool] = None,
                 detector: Union[None, str, "os.PathLike[str]", Detector] = None):
        self.scales = check_test_scales(cfg.test.scales)
        self.cfg = cfg
        self.skeleton = dataset_skeleton(cfg)
        num_keypoints = int(getattr(model, "num_keypoints", self.skeleton.num_keypoints))
        if num_keypoints != self.skeleton.num_keypoints:
            raise ConfigError(f"the model predicts {num_keypoints} keypoints but keypoint set "
                              f"{self.skeleton.name!r} has {self.skeleton.num_keypoints}", "data.skeleton")
        self.device = model_device(model) if device is None else select_device(device)
        # Only a torch module moves; a model without `.to` (an ONNX Runtime wrapper) takes CPU tensors.
        self.model = model.to(self.device) if callable(getattr(model, "to", None)) else model
        if not callable(getattr(model, "to", None)):
            self.device = torch.device("cpu")
        self.input_hw = cfg.input_hw
        self.codec = build_codecs(output_specs(model, cfg), cfg)[-1]
        # The heatmap point the crop centre falls on: what the other scales are resampled about.
        self._center_xy = crop_center_on_heatmap(self.codec) if self.scales != [1.0] else None
        self.flip_test = cfg.test.flip_test if flip_test is None else bool(flip_test)
        self.flip_perm = self.skeleton.flip_permutation() if self.flip_test else None
        self.batch_size = max(1, int(cfg.test.batch_size))
        # The crop of evaluation (build.make_dataset wires the same one): padding, box extension, normalisation,
        # colour order and CPM's centre map from the config.
        self.crop = TopDownCrop.from_config(cfg, getattr(model, "center_map_sigma", None))
        self.backend = "torch" if isinstance(model, nn.Module) else type(model).__name__   # from_config names it
        # Runs where no boxes are given (None: the whole image is the one person).
        self.detector: Optional[Detector] = as_detector(detector)
        self.skipped_boxes = 0
        self.skipped_per_image: List[int] = []
        self.unreadable: List[Tuple[int, DataError]] = []

    @classmethod
    def from_config(cls, config: Union[Config, str, "os.PathLike[str]"], weights: Optional[str] = None,
                    device: str = "auto", flip_test: Optional[bool] = None, backend: str = "torch",
                    detector: Union[None, str, "os.PathLike[str]", Detector] = None) -> "PosePredictor":
        """A predictor for a config (a Config or a YAML path) with ``weights`` (default: cfg.model.weights).

        ``weights`` may be a posekit/official checkpoint or an ONNX file from ``posekit export`` (run by ONNX
        Runtime). ``backend`` (see :func:`posekit.deploy.backends.inference_model`): ``torch`` (plain eager fp32),
        ``torch-channels-last``, ``torch-folded`` (BatchNorm folded, exact), ``torch-bf16`` (bf16 with the edge
        layers in fp32) or ``onnxruntime`` (the checkpoint is exported to ONNX in a temporary folder and run by ONNX
        Runtime), ``openvino`` (exported the same way, run by OpenVINO in f32; the ``openvino`` extra),
        ``openvino-bf16`` (the same in bf16 with f32 edge convolutions), or
        ``auto``: the fastest exact one for the device (:func:`posekit.deploy.backends.auto_backend`).
        ``detector``: person boxes where none are given, a callable or an ONNX file (:mod:`posekit.apps.detector`).
        """
        if backend not in BACKENDS and backend != "auto":
            raise ConfigError(f"unknown backend {backend!r}; known: auto, {', '.join(BACKENDS)}", "backend")
        cfg = copy.deepcopy(config) if isinstance(config, Config) else load_config(config)
        weights = weights or cfg.model.weights
        if not weights:
            raise ConfigError("no weights given and model.weights is not set", "model.weights")
        cfg.model.weights = os.fspath(weights)
        if backend == "auto":
            backend = "onnxruntime" if cfg.model.weights.lower().endswith(".onnx") else auto_backend(select_device(device))
        if cfg.model.weights.lower().endswith(".onnx"):
            if backend not in ("torch", "onnxruntime"):
                raise ConfigError(f"an ONNX file runs on the onnxruntime backend, not {backend!r}", "backend")
            onnx_model = OnnxHeatmapModel(cfg.model.weights, input_hw=cfg.input_hw,
                                          num_keypoints=cfg.model.num_keypoints)
            predictor = cls(onnx_model, cfg, device="cpu", flip_test=flip_test, detector=detector)
            predictor.backend = "onnxruntime"
            return predictor
        # The whole model comes from the weights file: a backbone-only file (model.pretrained) is not needed.
        model = build_model(cfg, load=False)
        load_weights(model, cfg.model.weights)
        model.eval()
        if backend != "torch":
            model = inference_model(model, backend, cfg.input_hw)
        predictor = cls(model, cfg, device="cpu" if backend in ("onnxruntime", "openvino", "openvino-bf16") else device, flip_test=flip_test,
                        detector=detector)
        predictor.backend = backend
        return predictor

    @classmethod
    def from_pretrained(cls, name: Optional[str] = None, device: str = "auto", flip_test: Optional[bool] = None,
                        backend: str = "auto", detector: Union[None, str, "os.PathLike[str]", Detector] = None
                        ) -> "PosePredictor":
        """A predictor for a model shipped in the package (default: the default one, ``posekit info --pretrained``);
        its config and weights come from the package, the weights checked against their SHA-256. ``detector``:
        as for :meth:`from_config`."""
        return cls.from_config(pretrained_config(name or DEFAULT_PRETRAINED), device=device, flip_test=flip_test,
                               backend=backend, detector=detector)

    # ------------------------------------------------------------------------------------------ prediction
    def __call__(self, image: ImageLike, boxes: BoxesLike = None) -> List[Pose]:
        """Poses of the people in ``boxes`` (None: the predictor's detector's boxes, or without one the whole image
        as one person), in the order of the boxes."""
        return self.predict_many([image], [boxes])[0]

    def predict_many(self, images: Iterable[ImageLike], boxes_per_image: Union[None, Detector, Iterable[BoxesLike]] = None,
                     skip_unreadable: bool = False) -> List[List[Pose]]:
        """Poses for each image; crops of consecutive images share batches. Images are read one at a time.

        ``boxes_per_image``: None (the predictor's detector, or without one each whole image is one person), one
        detector for all images, or one entry (None, boxes or a detector) per image. An image file that cannot be
        read raises its DataError; with
        ``skip_unreadable`` it gets an empty list instead and ``(index, error)`` goes into ``self.unreadable``.
        """
        if boxes_per_image is None or callable(boxes_per_image):
            box_source: Iterable[BoxesLike] = itertools.repeat(boxes_per_image)
        else:
            box_source = boxes_per_image
            if hasattr(images, "__len__") and hasattr(box_source, "__len__") and len(images) != len(box_source):  # type: ignore[arg-type]
                raise ValueError(f"{len(images)} images but {len(box_source)} entries in boxes_per_image")  # type: ignore[arg-type]
        results: List[List[Pose]] = []
        skipped: List[int] = []
        pending: List[Tuple[int, np.ndarray, float, np.ndarray, np.ndarray, np.ndarray]] = []
        self.unreadable: List[Tuple[int, DataError]] = []
        was_training = self._set_eval()
        try:
            for index, (image, boxes) in enumerate(zip_strict(images, box_source)):
                results.append([])
                skipped.append(0)
                try:
                    rgb = load_rgb(image)
                except DataError as error:
                    if not skip_unreadable:
                        raise
                    self.unreadable.append((index, error))
                    continue
                for item in self._crops(rgb, boxes, index, skipped):
                    pending.append(item)
                    if len(pending) == self.batch_size:
                        self._run(pending, results)
                        pending = []
            if pending:
                self._run(pending, results)
        finally:
            if was_training:
                self.model.train(True)
        self.skipped_per_image = skipped
        self.skipped_boxes = int(sum(skipped))
        return results

    def track(self, frames: Iterable[Union[ImageLike, Tuple[int, ImageLike]]],
              boxes: Union[None, Detector, Mapping[int, BoxesLike], Iterable[BoxesLike]] = None,
              tracker: Optional["PoseTracker"] = None, fps: Optional[float] = None) -> Iterator[List[Pose]]:
        """Track people through ``frames``: yields, frame by frame, the poses with ``track_id`` set.

        ``frames``: images (RGB arrays or paths) or ``(frame_index, image)`` pairs; ``boxes``: None (the
        predictor's detector on every frame; without one, single-person tracking), one detector
        for all frames, a mapping frame index -> boxes (a frame it does not name has no detections; the tracked
        people's propagated boxes are still used), or one entry per frame (boxes N x 4 / N x 5, None or a
        detector). ``tracker``: a
        :class:`posekit.apps.tracking.PoseTracker` (default: one with the keypoint set's OKS sigmas, HRNet's
        in_vis_thre as keypoint threshold, no smoothing); it keeps its tracks across calls unless reset.
        ``fps``: frame rate for the smoothing's timestamps (default 30). Poses are estimated frame by frame (each
        frame's boxes depend on the poses of the previous one); the people of a frame share batches.
        """
        if tracker is None:
            tracker = PoseTracker(self.skeleton.sigmas, keypoint_threshold=self.cfg.test.in_vis_thre)
        rate = 30.0 if fps is None or not fps > 0 else float(fps)
        by_index = boxes if isinstance(boxes, Mapping) else None
        if boxes is None or callable(boxes) or by_index is not None:
            box_source: Iterable[Any] = itertools.repeat(boxes)
        else:
            box_source = boxes
        self.skipped_boxes = skipped_total = 0

        def estimate(image: np.ndarray, frame_boxes: np.ndarray) -> List[Pose]:
            return self.predict_many([image], [frame_boxes])[0]

        for position, (item, frame_boxes) in enumerate(zip_strict(frames, box_source)):
            if isinstance(item, tuple) and len(item) == 2:
                index, image = int(item[0]), load_rgb(item[1])
            else:
                index, image = position, load_rgb(item)
            if by_index is not None:
                frame_boxes = by_index.get(index, np.zeros((0, 5)))
            detections = None if frame_boxes is None and self.detector is None else self._boxes(image, frame_boxes)
            poses = tracker.step(image, detections, estimate, timestamp=index / rate)
            # (predict_many resets the counter per call; the tracker clipped the boxes and counted the empty ones.)
            skipped_total += tracker.skipped_boxes
            self.skipped_boxes = skipped_total
            yield poses

    def _set_eval(self) -> bool:
        """Put a torch module in eval mode; returns whether it was training (False for other models)."""
        was_training = bool(getattr(self.model, "training", False))
        if was_training:
            self.model.eval()
        return was_training

    def _boxes(self, image: np.ndarray, boxes: BoxesLike) -> np.ndarray:
        height, width = image.shape[:2]
        if boxes is None and self.detector is not None:
            boxes = self.detector
        if boxes is None:
            return np.array([[0.0, 0.0, width, height, 1.0]])
        if callable(boxes):
            name = getattr(boxes, "__name__", type(boxes).__name__)
            return as_box_array(boxes(image), f"the output of detector {name}")
        return as_box_array(boxes)

    def _crops(self, image: np.ndarray, boxes: BoxesLike, index: int, skipped: List[int]
               ) -> Iterator[Tuple[int, np.ndarray, float, np.ndarray, np.ndarray, np.ndarray]]:
        """(image index, box, box score, inputs S x C x H x W (one per test scale), centre, f = 1 scale) per usable box."""
        height, width = image.shape[:2]
        for row in self._boxes(image, boxes):
            box = clip_box(row[:4], (width, height))
            if box is None:
                skipped[index] += 1
                continue
            center, scale = self.crop.box_center_scale(box)
            # The crop scale is proportional to the box padding, so f x scale is eval's padding x f crop.
            tensors = [self.crop.normalise(self.crop.cut(image, self.crop.matrix(center, scale * factor)), pixels_rgb=True)
                       for factor in self.scales]
            yield index, box, float(row[4]), np.stack(tensors), center, scale

    def _run(self, pending: Sequence[Tuple[int, np.ndarray, float, np.ndarray, np.ndarray, np.ndarray]],
             results: List[List[Pose]]) -> None:
        stacked = torch.from_numpy(np.stack([p[3] for p in pending]))          # N x S x C x H x W
        crops_per_scale = [stacked[:, s].to(self.device) for s in range(len(self.scales))]
        centers = np.stack([p[4] for p in pending])
        scales = np.stack([p[5] for p in pending])
        heatmaps = predict_heatmaps_multiscale(self.model, crops_per_scale, self.scales, self.flip_perm,
                                               self.cfg.test.shift_heatmap, self._center_xy)
        coords, scores = decode_to_image(self.codec, heatmaps, self.crop, centers, scales)
        for (index, box, box_score, _, center, scale), xy, score in zip(pending, coords, scores):
            results[index].append(Pose(keypoints=xy, scores=score, box=box, box_score=box_score,
                                       center=center, scale=scale))

    # ---------------------------------------------------------------------------------------- output
    def to_coco_results(self, poses: Sequence[Pose], image_id: int, nms: Optional[bool] = None) -> List[Dict[str, Any]]:
        """COCO keypoint results ``{image_id, category_id: 1, keypoints: [x, y, score] * K, score}`` for one image.

        Poses with a ``track_id`` (from :meth:`track`) carry it as ``track_id`` (PoseTrack-style results).

        ``score`` is the official rescoring: box score x the mean of the keypoint scores above
        ``cfg.test.in_vis_thre``. With ``nms`` (None: when the keypoint set has OKS sigmas) people are then
        thinned by ``cfg.test.nms`` (OKS-NMS, soft OKS-NMS or none) at ``cfg.test.oks_thre`` with the padded crop
        area, as ``posekit eval`` does.
        """
        if not poses:
            return []
        areas = [float(np.prod(np.asarray(p.scale) * 200.0)) if p.scale is not None else float(p.box[2] * p.box[3])
                 for p in poses]
        if nms is None:
            nms = self.skeleton.sigmas is not None
        return metrics.coco_keypoint_results(
            [image_id] * len(poses), np.stack([p.keypoints for p in poses]), np.stack([p.scores for p in poses]),
            [p.box_score for p in poses], areas, nms=self.cfg.test.nms if nms else None, oks_threshold=self.cfg.test.oks_thre,
            keypoint_threshold=self.cfg.test.in_vis_thre, sigmas=self.skeleton.sigmas,
            track_ids=[p.track_id for p in poses])

    def draw(self, image: ImageLike, poses: Sequence[Pose], score_threshold: float = 0.3, boxes: bool = False) -> np.ndarray:
        """A copy of the (RGB) image with each pose's skeleton drawn; joints below ``score_threshold`` hidden.

        A tracked pose (``track_id`` set) gets its box in the track's colour and an ``id N`` label, so that one
        person keeps one colour through a video.
        """
        import cv2

        canvas = load_rgb(image).copy()
        for pose in poses:
            x, y, w, h = (int(round(v)) for v in pose.box)
            if pose.track_id is not None:
                color = track_color(pose.track_id)[::-1]          # RGB canvas
                cv2.rectangle(canvas, (x, y), (x + w - 1, y + h - 1), color, 1)
            elif boxes:
                cv2.rectangle(canvas, (x, y), (x + w - 1, y + h - 1), (255, 255, 255), 1)
            canvas = draw_skeleton(canvas, pose.keypoints, self.skeleton, scores=pose.scores,
                                   score_threshold=score_threshold, rgb=True)
            if pose.track_id is not None:
                draw_label(canvas, f"id {pose.track_id}", (x, y), track_color(pose.track_id), rgb=True)
        return canvas


def zip_strict(images: Iterable[Any], boxes: Iterable[Any]) -> Iterator[Tuple[Any, Any]]:
    """zip that raises when boxes run out before the images do (the images may be a lazy stream)."""
    box_iter = iter(boxes)
    for image in images:
        try:
            yield image, next(box_iter)
        except StopIteration:
            raise ValueError("boxes_per_image has fewer entries than there are images") from None
