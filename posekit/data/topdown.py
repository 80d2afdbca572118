"""The top-down crop: one person's box (or centre/scale, or joints) -> the model's input tensor, and back.

:class:`TopDownCrop` holds what decides a crop (input size, box padding and extension, mean/std, colour order,
CPM's centre map) and does each step the same way for training, evaluation and prediction:

1. ``center_scale`` / ``box_center_scale`` / ``joints_center_scale``: the window, fitted to the input's aspect
   ratio and padded (``scale`` in units of 200 px, the official HRNet convention; see :mod:`.transforms`);
2. ``matrix`` / ``inverse``: the affine image -> crop (rotation for augmentation) and crop -> image;
   ``warp_matrix`` folds a horizontal flip and a reduced JPEG decode into the matrix the image is warped with;
3. ``cut``: the warp (bilinear, input size);
4. ``normalise``: uint8 crop -> C x H x W float32 (colour order, optional colour jitter, mean / std, centre map)
   through one 256-entry table per channel, which gives exactly the float32 values of the per-pixel formula.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Tuple

import cv2
import numpy as np

from ..codecs.cpm import center_map
from ..config import Config
from ..errors import DataError
from .records import PersonRecord
from .transforms import (
    PIXEL_STD,
    crop_to_image_batch,
    fit_aspect,
    get_affine_transform,
    half_body_center_scale,
    reduced_grid_matrix,
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
    if not (0 < w < np.inf and 0 < h < np.inf):
        raise DataError(f"person crop has no area ({w:g} x {h:g} px): a box of zero size or a non-finite box/scale",
                        record.image_path)
    return center, np.array([w, h], dtype=np.float64) / 200.0 * padding


@dataclass
class TopDownCrop:
    """The crop settings of a model's input; see the module docstring for the steps.

    ``input_hw``: (height, width) of the model input; ``box_padding``: the window is the aspect-fitted box times
    this (HRNet 1.25); ``box_extension``: width/height x (1 + e) before the fit (MSPN); ``mean`` / ``std``: of
    the [0, 1] RGB or BGR image; ``color_rgb``: the model takes RGB (else BGR); ``center_map_sigma``: CPM's
    centre-map channel (None: 3 channels).
    """

    input_hw: Tuple[int, int]
    box_padding: float = 1.25
    box_extension: Tuple[float, float] = (0.0, 0.0)
    mean: Tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: Tuple[float, float, float] = (0.229, 0.224, 0.225)
    color_rgb: bool = True
    center_map_sigma: Optional[float] = None
    # Derived: mean and 1 / std in uint8 levels (float32), and the centre map (H x W) or None.
    mean_levels: np.ndarray = field(init=False, repr=False, compare=False)
    inv_std_levels: np.ndarray = field(init=False, repr=False, compare=False)
    center_map: Optional[np.ndarray] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.input_hw = (int(self.input_hw[0]), int(self.input_hw[1]))
        self.box_extension = (float(self.box_extension[0]), float(self.box_extension[1]))
        self.mean_levels = np.asarray(self.mean, dtype=np.float32) * 255.0
        self.inv_std_levels = 1.0 / (np.asarray(self.std, dtype=np.float32) * 255.0)
        # CPM feeds a Gaussian at the person centre as an extra input channel; the crop is centred on the person.
        self.center_map = center_map(self.input_hw, self.center_map_sigma) if self.center_map_sigma else None

    @classmethod
    def from_config(cls, cfg: Config, center_map_sigma: Optional[float] = None) -> "TopDownCrop":
        """The crop of ``cfg`` (data.input_size, box_padding, box_extension, mean, std, color_rgb); CPM models
        pass their ``center_map_sigma``."""
        data = cfg.data
        return cls(cfg.input_hw, box_padding=data.box_padding, box_extension=tuple(data.box_extension),
                   mean=tuple(data.mean), std=tuple(data.std), color_rgb=data.color_rgb,
                   center_map_sigma=center_map_sigma)

    @property
    def aspect_ratio(self) -> float:
        """Width / height of the input."""
        return self.input_hw[1] / self.input_hw[0]

    @property
    def channels(self) -> int:
        return 3 if self.center_map is None else 4

    # -------------------------------------------------------------------------------------------- window
    def center_scale(self, record: PersonRecord, extension: Optional[Sequence[float]] = None,
                     rng: Optional[np.random.Generator] = None,
                     random_extension: Sequence[float] = (0.0, 0.0)) -> Tuple[np.ndarray, np.ndarray]:
        """Centre and scale of a record's box or centre/scale (:func:`record_center_scale`), with this crop's
        aspect ratio and padding; ``extension`` replaces ``box_extension`` (training's augment.box_extension)."""
        return record_center_scale(record, self.aspect_ratio, self.box_padding,
                                   self.box_extension if extension is None else extension, rng, random_extension)

    def box_center_scale(self, box: Sequence[float], source: str = "") -> Tuple[np.ndarray, np.ndarray]:
        """Centre and scale of an (x, y, w, h) box in image pixels (``source`` names it in errors)."""
        record = PersonRecord(image_path=source, keypoints=np.zeros((0, 3)), box=np.asarray(box, dtype=np.float64))
        return self.center_scale(record)

    def joints_center_scale(self, keypoints: np.ndarray, upper_ids: Sequence[int], lower_ids: Sequence[int],
                            rng: np.random.Generator, scale_factor: float = 1.5, style: str = "hrnet",
                            random_extension: Sequence[float] = (0.6, 0.8)) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """The half-body window of labelled joints (:func:`.transforms.half_body_center_scale`) at this aspect."""
        return half_body_center_scale(keypoints, upper_ids, lower_ids, self.aspect_ratio, rng, scale_factor,
                                      style=style, random_extension=random_extension)

    # -------------------------------------------------------------------------------------------- affine
    def matrix(self, center: np.ndarray, scale: Any, rotation: float = 0.0) -> np.ndarray:
        """2 x 3 affine image -> crop (``rotation`` in degrees, counter-clockwise in the crop)."""
        return get_affine_transform(center, scale, rotation, (self.input_hw[1], self.input_hw[0]))

    def to_image(self, points: np.ndarray, centers: np.ndarray, scales: np.ndarray) -> np.ndarray:
        """Crop pixels (N x K x 2) of N unrotated crops -> image pixels (what :meth:`inverse` does, batched)."""
        return crop_to_image_batch(points, centers, scales, self.input_hw)

    def inverse(self, center: np.ndarray, scale: Any, rotation: float = 0.0) -> np.ndarray:
        """2 x 3 affine crop -> image, the inverse of :meth:`matrix` (keypoints back into the image)."""
        return get_affine_transform(center, scale, rotation, (self.input_hw[1], self.input_hw[0]), inverse=True)

    @staticmethod
    def warp_matrix(matrix: np.ndarray, flipped: bool = False, image_width: int = 0, reduce: int = 1) -> np.ndarray:
        """The matrix the image is warped with for a crop ``matrix``: a horizontal flip (x -> W - 1 - x, W =
        ``image_width``) folded in, so one warp does flip and crop; and, for an image decoded at 1/``reduce``
        of its size, the reduced pixel grid composed in (:func:`.transforms.reduced_grid_matrix`)."""
        if flipped:
            mirror = np.array([[-1.0, 0.0, image_width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
            matrix = matrix @ mirror
        if reduce > 1:
            matrix = matrix @ reduced_grid_matrix(reduce)
        return matrix

    # -------------------------------------------------------------------------------------------- pixels
    def cut(self, image: np.ndarray, warp_matrix: np.ndarray) -> np.ndarray:
        """The input-size crop of ``image`` (H x W x 3 uint8) under ``warp_matrix`` (bilinear, zero outside)."""
        return warp_image(image, warp_matrix, self.input_hw)

    def lookup_tables(self, jitter: Optional[np.ndarray] = None) -> np.ndarray:
        """3 x 256 float32: the network value of each uint8 level per output channel (colour jitter, clamp,
        mean, 1 / std), computed with the float32 operations of the per-pixel formula, so the values are equal."""
        levels = np.arange(256, dtype=np.float32)[None, :]
        if jitter is not None:
            levels = np.clip(levels * np.asarray(jitter, dtype=np.float32)[:, None], 0.0, 255.0)
        return (levels - self.mean_levels[:, None]) * self.inv_std_levels[:, None]

    def normalise(self, pixels: Optional[np.ndarray], pixels_rgb: bool = False,
                  jitter: Optional[np.ndarray] = None) -> np.ndarray:
        """The model input (C x H x W float32) of a crop from :meth:`cut`: ``pixels`` in RGB (``pixels_rgb``) or
        BGR order, put in the model's colour order, times ``jitter`` (per output channel) if given, normalised;
        CPM's centre map as the 4th channel. ``pixels`` None (an unreadable image): zeros (and the centre map)."""
        tensor = np.empty((self.channels, *self.input_hw), dtype=np.float32)
        if pixels is None:
            tensor[:3] = 0.0
        else:
            tables = self.lookup_tables(jitter)
            planes = cv2.split(pixels)
            # Output channel c reads the input channel that holds the model's c-th colour.
            order = (0, 1, 2) if pixels_rgb == self.color_rgb else (2, 1, 0)
            for c, source in enumerate(order):
                cv2.LUT(planes[source], tables[c], dst=tensor[c])
        if self.center_map is not None:
            tensor[3] = self.center_map
        return tensor


__all__ = ["TopDownCrop", "record_center_scale", "PIXEL_STD"]
