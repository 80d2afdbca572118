from __future__ import annotations

from pathlib import Path

import pytest

from posekit.deploy.modelcard import PAPER_FIGURES, model_card
from posekit.models import list_models

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_docs_model_card_is_the_generated_one():
    """docs/models.md is written by `posekit info --card docs/models.md`; regenerate it when models change."""
    assert (ROOT / "docs" / "models.md").read_text() == model_card(ROOT / "configs")


@pytest.mark.slow
def test_model_card_lists_every_model_and_matches_the_hrnet_table():
    card = model_card()
    for name in list_models():
        assert f"| `{name}` |" in card
    assert set(PAPER_FIGURES) <= set(list_models())
    assert "| `hrnet_w32` | 256×192 | 17 | 28,536,113 | 28.5 | 7.12 | 7.1 |" in card
    assert "| `hrnet_w48` | 384×288 | 17 | 63,595,745 | 63.6 | 32.88 | 32.9 |" in card
