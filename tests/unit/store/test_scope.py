"""Tenant-scoped sessions: inside ``tenant_scope`` every table is reached with credentials of the tenant
role, assumed with the session tag ``tenant_id``; outside, the process's own. (IAM's LeadingKeys check
itself is AWS's: the template's role policy is checked in tests/unit/localcloud/test_template.py.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

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


def test_without_a_role_the_process_credentials_are_used(dynamo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(scope.ROLE_VARIABLE, raising=False)
    before = _signing_key(TenantRecord)
    with tenant_scope("tenant-a"):
        assert current_tenant() == "tenant-a"
        assert _signing_key(TenantRecord) == before
    assert current_tenant() is None


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
