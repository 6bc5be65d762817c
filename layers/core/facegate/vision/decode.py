"""Safe decoding of untrusted image bytes.

Order matters: size in bytes, then the format and dimensions read from the header by this module's own
parsers, then a structural completeness check, and only then the full decode. OpenCV's own guard stops
at 2^30 pixels (a 389 kB PNG can expand to gigabytes), so the pixel limit is applied from the header,
before any pixel is decoded, and OpenCV's limit is lowered to the same value as a second line.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

import numpy as np
import numpy.typing as npt

from facegate.errors import (
    CorruptImageError,
    EmptyImageError,
    ImageTooLargeError,
    NotAnImageError,
    TooManyPixelsError,
    TruncatedImageError,
    UnsupportedFormatError,
)

MAX_BYTES: Final = 15 * 1024 * 1024
MAX_PIXELS: Final = 40_000_000

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
    dims: tuple[int, int] | None = None
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
            if dims is not None:
                raise CorruptImageError("the JPEG declares two frames")
            if pos + 7 > size:
                break
            height, width = struct.unpack(">HH", data[pos + 3 : pos + 7])
            if width == 0 or height == 0:
                raise CorruptImageError(f"the JPEG declares an empty size {width}x{height}")
            dims = (width, height)
        if marker == 0xDA:
            if dims is None:
                raise CorruptImageError("the JPEG has no frame header before its image data")
            return ImageHeader(ImageFormat.JPEG, dims[0], dims[1], has_alpha=False, data_offset=pos + length)
        pos += length
    if dims is None:
        raise TruncatedImageError("the JPEG ends before its frame header")
    return ImageHeader(ImageFormat.JPEG, dims[0], dims[1], has_alpha=False, data_offset=-1)


def _png_header(data: bytes) -> ImageHeader:
    if len(data) < 33:
        raise TruncatedImageError("the PNG ends before its IHDR chunk")
    length, ctype = struct.unpack(">I4s", data[8:16])
    if ctype != b"IHDR" or length != 13:
        raise CorruptImageError("the PNG does not start with a valid IHDR chunk")
    width, height, _depth, colour = struct.unpack(">IIBB", data[16:26])
    if width == 0 or height == 0:
        raise CorruptImageError(f"the PNG declares an empty size {width}x{height}")
    has_alpha = colour in (4, 6) or b"tRNS" in data[33 : min(len(data), 1 << 16)]
    return ImageHeader(ImageFormat.PNG, width, height, has_alpha=has_alpha)


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


def _check_complete(data: bytes, header: ImageHeader) -> None:
    """Refuse files cut short. Decoders fill a truncated JPEG with grey and succeed, silently."""
    if header.format is ImageFormat.JPEG:
        # The end marker must follow the image data: an EXIF thumbnail's own EOI comes before it, and
        # bytes after EOI (camera padding, a motion photo's video) are allowed.
        if header.data_offset < 0 or data.find(b"\xff\xd9", header.data_offset) < 0:
            raise TruncatedImageError("the JPEG is truncated (no end-of-image marker after its image data)")
    elif header.format is ImageFormat.PNG:
        if _PNG_IEND not in data[-4096:]:
            raise TruncatedImageError("the PNG is truncated (no complete IEND chunk)")
    else:
        (riff_size,) = struct.unpack("<I", data[4:8])
        if len(data) < riff_size + 8:
            raise TruncatedImageError(f"the WebP is truncated ({len(data)} of {riff_size + 8} declared bytes)")


def decode_image(data: bytes, *, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS) -> BgrImage:
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
    EmptyImageError, NotAnImageError, UnsupportedFormatError, TruncatedImageError, CorruptImageError
    """
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"the image is {len(data):,} bytes; the limit is {max_bytes:,} bytes")
    header = read_header(data)
    if header.pixels > max_pixels:
        raise TooManyPixelsError(
            f"the image declares {header.width}x{header.height} = {header.pixels:,} pixels; the limit is {max_pixels:,}"
        )
    _check_complete(data, header)
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


def _decode_with_alpha(buffer: npt.NDArray[np.uint8]) -> BgrImage | None:
    raw = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if raw is None:
        return None
    if raw.dtype == np.uint16:
        raw = (raw // 256).astype(np.uint8)
    if raw.ndim == 2:
        return np.asarray(cv2.cvtColor(raw, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    if raw.shape[2] == 2:  # gray + alpha
        gray, alpha = raw[..., 0], raw[..., 1]
        raw = np.dstack([gray, gray, gray, alpha])
    if raw.shape[2] == 3:
        return np.asarray(raw, dtype=np.uint8)
    colour = raw[..., :3].astype(np.float32)
    alpha = raw[..., 3:4].astype(np.float32) / 255.0
    composite = colour * alpha + 255.0 * (1.0 - alpha)
    return np.asarray(np.clip(composite + 0.5, 0, 255), dtype=np.uint8)


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
