"""The domain service end to end over real embeddings, on moto and on DynamoDB Local.

GIVEN/WHEN/THEN per test. The probes and enrolment photos are dlib's johns (real faces through the
real pipeline); the tables are real DynamoDB semantics on both backends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from facegate import datasets
from facegate.embedding import fuse
from facegate.errors import ConflictError, ConsentError, InvalidRequestError, PhotosDisagreeError, PolicyDeniedError
from facegate.match import SearchResult, VerifyResult
from facegate.service import FaceService
from facegate.store.models import GalleryRecord, TemplateRecord
from facegate.store.repositories import TenantRegistry
from facegate.tenancy import TenantContext
from facegate.vision import FaceAnalysis, FacePipeline, decode_image
from facegate.vision.decode import BgrImage, cv2

# The injected clock stands still during a test, half an hour ahead of the real time: DynamoDB Local
# runs TTL expiry on the wall clock, and a rate counter expires two windows after its own ends, so a
# clock taken at import (minutes before the test runs, in a long suite) let DynamoDB Local delete a
# burst's counter mid-burst. Ahead, every counter outlives the suite.
START = (datetime.now(UTC) + timedelta(minutes=30)).replace(second=0, microsecond=0)


@dataclass
class Clock:
    now: datetime = START
    calls: list[datetime] = field(default_factory=list)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def analyses(pipeline: FacePipeline, johns: dict[str, list[Path]]) -> dict[str, list[FaceAnalysis]]:
    """Each john's photos, analysed once (chips padded for context)."""
    out: dict[str, list[FaceAnalysis]] = {}
    for name, paths in johns.items():
        out[name] = [
            pipeline.analyse_image(
                np.asarray(cv2.copyMakeBorder(decode_image(p.read_bytes()), 75, 75, 75, 75, cv2.BORDER_CONSTANT))
            )
            for p in paths[:4]
        ]
    return out


@pytest.fixture(scope="module")
def group_of_six(pipeline: FacePipeline) -> FaceAnalysis:
    """Eight people of about the same size (dlib's 2008_004176.jpg): every face is comparable."""
    path = datasets.fetch_dlib() / "examples" / "faces" / "2008_004176.jpg"
    analysis = pipeline.analyse(path.read_bytes())
    assert analysis.face_count == 8
    return analysis


def _with_bystander(johns: dict[str, list[Path]], subject: str, bystander: str) -> BgrImage:
    """One john's photo large in the middle of a grey canvas, another john small in a corner."""
    canvas = np.full((700, 700, 3), 128, np.uint8)
    big = np.asarray(cv2.resize(decode_image(johns[subject][1].read_bytes()), (330, 330)))
    small = np.asarray(cv2.resize(decode_image(johns[bystander][1].read_bytes()), (130, 130)))
    canvas[185:515, 185:515] = big
    canvas[30:160, 30:160] = small
    return canvas


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(dynamo: str, clock: Clock) -> FaceService:
    return FaceService(clock=clock)


OPERATOR = "operator@facegate"
PRISON = TenantContext(tenant_id="state-prison-7", actor="officer-1")


def _prison(service: FaceService) -> str:
    service.registry.register(
        "state-prison-7", name="State Prison 7", sector="corrections", country="US", jurisdiction="US-WA"
    )
    service.approve_use_case(
        OPERATOR,
        "state-prison-7",
        use_case="access_control",
        deployment="closed_facility",
        expires_at=START + timedelta(days=365),
    )
    service.create_gallery(PRISON, "residents", name="Residents and staff", use_case="access_control")
    return "residents"


def _consent(
    service: FaceService, ctx: TenantContext, subject: str, purpose: str = "access_control", days: int = 200
) -> str:
    consent = service.record_consent(
        ctx,
        subject_id=subject,
        purpose=purpose,
        evidence=f"signed release of {subject}".encode(),
        expires_at=START + timedelta(days=days),
    )
    return consent.consent_id


def _bank(service: FaceService) -> TenantContext:
    """A bank approved for consented 1:1 verification, with its customers' gallery."""
    bank = TenantContext(tenant_id="examplebank", actor="kyc-service")
    service.registry.register("examplebank", name="Example Bank", sector="private", country="DE", jurisdiction="DE")
    service.approve_use_case(
        OPERATOR,
        "examplebank",
        use_case="identity_verification",
        deployment="online_service",
        expires_at=START + timedelta(days=365),
    )
    service.create_gallery(bank, "customers", name="Customers", use_case="identity_verification")
    return bank


def _enrol_all(service: FaceService, ctx: TenantContext, gallery: str, analyses: dict[str, list[FaceAnalysis]]) -> None:
    for name, items in analyses.items():
        consent_id = _consent(service, ctx, name)
        service.enrol(ctx, gallery, subject_id=name, consent_id=consent_id, analysis=items[0])


def test_prison_search_finds_the_person_and_waits_for_two_reviewers(
    service: FaceService, analyses: dict[str, list[FaceAnalysis]]
) -> None:
    gallery = _prison(service)
    _enrol_all(service, PRISON, gallery, analyses)
    name = next(iter(analyses))

    outcome = service.search(PRISON, gallery, analysis=analyses[name][2], top_k=3, purpose="entry at gate B")

    assert isinstance(outcome.result, SearchResult)
    assert outcome.result.candidates[0].subject_id == name
    assert outcome.result.gallery_size == len(analyses)
    assert outcome.result.expected_false_candidates > 0
    assert outcome.review_state == "pending"
    assert "human_review_before_action" in outcome.decision.obligations
    with pytest.raises(PolicyDeniedError) as own:  # the requester never reviews their own identification
        service.review(PRISON, outcome.request_id, confirm=True)
    assert own.value.decision.codes == ["request.self_review"]  # type: ignore[attr-defined]
    reviewer = TenantContext(tenant_id="state-prison-7", actor="officer-2")
    first = service.review(reviewer, outcome.request_id, confirm=True)
    assert first.review_state == "pending"
    with pytest.raises(ConflictError, match="each reviewer counts once"):
        service.review(reviewer, outcome.request_id, confirm=True)
    second = service.review(
        TenantContext(tenant_id="state-prison-7", actor="officer-3"), outcome.request_id, confirm=True
    )
    assert second.review_state == "confirmed"
    assert service.audit.verify(PRISON)


def test_a_city_camera_network_application_is_refused_with_reasons_and_audited(service: FaceService) -> None:
    service.registry.register(
        "capital-city", name="Capital City", sector="government", country="GB", jurisdiction="GB-LND"
    )
    with pytest.raises(PolicyDeniedError) as refused:
        service.approve_use_case(
            OPERATOR,
            "capital-city",
            use_case="access_control",
            deployment="camera_network",
            expires_at=START + timedelta(days=365),
            source_kind="stream",
        )
    codes = refused.value.decision.codes  # type: ignore[attr-defined]
    assert "never.public_space_identification" in codes
    assert "never.realtime_stream" in codes
    assert service.registry.get("capital-city").approvals == ()
    city = TenantContext(tenant_id="capital-city", actor=OPERATOR)
    assert [e.action for e in service.audit.entries(city)] == ["approval.refused"]


def test_enrolment_without_consent_is_refused_and_writes_nothing(
    service: FaceService, analyses: dict[str, list[FaceAnalysis]]
) -> None:
    gallery = _prison(service)
    name = next(iter(analyses))
    with pytest.raises(PolicyDeniedError) as refused:
        service.enrol(PRISON, gallery, subject_id=name, consent_id="no-such-consent", analysis=analyses[name][0])
    assert refused.value.decision.codes == ["request.consent_missing"]  # type: ignore[attr-defined]
    assert service.galleries.get(PRISON, gallery).template_count == 0
    assert service.templates.in_gallery(PRISON, gallery) == []


def test_consent_for_another_purpose_does_not_allow_enrolment(
    service: FaceService, analyses: dict[str, list[FaceAnalysis]]
) -> None:
    gallery = _prison(service)
    name = next(iter(analyses))
    with pytest.raises(PolicyDeniedError) as unapproved:  # consent is collected only for approved use cases
        _consent(service, PRISON, name, purpose="photo_organization")
    assert unapproved.value.decision.codes == ["request.not_approved"]  # type: ignore[attr-defined]
    service.approve_use_case(
        OPERATOR,
        "state-prison-7",
        use_case="identity_verification",
        deployment="closed_facility",
        expires_at=START + timedelta(days=365),
    )
    consent_id = _consent(service, PRISON, name, purpose="identity_verification")
    with pytest.raises(PolicyDeniedError) as refused:
        service.enrol(PRISON, gallery, subject_id=name, consent_id=consent_id, analysis=analyses[name][0])
    assert refused.value.decision.codes == ["request.consent_missing"]  # type: ignore[attr-defined]


def test_a_crowd_photo_cannot_be_enrolled_or_searched(
    service: FaceService, analyses: dict[str, list[FaceAnalysis]], group_of_six: FaceAnalysis
) -> None:
    gallery = _prison(service)
    consent_id = _consent(service, PRISON, "someone")
    with pytest.raises(PolicyDeniedError) as enrol:
        service.enrol(PRISON, gallery, subject_id="someone", consent_id=consent_id, analysis=group_of_six)
    assert enrol.value.decision.codes == ["request.enrolment_needs_one_face"]  # type: ignore[attr-defined]
    with pytest.raises(PolicyDeniedError) as search:
        service.search(PRISON, gallery, analysis=group_of_six, top_k=1, purpose="entry")
    assert search.value.decision.codes == ["request.crowd_probe"]  # type: ignore[attr-defined]


def test_template_expiry_is_the_earliest_of_consent_and_retention(
    service: FaceService, analyses: dict[str, list[FaceAnalysis]]
) -> None:
    gallery = _prison(service)
    name = next(iter(analyses))
    short = _consent(service, PRISON, name, days=30)
    long_ = _consent(service, PRISON, name, days=2000)
    a = service.enrol(PRISON, gallery, subject_id=name, consent_id=short, analysis=analyses[name][0])
    b = service.enrol(PRISON, gallery, subject_id=name, consent_id=long_, analysis=analyses[name][1])
    assert a.expires_at == START + timedelta(days=30)
    assert b.expires_at == START + timedelta(days=service.gate.catalog.use_cases["access_control"].retention_days)


def test_revoking_consent_deletes_the_templates_enrolled_under_it(
    service: FaceService, analyses: dict[str, list[FaceAnalysis]]
) -> None:
    gallery = _prison(service)
    name = next(iter(analyses))
    first = _consent(service, PRISON, name)
    second = _consent(service, PRISON, name)
    service.enrol(PRISON, gallery, subject_id=name, consent_id=first, analysis=analyses[name][0])
    service.enrol(PRISON, gallery, subject_id=name, consent_id=second, analysis=analyses[name][1])

    assert service.revoke_consent(PRISON, name, first) == 1

    left = service.templates.of_subject(PRISON, name)
    assert [t.consent_id for t in left] == [second]
    assert service.galleries.get(PRISON, gallery).template_count == 1


def test_erasure_leaves_zero_templates_and_a_receipt(
    service: FaceService, analyses: dict[str, list[FaceAnalysis]]
) -> None:
    gallery = _prison(service)
    name = next(iter(analyses))
    for item in analyses[name][:3]:
        service.enrol(PRISON, gallery, subject_id=name, consent_id=_consent(service, PRISON, name), analysis=item)

    receipt = service.erase_subject(PRISON, name)

    assert receipt.templates_deleted == 3
    assert service.templates.of_subject(PRISON, name) == []
    assert TemplateRecord.count(f"state-prison-7#{gallery}") == 0
    assert service.galleries.get(PRISON, gallery).template_count == 0
    entry = next(e for e in service.audit.entries(PRISON) if e.seq == receipt.audit_seq)
    assert entry.action == "subject.erased"
    assert entry.details["templates_remaining"] == 0
    assert all(c.status == "revoked" for c in service.consents.of_subject(PRISON, name))
    service.audit.verify(PRISON)


def test_another_tenants_gallery_looks_exactly_like_a_missing_one(
    service: FaceService, analyses: dict[str, list[FaceAnalysis]]
) -> None:
    gallery = _prison(service)
    _enrol_all(service, PRISON, gallery, analyses)
    service.registry.register("other-prison", name="Other", sector="corrections", country="US", jurisdiction="US-OR")
    service.approve_use_case(
        OPERATOR,
        "other-prison",
        use_case="access_control",
        deployment="closed_facility",
        expires_at=START + timedelta(days=30),
    )
    other = TenantContext(tenant_id="other-prison", actor="intruder")
    probe = next(iter(analyses.values()))[1]

    with pytest.raises(PolicyDeniedError) as foreign:
        service.search(other, gallery, analysis=probe, top_k=1, purpose="entry")
    with pytest.raises(PolicyDeniedError) as missing:
        service.search(other, "no-such-gallery", analysis=probe, top_k=1, purpose="entry")

    assert foreign.value.decision.codes == ["request.gallery_not_found"]  # type: ignore[attr-defined]
    assert str(foreign.value) == str(missing.value)
    assert foreign.value.decision.to_dict() == missing.value.decision.to_dict()  # type: ignore[attr-defined]
    assert service.templates.of_subject(other, next(iter(analyses))) == []


def test_a_burst_of_searches_over_the_rate_limit_is_refused(
    service: FaceService, analyses: dict[str, list[FaceAnalysis]]
) -> None:
    gallery = _prison(service)
    _enrol_all(service, PRISON, gallery, analyses)
    probe = next(iter(analyses.values()))[1]
    limit = service.gate.catalog.use_cases["access_control"].rate_limits["search"].per_minute
    for _ in range(limit):
        service.search(PRISON, gallery, analysis=probe, top_k=1, purpose="entry")
    with pytest.raises(PolicyDeniedError) as burst:
        service.search(PRISON, gallery, analysis=probe, top_k=1, purpose="entry")
    assert burst.value.decision.codes == ["request.rate_limited"]  # type: ignore[attr-defined]


def test_an_expired_approval_refuses_searches_but_not_erasure(
    service: FaceService, clock: Clock, analyses: dict[str, list[FaceAnalysis]]
) -> None:
    gallery = _prison(service)
    _enrol_all(service, PRISON, gallery, analyses)
    clock.now = START + timedelta(days=400)
    probe = next(iter(analyses.values()))[1]
    with pytest.raises(PolicyDeniedError) as expired:
        service.search(PRISON, gallery, analysis=probe, top_k=1, purpose="entry")
    assert expired.value.decision.codes == ["request.approval_expired"]  # type: ignore[attr-defined]
    assert service.erase_subject(PRISON, next(iter(analyses))).templates_deleted == 1


def test_consented_verification_matches_the_right_person_only(
    service: FaceService, analyses: dict[str, list[FaceAnalysis]]
) -> None:
    bank = _bank(service)
    names = list(analyses)
    for name in names:
        consent = _consent(service, bank, name, purpose="identity_verification")
        service.enrol(bank, "customers", subject_id=name, consent_id=consent, analysis=analyses[name][0])

    same = service.verify(bank, "customers", subject_id=names[0], analysis=analyses[names[0]][1])
    other = service.verify(bank, "customers", subject_id=names[0], analysis=analyses[names[1]][1])

    assert isinstance(same.result, VerifyResult)
    assert same.result.matched
    assert isinstance(other.result, VerifyResult)
    assert not other.result.matched
    assert same.review_state == "not_required"
    with pytest.raises(PolicyDeniedError) as one_to_many:
        service.search(bank, "customers", analysis=analyses[names[0]][1])
    assert one_to_many.value.decision.codes == ["request.not_permitted"]  # type: ignore[attr-defined]


def test_a_bystander_in_the_probe_is_not_a_crowd_and_the_subject_is_verified(
    service: FaceService, analyses: dict[str, list[FaceAnalysis]], pipeline: FacePipeline, johns: dict[str, list[Path]]
) -> None:
    """GIVEN a probe whose background holds a smaller face of another enrolled person WHEN it is verified
    against the subject THEN it is not refused as a crowd and matches (the subject's face was embedded)."""
    bank = _bank(service)
    subject, bystander = list(analyses)[:2]
    for name in (subject, bystander):
        consent = _consent(service, bank, name, purpose="identity_verification")
        service.enrol(bank, "customers", subject_id=name, consent_id=consent, analysis=analyses[name][0])
    probe = pipeline.analyse_image(_with_bystander(johns, subject, bystander))
    assert len(probe.faces) == 2
    assert probe.face_count == 1

    same = service.verify(bank, "customers", subject_id=subject, analysis=probe)
    assert isinstance(same.result, VerifyResult)
    assert same.result.matched
    # It is the subject's face that was embedded: the bystander's template does not match it.
    assert probe.subject_embedding.cosine(analyses[bystander][0].subject_embedding) < same.decision.threshold


def test_consent_needs_evidence_and_a_known_purpose(service: FaceService) -> None:
    service.registry.register("state-prison-7", name="P", sector="corrections", country="US", jurisdiction="US-WA")
    with pytest.raises(ConsentError):
        service.record_consent(
            PRISON, subject_id="a", purpose="access_control", evidence=b"", expires_at=START + timedelta(1)
        )
    with pytest.raises(ConsentError):
        service.record_consent(
            PRISON, subject_id="a", purpose="surveillance", evidence=b"x", expires_at=START + timedelta(1)
        )


def test_registry_refuses_duplicate_tenants(service: FaceService) -> None:
    registry = TenantRegistry()
    registry.register("dup-tenant", name="A", sector="private", country="DE", jurisdiction="DE")
    with pytest.raises(ConflictError):
        registry.register("dup-tenant", name="B", sector="private", country="DE", jurisdiction="DE")
    assert GalleryRecord.count("dup-tenant") == 0


def test_a_tenant_quota_lowers_the_daily_volume(service: FaceService, analyses: dict[str, list[FaceAnalysis]]) -> None:
    gallery = _prison(service)
    _enrol_all(service, PRISON, gallery, analyses)
    service.registry.set_quota("state-prison-7", "access_control", "search", per_minute=30, per_day=2)
    probe = next(iter(analyses.values()))[1]
    for _ in range(2):
        service.search(PRISON, gallery, analysis=probe, top_k=1, purpose="entry")
    with pytest.raises(PolicyDeniedError) as over:
        service.search(PRISON, gallery, analysis=probe, top_k=1, purpose="entry")
    assert over.value.decision.codes == ["request.volume_limited"]  # type: ignore[attr-defined]


# --- several photos per person ---------------------------------------------------------------------


def test_three_photos_enrol_one_fused_template_that_erasure_removes(
    service: FaceService, analyses: dict[str, list[FaceAnalysis]]
) -> None:
    """GIVEN three photos of one consenting person WHEN enrolled together THEN one template holds their
    fused embedding (3 references, one model version), the fourth photo verifies against it with the
    fused template's offset applied, and erasure removes it."""
    gallery = _prison(service)
    name = next(iter(analyses))
    consent = _consent(service, PRISON, name)
    result = service.enrol(PRISON, gallery, subject_id=name, consent_id=consent, analysis=analyses[name][:3])
    assert result.references == 3
    (stored,) = service.templates.in_gallery(PRISON, gallery)
    assert stored.references == 3
    expected = fuse([a.subject_embedding for a in analyses[name][:3]])
    assert stored.embedding.cosine(expected) == pytest.approx(1.0, abs=1e-6)
    assert service.galleries.get(PRISON, gallery).template_count == 1
    entry = service.audit.entries(PRISON)[-1]
    assert entry.action == "template.enrolled"
    assert entry.details["references"] == 3

    probe = analyses[name][3]
    outcome = service.verify(PRISON, gallery, subject_id=name, analysis=probe, purpose="entry at gate B")
    assert isinstance(outcome.result, VerifyResult)
    offset = service.calibration.reference_offset(3, 1e-4)
    assert offset > 0
    assert outcome.result.score == pytest.approx(probe.subject_embedding.cosine(expected) - offset, abs=1e-5)
    assert outcome.result.matched

    assert service.erase_subject(PRISON, name).templates_deleted == 1
    assert service.templates.in_gallery(PRISON, gallery) == []


def test_photos_of_two_people_are_never_fused(service: FaceService, analyses: dict[str, list[FaceAnalysis]]) -> None:
    """GIVEN an enrolment whose photos show two different people WHEN it is enrolled THEN it is refused
    with image.photos_disagree before the gate, and nothing is stored or audited."""
    gallery = _prison(service)
    first, second = list(analyses)[:2]
    consent = _consent(service, PRISON, first)
    before = len(service.audit.entries(PRISON))
    photos = [analyses[first][0], analyses[first][1], analyses[second][0]]
    with pytest.raises(PhotosDisagreeError, match="photo 3"):
        service.enrol(PRISON, gallery, subject_id=first, consent_id=consent, analysis=photos)
    assert service.templates.in_gallery(PRISON, gallery) == []
    assert len(service.audit.entries(PRISON)) == before


def test_every_photo_of_an_enrolment_needs_one_subject_face(
    service: FaceService, analyses: dict[str, list[FaceAnalysis]], group_of_six: FaceAnalysis
) -> None:
    gallery = _prison(service)
    name = next(iter(analyses))
    consent = _consent(service, PRISON, name)
    with pytest.raises(PolicyDeniedError) as refused:
        service.enrol(PRISON, gallery, subject_id=name, consent_id=consent, analysis=[analyses[name][0], group_of_six])
    assert refused.value.decision.codes == ["request.enrolment_needs_one_face"]  # type: ignore[attr-defined]
    with pytest.raises(InvalidRequestError, match="1 to 5 photos"):
        service.enrol(PRISON, gallery, subject_id=name, consent_id=consent, analysis=analyses[name] * 2)
    with pytest.raises(InvalidRequestError, match="1 to 5 photos"):
        service.enrol(PRISON, gallery, subject_id=name, consent_id=consent, analysis=[])
    assert service.templates.in_gallery(PRISON, gallery) == []
