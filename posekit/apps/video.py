"""Video files in and out through OpenCV: a frame reader that survives bad frames, and an annotated-video writer.

:class:`VideoReader` yields the frames of a file as RGB arrays (the predictor's image layout). A file OpenCV
cannot open, or one with no decodable frame at all, is a one-line :class:`~posekit.errors.DataError` naming it.
A frame that fails to decode in the middle of a video is skipped and counted (:attr:`VideoReader.skipped`):
OpenCV's ``read()`` returns no image for it and moves on, so a failed read followed by a good one is a bad
frame, whereas failed reads with nothing good after them are the end of the stream. Frames the decoder
*conceals* (FFmpeg paints over a damaged part of a JPEG/H.264 frame and reports success) cannot be told apart
from good ones here and are processed as they come.

:class:`VideoWriter` writes RGB frames at the source frame rate with the ``mp4v`` codec into ``.mp4``; where
that codec is unavailable it falls back to Motion-JPEG in ``.avi`` and says so (:attr:`VideoWriter.codec`,
:attr:`VideoWriter.path`). The file appears under its final name only once it is complete.

:func:`predict_video` is ``posekit predict VIDEO``: poses (optionally tracked) in every frame, written as an
annotated video, one JSON per frame and COCO-style results; :func:`read_video_detections` reads person boxes for
it from a COCO detection-results file whose ``image_id`` is the frame index.
"""
from __future__ import annotations

import itertools
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ..errors import DataError
from ..fileio import atomic_write_bytes, read_json
from ..structures import Pose
from .predictor import PosePredictor
from .tracking import PoseTracker

PathLike = Union[str, "os.PathLike[str]"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts")
DEFAULT_FPS = 30.0
# Failed reads in a row after which a stream is taken to have ended even if its header promised more frames:
# FFmpeg gives up on a damaged stretch well before this, so a longer run only ever means a truncated file.
MAX_CONSECUTIVE_FAILURES = 50


def is_video_path(path: PathLike) -> bool:
    """Whether the file name has a common video extension (the content is not looked at)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


class VideoReader:
    """The frames of a video file, in order, as H x W x 3 uint8 RGB arrays.

    ``for frame in VideoReader(path)`` yields the images; :meth:`indexed` yields ``(frame_index, image)`` with
    the frame's position in the file (bad frames leave gaps). After (or during) iteration, ``skipped`` counts
    the frames that failed to decode mid-video and ``skipped_indices`` lists them; ``missing_at_end`` counts
    frames the header announced but the stream did not deliver (a truncated file). ``fps`` is the file's frame
    rate (:data:`DEFAULT_FPS` where the file does not say), ``frame_count`` its announced length (0: unknown),
    ``size_wh`` the frame size. Opening is checked at construction: an unreadable file raises DataError at once.
    """

    def __init__(self, path: PathLike, max_consecutive_failures: int = MAX_CONSECUTIVE_FAILURES):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError("video file not found", self.path)
        if self.path.stat().st_size == 0:
            raise DataError("video file is empty", self.path)
        capture = self._open()
        try:
            fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
            self.fps = fps if np.isfinite(fps) and 0.0 < fps < 1000.0 else DEFAULT_FPS
            count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
            self.frame_count = int(count) if np.isfinite(count) and count > 0 else 0
            self.size_wh = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        finally:
            capture.release()
        self.max_consecutive_failures = max(1, int(max_consecutive_failures))
        self.skipped = 0
        self.skipped_indices: List[int] = []
        self.missing_at_end = 0
        self.frames_read = 0

    def _open(self) -> "cv2.VideoCapture":
        try:
            capture = cv2.VideoCapture(os.fspath(self.path))
        except cv2.error:
            capture = None
        if capture is None or not capture.isOpened():
            raise DataError("cannot open as a video (corrupt or unsupported format)", self.path)
        return capture

    def __len__(self) -> int:
        """The announced frame count (0 when the file does not say)."""
        return self.frame_count

    def __iter__(self) -> Iterator[np.ndarray]:
        for _, image in self.indexed():
            yield image

    def indexed(self) -> Iterator[Tuple[int, np.ndarray]]:
        """(frame index in the file, RGB image) for each frame that decodes; bad ones are counted and skipped."""
        self.skipped, self.skipped_indices, self.missing_at_end, self.frames_read = 0, [], 0, 0
        capture = self._open()
        position = 0          # index of the frame the next read() returns
        failures: List[int] = []
        try:
            while True:
                try:
                    ok, frame = capture.read()
                except cv2.error:
                    ok, frame = False, None
                if ok and frame is not None and frame.ndim == 3 and frame.size:
                    # Failed reads with a good frame after them were frames that did not decode.
                    self.skipped += len(failures)
                    self.skipped_indices.extend(failures)
                    failures = []
                    self.frames_read += 1
                    yield position, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                else:
                    failures.append(position)
                    if len(failures) >= self.max_consecutive_failures:
                        break
                    if self.frame_count and position + 1 >= self.frame_count:
                        break
                    if not self.frame_count:
                        # Unknown length: a failed read is the end unless the stream position still moves on.
                        if not _stream_moved_on(capture, position):
                            break
                position += 1
        finally:
            capture.release()
        # Trailing failures are the end of the stream; where the header announced those frames, say so.
        if self.frame_count:
            self.missing_at_end = max(0, self.frame_count - self.frames_read - self.skipped)
        if self.frames_read == 0:
            raise DataError("no frame of the video could be decoded", self.path)

    def summary(self) -> str:
        """One line: frames decoded, skipped (with their indices) and missing at the end."""
        text = f"{self.frames_read} frames read"
        if self.skipped:
            shown = ", ".join(str(i) for i in self.skipped_indices[:10]) + (", ..." if self.skipped > 10 else "")
            text += f", {self.skipped} undecodable frame{'s' if self.skipped != 1 else ''} skipped ({shown})"
        if self.missing_at_end:
            text += f", {self.missing_at_end} announced frame{'s' if self.missing_at_end != 1 else ''} missing at the end"
        return text


def _stream_moved_on(capture: "cv2.VideoCapture", position: int) -> bool:
    reported = capture.get(cv2.CAP_PROP_POS_FRAMES)
    return bool(np.isfinite(reported) and reported > position)


class VideoWriter:
    """Write RGB frames to a video at ``fps``: ``mp4v`` in ``.mp4``, else Motion-JPEG in ``.avi``.

    The frame size is taken from the first frame; later frames of another size are resized to it. The file is
    written under a temporary name beside ``path`` and renamed on :meth:`close` (use as a context manager).
    ``path`` and ``codec`` tell what was actually written (the suffix changes to ``.avi`` on the fallback).
    """

    CODECS: Tuple[Tuple[str, str], ...] = (("mp4v", ".mp4"), ("MJPG", ".avi"))

    def __init__(self, path: PathLike, fps: float, codecs: Optional[Tuple[Tuple[str, str], ...]] = None):
        self.requested = Path(path)
        self.fps = float(fps) if np.isfinite(fps) and fps > 0 else DEFAULT_FPS
        self.codecs = tuple(codecs) if codecs is not None else self.CODECS
        self.path: Optional[Path] = None
        self.codec: Optional[str] = None
        self.frames_written = 0
        self._writer: Optional["cv2.VideoWriter"] = None
        self._tmp: Optional[Path] = None
        self._size_wh: Optional[Tuple[int, int]] = None

    @property
    def fell_back(self) -> bool:
        """Whether the first codec was unavailable and a later one is in use."""
        return self.codec is not None and self.codec != self.codecs[0][0]

    def _start(self, size_wh: Tuple[int, int]) -> None:
        self.requested.parent.mkdir(parents=True, exist_ok=True)
        tried = []
        for fourcc, suffix in self.codecs:
            final = self.requested.with_suffix(suffix)
            # OpenCV picks the container from the extension, so the temporary name keeps it.
            tmp = final.parent / f".{final.stem}.{uuid.uuid4().hex[:8]}.tmp{suffix}"
            try:
                writer = cv2.VideoWriter(os.fspath(tmp), cv2.VideoWriter_fourcc(*fourcc), self.fps, size_wh)
            except cv2.error:
                writer = None
            if writer is not None and writer.isOpened():
                self._writer, self._tmp, self.path, self.codec = writer, tmp, final, fourcc
                self._size_wh = size_wh
                return
            if writer is not None:
                writer.release()
            if tmp.exists():
                tmp.unlink()
            tried.append(f"{fourcc}/{suffix}")
        raise DataError(f"cannot write a video: no codec available ({', '.join(tried)} tried)", self.requested)

    def write(self, image_rgb: np.ndarray) -> None:
        image = np.asarray(image_rgb)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"video frames must be H x W x 3 uint8 (RGB), got {image.shape} {image.dtype}")
        if self._writer is None:
            self._start((image.shape[1], image.shape[0]))
        assert self._writer is not None and self._size_wh is not None
        if (image.shape[1], image.shape[0]) != self._size_wh:
            image = cv2.resize(image, self._size_wh, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        self.frames_written += 1

    def close(self) -> Optional[Path]:
        """Finish the file and move it to its final name; returns that path (None when nothing was written)."""
        if self._writer is None:
            return None
        self._writer.release()
        self._writer = None
        assert self._tmp is not None and self.path is not None
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop a partly written file."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        if self._tmp is not None and self._tmp.exists():
            self._tmp.unlink()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def describe(self) -> str:
        """E.g. ``"out.mp4 (mp4v)"`` or ``"out.avi (MJPG: mp4v unavailable)"``."""
        if self.path is None:
            return f"{self.requested} (nothing written)"
        note = f": {self.codecs[0][0]} unavailable" if self.fell_back else ""
        return f"{self.path} ({self.codec}{note})"


# ------------------------------------------------------------------------------------------ poses in videos
def read_video_detections(path: PathLike, score_threshold: float = 0.0) -> Dict[int, np.ndarray]:
    """Person boxes for the frames of a video from a COCO detection-results JSON whose ``image_id`` is the
    0-based frame index: ``[{"image_id": 12, "bbox": [x, y, w, h], "score": 0.9, "category_id": 1}, ...]``.

    Returns frame index -> N x 5 (x, y, w, h, score), in the file's order. Entries of another category than 1
    (person) and those scoring below ``score_threshold`` are left out. A malformed file or entry is a DataError.
    """
    data = read_json(path, "detection file")
    if not isinstance(data, list):
        raise DataError("a detection-results file must hold a list of {image_id, bbox, score}", path)
    rows: Dict[int, List[List[float]]] = {}
    for n, entry in enumerate(data):
        if not isinstance(entry, dict) or "image_id" not in entry or "bbox" not in entry:
            raise DataError(f"detection {n} needs 'image_id' (the frame index) and 'bbox'", path)
        frame = entry["image_id"]
        if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)) or frame < 0:
            raise DataError(f"detection {n}: image_id must be a frame index (integer >= 0), got {frame!r}", path)
        try:
            box = [float(v) for v in entry["bbox"]]
            score = float(entry.get("score", 1.0))
            category = int(entry.get("category_id", 1))
        except (TypeError, ValueError):
            raise DataError(f"detection {n}: bbox, score and category_id must be numbers", path) from None
        if len(box) != 4 or not all(np.isfinite(box + [score])):
            raise DataError(f"detection {n}: bbox must be 4 finite numbers x, y, w, h", path)
        if category != 1 or score < score_threshold:
            continue
        rows.setdefault(int(frame), []).append(box + [score])
    return {frame: np.asarray(boxes, dtype=np.float64) for frame, boxes in rows.items()}


@dataclass
class VideoResult:
    """What :func:`predict_video` wrote and counted."""

    video: Path
    frames: int                   # frames decoded and processed
    skipped_frames: int           # undecodable frames skipped mid-video
    missing_at_end: int
    people: int
    track_ids: int                # distinct track ids (0 without tracking)
    skipped_boxes: int
    annotated: Optional[Path]
    codec_note: str
    frames_dir: Path
    results: Path
    reader_summary: str

    def summary(self) -> str:
        ids = f", {self.track_ids} track ids" if self.track_ids else ""
        return (f"{self.video.name}: {self.reader_summary}; {self.people} people{ids}, "
                f"{self.skipped_boxes} boxes skipped (empty or outside the frame)")


def predict_video(predictor: "PosePredictor", path: PathLike, out_dir: PathLike, *, track: bool = False,
                  tracker: Optional["PoseTracker"] = None, detections: Optional[Mapping[int, np.ndarray]] = None,
                  draw_threshold: float = 0.3, progress: bool = True, detector_every: int = 1) -> VideoResult:
    """Poses in every frame of a video; writes into ``out_dir``: ``annotated.mp4`` (or ``.avi``, see
    :class:`VideoWriter`), ``frames/NNNNNN.json`` (one per decoded frame, named by its index in the file) and
    ``keypoints_results.json`` (COCO keypoint results, ``image_id`` = frame index, with ``track_id`` when tracking).

    ``detections``: frame index -> boxes (:func:`read_video_detections`); None: each whole frame is one person
    (with tracking: single-person tracking, see :mod:`posekit.apps.tracking`). ``track``: run the pose tracker
    (``tracker``, default :class:`~posekit.apps.tracking.PoseTracker` with the keypoint set's sigmas). Undecodable
    frames are skipped and counted; the rest of the video is still processed and written.

    Without ``detections``, a predictor with a detector (:attr:`PosePredictor.detector`) finds the people; with
    ``detector_every`` N > 1 it runs on every N-th decoded frame only (the first included). In between, with
    ``track``, the tracker's flow-propagated boxes are the only ones (people who entered since are picked up at the
    next detection); without tracking, the boxes of the last detection are used again.
    """
    import json

    from tqdm import tqdm

    if isinstance(detector_every, bool) or not isinstance(detector_every, (int, np.integer)) or detector_every < 1:
        raise ValueError(f"detector_every must be an integer >= 1, got {detector_every!r}")
    sparse = detections is None and predictor.detector is not None and detector_every > 1

    reader = VideoReader(path)
    out = Path(out_dir)
    frames_dir = out / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    writer = VideoWriter(out / "annotated.mp4", reader.fps)
    coco: List[Dict[str, Any]] = []
    people = skipped_boxes = 0
    track_ids: set = set()
    empty = np.zeros((0, 5))
    bar = tqdm(total=reader.frame_count or None, desc=reader.path.name, unit="frame", disable=not progress,
               leave=False, dynamic_ncols=True)

    def emit(index: int, image: np.ndarray, poses: Sequence["Pose"]) -> None:
        nonlocal people
        record = {"video": str(reader.path), "frame": index, "time": round(index / reader.fps, 6),
                  "people": [p.to_dict() for p in poses]}
        (frames_dir / f"{index:06d}.json").write_text(json.dumps(record))
        # Tracked poses are already deduplicated (box NMS); OKS-NMS could drop a tracked person from the results
        # while the frame's JSON keeps them.
        coco.extend(predictor.to_coco_results(poses, index, nms=None if not track else False))
        people += len(poses)
        track_ids.update(p.track_id for p in poses if p.track_id is not None)
        writer.write(predictor.draw(image, poses, score_threshold=draw_threshold))
        bar.update(1)

    try:
        if track:
            if tracker is None:
                tracker = PoseTracker(predictor.skeleton.sigmas, keypoint_threshold=predictor.cfg.test.in_vis_thre)
            current: Dict[str, Any] = {}

            def frames() -> Iterator[Tuple[int, np.ndarray]]:
                for index, image in reader.indexed():
                    current["index"], current["image"] = index, image
                    yield index, image

            # None: the predictor's detector on this frame; no boxes: the propagated ones only.
            boxes: Any = ((None if n % detector_every == 0 else empty) for n in itertools.count()) if sparse \
                else detections
            for poses in predictor.track(frames(), boxes=boxes, tracker=tracker, fps=reader.fps):
                emit(current["index"], current["image"], poses)
                skipped_boxes += tracker.skipped_boxes
        else:
            chunk = max(1, int(predictor.cfg.test.batch_size))
            pending: List[Tuple[int, np.ndarray]] = []
            last_detection: Dict[str, Any] = {"count": 0, "boxes": empty}

            def sparse_boxes(image: np.ndarray) -> Any:
                if last_detection["count"] % detector_every == 0:
                    last_detection["boxes"] = predictor.detector(image)
                last_detection["count"] += 1
                return last_detection["boxes"]

            def flush() -> None:
                nonlocal skipped_boxes
                if sparse:
                    boxes = [sparse_boxes(image) for _, image in pending]
                else:
                    boxes = [None if detections is None else detections.get(i, empty) for i, _ in pending]
                results = predictor.predict_many([image for _, image in pending], boxes)
                skipped_boxes += predictor.skipped_boxes
                for (index, image), poses in zip(pending, results):
                    emit(index, image, poses)
                pending.clear()

            for item in reader.indexed():
                pending.append(item)
                if len(pending) == chunk:
                    flush()
            if pending:
                flush()
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    annotated = writer.close()
    results_path = out / "keypoints_results.json"
    atomic_write_bytes(results_path, json.dumps(coco).encode())
    return VideoResult(reader.path, reader.frames_read, reader.skipped, reader.missing_at_end, people, len(track_ids),
                       skipped_boxes, annotated, writer.describe(), frames_dir, results_path, reader.summary())
