"""The audit log in DynamoDB: appends (alone, or in one transaction with the data they record), reads, verification."""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pynamodb.exceptions import PynamoDBException, TransactWriteError
from pynamodb.transactions import TransactWrite

from facegate.audit.chain import (
    ACTION,
    GENESIS_HASH,
    HEAD_ACTION,
    HEAD_SEQ,
    JSON,
    AuditEntry,
    AuditHead,
    ChainReport,
    chain_error,
    check_chain,
    normalise_details,
)
from facegate.errors import ConflictError, StorageError, WriteConditionError
from facegate.store.models import SEP, AuditRecord, CounterRecord, connection_of
from facegate.store.writes import MAX_TRANSACTION_ITEMS, Write
from facegate.tenancy import TenantContext

DEFAULT_MAX_ATTEMPTS: Final = 8
BACKOFF_BASE_S: Final = 0.02
BACKOFF_CAP_S: Final = 1.0
_SEQ: Final = re.compile(r"0|[1-9][0-9]{0,17}")
# Reasons a transaction may be cancelled that mean "someone else got there first": retry after re-reading.
_RACE_CODES: Final = frozenset({"ConditionalCheckFailed", "TransactionConflict"})

ONCE: Final = "audit.once"
ONCE_RETENTION: Final = timedelta(days=7)
"""A retried step arrives within minutes (Step Functions' Retry) or hours (a redriven execution)."""


def _once_key(once: str) -> str:
    return f"audit-once{SEP}{hashlib.sha256(once.encode()).hexdigest()}"


def _once_marker(tenant_id: str, once: str, entry: AuditEntry) -> Write:
    """The marker that makes an append idempotent: it names the entry's seq and exists only once."""
    record = CounterRecord(tenant_id, _once_key(once), hits=entry.seq, expires_at=entry.at + ONCE_RETENTION)
    return Write("save", record, ONCE, condition=CounterRecord.counter_key.does_not_exist())


_ENTRY: Final = " entry"
_HEAD: Final = " head"
_SENT_ORDER: Final = ("check", "delete", "save", "update")
"""pynamodb sends a transaction's items grouped by kind, in this order (each group in the order added),
and DynamoDB answers a cancellation with one reason per item in the order sent."""


def _codes_by_item(exc: TransactWriteError, writes: Sequence[Write]) -> dict[str, str | None] | None:
    """Each item's cancellation code by name (the entry and head as ``_ENTRY``/``_HEAD``), or ``None``
    when the reasons do not line up with the items sent."""
    reasons = list(exc.cancellation_reasons)
    items = [("save", _ENTRY), ("save", _HEAD), *((w.op, w.name) for w in writes)]
    sent = [name for kind in _SENT_ORDER for op, name in items if op == kind]
    if len(reasons) != len(sent) or len(set(sent)) != len(sent):
        return None
    return {name: reason.code if reason is not None else None for name, reason in zip(sent, reasons, strict=True)}


# --- the log -----------------------------------------------------------------------------------------


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AuditLog:
    """Append, read, verify and export a tenant's audit log; every key is built from ``ctx.tenant_id``.

    Parameters
    ----------
    max_attempts
        Appends that lose a race re-read the head and retry, at most this many attempts in all, after a
        full-jitter exponential backoff (20 ms × 2ⁿ, capped at 1 s; at most ~2.5 s of waiting in all);
        then :class:`ConflictError`. Every append of a tenant goes through its one head item, so a
        tenant's appends are serialised and each round of a race has one winner: the default absorbs
        bursts of a few concurrent writers. Sustained concurrency beyond that needs a larger bound (the
        tail of attempts needed is long: see the concurrency test) or fewer, batched appends.
    page_size
        Items per ``Query`` page (``None``: DynamoDB's 1 MB pages).
    clock
        Where ``at`` comes from (timezone-aware).
    sleep
        How a retry waits (tests replace it).
    """

    def __init__(
        self,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        page_size: int | None = None,
        clock: Callable[[], datetime] = _utcnow,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if page_size is not None and page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.max_attempts = max_attempts
        self.page_size = page_size
        self._clock = clock
        self._sleep = sleep

    # -- writing --------------------------------------------------------------------------------------

    def append(
        self,
        ctx: TenantContext,
        action: str,
        details: Mapping[str, JSON],
        *,
        writes: Sequence[Write] = (),
        once: str | None = None,
    ) -> AuditEntry:
        """Append one entry (``ctx.actor`` did ``action``) after the tenant's newest one.

        ``writes`` are the data writes this entry records: they commit in the same transaction as the
        entry and the head, so the change and its record land together or not at all. ``once`` makes
        the append idempotent: a second append with the same key (a retried step) writes nothing and
        returns the entry the first one wrote.

        Raises
        ------
        ValueError
            ``action`` is not a short identifier, or ``details`` cannot be logged (see
            :func:`normalise_details`).
        ConflictError
            Every attempt lost a race to a concurrent append.
        AuditChainError
            The next seq is already taken although the head does not point at it (a forged entry).
        WriteConditionError
            One of ``writes`` failed its own condition: nothing was written (``names`` says which).
        StorageError
            DynamoDB failed otherwise.
        """
        if len(writes) + 3 > MAX_TRANSACTION_ITEMS:
            raise ValueError(f"{len(writes)} writes do not fit one transaction with their audit entry")
        if not ACTION.fullmatch(action):
            raise ValueError("an audit action is 1-128 letters, digits, '_', '.', ':' or '-', starting with a letter")
        normalised = normalise_details(details)
        head = self._read_head(ctx.tenant_id)
        for attempt in range(self.max_attempts):
            now = self._clock()
            if now.tzinfo is None or now.utcoffset() is None:
                raise ValueError("the audit clock must return timezone-aware times")  # astimezone would guess
            at = now.astimezone(UTC)
            seq = head.seq + 1 if head is not None else 1
            prev_hash = head.entry_hash if head is not None else GENESIS_HASH
            unsealed = AuditEntry(
                tenant_id=ctx.tenant_id,
                seq=seq,
                at=at,
                actor=ctx.actor,
                action=action,
                details=normalised,
                prev_hash=prev_hash,
                entry_hash="",
            )
            entry = dataclasses.replace(unsealed, entry_hash=unsealed.computed_hash())
            marker = _once_marker(ctx.tenant_id, once, entry) if once is not None else None
            try:
                self._commit(entry, head, [*([marker] if marker else []), *writes])
            except WriteConditionError as exc:
                if marker is not None and ONCE in exc.names:
                    return self._replayed(ctx, once or "")
                raise
            except ConflictError:
                if attempt + 1 == self.max_attempts:
                    raise
                # Full jitter: the losers of a round spread out instead of colliding again in lockstep,
                # and the window grows until only a few writers compete at a time.
                self._sleep(random.uniform(0.0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt)))
                head = self._read_head(ctx.tenant_id)
                continue
            return entry
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _replayed(self, ctx: TenantContext, once: str) -> AuditEntry:
        """The entry an earlier append with the same ``once`` key wrote."""
        try:
            marker = CounterRecord.get(ctx.tenant_id, _once_key(once), consistent_read=True)
        except PynamoDBException as exc:
            raise StorageError(f"reading the audit marker {once!r} failed: {exc}") from exc
        found = self.entries(ctx, since_seq=int(marker.hits) - 1)
        if not found or found[0].seq != int(marker.hits):
            raise chain_error(
                ctx.tenant_id, int(marker.hits), "missing", f"the entry appended once as {once!r} is gone"
            )
        return found[0]

    def _commit(self, entry: AuditEntry, head: AuditHead | None, writes: Sequence[Write] = ()) -> None:
        record = AuditRecord(
            entry.tenant_id,
            entry.seq,
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            details=entry.details,
            prev_hash=entry.prev_hash,
            entry_hash=entry.entry_hash,
        )
        new_head = AuditRecord(
            entry.tenant_id,
            HEAD_SEQ,
            at=entry.at,
            actor=entry.actor,
            action=HEAD_ACTION,
            details={},
            prev_hash=entry.prev_hash,
            entry_hash=entry.entry_hash,
            head_seq=entry.seq,
        )
        if head is None:
            head_condition = AuditRecord.seq.does_not_exist()
        else:
            head_condition = (AuditRecord.head_seq == head.seq) & (AuditRecord.entry_hash == head.entry_hash)
        # The model's own connection carries the configured region and endpoint. The request token makes
        # the SDK's own retries of this call idempotent (a timed-out commit that did land is not redone).
        connection = connection_of(AuditRecord)
        try:
            with TransactWrite(connection=connection, client_request_token=uuid.uuid4().hex) as transaction:
                transaction.save(record, condition=AuditRecord.seq.does_not_exist())
                transaction.save(new_head, condition=head_condition)
                for write in writes:
                    write.add_to(transaction)
        except TransactWriteError as exc:
            codes = _codes_by_item(exc, writes)
            if exc.cause_response_code == "TransactionCanceledException" and codes is not None:
                entry_code, head_code = codes.pop(_ENTRY), codes.pop(_HEAD)
                refused = tuple(name for name, code in codes.items() if code == "ConditionalCheckFailed")
                if refused:
                    # A data write's own condition is the answer (already stored, gallery full, consent
                    # withdrawn): the same transaction would fail again, so it is not retried as a race.
                    raise WriteConditionError(
                        f"audit append at seq {entry.seq}: the write(s) {', '.join(refused)} failed their condition",
                        refused,
                    ) from exc
                if entry_code == "ConditionalCheckFailed" and head_code is None:
                    # The head still points where we read it, yet the next seq is taken: no append wrote that.
                    raise chain_error(
                        entry.tenant_id,
                        entry.seq,
                        "forged",
                        f"seq {entry.seq} exists beyond the head (seq {entry.seq - 1}): no append wrote it",
                    ) from exc
                if all(code is None or code in _RACE_CODES for code in (entry_code, head_code, *codes.values())):
                    raise ConflictError(
                        f"audit append at seq {entry.seq} for tenant {entry.tenant_id!r} lost a race"
                    ) from exc
            raise StorageError(f"audit append failed: {exc.cause_response_code or exc}") from exc
        except PynamoDBException as exc:
            raise StorageError(f"audit append failed: {exc}") from exc

    # -- reading --------------------------------------------------------------------------------------

    def entries(self, ctx: TenantContext, *, since_seq: int = 0) -> list[AuditEntry]:
        """The tenant's entries after ``since_seq``, in seq order (strongly consistent, paginated).

        Entries are returned as stored; :meth:`verify` says whether they are intact.

        Raises
        ------
        AuditChainError
            An item cannot be read as an entry (a fractional seq, a missing or malformed field).
        """
        if since_seq < 0:
            raise ValueError("since_seq must be 0 or more")
        entries: list[AuditEntry] = []
        for raw in self._query(ctx.tenant_id, AuditRecord.seq > since_seq):
            entry = _decode(ctx.tenant_id, raw)
            if isinstance(entry, AuditHead):  # pragma: no cover - the key condition excludes seq 0
                continue
            entries.append(entry)
        return entries

    def between(self, ctx: TenantContext, first: int, last: int, *, limit: int) -> list[AuditEntry]:
        """At most ``limit`` entries with ``first <= seq <= last``, in seq order (one bounded query:
        :mod:`facegate.audit.pages` reads a long log page by page this way)."""
        if first < 1 or last < first or limit < 1:
            raise ValueError("a range is 1 <= first <= last, with a limit of 1 or more")
        entries: list[AuditEntry] = []
        for raw in self._query(ctx.tenant_id, AuditRecord.seq.between(first, last)):
            entry = _decode(ctx.tenant_id, raw)
            if isinstance(entry, AuditEntry):
                entries.append(entry)
            if len(entries) >= limit:
                break
        return entries

    def export(self, ctx: TenantContext) -> list[dict[str, JSON]]:
        """Every entry as a JSON-ready dict, for the tenant's own audit export.

        Not verified first: a tenant needs its export most when the log is broken. The tenant can check
        it with ``check_chain(tenant_id, [AuditEntry.from_dict(d) for d in export], head=None,
        head_required=False)`` and keep the last entry's seq and hash as an anchor.
        """
        return [entry.to_dict() for entry in self.entries(ctx)]

    def verify(self, ctx: TenantContext, *, anchor: ChainReport | None = None) -> ChainReport:
        """Check the tenant's whole log: every hash, every link, no gaps, and the head.

        Parameters
        ----------
        anchor
            A report of an earlier verification kept outside the table (see the module docstring).

        Raises
        ------
        AuditChainError
            The first fault found, naming its seq and kind.
        """
        # Head first, then the entries: appends write both atomically, so every entry up to this head
        # is visible to the (strongly consistent) query that follows. Entries beyond it are either
        # appends that landed in between or forgeries; a second look at the head tells which.
        head = self._read_head(ctx.tenant_id)
        head_seq = head.seq if head is not None else 0
        items = [_decode(ctx.tenant_id, raw) for raw in self._query(ctx.tenant_id, None)]
        entries = [item for item in items if isinstance(item, AuditEntry)]
        newer = [entry.seq for entry in entries if entry.seq > head_seq]
        if newer:
            now = self._read_head(ctx.tenant_id)
            if now is not None and now != head and max(newer) <= now.seq:
                # Concurrent appends moved the head past them: verify the prefix this head vouches for.
                entries = [entry for entry in entries if entry.seq <= head_seq]
        return check_chain(ctx.tenant_id, entries, head=head, anchor=anchor)

    def _read_head(self, tenant_id: str) -> AuditHead | None:
        connection = AuditRecord._get_connection()
        try:
            # Raw, like _query: a Number key travels as a string.
            response = connection.get_item(tenant_id, str(HEAD_SEQ), consistent_read=True)
        except PynamoDBException as exc:
            raise StorageError(f"reading the audit head failed: {exc}") from exc
        raw = response.get("Item")
        if not raw:
            return None
        head = _decode(tenant_id, raw)
        if not isinstance(head, AuditHead):  # pragma: no cover - seq 0 always decodes as the head
            raise chain_error(tenant_id, HEAD_SEQ, "forged", "the head item is not a head")
        return head

    def _query(self, tenant_id: str, condition: Any) -> Iterator[dict[str, Any]]:
        # Raw pages rather than Model.query: one undecodable item then names its seq instead of
        # aborting the whole iteration with a bare ValueError.
        connection = AuditRecord._get_connection()
        last_key: dict[str, Any] | None = None
        while True:
            try:
                page = connection.query(
                    tenant_id,
                    range_key_condition=condition,
                    consistent_read=True,
                    exclusive_start_key=last_key,
                    limit=self.page_size,
                )
            except PynamoDBException as exc:
                raise StorageError(f"reading the audit log failed: {exc}") from exc
            yield from page.get("Items", [])
            last_key = page.get("LastEvaluatedKey")
            if not last_key:
                return


def _decode(tenant_id: str, raw: Mapping[str, Any]) -> AuditEntry | AuditHead:
    """One raw item as an entry (seq ≥ 1) or the head (seq 0), or the chain error it amounts to."""
    seq_text = str(raw.get("seq", {}).get("N", "?"))
    if not _SEQ.fullmatch(seq_text):
        # DynamoDB spells numbers canonically, so an honest seq is always plain digits.
        raise chain_error(tenant_id, seq_text, "forged", "the seq is not a whole number ≥ 0: no append writes it")
    seq = int(seq_text)
    try:
        record = AuditRecord.from_raw_data(dict(raw))
    except (ValueError, TypeError, PynamoDBException):
        raise chain_error(tenant_id, seq, "altered", "the item cannot be decoded (a field was overwritten)") from None
    actor, action, at = record.actor, record.action, record.at
    prev_hash, entry_hash, details = record.prev_hash, record.entry_hash, record.details
    fields_ok = (
        isinstance(actor, str)
        and isinstance(action, str)
        and isinstance(at, datetime)
        and isinstance(prev_hash, str)
        and isinstance(entry_hash, str)
        and isinstance(details, dict)
    )
    if not fields_ok or record.tenant_id != tenant_id:
        raise chain_error(tenant_id, seq, "altered", "a field is missing or of the wrong type")
    head_seq: object = record.head_seq  # typed float by pynamodb, but None on entries and whatever a forger wrote
    if seq == HEAD_SEQ:
        if action != HEAD_ACTION or isinstance(head_seq, bool) or not isinstance(head_seq, int) or head_seq < 1:
            raise chain_error(tenant_id, HEAD_SEQ, "altered", "the head item is malformed")
        return AuditHead(seq=head_seq, entry_hash=entry_hash, prev_hash=prev_hash, at=at, actor=actor)
    if head_seq is not None:
        raise chain_error(tenant_id, seq, "forged", "an entry carries a head_seq")
    return AuditEntry(
        tenant_id=tenant_id,
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        details=details,
        prev_hash=prev_hash,
        entry_hash=entry_hash,
    )
