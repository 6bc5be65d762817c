"""Alignment, embedding and the pipeline's batch path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facegate.embedding import MODEL_VERSION
from facegate.errors import EmbeddingMismatchError
from facegate.evaluation import johns_chip
from facegate.vision import EMBEDDING_DIM, Embedding, FacePipeline, decode_image
from facegate.vision.align import CROP_SIZE, TEMPLATE, align_face, similarity_transform
from facegate.vision.decode import cv2


def test_similarity_transform_recovers_a_known_transform() -> None:
    """GIVEN template points moved by a known rotation/scale/shift WHEN fitted THEN it maps them back."""
    angle, scale, shift = np.deg2rad(17), 2.3, np.array([40.0, -12.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = TEMPLATE @ rot.T + shift
    matrix = similarity_transform(moved)
    back = moved @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(back, TEMPLATE, atol=1e-9)


def test_similarity_transform_matches_opencv_least_squares() -> None:
    rng = np.random.default_rng(0)
    points = TEMPLATE * 1.7 + rng.normal(0, 2.0, TEMPLATE.shape) + 30
    ours = similarity_transform(points)
    theirs, _ = cv2.estimateAffinePartial2D(points, TEMPLATE, method=cv2.LMEDS)
    np.testing.assert_allclose(ours, theirs, atol=1e-3)


def test_similarity_transform_refuses_degenerate_landmarks() -> None:
    with pytest.raises(ValueError, match="degenerate"):
        similarity_transform(np.ones((5, 2)))


def test_align_face_puts_eyes_on_the_template(pipeline: FacePipeline, fr_images: dict[str, Path]) -> None:
    image = decode_image(fr_images["obama"].read_bytes())
    face = pipeline.detector.detect(image)[0]
    crop = align_face(image, face.landmarks)
    assert crop.shape == (CROP_SIZE, CROP_SIZE, 3)
    # Re-detecting on the aligned crop (padded for context) puts the eyes near the template's.
    padded = cv2.copyMakeBorder(crop, 64, 64, 64, 64, cv2.BORDER_CONSTANT)
    again = pipeline.detector.detect(padded)[0].landmarks - 64
    assert np.abs(again[:2] - TEMPLATE[:2]).max() < 4.0


def test_embeddings_are_unit_float32_with_model_version(pipeline: FacePipeline, fr_images: dict[str, Path]) -> None:
    analysis = pipeline.analyse(fr_images["obama"].read_bytes())
    assert analysis.face_count == 1
    emb = analysis.embeddings[0]
    assert emb.vector.dtype == np.float32
    assert emb.vector.shape == (EMBEDDING_DIM,)
    assert np.linalg.norm(emb.vector) == pytest.approx(1.0, abs=1e-5)
    assert emb.model_version == MODEL_VERSION
    assert emb.cosine(emb) == pytest.approx(1.0, abs=1e-5)


def test_embedding_round_trips_through_bytes() -> None:
    vec = np.random.default_rng(1).normal(size=EMBEDDING_DIM).astype(np.float32)
    emb = Embedding(vec / np.linalg.norm(vec), "sface-2021dec")
    data = emb.to_bytes()
    assert len(data) == 4 * EMBEDDING_DIM
    back = Embedding.from_bytes(data, "sface-2021dec")
    np.testing.assert_array_equal(back.vector, emb.vector)


def test_embeddings_of_different_model_versions_cannot_be_compared() -> None:
    vec = (np.ones(EMBEDDING_DIM) / np.sqrt(EMBEDDING_DIM)).astype(np.float32)
    with pytest.raises(EmbeddingMismatchError, match="cannot compare"):
        Embedding(vec, "sface-2021dec").cosine(Embedding(vec, "other-model"))
    with pytest.raises(EmbeddingMismatchError):
        Embedding(np.ones(64, np.float32), "sface-2021dec")
    with pytest.raises(EmbeddingMismatchError):
        Embedding.from_bytes(b"\x00" * 10, "sface-2021dec")


def test_batched_embedding_equals_single(pipeline: FacePipeline, johns: dict[str, list[Path]]) -> None:
    crops = []
    for paths in johns.values():
        chip = johns_chip(paths[0])
        crops.append(align_face(chip, pipeline.detector.detect(chip)[0].landmarks))
    batched = pipeline.embedder.embed(crops)
    for crop, emb in zip(crops, batched, strict=True):
        assert pipeline.embedder.embed([crop])[0].cosine(emb) == pytest.approx(1.0, abs=1e-5)
    assert pipeline.embedder.embed([]) == []


def test_embedder_rejects_unaligned_crops(pipeline: FacePipeline) -> None:
    with pytest.raises(ValueError, match="112"):
        pipeline.embedder.embed([np.zeros((100, 100, 3), np.uint8)])


def test_analyse_batch_equals_analyse(pipeline: FacePipeline, fr_images: dict[str, Path]) -> None:
    images = [decode_image(fr_images[n].read_bytes()) for n in ("obama", "biden", "obama2")]
    batch = pipeline.analyse_batch(images)
    for image, got in zip(images, batch, strict=True):
        alone = pipeline.analyse_image(image)
        assert got.face_count == alone.face_count == 1
        assert got.embeddings[0].cosine(alone.embeddings[0]) == pytest.approx(1.0, abs=1e-4)
