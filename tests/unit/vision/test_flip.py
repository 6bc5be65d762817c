"""Test-time flip: the production embedding is the crop's and its mirror's, averaged.

GIVEN a real aligned crop WHEN it is embedded THEN the template is the renormalised mean of the L2-normalised
``fc1`` outputs of the crop and of ``cv2.flip(crop, 1)``, each measured alone by ``forward``; the mirrored crop
gives the same template; ``flip=False`` (benchmarks only) is the crop alone under another model version.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from facegate.embedding import MODEL_VERSION, FloatArray, l2_normalise
from facegate.errors import EmbeddingMismatchError
from facegate.evaluation import johns_chip
from facegate.models import EMBEDDER, ModelStore
from facegate.vision import FacePipeline, SFaceEmbedder, decode_image
from facegate.vision.align import align_face
from facegate.vision.decode import BgrImage, cv2
from facegate.vision.embedder import UNFLIPPED_MODEL_VERSION
from facegate.vision.runtime import create_session


@pytest.fixture(scope="module")
def crop(pipeline: FacePipeline, fr_images: dict[str, Path]) -> BgrImage:
    image = decode_image(fr_images["obama"].read_bytes())
    return align_face(image, pipeline.detector.detect(image)[0].landmarks)


@pytest.fixture(scope="module")
def session(model_store: ModelStore) -> ort.InferenceSession:
    return create_session(model_store.path(EMBEDDER))


def _mirror(crop: BgrImage) -> BgrImage:
    return np.asarray(cv2.flip(crop, 1), dtype=np.uint8)


def _alone(embedder: SFaceEmbedder, crop: BgrImage) -> FloatArray:
    """One crop through ``forward`` as a batch of one, L2-normalised."""
    vector: FloatArray = l2_normalise(embedder.forward([crop]))[0]
    return vector


def test_the_embedding_is_the_normalised_mean_of_the_crop_and_its_mirror(
    pipeline: FacePipeline, crop: BgrImage
) -> None:
    assert pipeline.embedder.flip
    mirror = _mirror(crop)
    assert not np.array_equal(mirror, crop)
    mean = (_alone(pipeline.embedder, crop) + _alone(pipeline.embedder, mirror)) / 2
    expected = mean / np.linalg.norm(mean)
    (emb,) = pipeline.embedder.embed([crop])
    assert emb.model_version == MODEL_VERSION == "sface-2021dec+flip"
    np.testing.assert_allclose(emb.vector, expected, atol=1e-5)
    assert np.linalg.norm(emb.vector) == pytest.approx(1.0, abs=1e-6)
    # Not a no-op: the crop alone is a different (and unit) vector.
    assert float(emb.vector @ _alone(pipeline.embedder, crop)) < 0.9999


def test_a_mirrored_crop_gives_the_same_embedding(pipeline: FacePipeline, crop: BgrImage) -> None:
    (emb,) = pipeline.embedder.embed([crop])
    (mirrored,) = pipeline.embedder.embed([_mirror(crop)])
    np.testing.assert_allclose(mirrored.vector, emb.vector, atol=1e-5)
    assert mirrored.cosine(emb) == pytest.approx(1.0, abs=1e-5)


def test_the_product_path_embeds_with_flip(pipeline: FacePipeline, fr_images: dict[str, Path], crop: BgrImage) -> None:
    """The pipeline (service, workflow, bulk job, CLI, evaluation) gets the flipped template."""
    analysis = pipeline.analyse(fr_images["obama"].read_bytes())
    (direct,) = pipeline.embedder.embed([crop])
    assert analysis.subject_embedding.model_version == MODEL_VERSION
    np.testing.assert_allclose(analysis.subject_embedding.vector, direct.vector, atol=1e-5)
    (batched,) = pipeline.analyse_batch([decode_image(fr_images["obama"].read_bytes())])
    np.testing.assert_allclose(batched.subject_embedding.vector, direct.vector, atol=1e-5)


def test_each_crop_is_paired_with_its_own_mirror_across_batches(
    pipeline: FacePipeline, session: ort.InferenceSession, johns: dict[str, list[Path]]
) -> None:
    """GIVEN several people's crops and batches of 3 (so a crop and its mirror fall in different runs)
    WHEN embedded together THEN each template is that crop's own, as if embedded alone."""
    crops = []
    for paths in johns.values():
        chip = johns_chip(paths[0])
        crops.append(align_face(chip, pipeline.detector.detect(chip)[0].landmarks))
    small = SFaceEmbedder(session, max_batch=3)
    together = small.embed(crops)
    assert len(together) == len(crops) == 5
    for c, emb in zip(crops, together, strict=True):
        (alone,) = pipeline.embedder.embed([c])
        np.testing.assert_allclose(emb.vector, alone.vector, atol=1e-5)
    assert small.embed([]) == []


def test_without_flip_the_crop_alone_under_another_version(session: ort.InferenceSession, crop: BgrImage) -> None:
    plain = SFaceEmbedder(session, flip=False)
    assert UNFLIPPED_MODEL_VERSION == "sface-2021dec"
    assert UNFLIPPED_MODEL_VERSION + "+flip" == MODEL_VERSION
    (emb,) = plain.embed([crop])
    assert emb.model_version == UNFLIPPED_MODEL_VERSION
    np.testing.assert_allclose(emb.vector, _alone(plain, crop), atol=1e-6)
    (flipped,) = SFaceEmbedder(session).embed([crop])
    with pytest.raises(EmbeddingMismatchError, match="cannot compare"):
        emb.cosine(flipped)
