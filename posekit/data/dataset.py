"""The top-down dataset: PersonRecord -> (normalised crop, one target per supervised output, meta).

One affine matrix carries every geometric augmentation (half-body, scale, rotation, flip); the same matrix
maps the keypoints, so image and targets cannot drift apart. Augmentation randomness comes from a
generator seeded by (seed, epoch, index): a sample's augmentation does not depend on which worker draws it,
which keeps runs reproducible and resumable.

Speed (measured by :mod:`posekit.data.pipeline_bench`). In training, a JPEG whose crop window is 2, 4 or 8
times the input size is decoded at 1/2, 1/4 or 1/8 of its size in the DCT (``reduced_decode``), the crop affine
composed with the reduced image's pixel grid so that coordinates stay exact; and, in data-loader worker
processes, only the rows down to the lowest one the crop reads are decoded (``partial_decode``; bit-identical).
The colour order, float conversion, colour jitter and normalisation are one per-channel look-up table written
straight into the channels-first tensor; identical codecs (MSPN's repeated kernels, the hourglass stacks) are
encoded once per sample, and :func:`collate_samples` stacks and ships their targets once per batch.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, default_collate, get_worker_info

from ..codecs import GaussianHeatmap
from ..config import AugmentConfig
from ..errors import ConfigError, DataError
from ..skeletons import Skeleton
from .images import _SOF_MARKERS, decode_image, read_image
from .records import PersonRecord
from .transforms import (
    PIXEL_STD,
    affine_points,
    fit_aspect,
    flip_keypoints,
    get_affine_transform,
    half_body_center_scale,
    reduced_grid_matrix,
    warp_image,
)

# Decoding reductions OpenCV offers for JPEG (IMREAD_REDUCED_COLOR_2/4/8), largest first.
REDUCE_FACTORS = (8, 4, 2)
# C0/C1 are the sequential Huffman frames (the other start-of-frame markers: _SOF_MARKERS, images.py).
_SEQUENTIAL_HUFFMAN = frozenset({0xC0, 0xC1})
# Rows decoded below the lowest row a crop reads, in full-size rows per unit of reduction: libjpeg's chroma
# upsampling reads the next chroma row (up to 4 image rows further for 4:2:0 / 4:1:1), so one 16-row MCU row keeps
# every row the crop reads identical to a whole decode (tests: 4 rows already do on COCO's photos, 0 do not).
_ROW_MARGIN = 16


class JpegFrame(NamedTuple):
    """What the headers of a JPEG say before its scan."""

    width: int
    height: int
    height_offset: int      # byte offset of the frame header's 2-byte height
    rows_cuttable: bool     # sequential Huffman without restart markers: the bottom can be left undecoded


def jpeg_frame(data: bytes) -> Optional[JpegFrame]:
    """The frame of JPEG bytes from the segments before the first scan; None when they are not a JPEG or the
    headers are not laid out as in a well-formed file (the caller then decodes the file as it is)."""
    if data[:3] != b"\xff\xd8\xff":
        return None
    pos, end = 2, len(data)
    frame, restarts = None, False
    while pos + 4 <= end and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:   # a fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:   # stand-alone markers
            pos += 2
            continue
        if marker == 0xD9:
            return None
        if marker == 0xDA:
            if frame is None:
                return None
            return frame._replace(rows_cuttable=frame.rows_cuttable and not restarts)
        length = (data[pos + 2] << 8) | data[pos + 3]
        if marker in _SOF_MARKERS and frame is None:
            if pos + 9 > end:
                return None
            height = (data[pos + 5] << 8) | data[pos + 6]
            width = (data[pos + 7] << 8) | data[pos + 8]
            if not (width and height):
                return None
            frame = JpegFrame(width, height, pos + 5, marker in _SEQUENTIAL_HUFFMAN)
        elif marker == 0xDD and pos + 6 <= end:   # a restart interval
            restarts = restarts or ((data[pos + 4] << 8) | data[pos + 5]) != 0
        pos += 2 + length
    return None


def jpeg_size_wh(data: bytes) -> Optional[Tuple[int, int]]:
    """(width, height) of JPEG bytes from their frame header, or None (see :func:`jpeg_frame`)."""
    frame = jpeg_frame(data)
    return None if frame is None else (frame.width, frame.height)


_DEVNULL: Optional[int] = None


@contextlib.contextmanager
def _stderr_to_devnull() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the duration (libjpeg prints its warnings there itself)."""
    global _DEVNULL
    try:
        if _DEVNULL is None:
            _DEVNULL = os.open(os.devnull, os.O_WRONLY)
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        os.dup2(_DEVNULL, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def decode_jpeg_rows(data: bytes, frame: JpegFrame, rows: int, source: str, reduce: int = 1) -> np.ndarray:
    """The top ``rows`` rows of a JPEG (at 1/``reduce`` size: ceil(rows / reduce) rows), BGR.

    The frame header's height is lowered to ``rows``: libjpeg then stops decoding there, and those rows are
    exactly those of a whole decode except the last MCU row or two (chroma upsampling), which callers keep out
    of what they read. The data after them is skipped with a libjpeg warning ("extraneous bytes before marker")
    that libjpeg prints to stderr itself; it is expected here, so stderr is pointed at /dev/null meanwhile
    (the whole process's, which is why the dataset does this only in data-loader worker processes).
    """
    if not frame.rows_cuttable or rows >= frame.height:
        return decode_image(data, source, rgb=False, reduce=reduce)
    patched = bytearray(data)
    patched[frame.height_offset:frame.height_offset + 2] = max(1, int(rows)).to_bytes(2, "big")
    with _stderr_to_devnull():
        return decode_image(patched, source, rgb=False, reduce=reduce)


def read_file_bytes(path: str) -> bytes:
    """The bytes of an image file, with :func:`read_image`'s errors (for :func:`decode_image`)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise DataError("image file not found", path) from None
    except IsADirectoryError:
        raise DataError("is a directory, not an image file", path) from None
    except OSError as err:
        raise DataError(f"cannot read image file ({err.strerror})", path) from None
    if not data:
        raise DataError("image file is empty", path)
    return data


def record_center_scale(
    record: PersonRecord,
    aspect_ratio: float,
    padding: float,
    extension: Sequence[float] = (0.0, 0.0),
    rng: Optional[np.random.Generator] = None,
    random_extension: Sequence[float] = (0.0, 0.0),
) -> Tuple[np.ndarray, np.ndarray]:
    """The crop of a record: its box (COCO) or its centre/scale (MPII style: the person's extent / 200).

    The width and height grow by ``1 + extension`` (and, with ``rng``, by ``1 + U(0, 1) * random_extension``)
    before one side is enlarged to the aspect ratio (MSPN's box extension), then both are multiplied by
    ``padding`` (HRNet: 1.25, also for MPII's scale). With no extension this is HRNet's ``_xywh2cs``.
    """
    if record.center is not None and record.scale is not None:
        center = np.asarray(record.center, dtype=np.float64)
        w, h = np.asarray(record.scale, dtype=np.float64) * 200.0
    elif record.box is not None:
        x, y, w, h = (float(v) for v in record.box)
        center = np.array([x + 0.5 * w, y + 0.5 * h], dtype=np.float64)
    else:
        raise DataError("person record has neither a box nor centre/scale", record.image_path)
    w, h = w * (1 + extension[0]), h * (1 + extension[1])
    if rng is not None and any(random_extension):
        w, h = w * (1 + rng.random() * random_extension[0]), h * (1 + rng.random() * random_extension[1])
    w, h = fit_aspect(w, h, aspect_ratio)
    if not (0 < w < np.inf and 0 < h < np.inf):
        raise DataError(f"person crop has no area ({w:g} x {h:g} px): a box of zero size or a non-finite box/scale",
                        record.image_path)
    return center, np.array([w, h], dtype=np.float64) / 200.0 * padding


class _Laps:
    """Adds the CPU seconds of this thread since the previous lap to ``times[stage]`` (the benchmark's per-stage
    breakdown; CPU rather than wall time, so that other processes on the machine do not count)."""

    __slots__ = ("times", "last")

    def __init__(self, times: Dict[str, float]):
        self.times = times
        self.last = time.thread_time()

    def lap(self, stage: str) -> None:
        now = time.thread_time()
        self.times[stage] = self.times.get(stage, 0.0) + now - self.last
        self.last = now


class _NoLaps:
    __slots__ = ()

    def lap(self, stage: str) -> None:
        pass


_NO_LAPS = _NoLaps()


def _same_codec(a: Any, b: Any) -> bool:
    """True when two codecs are of one class with equal settings, so that they encode identically."""
    if a is b:
        return True
    if type(a) is not type(b) or not hasattr(a, "__dict__") or vars(a).keys() != vars(b).keys():
        return False
    for key, value in vars(a).items():
        other = vars(b)[key]
        if isinstance(value, np.ndarray) or isinstance(other, np.ndarray):
            if not (isinstance(value, np.ndarray) and isinstance(other, np.ndarray) and value.shape == other.shape
                    and np.array_equal(value, other)):
                return False
        elif type(value) is not type(other) or value != other:
            return False
    return True


def codec_groups(codecs: Sequence[Any]) -> List[int]:
    """For each codec, the index of the first codec that encodes identically (MSPN repeats 5 kernels over its
    16 outputs, the hourglass repeats one target per stack): each distinct target is drawn once per sample."""
    firsts: List[int] = []
    groups = []
    for i, codec in enumerate(codecs):
        first = next((j for j in firsts if _same_codec(codecs[j], codec)), None)
        if first is None:
            firsts.append(i)
            first = i
        groups.append(first)
    return groups


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

    ``reduced_decode`` (default: on for training, off for evaluation): JPEGs whose crop window is at least 2, 4
    or 8 times the input are decoded at that fraction of their size. The crop then comes from DCT-averaged
    pixels instead of bilinear samples of the full image: it equals the crop of the area-reduced image within
    about 0.3 grey levels on average, and differs from the full-size bilinear crop by that crop's aliasing
    (tests/test_pipeline_speed.py). Keypoints, targets and the random augmentation are exactly those of a
    full decode; samples that are not reduced are bit-identical to it.
    ``partial_decode`` (default None: only in DataLoader worker processes): decode a sequential JPEG only down
    to the lowest row the crop reads (:func:`decode_jpeg_rows`; the crop is bit-identical), which points the
    process's stderr at /dev/null during the decode to hide libjpeg's expected warning.
    An index may be an ``(epoch, index)`` pair instead of an index (the epoch then overrides ``set_epoch``).
    Setting ``stage_times`` to a dict makes each sample add its CPU seconds per stage (augment, decode, warp,
    normalise, targets, pack) to it.
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
    ):
        self.records = list(records)
        self.skeleton = skeleton
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.aspect_ratio = self.input_hw[1] / self.input_hw[0]
        self.codecs = list(codecs)
        self.codec_groups = codec_groups(self.codecs)
        self.train = train
        self.augment = augment or AugmentConfig()
        self.mean = np.asarray(mean, dtype=np.float32) * 255.0
        self.inv_std = 1.0 / (np.asarray(std, dtype=np.float32) * 255.0)
        self.color_rgb = color_rgb
        self.box_padding = box_padding
        self.box_extension = tuple(box_extension)
        self.seed = seed
        self.epoch = 0
        self.skip_unreadable = skip_unreadable
        self.reduced_decode = train if reduced_decode is None else bool(reduced_decode)
        self.partial_decode = partial_decode
        self.stage_times: Optional[Dict[str, float]] = None
        self.flip_perm = skeleton.flip_permutation()
        # CPM feeds a Gaussian at the person centre as an extra input channel; the crop is centred on the person.
        self.center_map = None
        if center_map_sigma:
            from ..codecs.cpm import center_map
            self.center_map = center_map(self.input_hw, center_map_sigma)

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

    def crop_params(self, record: PersonRecord, image_width: int, rng: Optional[np.random.Generator]):
        """Centre, scale, rotation and flip of a sample (with augmentation when ``rng`` is given)."""
        aug = self.augment
        if rng is None:
            center, scale = record_center_scale(record, self.aspect_ratio, self.box_padding, self.box_extension)
            return center, scale, 0.0, False
        center, scale = record_center_scale(record, self.aspect_ratio, self.box_padding, aug.box_extension, rng,
                                            aug.random_box_extension)
        rotation, flipped = 0.0, False
        keypoints = record.keypoints
        if aug.half_body_prob > 0 and record.num_labelled > aug.half_body_min_joints and rng.random() < aug.half_body_prob:
            upper = self.skeleton.upper_body if aug.half_body_upper is None else aug.half_body_upper
            lower = [i for i in range(self.skeleton.num_keypoints) if i not in set(upper)]
            half = half_body_center_scale(keypoints, upper, lower, self.aspect_ratio, rng, aug.half_body_scale,
                                          style=aug.half_body_style, random_extension=aug.half_body_extension)
            if half is not None:
                center, scale = half
        sf, rf = aug.scale_factor, aug.rotation_factor
        scale = scale * aug.scale_shrink
        if aug.distribution == "normal":
            scale = scale * float(np.clip(rng.standard_normal() * sf + 1, 1 - sf, 1 + sf))
        elif aug.distribution == "uniform":
            scale = scale * float(rng.uniform(1 - sf, 1 + sf))
        elif aug.distribution == "torch7":
            scale = scale * float(2.0 ** np.clip(rng.standard_normal() * sf, -2 * sf, 2 * sf))
        else:
            raise ConfigError(f"augment.distribution must be normal, uniform or torch7, got {aug.distribution!r}",
                              "augment.distribution")
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

    def lookup_tables(self, jitter: Optional[np.ndarray] = None) -> np.ndarray:
        """3 x 256 float32: the network value of each uint8 level per output channel (colour jitter, clamp,
        mean, 1 / std), computed with the float32 operations of the per-pixel formula, so the values are equal."""
        levels = np.arange(256, dtype=np.float32)[None, :]
        if jitter is not None:
            levels = np.clip(levels * np.asarray(jitter, dtype=np.float32)[:, None], 0.0, 255.0)
        return (levels - self.mean[:, None]) * self.inv_std[:, None]

    def _geometry(self, record: PersonRecord, params: Tuple[Any, ...], width: int
                  ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(keypoints, flipped when the crop is; the crop affine; the affine the image is warped with)."""
        center, scale, rotation, flipped = params
        keypoints = record.keypoints.astype(np.float64)
        matrix = get_affine_transform(center, scale, rotation, (self.input_hw[1], self.input_hw[0]))
        if not flipped:
            return keypoints, matrix, matrix
        keypoints = flip_keypoints(keypoints, width, self.flip_perm)
        # Mirroring x -> W - 1 - x folded into the crop matrix: one warp instead of flip + warp.
        mirror = np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        return keypoints, matrix, matrix @ mirror

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

    def __getitem__(self, index: Union[int, Tuple[int, int]]) -> Dict[str, Any]:
        # An (epoch, index) pair names the epoch itself: a sampler that yields pairs lets persistent workers, whose
        # dataset copies never see set_epoch, draw each epoch's augmentation.
        epoch, index = index if isinstance(index, tuple) else (self.epoch, index)
        record = self.records[index]
        laps = _NO_LAPS if self.stage_times is None else _Laps(self.stage_times)
        rng = self.sample_rng(index, epoch)
        params, geometry, frame, data, image = None, None, None, None, None
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
        laps.lap("decode")
        if frame is not None:
            params = self.crop_params(record, frame.width, rng)
            geometry = self._geometry(record, params, frame.width)
            reduce = self.reduce_factor(params[1])
            rows = frame.height
            if frame.rows_cuttable and self._cut_rows():
                rows = min(frame.height, self.rows_read(geometry[2], reduce))
        laps.lap("augment")
        try:
            # Always BGR: the channel order is folded into the normalisation below.
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
        expected_hw = None if frame is None else (-(-rows // reduce), -(-frame.width // reduce))
        if image is not None and frame is not None and image.shape[:2] != expected_hw:
            # The header and the decoder disagree (an unusual file): decode it whole and draw the augmentation again.
            image, reduce, params = decode_image(data, record.image_path, rgb=False), 1, None
        laps.lap("decode")
        if image is None:
            width = record.image_size[0] if record.image_size else self.input_hw[1]
            params = None
        else:
            width = frame.width if params is not None else image.shape[1]
        if params is None:
            if frame is not None:
                rng = self.sample_rng(index, epoch)   # a fresh generator: the same draws as if nothing had been drawn
            params = self.crop_params(record, width, rng)
            geometry = self._geometry(record, params, width)
        center, scale, rotation, flipped = params
        keypoints, matrix, warp_matrix = geometry
        if reduce > 1:
            warp_matrix = warp_matrix @ reduced_grid_matrix(reduce)
        laps.lap("augment")

        channels = 3 if self.center_map is None else 4
        if image is not None:
            crop = warp_image(image, warp_matrix, self.input_hw)
            laps.lap("warp")
            jitter = None
            if rng is not None and self.augment.color_jitter:
                lo, hi = self.augment.color_jitter
                jitter = rng.uniform(lo, hi, 3).astype(np.float32)
            tables = self.lookup_tables(jitter)
            image_tensor = np.empty((channels, *self.input_hw), dtype=np.float32)
            planes = cv2.split(crop)
            # The image is BGR; output channel c reads the image channel of the configured order.
            for c, source in enumerate((2, 1, 0) if self.color_rgb else (0, 1, 2)):
                cv2.LUT(planes[source], tables[c], dst=image_tensor[c])
        else:
            image_tensor = np.zeros((channels, *self.input_hw), dtype=np.float32)
        if self.center_map is not None:
            image_tensor[3] = self.center_map
        laps.lap("normalise")

        visibility = keypoints[:, 2].astype(np.float32) if ok else np.zeros(len(keypoints), np.float32)
        crop_xy = affine_points(keypoints[:, :2], matrix)
        others = None
        if record.extras.get("others") is not None and len(record.extras["others"]):
            others = np.asarray(record.extras["others"], dtype=np.float64).copy()
            if flipped:
                others = np.stack([flip_keypoints(o, width, self.flip_perm) for o in others])
            others[..., :2] = affine_points(others[..., :2], matrix)
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
        laps.lap("targets")
        sample = pack_sample(image_tensor, targets, weights, record, center, scale, rotation, flipped, index, ok)
        laps.lap("pack")
        return sample
