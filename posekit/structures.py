"""The value types that prediction, tracking, video and evaluation share: a person's pose, and person boxes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np



@dataclass
class Pose:
    """One person: keypoints in image pixels and the crop they were read from."""

    keypoints: np.ndarray          # K x 2, image pixels (x, y)
    scores: np.ndarray             # K, the heatmap maxima
    box: np.ndarray                # x, y, w, h: the box as used, i.e. after clipping to the image
    box_score: float = 1.0
    track_id: Optional[int] = None
    center: Optional[np.ndarray] = None   # crop centre (image pixels) and scale (box size / 200, padded):
    scale: Optional[np.ndarray] = None    # what official rescoring / OKS-NMS take the person's area from

    @property
    def keypoints_with_scores(self) -> np.ndarray:
        """K x 3: x, y, score (the layout of COCO results and of :func:`posekit.viz.draw_skeleton`)."""
        return np.concatenate([self.keypoints, self.scores[:, None]], axis=1)

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-ready values."""
        return {"keypoints": np.round(self.keypoints_with_scores, 4).tolist(),
                "box": [float(v) for v in self.box], "box_score": float(self.box_score), "track_id": self.track_id}


def clip_box(box: Sequence[float], image_wh: Tuple[int, int]) -> Optional[np.ndarray]:
    """The part of an (x, y, w, h) box inside an image of ``image_wh``; None when nothing of it is.

    Unlike :func:`posekit.data.transforms.sanitize_box` (the official ground-truth loader, which keeps the width
    from the clipped left edge and so shifts a box hanging off the left/top edge into the image, and takes one
    pixel off every box), a box inside the image is kept exactly as given, as the official test keeps detector
    boxes, and a box partly outside is cut at the image border.
    """
    x, y, w, h = (float(v) for v in box)
    if not all(np.isfinite((x, y, w, h))):
        return None
    width, height = image_wh
    x1, y1 = max(x, 0.0), max(y, 0.0)
    x2, y2 = min(x + w, float(width)), min(y + h, float(height))
    if x2 <= x1 or y2 <= y1:
        return None
    return np.array([x1, y1, x2 - x1, y2 - y1], dtype=np.float64)


def as_box_array(boxes: Any, source: str = "boxes") -> np.ndarray:
    """N x 5 (x, y, w, h, score) from N x 4 / N x 5 array-likes (one 4- or 5-vector is one box)."""
    try:
        arr = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{source} must be an N x 4 (x, y, w, h) or N x 5 (with scores) array of numbers") from None
    if arr.size == 0:
        return np.zeros((0, 5), dtype=np.float64)
    if arr.ndim == 1 and arr.shape[0] in (4, 5):
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] not in (4, 5):
        raise ValueError(f"{source} must be N x 4 (x, y, w, h) or N x 5 (with scores), got shape {arr.shape}")
    if arr.shape[1] == 4:
        arr = np.concatenate([arr, np.ones((arr.shape[0], 1))], axis=1)
    return arr
