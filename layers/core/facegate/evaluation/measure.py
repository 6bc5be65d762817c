"""Run a labelled set through the production path: decode, detect, the subject-face rule, the quality bar,
align and embed, exactly as enrolment and probes go through them.

Each image ends in one outcome: ``ok`` (a template of its subject), ``no_face``, ``face_too_small`` or
``low_quality`` (the quality bar's refusals, :mod:`facegate.vision.quality`), or ``unreadable`` (the
decoder's typed refusal). Only ``ok`` images have a template; every other outcome is what the person in
front of the camera would meet, so it counts as a non-match in every genuine pair it is part of.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from facegate.errors import FaceTooSmallError, ImageError, LowQualityError
from facegate.evaluation.dataset import Dataset, LabelledImage
from facegate.evaluation.pairs import with_border
from facegate.vision.decode import BgrImage, decode_image
from facegate.vision.embedder import EMBEDDING_DIM
from facegate.vision.pipeline import FaceAnalysis, FacePipeline
from facegate.vision.quality import require

OUTCOMES = ("ok", "no_face", "face_too_small", "low_quality", "unreadable")
BATCH = 32


@dataclass(frozen=True)
class Measurements:
    """Per image, in the dataset's order: the outcome, the comparable-face count and the template
    (a row of NaN when there is none)."""

    dataset: Dataset
    outcomes: tuple[str, ...]
    comparable_faces: tuple[int, ...]
    vectors: npt.NDArray[np.float32]

    @property
    def identities(self) -> list[str]:
        return [i.identity for i in self.dataset.images]

    @property
    def groups(self) -> list[str]:
        return [i.group for i in self.dataset.images]


def _load(image: LabelledImage) -> BgrImage:
    return with_border(decode_image(image.path.read_bytes()), image.border)


def outcome(analysis: FaceAnalysis) -> str:
    """What the product does with this image's subject: template it, or refuse it and why."""
    if not analysis.embeddings or analysis.quality is None:
        return "no_face"
    try:
        require(analysis.quality)
    except FaceTooSmallError:
        return "face_too_small"
    except LowQualityError:
        return "low_quality"
    return "ok"


def measure(
    dataset: Dataset, pipeline: FacePipeline, *, progress: Callable[[int, int], None] | None = None
) -> Measurements:
    n = len(dataset.images)
    vectors = np.full((n, EMBEDDING_DIM), np.nan, np.float32)
    outcomes = ["unreadable"] * n
    faces = [0] * n
    for start in range(0, n, BATCH):
        chunk = range(start, min(n, start + BATCH))
        loaded: list[tuple[int, BgrImage]] = []
        for i in chunk:
            try:
                loaded.append((i, _load(dataset.images[i])))
            except (ImageError, OSError):
                outcomes[i] = "unreadable"
        for (i, _), analysis in zip(loaded, pipeline.analyse_batch([p for _, p in loaded]), strict=True):
            faces[i] = analysis.face_count
            outcomes[i] = outcome(analysis)
            if outcomes[i] == "ok":
                vectors[i] = analysis.subject_embedding.vector
        if progress is not None:
            progress(chunk.stop, n)
    return Measurements(dataset, tuple(outcomes), tuple(faces), vectors)
