"""SFace 2021dec face embedder on onnxruntime.

Input: aligned 112×112 crops, **RGB**, 0..255 float32, no normalisation, NCHW. Output: 128-d,
L2-normalised here (the network's ``fc1`` is not), compared by cosine similarity.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from facegate.errors import EmbeddingMismatchError
from facegate.vision.align import CROP_SIZE
from facegate.vision.decode import BgrImage

EMBEDDING_DIM: Final = 128
MODEL_VERSION: Final = "sface-2021dec"

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


class SFaceEmbedder:
    """SFace embedder. The session is built once and injected; the model must have a symbolic batch."""

    model_version: Final = MODEL_VERSION

    def __init__(self, session: ort.InferenceSession, *, max_batch: int = 32) -> None:
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(
                f"the embedder session has {len(inputs)} inputs; build the optimised model (facegate models build)"
            )
        shape = inputs[0].shape
        if list(shape[1:]) != [3, CROP_SIZE, CROP_SIZE]:
            raise ValueError(f"not an SFace session: input shape {shape}")
        self._session = session
        self._input = inputs[0].name
        self._output = session.get_outputs()[0].name
        self.max_batch = max_batch

    def forward(self, crops_bgr: Sequence[BgrImage]) -> FloatArray:
        """Raw, unnormalised ``fc1`` outputs (N, 128) for aligned BGR crops."""
        if not crops_bgr:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        for crop in crops_bgr:
            if crop.shape != (CROP_SIZE, CROP_SIZE, 3) or crop.dtype != np.uint8:
                raise ValueError("crops must be aligned 112×112×3 uint8 BGR arrays")
        out = []
        for start in range(0, len(crops_bgr), self.max_batch):
            batch = np.stack(crops_bgr[start : start + self.max_batch])[..., ::-1]  # BGR -> RGB
            blob = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)
            (fc1,) = self._session.run([self._output], {self._input: blob})
            out.append(np.asarray(fc1, dtype=np.float32))
        return np.concatenate(out)

    def embed(self, crops_bgr: Sequence[BgrImage]) -> list[Embedding]:
        """L2-normalised embeddings, one per aligned crop, each carrying the model version."""
        vectors = l2_normalise(self.forward(crops_bgr))
        return [Embedding(v, self.model_version) for v in vectors]
