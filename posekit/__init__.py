"""posekit: 2D human pose estimation — HRNet, CPM, stacked hourglass (multi-scale supervised) and MSPN
in one top-down pipeline.

    model = posekit.create_model("hrnet_w32", num_keypoints=17, weights="pose_hrnet_w32_256x192.pth")
    predictor = posekit.PosePredictor.from_config("configs/hrnet-w32_coco_256x192.yaml", weights="w32.safetensors")
    poses = predictor(image, boxes)
"""
from typing import Any

__version__ = "0.1.0"

from .errors import CheckpointError, ConfigError, DataError, PosekitError
from .models import create_model, list_models

__all__ = ["create_model", "list_models", "PosePredictor", "PosekitError", "DataError", "CheckpointError",
           "ConfigError", "__version__"]


def __getattr__(name: str) -> Any:
    # The predictor pulls in OpenCV and the data pipeline; import it only when asked for.
    if name == "PosePredictor":
        from .apps.predictor import PosePredictor

        return PosePredictor
    raise AttributeError(f"module 'posekit' has no attribute {name!r}")
