"""Unit tests for ``facegate.vision.decode``: safe decoding of untrusted image bytes.

Every image is generated in the test itself, with ``cv2.imencode``, numpy, or by hand with ``struct`` and
``zlib`` (for the structures OpenCV cannot write: EXIF segments, hostile headers, CMYK JPEG). No file is
read from disk and nothing touches the network.

Test names follow GIVEN/WHEN/THEN: ``test_<given>__<then>``; the docstrings spell the three parts out.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facegate.errors import (
    CorruptImageError,
    EmptyImageError,
    FacegateError,
    ImageError,
    ImageTooLargeError,
    NotAnImageError,
    TooManyPixelsError,
    TruncatedImageError,
    UnsupportedFormatError,
)
from facegate.vision import decode as decode_module

# cv2 comes from the module under test (the project's convention): it sets OPENCV_IO_MAX_IMAGE_PIXELS,
# which OpenCV reads once when it loads, so importing cv2 first would switch OpenCV's own limit off.
from facegate.vision.decode import (
    MAX_BYTES,
    MAX_PIXELS,
    ImageFormat,
    ImageHeader,
    cv2,
    decode_image,
    read_header,
)

# --------------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------------

BLUE = (255, 0, 0)  # BGR
RED = (0, 0, 255)
GREEN_ISH = (10, 200, 30)
WHITE = (255, 255, 255)


def _encode(ext: str, image: npt.NDArray[Any], params: list[int] | None = None) -> bytes:
    ok, buffer = cv2.imencode(ext, image, params or [])
    assert ok, f"cv2 could not encode {ext}"
    return bytes(buffer.tobytes())


def _jpeg(image: npt.NDArray[Any], *, quality: int = 95, progressive: bool = False) -> bytes:
    return _encode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])


def _png(image: npt.NDArray[Any]) -> bytes:
    return _encode(".png", image)


def _webp_lossy(image: npt.NDArray[Any]) -> bytes:
    return _encode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, 90])


def _webp_lossless(image: npt.NDArray[Any]) -> bytes:
    return _encode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, 101])  # quality > 100 selects lossless


def _halves(width: int = 40, height: int = 20) -> npt.NDArray[np.uint8]:
    """A BGR image whose left half is blue and right half red: shows where a rotation put things."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = BLUE
    image[:, width // 2 :] = RED
    return image


def _noise(height: int, width: int, channels: int = 3, seed: int = 0) -> npt.NDArray[np.uint8]:
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _png_chunk(ctype: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(ctype + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", crc)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_by_hand(
    width: int, height: int, depth: int, colour_type: int, rows: list[bytes], extra: list[bytes] | None = None
) -> bytes:
    """A PNG built chunk by chunk, for layouts cv2.imencode cannot write (gray+alpha, palette)."""
    ihdr = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0))
    raw = b"".join(b"\x00" + row for row in rows)  # filter type 0 on every row
    return (
        PNG_SIGNATURE
        + ihdr
        + b"".join(extra or [])
        + _png_chunk(b"IDAT", zlib.compress(raw))
        + _png_chunk(b"IEND", b"")
    )


def _png_ihdr_only(width: int, height: int, *, depth: int = 8, colour_type: int = 2) -> bytes:
    """Signature + IHDR and nothing else: a 33-byte header that declares any size."""
    return PNG_SIGNATURE + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0))


def _jpeg_segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _jpeg_sof_only(width: int, height: int) -> bytes:
    """SOI + a baseline SOF0 declaring width × height with 3 components, and nothing else."""
    components = b"".join(bytes([cid, 0x11, 0]) for cid in (1, 2, 3))
    return b"\xff\xd8" + _jpeg_segment(0xC0, struct.pack(">BHHB", 8, height, width, 3) + components)


def _webp_chunk_file(fourcc: bytes, payload: bytes) -> bytes:
    body = b"WEBP" + fourcc + struct.pack("<I", len(payload)) + payload + (b"\x00" if len(payload) % 2 else b"")
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _webp_vp8x_header(width: int, height: int, flags: int = 0) -> bytes:
    """RIFF/WEBP with only an extended (VP8X) chunk: 30 bytes declaring the canvas size."""
    payload = bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return _webp_chunk_file(b"VP8X", payload)


def _webp_vp8_header(width: int, height: int) -> bytes:
    """RIFF/WEBP with a lossy (VP8) frame header only: frame tag, start code, 14-bit dimensions."""
    payload = b"\x50\x05\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", width, height) + b"\x00" * 10
    return _webp_chunk_file(b"VP8 ", payload)


def _webp_vp8l_header(width: int, height: int, *, alpha: bool = False) -> bytes:
    """RIFF/WEBP with a lossless (VP8L) header only: signature 0x2f, 14+14 bits of size-1, alpha bit."""
    bits = (width - 1) | ((height - 1) << 14) | (int(alpha) << 28)
    return _webp_chunk_file(b"VP8L", b"\x2f" + bits.to_bytes(4, "little") + b"\x00" * 10)


def _tiff_exif(entries: list[tuple[int, int, int, bytes]], *, next_ifd: int = 0, tail: bytes = b"") -> bytes:
    """A big-endian TIFF structure with one IFD at offset 8: (tag, type, count, 4-byte value field)."""
    ifd = struct.pack(">H", len(entries))
    for tag, typ, count, value in entries:
        ifd += struct.pack(">HHI", tag, typ, count) + value
    return b"MM\x00*" + struct.pack(">I", 8) + ifd + struct.pack(">I", next_ifd) + tail


def _orientation_tiff(orientation: int) -> bytes:
    """The minimal Exif TIFF: 1 IFD entry, tag 0x0112 (Orientation), type 3 (SHORT), count 1, no next IFD."""
    return _tiff_exif([(0x0112, 3, 1, struct.pack(">HH", orientation, 0))])


def _app1_exif(tiff: bytes) -> bytes:
    return _jpeg_segment(0xE1, b"Exif\x00\x00" + tiff)


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert an APP1 Exif segment right after the SOI marker."""
    assert jpeg.startswith(b"\xff\xd8")
    return jpeg[:2] + _app1_exif(_orientation_tiff(orientation)) + jpeg[2:]


def _with_exif_thumbnail(jpeg: bytes, thumbnail: bytes) -> bytes:
    """Insert an APP1 Exif segment carrying a JPEG thumbnail (IFD1 JPEGInterchangeFormat/Length), as
    cameras and phones write."""
    ifd1_offset = 8 + 2 + 12 + 4  # after IFD0 (one entry)
    thumb_offset = ifd1_offset + 2 + 2 * 12 + 4
    ifd1 = (
        struct.pack(">H", 2)
        + struct.pack(">HHII", 0x0201, 4, 1, thumb_offset)
        + struct.pack(">HHII", 0x0202, 4, 1, len(thumbnail))
        + struct.pack(">I", 0)
    )
    tiff = _tiff_exif([(0x0112, 3, 1, struct.pack(">HH", 1, 0))], next_ifd=ifd1_offset, tail=ifd1 + thumbnail)
    return jpeg[:2] + _app1_exif(tiff) + jpeg[2:]


class _BitWriter:
    """MSB-first bit writer for JPEG entropy-coded data (with 0xFF byte stuffing)."""

    def __init__(self) -> None:
        self._bits: list[int] = []

    def put(self, value: int, count: int) -> None:
        self._bits.extend((value >> shift) & 1 for shift in range(count - 1, -1, -1))

    def getvalue(self) -> bytes:
        bits = self._bits + [1] * (-len(self._bits) % 8)  # pad with 1-bits
        out = bytearray()
        for i in range(0, len(bits), 8):
            byte = int("".join(map(str, bits[i : i + 8])), 2)
            out.append(byte)
            if byte == 0xFF:
                out.append(0x00)
        return bytes(out)


def _cmyk_jpeg(blocks: list[tuple[int, int, int, int]]) -> bytes:
    """A baseline 4-component (CMYK) JPEG built by hand: one row of 8×8 flat blocks, one per entry.

    cv2 cannot write CMYK JPEGs, so this writes the smallest valid one itself: quantisation table of 1s,
    DC-only blocks (a flat block of stored value v has DC coefficient 8·(v-128)), a DC Huffman table with
    the 12 categories as 4-bit codes and an AC table whose EOB is "00". Values use the Adobe convention
    (stored inverted: 255 = no ink), declared by an Adobe APP14 segment with transform 0, which is what
    libjpeg and OpenCV expect of CMYK files from Photoshop.
    """
    width, height = 8 * len(blocks), 8
    adobe = _jpeg_segment(0xEE, b"Adobe" + struct.pack(">HHHB", 100, 0, 0, 0))
    dqt = _jpeg_segment(0xDB, b"\x00" + bytes([1] * 64))
    components = b"".join(bytes([cid, 0x11, 0]) for cid in (1, 2, 3, 4))
    sof = _jpeg_segment(0xC0, struct.pack(">BHHB", 8, height, width, 4) + components)
    dht_dc = _jpeg_segment(0xC4, b"\x00" + bytes([0, 0, 0, 12] + [0] * 12) + bytes(range(12)))
    dht_ac = _jpeg_segment(0xC4, b"\x10" + bytes([0, 2] + [0] * 14) + bytes([0x00, 0x01]))
    sos = _jpeg_segment(0xDA, bytes([4]) + b"".join(bytes([cid, 0x00]) for cid in (1, 2, 3, 4)) + b"\x00\x3f\x00")
    writer = _BitWriter()
    predictors = [0, 0, 0, 0]
    for block in blocks:
        for component, value in enumerate(block):
            dc = 8 * (value - 128)
            diff, predictors[component] = dc - predictors[component], dc
            category = abs(diff).bit_length()
            writer.put(category, 4)
            if category:
                writer.put(diff if diff > 0 else diff + (1 << category) - 1, category)
            writer.put(0b00, 2)  # EOB: every AC coefficient is zero
    return b"\xff\xd8" + adobe + dqt + sof + dht_dc + dht_ac + sos + writer.getvalue() + b"\xff\xd9"


# --------------------------------------------------------------------------------------------------------
# Assertion helpers
# --------------------------------------------------------------------------------------------------------


def _assert_bgr(image: object, height: int | None = None, width: int | None = None) -> None:
    assert isinstance(image, np.ndarray)
    assert image.dtype == np.uint8
    assert image.ndim == 3
    assert image.shape[2] == 3
    assert image.shape[0] > 0
    assert image.shape[1] > 0
    assert image.flags.c_contiguous
    if height is not None:
        assert image.shape[0] == height
    if width is not None:
        assert image.shape[1] == width


def _assert_close(pixel: npt.NDArray[np.uint8], expected: tuple[int, int, int], tol: int) -> None:
    difference = np.abs(pixel.astype(int) - np.array(expected)).max()
    assert difference <= tol, f"pixel {pixel.tolist()} is not within {tol} of {expected}"


def _assert_region(image: npt.NDArray[np.uint8], expected: tuple[int, int, int], tol: int = 40) -> None:
    """Every pixel of the region is within tol of the colour (JPEG is lossy)."""
    difference = np.abs(image.astype(int) - np.array(expected)).max()
    assert difference <= tol, f"region mean {image.reshape(-1, 3).mean(axis=0)} is not {expected}"


def _assert_human_readable(error: FacegateError) -> None:
    message = str(error)
    assert message, "the message is empty"
    assert error.message == message
    assert message.isprintable(), repr(message)
    assert " " in message, f"not a sentence: {message!r}"
    assert len(message) < 300, "the message is suspiciously long (echoing the input?)"


def _assert_decodes_or_refuses(data: bytes, **limits: int) -> None:
    """The contract: an H×W×3 uint8 array, or an ImageError subclass. Any other exception escapes."""
    try:
        image = decode_image(data, **limits)
    except ImageError as error:
        refusal = error
    else:
        _assert_bgr(image)
        return
    assert type(refusal) is not ImageError, "raise a specific subclass"
    assert refusal.code.startswith("image.")
    assert str(refusal)


class _ImdecodeCalledError(AssertionError):
    pass


@pytest.fixture
def forbid_imdecode(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make any pixel decode fail loudly: for the refusals that must come from the header alone."""
    calls: list[int] = []

    def _refuse(buffer: npt.NDArray[np.uint8], flags: int) -> None:
        calls.append(len(buffer))
        raise _ImdecodeCalledError(f"cv2.imdecode was called on {len(buffer)} bytes; the header should refuse")

    monkeypatch.setattr(decode_module.cv2, "imdecode", _refuse)
    return calls


# --------------------------------------------------------------------------------------------------------
# Shared inputs
# --------------------------------------------------------------------------------------------------------

SMALL = _noise(24, 32, seed=1)
SMALL_RGBA = _noise(24, 32, channels=4, seed=2)
VALID: dict[str, bytes] = {
    "jpeg": _jpeg(SMALL),
    "jpeg-progressive": _jpeg(SMALL, progressive=True),
    "png": _png(SMALL),
    "png-rgba": _png(SMALL_RGBA),
    "webp-lossy": _webp_lossy(SMALL),
    "webp-lossless": _webp_lossless(SMALL),
    "webp-lossy-alpha": _webp_lossy(SMALL_RGBA),
}
# Larger photos (several kB): a cut in half lands well inside the entropy-coded data.
PHOTO = _noise(96, 128, seed=3)


@pytest.fixture(scope="module")
def png_48_megapixels() -> bytes:
    """A real, complete 8000×6000 PNG (48 MP) that is only ~50 kB: zeros compress ~1000:1."""
    data = _png(np.zeros((6000, 8000), np.uint8))
    assert len(data) < 200_000
    return data


# ========================================================================================================
# Refusals
# ========================================================================================================


def test_empty_bytes__empty_image_error() -> None:
    """GIVEN b"" WHEN decoded (or its header read) THEN EmptyImageError, code image.empty."""
    with pytest.raises(EmptyImageError) as caught:
        decode_image(b"")
    assert caught.value.code == "image.empty"
    _assert_human_readable(caught.value)
    with pytest.raises(EmptyImageError):
        read_header(b"")


def test_random_bytes__not_an_image() -> None:
    """GIVEN 1000 random bytes with no image signature WHEN decoded THEN NotAnImageError."""
    data = np.random.default_rng(1234).bytes(1000)
    assert not data.startswith((b"\xff", b"\x89", b"RIFF", b"GIF", b"BM", b"II", b"MM", b"%PDF", b"8BPS", b"\0"))
    with pytest.raises(NotAnImageError) as caught:
        decode_image(data)
    assert caught.value.code == "image.not_an_image"
    _assert_human_readable(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        b"hello, this is plain text and not a picture",
        b"<!DOCTYPE html><html><body><img src='face.jpg'></body></html>",
        b'{"image": "/9j/4AAQSkZJRgABAQ"}',  # a JSON body holding base64, not the decoded bytes
        "naïve unicode text ✓".encode(),
        b"abc",  # short, and not the start of any accepted signature
    ],
    ids=["plain", "html", "json-base64", "utf8", "short"],
)
def test_text__not_an_image(text: bytes) -> None:
    """GIVEN text WHEN decoded THEN NotAnImageError whose message does not echo the text."""
    with pytest.raises(NotAnImageError) as caught:
        decode_image(text)
    _assert_human_readable(caught.value)
    assert text.decode(errors="replace") not in str(caught.value)


@pytest.mark.parametrize(
    ("data", "name"),
    [
        pytest.param(b"GIF87a" + b"\x01\x00\x01\x00" + b"\x00" * 20, "GIF", id="gif87a"),
        pytest.param(b"GIF89a" + b"\x01\x00\x01\x00" + b"\x00" * 20, "GIF", id="gif89a"),
        pytest.param(b"BM" + struct.pack("<I", 58) + b"\x00" * 52, "BMP", id="bmp"),
        pytest.param(b"II*\x00" + struct.pack("<I", 8) + b"\x00" * 20, "TIFF", id="tiff-little-endian"),
        pytest.param(b"MM\x00*" + struct.pack(">I", 8) + b"\x00" * 20, "TIFF", id="tiff-big-endian"),
        pytest.param(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "PDF", id="pdf"),
        pytest.param(b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00" * 20, "JPEG 2000", id="jpeg2000"),
        pytest.param(b"8BPS\x00\x01" + b"\x00" * 20, "Photoshop", id="psd"),
        pytest.param(b"\x00\x00\x01\x00\x01\x00" + b"\x00" * 20, "ICO", id="ico"),
        pytest.param(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 8, "HEIF", id="heic"),
        pytest.param(b"\x00\x00\x00\x18ftypheix\x00\x00\x00\x00mif1heix" + b"\x00" * 8, "HEIF", id="heix"),
        pytest.param(b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic" + b"\x00" * 8, "HEIF", id="mif1"),
        pytest.param(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + b"\x00" * 8, "AVIF", id="avif"),
    ],
)
def test_other_format_signature__unsupported_format_naming_it(data: bytes, name: str) -> None:
    """GIVEN bytes with the signature of a recognised but refused format WHEN decoded
    THEN UnsupportedFormatError whose message names the format (and what to send instead)."""
    with pytest.raises(UnsupportedFormatError) as caught:
        decode_image(data)
    assert caught.value.code == "image.unsupported_format"
    assert name in str(caught.value)
    assert "JPEG, PNG or WebP" in str(caught.value)
    _assert_human_readable(caught.value)
    with pytest.raises(UnsupportedFormatError):
        read_header(data)


@pytest.mark.parametrize(
    ("ext", "name"),
    [(".gif", "GIF"), (".bmp", "BMP"), (".tiff", "TIFF"), (".jp2", "JPEG 2000"), (".avif", "AVIF")],
)
def test_real_file_of_other_format_from_cv2__unsupported_format_naming_it(ext: str, name: str) -> None:
    """GIVEN a real GIF/BMP/TIFF/JPEG 2000/AVIF file written by cv2 (skipped where this OpenCV build
    cannot write it) WHEN decoded THEN UnsupportedFormatError naming the format."""
    try:
        ok, buffer = cv2.imencode(ext, _noise(64, 64, seed=5))
    except cv2.error:
        ok = False
    if not ok:
        pytest.skip(f"this OpenCV build cannot write {ext}")
    with pytest.raises(UnsupportedFormatError) as caught:
        decode_image(buffer.tobytes())
    assert name in str(caught.value)


def test_unknown_iso_bmff_brand__not_an_image() -> None:
    """GIVEN an ISO-BMFF file whose brand is not HEIF/AVIF (an MP4 video) WHEN decoded THEN NotAnImageError."""
    with pytest.raises(NotAnImageError):
        decode_image(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 16)


def test_animated_webp__unsupported_format() -> None:
    """GIVEN a WebP whose VP8X header has the animation flag WHEN decoded
    THEN UnsupportedFormatError saying animated WebP is not a still image."""
    with pytest.raises(UnsupportedFormatError) as caught:
        decode_image(_webp_vp8x_header(16, 16, flags=0x02))
    assert "animated" in str(caught.value).lower()
    _assert_human_readable(caught.value)


# --- truncation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_jpeg(PHOTO), id="jpeg"),
        pytest.param(_jpeg(PHOTO, progressive=True), id="jpeg-progressive"),
        pytest.param(_png(PHOTO), id="png"),
        pytest.param(_webp_lossy(PHOTO), id="webp-lossy"),
        pytest.param(_webp_lossless(PHOTO), id="webp-lossless"),
    ],
)
def test_image_cut_in_half__truncated(data: bytes) -> None:
    """GIVEN a valid image cut in half WHEN decoded THEN TruncatedImageError (not a silently grey-filled
    image, not 'corrupt')."""
    decode_image(data)  # the whole file is fine
    with pytest.raises(TruncatedImageError) as caught:
        decode_image(data[: len(data) // 2])
    assert caught.value.code == "image.truncated"
    _assert_human_readable(caught.value)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_jpeg(PHOTO)[:-2], id="jpeg-without-eoi"),
        pytest.param(_png(PHOTO)[:-12], id="png-without-iend-chunk"),
        pytest.param(_webp_lossy(PHOTO)[:-1], id="webp-lossy-one-byte-short"),
        pytest.param(_webp_lossless(PHOTO)[:-1], id="webp-lossless-one-byte-short"),
    ],
)
def test_image_missing_its_last_bytes__truncated(data: bytes) -> None:
    """GIVEN an image that lacks only its end (JPEG EOI, PNG IEND chunk, WebP's last byte) WHEN decoded
    THEN TruncatedImageError."""
    with pytest.raises(TruncatedImageError):
        decode_image(data)


def test_five_byte_jpeg_prefix__truncated() -> None:
    """GIVEN the first 5 bytes of a JPEG (SOI + the start of APP0) WHEN decoded THEN TruncatedImageError."""
    data = _jpeg(SMALL)[:5]
    assert data == b"\xff\xd8\xff\xe0\x00"
    with pytest.raises(TruncatedImageError):
        decode_image(data)


@pytest.mark.parametrize(
    "data",
    [b"\xff", b"\xff\xd8", b"\x89", b"\x89PNG", b"\x89PNG\r\n\x1a", b"R", b"RIFF", b"RIFF\x10\x00\x00"],
)
def test_first_bytes_of_an_accepted_signature__truncated(data: bytes) -> None:
    """GIVEN fewer than 8 bytes that start an accepted signature WHEN decoded THEN TruncatedImageError
    (the upload was cut, it is not some other kind of file)."""
    with pytest.raises(TruncatedImageError):
        decode_image(data)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_png(SMALL)[:20], id="png-inside-ihdr"),
        pytest.param(_png(SMALL)[:32], id="png-one-byte-short-of-ihdr"),
        pytest.param(_webp_lossy(SMALL)[:16], id="webp-inside-first-chunk"),
        pytest.param(_webp_lossy(SMALL)[:29], id="webp-29-bytes"),
        pytest.param(_jpeg(SMALL)[:40], id="jpeg-before-sof"),
    ],
)
def test_header_itself_cut_short__read_header_reports_truncated(data: bytes) -> None:
    """GIVEN bytes cut inside the header WHEN read_header THEN TruncatedImageError."""
    with pytest.raises(TruncatedImageError):
        read_header(data)


@pytest.mark.parametrize("name", ["jpeg", "png", "webp-lossy", "webp-lossless", "webp-lossy-alpha"])
def test_every_strict_prefix_of_a_valid_image__truncated(name: str) -> None:
    """GIVEN every strict, non-empty prefix of a valid image WHEN decoded THEN TruncatedImageError each
    time: a cut-off upload is always reported as truncated (code image.truncated), never as "not an
    image" or "corrupt", whatever the cut point."""
    data = VALID[name]
    wrong: list[tuple[int, str]] = []
    for length in range(1, len(data)):
        try:
            decode_image(data[:length])
        except TruncatedImageError:
            continue
        except ImageError as error:
            wrong.append((length, type(error).__name__))
        else:
            wrong.append((length, "decoded"))
    assert not wrong, f"{len(data)}-byte {name}: prefixes (length, outcome) not reported truncated: {wrong}"


def test_truncated_jpeg_with_exif_thumbnail__truncated() -> None:
    """GIVEN a camera-style JPEG whose APP1 Exif carries a thumbnail (a complete JPEG, with its own
    FFD9 end marker) and which is cut in half WHEN decoded THEN TruncatedImageError (the thumbnail's
    end marker must not pass for the main image's)."""
    thumbnail = _jpeg(_noise(16, 16, seed=9), quality=50)
    data = _with_exif_thumbnail(_jpeg(_noise(64, 64, seed=8)), thumbnail)
    decode_image(data)  # complete, it decodes
    cut = data[: len(data) // 2]
    assert b"\xff\xd9" in cut[-4096:], "precondition: the thumbnail's EOI lies in the last 4 kB of the cut"
    with pytest.raises(TruncatedImageError):
        decode_image(cut)


# --- size limits ----------------------------------------------------------------------------------------


def test_16_mb_of_zeros__too_large_before_any_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN 16 MiB of zeros (over the 15 MiB default) WHEN decoded THEN ImageTooLargeError, not
    NotAnImageError: the byte size is checked before the header is even looked at."""
    looked_at: list[int] = []
    real_read_header = decode_module.read_header

    def _spy(data: bytes) -> ImageHeader:
        looked_at.append(len(data))
        return real_read_header(data)

    monkeypatch.setattr(decode_module, "read_header", _spy)
    data = bytes(16 * 1024 * 1024)
    assert len(data) > MAX_BYTES
    with pytest.raises(ImageTooLargeError) as caught:
        decode_image(data)
    assert caught.value.code == "image.too_large"
    _assert_human_readable(caught.value)
    assert looked_at == []


def test_valid_jpeg_over_max_bytes__too_large() -> None:
    """GIVEN a valid JPEG padded past max_bytes, or a valid JPEG with max_bytes one below its size
    WHEN decoded THEN ImageTooLargeError."""
    jpeg = _jpeg(SMALL)
    with pytest.raises(ImageTooLargeError):
        decode_image(jpeg + bytes(MAX_BYTES))
    with pytest.raises(ImageTooLargeError):
        decode_image(jpeg, max_bytes=len(jpeg) - 1)


def test_image_exactly_max_bytes__accepted() -> None:
    """GIVEN a valid JPEG and max_bytes equal to its size WHEN decoded THEN it decodes (the limit is
    inclusive)."""
    jpeg = _jpeg(SMALL)
    _assert_bgr(decode_image(jpeg, max_bytes=len(jpeg)), 24, 32)


def test_real_48_megapixel_png__too_many_pixels_without_decoding(
    png_48_megapixels: bytes, forbid_imdecode: list[int]
) -> None:
    """GIVEN a real, complete 8000×6000 PNG of ~50 kB (48 MP > 40 MP) WHEN decoded
    THEN TooManyPixelsError from the header, and cv2.imdecode is never called."""
    assert read_header(png_48_megapixels) == ImageHeader(ImageFormat.PNG, 8000, 6000, has_alpha=False)
    assert MAX_PIXELS < 8000 * 6000
    with pytest.raises(TooManyPixelsError) as caught:
        decode_image(png_48_megapixels)
    assert caught.value.code == "image.too_many_pixels"
    assert "8000" in str(caught.value)
    assert "6000" in str(caught.value)
    _assert_human_readable(caught.value)
    assert forbid_imdecode == []


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_png_ihdr_only(20000, 20000), id="png-ihdr"),
        pytest.param(_jpeg_sof_only(20000, 20000), id="jpeg-sof0"),
        pytest.param(_webp_vp8x_header(20000, 20000), id="webp-vp8x"),
        # VP8 and VP8L store 14-bit sizes: 16383 is their largest, still 268 MP.
        pytest.param(_webp_vp8_header(16383, 16383), id="webp-vp8-max"),
        pytest.param(_webp_vp8l_header(16383, 16383), id="webp-vp8l-max"),
    ],
)
def test_tiny_header_declaring_huge_size__too_many_pixels_without_decoding(
    data: bytes, forbid_imdecode: list[int]
) -> None:
    """GIVEN a hand-made header of a few dozen bytes declaring 20000×20000 (or 16383² where the format
    cannot say more), with no pixel data at all WHEN decoded THEN TooManyPixelsError (not truncated:
    the size check comes first) and nothing is decoded."""
    assert len(data) < 64
    with pytest.raises(TooManyPixelsError):
        decode_image(data)
    assert forbid_imdecode == []


def test_pixel_limit_is_inclusive_and_configurable() -> None:
    """GIVEN a 32×24 image WHEN decoded with max_pixels = 768 THEN it decodes; with 767 THEN
    TooManyPixelsError."""
    data = _png(SMALL)
    _assert_bgr(decode_image(data, max_pixels=32 * 24), 24, 32)
    with pytest.raises(TooManyPixelsError):
        decode_image(data, max_pixels=32 * 24 - 1)


def test_raised_pixel_limit_with_48_megapixel_png__no_foreign_exception(png_48_megapixels: bytes) -> None:
    """GIVEN a caller that raises max_pixels to 60 MP and a real 48 MP PNG WHEN decoded THEN either a
    6000×8000×3 image or an ImageError; never an OpenCV exception (OpenCV's own limit, set from
    MAX_PIXELS, must not leak out as cv2.error)."""
    try:
        image = decode_image(png_48_megapixels, max_pixels=60_000_000)
    except ImageError:
        return
    _assert_bgr(image, 6000, 8000)


def test_jpeg_with_stray_sof_byte_hiding_real_frame__refused_from_header(forbid_imdecode: list[int]) -> None:
    """GIVEN a JPEG where 12 stray bytes after an empty COM segment look like an SOF declaring 1×1
    but are not preceded by 0xFF (libjpeg skips them as 'extraneous bytes' and reads the real SOF,
    here 8000×6000) WHEN decoded THEN an ImageError from the header check (TooManyPixelsError or
    CorruptImageError), and no pixel decode is attempted: the header parser must see the frame size
    the decoder will use, or the pixel limit can be bypassed."""
    jpeg = bytearray(_jpeg(_noise(64, 64, seed=4)))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", 6000, 8000)  # real frame: 8000×6000 = 48 MP
    stray = b"\xc0\x00\x0b\x08\x00\x01\x00\x01\x01\x01\x11\x00"  # 'C0' SOF, 1×1, without its 0xFF
    data = bytes(jpeg[:2]) + b"\xff\xfe\x00\x02" + stray + bytes(jpeg[2:])
    with pytest.raises(ImageError):
        decode_image(data)
    assert forbid_imdecode == [], "the pixel limit was checked against a frame size the decoder ignores"


def test_opencv_second_line_limit_is_set_on_import() -> None:
    """GIVEN a fresh interpreter without OPENCV_IO_MAX_IMAGE_PIXELS that imports facegate.vision.decode
    before cv2 WHEN cv2.imdecode (bypassing decode_image) is given a 48 MP PNG THEN OpenCV itself refuses
    it (None or cv2.error): the limit is applied even to code that calls OpenCV directly."""
    script = (
        "import sys\n"
        "import facegate.vision.decode\n"
        "import cv2, numpy as np\n"
        "data = np.frombuffer(sys.stdin.buffer.read(), np.uint8)\n"
        "try:\n"
        "    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)\n"
        "except cv2.error:\n"
        "    image = None\n"
        "print('refused' if image is None else 'decoded')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_IO_MAX_IMAGE_PIXELS"}
    env["OPENCV_LOG_LEVEL"] = "SILENT"
    data = _png(np.zeros((6000, 8000), np.uint8))
    result = subprocess.run(
        [sys.executable, "-c", script], input=data, capture_output=True, env=env, timeout=120, check=True
    )
    assert result.stdout.decode().strip() == "refused"


# --- corrupt headers ------------------------------------------------------------------------------------


def _patched(data: bytes, offset: int, replacement: bytes) -> bytes:
    return data[:offset] + replacement + data[offset + len(replacement) :]


def _jpeg_with_sof_size(width: int, height: int) -> bytes:
    jpeg = _jpeg(SMALL)
    sof = jpeg.index(b"\xff\xc0")
    return _patched(jpeg, sof + 5, struct.pack(">HH", height, width))


@pytest.mark.parametrize(
    ("width", "height"), [(32, 0), (0, 24), (0, 0)], ids=["zero-height", "zero-width", "zero-both"]
)
def test_jpeg_sof_declaring_zero_size__corrupt(width: int, height: int) -> None:
    """GIVEN a valid JPEG whose SOF is patched to declare a zero dimension WHEN decoded
    THEN CorruptImageError."""
    with pytest.raises(CorruptImageError) as caught:
        decode_image(_jpeg_with_sof_size(width, height))
    assert caught.value.code == "image.corrupt"
    _assert_human_readable(caught.value)


def _png_with_ihdr(length: int, ctype: bytes, payload: bytes) -> bytes:
    png = _png(SMALL)
    return PNG_SIGNATURE + struct.pack(">I", length) + ctype + payload + png[29:]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_patched(_png(SMALL), 12, b"IHDX"), id="ihdr-renamed"),
        pytest.param(_patched(_png(SMALL), 8, struct.pack(">I", 12)), id="ihdr-length-12"),
        pytest.param(_patched(_png(SMALL), 8, struct.pack(">I", 0xFFFFFFFF)), id="ihdr-length-huge"),
        pytest.param(_patched(_png(SMALL), 16, struct.pack(">I", 0)), id="ihdr-width-zero"),
        pytest.param(_patched(_png(SMALL), 20, struct.pack(">I", 0)), id="ihdr-height-zero"),
        pytest.param(PNG_SIGNATURE + _png_chunk(b"tEXt", b"Comment\x00x" * 3) + _png(SMALL)[8:], id="ihdr-not-first"),
        pytest.param(_patched(_png(SMALL), 29, b"\x00\x00\x00\x00"), id="ihdr-bad-crc"),
        pytest.param(_patched(_png(SMALL), 24, b"\x07"), id="ihdr-bit-depth-7"),
    ],
)
def test_png_with_broken_ihdr__corrupt(data: bytes) -> None:
    """GIVEN a PNG whose IHDR chunk is broken (renamed, wrong length, zero size, not first, bad CRC,
    impossible bit depth) WHEN decoded THEN CorruptImageError."""
    with pytest.raises(CorruptImageError) as caught:
        decode_image(data)
    _assert_human_readable(caught.value)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_jpeg(SMALL)[:2] + b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + b"\xff\xd9", id="sos-before-sof"),
        pytest.param(b"\xff\xd8\xff\xd9", id="soi-eoi-only"),
        pytest.param(b"\xff\xd8\xff\xe0\x00\x01" + b"\x00" * 20, id="segment-length-1"),
    ],
)
def test_jpeg_without_usable_frame_header__corrupt(data: bytes) -> None:
    """GIVEN a JPEG with image data or the end before any frame header, or a segment length below 2
    WHEN decoded THEN CorruptImageError."""
    with pytest.raises(CorruptImageError):
        decode_image(data)


def test_jpeg_with_garbage_scan__corrupt_or_decoded_never_crash() -> None:
    """GIVEN a JPEG whose SOF declares 2000×1000 while the scan holds 32×24 worth of data
    WHEN decoded THEN an ImageError or a 1000×2000 image, never another exception."""
    _assert_decodes_or_refuses(_jpeg_with_sof_size(2000, 1000))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_webp_chunk_file(b"VP8Z", b"\x00" * 20), id="unknown-chunk"),
        pytest.param(
            _webp_chunk_file(b"VP8 ", b"\x50\x05\x00" + b"\x00\x00\x00" + b"\x00" * 14), id="vp8-no-start-code"
        ),
        pytest.param(_webp_chunk_file(b"VP8L", b"\x2e" + b"\x00" * 16), id="vp8l-no-signature"),
        pytest.param(_webp_vp8_header(0, 16), id="vp8-zero-width"),
        pytest.param(_webp_vp8_header(16, 0), id="vp8-zero-height"),
    ],
)
def test_webp_with_broken_first_chunk__corrupt(data: bytes) -> None:
    """GIVEN a WebP whose first chunk is unknown, lacks its signature/start code or declares a zero
    size WHEN decoded THEN CorruptImageError."""
    with pytest.raises(CorruptImageError) as caught:
        decode_image(data)
    _assert_human_readable(caught.value)


def test_header_only_webp_claiming_small_size__refused_not_crash() -> None:
    """GIVEN a complete-looking VP8X WebP (16×16) with no image chunk at all WHEN decoded
    THEN an ImageError (the bytes cannot be decoded)."""
    with pytest.raises(ImageError):
        decode_image(_webp_vp8x_header(16, 16))


# --- errors: codes and messages -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error_class", "code"),
    [
        (ImageError, "image.invalid"),
        (EmptyImageError, "image.empty"),
        (NotAnImageError, "image.not_an_image"),
        (UnsupportedFormatError, "image.unsupported_format"),
        (TruncatedImageError, "image.truncated"),
        (CorruptImageError, "image.corrupt"),
        (ImageTooLargeError, "image.too_large"),
        (TooManyPixelsError, "image.too_many_pixels"),
    ],
)
def test_image_error_class__has_its_stable_code(error_class: type[ImageError], code: str) -> None:
    """GIVEN each image error class WHEN inspected and instantiated THEN it is an ImageError (and a
    FacegateError) with its stable code, and keeps its message."""
    assert issubclass(error_class, ImageError)
    assert issubclass(error_class, FacegateError)
    assert error_class.code == code
    error = error_class("the reason")
    assert error.code == code
    assert error.message == "the reason" == str(error)


def test_image_error_codes__unique() -> None:
    """GIVEN the image error classes WHEN their codes are listed THEN no two share a code."""
    classes = [
        ImageError,
        EmptyImageError,
        NotAnImageError,
        UnsupportedFormatError,
        TruncatedImageError,
        CorruptImageError,
        ImageTooLargeError,
        TooManyPixelsError,
    ]
    assert len({cls.code for cls in classes}) == len(classes)


REFUSALS: list[tuple[str, Callable[[], bytes], type[ImageError], str]] = [
    ("empty", lambda: b"", EmptyImageError, "image.empty"),
    ("text", lambda: b"not an image at all", NotAnImageError, "image.not_an_image"),
    ("gif", lambda: b"GIF89a" + bytes(20), UnsupportedFormatError, "image.unsupported_format"),
    ("truncated-jpeg", lambda: _jpeg(PHOTO)[:1000], TruncatedImageError, "image.truncated"),
    ("zero-height-jpeg", lambda: _jpeg_with_sof_size(32, 0), CorruptImageError, "image.corrupt"),
    ("too-large", lambda: bytes(MAX_BYTES + 1), ImageTooLargeError, "image.too_large"),
    ("too-many-pixels", lambda: _png_ihdr_only(20000, 20000), TooManyPixelsError, "image.too_many_pixels"),
]


@pytest.mark.parametrize(("make", "error_class", "code"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_each_refusal__raises_error_with_stable_code_and_readable_message(
    make: Callable[[], bytes], error_class: type[ImageError], code: str
) -> None:
    """GIVEN an input that triggers each kind of refusal WHEN decoded THEN exactly that class is raised,
    catchable as ImageError, with its stable code and a non-empty, readable sentence."""
    with pytest.raises(ImageError) as caught:
        decode_image(make())
    assert type(caught.value) is error_class
    assert caught.value.code == code
    _assert_human_readable(caught.value)


# ========================================================================================================
# Accepted inputs
# ========================================================================================================


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_image__decoded_to_contiguous_bgr_uint8(name: str) -> None:
    """GIVEN a valid JPEG/PNG/WebP (lossy, lossless, with alpha, progressive) WHEN decoded
    THEN a C-contiguous H×W×3 uint8 array of the image's size."""
    _assert_bgr(decode_image(VALID[name]), 24, 32)


def test_png__decoded_exactly() -> None:
    """GIVEN an RGB PNG WHEN decoded THEN the pixels are exactly the encoded BGR pixels."""
    np.testing.assert_array_equal(decode_image(_png(SMALL)), SMALL)


def test_lossless_webp__decoded_exactly() -> None:
    """GIVEN a lossless WebP (IMWRITE_WEBP_QUALITY 101) WHEN decoded THEN the pixels are exact."""
    data = _webp_lossless(SMALL)
    assert data[12:16] == b"VP8L"
    np.testing.assert_array_equal(decode_image(data), SMALL)


@pytest.mark.parametrize("encode", [_jpeg, _webp_lossy], ids=["jpeg", "webp-lossy"])
def test_lossy_image__colours_approximately_kept(encode: Callable[[npt.NDArray[np.uint8]], bytes]) -> None:
    """GIVEN a lossy JPEG/WebP of a blue-left/red-right image WHEN decoded THEN same size, left blue and
    right red (within lossy tolerance), not swapped to RGB."""
    image = decode_image(encode(_halves()))
    _assert_bgr(image, 20, 40)
    _assert_region(image[:, 2:16], BLUE)
    _assert_region(image[:, 24:38], RED)


@pytest.mark.parametrize("encode", [_png, _jpeg], ids=["png", "jpeg"])
def test_grayscale_image__three_equal_channels(encode: Callable[[npt.NDArray[np.uint8]], bytes]) -> None:
    """GIVEN a single-channel PNG/JPEG WHEN decoded THEN H×W×3 with three identical channels holding
    the gray values."""
    gray = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (24, 1))
    image = decode_image(encode(gray))
    _assert_bgr(image, 24, 32)
    np.testing.assert_array_equal(image[..., 0], image[..., 1])
    np.testing.assert_array_equal(image[..., 1], image[..., 2])
    assert np.abs(image[..., 0].astype(int) - gray).max() <= 8


@pytest.mark.parametrize("channels", [1, 3, 4], ids=["gray16", "bgr16", "bgra16-opaque"])
def test_16_bit_png__scaled_to_8_bit(channels: int) -> None:
    """GIVEN a 16-bit PNG (gray, BGR, or BGRA fully opaque) with 65535 on the left and 32768 on the
    right WHEN decoded THEN uint8 with 255 on the left and 128 on the right."""
    shape = (4, 6) if channels == 1 else (4, 6, channels)
    image16 = np.full(shape, 65535, np.uint16)
    image16[:, 3:] = 32768
    if channels == 4:
        image16[..., 3] = 65535
    data = _png(image16)
    assert data[24] == 16  # IHDR bit depth
    image = decode_image(data)
    _assert_bgr(image, 4, 6)
    assert (image[:, :3] == 255).all()
    assert (image[:, 3:] == 128).all()


def test_rgba_png__transparent_composited_on_white_opaque_kept() -> None:
    """GIVEN an RGBA PNG whose left half is fully transparent (hiding red), right half opaque green-ish
    and one pixel half transparent black WHEN decoded THEN transparent pixels are white, opaque ones
    keep their exact colour, and the half-transparent one is mid grey."""
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[:, :3] = (*RED, 0)
    rgba[:, 3:] = (*GREEN_ISH, 255)
    rgba[0, 5] = (0, 0, 0, 128)
    image = decode_image(_png(rgba))
    _assert_bgr(image, 4, 6)
    assert (image[:, :3] == WHITE).all()
    assert (image[1:, 3:] == GREEN_ISH).all()
    assert (image[0, 3:5] == GREEN_ISH).all()
    _assert_close(image[0, 5], (127, 127, 127), tol=1)


@pytest.mark.parametrize(
    ("encode", "chunk", "tol"),
    [(_webp_lossless, b"VP8L", 0), (_webp_lossy, b"VP8X", 40)],
    ids=["lossless-vp8l", "lossy-vp8x"],
)
def test_webp_with_alpha__transparent_composited_on_white(
    encode: Callable[[npt.NDArray[np.uint8]], bytes], chunk: bytes, tol: int
) -> None:
    """GIVEN a WebP with alpha whose left half is transparent WHEN decoded THEN the left half is white
    and the opaque right half keeps its colour."""
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[:, :8] = (*RED, 0)
    rgba[:, 8:] = (*GREEN_ISH, 255)
    data = encode(rgba)
    assert data[12:16] == chunk
    image = decode_image(data)
    _assert_bgr(image, 16, 16)
    assert (image[:, :8] == WHITE).all()
    _assert_region(image[:, 10:], GREEN_ISH, tol=tol)


def test_gray_alpha_png__composited_on_white() -> None:
    """GIVEN a hand-made gray+alpha PNG (colour type 4) with a transparent and an opaque pixel
    WHEN decoded THEN white and the gray value replicated to 3 channels."""
    data = _png_by_hand(2, 1, 8, 4, [bytes([100, 0, 100, 255])])
    assert read_header(data).has_alpha
    np.testing.assert_array_equal(decode_image(data), [[WHITE, (100, 100, 100)]])


def test_palette_png_with_trns__composited_on_white() -> None:
    """GIVEN a hand-made palette PNG whose tRNS makes entry 0 transparent WHEN decoded THEN the pixel
    using entry 0 is white and the one using entry 1 has the palette colour in BGR order."""
    plte = _png_chunk(b"PLTE", bytes([10, 20, 30, 40, 50, 60]))  # RGB entries
    trns = _png_chunk(b"tRNS", b"\x00")
    data = _png_by_hand(2, 1, 8, 3, [bytes([0, 1])], extra=[plte, trns])
    assert read_header(data).has_alpha
    np.testing.assert_array_equal(decode_image(data), [[WHITE, (60, 50, 40)]])


def test_cmyk_jpeg__converted_to_bgr() -> None:
    """GIVEN a CMYK JPEG (built by hand: cv2 cannot write one) with cyan, yellow, no-ink and
    black-ink blocks WHEN decoded THEN a 3-channel BGR image showing cyan, yellow, white and black."""
    # Adobe convention: stored 0 = full ink, 255 = no ink. (C, M, Y, K) per 8×8 block.
    data = _cmyk_jpeg([(0, 255, 255, 255), (255, 255, 0, 255), (255, 255, 255, 255), (255, 255, 255, 0)])
    assert read_header(data) == ImageHeader(ImageFormat.JPEG, 32, 8, has_alpha=False)
    image = decode_image(data)
    _assert_bgr(image, 8, 32)
    _assert_region(image[:, 0:8], (255, 255, 0), tol=3)  # cyan
    _assert_region(image[:, 8:16], (0, 255, 255), tol=3)  # yellow
    _assert_region(image[:, 16:24], WHITE, tol=3)
    _assert_region(image[:, 24:32], (0, 0, 0), tol=3)


@pytest.mark.parametrize(
    ("orientation", "shape", "first", "second", "split"),
    [
        # 1: as stored: left blue, right red.
        (1, (20, 40, 3), BLUE, RED, "columns"),
        # 6: rotate 90° clockwise: the left (blue) half becomes the top.
        (6, (40, 20, 3), BLUE, RED, "rows"),
        # 3: rotate 180°: left and right swap.
        (3, (20, 40, 3), RED, BLUE, "columns"),
        # 8: rotate 90° counter-clockwise: the right (red) half becomes the top.
        (8, (40, 20, 3), RED, BLUE, "rows"),
    ],
)
def test_jpeg_with_exif_orientation__decoded_upright(
    orientation: int,
    shape: tuple[int, int, int],
    first: tuple[int, int, int],
    second: tuple[int, int, int],
    split: str,
) -> None:
    """GIVEN a 40×20 (w×h) JPEG, left half blue and right half red, with a hand-made APP1 Exif segment
    (Orientation tag) inserted after SOI WHEN decoded THEN the image is rotated upright: for
    Orientation=6 the shape is (40, 20, 3) with blue on top and red below."""
    data = _with_exif_orientation(_jpeg(_halves()), orientation)
    assert read_header(data) == ImageHeader(ImageFormat.JPEG, 40, 20, has_alpha=False)
    image = decode_image(data)
    assert image.shape == shape
    _assert_bgr(image)
    if split == "rows":
        _assert_region(image[2:16], first)
        _assert_region(image[24:38], second)
    else:
        _assert_region(image[:, 2:16], first)
        _assert_region(image[:, 24:38], second)


@pytest.mark.parametrize("channels", [3, 4], ids=["rgb", "rgba-opaque"])
def test_png_with_exif_orientation__decoded_upright_with_or_without_alpha(channels: int) -> None:
    """GIVEN a 40×20 PNG (left blue, right red; RGB, or RGBA fully opaque) with an eXIf chunk saying
    Orientation=6 WHEN decoded THEN it is rotated upright to (40, 20, 3), blue on top, whether or not
    the PNG has an alpha channel (the alpha path must honour EXIF orientation like the colour path)."""
    image = _halves()
    if channels == 4:
        image = np.dstack([image, np.full(image.shape[:2], 255, np.uint8)])
    png = _png(image)
    data = png[:33] + _png_chunk(b"eXIf", _orientation_tiff(6)) + png[33:]
    decoded = decode_image(data)
    assert decoded.shape == (40, 20, 3)
    assert (decoded[:20] == BLUE).all()
    assert (decoded[20:] == RED).all()


@pytest.mark.parametrize("trailer", [b"\x00", b"\x00\x00\x00\x00", b"garbage", b"\r\n"], ids=repr)
def test_jpeg_with_a_few_trailing_bytes_after_eoi__accepted(trailer: bytes) -> None:
    """GIVEN a valid JPEG followed by a few bytes after its EOI marker WHEN decoded THEN it decodes."""
    jpeg = _jpeg(SMALL)
    _assert_bgr(decode_image(jpeg + trailer), 24, 32)


def test_jpeg_with_large_trailer_after_eoi__accepted() -> None:
    """GIVEN a valid JPEG followed by 64 kB of non-JPEG data after its EOI (what Motion Photos from
    Pixel/Samsung phones look like: an MP4 appended to the JPEG) WHEN decoded THEN it decodes: data
    after EOI is not part of the image and its length does not make the image truncated."""
    trailer = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(64 * 1024)
    _assert_bgr(decode_image(_jpeg(SMALL) + trailer), 24, 32)


def test_jpeg_with_fill_bytes_before_markers__accepted() -> None:
    """GIVEN a JPEG with extra 0xFF fill bytes before a marker (allowed by the standard) WHEN read and
    decoded THEN the header is found and it decodes."""
    jpeg = _jpeg(SMALL)
    data = jpeg[:2] + b"\xff\xff\xff" + jpeg[2:]
    assert read_header(data) == ImageHeader(ImageFormat.JPEG, 32, 24, has_alpha=False)
    _assert_bgr(decode_image(data), 24, 32)


def test_decode_does_not_modify_or_alias_the_input() -> None:
    """GIVEN PNG bytes WHEN decoded twice THEN the input is unchanged, both results are equal, and the
    result is writable memory of its own."""
    data = _png(SMALL)
    before = bytes(data)
    first = decode_image(data)
    second = decode_image(data)
    assert data == before
    np.testing.assert_array_equal(first, second)
    assert not np.shares_memory(first, second)
    first[0, 0] = 0  # must not raise: writable


# ========================================================================================================
# read_header
# ========================================================================================================

ODD = _noise(23, 37, seed=6)  # odd sizes catch off-by-one errors in the "size − 1" fields
ODD_RGBA = _noise(23, 37, channels=4, seed=7)


@pytest.mark.parametrize(
    ("data", "fourcc", "expected"),
    [
        pytest.param(_jpeg(ODD), None, (ImageFormat.JPEG, False), id="jpeg-baseline"),
        pytest.param(_jpeg(ODD, progressive=True), None, (ImageFormat.JPEG, False), id="jpeg-progressive"),
        pytest.param(_jpeg(ODD[..., 0]), None, (ImageFormat.JPEG, False), id="jpeg-gray"),
        pytest.param(_png(ODD), None, (ImageFormat.PNG, False), id="png-rgb"),
        pytest.param(_png(ODD_RGBA), None, (ImageFormat.PNG, True), id="png-rgba"),
        pytest.param(_png(ODD[..., 0]), None, (ImageFormat.PNG, False), id="png-gray"),
        pytest.param(_png(ODD.astype(np.uint16) * 257), None, (ImageFormat.PNG, False), id="png-16bit"),
        pytest.param(_webp_lossy(ODD), b"VP8 ", (ImageFormat.WEBP, False), id="webp-vp8-lossy"),
        pytest.param(_webp_lossless(ODD), b"VP8L", (ImageFormat.WEBP, False), id="webp-vp8l-lossless"),
        pytest.param(_webp_lossless(ODD_RGBA), b"VP8L", (ImageFormat.WEBP, True), id="webp-vp8l-alpha"),
        pytest.param(_webp_lossy(ODD_RGBA), b"VP8X", (ImageFormat.WEBP, True), id="webp-vp8x-alpha"),
    ],
)
def test_read_header__format_size_and_alpha(
    data: bytes, fourcc: bytes | None, expected: tuple[ImageFormat, bool], forbid_imdecode: list[int]
) -> None:
    """GIVEN a 37×23 image in each accepted format/variant WHEN read_header THEN the format, width 37,
    height 23 and whether it has alpha, all without decoding pixels."""
    if fourcc is not None:
        assert data[12:16] == fourcc, "precondition: cv2 wrote the WebP variant this case is about"
    header = read_header(data)
    assert header == ImageHeader(expected[0], 37, 23, has_alpha=expected[1])
    assert header.pixels == 37 * 23
    assert forbid_imdecode == []


@pytest.mark.parametrize(
    ("data", "width", "height", "alpha"),
    [
        pytest.param(_png_ihdr_only(1, 1), 1, 1, False, id="png-1x1"),
        pytest.param(_png_ihdr_only(20000, 30000, colour_type=6), 20000, 30000, True, id="png-rgba-20000x30000"),
        pytest.param(_png_ihdr_only(7, 9, colour_type=4), 7, 9, True, id="png-gray-alpha"),
        pytest.param(_jpeg_sof_only(65535, 1), 65535, 1, False, id="jpeg-max-width"),
        pytest.param(_webp_vp8x_header(1 << 24, 3, flags=0x10), 1 << 24, 3, True, id="vp8x-24-bit-width"),
        pytest.param(_webp_vp8x_header(5, 6), 5, 6, False, id="vp8x-no-alpha"),
        pytest.param(_webp_vp8l_header(16384, 1, alpha=True), 16384, 1, True, id="vp8l-max-width"),
        pytest.param(_webp_vp8_header(16383 | 0xC000, 100), 16383, 100, False, id="vp8-scale-bits-ignored"),
    ],
)
def test_read_header_of_hand_made_header__exact_values(data: bytes, width: int, height: int, alpha: bool) -> None:
    """GIVEN a hand-made header (no pixel data) WHEN read_header THEN the declared size and alpha flag,
    including the extremes of each field's width."""
    header = read_header(data)
    assert (header.width, header.height, header.has_alpha) == (width, height, alpha)


def test_read_header_of_jpeg_with_exif_before_sof__skips_segments() -> None:
    """GIVEN a JPEG with a large APP1 Exif (with thumbnail, which has its own SOF) before the main SOF
    WHEN read_header THEN the main image's size, not the thumbnail's."""
    data = _with_exif_thumbnail(_jpeg(ODD), _jpeg(_noise(8, 8, seed=1)))
    assert read_header(data) == ImageHeader(ImageFormat.JPEG, 37, 23, has_alpha=False)


# ========================================================================================================
# Properties
# ========================================================================================================


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_property_arbitrary_bytes__decoded_or_image_error(data: bytes) -> None:
    """GIVEN any bytes up to 2 kB WHEN decoded THEN an H×W×3 uint8 array or an ImageError subclass,
    never any other exception."""
    _assert_decodes_or_refuses(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_property_arbitrary_bytes__read_header_or_image_error(data: bytes) -> None:
    """GIVEN any bytes WHEN read_header THEN a header of an accepted format with positive size, or an
    ImageError subclass."""
    try:
        header = read_header(data)
    except ImageError:
        return
    assert header.format in set(ImageFormat)
    assert header.width > 0
    assert header.height > 0


@st.composite
def _prefixes(draw: st.DrawFn) -> bytes:
    data = VALID[draw(st.sampled_from(sorted(VALID)))]
    return data[: draw(st.integers(min_value=0, max_value=len(data)))]


@settings(max_examples=200, deadline=None)
@given(_prefixes())
def test_property_prefix_of_valid_image__decoded_or_image_error(data: bytes) -> None:
    """GIVEN any prefix (including the whole) of a valid JPEG/PNG/WebP WHEN decoded THEN an H×W×3 uint8
    array or an ImageError subclass, never any other exception."""
    _assert_decodes_or_refuses(data)


@st.composite
def _mutations(draw: st.DrawFn) -> bytes:
    data = bytearray(VALID[draw(st.sampled_from(sorted(VALID)))])
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@settings(max_examples=200, deadline=None)
@given(_mutations())
def test_property_valid_image_with_corrupted_bytes__decoded_or_image_error(data: bytes) -> None:
    """GIVEN a valid JPEG/PNG/WebP with 1-4 bytes overwritten anywhere (headers included) WHEN decoded
    THEN an H×W×3 uint8 array or an ImageError subclass, never any other exception."""
    _assert_decodes_or_refuses(data)
