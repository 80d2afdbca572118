"""Pose tracking (HRNet §4.3 / Simple Baselines): flow propagation, box merging, OKS greedy matching, One-Euro.

The association is tested on hand-made keypoints (two figures of different pose crossing each other), the whole
tracker on a generated video with real optical flow and an oracle pose estimator (the drawn keypoints), so that
what is tested is the tracking, not an untrained network.
"""
from __future__ import annotations

import math
from typing import Dict, List, Tuple

import cv2
import numpy as np
import pytest

from posekit.structures import Pose
from posekit.apps.tracking import (DEFAULT_SIGMA, Flow, OneEuroFilter, OneEuroSettings, PoseTracker, box_iou, compute_flow, greedy_match, keypoint_box, merge_boxes, propagate_keypoints, smoothing_factor)

# Two figures of the 14-joint synthetic skeleton with the same extent (x +-30, y -50..60) but different poses:
# "T" has its arms out and legs together, "V" its arms down and legs apart. Same box, different keypoints:
# box overlap cannot tell them apart, OKS can.
T_POSE = np.array([[0, -50], [0, -35], [12, -30], [-12, -30], [22, -30], [-22, -30], [30, -30], [-30, -30],
                   [8, 10], [-8, 10], [8, 35], [-8, 35], [8, 60], [-8, 60]], dtype=np.float64)
V_POSE = np.array([[0, -50], [0, -35], [12, -30], [-12, -30], [14, -10], [-14, -10], [14, 8], [-14, 8],
                   [8, 10], [-8, 10], [18, 35], [-18, 35], [30, 60], [-30, 60]], dtype=np.float64)
LIMBS = [(0, 1), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7), (2, 8), (3, 9), (8, 9), (8, 10), (9, 11),
         (10, 12), (11, 13)]
SPEED = 8.0


def pose_at(shape: np.ndarray, x: float, y: float = 80.0, score: float = 0.9, box_score: float = 1.0) -> Pose:
    keypoints = shape + [x, y]
    return Pose(keypoints=keypoints, scores=np.full(len(shape), score), box=keypoint_box(keypoints),
                box_score=box_score)


def crossing_positions(frames: int = 12, start: float = 60.0) -> List[Tuple[float, float]]:
    """x of T (moving right) and V (moving left). They cross between two frames: T's position in one frame is
    exactly V's in the next (start gap 88 = 11 x 8), which is the hard case for matching by position."""
    return [(start + SPEED * t, start + 88.0 - SPEED * t) for t in range(frames)]


def ids_by_figure(frames_poses: List[List[Pose]], tracker_frames: List[List[Pose]]) -> Dict[str, List[int]]:
    """For each figure (T, V: identified by their arm joints) the track ids it got, frame by frame."""
    out: Dict[str, List[int]] = {"T": [], "V": []}
    for poses in tracker_frames:
        for pose in poses:
            wrist_offset = abs(pose.keypoints[6, 1] - pose.keypoints[0, 1])
            out["T" if wrist_offset < 30 else "V"].append(pose.track_id)
    return out


# ------------------------------------------------------------------------------------------- association
def test_greedy_matching_takes_the_most_similar_pair_first_not_the_best_total():
    similarity = np.array([[0.9, 0.8],
                           [0.85, 0.1]])
    # Greedy: (0, 0) first; (1, 1) is below the threshold. (An optimal assignment would take 0.8 + 0.85.)
    assert greedy_match(similarity, 0.3) == [(0, 0)]
    assert greedy_match(similarity, 0.05) == [(0, 0), (1, 1)]
    assert greedy_match(np.zeros((0, 3)), 0.3) == []
    # Ties are broken by row, then column.
    assert greedy_match(np.full((2, 2), 0.5), 0.3) == [(0, 0), (1, 1)]


def test_oks_matching_keeps_ids_through_a_crossing_where_box_iou_matching_swaps_them():
    positions = crossing_positions()
    frames = [[pose_at(T_POSE, xt), pose_at(V_POSE, xv)] for xt, xv in positions]

    def run(**kwargs) -> Dict[str, List[int]]:
        tracker = PoseTracker(None, use_flow=False, **kwargs)
        return ids_by_figure(frames, [tracker.update(poses) for poses in frames])

    by_oks = run(similarity="oks")
    assert by_oks == {"T": [0] * 12, "V": [1] * 12}
    by_iou = run(similarity="box_iou")
    # Right after the crossing each previous box coincides exactly with the other figure's new box.
    assert by_iou["T"][:6] == [0] * 6 and by_iou["T"][6:] == [1] * 6
    assert by_iou["V"][:6] == [1] * 6 and by_iou["V"][6:] == [0] * 6


def test_oks_similarities_by_hand():
    """The numbers behind the crossing test: OKS of a figure with itself 8 px on vs with the other figure in place."""
    from posekit.evaluation.metrics import oks_iou

    a, b = pose_at(T_POSE, 100.0), pose_at(V_POSE, 100.0)
    moved = pose_at(T_POSE, 108.0)
    area = float(np.prod(a.box[2:]))
    sigmas = np.full(14, DEFAULT_SIGMA)
    variance = (2 * DEFAULT_SIGMA) ** 2
    expected_moved = math.exp(-64.0 / variance / area / 2)          # every joint 8 px away
    assert oks_iou(a.keypoints, moved.keypoints[None], area, area, sigmas)[0] == pytest.approx(expected_moved)
    d2 = np.sum((T_POSE - V_POSE) ** 2, axis=1)
    expected_other = float(np.mean(np.exp(-d2 / variance / area / 2)))
    assert oks_iou(a.keypoints, b.keypoints[None], area, area, sigmas)[0] == pytest.approx(expected_other)
    assert expected_moved > expected_other + 0.1
    np.testing.assert_allclose(box_iou(a.box, b.box), [[1.0]])


def test_new_people_get_new_ids_and_tracks_die_after_max_missed_frames():
    tracker = PoseTracker(None, use_flow=False, max_missed=2)
    first = tracker.update([pose_at(T_POSE, 60.0)])
    assert [p.track_id for p in first] == [0]
    # A second person enters; the first one is still there.
    both = tracker.update([pose_at(T_POSE, 62.0), pose_at(V_POSE, 200.0)])
    assert [p.track_id for p in both] == [0, 1]
    # Person 0 leaves. Two missed frames: still a live track; it comes back and keeps its id.
    tracker.update([pose_at(V_POSE, 201.0)])
    tracker.update([pose_at(V_POSE, 202.0)])
    assert sorted(t.track_id for t in tracker.tracks) == [0, 1]
    back = tracker.update([pose_at(T_POSE, 63.0), pose_at(V_POSE, 203.0)])
    assert [p.track_id for p in back] == [0, 1]
    # Now three missed frames: track 0 is dropped, and whoever appears there later is a new person (id 2).
    for x in (204.0, 205.0, 206.0):
        tracker.update([pose_at(V_POSE, x)])
    assert [t.track_id for t in tracker.tracks] == [1]
    again = tracker.update([pose_at(T_POSE, 63.0), pose_at(V_POSE, 207.0)])
    assert sorted(p.track_id for p in again) == [1, 2]


def test_a_weak_pose_in_a_propagated_box_is_dropped_and_the_track_counts_it_as_missed():
    tracker = PoseTracker(None, use_flow=False, min_flow_pose_score=0.3)
    tracker.update([pose_at(T_POSE, 60.0)])
    weak = pose_at(T_POSE, 61.0, score=0.1)
    assert tracker.update([weak], box_tracks=[0]) == []
    assert tracker.tracks[0].missed == 1
    strong = pose_at(T_POSE, 62.0, score=0.8)
    assert [p.track_id for p in tracker.update([strong], box_tracks=[0])] == [0]
    assert tracker.tracks[0].missed == 0
    # A pose from a propagated box that resembles nobody tracked does not start a track.
    assert tracker.update([pose_at(V_POSE, 400.0, score=0.9)], box_tracks=[0]) == []
    assert len(tracker.tracks) == 1


# ------------------------------------------------------------------------------------------------- boxes
def test_keypoint_box_is_the_extent_enlarged_by_15_percent_about_its_centre():
    keypoints = np.array([[10.0, 20.0], [30.0, 60.0], [500.0, 500.0]])
    scores = np.array([0.9, 0.8, 0.05])
    # Only the confident joints count: extent 20 x 40 about (20, 40) -> 23 x 46.
    np.testing.assert_allclose(keypoint_box(keypoints, scores, 0.2), [8.5, 17.0, 23.0, 46.0])
    np.testing.assert_allclose(keypoint_box(keypoints, scores, 0.2, extension=0.0), [10.0, 20.0, 20.0, 40.0])
    assert keypoint_box(np.array([[5.0, 5.0], [5.0, 5.0]])) is None                 # no area


def test_box_iou_and_merging_by_hand():
    np.testing.assert_allclose(box_iou([0, 0, 10, 10], [[5, 0, 10, 10], [20, 20, 5, 5], [0, 0, 10, 10]]),
                               [[50 / 150, 0.0, 1.0]])
    detections = np.array([[0, 0, 10, 10, 0.9], [100, 100, 10, 10, 0.8]])
    propagated = np.array([[1, 0, 10, 10, 0.95],      # the first detection's person: IoU 9/11 > 0.5, suppressed
                           [50, 50, 10, 10, 0.5],     # someone the detector missed: kept
                           [51, 50, 10, 10, 0.4]])    # a duplicate of the previous one, worse score: suppressed
    boxes, origin = merge_boxes(detections, propagated, 0.5)
    np.testing.assert_array_equal(origin, [-1, -1, 1])
    np.testing.assert_allclose(boxes, [detections[0], detections[1], propagated[1]])
    # Detections never suppress each other (the detector did its NMS): people who cross keep both boxes.
    boxes, origin = merge_boxes(np.array([[0, 0, 10, 10, 0.9], [1, 0, 10, 10, 0.8]]), np.zeros((0, 5)), 0.5)
    assert len(boxes) == 2


def test_a_propagated_box_is_a_candidate_unless_a_detection_covers_it():
    tracker = PoseTracker(None)
    tracker.update([pose_at(T_POSE, 60.0)])
    flow = Flow(np.tile(np.array([5.0, -2.0], np.float32), (200, 300, 1)))
    tracker.propagate(flow=flow)
    np.testing.assert_allclose(tracker.tracks[0].keypoints, T_POSE + [65.0, 78.0], atol=1e-5)
    boxes, tracks = tracker.candidates(np.zeros((0, 5)), (300, 200))
    np.testing.assert_allclose(boxes[0, :4], keypoint_box(T_POSE + [65.0, 78.0]), atol=1e-4)
    assert list(tracks) == [0] and boxes[0, 4] == pytest.approx(0.9)      # score: box 1 x mean keypoint 0.9
    covering = np.array([[*keypoint_box(T_POSE + [66.0, 78.0]), 0.7]])
    boxes, tracks = tracker.candidates(covering, (300, 200))
    assert list(tracks) == [-1] and len(boxes) == 1
    # Without a detector the whole frame is only used while nobody is tracked.
    boxes, tracks = tracker.candidates(None, (300, 200))
    assert list(tracks) == [0]
    boxes, tracks = PoseTracker(None).candidates(None, (300, 200))
    np.testing.assert_allclose(boxes, [[0, 0, 300, 200, 1.0]])
    # Detections with no area inside the frame are dropped and counted.
    tracker.candidates(np.array([[400, 10, 20, 20, 0.9], [10, 10, 0, 5, 0.9]]), (300, 200))
    assert tracker.skipped_boxes == 2


# ------------------------------------------------------------------------------------------ optical flow
def textured_image(rng: np.random.Generator, hw=(160, 200)) -> np.ndarray:
    noise = rng.uniform(0, 255, hw).astype(np.float32)
    return np.clip(cv2.GaussianBlur(noise, (0, 0), 2.0) * 3 - 255, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("max_side", [None, 120])
def test_flow_propagation_moves_keypoints_by_a_known_translation(max_side):
    image = textured_image(np.random.default_rng(0))
    dx, dy = 3, -2
    shifted = np.roll(image, (dy, dx), axis=(0, 1))               # content moves right 3 and up 2
    flow = compute_flow(image, shifted, max_side=max_side)
    keypoints = np.random.default_rng(1).uniform([40, 40], [160, 120], (14, 2))
    moved = propagate_keypoints(keypoints, flow)
    np.testing.assert_allclose(moved - keypoints, np.tile([dx, dy], (14, 1)), atol=1.0)
    if max_side is not None:
        assert flow.field.shape[:2] == (96, 120) and flow.scale == pytest.approx(0.6)
    # An RGB pair gives the same flow as the grey one.
    rgb = compute_flow(np.repeat(image[..., None], 3, 2), np.repeat(shifted[..., None], 3, 2), max_side=max_side)
    np.testing.assert_allclose(rgb.field, flow.field, atol=1e-3)


# -------------------------------------------------------------------------------------- One-Euro filter
def test_one_euro_constant_input_stays_constant():
    filt = OneEuroFilter(min_cutoff=1.0, beta=0.5, d_cutoff=1.0)
    value = np.array([[12.5, -3.0], [7.0, 100.0]])
    for t in range(20):
        np.testing.assert_array_equal(filt(value, t / 30.0), value)


def test_one_euro_step_response_follows_the_formula():
    fps, min_cutoff, beta, d_cutoff = 10.0, 1.0, 0.5, 1.0
    dt = 1.0 / fps
    filt = OneEuroFilter(min_cutoff, beta, d_cutoff)
    assert filt(np.array([0.0]), 0.0)[0] == 0.0                   # the first sample passes through
    assert filt(np.array([0.0]), dt)[0] == 0.0
    first = filt(np.array([1.0]), 2 * dt)[0]
    # By hand: speed 1 / dt = 10, smoothed with alpha_d = r / (r + 1), r = 2 pi * 1 * 0.1 = 0.6283 -> 0.38586;
    # cutoff = 1 + 0.5 * 3.8586 = 2.9293 Hz; r = 2 pi * 2.9293 * 0.1 = 1.8405; alpha = 0.64795; x = alpha * 1.
    r_d = 2 * math.pi * d_cutoff * dt
    alpha_d = r_d / (r_d + 1)
    cutoff = min_cutoff + beta * alpha_d * fps
    r = 2 * math.pi * cutoff * dt
    assert first == pytest.approx(r / (r + 1))
    assert first == pytest.approx(0.64795, abs=1e-5)
    # With beta = 0 it is a plain exponential low-pass: 1 - (1 - alpha)^n after n samples of the step.
    plain = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    plain(np.array([0.0]), 0.0)
    alpha = smoothing_factor(1.0, dt)
    outputs = [plain(np.array([1.0]), (n + 1) * dt)[0] for n in range(3)]
    np.testing.assert_allclose(outputs, [1 - (1 - alpha) ** n for n in (1, 2, 3)])
    with pytest.raises(ValueError, match="min_cutoff"):
        OneEuroFilter(min_cutoff=0.0)


def test_smoothing_is_per_track_and_leaves_the_tracking_raw():
    tracker = PoseTracker(None, use_flow=False, smoothing=OneEuroSettings(min_cutoff=1.0, beta=0.0))
    tracker.update([pose_at(T_POSE, 60.0), pose_at(V_POSE, 200.0)], timestamp=0.0)
    out = tracker.update([pose_at(T_POSE, 64.0), pose_at(V_POSE, 200.0)], timestamp=0.1)
    alpha = smoothing_factor(1.0, 0.1)
    np.testing.assert_allclose(out[0].keypoints, T_POSE + [60.0 + 4.0 * alpha, 80.0])
    np.testing.assert_allclose(out[1].keypoints, V_POSE + [200.0, 80.0])          # at rest: unchanged
    np.testing.assert_allclose(tracker.tracks[0].keypoints, T_POSE + [64.0, 80.0])  # the track keeps the raw pose


# ------------------------------------------------------------------------------- a generated video, end to end
def render_frame(background: np.ndarray, figures: List[Tuple[np.ndarray, Tuple[int, int, int]]]) -> np.ndarray:
    frame = background.copy()
    for keypoints, color in figures:
        points = [tuple(int(round(v * 16)) for v in p) for p in keypoints]
        for a, b in LIMBS:
            cv2.line(frame, points[a], points[b], color, 9, cv2.LINE_AA, 4)
        cv2.circle(frame, points[0], 10 * 16, color, -1, cv2.LINE_AA, 4)
        for p in points:
            cv2.circle(frame, p, 3 * 16, (255, 255, 255), -1, cv2.LINE_AA, 4)
    return frame


def crossing_video(frames: int = 12):
    """RGB frames of T (red) walking right and V (blue) walking left over a textured background, with the
    figures' keypoints per frame."""
    background = np.repeat(textured_image(np.random.default_rng(5), (170, 240))[..., None], 3, axis=2) // 2
    video, truth = [], []
    for xt, xv in crossing_positions(frames):
        t_kps, v_kps = T_POSE + [xt, 85.0], V_POSE + [xv, 85.0]
        video.append(render_frame(background, [(v_kps, (40, 80, 230)), (t_kps, (230, 60, 40))]))
        truth.append({"T": t_kps, "V": v_kps})
    return video, truth


def oracle(truth_of_frame: Dict[str, np.ndarray], rng: np.random.Generator):
    """A pose estimator that knows the drawn keypoints: for each box, the figure it covers best (+ 0.5 px noise)."""
    def estimate(image: np.ndarray, boxes: np.ndarray) -> List[Pose]:
        poses = []
        for row in boxes:
            overlaps = {name: box_iou(row[:4], keypoint_box(kps))[0, 0] for name, kps in truth_of_frame.items()}
            name = max(overlaps, key=overlaps.get)
            if overlaps[name] < 0.2:
                keypoints, score = np.tile(row[:2] + row[2:4] / 2, (14, 1)), 0.05    # background: a weak pose
            else:
                keypoints, score = truth_of_frame[name] + rng.normal(0, 0.5, (14, 2)), 0.9
            poses.append(Pose(keypoints=keypoints, scores=np.full(14, score), box=row[:4].copy(),
                              box_score=float(row[4])))
        return poses
    return estimate


def test_the_tracker_keeps_ids_through_a_crossing_in_a_video_and_flow_recovers_missed_detections():
    video, truth = crossing_video()
    rng = np.random.default_rng(0)
    missed_t = {2, 9}         # the detector misses T in these frames; its flow-propagated box must find it

    def detections(t: int) -> np.ndarray:
        rows = [[*keypoint_box(truth[t][name], extension=0.1), 0.95] for name in ("T", "V")
                if not (name == "T" and t in missed_t)]
        return np.array(rows)

    def run(tracker: PoseTracker) -> Tuple[Dict[str, List[int]], np.ndarray]:
        ids: Dict[str, List[int]] = {"T": [], "V": []}
        box_error = np.zeros(2)
        for t, frame in enumerate(video):
            poses = tracker.step(frame, detections(t), oracle(truth[t], rng), timestamp=t / 25)
            for pose in poses:
                name = min(truth[t], key=lambda n: np.abs(pose.keypoints - truth[t][n]).max())
                ids[name].append(pose.track_id)
                if t == 2 and name == "T":
                    # Where the box T was found in (its propagated box) sits, against T's true keypoint box.
                    true_box = keypoint_box(truth[t]["T"])
                    box_error = (pose.box[:2] + pose.box[2:4] / 2) - (true_box[:2] + true_box[2:] / 2)
        return ids, box_error

    tracked, box_error = run(PoseTracker(None))
    assert tracked["T"] == [tracked["T"][0]] * 12, tracked           # present in every frame, one id
    assert tracked["V"] == [tracked["V"][0]] * 12, tracked
    assert tracked["T"][0] != tracked["V"][0]
    # The flow carried T's box along by its 8 px of motion; without flow the box stays where T was.
    assert np.abs(box_error).max() < 1.0, box_error
    _, static_error = run(PoseTracker(None, use_flow=False))
    assert abs(static_error[0] + SPEED) < 1.0, static_error
    # Box-overlap matching without flow swaps the two people at the crossing.
    naive, _ = run(PoseTracker(None, similarity="box_iou", use_flow=False))
    assert len(set(naive["T"])) > 1 and len(set(naive["V"])) > 1, naive
