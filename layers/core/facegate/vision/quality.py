"""Capture quality of the subject's face: refuse a photo that would silently fail to match, with a hint.

Measured on LFW View-2 genuine pairs with one photo degraded, and on natural LFW and FairFace photos for
the refusal rate per group (``docs/decisions.md`` "Capture quality"). Each bar refuses almost no natural
photo (LFW: 0.06% of women's, 0.11% of men's; FairFace 0.6–2.7% per group, mostly turned heads; figures
from ``python -m benchmarks.quality``) and most of the photos that fail:

- **Inter-eye distance below 16 px** (``image.face_too_small``): FNMR at 0.46 rose from 5.5% at full size
  to 7.4% at 16 px, 10.7% at 14 and 21.7% at 10. On FairFace the faces it refuses are mostly turned
  away (the eye distance collapses with the head), so the hint says both.
- **Sharpness**: the variance of the Laplacian over the inner face region below 10 (``image.low_quality``):
  refuses 90% of photos blurred with a Gaussian of σ = 3 (FNMR 25%) and ≥ 99% from σ = 4.
- **Exposure**: inner mean grey below 25 (very dark), or more than 30% of inner pixels above 240
  (blown out). The mean is never used as a bar above that: a bar at 45 refused 7.5% of Black men and
  8.0% of Indian women on FairFace against 1.3–1.7% of white people, by skin tone; and a bar on the
  share of near-black pixels (> 25% below 16) refused Indian women 4.7% against 0.6% of Asian women.
- Pose (yaw, roll) and the embedder's output norm did **not** earn a bar: yaw does not predict failure
  within LFW's range, and the norm (the best single predictor, AUC 0.82) refuses women 2.2× as often as
  men and 28–37% of FairFace.

Photometric figures are taken over the inner face region of the aligned crop and only over pixels that
come from inside the image: the alignment's black fill would otherwise count as "dark".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from facegate.errors import FaceTooSmallError, LowQualityError
from facegate.vision.align import CROP_SIZE, similarity_transform
from facegate.vision.decode import BgrImage, cv2

MIN_EYE_DISTANCE_PX: Final = 16.0
MIN_SHARPNESS: Final = 10.0
MIN_MEAN_GREY: Final = 25.0
MAX_BLOWN_OUT: Final = 0.30
BLOWN_OUT_LEVEL: Final = 240
# Eyes at y ≈ 52, mouth at y ≈ 92, x from 38 to 74 on the 112 × 112 template.
INNER: Final = (slice(40, 100), slice(28, 84))
MIN_INNER_PIXELS: Final = 50


@dataclass(frozen=True)
class Quality:
    """What the bars look at, for the subject's face."""

    eye_distance_px: float
    sharpness: float | None
    """Laplacian variance over the inner face region; ``None`` when too little of it is in the image."""
    mean_grey: float | None
    blown_out: float | None
    """Share of inner pixels above 240."""

    def to_dict(self) -> dict[str, float | None]:
        return {
            "eye_distance_px": round(self.eye_distance_px, 2),
            "sharpness": None if self.sharpness is None else round(self.sharpness, 2),
            "mean_grey": None if self.mean_grey is None else round(self.mean_grey, 2),
            "blown_out": None if self.blown_out is None else round(self.blown_out, 4),
        }


def assess(image: BgrImage, landmarks: npt.ArrayLike) -> Quality:
    """Measure the face with these 5 landmarks (right eye, left eye, nose, mouth corners).

    Which crop pixels come from inside the image is found by mapping the crop's grid back through the
    alignment (the same pixels a warped image-sized mask would mark, without allocating one)."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    eye_distance = float(np.hypot(*(points[1] - points[0])))
    matrix = similarity_transform(points)
    grey = np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), dtype=np.uint8)
    crop = np.asarray(cv2.warpAffine(grey, matrix, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR), dtype=np.uint8)
    valid = _from_inside(matrix, image.shape[1], image.shape[0])
    region = valid[INNER]
    # The Laplacian only where its 3×3 support lies inside the image.
    support = np.asarray(cv2.erode(valid.astype(np.uint8), np.ones((3, 3), np.uint8)), dtype=bool)[INNER]
    if region.sum() < MIN_INNER_PIXELS or support.sum() < MIN_INNER_PIXELS:
        return Quality(eye_distance, None, None, None)
    pixels = crop[INNER][region]
    laplacian = np.asarray(cv2.Laplacian(crop, cv2.CV_64F))[INNER][support]
    return Quality(
        eye_distance,
        float(laplacian.var()),
        float(pixels.mean()),
        float((pixels > BLOWN_OUT_LEVEL).mean()),
    )


def _from_inside(matrix: npt.NDArray[np.float64], width: int, height: int) -> npt.NDArray[np.bool_]:
    """Which crop pixels the alignment samples from inside a ``width`` × ``height`` image."""
    inverse = cv2.invertAffineTransform(matrix)
    ys, xs = np.mgrid[0:CROP_SIZE, 0:CROP_SIZE]
    sx = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    sy = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    return np.asarray((sx >= -0.5) & (sx < width - 0.5) & (sy >= -0.5) & (sy < height - 0.5))


def require(quality: Quality) -> None:
    """Refuse a face below a bar, with what to change (typed errors: the caller's photo, never a 5xx)."""
    if quality.eye_distance_px < MIN_EYE_DISTANCE_PX:
        raise FaceTooSmallError(
            f"the face is too small or turned away (eyes {quality.eye_distance_px:.0f} px apart, at least "
            f"{MIN_EYE_DISTANCE_PX:.0f} needed): retake the photo closer, facing the camera"
        )
    if quality.sharpness is None:
        raise LowQualityError("too little of the face is inside the photo: retake it with the whole face in frame")
    if quality.sharpness < MIN_SHARPNESS:
        raise LowQualityError(
            f"the face is blurred (sharpness {quality.sharpness:.1f}, at least {MIN_SHARPNESS:.0f} needed): "
            "hold the camera still and focus on the face"
        )
    if quality.mean_grey is not None and quality.mean_grey < MIN_MEAN_GREY:
        raise LowQualityError(
            f"the face is too dark (mean level {quality.mean_grey:.0f} of 255): retake it in more light"
        )
    if quality.blown_out is not None and quality.blown_out > MAX_BLOWN_OUT:
        raise LowQualityError(
            f"the face is overexposed ({100 * quality.blown_out:.0f}% of it is white): retake it with less "
            "direct light or flash"
        )
