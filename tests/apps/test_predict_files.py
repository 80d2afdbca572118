"""posekit.apps.predict_files: ``posekit predict`` as a Python call (images and videos, summary, checks)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from posekit.apps.predict_files import check_inputs, predict_files
from posekit.apps.predictor import PosePredictor
from posekit.build import build_model
from posekit.config import config_from_dict
from posekit.errors import PosekitError


@pytest.fixture
def tiny_predictor():
    cfg = config_from_dict({"model": {"name": "hrnet_w16_small", "num_keypoints": 14},
                            "data": {"skeleton": "synthetic", "input_size": [64, 64]},
                            "test": {"batch_size": 2, "flip_test": False}, "train": {"device": "cpu"}})
    torch.manual_seed(0)
    return PosePredictor(build_model(cfg, load=False), cfg, device="cpu")


def _frames_folder(tmp_path, count=3, broken=None):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(count):
        cv2.imwrite(str(folder / f"{i:03d}.png"), np.full((48, 64, 3), 40 * i, np.uint8))
    if broken is not None:
        (folder / f"{broken:03d}.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return folder


def test_predict_files_on_a_folder_counts_writes_and_says_so(tmp_path, tiny_predictor):
    folder = _frames_folder(tmp_path, count=3, broken=1)
    lines, warnings = [], []
    out = tmp_path / "out"
    summary = predict_files(tiny_predictor, [folder], out, draw=True, progress=False, log=lines.append,
                            warn=warnings.append)
    assert (summary.images, summary.unreadable, summary.people, summary.skipped_boxes) == (3, 1, 2, 0)
    assert summary.written == [out / "poses.json", out / "drawn"] and summary.videos == []
    assert lines == ["3 images (1 unreadable, skipped), 2 people, 0 boxes skipped (empty or outside the image)",
                     f"wrote {out / 'poses.json'}, {out / 'drawn'}"]
    assert len(warnings) == 1 and "001.png" in warnings[0] and warnings[0].endswith("(skipped)")
    entries = json.loads((out / "poses.json").read_text())
    assert [len(e["people"]) for e in entries] == [1, 0, 1] and "error" in entries[1]
    assert sorted(p.name for p in (out / "drawn").iterdir()) == ["000.png", "002.png"]


def test_predict_files_tracks_the_images_as_one_sequence(tmp_path, tiny_predictor):
    summary = predict_files(tiny_predictor, [_frames_folder(tmp_path)], tmp_path / "out", track=True, progress=False)
    entries = json.loads((tmp_path / "out" / "poses.json").read_text())
    assert summary.images == 3 and summary.people == sum(len(e["people"]) for e in entries) >= 1
    assert entries[0]["people"][0]["track_id"] == 0      # single-person tracking: the whole first frame


def test_a_lone_unreadable_image_raises_its_own_error(tmp_path, tiny_predictor):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(PosekitError, match="bad.png"):
        predict_files(tiny_predictor, [bad], tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "poses.json").exists()


def test_check_inputs_refuses_before_any_model(tmp_path):
    folder = _frames_folder(tmp_path, count=1)
    images, videos = check_inputs([folder])
    assert [p.name for p in images] == ["000.png"] and videos == []
    with pytest.raises(PosekitError, match="--det-file needs --ann"):
        check_inputs([folder], det_file="dets.json")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PosekitError, match="no image or video files"):
        check_inputs([empty])
