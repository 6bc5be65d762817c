"""Capture quality: a photo that would silently fail to match is refused with a reason and a hint.

GIVEN a clear frontal photo THEN it passes every bar. GIVEN the same photo made too small, blurred,
too dark or blown out THEN the subject's face is refused with ``image.face_too_small`` or
``image.low_quality`` and a message that says what to change.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facegate.errors import FaceTooSmallError, ImageError, LowQualityError
from facegate.vision import FacePipeline, decode_image
from facegate.vision.decode import BgrImage, cv2
from facegate.vision.quality import MIN_EYE_DISTANCE_PX, assess, require


@pytest.fixture(scope="module")
def clear(fr_images: dict[str, Path]) -> BgrImage:
    return decode_image(fr_images["obama"].read_bytes())


def _subject_quality(pipeline: FacePipeline, image: BgrImage):  # type: ignore[no-untyped-def]
    analysis = pipeline.analyse_image(image)
    assert analysis.quality is not None, "the face is still detected"
    return analysis.quality


def test_a_clear_photo_passes(pipeline: FacePipeline, clear: BgrImage) -> None:
    quality = _subject_quality(pipeline, clear)
    require(quality)
    assert quality.eye_distance_px > 2 * MIN_EYE_DISTANCE_PX


def test_a_small_face_is_refused_with_a_retake_hint(pipeline: FacePipeline, clear: BgrImage) -> None:
    big = _subject_quality(pipeline, clear)
    scale = 12 / big.eye_distance_px  # eyes 12 px apart: below the bar, and FNMR about 3x the full-size rate
    small = np.asarray(cv2.resize(clear, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    canvas = np.full((max(200, small.shape[0] + 40), max(200, small.shape[1] + 40), 3), 128, np.uint8)
    canvas[20 : 20 + small.shape[0], 20 : 20 + small.shape[1]] = small
    analysis = pipeline.analyse_image(canvas)
    assert analysis.quality is not None, "the detector still finds the shrunken face"
    with pytest.raises(FaceTooSmallError, match="closer") as refused:
        require(analysis.quality)
    assert refused.value.code == "image.face_too_small"
    assert isinstance(refused.value, ImageError)


@pytest.mark.parametrize(
    ("degrade", "message"),
    [
        # σ of a sixth of the eye distance (LFW's σ = 4 at about 42 px refused ≥ 99% of photos)
        (lambda im, ied: cv2.GaussianBlur(im, (0, 0), ied / 6), "blurred"),
        (lambda im, _: (im.astype(np.float32) * 0.06).astype(np.uint8), "too dark"),
        (lambda im, _: np.clip(im.astype(np.float32) * 3.5, 0, 255).astype(np.uint8), "overexposed"),
    ],
    ids=["blurred", "dark", "blown-out"],
)
def test_a_degraded_photo_is_refused_as_low_quality(
    pipeline: FacePipeline,
    clear: BgrImage,
    degrade,
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    analysis = pipeline.analyse_image(clear)
    assert analysis.quality is not None
    landmarks = analysis.faces[0].landmarks  # measured where the face is
    quality = assess(np.ascontiguousarray(degrade(clear, analysis.quality.eye_distance_px)), landmarks)
    with pytest.raises(LowQualityError, match=message) as refused:
        require(quality)
    assert refused.value.code == "image.low_quality"


def test_the_fill_outside_the_image_is_not_counted_as_dark(pipeline: FacePipeline, clear: BgrImage) -> None:
    """A face at the image's edge: the aligned crop reaches outside, and that black fill is not 'dark'."""
    face = pipeline.analyse_image(clear).faces[0]
    x, _, w, _ = (int(v) for v in face.box)
    cut = np.ascontiguousarray(clear[:, max(0, x + w // 6) :])  # the face's left edge leaves the frame
    analysis = pipeline.analyse_image(cut)
    assert analysis.quality is not None
    assert analysis.quality.mean_grey is not None
    assert analysis.quality.mean_grey > 60
    require(analysis.quality)
