"""Top-down crop geometry: box -> (centre, scale), the crop affine and its inverse, augmentation.

Conventions (official HRNet, spec section 1.1): ``scale`` is the box size in units of 200 px; the affine
maps a window of width ``200 * scale[0]`` centred on ``center`` onto the output width, as a similarity
transform (the height is covered because the scale was made aspect-consistent beforehand). Coordinates
are pixel centres at integers, x then y. Sizes are (height, width) unless a name says ``wh``.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

PIXEL_STD = 200.0


def sanitize_box(box: Sequence[float], image_wh: Tuple[int, int]) -> Optional[np.ndarray]:
    """Clip a COCO (x, y, w, h) box to the image the way the official COCO loader does; None if empty."""
    x, y, w, h = (float(v) for v in box)
    width, height = image_wh
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
    if x2 >= x1 and y2 >= y1 and (x2 - x1) * (y2 - y1) > 0:
        return np.array([x1, y1, x2 - x1, y2 - y1], dtype=np.float64)
    return None


def fit_aspect(width: float, height: float, aspect_ratio: float) -> Tuple[float, float]:
    """Grow one side of a box so that width / height == aspect_ratio."""
    if width > aspect_ratio * height:
        height = width / aspect_ratio
    elif width < aspect_ratio * height:
        width = height * aspect_ratio
    return width, height


def box_to_center_scale(box: Sequence[float], aspect_ratio: float, padding: float = 1.25) -> Tuple[np.ndarray, np.ndarray]:
    """COCO box (x, y, w, h) -> centre and scale (units of 200 px), aspect fixed, padded (HRNet ``_xywh2cs``)."""
    x, y, w, h = (float(v) for v in box)
    center = np.array([x + 0.5 * w, y + 0.5 * h], dtype=np.float64)
    w, h = fit_aspect(w, h, aspect_ratio)
    scale = np.array([w / PIXEL_STD, h / PIXEL_STD], dtype=np.float64)
    if center[0] != -1:
        scale = scale * padding
    return center, scale


def _rotate(point: np.ndarray, rot_rad: float) -> np.ndarray:
    sn, cs = math.sin(rot_rad), math.cos(rot_rad)
    return np.array([point[0] * cs - point[1] * sn, point[0] * sn + point[1] * cs], dtype=np.float64)


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = a - b
    return b + np.array([-d[1], d[0]], dtype=np.float64)


def get_affine_transform(
    center: Sequence[float],
    scale: Sequence[float],
    rotation: float,
    output_wh: Tuple[int, int],
    shift: Sequence[float] = (0.0, 0.0),
    inverse: bool = False,
) -> np.ndarray:
    """2x3 matrix mapping image -> crop of size ``output_wh`` (or crop -> image with ``inverse``).

    ``rotation`` in degrees; positive values rotate the person counter-clockwise in the crop (the
    official convention, so a point straight above the centre moves left).
    """
    center = np.asarray(center, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    src_w = scale[0] * PIXEL_STD
    dst_w, dst_h = float(output_wh[0]), float(output_wh[1])
    rot_rad = math.pi * rotation / 180.0
    src_dir = _rotate(np.array([0.0, src_w * -0.5]), rot_rad)
    dst_dir = np.array([0.0, dst_w * -0.5])

    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0] = center + scale * PIXEL_STD * np.asarray(shift, dtype=np.float64)
    src[1] = src[0] + src_dir
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = dst[0] + dst_dir
    src[2] = _third_point(src[0], src[1])
    dst[2] = _third_point(dst[0], dst[1])
    if inverse:
        return cv2.getAffineTransform(dst, src)
    return cv2.getAffineTransform(src, dst)


def affine_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to an (..., 2) array of points."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def crop_to_image(points: np.ndarray, center: np.ndarray, scale: np.ndarray, input_hw: Tuple[int, int]) -> np.ndarray:
    """Crop-pixel coordinates (..., 2) -> image coordinates (no rotation; HRNet ``transform_preds``)."""
    inv = get_affine_transform(center, scale, 0.0, (input_hw[1], input_hw[0]), inverse=True)
    return affine_points(points, inv)


def crop_to_image_batch(points: np.ndarray, centers: np.ndarray, scales: np.ndarray, input_hw: Tuple[int, int]) -> np.ndarray:
    """Unrotated crops: crop pixels (N x K x 2) -> image pixels, the inverse of the crop affine, batched.

    The crop is a similarity with factor 200 * scale_w / input_width on both axes (official ``transform_preds``).
    """
    height, width = input_hw
    factor = (np.asarray(scales, dtype=np.float64)[:, 0] * PIXEL_STD / width)[:, None, None]
    half = np.array([width / 2.0, height / 2.0])
    return np.asarray(centers, dtype=np.float64)[:, None, :] + (points - half) * factor


def reduced_grid_matrix(reduce: int) -> np.ndarray:
    """3x3 matrix from the pixel grid of an image decoded at 1/``reduce`` of its size to the full image's grid.

    A JPEG decoded at 1/r in the DCT (and an integer-factor area resize) makes pixel j of the smaller image the
    average of full pixels r j .. r j + r - 1, centred on r j + (r - 1) / 2 (pixel centres at integers). The
    crop affine of the full image composed with this matrix is the crop affine of the reduced image.
    """
    r = float(reduce)
    return np.array([[r, 0.0, (r - 1.0) / 2.0], [0.0, r, (r - 1.0) / 2.0], [0.0, 0.0, 1.0]])


def warp_image(image: np.ndarray, matrix: np.ndarray, input_hw: Tuple[int, int]) -> np.ndarray:
    return cv2.warpAffine(image, matrix, (int(input_hw[1]), int(input_hw[0])), flags=cv2.INTER_LINEAR)


def flip_keypoints(keypoints: np.ndarray, image_width: int, flip_perm: np.ndarray) -> np.ndarray:
    """Mirror K x 3 keypoints of an image of ``image_width``: x' = W - 1 - x, then swap left/right."""
    flipped = keypoints.copy()
    flipped[:, 0] = image_width - 1 - flipped[:, 0]
    return flipped[flip_perm]


def half_body_center_scale(
    keypoints: np.ndarray,
    upper_ids: Sequence[int],
    lower_ids: Sequence[int],
    aspect_ratio: float,
    rng: np.random.Generator,
    scale_factor: float = 1.5,
    style: str = "hrnet",
    random_extension: Sequence[float] = (0.6, 0.8),
) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """Half-body crop: the upper body if N(0,1) < 0.5 (and enough of its joints are labelled), else the lower.

    style "hrnet" (official HRNet): a half needs more than 2 labelled joints, the centre is their mean and the
    aspect-fitted extent is scaled by ``scale_factor``. style "mspn" (official MSPN): more than 3 joints, the
    centre is the extent's centre, width and height grow by ``1 + U(0,1) * random_extension`` before the fit.
    Returns None when fewer than 2 (hrnet) / 3 (mspn) joints of the chosen half are labelled.
    """
    labelled = keypoints[:, 2] > 0
    upper = [i for i in upper_ids if labelled[i]]
    lower = [i for i in lower_ids if labelled[i]]
    need = 2 if style == "hrnet" else 3
    if rng.standard_normal() < 0.5 and len(upper) > need:
        chosen = upper
    else:
        chosen = lower if len(lower) > need else upper
    if len(chosen) < need:
        return None
    pts = keypoints[chosen, :2]
    left_top, right_bottom = pts.min(axis=0), pts.max(axis=0)
    w, h = right_bottom - left_top
    if style == "hrnet":
        center = pts.mean(axis=0)
        w, h = fit_aspect(w, h, aspect_ratio)
        return center, np.array([w / PIXEL_STD, h / PIXEL_STD], dtype=np.float64) * scale_factor
    center = (left_top + right_bottom) / 2.0
    w, h = w * (1 + rng.random() * random_extension[0]), h * (1 + rng.random() * random_extension[1])
    w, h = fit_aspect(w, h, aspect_ratio)
    return center, np.array([w / PIXEL_STD, h / PIXEL_STD], dtype=np.float64)
