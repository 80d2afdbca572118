"""The trained model shipped in the package: files and hash, loading by name, prediction with nothing else,
evaluation by name, and the LSP holdout split it was validated on."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import posekit
from posekit.fileio import file_sha256
from posekit.cli import main
from posekit.config import load_config
from posekit.errors import CheckpointError, ConfigError, DataError
from posekit.models import pretrained
from posekit.models.pretrained import DEFAULT_PRETRAINED, MODEL_CARD, PRETRAINED, pretrained_config

NAME = DEFAULT_PRETRAINED
MAX_BYTES = 10 * 2**20        # 10 MiB
# PCK@0.2 the shipped model must reach through the predictor on LSP holdout photos (images 801-1000, never
# trained on), each person's box the joints' extent; measured at release: see posekit/weights/MODEL_CARD.md.
MIN_HOLDOUT_PCK = 0.80


def test_every_shipped_model_has_its_files_its_hash_and_a_card_entry():
    card = MODEL_CARD.read_text()
    assert PRETRAINED and DEFAULT_PRETRAINED in PRETRAINED
    for entry in PRETRAINED.values():
        assert entry.weights_path.is_file() and entry.config_path.is_file()
        assert entry.weights_path.stat().st_size <= MAX_BYTES
        digest = file_sha256(entry.weights_path)
        assert digest == entry.sha256
        # The card names the model and gives the same hash.
        section = card[card.index(f"## {entry.name}"):]
        assert re.search(r"SHA-256[^`]*`([0-9a-f]{64})`", section).group(1) == digest


def test_create_model_by_name_loads_the_shipped_weights():
    model = posekit.create_model(NAME, pretrained=True).eval()
    cfg = pretrained_config(NAME)
    assert model.num_keypoints == cfg.model.num_keypoints == 14
    h, w = cfg.input_hw
    with torch.no_grad():
        out = model(torch.zeros(1, 3, h, w))[-1]
    assert out.shape == (1, 14, h // 4, w // 4)
    fresh = posekit.create_model(NAME)
    # Trained weights differ from a fresh initialisation of the same architecture.
    assert not torch.equal(fresh.final_layer.weight, model.final_layer.weight)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in fresh.parameters())


def test_create_model_pretrained_errors():
    with pytest.raises(ConfigError, match="no trained weights ship for 'hrnet_w32'"):
        posekit.create_model("hrnet_w32", pretrained=True)
    with pytest.raises(ConfigError, match="predicts 14 keypoints, not 17"):
        posekit.create_model(NAME, num_keypoints=17)
    with pytest.raises(ConfigError, match="shipped trained models: " + NAME):
        posekit.create_model("no_such_model")


def test_a_damaged_weights_file_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    shutil.copytree(pretrained.WEIGHTS_DIR, folder)
    data = bytearray((folder / f"{NAME}.safetensors").read_bytes())
    data[-1] ^= 1
    (folder / f"{NAME}.safetensors").write_bytes(bytes(data))
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", folder)
    with pytest.raises(CheckpointError, match="differs from the model card"):
        posekit.create_model(NAME, pretrained=True)
    (folder / f"{NAME}.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        pretrained_config(NAME)


def _person_image(seed: int = 0) -> np.ndarray:
    """A generated picture (no data needed): a stick figure on a textured background."""
    import cv2

    rng = np.random.default_rng(seed)
    image = (rng.random((180, 120, 3)) * 60 + 100).astype(np.uint8)
    points = {"head": (60, 25), "neck": (60, 45), "hip": (60, 100), "lk": (48, 135), "rk": (72, 135),
              "la": (45, 170), "ra": (75, 170), "le": (38, 70), "re": (82, 70), "lw": (30, 95), "rw": (90, 95)}
    for a, b in [("head", "neck"), ("neck", "hip"), ("hip", "lk"), ("hip", "rk"), ("lk", "la"), ("rk", "ra"),
                 ("neck", "le"), ("neck", "re"), ("le", "lw"), ("re", "rw")]:
        cv2.line(image, points[a], points[b], (200, 60, 40), 7)
    cv2.circle(image, points["head"], 12, (220, 180, 150), -1)
    return image


def test_predictor_from_pretrained_on_a_generated_image():
    predictor = posekit.PosePredictor.from_pretrained()
    image = _person_image()
    poses = predictor(image)
    assert len(poses) == 1
    kp = poses[0].keypoints
    assert kp.shape == (14, 2) and np.isfinite(kp).all()
    # Inside the (padded) whole-image crop.
    assert (kp[:, 0] > -40).all() and (kp[:, 0] < 160).all() and (kp[:, 1] > -40).all() and (kp[:, 1] < 220).all()
    # The same picture gives the same keypoints.
    again = predictor(image)[0].keypoints
    assert np.array_equal(kp, again)


def test_auto_backend_is_exact_and_named():
    from posekit.deploy.backends import EXACT_CPU_BACKENDS, auto_backend

    assert auto_backend("cpu") in EXACT_CPU_BACKENDS
    assert auto_backend(torch.device("cuda", 0)) == "torch"
    predictor = posekit.PosePredictor.from_pretrained(backend="auto")
    assert predictor.backend == auto_backend("cpu")


# ------------------------------------------------------------------------------------------ real photographs
@pytest.fixture
def lsp_root(shared_data: Path) -> Path:
    root = shared_data / "lsp"
    if not (root / "joints.mat").is_file():
        pytest.skip("../shared/data/lsp not present: real-photo test skipped")
    return root


def _holdout_config(lsp_root: Path):
    cfg = pretrained_config(NAME)
    cfg.data.root = str(lsp_root)
    cfg.data.val_split = "holdout"
    return cfg


def test_holdout_split_is_kept_out_of_training(lsp_root: Path):
    from posekit.build import load_records

    cfg = _holdout_config(lsp_root)
    assert cfg.data.holdout == [801, 1000]
    val = load_records(cfg, "val")
    train = load_records(cfg, "train")
    assert [r.image_id for r in val] == list(range(801, 1001))
    assert len(train) == 800 and {r.image_id for r in train} == set(range(1, 801))
    cfg.data.val_split = "test"
    with pytest.raises(DataError, match="test half"):
        load_records(cfg, "val")


@pytest.mark.parametrize("holdout, split, message", [
    ([900, 1200], "holdout", "within 1-1000"),
    ([5], "holdout", "first, last"),
    (None, "holdout", "data.holdout is not set"),
    ([801, 1000], "train", "val_split must be test or holdout"),
])
def test_bad_holdout_settings(lsp_root: Path, holdout, split, message):
    from posekit.build import load_records

    cfg = _holdout_config(lsp_root)
    cfg.data.holdout, cfg.data.val_split = holdout, split
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_records(cfg, "val")


def test_predictor_finds_the_joints_of_lsp_holdout_photos(lsp_root: Path):
    from posekit.build import load_records
    from posekit.evaluation.metrics import pck
    from posekit.skeletons import get_skeleton

    records = load_records(_holdout_config(lsp_root), "val")[::4]      # 50 people, images 801, 805, ...
    predictor = posekit.PosePredictor.from_pretrained(backend="torch")
    poses = predictor.predict_many([r.image_path for r in records], [r.box[None] for r in records])
    pred = np.stack([p[0].keypoints for p in poses])
    gt = np.stack([r.keypoints for r in records])
    result = pck(pred, gt[..., :2], gt[..., 2], get_skeleton("lsp").torso, alpha=0.2)
    assert result["mean"] >= MIN_HOLDOUT_PCK - 0.05     # 50 of the 200 holdout people: a looser bound


def test_cli_predict_with_nothing_but_a_photo(lsp_root: Path, tmp_path: Path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for number in (801, 802):
        shutil.copy(lsp_root / "images" / f"im{number:04d}.jpg", photos)
    out = tmp_path / "out"
    assert main(["predict", str(photos), "--out", str(out), "--draw", "--no-progress"]) == 0
    entries = json.loads((out / "poses.json").read_text())
    assert [Path(e["file"]).name for e in entries] == ["im0801.jpg", "im0802.jpg"]
    assert all(len(e["people"]) == 1 and len(e["people"][0]["keypoints"]) == 14 for e in entries)
    assert sorted(p.name for p in (out / "drawn").iterdir()) == ["im0801.png", "im0802.png"]


@pytest.mark.slow
def test_cli_eval_by_name(lsp_root: Path, tmp_path: Path, capsys):
    # The shipped config scores the benchmark's test half, absent here: one line says so.
    assert main(["eval", NAME, "--set", f"data.root={lsp_root}", "--no-progress"]) == 2
    assert "test half" in capsys.readouterr().err
    assert main(["eval", NAME, "--set", f"data.root={lsp_root}", "--set", "data.val_split=holdout",
                 "--output-dir", str(tmp_path), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    mean = float(re.search(r"^mean\s+([\d.]+)", printed, re.M).group(1))
    assert mean >= 100 * MIN_HOLDOUT_PCK
    assert "r_ankle" in printed or "R ankle" in printed or "ankle" in printed.lower()
    # bf16 with the edge layers in fp32 keeps the trained model's score (docs/benchmarks.md: within 0.1 of eager).
    assert main(["eval", NAME, "--set", f"data.root={lsp_root}", "--set", "data.val_split=holdout", "--backend",
                 "torch-bf16", "--json", str(tmp_path / "bf16.json"), "--output-dir", str(tmp_path), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "backend: torch-bf16" in printed
    assert abs(float(re.search(r"^mean\s+([\d.]+)", printed, re.M).group(1)) - mean) <= 0.1 + 1e-9
    assert json.loads((tmp_path / "bf16.json").read_text())["backend"] == "torch-bf16"


def test_cli_info_pretrained(capsys):
    assert main(["info", "--pretrained"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == list(PRETRAINED)


def test_recipe_config_matches_the_shipped_model():
    recipe = load_config(Path(__file__).resolve().parents[2] / "configs" / "hrnet-lite_lsp_128x128.yaml")
    shipped = pretrained_config(NAME)
    assert (recipe.model.name, recipe.model.kwargs, recipe.data.input_size, recipe.data.holdout) == \
           (shipped.model.name, shipped.model.kwargs, shipped.data.input_size, shipped.data.holdout)
    assert recipe.data.val_split == "holdout" and shipped.data.val_split == "test"
