"""Crop geometry (posekit.data.transforms) against hand-computed values and spec sections 1.1, 1.3, 1.8."""
from __future__ import annotations

import math

import numpy as np
import pytest

from posekit.data.transforms import (
    PIXEL_STD,
    affine_points,
    box_to_center_scale,
    crop_to_image,
    fit_aspect,
    flip_keypoints,
    get_affine_transform,
    half_body_center_scale,
    sanitize_box,
    warp_image,
)
from posekit.skeletons import COCO, MPII

# The spec 1.8 fixture: a 240 px wide window (200 * 1.2) centred on (300, 200) onto a 192 x 256 crop,
# i.e. 0.8 crop px per image px.
CENTER = np.array([300.0, 200.0])
SCALE = np.array([1.2, 1.6])
OUT_WH = (192, 256)


def _homogeneous(matrix: np.ndarray) -> np.ndarray:
    return np.vstack([matrix, [0.0, 0.0, 1.0]])


# ----------------------------------------------------------------------------------------------------
# get_affine_transform


def test_affine_centre_maps_to_crop_centre():
    t = get_affine_transform(CENTER, SCALE, 0.0, OUT_WH)
    assert t.shape == (2, 3)
    np.testing.assert_allclose(affine_points(CENTER, t), [96.0, 128.0], atol=1e-4)


def test_affine_half_width_maps_to_crop_edge():
    t = get_affine_transform(CENTER, SCALE, 0.0, OUT_WH)
    np.testing.assert_allclose(affine_points(CENTER + [120.0, 0.0], t), [192.0, 128.0], atol=1e-4)
    np.testing.assert_allclose(affine_points(CENTER - [120.0, 0.0], t), [0.0, 128.0], atol=1e-4)
    # Only the width of the scale counts: the height axis uses the same 0.8 factor (256 / 320 == 0.8 too).
    np.testing.assert_allclose(affine_points(CENTER + [0.0, 160.0], t), [96.0, 256.0], atol=1e-4)


def test_affine_matrix_without_rotation_is_scale_and_translation():
    t = get_affine_transform(CENTER, SCALE, 0.0, OUT_WH)
    np.testing.assert_allclose(t, [[0.8, 0.0, 96.0 - 0.8 * 300.0], [0.0, 0.8, 128.0 - 0.8 * 200.0]], atol=1e-4)


def test_affine_rotation_moves_point_above_centre_to_the_left():
    t = get_affine_transform(CENTER, SCALE, 30.0, OUT_WH)
    expected = [96.0 - 0.8 * 50 * math.sin(math.radians(30)), 128.0 - 0.8 * 50 * math.cos(math.radians(30))]
    np.testing.assert_allclose(expected, [76.0, 93.359], atol=1e-3)
    np.testing.assert_allclose(affine_points(CENTER + [0.0, -50.0], t), [76.0, 93.359], atol=1e-3)
    # The rotation is about the centre, which stays fixed.
    np.testing.assert_allclose(affine_points(CENTER, t), [96.0, 128.0], atol=1e-4)


def test_affine_rotation_is_a_similarity():
    t = get_affine_transform(CENTER, SCALE, 30.0, OUT_WH)
    a = t[:, :2]
    np.testing.assert_allclose(a @ a.T, 0.64 * np.eye(2), atol=1e-5)
    assert np.linalg.det(a) > 0  # no mirroring


def test_affine_shift_moves_the_window():
    # shift is in units of the window size: 0.1 * 240 px = 24 px right, -0.05 * 320 px = 16 px up.
    t = get_affine_transform(CENTER, SCALE, 0.0, OUT_WH, shift=(0.1, -0.05))
    np.testing.assert_allclose(affine_points(CENTER + [24.0, -16.0], t), [96.0, 128.0], atol=1e-4)


def test_heatmap_point_back_projects_to_image():
    # 48 x 64 heatmap of the same window: 5 image px per heatmap px, x = 300 + (10.25 - 24) * 5.
    inv = get_affine_transform(CENTER, SCALE, 0.0, (48, 64), inverse=True)
    np.testing.assert_allclose(affine_points([10.25, 20.0], inv), [231.25, 140.0], atol=1e-3)
    np.testing.assert_allclose(crop_to_image(np.array([10.25, 20.0]), CENTER, SCALE, (64, 48)), [231.25, 140.0], atol=1e-3)


@pytest.mark.parametrize("rotation, shift", [(0.0, (0.0, 0.0)), (30.0, (0.0, 0.0)), (-72.5, (0.13, -0.2)), (180.0, (0.0, 0.3))])
def test_affine_inverse_round_trips(rotation, shift):
    forward = get_affine_transform(CENTER, SCALE, rotation, OUT_WH, shift=shift)
    backward = get_affine_transform(CENTER, SCALE, rotation, OUT_WH, shift=shift, inverse=True)
    np.testing.assert_allclose(_homogeneous(forward) @ _homogeneous(backward), np.eye(3), atol=1e-4)
    np.testing.assert_allclose(_homogeneous(backward) @ _homogeneous(forward), np.eye(3), atol=1e-4)
    pts = np.random.default_rng(0).uniform(0, 600, size=(20, 2))
    np.testing.assert_allclose(affine_points(affine_points(pts, forward), backward), pts, atol=2e-3)


def test_affine_points_keeps_leading_shape():
    t = get_affine_transform(CENTER, SCALE, 10.0, OUT_WH)
    pts = np.random.default_rng(1).uniform(0, 400, size=(3, 5, 2))
    out = affine_points(pts, t)
    assert out.shape == (3, 5, 2)
    np.testing.assert_allclose(out[1, 2], affine_points(pts[1, 2], t))


# ----------------------------------------------------------------------------------------------------
# crop_to_image, warp_image


def test_crop_to_image_inverts_the_crop():
    input_hw = (256, 192)
    forward = get_affine_transform(CENTER, SCALE, 0.0, (input_hw[1], input_hw[0]))
    pts = np.random.default_rng(2).uniform(100, 500, size=(4, 17, 2))
    np.testing.assert_allclose(crop_to_image(affine_points(pts, forward), CENTER, SCALE, input_hw), pts, atol=2e-3)


def _blob(hw, x0, y0, sigma=2.0):
    ys, xs = np.mgrid[0 : hw[0], 0 : hw[1]].astype(np.float64)
    return np.exp(-((xs - x0) ** 2 + (ys - y0) ** 2) / (2 * sigma**2)).astype(np.float32)


@pytest.mark.parametrize("rotation", [0.0, 30.0, -45.0])
def test_warp_image_moves_pixels_where_affine_points_says(rotation):
    image_hw = (400, 600)
    input_hw = (256, 192)
    t = get_affine_transform(CENTER, SCALE, rotation, (input_hw[1], input_hw[0]))
    for src in [(300, 200), (250, 140), (371, 262)]:
        expected = affine_points(np.array(src, dtype=np.float64), t)

        single = np.zeros(image_hw, dtype=np.float32)
        single[src[1], src[0]] = 1.0
        out = warp_image(single, t, input_hw)
        assert out.shape == input_hw
        peak_y, peak_x = np.unravel_index(out.argmax(), out.shape)
        assert abs(peak_x - expected[0]) <= 1.0 and abs(peak_y - expected[1]) <= 1.0

        # The centroid of a smooth blob is much tighter than the argmax of a single pixel.
        out = warp_image(_blob(image_hw, *src), t, input_hw).astype(np.float64)
        ys, xs = np.mgrid[0 : input_hw[0], 0 : input_hw[1]]
        centroid = np.array([(out * xs).sum(), (out * ys).sum()]) / out.sum()
        np.testing.assert_allclose(centroid, expected, atol=0.1)


def test_warp_image_colour_and_zero_border():
    image = np.full((50, 60, 3), 200, dtype=np.uint8)
    # A window much larger than the image: the outside is filled with 0.
    t = get_affine_transform([30.0, 25.0], [2.0, 2.0], 0.0, (64, 64))
    out = warp_image(image, t, (64, 64))
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert out[32, 32].tolist() == [200, 200, 200]
    assert out[0, 0].tolist() == [0, 0, 0]


# ----------------------------------------------------------------------------------------------------
# boxes


def test_box_to_center_scale_wide_box_grows_height():
    center, scale = box_to_center_scale([10, 20, 100, 50], aspect_ratio=0.75)
    np.testing.assert_allclose(center, [60.0, 45.0])  # x + w/2, no -1 correction
    # w = 100 > 0.75 * 50 -> h = 100 / 0.75; then * 1.25
    np.testing.assert_allclose(scale, [100 / 200 * 1.25, 100 / 0.75 / 200 * 1.25])


def test_box_to_center_scale_tall_box_grows_width():
    center, scale = box_to_center_scale([0, 0, 30, 200], aspect_ratio=0.75)
    np.testing.assert_allclose(center, [15.0, 100.0])
    np.testing.assert_allclose(scale, [0.9375, 1.25])  # w = 150 -> 0.75 * 1.25, h = 200 -> 1.0 * 1.25


def test_box_to_center_scale_exact_aspect_and_custom_padding():
    center, scale = box_to_center_scale([4, 6, 150, 200], aspect_ratio=0.75, padding=1.0)
    np.testing.assert_allclose(center, [79.0, 106.0])
    np.testing.assert_allclose(scale, [0.75, 1.0])
    _, scale = box_to_center_scale([0, 0, 256, 256], aspect_ratio=1.0)
    np.testing.assert_allclose(scale, [1.6, 1.6])


def test_box_to_center_scale_official_minus_one_quirk():
    # The official code skips the padding when cx == -1 (its "no centre" marker).
    center, scale = box_to_center_scale([-11, 0, 20, 40], aspect_ratio=0.5)
    assert center[0] == -1
    np.testing.assert_allclose(scale, [0.1, 0.2])


def test_fit_aspect_both_directions():
    assert fit_aspect(100, 50, 0.75) == pytest.approx((100, 100 / 0.75))
    assert fit_aspect(30, 200, 0.75) == pytest.approx((150, 200))
    assert fit_aspect(75, 100, 0.75) == (75, 100)
    w, h = fit_aspect(10, 3, 1.0)
    assert (w, h) == (10, 10)


def test_sanitize_box_clips_to_image():
    # x1 = 0, y1 = 10, x2 = min(39, 0 + 49) = 39, y2 = min(99, 10 + 29) = 39
    np.testing.assert_allclose(sanitize_box([-5, 10, 50, 30], (40, 100)), [0, 10, 39, 29])
    # Inside the image the box loses one pixel each way: (x, y, w - 1, h - 1).
    np.testing.assert_allclose(sanitize_box([5.5, 7.0, 20.0, 10.0], (640, 480)), [5.5, 7.0, 19.0, 9.0])
    # Bottom-right clipping to W - 1, H - 1.
    np.testing.assert_allclose(sanitize_box([600, 450, 100, 100], (640, 480)), [600, 450, 39, 29])


@pytest.mark.parametrize(
    "box",
    [
        [10, 10, 1, 20],     # w - 1 == 0: zero width
        [10, 10, 20, 1],     # zero height
        [10, 10, 0.5, 20],   # max(0, w - 1) == 0
        [10, 10, -5, 20],    # negative width
        [700, 10, 20, 20],   # starts right of the image: x2 = 639 < x1
        [10, 500, 20, 20],   # starts below the image
        [639, 10, 20, 20],   # on the last column: x2 == x1, zero area
    ],
)
def test_sanitize_box_rejects_empty(box):
    assert sanitize_box(box, (640, 480)) is None


# ----------------------------------------------------------------------------------------------------
# flip


def test_flip_keypoints_mirrors_and_swaps_coco_pairs():
    k = COCO.num_keypoints
    kps = np.stack([10.0 + np.arange(k), 100.0 + np.arange(k), np.array([2, 1, 0] * 5 + [2, 1])], axis=1)
    out = flip_keypoints(kps, 640, COCO.flip_permutation())
    assert out.shape == (k, 3)
    # nose (unpaired) only mirrors
    np.testing.assert_allclose(out[0], [639 - 10, 100, 2])
    # l_eye <- mirrored r_eye (index 2), with its visibility
    np.testing.assert_allclose(out[1], [639 - 12, 102, 0])
    np.testing.assert_allclose(out[2], [639 - 11, 101, 1])
    # l_ankle (15) <- r_ankle (16)
    np.testing.assert_allclose(out[15], [639 - 26, 116, 1])
    np.testing.assert_allclose(out[16], [639 - 25, 115, 2])
    # the input is untouched and flipping twice is the identity
    assert kps[0, 0] == 10
    np.testing.assert_allclose(flip_keypoints(out, 640, COCO.flip_permutation()), kps)


def test_flip_keypoints_mpii_pairs():
    kps = np.zeros((16, 3))
    kps[:, 0] = np.arange(16) * 3.0
    kps[:, 2] = 1
    out = flip_keypoints(kps, 100, MPII.flip_permutation())
    # r_ankle (0) <- l_ankle (5); pelvis (6) stays; r_wrist (10) <- l_wrist (15)
    assert out[0, 0] == 99 - 15 and out[5, 0] == 99 - 0
    assert out[6, 0] == 99 - 18
    assert out[10, 0] == 99 - 45 and out[15, 0] == 99 - 30


def test_flip_keypoints_matches_mirrored_image_pixels():
    image = np.zeros((30, 50), dtype=np.float32)
    image[7, 12] = 1.0
    mirrored = image[:, ::-1]
    y, x = np.unravel_index(mirrored.argmax(), mirrored.shape)
    flipped = flip_keypoints(np.array([[12.0, 7.0, 2.0]]), 50, np.array([0]))
    assert (flipped[0, 0], flipped[0, 1]) == (x, y)


# ----------------------------------------------------------------------------------------------------
# half body


def _coco_keypoints(upper_pts, lower_pts):
    kps = np.zeros((17, 3))
    for i, (x, y) in upper_pts.items():
        kps[i] = [x, y, 2]
    for i, (x, y) in lower_pts.items():
        kps[i] = [x, y, 1]
    return kps


def _seed_with_normal(below: bool) -> int:
    """A seed whose first standard normal draw is < 0.5 (below) or >= 0.5."""
    for seed in range(1000):
        if (np.random.default_rng(seed).standard_normal() < 0.5) == below:
            return seed
    raise AssertionError("no seed found")


UPPER = {5: (10.0, 10.0), 6: (30.0, 10.0), 9: (20.0, 40.0)}
LOWER = {11: (0.0, 100.0), 12: (40.0, 100.0), 15: (0.0, 200.0), 16: (40.0, 200.0)}


def test_half_body_upper_when_normal_below_half():
    kps = _coco_keypoints(UPPER, LOWER)
    center, scale = half_body_center_scale(kps, COCO.upper_body, COCO.lower_body, 0.75, np.random.default_rng(_seed_with_normal(True)))
    # mean of the three upper joints; extents 20 x 30 -> width grown to 22.5; * 1.5
    np.testing.assert_allclose(center, [20.0, 20.0])
    np.testing.assert_allclose(scale, [22.5 / 200 * 1.5, 30 / 200 * 1.5])


def test_half_body_lower_when_normal_above_half():
    kps = _coco_keypoints(UPPER, LOWER)
    center, scale = half_body_center_scale(kps, COCO.upper_body, COCO.lower_body, 0.75, np.random.default_rng(_seed_with_normal(False)))
    # mean of the four lower joints (mean, not box centre); extents 40 x 100 -> width 75
    np.testing.assert_allclose(center, [20.0, 150.0])
    np.testing.assert_allclose(scale, [75 / 200 * 1.5, 100 / 200 * 1.5])


def test_half_body_mean_centre_differs_from_box_centre():
    upper = {0: (0.0, 0.0), 1: (0.0, 10.0), 2: (0.0, 20.0), 3: (90.0, 20.0)}
    kps = _coco_keypoints(upper, {})
    center, scale = half_body_center_scale(kps, COCO.upper_body, COCO.lower_body, 1.0, np.random.default_rng(0))
    np.testing.assert_allclose(center, [22.5, 12.5])  # box centre would be (45, 10)
    np.testing.assert_allclose(scale, [90 / 200 * 1.5, 90 / 200 * 1.5])


def test_half_body_falls_back_to_upper_when_lower_too_small():
    # Normal draw >= 0.5 but only 2 lower joints -> upper again (2 upper joints are enough, >= 2).
    kps = _coco_keypoints({5: (10.0, 10.0), 6: (30.0, 50.0)}, {11: (0.0, 100.0), 12: (40.0, 100.0)})
    center, _ = half_body_center_scale(kps, COCO.upper_body, COCO.lower_body, 0.75, np.random.default_rng(_seed_with_normal(False)))
    np.testing.assert_allclose(center, [20.0, 30.0])


def test_half_body_needs_two_joints():
    kps = _coco_keypoints({5: (10.0, 10.0)}, {})
    for seed in range(5):
        assert half_body_center_scale(kps, COCO.upper_body, COCO.lower_body, 0.75, np.random.default_rng(seed)) is None
    assert half_body_center_scale(np.zeros((17, 3)), COCO.upper_body, COCO.lower_body, 0.75, np.random.default_rng(0)) is None


def test_half_body_ignores_unlabelled_joints_and_is_deterministic():
    kps = _coco_keypoints(UPPER, LOWER)
    kps[7] = [1000.0, 1000.0, 0]  # unlabelled upper joint far away must not count
    results = [half_body_center_scale(kps, COCO.upper_body, COCO.lower_body, 0.75, np.random.default_rng(7)) for _ in range(3)]
    for center, scale in results[1:]:
        np.testing.assert_array_equal(center, results[0][0])
        np.testing.assert_array_equal(scale, results[0][1])
    assert results[0][0][0] < 100


def test_half_body_draws_exactly_one_normal():
    # The official code always draws the normal first; the caller's rng stream must advance by one draw.
    kps = _coco_keypoints(UPPER, LOWER)
    rng = np.random.default_rng(3)
    half_body_center_scale(kps, COCO.upper_body, COCO.lower_body, 0.75, rng)
    reference = np.random.default_rng(3)
    reference.standard_normal()
    assert rng.standard_normal() == reference.standard_normal()


def test_pixel_std():
    assert PIXEL_STD == 200.0


def test_mspn_half_body_uses_the_extent_centre_and_random_extension():
    from posekit.data.transforms import half_body_center_scale

    kp = np.zeros((6, 3))
    kp[:4] = [[10, 10, 2], [30, 10, 2], [10, 50, 2], [30, 50, 2]]     # four upper joints
    kp[4:] = [[0, 90, 2], [40, 95, 2]]                               # two lower joints: too few for mspn
    rng = np.random.default_rng(4)
    draw = np.random.default_rng(4)
    draw.standard_normal()                                           # the upper/lower draw
    u = draw.random(2)
    center, scale = half_body_center_scale(kp, [0, 1, 2, 3], [4, 5], 0.75, rng, style="mspn",
                                           random_extension=(0.6, 0.8))
    np.testing.assert_allclose(center, [20, 30])                      # centre of the extent, not the mean
    w, h = 20 * (1 + u[0] * 0.6), 40 * (1 + u[1] * 0.8)
    w, h = max(w, 0.75 * h), max(h, w / 0.75)
    np.testing.assert_allclose(scale, np.array([w, h]) / 200)        # no x1.5
    # three upper joints are not enough for mspn (needs > 3 to choose a half, >= 3 to crop), enough for hrnet
    kp3 = kp.copy()
    kp3[3, 2] = 0
    kp3[5, 2] = 0
    assert half_body_center_scale(kp3, [0, 1, 2, 3], [4, 5], 0.75, np.random.default_rng(0), style="mspn") is not None
    kp2 = kp3.copy()
    kp2[2, 2] = 0
    assert half_body_center_scale(kp2, [0, 1, 2, 3], [4, 5], 0.75, np.random.default_rng(0), style="mspn") is None
    assert half_body_center_scale(kp2, [0, 1, 2, 3], [4, 5], 0.75, np.random.default_rng(0)) is not None
