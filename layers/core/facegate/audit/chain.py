"""The hash chain itself: canonical encoding, entry hashes and verification (pure, no I/O).

Usable on an export as well as on the table; :mod:`facegate.audit.log` stores and reads it.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeAlias

from facegate.errors import AuditChainError

JSON: TypeAlias = "bool | int | float | str | Sequence[JSON] | Mapping[str, JSON] | None"
"""A JSON value. Read-only container types, so ``dict[str, int]`` and ``list[str]`` are accepted too."""

GENESIS_HASH: Final = "0" * 64
HEAD_SEQ: Final = 0
HEAD_ACTION: Final = "audit.head"
MAX_DETAILS_BYTES: Final = 8 * 1024
MAX_DETAILS_DEPTH: Final = 16
ACTION: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,127}$")

Kind: TypeAlias = Literal["altered", "missing", "reordered", "truncated", "forged"]
"""How a chain is broken; the word appears in every :class:`AuditChainError` message as ``(kind)``."""


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
