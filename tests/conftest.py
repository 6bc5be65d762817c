"""Shared fixtures: the built models and the registry test data (both cached, never committed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from facegate import datasets
from facegate.models import ModelStore
from facegate.models.build import build_models
from facegate.vision import FacePipeline

# Runs the store tests on moto and on DynamoDB Local, with the same bodies (tests/_backends.py).
pytest_plugins = ["_backends"]

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def model_store() -> ModelStore:
    # Reuses a verified earlier build; builds (and verifies against the originals) otherwise.
    return ModelStore(build_models())


@pytest.fixture(scope="session")
def pipeline(model_store: ModelStore) -> FacePipeline:
    return FacePipeline.from_store(model_store)


@pytest.fixture(scope="session")
def johns() -> dict[str, list[Path]]:
    return datasets.johns()


@pytest.fixture(scope="session")
def fr_images() -> dict[str, Path]:
    return datasets.face_recognition_images()
