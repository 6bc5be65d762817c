"""Tenant-scoped sessions on the local cloud, as Lambda and IAM would run them: every handler under its
function's whole environment, every request through ``TenantDataRole`` sessions tagged with its tenant
(counted), those sessions confined by the role's own LeadingKeys condition (a cross-tenant key built
inside a handler is refused), and the operator's calls made as ``OperatorRole``."""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from _images import chip_png as _chip
from pydantic import ValidationError

from facegate import datasets
from facegate.errors import StorageError
from facegate.localcloud.adapter import DynamoDBCall, SessionRecord
from facegate.localcloud.cloud import LOCAL_STAND_INS, Execution, LocalCloud
from facegate.localcloud.deploy import LAMBDA_RUNTIME_VARIABLES
from facegate.localcloud.runtime import Container, inside
from facegate.models import default_model_dir
from facegate.service import FaceService
from facegate.store.models import AuditRecord
from facegate.store.repositories import Galleries, Requests
from facegate.store.scope import tenant_scope
from facegate.tenancy import TenantContext
from facegate.workflow.models import ObjectRef

ROOT = Path(__file__).resolve().parents[2]
PRISON = TenantContext(tenant_id="hmp-scope", actor="officer-1")
LAB = TenantContext(tenant_id="lab-scope", actor="guard-1")
GALLERY = "residents"
PURPOSE = "entry at gate A"
SELF_SET = {"OPENCV_IO_MAX_IMAGE_PIXELS"}
"""Variables facegate's own code sets at import (facegate.vision.decode), as it would in Lambda."""


@pytest.fixture(scope="module")
def people() -> dict[str, list[Path]]:
    return datasets.johns()


@pytest.fixture(scope="module")
def cloud(people: dict[str, list[Path]]) -> Iterator[LocalCloud]:
    """Two approved tenants, each with a gallery named ``residents`` and one person enrolled."""
    with LocalCloud(root=ROOT, stack_name="fgscope") as local:
        first, second = list(people)[:2]
        for ctx, subject in ((PRISON, first), (LAB, second)):
            _tenant(ctx)
            run = _enrol(local, ctx, subject, _chip(people[subject][0]))
            assert run.status == "SUCCEEDED", run
        yield local


def _tenant(ctx: TenantContext) -> None:
    service = FaceService()
    service.registry.register(ctx.tenant_id, name=ctx.tenant_id, sector="corrections", country="GB", jurisdiction="GB")
    until = datetime.now(UTC) + timedelta(days=30)
    service.approve_use_case(
        "operator", ctx.tenant_id, use_case="access_control", deployment="closed_facility", expires_at=until
    )
    with tenant_scope(ctx.tenant_id):
        service.create_gallery(ctx, GALLERY, name="Residents", use_case="access_control")


def _enrol(cloud: LocalCloud, ctx: TenantContext, subject: str, image: bytes) -> Execution:
    with tenant_scope(ctx.tenant_id):
        consent = FaceService().record_consent(
            ctx, subject_id=subject, purpose="access_control", evidence=b"signed",
            expires_at=datetime.now(UTC) + timedelta(days=30),
        )  # fmt: skip
    return cloud.wait_for(cloud.start_enrolment(ctx, GALLERY, subject, consent.consent_id, image))


def _search(cloud: LocalCloud, ctx: TenantContext, image: bytes) -> tuple[ObjectRef, Execution]:
    ref = cloud.put_probe(ctx.tenant_id, GALLERY, image, operation="search", purpose=PURPOSE, actor=ctx.actor)
    return ref, cloud.wait_for(cloud.execution_for(ref))


class Window:
    """What the local cloud's STS and DynamoDB saw from now on."""

    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self._assumed = len(cloud.adapter.assume_role_calls)
        self._calls = len(cloud.adapter.dynamodb_calls)

    @property
    def assumed(self) -> list[SessionRecord]:
        return self.cloud.adapter.assume_role_calls[self._assumed :]

    @property
    def calls(self) -> list[DynamoDBCall]:
        return self.cloud.adapter.dynamodb_calls[self._calls :]

    def tenant_table_calls(self) -> list[DynamoDBCall]:
        tenant_tables = {f"{self.cloud.stack_name}-{t}" for t in TENANT_TABLES}
        return [c for c in self.calls if c.tables & tenant_tables]


TENANT_TABLES = ("tenants", "galleries", "templates", "consents", "requests", "audit", "counters")


def _role(cloud: LocalCloud, logical: str) -> str:
    return str(cloud.stack.attrs[logical]["Arn"]) if cloud.stack else ""


def _owned_by(keys: set[str], tenant: str) -> bool:
    return all(k == tenant or k.startswith(f"{tenant}#") for k in keys)


# --- 1. every handler runs under its function's whole environment, and nothing else ---------------------


def _logical_functions(cloud: LocalCloud) -> dict[str, str]:
    assert cloud.stack is not None
    return {
        str(cloud.stack.refs[logical]): logical
        for logical, body in cloud.stack.template["Resources"].items()
        if body["Type"] == "AWS::Lambda::Function"
    }


def _expected_variables(cloud: LocalCloud, logical: str) -> dict[str, str]:
    """The function's variables exactly as the translated template sets them (Globals merged in)."""
    assert cloud.stack is not None
    props = cloud.stack.template["Resources"][logical]["Properties"]
    variables = cloud.stack.resolve(props.get("Environment", {}).get("Variables", {}))
    if props.get("PackageType") == "Image":  # functions/Dockerfile: ENV FACEGATE_MODEL_DIR=/opt/models
        variables = {"FACEGATE_MODEL_DIR": str(default_model_dir()), **variables}
    return {k: str(v) for k, v in variables.items()}


def test_handlers_see_exactly_their_functions_environment_in_workflows_the_api_and_the_batch_job(
    cloud: LocalCloud, people: dict[str, list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from facegate.sdk import FacegateClient

    monkeypatch.setenv("FACEGATE_HOST_CANARY", "from the host")
    seen: dict[str, list[dict[str, str]]] = {}
    for fn in {id(f): f for f in cloud.adapter.functions.values()}.values():

        def spy(event: dict[str, Any], context: Any, real: Callable[..., Any] = fn.handler, name: str = fn.name) -> Any:
            seen.setdefault(name, []).append(dict(os.environ))
            return real(event, context)

        monkeypatch.setattr(fn, "handler", spy)
    jobs: list[dict[str, str]] = []
    entry = cloud.adapter.batch_entrypoints["python -m facegate.batch"]
    monkeypatch.setitem(
        cloud.adapter.batch_entrypoints,
        "python -m facegate.batch",
        lambda argv, env: jobs.append(dict(os.environ)) or entry(argv, env),
    )

    subject = list(people)[2]
    assert _enrol(cloud, PRISON, subject, _chip(people[subject][0])).status == "SUCCEEDED"
    assert _search(cloud, PRISON, _chip(people[subject][3]))[1].status == "SUCCEEDED"
    officer = FacegateClient(cloud.serve_api(), cloud.issue_token(PRISON.tenant_id, "officer-env"))
    officer.export_audit()
    export = officer.wait_for_audit_export(officer.start_audit_export()["export_id"], timeout=120)
    assert export["status"] == "completed", export
    manifest = cloud.put_object(f"tenants/{PRISON.tenant_id}/manifests/env.jsonl", b'{"subject_id": "x"}')
    request = {
        "request_id": "bulk-env",
        "tenant_id": PRISON.tenant_id,
        "actor": PRISON.actor,
        "operation": "bulk_enrol",
        "gallery_id": GALLERY,
        "image": manifest.model_dump(),
    }
    cloud.wait_for(cloud.start_execution("BulkEnrolStateMachineArn", request))

    logical_of = _logical_functions(cloud)
    assert set(seen) == set(logical_of), "every function ran at least once"
    runtime_names = set(LAMBDA_RUNTIME_VARIABLES) | set(LOCAL_STAND_INS)
    for name, envs in seen.items():
        expected = _expected_variables(cloud, logical_of[name])
        for env in envs:
            assert set(env) - SELF_SET == set(expected) | runtime_names, name
            assert {k: env[k] for k in expected} == expected, name
            assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
            assert env["FACEGATE_TENANT_ROLE_ARN"] == cloud.outputs["TenantDataRoleArn"]
            assert cloud.adapter.sessions[env["AWS_ACCESS_KEY_ID"]].role_arn == _role(cloud, f"{logical_of[name]}Role")
            assert "FACEGATE_HOST_CANARY" not in env

    (job,) = jobs
    assert cloud.stack is not None
    definition = cloud.stack.template["Resources"]["BatchJobDefinition"]["Properties"]["ContainerProperties"]
    job_variables = {e["Name"]: str(e["Value"]) for e in cloud.stack.resolve(definition["Environment"])}
    credentials = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_BATCH_JOB_ID"}
    assert set(job) - SELF_SET == set(job_variables) | credentials | {"MANAGED_BY_AWS"}
    assert {k: job[k] for k in job_variables} == job_variables
    assert job["MANAGED_BY_AWS"] == "STARTED_BY_STEP_FUNCTIONS"  # what Step Functions' Batch integration adds
    assert cloud.adapter.sessions[job["AWS_ACCESS_KEY_ID"]].role_arn == _role(cloud, "BatchJobRole")


def test_a_function_deployed_without_the_tenant_role_fails_its_cold_start_naming_it(cloud: LocalCloud) -> None:
    """No silent fallback: the role is required settings, validated when the handler module is imported."""
    match = cloud.adapter.functions[cloud.function_name("MatchFunction")]
    assert match.container is not None
    source = ROOT / "functions" / "match" / "app.py"
    without_role = {k: v for k, v in match.container.env.items() if k != "FACEGATE_TENANT_ROLE_ARN"}
    opted_out = {**without_role, "FACEGATE_TENANT_SESSIONS": "process-credentials"}  # refused in Lambda
    for env in (without_role, opted_out):
        spec = importlib.util.spec_from_file_location("facegate_cold_start_probe", source)
        assert spec is not None
        assert spec.loader is not None
        with inside(Container("cold-start-probe", env)), pytest.raises(ValidationError, match="FACEGATE_TENANT_"):
            spec.loader.exec_module(importlib.util.module_from_spec(spec))


# --- 2. every request assumes TenantDataRole, tagged with its tenant; sessions cached per tenant ---------


def test_each_request_reaches_tenant_rows_only_through_sessions_tagged_with_its_tenant(
    cloud: LocalCloud, people: dict[str, list[Path]]
) -> None:
    """A new tenant's first enrolment assumes the tenant role once in each function that touches its rows
    (PolicyCheck, Embed, StoreTemplate, Finish), its first search once more (Match); warm functions reuse
    them. Every DynamoDB request on a tenant table is signed by one of those sessions and stays in its keys."""
    ctx = TenantContext(tenant_id="hmp-count", actor="officer-9")
    _tenant(ctx)
    subject = list(people)[3]
    tenant_functions = (
        "PolicyCheckFunction",
        "EmbedFunction",
        "StoreTemplateFunction",
        "FinishFunction",
        "MatchFunction",
    )
    fn = {logical: cloud.function_name(logical) for logical in tenant_functions}
    counts: list[int] = []
    for run_request, new_in in (
        (lambda: _enrol(cloud, ctx, subject, _chip(people[subject][0])), set(tenant_functions) - {"MatchFunction"}),
        (lambda: _enrol(cloud, ctx, subject, _chip(people[subject][1])), set()),
        (lambda: _search(cloud, ctx, _chip(people[subject][4]))[1], {"MatchFunction"}),
        (lambda: _search(cloud, ctx, _chip(people[subject][5]))[1], set()),
    ):
        window = Window(cloud)
        run = run_request()
        assert run.status == "SUCCEEDED", run
        assumed = [s for s in window.assumed if s.container is not None]  # the host's own scopes aside
        counts.append(len(assumed))
        assert sorted(str(s.container) for s in assumed) == sorted(fn[logical] for logical in new_in)
        assert all(s.role_arn == cloud.outputs["TenantDataRoleArn"] for s in assumed)
        assert all(dict(s.tags) == {"tenant_id": ctx.tenant_id} for s in assumed)
        touched = window.tenant_table_calls()  # the workflow's, and the consent this process recorded first
        assert [c for c in touched if c.container is not None], "the request touched no tenant row"
        for call in touched:
            assert call.allowed, call.reason
            assert call.container in (None, *fn.values()), call
            assert call.session is not None
            assert call.session.role_arn == cloud.outputs["TenantDataRoleArn"], call
            assert dict(call.session.tags) == {"tenant_id": ctx.tenant_id}
            assert _owned_by(call.leading_keys, ctx.tenant_id), call.leading_keys
    assert counts == [4, 0, 1, 0]


def test_concurrent_executions_of_two_tenants_never_share_a_session(
    cloud: LocalCloud, people: dict[str, list[Path]]
) -> None:
    first, second = list(people)[:2]
    subjects = {PRISON.tenant_id: first, LAB.tenant_id: second}
    window = Window(cloud)
    refs = [
        cloud.put_probe(ctx.tenant_id, GALLERY, _chip(people[subjects[ctx.tenant_id]][6 + i]), operation="search",
                        purpose=PURPOSE, actor=ctx.actor)
        for i in range(3)
        for ctx in (PRISON, LAB)
    ]  # fmt: skip
    runs = [cloud.wait_for(cloud.execution_for(ref)) for ref in refs]

    assert [r.status for r in runs] == ["SUCCEEDED"] * len(refs)
    tag_of: dict[str, str] = {}
    for call in window.tenant_table_calls():
        assert call.allowed, call.reason
        assert call.session is not None
        tenant = call.session.tags["tenant_id"]
        assert tag_of.setdefault(call.access_key, tenant) == tenant, "one session served two tenants"
        assert _owned_by(call.leading_keys, tenant), (tenant, call.leading_keys)
    assert set(tag_of.values()) == set(subjects)
    per_function_and_tenant = [(s.container, s.tags["tenant_id"]) for s in window.assumed]
    assert len(per_function_and_tenant) == len(set(per_function_and_tenant))  # cached, never re-assumed


# --- 3. the role's own LeadingKeys condition, enforced: a bug that builds another tenant's key ----------


def test_a_handler_that_builds_another_tenants_key_is_refused(
    cloud: LocalCloud, people: dict[str, list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A simulated request-path bug: the gallery lookup keys on the prison although the lab asked. The lab's
    session is refused by the tenant role's LeadingKeys condition; the prison's gallery is never read."""
    real = Galleries.find

    def buggy(self: Galleries, ctx: TenantContext, gallery_id: str) -> Any:
        return real(self, TenantContext(tenant_id=PRISON.tenant_id, actor=ctx.actor), gallery_id)

    monkeypatch.setattr(Galleries, "find", buggy)
    window = Window(cloud)
    _ref, run = _search(cloud, LAB, _chip(people[list(people)[1]][2]))
    monkeypatch.undo()

    refused = [c for c in window.calls if not c.allowed]
    assert refused, "the cross-tenant read went through"
    assert {c.operation for c in refused} == {"GetItem"}
    for call in refused:
        assert call.session is not None
        assert dict(call.session.tags) == {"tenant_id": LAB.tenant_id}
        assert call.leading_keys == {PRISON.tenant_id}
        assert call.container == cloud.function_name("PolicyCheckFunction")
        assert "is not authorized to perform: dynamodb:GetItem" in str(call.reason)
    assert not [c for c in window.calls if c.allowed and PRISON.tenant_id in c.leading_keys]
    assert run.output is None or run.output.get("status") != "completed"
    assert "Match" not in run.path


def test_a_transaction_with_one_item_of_another_tenant_is_refused_whole(
    cloud: LocalCloud, people: dict[str, list[Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bug is in a write this time: the lab's search result is recorded under the prison's key, in the
    transaction that also appends the lab's audit entry. IAM authorizes every item: nothing is written."""
    real = Requests.put_write

    def buggy(self: Requests, ctx: TenantContext, **row: Any) -> Any:
        return real(self, TenantContext(tenant_id=PRISON.tenant_id, actor=ctx.actor), **row)

    monkeypatch.setattr(Requests, "put_write", buggy)
    window = Window(cloud)
    ref, run = _search(cloud, LAB, _chip(people[list(people)[1]][3]))
    monkeypatch.undo()

    refused = [c for c in window.calls if not c.allowed and c.operation == "TransactWriteItems"]
    assert refused
    for call in refused:
        keys_by_action = sorted((c.action, c.context["dynamodb:LeadingKeys"]) for c in call.checks)
        assert ("dynamodb:PutItem", (PRISON.tenant_id,)) in keys_by_action  # the stray request row
        assert ("dynamodb:PutItem", (LAB.tenant_id,)) in keys_by_action  # the lab's own audit entry
    assert not [c for c in window.calls if c.allowed and PRISON.tenant_id in c.leading_keys]
    with tenant_scope(LAB.tenant_id):
        recorded = [e for e in FaceService().audit.entries(LAB) if e.details.get("request_id") == ref.request_id()]
    assert "search.completed" not in [e.action for e in recorded]
    assert run.output is None or run.output.get("status") != "completed"


# --- 4. the operator's calls run as OperatorRole; a tenant session cannot write the registry or the audit -


def test_the_operator_path_runs_as_the_operator_role(cloud: LocalCloud) -> None:
    window = Window(cloud)
    _tenant_registry_only = TenantContext(tenant_id="op-check", actor="operator")
    service = FaceService()
    service.registry.register("op-check", name="Op", sector="corrections", country="GB", jurisdiction="GB")
    service.approve_use_case(
        "operator", "op-check", use_case="access_control", deployment="closed_facility",
        expires_at=datetime.now(UTC) + timedelta(days=1),
    )  # fmt: skip
    operator = _role(cloud, "OperatorRole")
    assert window.calls
    assert all(c.allowed and c.session is not None and c.session.role_arn == operator for c in window.calls)
    (approval,) = [c for c in window.calls if c.operation == "TransactWriteItems"]
    assert sorted(c.action for c in approval.checks) == ["dynamodb:PutItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
    assert approval.tables == {"fgscope-audit", "fgscope-tenants"}
    assert cloud.operator_arn is not None
    assert "assumed-role/fgscope-OperatorRole/" in cloud.operator_arn

    with pytest.raises(StorageError, match="AccessDenied"):  # the operators' role holds no tenant data
        service.galleries.find(_tenant_registry_only, GALLERY)


def test_a_tenant_session_cannot_write_the_registry_or_rewrite_its_audit(cloud: LocalCloud) -> None:
    service = FaceService()
    with tenant_scope(PRISON.tenant_id):
        assert service.registry.current(PRISON).tenant_id == PRISON.tenant_id  # reading its own row is fine
        with pytest.raises(StorageError, match="AccessDenied"):
            service.registry.set_status(PRISON.tenant_id, "active")
        first = AuditRecord.get(PRISON.tenant_id, 1)
        with pytest.raises(Exception, match="AccessDenied"):
            first.update(actions=[AuditRecord.actor.set("someone else")])
        with pytest.raises(Exception, match="AccessDenied"):
            first.delete()
    with cloud.admin():  # the account's administrator is not evaluated (the intruder of other tests)
        assert AuditRecord.get(PRISON.tenant_id, 1).actor == first.actor
    refused = [c for c in cloud.adapter.dynamodb_calls if not c.allowed][-3:]
    assert [c.checks[0].action for c in refused] == [
        "dynamodb:UpdateItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
    ]
    assert json.dumps(sorted(c.tables.pop() for c in refused)) == json.dumps(
        ["fgscope-audit", "fgscope-audit", "fgscope-tenants"]
    )
