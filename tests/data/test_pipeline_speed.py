"""The fast data pipeline gives what the straightforward one gives (equivalence, not timing).

- every vectorised encoder equals the official per-joint loops (reference_pipeline.reference_encode) and the
  previous encoders bit for bit, joints on the border, outside, unlabelled and non-finite included;
- identical codecs are drawn once and shared;
- decoding a JPEG at 1/2, 1/4, 1/8 with the crop affine composed with the reduced grid gives the crop of the
  area-reduced image within a fraction of a grey level (interior), i.e. it is aligned; keypoint targets are
  exactly those of a full decode;
- decoding only the rows down to the crop gives the crop of the whole decode bit for bit;
- TopDownDataset equals the previous __getitem__ (reference_pipeline.ReferenceDataset) bit for bit without reduced
  decoding, and in everything but reduced samples' pixels with it;
- bench_data runs on a tiny synthetic config and returns the documented keys.
"""
from __future__ import annotations

import argparse
import json
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from posekit.codecs import GaussianHeatmap, OutputSpec, build_codec
from posekit.codecs.cpm import CPMBeliefMap
from posekit.codecs.megvii import MegviiHeatmap
from posekit.codecs.torch7 import Torch7Gaussian
from posekit.config import AugmentConfig
from posekit.data.dataset import TopDownDataset, codec_groups
from posekit.data.images import decode_jpeg_rows, jpeg_frame, jpeg_size_wh, read_file_bytes, read_image
from reference_pipeline import ReferenceDataset, previous_encode, reference_encode

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from pipeline_bench import ROW_KEYS, bench_data, format_rows, main_from_args, speedups, stand_in_records  # noqa: E402
from posekit.data.records import attach_others
from posekit.data.synthetic import generate_synthetic
from posekit.data.transforms import get_affine_transform, reduced_grid_matrix
from posekit.models.mspn import mspn_output_specs
from posekit.skeletons import SYNTHETIC


# ------------------------------------------------------------------------------------------------ encoders

def _joints(rng, input_hw, n, stride):
    """Joints inside, near every border (within a few strides), far outside, on stride / half-stride ties."""
    h, w = input_hw
    inside = rng.uniform([0, 0], [w, h], size=(n, 2))
    near = rng.uniform([-8 * stride, -8 * stride], [w + 8 * stride, h + 8 * stride], size=(n, 2))
    near[: n // 2, 0] = rng.choice([-1, 1], n // 2) * rng.uniform(0, 8 * stride, n // 2) + rng.choice([0, w - 1], n // 2)
    near[n // 2:, 1] = rng.choice([-1, 1], n - n // 2) * rng.uniform(0, 8 * stride, n - n // 2) + rng.choice([0, h - 1], n - n // 2)
    outside = rng.uniform([-3 * w, -3 * h], [4 * w, 4 * h], size=(n, 2))
    ties = stride / 2.0 * rng.integers(-12, 2 * max(h, w) // stride + 12, size=(n, 2))
    edges = np.array([[0.0, 0.0], [w - 1.0, h - 1.0], [w - 1.0 + 1e-9, 3.0], [-1e-9, 5.0], [w, h], [-0.5, -0.5]])
    joints = np.concatenate([inside, near, outside, ties, edges])
    joints[rng.choice(len(joints), 4, replace=False), rng.integers(0, 2, 4)] = [np.nan, np.inf, -np.inf, np.nan]
    vis = rng.choice([0, 1, 2], size=len(joints), p=[0.15, 0.25, 0.6])
    return joints, vis


CODECS = [
    ("hrnet sigma 2", GaussianHeatmap((256, 192), (64, 48), 2.0)),
    ("hrnet sigma 3 384x288", GaussianHeatmap((384, 288), (96, 72), 3.0)),
    ("hrnet sigma 1.5", GaussianHeatmap((256, 192), (64, 48), 1.5)),
    ("hrnet 256x256 stride 8", GaussianHeatmap((256, 256), (32, 32), 2.0)),
    *[(f"mspn kernel {k}", MegviiHeatmap((256, 192), (64, 48), kernel=k)) for k in (5, 7, 9, 11, 15)],
    ("mspn mpii 256x256", MegviiHeatmap((256, 256), (64, 64), kernel=9)),
    ("torch7 quirk", Torch7Gaussian((256, 256), (64, 64), sigma=1.0)),
    ("torch7 no quirk", Torch7Gaussian((256, 256), (64, 64), sigma=1.0, border_quirk=False)),
    ("torch7 exact sigma 2", Torch7Gaussian((256, 256), (64, 64), sigma=2.0, exact_sigma=True)),
    *[(f"ke side stride {s}", Torch7Gaussian((256, 256), (256 // s, 256 // s), sigma=1.0, border_quirk=False))
      for s in (8, 16, 32)],
    ("cpm self + background", CPMBeliefMap((368, 368), (46, 46), sigma=7.0)),
    ("cpm self, no background", CPMBeliefMap((368, 368), (46, 46), sigma=7.0, background=False)),
    ("cpm all people", CPMBeliefMap((368, 368), (46, 46), sigma=7.0, people="all")),
]


@pytest.mark.parametrize("name, codec", CODECS, ids=[name for name, _ in CODECS])
def test_vectorised_encoder_equals_per_joint_loops(name, codec):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    stride = codec.input_hw[1] // codec.heatmap_hw[1]
    joints, vis = _joints(rng, codec.input_hw, 30, stride)
    others = None
    if isinstance(codec, CPMBeliefMap):
        others = np.concatenate([rng.uniform(-200, 560, (3, len(joints), 2)), rng.integers(0, 3, (3, len(joints), 1))], axis=2)
        others[0, :, 2] = 0    # a person with no labelled joint
        others[1, :, :2] += 2000   # a person far outside the crop
    target, weight = codec.encode(joints, vis, others)
    ref_target, ref_weight = reference_encode(codec, joints, vis, others)
    assert target.dtype == np.float32 and weight.dtype == np.float32
    assert target.shape == ref_target.shape and np.isfinite(target).all()
    np.testing.assert_array_equal(weight, ref_weight)
    # The official loops evaluate a 2-D exp (or divide by peak / 255) where the codecs multiply 1-D profiles.
    np.testing.assert_allclose(target, ref_target, rtol=1e-6, atol=1e-6)
    # Every case is exercised: drawn and empty maps (weights 0 but for CPM, whose weights are all 1).
    k = len(joints)
    drawn = target[:k].reshape(k, -1).max(axis=1) > 0
    assert drawn.any() and (~drawn).any()
    assert isinstance(codec, CPMBeliefMap) or (ref_weight == 0).any()


@pytest.mark.parametrize("name, codec", CODECS, ids=[name for name, _ in CODECS])
def test_encoders_equal_the_previous_ones_bit_for_bit(name, codec):
    rng = np.random.default_rng(7)
    joints, vis = _joints(rng, codec.input_hw, 40, codec.input_hw[1] // codec.heatmap_hw[1])
    finite = np.isfinite(joints).all(axis=1)
    joints, vis = joints[finite], vis[finite]   # the previous HRNet encoder drew NaN maps for NaN joints
    others = None
    if isinstance(codec, CPMBeliefMap):
        others = np.concatenate([rng.uniform(-200, 560, (2, len(joints), 2)), rng.integers(0, 3, (2, len(joints), 1))], axis=2)
    target, weight = codec.encode(joints, vis, others)
    old_target, old_weight = previous_encode(codec, joints, vis, others)
    np.testing.assert_array_equal(weight, old_weight)
    np.testing.assert_array_equal(target, old_target)


def test_non_finite_joints_get_empty_maps_and_zero_weight():
    joints = np.array([[np.nan, 10.0], [20.0, np.inf], [40.0, 40.0]])
    for codec in (GaussianHeatmap((256, 192), (64, 48), 2.0), MegviiHeatmap((256, 192), (64, 48), kernel=7),
                  Torch7Gaussian((256, 256), (64, 64))):
        target, weight = codec.encode(joints, np.array([2, 2, 2]))
        assert np.isfinite(target).all() and not target[:2].any() and target[2].max() > 0
        np.testing.assert_array_equal(weight[:2], [0, 0])


def test_identical_outputs_are_encoded_once():
    specs = mspn_output_specs(4)
    codecs = [build_codec(s, (256, 192)) for s in specs]
    groups = codec_groups(codecs)
    assert len(codecs) == 16 and len(set(groups)) == 5
    for i, first in enumerate(groups):
        assert first <= i and codecs[i].kernel_size == codecs[first].kernel_size
    # Hourglass stacks: one target; different strides or sigmas are different targets.
    stacks = [build_codec(OutputSpec(target="torch7", sigma=1.0), (256, 256)) for _ in range(8)]
    assert codec_groups(stacks) == [0] * 8
    mixed = [build_codec(OutputSpec(target="torch7", sigma=1.0, stride=s), (256, 256)) for s in (4, 8, 4)]
    assert codec_groups(mixed) == [0, 1, 0]
    assert codec_groups([GaussianHeatmap((256, 192), (64, 48), 2.0), GaussianHeatmap((256, 192), (64, 48), 3.0)]) == [0, 1]


# ----------------------------------------------------------------------------------------- decoding

def _smooth_jpeg(path, hw=(853, 1281), quality=95):
    """Low-frequency colour fields (periods >= 90 px): a picture that survives reduction, with odd sizes."""
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    channels = [128 + 60 * np.sin(xx / 29.0 + c) * np.cos(yy / 37.0 - c) + 40 * np.sin((xx + yy) / 71.0 + 2 * c)
                for c in range(3)]
    image = np.clip(np.stack(channels, axis=-1), 0, 255).astype(np.uint8)
    cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return str(path)


def _warp(image, matrix, reduce=1):
    if reduce > 1:
        matrix = matrix @ reduced_grid_matrix(reduce)
    return cv2.warpAffine(image, matrix, (48, 64), flags=cv2.INTER_LINEAR).astype(np.float64)


def test_reduced_grid_matrix_maps_block_centres():
    m = reduced_grid_matrix(4)
    # reduced pixel 0 averages full pixels 0..3 (centre 1.5), pixel 2 averages 8..11 (centre 9.5)
    np.testing.assert_allclose(m @ [0, 0, 1], [1.5, 1.5, 1])
    np.testing.assert_allclose(m @ [2, 1, 1], [9.5, 5.5, 1])
    np.testing.assert_array_equal(reduced_grid_matrix(1), np.eye(3))


@pytest.mark.parametrize("reduce, area_tol, full_tol", [(2, 0.5, 0.8), (4, 0.8, 1.0), (8, 1.2, 1.5)])
def test_reduced_decode_with_composed_affine_is_aligned(tmp_path, reduce, area_tol, full_tol):
    path = _smooth_jpeg(tmp_path / "smooth.jpg")
    full = read_image(path, rgb=False)
    h, w = full.shape[:2]
    small = read_image(path, rgb=False, reduce=reduce)
    assert small.shape[:2] == (-(-h // reduce), -(-w // reduce))   # JPEG DCT scaling rounds up
    area = cv2.resize(full[: h // reduce * reduce, : w // reduce * reduce], (w // reduce, h // reduce),
                      interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(reduce)
    errors = {"area": [], "full": [], "unshifted": []}
    for _ in range(16):
        ratio = rng.uniform(reduce, 1.3 * reduce)   # image pixels per crop pixel, as the dataset reduces
        window = 48 * ratio * 1.7                   # the rotated window's extent stays inside the image
        center = rng.uniform([window / 2, window / 2], [w - window / 2, h - window / 2])
        matrix = get_affine_transform(center, np.array([48, 64]) * ratio / 200, rng.uniform(-45, 45), (48, 64))
        crop = _warp(small, matrix, reduce)
        errors["area"].append(np.abs(crop - _warp(area, matrix, reduce)).mean())
        errors["full"].append(np.abs(crop - _warp(full, matrix)).mean())
        unshifted = cv2.warpAffine(small, matrix @ np.diag([reduce, reduce, 1.0]), (48, 64), flags=cv2.INTER_LINEAR)
        errors["unshifted"].append(np.abs(unshifted - _warp(area, matrix, reduce)).mean())
    # Mean |difference| in grey levels: the reduced decode is the area-reduced image (DCT scaling ~ block mean)
    # and, on this smooth picture, the full-size crop; a grid without the half-pixel shift is clearly worse.
    assert np.mean(errors["area"]) < area_tol
    assert np.mean(errors["full"]) < full_tol
    assert np.mean(errors["unshifted"]) > 2 * np.mean(errors["area"])


def test_reduced_decode_on_real_photos_within_stated_tolerance(shared_data):
    """COCO photos: the reduced crop equals the area-reduced image's crop within 0.6 grey levels on average
    (measured 0.3). Its difference to the bilinear crop of the full image (measured ~5 levels at 1/2, ~9 at 1/4
    on these 48 x 64 crops) is the same as the area-reduced crop's: the aliasing of bilinear sampling at these
    ratios, which the reduced decode does not have, not a shift."""
    paths = sorted((shared_data / "coco" / "train2017").glob("*.jpg"))[:6]
    rng = np.random.default_rng(0)
    for reduce in (2, 4):
        area_err, full_err, area_vs_full = [], [], []
        for path in paths:
            full = read_image(path, rgb=False)
            h, w = full.shape[:2]
            small = read_image(path, rgb=False, reduce=reduce)
            area = cv2.resize(full[: h // reduce * reduce, : w // reduce * reduce], (w // reduce, h // reduce),
                              interpolation=cv2.INTER_AREA)
            for _ in range(3):
                ratio = reduce * 1.1
                center = rng.uniform([0.4 * w, 0.4 * h], [0.6 * w, 0.6 * h])
                matrix = get_affine_transform(center, np.array([48, 64]) * ratio / 200, rng.uniform(-30, 30), (48, 64))
                crop = _warp(small, matrix, reduce)
                area_crop = _warp(area, matrix, reduce)
                full_crop = _warp(full, matrix)
                area_err.append(np.abs(crop - area_crop).mean())
                full_err.append(np.abs(crop - full_crop).mean())
                area_vs_full.append(np.abs(area_crop - full_crop).mean())
        assert np.mean(area_err) < 0.6
        assert abs(np.mean(full_err) - np.mean(area_vs_full)) < 0.5


def _sampling_variants(tmp_path):
    base = cv2.imread(_smooth_jpeg(tmp_path / "base.jpg", (300, 333)))
    noise = np.random.default_rng(0).integers(0, 60, base.shape, dtype=np.uint8)
    base = cv2.add(base, noise)   # texture, so that MCU rows differ
    variants = {}
    for name, params in [("420", []),
                         ("444", [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]),
                         ("422", [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422]),
                         ("411", [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_411]),
                         ("gray", None), ("progressive", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
                         ("restarts", [cv2.IMWRITE_JPEG_RST_INTERVAL, 2])]:
        path = tmp_path / f"{name}.jpg"
        image = cv2.cvtColor(base, cv2.COLOR_BGR2GRAY) if name == "gray" else base
        assert cv2.imwrite(str(path), image, params or [])
        variants[name] = str(path)
    return variants


def test_jpeg_frame_reads_the_header(tmp_path):
    variants = _sampling_variants(tmp_path)
    for name, path in variants.items():
        frame = jpeg_frame(read_file_bytes(path))
        assert (frame.width, frame.height) == (333, 300)
        assert frame.rows_cuttable == (name not in ("progressive", "restarts"))
        assert jpeg_size_wh(read_file_bytes(path)) == (333, 300)
    png = tmp_path / "a.png"
    cv2.imwrite(str(png), np.zeros((5, 7, 3), np.uint8))
    assert jpeg_frame(read_file_bytes(str(png))) is None
    assert jpeg_frame(b"\xff\xd8\xff\xd9") is None and jpeg_frame(b"\xff\xd8\xff\xe0\x00") is None


def test_decoding_only_the_rows_above_the_crop_gives_the_same_crop(tmp_path, capfd):
    variants = _sampling_variants(tmp_path)
    dataset = TopDownDataset([], SYNTHETIC, (64, 48), [])
    rng = np.random.default_rng(3)
    cut = 0
    for name, path in variants.items():
        data = read_file_bytes(path)
        frame = jpeg_frame(data)
        for reduce in (1, 2, 4, 8):
            whole = read_image(path, rgb=False, reduce=reduce)
            for _ in range(12):
                ratio = rng.uniform(0.5, 1.5) * reduce
                center = rng.uniform([0, -40], [333, 200])
                matrix = get_affine_transform(center, np.array([48, 64]) * ratio / 200, rng.uniform(-90, 90), (48, 64))
                if rng.random() < 0.5:
                    matrix = matrix @ np.array([[-1.0, 0, 332], [0, 1, 0], [0, 0, 1]])
                rows = dataset.rows_read(matrix, reduce)
                part = decode_jpeg_rows(data, frame, rows, path, reduce)
                if frame.rows_cuttable and rows < frame.height:
                    assert part.shape[0] == -(-rows // reduce) < whole.shape[0]
                    cut += 1
                else:
                    np.testing.assert_array_equal(part, whole)
                np.testing.assert_array_equal(_warp(part, matrix, reduce), _warp(whole, matrix, reduce))
    assert cut > 40
    # libjpeg's expected "extraneous bytes" warning went to /dev/null, and stderr works again afterwards.
    import sys
    print("after", file=sys.stderr)
    err = capfd.readouterr().err
    assert "Corrupt JPEG" not in err and "after" in err


# ----------------------------------------------------------------------------------------- the dataset

@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    """Synthetic 640 x 480 JPEG figures, two people per image (for CPM's all-people stage)."""
    root = tmp_path_factory.mktemp("figures")
    records = generate_synthetic(root, 6, seed=5, image_size=(480, 640))
    second = []
    for r in records:
        other = r.keypoints.copy()
        other[:, 0] = np.clip(other[:, 0] + 60, 0, 639)
        second.append(type(r)(r.image_path, other, box=r.box + [60, 0, 0, 0], image_id=r.image_id,
                              image_size=r.image_size))
    records = records + second
    attach_others(records)
    return records


def _codecs_of_every_kind():
    mspn = [build_codec(s, (64, 48)) for s in mspn_output_specs(2, kernels=(7, 5, 5, 3, 3))]
    return [GaussianHeatmap((64, 48), (16, 12), 2.0), *mspn, Torch7Gaussian((64, 48), (16, 12), sigma=1.0),
            Torch7Gaussian((64, 48), (8, 6), sigma=1.0), CPMBeliefMap((64, 48), (8, 6), sigma=7.0, people="all"),
            CPMBeliefMap((64, 48), (8, 6), sigma=7.0)]


def _dataset(records, **kw):
    augment = AugmentConfig(color_jitter=[0.6, 1.4], half_body_prob=0.3, half_body_min_joints=3, rotation_prob=0.8,
                            scale_factor=0.5)
    return TopDownDataset(records, SYNTHETIC, (64, 48), _codecs_of_every_kind(), train=True, augment=augment,
                          center_map_sigma=9.0, seed=11, **kw)


def _assert_same(a, b, image=True):
    for key in a:
        if key in ("targets", "target_weights"):
            assert len(a[key]) == len(b[key])
            for x, y in zip(a[key], b[key]):
                assert torch.equal(x, y), key
        elif key != "image" or image:
            assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("color_rgb", [True, False])
def test_dataset_without_reduced_decoding_equals_the_previous_pipeline(figures, color_rgb):
    fast = _dataset(figures, reduced_decode=False, color_rgb=color_rgb)
    reference = ReferenceDataset(_dataset(figures, reduced_decode=False, color_rgb=color_rgb))
    flips = set()
    for epoch in range(3):
        for i in range(len(figures)):
            a, b = fast[(epoch, i)], reference[(epoch, i)]
            _assert_same(a, b)
            flips.add(bool(a["flipped"]))
    assert flips == {True, False}


def test_dataset_with_reduced_and_partial_decoding_keeps_targets_and_draws(figures):
    exact = _dataset(figures, reduced_decode=False)
    reduced = _dataset(figures, reduced_decode=True, partial_decode=False)
    partial = _dataset(figures, reduced_decode=True, partial_decode=True)
    counts = {"same": 0, "reduced": 0}
    for epoch in range(3):
        for i in range(len(figures)):
            a, b, c = exact[(epoch, i)], reduced[(epoch, i)], partial[(epoch, i)]
            _assert_same(a, b, image=False)    # targets, weights, crop, flip: the same draws
            _assert_same(b, c)                 # cutting the rows below the crop changes nothing
            record = figures[i]
            factor = exact.reduce_factor(a["scale"].numpy())
            if factor == 1:
                assert torch.equal(a["image"], b["image"])
                counts["same"] += 1
            else:
                # A smoother crop of the same place: mean |difference| in normalised units (grey levels / 58);
                # measured <= 0.09 on these noisy backgrounds (the full-size bilinear crop's aliasing).
                assert float((a["image"][:3] - b["image"][:3]).abs().mean()) < 0.15
                assert torch.equal(a["image"][3], b["image"][3])   # the centre-map channel
                counts["reduced"] += 1
            assert record.image_path.endswith(".jpg")
    assert counts["reduced"] > 5 and counts["same"] > 0


def test_epoch_index_pairs_equal_set_epoch(figures):
    a, b = _dataset(figures[:3]), _dataset(figures[:3])
    b.set_epoch(4)
    _assert_same(a[(4, 2)], b[2])
    assert not torch.equal(a[(3, 2)]["image"], b[2]["image"])


def test_unreadable_images_still_give_zero_samples_with_the_same_draws(figures, tmp_path):
    broken = tmp_path / "broken.jpg"
    data = open(figures[0].image_path, "rb").read()
    broken.write_bytes(data[: len(data) // 2])    # no end-of-image marker: refused
    record = type(figures[0])(str(broken), figures[0].keypoints.copy(), box=figures[0].box.copy(),
                              image_size=figures[0].image_size)
    fast = _dataset([record], reduced_decode=True, skip_unreadable=True)
    reference = ReferenceDataset(_dataset([record], reduced_decode=False, skip_unreadable=True))
    a, b = fast[0], reference[0]
    assert not bool(a["ok"]) and not a["image"][:3].any()
    _assert_same(a, b)


# -------------------------------------------------------------------------------------------- benchmark

def test_bench_data_on_a_tiny_synthetic_config(tmp_path):
    generate_synthetic(tmp_path / "data", 6, seed=1, image_size=(96, 128))
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "model: {name: hrnet_w32, num_keypoints: 14, kwargs: {width: 8, stem_width: 16, stage_modules: [1, 1, 1]}}\n"
        f"data: {{format: synthetic, root: {tmp_path / 'data'}, skeleton: synthetic, train_ann: annotations.json,\n"
        "       train_images: ., input_size: [64, 48]}\n"
        "augment: {half_body_prob: 0.0}\n")
    rows = bench_data(config, samples=8, workers=(0, 1), batch_size=2, rounds=1)
    assert rows and all(tuple(r) == ROW_KEYS for r in rows)
    seen = {(r["implementation"], r["mode"], r["workers"]) for r in rows}
    assert {("fast", "in-process", 0), ("reference", "in-process", 0), ("per-joint", "in-process", 0),
            ("fast", "loader", 0), ("reference", "loader", 1), ("fast", "targets", 0)} <= seen
    for r in rows:
        assert r["pipeline"] == "tiny" and r["images"] == "real" and r["samples_per_s"] > 0
        assert r["samples_per_cpu_s"] > 0 and r["samples_per_s_per_worker"] <= r["samples_per_s"]
        if r["mode"] == "in-process":
            stages = sum(r[k] for k in ("ms_decode", "ms_warp", "ms_targets", "ms_normalise", "ms_rest"))
            assert stages == pytest.approx(r["ms_total"], abs=1e-3) and r["ms_decode"] > 0
    ratios = speedups(rows)
    assert {(s["mode"], s["workers"]) for s in ratios} >= {("in-process", 0), ("loader", 1), ("targets", 0)}
    assert "fast / reference" in format_rows(rows)

    out = tmp_path / "bench.json"
    # `posekit bench --data CONFIG` (one path) or a list of paths; unknown-to-the-parser options take defaults.
    for data in (str(config), [str(config)]):
        args = argparse.Namespace(data=data, samples=8, workers=[0], set=["augment.flip=false"], json=str(out),
                                  batch_size=2, no_reference=True)
        assert main_from_args(args) == 0
        written = json.loads(out.read_text())
        assert {r["implementation"] for r in written["rows"]} == {"fast"} and written["speedups"] == []
        assert {r["pipeline"] for r in written["rows"]} == {"tiny"}


def test_builtin_synthetic_pipeline_config(tmp_path):
    from pipeline_bench import build_training_dataset, synthetic_config

    cfg = synthetic_config(tmp_path, images=2)
    cfg.model.kwargs = {"width": 8, "stem_width": 16, "stage_modules": [1, 1, 1]}
    dataset = build_training_dataset(cfg)
    assert len(dataset) == 2 and dataset.input_hw == (256, 192) and dataset.train and dataset.reduced_decode
    sample = dataset[0]
    assert sample["image"].shape == (3, 256, 192) and sample["targets"][0].shape == (14, 64, 48)


def test_stand_in_images_replace_missing_ones(tmp_path, figures):
    missing = [type(r)(str(tmp_path / f"nope{i // 2}.jpg"), r.keypoints, box=r.box, image_size=(320, 200) if i else None)
               for i, r in enumerate(figures[:4])]
    replaced = stand_in_records(missing, tmp_path / "stand_in")
    assert len({r.image_path for r in replaced}) == 2      # one picture per distinct image
    assert read_image(replaced[0].image_path).shape == (720, 1280, 3)   # MPII's usual size without image_size
    assert read_image(replaced[2].image_path).shape == (200, 320, 3)
    np.testing.assert_array_equal(replaced[1].keypoints, missing[1].keypoints)


def test_collate_stacks_shared_targets_once(figures):
    from torch.utils.data import default_collate

    from posekit.data.dataset import collate_samples

    dataset = _dataset(figures[:4])
    samples = [dataset[i] for i in range(4)]
    batch, plain = collate_samples(samples), default_collate(samples)
    assert batch.keys() == plain.keys()
    for key in plain:
        if isinstance(plain[key], list):
            assert len(batch[key]) == len(plain[key])
            assert all(torch.equal(a, b) for a, b in zip(batch[key], plain[key]))
        else:
            assert torch.equal(batch[key], plain[key])
    groups = dataset.codec_groups
    assert len(set(groups)) < len(groups)
    assert all(batch["targets"][i] is batch["targets"][g] for i, g in enumerate(groups))
    assert len({id(t) for t in batch["targets"]}) == len(set(groups))


def test_make_dataset_decodes_reduced_only_for_training_and_when_configured(figures):
    from posekit.config import Config
    from posekit.build import make_dataset

    cfg = Config()
    cfg.data.skeleton = "synthetic"
    assert make_dataset(cfg, figures, [], train=True).reduced_decode
    assert not make_dataset(cfg, figures, [], train=False).reduced_decode
    cfg.data.reduced_decode = False
    assert not make_dataset(cfg, figures, [], train=True).reduced_decode
