"""A tester's archive, read the way an attacker would write one: not a zip, names that climb out,
links, encryption flags, a zip bomb, labels naming files that are not there, a set that is not the one
the gate decided on. Each is refused with its reason before a byte is evaluated; a good set reads back
exactly as ``facegate evaluate`` reads it."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest

from facegate.errors import InvalidRequestError
from facegate.evaluation import dataset as ds
from facegate.policy.catalog import default_catalog
from facegate.sandbox.archive import LABELS, inspect, pack, unpacked

LIMITS = default_catalog().sandbox


def _central(data: bytes | bytearray, name: str) -> int:
    """The offset of ``name``'s entry in the central directory (signature PK\\1\\2, name at +46)."""
    entry = data.find(b"PK\x01\x02")
    while entry >= 0:
        size = int.from_bytes(data[entry + 28 : entry + 30], "little")
        if data[entry + 46 : entry + 46 + size] == name.encode():
            return entry
        entry = data.find(b"PK\x01\x02", entry + 4)
    raise AssertionError(f"no central entry for {name}")


def _zip(members: dict[str, bytes], *, link: str | None = None, encrypted: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            if name == link:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, data)
    out = bytearray(buffer.getvalue())
    if encrypted is not None:  # the general-purpose flag's bit 0, as an encrypting zip tool sets it
        entry = _central(out, encrypted)
        out[entry + 8] |= 0x1
    return bytes(out)


@pytest.fixture(scope="module")
def johns_zip() -> bytes:
    return pack(ds.fetched("johns"))


def test_a_packed_set_reads_back_as_the_same_labels(johns_zip: bytes) -> None:
    original = ds.fetched("johns")
    summary = inspect(johns_zip, LIMITS, name="johns")
    assert (summary.images, summary.identities) == (len(original.images), 5)
    assert summary.identities_known
    assert not summary.grouped
    with unpacked(johns_zip, LIMITS, name="johns") as (dataset, _):
        assert sorted(i.identity for i in dataset.images) == sorted(i.identity for i in original.images)
        assert "sha256:" in dataset.source
        assert "/tmp" not in dataset.source
    # The tester's own file names do not travel: members are numbered.
    names = zipfile.ZipFile(io.BytesIO(johns_zip)).namelist()
    assert all(n == LABELS or n.startswith("images/0") for n in names)
    assert not any("John" in n for n in names)


def test_a_set_without_identities_or_with_groups_reads_as_evaluate_reads_it(tmp_path: Path) -> None:
    png = (Path(ds.fetched("face_recognition").images[0].path)).read_bytes()
    members = {f"img/{i}.png": png for i in range(3)}
    members[LABELS] = b"path,group\nimg/0.png,a\nimg/1.png,b\nimg/2.png,\n"
    summary = inspect(_zip(members), LIMITS, identities_known=False, group_source="self-reported")
    assert (summary.images, summary.identities, summary.grouped, summary.group_source) == (3, 3, True, "self-reported")
    with pytest.raises(InvalidRequestError, match="needs an 'identity' column"):
        inspect(_zip(members), LIMITS)


LABELLED = b"path,identity\na.png,x\n"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not a zip at all", "not a zip archive"),
        (b"", "not a zip archive"),
        (_zip({"a.png": b"x"}), "no labels.csv"),
        (_zip({LABELS: LABELLED, "../a.png": b"x"}), "climbs out"),
        (_zip({LABELS: LABELLED, "/etc/a.png": b"x"}), "not a relative name"),
        (_zip({LABELS: LABELLED, "c:\\a.png": b"x"}), "not a relative name"),
        (_zip({LABELS: LABELLED, "a.png": b"/etc/passwd"}, link="a.png"), "is a link"),
        (_zip({LABELS: LABELLED, "a.png": b"x"}, encrypted="a.png"), "encrypted"),
        (_zip({LABELS: b"path,identity\nb.png,x\n", "a.png": b"x"}), "does not exist"),
        (_zip({LABELS: b"path,identity\n../../x.png,x\n", "a.png": b"x"}), "not inside"),
        (_zip({LABELS: b"path,identity\na.png,\n", "a.png": b"x"}), "empty identity"),
        (_zip({LABELS: b"path,identity\na.png,x\na.png,x\n", "a.png": b"x"}), "listed twice"),
        (_zip({LABELS: b"path,identity,age\na.png,x,30\n", "a.png": b"x"}), "unknown columns"),
        (_zip({LABELS: b"\xff\xfe\x00", "a.png": b"x"}), "not a UTF-8 CSV"),
    ],
)
def test_a_bad_archive_is_refused_with_its_reason(data: bytes, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        inspect(data, LIMITS)


def test_a_zip_bomb_is_refused_before_it_is_unpacked() -> None:
    small = LIMITS.model_copy(update={"max_uncompressed_bytes": 10_000})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(LABELS, LABELLED)
        archive.writestr("a.png", b"\0" * 50_000)  # 50 kB of zeros: a few dozen bytes compressed
    assert len(buffer.getvalue()) < 1_000
    with pytest.raises(InvalidRequestError, match="unpacks to 50,"):
        inspect(buffer.getvalue(), small)


def test_too_many_files_or_too_many_bytes_sent_are_refused() -> None:
    few = LIMITS.model_copy(update={"max_images": 2, "max_archive_bytes": 5_000})
    many = _zip({LABELS: LABELLED, **{f"{i}.png": b"x" for i in range(4)}})
    with pytest.raises(InvalidRequestError, match="holds 5 files"):
        inspect(many, few)
    with pytest.raises(InvalidRequestError, match="at most 5,000 are accepted"):
        inspect(_zip({LABELS: LABELLED, "a.png": b"y" * 10_000}), few)


def test_a_member_whose_data_outruns_its_header_is_refused() -> None:
    """A zip whose central directory declares 1 byte for a member that holds 5,000: the size check
    reads the directory, so the writer must not trust it either."""
    data = bytearray(_zip({LABELS: LABELLED, "a.png": b"z" * 5000}))
    entry = _central(data, "a.png")
    assert int.from_bytes(data[entry + 24 : entry + 28], "little") == 5000
    data[entry + 24 : entry + 28] = (1).to_bytes(4, "little")  # the uncompressed size it declares
    with pytest.raises(InvalidRequestError, match=r"more than its declared size|cannot be read"):
        inspect(bytes(data), LIMITS)


def test_a_member_that_is_also_a_folder_and_a_bom_are_the_callers_400_or_read() -> None:
    clash = _zip({LABELS: LABELLED, "images": b"x", "images/1.png": b"y"})
    with pytest.raises(InvalidRequestError):
        inspect(clash, LIMITS)
    png = (Path(ds.fetched("face_recognition").images[0].path)).read_bytes()
    members = {f"{i}.png": png for i in range(3)}
    members[LABELS] = "\ufeffpath,identity,group\n0.png,x,a\n1.png,y,a\n2.png,z,b\n".encode()
    summary = inspect(_zip(members), LIMITS)
    assert (summary.images, summary.groups, summary.smallest_group_images) == (3, 2, 1)
