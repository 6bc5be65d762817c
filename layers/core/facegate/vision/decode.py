"""Safe decoding of untrusted image bytes.

Order matters: size in bytes, then the format and dimensions read from the header by this module's own
parsers, then the memory the decode will need, then a structural walk (completeness; a JPEG's scan
count), and only then the full decode. OpenCV's own guard stops at 2^30 pixels (a 389 kB PNG can expand
to gigabytes), so the pixel limit is applied from the header, before any pixel is decoded, and OpenCV's
limit is lowered to the same value as a second line.

Pixels alone do not bound memory: a 171 kB 8-bit RGBA PNG of 40 MP peaked at 2.2 GiB through a float32
composite. ``decode_memory`` counts channels × bytes per sample × pixels for every buffer the decode
holds at once, from the header, and ``decode_image`` refuses what exceeds ``MAX_DECODE_MEMORY``.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from facegate.errors import (
    CorruptImageError,
    DecodeMemoryError,
    EmptyImageError,
    ImageTooLargeError,
    NotAnImageError,
    TooManyPixelsError,
    TooManyScansError,
    TruncatedImageError,
    UnsupportedFormatError,
)

MAX_BYTES: Final = 15 * 1024 * 1024
MAX_PIXELS: Final = 40_000_000
_MIB: Final = 1024 * 1024
# Detect has 2,048 MB and a decode must keep the process under half of it (1,024 MiB). A warm detector
# process (interpreter, OpenCV, onnxruntime with both models, after one 1080p detection) measured 267 MiB
# of RSS; 512 MiB for the decode leaves about 245 MiB for the handler, the request body and allocator
# slack. Every 8-bit image OpenCV decodes fits within MAX_PIXELS (the most is a 4:4:4 CMYK JPEG, 11 bytes
# a pixel: 421 MiB measured at 40 MP); 16-bit images with alpha (16 bytes a pixel) fit up to 32 MP.
MAX_DECODE_MEMORY: Final = 512 * _MIB
# Each scan is another pass over the whole coefficient buffer, and a scan of end-of-band runs costs a few
# bytes: a 397 kB progressive JPEG repeating its last scan took 38 s to decode (about 13 ms a scan at
# 40 MP measured here). Encoders write few: libjpeg's progressive script (cv2, Pillow, jpegtran
# -progressive) writes 10 scans for YCbCr, 6 for gray, 14 for RGB and 18 for CMYK; Photoshop 3 to 5;
# mozjpeg emits a subset of the 64 scans its search tries; a sequential file has at most one scan per
# component. 64, mozjpeg's whole candidate set, keeps the worst accepted file near 1 s of scans
# (nvImageCodec's default limit is 256).
MAX_JPEG_SCANS: Final = 64

# OpenCV reads this once, when the codec is first used; set it before cv2 is imported anywhere.
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))

# Re-exported: every facegate module imports cv2 from here, so the limit above is set first.
import cv2 as cv2  # noqa: E402

# The limit OpenCV actually read (an embedding application may have imported cv2 first).
_CV_LIMIT: Final = int(os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"])

BgrImage = npt.NDArray[np.uint8]


class ImageFormat(StrEnum):
    JPEG = "jpeg"
    PNG = "png"
    WEBP = "webp"


@dataclass(frozen=True)
class ImageHeader:
    format: ImageFormat
    width: int
    height: int
    has_alpha: bool
    data_offset: int = field(default=0, compare=False)
    """Where the compressed image data starts (after a JPEG's SOS): trailers before it do not count."""
    bit_depth: int = field(default=8, compare=False)
    """Bits per sample as stored: a PNG's IHDR bit depth, a JPEG's sample precision, 8 for WebP."""
    coefficient_bytes: int = field(default=0, compare=False)
    """JPEG only: the size of the whole-image coefficient buffer libjpeg keeps for a progressive or
    multi-scan file (every component's blocks, padded to whole MCUs, 64 two-byte coefficients each)."""

    @property
    def pixels(self) -> int:
        return self.width * self.height


# Signatures of formats we recognise but refuse, so the error can say what the file is.
_OTHER_SIGNATURES: Final = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"8BPS", "Photoshop"),
    (b"%PDF", "PDF"),
    (b"\x00\x00\x01\x00", "ICO"),
)
_HEIF_BRANDS: Final = (b"heic", b"heix", b"mif1", b"msf1", b"avif", b"avis")

_PNG_SIG: Final = b"\x89PNG\r\n\x1a\n"
# The IEND chunk is always these 12 bytes (empty body, fixed CRC).
_PNG_IEND: Final = b"\x00\x00\x00\x00IEND\xaeB`\x82"
# JPEG start-of-frame markers carry the dimensions (C4 DHT, C8 JPG, CC DAC are not frames).
_SOF_MARKERS: Final = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def read_header(data: bytes) -> ImageHeader:
    """Identify the format and read the dimensions without decoding pixels.

    Raises
    ------
    EmptyImageError, NotAnImageError, UnsupportedFormatError, TruncatedImageError, CorruptImageError
    """
    if not data:
        raise EmptyImageError("the image is empty (0 bytes)")
    if data.startswith(b"\xff\xd8\xff"):
        return _jpeg_header(data)
    if data.startswith(_PNG_SIG):
        return _png_header(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_header(data)
    for signature, name in _OTHER_SIGNATURES:
        if data.startswith(signature):
            raise UnsupportedFormatError(f"{name} images are not accepted; send JPEG, PNG or WebP")
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        raise UnsupportedFormatError("HEIF/AVIF images are not accepted; send JPEG, PNG or WebP")
    if (len(data) < 8 and (b"\xff\xd8".startswith(data[:2]) or _PNG_SIG.startswith(data))) or (
        len(data) < 12 and b"RIFF".startswith(data[:4]) and b"WEBP".startswith(data[8:12])
    ):
        raise TruncatedImageError(f"the image is truncated ({len(data)} bytes)")
    raise NotAnImageError("the bytes are not an image (no JPEG, PNG or WebP signature)")


def _jpeg_header(data: bytes) -> ImageHeader:
    """Walk the segments from SOI to the first SOS, strictly: every segment must start with 0xFF.

    libjpeg skips stray bytes between segments ("extraneous bytes") and would decode a frame this parser
    never saw, so stray bytes are refused: the dimensions checked are the ones that get decoded. A file
    that ends after its frame header still yields the header (``data_offset`` -1), so the pixel limit is
    reported before the truncation.
    """
    pos = 2
    size = len(data)
    frame: ImageHeader | None = None
    while pos < size:
        if data[pos] != 0xFF:
            raise CorruptImageError(f"the JPEG has stray bytes between segments (offset {pos})")
        while pos < size and data[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= size:
            break
        marker = data[pos]
        pos += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            continue
        if marker in (0xD8, 0xD9):
            raise CorruptImageError("the JPEG has a misplaced start/end-of-image marker")
        if pos + 2 > size:
            break
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2:
            raise CorruptImageError("the JPEG has a segment with an invalid length")
        if marker in _SOF_MARKERS:
            if frame is not None:
                raise CorruptImageError("the JPEG declares two frames")
            if pos + 7 > size:
                break
            height, width = struct.unpack(">HH", data[pos + 3 : pos + 7])
            if width == 0 or height == 0:
                raise CorruptImageError(f"the JPEG declares an empty size {width}x{height}")
            frame = ImageHeader(
                ImageFormat.JPEG,
                width,
                height,
                has_alpha=False,
                data_offset=-1,
                bit_depth=data[pos + 2],
                coefficient_bytes=_jpeg_coefficient_bytes(data[pos + 7 : pos + length], width, height, marker),
            )
        if marker == 0xDA:
            if frame is None:
                raise CorruptImageError("the JPEG has no frame header before its image data")
            return replace(frame, data_offset=pos + length)
        pos += length
    if frame is None:
        raise TruncatedImageError("the JPEG ends before its frame header")
    return frame


def _jpeg_coefficient_bytes(components: bytes, width: int, height: int, marker: int) -> int:
    """Bytes of libjpeg's whole-image buffer for this frame, from the SOF's component table.

    ``components`` is the SOF payload from its component count on. Each component keeps its blocks for
    the whole image, padded to whole MCUs (libjpeg rounds every component up to its sampling factor), 64
    coefficients of 2 bytes per 8×8 block. Lossless frames (SOF3/7/11/15) keep one 4-byte difference per
    sample instead. A table cut short counts every missing component at full resolution: an upper bound.
    """
    lossless = marker in (0xC3, 0xC7, 0xCB, 0xCF)
    unit, unit_bytes = (1, 4) if lossless else (8, 64 * 2)
    count = components[0] if components else 4
    if count == 0:
        raise CorruptImageError("the JPEG frame declares no components")
    factors: list[tuple[int, int]] = []
    for k in range(count):
        entry = components[2 + 3 * k : 3 + 3 * k]
        h, v = (entry[0] >> 4, entry[0] & 0x0F) if entry else (1, 1)
        if not (1 <= h <= 4 and 1 <= v <= 4):  # libjpeg refuses these too (JERR_BAD_SAMPLING)
            raise CorruptImageError(f"the JPEG declares an invalid sampling factor {h}x{v}")
        factors.append((h, v))
    h_max = max(h for h, _ in factors)
    v_max = max(v for _, v in factors)
    mcu_columns = -(-width // (unit * h_max))
    mcu_rows = -(-height // (unit * v_max))
    return sum(mcu_columns * h * mcu_rows * v for h, v in factors) * unit_bytes


def _png_header(data: bytes) -> ImageHeader:
    if len(data) < 33:
        raise TruncatedImageError("the PNG ends before its IHDR chunk")
    length, ctype = struct.unpack(">I4s", data[8:16])
    if ctype != b"IHDR" or length != 13:
        raise CorruptImageError("the PNG does not start with a valid IHDR chunk")
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    if width == 0 or height == 0:
        raise CorruptImageError(f"the PNG declares an empty size {width}x{height}")
    has_alpha = colour in (4, 6)
    # tRNS and acTL must come before the image data (libpng and OpenCV read them only there), so the walk
    # stops at the first IDAT, or where the bytes end.
    pos = 33
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        if ctype == b"IDAT":
            break
        if ctype == b"tRNS":
            has_alpha = True
        elif ctype == b"acTL" and data[pos + 8 : pos + 12] != b"\x00\x00\x00\x01":
            # OpenCV decodes a PNG that declares several frames through its APNG path, which holds
            # four full-size RGBA frames: a 311 kB 40 MP file peaked at 612 MiB (1.2 GiB at 16 bits).
            raise UnsupportedFormatError("animated PNG is a stream of frames, not a still image")
        pos += 12 + length
    return ImageHeader(ImageFormat.PNG, width, height, has_alpha=has_alpha, bit_depth=depth)


def _webp_header(data: bytes) -> ImageHeader:
    if len(data) < 30:
        raise TruncatedImageError("the WebP ends before its first chunk")
    chunk = data[12:16]
    body = data[20:]
    if chunk == b"VP8 ":
        if body[3:6] != b"\x9d\x01\x2a":
            raise CorruptImageError("the WebP lossy frame has no start code")
        width, height = struct.unpack("<HH", body[6:10])
        width &= 0x3FFF
        height &= 0x3FFF
        has_alpha = False
    elif chunk == b"VP8L":
        if body[0] != 0x2F:
            raise CorruptImageError("the WebP lossless stream has no signature")
        bits = int.from_bytes(body[1:5], "little")
        width = (bits & 0x3FFF) + 1
        height = ((bits >> 14) & 0x3FFF) + 1
        has_alpha = bool((bits >> 28) & 1)
    elif chunk == b"VP8X":
        flags = body[0]
        if flags & 0x02:
            raise UnsupportedFormatError("animated WebP is a stream of frames, not a still image")
        width = int.from_bytes(body[4:7], "little") + 1
        height = int.from_bytes(body[7:10], "little") + 1
        has_alpha = bool(flags & 0x10)
    else:
        raise CorruptImageError(f"unknown WebP chunk {chunk!r}")
    if width == 0 or height == 0:
        raise CorruptImageError(f"the WebP declares an empty size {width}x{height}")
    return ImageHeader(ImageFormat.WEBP, width, height, has_alpha=has_alpha)


# A marker inside entropy-coded data: 0xFF not followed by a stuffed zero, a restart marker (RST0-7) or
# another 0xFF (fill bytes: the match lands on the last one).
_JPEG_MARKER: Final = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
# The markers after the first scan that libjpeg skips by their length (DHT, DAC, DQT, DNL, DRI, APPn,
# COM). The walk treats every other marker as standalone and looks for the next one right after it, so
# it sees at least every marker libjpeg sees (libjpeg errors on the others, or, resyncing after a bad
# restart marker, scans on past them): a length read from a marker libjpeg ignores could hide scans.
_JPEG_SKIPPED_SEGMENTS: Final = frozenset({0xC4, 0xCC, 0xDB, 0xDC, 0xDD, 0xFE, *range(0xE0, 0xF0)})


def _jpeg_scan_walk(data: bytes, start: int, max_scans: int) -> int:
    """Walk a JPEG from its first scan's data to EOI and return the number of scans (SOS markers).

    Raises TooManyScansError as soon as the count passes ``max_scans`` (before the file's end is looked
    for: a scan bomb is refused as such, truncated or not), TruncatedImageError when no EOI follows.
    """
    scans = 1
    pos = start
    size = len(data)
    while (found := _JPEG_MARKER.search(data, pos)) is not None:
        marker = data[found.start() + 1]
        pos = found.end()
        if marker == 0xD9:
            return scans
        if marker == 0xD8:
            raise CorruptImageError("the JPEG has a misplaced start-of-image marker")
        if marker in _SOF_MARKERS:
            raise CorruptImageError("the JPEG declares two frames")
        if marker != 0xDA and marker not in _JPEG_SKIPPED_SEGMENTS:
            continue
        if pos + 2 > size:
            break
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2:
            raise CorruptImageError("the JPEG has a segment with an invalid length")
        if marker == 0xDA:
            scans += 1
            if scans > max_scans:
                raise TooManyScansError(
                    f"the JPEG has more than {max_scans} scans; encoders write about 10, and each scan is "
                    "another decoding pass over the whole image"
                )
        pos += length
    # The end marker must follow the image data: an EXIF thumbnail's own EOI comes before it, and bytes
    # after EOI (camera padding, a motion photo's video) are allowed.
    raise TruncatedImageError("the JPEG is truncated (no end-of-image marker after its image data)")


def _check_complete(data: bytes, header: ImageHeader, *, max_scans: int) -> None:
    """Refuse files cut short (decoders fill a truncated JPEG with grey and succeed, silently), and JPEGs
    with more than ``max_scans`` scans."""
    if header.format is ImageFormat.JPEG:
        if header.data_offset < 0:
            raise TruncatedImageError("the JPEG is truncated (no end-of-image marker after its image data)")
        _jpeg_scan_walk(data, header.data_offset, max_scans)
    elif header.format is ImageFormat.PNG:
        if _PNG_IEND not in data[-4096:]:
            raise TruncatedImageError("the PNG is truncated (no complete IEND chunk)")
    else:
        (riff_size,) = struct.unpack("<I", data[4:8])
        if len(data) < riff_size + 8:
            raise TruncatedImageError(f"the WebP is truncated ({len(data)} of {riff_size + 8} declared bytes)")


# Decoder state that does not scale with the image (Huffman and zlib tables, row caches): 16 MiB is
# above the most the measured 40 MP decodes exceeded the per-pixel model by (2 MiB).
_DECODER_OVERHEAD: Final = 16 * _MIB


def decode_memory(header: ImageHeader) -> int:
    """The most memory, in bytes, ``decode_image`` holds at once for an image with this header.

    Counted from the header as pixels × channels × bytes per sample for each buffer alive together, the
    figures measured on OpenCV 5's decoders:

    - OpenCV decodes to its own buffer and the Python binding copies the result into a numpy array, so
      the decoded array is held twice: 2 × native, native = 3 channels (4 with alpha, and always 4 for
      WebP, whose decoder may produce BGRA and convert) × 1 byte (2 for 16-bit PNG with alpha and
      JPEG above 8 bits; libpng itself strips 16-bit samples on the colour path);
    - beside the native array, the decoder's own working buffer: a JPEG's coefficient buffer
      (``ImageHeader.coefficient_bytes``, counted whether or not the file is progressive), WebP
      lossless's 4-byte ARGB image;
    - after decoding, the 8-bit BGR result (3 bytes a pixel) beside the native array while alpha is
      composited or 16-bit samples are scaled, and an EXIF rotation's copy beside the result.
    """
    pixels = header.pixels
    wide = header.bit_depth > 8 and (header.has_alpha or header.format is ImageFormat.JPEG)
    channels = 4 if header.has_alpha or header.format is ImageFormat.WEBP else 3
    native = pixels * channels * (2 if wide else 1)
    working = header.coefficient_bytes + (4 * pixels if header.format is ImageFormat.WEBP else 0)
    decoding = max(native + working, 2 * native)
    finishing = native + 3 * pixels if header.has_alpha or wide else 0
    return max(decoding, finishing, 2 * 3 * pixels) + _DECODER_OVERHEAD


def decode_image(
    data: bytes,
    *,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    max_memory: int = MAX_DECODE_MEMORY,
    max_scans: int = MAX_JPEG_SCANS,
) -> BgrImage:
    """Decode untrusted bytes to an 8-bit BGR image (H×W×3), upright per EXIF orientation.

    Grayscale is replicated to three channels; 16-bit samples are scaled to 8 bits; CMYK JPEGs are
    converted; transparent pixels are composited onto white so a transparent background cannot hide or
    invent a face.

    Raises
    ------
    ImageTooLargeError
        More than ``max_bytes`` bytes (checked before anything else).
    TooManyPixelsError
        The header declares more than ``max_pixels`` pixels (checked before decoding).
    DecodeMemoryError
        Decoding would hold more than ``max_memory`` bytes (``decode_memory``, from the header).
    TooManyScansError
        A JPEG with more than ``max_scans`` scans (counted by walking the file, before decoding).
    EmptyImageError, NotAnImageError, UnsupportedFormatError, TruncatedImageError, CorruptImageError
    """
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"the image is {len(data):,} bytes; the limit is {max_bytes:,} bytes")
    header = read_header(data)
    if header.pixels > max_pixels:
        raise TooManyPixelsError(
            f"the image declares {header.width}x{header.height} = {header.pixels:,} pixels; the limit is {max_pixels:,}"
        )
    need = decode_memory(header)
    if need > max_memory:
        samples = f"{header.bit_depth}-bit samples{', with alpha' if header.has_alpha else ''}"
        raise DecodeMemoryError(
            f"decoding this {header.width}x{header.height} {header.format.value.upper()} ({samples}) needs "
            f"{need / _MIB:,.0f} MiB; the limit is {max_memory / _MIB:,.0f} MiB"
        )
    _check_complete(data, header, max_scans=max_scans)
    buffer = np.frombuffer(data, dtype=np.uint8)
    image: BgrImage | None
    try:
        if header.has_alpha:
            image = _decode_with_alpha(buffer)
            if image is not None:
                image = _orient(image, _exif_orientation(data, header.format))
        else:
            # IMREAD_COLOR applies EXIF orientation and converts gray, 16-bit and CMYK to 8-bit BGR.
            decoded = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
            image = None if decoded is None else np.asarray(decoded, dtype=np.uint8)
    except cv2.error as exc:
        if "MAX_IMAGE_PIXELS" in str(exc):
            raise TooManyPixelsError(
                f"{header.width}x{header.height} is above this process's decoder limit of {_CV_LIMIT:,} pixels"
            ) from exc
        raise CorruptImageError(f"the {header.format.value.upper()} data could not be decoded") from exc
    if image is None or image.size == 0:
        raise CorruptImageError(f"the {header.format.value.upper()} data could not be decoded")
    if {image.shape[0], image.shape[1]} != {header.width, header.height}:
        raise CorruptImageError(
            f"decoded size {image.shape[1]}x{image.shape[0]} differs from the header's {header.width}x{header.height}"
        )
    return np.ascontiguousarray(image, dtype=np.uint8)


# Pixels composited per step: the 16-bit temporaries of one step stay under 6 MiB, whatever the image.
_COMPOSITE_STEP_PIXELS: Final = 1 << 18


def _decode_with_alpha(buffer: npt.NDArray[np.uint8]) -> BgrImage | None:
    raw = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if raw is None:
        return None
    if raw.dtype == np.uint8 and raw.ndim == 3 and raw.shape[2] == 3:
        return np.asarray(raw, dtype=np.uint8)
    return _composite_on_white(raw)


def _composite_on_white(raw: npt.NDArray[Any]) -> BgrImage:
    """8-bit BGR from what ``IMREAD_UNCHANGED`` returns (gray, gray+alpha, BGR or BGRA; 8 or 16 bits).

    Row band by row band into the result, so nothing image-sized is made beside it (float32 copies of
    the whole image held 14 bytes a pixel). 16-bit samples keep their high byte, as ``// 256`` did.
    Transparent pixels become white: ``c·a/255 + (255 − a)``, rounded half up, in integers
    (``(c·a + 127) // 255`` is that rounding exactly: c·a ≤ 65,025 and the sum fits in 16 bits).
    """
    height, width = raw.shape[:2]
    out = np.empty((height, width, 3), np.uint8)
    step = max(1, _COMPOSITE_STEP_PIXELS // width)
    for top in range(0, height, step):
        samples = raw[top : top + step]
        if samples.ndim == 2:
            samples = samples[..., np.newaxis]
        wide = samples.dtype == np.uint16
        band: npt.NDArray[np.uint16] = (samples >> 8 if wide else samples).astype(np.uint16, copy=False)
        if band.shape[2] in (1, 3):  # no alpha channel: assignment replicates gray to three channels
            out[top : top + step] = band
            continue
        alpha = band[..., -1:]
        mixed = band[..., :-1] * alpha
        mixed += 127
        mixed //= 255
        mixed += 255 - alpha
        out[top : top + step] = mixed
    return out


def _exif_orientation(data: bytes, fmt: ImageFormat) -> int:
    """EXIF orientation (1-8) of a PNG (``eXIf`` chunk) or WebP (``EXIF`` chunk); 1 when absent.

    Only needed on the alpha path: ``IMREAD_UNCHANGED`` ignores orientation, ``IMREAD_COLOR`` applies it.
    """
    tiff = b""
    if fmt is ImageFormat.PNG:
        pos = 8
        while pos + 8 <= len(data):
            length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
            if ctype == b"eXIf":
                tiff = data[pos + 8 : pos + 8 + length]
                break
            if ctype in (b"IDAT", b"IEND"):
                break
            pos += 12 + length
    elif fmt is ImageFormat.WEBP:
        pos = 12
        while pos + 8 <= len(data):
            ctype, length = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
            if ctype == b"EXIF":
                tiff = data[pos + 8 : pos + 8 + length]
                break
            pos += 8 + length + (length & 1)
    tiff = tiff.removeprefix(b"Exif\x00\x00")
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1
    order = "<" if tiff[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", tiff[4:8])
    if ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack(order + "H", tiff[ifd : ifd + 2])
    for k in range(count):
        entry = ifd + 2 + 12 * k
        if entry + 12 > len(tiff):
            break
        tag, _type, _n = struct.unpack(order + "HHI", tiff[entry : entry + 8])
        if tag == 0x0112:
            (value,) = struct.unpack(order + "H", tiff[entry + 8 : entry + 10])
            return value if 1 <= value <= 8 else 1
    return 1


def _orient(image: BgrImage, orientation: int) -> BgrImage:
    """Apply an EXIF orientation so the image is upright."""
    ops = {
        2: lambda im: cv2.flip(im, 1),
        3: lambda im: cv2.rotate(im, cv2.ROTATE_180),
        4: lambda im: cv2.flip(im, 0),
        5: lambda im: cv2.transpose(im),
        6: lambda im: cv2.rotate(im, cv2.ROTATE_90_CLOCKWISE),
        7: lambda im: cv2.flip(cv2.transpose(im), -1),
        8: lambda im: cv2.rotate(im, cv2.ROTATE_90_COUNTERCLOCKWISE),
    }
    op = ops.get(orientation)
    return image if op is None else np.asarray(op(image), dtype=np.uint8)
