"""The promise under attack: every operation through the gate, no 1:1-to-1:N loop, per-tenant caps,
counts that TTL cannot leave stale, index reads that drop other tenants' items.

GIVEN/WHEN/THEN per test, on moto and on DynamoDB Local. Templates are synthetic unit vectors (the
vision pipeline is not what these tests are about); near-duplicates are made by adding noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from facegate import observability
from facegate.embedding import MODEL_VERSION, Embedding
from facegate.errors import EnumerationRefusedError, GalleryNotFoundError, PolicyDeniedError
from facegate.policy import Operation, PolicyGate
from facegate.policy.catalog import Catalog, default_catalog
from facegate.service import FaceService
from facegate.store.models import SEP, TemplateRecord
from facegate.tenancy import TenantContext

START = datetime.now(UTC).replace(second=0, microsecond=0)
OPERATOR = "operator@facegate"
PRISON = TenantContext(tenant_id="state-prison-7", actor="officer-1")
REVIEWER = TenantContext(tenant_id="state-prison-7", actor="officer-2")
OTHER = TenantContext(tenant_id="other-prison-9", actor="officer-9")


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now


def _vector(seed: int, *, near: Embedding | None = None, noise: float = 0.0) -> Embedding:
    rng = np.random.default_rng(seed)
    base = near.vector if near is not None else rng.standard_normal(128).astype(np.float32)
    v = base + noise * rng.standard_normal(128).astype(np.float32)
    return Embedding((v / np.linalg.norm(v)).astype(np.float32), MODEL_VERSION)


def _catalog(**changes: object) -> Catalog:
    """The shipped catalog with some of access control's numbers changed (small caps to reach)."""
    base = default_catalog()
    use_case = base.use_cases["access_control"].model_copy(update=changes)
    return base.model_copy(update={"use_cases": {**base.use_cases, "access_control": use_case}})


def _service(clock: Clock, **changes: object) -> FaceService:
    gate = PolicyGate(catalog=_catalog(**changes)) if changes else PolicyGate()
    return FaceService(gate=gate, clock=clock)


def _tenant(service: FaceService, ctx: TenantContext = PRISON, galleries: tuple[str, ...] = ("residents",)) -> None:
    service.registry.register(
        ctx.tenant_id, name=ctx.tenant_id, sector="corrections", country="US", jurisdiction="US-WA"
    )
    service.approve_use_case(
        OPERATOR,
        ctx.tenant_id,
        use_case="access_control",
        deployment="closed_facility",
        expires_at=START + timedelta(days=365),
    )
    for gallery in galleries:
        service.create_gallery(ctx, gallery, name=gallery, use_case="access_control")


def _enrol(
    service: FaceService,
    subject: str,
    embedding: Embedding,
    *,
    ctx: TenantContext = PRISON,
    gallery: str = "residents",
    days: int = 200,
) -> str:
    consent = service.record_consent(
        ctx,
        subject_id=subject,
        purpose="access_control",
        evidence=b"release",
        expires_at=service.clock() + timedelta(days=days),
    )
    decision = service.decide(
        ctx, Operation.ENROL, gallery, face_count=1, subject_id=subject, consent_id=consent.consent_id
    )
    stored = service.store_template(
        ctx, gallery, subject_id=subject, consent_id=consent.consent_id, embedding=embedding, decision=decision
    )
    return stored.template_id


def _verify(service: FaceService, subject: str, probe: Embedding, *, content: str | None = None) -> bool:
    decision = service.decide(
        PRISON,
        Operation.VERIFY,
        "residents",
        face_count=1,
        subject_id=subject,
        purpose="entry at gate B",
        content_hash=content,
    )
    result = service.match(PRISON, "residents", decision, probe, subject_id=subject, purpose="entry at gate B")
    return bool(result.to_dict()["matched"])


def _codes(exc: pytest.ExceptionInfo[PolicyDeniedError]) -> list[str]:
    return exc.value.decision.codes  # type: ignore[attr-defined, no-any-return]


# --- every operation through the gate (item 7) --------------------------------------------------------


def test_a_suspended_tenant_can_neither_record_consent_nor_confirm_an_identification(dynamo: str) -> None:
    clock = Clock()
    service = _service(clock)
    _tenant(service)
    for i in range(2):
        _enrol(service, f"s{i}", _vector(i))
    decision = service.decide(PRISON, Operation.SEARCH, "residents", face_count=1, purpose="entry", top_k=2)
    result = service.match(PRISON, "residents", decision, _vector(0), top_k=2)
    row = service.record_result(PRISON, "residents", decision, result, request_id="r-1", purpose="entry")
    assert row.review_state == "pending"

    service.registry.set_status(PRISON.tenant_id, "suspended")

    with pytest.raises(PolicyDeniedError) as review:
        service.review(REVIEWER, "r-1", confirm=True)
    assert "request.tenant_inactive" in _codes(review)
    with pytest.raises(PolicyDeniedError) as consent:
        service.record_consent(
            PRISON, subject_id="late", purpose="access_control", evidence=b"x", expires_at=START + timedelta(days=9)
        )
    assert "request.tenant_inactive" in _codes(consent)
    stored = service.requests.get(PRISON, "r-1")
    assert stored is not None
    assert stored.reviewers == ()
    denied = [e for e in service.audit.entries(PRISON) if e.action == "request.denied"]
    assert len(denied) == 2
    service.audit.verify(PRISON)


def test_an_expired_approval_confirms_nothing(dynamo: str) -> None:
    clock = Clock()
    service = _service(clock)
    _tenant(service)
    for i in range(2):
        _enrol(service, f"s{i}", _vector(i))
    decision = service.decide(PRISON, Operation.SEARCH, "residents", face_count=1, purpose="entry", top_k=2)
    result = service.match(PRISON, "residents", decision, _vector(1), top_k=2)
    service.record_result(PRISON, "residents", decision, result, request_id="r-2", purpose="entry")

    clock.now = START + timedelta(days=400)

    with pytest.raises(PolicyDeniedError) as review:
        service.review(REVIEWER, "r-2", confirm=True)
    assert "request.approval_expired" in _codes(review)


# --- no 1:1-to-1:N loop (item 5) ----------------------------------------------------------------------


def test_the_same_face_verified_against_a_second_subject_is_refused_and_audited(dynamo: str) -> None:
    service = _service(Clock())
    _tenant(service)
    for i in range(3):
        _enrol(service, f"s{i}", _vector(i))
    stranger = _vector(99)

    assert _verify(service, "s0", stranger) is False
    with pytest.raises(EnumerationRefusedError) as second:
        _verify(service, "s1", _vector(7, near=stranger, noise=0.05))  # another photo of the same stranger
    assert "request.enumeration_pattern" in _codes(second)  # type: ignore[arg-type]
    denied = [e for e in service.audit.entries(PRISON) if e.action == "request.denied"]
    assert [d.details["decision"]["reasons"][0]["code"] for d in denied] == ["request.enumeration_pattern"]  # type: ignore[index, call-overload]


def test_verifying_the_same_person_again_and_again_is_allowed(dynamo: str) -> None:
    service = _service(Clock())
    _tenant(service)
    alice = _vector(1)
    _enrol(service, "alice", alice)
    for k in range(4):
        assert _verify(service, "alice", _vector(10 + k, near=alice, noise=0.02)) is True


def test_different_people_verified_against_different_subjects_are_not_a_sweep(dynamo: str) -> None:
    service = _service(Clock())
    _tenant(service)
    people = [_vector(i) for i in range(4)]
    for i, person in enumerate(people):
        _enrol(service, f"s{i}", person)
    for i, person in enumerate(people):
        assert _verify(service, f"s{i}", _vector(20 + i, near=person, noise=0.02)) is True


def test_the_same_image_against_a_second_subject_is_refused_at_the_face_recheck(dynamo: str) -> None:
    service = _service(Clock())
    _tenant(service)
    for i in range(2):
        _enrol(service, f"s{i}", _vector(i))
    digest = "ab" * 32
    service.decide(
        PRISON, Operation.VERIFY, "residents", face_count=1, subject_id="s0", purpose="e", content_hash=digest
    )
    with pytest.raises(PolicyDeniedError) as again:
        service.decide(
            PRISON, Operation.VERIFY, "residents", face_count=1, subject_id="s1", purpose="e", content_hash=digest
        )
    assert _codes(again) == ["request.enumeration_pattern"]


def test_distinct_subjects_per_day_are_capped(dynamo: str) -> None:
    service = _service(Clock(), verify_distinct_subjects_per_day=3)
    _tenant(service)
    people = [_vector(i) for i in range(4)]
    for i, person in enumerate(people):
        _enrol(service, f"s{i}", person)
    for i in range(3):
        _verify(service, f"s{i}", _vector(30 + i, near=people[i], noise=0.02))
    _verify(service, "s0", _vector(40, near=people[0], noise=0.02))  # the same subject again counts once
    with pytest.raises(PolicyDeniedError) as fourth:
        _verify(service, "s3", _vector(41, near=people[3], noise=0.02))
    assert _codes(fourth) == ["request.distinct_subjects_limited"]


# --- bounded per tenant, not per gallery (item 6) -----------------------------------------------------


def test_a_tenant_cannot_hold_more_galleries_than_its_use_case_allows(dynamo: str) -> None:
    service = _service(Clock())
    cap = service.gate.catalog.use_cases["access_control"].max_galleries_per_tenant
    _tenant(service, galleries=tuple(f"g{i}" for i in range(cap)))
    with pytest.raises(PolicyDeniedError) as more:
        service.create_gallery(PRISON, "one-more", name="one more", use_case="access_control")
    assert _codes(more) == ["request.tenant_gallery_cap"]
    assert len(service.galleries.list_all(PRISON)) == cap


def test_templates_are_capped_across_the_tenants_galleries(dynamo: str) -> None:
    service = _service(Clock(), max_enrolled_per_tenant=3)
    _tenant(service, galleries=("east", "west"))
    _enrol(service, "a", _vector(1), gallery="east")
    _enrol(service, "b", _vector(2), gallery="east")
    _enrol(service, "c", _vector(3), gallery="west")
    with pytest.raises(PolicyDeniedError) as fourth:
        _enrol(service, "d", _vector(4), gallery="west")
    assert _codes(fourth) == ["request.tenant_enrolment_cap"]
    service.erase_subject(PRISON, "a")  # erasure gives the room back
    _enrol(service, "d", _vector(4), gallery="west")


def test_one_search_budget_across_galleries(dynamo: str) -> None:
    service = _service(Clock(), search_comparisons_per_day=5)
    _tenant(service, galleries=("east", "west"))
    for i in range(3):
        _enrol(service, f"e{i}", _vector(i), gallery="east")
        _enrol(service, f"w{i}", _vector(10 + i), gallery="west")
    service.decide(PRISON, Operation.SEARCH, "east", face_count=1, purpose="entry")  # 3 compared
    with pytest.raises(PolicyDeniedError) as west:  # 6 > 5: the budget is the tenant's, not the gallery's
        service.decide(PRISON, Operation.SEARCH, "west", face_count=1, purpose="entry")
    assert _codes(west) == ["request.search_budget_exceeded"]


# --- counts that TTL cannot leave stale (item 12) -----------------------------------------------------


def test_expired_templates_free_their_gallery_room_and_are_audited(dynamo: str) -> None:
    clock = Clock()
    service = _service(clock, max_gallery_size=2)
    _tenant(service)
    short = {_enrol(service, "a", _vector(1), days=1), _enrol(service, "b", _vector(2), days=1)}
    clock.now = START + timedelta(days=2)

    _enrol(service, "c", _vector(3))

    assert service.galleries.get(PRISON, "residents").template_count == 1
    assert [t.subject_id for t in service.templates.stored_in(PRISON, "residents")] == ["c"]
    expired = [e for e in service.audit.entries(PRISON) if e.action == "template.expired"]
    assert {t for e in expired for t in e.details["template_ids"]} == short  # type: ignore[union-attr]
    service.audit.verify(PRISON)


def test_a_template_removed_by_ttl_is_recounted_when_the_gallery_looks_full(dynamo: str) -> None:
    clock = Clock()
    service = _service(clock, max_gallery_size=2)
    _tenant(service)
    gone = _enrol(service, "a", _vector(1))
    _enrol(service, "b", _vector(2))
    TemplateRecord(f"{PRISON.tenant_id}{SEP}residents", gone).delete()  # what DynamoDB's TTL does: no count change

    _enrol(service, "c", _vector(3))

    assert service.galleries.get(PRISON, "residents").template_count == 2
    assert any(e.action == "gallery.recounted" for e in service.audit.entries(PRISON))


# --- index reads drop other tenants' items (item 3) ---------------------------------------------------


def test_an_item_pointing_into_another_tenants_index_is_ignored_by_verify_search_and_erasure(dynamo: str) -> None:
    service = _service(Clock())
    _tenant(service)
    _tenant(service, OTHER, galleries=("staff",))
    victim = _vector(5)
    _enrol(service, "alice", victim, ctx=OTHER, gallery="staff")
    # A write IAM allows the prison (its own partition) but naming the other tenant's subject index key.
    TemplateRecord(
        f"{PRISON.tenant_id}{SEP}residents",
        f"alice{SEP}planted",
        tenant_subject=f"{OTHER.tenant_id}{SEP}alice",
        tenant_id=PRISON.tenant_id,
        gallery_id="residents",
        subject_id="alice",
        embedding=_vector(6).to_bytes(),
        model_version=MODEL_VERSION,
        consent_id="none",
        created_at=START,
        expires_at=START + timedelta(days=30),
    ).save()
    before = observability.counts[observability.FOREIGN_ITEM]

    found = service.templates.of_subject(OTHER, "alice")
    indexed = service.templates.indexed_of_subject(OTHER, "alice")
    receipt = service.erase_subject(OTHER, "alice")

    assert [t.gallery_id for t in found] == ["staff"]
    assert [t.gallery_id for t in indexed] == ["staff"]
    assert receipt.templates_deleted == 1
    assert (
        TemplateRecord.count(f"{PRISON.tenant_id}{SEP}residents") == 1
    )  # the planted item is not the other's to erase
    assert observability.counts[observability.FOREIGN_ITEM] > before
    with pytest.raises(GalleryNotFoundError):
        _verify(service, "alice", _vector(6))  # nor does the prison's own verify: the item is inconsistent
    decision = service.decide(PRISON, Operation.SEARCH, "residents", face_count=1, purpose="entry")
    assert service.match(PRISON, "residents", decision, _vector(6)).to_dict()["candidates"] == []
