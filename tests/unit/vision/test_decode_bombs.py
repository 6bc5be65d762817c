"""Decompression bombs inside the header limits: files that pass the byte and pixel limits of
``facegate.vision.decode`` and still cost too much memory or time to decode.

Every hostile file is built in the test itself (numpy, cv2, ``zlib``, ``struct``); nothing is read from
disk or downloaded. The memory budget is ``decode_memory`` (channels × bytes per sample × pixels, from
the header), the time guard a cap on a JPEG's scans. The corpus test at the end decodes each file at
40 MP in a child process and measures its peak RSS: every file is refused with a typed error, or
decoded under half of Detect's 2,048 MB, within the decoder's own estimate, in a bounded time.

Names added with the budget (``decode_memory``, ``MAX_JPEG_SCANS``, the new error classes) are reached
through their modules (``decode_module.…``, ``errors.…``), so each test reports its own failure when one
of them is missing instead of the whole file failing to import.

Test names follow GIVEN/WHEN/THEN: ``test_<given>__<then>``; the docstrings spell the three parts out.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from facegate import errors
from facegate.errors import CorruptImageError, ImageError, TooManyPixelsError, UnsupportedFormatError

# cv2 comes from the module under test: it sets OpenCV's own pixel limit before OpenCV loads.
from facegate.vision import decode as decode_module
from facegate.vision.decode import MAX_PIXELS, ImageHeader, cv2, decode_image, read_header

MIB = 1024 * 1024
# Detect's memory is 2,048 MB; a decode must keep the whole process under half of it.
HALF_OF_DETECT = 1024 * MIB
# A safety bound, not a benchmark: Lambda's timeout is 30 s and the slowest accepted file here decodes
# in under 2 s on one core. The scan bomb must be refused by the walk, never get near this.
DECODE_SECONDS = 20.0
# Width × height of the corpus: exactly the pixel limit, the largest image it lets through.
W, H = 8000, 5000

# --------------------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Adam7 passes: (first column, first row, column step, row step).
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by IHDR colour type


def _encode(ext: str, image: npt.NDArray[Any], params: list[int] | None = None) -> bytes:
    ok, buffer = cv2.imencode(ext, image, params or [])
    assert ok, f"cv2 could not encode {ext}"
    return bytes(buffer.tobytes())


def _png_chunk(ctype: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(ctype + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", crc)


def _ihdr(width: int, height: int, depth: int, colour_type: int, interlaced: bool = False) -> bytes:
    return _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, int(interlaced)))


def _zeros_idat(width: int, height: int, depth: int, colour_type: int, interlaced: bool = False) -> bytes:
    """Compressed all-zero rows (filter 0, samples 0), row by row: 320 MB of samples never exist at once.

    Z_RLE finds the 258-byte runs as level 9 does (~1000:1) in half the time.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    parts: list[bytes] = []
    for x0, y0, dx, dy in ADAM7 if interlaced else ((0, 0, 1, 1),):
        columns, rows = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if columns > 0 and rows > 0:
            row = bytes(1 + (columns * PNG_CHANNELS[colour_type] * depth + 7) // 8)
            parts.extend(compressor.compress(row) for _ in range(rows))
    parts.append(compressor.flush())
    return b"".join(parts)


def _zeros_png(
    width: int, height: int, *, depth: int, colour_type: int, before_idat: bytes = b"", interlaced: bool = False
) -> bytes:
    """A complete, valid PNG whose samples are all 0: a few hundred kB at 40 MP."""
    return (
        PNG_SIGNATURE
        + _ihdr(width, height, depth, colour_type, interlaced)
        + before_idat
        + _png_chunk(b"IDAT", _zeros_idat(width, height, depth, colour_type, interlaced))
        + _png_chunk(b"IEND", b"")
    )


def _palette_trns_png(width: int, height: int) -> bytes:
    """1-bit palette PNG whose entry 0 is transparent (tRNS): 5 kB at 40 MP, 4 channels once decoded."""
    before = _png_chunk(b"PLTE", bytes(6)) + _png_chunk(b"tRNS", b"\x00")
    return _zeros_png(width, height, depth=1, colour_type=3, before_idat=before)


def _fctl(sequence: int, width: int, height: int) -> bytes:
    # sequence, width, height, x, y, delay 1/10 s, dispose none, blend source
    return _png_chunk(b"fcTL", struct.pack(">IIIIIHHBB", sequence, width, height, 0, 0, 1, 10, 0, 0))


def _apng(width: int, height: int, frames: int) -> bytes:
    """An animated PNG (8-bit RGBA, all zeros): acTL and the first fcTL before IDAT, then fdAT frames."""
    idat = _zeros_idat(width, height, 8, 6)
    extra = b"".join(
        _fctl(2 * k - 1, width, height) + _png_chunk(b"fdAT", struct.pack(">I", 2 * k) + idat) for k in range(1, frames)
    )
    return (
        PNG_SIGNATURE
        + _ihdr(width, height, 8, 6)
        + _png_chunk(b"acTL", struct.pack(">II", frames, 0))
        + _fctl(0, width, height)
        + _png_chunk(b"IDAT", idat)
        + extra
        + _png_chunk(b"IEND", b"")
    )


def _jpeg_segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _sos_count(data: bytes) -> int:
    """SOS markers in a JPEG written by cv2 (its entropy data is byte-stuffed, its tables hold no FF DA)."""
    return data.count(b"\xff\xda")


LIBJPEG_COLOUR_SCANS = 10  # jpeg_simple_progression's script for YCbCr, which cv2 writes


def _progressive_jpeg(width: int, height: int, scans: int, *, base: bytes | None = None) -> bytes:
    """A flat grey progressive JPEG from cv2 whose last scan (luma AC refinement, a few dozen bytes of
    end-of-band runs) is repeated until the file has ``scans`` scans: the scan bomb."""
    data = base or _encode(".jpg", np.full((height, width, 3), 128, np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert _sos_count(data) == LIBJPEG_COLOUR_SCANS
    assert scans >= LIBJPEG_COLOUR_SCANS
    last = data.rindex(b"\xff\xda")
    return data[:-2] + data[last:-2] * (scans - LIBJPEG_COLOUR_SCANS) + data[-2:]


def _cmyk_jpeg_one_scan_per_component(width: int, height: int) -> bytes:
    """A sequential CMYK JPEG (4:4:4:4) with one scan per component, so libjpeg must keep every
    component's coefficients for the whole image: the largest coefficient buffer 8-bit samples allow.

    Every block is flat: DC difference category 0 (4-bit code 0000) then end-of-block (code 00), 6 zero
    bits a block, so the entropy-coded data is zero bytes (Adobe APP14, transform 0: plain CMYK).
    """
    adobe = _jpeg_segment(0xEE, b"Adobe" + struct.pack(">HHHB", 100, 0, 0, 0))
    dqt = _jpeg_segment(0xDB, b"\x00" + bytes([1] * 64))
    components = b"".join(bytes([cid, 0x11, 0]) for cid in (1, 2, 3, 4))
    sof = _jpeg_segment(0xC0, struct.pack(">BHHB", 8, height, width, 4) + components)
    dht_dc = _jpeg_segment(0xC4, b"\x00" + bytes([0, 0, 0, 12] + [0] * 12) + bytes(range(12)))
    dht_ac = _jpeg_segment(0xC4, b"\x10" + bytes([0, 2] + [0] * 14) + bytes([0x00, 0x01]))
    bits = 6 * -(-width // 8) * -(-height // 8)
    entropy = bytes(bits // 8) + (bytes([0xFF >> (bits % 8)]) if bits % 8 else b"")  # padded with 1-bits
    scans = b"".join(_jpeg_segment(0xDA, bytes([1, cid, 0x00, 0, 63, 0])) + entropy for cid in (1, 2, 3, 4))
    return b"\xff\xd8" + adobe + dqt + sof + dht_dc + dht_ac + scans + b"\xff\xd9"


def _webp_lossless_rgba(width: int, height: int) -> bytes:
    """A lossless WebP with alpha: 256 colours in every row (too many for VP8L to pack several pixels in
    one word, so its decoder holds a full 4-byte ARGB image), every row the same (a few kB)."""
    levels = np.arange(256)
    palette = np.stack([levels, levels * 3 % 256, levels * 5 % 256, 255 - levels // 2], axis=1).astype(np.uint8)
    row = palette[np.arange(width) * 7919 % 256]
    image = np.ascontiguousarray(np.broadcast_to(row, (height, width, 4)))
    return _encode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, 101])  # quality > 100 selects lossless


def _png_header_only(width: int, height: int, depth: int, colour_type: int, extra: bytes = b"") -> bytes:
    return PNG_SIGNATURE + _ihdr(width, height, depth, colour_type) + extra


def _jpeg_sof_only(width: int, height: int, sampling: tuple[int, ...], *, marker: int = 0xC0) -> bytes:
    """SOI + an SOF declaring one component per sampling byte (0xHV), and nothing else."""
    components = b"".join(bytes([k + 1, hv, 0]) for k, hv in enumerate(sampling))
    return b"\xff\xd8" + _jpeg_segment(marker, struct.pack(">BHHB", 8, height, width, len(sampling)) + components)


def _webp_vp8x_header(width: int, height: int, flags: int) -> bytes:
    payload = bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _noise(height: int, width: int, channels: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


def _float_composite(colour: npt.NDArray[Any], alpha: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """The float32 composite the decoder used before (the reference for 'identical to today's')."""
    c = colour.astype(np.float32)
    a = alpha.astype(np.float32) / 255.0
    return np.asarray(np.clip(c * a + 255.0 * (1.0 - a) + 0.5, 0, 255), dtype=np.uint8)


class _ImdecodeCalledError(AssertionError):
    pass


@pytest.fixture
def forbid_imdecode(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Make any pixel decode fail loudly: for the refusals that must come before decoding."""
    calls: list[int] = []

    def _refuse(buffer: npt.NDArray[np.uint8], flags: int) -> None:
        calls.append(len(buffer))
        raise _ImdecodeCalledError(f"cv2.imdecode was called on {len(buffer)} bytes; it should be refused first")

    monkeypatch.setattr(decode_module.cv2, "imdecode", _refuse)
    return calls


# ========================================================================================================
# Memory budget: channels × bytes per sample × pixels, from the header
# ========================================================================================================


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_png_header_only(W, H, 16, 6), id="png-rgba16"),
        pytest.param(_png_header_only(W, H, 16, 4), id="png-gray-alpha16"),
        pytest.param(_png_header_only(W, H, 16, 2, _png_chunk(b"tRNS", bytes(6))), id="png-rgb16-trns"),
    ],
)
def test_16_bit_png_with_alpha_at_the_pixel_limit__decode_memory_error_without_decoding(
    data: bytes, forbid_imdecode: list[int]
) -> None:
    """GIVEN a header declaring 8000×5000 (exactly the pixel limit) 16-bit samples with alpha (RGBA,
    gray+alpha, or RGB made transparent by tRNS), which OpenCV decodes to 8 bytes a pixel, held twice
    WHEN decoded THEN DecodeMemoryError (a TooManyPixelsError, code image.decode_memory) saying what it
    would need and the limit, and nothing is decoded."""
    assert W * H == MAX_PIXELS
    with pytest.raises(errors.DecodeMemoryError) as caught:
        decode_image(data)
    assert isinstance(caught.value, TooManyPixelsError)
    assert caught.value.code == "image.decode_memory"
    message = str(caught.value)
    assert "8000x5000" in message
    assert "16-bit" in message
    assert "MiB" in message
    assert message.isprintable()
    assert len(message) < 300
    assert forbid_imdecode == []


@pytest.mark.parametrize(
    ("data", "bytes_per_pixel"),
    [
        # decoded BGR held twice (OpenCV's buffer, then the binding's numpy copy): 2 × 3
        pytest.param(_png_header_only(W, H, 8, 2), 6, id="png-rgb8"),
        pytest.param(_png_header_only(W, H, 16, 2), 6, id="png-rgb16-libpng-strips-to-8-bit"),
        pytest.param(_png_header_only(W, H, 1, 0), 6, id="png-gray1"),
        # BGRA held twice: 2 × 4
        pytest.param(_png_header_only(W, H, 8, 6), 8, id="png-rgba8"),
        pytest.param(_png_header_only(W, H, 1, 3, _png_chunk(b"tRNS", b"\x00")), 8, id="png-palette-trns"),
        # 16-bit BGRA held twice: 2 × 8
        pytest.param(_png_header_only(W, H, 16, 6), 16, id="png-rgba16"),
        # 4:2:0: 3 (BGR) + 1.5 blocks' worth of 2-byte coefficients = 6, the same as BGR held twice
        pytest.param(_jpeg_sof_only(W, H, (0x22, 0x11, 0x11)), 6, id="jpeg-420"),
        # 4:4:4: 3 + 3 × 2 coefficient bytes
        pytest.param(_jpeg_sof_only(W, H, (0x11, 0x11, 0x11)), 9, id="jpeg-444"),
        # CMYK 4:4:4:4: 3 + 4 × 2
        pytest.param(_jpeg_sof_only(W, H, (0x11, 0x11, 0x11, 0x11)), 11, id="jpeg-cmyk-4444"),
        # lossless (SOF3): one 4-byte difference per sample, 3 + 3 × 4
        pytest.param(_jpeg_sof_only(W, H, (0x11, 0x11, 0x11), marker=0xC3), 15, id="jpeg-lossless"),
        # BGRA (4) + the VP8L decoder's ARGB image (4)
        pytest.param(_webp_vp8x_header(W, H, 0x10), 8, id="webp-alpha"),
        pytest.param(_webp_vp8x_header(W, H, 0x00), 8, id="webp"),
    ],
)
def test_decode_memory__channels_times_bytes_per_sample_times_pixels(data: bytes, bytes_per_pixel: int) -> None:
    """GIVEN a 40 MP header of each kind WHEN decode_memory is asked THEN it is pixels × the bytes a
    pixel that kind holds at once (plus a fixed allowance for decoder tables), so the budget depends on
    channels and depth, not on the pixel count alone."""
    header = read_header(data)
    overhead = 16 * MIB
    assert decode_module.decode_memory(header) == pytest.approx(W * H * bytes_per_pixel + overhead, rel=0.01)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(_png_header_only(W, H, 8, 6), id="png-rgba8"),
        pytest.param(_png_header_only(W, H, 16, 2), id="png-rgb16"),
        pytest.param(_png_header_only(W, H, 2, 3, _png_chunk(b"tRNS", b"\x00")), id="png-palette-trns"),
        pytest.param(_jpeg_sof_only(W, H, (0x11, 0x11, 0x11, 0x11)), id="jpeg-cmyk-4444"),
        pytest.param(_jpeg_sof_only(W, H, (0x11,)), id="jpeg-gray"),
        pytest.param(_webp_vp8x_header(W, H, 0x10), id="webp-alpha"),
    ],
)
def test_every_8_bit_image_at_the_pixel_limit__within_the_memory_budget(data: bytes) -> None:
    """GIVEN a 40 MP header with 8-bit samples (or 16-bit without alpha, decoded to 8 bits by libpng)
    WHEN decode_memory is compared with MAX_DECODE_MEMORY THEN it fits: the budget refuses only what
    the pixel limit should not have let through (16-bit with alpha above 33 MP, lossless JPEG)."""
    assert decode_module.decode_memory(read_header(data)) <= decode_module.MAX_DECODE_MEMORY


def test_memory_limit_is_inclusive_and_configurable() -> None:
    """GIVEN a small RGBA PNG and its decode_memory WHEN decoded with max_memory equal to it THEN it
    decodes; with one byte less THEN DecodeMemoryError."""
    data = _encode(".png", _noise(24, 32, 4))
    need = decode_module.decode_memory(read_header(data))
    assert decode_image(data, max_memory=need).shape == (24, 32, 3)
    with pytest.raises(errors.DecodeMemoryError):
        decode_image(data, max_memory=need - 1)


# ========================================================================================================
# Alpha composite: integers, in row bands, identical to the float32 version
# ========================================================================================================


def _every_colour_alpha_pair() -> npt.NDArray[np.uint8]:
    """256×256 BGRA: row = alpha, column = colour (B = c, G = 255 − c, R = 37c mod 256)."""
    c = np.arange(256)
    bgr = np.stack([c, 255 - c, c * 37 % 256], axis=1).astype(np.uint8)
    image = np.empty((256, 256, 4), np.uint8)
    image[..., :3] = bgr[np.newaxis]
    image[..., 3] = np.arange(256, dtype=np.uint8)[:, np.newaxis]
    return image


def test_rgba8_composite__identical_to_float_version_for_every_colour_alpha_pair() -> None:
    """GIVEN an 8-bit RGBA PNG holding every (colour, alpha) pair WHEN decoded THEN each pixel equals
    the float32 composite the decoder used before, exactly (the integer form rounds the same way)."""
    rgba = _every_colour_alpha_pair()
    expected = _float_composite(rgba[..., :3], rgba[..., 3:4])
    np.testing.assert_array_equal(decode_image(_encode(".png", rgba)), expected)


def test_rgba16_composite__identical_to_float_version_of_the_high_bytes() -> None:
    """GIVEN a 16-bit RGBA PNG of every (colour, alpha) pair with random low bytes WHEN decoded THEN
    each pixel equals the float32 composite of the samples // 256, as before."""
    rgba8 = _every_colour_alpha_pair()
    low = np.random.default_rng(4).integers(0, 256, rgba8.shape, dtype=np.uint16)
    rgba16 = rgba8.astype(np.uint16) * 256 + low
    expected = _float_composite(rgba16[..., :3] // 256, rgba16[..., 3:4] // 256)
    np.testing.assert_array_equal(decode_image(_encode(".png", rgba16)), expected)


@pytest.mark.parametrize("depth", [8, 16])
def test_gray_alpha_png_composite__identical_to_float_version(depth: int) -> None:
    """GIVEN a hand-made gray+alpha PNG (colour type 4, 8 or 16 bits) of every (gray, alpha) pair
    WHEN decoded THEN three equal channels, each the float32 composite of the (high byte of the) gray."""
    gray, alpha = np.meshgrid(np.arange(256), np.arange(256))
    scale = 257 if depth == 16 else 1
    samples = np.stack([gray * scale, alpha * scale], axis=-1).astype(">u2" if depth == 16 else np.uint8)
    raw = b"".join(b"\x00" + row.tobytes() for row in samples)
    data = (
        PNG_SIGNATURE + _ihdr(256, 256, depth, 4) + _png_chunk(b"IDAT", zlib.compress(raw)) + _png_chunk(b"IEND", b"")
    )
    expected = _float_composite(gray[..., np.newaxis], alpha[..., np.newaxis])
    image = decode_image(data)
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], expected[..., 0])


def test_random_rgba_spanning_several_row_bands__identical_to_float_version() -> None:
    """GIVEN a random 8-bit RGBA PNG tall enough to be composited in several row bands, the last one
    short WHEN decoded THEN every pixel equals the float32 composite (no band is skipped or shifted)."""
    rgba = _noise(601, 1000, 4, seed=5)
    expected = _float_composite(rgba[..., :3], rgba[..., 3:4])
    np.testing.assert_array_equal(decode_image(_encode(".png", rgba)), expected)


def test_rgba_png__composite_makes_no_image_sized_temporary() -> None:
    """GIVEN a 2000×1000 RGBA PNG (8 MB decoded) WHEN decoded under tracemalloc (which sees numpy's
    arrays) THEN the peak is the decoded BGRA and the BGR result plus at most 8 MiB: no float32 or
    other full-size copy is made beside them (the float32 composite added 93 MiB here)."""
    rgba = _noise(1000, 2000, 4, seed=6)
    data = _encode(".png", rgba)
    tracemalloc.start()
    try:
        image = decode_image(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= rgba.nbytes + image.nbytes + 8 * MIB, f"peak {peak / MIB:.1f} MiB"


# ========================================================================================================
# PNG chunks before the image data
# ========================================================================================================


def test_apng_declaring_two_frames__unsupported_without_decoding(forbid_imdecode: list[int]) -> None:
    """GIVEN an animated PNG (acTL declaring 2 frames; OpenCV's APNG path holds four full-size RGBA
    frames) WHEN decoded THEN UnsupportedFormatError saying animated PNG is not a still image, and
    nothing is decoded."""
    with pytest.raises(UnsupportedFormatError) as caught:
        decode_image(_apng(16, 16, frames=2))
    assert "animated" in str(caught.value).lower()
    assert forbid_imdecode == []


def test_png_with_single_frame_actl__decoded_as_still() -> None:
    """GIVEN a PNG whose acTL declares one frame (OpenCV decodes it as a still image) WHEN decoded
    THEN it decodes, white where transparent."""
    image = decode_image(_apng(16, 16, frames=1))
    assert image.shape == (16, 16, 3)
    assert (image == 255).all()


def test_trns_after_large_text_chunk__transparency_still_composited() -> None:
    """GIVEN a palette PNG whose tRNS (entry 0 transparent) follows a 70 kB tEXt chunk, past the first
    64 kB WHEN decoded THEN the pixel using entry 0 is white: the chunk walk finds tRNS wherever it is
    before the image data, so transparency cannot be switched off by pushing it further."""
    text = _png_chunk(b"tEXt", b"Comment\x00" + b"x" * 70_000)
    plte = _png_chunk(b"PLTE", bytes([10, 20, 30, 40, 50, 60]))
    trns = _png_chunk(b"tRNS", b"\x00")
    idat = _png_chunk(b"IDAT", zlib.compress(b"\x00" + bytes([0, 1])))
    data = PNG_SIGNATURE + _ihdr(2, 1, 8, 3) + text + plte + trns + idat + _png_chunk(b"IEND", b"")
    assert read_header(data).has_alpha
    np.testing.assert_array_equal(decode_image(data), [[(255, 255, 255), (60, 50, 40)]])


# ========================================================================================================
# JPEG scans
# ========================================================================================================

SMALL_PROGRESSIVE = _encode(".jpg", _noise(64, 64, 3, seed=7), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])


def test_progressive_jpeg_repeating_its_last_scan__too_many_scans_without_decoding(
    forbid_imdecode: list[int],
) -> None:
    """GIVEN a progressive JPEG whose last scan is repeated until it has 2,000 scans (each a full decoding
    pass: 38 s at 40 MP was reproduced) WHEN decoded THEN TooManyScansError (code image.too_many_scans)
    from the segment walk, and nothing is decoded."""
    data = _progressive_jpeg(64, 64, 2000, base=SMALL_PROGRESSIVE)
    with pytest.raises(errors.TooManyScansError) as caught:
        decode_image(data)
    assert isinstance(caught.value, ImageError)
    assert caught.value.code == "image.too_many_scans"
    assert str(caught.value).isprintable()
    assert str(decode_module.MAX_JPEG_SCANS) in str(caught.value)
    assert forbid_imdecode == []


def test_scan_bomb_cut_short__still_too_many_scans() -> None:
    """GIVEN the scan bomb cut before its end WHEN decoded THEN TooManyScansError: the count is checked
    as the walk goes, before the missing end marker is noticed."""
    data = _progressive_jpeg(64, 64, 2000, base=SMALL_PROGRESSIVE)
    with pytest.raises(errors.TooManyScansError):
        decode_image(data[: len(data) // 2])


def test_scan_limit_is_inclusive_and_configurable() -> None:
    """GIVEN progressive JPEGs with exactly MAX_JPEG_SCANS and one more scan WHEN decoded THEN the first
    decodes and the second is TooManyScansError; with max_scans = 10, cv2's own 10-scan file decodes
    and an 11-scan one does not."""
    limit = decode_module.MAX_JPEG_SCANS
    assert decode_image(_progressive_jpeg(64, 64, limit, base=SMALL_PROGRESSIVE)).shape == (64, 64, 3)
    with pytest.raises(errors.TooManyScansError):
        decode_image(_progressive_jpeg(64, 64, limit + 1, base=SMALL_PROGRESSIVE))
    assert decode_image(SMALL_PROGRESSIVE, max_scans=10).shape == (64, 64, 3)
    with pytest.raises(errors.TooManyScansError):
        decode_image(_progressive_jpeg(64, 64, 11, base=SMALL_PROGRESSIVE), max_scans=10)


@pytest.mark.parametrize(
    ("image", "scans"),
    [
        pytest.param(_noise(48, 64, 3, seed=8), 10, id="colour"),
        pytest.param(_noise(48, 64, 1, seed=9)[..., 0], 6, id="gray"),
    ],
)
def test_real_encoder_progressive_jpeg__scans_well_under_the_limit(image: npt.NDArray[np.uint8], scans: int) -> None:
    """GIVEN a progressive JPEG from cv2 (libjpeg's progression script: 10 scans for colour, 6 for gray)
    WHEN decoded THEN it decodes, and its scan count is under a quarter of MAX_JPEG_SCANS."""
    data = _encode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert _sos_count(data) == scans
    assert scans * 4 <= decode_module.MAX_JPEG_SCANS
    assert decode_image(data).shape[:2] == image.shape[:2]


def test_scans_behind_a_marker_libjpeg_ignores__counted() -> None:
    """GIVEN a progressive JPEG where, after the first scans, an undefined marker (FF 05) is followed by
    bytes that read as a 65 kB length, then 100 more scans WHEN decoded THEN TooManyScansError: libjpeg
    gives such markers no length (resyncing after a bad restart it scans on past them), so the walk
    must not skip the scans behind one as a segment."""
    last = SMALL_PROGRESSIVE.rindex(b"\xff\xda")
    scan = SMALL_PROGRESSIVE[last:-2]
    data = SMALL_PROGRESSIVE[:-2] + b"\xff\x05\xff\xf0" + scan * 100 + b"\xff\xd9"
    with pytest.raises(errors.TooManyScansError):
        decode_image(data)


def test_sos_bytes_inside_a_comment_between_scans__not_counted() -> None:
    """GIVEN a progressive JPEG with a COM segment between two scans whose text is 200 copies of FF DA
    WHEN decoded THEN it decodes: segments libjpeg skips by their length are skipped the same way."""
    last = SMALL_PROGRESSIVE.rindex(b"\xff\xda")
    comment = _jpeg_segment(0xFE, b"\xff\xda" * 200)
    data = SMALL_PROGRESSIVE[:last] + comment + SMALL_PROGRESSIVE[last:]
    assert decode_image(data).shape == (64, 64, 3)


@pytest.mark.parametrize("sampling", [0x01, 0x50, 0x10])
def test_jpeg_with_invalid_sampling_factor__corrupt_without_decoding(sampling: int, forbid_imdecode: list[int]) -> None:
    """GIVEN a JPEG frame header with a sampling factor outside 1-4 (libjpeg refuses these) WHEN its
    header is read THEN CorruptImageError, before the coefficient buffer is sized from it."""
    with pytest.raises(CorruptImageError):
        read_header(_jpeg_sof_only(64, 64, (sampling, 0x11, 0x11)))
    assert forbid_imdecode == []


# ========================================================================================================
# The corpus: 40 MP hostile files, each decoded in a child process, peak RSS measured
# ========================================================================================================

# Runs in a fresh interpreter: reads the file on stdin, decodes it, prints what happened as JSON. Peak RSS
# is the kernel's high-water mark of this process's memory (VmHWM): ru_maxrss would also count the
# parent's peak, which Linux carries over into a child started by fork and exec. An address-space cap
# of 2 GiB over what the interpreter already maps keeps a bomb from taking the test machine down.
CHILD = """
import json, resource, sys, time
from facegate.errors import ImageError
from facegate.vision.decode import decode_image

def status(field):
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(field + ":"))

data = sys.stdin.buffer.read()
resource.setrlimit(resource.RLIMIT_AS, (status("VmSize") + 2 * 1024**3, resource.RLIM_INFINITY))
before = status("VmHWM")
start = time.perf_counter()
try:
    decode_image(data)
    outcome = "decoded"
except ImageError as error:
    outcome = error.code
except MemoryError:
    outcome = "MemoryError"
seconds = time.perf_counter() - start
print(json.dumps({"outcome": outcome, "seconds": seconds, "before": before, "peak": status("VmHWM")}))
"""

DECODED = "decoded"
CORPUS: list[tuple[str, Callable[[], bytes], str]] = [
    ("png-rgba8", lambda: _zeros_png(W, H, depth=8, colour_type=6), DECODED),
    ("png-rgba8-interlaced", lambda: _zeros_png(W, H, depth=8, colour_type=6, interlaced=True), DECODED),
    ("png-palette1-trns", lambda: _palette_trns_png(W, H), DECODED),
    ("png-rgb16", lambda: _zeros_png(W, H, depth=16, colour_type=2), DECODED),
    ("png-rgba16", lambda: _zeros_png(W, H, depth=16, colour_type=6), "image.decode_memory"),
    ("png-rgba16-30mp", lambda: _zeros_png(6000, 5000, depth=16, colour_type=6), DECODED),
    ("png-gray-alpha16-30mp", lambda: _zeros_png(6000, 5000, depth=16, colour_type=4), DECODED),
    (
        "png-rgb16-trns",
        lambda: _zeros_png(W, H, depth=16, colour_type=2, before_idat=_png_chunk(b"tRNS", bytes(6))),
        "image.decode_memory",
    ),
    ("apng-rgba8-2-frames", lambda: _apng(W, H, frames=2), "image.unsupported_format"),
    (
        "jpeg-progressive-444",
        lambda: _encode(
            ".jpg",
            np.full((H, W, 3), 128, np.uint8),
            [cv2.IMWRITE_JPEG_PROGRESSIVE, 1, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444],
        ),
        DECODED,
    ),
    ("jpeg-cmyk-scan-per-component", lambda: _cmyk_jpeg_one_scan_per_component(W, H), DECODED),
    ("jpeg-64-scans", lambda: _progressive_jpeg(W, H, 64), DECODED),
    ("jpeg-2000-scans", lambda: _progressive_jpeg(W, H, 2000), "image.too_many_scans"),
    ("webp-lossless-rgba", lambda: _webp_lossless_rgba(W, H), DECODED),
]


def _decode_in_child(data: bytes) -> dict[str, Any]:
    env = {**os.environ, "OPENCV_LOG_LEVEL": "SILENT"}
    result = subprocess.run(
        [sys.executable, "-c", CHILD], input=data, capture_output=True, env=env, timeout=180, check=False
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    report: dict[str, Any] = json.loads(result.stdout)
    return report


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads peak RSS from /proc, as on Lambda")
@pytest.mark.parametrize(("build", "expected"), [pytest.param(b, e, id=n) for n, b, e in CORPUS])
def test_hostile_40_mp_file__refused_or_decoded_under_half_of_detect_memory(
    build: Callable[[], bytes], expected: str
) -> None:
    """GIVEN a hostile file within the byte and pixel limits (40 MP; zero-filled PNGs of a few hundred
    kB, a 5 kB palette PNG, an APNG, JPEGs with big coefficient buffers or 2,000 scans, a lossless
    WebP of a few kB) WHEN decoded in a fresh process THEN it is refused with the expected typed error
    before any pixel buffer exists, or decoded with a peak RSS under 1,024 MiB (half of Detect's
    memory), no more than decode_memory predicted, within DECODE_SECONDS."""
    data = build()
    assert len(data) <= decode_module.MAX_BYTES
    report = _decode_in_child(data)
    growth = report["peak"] - report["before"]
    figures = (
        f"{len(data):,} bytes: {report['outcome']} in {report['seconds']:.2f} s, "
        f"peak RSS {report['peak'] / MIB:.0f} MiB (+{growth / MIB:.0f} MiB)"
    )
    print(figures)
    assert report["outcome"] == expected, figures
    if expected == DECODED:
        assert report["peak"] < HALF_OF_DETECT, figures
        assert report["seconds"] < DECODE_SECONDS, figures
        header: ImageHeader = read_header(data)
        assert header.pixels <= MAX_PIXELS
        estimate = decode_module.decode_memory(header)
        assert growth <= estimate, f"{figures}; decode_memory said {estimate / MIB:.0f} MiB"
    else:
        assert growth < 32 * MIB, f"{figures}: refused, but only after allocating"
