"""The one record type every reader produces and every dataset consumes."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

# Visibility convention (COCO's): 0 = not labelled, 1 = labelled but occluded, 2 = labelled and visible.
NOT_LABELLED, OCCLUDED, VISIBLE = 0, 1, 2


@dataclass
class PersonRecord:
    """One person in one image.

    ``keypoints`` is K x 3: x, y in image pixels (0-based, pixel centres at integers) and the visibility
    flag above. A reader provides either ``box`` (x, y, w, h, as COCO) or ``center``/``scale`` (MPII's
    convention, scale = box size / 200); the dataset derives the crop from whichever is present.
    """

    image_path: str
    keypoints: np.ndarray
    box: Optional[np.ndarray] = None
    center: Optional[np.ndarray] = None
    scale: Optional[np.ndarray] = None
    score: float = 1.0
    image_id: Optional[int] = None
    image_size: Optional[Tuple[int, int]] = None  # (width, height) when the annotation gives it
    area: Optional[float] = None
    extras: Dict[str, Any] = field(default_factory=dict)

    @property
    def num_labelled(self) -> int:
        return int((self.keypoints[:, 2] > 0).sum())


def attach_others(records: List[PersonRecord]) -> None:
    """Give each record the keypoints of the other people of its image (``extras['others']``, M x K x 3).

    Targets that mark every person near the one of interest (CPM's first stage) read them.
    """
    by_image: Dict[str, List[int]] = {}
    for i, record in enumerate(records):
        by_image.setdefault(record.image_path, []).append(i)
    for indices in by_image.values():
        stacked = np.stack([records[i].keypoints for i in indices]) if indices else None
        for n, i in enumerate(indices):
            records[i].extras["others"] = np.delete(stacked, n, axis=0)
