"""The bad-input corpus (made here, in tmp_path): each case is a one-line PosekitError naming the file, or a
counted, documented skip; never a traceback, never code executed, nothing already written lost.

docs/bad-inputs.md lists every case with what posekit does.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import struct
import time
import zlib
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import scipy.io
import torch

import posekit
from posekit.weightfiles import load_weights, read_state_dict, save_weights
from posekit.cli import main
from posekit.codecs import GaussianHeatmap
from posekit.config import load_config
from posekit.data import images
from posekit.data.coco import read_coco_detections, read_coco_keypoints
from posekit.data.dataset import TopDownDataset
from posekit.data.flic import read_flic_examples_mat, read_flic_h5
from posekit.data.images import (MAX_IMAGE_PIXELS, decode_image, image_header, image_size_wh, max_image_pixels,
                                 read_image)
from posekit.data.lsp import read_lsp, read_lspet
from posekit.data.mpii import read_mpii_h5, read_mpii_json
from posekit.data.records import PersonRecord
from posekit.errors import CheckpointError, ConfigError, DataError, PosekitError
from posekit.fileio import read_json
from posekit.models import create_model
from posekit.apps.predictor import PosePredictor, load_rgb
from posekit.skeletons import COCO


def one_line(error: PosekitError, path) -> str:
    """The error names ``path`` first and fits on one line."""
    text = str(error)
    assert "\n" not in text, text
    assert error.path == str(path) and text.startswith(f"{path}: "), text
    return text


def raises_one_line(kind, path, fragment, call, *args, **kwargs) -> str:
    with pytest.raises(kind) as info:
        call(*args, **kwargs)
    text = one_line(info.value, path)
    assert fragment in text, text
    return text


# ================================================================================================ corpus makers

RED, BLACK = (255, 0, 0), (0, 0, 0)


def two_colour_rgb(height: int = 16, width: int = 32) -> np.ndarray:
    """Left half red, right half black (RGB): orientation and colour order are visible at a glance."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = RED
    return image


def encode(rgb: np.ndarray, ext: str = ".jpg", params=()) -> bytes:
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 and rgb.shape[2] == 3 else rgb
    ok, data = cv2.imencode(ext, bgr, list(params))
    assert ok
    return data.tobytes()


def jpeg(rgb: np.ndarray, **params) -> bytes:
    return encode(rgb, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 100] + sum(([getattr(cv2, k), v] for k, v in params.items()), []))


def with_exif_orientation(data: bytes, orientation: int) -> bytes:
    """An APP1 Exif segment (big-endian TIFF, one IFD entry: Orientation, SHORT) inserted after SOI."""
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1)
    tiff += struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    payload = b"Exif\x00\x00" + tiff
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


class _BitWriter:
    def __init__(self):
        self.out, self.acc, self.count = bytearray(), 0, 0

    def put(self, value: int, bits: int) -> None:
        for i in range(bits - 1, -1, -1):
            self.acc = (self.acc << 1) | ((value >> i) & 1)
            self.count += 1
            if self.count == 8:
                self.out.append(self.acc)
                if self.acc == 0xFF:
                    self.out.append(0)   # byte stuffing
                self.acc, self.count = 0, 0

    def finish(self) -> bytes:
        while self.count:
            self.put(1, 1)
        return bytes(self.out)


def cmyk_jpeg(blocks, columns: int) -> bytes:
    """A baseline 4-component (CMYK, Adobe APP14 transform 0) JPEG of flat 8 x 8 blocks, written by hand:
    OpenCV cannot write CMYK and PIL is not a dependency. ``blocks``: stored (C, M, Y, K) per block, row-major.

    Quantisation 1 everywhere, so a flat block is its DC coefficient 8 * (value - 128) and an end-of-block.
    DC Huffman table: categories 0-11 as 4-bit codes 0000-1011; AC table: only end-of-block, code '0'.
    """
    rows = len(blocks) // columns
    out = b"\xff\xd8" + _segment(0xEE, b"Adobe" + struct.pack(">HHHB", 100, 0, 0, 0))
    out += _segment(0xDB, b"\x00" + b"\x01" * 64)
    out += _segment(0xC0, struct.pack(">BHHB", 8, 8 * rows, 8 * columns, 4)
                    + b"".join(bytes([c + 1, 0x11, 0]) for c in range(4)))
    out += _segment(0xC4, b"\x00" + bytes([0, 0, 0, 12] + [0] * 12) + bytes(range(12)))
    out += _segment(0xC4, b"\x10" + bytes([1] + [0] * 15) + b"\x00")
    out += _segment(0xDA, bytes([4]) + b"".join(bytes([c + 1, 0]) for c in range(4)) + b"\x00\x3f\x00")
    bits, previous = _BitWriter(), [0, 0, 0, 0]
    for block in blocks:
        for c in range(4):
            dc = 8 * (int(block[c]) - 128)
            diff, previous[c] = dc - previous[c], dc
            size = abs(diff).bit_length()
            bits.put(size, 4)
            if size:
                bits.put(diff if diff > 0 else diff + (1 << size) - 1, size)
            bits.put(0, 1)   # end of block
    return out + bits.finish() + b"\xff\xd9"


def jpeg_claiming(data: bytes, width: int, height: int) -> bytes:
    """The same JPEG with its frame header (SOF0) saying width x height."""
    sof = data.index(b"\xff\xc0")
    return data[: sof + 5] + struct.pack(">HH", height, width) + data[sof + 9:]


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose IHDR (valid CRC) says width x height, followed by a tiny IDAT and IEND."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 16))
            + png_chunk(b"IEND", b""))


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# ================================================================================================ images

def test_truncated_jpeg_is_refused_not_grey_filled(tmp_path):
    rng = np.random.default_rng(0)
    data = jpeg(cv2.GaussianBlur(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8), (5, 5), 0))
    for name, cut in [("half.jpg", len(data) // 2), ("no_eoi.jpg", len(data) - 2)]:
        path = write(tmp_path, name, data[:cut])
        raises_one_line(DataError, path, "cannot decode image (truncated JPEG: no end-of-image marker after the image data)",
                        read_image, path)
    headers_only = write(tmp_path, "headers.jpg", data[:100])
    raises_one_line(DataError, headers_only, "cannot decode image (truncated JPEG: the file ends inside its headers)",
                    read_image, headers_only)
    raises_one_line(DataError, "clip", "truncated JPEG", decode_image, data[: len(data) // 2], "clip")
    # Bytes after the end-of-image marker (a phone's "motion photo" video, a second preview) are fine.
    trailer = write(tmp_path, "motion.jpg", data + b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    np.testing.assert_array_equal(read_image(trailer), read_image(write(tmp_path, "whole.jpg", data)))


def test_truncated_and_corrupt_png(tmp_path):
    data = encode(two_colour_rgb(), ".png")
    path = write(tmp_path, "cut.png", data[: len(data) - 12])   # IEND chunk cut off
    raises_one_line(DataError, path, "cannot decode image (truncated PNG: no IEND chunk)", read_image, path)
    corrupt = bytearray(data)
    corrupt[40:48] = b"\x00" * 8   # inside IHDR/IDAT: CRC mismatch
    path = write(tmp_path, "crc.png", bytes(corrupt))
    raises_one_line(DataError, path, "cannot decode image (corrupt PNG data or an unsupported PNG variant)", read_image, path)


def test_empty_missing_directory_and_text_named_jpg(tmp_path):
    empty = write(tmp_path, "empty.jpg", b"")
    raises_one_line(DataError, empty, "image file is empty", read_image, empty)
    raises_one_line(DataError, tmp_path / "absent.jpg", "image file not found", read_image, tmp_path / "absent.jpg")
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    raises_one_line(DataError, folder, "is a directory", read_image, folder)
    text = write(tmp_path, "notes.jpg", b"hello, this is not a picture\n")
    raises_one_line(DataError, text, "cannot decode image (not an image file: no known signature; it starts with b'hello, t')",
                    read_image, text)
    garbage = write(tmp_path, "garbage.jpg", b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8)
    raises_one_line(DataError, garbage, "cannot decode image (corrupt JPEG data", read_image, garbage)
    assert image_header(text) == (None, None)
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)   # opening it for reading would block until someone writes
    raises_one_line(DataError, fifo, "not a regular file", read_image, fifo)
    raises_one_line(DataError, fifo, "not a regular file", image_header, fifo)
    sparse = tmp_path / "sparse.jpg"
    with open(sparse, "wb") as f:
        f.write(jpeg(two_colour_rgb()))
        f.truncate(40 << 20)   # 40 MiB, nearly all a hole: not read into memory
    raises_one_line(DataError, sparse, "file of 41,943,040 bytes is larger than any image within the limit of 1,000 pixels",
                    read_image, sparse, max_pixels=1000)
    raises_one_line(DataError, tmp_path / "absent.png", "image file not found", image_header, tmp_path / "absent.png")


def test_png_alpha_is_dropped_not_composited(tmp_path):
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., :3] = (200, 10, 30)   # RGB as stored ...
    rgba[..., 3] = 0                # ... fully transparent
    rgba[0, 0] = (1, 2, 3, 255)
    bgra = rgba[..., [2, 1, 0, 3]]
    path = write(tmp_path, "alpha.png", encode(bgra, ".png"))
    image = read_image(path)
    assert image.shape == (4, 5, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[1, 1], (200, 10, 30))
    np.testing.assert_array_equal(image[0, 0], (1, 2, 3))


def test_16_bit_png_keeps_the_high_byte(tmp_path):
    grey = np.full((3, 4), 0x1234, np.uint16)
    grey[0, :3] = (65535, 0x12FF, 0x00FF)
    path = write(tmp_path, "grey16.png", encode(grey, ".png"))
    image = read_image(path)
    assert image.shape == (3, 4, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[0, :4, 0], (255, 0x12, 0, 0x12))
    colour = np.zeros((2, 2, 3), np.uint16)
    colour[0, 0] = (0xFFFF, 0x8000, 0x0100)   # RGB
    image = read_image(write(tmp_path, "colour16.png", encode(colour, ".png")))
    np.testing.assert_array_equal(image[0, 0], (255, 0x80, 1))


def test_grey_png_and_jpeg_get_three_equal_channels(tmp_path):
    grey = (np.arange(20, dtype=np.uint8) * 12).reshape(4, 5)
    image = read_image(write(tmp_path, "grey.png", encode(grey, ".png")))
    assert image.shape == (4, 5, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], grey)
    flat = np.full((16, 16), 77, np.uint8)
    image = read_image(write(tmp_path, "grey.jpg", encode(flat, ".jpg")))
    assert image.shape == (16, 16, 3) and np.abs(image.astype(int) - 77).max() <= 1


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path):
    # Adobe-inverted CMYK as Photoshop stores it: (255, 0, 0, 255) is red, (0, 255, 255, 255) cyan.
    data = cmyk_jpeg([(255, 0, 0, 255), (0, 255, 255, 255)], columns=2)
    path = write(tmp_path, "cmyk.jpg", data)
    assert image_header(path) == ("JPEG", (16, 8))
    image = read_image(path)
    assert image.shape == (8, 16, 3)
    assert np.abs(image[:, :8].astype(int) - (255, 0, 0)).max() <= 2
    assert np.abs(image[:, 8:].astype(int) - (0, 255, 255)).max() <= 2
    np.testing.assert_array_equal(read_image(path, rgb=False), image[..., ::-1])


@pytest.mark.parametrize("orientation, shown_hw, shown_red_corner", [
    (1, (16, 32), (0, 0)),     # as stored
    (3, (16, 32), (-1, -1)),   # rotated 180
    (6, (32, 16), (0, 0)),     # stored picture turned 90 degrees clockwise: the red left half is now on top
    (8, (32, 16), (-1, -1)),   # 90 degrees counter-clockwise: red at the bottom
])
def test_exif_orientation_ignored_for_datasets_applied_on_request(tmp_path, orientation, shown_hw, shown_red_corner):
    path = write(tmp_path, f"o{orientation}.jpg", with_exif_orientation(jpeg(two_colour_rgb()), orientation))
    stored = read_image(path)
    assert stored.shape[:2] == (16, 32)   # the annotation frame: stored pixels
    assert tuple(stored[0, 0]) > (250, 0, 0) and stored[-1, -1].max() < 5
    shown = read_image(path, apply_orientation=True)
    assert shown.shape[:2] == shown_hw
    assert shown[shown_red_corner][0] > 250 and shown[shown_red_corner][1:].max() < 5
    assert image_size_wh(path) == (32, 16)   # the header size is the stored one
    reduced = read_image(path, reduce=2, apply_orientation=True)
    assert reduced.shape[:2] == (shown_hw[0] // 2, shown_hw[1] // 2)
    # The predictor reads files as a photo viewer shows them.
    assert load_rgb(path).shape[:2] == shown_hw


def test_a_header_claiming_20000_x_20000_is_refused_before_decoding(tmp_path, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("the decoder must not be reached")

    small_jpeg = jpeg(two_colour_rgb())
    ok, bmp = cv2.imencode(".bmp", np.zeros((4, 4, 3), np.uint8))
    corpus = {
        "huge.jpg": jpeg_claiming(small_jpeg, 20000, 20000),
        "huge.png": png_claiming(20000, 20000),
        "huge.bmp": bmp.tobytes()[:18] + struct.pack("<ii", 20000, -20000) + bmp.tobytes()[26:],
        "huge.ppm": b"P6\n# a comment\n20000 20000\n255\n" + b"\x00" * 48,
    }
    monkeypatch.setattr(images.cv2, "imdecode", no_decoding)
    for name, data in corpus.items():
        path = write(tmp_path, name, data)
        assert image_size_wh(path) == (20000, 20000)
        start = time.perf_counter()
        text = raises_one_line(DataError, path, "20000 x 20000 pixels is over the limit of 268,435,456 pixels",
                               read_image, path)
        assert time.perf_counter() - start < 0.5 and "POSEKIT_MAX_IMAGE_PIXELS" in text
        raises_one_line(DataError, name, "over the limit", decode_image, data, name)


def test_pixel_limit_is_configurable(tmp_path, monkeypatch):
    path = write(tmp_path, "small.png", encode(two_colour_rgb(), ".png"))   # 32 x 16 = 512 pixels
    assert max_image_pixels() == MAX_IMAGE_PIXELS == 2 ** 28
    assert read_image(path, max_pixels=512).shape == (16, 32, 3)
    raises_one_line(DataError, path, "PNG image of 32 x 16 pixels is over the limit of 511 pixels",
                    read_image, path, max_pixels=511)
    monkeypatch.setenv("POSEKIT_MAX_IMAGE_PIXELS", "500")
    assert max_image_pixels() == 500
    raises_one_line(DataError, path, "over the limit of 500 pixels", read_image, path)
    monkeypatch.setenv("POSEKIT_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ConfigError, match="POSEKIT_MAX_IMAGE_PIXELS: must be a positive whole number"):
        read_image(path)


def test_header_sizes_of_every_format_opencv_writes(tmp_path):
    rgb = np.zeros((37, 53, 3), np.uint8)
    cases = [(".jpg", [], "JPEG"), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], "JPEG"), (".png", [], "PNG"),
             (".bmp", [], "BMP"), (".tif", [], "TIFF"), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80], "WebP"),
             (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101], "WebP"), (".gif", [], "GIF"), (".ppm", [], "PNM"),
             (".ras", [], "Sun raster")]
    for n, (ext, params, kind) in enumerate(cases):
        if not cv2.haveImageWriter("x" + ext):      # the GIF encoder: in OpenCV 5, absent from 4.11
            continue
        path = write(tmp_path, f"im{n}{ext}", encode(rgb, ext, params))
        assert image_header(path) == (kind, (53, 37)), ext
        assert read_image(path).shape == (37, 53, 3), ext


def test_reduced_decoding_and_non_ascii_paths(tmp_path):
    rgb = np.zeros((37, 53, 3), np.uint8)
    rgb[..., 1] = 200
    data = jpeg(rgb)
    path = write(tmp_path, "Bild_ü_写真.jpg", data)
    png = write(tmp_path, "Bild_ü_写真.png", encode(rgb, ".png"))
    for reduce in (1, 2, 4, 8):
        image = read_image(path, reduce=reduce)
        assert image.shape == (math.ceil(37 / reduce), math.ceil(53 / reduce), 3)   # JPEG scales in the DCT
        assert np.abs(image.astype(int) - (0, 200, 0)).max() <= 2
        assert read_image(png, reduce=reduce).shape == (37 // reduce, 53 // reduce, 3)
    np.testing.assert_array_equal(decode_image(data), read_image(path))
    np.testing.assert_array_equal(decode_image(np.frombuffer(data, np.uint8), rgb=False), read_image(path, rgb=False))
    with pytest.raises(ValueError, match="reduce must be 1, 2, 4 or 8"):
        read_image(path, reduce=3)


def test_the_command_starts_on_an_opencv_build_without_utils_logging(tmp_path, monkeypatch, capsys):
    """opencv-python 4.11.0.86 has no cv2.utils.logging: silencing OpenCV's warnings must not stop the command."""
    monkeypatch.setattr(cv2, "utils", object(), raising=False)
    monkeypatch.delattr(cv2, "setLogLevel", raising=False)
    images.silence_decoder_warnings()
    code = main(["score", "--protocol", "lsp", "--gt", str(tmp_path / "absent.mat"), "--pred", str(tmp_path / "p.npy")])
    err = capsys.readouterr().err
    assert code == 2 and "not found" in err and "Traceback" not in err and "logging" not in err


# ================================================================================================ annotation files

def coco_doc(**changes):
    doc = {
        "images": [{"id": 7, "file_name": "a.jpg", "width": 100, "height": 80}],
        "annotations": [{"id": 11, "image_id": 7, "category_id": 1, "iscrowd": 0, "area": 1200.0,
                         "bbox": [10, 20, 30, 40], "keypoints": [15, 25, 2] * 17, "num_keypoints": 17}],
        "categories": [{"id": 1, "name": "person"}],
    }
    doc.update(changes)
    return doc


def annotation(**changes):
    ann = dict(coco_doc()["annotations"][0])
    ann.update(changes)
    return ann


@pytest.mark.parametrize("doc, fragment", [
    ({"annotations": []}, "missing key 'images'"),
    (coco_doc(images=[{"id": 7, "file_name": "a.jpg", "width": 100}]), "images[0] has no 'height'"),
    (coco_doc(images=[{"id": "7", "file_name": "a.jpg", "width": 100, "height": 80}]), "'id' must be an integer"),
    (coco_doc(images=[{"id": 7, "file_name": "a.jpg", "width": -100, "height": 80}]),
     "width/height must be positive finite numbers"),
    (coco_doc(images=[{"id": 7, "file_name": "a.jpg", "width": math.inf, "height": 80}]),
     "width/height must be positive finite numbers"),
    (coco_doc(images=[{"id": 7, "file_name": "a.jpg", "width": math.nan, "height": 80}]),
     "width/height must be positive finite numbers"),
    (coco_doc(annotations=[annotation(bbox=[10, 20, -30, 40])]), "annotation 11: 'bbox' has a negative size"),
    (coco_doc(annotations=[annotation(bbox=[10, math.nan, 30, 40])]), "annotation 11: 'bbox' holds a value that is not a finite"),
    (coco_doc(annotations=[annotation(keypoints={"x": 1})]), "annotation 11: 'keypoints' must be a list"),
    (coco_doc(annotations=[annotation(keypoints=[1, 2, 7] * 17)]), "keypoint visibility must be 0, 1 or 2"),
    (coco_doc(annotations=[annotation(area=math.nan)]), "annotation 11: 'area' must be a finite number"),
    (coco_doc(annotations=[{k: v for k, v in annotation().items() if k != "image_id"}]), "has no 'image_id'"),
    (coco_doc(annotations="all of them"), "'annotations' must be a list"),
    (None, "expected a COCO annotation object at the top level, found NoneType"),
])
def test_coco_json_problems_name_the_file_and_the_annotation(tmp_path, doc, fragment):
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(doc))   # Python's json writes NaN / Infinity and reads them back
    raises_one_line(DataError, path, fragment, read_coco_keypoints, path, tmp_path)


def test_hostile_json_files(tmp_path):
    deep = write(tmp_path, "deep.json", b"[" * 200000 + b"]" * 200000)
    raises_one_line(DataError, deep, "nested too deeply", read_json, deep)
    binary = write(tmp_path, "binary.json", bytes(range(256)))
    raises_one_line(DataError, binary, "not valid JSON", read_coco_keypoints, binary, tmp_path)
    dets = write(tmp_path, "det.json", json.dumps([{"image_id": 7, "category_id": 1, "bbox": [1, 2, 3, 4],
                                                    "score": math.inf}]).encode())
    raises_one_line(DataError, dets, "'score' must be a finite number", read_coco_detections, dets,
                    {7: ("a.jpg", 100, 80)}, tmp_path)


def test_zero_area_boxes_are_dropped_by_the_coco_reader(tmp_path):
    unlabelled = [0, 0, 0] * 17
    anns = [annotation(), annotation(id=14, area=0, bbox=[10, 20, 0, 0]),          # the official area-0 drop
            annotation(id=15, bbox=[100, 20, 30, 40]),                             # starts at the right edge
            annotation(id=16, bbox=[10, 20, 0, 40], keypoints=unlabelled, num_keypoints=0),
            annotation(id=17, bbox=[10, 20, 0, 0], iscrowd=1)]
    path = write(tmp_path, "ann.json", json.dumps(coco_doc(annotations=anns)).encode())
    for train in (True, False):
        assert [r.extras["annotation_id"] for r in read_coco_keypoints(path, tmp_path, train=train)] == [11]


@pytest.mark.parametrize("bbox", [[10, 20, 0, 40], [10, 20, 30, 0], [10, 20, 0, 0]])
def test_a_zero_size_box_of_a_labelled_person_is_refused_not_dropped(tmp_path, bbox):
    anns = [annotation(), annotation(id=12, bbox=bbox)]
    path = write(tmp_path, "ann.json", json.dumps(coco_doc(annotations=anns)).encode())
    for train in (True, False):
        raises_one_line(DataError, path, "annotation 12: 'bbox' has zero size", read_coco_keypoints, path, tmp_path,
                        train=train)


def test_keypoints_far_outside_the_image_are_kept_and_get_zero_target_weight(tmp_path):
    far = [15, 25, 2] * 17
    far[0:3] = [1e9, -1e9, 2]
    far[3:6] = [-5000, 40, 2]
    far[6:9] = [1e300, 1e300, 1]
    path = write(tmp_path, "ann.json", json.dumps(coco_doc(annotations=[annotation(keypoints=far)])).encode())
    (record,) = read_coco_keypoints(path, tmp_path)
    np.testing.assert_array_equal(record.keypoints[:3], [[1e9, -1e9, 2], [-5000, 40, 2], [1e300, 1e300, 1]])
    cv2.imwrite(str(tmp_path / "a.jpg"), np.full((80, 100, 3), 90, np.uint8))
    codec = GaussianHeatmap((64, 48), (16, 12), sigma=2.0)
    for train in (False, True):
        item = TopDownDataset([record], COCO, (64, 48), [codec], train=train)[0]
        weights = item["target_weights"][0].numpy().reshape(-1)
        np.testing.assert_array_equal(weights[:3], 0.0)   # outside the crop: not supervised
        assert weights[3:].min() > 0                       # the joints at (15, 25) are
        assert torch.isfinite(item["image"]).all() and torch.isfinite(item["targets"][0]).all()


def test_zero_area_box_in_the_predictor_is_a_counted_skip(tmp_path):
    cfg = load_config(None, ["model.name=hrnet_w16_small", "data.input_size=[64, 64]", "test.flip_test=false",
                             "train.device=cpu"])
    torch.manual_seed(0)
    predictor = PosePredictor(create_model("hrnet_w16_small", 17).eval(), cfg)
    image = np.full((60, 80, 3), 90, np.uint8)
    poses = predictor(image, [[10, 10, 0, 0], [10, 10, 30, 40], [500, 500, 20, 20], [math.nan, 0, 5, 5]])
    assert len(poses) == 1 and predictor.skipped_boxes == 3
    np.testing.assert_array_equal(poses[0].box, [10, 10, 30, 40])


def test_zero_area_box_in_the_dataset_is_a_one_line_error(tmp_path):
    cv2.imwrite(str(tmp_path / "a.jpg"), np.full((80, 100, 3), 90, np.uint8))
    record = PersonRecord(image_path=str(tmp_path / "a.jpg"), keypoints=np.zeros((17, 3)), box=np.array([10., 20, 0, 0]))
    codec = GaussianHeatmap((64, 48), (16, 12), sigma=2.0)
    raises_one_line(DataError, tmp_path / "a.jpg", "no area", TopDownDataset([record], COCO, (64, 48), [codec]).__getitem__, 0)


# ------------------------------------------------------------------------------------------------ .mat / .h5

def fake_lsp(root: Path, joints: np.ndarray, count: int, digits: int = 4) -> Path:
    (root / "images").mkdir(parents=True)
    for number in range(1, count + 1):
        cv2.imwrite(str(root / "images" / f"im{number:0{digits}d}.jpg"), np.zeros((12, 10, 3), np.uint8))
    scipy.io.savemat(root / "joints.mat", {"joints": joints})
    return root


@pytest.mark.parametrize("joints, fragment", [
    (np.zeros((3, 13, 2)), "'joints' has shape 3x13x2, expected 3x14xN (LSP: x, y, flag) or 14x3xN (LSPET)"),
    (np.zeros((2, 3, 14, 2)), "'joints' has shape 2x3x14x2"),
    (np.array([["a", "b"]]), "'joints' is not a numeric array"),
    (np.full((3, 14, 2), np.nan), "'joints' holds NaN or infinity"),
    (np.ones((3, 14, 2)) * 1j, "'joints' is not a numeric array"),
])
def test_lsp_mat_of_the_wrong_shape_or_type(tmp_path, joints, fragment):
    root = fake_lsp(tmp_path / "lsp", joints, 2)
    raises_one_line(DataError, root / "joints.mat", fragment, read_lsp, root)


def test_lsp_mat_that_is_hdf5_or_a_cell(tmp_path):
    root = fake_lsp(tmp_path / "v73", np.zeros((3, 14, 2)), 2)
    (root / "joints.mat").unlink()
    with h5py.File(root / "joints.mat", "w") as f:   # a MATLAB -v7.3 file is HDF5
        f["joints"] = np.zeros((2, 14, 3))
    raises_one_line(DataError, root / "joints.mat", "not an LSP joints.mat: cannot read it as a .mat file", read_lsp, root)
    cell = np.empty((1, 2), dtype=object)
    cell[0, 0], cell[0, 1] = np.zeros((3, 14)), "text"
    root = fake_lsp(tmp_path / "cell", cell, 2, digits=5)
    raises_one_line(DataError, root / "joints.mat", "'joints' is not a numeric array", read_lspet, root)


def flic_examples(**overrides):
    fields = {"coords": np.full((2, 29), 50.0), "filepath": "a.jpg", "imgdims": np.array([480.0, 720, 3]),
              "torsobox": np.array([10.0, 20, 30, 40]), "istrain": 1.0, "istest": 0.0}
    fields.update(overrides)
    dtype = [(name, object) for name in fields]
    examples = np.empty((1, 1), dtype=dtype)
    for name, value in fields.items():
        examples[0, 0][name] = value
    return examples


def test_flic_examples_mat_of_the_wrong_shape(tmp_path):
    path = tmp_path / "examples.mat"
    scipy.io.savemat(path, {"examples": flic_examples()})
    assert len(read_flic_examples_mat(path, tmp_path)) == 1
    scipy.io.savemat(path, {"examples": flic_examples(coords=np.zeros((2, 28)))})
    raises_one_line(DataError, path, "examples(1).coords is 2 x 28, expected 2 x 29", read_flic_examples_mat, path, tmp_path)
    scipy.io.savemat(path, {"examples": flic_examples(torsobox=np.array(["x"]))})
    raises_one_line(DataError, path, "examples(1).torsobox is not numeric", read_flic_examples_mat, path, tmp_path)
    scipy.io.savemat(path, {"examples": np.zeros((3, 29))})
    raises_one_line(DataError, path, "no struct array 'examples'", read_flic_examples_mat, path, tmp_path)


def test_h5_annotations_of_the_wrong_shape(tmp_path):
    path = tmp_path / "flic.h5"
    with h5py.File(path, "w") as f:
        f["part"] = np.zeros((3, 10, 2))
        f["visible"] = np.ones((3, 10))
        f["center"] = np.zeros((3, 2))
        f["scale"] = np.ones(3)
        f["imgname"] = np.array([b"a.jpg"] * 3)
    raises_one_line(DataError, path, "dataset 'part' is 3 x 10 x 2 (float64), expected numbers of shape N x 11 x 2",
                    read_flic_h5, path, tmp_path)
    raises_one_line(DataError, path, "no dataset 'normalize'", read_mpii_h5, path, tmp_path)
    text = write(tmp_path, "text.h5", b"not hdf5 at all")
    raises_one_line(DataError, text, "cannot open it as HDF5", read_mpii_h5, text, tmp_path)
    mpii = write(tmp_path, "mpii.json", json.dumps([{"image": "a.jpg", "center": [1, 2], "scale": 1.0,
                                                     "joints": [[1, 2]] * 15, "joints_vis": [1] * 15}]).encode())
    raises_one_line(DataError, mpii, "entry 0: expected 16 x 2 joints", read_mpii_json, mpii, tmp_path)


@pytest.mark.parametrize("changes, fragment", [
    ({"scale": "1.5"}, "entry 0: joints, joints_vis, center and scale must be numbers"),
    ({"scale": True}, "entry 0: joints, joints_vis, center and scale must be numbers"),
    ({"scale": [1.0, 2.0]}, "entry 0: joints, joints_vis, center and scale must be numbers"),
    ({"joints": [["1", "2"]] * 16}, "entry 0: joints, joints_vis, center and scale must be numbers"),
    ({"joints": [[1, 2]] * 15 + [[1]]}, "entry 0: joints, joints_vis, center and scale must be numbers"),
    ({"image": 5}, "entry 0: 'image' must be a file name, found 5"),
    ({"scale": -1.0}, "entry 0: non-finite coordinates or a scale <= 0"),
    ({"center": [math.nan, 2]}, "entry 0: non-finite coordinates or a scale <= 0"),
])
def test_mpii_json_wrong_types(tmp_path, changes, fragment):
    entry = {"image": "a.jpg", "center": [1, 2], "scale": 1.0, "joints": [[1, 2]] * 16, "joints_vis": [1] * 16}
    path = write(tmp_path, "mpii.json", json.dumps([{**entry, **changes}]).encode())
    raises_one_line(DataError, path, fragment, read_mpii_json, path, tmp_path)


# ================================================================================================ checkpoints

class Payload:
    """Unpickling this calls open(marker, "w"): it would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def small_model_files(tmp_path_factory):
    """A config for a small HRNet at 64 x 64 and its weights (saved once for the module)."""
    root = tmp_path_factory.mktemp("model")
    config = root / "small.yaml"
    config.write_text("model: {name: hrnet_w16_small, num_keypoints: 17}\n"
                      "data: {input_size: [64, 64]}\n"
                      "test: {batch_size: 4, flip_test: false}\n"
                      "train: {device: cpu, workers: 0}\n")
    torch.manual_seed(0)
    model = create_model("hrnet_w16_small", 17)
    weights = root / "w.safetensors"
    save_weights(model, weights)
    return config, weights, model.state_dict()


def test_checkpoint_with_extra_or_missing_keys(tmp_path, small_model_files):
    _, _, state = small_model_files
    extra = tmp_path / "extra.pth"
    torch.save({"state_dict": {**state, "head.bonus.weight": torch.zeros(3)}}, extra)
    missing = tmp_path / "missing.safetensors"
    save_weights({k: v for k, v in state.items() if not k.startswith("final_layer")}, missing)
    raises_one_line(CheckpointError, extra, "does not fit hrnet_w16_small: 0 missing keys, 1 unexpected (head.bonus.weight)",
                    posekit.create_model, "hrnet_w16_small", 17, weights=str(extra))
    raises_one_line(CheckpointError, missing, "2 missing keys (final_layer.weight, final_layer.bias)",
                    posekit.create_model, "hrnet_w16_small", 17, weights=str(missing))
    # A strict load that fails leaves the model as it was.
    model = create_model("hrnet_w16_small", 17)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError):
        load_weights(model, missing)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_code_in_a_pickle_is_never_run(tmp_path, small_model_files, capsys):
    config, _, _ = small_model_files
    marker = tmp_path / "pwned"
    zipped = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": Payload(marker)}}, zipped)
    legacy = write(tmp_path, "evil_legacy.pt", pickle.dumps({"state_dict": Payload(marker)}, protocol=2))
    image = write(tmp_path, "ok.png", encode(two_colour_rgb(64, 64), ".png"))
    for path in (zipped, legacy):
        raises_one_line(CheckpointError, path, "refused to load", read_state_dict, path)
        raises_one_line(CheckpointError, path, "refused to load", posekit.create_model, "hrnet_w16_small", 17,
                        weights=str(path))
        err = cli_error(capsys, ["predict", str(config), str(image), "--weights", str(path), "--out",
                                 str(tmp_path / "out"), "--no-progress"])
        assert err.startswith(f"posekit: error: {path}: refused to load")
    assert not marker.exists()
    # The payload is real: an unsafe load would have run it.
    with open(legacy, "rb") as f:
        pickle.load(f)
    assert marker.exists()


# ================================================================================================ configs

def test_yaml_with_unknown_key_wrong_type_or_python_tags(tmp_path, capsys):
    marker = tmp_path / "touched"
    cases = {
        "unknown.yaml": ("train:\n  epochz: 3\n", "unknown key 'train.epochz'"),
        "type.yaml": ("train:\n  lr: fast\n", "train.lr must be a number, got 'fast'"),
        "list.yaml": ("data:\n  input_size: 256\n", "data.input_size must be a list"),
        "section.yaml": ("model: hrnet\n", "model must be a mapping"),
        "top.yaml": ("- a\n- b\n", "top level must be a mapping"),
        "apply.yaml": (f"output_dir: !!python/object/apply:os.system ['touch {marker}']\n",
                       "not valid YAML: could not determine a constructor for the tag"),
        "object.yaml": ("model: !!python/object:posekit.config.ModelConfig {name: x}\n",
                        "not valid YAML: could not determine a constructor for the tag 'tag:yaml.org,2002:python/object"),
        "tabs.yaml": ("model:\n\tname: x\n", "not valid YAML"),
    }
    for name, (text, fragment) in cases.items():
        path = write(tmp_path, name, text.encode())
        raises_one_line(ConfigError, path, fragment, load_config, path)
        err = cli_error(capsys, ["train", str(path), "--output-dir", str(tmp_path / "run")])
        assert fragment in err
    # A --set value is parsed with yaml.safe_load too: a python tag stays a plain (unknown) string.
    cfg = load_config(None, [f"output_dir=!!python/object/apply:os.system ['touch {marker}']"])
    assert cfg.output_dir.startswith("!!python/object/apply")
    raises_one_line(ConfigError, "--set", "model.kwargs must be a mapping", load_config, None,
                    ["model.kwargs=!!python/object/apply:os.system ['touch x']"])
    assert not marker.exists() and not (tmp_path / "run").exists()


# ================================================================================================ command line

def cli_error(capsys, argv) -> str:
    """main(argv) returns 2 with exactly one line on stderr and no traceback; the line is returned."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    return lines[0]


def test_predict_on_a_bad_image_is_one_line_and_keeps_earlier_output(tmp_path, small_model_files, capsys):
    config, weights, _ = small_model_files
    out = tmp_path / "out"
    out.mkdir()
    (out / "poses.json").write_text("earlier results")
    data = jpeg(two_colour_rgb(64, 64))
    bad = {
        "truncated.jpg": (data[: len(data) // 2], "truncated JPEG"),
        "empty.jpg": (b"", "image file is empty"),
        "text.jpg": (b"just text", "not an image file"),
        "huge.jpg": (jpeg_claiming(data, 20000, 20000), "over the limit"),
    }
    for name, (content, fragment) in bad.items():
        path = write(tmp_path, name, content)
        err = cli_error(capsys, ["predict", str(config), str(path), "--weights", str(weights), "--out", str(out),
                                 "--no-progress"])
        assert err.startswith(f"posekit: error: {path}: ") and fragment in err, err
        assert (out / "poses.json").read_text() == "earlier results"


def test_predict_on_good_images_of_every_kind(tmp_path, small_model_files, capsys):
    config, weights, _ = small_model_files
    folder = tmp_path / "photos"
    folder.mkdir()
    rgba = np.zeros((64, 48, 4), np.uint8)
    rgba[..., 3] = 128
    write(folder, "alpha.png", encode(rgba, ".png"))
    write(folder, "grey16.png", encode(np.full((40, 30), 40000, np.uint16), ".png"))
    write(folder, "cmyk.jpg", cmyk_jpeg([(255, 0, 0, 255)] * 4, columns=2))
    write(folder, "rotated.jpg", with_exif_orientation(jpeg(two_colour_rgb(40, 64)), 6))
    out = tmp_path / "out"
    assert main(["predict", str(config), str(folder), "--weights", str(weights), "--out", str(out),
                 "--no-progress"]) == 0
    entries = {Path(e["file"]).name: e for e in json.loads((out / "poses.json").read_text())}
    assert sorted(entries) == ["alpha.png", "cmyk.jpg", "grey16.png", "rotated.jpg"]
    assert all(len(e["people"]) == 1 for e in entries.values())
    # The whole-image box of the rotated photo is in displayed pixels: 40 wide, 64 high.
    assert entries["rotated.jpg"]["people"][0]["box"] == [0.0, 0.0, 40.0, 64.0]


def test_predict_on_a_folder_skips_and_counts_an_unreadable_image(tmp_path, small_model_files, capsys):
    config, weights, _ = small_model_files
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.jpg", "c.jpg"):
        write(folder, name, jpeg(two_colour_rgb(64, 64)))
    write(folder, "b.jpg", jpeg(two_colour_rgb(64, 64))[:300])
    out = tmp_path / "out"
    assert main(["predict", str(config), str(folder), "--weights", str(weights), "--out", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "1 unreadable" in captured.out and "b.jpg" in captured.err and "Traceback" not in captured.err
    entries = json.loads((out / "poses.json").read_text())
    assert [len(e["people"]) for e in entries] == [1, 0, 1]
    assert "truncated JPEG" in entries[1]["error"]


def test_eval_with_an_unreadable_image_in_a_loader_worker_is_one_line(tmp_path, small_model_files, capsys):
    # torch re-raises a worker's exception with the worker's traceback in its message: the CLI keeps its last line.
    config, weights, _ = small_model_files
    root = tmp_path / "coco"
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    cv2.imwrite(str(root / "val2017" / "good.jpg"), np.full((80, 100, 3), 90, np.uint8))
    write(root / "val2017", "bad.jpg", b"GIF89a\x0a\x00\x0a\x00 and then nothing useful")
    doc = coco_doc(images=[{"id": 1, "file_name": "good.jpg", "width": 100, "height": 80},
                           {"id": 2, "file_name": "bad.jpg", "width": 100, "height": 80}],
                   annotations=[annotation(id=1, image_id=1), annotation(id=2, image_id=2)])
    (root / "annotations" / "person_keypoints_val2017.json").write_text(json.dumps(doc))
    err = cli_error(capsys, ["eval", str(config), "--weights", str(weights), "--set", f"data.root={root}",
                             "--set", "train.workers=1", "--output-dir", str(tmp_path / "run"), "--no-progress"])
    bad = root / "val2017" / "bad.jpg"
    assert err == f"posekit: error: {bad}: cannot decode image (corrupt GIF data or an unsupported GIF variant)"

