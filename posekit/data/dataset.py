"""The top-down dataset: PersonRecord -> (normalised crop, one target per supervised output, meta).

The crop itself (window, affine, warp, normalisation) is :class:`.topdown.TopDownCrop`, shared with the predictor.
One affine matrix carries every geometric augmentation (half-body, scale, rotation, flip); the same matrix
maps the keypoints, so image and targets cannot drift apart. Augmentation randomness comes from a
generator seeded by (seed, epoch, index): a sample's augmentation does not depend on which worker draws it,
which keeps runs reproducible and resumable.

Speed (measured by :mod:`benchmarks/pipeline_bench.py`). In training, a JPEG whose crop window is 2, 4 or 8
times the input size is decoded at 1/2, 1/4 or 1/8 of its size in the DCT (``reduced_decode``), the crop affine
composed with the reduced image's pixel grid so that coordinates stay exact; and, in data-loader worker
processes, only the rows down to the lowest one the crop reads are decoded (``partial_decode``; bit-identical).
The colour order, float conversion, colour jitter and normalisation are one per-channel look-up table written
straight into the channels-first tensor; identical codecs (MSPN's repeated kernels, the hourglass stacks) are
encoded once per sample, and :func:`collate_samples` stacks and ships their targets once per batch.
"""
from __future__ import annotations

import math
import typing
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, default_collate, get_worker_info

from ..codecs import GaussianHeatmap, HeatmapCodec
from ..config import AugmentConfig, Distribution
from ..errors import ConfigError, DataError
from ..skeletons import Skeleton
from .images import decode_image, decode_jpeg_rows, jpeg_frame, read_file_bytes, read_image
from .records import PersonRecord
from .topdown import TopDownCrop, record_center_scale
from .transforms import PIXEL_STD, affine_points, flip_keypoints

# Decoding reductions OpenCV offers for JPEG (IMREAD_REDUCED_COLOR_2/4/8), largest first.
REDUCE_FACTORS = (8, 4, 2)
# Rows decoded below the lowest row a crop reads, in full-size rows per unit of reduction: libjpeg's chroma
# upsampling reads the next chroma row (up to 4 image rows further for 4:2:0 / 4:1:1), so one 16-row MCU row keeps
# every row the crop reads identical to a whole decode (tests: 4 rows already do on COCO's photos, 0 do not).
_ROW_MARGIN = 16
_DISTRIBUTIONS: Tuple[str, ...] = typing.get_args(Distribution)

# record_center_scale is defined with the crop (topdown.py) and imported from here by the readers' tests.
__all__ = ["TopDownDataset", "collate_samples", "pack_sample", "codec_groups", "record_center_scale"]


def codec_groups(codecs: Sequence[HeatmapCodec]) -> List[int]:
    """For each codec, the index of the first codec that encodes identically, i.e. has the same
    :attr:`HeatmapCodec.target_key` (MSPN repeats 5 kernels over its 16 outputs, the hourglass repeats one target
    per stack): each distinct target is drawn once per sample."""
    firsts: Dict[Any, int] = {}
    return [firsts.setdefault(codec.target_key, i) for i, codec in enumerate(codecs)]


def collate_samples(samples: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """``default_collate`` for :class:`TopDownDataset` samples, except that a target (or weight) shared by several
    outputs (identical codecs, see :func:`codec_groups`) is stacked once and repeated in the batch's list: a
    DataLoader worker then stacks and sends MSPN's 5 distinct targets instead of 16 (the 8 hourglass stacks':
    1 instead of 8). The repeated entries are one tensor, so nothing may modify a batch's targets in place."""
    first = samples[0]
    lists = ("targets", "target_weights")
    batch = default_collate([{k: v for k, v in s.items() if k not in lists} for s in samples])
    for key in lists:
        items = first[key]
        stacked: List[torch.Tensor] = []
        for i, item in enumerate(items):
            same = next((j for j in range(i) if items[j] is item), None)
            if same is not None and all(s[key][i] is s[key][same] for s in samples):
                stacked.append(stacked[same])
            else:
                stacked.append(default_collate([s[key][i] for s in samples]))
        batch[key] = stacked
    return batch


def pack_sample(image: np.ndarray, targets: List[torch.Tensor], weights: List[torch.Tensor], record: PersonRecord,
                center: np.ndarray, scale: Any, rotation: float, flipped: bool, index: int, ok: bool) -> Dict[str, Any]:
    """One training/evaluation sample as the data loader hands it on (see :class:`TopDownDataset`)."""
    return {
        "image": torch.from_numpy(image),
        "targets": targets,
        "target_weights": weights,
        "center": torch.from_numpy(center.astype(np.float64)),
        "scale": torch.from_numpy(np.asarray(scale, dtype=np.float64)),
        "rotation": torch.tensor(rotation, dtype=torch.float64),
        "flipped": torch.tensor(flipped),
        "keypoints": torch.from_numpy(record.keypoints.astype(np.float64)),
        "index": torch.tensor(index),
        "image_id": torch.tensor(-1 if record.image_id is None else int(record.image_id)),
        "score": torch.tensor(float(record.score), dtype=torch.float64),
        "ok": torch.tensor(ok),
    }


class TopDownDataset(Dataset):
    """Crops one person per sample.

    Each item is a dict: ``image`` (3 x H x W float tensor, normalised), ``targets`` / ``target_weights``
    (lists, one entry per codec: K x h x w and K), ``center``/``scale``/``rotation``/``flipped`` (the crop),
    ``keypoints`` (K x 3 in the image, for evaluation), ``index``, ``image_id``, ``score``, ``ok`` (False when
    the image could not be read: the sample is then all zeros with zero weights and counted by the trainer).

    The crop settings (``input_hw``, ``mean``, ``std``, ``color_rgb``, ``box_padding``, ``box_extension``,
    ``center_map_sigma``) make the dataset's :class:`TopDownCrop` (``self.crop``); ``crop`` gives one instead.
    ``reduced_decode`` (default: on for training, off for evaluation): JPEGs whose crop window is at least 2, 4
    or 8 times the input are decoded at that fraction of their size. The crop then comes from DCT-averaged
    pixels instead of bilinear samples of the full image: it equals the crop of the area-reduced image within
    about 0.3 grey levels on average, and differs from the full-size bilinear crop by that crop's aliasing
    (tests/data/test_pipeline_speed.py). Keypoints, targets and the random augmentation are exactly those of a
    full decode; samples that are not reduced are bit-identical to it.
    ``partial_decode`` (default None: only in DataLoader worker processes): decode a sequential JPEG only down
    to the lowest row the crop reads (:func:`.images.decode_jpeg_rows`; the crop is bit-identical), which points
    the process's stderr at /dev/null during the decode to hide libjpeg's expected warning.
    An index may be an ``(epoch, index)`` pair instead of an index (the epoch then overrides ``set_epoch``).
    """

    def __init__(
        self,
        records: Sequence[PersonRecord],
        skeleton: Skeleton,
        input_hw: Tuple[int, int],
        codecs: Sequence[GaussianHeatmap],
        train: bool = False,
        augment: Optional[AugmentConfig] = None,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        color_rgb: bool = True,
        box_padding: float = 1.25,
        box_extension: Sequence[float] = (0.0, 0.0),
        seed: int = 0,
        skip_unreadable: bool = False,
        center_map_sigma: Optional[float] = None,
        reduced_decode: Optional[bool] = None,
        partial_decode: Optional[bool] = None,
        crop: Optional[TopDownCrop] = None,
    ):
        self.records = list(records)
        self.skeleton = skeleton
        self.crop = crop or TopDownCrop(input_hw, box_padding, tuple(box_extension), tuple(mean), tuple(std),
                                        color_rgb, center_map_sigma)
        self.codecs = list(codecs)
        self.codec_groups = codec_groups(self.codecs)
        self.train = train
        self.augment = augment or AugmentConfig()
        # A config file's value was checked when it was read; an AugmentConfig made in Python was not.
        if self.augment.distribution not in _DISTRIBUTIONS:
            raise ConfigError(f"augment.distribution must be {', '.join(_DISTRIBUTIONS)}, got "
                              f"{self.augment.distribution!r}", "augment.distribution")
        self.seed = seed
        self.epoch = 0
        self.skip_unreadable = skip_unreadable
        self.reduced_decode = train if reduced_decode is None else bool(reduced_decode)
        self.partial_decode = partial_decode
        self.flip_perm = skeleton.flip_permutation()

    # The crop's settings, where the dataset kept them before the crop had its own object.
    input_hw = property(lambda self: self.crop.input_hw)
    color_rgb = property(lambda self: self.crop.color_rgb)
    mean = property(lambda self: self.crop.mean_levels)
    inv_std = property(lambda self: self.crop.inv_std_levels)
    center_map = property(lambda self: self.crop.center_map)

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def sample_rng(self, index: int, epoch: Optional[int] = None) -> Optional[np.random.Generator]:
        """The augmentation generator of a sample (None when not training): seeded by (seed, epoch, index)."""
        if not self.train:
            return None
        return np.random.default_rng([self.seed, self.epoch if epoch is None else epoch, index])

    def reduce_factor(self, scale: Sequence[float]) -> int:
        """The JPEG decoding reduction for a crop of ``scale``: the largest of 8, 4, 2 that still leaves at least
        one decoded pixel per input pixel (the crop window at least that many times the input), else 1."""
        image_pixels_per_input_pixel = float(scale[0]) * PIXEL_STD / self.input_hw[1]
        return next((r for r in REDUCE_FACTORS if image_pixels_per_input_pixel >= r), 1)

    def crop_params(self, record: PersonRecord, image_width: int, rng: Optional[np.random.Generator]
                    ) -> Tuple[np.ndarray, np.ndarray, float, bool]:
        """Centre, scale, rotation and flip of a sample (with augmentation when ``rng`` is given)."""
        aug, crop = self.augment, self.crop
        if rng is None:
            center, scale = crop.center_scale(record)
            return center, scale, 0.0, False
        center, scale = crop.center_scale(record, aug.box_extension, rng, aug.random_box_extension)
        rotation, flipped = 0.0, False
        if aug.half_body_prob > 0 and record.num_labelled > aug.half_body_min_joints and rng.random() < aug.half_body_prob:
            upper = self.skeleton.upper_body if aug.half_body_upper is None else aug.half_body_upper
            lower = [i for i in range(self.skeleton.num_keypoints) if i not in set(upper)]
            half = crop.joints_center_scale(record.keypoints, upper, lower, rng, aug.half_body_scale,
                                            style=aug.half_body_style, random_extension=aug.half_body_extension)
            if half is not None:
                center, scale = half
        sf, rf = aug.scale_factor, aug.rotation_factor
        scale = scale * aug.scale_shrink
        if aug.distribution == "normal":
            scale = scale * float(np.clip(rng.standard_normal() * sf + 1, 1 - sf, 1 + sf))
        elif aug.distribution == "uniform":
            scale = scale * float(rng.uniform(1 - sf, 1 + sf))
        else:   # torch7
            scale = scale * float(2.0 ** np.clip(rng.standard_normal() * sf, -2 * sf, 2 * sf))
        if rng.random() <= aug.rotation_prob:
            if aug.distribution == "uniform":
                rotation = float(rng.uniform(-rf, rf))
            else:
                rotation = float(np.clip(rng.standard_normal() * rf, -2 * rf, 2 * rf))
        if aug.flip and rng.random() <= 0.5:
            flipped = True
            center = center.copy()
            center[0] = image_width - 1 - center[0]
        return center, scale, rotation, flipped

    def rows_read(self, warp_matrix: np.ndarray, reduce: int = 1) -> int:
        """How many image rows, from the top, a decode must deliver for a crop warped with ``warp_matrix`` (image
        -> crop): down to the lowest row bilinear sampling touches, plus a margin that keeps libjpeg's handling
        of the last rows away from them (``reduce``: the decoding reduction, which coarsens that handling)."""
        h, w = self.input_hw
        corners = np.array([[0.0, 0.0, w - 1.0, w - 1.0], [0.0, h - 1.0, 0.0, h - 1.0]])
        inverse = cv2.invertAffineTransform(warp_matrix)
        lowest = float((inverse[1, :2] @ corners).max() + inverse[1, 2])
        if not math.isfinite(lowest):
            return 1 << 16
        return max(1, math.ceil(lowest) + 2 + _ROW_MARGIN * reduce)

    def _cut_rows(self) -> bool:
        if self.partial_decode is not None:
            return self.partial_decode
        return get_worker_info() is not None

    def encode_targets(self, crop_xy: np.ndarray, visibility: np.ndarray, others: Optional[np.ndarray] = None
                       ) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        """One (target, weight) per codec for keypoints in crop pixels; identical codecs share one drawing."""
        targets: List[torch.Tensor] = []
        weights: List[torch.Tensor] = []
        for i, (codec, first) in enumerate(zip(self.codecs, self.codec_groups)):
            if first == i:
                heatmap, weight = codec.encode(crop_xy, visibility, others)
                targets.append(torch.from_numpy(heatmap))
                weights.append(torch.from_numpy(weight))
            else:   # the same target as an earlier output: shared (batching copies it anyway)
                targets.append(targets[first])
                weights.append(weights[first])
        return targets, weights

    def keypoints_in_crop(self, record: PersonRecord, matrix: np.ndarray, flipped: bool, width: int
                          ) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        """The record's joints in crop pixels (K x 2), their visibility (K) and the other people's joints (P x K x 3,
        crop pixels; None without them): what the codecs encode. ``flipped`` mirrors them in an image ``width`` wide
        first, with the keypoint set's flip pairs."""
        keypoints = record.keypoints.astype(np.float64)
        others = record.extras.get("others")
        others = np.asarray(others, dtype=np.float64).copy() if others is not None and len(others) else None
        if flipped:
            keypoints = flip_keypoints(keypoints, width, self.flip_perm)
            if others is not None:
                others = np.stack([flip_keypoints(o, width, self.flip_perm) for o in others])
        if others is not None:
            others[..., :2] = affine_points(others[..., :2], matrix)
        return affine_points(keypoints[:, :2], matrix), keypoints[:, 2].astype(np.float32), others

    def __getitem__(self, index: Union[int, Tuple[int, int]]) -> Dict[str, Any]:
        # An (epoch, index) pair names the epoch itself: a sampler that yields pairs lets persistent workers, whose
        # dataset copies never see set_epoch, draw each epoch's augmentation.
        epoch, index = index if isinstance(index, tuple) else (self.epoch, index)
        record = self.records[index]
        crop = self.crop
        rng = self.sample_rng(index, epoch)
        params, data, image = None, None, None
        reduce, rows = 1, 0
        ok = True
        try:
            # One read of the file. The augmentation needs only the image width (for the flip), so it is drawn
            # from the JPEG header before decoding; the crop then chooses the decoding reduction and the rows.
            data = read_file_bytes(record.image_path) if self.reduced_decode else None
        except DataError:
            if not self.skip_unreadable:
                raise
            ok = False
        frame = jpeg_frame(data) if data is not None else None
        if frame is not None:
            params = self.crop_params(record, frame.width, rng)
            reduce = self.reduce_factor(params[1])
            rows = frame.height
            if frame.rows_cuttable and self._cut_rows():
                center, scale, rotation, flipped = params
                warp_matrix = crop.warp_matrix(crop.matrix(center, scale, rotation), flipped, frame.width)
                rows = min(frame.height, self.rows_read(warp_matrix, reduce))
        try:
            # Always BGR: the channel order is folded into the normalisation.
            if frame is not None:
                image = decode_jpeg_rows(data, frame, rows, record.image_path, reduce)
            elif data is not None:
                image = decode_image(data, record.image_path, rgb=False)
            elif ok:
                image = read_image(record.image_path, rgb=False)
        except DataError:
            if not self.skip_unreadable:
                raise
            ok = False
        if image is not None and frame is not None and image.shape[:2] != (-(-rows // reduce), -(-frame.width // reduce)):
            # The header and the decoder disagree (an unusual file): decode it whole and draw the augmentation again.
            image, reduce, params = decode_image(data, record.image_path, rgb=False), 1, None
        if image is None:
            width = record.image_size[0] if record.image_size else self.input_hw[1]
            params = None
        else:
            width = frame.width if params is not None else image.shape[1]
        if params is None:
            if frame is not None:
                rng = self.sample_rng(index, epoch)   # a fresh generator: the same draws as if nothing had been drawn
            params = self.crop_params(record, width, rng)
        center, scale, rotation, flipped = params
        matrix = crop.matrix(center, scale, rotation)

        jitter = None
        if image is not None and rng is not None and self.augment.color_jitter:
            lo, hi = self.augment.color_jitter
            jitter = rng.uniform(lo, hi, 3).astype(np.float32)
        pixels = None if image is None else crop.cut(image, crop.warp_matrix(matrix, flipped, width, reduce))
        image_tensor = crop.normalise(pixels, pixels_rgb=False, jitter=jitter)

        xy, visibility, others = self.keypoints_in_crop(record, matrix, flipped, width)
        if not ok:
            visibility = np.zeros_like(visibility)
        targets, weights = self.encode_targets(xy, visibility, others)
        return pack_sample(image_tensor, targets, weights, record, center, scale, rotation, flipped, index, ok)
