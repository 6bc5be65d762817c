"""Independent testing at the gate and in the service: who may be a tester, for how long, and which sets
are a test rather than a way to compare strangers' faces. Each promise is probed with the spellings and
loops an attacker would try: applying for the sandbox as a use case, making a gallery under it, a grant
that never ends, a police tester, an expired grant, a set of three people, the 21st set of the day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from facegate.errors import InvalidRequestError, PolicyDeniedError
from facegate.policy import ApprovalFacts, GalleryFacts, Operation, PolicyGate, PolicyRequest, TenantFacts
from facegate.policy.catalog import SANDBOX_DEPLOYMENT, SANDBOX_USE_CASE, Catalog, default_catalog
from facegate.service import FaceService
from facegate.tenancy import TenantContext

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
GATE = PolicyGate()
LIMITS = default_catalog().sandbox


def _tenant(sector: str = "education", country: str = "GB", jurisdiction: str = "GB", **kw: object) -> TenantFacts:
    return TenantFacts(tenant_id="lab-one", sector=sector, country=country, jurisdiction=jurisdiction, **kw)  # type: ignore[arg-type]


def _grant(expires: datetime, use_case: str = SANDBOX_USE_CASE, deployment: str = SANDBOX_DEPLOYMENT) -> ApprovalFacts:
    return ApprovalFacts(use_case=use_case, deployment=deployment, expires_at=expires)


def _authorise(tenant: TenantFacts, until: datetime) -> list[str]:
    decision = GATE.decide(
        PolicyRequest(
            tenant=tenant,
            operation=Operation.AUTHORISE_TESTER,
            use_case=SANDBOX_USE_CASE,
            deployment=SANDBOX_DEPLOYMENT,
            now=NOW,
            grant_until=until,
        )
    )
    return decision.codes if not decision.allowed else []


def _test(tenant: TenantFacts, images: int = 55, identities: int = 5, **kw: object) -> list[str]:
    decision = GATE.decide(
        PolicyRequest(
            tenant=tenant,
            operation=Operation.INDEPENDENT_TEST,
            use_case=SANDBOX_USE_CASE,
            now=NOW,
            set_images=images,
            set_identities=identities,
            **kw,  # type: ignore[arg-type]
        )
    )
    return decision.codes if not decision.allowed else []


def test_an_operator_may_authorise_a_university_lab_for_a_bounded_time() -> None:
    assert _authorise(_tenant(), NOW + timedelta(days=90)) == []
    assert _authorise(_tenant(sector="nonprofit"), NOW + timedelta(days=LIMITS.max_grant_days)) == []


@pytest.mark.parametrize(
    ("until", "code"),
    [
        (NOW + timedelta(days=LIMITS.max_grant_days, seconds=1), "sandbox.grant_too_long"),
        (NOW + timedelta(days=36500), "sandbox.grant_too_long"),
        (NOW, "sandbox.grant_in_past"),
        (NOW - timedelta(days=1), "sandbox.grant_in_past"),
    ],
)
def test_a_grant_that_never_ends_or_already_ended_is_refused(until: datetime, code: str) -> None:
    assert _authorise(_tenant(), until) == [code]


def test_police_are_never_testers_and_us_police_meet_the_moratorium_too() -> None:
    gb_police = _tenant(sector="law_enforcement")
    assert _authorise(gb_police, NOW + timedelta(days=30)) == ["sandbox.tester_is_law_enforcement"]
    us_police = _tenant(sector="law_enforcement", country="US", jurisdiction="US-WA")
    assert set(_authorise(us_police, NOW + timedelta(days=30))) == {
        "never.police_moratorium",
        "sandbox.tester_is_law_enforcement",
    }
    # A police grant written into the registry by other means still opens nothing.
    granted = _tenant(sector="law_enforcement", approvals=(_grant(NOW + timedelta(days=30)),))
    assert _test(granted) == ["sandbox.tester_is_law_enforcement"]


def test_a_suspended_or_unregistered_tester_is_refused() -> None:
    assert "request.tenant_inactive" in _authorise(_tenant(active=False), NOW + timedelta(days=30))
    assert "request.registration_invalid" in _authorise(_tenant(sector="lab"), NOW + timedelta(days=30))
    live = (_grant(NOW + timedelta(days=30)),)
    assert "request.tenant_inactive" in _test(_tenant(active=False, approvals=live))


def test_a_set_is_decided_on_the_testers_live_authorisation() -> None:
    assert _test(_tenant()) == ["request.not_approved"]
    assert _test(_tenant(approvals=(_grant(NOW - timedelta(seconds=1)),))) == ["request.approval_expired"]
    assert _test(_tenant(approvals=(_grant(NOW + timedelta(days=1)),))) == []
    revoked = ApprovalFacts(
        use_case=SANDBOX_USE_CASE, deployment=SANDBOX_DEPLOYMENT, expires_at=NOW + timedelta(days=1), status="revoked"
    )
    assert _test(_tenant(approvals=(revoked,))) == ["request.approval_revoked"]  # revoked by an operator: said as such


def test_another_approval_is_no_tester_authorisation() -> None:
    """A prison approved for access control is not thereby a tester; a sandbox grant with another
    deployment (written by hand) is not one either."""
    prison = _tenant(
        sector="corrections", approvals=(_grant(NOW + timedelta(days=30), "access_control", "closed_facility"),)
    )
    assert _test(prison) == ["request.not_approved"]
    odd = _tenant(approvals=(_grant(NOW + timedelta(days=30), deployment="closed_facility"),))
    assert _test(odd) == ["request.not_approved"]


@pytest.mark.parametrize(
    ("images", "identities", "code"),
    [
        (2, 2, "sandbox.set_too_small"),  # two photos: a 1:1 comparison of strangers, not a test
        (LIMITS.min_images - 1, 10, "sandbox.set_too_small"),
        (500, LIMITS.min_identities - 1, "sandbox.set_too_small"),
        (LIMITS.max_images + 1, 5000, "sandbox.set_too_large"),
    ],
)
def test_a_set_of_a_handful_of_faces_or_too_many_is_refused(images: int, identities: int, code: str) -> None:
    live = _tenant(approvals=(_grant(NOW + timedelta(days=30)),))
    assert _test(live, images=images, identities=identities) == [code]
    assert _test(live, images=LIMITS.min_images, identities=LIMITS.min_identities) == []


def test_the_sandbox_is_no_use_case_a_tenant_can_apply_for_or_build_a_gallery_under() -> None:
    for operation in (Operation.APPLY_USE_CASE, Operation.CREATE_GALLERY, Operation.ENROL, Operation.SEARCH):
        tester = _tenant(approvals=(_grant(NOW + timedelta(days=30)),))
        decision = GATE.decide(
            PolicyRequest(
                tenant=tester,
                operation=operation,
                use_case=SANDBOX_USE_CASE,
                deployment=SANDBOX_DEPLOYMENT,
                now=NOW,
                face_count=1,
                consent_valid=True,
                gallery=GalleryFacts(gallery_id="made-by-hand", use_case=SANDBOX_USE_CASE, size=0),
            )
        )
        assert not decision.allowed, operation
        assert "request.unknown_use_case" in decision.codes, operation
    # Nor can the tester's operation be run under a real use case's name.
    live = _tenant(
        sector="corrections", approvals=(_grant(NOW + timedelta(days=30), "access_control", "closed_facility"),)
    )
    decision = GATE.decide(
        PolicyRequest(
            tenant=live,
            operation=Operation.INDEPENDENT_TEST,
            use_case="access_control",
            now=NOW,
            set_images=50,
            set_identities=10,
        )
    )
    assert not decision.allowed


def test_the_catalog_keeps_the_sandbox_apart_from_the_use_cases() -> None:
    data = default_catalog().model_dump(mode="json")
    data["use_cases"][SANDBOX_USE_CASE] = data["use_cases"]["identity_verification"]
    with pytest.raises(ValueError, match="names the sandbox"):
        Catalog.model_validate(data)


# --- the service: the authorisation and the decision are audited, the rate limits count -------------


@pytest.fixture
def service(dynamo: str) -> FaceService:
    svc = FaceService()
    svc.registry.register("lab-one", name="Lab", sector="education", country="GB", jurisdiction="GB")
    svc.registry.register("police-one", name="Police", sector="law_enforcement", country="GB", jurisdiction="GB")
    return svc


def _actions(service: FaceService, tenant: str) -> list[str]:
    return [e.action for e in service.audit.entries(TenantContext(tenant_id=tenant, actor="x"))]


def test_an_authorisation_is_recorded_with_its_audit_entry_and_a_refusal_is_audited(service: FaceService) -> None:
    until = datetime.now(UTC) + timedelta(days=30)
    decision = service.authorise_tester("operator@facegate", "lab-one", expires_at=until)
    assert decision.allowed
    (grant,) = service.registry.get("lab-one").approvals
    assert (grant.use_case, grant.deployment, grant.approver) == (
        SANDBOX_USE_CASE,
        SANDBOX_DEPLOYMENT,
        "operator@facegate",
    )
    assert _actions(service, "lab-one") == ["tester.authorised"]
    with pytest.raises(PolicyDeniedError) as refused:
        service.authorise_tester("operator@facegate", "police-one", expires_at=until)
    assert refused.value.decision.codes == ["sandbox.tester_is_law_enforcement"]  # type: ignore[union-attr]
    assert service.registry.get("police-one").approvals == ()
    assert _actions(service, "police-one") == ["tester.refused"]
    with pytest.raises(InvalidRequestError, match="UTC offset"):
        service.authorise_tester("operator@facegate", "lab-one", expires_at=until.replace(tzinfo=None))


def test_a_testers_sets_are_decided_counted_and_refused_past_the_days_limit(service: FaceService) -> None:
    lab = TenantContext(tenant_id="lab-one", actor="tester-1")
    with pytest.raises(PolicyDeniedError) as before:
        service.decide_independent_test(lab, images=55, identities=5, request_id="t0")
    assert before.value.decision.codes == ["request.not_approved"]  # type: ignore[union-attr]
    service.authorise_tester("operator@facegate", "lab-one", expires_at=datetime.now(UTC) + timedelta(days=30))
    per_minute = LIMITS.rate_limits["independent_test"].per_minute
    for i in range(per_minute - 1):  # the refused attempt counted too: attempts are what a sweep is made of
        assert service.decide_independent_test(lab, images=55, identities=5, request_id=f"t{i + 1}").allowed
    with pytest.raises(PolicyDeniedError) as burst:
        service.decide_independent_test(lab, images=55, identities=5, request_id="t-burst")
    assert "request.rate_limited" in burst.value.decision.codes  # type: ignore[union-attr]
    assert _actions(service, "lab-one").count("request.denied") == 2


def test_a_testers_accountability_report_lists_its_authorisation_apart_from_use_cases(service: FaceService) -> None:
    from facegate.accountability import tenant_report

    until = datetime.now(UTC) + timedelta(days=30)
    service.authorise_tester("operator@facegate", "lab-one", expires_at=until)
    report = tenant_report(service.registry.get("lab-one"))
    assert report["use_cases"] == []
    assert report["tenant"]["use_cases_in_force"] == []
    (granted,) = report["testing"]["independent_testing"]["authorisations"]
    assert granted["live"] is True
    assert granted["approver"] == "operator@facegate"


@pytest.mark.parametrize(
    ("groups", "smallest_images", "smallest_identities", "code"),
    [
        (10, 2, 2, "sandbox.set_too_small"),  # ten groups of a pair each: each group's count is one pair's score
        (2, LIMITS.min_images, LIMITS.min_identities - 1, "sandbox.set_too_small"),
        (LIMITS.max_groups + 1, LIMITS.min_images, LIMITS.min_identities, "sandbox.too_many_groups"),
    ],
)
def test_every_group_must_be_a_test_of_its_own(
    groups: int, smallest_images: int, smallest_identities: int, code: str
) -> None:
    live = _tenant(approvals=(_grant(NOW + timedelta(days=30)),))
    facts = {"set_groups": groups, "set_smallest_group_images": smallest_images,
             "set_smallest_group_identities": smallest_identities}  # fmt: skip
    assert code in _test(live, images=5000, identities=2000, **facts)
    ok = {"set_groups": 2, "set_smallest_group_images": LIMITS.min_images,
          "set_smallest_group_identities": LIMITS.min_identities}  # fmt: skip
    assert _test(live, images=5000, identities=2000, **ok) == []
