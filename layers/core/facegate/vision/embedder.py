"""SFace 2021dec face embedder on onnxruntime.

Input: aligned 112×112 crops, **RGB**, 0..255 float32, no normalisation, NCHW. Output: 128-d,
L2-normalised here (the network's ``fc1`` is not), compared by cosine similarity.

**Test-time flip** (the production embedding, :data:`MODEL_VERSION` ``…+flip``): each crop and its
horizontal mirror run in the same batch; the two ``fc1`` outputs are L2-normalised, averaged and
renormalised. Measured (``benchmarks.targets``): women's FNMR with 3 photos fused at FMR 1e-4 3.34% → 2.06%,
1:1 accuracy at 0.39 98.83% → 98.93%. Cost per face: 18.3 vs 16.5 ms on a 2-vCPU AMD EPYC, 12.1 vs 6.8 ms
on a 2-vCPU Intel Xeon (the second crop rides in the same run). ``flip=False`` (benchmarks only) embeds the crop
alone, tagged :data:`UNFLIPPED_MODEL_VERSION`, so the two kinds of template are never compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import onnxruntime as ort

from facegate.embedding import EMBEDDING_DIM, MODEL_VERSION, Embedding, FloatArray, l2_normalise

__all__ = ["EMBEDDING_DIM", "MODEL_VERSION", "UNFLIPPED_MODEL_VERSION", "Embedding", "SFaceEmbedder", "l2_normalise"]
from facegate.vision.align import CROP_SIZE
from facegate.vision.decode import BgrImage

UNFLIPPED_MODEL_VERSION: Final = MODEL_VERSION.removesuffix("+flip")
"""The version of a template embedded without the mirror (``flip=False``): a different template kind."""


class SFaceEmbedder:
    """SFace embedder. The session is built once and injected; the model must have a symbolic batch.

    ``flip`` (default on: the production path) embeds each crop with its mirror; off only for benchmarks.
    """

    def __init__(self, session: ort.InferenceSession, *, max_batch: int = 32, flip: bool = True) -> None:
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
        self.flip: Final = flip
        self.model_version: Final = MODEL_VERSION if flip else UNFLIPPED_MODEL_VERSION

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
        """L2-normalised embeddings, one per aligned crop, each carrying the model version.

        With ``flip``: each crop is followed by its mirror (``cv2.flip(crop, 1)``) in the batch, so one crop
        is one run of two; each output is normalised, the pair averaged and renormalised.
        """
        if not self.flip:
            return [Embedding(v, self.model_version) for v in l2_normalise(self.forward(crops_bgr))]
        pairs = [view for crop in crops_bgr for view in (crop, np.ascontiguousarray(crop[:, ::-1]))]
        both = l2_normalise(self.forward(pairs)).reshape(len(crops_bgr), 2, EMBEDDING_DIM)
        vectors = l2_normalise(both.mean(axis=1))
        return [Embedding(v, self.model_version) for v in vectors]
