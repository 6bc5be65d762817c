"""What the API has accepted and not yet answered: one short-lived item per submitted request, so that
``GET /requests/{id}`` tells "queued" (accepted, no outcome yet) from "unknown" (never submitted by this
tenant, or too long ago) instead of answering 404 for both.

The item lives in the tenant's partition of the counters table (the tenant leads its key, as every other
item: another tenant's submission is unknown to the caller) and expires with the day; the request's own
row, written when the workflow records its outcome, supersedes it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from facegate.errors import ConflictError
from facegate.store.items import get_or_none, storage
from facegate.store.models import SEP, CounterRecord
from facegate.tenancy import TenantContext, check_entity_id

QUEUED: Final = "queued"
RUNNING: Final = "running"
STATES: Final = (QUEUED, RUNNING)
SUBMISSION_TTL: Final = timedelta(days=1)
"""Longer than any workflow runs (Enrol and Recognize time out at 15 minutes, BulkEnrol at a day)."""


def token_request_id(tenant_id: str, operation: str, client_token: str) -> str:
    """The request id a client token names: the same tenant, operation and token, the same request."""
    return hashlib.sha256(f"client-token|{tenant_id}|{operation}|{client_token}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Claim:
    """A client token's earlier use: what it was for (``fingerprint``, the sha256 of the request's body)
    and whether its workflow was started."""

    operation: str
    fingerprint: str
    started: bool


class Submissions:
    @staticmethod
    def _key(request_id: str) -> str:
        return f"submitted{SEP}{check_entity_id(request_id, 'request id')}"

    def mark(self, ctx: TenantContext, request_id: str, operation: str, now: datetime, *, state: str = QUEUED) -> None:
        """Record that ``request_id`` was accepted (``queued``), or that a one-call run went on past the
        call's wait (``running``). A retried submission writes the same item again."""
        if state not in STATES:
            raise ValueError(f"a submission is {' or '.join(STATES)}, not {state!r}")
        record = CounterRecord(
            ctx.tenant_id, self._key(request_id), hits=0, names=[operation, state], expires_at=now + SUBMISSION_TTL
        )
        with storage("recording a submitted request"):
            record.save()

    def get(self, ctx: TenantContext, request_id: str, now: datetime) -> tuple[str, str] | None:
        """The submitted request's operation and state, or ``None`` if this tenant submitted no such
        request (or the record has expired: DynamoDB's TTL deletes late, so the time is checked here)."""
        record = get_or_none(CounterRecord, "reading a submitted request", ctx.tenant_id, self._key(request_id))
        if record is None or not record.names or len(record.names) != 2:
            return None
        if record.expires_at is not None and record.expires_at <= now:
            return None
        return str(record.names[0]), str(record.names[1])

    def claim(
        self, ctx: TenantContext, request_id: str, operation: str, fingerprint: str, now: datetime
    ) -> Claim | None:
        """Claim a client token's request id for this body: ``None`` when this call claimed it, else the
        earlier claim (the caller compares its fingerprint: the same body is a retry, another a misuse).
        The claim is the submission's record (``queued``) as well."""
        record = CounterRecord(
            ctx.tenant_id,
            self._key(request_id),
            hits=0,
            names=[operation, QUEUED],
            blob=bytes.fromhex(fingerprint),
            expires_at=now + SUBMISSION_TTL,
        )
        try:
            with storage("claiming a client token"):
                record.save(condition=CounterRecord.counter_key.does_not_exist())
            return None
        except ConflictError:
            pass
        held = self.held(ctx, request_id)
        if held is None:  # expired and deleted between the two calls: claim it again
            return self.claim(ctx, request_id, operation, fingerprint, now)
        return held

    def held(self, ctx: TenantContext, request_id: str) -> Claim | None:
        """The claim on ``request_id``, if there is one."""
        record = get_or_none(CounterRecord, "reading a client token", ctx.tenant_id, self._key(request_id))
        if record is None:
            return None
        return Claim(
            operation=str(record.names[0]) if record.names else "",
            fingerprint=bytes(record.blob).hex() if record.blob is not None else "",
            started=int(record.hits or 0) > 0,
        )

    def started(self, ctx: TenantContext, request_id: str) -> None:
        """The claimed request's workflow was started: a retry with its token no longer starts one."""
        with storage("recording a started request"):
            CounterRecord(ctx.tenant_id, self._key(request_id)).update(actions=[CounterRecord.hits.set(1)])
