"""The gate compares registrations and deployments exactly, and refuses what is not in its lists.

GIVEN a tenant row written before registrations were validated, or an application that declares a
deployment in its own words, WHEN the gate decides, THEN it refuses with a reason code of its own
instead of letting the free text fall through an exact-match refusal.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from facegate.policy import ApprovalFacts, GalleryFacts, Operation, PolicyGate, PolicyRequest, TenantFacts
from facegate.policy.catalog import DEPLOYMENTS
from facegate.policy.gate import default_policies

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
NEXT_YEAR = NOW + timedelta(days=365)
CYRILLIC_A = "\u0430"


@pytest.fixture(scope="module")
def gate() -> PolicyGate:
    return PolicyGate()


def _tenant(sector: str, country: str, jurisdiction: str, *approvals: ApprovalFacts) -> TenantFacts:
    return TenantFacts(
        tenant_id="springfield-pd", sector=sector, country=country, jurisdiction=jurisdiction, approvals=approvals
    )


def _apply(
    tenant: TenantFacts, deployment: str | None = "closed_facility", use_case: str = "access_control"
) -> PolicyRequest:
    return PolicyRequest(
        tenant=tenant, operation=Operation.APPLY_USE_CASE, use_case=use_case, deployment=deployment, now=NOW
    )


@pytest.mark.parametrize(
    ("sector", "country", "jurisdiction"),
    [
        ("law_enforcement", "us", "US-IL"),
        ("law_enforcement", "USA", "US-IL"),
        ("law_enforcement", "Us", "US-IL"),
        ("law_enforcement", " US", "US-IL"),
        ("law_enforcement", "US\n", "US-IL"),
        ("law_enforcement", "U.S.", "US-IL"),
        ("law_enforcement", "ＵＳ", "US-IL"),
        ("law_enforcement", "", "US-IL"),
        ("police", "US", "US-IL"),
        ("Law_Enforcement", "US", "US-IL"),
        ("LAW_ENFORCEMENT", "US", "US-IL"),
        ("law-enforcement", "US", "US-IL"),
        (f"l{CYRILLIC_A}w_enforcement", "US", "US-IL"),
        ("", "US", "US-IL"),
        ("law_enforcement", "US", "us-il"),
        ("law_enforcement", "US", "GB-ENG"),
        ("law_enforcement", "US", ""),
    ],
)
def test_a_us_police_department_registered_in_other_spellings_is_refused(
    gate: PolicyGate, sector: str, country: str, jurisdiction: str
) -> None:
    decision = gate.decide(_apply(_tenant(sector, country, jurisdiction)))
    assert not decision.allowed
    assert decision.codes == ["request.registration_invalid"]
    assert decision.reasons[0].message


def test_an_approval_does_not_unlock_an_invalid_registration(gate: PolicyGate) -> None:
    approved = _tenant(
        "police",
        "US",
        "US-IL",
        ApprovalFacts(use_case="access_control", deployment="closed_facility", expires_at=NEXT_YEAR),
    )
    decision = gate.decide(
        PolicyRequest(
            tenant=approved,
            operation=Operation.SEARCH,
            use_case="access_control",
            now=NOW,
            gallery=GalleryFacts(gallery_id="g", use_case="access_control", size=10),
            face_count=1,
            purpose="checkpoint entry",
        )
    )
    assert not decision.allowed
    assert "request.registration_invalid" in decision.codes


def test_the_canonical_spelling_is_refused_by_the_moratorium(gate: PolicyGate) -> None:
    decision = gate.decide(_apply(_tenant("law_enforcement", "US", "US-IL")))
    assert decision.codes == ["never.police_moratorium"]


@pytest.mark.parametrize("operation", [Operation.DELETE_SUBJECT, Operation.EXPORT_AUDIT])
def test_erasure_and_audit_export_stay_possible_with_an_invalid_registration(
    gate: PolicyGate, operation: Operation
) -> None:
    tenant = _tenant(
        "Private",
        "USA",
        "US",
        ApprovalFacts(use_case="access_control", deployment="closed_facility", expires_at=NEXT_YEAR),
    )
    decision = gate.decide(PolicyRequest(tenant=tenant, operation=operation, use_case="access_control", now=NOW))
    assert decision.allowed, decision.codes


PRISON = _tenant("corrections", "US", "US-WA")


@pytest.mark.parametrize(
    ("deployment", "code"),
    [
        ("bodycam", "request.unknown_deployment"),
        ("body_cam", "request.unknown_deployment"),
        ("city_cctv", "request.unknown_deployment"),
        ("cctv", "request.unknown_deployment"),
        ("Camera_Network", "request.unknown_deployment"),
        ("PUBLIC_SPACE", "request.unknown_deployment"),
        ("Patrol", "request.unknown_deployment"),
        ("closed_facility ", "request.unknown_deployment"),
        (" closed_facility", "request.unknown_deployment"),
        ("Closed_Facility", "request.unknown_deployment"),
        ("closed-facility", "request.unknown_deployment"),
        (f"closed_f{CYRILLIC_A}cility", "request.unknown_deployment"),
        ("", "request.unknown_deployment"),
        (None, "request.unknown_deployment"),
        ("online_service", "request.deployment_not_allowed"),
        ("personal", "request.deployment_not_allowed"),
    ],
)
def test_an_application_outside_the_use_cases_deployments_is_refused(
    gate: PolicyGate, deployment: str | None, code: str
) -> None:
    decision = gate.decide(_apply(PRISON, deployment))
    assert not decision.allowed
    assert decision.codes == [code]
    assert decision.reasons[0].message


@pytest.mark.parametrize("deployment", ["public_space", "camera_network", "patrol"])
def test_public_space_deployments_stay_refused_by_the_promise(gate: PolicyGate, deployment: str) -> None:
    decision = gate.decide(_apply(PRISON, deployment))
    assert not decision.allowed
    assert "never.public_space_identification" in decision.codes


@pytest.mark.parametrize(
    ("use_case", "deployment"),
    [
        ("access_control", "closed_facility"),
        ("identity_verification", "online_service"),
        ("identity_verification", "personal"),
        ("photo_organization", "personal"),
    ],
)
def test_an_application_inside_the_use_cases_deployments_is_approvable(
    gate: PolicyGate, use_case: str, deployment: str
) -> None:
    decision = gate.decide(_apply(PRISON, deployment, use_case))
    assert decision.allowed, decision.codes


def test_an_unknown_use_case_is_refused_as_such_not_as_a_deployment(gate: PolicyGate) -> None:
    assert gate.decide(_apply(PRISON, "closed_facility", "mass_surveillance")).codes == ["request.unknown_use_case"]


def test_the_unknown_deployment_reason_names_exactly_the_offered_deployments() -> None:
    (meta,) = [m for m in default_policies().meta.values() if m.code == "request.unknown_deployment"]
    named = {word.strip("().,;") for word in meta.reason.split()}
    assert set(DEPLOYMENTS) <= named
    assert not {"public_space", "camera_network", "patrol"} & named
