"""A tenant system's direct uploads (threat model row 14): through its ``TenantUploaderRole`` session it
may write under its own ``tenants/<tenant>/`` only, and under ``tenants/`` the bucket refuses every other
writer but the API and the bulk job. One cloud for the module; the real template, bucket policy and ASL.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from _images import chip_png as _chip
from botocore.exceptions import ClientError

from facegate import datasets
from facegate.localcloud.cloud import LocalCloud
from facegate.service import FaceService
from facegate.store.models import RequestRecord
from facegate.store.scope import tenant_scope
from facegate.tenancy import TenantContext

ROOT = Path(__file__).resolve().parents[2]
OPERATOR = "operator@facegate"
PRISON = TenantContext(tenant_id="hmp-uploads", actor="officer-1")
OTHER_TENANT = "hmp-elsewhere"
GALLERY = "residents"
PURPOSE = "entry at gate A"
RESOURCE_DENY = "with an explicit deny in a resource-based policy"


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud(root=ROOT, stack_name="fgupload") as local:
        yield local


@pytest.fixture(scope="module")
def people() -> dict[str, list[Path]]:
    return datasets.johns()


@pytest.fixture(scope="module")
def subject(cloud: LocalCloud, people: dict[str, list[Path]]) -> str:
    """A prison approved for access control, with one person enrolled through the Enrol workflow."""
    service = FaceService()
    service.registry.register(PRISON.tenant_id, name="HMP", sector="corrections", country="GB", jurisdiction="GB")
    service.approve_use_case(
        OPERATOR,
        PRISON.tenant_id,
        use_case="access_control",
        deployment="closed_facility",
        expires_at=datetime.now(UTC) + timedelta(days=30),
    )
    name = next(iter(people))
    with tenant_scope(PRISON.tenant_id):
        service.create_gallery(PRISON, GALLERY, name="Residents", use_case="access_control")
        consent = service.record_consent(
            PRISON,
            subject_id=name,
            purpose="access_control",
            evidence=b"signed",
            expires_at=datetime.now(UTC) + timedelta(days=30),
        )
    run = cloud.wait_for(cloud.start_enrolment(PRISON, GALLERY, name, consent.consent_id, _chip(people[name][0])))
    assert run.status == "SUCCEEDED", run
    return name


def _refusal(put: Any) -> str:
    with pytest.raises(ClientError) as denied:
        put()
    error = denied.value.response["Error"]
    assert error["Code"] == "AccessDenied"
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    return str(error["Message"])


def _values(node: Any, name: str) -> list[Any]:
    """Every value of ``name`` anywhere in a JSON document."""
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == name] + [x for v in node.values() for x in _values(v, name)]
    if isinstance(node, list):
        return [x for v in node for x in _values(v, name)]
    return []


def _probe_key(tenant: str) -> str:
    return f"tenants/{tenant}/probes/{GALLERY}/{uuid.uuid4().hex}.png"


def test_an_upload_under_its_own_prefix_runs_recognize_as_the_tenant_system(
    cloud: LocalCloud, people: dict[str, list[Path]], subject: str
) -> None:
    """GIVEN the prison's uploader session WHEN it puts a probe under its own prefix, declaring an actor
    THEN Recognize runs, the request is recorded as the tenant system's and the declared actor only as
    claimed (no proof from the API)."""
    ref = cloud.put_probe(
        PRISON.tenant_id, GALLERY, _chip(people[subject][3]), operation="search", purpose=PURPOSE, actor=PRISON.actor
    )
    run = cloud.wait_for(cloud.execution_for(ref))

    assert run.status == "SUCCEEDED", run
    with tenant_scope(PRISON.tenant_id):
        assert RequestRecord.get(PRISON.tenant_id, ref.request_id()).requested_by == f"s3-upload:{PRISON.tenant_id}"
    history = cloud.client("stepfunctions").get_execution_history(executionArn=run.arn, maxResults=1000)["events"]
    outputs = [json.loads(d["output"]) for e in history for d in e.values() if isinstance(d, dict) and "output" in d]
    assert set(_values(outputs, "claimed_actor")) == {PRISON.actor}
    uploaders = [
        s
        for s in cloud.adapter.assume_role_calls
        if s.role_arn == cloud.outputs["TenantUploaderRoleArn"] and s.tags == {"tenant_id": PRISON.tenant_id}
    ]
    assert len(uploaders) == 1, "the upload was not signed by the prison's uploader session"


def test_an_uploader_session_cannot_put_under_another_tenants_prefix(cloud: LocalCloud) -> None:
    key = _probe_key(OTHER_TENANT)
    uploader = cloud.uploader(PRISON.tenant_id)

    message = _refusal(lambda: uploader.put_object(Bucket=cloud.bucket, Key=key, Body=b"probe"))

    assert message.endswith("because no identity-based policy allows the s3:PutObject action")
    assert f"assumed-role/{cloud.outputs['TenantUploaderRoleArn'].rsplit('/', 1)[-1]}/" in message
    with pytest.raises(ClientError):
        cloud.client("s3").head_object(Bucket=cloud.bucket, Key=key)


def test_an_uploader_session_cannot_write_the_bulk_jobs_reports(cloud: LocalCloud) -> None:
    key = f"tenants/{PRISON.tenant_id}/reports/forged.json"
    uploader = cloud.uploader(PRISON.tenant_id)

    message = _refusal(lambda: uploader.put_object(Bucket=cloud.bucket, Key=key, Body=b"{}"))

    assert message.endswith("with an explicit deny in an identity-based policy")


def _operator(cloud: LocalCloud) -> Any:
    return boto3.client("s3", region_name="us-east-1")  # this process's own credentials: the operator's session


def _function_role(cloud: LocalCloud) -> Any:
    assert cloud.stack is not None
    role = str(cloud.stack.attrs["PolicyCheckFunctionRole"]["Arn"])
    creds = cloud.adapter.service_credentials(role, "policy-check", "lambda.amazonaws.com", "us-east-1")
    return boto3.session.Session(
        aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=creds["AWS_SESSION_TOKEN"],
        region_name="us-east-1",
    ).client("s3")


def _administrator(cloud: LocalCloud) -> Any:
    return cloud.client("s3")


@pytest.mark.parametrize(
    ("signer", "who"),
    [(_operator, "assumed-role/"), (_function_role, "assumed-role/"), (_administrator, ":root")],
    ids=["operator", "another-functions-role", "administrator"],
)
def test_a_principal_that_is_not_a_writer_is_refused_under_tenants_by_the_bucket(
    cloud: LocalCloud, signer: Any, who: str
) -> None:
    """The operators, a function whose role may not write and the account's administrator alike: the
    bucket's Deny names only the writer roles."""
    s3 = signer(cloud)
    key = _probe_key(PRISON.tenant_id)

    message = _refusal(lambda: s3.put_object(Bucket=cloud.bucket, Key=key, Body=b"probe"))

    assert message.endswith(RESOURCE_DENY)
    assert who in message
    with pytest.raises(ClientError):
        cloud.client("s3").head_object(Bucket=cloud.bucket, Key=key)


def test_outside_tenants_the_administrator_still_writes(cloud: LocalCloud) -> None:
    cloud.client("s3").put_object(Bucket=cloud.bucket, Key="outside/readme.txt", Body=b"x")
