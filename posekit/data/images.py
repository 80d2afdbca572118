"""Image decoding with errors that name the file, and image sizes read from file headers.

:func:`read_image` / :func:`decode_image` return H x W x 3 uint8 whatever the file holds, as the official
HRNet loader does with ``cv2.IMREAD_COLOR``: an alpha channel is dropped (not composited: a transparent pixel
keeps its stored colour), 16-bit samples keep their high byte (value // 256, so 65535 -> 255), grey images
get three equal channels and CMYK / YCCK JPEGs are converted to RGB (as Adobe-inverted CMYK, the convention of
Photoshop's files and of OpenCV).

EXIF orientation: by default the stored pixels are returned as they are (``cv2.IMREAD_IGNORE_ORIENTATION``,
as the official HRNet loader), because dataset annotations are coordinates in the stored pixels.
``apply_orientation=True`` rotates/mirrors the image as a photo viewer shows it (what a user expects of a
phone photo; the predictor's choice).

Hostile files: the pixel count is read from the file header (JPEG frame header, PNG IHDR, BMP, TIFF, WebP,
GIF, PNM/PFM and Sun raster headers) before anything is decoded, and an image above
:func:`max_image_pixels` (2^28 by default, about 16384 x 16384; environment variable
``POSEKIT_MAX_IMAGE_PIXELS`` or the ``max_pixels`` argument) is refused without allocating it. For other
formats OpenCV's own limit (2^30 pixels) applies while decoding and posekit's after. A JPEG without an
end-of-image marker after its scan data is refused as truncated (older OpenCV versions would return it
with the missing part filled with grey), a PNG without its IEND chunk likewise. A path that is not a regular
file (a FIFO, /dev/zero) and a file larger than an uncompressed 16-bit RGBA image at the limit are refused
before reading. docs/bad-inputs.md lists every case.
"""
from __future__ import annotations

import os
import stat
import struct
from typing import Callable, NamedTuple, Optional, Tuple, Union

import cv2
import numpy as np

from ..errors import ConfigError, DataError
from ..fileio import redirect_fds

PathLike = Union[str, "os.PathLike[str]"]
BytesLike = Union[bytes, bytearray, memoryview, np.ndarray]

MAX_IMAGE_PIXELS = 1 << 28
MAX_PIXELS_ENV = "POSEKIT_MAX_IMAGE_PIXELS"
# Decoding at 1/2, 1/4, 1/8 of the size: JPEG scales in the DCT (output ceil(size / n)); other formats are
# decoded whole and resized by OpenCV (output floor(size / n)).
REDUCE_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                8: cv2.IMREAD_REDUCED_COLOR_8}

# JPEG start-of-frame markers (baseline, extended, progressive, lossless, arithmetic); C4/C8/CC are not frames.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# C0/C1 are the sequential Huffman frames: the only ones whose bottom rows can be left undecoded.
_SEQUENTIAL_HUFFMAN = frozenset({0xC0, 0xC1})
_JPEG_EOI = b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MAX_TIFF_TAGS = 4096
# A file larger than an uncompressed 16-bit RGBA image at the pixel limit (plus room for metadata) cannot be an
# acceptable image: refused before it is read into memory.
_MAX_BYTES_PER_PIXEL = 8
_HEADER_ALLOWANCE = 16 << 20

ReadAt = Callable[[int, int], bytes]
SizeWH = Tuple[int, int]


def max_image_pixels() -> int:
    """The pixel limit: ``POSEKIT_MAX_IMAGE_PIXELS`` when set (read at each call, so data-loader workers see it
    too), else :data:`MAX_IMAGE_PIXELS`."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return MAX_IMAGE_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError(f"must be a positive whole number of pixels, got {raw!r}", MAX_PIXELS_ENV)
    return value


# --------------------------------------------------------------------------------------------- headers

def _sniff(head: bytes) -> Optional[str]:
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if head[:8] == _PNG_SIGNATURE:
        return "PNG"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:2] == b"BM":
        return "BMP"
    if head[:4] == b"\x59\xa6\x6a\x95":
        return "Sun raster"
    if len(head) > 2 and head[:1] == b"P" and head[1:2] in b"123456Ff" and head[2:3].isspace():
        return "PNM"
    if head[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or head[:4] == b"\xff\x4f\xff\x51":
        return "JPEG 2000"
    if head[4:12] in (b"ftypavif", b"ftypavis"):
        return "AVIF"
    if head[:10] == b"#?RADIANCE" or head[:6] == b"#?RGBE":
        return "Radiance HDR"
    return None


class JpegFrame(NamedTuple):
    """What the headers of a JPEG say before its scan."""

    width: int
    height: int
    height_offset: int      # byte offset of the frame header's 2-byte height
    rows_cuttable: bool     # sequential Huffman without restart markers: the bottom can be left undecoded


def _jpeg_header(read_at: ReadAt) -> Tuple[Optional[JpegFrame], int, bool]:
    """The frame (from the first start-of-frame header; None where it gives no size), the offset of the first
    scan (-1: none) and whether the file ended inside the headers."""
    pos, frame, restarts = 2, None, False
    while True:
        byte = read_at(pos, 1)
        while byte and byte != b"\xff":   # stray bytes between segments (libjpeg skips them with a warning)
            pos += 1
            byte = read_at(pos, 1)
        while byte == b"\xff":            # fill bytes before a marker
            pos += 1
            byte = read_at(pos, 1)
        if not byte:
            return frame, -1, True
        marker = byte[0]
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:   # stand-alone markers have no length
            pos += 1
            continue
        if marker == 0xD9:
            return frame, -1, False
        if marker == 0xDA:
            if frame is not None and restarts:
                frame = frame._replace(rows_cuttable=False)
            return frame, pos - 1, False
        length_bytes = read_at(pos + 1, 2)
        if len(length_bytes) < 2:
            return frame, -1, True
        (length,) = struct.unpack(">H", length_bytes)
        if length < 2:
            return frame, -1, False
        if marker in _SOF_MARKERS and frame is None:
            header = read_at(pos + 3, 5)
            if len(header) < 5:
                return frame, -1, True
            _, height, width = struct.unpack(">BHH", header)
            # A height of 0 means "given later by a DNL marker": the size is not known from the header.
            if width > 0 and height > 0:
                frame = JpegFrame(width, height, pos + 4, marker in _SEQUENTIAL_HUFFMAN)
        elif marker == 0xDD:   # a restart interval
            interval = read_at(pos + 3, 2)
            restarts = restarts or (len(interval) == 2 and interval != b"\x00\x00")
        pos += 1 + length


def jpeg_frame(data: bytes) -> Optional[JpegFrame]:
    """The frame of JPEG bytes from the segments before the first scan; None when they are not a JPEG, have no
    scan or their frame header gives no size (the caller then decodes the file as it is)."""
    if data[:3] != b"\xff\xd8\xff":
        return None
    frame, scan, _ = _jpeg_header(_buffer_reader(data))
    return frame if scan >= 0 else None


def jpeg_size_wh(data: bytes) -> Optional[SizeWH]:
    """(width, height) of JPEG bytes from their frame header, or None (see :func:`jpeg_frame`)."""
    frame = jpeg_frame(data)
    return None if frame is None else (frame.width, frame.height)


def _tiff_size(read_at: ReadAt) -> Optional[SizeWH]:
    order = "<" if read_at(0, 2) == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", read_at(4, 4))
    count_bytes = read_at(ifd, 2)
    if len(count_bytes) < 2:
        return None
    (count,) = struct.unpack(order + "H", count_bytes)
    entries = read_at(ifd + 2, 12 * min(count, _MAX_TIFF_TAGS))
    found = {}
    for start in range(0, len(entries) - 11, 12):
        tag, kind = struct.unpack(order + "HH", entries[start:start + 4])
        if tag in (256, 257):
            value = entries[start + 8:start + 12]
            found[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), value[:2] if kind == 3 else value)[0]
    if 256 in found and 257 in found:
        return found[256], found[257]
    return None


def _pnm_size(read_at: ReadAt) -> Optional[SizeWH]:
    head = read_at(0, 1024)
    fields, pos = [], 2
    while len(fields) < 2 and pos < len(head):
        char = head[pos:pos + 1]
        if char == b"#":   # a comment runs to the end of the line
            end = head.find(b"\n", pos)
            pos = len(head) if end < 0 else end + 1
        elif char.isspace():
            pos += 1
        else:
            end = pos
            while end < len(head) and not head[end:end + 1].isspace() and head[end:end + 1] != b"#":
                end += 1
            fields.append(head[pos:end])
            pos = end
    if len(fields) == 2 and all(f.isdigit() for f in fields):
        return int(fields[0]), int(fields[1])
    return None


def _header(read_at: ReadAt) -> Tuple[Optional[str], Optional[SizeWH], int, bool]:
    """(format, (width, height) or None, JPEG scan offset or -1, JPEG headers cut short)."""
    head = read_at(0, 32)
    kind = _sniff(head)
    size: Optional[SizeWH] = None
    scan, cut = -1, False
    try:
        if kind == "JPEG":
            frame, scan, cut = _jpeg_header(read_at)
            size = None if frame is None else (frame.width, frame.height)
        elif kind == "PNG" and head[12:16] == b"IHDR":
            size = struct.unpack(">II", head[16:24])
        elif kind == "TIFF":
            size = _tiff_size(read_at)
        elif kind == "WebP":
            chunk = head[12:16]
            if chunk == b"VP8X":
                size = (1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little"))
            elif chunk == b"VP8L" and head[20] == 0x2F:
                bits = int.from_bytes(head[21:25], "little")
                size = ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
            elif chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
                size = (struct.unpack("<H", head[26:28])[0] & 0x3FFF, struct.unpack("<H", head[28:30])[0] & 0x3FFF)
        elif kind == "GIF":
            size = struct.unpack("<HH", head[6:10])
        elif kind == "BMP":
            (dib,) = struct.unpack("<I", head[14:18])
            if dib == 12:
                size = struct.unpack("<HH", head[18:22])
            else:
                width, height = struct.unpack("<ii", head[18:26])
                size = (abs(width), abs(height))   # a negative height means rows stored top-down
        elif kind == "Sun raster":
            size = struct.unpack(">II", head[4:12])
        elif kind == "PNM":
            size = _pnm_size(read_at)
    except (struct.error, IndexError):   # a header cut short: the decoder will say what is wrong
        size = None
    if size is not None and (size[0] <= 0 or size[1] <= 0):
        size = None
    return kind, (None if size is None else (int(size[0]), int(size[1]))), scan, cut


def _file_reader(handle) -> ReadAt:
    def read_at(offset: int, n: int) -> bytes:
        handle.seek(offset)
        return handle.read(n)
    return read_at


def _buffer_reader(data: bytes) -> ReadAt:
    return lambda offset, n: data[offset:offset + n]


def _regular_file(path: PathLike) -> os.stat_result:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise DataError("image file not found", path) from None
    except OSError as err:
        raise DataError(f"cannot read image file ({err.strerror})", path) from None
    if stat.S_ISDIR(info.st_mode):
        raise DataError("is a directory, not an image file", path)
    if not stat.S_ISREG(info.st_mode):   # a FIFO would block, a device such as /dev/zero would never end
        raise DataError("not a regular file", path)
    return info


def image_header(path: PathLike) -> Tuple[Optional[str], Optional[SizeWH]]:
    """(format name, (width, height)) from an image file's header, without decoding it.

    The format is "JPEG", "PNG", "TIFF", "WebP", "GIF", "BMP", "Sun raster", "PNM", "JPEG 2000", "AVIF",
    "Radiance HDR" or None (not recognised); the size is the stored one (EXIF orientation not applied), or
    None where posekit does not read that format's header or the header is damaged. Raises DataError for a
    missing or unreadable file.
    """
    _regular_file(path)
    try:
        with open(path, "rb") as handle:
            kind, size, _, _ = _header(_file_reader(handle))
    except OSError as err:
        raise DataError(f"cannot read image file ({err.strerror})", path) from None
    return kind, size


def image_size_wh(path: PathLike) -> Optional[SizeWH]:
    """(width, height) of an image file from its header (see :func:`image_header`), or None."""
    return image_header(path)[1]


def stored_size_wh(path: PathLike) -> SizeWH:
    """(width, height) of an image file: from its header where posekit reads it, otherwise (another format, a
    damaged header) by decoding it, whose errors name the file."""
    size = image_size_wh(path)
    if size is not None:
        return size
    height, width = read_image(path, rgb=False).shape[:2]
    return width, height


# --------------------------------------------------------------------------------------------- decoding

def _check_size(size: Optional[SizeWH], kind: Optional[str], max_pixels: int, source: str) -> None:
    if size is not None and size[0] * size[1] > max_pixels:
        what = f"{kind} image" if kind else "image"
        raise DataError(f"{what} of {size[0]} x {size[1]} pixels is over the limit of {max_pixels:,} pixels "
                        f"(raise it with {MAX_PIXELS_ENV} or max_pixels)", source)


def _decode(data: bytes, kind: Optional[str], size: Optional[SizeWH], scan: int, cut: bool, source: str,
            rgb: bool, reduce: int, max_pixels: int, apply_orientation: bool) -> np.ndarray:
    if kind == "JPEG":
        if cut:
            raise DataError("cannot decode image (truncated JPEG: the file ends inside its headers)", source)
        # Entropy-coded data never holds FF D9 (an FF there is followed by 00 or a restart marker), so the
        # end-of-image marker is the only FF D9 after the first scan. Data after it (a phone's appended
        # video, a second preview image) does not matter.
        if scan >= 0 and data.rfind(_JPEG_EOI, scan) < 0:
            raise DataError("cannot decode image (truncated JPEG: no end-of-image marker after the image data)", source)
    if kind == "PNG" and data.rfind(b"IEND", len(_PNG_SIGNATURE)) < 0:
        raise DataError("cannot decode image (truncated PNG: no IEND chunk)", source)
    flags = REDUCE_FLAGS[reduce] | (0 if apply_orientation else cv2.IMREAD_IGNORE_ORIENTATION)
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as err:   # e.g. OpenCV's own size limit
        lines = [line for line in str(err).splitlines() if line.strip()]
        raise DataError(f"cannot decode image (OpenCV: {lines[-1].strip() if lines else 'error'})", source) from None
    if image is None:
        if kind is None:
            raise DataError(f"cannot decode image (not an image file: no known signature; it starts with {data[:8]!r})",
                            source)
        raise DataError(f"cannot decode image (corrupt {kind} data or an unsupported {kind} variant)", source)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"cannot decode image (decoded to an unsupported layout {image.shape} {image.dtype})", source)
    if size is None and image.shape[0] * image.shape[1] * reduce * reduce > max_pixels:
        _check_size((image.shape[1] * reduce, image.shape[0] * reduce), kind, max_pixels, source)
    if rgb:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


def _check_reduce(reduce: int) -> None:
    if reduce not in REDUCE_FLAGS:
        raise ValueError(f"reduce must be 1, 2, 4 or 8, got {reduce!r}")


def read_image(path: PathLike, rgb: bool = True, reduce: int = 1, max_pixels: Optional[int] = None,
               apply_orientation: bool = False) -> np.ndarray:
    """Decode an image file to H x W x 3 uint8, RGB (BGR with ``rgb=False``). Raises DataError naming the file.

    ``reduce`` (1, 2, 4 or 8) decodes at that fraction of the size (JPEG: in the DCT, much faster;
    ceil(H / reduce) x ceil(W / reduce)). ``max_pixels`` (default :func:`max_image_pixels`) bounds the stored
    width x height, checked from the header before decoding. ``apply_orientation``: see the module docstring
    (False: stored pixels, as dataset annotations need). Non-ASCII paths work (the bytes are read by Python).
    """
    _check_reduce(reduce)
    limit = max_image_pixels() if max_pixels is None else int(max_pixels)
    source = os.fspath(path)
    info = _regular_file(source)
    if info.st_size > _MAX_BYTES_PER_PIXEL * limit + _HEADER_ALLOWANCE:
        raise DataError(f"file of {info.st_size:,} bytes is larger than any image within the limit of {limit:,} "
                        f"pixels (raise it with {MAX_PIXELS_ENV} or max_pixels)", source)
    try:
        with open(source, "rb") as handle:
            kind, size, scan, cut = _header(_file_reader(handle))
            _check_size(size, kind, limit, source)   # before the whole file is read
            handle.seek(0)
            data = handle.read()
    except OSError as err:
        raise DataError(f"cannot read image file ({err.strerror})", source) from None
    if not data:
        raise DataError("image file is empty", source)
    return _decode(data, kind, size, scan, cut, source, rgb, reduce, limit, apply_orientation)


def decode_image(data: BytesLike, source: str = "<bytes>", rgb: bool = True, reduce: int = 1,
                 max_pixels: Optional[int] = None, apply_orientation: bool = False) -> np.ndarray:
    """:func:`read_image` for the bytes of an encoded image (``source`` names them in errors)."""
    _check_reduce(reduce)
    limit = max_image_pixels() if max_pixels is None else int(max_pixels)
    data = data.tobytes() if isinstance(data, np.ndarray) else bytes(data)
    if not data:
        raise DataError("image data is empty", source)
    if len(data) > _MAX_BYTES_PER_PIXEL * limit + _HEADER_ALLOWANCE:
        raise DataError(f"{len(data):,} bytes are more than any image within the limit of {limit:,} pixels", source)
    kind, size, scan, cut = _header(_buffer_reader(data))
    _check_size(size, kind, limit, source)
    return _decode(data, kind, size, scan, cut, source, rgb, reduce, limit, apply_orientation)


_DEVNULL: Optional[int] = None


def decode_jpeg_rows(data: bytes, frame: JpegFrame, rows: int, source: str, reduce: int = 1) -> np.ndarray:
    """The top ``rows`` rows of a JPEG (at 1/``reduce`` size: ceil(rows / reduce) rows), BGR.

    The frame header's height is lowered to ``rows``: libjpeg then stops decoding there, and those rows are
    exactly those of a whole decode except the last MCU row or two (chroma upsampling), which callers keep out
    of what they read. The data after them is skipped with a libjpeg warning ("extraneous bytes before marker")
    that libjpeg prints to stderr itself; it is expected here, so stderr is pointed at /dev/null meanwhile
    (the whole process's, which is why the dataset does this only in data-loader worker processes).
    """
    global _DEVNULL
    if not frame.rows_cuttable or rows >= frame.height:
        return decode_image(data, source, rgb=False, reduce=reduce)
    patched = bytearray(data)
    patched[frame.height_offset:frame.height_offset + 2] = max(1, int(rows)).to_bytes(2, "big")
    if _DEVNULL is None:
        try:
            _DEVNULL = os.open(os.devnull, os.O_WRONLY)
        except OSError:   # no /dev/null to point at: the warning is printed
            return decode_image(patched, source, rgb=False, reduce=reduce)
    with redirect_fds((2,), _DEVNULL):
        return decode_image(patched, source, rgb=False, reduce=reduce)


def read_file_bytes(path: PathLike) -> bytes:
    """The bytes of an image file, with :func:`read_image`'s errors (for :func:`decode_image`)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise DataError("image file not found", path) from None
    except IsADirectoryError:
        raise DataError("is a directory, not an image file", path) from None
    except OSError as err:
        raise DataError(f"cannot read image file ({err.strerror})", path) from None
    if not data:
        raise DataError("image file is empty", path)
    return data


def silence_decoder_warnings() -> None:
    """Stop OpenCV printing its own warnings (libpng / libjpeg messages) to stderr; posekit reports the
    problem itself, naming the file. Process-wide: the command-line tool calls it, a library user may.
    Some OpenCV builds (opencv-python 4.11 wheels among them) have no ``cv2.utils.logging``: there the warnings
    stay, and nothing else changes."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is not None and hasattr(logging, "setLogLevel"):
        logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    elif hasattr(cv2, "setLogLevel"):       # the top-level spelling, where a build has that one
        cv2.setLogLevel(2)                  # OpenCV's LOG_LEVEL_ERROR
