from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from posekit.codecs import GaussianHeatmap
from posekit.codecs.cpm import CPMBeliefMap
from posekit.codecs.megvii import MegviiHeatmap
from posekit.codecs.torch7 import Torch7Gaussian
from posekit.data.dataset import TopDownDataset
from posekit.data.records import PersonRecord
from posekit.data.transforms import affine_points, get_affine_transform
from posekit.errors import ConfigError
from posekit.data.transforms import crop_to_image_batch
from posekit.evaluation.inference import (check_test_scales, crop_center_on_heatmap, heatmaps_to_base_frame, predict_heatmaps,
                                         predict_heatmaps_multiscale)
from posekit.skeletons import COCO

INPUT_HW = (64, 48)           # crop height, width
STRIDE = 4                    # heatmaps 16 x 12
HM_HW = (16, 12)
SCALES = [0.7, 0.85, 1.0, 1.15, 1.3]


class ImagePointStub(nn.Module):
    """Renders, per keypoint channel, a Gaussian where a known IMAGE point lands in the crop it is given.

    The crop tells the stub what it is: channel 0 holds the scale factor f, channel 2 the sample index, and
    channel 1 a ramp rising to the right (falling when the crop was mirrored by the flip test). The heatmap
    point of input pixel p is (p - offset) / stride (offset 0: the HRNet Gaussian convention).
    """

    def __init__(self, points, centers, scales, flip_perm, offset: float = 0.0, sigma: float = 1.5):
        super().__init__()
        self.points = np.asarray(points, dtype=np.float64)            # N x K x 2 image pixels
        self.centers = np.asarray(centers, dtype=np.float64)          # N x 2
        self.scales = np.asarray(scales, dtype=np.float64)            # N x 2, the f = 1 crop
        self.flip_perm = list(flip_perm)
        self.offset = offset
        self.sigma = sigma

    def heatmap_points(self, sample: int, factor: float, flipped: bool) -> np.ndarray:
        matrix = get_affine_transform(self.centers[sample], self.scales[sample] * factor, 0, (INPUT_HW[1], INPUT_HW[0]))
        crop = affine_points(self.points[sample], matrix)
        if flipped:
            # The mirrored crop shows joint k where the original shows its mirror partner.
            crop = crop[self.flip_perm]
            crop[:, 0] = INPUT_HW[1] - 1 - crop[:, 0]
        return (crop - self.offset) / STRIDE

    def forward(self, images: torch.Tensor):
        ys = torch.arange(HM_HW[0], dtype=torch.float64)[:, None]
        xs = torch.arange(HM_HW[1], dtype=torch.float64)[None, :]
        maps = []
        for crop in images:
            factor, sample = float(crop[0, 0, 0]), int(round(float(crop[2, 0, 0])))
            flipped = bool(crop[1, 0, 0] > crop[1, 0, -1])
            per_joint = [torch.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * self.sigma ** 2))
                         for x, y in self.heatmap_points(sample, factor, flipped)]
            maps.append(torch.stack(per_joint))
        return [torch.stack(maps).float()]


def tagged_crops(factor: float, num: int) -> torch.Tensor:
    crops = torch.zeros(num, 3, *INPUT_HW)
    crops[:, 0] = factor
    crops[:, 1] = torch.arange(INPUT_HW[1], dtype=torch.float32)
    crops[:, 2] = torch.arange(num, dtype=torch.float32)[:, None, None]
    return crops


def peak_xy(heatmap: torch.Tensor) -> np.ndarray:
    """Sub-pixel peak of one h x w map: a parabola through the log values around the argmax, per axis
    (exact for a sampled Gaussian)."""
    hm = np.log(np.maximum(heatmap.double().numpy(), 1e-300))
    y, x = np.unravel_index(hm.argmax(), hm.shape)
    assert 0 < x < hm.shape[1] - 1 and 0 < y < hm.shape[0] - 1, "peak on the border"

    def vertex(left, mid, right):
        return 0.5 * (left - right) / (left - 2 * mid + right)

    return np.array([x + vertex(hm[y, x - 1], hm[y, x], hm[y, x + 1]), y + vertex(hm[y - 1, x], hm[y, x], hm[y + 1, x])])


def setup_stub(offset: float = 0.0):
    centers = np.array([[200.0, 150.0], [320.0, 260.0]])
    scales = np.array([[0.9, 1.2], [0.75, 1.0]])                       # 0.75 aspect: 48 / 64
    # K = 2 (a left/right pair), placed on the f = 1 heatmap well away from the crop centre (6, 8) so that
    # the scales disagree by more than half a pixel before resampling; sample 1's first joint is the centre.
    base = np.array([[[2.9, 3.63], [9.07, 12.38]],
                     [[0.0, 0.0], [3.02, 12.31]]])
    base[1, 0] = [(INPUT_HW[1] / 2 - offset) / STRIDE, (INPUT_HW[0] / 2 - offset) / STRIDE]
    points = crop_to_image_batch(base * STRIDE + offset, centers, scales, INPUT_HW)
    return ImagePointStub(points, centers, scales, flip_perm=[1, 0], offset=offset), centers, scales, points


def base_heatmap_points(stub: ImagePointStub, sample: int) -> np.ndarray:
    return stub.heatmap_points(sample, 1.0, flipped=False)


def small_conv_model() -> nn.Module:
    class TwoOutputs(nn.Module):
        """Like the pose models: a list of outputs, the last one read at test time."""

        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(8, 17, 3, stride=2, padding=1))

        def forward(self, images):
            out = self.body(images)
            return [out.detach() * 0, out]

    torch.manual_seed(0)
    return TwoOutputs().eval()


# ------------------------------------------------------------------------------------------- equivalences
@pytest.mark.parametrize("flip", [False, True])
def test_a_single_scale_of_one_is_predict_heatmaps_exactly(flip):
    model = small_conv_model()
    images = torch.randn(3, 3, *INPUT_HW)
    perm = COCO.flip_permutation() if flip else None
    expected = predict_heatmaps(model, images, perm, shift_heatmap=True)
    got = predict_heatmaps_multiscale(model, [images], [1.0], perm, shift_heatmap=True)
    assert torch.equal(got, expected)


def test_multiscale_is_the_mean_of_the_resampled_flip_tested_scales():
    model = small_conv_model()
    crops = [torch.randn(2, 3, *INPUT_HW) for _ in SCALES]
    perm = COCO.flip_permutation()
    got = predict_heatmaps_multiscale(model, crops, SCALES, perm, shift_heatmap=True, center_xy=(5.5, 7.5))
    expected = sum(heatmaps_to_base_frame(predict_heatmaps(model, c, perm, True), f, (5.5, 7.5))
                   for c, f in zip(crops, SCALES)) / len(SCALES)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert got.shape == (2, 17, *HM_HW) and got.dtype == torch.float32


def test_shapes_and_dtype_are_kept():
    maps = torch.rand(2, 5, *HM_HW, dtype=torch.float64)
    out = heatmaps_to_base_frame(maps, 1.3)
    assert out.shape == maps.shape and out.dtype == torch.float64
    assert heatmaps_to_base_frame(maps, 1.0) is maps


# ------------------------------------------------------------------------------------------- resampling
def test_resampling_by_hand():
    # f = 2 about (6, 8): base pixel (x, y) reads the 2x-window map at ((x - 6) / 2 + 6, (y - 8) / 2 + 8).
    maps = torch.zeros(1, 1, *HM_HW)
    maps[0, 0, 9, 7] = 1.0
    out = heatmaps_to_base_frame(maps, 2.0)[0, 0]
    # (7, 9) <- base (2 * (7 - 6) + 6, 2 * (9 - 8) + 8) = (8, 10); its neighbours read half-way points.
    assert out[10, 8] == pytest.approx(1.0)
    assert out[10, 9] == pytest.approx(0.5) and out[10, 7] == pytest.approx(0.5)
    assert out[11, 8] == pytest.approx(0.5) and out[11, 9] == pytest.approx(0.25)
    assert out.sum() == pytest.approx(4.0)        # a 2x-wider bilinear tent: (1 + 2 * 0.5)^2
    # f = 0.5 shrinks the window: base pixel 0 reads x = -6, outside the map -> 0 (zero padding, no edge copy).
    ones = torch.ones(1, 1, *HM_HW)
    small = heatmaps_to_base_frame(ones, 0.5)[0, 0]
    assert small[8, 0] == 0 and small[0, 6] == 0
    assert small[8, 6] == pytest.approx(1.0)      # the centre maps to itself
    # base x = 3 reads (3 - 6) * 2 + 6 = 0, the first column; x = 2.5 would read -1 (zero) -> half-way x = 2.75.
    assert small[8, 3] == pytest.approx(1.0) and small[8, 2] == 0


def test_the_crop_centre_is_fixed_by_resampling():
    maps = torch.zeros(1, 1, *HM_HW)
    maps[0, 0, 8, 6] = 1.0                        # (W/2 / stride, H/2 / stride) = (6, 8)
    for factor in SCALES:
        out = heatmaps_to_base_frame(maps, factor)[0, 0]
        assert out[8, 6] == pytest.approx(1.0)


@pytest.mark.parametrize("factor", SCALES)
def test_an_image_point_lands_on_the_same_base_pixel_at_every_scale(factor):
    stub, _, _, _ = setup_stub()
    raw = stub(tagged_crops(factor, 2))[-1]
    resampled = heatmaps_to_base_frame(raw, factor)
    for sample in range(2):
        truth = base_heatmap_points(stub, sample)
        for joint in range(2):
            peak = peak_xy(resampled[sample, joint])
            assert np.abs(peak - truth[joint]).max() < 0.5
            # the f-crop alone puts it elsewhere: the resampling is what brings it back
            if factor != 1.0 and not (sample == 1 and joint == 0):
                assert np.abs(peak_xy(raw[sample, joint]) - truth[joint]).max() > 0.5


@pytest.mark.parametrize("flip", [False, True])
def test_multiscale_decodes_to_the_known_image_point(flip):
    stub, centers, scales, points = setup_stub()
    codec = GaussianHeatmap(INPUT_HW, HM_HW, sigma=2)
    crops = [tagged_crops(f, 2) for f in SCALES]
    heatmaps = predict_heatmaps_multiscale(stub, crops, SCALES, flip_perm=[1, 0] if flip else None, shift_heatmap=True)
    assert heatmaps.shape == (2, 2, *HM_HW) and heatmaps.dtype == torch.float32
    for sample in range(2):
        truth = base_heatmap_points(stub, sample)
        for joint in range(2):
            assert np.abs(peak_xy(heatmaps[sample, joint]) - truth[joint]).max() < 0.5
    coords, _ = codec.decode(heatmaps)
    image_xy = crop_to_image_batch(coords, centers, scales, INPUT_HW)
    heatmap_pixel = STRIDE * scales[:, :1, None] * 200.0 / INPUT_HW[1]        # image px per heatmap px
    assert (np.abs(image_xy - points) < heatmap_pixel).all()


def test_each_codec_alignment_keeps_its_points_across_scales():
    # Under Torch7's / MSPN's alignment (heatmap point g on input pixel stride * g + stride / 2) the crop centre
    # is heatmap point (5.5, 7.5), not (6, 8). A joint at the crop centre gives a map mirror-symmetric about
    # (5.5, 7.5); resampled about that point it stays exactly symmetric, about the Gaussian codec's (6, 8) not.
    stub, _, _, _ = setup_stub(offset=STRIDE / 2)
    center = crop_center_on_heatmap(Torch7Gaussian(INPUT_HW, HM_HW, sigma=1.0))
    assert center == (5.5, 7.5)
    for factor in (0.5, 0.8, 1.3, 2.0):
        raw = stub(tagged_crops(factor, 2))[-1][1, 0]
        torch.testing.assert_close(raw, raw.flip(0).flip(1), rtol=0, atol=1e-5)
        right = heatmaps_to_base_frame(raw[None, None], factor, center)[0, 0]
        torch.testing.assert_close(right, right.flip(1), rtol=0, atol=1e-5)
        torch.testing.assert_close(right, right.flip(0), rtol=0, atol=1e-5)
        wrong = heatmaps_to_base_frame(raw[None, None], factor)[0, 0]
        assert (wrong - wrong.flip(1)).abs().max() > 0.02 and (wrong - wrong.flip(0)).abs().max() > 0.02


# ------------------------------------------------------------------------------------------- codec centres
def test_crop_centre_on_the_heatmap_of_each_codec():
    assert crop_center_on_heatmap(GaussianHeatmap((256, 192), (64, 48), sigma=2)) == (24.0, 32.0)
    assert crop_center_on_heatmap(MegviiHeatmap((256, 192), (64, 48), kernel=7)) == (23.5, 31.5)
    assert crop_center_on_heatmap(Torch7Gaussian((256, 256), (64, 64), sigma=1.0)) == (31.5, 31.5)
    cpm = CPMBeliefMap((368, 368), (46, 46))
    cx, cy = crop_center_on_heatmap(cpm)
    assert (cx, cy) == (22.5625, 22.5625)
    # Caffe's grid: cell g on crop pixel grid_x[0] + stride * g, so this point is the crop centre 184.
    assert cpm.grid_x[0] + 8 * cx == pytest.approx(184.0)
    # and MSPN's decoder maps a cell x to stride * x + stride / 2
    assert 4 * 23.5 + 2 == 96


def test_unknown_codec_is_refused():
    class Other:
        input_hw, heatmap_hw = (64, 48), (16, 12)
    with pytest.raises(ValueError, match="Other"):
        crop_center_on_heatmap(Other())


# ------------------------------------------------------------------------------------------- bad input
def test_bad_input_raises_value_error():
    model = small_conv_model()
    a, b = torch.randn(2, 3, *INPUT_HW), torch.randn(3, 3, *INPUT_HW)
    with pytest.raises(ValueError, match="2 crop batches for 3 scales"):
        predict_heatmaps_multiscale(model, [a, a], [0.8, 1.0, 1.2])
    with pytest.raises(ValueError, match="batch size 3"):
        predict_heatmaps_multiscale(model, [a, b], [1.0, 1.2])
    with pytest.raises(ValueError, match="same input size"):
        predict_heatmaps_multiscale(model, [a, torch.randn(2, 3, 32, 48)], [1.0, 1.2])
    with pytest.raises(ValueError, match="at least one scale"):
        predict_heatmaps_multiscale(model, [], [])
    with pytest.raises(ValueError, match="positive"):
        predict_heatmaps_multiscale(model, [a], [0.0])
    with pytest.raises(ValueError, match="N x C x H x W"):
        predict_heatmaps_multiscale(model, [a[0]], [1.0])
    with pytest.raises(ValueError, match="positive"):
        heatmaps_to_base_frame(torch.zeros(1, 1, 4, 4), -1.0)
    with pytest.raises(ValueError, match="N x C x h x w"):
        heatmaps_to_base_frame(torch.zeros(4, 4), 1.2)


def test_config_scales_are_checked():
    assert check_test_scales([1, 0.8, 1.2]) == [1.0, 0.8, 1.2]
    with pytest.raises(ConfigError, match="test.scales.*at least one"):
        check_test_scales([])
    with pytest.raises(ConfigError, match="test.scales.*positive"):
        check_test_scales([1.0, -0.5])
    with pytest.raises(ConfigError, match="positive"):
        check_test_scales([float("nan")])


# ------------------------------------------------------------------------------------------- the recipe
def _record(box=None, center=None, scale=None, path="unused.png"):
    return PersonRecord(path, np.zeros((17, 3)), box=None if box is None else np.array(box, dtype=float),
                        center=None if center is None else np.array(center, dtype=float),
                        scale=None if scale is None else np.array(scale, dtype=float))


@pytest.mark.parametrize("record", [_record(box=[110, 60, 100, 170]), _record(center=[250, 180], scale=[1.1, 1.1])])
def test_box_padding_times_f_is_the_same_centre_with_an_f_times_larger_window(record):
    base = TopDownDataset([record], COCO, INPUT_HW, [], box_padding=1.25)
    center, scale, _, _ = base.crop_params(record, 640, None)
    for factor in SCALES:
        wider = TopDownDataset([record], COCO, INPUT_HW, [], box_padding=1.25 * factor)
        c, s, rotation, flipped = wider.crop_params(record, 640, None)
        np.testing.assert_array_equal(c, center)
        np.testing.assert_allclose(s, scale * factor, rtol=1e-12)
        assert rotation == 0.0 and not flipped


def test_end_to_end_with_dataset_crops_of_a_real_image(tmp_path):
    # A bright blob at a known image point; the "model" reads the crop at input pixels stride * g (the
    # Gaussian codec's alignment), so its heatmap peaks where the blob is.
    height, width = 400, 300
    blob = np.array([195.4, 103.7])
    ys, xs = np.mgrid[:height, :width]
    image = 255.0 * np.exp(-((xs - blob[0]) ** 2 + (ys - blob[1]) ** 2) / (2 * 9.0 ** 2))
    path = tmp_path / "blob.png"
    cv2.imwrite(str(path), np.repeat(np.rint(image).astype(np.uint8)[..., None], 3, axis=2))
    record = _record(box=[110, 60, 120, 160], path=str(path))        # centre (170, 140), 150 px window
    loaders = [TopDownDataset([record], COCO, INPUT_HW, [], box_padding=1.25 * f, mean=(0, 0, 0), std=(1, 1, 1))
               for f in SCALES]
    items = [d[0] for d in loaders]

    class Subsample(nn.Module):
        def forward(self, images):
            return [images[:, :1, ::STRIDE, ::STRIDE]]

    crops = [item["image"][None] for item in items]
    heatmaps = predict_heatmaps_multiscale(Subsample(), crops, SCALES, flip_perm=[0], shift_heatmap=False)
    codec = GaussianHeatmap(INPUT_HW, HM_HW, sigma=2)
    coords, _ = codec.decode(heatmaps)
    center = items[0]["center"].numpy()[None]
    scale = items[0]["scale"].numpy()[None] / SCALES[0]        # the f = 1 crop's scale
    image_xy = crop_to_image_batch(coords, center, scale, INPUT_HW)[0, 0]
    heatmap_pixel = STRIDE * 150.0 / INPUT_HW[1]                 # 12.5 image px
    assert np.abs(image_xy - blob).max() < 0.5 * heatmap_pixel
    # every scale alone, brought into the base frame, finds it too; read as if it were the base frame, it
    # would miss by more than half a heatmap pixel
    for item, factor in zip(items, SCALES):
        raw = Subsample()(item["image"][None])[-1]
        alone = crop_to_image_batch(codec.decode(heatmaps_to_base_frame(raw, factor))[0], center, scale, INPUT_HW)
        assert np.abs(alone[0, 0] - blob).max() < 0.5 * heatmap_pixel
        unaligned = crop_to_image_batch(codec.decode(raw)[0], center, scale, INPUT_HW)
        if factor in (0.7, 1.3):
            assert np.abs(unaligned[0, 0] - blob).max() > 0.5 * heatmap_pixel
