"""A face template: the embedding vector and the model version that produced it.

Kept apart from the vision stack (numpy only), so the functions that store and match templates
(match, policy check, the API) do not import onnxruntime or OpenCV at cold start.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from facegate.errors import EmbeddingMismatchError

EMBEDDING_DIM: Final = 128
MODEL_VERSION: Final = "sface-2021dec+flip"

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Embedding:
    """One face template: a unit-length float32 vector and the model version that produced it."""

    vector: FloatArray
    model_version: str

    def __post_init__(self) -> None:
        if self.vector.shape != (EMBEDDING_DIM,) or self.vector.dtype != np.float32:
            raise EmbeddingMismatchError(
                f"an embedding is a float32 vector of {EMBEDDING_DIM}, got {self.vector.dtype} {self.vector.shape}"
            )

    def cosine(self, other: Embedding) -> float:
        """Cosine similarity; refuses to compare templates from different model versions."""
        if other.model_version != self.model_version:
            raise EmbeddingMismatchError(f"cannot compare {self.model_version} with {other.model_version} templates")
        return float(np.dot(self.vector, other.vector))

    def to_bytes(self) -> bytes:
        """Compact little-endian float32 form (512 bytes) for storage."""
        return self.vector.astype("<f4").tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, model_version: str) -> Embedding:
        if len(data) != EMBEDDING_DIM * 4:
            raise EmbeddingMismatchError(f"a stored template is {EMBEDDING_DIM * 4} bytes, got {len(data)}")
        return cls(np.frombuffer(data, dtype="<f4").astype(np.float32), model_version)


def l2_normalise(x: FloatArray) -> FloatArray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


MAX_REFERENCES: Final = 5
"""Photos one enrolment may fuse into a subject's template."""


def fuse(embeddings: list[Embedding]) -> Embedding:
    """One template from several photos of one person: the mean of their unit vectors, renormalised.

    On LFW (people with ≥ 4 photos, 3 enrolled) a fused template beat both a single photo and the best
    of the three references at a fixed false-match rate (``benchmarks/targets.py``). The references
    must share one model version."""
    if not embeddings:
        raise ValueError("fusing needs at least one embedding")
    versions = {e.model_version for e in embeddings}
    if len(versions) != 1:
        raise EmbeddingMismatchError(f"references of one template share one model version, got {sorted(versions)}")
    if len(embeddings) == 1:
        return embeddings[0]
    mean = np.mean(np.stack([e.vector for e in embeddings]), axis=0, keepdims=True).astype(np.float32)
    return Embedding(l2_normalise(mean)[0], embeddings[0].model_version)
