"""Predicting on files: the images and videos named on a command line (files or folders), and detections from a
COCO-format file matched to images by name.

:func:`predict_files` is ``posekit predict``: poses in every image (one ``poses.json``, COCO results with
detections, optionally drawn) and in every video (:func:`posekit.apps.video.predict_video`), optionally tracked.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from tqdm import tqdm

from ..data.coco import coco_image_index, read_coco_detections
from ..data.images import read_image
from ..errors import DataError, PosekitError
from ..evaluation.metrics import write_coco_results
from ..fileio import atomic_write_bytes
from ..structures import Pose
from ..viz import save_image
from .predictor import PosePredictor, load_rgb
from .tracking import OneEuroSettings, PoseTracker
from .video import VIDEO_SUFFIXES, VideoReader, VideoResult, is_video_path, predict_video, read_video_detections

PathLike = Union[str, "os.PathLike[str]"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def find_inputs(inputs: Sequence[Union[str, "os.PathLike[str]"]]) -> Tuple[List[Path], List[Path]]:
    """(image files, video files) named directly or found (sorted, not recursively) in the folders named.

    In folders, files count by extension. A file named directly counts as a video by extension; a file with
    neither an image nor a video extension is tried as an image and then as a video (DataError if neither).
    """
    images: List[Path] = []
    videos: List[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for p in sorted(p for p in path.iterdir() if p.is_file()):
                if p.suffix.lower() in IMAGE_SUFFIXES:
                    images.append(p)
                elif p.suffix.lower() in VIDEO_SUFFIXES:
                    videos.append(p)
        elif path.is_file():
            if is_video_path(path):
                videos.append(path)
            elif path.suffix.lower() in IMAGE_SUFFIXES:
                images.append(path)
            else:
                try:
                    read_image(os.fspath(path))
                    images.append(path)
                except DataError:
                    try:
                        VideoReader(path)
                    except DataError:
                        raise DataError("neither an image nor a video OpenCV can decode", path) from None
                    videos.append(path)
        else:
            raise DataError("no such image or video file or folder", path)
    return images, videos


def detections_by_file_name(det_file: Union[str, "os.PathLike[str]"], ann_file: Union[str, "os.PathLike[str]"],
                            score_threshold: float = 0.0) -> Dict[str, Tuple[int, np.ndarray]]:
    """COCO detection results grouped by image: file base name -> (image id, N x 5 boxes with scores).

    Every image of ``ann_file`` (a COCO annotation file; its ``images`` list names the image of each detection)
    has an entry, with no boxes where the detector found nobody. Boxes are kept as the detector wrote them
    (:func:`posekit.data.coco.read_coco_detections`), in the file's order.
    """
    index = coco_image_index(ann_file)
    rows: Dict[int, List[np.ndarray]] = {image_id: [] for image_id in index}
    for record in read_coco_detections(det_file, index, "", score_threshold=score_threshold):
        rows[int(record.image_id)].append(np.append(record.box, record.score))
    return {os.path.basename(index[image_id][0]): (image_id, np.stack(found) if found else np.zeros((0, 5)))
            for image_id, found in rows.items()}


def check_inputs(inputs: Sequence[PathLike], det_file: Optional[PathLike] = None,
                 ann_file: Optional[PathLike] = None) -> Tuple[List[Path], List[Path]]:
    """:func:`find_inputs`, and the checks that need no model: something to predict on, and detections that can be
    matched to it (images by file name through ``ann_file``; video frames by ``image_id`` alone)."""
    images, videos = find_inputs(inputs)
    if not images and not videos:
        raise PosekitError(f"no image or video files ({', '.join(map(str, inputs))})")
    if videos and det_file and ann_file:
        raise PosekitError("--ann names the images of --det-file; for a video, the detections' image_id is the "
                           "frame index and --ann is not used: predict images and videos in separate runs")
    if images and det_file and not ann_file:
        raise PosekitError("--det-file needs --ann: the COCO annotation file whose 'images' name the detections' "
                           "images")
    return images, videos


@dataclass
class PredictSummary:
    """What :func:`predict_files` counted and wrote."""

    images: int = 0
    unreadable: int = 0                  # images that could not be decoded (skipped)
    people: int = 0                      # in the images
    skipped_boxes: int = 0               # in the images
    written: List[Path] = field(default_factory=list)
    videos: List[VideoResult] = field(default_factory=list)


def predict_files(predictor: PosePredictor, inputs: Sequence[PathLike], out_dir: PathLike, *, draw: bool = False,
                  draw_threshold: float = 0.3, track: bool = False, smoothing: Optional[OneEuroSettings] = None,
                  det_file: Optional[PathLike] = None, ann_file: Optional[PathLike] = None,
                  score_threshold: float = 0.0, progress: bool = True, log: Optional[Callable[[str], None]] = None,
                  warn: Optional[Callable[[str], None]] = None, detector_every: int = 1) -> PredictSummary:
    """Poses in the images and videos of ``inputs`` (files or folders, :func:`find_inputs`), written to ``out_dir``.

    Images: ``poses.json`` (one entry per image, in order, with ``error`` for an unreadable one), with
    ``det_file`` + ``ann_file`` also ``keypoints_results.json`` (COCO results; the image ids are the annotation
    file's), with ``draw`` the drawn images in ``drawn/``. Without detections, the predictor's detector
    (:attr:`PosePredictor.detector`) finds the people, and without one each whole image is one person.
    ``detector_every`` N: in videos and tracked image sequences the detector runs on every N-th frame only, the
    tracker carrying the people in between (:func:`posekit.apps.video.predict_video`).
    Videos: one folder each (:func:`posekit.apps.video.predict_video`; ``det_file``'s ``image_id`` is the frame).
    ``track`` (implied by ``smoothing``, One-Euro filtering) follows people through each video, and through the
    images taken as the frames of one sequence in name order. ``log`` receives the summary lines (``posekit
    predict`` prints them), ``warn`` one line per unreadable image when there are several; a lone unreadable
    image, or none readable, raises.
    """
    images, videos = check_inputs(inputs, det_file, ann_file)
    track = track or smoothing is not None
    log = log or (lambda line: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def new_tracker() -> PoseTracker:
        return PoseTracker(predictor.skeleton.sigmas, keypoint_threshold=predictor.cfg.test.in_vis_thre,
                           smoothing=smoothing)

    summary = PredictSummary()
    if images:
        detections = detections_by_file_name(det_file, ann_file, score_threshold) if det_file else None
        _predict_images(predictor, images, out, summary, detections, draw=draw, draw_threshold=draw_threshold,
                        tracker=new_tracker() if track else None, progress=progress, warn=warn,
                        all_must_fail=not videos, detector_every=detector_every)
        bad_note = f" ({summary.unreadable} unreadable, skipped)" if summary.unreadable else ""
        log(f"{summary.images} images{bad_note}, {summary.people} people, {summary.skipped_boxes} boxes skipped "
            "(empty or outside the image)")
        log("wrote " + ", ".join(map(str, summary.written)))
    if videos:
        video_dets = read_video_detections(det_file, score_threshold) if det_file else None
        stems: set = set()
        for video in videos:
            name = video.stem if video.stem not in stems else f"{video.stem}_{len(stems)}"
            stems.add(name)
            result = predict_video(predictor, video, out / name, track=track, tracker=new_tracker() if track else None,
                                   detections=video_dets, draw_threshold=draw_threshold, progress=progress,
                                   detector_every=detector_every)
            summary.videos.append(result)
            log(result.summary())
            log(f"wrote {result.codec_note}, {result.frames_dir}{os.sep} ({result.frames} JSON), {result.results}")
    return summary


def _predict_images(predictor: PosePredictor, images: List[Path], out: Path, summary: PredictSummary,
                    detections: Optional[Dict[str, Tuple[int, np.ndarray]]], *, draw: bool, draw_threshold: float,
                    tracker: Optional[PoseTracker], progress: bool, warn: Optional[Callable[[str], None]],
                    all_must_fail: bool, detector_every: int = 1) -> None:
    coco: list = []
    drawn_names: set = set()
    entries: dict = {}
    errors: list = []
    # Without detections each whole image is one person (its id: its position in the list); with them, an
    # image the annotation file does not name has no id and nobody in it.
    ids_boxes = [(n, None) if detections is None else detections.get(p.name, (None, np.zeros((0, 5))))
                 for n, p in enumerate(images)]
    bar = tqdm(total=len(images), desc="predict", disable=not progress or len(images) < 2, leave=False, unit="image")

    def unreadable(n: int, error: DataError) -> None:
        errors.append(error)
        entries[n] = {"file": str(images[n]), "image_id": ids_boxes[n][0], "people": [], "skipped_boxes": 0,
                      "error": getattr(error, "problem", str(error))}
        if len(images) > 1 and warn is not None:      # a lone image's error is the run's one-line error, said once
            warn(f"{error} (skipped)")
        bar.update(1)

    def done(n: int, poses: List[Pose], n_skipped: int) -> None:
        path, image_id = images[n], ids_boxes[n][0]
        entries[n] = {"file": str(path), "image_id": image_id, "people": [p.to_dict() for p in poses],
                      "skipped_boxes": n_skipped}
        if image_id is not None:
            coco.extend(predictor.to_coco_results(poses, image_id, nms=False if tracker else None))
        summary.people += len(poses)
        summary.skipped_boxes += n_skipped
        if draw:
            name = f"{path.stem}.png" if f"{path.stem}.png" not in drawn_names else f"{path.stem}_{n}.png"
            drawn_names.add(name)
            save_image(out / "drawn" / name, predictor.draw(path, poses, score_threshold=draw_threshold))
        bar.update(1)

    try:
        if tracker is not None:
            # The images, in name order, are the frames of one sequence; an unreadable one is a skipped frame.
            current = {}

            def frames():
                for n, path in enumerate(images):
                    try:
                        image = load_rgb(path)
                    except DataError as error:
                        unreadable(n, error)
                        continue
                    current["n"] = n
                    yield n, image

            boxes_by_index = {n: boxes for n, (_, boxes) in enumerate(ids_boxes)}
            if detections is None and predictor.detector is not None and detector_every > 1:
                # None: the detector runs on this frame; no boxes: the tracker's propagated ones only.
                boxes_by_index = {n: None if n % detector_every == 0 else np.zeros((0, 5)) for n in boxes_by_index}
            for poses in predictor.track(frames(), boxes_by_index, tracker=tracker):
                done(current["n"], poses, tracker.skipped_boxes)
        else:
            chunk = max(1, predictor.cfg.test.batch_size)   # several images per call: their crops share batches
            for start in range(0, len(images), chunk):
                paths, part = images[start:start + chunk], ids_boxes[start:start + chunk]
                all_poses = predictor.predict_many(paths, [boxes for _, boxes in part], skip_unreadable=True)
                bad = dict(predictor.unreadable)
                for k, (poses, n_skipped) in enumerate(zip(all_poses, predictor.skipped_per_image)):
                    if k in bad:
                        unreadable(start + k, bad[k])
                    else:
                        done(start + k, poses, n_skipped)
    finally:
        bar.close()
    if len(errors) == len(images) and all_must_fail:
        if len(errors) == 1:
            raise errors[0]
        raise PosekitError(f"none of the {len(images)} images could be read (first: {errors[0]})")
    summary.images, summary.unreadable = len(images), len(errors)
    atomic_write_bytes(out / "poses.json", json.dumps([entries[n] for n in range(len(images))]).encode())
    summary.written.append(out / "poses.json")
    if detections is not None:
        # write_coco_results keeps the COCO fields only; tracked results keep their track ids.
        if tracker is not None:
            atomic_write_bytes(out / "keypoints_results.json", json.dumps(coco).encode())
            summary.written.append(out / "keypoints_results.json")
        else:
            summary.written.append(write_coco_results(coco, out / "keypoints_results.json"))
    if draw:
        summary.written.append(out / "drawn")
