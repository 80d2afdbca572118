"""Image decoding with errors that name the file."""
from __future__ import annotations

import os

import cv2
import numpy as np

from ..errors import DataError


def read_image(path: str, rgb: bool = True) -> np.ndarray:
    """Decode an image file to H x W x 3 uint8 (RGB unless ``rgb`` is False). Raises DataError."""
    if not os.path.isfile(path):
        raise DataError("image file not found", path)
    data = np.fromfile(path, dtype=np.uint8)
    if data.size == 0:
        raise DataError("image file is empty", path)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise DataError("cannot decode image (corrupt or unsupported format)", path)
    if rgb:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image
