"""TopDownCrop: the one crop of training, evaluation and prediction (hand-computed cases and equivalences)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from posekit.build import make_dataset
from posekit.codecs.cpm import center_map
from posekit.config import Config
from posekit.data.images import image_header, jpeg_frame, read_file_bytes
from posekit.data.records import PersonRecord
from posekit.data.topdown import TopDownCrop
from posekit.data.transforms import affine_points, reduced_grid_matrix
from posekit.errors import DataError

CROP = TopDownCrop((256, 192))


def test_box_window_is_fitted_to_the_aspect_and_padded():
    # 100 x 50 box at an aspect of 192 / 256 = 0.75: the height grows to 100 / 0.75, then both x 1.25.
    center, scale = CROP.box_center_scale([10, 20, 100, 50])
    np.testing.assert_array_equal(center, [60.0, 45.0])
    np.testing.assert_allclose(scale, [100 / 200 * 1.25, 100 / 0.75 / 200 * 1.25], rtol=1e-12)
    # MSPN's extension grows width and height before the fit: 100 x 1.1 = 110 and 50 x 1.2 = 60 -> 110 x 146.67.
    extended = TopDownCrop((256, 192), box_padding=1.0, box_extension=(0.1, 0.2))
    _, scale = extended.box_center_scale([0, 0, 100, 50])
    np.testing.assert_allclose(scale, [110 / 200, 110 / 0.75 / 200], rtol=1e-12)


def test_record_with_centre_and_scale_and_a_box_without_area():
    record = PersonRecord("mpii.jpg", np.zeros((16, 3)), center=np.array([300.0, 200.0]), scale=np.array([1.0, 1.0]))
    center, scale = TopDownCrop((256, 256)).center_scale(record)
    np.testing.assert_array_equal(center, [300.0, 200.0])
    np.testing.assert_allclose(scale, [1.25, 1.25])
    with pytest.raises(DataError, match="no area"):
        CROP.box_center_scale([5, 5, 0, 0], source="boxes.json")


def test_joints_window_is_the_half_body_at_this_aspect():
    keypoints = np.array([[10.0, 10.0, 2], [30.0, 10.0, 2], [10.0, 70.0, 2], [30.0, 70.0, 2], [0, 0, 0]])
    rng = np.random.default_rng(0)
    while True:   # the upper half is chosen when N(0, 1) < 0.5
        state = rng.bit_generator.state
        if rng.standard_normal() < 0.5:
            break
    rng.bit_generator.state = state
    center, scale = CROP.joints_center_scale(keypoints, [0, 1, 2, 3], [4], rng, scale_factor=1.5)
    np.testing.assert_allclose(center, [20.0, 40.0])
    # 20 x 60 extent: the width grows to 60 x 0.75 = 45; x 1.5.
    np.testing.assert_allclose(scale, [45 / 200 * 1.5, 60 / 200 * 1.5])


def test_matrix_maps_the_window_onto_the_input_and_inverse_undoes_it():
    center, scale = np.array([100.0, 80.0]), np.array([0.96, 1.28])   # a 192 x 256 window: one pixel per pixel
    matrix = CROP.matrix(center, scale)
    np.testing.assert_allclose(affine_points([[100.0, 80.0], [4.0, -48.0]], matrix), [[96.0, 128.0], [0.0, 0.0]],
                               atol=1e-9)
    for rotation in (0.0, 30.0, -75.0):
        forward, back = CROP.matrix(center, scale, rotation), CROP.inverse(center, scale, rotation)
        points = np.array([[0.0, 0.0], [191.0, 255.0], [17.5, 3.25]])
        np.testing.assert_allclose(affine_points(affine_points(points, back), forward), points, atol=1e-4)
    # +90 degrees: a point straight above the centre ends up left of the crop centre.
    above = affine_points([[100.0, 80.0 - 50.0]], CROP.matrix(center, scale, 90.0))[0]
    np.testing.assert_allclose(above, [96.0 - 50.0, 128.0], atol=1e-4)


def test_warp_matrix_folds_the_mirror_and_the_reduced_grid_in():
    matrix = CROP.matrix(np.array([100.0, 80.0]), np.array([0.96, 1.28]), 20.0)
    assert CROP.warp_matrix(matrix) is matrix
    flipped = CROP.warp_matrix(matrix, flipped=True, image_width=640)
    np.testing.assert_allclose(affine_points([[10.0, 7.0]], flipped), affine_points([[629.0, 7.0]], matrix))
    reduced = CROP.warp_matrix(matrix, True, 640, reduce=4)
    np.testing.assert_array_equal(reduced, flipped @ reduced_grid_matrix(4))
    # Pixel 2 of a 1/4 decode averages full pixels 8..11, centred on 9.5.
    np.testing.assert_allclose(affine_points([[2.0, 0.0]], reduced), affine_points([[9.5, 1.5]], flipped))


def test_normalise_is_the_per_pixel_formula_in_either_colour_order():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (256, 192, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    for color_rgb in (True, False):
        crop = TopDownCrop((256, 192), mean=mean, std=std, color_rgb=color_rgb)
        model_order = rgb if color_rgb else rgb[..., ::-1]
        formula = ((model_order.astype(np.float32) - np.asarray(mean, np.float32) * 255.0)
                   * (1.0 / (np.asarray(std, np.float32) * 255.0))).transpose(2, 0, 1)
        from_rgb = crop.normalise(rgb, pixels_rgb=True)
        from_bgr = crop.normalise(np.ascontiguousarray(rgb[..., ::-1]), pixels_rgb=False)
        assert from_rgb.dtype == np.float32 and from_rgb.shape == (3, 256, 192)
        np.testing.assert_array_equal(from_rgb, formula)
        np.testing.assert_array_equal(from_bgr, formula)
        np.testing.assert_allclose(from_rgb[0, 0, 0], (model_order[0, 0, 0] / 255 - mean[0]) / std[0], rtol=1e-5)
    # Colour jitter per output channel, clamped to 255 before the mean is taken off.
    crop = TopDownCrop((2, 2), mean=(0, 0, 0), std=(1 / 255, 1 / 255, 1 / 255))
    pixels = np.full((2, 2, 3), 200, np.uint8)
    jittered = crop.normalise(pixels, pixels_rgb=True, jitter=np.array([1.5, 0.5, 1.0], np.float32))
    np.testing.assert_allclose(jittered[:, 0, 0], [255.0, 100.0, 200.0], rtol=1e-6)


def test_normalise_adds_the_centre_map_and_zeros_for_an_unreadable_image():
    crop = TopDownCrop((368, 368), center_map_sigma=21.0)
    tensor = crop.normalise(None)
    assert tensor.shape == (4, 368, 368) and not tensor[:3].any()
    np.testing.assert_array_equal(tensor[3], center_map((368, 368), 21.0).astype(np.float32))
    assert TopDownCrop((64, 48)).normalise(None).shape == (3, 64, 48)


def test_cut_is_the_bilinear_warp_of_the_image():
    image = np.random.default_rng(2).integers(0, 256, (100, 100, 3), dtype=np.uint8)
    crop = TopDownCrop((20, 20))
    # The crop's centre (10, 10) is the window's centre (HRNet's convention): a 20 px window centred on (50, 50)
    # is image pixels 40..59, one per crop pixel, and outside the image is zero.
    matrix = crop.matrix(np.array([50.0, 50.0]), np.array([0.1, 0.1]))
    np.testing.assert_array_equal(crop.cut(image, matrix), image[40:60, 40:60])
    corner = crop.cut(image, crop.matrix(np.array([0.0, 0.0]), np.array([0.1, 0.1])))
    np.testing.assert_array_equal(corner[10:, 10:], image[:10, :10])
    assert not corner[:10].any() and not corner[:, :10].any()


def test_the_dataset_and_the_predictor_build_one_crop_from_the_config():
    cfg = Config()
    cfg.data.box_padding, cfg.data.box_extension, cfg.data.color_rgb = 1.1, [0.09, 0.135], False
    crop = TopDownCrop.from_config(cfg, center_map_sigma=21.0)
    assert crop == TopDownCrop(cfg.input_hw, 1.1, (0.09, 0.135), tuple(cfg.data.mean), tuple(cfg.data.std), False, 21.0)

    class CPMLike:
        center_map_sigma = 21.0

    assert make_dataset(cfg, [], [], train=False, model=CPMLike()).crop == crop
    assert make_dataset(cfg, [], [], train=False).crop == TopDownCrop.from_config(cfg)


def test_jpeg_frame_and_image_header_walk_the_same_markers(tmp_path):
    path = tmp_path / "a.jpg"
    cv2.imwrite(str(path), np.zeros((30, 50, 3), np.uint8))
    data = read_file_bytes(str(path))
    # Stray bytes between two segments: libjpeg skips them (with a warning), and so do both readers.
    second = 4 + ((data[4] << 8) | data[5])
    stray = data[:second] + b"\x00\x17" + data[second:]
    (tmp_path / "stray.jpg").write_bytes(stray)
    for blob, name in ((data, "a.jpg"), (stray, "stray.jpg")):
        frame = jpeg_frame(blob)
        assert (frame.width, frame.height) == (50, 30) == image_header(tmp_path / name)[1]
        assert blob[frame.height_offset:frame.height_offset + 2] == (30).to_bytes(2, "big")
