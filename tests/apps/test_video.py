"""Video in and out (OpenCV), bad videos, and ``posekit predict VIDEO --track`` end to end.

The mid-video bad frame is real: an MJPG .avi is written with OpenCV and the JPEG bytes of one frame (from its
start-of-image to its end-of-image marker) are overwritten with zeros, so FFmpeg's decoder finds no image in
that frame and ``VideoCapture.read`` fails on it, then carries on with the next one. (Damage *inside* the
entropy-coded data of a frame is concealed by FFmpeg, which paints over it and reports success; such a frame
cannot be detected and is processed like any other.)
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import List

import cv2
import numpy as np
import pytest
import torch

from posekit.weightfiles import save_weights
from posekit.cli import main
from posekit.config import config_from_dict
from posekit.data.synthetic import render_figure
from posekit.build import build_model
from posekit.errors import DataError
from posekit.apps.predict_files import find_inputs
from posekit.apps.video import VideoReader, VideoWriter, is_video_path, read_video_detections


def write_avi(path: Path, frames_rgb: List[np.ndarray], fps: float = 10.0) -> Path:
    height, width = frames_rgb[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened()
    for frame in frames_rgb:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def corrupt_frame(path: Path, index: int) -> None:
    """Zero the whole JPEG (SOI .. EOI) of frame ``index`` of an MJPG .avi, leaving the AVI structure intact.

    Frames are found by their start-of-image markers, so corrupt later frames before earlier ones."""
    data = bytearray(path.read_bytes())
    starts = [m.start() for m in re.finditer(b"\xff\xd8\xff", data)]
    start = starts[index]
    end = data.index(b"\xff\xd9", start) + 2       # 0xFF in entropy-coded data is stuffed: FFD9 is only EOI
    data[start:end] = bytes(end - start)
    path.write_bytes(bytes(data))


def flat_frames(count: int = 8, hw=(48, 64)) -> List[np.ndarray]:
    """Frames of one distinct colour each (red rises, blue falls), to identify them after decoding."""
    return [np.dstack([np.full(hw, 20 + 25 * i, np.uint8), np.full(hw, 128, np.uint8),
                       np.full(hw, 230 - 25 * i, np.uint8)]) for i in range(count)]


def frame_number(image: np.ndarray) -> int:
    return int(round((float(image[..., 0].mean()) - 20) / 25))


# ------------------------------------------------------------------------------------------------ reading
def test_frames_come_in_order_as_rgb_with_the_files_rate(tmp_path):
    path = write_avi(tmp_path / "clip.avi", flat_frames(), fps=12.5)
    reader = VideoReader(path)
    assert reader.fps == pytest.approx(12.5) and len(reader) == 8 and reader.size_wh == (64, 48)
    frames = list(reader)
    assert [frame_number(f) for f in frames] == list(range(8))
    assert frames[0].shape == (48, 64, 3) and abs(int(frames[0][0, 0, 2]) - 230) < 8     # RGB, not BGR
    assert reader.skipped == 0 and reader.frames_read == 8 and reader.summary() == "8 frames read"


def test_a_frame_that_fails_to_decode_mid_video_is_skipped_and_counted(tmp_path):
    path = write_avi(tmp_path / "clip.avi", flat_frames())
    corrupt_frame(path, 3)
    reader = VideoReader(path)
    indexed = list(reader.indexed())
    assert [i for i, _ in indexed] == [0, 1, 2, 4, 5, 6, 7]
    assert [frame_number(f) for _, f in indexed] == [0, 1, 2, 4, 5, 6, 7]     # the rest is the right frames
    assert reader.skipped == 1 and reader.skipped_indices == [3] and reader.missing_at_end == 0
    assert "1 undecodable frame skipped (3)" in reader.summary()
    # Two bad frames, one of them the first (frame 0 is still the first intact SOI).
    corrupt_frame(path, 0)
    reader = VideoReader(path)
    assert [i for i, _ in reader.indexed()] == [1, 2, 4, 5, 6, 7] and reader.skipped_indices == [0, 3]


def test_unreadable_videos_are_one_line_data_errors_naming_the_file(tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video" * 3)
    with pytest.raises(DataError, match="garbage.mp4") as err:
        VideoReader(garbage)
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="not found"):
        VideoReader(tmp_path / "missing.avi")
    (tmp_path / "empty.avi").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        VideoReader(tmp_path / "empty.avi")
    # A file that opens but has not one decodable frame.
    path = write_avi(tmp_path / "dead.avi", flat_frames(2))
    corrupt_frame(path, 1)
    corrupt_frame(path, 0)
    with pytest.raises(DataError, match="no frame of the video could be decoded"):
        list(VideoReader(path))


# ------------------------------------------------------------------------------------------------ writing
def test_the_writer_writes_mp4v_at_the_given_rate_and_falls_back_to_mjpg_avi(tmp_path):
    frames = flat_frames(5)
    with VideoWriter(tmp_path / "out.mp4", fps=15.0) as writer:
        for frame in frames:
            writer.write(frame)
    assert writer.path == tmp_path / "out.mp4" and writer.codec == "mp4v" and not writer.fell_back
    back = VideoReader(writer.path)
    assert back.fps == pytest.approx(15.0) and [frame_number(f) for f in back] == list(range(5))
    assert not list(tmp_path.glob(".*tmp*"))           # no temporary left behind

    # A codec the build lacks: the next one is used, and the output says so.
    fallback = VideoWriter(tmp_path / "other.mp4", fps=15.0, codecs=(("XXXX", ".mp4"), ("MJPG", ".avi")))
    for frame in frames:
        fallback.write(frame)
    assert fallback.close() == tmp_path / "other.avi"
    assert fallback.codec == "MJPG" and fallback.fell_back and "XXXX unavailable" in fallback.describe()
    assert len(list(VideoReader(tmp_path / "other.avi"))) == 5
    with pytest.raises(DataError, match="no codec"):
        VideoWriter(tmp_path / "none.mp4", 10.0, codecs=(("XXXX", ".mp4"),)).write(frames[0])


# ------------------------------------------------------------------------------------------------- inputs
def test_inputs_are_sorted_into_images_and_videos(tmp_path):
    write_avi(tmp_path / "b.avi", flat_frames(2))
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("ignored in folders")
    images, videos = find_inputs([tmp_path])
    assert images == [tmp_path / "a.png"] and videos == [tmp_path / "b.avi"]
    # Named directly without a known extension: decoded as an image first, then opened as a video.
    (tmp_path / "b.avi").rename(tmp_path / "clip.bin")
    assert find_inputs([tmp_path / "clip.bin"]) == ([], [tmp_path / "clip.bin"])
    with pytest.raises(DataError, match="neither an image nor a video"):
        find_inputs([tmp_path / "notes.txt"])
    assert is_video_path("x.MP4") and not is_video_path("x.jpg")


def test_video_detections_are_read_by_frame_index(tmp_path):
    path = tmp_path / "dets.json"
    path.write_text(json.dumps([{"image_id": 0, "bbox": [1, 2, 3, 4], "score": 0.9, "category_id": 1},
                                {"image_id": 0, "bbox": [5, 6, 7, 8], "score": 0.2},
                                {"image_id": 4, "bbox": [1, 1, 9, 9], "score": 0.8},
                                {"image_id": 4, "bbox": [1, 1, 9, 9], "score": 0.8, "category_id": 3}]))
    dets = read_video_detections(path, score_threshold=0.5)
    assert set(dets) == {0, 4}
    np.testing.assert_array_equal(dets[0], [[1, 2, 3, 4, 0.9]])
    np.testing.assert_array_equal(dets[4], [[1, 1, 9, 9, 0.8]])
    path.write_text(json.dumps([{"image_id": "frame1", "bbox": [1, 2, 3, 4]}]))
    with pytest.raises(DataError, match="frame index"):
        read_video_detections(path)
    path.write_text(json.dumps([{"image_id": 1, "bbox": [1, 2, 3]}]))
    with pytest.raises(DataError, match="4 finite numbers"):
        read_video_detections(path)


# ---------------------------------------------------------------------------------------- posekit predict
def two_figures_video(tmp_path: Path, frames: int = 8):
    """Two synthetic figures walking towards each other and crossing: (video path, boxes per frame)."""
    rng = np.random.default_rng(3)
    figures = [render_figure(rng, (96, 96)) for _ in range(2)]
    background = np.full((120, 224, 3), 70, np.uint8)
    video, boxes = [], {}
    for t in range(frames):
        canvas = background.copy()
        rows = []
        for (image_bgr, _, box), x in zip(figures, (8 + 16 * t, 120 - 16 * t)):
            canvas[12:108, x:x + 96] = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
            rows.append([box[0] + x, box[1] + 12, box[2], box[3], 0.9])
        video.append(canvas)
        boxes[t] = rows
    return write_avi(tmp_path / "walk.avi", video), boxes


@pytest.fixture
def tiny_model_files(tmp_path):
    cfg = config_from_dict({
        "model": {"name": "hrnet_w16_small", "num_keypoints": 14},
        "data": {"skeleton": "synthetic", "input_size": [64, 64]},
        "test": {"batch_size": 8, "flip_test": False},
        "train": {"workers": 0, "device": "cpu"},
    })
    torch.manual_seed(0)
    weights = tmp_path / "w.safetensors"
    save_weights(build_model(cfg, load=False), weights)
    config = tmp_path / "tiny.yaml"
    config.write_text(cfg.to_yaml())
    return str(config), str(weights)


def test_predict_tracks_people_through_a_video_with_a_bad_frame(tmp_path, tiny_model_files, capsys):
    config, weights = tiny_model_files
    video, boxes = two_figures_video(tmp_path)
    corrupt_frame(video, 5)
    dets = [{"image_id": t, "category_id": 1, "bbox": row[:4], "score": row[4]} for t, rows in boxes.items()
            for row in rows]
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    out = tmp_path / "out"
    argv = ["predict", config, str(video), "--weights", weights, "--det-file", str(tmp_path / "dets.json"),
            "--track", "--smooth", "--out", str(out), "--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "7 frames read, 1 undecodable frame skipped (5)" in printed

    folder = out / "walk"
    frame_files = sorted((folder / "frames").glob("*.json"))
    assert [f.stem for f in frame_files] == ["000000", "000001", "000002", "000003", "000004", "000006", "000007"]
    first = json.loads(frame_files[0].read_text())
    assert first["frame"] == 0 and first["time"] == 0.0 and len(first["people"]) >= 2
    assert all(p["track_id"] is not None and len(p["keypoints"]) == 14 for p in first["people"])
    assert len({p["track_id"] for p in first["people"]}) == len(first["people"])     # distinct ids in a frame

    results = json.loads((folder / "keypoints_results.json").read_text())
    assert {r["image_id"] for r in results} == {0, 1, 2, 3, 4, 6, 7}
    assert all(isinstance(r["track_id"], int) and len(r["keypoints"]) == 42 for r in results)

    annotated = folder / "annotated.mp4"
    assert annotated.is_file() and f"{annotated} (mp4v)" in printed
    back = VideoReader(annotated)
    assert len(list(back)) == 7 and back.size_wh == (224, 120) and back.fps == pytest.approx(10.0)


def test_predict_on_a_video_without_tracking_or_detections(tmp_path, tiny_model_files, capsys):
    config, weights = tiny_model_files
    video = write_avi(tmp_path / "clip.avi", flat_frames(3, hw=(64, 80)))
    out = tmp_path / "out"
    assert main(["predict", config, str(video), "--weights", weights, "--out", str(out), "--no-progress"]) == 0
    assert "3 frames read; 3 people" in capsys.readouterr().out
    frames = [json.loads(p.read_text()) for p in sorted((out / "clip" / "frames").glob("*.json"))]
    assert [len(f["people"]) for f in frames] == [1, 1, 1]                # each whole frame is one person
    assert frames[0]["people"][0]["box"] == [0.0, 0.0, 80.0, 64.0]
    assert frames[0]["people"][0]["track_id"] is None
    assert len(list(VideoReader(out / "clip" / "annotated.mp4"))) == 3


def test_predict_on_an_unreadable_video_is_a_one_line_error(tmp_path, tiny_model_files, capsys):
    config, weights = tiny_model_files
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"definitely not a video" * 10)
    assert main(["predict", config, str(broken), "--weights", weights, "--track", "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "broken.mp4" in err and "cannot open as a video" in err


def test_predict_track_on_a_folder_of_frames_skips_an_unreadable_one(tmp_path, tiny_model_files, capsys):
    config, weights = tiny_model_files
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(flat_frames(4, hw=(64, 80))):
        cv2.imwrite(str(folder / f"{i:03d}.png"), frame)
    (folder / "002.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "out"
    assert main(["predict", config, str(folder), "--weights", weights, "--track", "--out", str(out),
                 "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "4 images (1 unreadable, skipped)" in captured.out and "002.png" in captured.err
    entries = json.loads((out / "poses.json").read_text())
    assert [e["file"].endswith(f"00{i}.png") for i, e in enumerate(entries)] == [True] * 4
    assert "error" in entries[2] and entries[2]["people"] == []
    assert entries[0]["people"][0]["track_id"] == 0      # single-person tracking: the whole first frame
