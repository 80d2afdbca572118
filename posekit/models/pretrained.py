"""Models shipped inside the package: trained weights (safetensors) and the config they were made for.

Each shipped model is two files in ``posekit/weights/``: ``NAME.safetensors`` and ``NAME.yaml`` (the config to
use it with: architecture, keypoint set, input size, normalisation, test settings). Nothing is downloaded. The
SHA-256 recorded here, in ``posekit/weights/MODEL_CARD.md`` and in the tests must agree with the file: a
weights file that differs (a broken install, a hand-edited file) is refused with one line.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence

from ..config import Config, apply_overrides, load_config
from ..errors import CheckpointError, ConfigError
from ..fileio import file_sha256

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
MODEL_CARD = WEIGHTS_DIR / "MODEL_CARD.md"


@dataclass(frozen=True)
class PretrainedModel:
    name: str
    summary: str        # one line: what it is, what it was trained on, its validation score
    sha256: str         # of NAME.safetensors

    @property
    def weights_path(self) -> Path:
        return WEIGHTS_DIR / f"{self.name}.safetensors"

    @property
    def config_path(self) -> Path:
        return WEIGHTS_DIR / f"{self.name}.yaml"


PRETRAINED: Dict[str, PretrainedModel] = {
    m.name: m
    for m in [
        PretrainedModel(
            name="hrnet-lite_lsp_128x128",
            summary="HRNet-W32-lite (5.0 M parameters), 14 LSP joints, 128x128 input; trained from scratch on "
                    "LSP + LSP-extended on a 2-core CPU; validation PCK@0.2 (LSP 801-1000) 82.43",
            sha256="463d451b6f00c15c61b0df89049b3d2f826c9eb500bfc2c22d3f1bad98ce8e5e",
        ),
    ]
}

DEFAULT_PRETRAINED = "hrnet-lite_lsp_128x128"


def list_pretrained() -> List[str]:
    """Names of the shipped models, sorted."""
    return sorted(PRETRAINED)


def get_pretrained(name: str) -> PretrainedModel:
    """The shipped model called ``name`` (ConfigError naming the known ones otherwise)."""
    entry = PRETRAINED.get(name)
    if entry is None:
        raise ConfigError(f"no shipped model called {name!r}; shipped: {', '.join(list_pretrained())}")
    return entry


def verified_weights(name: str) -> Path:
    """The path of a shipped model's weights, after checking its SHA-256 against the record above."""
    entry = get_pretrained(name)
    path = entry.weights_path
    if not path.is_file():
        raise CheckpointError("shipped weights file missing (reinstall posekit)", path)
    digest = file_sha256(path)
    if digest != entry.sha256:
        raise CheckpointError(f"SHA-256 {digest[:16]}... differs from the model card's {entry.sha256[:16]}... "
                              f"(a damaged install? reinstall posekit)", path)
    return path


def pretrained_config(name: str) -> Config:
    """The config a shipped model is used with, its ``model.weights`` set to the verified shipped file."""
    entry = get_pretrained(name)
    cfg = load_config(entry.config_path)
    cfg.model.weights = str(verified_weights(name))
    return cfg


def load_config_or_pretrained(config: str, overrides: Sequence[str] = ()) -> Config:
    """A config from a YAML path, or a shipped model's (its weights set) when ``config`` names one and no such
    file exists; then the ``key=value`` overrides."""
    if config in PRETRAINED and not Path(config).exists():
        cfg = pretrained_config(config)
        apply_overrides(cfg, overrides)
        return cfg
    return load_config(config, overrides)


__all__ = ["DEFAULT_PRETRAINED", "MODEL_CARD", "PRETRAINED", "PretrainedModel", "WEIGHTS_DIR", "get_pretrained",
           "list_pretrained", "load_config_or_pretrained", "pretrained_config", "verified_weights"]
