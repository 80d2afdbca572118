from __future__ import annotations

import numpy as np
import torch

from posekit.codecs import GaussianHeatmap, flip_back
from posekit.data.topdown import TopDownCrop
from posekit.data.transforms import crop_to_image, crop_to_image_batch, get_affine_transform
from posekit.evaluation.inference import decode_to_image, predict_heatmaps
from posekit.models import create_model
from posekit.skeletons import COCO


def _random_model():
    torch.manual_seed(0)
    model = create_model("hrnet_w16_small", num_keypoints=17, stem_width=32)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return model.eval()


def test_flip_test_of_a_mirror_symmetric_input_is_mirror_symmetric():
    model = _random_model()
    half = torch.randn(2, 3, 64, 32)
    image = torch.cat([half, half.flip(3)], dim=3)          # the mirror image of itself
    perm = COCO.flip_permutation()
    averaged = predict_heatmaps(model, image, perm, shift_heatmap=False)
    # Mirroring the result (and swapping left/right) gives the result back.
    torch.testing.assert_close(flip_back(averaged, perm, shift=False), averaged, rtol=0, atol=1e-6)
    plain = predict_heatmaps(model, image, None)
    expected = 0.5 * (plain + flip_back(plain, perm, shift=False))
    torch.testing.assert_close(averaged, expected, rtol=0, atol=1e-6)


def test_flip_test_with_shift_moves_the_flipped_half_one_column():
    model = _random_model()
    image = torch.randn(1, 3, 64, 64)
    perm = COCO.flip_permutation()
    plain = predict_heatmaps(model, image, None)
    flipped = model(image.flip(3))[-1]
    with_shift = predict_heatmaps(model, image, perm, shift_heatmap=True)
    back = flipped.flip(3)[:, perm]
    torch.testing.assert_close(with_shift[..., 1:], 0.5 * (plain[..., 1:] + back[..., :-1]), rtol=0, atol=1e-6)
    torch.testing.assert_close(with_shift[..., 0], 0.5 * (plain[..., 0] + back[..., 0]), rtol=0, atol=1e-6)


def test_batched_back_projection_equals_the_inverse_affine():
    rng = np.random.default_rng(1)
    centers = rng.uniform(50, 400, (5, 2))
    scales = rng.uniform(0.3, 2.0, (5, 1)) * np.array([[0.75, 1.0]])
    points = rng.uniform(0, 256, (5, 17, 2))
    batched = crop_to_image_batch(points, centers, scales, (256, 192))
    for i in range(5):
        np.testing.assert_allclose(batched[i], crop_to_image(points[i], centers[i], scales[i], (256, 192)), atol=2e-3)
        # and it really inverts the crop (cv2 solves the affine in float32, hence the tolerance)
        forward = get_affine_transform(centers[i], scales[i], 0, (192, 256))
        np.testing.assert_allclose(batched[i] @ forward[:, :2].T + forward[:, 2], points[i], atol=2e-3)


def test_a_person_at_a_known_place_decodes_to_that_place():
    codec = GaussianHeatmap((256, 192), (64, 48), sigma=2)
    center, scale = np.array([[320.0, 240.0]]), np.array([[1.2, 1.6]])
    joints_image = np.array([[300.0, 200.0], [340.0, 300.0], [250.0, 150.0]])
    crop = joints_image @ get_affine_transform(center[0], scale[0], 0, (192, 256))[:, :2].T \
        + get_affine_transform(center[0], scale[0], 0, (192, 256))[:, 2]
    heatmaps, _ = codec.encode(crop, np.ones(3))
    coords, scores = decode_to_image(codec, torch.from_numpy(heatmaps)[None], TopDownCrop((256, 192)), center, scale)
    # one heatmap pixel = 4 crop px = 5 image px here; the encoder rounds to the nearest heatmap pixel
    assert np.abs(coords[0] - joints_image).max() <= 0.5 * 4 * (1.2 * 200 / 192) + 1e-9
    np.testing.assert_allclose(scores, 1.0)
