"""Machine sign-in (OAuth client credentials) and the access tokens the API takes, on the local cloud.

GIVEN the deployed stack (user pool with its V3_0 token trigger, resource server, the API's authorizer
with the facegate/api scope) and the token endpoint the local API serves WHEN an operator creates a
checkpoint system's client and it signs in, calls the API, is disabled and enabled; and when callers try
what an attacker would (a wrong secret, a scope it was not given, an ID token, a token whose tenant claim
was edited, a person's token without a tenant, a client of one tenant reaching for another's data, a
failure between the app client and its record) THEN the tenant on every token is the one operators set,
every refusal is a 401 or an OAuth error (never a 5xx), and every change is on the tenant's record.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from facegate_sdk import FacegateClient, UnauthorizedError
from facegate_sdk.auth import AuthError, ClientCredentials, StaticToken

from facegate.localcloud.cloud import LocalCloud
from facegate.service.operators import Operators
from facegate.store.machine_clients import MachineClients
from facegate.tenancy import TenantContext

ROOT = Path(__file__).resolve().parents[2]
TENANT = "hmp-machine"
OTHER = "lab-machine"


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud(root=ROOT, stack_name="fgmachine") as local:
        local.serve_api()
        service = Operators()
        operator = str(local.operator_arn)
        until = datetime.now(UTC) + timedelta(days=30)
        for tenant in (TENANT, OTHER):
            service.register_tenant(
                operator, tenant, name=tenant, sector="corrections", country="GB", jurisdiction="GB-ENG"
            )
            service.approve_use_case(
                operator, tenant, use_case="access_control", deployment="closed_facility", expires_at=until
            )
        yield local


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def _machine(cloud: LocalCloud, tenant: str, name: str) -> tuple[dict[str, str], ClientCredentials]:
    creds = cloud.machine_client(tenant, name)
    return creds, ClientCredentials(
        creds["FACEGATE_CLIENT_ID"], creds["FACEGATE_CLIENT_SECRET"], creds["FACEGATE_TOKEN_URL"]
    )


def _token_request(url: str, form: dict[str, str], basic: tuple[str, str] | None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if basic is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
    request = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _actions(cloud: LocalCloud, tenant: str) -> list[tuple[str, str, dict[str, Any]]]:
    with cloud.admin():  # the operators append to the audit log; reading it is a test's inspection
        entries = Operators().audit.entries(TenantContext(tenant_id=tenant, actor="reader"))
    return [(e.action, e.actor, dict(e.details)) for e in entries]


def test_a_checkpoint_system_signs_in_and_acts_as_its_tenant_only(cloud: LocalCloud) -> None:
    creds, machine = _machine(cloud, TENANT, "gate-b-turnstile")
    claims = _claims(machine.token())
    assert claims["custom:tenant_id"] == TENANT
    assert (claims["token_use"], claims["scope"], claims["sub"]) == (
        "access",
        "facegate/api",
        creds["FACEGATE_CLIENT_ID"],
    )
    assert claims["exp"] - claims["iat"] == 15 * 60  # a disabled client's last token ends within 15 minutes

    client = FacegateClient(cloud.serve_api(), auth=machine)
    client.create_gallery("gate-b", name="Gate B", use_case="access_control")
    assert [g["gallery_id"] for g in client.list_galleries()["galleries"]] == ["gate-b"]
    # The other tenant's machine sees only its own (empty) galleries, however it asks.
    _, other = _machine(cloud, OTHER, "lab-door")
    assert FacegateClient(cloud.serve_api(), auth=other).list_galleries()["galleries"] == []

    created = [a for a in _actions(cloud, TENANT) if a[0] == "machine_client.created"]
    assert created == [
        (
            "machine_client.created",
            str(cloud.operator_arn),
            {"client_id": creds["FACEGATE_CLIENT_ID"], "name": "gate-b-turnstile"},
        )
    ]
    galleries = [a for a in _actions(cloud, TENANT) if a[0] == "gallery.created"]
    assert [actor for _, actor, _ in galleries] == [creds["FACEGATE_CLIENT_ID"]]  # the machine is the actor


def test_the_token_endpoint_refuses_what_cognitos_refuses(cloud: LocalCloud) -> None:
    creds, _ = _machine(cloud, TENANT, "gate-c")
    url, cid, secret = creds["FACEGATE_TOKEN_URL"], creds["FACEGATE_CLIENT_ID"], creds["FACEGATE_CLIENT_SECRET"]
    grant = {"grant_type": "client_credentials"}
    assert _token_request(url, grant, (cid, secret))[0] == 200
    assert _token_request(url, grant, (cid, "not-the-secret")) == (
        401,
        {"error": "invalid_client", "error_description": "the client's credentials are wrong"},
    )
    assert _token_request(url, grant, ("no-such-client", secret))[1]["error"] == "invalid_client"
    assert _token_request(url, {**grant, "client_id": cid, "client_secret": secret}, None)[0] == 200  # form auth
    assert _token_request(url, {**grant, "scope": "aws.cognito.signin.user.admin"}, (cid, secret))[1]["error"] == (
        "invalid_scope"
    )
    assert _token_request(url, {"grant_type": "password", "username": "x"}, (cid, secret))[1]["error"] == (
        "unsupported_grant_type"
    )
    # The people's app client has no secret and no client-credentials grant.
    people = str(cloud.outputs["UserPoolClientId"])
    assert _token_request(url, grant, (people, ""))[1]["error"] == "invalid_client"


def test_a_disabled_client_gets_no_token_and_its_calls_stop_at_the_next_sign_in(cloud: LocalCloud) -> None:
    creds, machine = _machine(cloud, TENANT, "gate-d")
    client = FacegateClient(cloud.serve_api(), auth=machine)
    client.list_galleries()
    service = Operators()
    operator = str(cloud.operator_arn)
    service.set_machine_client_status(operator, TENANT, creds["FACEGATE_CLIENT_ID"], "disabled", reason="reader stolen")
    fresh = ClientCredentials(creds["FACEGATE_CLIENT_ID"], creds["FACEGATE_CLIENT_SECRET"], creds["FACEGATE_TOKEN_URL"])
    with pytest.raises(AuthError, match="disabled"):
        fresh.token()
    machine.expired(machine.token())  # what a 401 does: the next call asks for a new token, and gets none
    with pytest.raises(AuthError, match="disabled"):
        client.list_galleries()
    service.set_machine_client_status(operator, TENANT, creds["FACEGATE_CLIENT_ID"], "active", reason="replaced")
    assert FacegateClient(cloud.serve_api(), auth=fresh).list_galleries()["galleries"] is not None
    changes = [
        (a, d.get("reason"))
        for a, _, d in _actions(cloud, TENANT)
        if a.startswith("machine_client.") and d.get("client_id") == creds["FACEGATE_CLIENT_ID"]
    ]
    assert changes == [
        ("machine_client.created", None),
        ("machine_client.disabled", "reader stolen"),
        ("machine_client.enabled", "replaced"),
    ]


def test_the_api_takes_only_access_tokens_with_its_scope_and_an_intact_tenant(cloud: LocalCloud) -> None:
    api = cloud.serve_api()
    person = cloud.sign_in(TENANT, "officer-scoped", "Scoped-password-12345")
    assert _claims(person["AccessToken"])["custom:tenant_id"] == TENANT
    assert "facegate/api" in _claims(person["AccessToken"])["scope"].split()
    FacegateClient(api, person["AccessToken"]).list_galleries()

    # The same person's ID token: API Gateway's authorizer with scopes refuses it.
    idp = cloud.client("cognito-idp")
    from facegate_sdk.auth import CognitoSession

    session = CognitoSession.sign_in(
        "officer-scoped", "Scoped-password-12345", user_pool_id=str(cloud.outputs["UserPoolId"]),
        client_id=str(cloud.outputs["UserPoolClientId"]), region="us-east-1",
    )  # fmt: skip
    answer = idp.initiate_auth(
        ClientId=str(cloud.outputs["UserPoolClientId"]),
        AuthFlow="REFRESH_TOKEN_AUTH",
        AuthParameters={"REFRESH_TOKEN": session.refresh_token},
    )["AuthenticationResult"]
    assert _claims(answer["AccessToken"])["custom:tenant_id"] == TENANT  # a refreshed token keeps its tenant
    with pytest.raises(UnauthorizedError):
        FacegateClient(api, auth=StaticToken(answer["IdToken"])).list_galleries()

    # A token whose tenant claim was edited to another's no longer verifies.
    header, _, signature = person["AccessToken"].split(".")
    claims = _claims(person["AccessToken"]) | {"custom:tenant_id": OTHER}
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    with pytest.raises(UnauthorizedError):
        FacegateClient(api, auth=StaticToken(f"{header}.{forged_payload}.{signature}")).list_galleries()

    # A user no operator gave a tenant signs in, but its token carries neither the claim nor the scope.
    pool = str(cloud.outputs["UserPoolId"])
    idp.admin_create_user(UserPoolId=pool, Username="no-tenant", MessageAction="SUPPRESS")
    idp.admin_set_user_password(UserPoolId=pool, Username="no-tenant", Password="No-tenant-password-1", Permanent=True)
    stray = CognitoSession.sign_in(
        "no-tenant", "No-tenant-password-1", user_pool_id=pool, client_id=str(cloud.outputs["UserPoolClientId"]),
        region="us-east-1",
    )  # fmt: skip
    assert "custom:tenant_id" not in _claims(stray.token())
    assert "facegate/api" not in _claims(stray.token())["scope"].split()
    with pytest.raises(UnauthorizedError):
        FacegateClient(api, auth=StaticToken(stray.token())).list_galleries()


def test_no_app_client_is_left_without_its_record(cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> None:
    """The failure between two writes: the app client exists, its record (and audit entry) fails. The app
    client is deleted again, so no credential exists that the registry does not know."""
    from facegate.errors import StorageError, TenantNotFoundError
    from facegate.operator_cli import create_machine_client

    idp = cloud.client("cognito-idp")
    pool = str(cloud.outputs["UserPoolId"])

    def app_clients() -> set[str]:
        return {c["ClientId"] for c in idp.list_user_pool_clients(UserPoolId=pool, MaxResults=60)["UserPoolClients"]}

    before = app_clients()
    with pytest.raises(TenantNotFoundError):  # an unknown tenant: nothing is created at all
        create_machine_client(idp, pool, Operators(), "operator", "no-such-tenant", "gate-x")

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise StorageError("the audit append failed")

    monkeypatch.setattr(Operators, "register_machine_client", failing)
    with pytest.raises(StorageError):
        create_machine_client(idp, pool, Operators(), "operator", TENANT, "gate-y")
    assert app_clients() == before
    assert all(c.name != "gate-y" for c in MachineClients().of_tenant(TENANT))


def test_an_answer_lost_after_the_record_keeps_the_client_it_names(
    cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record committed and then the answer failed (a timeout on the way back): the app client is
    kept, since the registry and the audit log name it, and the operator is told so."""
    from facegate.errors import StorageError
    from facegate.operator_cli import create_machine_client

    idp = cloud.client("cognito-idp")
    pool = str(cloud.outputs["UserPoolId"])
    original = Operators.register_machine_client

    def lost_answer(self: Operators, *args: Any, **kwargs: Any) -> Any:
        original(self, *args, **kwargs)
        raise TimeoutError("read timed out")

    monkeypatch.setattr(Operators, "register_machine_client", lost_answer)
    with pytest.raises(StorageError, match="created and recorded"):
        create_machine_client(idp, pool, Operators(), str(cloud.operator_arn), TENANT, "gate-z")
    (kept,) = [c for c in MachineClients().of_tenant(TENANT) if c.name == "gate-z"]
    assert idp.describe_user_pool_client(UserPoolId=pool, ClientId=kept.client_id)["UserPoolClient"]
