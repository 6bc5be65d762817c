"""The audit log: append-only and hash-chained, one chain per tenant, verifiable by the tenant.

Layout (table ``<prefix>-audit``, :class:`~facegate.store.models.AuditRecord`)
------------------------------------------------------------------------------
* Entries live at ``seq`` 1, 2, 3, ... in the tenant's own partition. Each entry's ``entry_hash`` is the
  sha256 of the canonical JSON (:func:`canonical_json`) of ``{tenant_id, seq, at, actor, action,
  details, prev_hash}``, and its ``prev_hash`` is the previous entry's ``entry_hash`` (64 zeros for
  seq 1). The tenant id and the seq are inside the hash, so an entry copied from another tenant's log, or
  moved to another seq, no longer matches its hash.
* The item at ``seq`` 0 is the tenant's **head**: ``head_seq`` is the newest entry's seq, and it mirrors
  that entry's ``at``, ``actor``, ``prev_hash`` and ``entry_hash`` (``action`` is ``audit.head``). A
  chain alone cannot show that its newest entries were deleted; the head can, because every append
  writes the new entry and the new head in one DynamoDB transaction: the entry only if its seq is free,
  the head only if it still points at the entry the new one chains to. Two concurrent appends can
  therefore never both succeed on the same head (no fork, no overwrite); the loser re-reads the head and
  retries. Keeping the head at seq 0 of the same partition keeps the whole log one ``Query`` away and
  inside the ``dynamodb:LeadingKeys`` confinement of the tenant's IAM session.

What verification proves, and what it cannot
---------------------------------------------
:meth:`AuditLog.verify` detects an edited field of any entry (with or without its hash recomputed: the
next entry's ``prev_hash``, or the head, no longer matches), a deleted entry, swapped or shifted
entries, deleted newest entries, inserted entries (beyond the head, between two seqs, or overwriting
one), and entries copied from another tenant. Someone able to write the table *and* willing to rewrite
the head consistently can still cut the log back to an earlier state, or rewrite it wholesale: the
table then holds exactly what an honest log of that length would hold, so nothing in it can tell. That
is what anchors are for: a :class:`ChainReport` (or the last entry of an export) kept outside the table
-- by the tenant, or written to object-locked storage -- and passed back as ``verify(ctx, anchor=...)``
proves the log still contains that entry unchanged, and hence everything before it.

Details are small (at most 8 KiB of canonical JSON) and never hold bytes: embeddings and images do not
belong in an audit log, which outlives the templates it describes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeAlias

from pynamodb.exceptions import PynamoDBException, TransactWriteError
from pynamodb.transactions import TransactWrite

from facegate.errors import AuditChainError, ConflictError, StorageError
from facegate.store.models import AuditRecord, connection_of
from facegate.tenancy import TenantContext

JSON: TypeAlias = "bool | int | float | str | Sequence[JSON] | Mapping[str, JSON] | None"
"""A JSON value. Read-only container types, so ``dict[str, int]`` and ``list[str]`` are accepted too."""

GENESIS_HASH: Final = "0" * 64
HEAD_SEQ: Final = 0
HEAD_ACTION: Final = "audit.head"
MAX_DETAILS_BYTES: Final = 8 * 1024
MAX_DETAILS_DEPTH: Final = 16
DEFAULT_MAX_ATTEMPTS: Final = 8
BACKOFF_BASE_S: Final = 0.02
BACKOFF_CAP_S: Final = 1.0
ACTION: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,127}$")
_SEQ: Final = re.compile(r"0|[1-9][0-9]{0,17}")

Kind: TypeAlias = Literal["altered", "missing", "reordered", "truncated", "forged"]
"""How a chain is broken; the word appears in every :class:`AuditChainError` message as ``(kind)``."""

# Reasons a transaction may be cancelled that mean "someone else got there first": retry after re-reading.
_RACE_CODES: Final = frozenset({"ConditionalCheckFailed", "TransactionConflict"})


# --- canonical encoding and the entry hash ------------------------------------------------------------


def canonical_json(value: object) -> bytes:
    """The one byte encoding that is hashed: sorted keys, no whitespace, UTF-8, no NaN or infinity.

    Raises
    ------
    ValueError
        ``value`` holds NaN or an infinity, or a string that is not valid Unicode (a lone surrogate).
    TypeError
        ``value`` holds something JSON cannot encode.
    """
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("a string is not valid Unicode (lone surrogate)") from exc


def format_timestamp(at: datetime) -> str:
    """``2024-05-01T12:00:00.000000Z``: UTC, always with microseconds, so one instant has one spelling."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("audit timestamps must be timezone-aware")
    # isoformat pads the year to four digits, which strftime("%Y") does not do on every platform.
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_timestamp(text: str) -> datetime:
    """The inverse of :func:`format_timestamp` (it accepts any ISO-8601 time with an offset)."""
    at = datetime.fromisoformat(text)
    if at.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    return at.astimezone(UTC)


def compute_entry_hash(
    *,
    tenant_id: str,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    details: Mapping[str, JSON],
    prev_hash: str,
) -> str:
    """sha256 (hex) of the canonical JSON of the entry's fields, ``entry_hash`` itself excluded."""
    payload = {
        "tenant_id": tenant_id,
        "seq": seq,
        "at": format_timestamp(at),
        "actor": actor,
        "action": action,
        "details": details,
        "prev_hash": prev_hash,
    }
    return hashlib.sha256(canonical_json(payload)).hexdigest()


def normalise_details(details: Mapping[str, JSON]) -> dict[str, JSON]:
    """Check that ``details`` may be logged and return it as it will read back from the table.

    The result is the JSON round trip of ``details`` (tuples become lists), so the hash computed at
    append time is over exactly what a later read returns.

    Raises
    ------
    ValueError
        Not a JSON object with string keys; holds bytes (embeddings and images are never logged), NaN,
        an infinity or a non-JSON type; nested deeper than 16; or more than 8 KiB once encoded.
    """
    if not isinstance(details, Mapping):
        raise ValueError("audit details must be a JSON object")
    _check_json(details, "details", 0)
    encoded = canonical_json(details)
    if len(encoded) > MAX_DETAILS_BYTES:
        raise ValueError(f"audit details are {len(encoded)} bytes of JSON; the limit is {MAX_DETAILS_BYTES}")
    normalised: dict[str, JSON] = json.loads(encoded)
    return normalised


def _check_json(value: object, path: str, depth: int) -> None:
    # Checked by hand before encoding: json.dumps would turn int keys into strings (changing the data
    # behind the caller's back) and its errors do not say where the offending value is.
    if depth > MAX_DETAILS_DEPTH:
        raise ValueError(f"{path} is nested more than {MAX_DETAILS_DEPTH} levels deep")
    if isinstance(value, bytes | bytearray | memoryview):
        raise ValueError(f"{path} is bytes: never put embeddings, images or other binary data in the audit log")
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path} is {value}: JSON has no NaN or infinity")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{path} has a non-string key {key!r}")
            _check_json(item, f"{path}[{key!r}]", depth + 1)
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_json(item, f"{path}[{index}]", depth + 1)
        return
    # numpy arrays and scalars, sets, datetimes, ...: refused rather than guessed at.
    raise ValueError(f"{path} is a {type(value).__name__}, not a JSON value")


# --- values ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditEntry:
    """One entry of a tenant's audit log, as stored (``entry_hash`` is not re-checked here)."""

    tenant_id: str
    seq: int
    at: datetime
    actor: str
    action: str
    details: dict[str, JSON]
    prev_hash: str
    entry_hash: str

    def computed_hash(self) -> str:
        """The hash this entry's fields give; it equals ``entry_hash`` unless the entry was altered."""
        return self.hash_as(seq=self.seq)

    def hash_as(self, *, seq: int) -> str:
        """The hash these fields would have at another seq: how a moved entry is recognised."""
        return compute_entry_hash(
            tenant_id=self.tenant_id,
            seq=seq,
            at=self.at,
            actor=self.actor,
            action=self.action,
            details=self.details,
            prev_hash=self.prev_hash,
        )

    def to_dict(self) -> dict[str, JSON]:
        """JSON-ready: ``at`` in the hashed spelling, ``details`` a fresh copy."""
        details: dict[str, JSON] = json.loads(canonical_json(self.details))
        return {
            "tenant_id": self.tenant_id,
            "seq": self.seq,
            "at": format_timestamp(self.at),
            "actor": self.actor,
            "action": self.action,
            "details": details,
            "prev_hash": self.prev_hash,
            "entry_hash": self.entry_hash,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditEntry:
        """Read back one item of :meth:`AuditLog.export` (for verifying an export offline)."""
        seq = data["seq"]
        details = data["details"]
        if isinstance(seq, bool) or not isinstance(seq, int) or not isinstance(details, dict):
            raise ValueError("an exported audit entry has an integer seq and an object of details")
        return cls(
            tenant_id=str(data["tenant_id"]),
            seq=seq,
            at=parse_timestamp(str(data["at"])),
            actor=str(data["actor"]),
            action=str(data["action"]),
            details=details,
            prev_hash=str(data["prev_hash"]),
            entry_hash=str(data["entry_hash"]),
        )


@dataclass(frozen=True)
class AuditHead:
    """The head item (``seq`` 0): which entry is the newest, mirrored from it."""

    seq: int
    entry_hash: str
    prev_hash: str
    at: datetime
    actor: str


@dataclass(frozen=True)
class ChainReport:
    """The result of a successful verification; keep one outside the table to use as an anchor."""

    tenant_id: str
    entries_checked: int
    head_seq: int
    """The newest verified entry's seq (0 for an empty log)."""
    head_hash: str
    """The newest verified entry's ``entry_hash`` (:data:`GENESIS_HASH` for an empty log)."""


# --- verification (pure: also usable on an export) ---------------------------------------------------


def chain_error(tenant_id: str, seq: object, kind: Kind, detail: str) -> AuditChainError:
    """``audit chain of tenant 't' broken at seq 5 (altered): ...``: the first seq at fault and how."""
    return AuditChainError(f"audit chain of tenant {tenant_id!r} broken at seq {seq} ({kind}): {detail}")


def check_chain(
    tenant_id: str,
    entries: Sequence[AuditEntry],
    *,
    head: AuditHead | None,
    anchor: ChainReport | None = None,
    head_required: bool = True,
) -> ChainReport:
    """Verify ``entries`` (ascending seq) as the complete log of ``tenant_id``.

    Parameters
    ----------
    tenant_id
        Whose log this is; every entry's hash covers it.
    entries
        Every entry, in seq order.
    head
        The head item, or ``None`` where there is none.
    anchor
        A report from an earlier verification, kept outside the table: the log must still contain its
        head entry unchanged (catches a truncation or rewrite that also rewrote the head).
    head_required
        ``False`` for an export, which carries no head: the newest entry is then taken as the head.

    Returns
    -------
    ChainReport
        How many entries were checked and the newest one's seq and hash.

    Raises
    ------
    AuditChainError
        At the first fault, naming its seq and kind (altered, missing, reordered, truncated, forged).
    """
    by_seq = {entry.seq: entry for entry in entries}
    prev_hash = GENESIS_HASH
    expected = 1
    for entry in entries:
        seq = entry.seq
        if entry.tenant_id != tenant_id:
            raise chain_error(tenant_id, seq, "forged", f"the entry belongs to tenant {entry.tenant_id!r}")
        if seq < expected:
            raise chain_error(tenant_id, seq, "forged", f"seq {seq} appears again after seq {expected - 1}")
        if head is not None and seq > head.seq:
            raise chain_error(
                tenant_id,
                seq,
                "forged",
                f"seq {seq} is beyond the head (seq {head.seq}): it was not written by an append",
            )
        if seq > expected:
            gap = f"seq {expected}" if seq == expected + 1 else f"seqs {expected}..{seq - 1}"
            raise chain_error(
                tenant_id, expected, "missing", f"{gap} removed: the log jumps from seq {expected - 1} to seq {seq}"
            )
        _check_content(tenant_id, entry, by_seq)
        if entry.prev_hash != prev_hash:
            if seq == 1:
                raise chain_error(
                    tenant_id, 1, "altered", "seq 1's prev_hash is not the genesis hash (its hash was recomputed)"
                )
            raise chain_error(
                tenant_id,
                seq,
                "altered",
                f"seq {seq}'s prev_hash {entry.prev_hash[:12]}... is not seq {seq - 1}'s entry_hash "
                f"{prev_hash[:12]}...: seq {seq - 1} was rewritten with a recomputed hash, or seq {seq}'s "
                "prev_hash was altered and its hash recomputed",
            )
        prev_hash = entry.entry_hash
        expected += 1
    last_seq = expected - 1

    if head is None and head_required and entries:
        raise chain_error(tenant_id, HEAD_SEQ, "missing", f"the head item is missing (the log has {last_seq} entries)")
    if head is not None:
        _check_head(tenant_id, head, entries[-1] if entries else None)
    if anchor is not None:
        _check_anchor(tenant_id, anchor, by_seq, last_seq)
    return ChainReport(tenant_id=tenant_id, entries_checked=len(entries), head_seq=last_seq, head_hash=prev_hash)


def _check_content(tenant_id: str, entry: AuditEntry, by_seq: Mapping[int, AuditEntry]) -> None:
    seq = entry.seq
    try:
        computed = entry.computed_hash()
    except (ValueError, TypeError):
        raise chain_error(tenant_id, seq, "altered", "its fields cannot be hashed (not valid JSON)") from None
    if computed == entry.entry_hash:
        return
    # Not the hash of these fields at this seq. Is it their hash at another seq (the entry was moved)?
    # Only computed on failure: one hash per entry of the log, once.
    origin = next((other for other in by_seq if other != seq and entry.hash_as(seq=other) == entry.entry_hash), None)
    if origin is None:
        raise chain_error(
            tenant_id,
            seq,
            "altered",
            "its fields do not match its entry_hash (a field was edited, or the entry was copied from another "
            "tenant's log)",
        )
    if origin < seq and by_seq[origin].entry_hash == entry.entry_hash:
        raise chain_error(
            tenant_id, seq, "reordered", f"seq {seq} holds a copy of seq {origin} (an entry was replayed over it)"
        )
    if origin < seq:
        # Entries before this one all verified, so the one now at `origin` is an impostor that chains
        # correctly: an entry was inserted there and the originals shifted up.
        raise chain_error(
            tenant_id,
            origin,
            "forged",
            f"seq {origin} was inserted: the entry written as seq {origin} now sits at seq {seq} (shifted up)",
        )
    raise chain_error(
        tenant_id,
        seq,
        "reordered",
        f"seq {seq} holds the entry written as seq {origin} (entries were swapped or moved, or seqs before "
        f"{origin} were removed and the rest shifted down)",
    )


def _check_head(tenant_id: str, head: AuditHead, newest: AuditEntry | None) -> None:
    last_seq = newest.seq if newest is not None else 0
    if head.seq > last_seq:
        gap = f"seq {head.seq}" if head.seq == last_seq + 1 else f"seqs {last_seq + 1}..{head.seq}"
        ends = f"ends at seq {last_seq}" if last_seq else "has no entries"
        raise chain_error(
            tenant_id, last_seq + 1, "truncated", f"the head records seq {head.seq} but the log {ends}: {gap} deleted"
        )
    if newest is None:
        return
    if head.entry_hash != newest.entry_hash:
        raise chain_error(
            tenant_id,
            last_seq,
            "altered",
            f"seq {last_seq}'s entry_hash {newest.entry_hash[:12]}... is not the head's {head.entry_hash[:12]}...: "
            f"seq {last_seq} was rewritten with a recomputed hash, the head was altered, or entries after seq "
            f"{last_seq} were deleted and the head's seq rolled back (truncated)",
        )
    if (head.prev_hash, head.at, head.actor) != (newest.prev_hash, newest.at, newest.actor):
        raise chain_error(tenant_id, HEAD_SEQ, "altered", f"the head does not mirror seq {last_seq}")


def _check_anchor(tenant_id: str, anchor: ChainReport, by_seq: Mapping[int, AuditEntry], last_seq: int) -> None:
    if anchor.tenant_id != tenant_id:
        raise ValueError(f"the anchor is for tenant {anchor.tenant_id!r}, not {tenant_id!r}")
    if anchor.head_seq == 0:
        return
    if anchor.head_seq > last_seq:
        ends = f"ends at seq {last_seq}" if last_seq else "has no entries"
        raise chain_error(
            tenant_id,
            last_seq + 1,
            "truncated",
            f"the anchor records seq {anchor.head_seq} but the log {ends}: entries were deleted, the head rolled back",
        )
    if by_seq[anchor.head_seq].entry_hash != anchor.head_hash:
        raise chain_error(
            tenant_id,
            anchor.head_seq,
            "altered",
            f"seq {anchor.head_seq}'s entry_hash is not the anchor's: the log was rewritten at or before seq "
            f"{anchor.head_seq}, hashes and head included",
        )


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

    def append(self, ctx: TenantContext, action: str, details: Mapping[str, JSON]) -> AuditEntry:
        """Append one entry (``ctx.actor`` did ``action``) after the tenant's newest one.

        Raises
        ------
        ValueError
            ``action`` is not a short identifier, or ``details`` cannot be logged (see
            :func:`normalise_details`).
        ConflictError
            Every attempt lost a race to a concurrent append.
        AuditChainError
            The next seq is already taken although the head does not point at it (a forged entry).
        StorageError
            DynamoDB failed otherwise.
        """
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
            try:
                self._commit(entry, head)
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

    def _commit(self, entry: AuditEntry, head: AuditHead | None) -> None:
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
        except TransactWriteError as exc:
            codes = [reason.code if reason is not None else None for reason in exc.cancellation_reasons]
            if exc.cause_response_code == "TransactionCanceledException" and len(codes) == 2:
                entry_code, head_code = codes
                if entry_code == "ConditionalCheckFailed" and head_code is None:
                    # The head still points where we read it, yet the next seq is taken: no append wrote that.
                    raise chain_error(
                        entry.tenant_id,
                        entry.seq,
                        "forged",
                        f"seq {entry.seq} exists beyond the head (seq {entry.seq - 1}): no append wrote it",
                    ) from exc
                if all(code is None or code in _RACE_CODES for code in codes):
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
