"""The model factory: named builders in one plain dict, and ``create_model`` on top of it.

Every model follows one seam: ``forward(x)`` returns a list of all supervised outputs, the attribute
``outputs`` declares each of them as a :class:`posekit.codecs.OutputSpec`, and ``num_keypoints`` says K.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

from torch import nn

from ..errors import ConfigError
from .hrnet import HRNet, hrnet_w16_small, hrnet_w32, hrnet_w48

MODELS: Dict[str, Callable[..., nn.Module]] = {
    "hrnet_w32": hrnet_w32,
    "hrnet_w48": hrnet_w48,
    "hrnet_w16_small": hrnet_w16_small,
}


def list_models() -> List[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(MODELS)


def create_model(name: str, num_keypoints: int = 17, weights: Optional[str] = None, **kwargs) -> nn.Module:
    """Build the named model; with ``weights``, load that file into it (strictly, see checkpoints.load_weights).

    Extra keyword arguments go to the builder (e.g. ``sigma=3.0`` for HRNet at 384x288).
    """
    builder = MODELS.get(name)
    if builder is None:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    try:
        model = builder(num_keypoints=num_keypoints, **kwargs)
    except TypeError as exc:
        # A misspelt option from a config file is a user error; any other TypeError is a bug and propagates.
        if "unexpected keyword argument" not in str(exc):
            raise
        raise ConfigError(f"model {name!r}: {exc}") from None
    if weights is not None:
        from ..checkpoints import load_weights

        load_weights(model, weights)
    return model


__all__ = ["MODELS", "HRNet", "create_model", "list_models", "hrnet_w32", "hrnet_w48", "hrnet_w16_small"]
