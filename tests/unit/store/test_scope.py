"""Tenant-scoped sessions: inside ``tenant_scope`` every table is reached with credentials of the tenant
role, assumed with the session tag ``tenant_id``; outside, the process's own. (IAM's LeadingKeys check
itself is AWS's: the template's role policy is checked in tests/unit/localcloud/test_template.py.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from pydantic import ValidationError

from facegate.settings import PROCESS_CREDENTIALS, TENANT_SESSIONS_VARIABLE, Settings
from facegate.store import scope
from facegate.store.models import ALL_MODELS, TemplateRecord, TenantRecord
from facegate.store.repositories import TenantRegistry
from facegate.store.scope import current_tenant, tenant_scope

pytestmark = pytest.mark.dynamo_backends("moto")

TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}
    ],
}


@pytest.fixture
def role(dynamo: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """The tenant role exists; every AssumeRole call's parameters are captured."""
    arn = boto3.client("iam").create_role(RoleName="tenant-data", AssumeRolePolicyDocument=json.dumps(TRUST))["Role"][
        "Arn"
    ]
    monkeypatch.setenv(scope.ROLE_VARIABLE, arn)
    calls: list[dict[str, Any]] = []
    real = scope._assume

    def assume(role_arn: str, tenant_id: str) -> Any:
        calls.append({"role": role_arn, "tenant": tenant_id})
        return real(role_arn, tenant_id)

    monkeypatch.setattr(scope, "_assume", assume)
    scope._sessions.clear()
    yield calls
    scope._sessions.clear()


def _signing_key(model: Any) -> str:
    return str(model._get_connection().connection.client._request_signer._credentials.access_key)


def test_without_a_role_a_scope_is_refused_naming_the_variable(dynamo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """No silent fallback: a missing role is a configuration error, never the process's own credentials."""
    monkeypatch.delenv(scope.ROLE_VARIABLE, raising=False)
    monkeypatch.delenv(TENANT_SESSIONS_VARIABLE, raising=False)
    with pytest.raises(ValidationError, match="FACEGATE_TENANT_ROLE_ARN"), tenant_scope("tenant-a"):
        pytest.fail("the block ran without a tenant session")
    assert current_tenant() is None


def test_the_explicit_opt_out_uses_the_process_credentials(dynamo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(scope.ROLE_VARIABLE, raising=False)
    monkeypatch.setenv(TENANT_SESSIONS_VARIABLE, PROCESS_CREDENTIALS)
    before = _signing_key(TenantRecord)
    with tenant_scope("tenant-a"):
        assert current_tenant() == "tenant-a"
        assert _signing_key(TenantRecord) == before
    assert current_tenant() is None


@pytest.mark.parametrize("where", ["AWS_LAMBDA_FUNCTION_NAME", "AWS_BATCH_JOB_ID"])
def test_the_opt_out_is_refused_in_a_deployed_function_or_job(
    dynamo: str, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    monkeypatch.delenv(scope.ROLE_VARIABLE, raising=False)
    monkeypatch.setenv(TENANT_SESSIONS_VARIABLE, PROCESS_CREDENTIALS)
    monkeypatch.setenv(where, "deployed")
    with pytest.raises(ValidationError, match="FACEGATE_TENANT_SESSIONS"), tenant_scope("tenant-a"):
        pytest.fail("a deployed function ran a tenant scope on its own credentials")


def test_a_role_and_the_opt_out_together_are_refused(dynamo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(scope.ROLE_VARIABLE, "arn:aws:iam::123456789012:role/tenant-data")
    monkeypatch.setenv(TENANT_SESSIONS_VARIABLE, PROCESS_CREDENTIALS)
    with pytest.raises(ValidationError, match="both"), tenant_scope("tenant-a"):
        pytest.fail("ran")


BASE_ENV = {"FACEGATE_TABLE_PREFIX": "fg", "AWS_REGION": "us-east-1"}


def test_settings_at_cold_start_require_the_role_naming_it() -> None:
    """What every handler reads at cold start: a function deployed without the role fails its first
    invocation with the variable's name."""
    with pytest.raises(ValidationError, match="FACEGATE_TENANT_ROLE_ARN"):
        Settings.from_env(BASE_ENV)
    with pytest.raises(ValidationError, match="role_arn"):
        Settings.from_env({**BASE_ENV, "FACEGATE_TENANT_ROLE_ARN": "not-an-arn"})
    role = "arn:aws:iam::123456789012:role/fg-TenantDataRole"
    settings = Settings.from_env({**BASE_ENV, "FACEGATE_TENANT_ROLE_ARN": role})
    assert settings.tenant_sessions is not None
    assert settings.tenant_sessions.role_arn == role
    opted_out = Settings.from_env({**BASE_ENV, TENANT_SESSIONS_VARIABLE: PROCESS_CREDENTIALS})
    assert opted_out.tenant_sessions is not None
    assert opted_out.tenant_sessions.role_arn is None
    with pytest.raises(ValidationError, match="FACEGATE_TENANT_SESSIONS"):
        Settings.from_env({**BASE_ENV, TENANT_SESSIONS_VARIABLE: "off"})


def test_inside_a_scope_tables_are_reached_with_the_tagged_session(dynamo: str, role: list[dict[str, Any]]) -> None:
    own = _signing_key(TenantRecord)
    with tenant_scope("tenant-a"):
        scoped = {model: _signing_key(model) for model in ALL_MODELS}
        TenantRegistry().register("tenant-a", name="A", sector="private", country="GB", jurisdiction="GB")
    assert set(scoped.values()) != {own}
    assert len(set(scoped.values())) == 1  # one session for every table
    assert _signing_key(TemplateRecord) == own  # restored after the scope
    assert all(model.Meta.aws_session_token is None for model in ALL_MODELS)
    assert [call["tenant"] for call in role] == ["tenant-a"]


def test_the_session_is_tagged_with_the_tenant(
    dynamo: str, role: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tag is what the role's LeadingKeys condition reads: it must be on every AssumeRole."""
    calls: list[dict[str, Any]] = []
    session = boto3.session.Session()
    session.events.register("provide-client-params.sts.AssumeRole", lambda params, **_: calls.append(dict(params)))
    monkeypatch.setattr(boto3, "client", session.client)

    with tenant_scope("tenant-b"):
        TenantRecord.exists()

    assert len(calls) == 1
    assert calls[0]["Tags"] == [{"Key": "tenant_id", "Value": "tenant-b"}]
    assert calls[0]["RoleSessionName"].startswith("tenant-b-")
    assert calls[0]["DurationSeconds"] == scope.SESSION_SECONDS


def test_sessions_are_reused_per_tenant(dynamo: str, role: list[dict[str, Any]]) -> None:
    for _ in range(3):
        with tenant_scope("tenant-a"):
            TenantRecord.exists()
    with tenant_scope("tenant-c"):
        TenantRecord.exists()
    assert [c["tenant"] for c in role] == ["tenant-a", "tenant-c"]


def test_sessions_are_cached_per_caller_as_well(
    dynamo: str, role: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Credentials one principal obtained are never used by another (in the local cloud every function
    shares this process, as separate Lambda containers would not)."""
    with tenant_scope("tenant-a"):
        TenantRecord.exists()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "another-caller")
    with tenant_scope("tenant-a"):
        TenantRecord.exists()
    assert [c["tenant"] for c in role] == ["tenant-a", "tenant-a"]


def test_concurrent_scopes_never_use_another_tenants_credentials(dynamo: str, role: list[dict[str, Any]]) -> None:
    tenants = [f"tenant-{i}" for i in range(4)] * 5
    seen: list[tuple[str, str, str | None]] = []

    def request(tenant: str) -> None:
        with tenant_scope(tenant):
            TenantRecord.exists()
            seen.append((tenant, _signing_key(TenantRecord), current_tenant()))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(request, tenants))

    assert len(seen) == len(tenants)
    assert all(tenant == inside for tenant, _, inside in seen)
    tenant_of_key: dict[str, str] = {}
    for tenant, key, _ in seen:
        assert tenant_of_key.setdefault(key, tenant) == tenant, f"{key} served two tenants"
    assert sorted(c["tenant"] for c in role) == sorted(set(tenants))  # one AssumeRole per tenant


def test_a_scope_cannot_open_another_tenant_inside_it(dynamo: str, role: list[dict[str, Any]]) -> None:
    with tenant_scope("tenant-a"):
        with tenant_scope("tenant-a"):  # the same tenant nests
            assert current_tenant() == "tenant-a"
        with pytest.raises(PermissionError, match="tenant-a"), tenant_scope("tenant-b"):
            pass
    assert current_tenant() is None


def test_a_malformed_tenant_id_opens_nothing(dynamo: str) -> None:
    from facegate.errors import InvalidIdentifierError

    with pytest.raises(InvalidIdentifierError), tenant_scope("Tenant#A"):
        pass
