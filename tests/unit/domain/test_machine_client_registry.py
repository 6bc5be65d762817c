"""Machine clients and the tenant claim, on both DynamoDB backends.

GIVEN the operators' machine-client registry and the token trigger (Cognito's V3_0 pre-token-generation
event) WHEN a client is registered (twice, for an unknown tenant, with a bad name), disabled and enabled
(by two operators at once), and the trigger is asked for a person's token (with and without a tenant
attribute) and for a machine's (registered, unknown, disabled, with a tenant smuggled into the event)
THEN the claim comes only from what operators set, every change is on the tenant's audit record, and a
client that should get no token gets none.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from facegate.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidIdentifierError,
    InvalidRequestError,
    ResourceNotFoundError,
    TenantNotFoundError,
)
from facegate.service.operators import Operators
from facegate.store.machine_clients import MachineClients
from facegate.tenancy import TenantContext
from facegate.token_claims import API_SCOPE, TENANT_CLAIM, TokenRefusedError, add_claims

OPERATOR = "arn:aws:sts::123456789012:assumed-role/facegate-OperatorRole/alice"
TENANT = "hmp-gates"
OTHER = "lab-gates"
CLIENT = "5k2q8s1example0client0id0a"


def _registered(service: Operators, tenant: str = TENANT) -> None:
    service.register_tenant(OPERATOR, tenant, name=tenant, sector="corrections", country="GB", jurisdiction="GB-ENG")


def _actions(service: Operators, tenant: str = TENANT) -> list[tuple[str, dict[str, Any]]]:
    entries = service.audit.entries(TenantContext(tenant_id=tenant, actor="reader"))
    return [(e.action, dict(e.details)) for e in entries if e.action.startswith("machine_client.")]


def _machine_event(client_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "version": "3",
        "triggerSource": "TokenGeneration_ClientCredentials",
        "region": "us-east-1",
        "userPoolId": "us-east-1_pool",
        "userName": client_id,
        "callerContext": {"awsSdkVersion": "x", "clientId": client_id},
        "request": {"userAttributes": {}, "groupConfiguration": {}, "scopes": [API_SCOPE], **extra},
        "response": {"claimsAndScopeOverrideDetails": None},
    }


def _access(event: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = event["response"]["claimsAndScopeOverrideDetails"]["accessTokenGeneration"]
    return answer


def test_a_registered_client_gets_its_tenant_and_nothing_the_event_says(dynamo: str) -> None:
    service = Operators()
    _registered(service)
    service.register_machine_client(OPERATOR, TENANT, CLIENT, "gate-b")
    # A caller cannot choose its tenant: client metadata and attributes in the event are never read.
    event = _machine_event(CLIENT, clientMetadata={TENANT_CLAIM: OTHER})
    event["request"]["userAttributes"] = {TENANT_CLAIM: OTHER}
    assert _access(add_claims(event)) == {"claimsToAddOrOverride": {TENANT_CLAIM: TENANT}}
    assert _actions(service) == [("machine_client.created", {"client_id": CLIENT, "name": "gate-b"})]


@pytest.mark.parametrize("client_id", ["", "unknown0client0id", None])
def test_an_unregistered_client_gets_no_token(dynamo: str, client_id: str | None) -> None:
    event = _machine_event(client_id or "")
    if client_id is None:
        del event["callerContext"]
    with pytest.raises(TokenRefusedError, match="not a registered machine client"):
        add_claims(event)


def test_a_disabled_client_gets_no_token_until_enabled_and_each_change_is_recorded(dynamo: str) -> None:
    service = Operators()
    _registered(service)
    service.register_machine_client(OPERATOR, TENANT, CLIENT, "gate-b")
    disabled = service.set_machine_client_status(OPERATOR, TENANT, CLIENT, "disabled", reason="badge reader stolen")
    assert disabled.status == "disabled"
    with pytest.raises(TokenRefusedError, match="disabled"):
        add_claims(_machine_event(CLIENT))
    # Disabling again changes and records nothing.
    assert service.set_machine_client_status(OPERATOR, TENANT, CLIENT, "disabled", reason="again").status == "disabled"
    service.set_machine_client_status(OPERATOR, TENANT, CLIENT, "active", reason="reader replaced")
    assert _access(add_claims(_machine_event(CLIENT)))["claimsToAddOrOverride"] == {TENANT_CLAIM: TENANT}
    assert [a for a, _ in _actions(service)] == [
        "machine_client.created",
        "machine_client.disabled",
        "machine_client.enabled",
    ]
    assert _actions(service)[1][1] == {"client_id": CLIENT, "reason": "badge reader stolen"}


def test_another_tenants_operator_path_cannot_reach_a_client(dynamo: str) -> None:
    """A client is changed only under its own tenant: naming it under another is 'no such client'."""
    service = Operators()
    _registered(service)
    _registered(service, OTHER)
    service.register_machine_client(OPERATOR, TENANT, CLIENT, "gate-b")
    with pytest.raises(ResourceNotFoundError):
        service.set_machine_client_status(OPERATOR, OTHER, CLIENT, "disabled", reason="not theirs")
    assert MachineClients().get(CLIENT, consistent=True).status == "active"  # type: ignore[union-attr]
    assert _actions(service, OTHER) == []
    assert [c.client_id for c in MachineClients().of_tenant(OTHER)] == []
    assert [c.client_id for c in MachineClients().of_tenant(TENANT)] == [CLIENT]


def test_registration_refuses_what_it_cannot_record(dynamo: str) -> None:
    service = Operators()
    with pytest.raises(TenantNotFoundError):
        service.register_machine_client(OPERATOR, "no-such-tenant", CLIENT, "gate-b")
    _registered(service)
    with pytest.raises(InvalidIdentifierError):
        service.register_machine_client(OPERATOR, TENANT, CLIENT, "gate b#1")
    with pytest.raises(InvalidRequestError):
        service.register_machine_client(OPERATOR, TENANT, "not/a-client-id", "gate-b")
    with pytest.raises(InvalidRequestError, match="say why"):
        service.set_machine_client_status(OPERATOR, TENANT, CLIENT, "disabled", reason=" ")
    service.register_machine_client(OPERATOR, TENANT, CLIENT, "gate-b")
    _registered(service, OTHER)
    with pytest.raises(AlreadyExistsError):  # one client id is one tenant's, once: never moved to another
        service.register_machine_client(OPERATOR, OTHER, CLIENT, "gate-c")
    assert MachineClients().get(CLIENT, consistent=True).name == "gate-b"  # type: ignore[union-attr]
    assert len(_actions(service)) == 1


@pytest.mark.dynamo_backends("dynamodb-local")
def test_two_operators_disabling_at_once_record_one_change(dynamo: str) -> None:
    """The concurrent twin: each read 'active'; one disables and records it, the other's condition fails,
    and its second read finds nothing left to change: both are done, with one entry for one change."""
    service = Operators()
    _registered(service)
    service.register_machine_client(OPERATOR, TENANT, CLIENT, "gate-b")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []
    writes: list[str] = []

    original = MachineClients.status_write

    def status_write(self: MachineClients, client: Any, status: str) -> Any:
        writes.append(client.status)
        if len(writes) <= 2:
            barrier.wait(timeout=10)  # both have read the client before either writes
        return original(self, client, status)

    def disable() -> None:
        try:
            Operators().set_machine_client_status(OPERATOR, TENANT, CLIENT, "disabled", reason="twin")
            outcomes.append("done")
        except ConflictError:
            outcomes.append("conflict")

    mp = pytest.MonkeyPatch()
    mp.setattr(MachineClients, "status_write", status_write)
    try:
        threads = [threading.Thread(target=disable) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    finally:
        mp.undo()
    assert outcomes == ["done", "done"]
    assert writes == ["active", "active"]  # both tried on what they read; the loser wrote nothing
    assert [a for a, _ in _actions(service)] == ["machine_client.created", "machine_client.disabled"]


def test_a_person_gets_the_tenant_of_the_attribute_only_operators_write() -> None:
    event = {
        "version": "3",
        "triggerSource": "TokenGeneration_RefreshTokens",
        "callerContext": {"clientId": "sdk-client"},
        "request": {"userAttributes": {TENANT_CLAIM: TENANT, "sub": "u-1"}, "clientMetadata": {TENANT_CLAIM: OTHER}},
        "response": {},
    }
    assert _access(add_claims(event)) == {"claimsToAddOrOverride": {TENANT_CLAIM: TENANT}, "scopesToAdd": [API_SCOPE]}
    event["request"]["userAttributes"] = {"sub": "u-2"}  # no operator gave this user a tenant
    assert _access(add_claims(event)) == {"claimsToSuppress": [TENANT_CLAIM], "scopesToSuppress": [API_SCOPE]}


@pytest.mark.parametrize("source", ["TokenGeneration_Something", None, "PreSignUp_SignUp"])
def test_an_event_of_another_kind_gets_no_token(source: str | None) -> None:
    with pytest.raises(TokenRefusedError, match="trigger source"):
        add_claims({"triggerSource": source, "request": {"userAttributes": {TENANT_CLAIM: TENANT}}})
