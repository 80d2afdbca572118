"""Heatmap codec (posekit.codecs) against spec 1.2 / 1.4 / 1.5 / 1.8: fixtures and literal loop references."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from posekit.codecs import GaussianHeatmap, OutputSpec, argmax_quarter_offset, build_codec, flip_back
from posekit.skeletons import COCO, MPII


# ----------------------------------------------------------------------------------------------------
# Literal references, written from the spec's step lists (one joint / one heatmap at a time, Python ints).


def reference_target(joints, vis, sigma, image_wh, heatmap_wh):
    """Spec 1.2 steps 1-5, joint by joint: integer centre, window check, patch, clipped overwrite."""
    hm_w, hm_h = heatmap_wh
    stride_x, stride_y = image_wh[0] / hm_w, image_wh[1] / hm_h
    target = np.zeros((len(joints), hm_h, hm_w), dtype=np.float32)
    weight = np.zeros(len(joints), dtype=np.float32)
    tmp_size = sigma * 3
    for k, (x, y) in enumerate(joints):
        weight[k] = 1.0 if vis[k] > 0 else 0.0
        mu_x = int(x / stride_x + 0.5)           # Python int(): truncation toward zero
        mu_y = int(y / stride_y + 0.5)
        ul = (int(mu_x - tmp_size), int(mu_y - tmp_size))
        br = (int(mu_x + tmp_size + 1), int(mu_y + tmp_size + 1))
        if ul[0] >= hm_w or ul[1] >= hm_h or br[0] < 0 or br[1] < 0:
            weight[k] = 0.0
            continue
        size = 2 * tmp_size + 1
        n = len(np.arange(0, size, 1))           # patch side (a float size counts like arange does)
        centre = size // 2
        patch = np.zeros((n, n), dtype=np.float64)
        for py in range(n):
            for px in range(n):
                patch[py, px] = math.exp(-((px - centre) ** 2 + (py - centre) ** 2) / (2 * sigma**2))
        if weight[k] > 0.5:
            for iy in range(max(0, ul[1]), min(br[1], hm_h)):
                for ix in range(max(0, ul[0]), min(br[0], hm_w)):
                    target[k, iy, ix] = patch[iy - ul[1], ix - ul[0]]
    return target, weight


def reference_decode(heatmaps, post_process=True):
    """Spec 1.4 on one N x K x h x w array with plain loops."""
    n_img, n_k, h, w = heatmaps.shape
    coords = np.zeros((n_img, n_k, 2))
    maxvals = np.zeros((n_img, n_k))
    for n in range(n_img):
        for k in range(n_k):
            hm = heatmaps[n, k]
            best, bx, by = -math.inf, 0, 0
            for yy in range(h):
                for xx in range(w):
                    if hm[yy, xx] > best:            # first maximum in row-major order
                        best, bx, by = float(hm[yy, xx]), xx, yy
            maxvals[n, k] = best
            x, y = (float(bx), float(by)) if best > 0 else (0.0, 0.0)
            if post_process:
                px, py = int(math.floor(x + 0.5)), int(math.floor(y + 0.5))
                if 1 < px < w - 1 and 1 < py < h - 1:
                    dx = hm[py, px + 1] - hm[py, px - 1]
                    dy = hm[py + 1, px] - hm[py - 1, px]
                    x += 0.25 * (dx > 0) - 0.25 * (dx < 0)
                    y += 0.25 * (dy > 0) - 0.25 * (dy < 0)
            coords[n, k] = (x, y)
    return coords, maxvals


def _codec(sigma=2.0, input_hw=(256, 192)):
    return GaussianHeatmap(input_hw, (input_hw[0] // 4, input_hw[1] // 4), sigma)


def _encode_one(x, y, sigma=2.0, input_hw=(256, 192), vis=1):
    heatmaps, weights = _codec(sigma, input_hw).encode(np.array([[x, y]], dtype=np.float64), np.array([vis]))
    return heatmaps[0], weights[0]


# ----------------------------------------------------------------------------------------------------
# encode: fixtures


def test_encode_sigma2_fixture():
    hm, weight = _encode_one(100.3, 60.1)
    assert hm.shape == (64, 48) and hm.dtype == np.float32
    assert weight == 1.0
    # mu = (int(25.075 + 0.5), int(15.025 + 0.5)) = (25, 15): the peak is on the integer centre, value 1.
    assert hm[15, 25] == pytest.approx(1.0)
    assert np.unravel_index(hm.argmax(), hm.shape) == (15, 25)
    assert np.count_nonzero(hm) == 13 * 13
    nz_y, nz_x = np.nonzero(hm)
    assert (nz_y.min(), nz_y.max(), nz_x.min(), nz_x.max()) == (9, 21, 19, 31)
    # Unnormalised Gaussian of the integer offset, cut at 3 sigma.
    assert hm[15, 26] == pytest.approx(math.exp(-1 / 8), rel=1e-6)
    assert hm[15, 31] == pytest.approx(math.exp(-36 / 8), rel=1e-5)
    assert hm[9, 19] == pytest.approx(math.exp(-72 / 8), rel=1e-5)
    assert hm[15, 32] == 0.0 and hm[22, 25] == 0.0
    # Symmetric about the integer centre (not sub-pixel).
    np.testing.assert_array_equal(hm[9:22, 19:32], hm[9:22, 19:32][::-1, ::-1])


def test_encode_sigma3_384x288_fixture():
    hm, weight = _encode_one(150.2, 201.7, sigma=3.0, input_hw=(384, 288))
    assert hm.shape == (96, 72) and weight == 1.0
    # mu = (int(37.55 + 0.5), int(50.425 + 0.5)) = (38, 50)
    assert hm[50, 38] == pytest.approx(1.0)
    assert np.count_nonzero(hm) == 19 * 19
    assert hm[50, 47] == pytest.approx(math.exp(-81 / 18), rel=1e-5)
    assert hm[50, 48] == 0.0


def test_encode_unlabelled_joint_is_empty_with_zero_weight():
    hm, weight = _encode_one(100.0, 60.0, vis=0)
    assert weight == 0.0 and not hm.any()


def test_encode_visibility_flags_map_to_binary_weights():
    codec = _codec()
    joints = np.array([[50.0, 50.0]] * 3)
    _, weights = codec.encode(joints, np.array([0, 1, 2]))
    np.testing.assert_array_equal(weights, [0.0, 1.0, 1.0])


def test_encode_partial_gaussian_at_right_border():
    # mu_x = 50 on a 48-wide heatmap: columns 44..47 are inside the 13-wide window.
    hm, weight = _encode_one(4 * 50 - 2, 4 * 30 - 2)
    assert weight == 1.0
    nz_y, nz_x = np.nonzero(hm)
    assert (nz_x.min(), nz_x.max()) == (44, 47)
    assert np.count_nonzero(hm) == 4 * 13
    assert hm[30, 47] == pytest.approx(math.exp(-9 / 8), rel=1e-6)
    assert hm.max() == pytest.approx(math.exp(-9 / 8), rel=1e-6)


def test_encode_partial_gaussian_at_top_left_corner():
    # mu = (-3, -2): columns 0..3 and rows 0..4 remain.
    hm, weight = _encode_one(4 * -3 - 2, 4 * -2 - 2)
    assert weight == 1.0
    assert np.count_nonzero(hm) == 4 * 5
    assert hm[0, 0] == pytest.approx(math.exp(-(9 + 4) / 8), rel=1e-6)


def test_encode_mu_is_truncated_toward_zero():
    # x / 4 + 0.5 = -6.5 for x = -28: int() gives -6, not floor's -7.
    hm_a, _ = _encode_one(-28.0, 100.0)
    hm_b, _ = _encode_one(4 * -6 - 2, 100.0)
    np.testing.assert_array_equal(hm_a, hm_b)
    assert hm_a[25, 0] == pytest.approx(math.exp(-36 / 8), rel=1e-5)


@pytest.mark.parametrize("x", [-30.0, -33.0, -33.99])
def test_encode_mu_minus_seven_quirk_keeps_weight(x):
    # mu_x = -7 -> br_x = int(-7 + 7) = 0, not < 0: weight 1 but the clipped patch is empty.
    hm, weight = _encode_one(x, 100.0)
    assert weight == 1.0
    assert not hm.any()
    hm, weight = _encode_one(100.0, x)
    assert weight == 1.0 and not hm.any()


def test_encode_weight_rule_over_all_centres():
    # sigma 2, heatmap 48 x 64: weight 0 iff mu_x - 6 >= 48, mu_y - 6 >= 64, mu_x + 7 < 0 or mu_y + 7 < 0.
    codec = _codec()
    sweep = np.arange(-12, 72)
    # one coordinate swept across both borders, the other inside, on the quirk value or just outside
    mu = np.concatenate(
        [np.stack([sweep, np.full_like(sweep, other)], axis=1) for other in (-8, -7, -6, 30, 57, 58)]
        + [np.stack([np.full_like(sweep, other), sweep], axis=1) for other in (-8, -7, 20, 53, 54)]
    )
    joints = 4.0 * mu - 2.0  # x / 4 + 0.5 == mu exactly, for either sign
    heatmaps, weights = codec.encode(joints, np.ones(len(joints)))
    expected = ~((mu[:, 0] - 6 >= 48) | (mu[:, 1] - 6 >= 64) | (mu[:, 0] + 7 < 0) | (mu[:, 1] + 7 < 0))
    np.testing.assert_array_equal(weights, expected.astype(np.float32))
    # Zero-weight joints never carry a heatmap.
    assert not heatmaps[weights == 0].any()
    # A heatmap with weight 1 is empty only for the mu == -7 quirk.
    empty = ~heatmaps.reshape(len(joints), -1).any(axis=1)
    quirk = (weights == 1) & empty
    assert np.all((mu[quirk, 0] == -7) | (mu[quirk, 1] == -7))
    assert quirk.sum() > 0


def test_encode_many_joints_are_independent_channels():
    codec = _codec()
    joints = np.array([[100.3, 60.1], [102.0, 62.0], [-500.0, 10.0]])
    heatmaps, weights = codec.encode(joints, np.array([2, 2, 2]))
    single, _ = _encode_one(100.3, 60.1)
    np.testing.assert_array_equal(heatmaps[0], single)
    assert heatmaps[1].argmax() != heatmaps[0].argmax()
    np.testing.assert_array_equal(weights, [1, 1, 0])


# ----------------------------------------------------------------------------------------------------
# encode: against the literal loop


def _random_joints(rng, input_hw, n):
    h, w = input_hw
    inside = rng.uniform([0, 0], [w, h], size=(n, 2))
    # near the borders, where patches are clipped and the weight rule switches
    near = rng.uniform([-40, -40], [w + 40, h + 40], size=(n, 2))
    near[: n // 2, 0] = rng.choice([-1, 1], n // 2) * rng.uniform(0, 40, n // 2) + rng.choice([0, w], n // 2)
    near[n // 2 :, 1] = rng.choice([-1, 1], n - n // 2) * rng.uniform(0, 40, n - n // 2) + rng.choice([0, h], n - n // 2)
    outside = rng.uniform([-3 * w, -3 * h], [4 * w, 4 * h], size=(n, 2))
    # exact multiples of the stride and of half the stride, where rounding ties sit
    grid = 2.0 * rng.integers(-30, w // 2 + 30, size=(n, 2))
    return np.concatenate([inside, near, outside, grid])


@pytest.mark.parametrize("sigma, input_hw", [(2.0, (256, 192)), (3.0, (384, 288)), (1.5, (256, 192)), (2.0, (256, 256))])
def test_encode_matches_literal_loop(sigma, input_hw):
    rng = np.random.default_rng(int(sigma * 10) + input_hw[1])
    joints = _random_joints(rng, input_hw, 80)
    vis = rng.choice([0, 1, 2], size=len(joints), p=[0.1, 0.2, 0.7])
    heatmap_hw = (input_hw[0] // 4, input_hw[1] // 4)
    codec = GaussianHeatmap(input_hw, heatmap_hw, sigma)
    heatmaps, weights = codec.encode(joints, vis)
    ref_heatmaps, ref_weights = reference_target(joints, vis, sigma, (input_hw[1], input_hw[0]), (heatmap_hw[1], heatmap_hw[0]))
    np.testing.assert_array_equal(weights, ref_weights)
    np.testing.assert_allclose(heatmaps, ref_heatmaps, rtol=1e-6, atol=1e-7)
    # every branch was exercised: full, clipped, quirk-empty and dropped joints
    nonzero = heatmaps.reshape(len(joints), -1).astype(bool).sum(axis=1)
    full = int(np.ceil(2 * 3 * sigma + 1)) ** 2
    assert (nonzero == full).any() and ((nonzero > 0) & (nonzero < full)).any()
    assert (ref_weights == 0).any() and (vis > 0).any()


def test_encode_non_integer_sigma_shape_near_zero():
    # sigma 1.5: tmp = 4.5, a 10-wide patch; int() truncation of ul near 0 moves the window (official quirk).
    codec = GaussianHeatmap((256, 192), (64, 48), 1.5)
    joints = np.array([[4 * 20 - 2, 4 * 30 - 2], [4 * 2 - 2, 4 * 30 - 2]], dtype=np.float64)
    heatmaps, _ = codec.encode(joints, np.ones(2))
    # mu_x = 20: ul = int(15.5) = 15, br = int(25.5) = 25, patch centre 15 + 5 = 20
    assert np.nonzero(heatmaps[0][30])[0].tolist() == list(range(15, 25))
    assert heatmaps[0].argmax() == 30 * 48 + 20
    # mu_x = 2: ul = int(-2.5) = -2, br = int(7.5) = 7, so the peak sits at -2 + 5 = 3, not at 2
    assert np.nonzero(heatmaps[1][30])[0].tolist() == list(range(0, 7))
    assert heatmaps[1][30].argmax() == 3
    ref, _ = reference_target(joints, np.ones(2), 1.5, (192, 256), (48, 64))
    np.testing.assert_allclose(heatmaps, ref, rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------------------------------
# decode: hand-made heatmaps


def _one(hm):
    return np.asarray(hm, dtype=np.float32)[None, None]


def test_decode_quarter_step_toward_larger_neighbour():
    hm = np.zeros((10, 12), dtype=np.float32)
    hm[4, 6] = 1.0
    hm[4, 7] = 0.5   # right neighbour larger -> +0.25 in x
    hm[3, 6] = 0.3   # upper neighbour larger -> -0.25 in y
    coords, maxvals = argmax_quarter_offset(_one(hm))
    np.testing.assert_allclose(coords[0, 0], [6.25, 3.75])
    assert maxvals[0, 0] == pytest.approx(1.0)


def test_decode_equal_neighbours_no_step():
    hm = np.zeros((10, 12), dtype=np.float32)
    hm[5, 5] = 2.0
    hm[5, 4] = hm[5, 6] = 1.0
    coords, maxvals = argmax_quarter_offset(_one(hm))
    np.testing.assert_allclose(coords[0, 0], [5.0, 5.0])
    assert maxvals[0, 0] == 2.0


def test_decode_no_step_on_first_two_and_last_columns():
    # strict 1 < px < W - 1 and 1 < py < H - 1, tested together: columns/rows 0, 1 and the last one are not
    # refined, and a peak outside that window gets no step in either axis.
    for x, y, expected in [(1, 5, (1.0, 5.0)), (0, 5, (0.0, 5.0)), (11, 5, (11.0, 5.0)), (10, 5, (10.25, 5.25)),
                           (2, 5, (2.25, 5.25)), (5, 1, (5.0, 1.0)), (5, 9, (5.0, 9.0)), (5, 8, (5.25, 8.25))]:
        hm = np.zeros((10, 12), dtype=np.float32)
        hm[y, x] = 1.0
        if x + 1 < 12:
            hm[y, x + 1] = 0.5
        if y + 1 < 10:
            hm[y + 1, x] = 0.5
        coords, _ = argmax_quarter_offset(_one(hm))
        np.testing.assert_allclose(coords[0, 0], expected, err_msg=f"peak at {(x, y)}")


def test_decode_non_positive_maximum_gives_origin():
    hm = np.full((8, 8), -1.0, dtype=np.float32)
    hm[4, 5] = -0.1
    coords, maxvals = argmax_quarter_offset(_one(hm))
    np.testing.assert_array_equal(coords[0, 0], [0.0, 0.0])
    assert maxvals[0, 0] == pytest.approx(-0.1)
    # maxval == 0 counts as "no detection" too (<= 0), even where the zero is not at the origin
    hm = np.full((8, 8), -1.0, dtype=np.float32)
    hm[4, 5] = 0.0
    coords, maxvals = argmax_quarter_offset(_one(hm))
    np.testing.assert_array_equal(coords[0, 0], [0.0, 0.0])
    assert maxvals[0, 0] == 0.0


def test_decode_first_maximum_wins_ties():
    hm = np.zeros((8, 8), dtype=np.float32)
    hm[3, 6] = hm[5, 2] = 1.0
    coords, _ = argmax_quarter_offset(_one(hm), post_process=False)
    np.testing.assert_array_equal(coords[0, 0], [6.0, 3.0])


def test_decode_without_post_process_is_plain_argmax():
    hm = np.zeros((10, 12), dtype=np.float32)
    hm[4, 6], hm[4, 7], hm[5, 6] = 1.0, 0.9, 0.9
    coords, _ = argmax_quarter_offset(_one(hm), post_process=False)
    np.testing.assert_array_equal(coords[0, 0], [6.0, 4.0])


def test_decode_accepts_torch_and_numpy_alike():
    rng = np.random.default_rng(5)
    hm = rng.normal(size=(2, 3, 16, 12)).astype(np.float32)
    c_np, m_np = argmax_quarter_offset(hm)
    c_t, m_t = argmax_quarter_offset(torch.from_numpy(hm).requires_grad_())
    np.testing.assert_array_equal(c_np, c_t)
    np.testing.assert_array_equal(m_np, m_t)
    assert c_np.shape == (2, 3, 2) and m_np.shape == (2, 3)


def test_codec_decode_scales_by_stride():
    codec = _codec()
    hm = np.zeros((1, 1, 64, 48), dtype=np.float32)
    hm[0, 0, 20, 10] = 1.0
    hm[0, 0, 20, 11] = 0.5
    coords, scores = codec.decode(hm)
    np.testing.assert_allclose(coords[0, 0], [10.25 * 4, 20 * 4])
    assert scores[0, 0] == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------------
# decode: against the literal loop


@pytest.mark.parametrize("kind", ["normal", "integers", "gaussians", "sparse"])
def test_decode_matches_literal_loop(kind):
    rng = np.random.default_rng({"normal": 0, "integers": 1, "gaussians": 2, "sparse": 3}[kind])
    shape = (6, 17, 16, 12)
    if kind == "normal":           # includes all-negative maps via the offset
        hm = rng.normal(size=shape) - rng.choice([0.0, 5.0], size=shape[:2])[..., None, None]
    elif kind == "integers":       # many ties between neighbours -> sign 0
        hm = rng.integers(-2, 3, size=shape).astype(np.float64)
    elif kind == "sparse":         # peaks on the border rows/columns
        hm = np.zeros(shape)
        ys = rng.choice([0, 1, 2, 13, 14, 15], size=shape[:2])
        xs = rng.choice([0, 1, 2, 9, 10, 11], size=shape[:2])
        for n in range(shape[0]):
            for k in range(shape[1]):
                hm[n, k, ys[n, k], xs[n, k]] = 1.0
                hm[n, k] += 0.1 * rng.random((16, 12)) * (rng.random() < 0.5)
    else:                          # encoded targets with noise, as a network would give
        codec = GaussianHeatmap((64, 48), (16, 12), 2.0)
        targets = np.stack([codec.encode(rng.uniform(-8, 56, size=(17, 2)), np.ones(17))[0] for _ in range(shape[0])])
        hm = targets + 0.05 * rng.normal(size=shape)
    hm = hm.astype(np.float32)
    coords, maxvals = argmax_quarter_offset(hm)
    ref_coords, ref_maxvals = reference_decode(hm)
    np.testing.assert_array_equal(coords, ref_coords)
    np.testing.assert_allclose(maxvals, ref_maxvals, rtol=0, atol=0)
    coords, _ = argmax_quarter_offset(hm, post_process=False)
    ref_coords, _ = reference_decode(hm, post_process=False)
    np.testing.assert_array_equal(coords, ref_coords)


# ----------------------------------------------------------------------------------------------------
# decode(encode(x))
#
# The encoder puts an exactly symmetric Gaussian on the *integer* centre mu = int(x / stride + 0.5). Its
# left/right (up/down) neighbours are therefore bit-identical, the sign of their difference is 0, and the
# quarter step never fires on a clean target: decode(encode(x)) == mu * stride exactly. The error is the
# rounding of x / stride to the nearest integer, so |decoded - x| <= 0.5 * stride input px in general, and
# <= 0.25 * stride exactly when the fraction of x / stride is within 0.25 of an integer. (The quarter step
# only helps on network outputs, whose peaks are skewed toward the true sub-pixel position.) This holds for
# centres whose whole 3x3 neighbourhood is on the heatmap and away from the cut of the window; for
# mu on column 0 or W - 1 no step is tried either, so the same equality holds on the whole heatmap.


@pytest.mark.parametrize("sigma", [2.0, 3.0])
def test_decode_of_encode_returns_the_integer_centre(sigma):
    codec = _codec(sigma)
    rng = np.random.default_rng(11)
    # x / 4 in [0, 47.5) and y / 4 in [0, 63.5): mu stays on the heatmap
    joints = rng.uniform([0.0, 0.0], [4 * 47.5 - 1e-6, 4 * 63.5 - 1e-6], size=(400, 2))
    heatmaps, weights = codec.encode(joints, np.ones(len(joints)))
    assert weights.all()
    coords, scores = codec.decode(heatmaps[None])
    mu = np.floor(joints / 4 + 0.5)
    np.testing.assert_array_equal(coords[0], mu * 4)
    np.testing.assert_allclose(scores[0], 1.0)
    error = np.abs(coords[0] - joints)
    assert error.max() <= 0.5 * 4
    frac = joints / 4 - np.floor(joints / 4)
    near_integer = (frac <= 0.25) | (frac >= 0.75)
    assert (error[near_integer] <= 0.25 * 4 + 1e-9).all()
    assert (error[~near_integer] > 0.25 * 4).all()  # and the looser bound is really needed elsewhere
    assert error.max() > 0.45 * 4


def test_decode_of_encode_exact_on_stride_grid():
    codec = _codec()
    joints = np.array([[0.0, 0.0], [8.0, 12.0], [100.0, 60.0], [188.0, 252.0]])
    heatmaps, _ = codec.encode(joints, np.ones(4))
    coords, _ = codec.decode(heatmaps[None])
    np.testing.assert_array_equal(coords[0], joints)


# ----------------------------------------------------------------------------------------------------
# flip_back and the flip test


def _reference_flip_back(hm, perm, shift):
    n, k, h, w = hm.shape
    out = np.zeros_like(hm)
    for kk in range(k):
        for x in range(w):
            out[:, kk, :, x] = hm[:, perm[kk], :, w - 1 - x]
    if shift:
        shifted = out.copy()
        for x in range(1, w):
            shifted[..., x] = out[..., x - 1]
        out = shifted
    return out


@pytest.mark.parametrize("skeleton", [COCO, MPII])
@pytest.mark.parametrize("shift", [False, True])
def test_flip_back_matches_loop(skeleton, shift):
    hm = torch.from_numpy(np.random.default_rng(4).normal(size=(2, skeleton.num_keypoints, 8, 6)).astype(np.float32))
    original = hm.clone()
    out = flip_back(hm, skeleton.flip_permutation(), shift=shift)
    np.testing.assert_array_equal(out.numpy(), _reference_flip_back(hm.numpy(), skeleton.flip_permutation(), shift))
    assert torch.equal(hm, original)  # input untouched


def test_flip_back_hand_example():
    hm = torch.zeros(1, 3, 2, 4)
    hm[0, 1, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    out = flip_back(hm, [0, 2, 1], shift=False)
    assert out[0, 2, 0].tolist() == [4.0, 3.0, 2.0, 1.0] and not out[0, 1].any()
    out = flip_back(hm, [0, 2, 1], shift=True)
    assert out[0, 2, 0].tolist() == [4.0, 4.0, 3.0, 2.0]  # column 0 keeps its value


def _mirror_symmetric(rng, skeleton, hw):
    """Heatmaps H with H[k][:, ::-1] == H[perm[k]], i.e. flip_back(H, shift=False) == H."""
    hm = rng.random((skeleton.num_keypoints,) + hw)
    for k in range(skeleton.num_keypoints):
        hm[k] = 0.5 * (hm[k] + hm[k][:, ::-1])
    for a, b in skeleton.flip_pairs:
        hm[b] = hm[a][:, ::-1]
    return torch.from_numpy(hm[None].astype(np.float32))


def test_flip_test_average_of_symmetric_heatmaps():
    hm = _mirror_symmetric(np.random.default_rng(6), COCO, (16, 12))
    flipped = flip_back(hm, COCO.flip_permutation(), shift=False)
    assert torch.equal(flipped, hm)
    assert torch.allclose(0.5 * (hm + flipped), hm)
    shifted = flip_back(hm, COCO.flip_permutation(), shift=True)
    assert torch.equal(shifted[..., 1:], hm[..., :-1])
    assert torch.equal(shifted[..., 0], hm[..., 0])


def test_flip_test_shift_realigns_encoded_targets():
    # Encode joints of a crop and of its mirror (x' = W_in - 1 - x): after flip_back the mirrored target sits
    # one column left; the shift puts it back exactly for every integer input x away from the borders
    # (mu = m + floor(f + 0.5) vs m + ceil(f - 0.25) for x / 4 = m + f, equal for f in {0, .25, .5, .75}).
    codec = _codec()
    rng = np.random.default_rng(9)
    kps = np.zeros((17, 3))
    # windows clear of column 0 on both sides (the shift keeps the old column 0)
    kps[:, 0] = rng.integers(32, 160, size=17)
    kps[:, 1] = rng.integers(0, 256, size=17)
    kps[:, 2] = 2
    target, _ = codec.encode(kps[:, :2], kps[:, 2])
    perm = COCO.flip_permutation()
    mirrored = kps.copy()
    mirrored[:, 0] = 192 - 1 - mirrored[:, 0]
    mirrored = mirrored[perm]
    mirrored_target, _ = codec.encode(mirrored[:, :2], mirrored[:, 2])
    back = flip_back(torch.from_numpy(mirrored_target[None]), perm, shift=True)[0].numpy()
    np.testing.assert_array_equal(back, target)
    unshifted = flip_back(torch.from_numpy(mirrored_target[None]), perm, shift=False)[0].numpy()
    np.testing.assert_array_equal(unshifted[..., :-1], target[..., 1:])


# ----------------------------------------------------------------------------------------------------
# build_codec


def test_build_codec_from_spec():
    codec = build_codec(OutputSpec(stride=4, sigma=3.0), (384, 288))
    assert codec.heatmap_hw == (96, 72) and codec.sigma == 3.0
    np.testing.assert_array_equal(codec.stride_xy, [4.0, 4.0])
    with pytest.raises(ValueError, match="unknown target"):
        build_codec(OutputSpec(target="nonsense"), (256, 192))


# ------------------------------------------------------------------------------------------------ DARK decoding
def _gaussian_map(h: int, w: int, cx: float, cy: float, sigma: float) -> np.ndarray:
    ys, xs = np.mgrid[0:h, 0:w]
    return np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma ** 2)).astype(np.float32)


def test_dark_recovers_a_subpixel_centre_that_the_quarter_offset_cannot():
    from posekit.codecs import argmax_quarter_offset, dark_decode

    centres = [(10.3, 12.6), (20.45, 7.1), (15.0, 15.0), (6.8, 24.35)]
    maps = np.stack([_gaussian_map(32, 32, cx, cy, 2.0) for cx, cy in centres])[None]
    truth = np.array(centres)[None]
    dark, maxvals = dark_decode(maps, kernel=11)
    quarter, _ = argmax_quarter_offset(maps)
    # A Gaussian blurred by a Gaussian stays a Gaussian about the same centre, whose log is a quadratic: one
    # Newton step lands on it up to the finite-difference error.
    assert np.abs(dark - truth).max() < 0.02
    assert np.abs(quarter - truth).max() > 0.15
    assert np.allclose(maxvals, maps.reshape(1, 4, -1).max(axis=2))


def test_dark_keeps_the_argmax_at_the_border_and_for_empty_maps():
    from posekit.codecs import dark_decode

    maps = np.stack([_gaussian_map(16, 16, 1.2, 8.0, 1.5), np.zeros((16, 16), np.float32)])[None]
    coords, maxvals = dark_decode(maps, kernel=7)
    assert coords[0, 0].tolist() == [1.0, 8.0]          # argmax within 2 px of the border: no step
    assert coords[0, 1].tolist() == [0.0, 0.0] and maxvals[0, 1] == 0.0


def test_dark_through_the_codec_and_config():
    import pytest

    from posekit.codecs import OutputSpec, build_codec
    from posekit.codecs.gaussian import dark_kernel_for
    from posekit.errors import ConfigError

    assert dark_kernel_for(2.0) == 11 and dark_kernel_for(3.0) == 17    # DARK's 64x48 and 96x72 settings
    codec = build_codec(OutputSpec(stride=4, target="gaussian", sigma=2.0), (128, 128), decoding="dark")
    assert codec.dark_kernel == 11
    heatmaps = _gaussian_map(32, 32, 10.3, 12.6, 2.0)[None, None]
    coords, _ = codec.decode(heatmaps)
    assert np.abs(coords[0, 0] - [41.2, 50.4]).max() < 0.1              # input pixels: x 4
    with pytest.raises(ConfigError, match="applies to Gaussian heatmaps"):
        build_codec(OutputSpec(stride=4, target="megvii", kernel=7), (128, 128), decoding="dark")
    with pytest.raises(ConfigError, match="decoding must be quarter or dark"):
        build_codec(OutputSpec(stride=4, target="gaussian", sigma=2.0), (128, 128), decoding="soft")
