"""A tenant's audit log read in pages by sequence number (``GET /audit?from_seq=&to_seq=&limit=``), for
logs too long to export in one answer.

Each page is checked on its own: every entry's hash, consecutive sequence numbers, and each link, the
first one to the entry before the page (read for it; the genesis hash before seq 1). A page whose links
hold proves only that part; the whole log, its head and a kept anchor are verified by the full export
(``GET /audit`` without a range), which is what an anchor is signed on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from facegate.audit.chain import GENESIS_HASH, AuditEntry
from facegate.audit.log import AuditLog
from facegate.errors import InvalidRequestError
from facegate.tenancy import TenantContext

MAX_PAGE: Final = 1000
DEFAULT_PAGE: Final = 200


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    first: int
    last: int
    next_seq: int | None
    fault: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        page: dict[str, Any] = {
            "entries": [e.to_dict() for e in self.entries],
            "from_seq": self.first,
            "to_seq": self.last,
            "links_verified": self.fault is None,
        }
        if self.fault is not None:
            page["error"] = self.fault
        if self.next_seq is not None:
            page["next_seq"] = self.next_seq
            page["next_token"] = str(self.next_seq)
        return page


def read_page(log: AuditLog, ctx: TenantContext, *, first: int, last: int | None, limit: int) -> AuditPage:
    """Entries ``first``..``last`` (inclusive; ``None``: to the newest), at most ``limit`` of them."""
    if first < 1:
        raise InvalidRequestError(f"from_seq is 1 or more, not {first}")
    if last is not None and last < first:
        raise InvalidRequestError(f"to_seq ({last}) is before from_seq ({first})")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequestError(f"a page holds 1 to {MAX_PAGE} entries, not {limit}")
    upper = last if last is not None else 2**62
    found = log.between(ctx, first, upper, limit=limit + 1)
    more = len(found) > limit
    entries = found[:limit]
    before: str | None = GENESIS_HASH
    if first > 1:
        prior = log.between(ctx, first - 1, first - 1, limit=1)
        before = prior[0].entry_hash if prior else None
    if before is None:
        missing = f"entry {first - 1}, before the page, is missing"
        fault = {"kind": "missing", "seq": first - 1, "message": missing} if entries else None
    else:
        fault = _check(entries, first, before)
    end = entries[-1].seq if entries else first - 1
    return AuditPage(entries, first, end, end + 1 if more else None, fault)


def _check(entries: list[AuditEntry], first: int, before: str) -> dict[str, Any] | None:
    expected_seq, prev = first, before
    for entry in entries:
        if entry.seq != expected_seq:
            return {"kind": "missing", "seq": expected_seq, "message": f"entry {expected_seq} is missing"}
        if entry.computed_hash() != entry.entry_hash:
            return {"kind": "altered", "seq": entry.seq, "message": f"entry {entry.seq} does not match its hash"}
        if entry.prev_hash != prev:
            return {
                "kind": "altered",
                "seq": entry.seq,
                "message": f"entry {entry.seq} does not link to the one before",
            }
        expected_seq, prev = entry.seq + 1, entry.entry_hash
    return None
