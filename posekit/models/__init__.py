"""The model factory: named builders in one plain dict, and ``create_model`` on top of it.

One file per network family (hrnet, cpm, hourglass with Ke et al.'s multi-scale network, mspn,
simple_baseline). Every model follows one seam: ``forward(x)`` returns a list of all supervised outputs, the attribute
``outputs`` declares each of them as a :class:`posekit.codecs.OutputSpec`, and ``num_keypoints`` says K.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

from torch import nn

from ..config import load_config
from ..errors import ConfigError
from . import cpm, hourglass, mspn, simple_baseline
from .hrnet import HRNet, hrnet_w16_small, hrnet_w32, hrnet_w48
from .pretrained import PRETRAINED, get_pretrained, list_pretrained, verified_weights
from ..weightfiles import load_weights

MODELS: Dict[str, Callable[..., nn.Module]] = {
    "hrnet_w32": hrnet_w32,
    "hrnet_w48": hrnet_w48,
    "hrnet_w16_small": hrnet_w16_small,
    "cpm_1stage": cpm.cpm_1stage,
    "cpm_2stage": cpm.cpm_2stage,
    "cpm_3stage": cpm.cpm_3stage,
    "cpm_4stage": cpm.cpm_4stage,
    "cpm_5stage": cpm.cpm_5stage,
    "cpm_6stage": cpm.cpm_6stage,
    "cpm_6stage_topdown": cpm.cpm_6stage_topdown,
    "hourglass_1stack": hourglass.hourglass_1stack,
    "hourglass_2stack": hourglass.hourglass_2stack,
    "hourglass_4stack": hourglass.hourglass_4stack,
    "hourglass_8stack": hourglass.hourglass_8stack,
    "ke_multiscale_hourglass": hourglass.ke_multiscale_hourglass,
    "ke_multiscale_hourglass_ablation": hourglass.ke_multiscale_hourglass_ablation,
    "mspn_1stage": mspn.mspn_1stage,
    "mspn_2stage": mspn.mspn_2stage,
    "mspn_3stage": mspn.mspn_3stage,
    "mspn_4stage": mspn.mspn_4stage,
    "simplebaseline_res50": simple_baseline.simplebaseline_res50,
    "simplebaseline_res101": simple_baseline.simplebaseline_res101,
    "simplebaseline_res152": simple_baseline.simplebaseline_res152,
}


def list_models() -> List[str]:
    """The architectures :func:`create_model` builds, sorted (the shipped trained models: list_pretrained)."""
    return sorted(MODELS)


def create_model(name: str, num_keypoints: Optional[int] = None, weights: Optional[str] = None,
                 pretrained: bool = False, **kwargs) -> nn.Module:
    """Build the named model; with ``weights``, load that file into it (strictly, see checkpoints.load_weights).

    ``name`` is an architecture (``hrnet_w32``, ...; ``num_keypoints`` defaults to 17) or a shipped model
    (``posekit info --pretrained``), which is built as its config says; ``pretrained=True`` loads its shipped
    weights (checked against their SHA-256). Extra keyword arguments go to the builder (e.g. ``sigma=3.0`` for
    HRNet at 384x288).
    """
    if name in PRETRAINED:
        cfg = load_config(get_pretrained(name).config_path)
        if num_keypoints is not None and num_keypoints != cfg.model.num_keypoints:
            raise ConfigError(f"shipped model {name!r} predicts {cfg.model.num_keypoints} keypoints, not {num_keypoints}")
        model = create_model(cfg.model.name, cfg.model.num_keypoints, **{**cfg.model.kwargs, **kwargs})
        if pretrained:
            weights = weights or str(verified_weights(name))
    else:
        if pretrained:
            raise ConfigError(f"no trained weights ship for {name!r}; shipped models: {', '.join(list_pretrained())}")
        builder = MODELS.get(name)
        if builder is None:
            raise ConfigError(f"unknown model {name!r}; known models: {', '.join(list_models())}; "
                              f"shipped trained models: {', '.join(list_pretrained())}")
        try:
            model = builder(num_keypoints=17 if num_keypoints is None else num_keypoints, **kwargs)
        except TypeError as exc:
            # A misspelt option from a config file is a user error; any other TypeError is a bug and propagates.
            if "unexpected keyword argument" not in str(exc):
                raise
            raise ConfigError(f"model {name!r}: {exc}") from None
    if weights is not None:
        load_weights(model, weights)
    return model


__all__ = ["MODELS", "HRNet", "create_model", "list_models", "list_pretrained", "hrnet_w32", "hrnet_w48", "hrnet_w16_small"]
