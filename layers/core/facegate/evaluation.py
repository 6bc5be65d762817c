"""Measuring accuracy per person and per group, at one fixed operating threshold.

Used by the regression tests and ``benchmarks/accuracy.py``. Following NIST FRVT practice, error rates
are reported per group at a single threshold (never a threshold tuned per group), with a Wilson 95%
interval so that small groups show how little they prove.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import numpy.typing as npt

from facegate.vision.decode import BgrImage, cv2, decode_image
from facegate.vision.detector import Detections
from facegate.vision.embedder import Embedding
from facegate.vision.pipeline import FacePipeline

JOHNS_BORDER = 75
"""dlib's johns are 150×150 chips cropped tight to the face: the detector needs context around it. A
black border (not replicate or reflect: those put the impostor maximum at 0.479 / 0.448 against 0.343)."""


def johns_chip(path: Path) -> BgrImage:
    """One of dlib's johns, decoded and padded with the black border the detector needs."""
    b = JOHNS_BORDER
    return np.asarray(cv2.copyMakeBorder(decode_image(path.read_bytes()), b, b, b, b, cv2.BORDER_CONSTANT))


class Pick(StrEnum):
    """Which face stands for the image when a labelled set has one subject per image."""

    BEST = "best"  # highest detector score
    CENTRAL = "central"  # closest to the image centre (LFW's convention: the subject is centred)


def pick_face(detections: Detections, width: int, height: int, pick: Pick) -> int | None:
    if len(detections) == 0:
        return None
    if pick is Pick.BEST:
        return int(np.argmax(detections.scores))
    centres = detections.boxes[:, :2] + detections.boxes[:, 2:] / 2
    dist = np.linalg.norm(centres - np.array([width / 2, height / 2], np.float32), axis=1)
    return int(np.argmin(dist))


def embed_subject(pipeline: FacePipeline, image: BgrImage, pick: Pick = Pick.BEST) -> Embedding | None:
    """The embedding of the image's subject, or ``None`` when no face is detected (a false non-match)."""
    detections = pipeline.detector.detect(image)
    index = pick_face(detections, image.shape[1], image.shape[0], pick)
    if index is None:
        return None
    return pipeline.embed_detections(image, detections.select(np.array([index])))[0]


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion ``k/n`` (95% by default)."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class VerificationStats:
    threshold: float
    genuine: int
    impostor: int
    false_non_matches: int
    false_matches: int
    genuine_min: float
    impostor_max: float

    @property
    def fnmr(self) -> float:
        return self.false_non_matches / self.genuine if self.genuine else 0.0

    @property
    def fmr(self) -> float:
        return self.false_matches / self.impostor if self.impostor else 0.0

    @property
    def accuracy(self) -> float:
        total = self.genuine + self.impostor
        return 1 - (self.false_non_matches + self.false_matches) / total if total else 1.0


def verification_stats(scores: npt.ArrayLike, same: npt.ArrayLike, threshold: float) -> VerificationStats:
    """Decisions at ``threshold`` for pair ``scores`` (NaN = a face was not detected: a non-match)."""
    s = np.asarray(scores, dtype=np.float64)
    g = np.asarray(same, dtype=bool)
    match = np.nan_to_num(s, nan=-1.0) >= threshold
    gen, imp = s[g], s[~g]
    return VerificationStats(
        threshold=threshold,
        genuine=int(g.sum()),
        impostor=int((~g).sum()),
        false_non_matches=int((~match[g]).sum()),
        false_matches=int(match[~g].sum()),
        genuine_min=float(np.nanmin(np.nan_to_num(gen, nan=-1.0))) if gen.size else math.nan,
        impostor_max=float(np.nanmax(np.nan_to_num(imp, nan=-1.0))) if imp.size else math.nan,
    )


def all_pairs(
    embeddings: Sequence[Embedding], labels: Sequence[str]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Cosine scores and same-identity flags for every unordered pair."""
    matrix = np.stack([e.vector for e in embeddings]).astype(np.float64)
    scores = matrix @ matrix.T
    names = np.asarray(labels)
    iu = np.triu_indices(len(names), 1)
    return scores[iu], (names[:, None] == names[None, :])[iu]
