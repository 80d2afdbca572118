"""Pose tracking in video, after HRNet §4.3, which follows Simple Baselines' flow-based tracker (Xiao et al. 2018, §3).

Per frame (:meth:`PoseTracker.step`):

1. **Joint propagation.** Dense optical flow from the previous frame to this one (OpenCV's Farneback in place of
   FlowNet 2.0) moves every live track's keypoints: a joint at (x, y) goes to (x, y) + flow(x, y). The box of the
   propagated joints, enlarged by 15 % in width and height about its centre (Simple Baselines: "expand that box
   by some extent (15% in experiments)"; HRNet extends keypoint boxes by 15 % for PoseTrack too), is the
   track's candidate box for this frame.
2. **Box merging.** Detector boxes and propagated boxes are merged by box NMS: a propagated box is dropped when
   it overlaps a detection or a better-scoring propagated box by IoU > ``box_iou_threshold``. Detections are not
   suppressed by one another (the detector has done its own NMS), so two people who cross keep both boxes.
3. **Pose estimation** in the merged boxes (the caller's estimator, e.g. :class:`posekit.apps.predictor.PosePredictor`).
4. **Association.** Flow-based pose similarity: OKS between each track's propagated keypoints and each new pose
   (:func:`posekit.evaluation.metrics.oks_iou`, areas = box w x h). Pairs are taken greedily, most similar first, while
   the similarity is at least ``similarity_threshold``; a pose left over from a detection starts a new track with
   the next id. A track without a pose this frame is *missed*; it keeps being propagated by the flow (so a person
   hidden for a few frames can be picked up again, our stand-in for Simple Baselines' multi-frame queue) and is
   dropped after ``max_missed`` missed frames in a row.

A pose estimated in a propagated box whose mean keypoint score is below ``min_flow_pose_score`` is discarded
(a person who left the picture must not keep their track alive on flow alone). ``similarity="box_iou"`` and
``use_flow=False`` give the ablations of Simple Baselines' Table 4 (box-IoU similarity; no flow).

Without a detector (``detections=None``) the whole frame is the only box while nobody is tracked and the
propagated boxes are the only ones afterwards: single-person tracking.

Smoothing (optional): a :class:`OneEuroFilter` per track on the output keypoints (Casiez, Roussel & Vogel,
CHI 2012). Tracking itself uses the raw keypoints.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..skeletons import UNIFORM_SIGMA
from ..structures import Pose, clip_box
from ..evaluation.metrics import oks_iou

# OKS sigma used for keypoint sets without published ones: the mean of COCO's 17 (0.0669), as for custom sets.
DEFAULT_SIGMA = UNIFORM_SIGMA
BOX_EXTENSION = 0.15
# OpenCV's own example settings for Farneback (pyramid 0.5, 3 levels, 15 px window, 3 iterations, poly 5 / 1.2).
FARNEBACK_PARAMS = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)

Estimator = Callable[[np.ndarray, np.ndarray], List[Pose]]


# ------------------------------------------------------------------------------------------- optical flow
@dataclass
class Flow:
    """A dense flow field computed at ``scale`` times the image resolution (displacements in its own pixels)."""

    field: np.ndarray      # h x w x 2 float32: (dx, dy) from the previous frame to the next one
    scale: float = 1.0

    def at(self, points: np.ndarray) -> np.ndarray:
        """Displacements (N x 2, full-resolution pixels) at image points N x 2, bilinear, edges replicated."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if len(points) == 0:
            return np.zeros((0, 2))
        # Pixel centres are at integers at both resolutions: x_small = (x + 0.5) * scale - 0.5.
        small = np.nan_to_num((points + 0.5) * self.scale - 0.5)
        map_x = small[:, 0].astype(np.float32).reshape(1, -1)
        map_y = small[:, 1].astype(np.float32).reshape(1, -1)
        sampled = cv2.remap(self.field, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return sampled.reshape(-1, 2).astype(np.float64) / self.scale


def to_gray(image: np.ndarray) -> np.ndarray:
    """An RGB (or grey) uint8 image as one grey channel."""
    image = np.asarray(image)
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def compute_flow(previous: np.ndarray, current: np.ndarray, max_side: Optional[int] = 640) -> Flow:
    """Farneback dense flow from ``previous`` to ``current`` (RGB or grey, same size).

    Frames whose longer side exceeds ``max_side`` are shrunk for the flow (it costs O(pixels) and people move by
    many pixels in large frames anyway); :meth:`Flow.at` returns full-resolution displacements either way.
    """
    prev_gray, cur_gray = to_gray(previous), to_gray(current)
    if prev_gray.shape != cur_gray.shape:
        raise ValueError(f"frames differ in size: {prev_gray.shape} vs {cur_gray.shape}")
    height, width = prev_gray.shape
    scale = 1.0
    if max_side and max(height, width) > max_side:
        scale = max_side / float(max(height, width))
        size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
        prev_gray = cv2.resize(prev_gray, size, interpolation=cv2.INTER_AREA)
        cur_gray = cv2.resize(cur_gray, size, interpolation=cv2.INTER_AREA)
        # The field's actual scale per axis differs from `scale` by rounding only; use the width's.
        scale = size[0] / float(width)
    field_ = cv2.calcOpticalFlowFarneback(prev_gray, cur_gray, None, **FARNEBACK_PARAMS)
    return Flow(field_, scale)


def propagate_keypoints(keypoints: np.ndarray, flow: Flow) -> np.ndarray:
    """Keypoints K x 2 (or K x 3; extra columns kept) moved along the flow: (x, y) + flow(x, y)."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    moved = keypoints.copy()
    moved[:, :2] = keypoints[:, :2] + flow.at(keypoints[:, :2])
    return moved


# ------------------------------------------------------------------------------------------------- boxes
def keypoint_box(keypoints: np.ndarray, scores: Optional[np.ndarray] = None, score_threshold: float = 0.0,
                 extension: float = BOX_EXTENSION) -> Optional[np.ndarray]:
    """(x, y, w, h) of the keypoints' extent, w and h enlarged by ``extension`` about the centre.

    Only keypoints scoring at least ``score_threshold`` count (all of them when fewer than two do). None when the
    extent has no area (fewer than two distinct points), which the caller must handle.
    """
    points = np.asarray(keypoints, dtype=np.float64)[:, :2]
    keep = np.isfinite(points).all(axis=1)
    if scores is not None:
        confident = keep & (np.asarray(scores, dtype=np.float64) >= score_threshold)
        if confident.sum() >= 2:
            keep = confident
    if keep.sum() < 2:
        return None
    lo, hi = points[keep].min(axis=0), points[keep].max(axis=0)
    size = (hi - lo) * (1.0 + extension)
    if size[0] <= 0 or size[1] <= 0:
        return None
    center = (lo + hi) / 2.0
    return np.array([center[0] - size[0] / 2, center[1] - size[1] / 2, size[0], size[1]])


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of (x, y, w, h) boxes: N x 4 against M x 4 -> N x M (area w x h; empty boxes give 0)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ax1, ay1, ax2, ay2 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx1, by1, bx2, by2 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    inter = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None) * \
        np.clip(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None)
    union = np.clip(a[:, 2:3], 0, None) * np.clip(a[:, 3:4], 0, None) + np.clip(b[:, 2], 0, None) * np.clip(b[:, 3], 0, None) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def merge_boxes(detections: np.ndarray, propagated: np.ndarray, iou_threshold: float) -> Tuple[np.ndarray, np.ndarray]:
    """Detections (N x 5) plus the propagated boxes (M x 5) that survive box NMS against them.

    Returns (kept boxes, origin) where origin is -1 for a detection and the row of ``propagated`` otherwise.
    Propagated boxes are visited best score first; one is kept when its IoU with every kept box is at most
    ``iou_threshold``.
    """
    detections = np.asarray(detections, dtype=np.float64).reshape(-1, 5)
    propagated = np.asarray(propagated, dtype=np.float64).reshape(-1, 5)
    kept = [row for row in detections]
    origin = [-1] * len(detections)
    for index in np.argsort(-propagated[:, 4], kind="stable"):
        row = propagated[index]
        if kept and box_iou(row[None, :4], np.stack(kept)[:, :4]).max() > iou_threshold:
            continue
        kept.append(row)
        origin.append(int(index))
    boxes = np.stack(kept) if kept else np.zeros((0, 5))
    return boxes, np.asarray(origin, dtype=np.int64)


# ------------------------------------------------------------------------------------------- association
def greedy_match(similarity: np.ndarray, threshold: float) -> List[Tuple[int, int]]:
    """(row, column) pairs taken most similar first, each row and column at most once, similarity >= threshold.

    Ties are broken by row, then column (a stable order), so the result does not depend on numpy's sort.
    """
    similarity = np.asarray(similarity, dtype=np.float64)
    if similarity.size == 0:
        return []
    rows, cols = np.nonzero(similarity >= threshold)
    order = sorted(zip(-similarity[rows, cols], rows, cols))
    used_rows, used_cols, pairs = set(), set(), []
    for _, r, c in order:
        if r in used_rows or c in used_cols:
            continue
        used_rows.add(int(r))
        used_cols.add(int(c))
        pairs.append((int(r), int(c)))
    return pairs


def oks_matrix(track_keypoints: Sequence[np.ndarray], track_areas: Sequence[float], pose_keypoints: Sequence[np.ndarray],
               pose_areas: Sequence[float], sigmas: np.ndarray) -> np.ndarray:
    """OKS (HRNet's ``oks_iou``: all joints, mean of the two areas) of every track against every pose."""
    matrix = np.zeros((len(track_keypoints), len(pose_keypoints)))
    if len(track_keypoints) and len(pose_keypoints):
        people = np.stack([np.asarray(k, dtype=np.float64)[:, :2] for k in pose_keypoints])
        for i, (keypoints, area) in enumerate(zip(track_keypoints, track_areas)):
            matrix[i] = oks_iou(keypoints, people, area, np.asarray(pose_areas, dtype=np.float64), sigmas)
    return matrix


# ---------------------------------------------------------------------------------------------- smoothing
def smoothing_factor(cutoff: float, dt: float) -> float:
    """The exponential smoothing factor of a first-order low-pass filter: r / (r + 1) with r = 2 pi cutoff dt."""
    r = 2.0 * math.pi * cutoff * dt
    return r / (r + 1.0)


@dataclass
class OneEuroFilter:
    """The One-Euro filter (Casiez et al. 2012) on arrays: jitter is smoothed away at rest, lag stays small in motion.

    ``min_cutoff`` (Hz): the cutoff frequency at rest; lower smooths more (and lags more on slow motion).
    ``beta`` (s per unit of the signal, here 1 / pixel): how fast the cutoff rises with speed; higher follows fast
    motion with less lag. ``d_cutoff`` (Hz): the cutoff of the low-pass on the speed estimate. For keypoints in
    pixels at 25-60 fps, ``min_cutoff=1, beta=0.01`` is a starting point: raise ``min_cutoff`` if it lags at rest,
    lower it if it jitters; raise ``beta`` if it lags in fast motion.

    For each new sample x at time t (dt = t - t_prev): dx = (x - x_hat_prev) / dt,
    dx_hat = a(d_cutoff) dx + (1 - a(d_cutoff)) dx_hat_prev, cutoff = min_cutoff + beta |dx_hat|,
    x_hat = a(cutoff) x + (1 - a(cutoff)) x_hat_prev, with a(f) = :func:`smoothing_factor` (f, dt). The first sample
    passes through unchanged (dx_hat = 0).
    """

    min_cutoff: float = 1.0
    beta: float = 0.01
    d_cutoff: float = 1.0
    _x: Optional[np.ndarray] = field(default=None, repr=False)
    _dx: Optional[np.ndarray] = field(default=None, repr=False)
    _t: Optional[float] = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name in ("min_cutoff", "d_cutoff"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive frequency in Hz, got {value!r}")
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"beta must be >= 0, got {self.beta!r}")

    def reset(self) -> None:
        self._x = self._dx = self._t = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._t is None or self._x.shape != x.shape:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), float(t)
            return x.copy()
        dt = float(t) - self._t
        if not dt > 0:
            # Same timestamp (or time going backwards): nothing to filter over; keep the previous estimate.
            return self._x.copy()
        a_d = smoothing_factor(self.d_cutoff, dt)
        dx = (x - self._x) / dt
        dx_hat = a_d * dx + (1.0 - a_d) * self._dx
        cutoff = self.min_cutoff + self.beta * np.abs(dx_hat)
        r = 2.0 * math.pi * cutoff * dt
        a = r / (r + 1.0)
        # A sample that is not finite (a joint lost) passes through and does not poison the state.
        # x_prev + a (x - x_prev) is a x + (1 - a) x_prev, written so that a constant input stays exactly constant.
        x_hat = np.where(np.isfinite(x), self._x + a * (x - self._x), x)
        self._x = np.where(np.isfinite(x_hat), x_hat, self._x)
        self._dx = np.where(np.isfinite(dx_hat), dx_hat, self._dx)
        self._t = float(t)
        return x_hat


@dataclass
class OneEuroSettings:
    """Parameters of the per-track :class:`OneEuroFilter` (see there for their meaning)."""

    min_cutoff: float = 1.0
    beta: float = 0.01
    d_cutoff: float = 1.0

    def make(self) -> OneEuroFilter:
        return OneEuroFilter(self.min_cutoff, self.beta, self.d_cutoff)


# ------------------------------------------------------------------------------------------------ tracker
@dataclass
class Track:
    """A tracked person: last pose (raw, propagated by the flow while missed), box and bookkeeping."""

    track_id: int
    keypoints: np.ndarray          # K x 2, image pixels
    scores: np.ndarray             # K
    box: np.ndarray                # x, y, w, h
    score: float                   # pose score: box score x mean keypoint score above the threshold
    missed: int = 0
    age: int = 1


class PoseTracker:
    """Flow-based multi-person pose tracking (see the module docstring for the algorithm).

    Use :meth:`step` once per frame with the frame, its detections and a pose estimator; or, without images,
    :meth:`update` with poses you already have (then tracks are compared where they were last seen, or where
    :meth:`propagate` moved them with a flow you supply).

    Parameters: ``sigmas`` (OKS sigmas per keypoint; None: :data:`DEFAULT_SIGMA` for every joint),
    ``similarity`` ("oks" or "box_iou"), ``similarity_threshold`` (least similarity for a match), ``use_flow``
    (propagate with optical flow; False: tracks stay where last seen), ``box_iou_threshold`` (box NMS of propagated
    boxes), ``box_extension`` (enlargement of propagated keypoint boxes), ``max_missed`` (frames a track survives
    unmatched), ``min_flow_pose_score`` (least mean keypoint score of a pose found in a propagated box),
    ``keypoint_threshold`` (keypoints scoring below it neither shape a propagated box nor count in the pose score;
    HRNet's in_vis_thre), ``flow_max_side`` (frame size for the flow), ``smoothing`` (One-Euro settings or None).
    """

    def __init__(self, sigmas: Optional[Sequence[float]] = None, *, similarity: str = "oks",
                 similarity_threshold: Optional[float] = None, use_flow: bool = True, box_iou_threshold: float = 0.5,
                 box_extension: float = BOX_EXTENSION, max_missed: int = 5, min_flow_pose_score: float = 0.3,
                 keypoint_threshold: float = 0.2, flow_max_side: Optional[int] = 640,
                 smoothing: Optional[OneEuroSettings] = None):
        if similarity not in ("oks", "box_iou"):
            raise ValueError(f"similarity must be 'oks' or 'box_iou', got {similarity!r}")
        self.sigmas = None if sigmas is None else np.asarray(sigmas, dtype=np.float64).reshape(-1)
        self.similarity = similarity
        self.similarity_threshold = 0.3 if similarity_threshold is None else float(similarity_threshold)
        self.use_flow = bool(use_flow)
        self.box_iou_threshold = float(box_iou_threshold)
        self.box_extension = float(box_extension)
        self.max_missed = max(0, int(max_missed))
        self.min_flow_pose_score = float(min_flow_pose_score)
        self.keypoint_threshold = float(keypoint_threshold)
        self.flow_max_side = flow_max_side
        self.smoothing = smoothing
        self.reset()

    def reset(self) -> None:
        """Forget every track (ids start again at 0)."""
        self.tracks: List[Track] = []
        self.next_id = 0
        self.frame_index = -1
        self.skipped_boxes = 0          # detections of the last frame with no area inside the image
        self._previous: Optional[np.ndarray] = None
        self._propagated_boxes: Dict[int, np.ndarray] = {}
        self._filters: Dict[int, OneEuroFilter] = {}

    # --------------------------------------------------------------------------------------------- steps
    def propagate(self, image: Optional[np.ndarray] = None, flow: Optional[Flow] = None) -> None:
        """Move every track's keypoints from the previous frame into this one.

        With ``flow`` given it is used; otherwise, with ``use_flow`` and a previous frame, the flow from that frame
        to ``image`` is computed. Without either the keypoints stay where they are. Also sets each track's
        propagated box (its moved box where the keypoints give none) and remembers ``image`` for the next frame.
        """
        if flow is None and self.use_flow and image is not None and self._previous is not None and self.tracks:
            if self._previous.shape[:2] == image.shape[:2]:
                flow = compute_flow(self._previous, image, self.flow_max_side)
        if image is not None:
            self._previous = to_gray(image)
        self._propagated_boxes = {}
        for track in self.tracks:
            if flow is not None and self.use_flow:
                shift = flow.at(track.keypoints)
                track.keypoints = track.keypoints + shift
                moved_box = track.box.copy()
                moved_box[:2] += np.median(shift, axis=0)
            else:
                moved_box = track.box.copy()
            box = keypoint_box(track.keypoints, track.scores, self.keypoint_threshold, self.box_extension)
            # Keypoints that collapsed to a point (an unsure pose) give no box; the old box, moved along, does.
            self._propagated_boxes[track.track_id] = moved_box if box is None else box

    def candidates(self, detections: Optional[np.ndarray], image_wh: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
        """The boxes to estimate poses in: (N x 5 boxes clipped to the image, N track ids, -1 for detections).

        ``detections`` (N x 5: x, y, w, h, score) are merged with the propagated boxes by box NMS
        (:func:`merge_boxes`). None means no detector: the whole image while nobody is tracked. Boxes with no
        area inside the image are dropped (counted in ``skipped_boxes`` for detections).
        """
        width, height = image_wh
        if detections is None:
            detections = np.array([[0.0, 0.0, width, height, 1.0]]) if not self.tracks else np.zeros((0, 5))
        detections = np.asarray(detections, dtype=np.float64).reshape(-1, 5)
        clipped, self.skipped_boxes = [], 0
        for row in detections:
            box = clip_box(row[:4], (width, height))
            if box is None:
                self.skipped_boxes += 1
            else:
                clipped.append(np.append(box, row[4]))
        detections = np.stack(clipped) if clipped else np.zeros((0, 5))
        ids, rows = [], []
        for track in self.tracks:
            box = self._propagated_boxes.get(track.track_id)
            if box is None:
                continue
            box = clip_box(box, (width, height))
            if box is not None:
                ids.append(track.track_id)
                rows.append(np.append(box, track.score))
        boxes, origin = merge_boxes(detections, np.stack(rows) if rows else np.zeros((0, 5)), self.box_iou_threshold)
        track_of_box = np.array([-1 if o < 0 else ids[o] for o in origin], dtype=np.int64)
        return boxes, track_of_box

    def update(self, poses: Sequence[Pose], box_tracks: Optional[Sequence[int]] = None,
               timestamp: Optional[float] = None) -> List[Pose]:
        """Associate this frame's poses with the tracks; returns the kept poses with ``track_id`` set.

        ``box_tracks[i]`` is the track whose propagated box pose i was estimated in (-1 or None: a detection).
        Poses from propagated boxes below ``min_flow_pose_score`` are dropped, and so are those that match no
        track; the others match greedily by similarity or start new tracks. ``timestamp`` (seconds) drives the
        smoothing; default: the frame number / 30.
        """
        self.frame_index += 1
        t = self.frame_index / 30.0 if timestamp is None else float(timestamp)
        box_tracks = [-1] * len(poses) if box_tracks is None else [(-1 if b is None else int(b)) for b in box_tracks]
        if len(box_tracks) != len(poses):
            raise ValueError(f"{len(poses)} poses but {len(box_tracks)} entries in box_tracks")
        candidates = [(pose, origin) for pose, origin in zip(poses, box_tracks)
                      if origin < 0 or float(np.mean(pose.scores)) >= self.min_flow_pose_score]

        similarity = self._similarity([p for p, _ in candidates])
        pairs = greedy_match(similarity, self.similarity_threshold)
        matched_tracks = {r for r, _ in pairs}
        assigned: Dict[int, int] = {c: self.tracks[r].track_id for r, c in pairs}

        out: List[Pose] = []
        for column, (pose, origin) in enumerate(candidates):
            if column in assigned:
                track_id = assigned[column]
                track = next(t for t in self.tracks if t.track_id == track_id)
                track.keypoints, track.scores = pose.keypoints.astype(np.float64).copy(), pose.scores.copy()
                track.box, track.score = np.asarray(pose.box, dtype=np.float64).copy(), self._pose_score(pose)
                track.missed, track.age = 0, track.age + 1
            elif origin < 0:
                track_id = self.next_id
                self.next_id += 1
                self.tracks.append(Track(track_id, pose.keypoints.astype(np.float64).copy(), pose.scores.copy(),
                                         np.asarray(pose.box, dtype=np.float64).copy(), self._pose_score(pose)))
                matched_tracks.add(len(self.tracks) - 1)
            else:
                continue        # found in a propagated box but like nobody tracked: not a person we follow
            keypoints = pose.keypoints
            if self.smoothing is not None:
                filt = self._filters.get(track_id)
                if filt is None:
                    filt = self._filters[track_id] = self.smoothing.make()
                keypoints = filt(pose.keypoints, t)
            out.append(dataclasses.replace(pose, keypoints=keypoints, track_id=track_id))

        survivors = []
        for index, track in enumerate(self.tracks):
            if index not in matched_tracks:
                track.missed += 1
            if track.missed <= self.max_missed:
                survivors.append(track)
            else:
                self._filters.pop(track.track_id, None)
        self.tracks = survivors
        return out

    def step(self, image: np.ndarray, detections: Optional[np.ndarray], estimate: Estimator,
             timestamp: Optional[float] = None) -> List[Pose]:
        """One frame: propagate, merge boxes, ``estimate(image, boxes N x 5) -> poses`` (one per box), associate."""
        self.propagate(image)
        boxes, box_tracks = self.candidates(detections, (image.shape[1], image.shape[0]))
        poses = estimate(image, boxes) if len(boxes) else []
        if len(poses) != len(boxes):
            raise ValueError(f"the estimator returned {len(poses)} poses for {len(boxes)} boxes")
        return self.update(poses, box_tracks, timestamp)

    # ------------------------------------------------------------------------------------------ helpers
    def _pose_score(self, pose: Pose) -> float:
        scores = np.asarray(pose.scores, dtype=np.float64)
        confident = scores[scores > self.keypoint_threshold]
        return float(pose.box_score) * (float(confident.mean()) if confident.size else 0.0)

    def _similarity(self, poses: Sequence[Pose]) -> np.ndarray:
        if not self.tracks or not poses:
            return np.zeros((len(self.tracks), len(poses)))
        if self.similarity == "box_iou":
            track_boxes = np.stack([self._propagated_boxes.get(t.track_id, t.box) for t in self.tracks])
            return box_iou(track_boxes, np.stack([np.asarray(p.box, dtype=np.float64) for p in poses]))
        num_keypoints = self.tracks[0].keypoints.shape[0]
        sigmas = self.sigmas if self.sigmas is not None else np.full(num_keypoints, DEFAULT_SIGMA)
        track_areas = [float(np.prod(self._propagated_boxes.get(t.track_id, t.box)[2:4])) for t in self.tracks]
        pose_areas = [float(np.prod(np.asarray(p.box, dtype=np.float64)[2:4])) for p in poses]
        return oks_matrix([t.keypoints for t in self.tracks], track_areas, [p.keypoints for p in poses], pose_areas, sigmas)
