"""The tenant SDK against the tenant API on loopback: API Gateway's routes and Cognito authorizer played
from the deployed API's own definition, the real ``api`` handler, the real workflows behind it."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from _images import chip_png as _chip

from facegate import datasets
from facegate.localcloud.cloud import LocalCloud
from facegate.sdk import FacegateApiError, FacegateClient, UnauthorizedError, UnknownRequestError
from facegate.service import FaceService

ROOT = Path(__file__).resolve().parents[2]
TENANT = "hmp-sdk"
OTHER = "lab-sdk"


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud(root=ROOT, stack_name="fgapi") as local:
        local.serve_api()
        service = FaceService()
        until = datetime.now(UTC) + timedelta(days=30)
        for tenant in (TENANT, OTHER):
            service.registry.register(tenant, name=tenant, sector="corrections", country="GB", jurisdiction="GB")
            service.approve_use_case(
                "operator", tenant, use_case="access_control", deployment="closed_facility", expires_at=until
            )
        yield local


@pytest.fixture(scope="module")
def officer(cloud: LocalCloud) -> FacegateClient:
    return FacegateClient(cloud.serve_api(), cloud.issue_token(TENANT, "officer-1"))


@pytest.fixture(scope="module")
def people() -> dict[str, list[Path]]:
    return datasets.johns()


def test_a_tenant_enrols_searches_reviews_erases_and_audits_through_the_sdk(
    cloud: LocalCloud, officer: FacegateClient, people: dict[str, list[Path]]
) -> None:
    officer.create_gallery("staff", name="Staff", use_case="access_control")
    subjects = list(people)[:2]
    for subject in subjects:
        consent = officer.record_consent(
            subject, purpose="access_control", evidence=b"signed", expires_at=datetime.now(UTC) + timedelta(days=9)
        )
        submitted = officer.enrol("staff", subject, consent["consent_id"], _chip(people[subject][0]))
        enrolled = officer.wait_for_request(submitted["request_id"])
        assert enrolled["status"] == "completed", enrolled
        assert enrolled["result"]["subject_id"] == subject

    submitted = officer.submit_search("staff", _chip(people[subjects[0]][3]), purpose="entry at gate A", top_k=2)
    outcome = officer.wait_for_request(submitted["request_id"])
    assert outcome["status"] == "completed"
    assert outcome["result"]["candidates"][0]["subject_id"] == subjects[0]
    assert outcome["review_state"] == "pending"

    with pytest.raises(FacegateApiError) as own:  # the requester never reviews their own identification
        officer.review(outcome["request_id"], confirm=True)
    assert own.value.status == 403
    assert "request.self_review" in str(own.value)
    first = FacegateClient(cloud.serve_api(), cloud.issue_token(TENANT, "officer-2"))
    assert first.review(outcome["request_id"], confirm=True)["review_state"] == "pending"  # two people confirm
    second = FacegateClient(cloud.serve_api(), cloud.issue_token(TENANT, "officer-3"))
    assert second.review(outcome["request_id"], confirm=True)["review_state"] == "confirmed"

    receipt = officer.erase_subject(subjects[1])
    assert receipt["templates_deleted"] == 1
    assert len(receipt["template_ids"]) == 1
    assert receipt["templates_remaining"] == 0
    assert [r["where"] for r in receipt["remaining"]] == ["the tenant's audit log"]
    audit = officer.export_audit()
    actions = [e["action"] for e in audit["entries"]]
    assert "subject.erased" in actions
    assert "search.completed" in actions
    assert audit["verified"] is True
    assert audit["entries_checked"] == len(audit["entries"])


def test_without_a_valid_token_nothing_is_served(cloud: LocalCloud) -> None:
    anonymous = FacegateClient(cloud.serve_api(), "not-a-token")
    with pytest.raises(FacegateApiError) as refused:
        anonymous.create_gallery("x", name="X", use_case="access_control")
    assert refused.value.status == 401


def test_another_tenant_cannot_read_a_request_or_search_a_gallery(
    cloud: LocalCloud, officer: FacegateClient, people: dict[str, list[Path]]
) -> None:
    officer.create_gallery("gate", name="Gate", use_case="access_control")
    mine = officer.submit_search("gate", _chip(people[next(iter(people))][5]), purpose="entry")
    assert officer.wait_for_request(mine["request_id"])["status"] == "completed"

    other = FacegateClient(cloud.serve_api(), cloud.issue_token(OTHER, "guard-1"))
    with pytest.raises(UnknownRequestError):  # another tenant's request does not exist for them
        other.get_request(mine["request_id"])
    theirs = other.submit_search("gate", _chip(people[next(iter(people))][6]), purpose="entry")
    refused = other.wait_for_request(theirs["request_id"])
    assert refused["status"] == "refused"
    assert [r["code"] for r in refused["result"]["reasons"]] == ["request.gallery_not_found"]


def test_a_malformed_body_is_a_clear_400(officer: FacegateClient) -> None:
    with pytest.raises(FacegateApiError) as bad:
        officer._call("POST", "/probes", {"gallery_id": "staff", "operation": "identify", "image_b64": "x"})
    assert bad.value.status == 400
    assert bad.value.code == "request.invalid"
    assert "operation" in bad.value.message


# --- the caller's mistakes are 400s, and nothing is written -----------------------------------------


def _post_raw(client: FacegateClient, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """POST bytes as they are (the SDK would refuse to serialise some of these bodies itself)."""
    request = urllib.request.Request(
        client.endpoint + path,
        data=body,
        method="POST",
        headers={"Authorization": client.token, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=client.timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _probe_versions(cloud: LocalCloud) -> set[str]:
    """Every probe version of the tenant (as a set: a finished workflow deletes its probe meanwhile)."""
    listed = cloud.client("s3").list_object_versions(Bucket=cloud.bucket, Prefix=f"tenants/{TENANT}/probes/")
    return {f"{v['Key']}?{v['VersionId']}" for v in listed.get("Versions", []) + listed.get("DeleteMarkers", [])}


def _consent_rows(cloud: LocalCloud) -> int:
    return int(cloud.client("dynamodb").scan(TableName=f"{cloud.stack_name}-consents", Select="COUNT")["Count"])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("purpose", "entrée au portail B"),
        ("purpose", "entry\r\nx-amz-meta-actor: someone-else"),
        ("purpose", "entry\ngate"),
        ("purpose", "entry\x00gate"),
        ("purpose", "entry\tgate"),
        ("case_reference", "CASE-7\r\n8"),
        ("case_reference", "réf-2024-001"),
        ("case_reference", "CASE\x7f7"),
    ],
    ids=["non-ascii", "crlf-injection", "lf", "nul", "tab", "ref-crlf", "ref-non-ascii", "ref-del"],
)
def test_a_probe_field_that_s3_metadata_cannot_carry_is_a_400_and_nothing_is_stored(
    cloud: LocalCloud, officer: FacegateClient, field: str, value: str
) -> None:
    versions, executions = _probe_versions(cloud), len(cloud.adapter.executions_started)
    body = {"gallery_id": "staff", "operation": "search", "image_b64": base64.b64encode(b"probe").decode()}
    with pytest.raises(FacegateApiError) as bad:
        officer._call("POST", "/probes", {**body, field: value})
    assert bad.value.status == 400
    assert bad.value.code == "request.invalid"
    assert field in bad.value.message
    assert "printable ASCII" in bad.value.message
    assert _probe_versions(cloud) <= versions  # no object, so no Recognize either
    assert len(cloud.adapter.executions_started) == executions


def test_a_probe_purpose_of_printable_ascii_is_still_accepted(cloud: LocalCloud, officer: FacegateClient) -> None:
    executions = len(cloud.adapter.executions_started)
    submitted = officer.submit_search(
        "staff", b"probe", purpose="entry at gate A (shift 2); ok? ~ #1", case_reference="CASE-2024/001"
    )
    assert submitted["status"] == "submitted"
    assert len(cloud.adapter.executions_started) == executions + 1
    assert officer.wait_for_request(submitted["request_id"])["status"] in {"failed", "refused"}  # not an image


@pytest.mark.parametrize("expires_at", ["2030-01-01T00:00:00", "2030-01-01"], ids=["naive-datetime", "date-only"])
def test_a_consent_expiry_without_a_timezone_is_a_400_and_nothing_is_recorded(
    cloud: LocalCloud, officer: FacegateClient, expires_at: str
) -> None:
    rows, audited = _consent_rows(cloud), len(officer.export_audit()["entries"])
    body = {
        "subject_id": "s-naive",
        "purpose": "access_control",
        "evidence_b64": base64.b64encode(b"signed").decode(),
        "expires_at": expires_at,
    }
    with pytest.raises(FacegateApiError) as bad:
        officer._call("POST", "/consents", body)
    assert bad.value.status == 400
    assert bad.value.code == "request.invalid"
    assert "expires_at" in bad.value.message
    assert "timezone" in bad.value.message
    assert _consent_rows(cloud) == rows
    assert len(officer.export_audit()["entries"]) == audited


DEPTH = 10_000


@pytest.mark.parametrize(
    "path", ["/galleries", "/consents", "/probes", "/enrolments", "/bulk-enrolments", "/requests/r-1/review"]
)
@pytest.mark.parametrize(
    "body",
    [
        ("[" * DEPTH + "]" * DEPTH).encode(),
        ('{"gallery_id": ' + "[" * DEPTH + "]" * DEPTH + "}").encode(),
        ('{"a":' * DEPTH + "1" + "}" * DEPTH).encode(),
    ],
    ids=["arrays", "nested-in-a-field", "objects"],
)
def test_a_deeply_nested_body_is_a_400_and_nothing_is_stored(
    cloud: LocalCloud, officer: FacegateClient, path: str, body: bytes
) -> None:
    versions = _probe_versions(cloud)
    status, answer = _post_raw(officer, path, body)
    assert status == 400, answer
    assert answer["code"] == "request.invalid"
    assert "nested" in answer["message"]
    assert _probe_versions(cloud) <= versions


def test_the_deployed_workflows_keep_their_history_under_the_data_key(cloud: LocalCloud) -> None:
    """What the API starts runs encrypted with the stack's data key (the template, deployed)."""
    assert cloud.stack is not None
    key = cloud.stack.attrs["DataKey"]["Arn"]
    sfn = cloud.client("stepfunctions")
    for output in ("RecognizeStateMachineArn", "EnrolStateMachineArn", "BulkEnrolStateMachineArn"):
        described = sfn.describe_state_machine(stateMachineArn=cloud.state_machine_arn(output))
        assert described["encryptionConfiguration"] == {
            "type": "CUSTOMER_MANAGED_KMS_KEY",
            "kmsKeyId": key,
            "kmsDataKeyReusePeriodSeconds": 300,
        }, output


SHARED = "gate"
"""The tests below use the gallery of the isolation test above (made here if that one did not run): the
tenant's gallery cap for the use case is reached otherwise."""


def _shared_gallery(officer: FacegateClient) -> None:
    from facegate.sdk import ConflictError

    with contextlib.suppress(ConflictError):  # made by an earlier test of this module
        officer.create_gallery(SHARED, name="Gate", use_case="access_control")


def _get_raw(client: FacegateClient, path: str) -> tuple[int, str, dict[str, Any]]:
    request = urllib.request.Request(client.endpoint + path, method="GET", headers={"Authorization": client.token})
    try:
        with urllib.request.urlopen(request, timeout=client.timeout) as response:
            return response.status, response.headers.get("Content-Type", ""), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), json.loads(exc.read() or b"{}")


def test_a_request_is_queued_running_done_or_unknown_never_a_bare_404(
    cloud: LocalCloud, officer: FacegateClient, people: dict[str, list[Path]]
) -> None:
    """GET /requests/{id} tells "accepted, no outcome yet" from "no such request": a submission is
    recorded when the API accepts it, the outcome's row supersedes it, and an id nobody (or another
    tenant) submitted is ``request.unknown`` as an RFC 7807 problem."""
    from facegate.store.scope import tenant_scope
    from facegate.store.submissions import Submissions
    from facegate.tenancy import TenantContext

    _shared_gallery(officer)
    submitted = officer.submit_search(SHARED, _chip(people[next(iter(people))][5]), purpose="entry")
    assert officer.get_request(submitted["request_id"])["status"] in {"queued", "completed"}
    assert officer.wait_for_request(submitted["request_id"])["status"] == "completed"

    waiting = "0123456789abcdef0123456789abcdef"  # accepted, its workflow not yet started
    ctx = TenantContext(TENANT, "officer-1")
    with tenant_scope(TENANT):
        Submissions().mark(ctx, waiting, "search", datetime.now(UTC))
    assert officer.get_request(waiting) == {"request_id": waiting, "operation": "search", "status": "queued"}
    other = FacegateClient(cloud.serve_api(), cloud.issue_token(OTHER, "guard-status"))
    with pytest.raises(UnknownRequestError):  # the submission is the officer's tenant's, not theirs
        other.get_request(waiting)

    status, content_type, body = _get_raw(officer, "/requests/" + "f" * 32)
    assert (status, content_type) == (404, "application/problem+json")
    assert body["type"] == "urn:facegate:problem:request.unknown"
    assert (body["status"], body["code"], body["reason_codes"]) == (404, "request.unknown", ["request.unknown"])
    assert body["title"]
    assert body["detail"]

    status, content_type, body = _get_raw(officer, "/requests/a%23b")
    assert (status, content_type, body["status"]) == (400, "application/problem+json", 400)


def test_every_error_is_a_problem_document(cloud: LocalCloud, officer: FacegateClient) -> None:
    status, body = _post_raw(officer, "/galleries", b"{not json")
    assert status == 400
    assert body["type"].startswith("urn:facegate:problem:")
    assert body["status"] == 400
    # API Gateway's own errors, as the template's GatewayResponses define them (the local API plays them).
    status, content_type, body = _get_raw(officer, "/no-such-route")
    assert (status, content_type, body["code"], body["status"]) == (
        404,
        "application/problem+json",
        "http.no_route",
        404,
    )
    anonymous = FacegateClient(officer.endpoint, "not-a-token")
    with pytest.raises(UnauthorizedError) as refused:
        anonymous.get_request("f" * 32)
    assert (refused.value.code, refused.value.problem["status"]) == ("auth.unauthorized", 401)
    assert refused.value.problem["request_id"]
    status, body = _post_raw(officer, "/galleries", b"x" * (10 * 1024 * 1024 + 1))
    assert (status, body["code"], body["type"]) == (413, "request.too_large", "urn:facegate:problem:request.too_large")
    status, content_type, body = _get_raw(officer, "/independent-tests/no-such-test")
    assert (status, content_type, body["status"], body["code"]) == (404, "application/problem+json", 404, "http.404")


def _enrolled_entries(client: FacegateClient, subject: str) -> int:
    entries = client.export_audit()["entries"]
    return sum(1 for e in entries if e["action"] == "template.enrolled" and e["details"].get("subject_id") == subject)


def test_a_retried_enrolment_with_its_client_token_enrols_once(
    cloud: LocalCloud, officer: FacegateClient, people: dict[str, list[Path]]
) -> None:
    """The same client token, sent again (a retry after a lost answer) or by a concurrent twin, names
    the same request: one workflow, one template, one audit entry. Another body under that token is a
    409; the same body after an attempt that claimed the token and stopped before starting its workflow
    starts it (nothing is lost)."""
    from concurrent.futures import ThreadPoolExecutor

    from facegate.api import EnrolBody
    from facegate.sdk import ConflictError
    from facegate.store.scope import tenant_scope
    from facegate.store.submissions import Submissions, token_request_id
    from facegate.tenancy import TenantContext

    _shared_gallery(officer)
    subject, twin_subject, lost_subject = list(people)[2:5]
    until = datetime.now(UTC) + timedelta(days=9)
    consent = officer.record_consent(subject, purpose="access_control", evidence=b"signed", expires_at=until)
    photo = _chip(people[subject][0])

    first = officer.enrol(SHARED, subject, consent["consent_id"], photo, client_token="gate-7-enrol-1")
    again = officer.enrol(SHARED, subject, consent["consent_id"], photo, client_token="gate-7-enrol-1")
    assert again == {"request_id": first["request_id"], "status": "submitted", "duplicate": True}
    assert officer.wait_for_request(first["request_id"])["status"] == "completed"
    with pytest.raises(ConflictError) as reused:
        officer.enrol(SHARED, subject, consent["consent_id"], _chip(people[subject][1]), client_token="gate-7-enrol-1")
    assert reused.value.code == "request.client_token_reused"

    twin_consent = officer.record_consent(twin_subject, purpose="access_control", evidence=b"s", expires_at=until)
    twin_photo = _chip(people[twin_subject][0])
    with ThreadPoolExecutor(2) as pool:
        twins = list(
            pool.map(
                lambda _: officer.enrol(
                    SHARED, twin_subject, twin_consent["consent_id"], twin_photo, client_token="twin-1"
                ),
                range(2),
            )
        )
    assert twins[0]["request_id"] == twins[1]["request_id"]
    assert officer.wait_for_request(twins[0]["request_id"])["status"] == "completed"

    # An attempt that claimed its token and failed before starting the workflow: the retry starts it.
    lost_consent = officer.record_consent(lost_subject, purpose="access_control", evidence=b"s", expires_at=until)
    lost_photo = _chip(people[lost_subject][0])
    fields = {
        "gallery_id": SHARED,
        "subject_id": lost_subject,
        "consent_id": lost_consent["consent_id"],
        "image_b64": base64.b64encode(lost_photo).decode(),
    }
    fingerprint = hashlib.sha256(EnrolBody.model_validate(fields).model_dump_json(exclude={"client_token"}).encode())
    lost_id = token_request_id(TENANT, "enrol", "lost-1")
    with tenant_scope(TENANT):
        claimed = Submissions().claim(
            TenantContext(TENANT, "officer-1"), lost_id, "enrol", fingerprint.hexdigest(), datetime.now(UTC)
        )
    assert claimed is None
    retried = officer.enrol(SHARED, lost_subject, lost_consent["consent_id"], lost_photo, client_token="lost-1")
    assert retried == {"request_id": lost_id, "status": "submitted"}
    assert officer.wait_for_request(lost_id)["status"] == "completed"

    for who in (subject, twin_subject, lost_subject):
        assert _enrolled_entries(officer, who) == 1, who
        assert officer.erase_subject(who)["templates_deleted"] == 1, who


def test_every_decision_and_outcome_is_a_json_log_line_without_biometrics(
    cloud: LocalCloud, officer: FacegateClient, people: dict[str, list[Path]]
) -> None:
    """At the template's INFO level, each decision (allowed or refused) and each request's end is one
    JSON line from Powertools' Logger with the request id, tenant, use case, operation and reason
    codes; no line carries a score, a template or an image."""
    import io
    import logging

    _shared_gallery(officer)
    # What the functions' Powertools Logger writes (the local cloud runs them in this process): its
    # handlers' stream, read here instead of the process's stdout.
    buffer = io.StringIO()
    functions = logging.getLogger("facegate")
    handlers = [h for h in functions.handlers if isinstance(h, logging.StreamHandler)]
    assert handlers, "the functions log through Powertools' Logger (service facegate)"
    saved = [h.stream for h in handlers]
    for handler in handlers:  # not setStream: it flushes the old stream, which an earlier test may have closed
        handler.stream = buffer
    # The template's level (each function is its own process on Lambda; here one process holds them all,
    # and an earlier local cloud of this test run may have set Powertools' logger to another level).
    level = functions.level
    from facegate.localcloud.template import load_template

    globals_ = load_template(ROOT / "template.yaml")["Globals"]["Function"]["Environment"]["Variables"]
    functions.setLevel(globals_["POWERTOOLS_LOG_LEVEL"])
    try:
        answer = officer.search(SHARED, _chip(people[next(iter(people))][5]), purpose="entry")
        unpurposed = officer.search(SHARED, _chip(people[next(iter(people))][6]))  # refused: no purpose
    finally:
        for handler, stream in zip(handlers, saved, strict=True):
            handler.stream = stream
        functions.setLevel(level)
    lines = [json.loads(line) for line in buffer.getvalue().splitlines() if line.startswith("{")]
    mine = [x for x in lines if x.get("request_id") in (answer["request_id"], unpurposed["request_id"])]
    decisions = [x for x in mine if x.get("event") == "decision"]
    assert {(d["request_id"], d["stage"], d["outcome"]) for d in decisions} >= {
        (answer["request_id"], "request", "allowed"),
        (answer["request_id"], "faces", "allowed"),
        (unpurposed["request_id"], "request", "refused"),
    }
    refused = next(d for d in decisions if d["outcome"] == "refused")
    assert refused["reason_codes"] == [r["code"] for r in unpurposed["decision"]["reasons"]]
    assert (refused["tenant"], refused["use_case"], refused["operation"]) == (TENANT, "access_control", "search")
    assert (refused["level"], refused["service"]) == ("INFO", "facegate")
    assert refused["function_name"].endswith("PolicyCheckFunction")
    ends = {(x["request_id"], x["status"]) for x in mine if x.get("event") == "outcome"}
    assert ends == {(answer["request_id"], "completed"), (unpurposed["request_id"], "refused")}
    text = json.dumps(mine)
    for word in ("cosine", "score", "embedding", "image_b64", "candidates"):
        assert word not in text, word


def test_galleries_are_listed_and_described_requests_paged_and_a_consent_revoked(
    cloud: LocalCloud, officer: FacegateClient, people: dict[str, list[Path]]
) -> None:
    from facegate.sdk import BadRequestError, NotFoundError

    _shared_gallery(officer)
    listed = {g["gallery_id"]: g for g in officer.list_galleries()["galleries"]}
    assert SHARED in listed
    described = officer.describe_gallery(SHARED)
    assert described == listed[SHARED]
    assert set(described) == {"gallery_id", "name", "use_case", "size", "max_size", "version", "model_version"}
    assert (described["use_case"], described["model_version"]) == ("access_control", "sface-2021dec+flip")
    other = FacegateClient(cloud.serve_api(), cloud.issue_token(OTHER, "guard-list"))
    with pytest.raises(NotFoundError):  # another tenant's gallery is no gallery
        other.describe_gallery(SHARED)
    assert SHARED not in {g["gallery_id"] for g in other.list_galleries()["galleries"]}

    subject = list(people)[-1]
    until = datetime.now(UTC) + timedelta(days=9)
    consent = officer.record_consent(subject, purpose="access_control", evidence=b"signed", expires_at=until)
    enrolled = officer.enrol(SHARED, subject, consent["consent_id"], _chip(people[subject][0]))
    assert officer.wait_for_request(enrolled["request_id"])["status"] == "completed"
    revoked = officer.revoke_consent(subject, consent["consent_id"])
    assert (revoked["revoked"], revoked["templates_deleted"]) == (True, 1)
    assert "consent.revoked" in [e["action"] for e in officer.export_audit()["entries"]]

    pages = list(officer.get_paginator("list_requests").paginate(PageSize=2))
    assert len(pages) >= 2
    assert all(len(p["requests"]) <= 2 for p in pages)
    ids = [r["request_id"] for p in pages for r in p["requests"]]
    assert len(ids) == len(set(ids))
    assert enrolled["request_id"] in ids
    assert ids == [r["request_id"] for r in officer.get_paginator("list_requests").items(PageSize=50)]
    theirs = {r["request_id"] for r in other.get_paginator("list_requests").items()}
    assert not theirs & set(ids)
    with pytest.raises(BadRequestError):
        officer.list_requests(next_token="not a token!")
    with pytest.raises(BadRequestError):
        officer.list_requests(limit=0)


def _bulk_runs(cloud: LocalCloud) -> int:
    sfn = cloud.client("stepfunctions")
    return len(sfn.list_executions(stateMachineArn=cloud.state_machine_arn("BulkEnrolStateMachineArn"))["executions"])


def _manifests(cloud: LocalCloud) -> set[str]:
    listed = cloud.client("s3").list_object_versions(Bucket=cloud.bucket, Prefix=f"tenants/{TENANT}/manifests/")
    return {f"{v['Key']}?{v['VersionId']}" for v in listed.get("Versions", [])}


@pytest.mark.parametrize(
    ("manifest", "gallery", "status", "says"),
    [
        ("00", None, 400, "manifest line 1"),
        ('{"subject_id": "s-1", "consent_id": "c-1"}', None, 400, "manifest line 1"),
        ('{"subject_id": "s-1", "consent_id": "c-1", "key": "tenants/lab-sdk/uploads/x.jpg"}', None, 400, "must lie"),
        ("\n\n", None, 400, "no subject"),
        ('{"subject_id": "s-1", "consent_id": "c-1", "key": "tenants/hmp-sdk/uploads/x.jpg"}', "no-such", 404, ""),
    ],
    ids=["not-json", "no-photo", "another-tenants-photo", "empty", "unknown-gallery"],
)
def test_a_bulk_manifest_is_checked_before_the_job_starts(
    cloud: LocalCloud, officer: FacegateClient, manifest: str, gallery: str | None, status: int, says: str
) -> None:
    """GIVEN a malformed manifest, or a gallery the tenant does not hold WHEN it is submitted THEN the
    answer is the caller's 4xx with the line at fault, and no manifest is stored, no job started, no
    client token spent (the same token with a corrected body is a fresh request)."""
    _shared_gallery(officer)
    target = gallery or SHARED
    stored, started = _manifests(cloud), _bulk_runs(cloud)
    token = f"bulk-{uuid.uuid4().hex}"
    body = {"gallery_id": target, "manifest_jsonl": manifest, "client_token": token}
    code, answer = _post_raw(officer, "/bulk-enrolments", json.dumps(body).encode())
    assert code == status, answer
    assert says in answer["message"]
    assert _manifests(cloud) == stored
    assert _bulk_runs(cloud) == started


@pytest.mark.parametrize("length", ["abc", "-1", "99999999999"])
def test_a_request_the_gateway_cannot_frame_gets_an_answer_not_a_dropped_connection(
    officer: FacegateClient, length: str
) -> None:
    """A Content-Length that is not a number, negative or over 10 MB: a 400 or a 413, said at once."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(officer.endpoint)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.putrequest("POST", parts.path + "/galleries")
    conn.putheader("Authorization", officer.token)
    conn.putheader("Content-Length", length)
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == (413 if length.isdigit() else 400)
    conn.close()
