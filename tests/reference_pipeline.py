"""Test oracles for the data pipeline: the official per-joint target loops of each paper's code, the previous
vectorised encoders, and the top-down dataset as it was before it was made fast (full-size decode, ``cvtColor``,
float conversion and normalisation on the crop). The tests check the library against them; the pipeline benchmark
(benchmarks/pipeline_bench.py) times the library against them."""
from __future__ import annotations

import time
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from posekit.codecs import GaussianHeatmap
from posekit.codecs.cpm import EXPONENT_CUTOFF, CPMBeliefMap
from posekit.codecs.megvii import MegviiHeatmap, _tap_indices, separable_blur
from posekit.codecs.torch7 import Torch7Gaussian
from posekit.data.dataset import TopDownDataset, pack_sample
from posekit.data.images import read_image
from posekit.errors import DataError
from posekit.data.transforms import affine_points, flip_keypoints, get_affine_transform, warp_image


# ------------------------------------------------------------------------------------ per-joint encoders

def reference_encode(codec: Any, xy: np.ndarray, visibility: np.ndarray,
                     others: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """One output's target drawn joint by joint, transcribing the official code (HRNet ``generate_target``,
    MSPN ``generate_heatmap``, Torch7 ``drawGaussian``, Caffe ``putGaussianMaps``). Slow; the oracle the
    vectorised encoders are tested against. Non-finite coordinates count as unlabelled."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    visibility = np.asarray(visibility).reshape(-1)
    if isinstance(codec, GaussianHeatmap):
        return _hrnet_per_joint(codec, xy, visibility)
    if isinstance(codec, MegviiHeatmap):
        return _mspn_per_joint(codec, xy, visibility)
    if isinstance(codec, Torch7Gaussian):
        return _torch7_per_joint(codec, xy, visibility)
    if isinstance(codec, CPMBeliefMap):
        return _caffe_per_joint(codec, xy, visibility, others)
    raise TypeError(f"no per-joint reference for {type(codec).__name__}")


def _hrnet_per_joint(codec: GaussianHeatmap, xy: np.ndarray, vis: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    h, w = codec.heatmap_hw
    sigma = codec.sigma
    tmp = sigma * 3
    target = np.zeros((len(xy), h, w), dtype=np.float32)
    weight = np.zeros(len(xy), dtype=np.float32)
    for j in range(len(xy)):
        if not np.isfinite(xy[j]).all():
            continue
        weight[j] = 1.0 if vis[j] > 0 else 0.0
        mu_x = int(xy[j, 0] / codec.stride_xy[0] + 0.5)
        mu_y = int(xy[j, 1] / codec.stride_xy[1] + 0.5)
        ul = [int(mu_x - tmp), int(mu_y - tmp)]
        br = [int(mu_x + tmp + 1), int(mu_y + tmp + 1)]
        if ul[0] >= w or ul[1] >= h or br[0] < 0 or br[1] < 0:
            weight[j] = 0.0
            continue
        size = 2 * tmp + 1
        x = np.arange(0, size, 1, np.float64)
        y = x[:, None]
        x0 = y0 = size // 2
        g = np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma ** 2))
        g_x = max(0, -ul[0]), min(br[0], w) - ul[0]
        g_y = max(0, -ul[1]), min(br[1], h) - ul[1]
        img_x = max(0, ul[0]), min(br[0], w)
        img_y = max(0, ul[1]), min(br[1], h)
        if weight[j] > 0.5:
            target[j][img_y[0]:img_y[1], img_x[0]:img_x[1]] = g[g_y[0]:g_y[1], g_x[0]:g_x[1]]
    return target, weight


def _mspn_per_joint(codec: MegviiHeatmap, xy: np.ndarray, vis: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    h, w = codec.heatmap_hw
    in_h, in_w = codec.input_hw
    target = np.zeros((len(xy), h, w), dtype=np.float32)
    weight = np.asarray(vis, dtype=np.float32).copy()
    for k in range(len(xy)):
        x, y = xy[k]
        if not (np.isfinite(x) and np.isfinite(y) and 0 <= x <= in_w - 1 and 0 <= y <= in_h - 1):
            weight[k] = 0.0
        if weight[k] < 1:
            continue
        impulse = np.zeros((h, w))
        impulse[int(y * h / in_h), int(x * w / in_w)] = 1.0
        blurred = separable_blur(impulse, codec.kernel)
        peak = blurred.max()
        if peak <= 1e-8:
            continue
        target[k] = blurred / (peak / 255)
    return target, weight


def _torch7_per_joint(codec: Torch7Gaussian, xy: np.ndarray, vis: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``drawGaussian`` in Lua's 1-based indices, including its left/top clipping (``border_quirk``)."""
    h, w = codec.heatmap_hw
    r = codec.radius
    offsets = (np.arange(codec.size) - r) / codec.std
    patch = np.exp(-0.5 * (offsets[:, None] ** 2 + offsets[None, :] ** 2))
    target = np.zeros((len(xy), h, w), dtype=np.float32)
    weight = np.zeros(len(xy), dtype=np.float32)
    for k in range(len(xy)):
        if not (vis[k] > 0 and np.isfinite(xy[k]).all()):
            continue
        pt = [int(np.trunc(xy[k, 0] / codec.stride_xy[0])) + 1, int(np.trunc(xy[k, 1] / codec.stride_xy[1])) + 1]
        ul = [pt[0] - r, pt[1] - r]
        br = [pt[0] + r, pt[1] + r]
        if ul[0] > w or ul[1] > h or br[0] < 1 or br[1] < 1:
            continue
        weight[k] = 1.0
        if codec.border_quirk:
            g_x1, g_y1 = max(1, -ul[0]), max(1, -ul[1])
        else:
            g_x1, g_y1 = max(1, 2 - ul[0]), max(1, 2 - ul[1])
        img_x = max(1, ul[0]), min(br[0], w)
        img_y = max(1, ul[1]), min(br[1], h)
        g_x2 = g_x1 + img_x[1] - img_x[0]
        g_y2 = g_y1 + img_y[1] - img_y[0]
        region = target[k, img_y[0] - 1:img_y[1], img_x[0] - 1:img_x[1]]
        region[:] = np.minimum(region + patch[g_y1 - 1:g_y2, g_x1 - 1:g_x2], 1.0)
    return target, weight


def _caffe_per_joint(codec: CPMBeliefMap, xy: np.ndarray, vis: np.ndarray,
                     others: Optional[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """Caffe ``generateLabelMap``: per joint, the person of the crop then the others, add then clip to 1."""
    h, w = codec.heatmap_hw
    people = [np.concatenate([xy, np.asarray(vis, dtype=np.float64)[:, None]], axis=1)]
    if codec.people == "all" and others is not None:
        people += list(np.asarray(others, dtype=np.float64))
    parts = np.zeros((len(xy), h, w), dtype=np.float64)
    for k in range(len(xy)):
        for person in people:
            cx, cy, v = person[k]
            if not (v > 0 and np.isfinite(cx) and np.isfinite(cy)):
                continue
            exponent = (((codec.grid_x[None, :] - cx) ** 2 + (codec.grid_y[:, None] - cy) ** 2) / 2.0
                        / codec.sigma / codec.sigma)
            parts[k] = np.minimum(parts[k] + np.where(exponent > EXPONENT_CUTOFF, 0.0, np.exp(-exponent)), 1.0)
    if codec.background:
        maximum = parts.max(axis=0) if len(xy) else np.zeros((h, w))
        parts = np.concatenate([parts, np.maximum(1.0 - maximum, 0.0)[None]], axis=0)
    return parts.astype(np.float32), np.ones(len(parts), dtype=np.float32)


# ------------------------------------------------------------------ the pipeline before it was made fast

_TAPS_CACHE: Dict[Tuple[int, int, int], Tuple[np.ndarray, np.ndarray]] = {}


def previous_encode(codec: Any, xy: np.ndarray, visibility: np.ndarray,
                    others: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """The encoders as they were before the table look-ups (already vectorised over joints): the baseline of
    the benchmark. Same outputs as the current encoders (tests), except NaN joints there gave NaN maps."""
    if isinstance(codec, GaussianHeatmap):
        h, w = codec.heatmap_hw
        weight = (np.asarray(visibility) > 0).astype(np.float32)
        tmp = codec.sigma * 3
        size = 2 * tmp + 1
        mu = np.trunc(xy / codec.stride_xy + 0.5)
        ul = np.trunc(mu - tmp)
        br = np.trunc(mu + tmp + 1)
        outside = (ul[:, 0] >= w) | (ul[:, 1] >= h) | (br[:, 0] < 0) | (br[:, 1] < 0)
        weight[outside] = 0.0
        centre = ul + size // 2
        xs = np.arange(w, dtype=np.float64)
        ys = np.arange(h, dtype=np.float64)
        gx = np.exp(-((xs[None, :] - centre[:, :1]) ** 2) / (2 * codec.sigma ** 2))
        gy = np.exp(-((ys[None, :] - centre[:, 1:]) ** 2) / (2 * codec.sigma ** 2))
        gx *= (xs[None, :] >= ul[:, :1]) & (xs[None, :] < br[:, :1])
        gy *= (ys[None, :] >= ul[:, 1:]) & (ys[None, :] < br[:, 1:])
        heatmaps = gy[:, :, None] * gx[:, None, :]
        heatmaps *= (weight > 0.5)[:, None, None]
        return heatmaps.astype(np.float32).reshape(len(xy), h, w), weight
    if isinstance(codec, MegviiHeatmap):
        h, w = codec.heatmap_hw
        key = (h, w, len(codec.kernel))   # the previous encoder kept these per codec
        if key not in _TAPS_CACHE:
            _TAPS_CACHE[key] = (_tap_indices(h, len(codec.kernel)), _tap_indices(w, len(codec.kernel)))
        taps_y, taps_x = _TAPS_CACHE[key]
        weight = codec.weights(xy, visibility)
        drawn = weight >= 1
        xy = np.where(drawn[:, None], np.asarray(xy, dtype=np.float64), 0.0)
        col = np.floor(xy[:, 0] * w / codec.input_hw[1]).astype(np.int64)
        row = np.floor(xy[:, 1] * h / codec.input_hw[0]).astype(np.int64)
        profile_y = ((taps_y[None] == row[:, None, None]) * codec.kernel).sum(axis=2)
        profile_x = ((taps_x[None] == col[:, None, None]) * codec.kernel).sum(axis=2)
        heatmaps = profile_y[:, :, None] * profile_x[:, None, :]
        peak = heatmaps.reshape(len(weight), -1).max(axis=1)
        scale = np.where(drawn & (peak > 1e-8), 255.0 / np.maximum(peak, 1e-300), 0.0)
        heatmaps *= scale[:, None, None]
        return heatmaps.astype(np.float32), weight
    if isinstance(codec, Torch7Gaussian):
        h, w = codec.heatmap_hw
        xy = np.asarray(xy, dtype=np.float64)[:, :2]
        labelled = (np.asarray(visibility) > 0) & np.isfinite(xy).all(axis=1)
        cell = codec.cells(np.where(labelled[:, None], xy, 0.0))
        r = codec.radius
        outside = ((cell[:, 0] - r > w - 1) | (cell[:, 1] - r > h - 1) | (cell[:, 0] + r < 0) | (cell[:, 1] + r < 0))
        weight = (labelled & ~outside).astype(np.float32)
        heatmaps = codec._profile(h, cell[:, 1])[:, :, None] * codec._profile(w, cell[:, 0])[:, None, :]
        heatmaps *= weight[:, None, None]
        return heatmaps.astype(np.float32), weight
    if isinstance(codec, CPMBeliefMap):
        num = len(xy)
        points = np.asarray(xy, dtype=np.float64)[None]
        labelled = ((np.asarray(visibility) > 0) & np.isfinite(xy).all(axis=1))[None]
        if codec.people == "all" and others is not None and len(others):
            others = np.asarray(others, dtype=np.float64)
            points = np.concatenate([points, others[..., :2]], axis=0)
            labelled = np.concatenate([labelled, (others[..., 2] > 0) & np.isfinite(others[..., :2]).all(axis=2)], axis=0)
        safe = np.where(labelled[..., None], points, 0.0)
        ex = (codec.grid_x[None, None, :] - safe[..., :1]) ** 2 / (2.0 * codec.sigma ** 2)
        ey = (codec.grid_y[None, None, :] - safe[..., 1:]) ** 2 / (2.0 * codec.sigma ** 2)
        exponent = ey[..., :, None] + ex[..., None, :]
        values = np.where(exponent > EXPONENT_CUTOFF, 0.0, np.exp(-exponent))
        values *= labelled[..., None, None]
        parts = np.minimum(values.sum(axis=0), 1.0)
        if codec.background:
            maximum = parts.max(axis=0) if num else np.zeros(codec.heatmap_hw)
            parts = np.concatenate([parts, np.maximum(1.0 - maximum, 0.0)[None]], axis=0)
        return parts.astype(np.float32), np.ones(len(parts), dtype=np.float32)
    return codec.encode(xy, visibility, others)


class ReferenceDataset(Dataset):
    """The straightforward pipeline of a :class:`TopDownDataset` (its records, settings and augmentation draws),
    as ``__getitem__`` was before it was made fast: full-size RGB decode, warp, float conversion, jitter and
    normalisation on the crop, transposition, one ``encode`` call per output (:func:`previous_encode`, or
    :func:`reference_encode` for the per-joint loops). Same keys and, but for the reduced decoding, the same
    values."""

    def __init__(self, fast: TopDownDataset, encode: Any = previous_encode):
        self.fast = fast
        self.encode = encode
        self.stage_times: Optional[Dict[str, float]] = None

    def __len__(self) -> int:
        return len(self.fast)

    def set_epoch(self, epoch: int) -> None:
        self.fast.set_epoch(epoch)

    def __getitem__(self, index: Union[int, Tuple[int, int]]) -> Dict[str, Any]:
        ds = self.fast
        epoch, index = (index if isinstance(index, tuple) else (ds.epoch, index))
        times = self.stage_times
        last = time.thread_time()

        def lap(stage: str) -> None:
            nonlocal last
            if times is not None:
                now = time.thread_time()
                times[stage] = times.get(stage, 0.0) + now - last
                last = now

        record = ds.records[index]
        ok = True
        try:
            image = read_image(record.image_path, rgb=ds.color_rgb)
        except DataError:
            if not ds.skip_unreadable:
                raise
            ok = False
            width, height = record.image_size or (ds.input_hw[1], ds.input_hw[0])
            image = None
        if image is not None:
            height, width = image.shape[:2]
        lap("decode")
        rng = np.random.default_rng([ds.seed, epoch, index]) if ds.train else None
        center, scale, rotation, flipped = ds.crop_params(record, width, rng)
        keypoints = record.keypoints.astype(np.float64)
        matrix = get_affine_transform(center, scale, rotation, (ds.input_hw[1], ds.input_hw[0]))
        if flipped:
            keypoints = flip_keypoints(keypoints, width, ds.flip_perm)
            mirror = np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
            warp_matrix = matrix @ mirror
        else:
            warp_matrix = matrix
        lap("augment")
        if image is not None:
            crop = warp_image(image, warp_matrix, ds.input_hw)
            lap("warp")
            crop = crop.astype(np.float32)
            if rng is not None and ds.augment.color_jitter:
                lo, hi = ds.augment.color_jitter
                crop = np.clip(crop * rng.uniform(lo, hi, 3).astype(np.float32), 0.0, 255.0)
            crop = (crop - ds.mean) * ds.inv_std
        else:
            crop = np.zeros((*ds.input_hw, 3), dtype=np.float32)
        image_tensor = np.ascontiguousarray(crop.transpose(2, 0, 1))
        if ds.center_map is not None:
            image_tensor = np.concatenate([image_tensor, ds.center_map[None]], axis=0)
        lap("normalise")
        visibility = keypoints[:, 2].astype(np.float32) if ok else np.zeros(len(keypoints), np.float32)
        crop_xy = affine_points(keypoints[:, :2], matrix)
        others = None
        if record.extras.get("others") is not None and len(record.extras["others"]):
            others = np.asarray(record.extras["others"], dtype=np.float64).copy()
            if flipped:
                others = np.stack([flip_keypoints(o, width, ds.flip_perm) for o in others])
            others[..., :2] = affine_points(others[..., :2], matrix)
        targets, weights = [], []
        for codec in ds.codecs:
            heatmap, weight = self.encode(codec, crop_xy, visibility, others)
            targets.append(torch.from_numpy(heatmap))
            weights.append(torch.from_numpy(weight))
        lap("targets")
        sample = pack_sample(image_tensor, targets, weights, record, center, scale, rotation, flipped, index, ok)
        lap("pack")
        return sample


# ------------------------------------------------------------------------------------- stand-in images
