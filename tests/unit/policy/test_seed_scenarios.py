"""The seed scenarios: each decided right, with its reason code.

The first four are the decisions the product exists to encode: a police patrol-car / body-cam request
and a capital city's camera network are refused, a US police department is refused under the
moratorium, a prison's bounded access control is allowed with human review.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from facegate.policy import ApprovalFacts, GalleryFacts, Operation, PolicyGate, PolicyRequest, TenantFacts

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
NEXT_YEAR = NOW + timedelta(days=365)


@pytest.fixture(scope="module")
def gate() -> PolicyGate:
    return PolicyGate()


def _tenant(tenant_id: str, sector: str, country: str, jurisdiction: str, *approvals: ApprovalFacts) -> TenantFacts:
    return TenantFacts(
        tenant_id=tenant_id, sector=sector, country=country, jurisdiction=jurisdiction, approvals=approvals
    )


PRISON = _tenant(
    "state-prison-7",
    "corrections",
    "US",
    "US-WA",
    ApprovalFacts(use_case="access_control", deployment="closed_facility", expires_at=NEXT_YEAR),
)
BANK = _tenant(
    "examplebank",
    "private",
    "DE",
    "DE",
    ApprovalFacts(use_case="identity_verification", deployment="online_service", expires_at=NEXT_YEAR),
)
PRISON_GALLERY = GalleryFacts(gallery_id="staff-and-residents", use_case="access_control", size=800)
BANK_GALLERY = GalleryFacts(gallery_id="customers", use_case="identity_verification", size=120_000)


def _search(tenant: TenantFacts = PRISON, **overrides: object) -> PolicyRequest:
    fields: dict[str, object] = {
        "tenant": tenant,
        "operation": Operation.SEARCH,
        "use_case": "access_control",
        "now": NOW,
        "gallery": PRISON_GALLERY,
        "face_count": 1,
        "purpose": "checkpoint entry, gate B",
        "top_k": 3,
    }
    fields.update(overrides)
    return PolicyRequest.model_validate(fields)


def test_police_patrol_car_and_body_cam_identification_in_california_is_denied(gate: PolicyGate) -> None:
    police = _tenant("ca-highway-patrol", "law_enforcement", "US", "US-CA")
    decision = gate.decide(
        PolicyRequest(
            tenant=police,
            operation=Operation.APPLY_USE_CASE,
            use_case="access_control",
            deployment="patrol",
            source_kind="stream",
            now=NOW,
        )
    )
    assert not decision.allowed
    assert {"never.public_space_identification", "never.realtime_stream", "never.police_moratorium"} <= set(
        decision.codes
    )
    assert all(r.message for r in decision.reasons)


def test_capital_city_camera_network_is_denied(gate: PolicyGate) -> None:
    city = _tenant("capital-city", "government", "GB", "GB-LND")
    decision = gate.decide(
        PolicyRequest(
            tenant=city,
            operation=Operation.APPLY_USE_CASE,
            use_case="access_control",
            deployment="camera_network",
            source_kind="stream",
            now=NOW,
        )
    )
    assert not decision.allowed
    assert "never.public_space_identification" in decision.codes
    assert "never.realtime_stream" in decision.codes


def test_us_police_department_is_denied_under_the_moratorium_even_with_an_approval(gate: PolicyGate) -> None:
    """A forbid overrides every permit: even an (erroneously) approved use case cannot be unlocked."""
    police = _tenant(
        "springfield-pd",
        "law_enforcement",
        "US",
        "US-IL",
        ApprovalFacts(use_case="access_control", deployment="closed_facility", expires_at=NEXT_YEAR),
    )
    decision = gate.decide(_search(police))
    assert not decision.allowed
    assert decision.codes == ["never.police_moratorium"]


def test_police_outside_a_moratorium_is_not_refused_by_it(gate: PolicyGate) -> None:
    """The moratorium is a catalog setting (on for the US), not a blanket rule in code."""
    police = _tenant(
        "example-police",
        "law_enforcement",
        "NZ",
        "NZ",
        ApprovalFacts(use_case="access_control", deployment="closed_facility", expires_at=NEXT_YEAR),
    )
    assert "never.police_moratorium" not in gate.decide(_search(police)).codes


def test_prison_access_control_over_a_bounded_gallery_is_allowed_with_human_review(gate: PolicyGate) -> None:
    decision = gate.decide(_search())
    assert decision.allowed, decision.codes
    assert "human_review_before_action" in decision.obligations
    assert "two_person_confirmation" in decision.obligations
    assert "delete_probe_after_result" in decision.obligations
    assert decision.threshold is not None
    assert decision.threshold >= gate.catalog.use_cases["access_control"].threshold_floor
    assert decision.max_results == gate.catalog.use_cases["access_control"].max_results
    assert decision.policy_version.startswith(gate.catalog.version)


def test_prison_application_for_access_control_is_approvable(gate: PolicyGate) -> None:
    decision = gate.decide(
        PolicyRequest(
            tenant=_tenant("state-prison-7", "corrections", "US", "US-WA"),
            operation=Operation.APPLY_USE_CASE,
            use_case="access_control",
            deployment="closed_facility",
            now=NOW,
        )
    )
    assert decision.allowed, decision.codes


def test_consented_one_to_one_verification_is_allowed(gate: PolicyGate) -> None:
    decision = gate.decide(
        PolicyRequest(
            tenant=BANK,
            operation=Operation.VERIFY,
            use_case="identity_verification",
            now=NOW,
            gallery=BANK_GALLERY,
            face_count=1,
        )
    )
    assert decision.allowed, decision.codes
    assert decision.obligations == ("delete_probe_after_result",)


def test_identity_verification_never_searches_one_to_many(gate: PolicyGate) -> None:
    decision = gate.decide(
        PolicyRequest(
            tenant=BANK,
            operation=Operation.SEARCH,
            use_case="identity_verification",
            now=NOW,
            gallery=BANK_GALLERY,
            face_count=1,
        )
    )
    assert not decision.allowed
    assert decision.codes == ["request.not_permitted"]


def test_a_probe_with_six_faces_is_denied(gate: PolicyGate) -> None:
    decision = gate.decide(_search(face_count=6))
    assert not decision.allowed
    assert decision.codes == ["request.crowd_probe"]


def test_enrolment_without_consent_is_denied(gate: PolicyGate) -> None:
    decision = gate.decide(_search(operation=Operation.ENROL, consent_valid=False, face_count=1, top_k=1, purpose=None))
    assert not decision.allowed
    assert decision.codes == ["request.consent_missing"]


def test_enrolment_with_consent_is_allowed(gate: PolicyGate) -> None:
    decision = gate.decide(_search(operation=Operation.ENROL, consent_valid=True, face_count=1, top_k=1))
    assert decision.allowed, decision.codes


def test_enrolment_from_scraped_urls_is_denied(gate: PolicyGate) -> None:
    decision = gate.decide(
        _search(operation=Operation.ENROL, consent_valid=True, enrolment_source="scraped", face_count=1)
    )
    assert not decision.allowed
    assert decision.codes == ["never.untargeted_gallery"]


@pytest.mark.parametrize("attribute", ["emotion", "gender", "race"])
def test_sensitive_attribute_inference_is_denied(gate: PolicyGate, attribute: str) -> None:
    inference = gate.decide(_search(operation=Operation.INFER_ATTRIBUTE, attributes_requested=(attribute,)))
    assert not inference.allowed
    assert inference.codes == ["never.sensitive_attribute_inference"]
    piggyback = gate.decide(_search(attributes_requested=(attribute,)))
    assert piggyback.codes == ["never.sensitive_attribute_inference"]


def test_another_tenants_gallery_is_denied_exactly_like_a_missing_one(gate: PolicyGate) -> None:
    """The repository looks galleries up under the caller's tenant only, so a foreign gallery is not
    found; the decision must be identical to that for a gallery that does not exist."""
    foreign = gate.decide(_search(gallery=None, gallery_found=False))
    missing = gate.decide(_search(gallery=None, gallery_found=False))
    assert not foreign.allowed
    assert foreign.codes == ["request.gallery_not_found"]
    assert foreign.to_dict() == missing.to_dict()
    assert "another tenant" not in foreign.reasons[0].message


def test_searches_over_the_rate_limit_are_denied(gate: PolicyGate) -> None:
    decision = gate.decide(_search(rate_exceeded=True))
    assert not decision.allowed
    assert decision.codes == ["request.rate_limited"]
    daily = gate.decide(_search(volume_exceeded=True))
    assert daily.codes == ["request.volume_limited"]


def test_an_expired_approval_is_denied(gate: PolicyGate) -> None:
    expired = _tenant(
        "state-prison-7",
        "corrections",
        "US",
        "US-WA",
        ApprovalFacts(use_case="access_control", deployment="closed_facility", expires_at=NOW - timedelta(days=1)),
    )
    decision = gate.decide(_search(expired))
    assert not decision.allowed
    assert decision.codes == ["request.approval_expired"]


def test_a_revoked_approval_is_refused_with_its_own_reason(gate: PolicyGate) -> None:
    """An operator revoked the approval: the search is refused as revoked (not as never approved), and
    a later approval of the same use case restores it; erasure and the audit export stay possible."""
    revoked = ApprovalFacts(
        use_case="access_control", deployment="closed_facility", expires_at=NOW + timedelta(days=30), status="revoked"
    )
    tenant = _tenant("state-prison-8", "corrections", "GB", "GB-ENG", revoked)
    decision = gate.decide(_search(tenant))
    assert not decision.allowed
    assert decision.codes == ["request.approval_revoked"]
    again = ApprovalFacts(use_case="access_control", deployment="closed_facility", expires_at=NOW + timedelta(days=30))
    assert gate.decide(_search(_tenant("state-prison-8", "corrections", "GB", "GB-ENG", revoked, again))).allowed
    other = ApprovalFacts(use_case="access_control", deployment="closed_facility", expires_at=NOW + timedelta(days=30))
    assert gate.decide(_search(_tenant("state-prison-9", "corrections", "GB", "GB-ENG", other))).allowed


def test_erasure_stays_possible_after_the_approval_expired(gate: PolicyGate) -> None:
    expired = _tenant(
        "state-prison-7",
        "corrections",
        "US",
        "US-WA",
        ApprovalFacts(use_case="access_control", deployment="closed_facility", expires_at=NOW - timedelta(days=1)),
    )
    assert gate.decide(_search(expired, operation=Operation.DELETE_SUBJECT)).allowed
