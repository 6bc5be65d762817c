"""A tester's labelled set, as sent: one zip holding ``labels.csv`` and the images it names.

``labels.csv`` has the columns ``path`` (relative to the archive's root), ``identity`` (left out for a
set without identities: then every image is its own person, and false-match rates are upper bounds)
and, optionally, ``group``. The archive is checked before anything is stored or evaluated, and again by
the job: a zip that is not one, encrypted, with links, absolute or ``..`` names, more members or more
bytes unpacked than the catalog's sandbox limits allow (a zip bomb), or a ``labels.csv`` that
:func:`facegate.evaluation.dataset.read_csv` refuses (a missing file, a duplicate, an empty identity) is
refused with every problem named. The set is read by the same strict reader ``facegate evaluate`` uses.
"""

from __future__ import annotations

import csv
import hashlib
import io
import stat
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, Final

from facegate.errors import InvalidRequestError
from facegate.evaluation.dataset import DEFAULT_GROUP, GROUP_SOURCES, Dataset, LabelledImage, read_csv
from facegate.policy.catalog import Sandbox

LABELS: Final = "labels.csv"
COLUMNS: Final = ("path", "identity", "group")


@dataclass(frozen=True)
class SetSummary:
    """What the gate decides a test on, and what the request and the audit log record of the set."""

    name: str
    images: int
    identities: int
    identities_known: bool
    grouped: bool
    group_source: str
    labels_sha256: str
    archive_sha256: str
    groups: int = 1
    smallest_group_images: int = 0
    smallest_group_identities: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "images": self.images,
            "identities": self.identities,
            "identities_known": self.identities_known,
            "grouped": self.grouped,
            "groups": self.groups,
            "smallest_group_images": self.smallest_group_images,
            "smallest_group_identities": self.smallest_group_identities,
            "group_source": self.group_source,
            "labels_sha256": self.labels_sha256,
            "archive_sha256": self.archive_sha256,
        }


def _member_problems(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    path = PurePosixPath(name)
    mode = info.external_attr >> 16
    if not path.parts or "\\" in name or name.startswith("/") or ":" in path.parts[0]:
        return f"{name[:80]!r} is not a relative name inside the archive"
    if any(part in ("..", "") for part in name.rstrip("/").split("/")):
        return f"{name[:80]!r} climbs out of the archive or has an empty part"
    if stat.S_ISLNK(mode):
        return f"{name[:80]!r} is a link (only files and folders are read)"
    if info.flag_bits & 0x1:
        return f"{name[:80]!r} is encrypted"
    return None


def _open(data: bytes, limits: Sandbox) -> zipfile.ZipFile:
    if len(data) > limits.max_archive_bytes:
        raise InvalidRequestError(
            f"the set's archive is {len(data):,} bytes; at most {limits.max_archive_bytes:,} are accepted at once"
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise InvalidRequestError(f"the set is not a zip archive: {exc}") from exc
    infos = archive.infolist()
    files = [i for i in infos if not i.is_dir()]
    problems = [p for p in (_member_problems(i) for i in infos) if p]
    if len(files) > limits.max_images + 1:
        problems.append(
            f"the archive holds {len(files):,} files; at most {limits.max_images + 1:,} (images and labels.csv)"
        )
    unpacked = sum(i.file_size for i in files)
    if unpacked > limits.max_uncompressed_bytes:
        problems.append(f"the archive unpacks to {unpacked:,} bytes; at most {limits.max_uncompressed_bytes:,}")
    names = [i.filename for i in files]
    if len(set(names)) != len(names):
        problems.append("the archive names a file twice")
    if LABELS not in names:
        problems.append(f"the archive has no {LABELS} at its root (columns: path, identity[, group])")
    if problems:
        raise InvalidRequestError("the set's archive is refused: " + "; ".join(problems[:10]))
    return archive


def _columns(labels: bytes) -> list[str]:
    try:
        header = next(csv.reader(io.StringIO(labels.decode("utf-8-sig"))), [])
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InvalidRequestError(f"{LABELS} is not a UTF-8 CSV: {exc}") from exc
    return [c.strip() for c in header]


@contextmanager
def unpacked(
    data: bytes,
    limits: Sandbox,
    *,
    name: str = "independent-test",
    identities_known: bool = True,
    group_source: str = "annotated",
) -> Iterator[tuple[Dataset, SetSummary]]:
    """The archive unpacked into a private temporary folder and read as a :class:`Dataset` (removed on
    exit). Every size is checked against ``limits`` before a byte is written, and each member is
    written at most its declared size (a member whose data outruns its header is refused)."""
    if group_source not in GROUP_SOURCES:
        raise InvalidRequestError(f"group_source must be one of {', '.join(GROUP_SOURCES)}, not {group_source[:20]!r}")
    archive = _open(data, limits)
    with archive, tempfile.TemporaryDirectory(prefix="facegate-set-") as tmp:
        root = Path(tmp)
        for info in archive.infolist():
            if info.is_dir():
                continue
            target = root / info.filename
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as source, target.open("wb") as sink:
                    chunk = source.read(info.file_size + 1)
                    if len(chunk) > info.file_size:
                        raise InvalidRequestError(f"{info.filename[:80]!r} holds more than its declared size")
                    sink.write(chunk)
            except (zipfile.BadZipFile, EOFError, OSError, RuntimeError, NotImplementedError) as exc:
                raise InvalidRequestError(f"{info.filename[:80]!r} cannot be read from the archive: {exc}") from exc
        columns = _columns((root / LABELS).read_bytes())
        if "path" not in columns:
            raise InvalidRequestError(f"{LABELS} needs a 'path' column (columns: {', '.join(columns) or 'none'})")
        if identities_known and "identity" not in columns:
            raise InvalidRequestError(
                f"{LABELS} needs an 'identity' column, or send the set as one without identities "
                "(every image then counts as its own person and false-match rates are upper bounds)"
            )
        unknown = sorted(set(columns) - set(COLUMNS))
        if unknown:
            raise InvalidRequestError(f"{LABELS} has unknown columns {unknown[:5]} (known: {', '.join(COLUMNS)})")
        grouped = "group" in columns
        dataset = read_csv(
            root / LABELS,
            identity_column="identity" if identities_known else None,
            group_column="group" if grouped else None,
            group_source=group_source if grouped else "none",
            name=name,
        )
        # The set's origin as the report names it: the archive's digest, never a path of this machine.
        dataset = replace(dataset, source=f"independent test archive sha256:{hashlib.sha256(data).hexdigest()[:16]}")
        per_group = dataset.groups() or {"all": {"images": 0, "identities": 0}}
        summary = SetSummary(
            name=name,
            groups=len(per_group),
            smallest_group_images=min(g["images"] for g in per_group.values()),
            smallest_group_identities=min(g["identities"] for g in per_group.values()),
            images=len(dataset.images),
            identities=len({i.identity for i in dataset.images}),
            identities_known=identities_known,
            grouped=grouped,
            group_source=dataset.group_source,
            labels_sha256=dataset.digest(),
            archive_sha256=hashlib.sha256(data).hexdigest(),
        )
        yield dataset, summary


def inspect(data: bytes, limits: Sandbox, **options: Any) -> SetSummary:
    """The set's summary, checked as the job will read it (see :func:`unpacked`)."""
    with unpacked(data, limits, **options) as (_dataset, summary):
        return summary


def _image_bytes(image: LabelledImage) -> bytes:
    if not image.border:
        return image.path.read_bytes()
    # dlib's tight chips get the border the detector needs here, as `facegate evaluate` adds it.
    import cv2

    from facegate.evaluation.pairs import with_border
    from facegate.vision import decode_image

    ok, png = cv2.imencode(".png", with_border(decode_image(image.path.read_bytes()), image.border))
    if not ok:
        raise InvalidRequestError(f"{image.path.name} cannot be re-encoded")
    return bytes(png.tobytes())


def pack(dataset: Dataset) -> bytes:
    """A labelled set (any ``facegate evaluate`` spelling, read by :mod:`facegate.evaluation.dataset`)
    as the archive the sandbox takes: each image once, under ``images/<n><suffix>``, and ``labels.csv``.
    File names are replaced by numbers, so that no file name of the tester's leaves its machine."""
    buffer = io.BytesIO()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    grouped = any(i.group != DEFAULT_GROUP for i in dataset.images)
    writer.writerow(["path", *(["identity"] if dataset.identities_known else []), *(["group"] if grouped else [])])
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for n, image in enumerate(dataset.images):
            member = f"images/{n:06d}{'.png' if image.border else image.path.suffix.lower()}"
            archive.writestr(member, _image_bytes(image))
            identity = [image.identity] if dataset.identities_known else []
            writer.writerow([member, *identity, *([image.group] if grouped else [])])
        archive.writestr(LABELS, out.getvalue())
    return buffer.getvalue()
