"""The workflows through the local cloud: the real template (translated offline), the real ASL files
executed by moto's interpreter, the real handlers for every Lambda task, S3 → EventBridge → Step
Functions delivery. One cloud per module (deployment takes a few seconds); each test uses its own
probes and reads only its own request's rows. This process is the operator: what it does for the prison
(its gallery, consents, reading its rows) goes through the prison's tenant session.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from _images import chip_png as _chip
from _images import png as _png

from facegate import datasets
from facegate.evaluation import johns_chip
from facegate.localcloud.cloud import Execution, LocalCloud
from facegate.service import FaceService
from facegate.store.models import RequestRecord, TemplateRecord
from facegate.store.scope import tenant_scope
from facegate.tenancy import TenantContext
from facegate.vision.decode import cv2
from facegate.workflow.models import ObjectRef

ROOT = Path(__file__).resolve().parents[2]
OPERATOR = "operator@facegate"
PRISON = TenantContext(tenant_id="hmp-integration", actor="officer-1")
GALLERY = "residents"
PURPOSE = "entry at gate A"


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud(root=ROOT, stack_name="fgtest") as local:
        yield local


@pytest.fixture(scope="module")
def people() -> dict[str, list[Path]]:
    return datasets.johns()


@pytest.fixture(scope="module")
def service(cloud: LocalCloud, people: dict[str, list[Path]]) -> FaceService:
    """A prison approved for access control, with three people enrolled through the Enrol workflow."""
    service = FaceService()
    service.registry.register(PRISON.tenant_id, name="HMP", sector="corrections", country="GB", jurisdiction="GB")
    service.approve_use_case(
        OPERATOR,
        PRISON.tenant_id,
        use_case="access_control",
        deployment="closed_facility",
        expires_at=datetime.now(UTC) + timedelta(days=30),
    )
    with tenant_scope(PRISON.tenant_id):  # the operator acts for the prison through its tenant session
        service.create_gallery(PRISON, GALLERY, name="Residents", use_case="access_control")
    for subject in list(people)[:3]:
        run = _enrol(cloud, service, subject, _chip(people[subject][0]))
        assert run.status == "SUCCEEDED", run
        assert run.output["status"] == "enrolled"
    return service


def _enrol(cloud: LocalCloud, service: FaceService, subject: str, image: bytes) -> Execution:
    with tenant_scope(PRISON.tenant_id):
        consent = service.record_consent(
            PRISON,
            subject_id=subject,
            purpose="access_control",
            evidence=b"signed",
            expires_at=datetime.now(UTC) + timedelta(days=30),
        )
    return cloud.wait_for(cloud.start_enrolment(PRISON, GALLERY, subject, consent.consent_id, image))


def _probe(cloud: LocalCloud, data: bytes, **metadata: str) -> tuple[ObjectRef, Execution]:
    meta = {"operation": "search", "purpose": PURPOSE, "actor": PRISON.actor, **metadata}
    ref = cloud.put_probe(PRISON.tenant_id, GALLERY, data, **meta)
    return ref, cloud.wait_for(cloud.execution_for(ref))


def _request_row(ref: ObjectRef) -> RequestRecord:
    with tenant_scope(PRISON.tenant_id):
        return RequestRecord.get(PRISON.tenant_id, ref.request_id())


def _audit_actions(service: FaceService, request_id: str) -> list[str]:
    with tenant_scope(PRISON.tenant_id):
        return [e.action for e in service.audit.entries(PRISON) if e.details.get("request_id") == request_id]


def _templates(gallery: str = GALLERY) -> int:
    with tenant_scope(PRISON.tenant_id):
        return TemplateRecord.count(f"{PRISON.tenant_id}#{gallery}")


def test_happy_path_matches_records_review_audits_and_deletes_the_probe(
    cloud: LocalCloud, service: FaceService, people: dict[str, list[Path]]
) -> None:
    subject = next(iter(people))
    ref, run = _probe(cloud, _chip(people[subject][4]), top_k="3")

    assert run.status == "SUCCEEDED", run
    assert run.path == [
        "PolicyCheck",
        "IsDuplicate",
        "IsAllowed",
        "Detect",
        "FaceCheck",
        "IsFaceAllowed",
        "Embed",
        "Match",
        "NeedsReview",
        "AwaitingReview",
        "Finish",
        "Result",
    ]
    assert run.output["status"] == "completed"
    assert run.output["review_state"] == "pending"
    assert run.output["result"]["candidates"][0]["subject_id"] == subject
    row = _request_row(ref)
    assert row.status == "completed"
    assert row.review_state == "pending"
    assert "human_review_before_action" in row.decision["obligations"]
    assert _audit_actions(service, ref.request_id()) == ["search.completed", "probe.deleted"]
    assert not cloud.object_exists(ref)
    with tenant_scope(PRISON.tenant_id):
        assert service.audit.verify(PRISON)


def test_verify_of_the_right_person_matches(
    cloud: LocalCloud, service: FaceService, people: dict[str, list[Path]]
) -> None:
    subject = list(people)[1]
    _ref, run = _probe(cloud, _chip(people[subject][5]), operation="verify", subject=subject)
    assert run.status == "SUCCEEDED", run
    assert run.output["result"]["matched"] is True
    assert run.output["result"]["subject_id"] == subject


def test_a_photo_without_a_face_is_refused_after_detection(cloud: LocalCloud, service: FaceService) -> None:
    blank = _png(np.full((240, 320, 3), 127, np.uint8))
    embeds_before = len(cloud.adapter.invoked(cloud.function_name("EmbedFunction")))
    ref, run = _probe(cloud, blank)

    assert run.status == "SUCCEEDED"
    assert run.path[-4:] == ["FaceCheck", "IsFaceAllowed", "RecordRefusal", "Refused"]
    assert [r["code"] for r in run.output["reasons"]] == ["request.no_face"]
    assert len(cloud.adapter.invoked(cloud.function_name("EmbedFunction"))) == embeds_before
    assert _request_row(ref).status == "refused"
    assert not cloud.object_exists(ref)


def test_a_crowd_photo_is_refused(cloud: LocalCloud, service: FaceService) -> None:
    crowd = (datasets.fetch_dlib() / "examples" / "faces" / "bald_guys.jpg").read_bytes()
    ref, run = _probe(cloud, crowd)

    assert [r["code"] for r in run.output["reasons"]] == ["request.crowd_probe"]
    assert "Embed" not in run.path
    assert _request_row(ref).status == "refused"
    with tenant_scope(PRISON.tenant_id):
        assert "request.denied" in [e.action for e in service.audit.entries(PRISON)]


def test_a_policy_deny_stops_the_workflow_before_detection(
    cloud: LocalCloud, service: FaceService, people: dict[str, list[Path]]
) -> None:
    """No declared purpose (access control requires one): refused at the first state; Detect never runs."""
    detect = cloud.function_name("DetectFunction")
    before = len(cloud.adapter.invoked(detect))
    ref = cloud.put_probe(PRISON.tenant_id, GALLERY, _chip(next(iter(people.values()))[2]), operation="search")
    run = cloud.wait_for(cloud.execution_for(ref))

    assert run.path == ["PolicyCheck", "IsDuplicate", "IsAllowed", "RecordRefusal", "Refused"]
    assert [r["code"] for r in run.output["reasons"]] == ["request.purpose_missing"]
    assert len(cloud.adapter.invoked(detect)) == before
    assert not cloud.object_exists(ref)


def test_a_transient_lambda_error_is_retried(
    cloud: LocalCloud, service: FaceService, people: dict[str, list[Path]]
) -> None:
    detect = cloud.function_name("DetectFunction")
    cloud.adapter.inject_fault(detect, "Lambda.ServiceException", times=1)
    before = len(cloud.adapter.invoked(detect))
    _ref, run = _probe(cloud, _chip(next(iter(people.values()))[6]))

    assert run.status == "SUCCEEDED", run
    attempts = cloud.adapter.invoked(detect)[before:]
    assert [a.error for a in attempts] == ["Lambda.ServiceException", None]
    assert run.output["status"] == "completed"


def test_a_duplicated_event_is_processed_once(
    cloud: LocalCloud, service: FaceService, people: dict[str, list[Path]]
) -> None:
    ref, first = _probe(cloud, _chip(next(iter(people.values()))[7]))
    event = json.loads(cloud.client("stepfunctions").describe_execution(executionArn=first.arn)["input"])

    # EventBridge delivers at least once: the same "Object Created" event (same object version) again.
    second = cloud.wait_for(cloud.start_execution("RecognizeStateMachineArn", event, name="redelivered"))

    assert first.output["status"] == "completed"
    assert second.status == "SUCCEEDED"
    assert second.path == ["PolicyCheck", "IsDuplicate", "AlreadyProcessed"]
    with tenant_scope(PRISON.tenant_id):
        rows = list(RequestRecord.query(PRISON.tenant_id, RequestRecord.request_id == ref.request_id()))
    assert len(rows) == 1
    assert _audit_actions(service, ref.request_id()) == ["search.completed", "probe.deleted"]


def test_recognize_is_express_and_concurrent_twin_events_give_one_result(
    cloud: LocalCloud, service: FaceService, people: dict[str, list[Path]]
) -> None:
    """EventBridge delivers at least once and an Express workflow runs at least once: three deliveries
    of the same event at the same moment give one result row and one audit entry, whichever wins."""
    sfn = cloud.client("stepfunctions")
    arn = cloud.state_machine_arn("RecognizeStateMachineArn")
    assert sfn.describe_state_machine(stateMachineArn=arn)["type"] == "EXPRESS"
    ref, first = _probe(cloud, _chip(list(people.values())[1][7]))
    event = json.loads(sfn.describe_execution(executionArn=first.arn)["input"])
    with ThreadPoolExecutor(max_workers=3) as pool:
        twins = list(
            pool.map(
                lambda i: cloud.wait_for(cloud.start_execution("RecognizeStateMachineArn", event, name=f"twin-{i}")),
                range(3),
            )
        )
    assert first.output["status"] == "completed"
    assert all(t.status == "SUCCEEDED" for t in twins), [t.path for t in twins]
    assert all("Match" not in t.path for t in twins)
    with tenant_scope(PRISON.tenant_id):
        rows = list(RequestRecord.query(PRISON.tenant_id, RequestRecord.request_id == ref.request_id()))
    assert len(rows) == 1
    assert _audit_actions(service, ref.request_id()) == ["search.completed", "probe.deleted"]


@pytest.mark.parametrize(
    ("label", "data", "code"),
    [
        ("text", b"hello, this is not a photo", "image.not_an_image"),
        ("truncated", None, "image.truncated"),
    ],
)
def test_a_non_image_upload_ends_in_a_recorded_failure_with_no_partial_rows(
    cloud: LocalCloud, service: FaceService, people: dict[str, list[Path]], label: str, data: bytes | None, code: str
) -> None:
    if data is None:
        whole = next(iter(people.values()))[8].read_bytes()
        data = whole[: len(whole) // 2]
    templates_before = _templates()
    ref, run = _probe(cloud, data)

    assert run.status == "FAILED"
    assert run.path[-2:] == ["RecordFailure", "Failed"]
    row = _request_row(ref)
    assert row.status == "failed"
    assert [r["code"] for r in row.result["reasons"]] == [code]
    assert _audit_actions(service, ref.request_id()) == ["request.failed"]
    assert _templates() == templates_before
    assert not cloud.object_exists(ref)


def _small(image: np.ndarray, scale: float) -> np.ndarray:
    small = np.asarray(cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    canvas = np.full((240, 240, 3), 128, np.uint8)
    canvas[60 : 60 + small.shape[0], 60 : 60 + small.shape[1]] = small
    return canvas


@pytest.mark.parametrize(
    ("label", "code"),
    [("blurred", "image.low_quality"), ("small", "image.face_too_small")],
)
def test_a_poor_capture_is_refused_with_a_retake_hint_and_stores_nothing(
    cloud: LocalCloud, service: FaceService, people: dict[str, list[Path]], label: str, code: str
) -> None:
    """GIVEN a probe whose only face is blurred (σ 5 px) or tiny (eyes 15 px apart) WHEN it is searched
    THEN Embed refuses it from the image itself: a recorded failure with the quality code and a hint,
    no template, the probe deleted; and an enrolment of it stores nothing."""
    chip = johns_chip(next(iter(people.values()))[8])
    image = cv2.GaussianBlur(chip, (0, 0), 5) if label == "blurred" else _small(chip, 0.25)
    templates_before = _templates()
    ref, run = _probe(cloud, _png(np.asarray(image)))

    assert run.status == "FAILED"
    assert "Embed" in run.path
    row = _request_row(ref)
    assert row.status == "failed"
    (reason,) = row.result["reasons"]
    assert reason["code"] == code
    assert "retake" in reason["message"] or "hold the camera" in reason["message"]
    assert _templates() == templates_before
    assert not cloud.object_exists(ref)

    enrol = _enrol(cloud, service, f"poor-{label}", _png(np.asarray(image)))
    assert enrol.status == "FAILED"
    assert enrol.path[-2:] == ["RecordFailure", "Failed"]
    assert _templates() == templates_before


def test_unknown_probe_metadata_is_a_recorded_failure(cloud: LocalCloud, service: FaceService) -> None:
    ref, run = _probe(cloud, b"irrelevant", colour="blue")

    assert run.status == "FAILED"
    assert run.path == ["PolicyCheck", "RecordFailure", "Failed"]
    row = _request_row(ref)
    assert [r["code"] for r in row.result["reasons"]] == ["request.invalid"]
    assert "colour" in row.result["reasons"][0]["message"]
    assert not cloud.object_exists(ref)


def test_enrolment_of_a_group_photo_is_refused_and_stores_nothing(cloud: LocalCloud, service: FaceService) -> None:
    crowd = (datasets.fetch_dlib() / "examples" / "faces" / "bald_guys.jpg").read_bytes()
    before = _templates()
    run = _enrol(cloud, service, "group-photo", crowd)

    assert run.path[-2:] == ["RecordRefusal", "Refused"]
    assert [r["code"] for r in run.output["reasons"]] == ["request.enrolment_needs_one_face"]
    assert _templates() == before


def test_bulk_enrolment_runs_the_batch_job_and_reports_each_subject(
    cloud: LocalCloud, service: FaceService, people: dict[str, list[Path]]
) -> None:
    """BulkEnrol: PolicyCheck → the Batch job (python -m facegate.batch, on this CPU) → Finish. Each
    subject passes the gate again: one without consent is refused, a non-image fails, both reported."""
    gallery = "bulk-residents"
    with tenant_scope(PRISON.tenant_id):
        service.create_gallery(PRISON, gallery, name="Bulk", use_case="access_control")
    names = list(people)[3:5]
    lines = []
    for subject in names:
        with tenant_scope(PRISON.tenant_id):
            consent = service.record_consent(
                PRISON, subject_id=subject, purpose="access_control", evidence=b"signed",
                expires_at=datetime.now(UTC) + timedelta(days=30),
            )  # fmt: skip
        key = f"tenants/{PRISON.tenant_id}/uploads/{gallery}/{subject}.png"
        cloud.put_object(key, _chip(people[subject][0]))
        lines.append({"subject_id": subject, "consent_id": consent.consent_id, "key": key})
    no_consent = f"tenants/{PRISON.tenant_id}/uploads/{gallery}/stranger.png"
    cloud.put_object(no_consent, _chip(people[names[0]][1]))
    lines.append({"subject_id": "stranger", "consent_id": "none", "key": no_consent})
    text_key = f"tenants/{PRISON.tenant_id}/uploads/{gallery}/notes.png"
    cloud.put_object(text_key, b"not a photo")
    lines.append({"subject_id": "notes", "consent_id": "none", "key": text_key})
    manifest = cloud.put_object(
        f"tenants/{PRISON.tenant_id}/manifests/batch-1.jsonl", "\n".join(json.dumps(x) for x in lines).encode()
    )
    request = {
        "request_id": "bulk-1",
        "tenant_id": PRISON.tenant_id,
        "actor": PRISON.actor,
        "operation": "bulk_enrol",
        "gallery_id": gallery,
        "image": manifest.model_dump(),
    }
    run = cloud.wait_for(cloud.start_execution("BulkEnrolStateMachineArn", request))

    assert run.status == "SUCCEEDED", run
    assert run.path == ["PolicyCheck", "IsDuplicate", "IsAllowed", "RunBulkJob", "Finish", "Result"]
    assert (run.output["enrolled"], run.output["refused"], run.output["failed"]) == (2, 1, 1)
    report = json.loads(cloud.client("s3").get_object(Bucket=cloud.bucket, Key=run.output["report"])["Body"].read())
    by_subject = {r["subject_id"]: r for r in report["results"]}
    assert by_subject["stranger"]["codes"] == ["request.consent_missing"]
    assert by_subject["notes"]["code"] == "image.not_an_image"
    assert _templates(gallery) == 2
    assert not cloud.object_exists(manifest)
    listed = cloud.client("s3").list_objects_v2(
        Bucket=cloud.bucket, Prefix=f"tenants/{PRISON.tenant_id}/uploads/{gallery}/"
    )
    assert listed.get("KeyCount", 0) == 0
    with tenant_scope(PRISON.tenant_id):
        audit = [e for e in service.audit.entries(PRISON) if e.details.get("request_id") == "bulk-1"]
    assert [e.action for e in audit] == ["bulk_enrol.completed"]
    assert audit[0].details["enrolled"] == 2


def test_bulk_enrolment_into_another_tenants_gallery_is_refused_before_the_job(
    cloud: LocalCloud, service: FaceService
) -> None:
    manifest = cloud.put_object(f"tenants/{PRISON.tenant_id}/manifests/foreign.jsonl", b"{}")
    request = {
        "request_id": "bulk-foreign",
        "tenant_id": PRISON.tenant_id,
        "actor": PRISON.actor,
        "operation": "bulk_enrol",
        "gallery_id": "no-such-gallery",
        "image": manifest.model_dump(),
    }
    run = cloud.wait_for(cloud.start_execution("BulkEnrolStateMachineArn", request))
    assert run.path == ["PolicyCheck", "IsDuplicate", "IsAllowed", "RecordRefusal", "Refused"]
    assert [r["code"] for r in run.output["reasons"]] == ["request.gallery_not_found"]
    assert not cloud.object_exists(manifest)


@pytest.mark.parametrize("segment", ["Not_A_Tenant", "UPPER", "ab", "x" * 70])
def test_a_probe_under_an_invalid_tenant_segment_is_deleted_and_counted(cloud: LocalCloud, segment: str) -> None:
    """GIVEN an object under tenants/ whose tenant segment names no valid tenant WHEN its event runs
    Recognize THEN nothing can be recorded under a tenant, but the object is deleted and counted."""
    from facegate import observability

    before = observability.counts[observability.DISCARDED_UPLOAD]
    ref = cloud.put_probe(segment, GALLERY, b"irrelevant", operation="search", purpose=PURPOSE)
    run = cloud.wait_for(cloud.execution_for(ref))

    assert run.status == "FAILED"
    assert not cloud.object_exists(ref)
    assert observability.counts[observability.DISCARDED_UPLOAD] == before + 1


def test_no_template_crosses_a_state_and_the_short_lived_one_goes_with_the_result(
    cloud: LocalCloud, service: FaceService, people: dict[str, list[Path]]
) -> None:
    """GIVEN a search WHEN it completes THEN no state's input or output in the execution history holds a
    template (Embed passed a reference), and the short-lived item that held it is gone with the result."""
    subject = next(iter(people))
    _, run = _probe(cloud, _chip(people[subject][5]), top_k="2")
    assert run.status == "SUCCEEDED", run

    history = cloud.client("stepfunctions").get_execution_history(executionArn=run.arn, maxResults=1000)["events"]
    text = json.dumps(history, default=str)
    assert '"embedding"' not in text
    assert '"ref": "' in text or '\\"ref\\": \\"' in text
    from facegate.store.models import CounterRecord

    with cloud.admin():  # the test inspects the table itself: no request path queries the counters
        left = [
            r.counter_key
            for r in CounterRecord.query(PRISON.tenant_id, CounterRecord.counter_key.startswith("probe-template#"))
        ]
    assert left == []


# --- what a subscriber receives: every request's end on the result bus ----------------------------------


def _subscribe(cloud: LocalCloud, tenant: str) -> str:
    """A rule on the result bus for one tenant's events, delivering to a queue (as a tenant's forwarding
    rule would); returns the queue's URL."""
    sqs, events = cloud.client("sqs"), cloud.client("events")
    url = sqs.create_queue(QueueName=f"events-{tenant}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus = cloud.outputs["ResultBusName"]
    rule = f"to-{tenant}"
    pattern = {"source": ["facegate"], "detail": {"tenant_id": [tenant]}}
    events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=rule, EventBusName=bus, Targets=[{"Id": "queue", "Arn": arn}])
    return str(url)


def _received(cloud: LocalCloud, url: str) -> list[dict[str, object]]:
    sqs = cloud.client("sqs")
    out: list[dict[str, object]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            return out
        for message in batch:
            out.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def test_every_request_end_is_published_for_its_tenant_with_ids_only(
    cloud: LocalCloud, service: FaceService, people: dict[str, list[Path]]
) -> None:
    """GIVEN a subscription to the prison's events WHEN a search completes (awaiting review), a crowd
    photo is refused and a non-image fails THEN three events arrive, Request Completed, Refused and
    Failed, each naming the request, its operation, status, gallery, review state and reason codes,
    and nothing else: no candidate, subject, score or image. Another tenant's rule receives none."""
    url = _subscribe(cloud, PRISON.tenant_id)
    elsewhere = _subscribe(cloud, "someone-else")
    _received(cloud, url)
    subject = next(iter(people))
    done, _ = _probe(cloud, _chip(people[subject][6]))
    crowd = (datasets.fetch_dlib() / "examples" / "faces" / "bald_guys.jpg").read_bytes()
    refused, _ = _probe(cloud, crowd)
    failed, _ = _probe(cloud, b"not an image at all")
    got = {e["detail"]["request_id"]: e for e in _received(cloud, url)}  # type: ignore[index]
    expected = {
        done.request_id(): ("Request Completed", "completed", "pending", []),
        refused.request_id(): ("Request Refused", "refused", None, ["request.crowd_probe"]),
    }
    for request_id, (kind, status, review, codes) in expected.items():
        event = got[request_id]
        assert event["source"] == "facegate"
        assert event["detail-type"] == kind
        detail = event["detail"]
        assert detail == {
            "version": "1",
            "tenant_id": PRISON.tenant_id,
            "request_id": request_id,
            "operation": "search",
            "status": status,
            "gallery_id": GALLERY,
            "review_state": review,
            "reason_codes": codes,
        }
    failure = got[failed.request_id()]
    assert failure["detail-type"] == "Request Failed"
    assert failure["detail"]["reason_codes"]
    assert failure["detail"]["status"] == "failed"
    assert subject not in json.dumps(list(got.values()))
    assert _received(cloud, elsewhere) == []
