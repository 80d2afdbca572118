"""The top-down dataset: PersonRecord -> (normalised crop, one target per supervised output, meta).

One affine matrix carries every geometric augmentation (half-body, scale, rotation, flip); the same matrix
maps the keypoints, so image and targets cannot drift apart. Augmentation randomness comes from a
generator seeded by (seed, epoch, index): a sample's augmentation does not depend on which worker draws it,
which keeps runs reproducible and resumable.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from ..codecs import GaussianHeatmap
from ..config import AugmentConfig
from ..errors import ConfigError, DataError
from ..skeletons import Skeleton
from .images import read_image
from .records import PersonRecord
from .transforms import (
    affine_points,
    fit_aspect,
    flip_keypoints,
    get_affine_transform,
    half_body_center_scale,
    warp_image,
)


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
    return center, np.array([w, h], dtype=np.float64) / 200.0 * padding


class TopDownDataset(Dataset):
    """Crops one person per sample.

    Each item is a dict: ``image`` (3 x H x W float tensor, normalised), ``targets`` / ``target_weights``
    (lists, one entry per codec: K x h x w and K), ``center``/``scale``/``rotation``/``flipped`` (the crop),
    ``keypoints`` (K x 3 in the image, for evaluation), ``index``, ``image_id``, ``score``, ``ok`` (False when
    the image could not be read: the sample is then all zeros with zero weights and counted by the trainer).
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
    ):
        self.records = list(records)
        self.skeleton = skeleton
        self.input_hw = (int(input_hw[0]), int(input_hw[1]))
        self.aspect_ratio = self.input_hw[1] / self.input_hw[0]
        self.codecs = list(codecs)
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

    def __getitem__(self, index: int) -> Dict[str, Any]:
        record = self.records[index]
        ok = True
        try:
            image = read_image(record.image_path, rgb=self.color_rgb)
        except DataError:
            if not self.skip_unreadable:
                raise
            ok = False
            width, height = record.image_size or (self.input_hw[1], self.input_hw[0])
            image = None
        if image is not None:
            height, width = image.shape[:2]
        rng = np.random.default_rng([self.seed, self.epoch, index]) if self.train else None
        center, scale, rotation, flipped = self.crop_params(record, width, rng)
        keypoints = record.keypoints.astype(np.float64)
        matrix = get_affine_transform(center, scale, rotation, (self.input_hw[1], self.input_hw[0]))
        if flipped:
            keypoints = flip_keypoints(keypoints, width, self.flip_perm)
            # Mirroring x -> W - 1 - x folded into the crop matrix: one warp instead of flip + warp.
            mirror = np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
            warp_matrix = matrix @ mirror
        else:
            warp_matrix = matrix
        if image is not None:
            crop = warp_image(image, warp_matrix, self.input_hw).astype(np.float32)
            if rng is not None and self.augment.color_jitter:
                lo, hi = self.augment.color_jitter
                crop = np.clip(crop * rng.uniform(lo, hi, 3).astype(np.float32), 0.0, 255.0)
            crop = (crop - self.mean) * self.inv_std
        else:
            crop = np.zeros((*self.input_hw, 3), dtype=np.float32)

        visibility = keypoints[:, 2].astype(np.float32) if ok else np.zeros(len(keypoints), np.float32)
        crop_xy = affine_points(keypoints[:, :2], matrix)
        others = None
        if record.extras.get("others") is not None and len(record.extras["others"]):
            others = np.asarray(record.extras["others"], dtype=np.float64).copy()
            if flipped:
                others = np.stack([flip_keypoints(o, width, self.flip_perm) for o in others])
            others[..., :2] = affine_points(others[..., :2], matrix)
        targets, weights = [], []
        for codec in self.codecs:
            heatmap, weight = codec.encode(crop_xy, visibility, others)
            targets.append(torch.from_numpy(heatmap))
            weights.append(torch.from_numpy(weight))
        image_tensor = np.ascontiguousarray(crop.transpose(2, 0, 1))
        if self.center_map is not None:
            image_tensor = np.concatenate([image_tensor, self.center_map[None]], axis=0)
        return {
            "image": torch.from_numpy(image_tensor),
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
