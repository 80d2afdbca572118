from __future__ import annotations

import cv2
import numpy as np
import pytest

from posekit.codecs import GaussianHeatmap
from posekit.config import AugmentConfig
from posekit.data.dataset import TopDownDataset
from posekit.data.records import PersonRecord
from posekit.data.transforms import affine_points, box_to_center_scale, get_affine_transform
from posekit.errors import ConfigError, DataError
from posekit.skeletons import SYNTHETIC


def _figure_image(path, size=(120, 160)):
    """A black image with a white 3x3 dot at each keypoint, and the record pointing at it."""
    rng = np.random.default_rng(3)
    h, w = size
    keypoints = np.zeros((SYNTHETIC.num_keypoints, 3))
    keypoints[:, 0] = rng.uniform(40, w - 40, SYNTHETIC.num_keypoints).round()
    keypoints[:, 1] = rng.uniform(20, h - 20, SYNTHETIC.num_keypoints).round()
    keypoints[:, 2] = 2
    keypoints[3, 2] = 0
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    cv2.imwrite(str(path), image)
    x0, y0 = keypoints[:, :2].min(0)
    x1, y1 = keypoints[:, :2].max(0)
    return PersonRecord(str(path), keypoints, box=np.array([x0, y0, x1 - x0, y1 - y0]), image_id=7, image_size=(w, h)), image


def assert_same_crop_up_to_rounding(actual, expected):
    """The same crop, up to what warpAffine's rounding allows when two matrices agree only to float rounding:
    OpenCV 5 interpolates in float and rounds, so a value may land on the other side of .5 (seen: at most 3 of
    9,216 values, 1 grey level); OpenCV 4 snaps each source coordinate to a 1/32-pixel grid, and the two matrices'
    coordinates may snap one step apart (seen on 4.11: up to 3 % of the values, by up to 8 = 255/32 grey levels on
    these noise images, mean 0.08). So: every value within 9 grey levels (one grid step across a full-range edge,
    plus rounding), at most 5 % of the values off at all, mean difference at most 0.2. A different crop (a one-pixel
    shift, a wrong mirror) differs by tens of grey levels almost everywhere on these noise images."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    diff = np.abs(actual - expected)
    assert diff.max() <= 9.0, f"max difference {diff.max()} grey levels"
    off = int(np.count_nonzero(diff))
    assert off <= 0.05 * diff.size, f"{off} of {diff.size} values differ"
    assert diff.mean() <= 0.2, f"mean difference {diff.mean():.3f} grey levels"


def _dataset(records, train, augment=None, **kw):
    codec = GaussianHeatmap((64, 48), (16, 12), sigma=1.0)
    return TopDownDataset(records, SYNTHETIC, (64, 48), [codec], train=train, augment=augment,
                          mean=(0, 0, 0), std=(1 / 255, 1 / 255, 1 / 255), color_rgb=False, **kw)


def test_eval_sample_is_the_official_crop(tmp_path):
    record, image = _figure_image(tmp_path / "a.png")
    sample = _dataset([record], train=False)[0]
    center, scale = box_to_center_scale(record.box, 48 / 64, 1.25)
    matrix = get_affine_transform(center, scale, 0, (48, 64))
    expected = cv2.warpAffine(image, matrix, (48, 64), flags=cv2.INTER_LINEAR).astype(np.float32)
    # mean 0, std 1/255 -> values unchanged; channels first
    np.testing.assert_allclose(sample["image"].numpy().transpose(1, 2, 0), expected, atol=1e-4)
    np.testing.assert_allclose(sample["center"].numpy(), center)
    np.testing.assert_allclose(sample["scale"].numpy(), scale)
    heatmaps, weights = sample["targets"][0].numpy(), sample["target_weights"][0].numpy()
    crop_xy = affine_points(record.keypoints[:, :2], matrix)
    for k in range(SYNTHETIC.num_keypoints):
        if record.keypoints[k, 2] == 0:
            assert weights[k] == 0 and heatmaps[k].max() == 0
            continue
        peak = np.unravel_index(heatmaps[k].argmax(), heatmaps[k].shape)
        assert weights[k] == 1 and heatmaps[k].max() == 1.0
        np.testing.assert_array_equal(peak, np.trunc(crop_xy[k, ::-1] / 4 + 0.5))
    assert sample["ok"] and int(sample["image_id"]) == 7


def test_flip_folded_into_the_warp_equals_flipping_the_image_first(tmp_path):
    record, image = _figure_image(tmp_path / "a.png")
    augment = AugmentConfig(flip=True, scale_factor=0.3, rotation_factor=30, rotation_prob=1.0, half_body_prob=0)
    dataset = _dataset([record], train=True, augment=augment)
    for epoch in range(12):
        dataset.set_epoch(epoch)
        sample = dataset[0]
        if not bool(sample["flipped"]):
            continue
        # The official order: mirror the image and joints, then warp with the mirrored centre.
        width = image.shape[1]
        flipped_image = image[:, ::-1].copy()
        center, scale, rot = sample["center"].numpy(), sample["scale"].numpy(), float(sample["rotation"])
        matrix = get_affine_transform(center, scale, rot, (48, 64))
        expected = cv2.warpAffine(flipped_image, matrix, (48, 64), flags=cv2.INTER_LINEAR).astype(np.float32)
        assert_same_crop_up_to_rounding(sample["image"].numpy().transpose(1, 2, 0), expected)
        kp = record.keypoints.copy()
        kp[:, 0] = width - 1 - kp[:, 0]
        kp = kp[SYNTHETIC.flip_permutation()]
        crop_xy = affine_points(kp[:, :2], matrix)
        hm = sample["targets"][0].numpy()
        assert hm[2].max() == 0      # l_shoulder now holds the unlabelled original r_shoulder
        for k in np.flatnonzero(kp[:, 2] > 0):
            peak = np.unravel_index(hm[k].argmax(), hm[k].shape)
            assert peak == tuple(np.trunc(crop_xy[k, ::-1] / 4 + 0.5).astype(int))
        return
    pytest.fail("no flipped sample in 12 epochs")


def test_rounding_tolerance_still_tells_a_wrong_mirror_from_the_right_one(tmp_path):
    """The tolerance above forgives rounding only: mirroring about x -> W - x (one pixel off) is refused."""
    record, image = _figure_image(tmp_path / "a.png")
    center, scale = box_to_center_scale(record.box, 48 / 64, 1.25)
    matrix = get_affine_transform(center, scale, 20, (48, 64))
    right = cv2.warpAffine(image[:, ::-1].copy(), matrix, (48, 64), flags=cv2.INTER_LINEAR)
    mirror = np.array([[-1.0, 0.0, image.shape[1]], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])   # should be W - 1
    wrong = cv2.warpAffine(image, np.vstack([matrix, [0, 0, 1]])[:2] @ mirror, (48, 64), flags=cv2.INTER_LINEAR)
    assert_same_crop_up_to_rounding(right, right)
    with pytest.raises(AssertionError):
        assert_same_crop_up_to_rounding(wrong, right)


def test_augmentation_is_seeded_by_epoch_and_index_not_by_worker(tmp_path):
    record, _ = _figure_image(tmp_path / "a.png")
    a = _dataset([record, record], train=True, augment=AugmentConfig(half_body_prob=0))
    b = _dataset([record, record], train=True, augment=AugmentConfig(half_body_prob=0))
    a.set_epoch(3)
    b.set_epoch(3)
    assert np.array_equal(a[1]["image"].numpy(), b[1]["image"].numpy())
    params = {(float(a[i]["scale"][0]), float(a[i]["rotation"])) for i in range(2)}
    a.set_epoch(4)
    params |= {(float(a[i]["scale"][0]), float(a[i]["rotation"])) for i in range(2)}
    assert len(params) == 4


def test_unreadable_image_is_skipped_only_when_asked(tmp_path):
    record, _ = _figure_image(tmp_path / "a.png")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    bad = PersonRecord(str(broken), record.keypoints.copy(), box=record.box.copy(), image_size=(160, 120))
    with pytest.raises(DataError, match="broken.jpg: cannot decode image"):
        _dataset([bad], train=False)[0]
    sample = _dataset([bad], train=True, skip_unreadable=True)[0]
    assert not bool(sample["ok"])
    assert float(sample["target_weights"][0].sum()) == 0.0
    with pytest.raises(DataError, match="image file not found"):
        _dataset([PersonRecord(str(tmp_path / "nope.png"), record.keypoints, box=record.box)], train=False)[0]


def test_mspn_box_extension_before_the_aspect_fit():
    from posekit.data.topdown import record_center_scale

    record = PersonRecord("x.jpg", np.zeros((14, 3)), box=np.array([10.0, 20.0, 100.0, 200.0]))
    # HRNet: fit 0.75 then x1.25
    center, scale = record_center_scale(record, 0.75, 1.25)
    np.testing.assert_allclose(center, [60, 120])
    np.testing.assert_allclose(scale, np.array([150.0, 200.0]) / 200 * 1.25)
    # MSPN test box: w x1.09, h x1.135, then the aspect fit, no padding
    _, scale = record_center_scale(record, 0.75, 1.0, extension=(0.09, 0.135))
    np.testing.assert_allclose(scale, np.array([227.0 * 0.75, 227.0]) / 200)
    # MSPN training box: x1.05, then x(1 + U*0.6) / x(1 + U*0.8), then the fit
    rng = np.random.default_rng(0)
    u = np.random.default_rng(0).random(2)
    _, scale = record_center_scale(record, 0.75, 1.0, (0.05, 0.05), rng, (0.6, 0.8))
    w, h = 105 * (1 + u[0] * 0.6), 210 * (1 + u[1] * 0.8)
    w, h = max(w, 0.75 * h), max(h, w / 0.75)
    np.testing.assert_allclose(scale, np.array([w, h]) / 200)


def test_colour_jitter_multiplies_each_channel_and_clamps(tmp_path):
    record, _ = _figure_image(tmp_path / "a.png")
    plain = AugmentConfig(flip=False, scale_factor=0.0, rotation_prob=0.0, half_body_prob=0)
    jitter = AugmentConfig(flip=False, scale_factor=0.0, rotation_prob=0.0, half_body_prob=0, color_jitter=[0.6, 1.4])
    a = _dataset([record], train=True, augment=plain)[0]["image"].numpy()
    b = _dataset([record], train=True, augment=jitter)[0]["image"].numpy()
    assert b.max() <= 255.0 + 1e-4
    unclipped = (a > 0) & (b < 254.9)
    ratios = [np.median(b[c][unclipped[c]] / a[c][unclipped[c]]) for c in range(3)]
    assert all(0.6 <= r <= 1.4 for r in ratios) and len({round(float(r), 3) for r in ratios}) == 3


def test_an_unknown_augmentation_distribution_is_refused_when_the_dataset_is_made():
    # A YAML value is checked when the config is read; an AugmentConfig made in Python reaches the dataset as is.
    with pytest.raises(ConfigError, match="augment.distribution must be normal, uniform, torch7, got 'gamma'"):
        _dataset([], train=True, augment=AugmentConfig(distribution="gamma"))
