"""posekit: 2D human pose estimation — HRNet, CPM, stacked hourglass (multi-scale supervised) and MSPN
in one top-down pipeline.

    model = posekit.create_model("hrnet_w32", num_keypoints=17, weights="pose_hrnet_w32_256x192.pth")
"""
from .errors import CheckpointError, ConfigError, DataError, PosekitError
from .models import create_model, list_models

__version__ = "0.1.0"

__all__ = ["create_model", "list_models", "PosekitError", "DataError", "CheckpointError", "ConfigError", "__version__"]
