"""Built-in synthetic pose data: stick figures with known keypoints, written as a COCO-style dataset.

Each image holds one front-facing figure of the 14-joint :data:`posekit.skeletons.SYNTHETIC` set, drawn
with OpenCV over a cluttered, noisy background. The figure always faces the viewer, so its left side is
on the image's right (as for a person facing the camera). That geometric cue survives the mirror-and-swap
flip augmentation; a colour cue ("left limbs are warm") would not, because flipping keeps colours but swaps
the labels. Limb colours are therefore random per image, with each limb chain in its own colour so that
crossed limbs can be told apart, and every joint carries a contrasting dot at its exact position.

The data is written to disk (``images/*.jpg`` + ``annotations.json``) and read back with
:func:`read_synthetic`, so the demo goes through the same file -> PersonRecord -> dataset path as real data.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import cv2
import numpy as np

from ..errors import DataError
from ..fileio import read_json
from ..skeletons import SYNTHETIC
from .records import VISIBLE, PersonRecord

FORMAT_VERSION = 1
ANNOTATION_FILE = "annotations.json"
IMAGE_DIR = "images"
# A fixed offset keeps the held-out split's random streams apart from the training split's.
HELD_OUT_SEED_OFFSET = 1_000_003

_J = {name: i for i, name in enumerate(SYNTHETIC.keypoints)}
_SHIFT = 4                      # cv2 fractional bits: coordinates are drawn with 1/16 pixel precision
_ONE = 1 << _SHIFT

# Segment lengths as fractions of the figure height (head top to ankles when standing straight).
_TORSO, _NECK_TO_HEAD, _HEAD_RADIUS = 0.30, 0.10, 0.065
_SHOULDER_HALF, _SHOULDER_DROP, _HIP_HALF = 0.11, 0.03, 0.075
_UPPER_ARM, _FOREARM, _THIGH, _SHIN = 0.17, 0.15, 0.25, 0.25

# Joint angles in degrees, measured from "straight down", positive = away from the body's midline.
_UPPER_ARM_RANGE, _ELBOW_RANGE = (-40.0, 170.0), (-120.0, 120.0)
_THIGH_RANGE, _KNEE_RANGE = (-20.0, 50.0), (-45.0, 45.0)
_HEAD_TILT, _BODY_ROTATION = 20.0, 30.0


def _hsv_to_bgr(h: float, s: float, v: float) -> Tuple[int, int, int]:
    pixel = np.array([[[h * 180.0, s * 255.0, v * 255.0]]], dtype=np.float32).clip(0, 255).astype(np.uint8)
    b, g, r = cv2.cvtColor(pixel, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def _random_pose(rng: np.random.Generator) -> Tuple[np.ndarray, float]:
    """Joint positions in figure units (height 1, pelvis at the origin, y down) and the head radius."""
    pts = np.zeros((SYNTHETIC.num_keypoints, 2))

    def direction(angle_deg: float, outward: float) -> np.ndarray:
        a = math.radians(angle_deg)
        return np.array([outward * math.sin(a), math.cos(a)])

    def length(base: float) -> float:
        # Per-segment foreshortening, so that the net cannot rely on fixed proportions.
        return base * rng.uniform(0.85, 1.05)

    width = rng.uniform(0.85, 1.15)
    pts[_J["neck"]] = (0.0, -length(_TORSO))
    tilt = math.radians(rng.uniform(-_HEAD_TILT, _HEAD_TILT))
    pts[_J["head"]] = pts[_J["neck"]] + length(_NECK_TO_HEAD) * np.array([math.sin(tilt), -math.cos(tilt)])
    # Facing the viewer: the figure's left is at +x in the image.
    for side, outward in (("l", 1.0), ("r", -1.0)):
        shoulder = pts[_J["neck"]] + (outward * _SHOULDER_HALF * width, _SHOULDER_DROP)
        hip = np.array([outward * _HIP_HALF * width, 0.0])
        upper = rng.uniform(*_UPPER_ARM_RANGE)
        elbow = shoulder + length(_UPPER_ARM) * direction(upper, outward)
        wrist = elbow + length(_FOREARM) * direction(upper + rng.uniform(*_ELBOW_RANGE), outward)
        thigh = rng.uniform(*_THIGH_RANGE)
        knee = hip + length(_THIGH) * direction(thigh, outward)
        ankle = knee + length(_SHIN) * direction(thigh + rng.uniform(*_KNEE_RANGE), outward)
        for name, p in (("shoulder", shoulder), ("elbow", elbow), ("wrist", wrist),
                        ("hip", hip), ("knee", knee), ("ankle", ankle)):
            pts[_J[f"{side}_{name}"]] = p
    return pts, _HEAD_RADIUS


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A low-saturation gradient with random blobs and thin lines as clutter (BGR uint8)."""
    c0 = np.array(_hsv_to_bgr(rng.random(), rng.uniform(0, 0.4), rng.uniform(0.2, 0.95)), dtype=np.float32)
    c1 = np.array(_hsv_to_bgr(rng.random(), rng.uniform(0, 0.4), rng.uniform(0.2, 0.95)), dtype=np.float32)
    phi = rng.uniform(0, 2 * math.pi)
    ramp_x = np.arange(width, dtype=np.float32) * math.cos(phi)
    ramp_y = np.arange(height, dtype=np.float32)[:, None] * math.sin(phi)
    t = ramp_x + ramp_y
    t -= t.min()
    t /= max(float(t.max()), 1e-6)
    image = (c0 + t[..., None] * (c1 - c0)).astype(np.uint8)
    size = min(height, width)
    for _ in range(rng.integers(2, 7)):
        color = _hsv_to_bgr(rng.random(), rng.uniform(0, 0.6), rng.uniform(0.1, 1.0))
        center = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
        axes = (int(rng.uniform(0.05, 0.3) * size), int(rng.uniform(0.05, 0.3) * size))
        cv2.ellipse(image, center, axes, rng.uniform(0, 180), 0, 360, color, -1, cv2.LINE_AA)
    for _ in range(rng.integers(1, 5)):
        color = _hsv_to_bgr(rng.random(), rng.uniform(0, 1.0), rng.uniform(0.1, 1.0))
        p0 = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
        p1 = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
        cv2.line(image, p0, p1, color, int(rng.integers(1, 3)), cv2.LINE_AA)
    return image


def _fixed(point: np.ndarray) -> Tuple[int, int]:
    return int(round(point[0] * _ONE)), int(round(point[1] * _ONE))


def render_figure(rng: np.random.Generator, image_size: Tuple[int, int] = (128, 128)) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw one random figure. Returns (BGR image, keypoints K x 3, tight box x, y, w, h).

    ``image_size`` is (height, width). Keypoints outside the image get (0, 0, 0), as COCO writes
    unlabelled joints; all others are visible (v = 2) because joint dots are drawn last.
    """
    height, width = image_size
    image = _background(rng, height, width)
    pose, head_radius = _random_pose(rng)

    figure_height = rng.uniform(0.5, 0.8) * min(height, width)
    angle = math.radians(rng.uniform(-_BODY_ROTATION, _BODY_ROTATION))
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    pts = pose @ rotation.T * figure_height
    head_r = head_radius * figure_height
    thickness = max(2, int(round(rng.uniform(0.035, 0.06) * figure_height)))
    dot_radius = max(1.5, 0.6 * thickness)
    outline = (20, 20, 20) if rng.random() < 0.5 else (235, 235, 235)
    border = 1.0 if rng.random() < 0.5 else 0.0      # width of the optional outline around limbs and head

    # Extent of the drawn figure (one more pixel for anti-aliasing), then a random placement inside the image.
    half = max(thickness / 2.0, dot_radius) + border + 1.0
    lo = np.minimum(pts.min(axis=0) - half, pts[_J["head"]] - head_r - border - 1.0)
    hi = np.maximum(pts.max(axis=0) + half, pts[_J["head"]] + head_r + border + 1.0)
    centre = np.array([width, height]) / 2.0 + rng.uniform(-0.1, 0.1, size=2) * (width, height)
    offset = centre - (lo + hi) / 2.0
    for axis, limit in ((0, width - 1.0), (1, height - 1.0)):
        if hi[axis] - lo[axis] <= limit:
            offset[axis] = np.clip(offset[axis], -lo[axis], limit - hi[axis])
    pts = pts + offset

    # Colours: one saturated hue each for torso+head and the four limb chains, spread around the hue circle.
    hues = (rng.random() + np.arange(5) / 5.0 + rng.uniform(-0.05, 0.05, 5)) % 1.0
    rng.shuffle(hues)
    colors = [_hsv_to_bgr(h, rng.uniform(0.6, 1.0), rng.uniform(0.55, 1.0)) for h in hues]
    torso_color, l_arm, r_arm, l_leg, r_leg = colors

    torso = np.array([_fixed(pts[_J[n]]) for n in ("l_shoulder", "r_shoulder", "r_hip", "l_hip")], dtype=np.int32)
    cv2.fillConvexPoly(image, torso, torso_color, cv2.LINE_AA, _SHIFT)
    chains = [
        (("neck", "head"), torso_color),
        (("l_hip", "l_knee", "l_ankle"), l_leg), (("r_hip", "r_knee", "r_ankle"), r_leg),
        (("l_shoulder", "l_elbow", "l_wrist"), l_arm), (("r_shoulder", "r_elbow", "r_wrist"), r_arm),
    ]
    order = [0, 1, 2] + list(3 + rng.permutation(2))    # either arm may be in front
    for idx in order:
        names, color = chains[idx]
        for a, b in zip(names[:-1], names[1:]):
            p, q = _fixed(pts[_J[a]]), _fixed(pts[_J[b]])
            if border:
                cv2.line(image, p, q, outline, thickness + 2, cv2.LINE_AA, _SHIFT)
            cv2.line(image, p, q, color, thickness, cv2.LINE_AA, _SHIFT)
        if idx == 0:
            head = _fixed(pts[_J["head"]])
            if border:
                cv2.circle(image, head, int(round((head_r + border) * _ONE)), outline, -1, cv2.LINE_AA, _SHIFT)
            cv2.circle(image, head, int(round(head_r * _ONE)), torso_color, -1, cv2.LINE_AA, _SHIFT)

    # Joint dots, drawn last so that every joint stays visible.
    chain_color = {"l_arm": l_arm, "r_arm": r_arm, "l_leg": l_leg, "r_leg": r_leg}
    for k, name in enumerate(SYNTHETIC.keypoints):
        if name in ("head", "neck"):
            base = np.array(torso_color, dtype=np.float32)
        else:
            limb = "arm" if name[2:] in ("shoulder", "elbow", "wrist") else "leg"
            base = np.array(chain_color[f"{name[0]}_{limb}"], dtype=np.float32)
        # Darker dots on bright limbs, lighter dots on dark ones, so the joint stands out from its limb.
        dot = base * 0.3 if base.sum() > 330 else base + (255 - base) * 0.7
        cv2.circle(image, _fixed(pts[k]), int(round(dot_radius * _ONE)), tuple(int(c) for c in dot), -1, cv2.LINE_AA, _SHIFT)

    # Sensor-like noise: the sum of two uniform integers is a cheap, roughly Gaussian, deterministic draw.
    amplitude = int(rng.integers(3, 10))
    noise = rng.integers(-amplitude, amplitude + 1, (2, height, width, 3), dtype=np.int16).sum(axis=0)
    image = np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)

    keypoints = np.zeros((SYNTHETIC.num_keypoints, 3))
    inside = (pts[:, 0] >= 0) & (pts[:, 0] <= width - 1) & (pts[:, 1] >= 0) & (pts[:, 1] <= height - 1)
    keypoints[inside, :2] = np.round(pts[inside], 3)
    keypoints[inside, 2] = VISIBLE
    x1, y1 = np.maximum(lo + offset, 0.0)
    x2, y2 = np.minimum(hi + offset, (width - 1.0, height - 1.0))
    box = np.round(np.array([x1, y1, x2 - x1, y2 - y1]), 3)
    return image, keypoints, box


def generate_synthetic(
    out_dir: Union[str, os.PathLike],
    num_images: int,
    seed: int,
    image_size: Tuple[int, int] = (128, 128),
) -> List[PersonRecord]:
    """Render ``num_images`` figures into ``out_dir/images`` and write ``out_dir/annotations.json``.

    ``image_size`` is (height, width). Image ``i`` depends only on (seed, i), so a run is reproducible
    and a larger set extends a smaller one with the same seed.
    """
    out = Path(out_dir).resolve()
    (out / IMAGE_DIR).mkdir(parents=True, exist_ok=True)
    height, width = int(image_size[0]), int(image_size[1])
    records = []
    for i in range(num_images):
        rng = np.random.default_rng([seed, i])
        image, keypoints, box = render_figure(rng, (height, width))
        # High-quality JPEG: 20x faster to encode than PNG on these noisy images, artefacts far below the noise.
        path = out / IMAGE_DIR / f"{i:06d}.jpg"
        if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise DataError("cannot write image", path)
        records.append(PersonRecord(
            image_path=str(path), keypoints=keypoints, box=box, image_id=i,
            image_size=(width, height), area=float(box[2] * box[3]),
        ))
    info = {"generator": "posekit.data.synthetic", "version": FORMAT_VERSION, "seed": int(seed),
            "num_images": int(num_images), "image_size": [height, width]}
    write_coco_json(records, out / ANNOTATION_FILE, info=info)
    return records


def write_coco_json(records: List[PersonRecord], path: Union[str, os.PathLike], info: Optional[Dict] = None) -> None:
    """Write records as a COCO keypoints file (one 'person' category with the SYNTHETIC skeleton).

    File names are stored relative to the JSON file's folder when the images lie below it.
    """
    path = Path(path).resolve()
    images, annotations, seen = [], [], set()
    for n, rec in enumerate(records):
        image_id = rec.image_id if rec.image_id is not None else n
        if image_id not in seen:
            seen.add(image_id)
            width, height = rec.image_size if rec.image_size is not None else (0, 0)
            file_name = Path(rec.image_path).resolve()
            try:
                file_name = file_name.relative_to(path.parent)
            except ValueError:
                pass
            images.append({"id": int(image_id), "file_name": file_name.as_posix(),
                           "width": int(width), "height": int(height)})
        kps = np.asarray(rec.keypoints, dtype=np.float64)
        box = np.asarray(rec.box, dtype=np.float64) if rec.box is not None else np.zeros(4)
        annotations.append({
            "id": n + 1, "image_id": int(image_id), "category_id": 1, "iscrowd": 0,
            "keypoints": [float(v) for v in kps.reshape(-1)],
            "num_keypoints": int((kps[:, 2] > 0).sum()),
            "bbox": [float(v) for v in box],
            "area": float(rec.area if rec.area is not None else box[2] * box[3]),
        })
    category = {"id": 1, "name": "person", "supercategory": "person",
                "keypoints": list(SYNTHETIC.keypoints),
                "skeleton": [[a + 1, b + 1] for a, b in SYNTHETIC.limbs]}   # COCO's skeleton is 1-based
    document = {"info": info or {}, "images": images, "annotations": annotations, "categories": [category]}
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(document))
        os.replace(tmp, path)
    except OSError as e:
        raise DataError(f"cannot write annotations: {e.strerror or e}", path) from None


def read_synthetic(data_dir: Union[str, os.PathLike]) -> List[PersonRecord]:
    """Read back what :func:`generate_synthetic` wrote (``data_dir/annotations.json``)."""
    root = Path(data_dir).resolve()
    path = root / ANNOTATION_FILE
    document = read_json(path, "annotation file")
    if not isinstance(document, dict):
        raise DataError("expected a JSON object at the top level", path)
    for key in ("images", "annotations", "categories"):
        if not isinstance(document.get(key), list):
            raise DataError(f"missing key '{key}'", path)
    num_keypoints = SYNTHETIC.num_keypoints
    try:
        images = {int(im["id"]): im for im in document["images"]}
        records = []
        for ann in document["annotations"]:
            image = images.get(int(ann["image_id"]))
            if image is None:
                raise DataError(f"annotation {ann['id']} refers to unknown image_id {ann['image_id']}", path)
            keypoints = np.array(ann["keypoints"], dtype=np.float64)
            if keypoints.size != 3 * num_keypoints:
                raise DataError(f"annotation {ann['id']} has {keypoints.size // 3} keypoints, expected "
                                f"{num_keypoints}", path)
            records.append(PersonRecord(
                image_path=str(root / image["file_name"]),
                keypoints=keypoints.reshape(num_keypoints, 3),
                box=np.array(ann["bbox"], dtype=np.float64),
                image_id=int(image["id"]),
                image_size=(int(image["width"]), int(image["height"])),
                area=float(ann["area"]),
            ))
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"malformed COCO annotation ({type(e).__name__}: {e})", path) from None
    return records


def synthetic_splits(
    root: Union[str, os.PathLike],
    num_train: int = 2000,
    num_val: int = 200,
    seed: int = 0,
    image_size: Tuple[int, int] = (128, 128),
) -> Dict[str, List[PersonRecord]]:
    """The demo's ``train`` and held-out ``val`` splits under ``root``; reuses them when already there.

    The held-out split uses ``seed + HELD_OUT_SEED_OFFSET`` so that no image is shared with training.
    """
    root = Path(root)
    splits = {}
    for name, count, split_seed in (("train", num_train, seed), ("val", num_val, seed + HELD_OUT_SEED_OFFSET)):
        splits[name] = _cached(root / name, count, split_seed, image_size)
        if splits[name] is None:
            splits[name] = generate_synthetic(root / name, count, split_seed, image_size)
    return splits


def _cached(data_dir: Path, num_images: int, seed: int, image_size: Tuple[int, int]) -> Optional[List[PersonRecord]]:
    expected = {"generator": "posekit.data.synthetic", "version": FORMAT_VERSION, "seed": int(seed),
                "num_images": int(num_images), "image_size": [int(image_size[0]), int(image_size[1])]}
    try:
        info = json.loads((data_dir / ANNOTATION_FILE).read_text()).get("info")
        if info != expected:
            return None
        records = read_synthetic(data_dir)
    except (OSError, ValueError, AttributeError, DataError):
        return None
    if len(records) != num_images or not all(os.path.isfile(r.image_path) for r in records):
        return None
    return records
