"""Decode → detect → align → embed, with both sessions built once per process."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from facegate.errors import InvalidRequestError
from facegate.models import DETECTOR, EMBEDDER, ModelStore
from facegate.vision.align import align_face
from facegate.vision.decode import BgrImage, decode_image
from facegate.vision.detector import DEFAULT_SCORE_THRESHOLD, Detections, Face, YuNetDetector
from facegate.vision.embedder import Embedding, SFaceEmbedder
from facegate.vision.quality import Quality, assess
from facegate.vision.runtime import create_session
from facegate.vision.subject import subject_faces


@dataclass(frozen=True)
class FaceAnalysis:
    """The faces found in one image, ordered by the subject-face rule (:mod:`facegate.vision.subject`).

    ``faces`` lists the comparable faces first (the subject leading), then the bystanders;
    ``embeddings`` has one template per *comparable* face, in the same order: bystanders are never
    embedded. ``face_count`` is what the crowd rule counts."""

    width: int
    height: int
    faces: list[Face]
    embeddings: list[Embedding]
    quality: Quality | None = None
    """The subject's capture quality (:mod:`facegate.vision.quality`); ``None`` when no face was found."""

    @property
    def face_count(self) -> int:
        """Faces comparable to the subject (the subject included): what the policy's face rules count."""
        return len(self.embeddings)

    @property
    def bystanders(self) -> list[Face]:
        return self.faces[len(self.embeddings) :]

    @property
    def subject(self) -> Face | None:
        return self.faces[0] if self.embeddings else None

    @property
    def subject_embedding(self) -> Embedding:
        """The subject's template. Call it only once the gate has allowed the face count."""
        if not self.embeddings:
            raise InvalidRequestError("no face was detected in the image")
        return self.embeddings[0]


class FacePipeline:
    """The whole vision path for one process: build it once (cold start), call it per request."""

    def __init__(self, detector: YuNetDetector, embedder: SFaceEmbedder) -> None:
        self.detector = detector
        self.embedder = embedder

    @classmethod
    def from_store(
        cls,
        store: ModelStore | None = None,
        *,
        providers: Sequence[str] | None = None,
        intra_op_threads: int = 0,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    ) -> FacePipeline:
        store = store or ModelStore()
        detector = YuNetDetector(
            create_session(store.path(DETECTOR), providers=providers, intra_op_threads=intra_op_threads),
            score_threshold=score_threshold,
        )
        embedder = SFaceEmbedder(
            create_session(store.path(EMBEDDER), providers=providers, intra_op_threads=intra_op_threads)
        )
        return cls(detector, embedder)

    def embed_detections(self, image: BgrImage, detections: Detections) -> list[Embedding]:
        crops = [align_face(image, face.landmarks) for face in detections]
        return self.embedder.embed(crops)

    @staticmethod
    def ordered(image: BgrImage, detections: Detections) -> tuple[Detections, int]:
        """The detections in the rule's order and how many of them count (the comparable faces)."""
        rule = subject_faces(detections, image.shape[1], image.shape[0])
        return detections.select(np.asarray(rule.order, dtype=np.intp)), rule.count

    def analyse_image(self, image: BgrImage) -> FaceAnalysis:
        ordered, count = self.ordered(image, self.detector.detect(image))
        embeddings = self.embed_detections(image, ordered.select(np.arange(count, dtype=np.intp)))
        return FaceAnalysis(image.shape[1], image.shape[0], list(ordered), embeddings, _quality(image, ordered))

    def analyse(self, data: bytes) -> FaceAnalysis:
        """Decode untrusted bytes (typed errors on bad input), then detect and embed every face."""
        return self.analyse_image(decode_image(data))

    def analyse_batch(self, images: Sequence[BgrImage]) -> list[FaceAnalysis]:
        """Detect in batches, then embed every face of every image in batches (the Batch job's path)."""
        ruled = [self.ordered(img, det) for img, det in zip(images, self.detector.detect_batch(images), strict=True)]
        crops = [
            align_face(img, ordered[k].landmarks)
            for img, (ordered, count) in zip(images, ruled, strict=True)
            for k in range(count)
        ]
        embeddings = self.embedder.embed(crops)
        out, start = [], 0
        for img, (ordered, count) in zip(images, ruled, strict=True):
            analysis = FaceAnalysis(
                img.shape[1], img.shape[0], list(ordered), embeddings[start : start + count], _quality(img, ordered)
            )
            out.append(analysis)
            start += count
        return out


def _quality(image: BgrImage, ordered: Detections) -> Quality | None:
    return assess(image, ordered.landmarks[0]) if len(ordered) else None
