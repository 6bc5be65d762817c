"""Unit tests of :mod:`facegate.audit`: the per-tenant, hash-chained, append-only audit log.

Everything runs against moto's in-process DynamoDB. Tampering is done the way an intruder with write
access to the table would do it: directly on the items (pynamodb or the raw boto3 client), bypassing
:class:`~facegate.audit.AuditLog`, sometimes recomputing hashes with the published recipe.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import boto3
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from moto.dynamodb.responses import DynamoHandler
from pynamodb.connection.table import TableConnection
from pynamodb.exceptions import TransactWriteError

from facegate.audit import (
    GENESIS_HASH,
    HEAD_ACTION,
    HEAD_SEQ,
    MAX_DETAILS_BYTES,
    AuditEntry,
    AuditLog,
    ChainReport,
    canonical_json,
    check_chain,
    compute_entry_hash,
)
from facegate.errors import AuditChainError, ConflictError, StorageError
from facegate.settings import Settings
from facegate.store.models import AuditRecord, configure, create_tables
from facegate.tenancy import TenantContext

REGION = "us-east-1"
N = 10  # entries in the logs that are tampered with
FIELDS = ("actor", "action", "details", "at", "prev_hash", "entry_hash")


# --- fixtures and helpers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aws_session() -> Iterator[Settings]:
    """moto for this module only; dummy credentials, and no endpoint or profile from the developer's shell."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
            patch.delenv(name, raising=False)
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            patch.setenv(name, "testing")
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        with mock_aws():
            settings = Settings(table_prefix="t" + uuid.uuid4().hex, region=REGION)
            configure(settings)
            create_tables()
            yield settings
            ddb.cache_clear()


@pytest.fixture(autouse=True)
def aws(aws_session: Settings) -> Iterator[None]:
    yield
    if AuditRecord.Meta.table_name != f"{aws_session.table_prefix}-audit":  # a test pointed the models away
        configure(aws_session)
    purge()


@pytest.fixture
def log() -> AuditLog:
    # Small pages, so every read of a 10-entry log spans several Query pages.
    return AuditLog(page_size=3)


def purge() -> None:
    """Empty the audit table (a test may scan; the audit log never does).

    Tests use fresh tenant ids, so emptying is not needed for isolation, but moto deep-copies a whole
    table on every transaction: a table that kept every test's entries would make each append slower
    than the last. (Fresh tables would do too, but each costs a new botocore client, ~0.15 s.)
    """
    table = AuditRecord.Meta.table_name
    keys = [
        {"tenant_id": item["tenant_id"], "seq": item["seq"]}
        for page in ddb().get_paginator("scan").paginate(TableName=table, ProjectionExpression="tenant_id, seq")
        for item in page["Items"]
    ]
    for start in range(0, len(keys), 25):
        batch = [{"DeleteRequest": {"Key": key}} for key in keys[start : start + 25]]
        ddb().batch_write_item(RequestItems={table: batch})


def new_ctx(actor: str = "alice") -> TenantContext:
    return TenantContext(tenant_id="tenant-" + uuid.uuid4().hex[:12], actor=actor)


def fill(log: AuditLog, ctx: TenantContext, n: int) -> list[AuditEntry]:
    return [
        log.append(ctx, f"test.step{i % 3}", {"i": i, "score": i / 8, "tags": ["a", "é"], "ok": i % 2 == 0})
        for i in range(1, n + 1)
    ]


@functools.cache
def ddb() -> Any:
    """The raw client an intruder would use (one per module: creating a client costs ~50 ms)."""
    return boto3.client("dynamodb", region_name=REGION)


def raw_get(tenant: str, seq: int) -> dict[str, Any]:
    item: dict[str, Any] = ddb().get_item(
        TableName=AuditRecord.Meta.table_name,
        Key={"tenant_id": {"S": tenant}, "seq": {"N": str(seq)}},
        ConsistentRead=True,
    )["Item"]
    return item


def raw_put(item: dict[str, Any]) -> None:
    ddb().put_item(TableName=AuditRecord.Meta.table_name, Item=item)


def raw_delete(tenant: str, seq: int | str) -> None:
    ddb().delete_item(TableName=AuditRecord.Meta.table_name, Key={"tenant_id": {"S": tenant}, "seq": {"N": str(seq)}})


def record(tenant: str, seq: int) -> AuditRecord:
    return AuditRecord.get(tenant, seq, consistent_read=True)


def rehash(rec: AuditRecord) -> str:
    """What a forger who knows the (public) recipe computes for an item."""
    return compute_entry_hash(
        tenant_id=rec.tenant_id,
        seq=int(rec.seq),
        at=rec.at,
        actor=rec.actor,
        action=rec.action,
        details=rec.details,
        prev_hash=rec.prev_hash,
    )


def changed(field: str, value: Any) -> Any:
    """A different value for ``field`` (never a no-op)."""
    if field == "actor":
        return value + "-mallory"
    if field == "action":
        return value + ".x"
    if field == "details":
        return {**value, "tampered": True}
    if field == "at":
        return value + timedelta(microseconds=1)
    return ("1" if value[0] != "1" else "2") + value[1:]  # a hash: one hex digit flipped


@dataclass(frozen=True)
class Broken:
    """What verification must report: the first seq at fault, the kind, and other seqs it must name."""

    at: int | str
    kind: str
    names: tuple[int, ...] = ()
    hint: str | None = None


def check_broken(message: str, expected: Broken) -> None:
    assert f"broken at seq {expected.at} ({expected.kind})" in message, message
    for seq in expected.names:
        assert re.search(rf"\bseq {seq}\b", message), message
    if expected.hint is not None:
        assert expected.hint in message, message


def expect_broken(log: AuditLog, ctx: TenantContext, expected: Broken, *, anchor: ChainReport | None = None) -> None:
    with pytest.raises(AuditChainError) as info:
        log.verify(ctx, anchor=anchor)
    check_broken(info.value.message, expected)


# --- the mutations an intruder may try (each returns what verification must report) ------------------


def alter(tenant: str, n: int, seq: int, field: str, *, recompute: bool) -> Broken:
    rec = record(tenant, seq)
    setattr(rec, field, changed(field, getattr(rec, field)))
    if recompute:
        rec.entry_hash = rehash(rec)
    rec.save()
    if not recompute:
        return Broken(seq, "altered")
    if field == "prev_hash":  # the link into this entry breaks; this entry or the one before was rewritten
        return Broken(seq, "altered") if seq == 1 else Broken(seq, "altered", names=(seq - 1,))
    if seq < n:  # caught by the next entry's prev_hash
        return Broken(seq + 1, "altered", names=(seq,))
    return Broken(seq, "altered", hint="head")  # the newest entry: caught by the head


def delete(tenant: str, n: int, seq: int) -> Broken:
    raw_delete(tenant, seq)
    return Broken(seq, "missing") if seq < n else Broken(seq, "truncated")


def swap(tenant: str, n: int, i: int, j: int) -> Broken:
    """Exchange the contents (every non-key attribute) of two entries."""
    a, b = raw_get(tenant, i), raw_get(tenant, j)
    raw_put({**b, "seq": a["seq"]})
    raw_put({**a, "seq": b["seq"]})
    low, high = sorted((i, j))
    return Broken(low, "reordered", names=(high,))


def truncate(tenant: str, n: int, k: int, *, head: str) -> Broken:
    """Delete the newest ``k`` entries; ``head``: ``keep``, ``seq`` or ``hash`` (roll back only that)."""
    for seq in range(n - k + 1, n + 1):
        raw_delete(tenant, seq)
    last = n - k
    if head == "seq":
        head_rec = record(tenant, HEAD_SEQ)
        head_rec.head_seq = last
        head_rec.save()
        return Broken(last, "altered", hint="truncated")
    if head == "hash":
        head_rec = record(tenant, HEAD_SEQ)
        head_rec.entry_hash = record(tenant, last).entry_hash
        head_rec.save()
    return Broken(last + 1, "truncated")


def roll_back_head(tenant: str, last: int) -> None:
    """Make the head exactly what it was after append ``last`` (what an honest head would hold)."""
    if last == 0:
        raw_delete(tenant, HEAD_SEQ)
        return
    newest = record(tenant, last)
    head = record(tenant, HEAD_SEQ)
    head.head_seq = last
    head.at, head.actor, head.prev_hash, head.entry_hash = newest.at, newest.actor, newest.prev_hash, newest.entry_hash
    head.save()


def forge(tenant: str, seq: int | str, prev_hash: str, *, origin: str | None = None) -> None:
    """Write a made-up entry whose entry_hash is right for its fields (a valid-looking hash)."""
    at = datetime.now(UTC)
    details: dict[str, Any] = {"forged": True}
    number = int(float(seq)) if isinstance(seq, str) else seq
    entry_hash = compute_entry_hash(
        tenant_id=origin or tenant,
        seq=number,
        at=at,
        actor="mallory",
        action="gallery.delete",
        details=details,
        prev_hash=prev_hash,
    )
    raw_put(
        {
            "tenant_id": {"S": tenant},
            "seq": {"N": str(seq)},
            "at": {"S": at.strftime("%Y-%m-%dT%H:%M:%S.%f+0000")},
            "actor": {"S": "mallory"},
            "action": {"S": "gallery.delete"},
            "details": {"S": json.dumps(details)},
            "prev_hash": {"S": prev_hash},
            "entry_hash": {"S": entry_hash},
        }
    )


def insert_beyond_head(tenant: str, n: int) -> Broken:
    forge(tenant, n + 1, record(tenant, n).entry_hash)
    return Broken(n + 1, "forged", hint="beyond the head")


def insert_between(tenant: str, n: int, seq: int) -> Broken:
    """An entry at seq ``seq + 0.5``, chained to ``seq``."""
    forge(tenant, f"{seq}.5", record(tenant, seq).entry_hash)
    return Broken(f"{seq}.5", "forged")


def overwrite(tenant: str, n: int, seq: int) -> Broken:
    """Replace an entry with a forged one that chains to its predecessor."""
    forge(tenant, seq, record(tenant, seq - 1).entry_hash if seq > 1 else GENESIS_HASH)
    return Broken(seq + 1, "altered", names=(seq,)) if seq < n else Broken(seq, "altered", hint="head")


def shift_insert(tenant: str, n: int, seq: int) -> Broken:
    """Insert a forged entry at ``seq``, moving the originals up one seq and the head with them."""
    for s in range(n, seq - 1, -1):
        raw_put({**raw_get(tenant, s), "seq": {"N": str(s + 1)}})
    forge(tenant, seq, record(tenant, seq - 1).entry_hash if seq > 1 else GENESIS_HASH)
    head = record(tenant, HEAD_SEQ)
    head.head_seq = n + 1
    head.save()
    return Broken(seq, "forged", hint="inserted")


def copy_from(other: str, tenant: str, n: int, seq: int) -> Broken:
    """Put tenant ``other``'s entry ``seq`` into ``tenant``'s log at the same seq."""
    raw_put({**raw_get(other, seq), "tenant_id": {"S": tenant}})
    return Broken(seq, "altered", hint="another tenant")


def copy_from_as_newest(other: str, tenant: str, n: int) -> Broken:
    """Append tenant ``other``'s entry to ``tenant``'s log as seq n+1 and move the head onto it."""
    item = {**raw_get(other, n + 1), "tenant_id": {"S": tenant}}
    raw_put(item)
    head = record(tenant, HEAD_SEQ)
    head.head_seq = n + 1
    head.prev_hash, head.entry_hash = item["prev_hash"]["S"], item["entry_hash"]["S"]
    head.actor = item["actor"]["S"]
    head.at = record(tenant, n + 1).at
    head.save()
    return Broken(n + 1, "altered")


def tamper_head(tenant: str, n: int, how: str) -> Broken:
    if how == "delete":
        raw_delete(tenant, HEAD_SEQ)
        return Broken(HEAD_SEQ, "missing")
    head = record(tenant, HEAD_SEQ)
    if how == "actor":
        head.actor = "mallory"
        head.save()
        return Broken(HEAD_SEQ, "altered")
    head.head_seq = n + 1
    head.save()
    return Broken(n + 1, "truncated")


# --- appending and reading -----------------------------------------------------------------------------


def test_appends_chain_from_genesis_and_the_head_follows(log: AuditLog) -> None:
    """GIVEN an empty log WHEN entries are appended THEN seqs run 1..n, each links to the previous hash."""
    ctx = new_ctx()
    entries = fill(log, ctx, 5)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(entries):
        assert after.prev_hash == before.entry_hash
    for entry in entries:
        assert entry.entry_hash == entry.computed_hash()
        assert entry.at.utcoffset() == timedelta(0)
        assert (entry.tenant_id, entry.actor) == (ctx.tenant_id, "alice")
    assert log.entries(ctx) == entries  # what was returned is exactly what reads back

    head = record(ctx.tenant_id, HEAD_SEQ)
    assert (head.head_seq, head.entry_hash, head.action) == (5, entries[-1].entry_hash, HEAD_ACTION)
    assert (head.prev_hash, head.at, head.actor) == (entries[-1].prev_hash, entries[-1].at, "alice")


def test_the_hash_is_sha256_of_the_documented_canonical_json(log: AuditLog) -> None:
    """GIVEN an entry WHEN its hash is recomputed by hand from the documented recipe THEN it matches."""
    ctx = new_ctx()
    at = datetime(2024, 5, 1, 12, 0, 0, 7, tzinfo=timezone(timedelta(hours=2)))
    clocked = AuditLog(clock=lambda: at)
    first = clocked.append(ctx, "consent.grant", {"b": [1, 2.5, None], "a": "zé", "c": {"y": True, "x": -0.0}})
    payload = (
        '{"action":"consent.grant","actor":"alice","at":"2024-05-01T10:00:00.000007Z",'
        '"details":{"a":"zé","b":[1,2.5,null],"c":{"x":-0.0,"y":true}},'
        f'"prev_hash":"{"0" * 64}","seq":1,"tenant_id":"{ctx.tenant_id}"}}'
    )
    assert first.entry_hash == hashlib.sha256(payload.encode("utf-8")).hexdigest()
    assert first.at == at  # the same instant, stored as UTC
    assert first.at.utcoffset() == timedelta(0)
    assert log.verify(ctx).head_hash == first.entry_hash


def test_verify_passes_on_an_honest_log(log: AuditLog) -> None:
    """GIVEN an untouched log (and an empty one) WHEN verified THEN a report of the head comes back."""
    ctx = new_ctx()
    assert log.verify(ctx) == ChainReport(ctx.tenant_id, 0, 0, GENESIS_HASH)
    entries = fill(log, ctx, N)
    report = log.verify(ctx)
    assert report == ChainReport(ctx.tenant_id, N, N, entries[-1].entry_hash)
    assert log.verify(ctx, anchor=report) == report
    more = log.append(ctx, "test.more", {})
    assert log.verify(ctx, anchor=report).head_hash == more.entry_hash  # an older anchor still holds


def test_entries_since_seq_and_pagination(log: AuditLog, monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN 10 entries and 3-item pages WHEN read THEN all come back in order across several queries."""
    ctx = new_ctx()
    entries = fill(log, ctx, N)
    calls: list[dict[str, Any]] = []
    original = TableConnection.query

    def counting_query(self: TableConnection, *args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TableConnection, "query", counting_query)
    assert log.entries(ctx) == entries
    assert len(calls) >= 4
    assert all(call["consistent_read"] and call["limit"] == 3 for call in calls)
    assert log.entries(ctx, since_seq=7) == entries[7:]
    assert log.entries(ctx, since_seq=N) == []
    with pytest.raises(ValueError, match="since_seq"):
        log.entries(ctx, since_seq=-1)


def test_export_is_json_ready_and_verifies_offline(log: AuditLog) -> None:
    """GIVEN a log WHEN exported THEN it survives json and check_chain accepts it without the table."""
    ctx = new_ctx()
    entries = fill(log, ctx, 4)
    exported = json.loads(json.dumps(log.export(ctx)))
    assert [item["seq"] for item in exported] == [1, 2, 3, 4]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", exported[0]["at"])
    restored = [AuditEntry.from_dict(item) for item in exported]
    assert restored == entries
    report = check_chain(ctx.tenant_id, restored, head=None, head_required=False)
    assert (report.head_seq, report.head_hash) == (4, entries[-1].entry_hash)
    exported[1]["details"]["i"] = 99
    with pytest.raises(AuditChainError) as info:
        check_chain(ctx.tenant_id, [AuditEntry.from_dict(item) for item in exported], head=None, head_required=False)
    check_broken(info.value.message, Broken(2, "altered"))


def test_tenants_are_isolated(log: AuditLog) -> None:
    """GIVEN two tenants' logs WHEN either is read, exported or verified THEN only its own entries appear."""
    a, b = new_ctx("alice"), new_ctx("bob")
    fill(log, a, 3)
    log.append(b, "test.b-only", {"secret": "b"})
    fill(log, b, 2)
    assert [e.seq for e in log.entries(a)] == [1, 2, 3]
    assert [e.seq for e in log.entries(b)] == [1, 2, 3]  # each tenant has its own chain
    assert {e.tenant_id for e in log.entries(a)} == {a.tenant_id}
    exported = json.dumps(log.export(a))
    for leaked in (b.tenant_id, "b-only", "bob"):
        assert leaked not in exported
    assert log.verify(a).entries_checked == 3
    assert log.verify(b).entries_checked == 3
    assert log.entries(a)[0].entry_hash != log.entries(b)[0].entry_hash


# --- what may not be logged --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("details", "message"),
    [
        ({"embedding": b"\x00" * 512}, "bytes"),
        ({"nested": {"images": [bytearray(b"jpeg")]}}, "bytes"),
        ({"view": memoryview(b"x")}, "bytes"),
        ({"embedding": np.zeros(512, dtype=np.float32)}, "ndarray"),
        ({"score": np.float32(0.5)}, "not a JSON value"),
        ({"big": "x" * MAX_DETAILS_BYTES}, "limit"),
        ({"nan": float("nan")}, "NaN"),
        ({"inf": [float("inf")]}, "infinity"),
        ({1: "int key"}, "non-string key"),
        ({"when": datetime.now(UTC)}, "not a JSON value"),
        ({"set": {1, 2}}, "not a JSON value"),
        ({"deep": json.loads("[" * 20 + "]" * 20)}, "nested"),
        ({"surrogate": "\ud800"}, "Unicode"),
    ],
)
def test_refused_details_write_nothing(log: AuditLog, details: Any, message: str) -> None:
    """GIVEN details with binary data, too much data or non-JSON values WHEN appended THEN ValueError."""
    ctx = new_ctx()
    with pytest.raises(ValueError, match=message):
        log.append(ctx, "test.refused", details)
    assert log.entries(ctx) == []


def test_details_up_to_the_limit_are_accepted(log: AuditLog) -> None:
    """GIVEN details of exactly 8 KiB of canonical JSON WHEN appended THEN accepted; one byte more is not."""
    ctx = new_ctx()
    filler = "x" * (MAX_DETAILS_BYTES - len(canonical_json({"f": ""})))
    assert len(canonical_json({"f": filler})) == MAX_DETAILS_BYTES
    log.append(ctx, "test.limit", {"f": filler})
    with pytest.raises(ValueError, match="limit"):
        log.append(ctx, "test.limit", {"f": filler + "x"})
    assert log.verify(ctx).entries_checked == 1


@pytest.mark.parametrize("action", ["", "1starts.with.digit", "has space", "x" * 129, "tab\t", "a#b"])
def test_malformed_actions_are_refused(log: AuditLog, action: str) -> None:
    with pytest.raises(ValueError, match="action"):
        log.append(new_ctx(), action, {})


def test_a_naive_clock_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        AuditLog(clock=datetime.now).append(new_ctx(), "test.naive", {})


# --- tampering: every mutation is caught, naming the seq ----------------------------------------------


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("seq", range(1, N + 1))
def test_an_altered_field_is_caught(log: AuditLog, field: str, seq: int) -> None:
    """GIVEN 10 entries WHEN one field of one entry is edited in the table THEN verify names that seq."""
    ctx = new_ctx()
    fill(log, ctx, N)
    expect_broken(log, ctx, alter(ctx.tenant_id, N, seq, field, recompute=False))


@pytest.mark.parametrize("field", [f for f in FIELDS if f != "entry_hash"])
@pytest.mark.parametrize("seq", range(1, N + 1))
def test_an_altered_field_with_its_hash_recomputed_is_caught(log: AuditLog, field: str, seq: int) -> None:
    """GIVEN 10 entries WHEN a field is edited and the entry's hash recomputed THEN the next link (or the
    head) no longer matches, and the message names the rewritten seq."""
    ctx = new_ctx()
    fill(log, ctx, N)
    expect_broken(log, ctx, alter(ctx.tenant_id, N, seq, field, recompute=True))


@pytest.mark.parametrize("seq", range(1, N + 1))
def test_a_deleted_entry_is_caught(log: AuditLog, seq: int) -> None:
    ctx = new_ctx()
    fill(log, ctx, N)
    expect_broken(log, ctx, delete(ctx.tenant_id, N, seq))


@pytest.mark.parametrize(("i", "j"), [(1, 2), (1, N), (4, 5), (3, 8), (N - 1, N), (7, 2)])
def test_swapped_entries_are_caught(log: AuditLog, i: int, j: int) -> None:
    ctx = new_ctx()
    fill(log, ctx, N)
    expect_broken(log, ctx, swap(ctx.tenant_id, N, i, j))


@pytest.mark.parametrize("head", ["keep", "seq", "hash"])
@pytest.mark.parametrize("k", [1, 2, 5, N - 1])
def test_a_truncated_tail_is_caught(log: AuditLog, k: int, head: str) -> None:
    """GIVEN 10 entries WHEN the newest k are deleted, the head left or partly rolled back THEN caught."""
    ctx = new_ctx()
    fill(log, ctx, N)
    expect_broken(log, ctx, truncate(ctx.tenant_id, N, k, head=head))


def test_deleting_every_entry_is_caught(log: AuditLog) -> None:
    ctx = new_ctx()
    fill(log, ctx, N)
    expect_broken(log, ctx, truncate(ctx.tenant_id, N, N, head="keep"))


@pytest.mark.parametrize("k", [1, 3, N])
def test_a_truncation_with_the_head_rolled_back_is_caught_by_an_anchor(log: AuditLog, k: int) -> None:
    """GIVEN an anchor kept outside the table WHEN the newest k entries are deleted and the head rewritten
    exactly as it was THEN the table alone looks honest (it is bit for bit an honest shorter log), and
    verifying against the anchor catches it, naming the first deleted seq."""
    ctx = new_ctx()
    fill(log, ctx, N)
    anchor = log.verify(ctx)
    for seq in range(N - k + 1, N + 1):
        raw_delete(ctx.tenant_id, seq)
    roll_back_head(ctx.tenant_id, N - k)
    assert log.verify(ctx).head_seq == N - k  # undetectable without an anchor: documented, not hidden
    expect_broken(log, ctx, Broken(N - k + 1, "truncated", hint="anchor"), anchor=anchor)


def test_a_wholesale_rewrite_is_caught_by_an_anchor(log: AuditLog) -> None:
    """GIVEN an anchor WHEN an entry is edited and every later hash and the head recomputed THEN caught."""
    ctx = new_ctx()
    fill(log, ctx, N)
    anchor = log.verify(ctx)
    prev = record(ctx.tenant_id, 2).entry_hash
    for seq in range(3, N + 1):
        rec = record(ctx.tenant_id, seq)
        if seq == 3:
            rec.actor = "mallory"
        rec.prev_hash = prev
        rec.entry_hash = prev = rehash(rec)
        rec.save()
    roll_back_head(ctx.tenant_id, N)
    assert log.verify(ctx).head_seq == N
    expect_broken(log, ctx, Broken(N, "altered", hint="anchor"), anchor=anchor)


def test_a_forged_entry_beyond_the_head_is_caught_and_blocks_appends(log: AuditLog) -> None:
    """GIVEN a forged entry with a valid hash at the next seq WHEN verified or appended THEN forged."""
    ctx = new_ctx()
    fill(log, ctx, N)
    expected = insert_beyond_head(ctx.tenant_id, N)
    expect_broken(log, ctx, expected)
    with pytest.raises(AuditChainError) as info:  # not a ConflictError retried five times
        log.append(ctx, "test.after", {})
    check_broken(info.value.message, expected)


@pytest.mark.parametrize("seq", [1, 5, N])
def test_a_forged_entry_between_two_seqs_is_caught(log: AuditLog, seq: int) -> None:
    ctx = new_ctx()
    fill(log, ctx, N)
    expect_broken(log, ctx, insert_between(ctx.tenant_id, N, seq))


@pytest.mark.parametrize("seq", [1, 5, N])
def test_an_entry_overwritten_with_a_forged_one_is_caught(log: AuditLog, seq: int) -> None:
    ctx = new_ctx()
    fill(log, ctx, N)
    expect_broken(log, ctx, overwrite(ctx.tenant_id, N, seq))


@pytest.mark.parametrize("seq", [1, 5, N])
def test_an_insertion_that_shifts_later_entries_is_caught(log: AuditLog, seq: int) -> None:
    ctx = new_ctx()
    fill(log, ctx, N)
    expect_broken(log, ctx, shift_insert(ctx.tenant_id, N, seq))


def test_negative_and_malformed_items_are_caught(log: AuditLog) -> None:
    ctx = new_ctx()
    fill(log, ctx, 3)
    forge(ctx.tenant_id, -1, GENESIS_HASH)
    expect_broken(log, ctx, Broken(-1, "forged"))
    raw_delete(ctx.tenant_id, -1)
    raw_put({"tenant_id": {"S": ctx.tenant_id}, "seq": {"N": "2"}, "actor": {"S": "mallory"}})
    expect_broken(log, ctx, Broken(2, "altered"))
    raw_put({**raw_get(ctx.tenant_id, 3), "seq": {"N": "2"}, "details": {"S": "{not json"}})
    expect_broken(log, ctx, Broken(2, "altered"))


@pytest.mark.parametrize("seq", [1, 4, N])
def test_an_entry_copied_from_another_tenant_is_caught(log: AuditLog, seq: int) -> None:
    """GIVEN tenants A and B WHEN B's entry is copied over A's at the same seq THEN A's verify fails."""
    a, b = new_ctx(), new_ctx()
    fill(log, a, N)
    fill(log, b, N)
    expect_broken(log, a, copy_from(b.tenant_id, a.tenant_id, N, seq))
    assert log.verify(b).entries_checked == N


def test_an_entry_copied_from_another_tenant_as_the_newest_is_caught(log: AuditLog) -> None:
    """GIVEN B's next entry WHEN appended to A's log by hand, the head moved onto it THEN still caught:
    the tenant id is inside the hash."""
    a, b = new_ctx(), new_ctx()
    fill(log, a, N)
    fill(log, b, N + 1)
    expect_broken(log, a, copy_from_as_newest(b.tenant_id, a.tenant_id, N))


@pytest.mark.parametrize("how", ["delete", "actor", "seq"])
def test_a_tampered_head_is_caught(log: AuditLog, how: str) -> None:
    ctx = new_ctx()
    fill(log, ctx, N)
    expect_broken(log, ctx, tamper_head(ctx.tenant_id, N, how))


# --- property: any single mutation of any log is caught; no mutation, no complaint --------------------

MUTATIONS = (
    "alter",
    "alter+rehash",
    "delete",
    "swap",
    "truncate",
    "truncate+head.seq",
    "truncate+head.hash",
    "beyond-head",
    "between",
    "overwrite",
    "shift-insert",
    "copy-from-b",
    "head",
)

json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)


def _json_containers(children: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=6), children, max_size=3))


json_value = st.recursive(json_leaf, _json_containers, max_leaves=8)
appends = st.lists(
    st.tuples(
        st.sampled_from(["alice", "bob", "svc:enrol"]),
        st.sampled_from(["gallery.create", "template.enrol", "identify", "consent.revoke"]),
        st.dictionaries(st.text(max_size=6), json_value, max_size=4),
    ),
    min_size=1,
    max_size=10,
)


def apply_mutation(data: st.DataObject, mutation: str, tenant: str, n: int, log: AuditLog) -> Broken:
    seq = data.draw(st.integers(1, n), label="seq")
    if mutation == "alter":
        return alter(tenant, n, seq, data.draw(st.sampled_from(FIELDS), label="field"), recompute=False)
    if mutation == "alter+rehash":
        field = data.draw(st.sampled_from(FIELDS[:-1]), label="field")
        return alter(tenant, n, seq, field, recompute=True)
    if mutation == "delete":
        return delete(tenant, n, seq)
    if mutation == "swap":
        other = data.draw(st.integers(1, n).filter(lambda s: s != seq), label="other")
        return swap(tenant, n, seq, other)
    if mutation == "truncate":
        return truncate(tenant, n, seq, head="keep")
    if mutation == "truncate+head.seq":
        return truncate(tenant, n, data.draw(st.integers(1, n - 1), label="k"), head="seq")
    if mutation == "truncate+head.hash":
        return truncate(tenant, n, data.draw(st.integers(1, n - 1), label="k"), head="hash")
    if mutation == "beyond-head":
        return insert_beyond_head(tenant, n)
    if mutation == "between":
        return insert_between(tenant, n, seq)
    if mutation == "overwrite":
        return overwrite(tenant, n, seq)
    if mutation == "shift-insert":
        return shift_insert(tenant, n, seq)
    if mutation == "copy-from-b":
        tenant_b = new_ctx("bob")
        fill(log, tenant_b, n)
        return copy_from(tenant_b.tenant_id, tenant, n, seq)
    return tamper_head(tenant, n, data.draw(st.sampled_from(["delete", "actor", "seq"]), label="how"))


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(appended=appends, mutation=st.none() | st.sampled_from(MUTATIONS), data=st.data())
def test_any_single_mutation_is_caught(
    appended: list[tuple[str, str, dict[str, Any]]], mutation: str | None, data: st.DataObject
) -> None:
    """GIVEN a log of random appends WHEN one random mutation is made THEN verify fails naming the seq;
    WHEN none is made THEN verify passes and every entry reads back as appended."""
    purge()
    log = AuditLog(page_size=4)
    tenant = "tenant-" + uuid.uuid4().hex[:12]
    written = [log.append(TenantContext(tenant, actor), action, details) for actor, action, details in appended]
    ctx = TenantContext(tenant, "auditor")
    n = len(written)
    needs_two = {"swap", "truncate+head.seq", "truncate+head.hash"}
    if mutation is None or (mutation in needs_two and n < 2):
        assert log.entries(ctx) == written
        assert log.verify(ctx) == ChainReport(tenant, n, n, written[-1].entry_hash)
        return
    expect_broken(log, ctx, apply_mutation(data, mutation, tenant, n, log))


# --- concurrency and races -----------------------------------------------------------------------------


@pytest.fixture
def atomic_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make each moto DynamoDB request atomic, as each DynamoDB request (a transaction included) is.

    moto applies TransactWriteItems as check-then-write on shared dicts with no lock, and rolls a failed
    one back by restoring a deep copy of the table taken before it started, which also erases whatever
    other threads committed meanwhile. DynamoDB itself runs transactions atomically and serialisably;
    this lock gives moto that property, so the test exercises our conditions rather than moto's races.
    """
    lock = threading.Lock()
    original = DynamoHandler.call_action

    def call_action(self: DynamoHandler) -> Any:
        with lock:
            return original(self)

    monkeypatch.setattr(DynamoHandler, "call_action", call_action)


@pytest.mark.usefixtures("atomic_moto")
def test_concurrent_appends_never_fork_or_gap() -> None:
    """GIVEN 8 threads appending 10 entries each (and a thread verifying throughout) THEN 80 entries,
    seq 1..80 with no gaps, every one present once, and verify never fails."""
    # Eight writers hammering one head: every append is a race, and in one Python process the GIL
    # stretches each read-to-commit window, so the tail of attempts needed is long (measured: ~1 append
    # in 100 needs more than 8, a few in 1000 more than 10). The bound is raised so that this test is
    # about safety (no fork, no gap, no lost entry), not about the default bound's liveness.
    backoffs: list[float] = []

    def sleep(seconds: float) -> None:
        backoffs.append(seconds)
        time.sleep(seconds)

    log = AuditLog(max_attempts=40, sleep=sleep)
    tenant = "tenant-" + uuid.uuid4().hex[:12]
    log.verify(TenantContext(tenant, "warm-up"))  # create the shared client before the threads do
    errors: list[BaseException] = []
    done = threading.Event()
    start = threading.Barrier(9)

    def writer(worker: int) -> None:
        ctx = TenantContext(tenant, f"worker-{worker}")
        start.wait()
        try:
            for i in range(10):
                log.append(ctx, "test.concurrent", {"worker": worker, "i": i})
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def verifier() -> None:
        ctx = TenantContext(tenant, "auditor")
        start.wait()
        try:
            while not done.wait(0.01):  # paced: in one process its hashing would starve the writers of the GIL
                log.verify(ctx)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    checker = threading.Thread(target=verifier)
    for thread in [*threads, checker]:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    checker.join()
    assert errors == []
    assert backoffs  # races did happen, and were lost and retried
    ctx = TenantContext(tenant, "auditor")
    entries = log.entries(ctx)
    assert [e.seq for e in entries] == list(range(1, 81))
    assert sorted((e.details["worker"], e.details["i"]) for e in entries) == [
        (w, i) for w in range(8) for i in range(10)
    ]
    assert log.verify(ctx) == ChainReport(tenant, 80, 80, entries[-1].entry_hash)


def stale_head(log: AuditLog, monkeypatch: pytest.MonkeyPatch, ctx: TenantContext, times: int) -> list[float]:
    """Make ``log`` read the head as it was before another writer's append, ``times`` times."""
    head = log._read_head(ctx.tenant_id)  # the race is staged by hand
    log.append(TenantContext(ctx.tenant_id, "rival"), "test.rival", {})
    original = log._read_head
    remaining = [times]

    def read_head(tenant_id: str) -> Any:
        if remaining[0] > 0:
            remaining[0] -= 1
            return head
        return original(tenant_id)

    monkeypatch.setattr(log, "_read_head", read_head)
    sleeps: list[float] = []
    monkeypatch.setattr(log, "_sleep", sleeps.append)
    return sleeps


def test_a_lost_race_is_retried_on_a_fresh_head(log: AuditLog, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = new_ctx()
    fill(log, ctx, 2)
    sleeps = stale_head(log, monkeypatch, ctx, times=2)
    entry = log.append(ctx, "test.retried", {})
    assert (entry.seq, len(sleeps)) == (4, 2)
    assert [e.actor for e in log.entries(ctx)] == ["alice", "alice", "rival", "alice"]
    assert log.verify(ctx).head_seq == 4


def test_a_race_lost_every_time_is_a_conflict_error(log: AuditLog, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = new_ctx()
    fill(log, ctx, 2)
    sleeps = stale_head(log, monkeypatch, ctx, times=log.max_attempts)
    with pytest.raises(ConflictError, match="lost a race") as info:
        log.append(ctx, "test.lost", {})
    assert isinstance(info.value.__cause__, TransactWriteError)
    assert len(sleeps) == log.max_attempts - 1
    assert log.verify(ctx).head_seq == 3  # nothing of the losing attempts was written


def test_a_storage_failure_is_a_storage_error(log: AuditLog) -> None:
    configure(Settings(table_prefix="missing-" + uuid.uuid4().hex, region=REGION))
    ctx = new_ctx()
    with pytest.raises(StorageError) as info:
        log.append(ctx, "test.no-table", {})
    assert not isinstance(info.value, ConflictError)
    with pytest.raises(StorageError):
        log.entries(ctx)


def test_every_item_stays_in_the_tenants_partition(log: AuditLog, monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN any operation THEN it only queries or writes keys of the caller's tenant (never a scan)."""
    ctx = new_ctx()
    seen: list[str] = []
    original = TableConnection.query

    def query(self: TableConnection, hash_key: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(hash_key)
        return original(self, hash_key, *args, **kwargs)

    def no_scan(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the audit log must never scan")

    monkeypatch.setattr(TableConnection, "query", query)
    monkeypatch.setattr(TableConnection, "scan", no_scan)
    fill(log, ctx, 4)
    log.verify(ctx)
    log.export(ctx)
    log.entries(ctx, since_seq=2)
    assert seen
    assert set(seen) == {ctx.tenant_id}
