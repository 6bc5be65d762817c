"""What an operator does to the registry, on both DynamoDB backends: each change lands with its audit
entry or not at all, and the gate decides what follows from it.

GIVEN the operator service WHEN a tenant is registered (twice, or with a vocabulary value spelled
another way), suspended and reinstated, an approval revoked (by two operators at once), a quota set
above the catalog's ceiling THEN the registry and the tenant's audit log agree, every refusal is the
caller's error (nothing written), and the next request is decided on the new state.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from facegate.errors import AlreadyExistsError, InvalidRequestError, RegistrationError
from facegate.policy import Operation, PolicyRequest
from facegate.service.operators import Operators
from facegate.tenancy import TenantContext

OPERATOR = "arn:aws:sts::123456789012:assumed-role/facegate-OperatorRole/alice"
TENANT = "hmp-ops"


def _registered(service: Operators) -> None:
    service.register_tenant(OPERATOR, TENANT, name="HMP Ops", sector="corrections", country="GB", jurisdiction="GB-ENG")


def _approved(service: Operators) -> None:
    _registered(service)
    service.approve_use_case(
        OPERATOR,
        TENANT,
        use_case="access_control",
        deployment="closed_facility",
        expires_at=datetime.now(UTC) + timedelta(days=30),
    )


def _actions(service: Operators) -> list[str]:
    return [e.action for e in service.audit.entries(TenantContext(tenant_id=TENANT, actor="reader"))]


def _request_codes(service: Operators) -> list[str]:
    tenant = service.registry.get(TENANT)
    decision = service.gate.decide(
        PolicyRequest(
            tenant=tenant.facts(),
            operation=Operation.CREATE_GALLERY,
            use_case="access_control",
            now=datetime.now(UTC),
        )
    )
    return [] if decision.allowed else decision.codes


def test_registration_is_on_the_record_and_happens_once(dynamo: str) -> None:
    service = Operators()
    _registered(service)
    with pytest.raises(AlreadyExistsError):
        service.register_tenant(OPERATOR, TENANT, name="Again", sector="private", country="GB", jurisdiction="GB-ENG")
    assert service.registry.get(TENANT).name == "HMP Ops"
    assert _actions(service) == ["tenant.registered"]
    (entry,) = service.audit.entries(TenantContext(tenant_id=TENANT, actor="reader"))
    assert entry.actor == OPERATOR
    assert entry.details["sector"] == "corrections"


@pytest.mark.parametrize(
    ("sector", "country", "jurisdiction"),
    [("police", "US", "US-WA"), ("law_enforcement", "USA", "US-WA"), ("corrections", "gb", "GB-ENG"), ("", "GB", "GB")],
)
def test_a_registration_in_another_spelling_writes_nothing(
    dynamo: str, sector: str, country: str, jurisdiction: str
) -> None:
    service = Operators()
    with pytest.raises(RegistrationError):
        service.register_tenant(OPERATOR, TENANT, name="X", sector=sector, country=country, jurisdiction=jurisdiction)
    assert service.registry.list_tenants() == []
    assert _actions(service) == []


def test_a_suspension_refuses_requests_and_a_reinstatement_restores_them(dynamo: str) -> None:
    service = Operators()
    _approved(service)
    assert _request_codes(service) == []
    with pytest.raises(InvalidRequestError):
        service.set_tenant_status(OPERATOR, TENANT, "suspended", reason="  ")
    assert service.set_tenant_status(OPERATOR, TENANT, "suspended", reason="licence lapsed").status == "suspended"
    assert "request.tenant_inactive" in _request_codes(service)
    with pytest.raises(InvalidRequestError):
        service.set_tenant_status(OPERATOR, TENANT, "deleted", reason="typo")
    service.set_tenant_status(OPERATOR, TENANT, "active", reason="licence renewed")
    assert _request_codes(service) == []
    assert _actions(service)[-2:] == ["tenant.suspended", "tenant.reinstated"]


def test_a_revoked_approval_refuses_with_its_own_reason(dynamo: str) -> None:
    service = Operators()
    _approved(service)
    service.revoke_use_case(OPERATOR, TENANT, "access_control", reason="audit finding")
    assert _request_codes(service) == ["request.approval_revoked"]
    with pytest.raises(InvalidRequestError):  # nothing active left to revoke: the caller's error
        service.revoke_use_case(OPERATOR, TENANT, "access_control", reason="again")
    assert _actions(service).count("approval.revoked") == 1


@pytest.mark.dynamo_backends("dynamodb-local")
def test_two_operators_revoking_at_once_record_one_revocation(dynamo: str) -> None:
    """The revocation is conditioned on the approvals as read: of two concurrent twins one commits and
    the other finds nothing active left (never two entries for one change, never a lost update)."""
    service = Operators()
    _approved(service)
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def revoke() -> None:
        barrier.wait()
        try:
            Operators().revoke_use_case(OPERATOR, TENANT, "access_control", reason="race")
            outcomes.append("revoked")
        except InvalidRequestError:
            outcomes.append("nothing left")

    threads = [threading.Thread(target=revoke) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["nothing left", "revoked"]
    assert _actions(service).count("approval.revoked") == 1
    assert [a.status for a in service.registry.get(TENANT).approvals] == ["revoked"]


def test_a_quota_only_lowers_the_catalogs_limit(dynamo: str) -> None:
    service = Operators()
    _approved(service)
    tenant = service.set_quota(OPERATOR, TENANT, "access_control", "search", per_minute=5, per_day=100)
    assert tenant.quotas["access_control"]["search"] == {"per_minute": 5, "per_day": 100}
    for bad in (
        {"per_minute": 10**6, "per_day": 100},  # above the catalog's ceiling
        {"per_minute": 0, "per_day": 100},
    ):
        with pytest.raises(InvalidRequestError):
            service.set_quota(OPERATOR, TENANT, "access_control", "search", **bad)
    with pytest.raises(InvalidRequestError):
        service.set_quota(OPERATOR, TENANT, "access_control", "export_everything", per_minute=1, per_day=1)
    with pytest.raises(InvalidRequestError):
        service.set_quota(OPERATOR, TENANT, "mass_surveillance", "search", per_minute=1, per_day=1)
    assert _actions(service).count("quota.set") == 1


@pytest.mark.dynamo_backends("dynamodb-local")
def test_two_quotas_set_at_once_are_both_kept(dynamo: str) -> None:
    """Each quota write is conditioned on the quotas as read: of two operators setting different quotas
    at the same moment, the second reads again and sets its own on top (no lost update)."""
    service = Operators()
    _approved(service)
    barrier = threading.Barrier(2)

    def set_quota(operation: str) -> None:
        barrier.wait()
        Operators().set_quota(OPERATOR, TENANT, "access_control", operation, per_minute=3, per_day=30)

    threads = [threading.Thread(target=set_quota, args=(op,)) for op in ("search", "verify")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    quotas = service.registry.get(TENANT).quotas["access_control"]
    assert set(quotas) == {"search", "verify"}
    assert _actions(service).count("quota.set") == 2
