"""The record is one unit with the change: fault injection and concurrent twins on DynamoDB Local.

Every state-changing path of the service is run once cleanly to count its writes; then, for each
write in turn, the same path is run again from scratch with that write failing, either **before** it
reaches DynamoDB (nothing landed) or **after** (it landed, but the caller saw an error: the Lambda
timed out, the response was lost). The path is then retried with the same inputs, as Step Functions'
Retry or a caller's retry would. Afterwards the data and the audit log must agree exactly: no
duplicate template, no change without its audit entry, no audit entry without its change, a chain
that verifies. DynamoDB Local, not moto: it runs transactions as DynamoDB does (moto serialises
nothing and hides races), and the concurrency tests need its real conditional writes.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError
from pynamodb.connection.base import Connection

from facegate.embedding import MODEL_VERSION, Embedding
from facegate.errors import ConflictError, FacegateError
from facegate.service import FaceService
from facegate.store.models import ALL_MODELS, RequestRecord
from facegate.tenancy import TenantContext

pytestmark = pytest.mark.dynamo_backends("dynamodb-local")

WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"})
START = datetime.now(UTC).replace(microsecond=0)
OPERATOR = "operator@facegate"
TENANT = "state-prison-7"
CTX = TenantContext(tenant_id=TENANT, actor="officer-1")
GALLERY = "residents"
REQUEST = "req-0001"


@dataclass
class Injector:
    """Counts DynamoDB writes and fails the n-th one, before or after it is sent."""

    fail_at: int | None = None
    mode: str = "before"
    writes: list[str] = field(default_factory=list)

    def call(self, original: Callable[..., Any], conn: Connection, op: str, kwargs: dict[str, Any]) -> Any:
        if op not in WRITES:
            return original(conn, op, kwargs)
        self.writes.append(op)
        hit = self.fail_at is not None and len(self.writes) == self.fail_at
        if hit and self.mode == "before":
            raise _server_error(op)
        result = original(conn, op, kwargs)
        if hit:
            raise _server_error(op)  # it landed; the caller never hears so
        return result


def _server_error(op: str) -> ClientError:
    return ClientError({"Error": {"Code": "InternalServerError", "Message": "injected"}}, op)


@pytest.fixture
def injector(monkeypatch: pytest.MonkeyPatch) -> Injector:
    inj = Injector()
    original = Connection._make_api_call

    def patched(self: Connection, operation_name: str, operation_kwargs: dict[str, Any]) -> Any:
        return inj.call(original, self, operation_name, operation_kwargs)

    monkeypatch.setattr(Connection, "_make_api_call", patched)
    return inj


@contextmanager
def armed(inj: Injector, n: int | None, mode: str = "before") -> Iterator[None]:
    inj.writes.clear()
    inj.fail_at, inj.mode = n, mode
    try:
        yield
    finally:
        inj.fail_at = None


def _vector(seed: int) -> Embedding:
    v = np.random.default_rng(seed).standard_normal(128).astype(np.float32)
    return Embedding((v / np.linalg.norm(v)).astype(np.float32), MODEL_VERSION)


def _prison(service: FaceService) -> None:
    service.registry.register(TENANT, name="State Prison 7", sector="corrections", country="US", jurisdiction="US-WA")
    service.approve_use_case(
        OPERATOR,
        TENANT,
        use_case="access_control",
        deployment="closed_facility",
        expires_at=START + timedelta(days=365),
    )
    service.create_gallery(CTX, GALLERY, name="Residents", use_case="access_control")


def _consent(service: FaceService, subject: str) -> str:
    return service.record_consent(
        CTX, subject_id=subject, purpose="access_control", evidence=b"release", expires_at=START + timedelta(days=200)
    ).consent_id


def _enrol(service: FaceService, subject: str, consent_id: str, embedding: Embedding) -> None:
    decision = service.decide(CTX, _op("enrol"), GALLERY, face_count=1, subject_id=subject, consent_id=consent_id)
    service.store_template(
        CTX, GALLERY, subject_id=subject, consent_id=consent_id, embedding=embedding, decision=decision
    )


# --- the paths, each retried with the same inputs ---------------------------------------------------


@dataclass
class Path:
    """A state-changing operation: ``setup`` (unfaulted), ``run`` (faulted, then retried), ``check``."""

    name: str
    setup: Callable[[FaceService], dict[str, Any]]
    run: Callable[[FaceService, dict[str, Any]], Any]
    check: Callable[[FaceService, dict[str, Any]], None]
    retry_errors: tuple[type[BaseException], ...] = ()
    """Errors the retry may answer with because the first try did land (then nothing new is written)."""


def _enrol_setup(service: FaceService) -> dict[str, Any]:
    _prison(service)
    consent_id = _consent(service, "alice")
    decision = service.decide(CTX, _op("enrol"), GALLERY, face_count=1, subject_id="alice", consent_id=consent_id)
    return {"consent_id": consent_id, "decision": decision}


def _op(name: str) -> Any:
    from facegate.policy import Operation

    return Operation(name)


def _enrol_run(service: FaceService, s: dict[str, Any]) -> Any:
    return service.store_template(
        CTX,
        GALLERY,
        subject_id="alice",
        consent_id=s["consent_id"],
        embedding=_vector(1),
        decision=s["decision"],
        request_id=REQUEST,
    )


def _enrol_check(service: FaceService, s: dict[str, Any]) -> None:
    templates = service.templates.in_gallery(CTX, GALLERY)
    assert len(templates) == 1, f"{len(templates)} templates for one enrolment request"
    assert service.galleries.get(CTX, GALLERY).template_count == 1
    entries = [e for e in service.audit.entries(CTX) if e.action == "template.enrolled"]
    assert [e.details["template_id"] for e in entries] == [templates[0].template_id]
    row = service.requests.get(CTX, REQUEST)
    assert row is not None
    assert row.result is not None
    assert row.result["template_id"] == templates[0].template_id


def _match_setup(service: FaceService) -> dict[str, Any]:
    _prison(service)
    for i, name in enumerate(("alice", "bob")):
        consent_id = _consent(service, name)
        _enrol(service, name, consent_id, _vector(i))
    decision = service.decide(CTX, _op("search"), GALLERY, face_count=1, purpose="entry at gate B", top_k=2)
    result = service.match(CTX, GALLERY, decision, _vector(0), top_k=2)
    return {"decision": decision, "result": result}


def _match_run(service: FaceService, s: dict[str, Any]) -> Any:
    return service.record_result(
        CTX, GALLERY, s["decision"], s["result"], request_id=REQUEST, purpose="entry at gate B", case_reference="c-9"
    )


def _match_check(service: FaceService, s: dict[str, Any]) -> None:
    rows = list(RequestRecord.query(TENANT, RequestRecord.request_id == REQUEST))
    assert len(rows) == 1
    assert rows[0].purpose == "entry at gate B"
    assert rows[0].case_reference == "c-9"
    entries = [e for e in service.audit.entries(CTX) if e.action == "search.completed"]
    assert len(entries) == 1, f"{len(entries)} audit entries for one search"
    assert entries[0].details["request_id"] == REQUEST
    assert entries[0].details["purpose"] == "entry at gate B"


def _failed_run(service: FaceService, s: dict[str, Any]) -> Any:
    return service.record_outcome(
        CTX,
        request_id=REQUEST,
        operation="search",
        gallery_id=GALLERY,
        status="failed",
        result={"reasons": [{"code": "image.not_an_image", "message": "not an image"}]},
    )


def _failed_check(service: FaceService, s: dict[str, Any]) -> None:
    assert service.requests.get(CTX, REQUEST) is not None
    entries = [e for e in service.audit.entries(CTX) if e.action == "request.failed"]
    assert len(entries) == 1


def _once_run(service: FaceService, s: dict[str, Any]) -> Any:
    return service.audit.append(CTX, "probe.deleted", {"request_id": REQUEST}, once=f"{REQUEST}:probe.deleted")


def _once_check(service: FaceService, s: dict[str, Any]) -> None:
    assert [e.action for e in service.audit.entries(CTX)].count("probe.deleted") == 1


def _review_setup(service: FaceService) -> dict[str, Any]:
    s = _match_setup(service)
    row = service.record_result(CTX, GALLERY, s["decision"], s["result"], request_id=REQUEST, purpose="entry")
    assert row.review_state == "pending"
    return s


REVIEWER = TenantContext(tenant_id=TENANT, actor="officer-2")


def _review_run(service: FaceService, s: dict[str, Any]) -> Any:
    return service.review(REVIEWER, REQUEST, confirm=True)


def _review_check(service: FaceService, s: dict[str, Any]) -> None:
    row = service.requests.get(CTX, REQUEST)
    assert row is not None
    assert row.reviewers == ("officer-2",)
    entries = [e for e in service.audit.entries(CTX) if e.action == "review.recorded"]
    assert len(entries) == 1


def _erase_setup(service: FaceService) -> dict[str, Any]:
    _prison(service)
    for i in range(3):
        _enrol(service, "alice", _consent(service, "alice"), _vector(i))
    _enrol(service, "bob", _consent(service, "bob"), _vector(9))
    decision = service.decide(CTX, _op("search"), GALLERY, face_count=1, purpose="entry", top_k=2)
    result = service.match(CTX, GALLERY, decision, _vector(0), top_k=2)
    service.record_result(CTX, GALLERY, decision, result, request_id=REQUEST, purpose="entry")
    return {"templates": {t.template_id for t in service.templates.of_subject(CTX, "alice")}}


def _erase_run(service: FaceService, s: dict[str, Any]) -> Any:
    return service.erase_subject(CTX, "alice")


def _erase_check(service: FaceService, s: dict[str, Any]) -> None:
    assert service.templates.of_subject(CTX, "alice") == []
    assert len(service.templates.of_subject(CTX, "bob")) == 1
    assert service.galleries.get(CTX, GALLERY).template_count == 1
    assert all(c.status == "revoked" for c in service.consents.of_subject(CTX, "alice"))
    audited = {
        tid
        for e in service.audit.entries(CTX)
        if e.action == "subject.erasure.templates_deleted"
        for tid in e.details["template_ids"]  # type: ignore[union-attr]
    }
    assert audited == s["templates"], "every deleted template is audited exactly as deleted"
    row = service.requests.get(CTX, REQUEST)
    assert row is not None
    assert row.result is not None
    assert "alice" not in str(row.result), "the request row still names the erased subject"


def _consent_run(service: FaceService, s: dict[str, Any]) -> Any:
    return service.record_consent(
        CTX, subject_id="carol", purpose="access_control", evidence=b"x", expires_at=START + timedelta(days=9)
    )


def _consent_check(service: FaceService, s: dict[str, Any]) -> None:
    consents = service.consents.of_subject(CTX, "carol")
    entries = [e for e in service.audit.entries(CTX) if e.action == "consent.recorded"]
    assert {c.consent_id for c in consents} == {e.details["consent_id"] for e in entries}, "consents and entries agree"


def _gallery_run(service: FaceService, s: dict[str, Any]) -> Any:
    return service.create_gallery(CTX, "visitors", name="Visitors", use_case="access_control")


def _gallery_check(service: FaceService, s: dict[str, Any]) -> None:
    galleries = {g.gallery_id for g in service.galleries.list_all(CTX)}
    entries = [e.details["gallery_id"] for e in service.audit.entries(CTX) if e.action == "gallery.created"]
    assert galleries == set(entries), "galleries and their entries agree"
    assert entries.count("visitors") == 1


def _approval_setup(service: FaceService) -> dict[str, Any]:
    service.registry.register(TENANT, name="State Prison 7", sector="corrections", country="US", jurisdiction="US-WA")
    return {}


def _approval_run(service: FaceService, s: dict[str, Any]) -> Any:
    return service.approve_use_case(
        OPERATOR, TENANT, use_case="access_control", deployment="closed_facility", expires_at=START + timedelta(days=9)
    )


def _approval_check(service: FaceService, s: dict[str, Any]) -> None:
    approvals = service.registry.get(TENANT).approvals
    entries = [e for e in service.audit.entries(CTX) if e.action == "approval.granted"]
    assert len(approvals) == len(entries) >= 1, "every approval recorded has its entry, and only those"


def _revoke_setup(service: FaceService) -> dict[str, Any]:
    _prison(service)
    consent_id = _consent(service, "alice")
    _enrol(service, "alice", consent_id, _vector(1))
    _enrol(service, "alice", consent_id, _vector(2))
    return {"consent_id": consent_id}


def _revoke_run(service: FaceService, s: dict[str, Any]) -> Any:
    return service.revoke_consent(CTX, "alice", s["consent_id"])


def _revoke_check(service: FaceService, s: dict[str, Any]) -> None:
    assert service.templates.of_subject(CTX, "alice") == []
    assert service.galleries.get(CTX, GALLERY).template_count == 0
    assert all(c.status == "revoked" for c in service.consents.of_subject(CTX, "alice"))
    deleted = {
        tid
        for e in service.audit.entries(CTX)
        if e.action.startswith("consent.revoked")
        for tid in e.details["template_ids"]  # type: ignore[union-attr]
    }
    assert len(deleted) == 2, "each deleted template is audited once"


PATHS = [
    Path("enrol", _enrol_setup, _enrol_run, _enrol_check),
    Path("search result", _match_setup, _match_run, _match_check),
    Path("failure record", lambda svc: (_prison(svc), {})[1], _failed_run, _failed_check),
    Path("probe deleted", lambda svc: (_prison(svc), {})[1], _once_run, _once_check),
    Path("review", _review_setup, _review_run, _review_check, retry_errors=(ConflictError,)),
    Path("erasure", _erase_setup, _erase_run, _erase_check),
    Path("consent", lambda svc: (_prison(svc), {})[1], _consent_run, _consent_check),
    Path("gallery", lambda svc: (_prison(svc), {})[1], _gallery_run, _gallery_check),
    Path("approval", _approval_setup, _approval_run, _approval_check),
    Path("consent withdrawal", _revoke_setup, _revoke_run, _revoke_check),
]


@pytest.fixture
def fresh(dynamo: str) -> Callable[[], FaceService]:
    """A service over emptied tables (the tables of this test, truncated between runs)."""

    def make() -> FaceService:
        for model in ALL_MODELS:
            with model.batch_write() as batch:
                for item in model.scan():
                    batch.delete(item)
        return FaceService(clock=lambda: START)

    return make


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_every_write_fails_in_turn_and_the_retry_converges(
    path: Path, fresh: Callable[[], FaceService], injector: Injector
) -> None:
    service = fresh()
    state = path.setup(service)
    with armed(injector, None):
        path.run(service, state)
    total = len(injector.writes)
    assert total >= 1
    path.check(service, state)

    for n in range(1, total + 1):
        for mode in ("before", "after"):
            service = fresh()
            state = path.setup(service)
            with armed(injector, n, mode), pytest.raises(FacegateError):
                path.run(service, state)
            with contextlib.suppress(*path.retry_errors):
                path.run(service, state)  # the retry, with the same inputs
            path.check(service, state)
            service.audit.verify(CTX)


def test_concurrent_twins_of_one_enrolment_store_one_template(fresh: Callable[[], FaceService]) -> None:
    service = fresh()
    state = _enrol_setup(service)
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def twin() -> None:
        barrier.wait()
        try:
            _enrol_run(FaceService(clock=lambda: START), state)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=twin) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [
        (type(e), str(e), getattr(e.__cause__, "cancellation_reasons", None))
        for e in errors
        if not isinstance(e, ConflictError)
    ] == []
    _enrol_check(service, state)
    service.audit.verify(CTX)


def test_two_reviewers_at_the_same_moment_both_count(fresh: Callable[[], FaceService]) -> None:
    service = fresh()
    _review_setup(service)
    results: list[str] = []
    barrier = threading.Barrier(2)

    def review(actor: str) -> None:
        barrier.wait()
        row = FaceService(clock=lambda: START).review(
            TenantContext(tenant_id=TENANT, actor=actor), REQUEST, confirm=True
        )
        results.append(row.review_state)

    threads = [threading.Thread(target=review, args=(a,)) for a in ("officer-2", "officer-3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    row = service.requests.get(CTX, REQUEST)
    assert row is not None
    assert sorted(row.reviewers) == ["officer-2", "officer-3"]
    assert row.review_state == "confirmed"
    assert [e.action for e in service.audit.entries(CTX)].count("review.recorded") == 2
    service.audit.verify(CTX)


def test_an_enrolment_racing_an_erasure_leaves_no_template(fresh: Callable[[], FaceService]) -> None:
    """Erasure revokes the consent first, and the template write checks the consent in its own
    transaction: whichever order they land in, nothing of the subject is left."""
    for _ in range(5):
        service = fresh()
        _race_enrolment_and_erasure(_enrol_setup(service))
        assert service.templates.of_subject(CTX, "alice") == []
        assert service.galleries.get(CTX, GALLERY).template_count == 0
        assert all(c.status == "revoked" for c in service.consents.of_subject(CTX, "alice"))
        service.audit.verify(CTX)


def _race_enrolment_and_erasure(state: dict[str, Any]) -> None:
    barrier = threading.Barrier(2)

    def enrol() -> None:
        barrier.wait()
        with contextlib.suppress(FacegateError):  # refused: the consent was revoked first
            _enrol_run(FaceService(clock=lambda: START), state)

    def erase() -> None:
        barrier.wait()
        FaceService(clock=lambda: START).erase_subject(CTX, "alice")

    threads = [threading.Thread(target=enrol), threading.Thread(target=erase)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
