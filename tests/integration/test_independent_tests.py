"""Independent testing on the local cloud: the real template, the IndependentTest workflow (Standard),
the Batch job under its own role, the API, the SDK and the CLI.

An operator authorises a tester (a decision of the gate, audited, with an expiry); the tester's labelled
set goes to its own ``independent-tests/`` prefix; the job evaluates it through the production path and
writes the same report ``facegate evaluate`` writes. The job's role holds no table permission: the
sandbox reads and writes no gallery, consent or audit row. Probed like an attacker: an unauthorised or
expired tester, a set of three people, a bad archive, another tester's report, a duplicated delivery.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from facegate import cli
from facegate.evaluation import dataset as ds
from facegate.evaluation.report import evaluate
from facegate.localcloud.cloud import LocalCloud
from facegate.policy.catalog import default_catalog
from facegate.sandbox.archive import pack, unpacked
from facegate.sdk import FacegateApiError, FacegateClient
from facegate.service import FaceService
from facegate.store.scope import tenant_scope
from facegate.tenancy import TenantContext
from facegate.vision import FacePipeline

ROOT = Path(__file__).resolve().parents[2]
STACK = "fgsandbox"
LAB = "lab-indep"
OTHER_LAB = "lab-other"
UNAUTHORISED = "lab-unauth"
EXPIRED = "lab-expired"
PRISON = "hmp-sandbox"
TESTERS = (LAB, OTHER_LAB, UNAUTHORISED, EXPIRED)


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud(root=ROOT, stack_name=STACK) as local:
        local.serve_api()
        service = FaceService()
        for tenant in (*TESTERS, PRISON):
            sector = "corrections" if tenant == PRISON else "education"
            service.registry.register(tenant, name=tenant, sector=sector, country="GB", jurisdiction="GB")
        until = datetime.now(UTC) + timedelta(days=30)
        for tester in (LAB, OTHER_LAB):
            service.authorise_tester("operator@facegate", tester, expires_at=until)
        # Authorised 40 days ago for 39 days: expired yesterday.
        past = FaceService(clock=lambda: datetime.now(UTC) - timedelta(days=40))
        past.authorise_tester("operator@facegate", EXPIRED, expires_at=datetime.now(UTC) - timedelta(days=1))
        yield local


@pytest.fixture(scope="module")
def clients(cloud: LocalCloud) -> dict[str, FacegateClient]:
    url = cloud.serve_api()
    return {t: FacegateClient(url, cloud.issue_token(t, f"tester-{t}"), timeout=120.0) for t in TESTERS}


@pytest.fixture(scope="module")
def johns_zip() -> bytes:
    return pack(ds.fetched("johns"))


@pytest.fixture(scope="module")
def completed(clients: dict[str, FacegateClient], johns_zip: bytes, cloud: LocalCloud) -> dict[str, Any]:
    """The authorised lab's johns set, submitted and evaluated; the DynamoDB calls made meanwhile."""
    before = len(cloud.adapter.dynamodb_calls)
    submitted = clients[LAB].submit_independent_test(johns_zip, name="johns")
    outcome = clients[LAB].wait_for_independent_test(submitted["test_id"], timeout=300, poll=0.5)
    return {"submitted": submitted, "outcome": outcome, "calls": cloud.adapter.dynamodb_calls[before:]}


def _set_objects(cloud: LocalCloud, tester: str) -> list[str]:
    with cloud.admin():
        listed = boto3.client("s3").list_objects_v2(Bucket=cloud.bucket, Prefix=f"tenants/{tester}/independent-tests/")
    return sorted(o["Key"] for o in listed.get("Contents", []))


def _audit(tester: str) -> list[Any]:
    with tenant_scope(tester):  # as the tester's own export reads it
        return FaceService().audit.entries(TenantContext(tenant_id=tester, actor="auditor"))


def test_an_authorised_tester_receives_the_report_facegate_evaluate_writes(
    completed: dict[str, Any], johns_zip: bytes, pipeline: FacePipeline
) -> None:
    outcome = completed["outcome"]
    assert outcome["status"] == "completed", outcome
    report = outcome["report"]
    with unpacked(johns_zip, default_catalog().sandbox, name="johns") as (dataset, _):
        local = evaluate(dataset, pipeline)
    for section in ("dataset", "images", "verification", "identification", "curves", "operating_points"):
        assert report[section] == local[section], section
    assert report["kind"] == local["kind"]
    assert report["model_version"] == local["model_version"]
    # Counts only: nothing in the report is a score, a template or a file name of the tester's.
    text = json.dumps(report)
    assert "John_" not in text
    assert "embedding" not in text
    genuine = report["verification"]["at"][0]["fnmr"]["all"]
    assert genuine["n"] > 0
    assert 0 <= genuine["k"] <= genuine["n"]
    assert outcome["set"]["images"] == 55
    assert outcome["set"]["identities"] == 5


def test_the_html_report_carries_its_plots(completed: dict[str, Any], clients: dict[str, FacegateClient]) -> None:
    page = clients[LAB].independent_test(completed["submitted"]["test_id"], "html")
    assert page is not None
    assert page.lower().startswith("<!doctype html>")
    assert page.count("data:image/png;base64,") >= 3


def test_the_sandbox_touches_no_gallery_and_the_job_no_table(completed: dict[str, Any], cloud: LocalCloud) -> None:
    calls = completed["calls"]
    assert calls, "the workflow's own steps (the gate, Finish) record through DynamoDB"
    touched = {table for call in calls for table in call.tables}
    assert not touched & {f"{STACK}-templates", f"{STACK}-galleries", f"{STACK}-consents"}, touched
    assert not [c for c in calls if (c.container or "").startswith("batch:")], "the job called DynamoDB"
    # Every tenant key the workflow touched is the tester's (the rest are the steps' own idempotency keys).
    keys = {k for c in calls for k in c.leading_keys if not k.startswith(f"{STACK}-")}
    assert {k.split("#")[0] for k in keys} == {LAB}, keys


def test_the_jobs_role_is_refused_every_table(cloud: LocalCloud) -> None:
    assert cloud.stack is not None
    role = str(cloud.stack.attrs["IndependentTestJobRole"]["Arn"])
    creds = cloud.adapter.service_credentials(role, "probe", "ecs-tasks.amazonaws.com", "us-east-1")
    session = boto3.session.Session(
        aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=creds["AWS_SESSION_TOKEN"],
        region_name="us-east-1",
    )
    dynamodb = session.client("dynamodb")
    for table in ("templates", "galleries", "consents", "audit", "tenants"):
        name = f"{STACK}-{table}"
        schema = cloud.client("dynamodb").describe_table(TableName=name)["Table"]["KeySchema"]
        key = {k["AttributeName"]: {"S": PRISON} for k in schema if k["KeyType"] == "HASH"}
        key.update({k["AttributeName"]: {"S": "x"} for k in schema if k["KeyType"] == "RANGE"})
        with pytest.raises(ClientError, match="AccessDenied"):
            dynamodb.get_item(TableName=name, Key=key)
        with pytest.raises(ClientError, match="AccessDenied"):
            dynamodb.scan(TableName=name)


def test_the_outcome_is_audited_once_and_the_set_is_deleted(completed: dict[str, Any], cloud: LocalCloud) -> None:
    test_id = completed["submitted"]["test_id"]
    entries = [e for e in _audit(LAB) if e.details.get("request_id") == test_id]
    assert [e.action for e in entries] == ["independent_test.completed"]
    assert entries[0].details["labels_sha256"] == completed["submitted"]["set"]["labels_sha256"]
    left = _set_objects(cloud, LAB)
    assert not [k for k in left if k.endswith(".zip")], left  # the archive went with the outcome
    assert f"tenants/{LAB}/independent-tests/{test_id}/report.json" in left


def test_a_duplicated_delivery_gives_one_outcome_and_one_audit_entry(
    completed: dict[str, Any], cloud: LocalCloud
) -> None:
    sfn = cloud.client("stepfunctions")
    arn = cloud.state_machine_arn("IndependentTestStateMachineArn")
    (first,) = [
        e
        for e in sfn.list_executions(stateMachineArn=arn)["executions"]
        if e["name"] == completed["submitted"]["test_id"]
    ]
    request = json.loads(sfn.describe_execution(executionArn=first["executionArn"])["input"])
    again = cloud.wait_for(cloud.start_execution("IndependentTestStateMachineArn", request), timeout=120)
    assert again.status == "SUCCEEDED"
    assert "AlreadyProcessed" in again.path
    assert "RunEvaluation" not in again.path
    actions = [e.action for e in _audit(LAB) if e.details.get("request_id") == completed["submitted"]["test_id"]]
    assert actions == ["independent_test.completed"]


@pytest.mark.parametrize(
    ("tester", "code"), [(UNAUTHORISED, "request.not_approved"), (EXPIRED, "request.approval_expired")]
)
def test_a_tester_without_a_live_authorisation_is_refused_and_nothing_is_kept(
    tester: str, code: str, clients: dict[str, FacegateClient], johns_zip: bytes, cloud: LocalCloud
) -> None:
    submitted = clients[tester].submit_independent_test(johns_zip)
    outcome = clients[tester].wait_for_independent_test(submitted["test_id"], timeout=120, poll=0.3)
    assert outcome["status"] == "refused"
    assert [r["code"] for r in outcome["reasons"]] == [code]
    assert _set_objects(cloud, tester) == []  # no archive, no report
    actions = [e.action for e in _audit(tester)]
    assert "request.denied" in actions
    assert "request.refused" in actions
    with pytest.raises(FacegateApiError) as html:
        clients[tester].independent_test(submitted["test_id"], "html")
    assert html.value.status == 409


def test_a_set_of_three_people_is_refused_by_the_gate(
    clients: dict[str, FacegateClient], cloud: LocalCloud, tmp_path: Path
) -> None:
    johns = ds.fetched("johns")
    three = sorted({i.identity for i in johns.images})[:3]
    subset = ds.Dataset("three", "test", tuple(i for i in johns.images if i.identity in three), True, "none")
    submitted = clients[OTHER_LAB].submit_independent_test(pack(subset))
    outcome = clients[OTHER_LAB].wait_for_independent_test(submitted["test_id"], timeout=120, poll=0.3)
    assert outcome["status"] == "refused"
    assert [r["code"] for r in outcome["reasons"]] == ["sandbox.set_too_small"]


def _bad_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("labels.csv", "path,identity\n../../etc/passwd.png,x\n")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "body",
    [
        {"set_zip_b64": base64.b64encode(b"PK not really").decode()},
        {"set_zip_b64": "***not base64***"},
        {"set_zip_b64": base64.b64encode(_bad_zip()).decode()},
        {"set_zip_b64": base64.b64encode(_bad_zip()).decode(), "group_source": "guessed"},
        {"set_zip_b64": base64.b64encode(_bad_zip()).decode(), "tenant_id": LAB},
        {},
    ],
)
def test_a_bad_submission_is_a_400_that_stores_and_starts_nothing(
    body: dict[str, Any], clients: dict[str, FacegateClient], cloud: LocalCloud
) -> None:
    before = (_set_objects(cloud, OTHER_LAB), len(cloud.adapter.executions_started))
    with pytest.raises(FacegateApiError) as refused:
        clients[OTHER_LAB]._call("POST", "/independent-tests", body)
    assert refused.value.status == 400
    assert refused.value.code == "request.invalid"
    assert (_set_objects(cloud, OTHER_LAB), len(cloud.adapter.executions_started)) == before


def test_a_tester_cannot_read_another_testers_report(
    completed: dict[str, Any], clients: dict[str, FacegateClient]
) -> None:
    test_id = completed["submitted"]["test_id"]
    assert clients[OTHER_LAB].independent_test(test_id) is None  # a 404: as if there were no such test
    for spelling in ("..%2F" + test_id, test_id.upper(), test_id + "%00", "%2E%2E"):
        with pytest.raises(FacegateApiError) as bad:
            clients[LAB]._call("GET", f"/independent-tests/{spelling}")
        assert bad.value.status == 404, spelling
    with pytest.raises(FacegateApiError) as fmt:
        clients[LAB]._call("GET", f"/independent-tests/{test_id}?format=pdf")
    assert fmt.value.status == 400


def test_the_cli_submits_waits_and_writes_the_same_report(
    completed: dict[str, Any], clients: dict[str, FacegateClient], cloud: LocalCloud, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    token = clients[OTHER_LAB].token
    code = cli.main(
        [
            "sandbox",
            "submit",
            "johns",
            "--endpoint",
            cloud.serve_api(),
            "--token",
            token,
            "--wait",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0, capsys.readouterr().err
    written = json.loads((tmp_path / "report.json").read_text())
    assert written["verification"] == completed["outcome"]["report"]["verification"]
    assert (tmp_path / "report.html").read_text().count("data:image/png;base64,") >= 3
    test_id = written["independent_test"]["test_id"]
    assert cli.main(["sandbox", "report", test_id, "--endpoint", cloud.serve_api(), "--token", token]) == 0
    assert cli.main(["sandbox", "report", test_id, "--endpoint", cloud.serve_api(), "--token", clients[LAB].token]) == 4


def test_a_testers_own_uploader_session_cannot_forge_its_report(completed: dict[str, Any], cloud: LocalCloud) -> None:
    """The report is read back as facegate's: the tester's system, uploading under its own prefix, may not
    write it (nor a set, nor a one-call probe: those are the API's to store)."""
    test_id = completed["submitted"]["test_id"]
    for key in (
        f"tenants/{LAB}/independent-tests/{test_id}/report.json",
        f"tenants/{LAB}/independent-tests/{'0' * 32}.zip",
        f"tenants/{LAB}/calls/gate/{'0' * 32}",
    ):
        with pytest.raises(ClientError, match="AccessDenied"):
            cloud.uploader(LAB).put_object(Bucket=cloud.bucket, Key=key, Body=b'{"forged": true}')


def test_an_expired_report_is_a_410_and_the_outcome_stays(
    clients: dict[str, FacegateClient], johns_zip: bytes, cloud: LocalCloud
) -> None:
    tester = "lab-expiring"  # a tester of its own: the others have used their two tests a minute
    service = FaceService()
    service.registry.register(tester, name=tester, sector="education", country="GB", jurisdiction="GB")
    service.authorise_tester("operator@facegate", tester, expires_at=datetime.now(UTC) + timedelta(days=5))
    client = FacegateClient(cloud.serve_api(), cloud.issue_token(tester, "tester-expiring"), timeout=120.0)
    submitted = client.submit_independent_test(johns_zip, name="expiring")
    done = client.wait_for_independent_test(submitted["test_id"], timeout=300, poll=0.5)
    assert done["status"] == "completed", done
    s3 = cloud.client("s3")  # the bucket's lifecycle rule, a day later (the account's own credentials)
    for name in ("report.json", "report.html"):
        key = f"tenants/{tester}/independent-tests/{submitted['test_id']}/{name}"
        for v in s3.list_object_versions(Bucket=cloud.bucket, Prefix=key).get("Versions", []):
            s3.delete_object(Bucket=cloud.bucket, Key=key, VersionId=v["VersionId"])
    with pytest.raises(FacegateApiError) as gone:
        client.independent_test(submitted["test_id"])
    assert gone.value.status == 410
    assert gone.value.code == "request.report_expired"
