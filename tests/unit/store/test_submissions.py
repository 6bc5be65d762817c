"""The API's record of accepted requests (``GET /requests/{id}``'s "queued" and "running").

GIVEN a submission marked for one tenant WHEN it is read THEN its operation and state come back for that
tenant only, until it expires (checked on read: DynamoDB's TTL deletes late); a retried mark writes the
same item; a state other than queued or running, or an id with the key separator, is refused.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from facegate.errors import InvalidIdentifierError
from facegate.store.submissions import SUBMISSION_TTL, Claim, Submissions, token_request_id
from facegate.tenancy import TenantContext

NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)
A = TenantContext("tenant-a", "officer")
B = TenantContext("tenant-b", "officer")
RID = "0123456789abcdef0123456789abcdef"


def test_a_submission_is_its_tenants_until_it_expires(dynamo: str) -> None:
    store = Submissions()
    store.mark(A, RID, "enrol", NOW)
    store.mark(A, RID, "enrol", NOW)  # a retry writes the same item
    assert store.get(A, RID, NOW) == ("enrol", "queued")
    assert store.get(B, RID, NOW) is None
    assert store.get(A, RID, NOW + SUBMISSION_TTL - timedelta(seconds=1)) == ("enrol", "queued")
    assert store.get(A, RID, NOW + SUBMISSION_TTL) is None


def test_a_one_call_past_its_wait_is_running(dynamo: str) -> None:
    Submissions().mark(A, RID, "search", NOW, state="running")
    assert Submissions().get(A, RID, NOW) == ("search", "running")


@pytest.mark.dynamo_backends("moto")
def test_an_unknown_state_or_a_bad_id_is_refused(dynamo: str) -> None:
    with pytest.raises(ValueError, match="queued or running"):
        Submissions().mark(A, RID, "search", NOW, state="done")
    with pytest.raises(InvalidIdentifierError):
        Submissions().get(A, "a#b", NOW)


@pytest.mark.dynamo_backends("dynamodb-local")
def test_concurrent_twins_claim_a_client_token_once(dynamo: str) -> None:
    """Eight attempts with one token at once (DynamoDB Local: real conditional writes, no process lock):
    exactly one claims it, every other sees that claim, not started."""
    from concurrent.futures import ThreadPoolExecutor

    store = Submissions()
    request_id = token_request_id("tenant-a", "enrol", "twin")
    with ThreadPoolExecutor(8) as pool:
        claims = list(pool.map(lambda _: store.claim(A, request_id, "enrol", "ab" * 32, NOW), range(8)))
    assert sum(c is None for c in claims) == 1
    assert {c for c in claims if c is not None} == {Claim("enrol", "ab" * 32, started=False)}
    store.started(A, request_id)
    assert store.claim(A, request_id, "enrol", "ab" * 32, NOW) == Claim("enrol", "ab" * 32, started=True)
    assert store.get(A, request_id, NOW) == ("enrol", "queued")


def test_a_token_names_one_request_per_tenant_and_operation() -> None:
    ids = {token_request_id(t, op, "tok") for t in ("tenant-a", "tenant-b") for op in ("enrol", "bulk_enrol")}
    assert len(ids) == 4
