"""Identity-labelled face images for tests, the demo and the model build, from package registries.

- dlib's example images (Debian ``libdlib19.1``, public domain per Debian's copyright file): the
  "johns" set (5 people x 11 face chips, 150x150) and ``examples/faces`` (PASCAL VOC photos with
  hand-drawn face boxes in ``training.xml``/``testing.xml``).
- ``face_recognition==1.3.0`` sdist test images (MIT): Obama x5 (two partial faces), Biden.

Nothing is installed and nothing is committed: archives are fetched with pip / apt-get into the cache,
every extracted file is checked against ``manifest.json`` and written atomically.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from facegate.errors import FetchError
from facegate.fetch import (
    DebianArtefact,
    PypiArtefact,
    all_present,
    cache_dir,
    extract_verified,
    fetch_debian,
    fetch_pypi,
)

DLIB_DEB = DebianArtefact(package="libdlib19.1", filename_prefix="libdlib19.1_")
FACE_RECOGNITION_SDIST = PypiArtefact(
    requirement="face_recognition==1.3.0",
    filename="face_recognition-1.3.0.tar.gz",
    sha256="5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec",
    sdist=True,
)
_DLIB_PREFIX = "usr/share/doc/libdlib19.1/"
_FR_PREFIX = "face_recognition-1.3.0/"


@cache
def _manifest() -> dict[str, dict[str, str]]:
    text = resources.files("facegate.datasets").joinpath("manifest.json").read_text()
    data: dict[str, dict[str, str]] = json.loads(text)
    return data


def data_dir() -> Path:
    return cache_dir() / "testdata"


def _ensure(name: str, prefix: str, fetch: Callable[[Path], Path], root: Path) -> Path:
    files = _manifest()[name]
    dest = root / name
    if all_present(dest, ((m.removeprefix(prefix), sha) for m, sha in files.items())):
        return dest
    archive = fetch(cache_dir() / "downloads")
    extract_verified(archive, files, dest, strip=prefix)
    return dest


def fetch_dlib(root: Path | None = None) -> Path:
    """dlib example images, verified; returns the folder holding ``examples/johns`` and ``examples/faces``."""
    return _ensure("dlib", _DLIB_PREFIX, lambda d: fetch_debian(DLIB_DEB, d), root or data_dir())


def fetch_face_recognition(root: Path | None = None) -> Path:
    """face_recognition's test images, verified; returns the folder holding ``tests/test_images``."""
    return _ensure("face_recognition", _FR_PREFIX, lambda d: fetch_pypi(FACE_RECOGNITION_SDIST, d), root or data_dir())


def fetch_all(root: Path | None = None) -> dict[str, Path]:
    return {"dlib": fetch_dlib(root), "face_recognition": fetch_face_recognition(root)}


def johns(root: Path | None = None) -> dict[str, list[Path]]:
    """The dlib "johns": person name → sorted image paths (5 people x 11 chips)."""
    base = fetch_dlib(root) / "examples" / "johns"
    people = {p.name: sorted(p.glob("*.jpg")) for p in sorted(base.iterdir()) if p.is_dir()}
    if not people:
        raise FetchError(f"no johns images under {base}")
    return people


def face_recognition_images(root: Path | None = None) -> dict[str, Path]:
    """face_recognition's test images by file stem (``obama``, ``obama2``, ``biden``, ...)."""
    base = fetch_face_recognition(root) / "tests" / "test_images"
    return {p.stem: p for p in sorted(base.iterdir())}


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    width: int
    height: int
    boxes: list[tuple[int, int, int, int]]
    """Hand-drawn face boxes ``(x, y, width, height)``."""


def dlib_face_boxes(root: Path | None = None) -> list[LabelledImage]:
    """dlib's hand-labelled face photos (training.xml and testing.xml together, 43 faces)."""
    base = fetch_dlib(root) / "examples" / "faces"
    out: list[LabelledImage] = []
    for xml_name in ("training.xml", "testing.xml"):
        tree = ET.parse(base / xml_name)
        for image in tree.getroot().iter("image"):
            boxes = [
                (int(b.get("left", 0)), int(b.get("top", 0)), int(b.get("width", 0)), int(b.get("height", 0)))
                for b in image.iter("box")
                if b.get("ignore") != "1"
            ]
            out.append(
                LabelledImage(
                    base / str(image.get("file")),
                    int(image.get("width", 0)),
                    int(image.get("height", 0)),
                    boxes,
                )
            )
    return out
