"""Decode → detect → align → embed, with both sessions built once per process."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from facegate.models import DETECTOR, EMBEDDER, ModelStore
from facegate.vision.align import align_face
from facegate.vision.decode import BgrImage, decode_image
from facegate.vision.detector import DEFAULT_SCORE_THRESHOLD, Detections, Face, YuNetDetector
from facegate.vision.embedder import Embedding, SFaceEmbedder
from facegate.vision.runtime import create_session


@dataclass(frozen=True)
class FaceAnalysis:
    """Every face found in one image, each with its embedding (same order, highest score first)."""

    width: int
    height: int
    faces: list[Face]
    embeddings: list[Embedding]

    def __len__(self) -> int:
        return len(self.faces)


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

    def analyse_image(self, image: BgrImage) -> FaceAnalysis:
        detections = self.detector.detect(image)
        return FaceAnalysis(image.shape[1], image.shape[0], list(detections), self.embed_detections(image, detections))

    def analyse(self, data: bytes) -> FaceAnalysis:
        """Decode untrusted bytes (typed errors on bad input), then detect and embed every face."""
        return self.analyse_image(decode_image(data))

    def analyse_batch(self, images: Sequence[BgrImage]) -> list[FaceAnalysis]:
        """Detect in batches, then embed every face of every image in batches (the Batch job's path)."""
        all_detections = self.detector.detect_batch(images)
        crops = [align_face(img, f.landmarks) for img, det in zip(images, all_detections, strict=True) for f in det]
        embeddings = self.embedder.embed(crops)
        out, start = [], 0
        for img, det in zip(images, all_detections, strict=True):
            out.append(FaceAnalysis(img.shape[1], img.shape[0], list(det), embeddings[start : start + len(det)]))
            start += len(det)
        return out
