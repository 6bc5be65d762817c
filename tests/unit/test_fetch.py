"""Unit tests of :mod:`facegate.fetch`: checksums, archive extraction, pip downloads, the cache folder.

Nothing here touches the network or the real cache: archives are built in ``tmp_path`` and the pip
download is replaced by a fake ``facegate.fetch._run`` (or a fake ``subprocess.run``).
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from facegate import fetch
from facegate.errors import ChecksumMismatchError, FetchError
from facegate.fetch import PypiArtefact

PAYLOAD = b"facegate test payload\n"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


WRONG_SHA = "0" * 64


# --- archive builders ------------------------------------------------------------------------------


def _make_zip(path: Path, members: Mapping[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        dirs = {name.rsplit("/", 1)[0] + "/" for name in members if "/" in name}
        for d in sorted(dirs):
            zf.writestr(d, b"")  # directory entries, as real wheels/zips may carry
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _tar_bytes(members: Mapping[str, bytes], mode: str, dirs: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _make_targz(path: Path, members: Mapping[str, bytes], dirs: tuple[str, ...] = ()) -> Path:
    path.write_bytes(_tar_bytes(members, "w:gz", dirs))
    return path


def _ar_member(name: str, data: bytes) -> bytes:
    """One ``ar`` member: 60-byte header (name 16, mtime 12, uid 6, gid 6, mode 8, size 10, "`\\n")."""
    header = (
        name.encode("ascii").ljust(16)
        + b"1700000000".ljust(12)
        + b"0".ljust(6)
        + b"0".ljust(6)
        + b"100644".ljust(8)
        + str(len(data)).encode("ascii").ljust(10)
        + b"`\n"
    )
    assert len(header) == 60
    return header + data + (b"\n" if len(data) % 2 else b"")


def _control_tar(compression: str) -> bytes:
    """control.tar.<compression>; a gzip one is made odd-sized so the ar padding byte is exercised.

    (xz output is always a multiple of 4 bytes, so an xz-only .deb never needs the padding byte.)
    """
    for extra in range(64):
        control = b"Package: facegate-test\nVersion: 1.0\n" + b"X" * extra + b"\n"
        blob = _tar_bytes({"./control": control}, f"w:{compression}", dirs=("./",))
        if compression == "xz" or len(blob) % 2:
            return blob
    raise AssertionError("could not build an odd-sized control tar")  # pragma: no cover


def _make_deb(path: Path, members: Mapping[str, bytes], *, control: str = "xz", with_data: bool = True) -> Path:
    data_tar = _tar_bytes(members, "w:xz", dirs=("./", "./usr/", "./usr/share/", "./usr/share/x/"))
    control_tar = _control_tar(control)
    blob = b"!<arch>\n" + _ar_member("debian-binary", b"2.0\n") + _ar_member(f"control.tar.{control}", control_tar)
    if with_data:
        blob += _ar_member("data.tar.xz", data_tar)
    path.write_bytes(blob)
    return path


# Each format: (archive builder, member name as pinned, strip prefix, expected relative output path).
ArchiveCase = tuple[Callable[[Path, bytes], Path], str, str, str]

ARCHIVES: dict[str, ArchiveCase] = {
    "zip": (
        lambda d, data: _make_zip(
            d / "pkg-1.0-py3-none-any.zip", {"pkg/models/sub/file.txt": data, "pkg/other.txt": b"other"}
        ),
        "pkg/models/sub/file.txt",
        "pkg/models/",
        "sub/file.txt",
    ),
    "tar.gz": (
        lambda d, data: _make_targz(
            d / "pkg-1.0.tar.gz",
            {"pkg-1.0/tests/img/file.txt": data, "pkg-1.0/setup.py": b"# setup"},
            dirs=("pkg-1.0", "pkg-1.0/tests"),
        ),
        "pkg-1.0/tests/img/file.txt",
        "pkg-1.0/",
        "tests/img/file.txt",
    ),
    "deb": (
        lambda d, data: _make_deb(d / "libx_1.0-1_amd64.deb", {"./usr/share/x/file.txt": data}),
        "usr/share/x/file.txt",
        "usr/share/",
        "x/file.txt",
    ),
}


@pytest.fixture(autouse=True)
def _isolated_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No test in this module may touch the real cache.
    monkeypatch.setenv("FACEGATE_CACHE_DIR", str(tmp_path / "cache"))


# --- verify_sha256 ---------------------------------------------------------------------------------


def test_verify_sha256_accepts_the_pinned_hash(tmp_path: Path) -> None:
    """GIVEN a file and its true sha256 WHEN verified THEN nothing is raised and sha256_file agrees."""
    path = tmp_path / "good.bin"
    path.write_bytes(PAYLOAD)
    fetch.verify_sha256(path, _sha(PAYLOAD))
    assert fetch.sha256_file(path) == _sha(PAYLOAD)


def test_verify_sha256_one_changed_byte_names_file_and_both_hashes(tmp_path: Path) -> None:
    """GIVEN a file with one byte changed WHEN verified against the original's hash
    THEN ChecksumMismatchError names the file, the actual and the pinned hash."""
    path = tmp_path / "model.onnx"
    corrupt = bytearray(PAYLOAD)
    corrupt[5] ^= 0x01
    path.write_bytes(bytes(corrupt))
    with pytest.raises(ChecksumMismatchError) as info:
        fetch.verify_sha256(path, _sha(PAYLOAD))
    message = str(info.value)
    assert "model.onnx" in message
    assert _sha(bytes(corrupt)) in message
    assert _sha(PAYLOAD) in message
    assert info.value.code == "fetch.checksum_mismatch"


def test_verify_sha256_missing_file_is_a_fetch_error(tmp_path: Path) -> None:
    """GIVEN a path with no file WHEN verified THEN FetchError (not a checksum error) says it is missing."""
    missing = tmp_path / "absent.whl"
    with pytest.raises(FetchError, match="missing") as info:
        fetch.verify_sha256(missing, _sha(PAYLOAD))
    assert not isinstance(info.value, ChecksumMismatchError)
    assert "absent.whl" in str(info.value)


# --- extract_verified ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(ARCHIVES))
def test_extract_verified_strips_prefix_and_writes_content(tmp_path: Path, kind: str) -> None:
    """GIVEN a zip / .tar.gz / .deb holding a file WHEN extracted with its pinned sha
    THEN the file lands under dest with the prefix stripped, with the right bytes and no .part left."""
    build, member, strip, rel = ARCHIVES[kind]
    archive = build(tmp_path, PAYLOAD)
    dest = tmp_path / "out"
    written = fetch.extract_verified(archive, {member: _sha(PAYLOAD)}, dest, strip=strip)
    assert written == [dest / rel]
    assert (dest / rel).read_bytes() == PAYLOAD
    assert [p for p in dest.rglob("*") if p.is_file()] == [dest / rel]
    assert fetch.all_present(dest, [(rel, _sha(PAYLOAD))])


def test_extract_verified_tgz_and_whl_suffixes(tmp_path: Path) -> None:
    """GIVEN a .tgz and a .whl WHEN extracted THEN they are read as tar.gz and zip respectively."""
    tgz = _make_targz(tmp_path / "a.tgz", {"a/b.txt": PAYLOAD})
    whl = _make_zip(tmp_path / "a-1.0-py3-none-any.whl", {"a/c.txt": PAYLOAD[::-1]})
    dest = tmp_path / "out"
    fetch.extract_verified(tgz, {"a/b.txt": _sha(PAYLOAD)}, dest, strip="a/")
    fetch.extract_verified(whl, {"a/c.txt": _sha(PAYLOAD[::-1])}, dest, strip="a/")
    assert (dest / "b.txt").read_bytes() == PAYLOAD
    assert (dest / "c.txt").read_bytes() == PAYLOAD[::-1]


def test_extract_verified_replaces_a_stale_file(tmp_path: Path) -> None:
    """GIVEN a corrupt earlier copy at the target WHEN extracted again THEN it is replaced by the good bytes."""
    build, member, strip, rel = ARCHIVES["zip"]
    archive = build(tmp_path, PAYLOAD)
    dest = tmp_path / "out"
    (dest / rel).parent.mkdir(parents=True)
    (dest / rel).write_bytes(b"stale")
    fetch.extract_verified(archive, {member: _sha(PAYLOAD)}, dest, strip=strip)
    assert (dest / rel).read_bytes() == PAYLOAD


@pytest.mark.parametrize("kind", list(ARCHIVES))
def test_extract_verified_wrong_sha_leaves_nothing(tmp_path: Path, kind: str) -> None:
    """GIVEN an archive and a wrong pinned sha WHEN extracted
    THEN ChecksumMismatchError names the member and no file (nor .part) exists at the target."""
    build, member, strip, rel = ARCHIVES[kind]
    archive = build(tmp_path, PAYLOAD)
    dest = tmp_path / "out"
    with pytest.raises(ChecksumMismatchError) as info:
        fetch.extract_verified(archive, {member: WRONG_SHA}, dest, strip=strip)
    assert member in str(info.value)
    assert WRONG_SHA in str(info.value)
    assert _sha(PAYLOAD) in str(info.value)
    target = dest / rel
    assert not target.exists()
    assert not target.with_name(target.name + ".part").exists()
    assert not dest.exists() or not [p for p in dest.rglob("*") if p.is_file()]


@pytest.mark.parametrize("kind", list(ARCHIVES))
def test_extract_verified_missing_member_is_a_fetch_error(tmp_path: Path, kind: str) -> None:
    """GIVEN an archive WHEN asked for a member it does not hold THEN FetchError names that member."""
    build, member, strip, _ = ARCHIVES[kind]
    archive = build(tmp_path, PAYLOAD)
    wanted = member.replace("file.txt", "nope.txt")
    with pytest.raises(FetchError, match="has no member") as info:
        fetch.extract_verified(archive, {wanted: _sha(PAYLOAD)}, tmp_path / "out", strip=strip)
    assert wanted in str(info.value)
    assert not isinstance(info.value, ChecksumMismatchError)
    assert not (tmp_path / "out").exists()


def test_extract_verified_deb_skips_an_odd_sized_member_and_its_padding(tmp_path: Path) -> None:
    """GIVEN a .deb whose control.tar.gz has an odd size (so ar pads it with "\\n")
    WHEN extracted THEN the padding is skipped and data.tar.xz is still found and read."""
    deb = _make_deb(tmp_path / "libodd_1.0-1_amd64.deb", {"./usr/share/x/file.txt": PAYLOAD}, control="gz")
    blob = deb.read_bytes()
    control_size = int(blob[8 + 60 + 4 + 48 : 8 + 60 + 4 + 58])
    assert control_size % 2 == 1
    written = fetch.extract_verified(deb, {"usr/share/x/file.txt": _sha(PAYLOAD)}, tmp_path / "out", strip="usr/share/")
    assert [p.read_bytes() for p in written] == [PAYLOAD]
    assert written == [tmp_path / "out" / "x" / "file.txt"]


def test_extract_verified_rejects_a_deb_with_wrong_magic(tmp_path: Path) -> None:
    """GIVEN a .deb file that is not an ar archive WHEN extracted THEN FetchError says it is not a Debian package."""
    fake = tmp_path / "fake_1.0_amd64.deb"
    fake.write_bytes(b"PK\x03\x04 this is not an ar archive")
    with pytest.raises(FetchError, match="not a Debian package") as info:
        fetch.extract_verified(fake, {"usr/share/x/file.txt": _sha(PAYLOAD)}, tmp_path / "out", strip="usr/")
    assert "fake_1.0_amd64.deb" in str(info.value)


def test_extract_verified_rejects_a_deb_without_data_tar(tmp_path: Path) -> None:
    """GIVEN an ar archive with only debian-binary and control.tar.xz WHEN extracted THEN FetchError."""
    deb = _make_deb(tmp_path / "nodata_1.0_amd64.deb", {"./usr/share/x/file.txt": PAYLOAD}, with_data=False)
    with pytest.raises(FetchError, match=r"no data\.tar member"):
        fetch.extract_verified(deb, {"usr/share/x/file.txt": _sha(PAYLOAD)}, tmp_path / "out", strip="usr/")


def test_extract_verified_rejects_an_unknown_suffix(tmp_path: Path) -> None:
    """GIVEN an archive with an unknown suffix (.rar) WHEN extracted THEN FetchError says the type is unknown."""
    odd = tmp_path / "thing.rar"
    odd.write_bytes(b"Rar!\x1a\x07\x00")
    with pytest.raises(FetchError, match=r"unknown archive type: thing\.rar"):
        fetch.extract_verified(odd, {"a": _sha(PAYLOAD)}, tmp_path / "out", strip="")


def test_extract_verified_tar_with_dot_slash_members_never_raises_keyerror(tmp_path: Path) -> None:
    """GIVEN a .tar.gz made like ``tar -czf x.tar.gz .`` (members stored as ``./pkg/file.txt``)
    WHEN extracted by either spelling of the member name
    THEN at least one spelling extracts the file and neither raises anything but FetchError.

    (.deb data tars get ``./`` stripped in the listing; a plain .tar.gz must not list a name its reader
    then cannot find.)
    """
    archive = _make_targz(tmp_path / "dots.tar.gz", {"./pkg/file.txt": PAYLOAD}, dirs=("./", "./pkg"))
    extracted = []
    for i, name in enumerate(("./pkg/file.txt", "pkg/file.txt")):
        dest = tmp_path / f"out{i}"
        try:
            fetch.extract_verified(archive, {name: _sha(PAYLOAD)}, dest, strip=name.removesuffix("pkg/file.txt"))
        except FetchError:
            continue
        assert (dest / "pkg" / "file.txt").read_bytes() == PAYLOAD
        extracted.append(name)
    assert extracted, "neither './pkg/file.txt' nor 'pkg/file.txt' could be extracted"


# --- fetch_pypi ------------------------------------------------------------------------------------


def _artefact(data: bytes = PAYLOAD, *, sdist: bool = False) -> PypiArtefact:
    name = "demo-1.0.tar.gz" if sdist else "demo-1.0-py3-none-any.whl"
    return PypiArtefact(requirement="demo==1.0", filename=name, sha256=_sha(data), sdist=sdist)


class FakePip:
    """Stands in for ``facegate.fetch._run``: records commands and writes a file into ``--dest``."""

    def __init__(self, filename: str, data: bytes = PAYLOAD) -> None:
        self.filename = filename
        self.data = data
        self.calls: list[list[str]] = []

    def __call__(self, cmd: list[str], cwd: Path) -> None:
        self.calls.append(list(cmd))
        dest = Path(cmd[cmd.index("--dest") + 1])
        assert dest.is_dir()
        (dest / self.filename).write_bytes(self.data)


def test_fetch_pypi_downloads_verifies_and_then_hits_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN pip that downloads the right file WHEN fetched twice
    THEN the verified cached path is returned, pip ran once with --no-deps, and the temp folder is gone."""
    artefact = _artefact()
    pip = FakePip(artefact.filename)
    monkeypatch.setattr(fetch, "_run", pip)
    downloads = tmp_path / "downloads"

    first = fetch.fetch_pypi(artefact, downloads)
    assert first == downloads / artefact.filename
    assert first.read_bytes() == PAYLOAD
    assert len(pip.calls) == 1
    cmd = pip.calls[0]
    assert cmd[1:4] == ["-m", "pip", "download"]
    assert "--no-deps" in cmd
    assert cmd[-1] == "demo==1.0"
    assert "--no-binary" not in cmd
    assert sorted(p.name for p in downloads.iterdir()) == [artefact.filename]

    second = fetch.fetch_pypi(artefact, downloads)
    assert second == first
    assert len(pip.calls) == 1, "a good cached copy must not be downloaded again"


def test_fetch_pypi_replaces_a_corrupt_cached_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN a corrupt file already in the cache WHEN fetched THEN it is downloaded again and replaced."""
    artefact = _artefact()
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (downloads / artefact.filename).write_bytes(b"truncated")
    pip = FakePip(artefact.filename)
    monkeypatch.setattr(fetch, "_run", pip)
    path = fetch.fetch_pypi(artefact, downloads)
    assert len(pip.calls) == 1
    assert path.read_bytes() == PAYLOAD


def test_fetch_pypi_wrong_content_raises_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN pip that downloads a file whose content has the wrong sha WHEN fetched
    THEN ChecksumMismatchError is raised and the downloads folder is left empty."""
    artefact = _artefact()
    monkeypatch.setattr(fetch, "_run", FakePip(artefact.filename, data=b"tampered content"))
    downloads = tmp_path / "downloads"
    with pytest.raises(ChecksumMismatchError) as info:
        fetch.fetch_pypi(artefact, downloads)
    assert artefact.filename in str(info.value)
    assert artefact.sha256 in str(info.value)
    assert list(downloads.iterdir()) == []


def test_fetch_pypi_propagates_a_failing_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN _run raising FetchError (pip failing, no network) WHEN fetched
    THEN that FetchError propagates unchanged and nothing is left in the downloads folder."""
    artefact = _artefact()

    def no_network(cmd: list[str], cwd: Path) -> None:
        raise FetchError(f"{' '.join(cmd)} failed (exit 1): ERROR: No matching distribution found for demo==1.0")

    monkeypatch.setattr(fetch, "_run", no_network)
    downloads = tmp_path / "downloads"
    with pytest.raises(FetchError, match=r"No matching distribution found for demo==1\.0") as info:
        fetch.fetch_pypi(artefact, downloads)
    assert "pip download" in str(info.value)
    assert list(downloads.iterdir()) == []


def test_fetch_pypi_pip_exit_status_becomes_a_clear_fetch_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIVEN subprocess.run reporting pip exiting 1 with a network error on stderr WHEN fetched
    THEN FetchError carries the command, the exit status and the last lines of stderr."""
    artefact = _artefact()
    seen: list[list[str]] = []

    def fake_run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        seen.append(cmd)
        assert kwargs.get("timeout")  # a hung pip must not hang the build
        stderr = "\n".join(f"noise {i}" for i in range(10)) + "\nERROR: Could not find a version (network unreachable)"
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr=stderr)

    monkeypatch.setattr(fetch.subprocess, "run", fake_run)
    with pytest.raises(FetchError) as info:
        fetch.fetch_pypi(artefact, tmp_path / "downloads")
    message = str(info.value)
    assert "pip download" in message
    assert "exit 1" in message
    assert "network unreachable" in message
    assert "noise 0" not in message  # only the tail of stderr
    assert len(seen) == 1


@pytest.mark.parametrize(
    "exc", [OSError("No such file or directory"), subprocess.TimeoutExpired(["pip"], 900)], ids=["oserror", "timeout"]
)
def test_run_that_cannot_start_or_times_out_is_a_fetch_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exc: Exception
) -> None:
    """GIVEN subprocess.run raising OSError or TimeoutExpired WHEN _run is called THEN FetchError 'could not run'."""

    def fake_run(cmd: list[str], **kwargs: object) -> None:
        raise exc

    monkeypatch.setattr(fetch.subprocess, "run", fake_run)
    with pytest.raises(FetchError, match="could not run") as info:
        fetch._run(["apt-get", "download", "libx"], cwd=tmp_path)
    assert "apt-get download libx" in str(info.value)
    assert info.value.__cause__ is exc


def test_fetch_pypi_differently_named_file_names_what_it_got(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN pip producing a file with another name WHEN fetched
    THEN FetchError names the file it got and the one expected, and nothing is cached."""
    artefact = _artefact()
    monkeypatch.setattr(fetch, "_run", FakePip("demo-1.0-cp312-cp312-manylinux_2_28_x86_64.whl"))
    downloads = tmp_path / "downloads"
    with pytest.raises(FetchError) as info:
        fetch.fetch_pypi(artefact, downloads)
    assert not isinstance(info.value, ChecksumMismatchError)
    assert "demo-1.0-cp312-cp312-manylinux_2_28_x86_64.whl" in str(info.value)
    assert artefact.filename in str(info.value)
    assert list(downloads.iterdir()) == []


def test_fetch_pypi_nothing_downloaded_says_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN pip that exits 0 but writes nothing WHEN fetched THEN FetchError says it got nothing."""
    monkeypatch.setattr(fetch, "_run", lambda cmd, cwd: None)
    with pytest.raises(FetchError, match="gave nothing"):
        fetch.fetch_pypi(_artefact(), tmp_path / "downloads")


def test_fetch_pypi_sdist_asks_pip_for_no_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN an sdist artefact WHEN fetched THEN the pip command holds '--no-binary :all:' before the requirement."""
    artefact = _artefact(sdist=True)
    pip = FakePip(artefact.filename)
    monkeypatch.setattr(fetch, "_run", pip)
    fetch.fetch_pypi(artefact, tmp_path / "downloads")
    cmd = pip.calls[0]
    i = cmd.index("--no-binary")
    assert cmd[i + 1] == ":all:"
    assert i < cmd.index("demo==1.0")
    assert cmd[cmd.index("--dest") + 1]  # --dest still followed by its folder
    assert Path(cmd[cmd.index("--dest") + 1]).parent == tmp_path / "downloads"


# --- all_present and cache_dir ---------------------------------------------------------------------


def test_all_present_true_only_when_every_file_has_its_hash(tmp_path: Path) -> None:
    """GIVEN files on disk WHEN checked THEN all_present is true only if each exists with the right sha."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.txt").write_bytes(b"one")
    (tmp_path / "two.txt").write_bytes(b"two")
    good = [("a/one.txt", _sha(b"one")), ("two.txt", _sha(b"two"))]
    assert fetch.all_present(tmp_path, good)
    assert fetch.all_present(tmp_path, iter(good))  # any iterable, e.g. a generator
    assert not fetch.all_present(tmp_path, [*good, ("three.txt", _sha(b"three"))])
    assert not fetch.all_present(tmp_path, [("a/one.txt", _sha(b"one")), ("two.txt", _sha(b"TWO"))])
    assert not fetch.all_present(tmp_path, [("a", _sha(b""))])  # a directory is not a file
    assert fetch.all_present(tmp_path, [])


def test_cache_dir_honours_facegate_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """GIVEN FACEGATE_CACHE_DIR (and XDG_CACHE_HOME) set WHEN cache_dir() THEN FACEGATE_CACHE_DIR wins, ~ expanded."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("FACEGATE_CACHE_DIR", str(tmp_path / "explicit"))
    assert fetch.cache_dir() == tmp_path / "explicit"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FACEGATE_CACHE_DIR", "~/fg")
    assert fetch.cache_dir() == tmp_path / "home" / "fg"


def test_cache_dir_falls_back_to_xdg_then_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """GIVEN no FACEGATE_CACHE_DIR WHEN cache_dir() THEN $XDG_CACHE_HOME/facegate, else ~/.cache/facegate."""
    monkeypatch.delenv("FACEGATE_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert fetch.cache_dir() == tmp_path / "xdg" / "facegate"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert fetch.cache_dir() == tmp_path / "home" / ".cache" / "facegate"
    monkeypatch.setenv("FACEGATE_CACHE_DIR", "")  # empty counts as unset
    assert fetch.cache_dir() == tmp_path / "home" / ".cache" / "facegate"
