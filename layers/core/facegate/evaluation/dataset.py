"""A labelled set to evaluate: images with an identity and an optional group each.

Three spellings of ``DATASET`` (``facegate evaluate DATASET``):

- a **CSV** of ``path,identity[,group]`` (paths relative to the CSV's folder; the column names can be
  chosen), or a folder holding ``labels.csv``;
- a **folder** of ``<identity>/<image>`` (every image in one group, ``all``);
- a **fetched set** by name (``johns``, ``face_recognition``): the registry data the project's own build
  scripts fetch and verify (``facegate data fetch``).

A set without an identity column (FairFace) is read with every image its own identity: only impostor
pairs are formed, and the report says that the false-match rates are upper bounds (the same person may
appear twice). Bad input is refused with every problem named, before any image is analysed.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from facegate.errors import InvalidRequestError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
DEFAULT_GROUP = "all"
UNLABELLED = ""
MAX_IMAGES = 100_000
MAX_LABEL_CHARS = 128
FETCHED = ("johns", "face_recognition")
GROUP_SOURCES = ("annotated", "manual", "predicted", "self-reported", "none")


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    identity: str
    group: str
    border: int = 0
    """Black border added before detection (dlib's 150×150 johns are cropped tight to the face)."""

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Dataset:
    name: str
    source: str
    images: tuple[LabelledImage, ...]
    identities_known: bool
    group_source: str
    """How the group labels were made: ``manual``/``annotated`` (human), ``predicted`` (a model's guess:
    reported with a caveat), ``self-reported``, or ``none`` (one group)."""
    notes: tuple[str, ...] = field(default=())

    def groups(self) -> dict[str, dict[str, int]]:
        per: dict[str, set[str]] = {}
        counts: Counter[str] = Counter()
        for image in self.images:
            per.setdefault(image.group, set()).add(image.identity)
            counts[image.group] += 1
        return {g: {"images": counts[g], "identities": len(per[g])} for g in sorted(per) if g != UNLABELLED}

    def digest(self) -> str:
        """sha256 over the sorted (relative path, identity, group) labels: which set was measured."""
        h = hashlib.sha256()
        for image in sorted(self.images, key=lambda i: str(i.path)):
            h.update(f"{image.path.name}\t{image.identity}\t{image.group}\n".encode())
        return h.hexdigest()

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name,
            "source": self.source,
            "images": len(self.images),
            "identities": len({i.identity for i in self.images}),
            "identities_known": self.identities_known,
            "group_source": self.group_source,
            "groups": self.groups(),
            "unlabelled_images": sum(1 for i in self.images if i.group == UNLABELLED),
            "labels_sha256": self.digest(),
            "notes": list(self.notes),
        }


def _clean_label(value: str, what: str, where: str, problems: list[str]) -> str:
    text = value.strip()
    if not text:
        problems.append(f"{where}: empty {what}")
    elif len(text) > MAX_LABEL_CHARS or not text.isprintable() or "~" in text:
        problems.append(f"{where}: {what} {text[:40]!r} is not a printable label of at most {MAX_LABEL_CHARS} (no '~')")
    return text


def _inside(root: Path, relative: str, where: str, problems: list[str]) -> Path | None:
    path = (root / relative).resolve()
    if not relative or Path(relative).is_absolute() or not path.is_relative_to(root.resolve()):
        problems.append(f"{where}: path {relative!r} is not inside {root}")
        return None
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        problems.append(f"{where}: {relative!r} is not an image file ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return None
    if not path.is_file():
        problems.append(f"{where}: {relative!r} does not exist")
        return None
    return path


def _refuse(problems: list[str], source: str) -> None:
    if problems:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise InvalidRequestError(f"the labelled set {source} is refused: {shown}")


def read_csv(
    csv_path: Path,
    *,
    path_column: str = "path",
    identity_column: str | None = "identity",
    group_column: str | None = "group",
    group_source: str = "annotated",
    name: str | None = None,
) -> Dataset:
    """Read a CSV of labelled images (``identity_column=None``: every image its own identity)."""
    if group_source not in GROUP_SOURCES:
        raise InvalidRequestError(f"group source {group_source!r} is not one of {', '.join(GROUP_SOURCES)}")
    root = csv_path.parent
    problems: list[str] = []
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:  # a spreadsheet's BOM is no column
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            for column in (path_column, identity_column, group_column):
                if column is not None and column not in columns:
                    raise InvalidRequestError(
                        f"{csv_path} has no column {column!r} (columns: {', '.join(columns) or 'none'})"
                    )
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidRequestError(f"{csv_path} cannot be read as a UTF-8 CSV: {exc}") from exc
    if not rows:
        raise InvalidRequestError(f"{csv_path} lists no image")
    if len(rows) > MAX_IMAGES:
        raise InvalidRequestError(f"{csv_path} lists {len(rows)} images; at most {MAX_IMAGES} are evaluated at once")
    images: list[LabelledImage] = []
    seen: set[Path] = set()
    for line, row in enumerate(rows, start=2):
        where = f"line {line}"
        path = _inside(root, (row.get(path_column) or "").strip(), where, problems)
        if path is not None and path in seen:
            problems.append(f"{where}: {row[path_column]!r} is listed twice")
        identity = (
            _clean_label(row.get(identity_column) or "", "identity", where, problems)
            if identity_column
            else f"image:{line}"
        )
        raw_group = (row.get(group_column) or "").strip() if group_column else DEFAULT_GROUP
        # An image without a group label is analysed (its detection counts) but takes part in no pair.
        group = _clean_label(raw_group, "group", where, problems) if raw_group else UNLABELLED
        if path is not None:
            seen.add(path)
            images.append(LabelledImage(path, identity, group))
    _refuse(problems, str(csv_path))
    notes = []
    if identity_column is None:
        notes.append(
            "no identity labels: every image is taken as a different person, so false-match rates are upper "
            "bounds (one person photographed twice counts as a false match) and no false non-match is measured"
        )
    if group_source == "predicted":
        notes.append("group labels are a model's predictions, not ground truth: read per-group figures as rough")
    return Dataset(
        name or csv_path.parent.name,
        str(csv_path),
        tuple(images),
        identity_column is not None,
        group_source if group_column else "none",
        tuple(notes),
    )


def read_folder(root: Path, *, name: str | None = None) -> Dataset:
    """A folder of ``<identity>/<image>`` files: one group."""
    problems: list[str] = []
    images = []
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        identity = _clean_label(person.name, "identity", str(person), problems)
        for path in sorted(person.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                images.append(LabelledImage(path, identity, DEFAULT_GROUP))
    if not images:
        problems.append(f"no <identity>/<image> files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
    if len(images) > MAX_IMAGES:
        problems.append(f"{len(images)} images; at most {MAX_IMAGES} are evaluated at once")
    _refuse(problems, str(root))
    return Dataset(name or root.name, str(root), tuple(images), True, "none")


def fetched(name: str) -> Dataset:
    """A registry set the project fetches and verifies (``facegate data fetch``)."""
    from facegate import datasets
    from facegate.evaluation.pairs import JOHNS_BORDER

    if name == "johns":
        people = datasets.johns()
        images = tuple(
            LabelledImage(path, person, DEFAULT_GROUP, JOHNS_BORDER)
            for person, paths in people.items()
            for path in paths
        )
        notes = ("dlib's johns: 150×150 chips of five men, padded with a black border for the detector",)
        return Dataset("johns", "fetched: dlib examples/johns", images, True, "none", notes)
    if name == "face_recognition":
        found = datasets.face_recognition_images()
        # Only the photos whose person is known from the file name (32bit.png and the partial-face crops are
        # decoder and detector tests, not labelled faces).
        names = {"obama": "Barack_Obama", "obama2": "Barack_Obama", "obama3": "Barack_Obama", "biden": "Joe_Biden"}
        labelled = [LabelledImage(found[stem], person, DEFAULT_GROUP) for stem, person in names.items()]
        notes = ("face_recognition's test photos of two people",)
        return Dataset("face_recognition", "fetched: face_recognition tests", tuple(labelled), True, "none", notes)
    raise InvalidRequestError(f"no fetched set {name!r} (one of {', '.join(FETCHED)})")


def load(
    spec: str,
    *,
    path_column: str = "path",
    identity_column: str | None = "identity",
    group_column: str | None = "group",
    group_source: str = "annotated",
    name: str | None = None,
) -> Dataset:
    """``DATASET`` as the command line spells it (see the module docstring)."""
    if spec in FETCHED:
        return fetched(spec)
    path = Path(spec)
    if path.is_dir() and (path / "labels.csv").is_file():
        path = path / "labels.csv"
    if path.is_file():
        return read_csv(
            path,
            path_column=path_column,
            identity_column=identity_column,
            group_column=group_column,
            group_source=group_source,
            name=name,
        )
    if path.is_dir():
        return read_folder(path, name=name)
    raise InvalidRequestError(f"{spec!r} is neither a CSV, a folder of <identity>/<image>, nor one of {FETCHED}")
