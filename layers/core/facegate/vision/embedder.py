"""SFace 2021dec face embedder on onnxruntime.

Input: aligned 112×112 crops, **RGB**, 0..255 float32, no normalisation, NCHW. Output: 128-d,
L2-normalised here (the network's ``fc1`` is not), compared by cosine similarity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import onnxruntime as ort

from facegate.embedding import EMBEDDING_DIM, MODEL_VERSION, Embedding, FloatArray, l2_normalise

__all__ = ["EMBEDDING_DIM", "MODEL_VERSION", "Embedding", "SFaceEmbedder", "l2_normalise"]
from facegate.vision.align import CROP_SIZE
from facegate.vision.decode import BgrImage


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
