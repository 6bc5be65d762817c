"""Several photos of one person through the Enrol workflow, the API and the SDK, on the local cloud.

Each photo goes through Detect, the face re-check and Embed (a Map state over the request's photos);
StoreTemplate refuses photos that do not show one person (``image.photos_disagree``, the service's own
``check_same_person`` rule) and stores one fused template with its reference count. Every upload is
deleted, whatever the outcome, and no template crosses a state.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _images import chip_png as _chip
from _images import png as _png

from facegate import datasets
from facegate.evaluation import johns_chip
from facegate.localcloud.cloud import Execution, LocalCloud
from facegate.sdk import FacegateApiError, FacegateClient
from facegate.service import FaceService
from facegate.store.models import CounterRecord, RequestRecord, TemplateRecord
from facegate.store.scope import tenant_scope
from facegate.tenancy import TenantContext
from facegate.vision.decode import cv2
from facegate.workflow.models import ObjectRef

ROOT = Path(__file__).resolve().parents[2]
PRISON = TenantContext(tenant_id="hmp-photos", actor="officer-7")
GALLERY = "residents"


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud(root=ROOT, stack_name="fgphotos") as local:
        local.serve_api()
        service = FaceService()
        service.registry.register(PRISON.tenant_id, name="HMP", sector="corrections", country="GB", jurisdiction="GB")
        service.approve_use_case(
            "operator@facegate",
            PRISON.tenant_id,
            use_case="access_control",
            deployment="closed_facility",
            expires_at=datetime.now(UTC) + timedelta(days=30),
        )
        with tenant_scope(PRISON.tenant_id):
            service.create_gallery(PRISON, GALLERY, name="Residents", use_case="access_control")
        yield local


@pytest.fixture(scope="module")
def service(cloud: LocalCloud) -> FaceService:
    return FaceService()


@pytest.fixture(scope="module")
def people() -> dict[str, list[Path]]:
    return datasets.johns()


def _consent(service: FaceService, subject: str) -> str:
    with tenant_scope(PRISON.tenant_id):
        return service.record_consent(
            PRISON,
            subject_id=subject,
            purpose="access_control",
            evidence=b"signed",
            expires_at=datetime.now(UTC) + timedelta(days=30),
        ).consent_id


def _request(cloud: LocalCloud, service: FaceService, subject: str, photos: list[bytes]) -> dict[str, Any]:
    """An Enrol request naming several uploads, as the API starts it (``image`` is the first photo)."""
    refs = [
        cloud.put_object(f"tenants/{PRISON.tenant_id}/uploads/{GALLERY}/{uuid.uuid4().hex}", data) for data in photos
    ]
    return {
        "request_id": uuid.uuid4().hex,
        "tenant_id": PRISON.tenant_id,
        "actor": PRISON.actor,
        "operation": "enrol",
        "gallery_id": GALLERY,
        "subject_id": subject,
        "consent_id": _consent(service, subject),
        "image": refs[0].model_dump(),
        "images": [r.model_dump() for r in refs],
    }


def _run(cloud: LocalCloud, request: dict[str, Any]) -> Execution:
    return cloud.wait_for(cloud.start_execution("EnrolStateMachineArn", request), timeout=240)


def _uploads(request: dict[str, Any]) -> list[ObjectRef]:
    return [ObjectRef.model_validate(r) for r in request["images"]]


def _templates(subject: str | None = None) -> list[TemplateRecord]:
    with tenant_scope(PRISON.tenant_id):
        found = list(TemplateRecord.query(f"{PRISON.tenant_id}#{GALLERY}"))
    return [t for t in found if subject is None or t.subject_id == subject]


def _audit(service: FaceService, request_id: str) -> list[tuple[str, dict[str, Any]]]:
    with tenant_scope(PRISON.tenant_id):
        entries = service.audit.entries(PRISON)
    return [(e.action, dict(e.details)) for e in entries if e.details.get("request_id") == request_id]


def _row(request_id: str) -> RequestRecord:
    with tenant_scope(PRISON.tenant_id):
        return RequestRecord.get(PRISON.tenant_id, request_id)


def _short_lived_templates(cloud: LocalCloud) -> list[str]:
    with cloud.admin():
        return [
            r.counter_key
            for r in CounterRecord.query(PRISON.tenant_id, CounterRecord.counter_key.startswith("probe-template#"))
        ]


def _invocations(cloud: LocalCloud, logical: str) -> int:
    return len(cloud.adapter.invoked(cloud.function_name(logical)))


def test_three_photos_of_one_person_become_one_template_of_three_references(
    cloud: LocalCloud, service: FaceService, people: dict[str, list[Path]]
) -> None:
    """GIVEN three photos of one person in one Enrol request WHEN it runs THEN each photo is detected and
    embedded, one template fusing the three is stored (references 3, one audit entry), every upload is
    deleted, and no template crossed a state or stayed in a short-lived item."""
    subject = next(iter(people))
    request = _request(cloud, service, subject, [_chip(p) for p in people[subject][:3]])
    detects, embeds = _invocations(cloud, "DetectFunction"), _invocations(cloud, "EmbedFunction")

    run = _run(cloud, request)

    assert run.status == "SUCCEEDED", run
    assert run.output["status"] == "enrolled"
    assert run.output["template"]["references"] == 3
    assert _invocations(cloud, "DetectFunction") - detects == 3
    assert _invocations(cloud, "EmbedFunction") - embeds == 3
    (template,) = _templates(subject)
    assert template.references == 3
    assert template.template_id == run.output["template"]["template_id"]
    audit = _audit(service, request["request_id"])
    assert [action for action, _ in audit] == ["template.enrolled", "upload.deleted"]
    assert audit[0][1]["references"] == 3
    assert sorted(audit[1][1]["keys"]) == sorted(r.key for r in _uploads(request))
    assert not any(cloud.object_exists(ref) for ref in _uploads(request))
    history = cloud.client("stepfunctions").get_execution_history(executionArn=run.arn, maxResults=1000)["events"]
    assert '"embedding"' not in json.dumps(history, default=str)
    assert _short_lived_templates(cloud) == []


def test_photos_of_two_people_are_refused_and_nothing_is_stored(
    cloud: LocalCloud, service: FaceService, people: dict[str, list[Path]]
) -> None:
    """GIVEN two photos of one person and one of another WHEN they are enrolled as one subject THEN the
    request is refused (image.photos_disagree), recorded and audited; no template, no upload left."""
    first, second = list(people)[1:3]
    photos = [_chip(people[first][0]), _chip(people[first][1]), _chip(people[second][0])]
    request = _request(cloud, service, first, photos)

    run = _run(cloud, request)

    assert "StoreTemplate" in run.path
    assert run.path[-2:] == ["RecordFailure", "Failed"]
    row = _row(request["request_id"])
    assert row.status == "refused"
    assert [r["code"] for r in row.result["reasons"]] == ["image.photos_disagree"]
    audit = _audit(service, request["request_id"])
    assert [action for action, _ in audit] == ["request.refused"]
    assert audit[0][1]["reasons"] == ["image.photos_disagree"]
    assert _templates(first) == []
    assert not any(cloud.object_exists(ref) for ref in _uploads(request))
    assert _short_lived_templates(cloud) == []


def _pair(left: Path, right: Path) -> bytes:
    """Two people side by side, the same size and wholly in frame: two comparable faces."""
    return _png(np.hstack([johns_chip(left), johns_chip(right)]))


def test_a_photo_with_two_faces_among_the_set_refuses_the_enrolment(
    cloud: LocalCloud, service: FaceService, people: dict[str, list[Path]]
) -> None:
    """GIVEN three photos, one of them showing two comparable faces WHEN they are enrolled THEN the face
    re-check refuses the whole enrolment before anything is embedded; every upload is deleted."""
    names = list(people)
    subject = names[3]
    photos = [_chip(people[subject][0]), _pair(people[subject][1], people[names[4]][1]), _chip(people[subject][2])]
    request = _request(cloud, service, subject, photos)
    embeds = _invocations(cloud, "EmbedFunction")

    run = _run(cloud, request)

    assert run.status == "SUCCEEDED", run
    assert run.path[-2:] == ["RecordRefusal", "Refused"]
    assert [r["code"] for r in run.output["reasons"]] == ["request.enrolment_needs_one_face"]
    assert _invocations(cloud, "EmbedFunction") == embeds
    assert _row(request["request_id"]).status == "refused"
    assert "request.refused" in [action for action, _ in _audit(service, request["request_id"])]
    assert _templates(subject) == []
    assert not any(cloud.object_exists(ref) for ref in _uploads(request))


@pytest.mark.parametrize(("label", "code"), [("not a photo", "image.not_an_image"), ("blurred", "image.low_quality")])
def test_a_bad_photo_among_the_set_fails_the_enrolment_and_leaves_nothing_behind(
    cloud: LocalCloud, service: FaceService, people: dict[str, list[Path]], label: str, code: str
) -> None:
    """GIVEN two good photos and a third that is not an image (Detect fails) or too blurred (Embed fails,
    after the others were embedded) WHEN they are enrolled THEN the failure is recorded with its code, no
    template is stored, every upload is deleted and so is every photo's short-lived template."""
    subject = list(people)[2]
    bad = (
        b"not a photo" if label == "not a photo" else _png(cv2.GaussianBlur(johns_chip(people[subject][2]), (0, 0), 5))
    )
    request = _request(cloud, service, subject, [_chip(people[subject][0]), _chip(people[subject][1]), bad])

    run = _run(cloud, request)

    assert run.status == "FAILED"
    assert run.path[-2:] == ["RecordFailure", "Failed"]
    row = _row(request["request_id"])
    assert row.status == "failed"
    assert [r["code"] for r in row.result["reasons"]] == [code]
    assert [a for a, _ in _audit(service, request["request_id"])] == ["request.failed"]
    assert _templates(subject) == []
    assert not any(cloud.object_exists(ref) for ref in _uploads(request))
    assert _short_lived_templates(cloud) == []


def test_a_duplicated_delivery_of_a_multi_photo_request_stores_one_template(
    cloud: LocalCloud, service: FaceService, people: dict[str, list[Path]]
) -> None:
    subject = list(people)[4]
    request = _request(cloud, service, subject, [_chip(p) for p in people[subject][3:5]])

    first = _run(cloud, request)
    second = _run(cloud, request)  # the same request delivered again (a retried start)

    assert first.status == "SUCCEEDED", first
    assert first.output["template"]["references"] == 2
    assert second.status == "SUCCEEDED", second
    assert second.path == ["PolicyCheck", "IsDuplicate", "AlreadyProcessed"]
    assert len(_templates(subject)) == 1
    assert [a for a, _ in _audit(service, request["request_id"])] == ["template.enrolled", "upload.deleted"]


def test_enrol_is_an_express_workflow(cloud: LocalCloud) -> None:
    described = cloud.client("stepfunctions").describe_state_machine(
        stateMachineArn=cloud.state_machine_arn("EnrolStateMachineArn")
    )
    assert described["type"] == "EXPRESS"
    assert described["loggingConfiguration"]["level"] == "ERROR"
    assert described["loggingConfiguration"]["includeExecutionData"] is False


def test_concurrent_twin_deliveries_of_an_express_enrolment_store_one_template(
    cloud: LocalCloud, service: FaceService, people: dict[str, list[Path]]
) -> None:
    """Express runs at least once, and a duplicate may arrive while the first is still running: three
    starts of the same request at once give one template, one request row and one audit entry."""
    subject = list(people)[3]
    request = _request(cloud, service, subject, [_chip(p) for p in people[subject][5:7]])
    with ThreadPoolExecutor(max_workers=3) as pool:
        runs = list(pool.map(lambda _: _run(cloud, request), range(3)))
    assert all(r.status in ("SUCCEEDED", "FAILED") for r in runs), runs
    enrolled = [r for r in runs if r.status == "SUCCEEDED" and "StoreTemplate" in r.path]
    assert len(enrolled) >= 1, [r.path for r in runs]
    assert len(_templates(subject)) == 1
    actions = [a for a, _ in _audit(service, request["request_id"])]
    assert actions.count("template.enrolled") == 1, actions
    assert _row(request["request_id"]).status == "completed"
    # A twin never fails the request it duplicates: it stops as already processed, or ends on the
    # first one's stored answer.
    for run in runs:
        if run.status != "SUCCEEDED":
            assert "StoreTemplate" not in run.path, run


# --- the API and the SDK -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def officer(cloud: LocalCloud) -> FacegateClient:
    return FacegateClient(cloud.serve_api(), cloud.issue_token(PRISON.tenant_id, "officer-7"))


def test_the_sdk_enrols_three_photos_through_the_api(
    cloud: LocalCloud, officer: FacegateClient, people: dict[str, list[Path]]
) -> None:
    subject = "sdk-" + list(people)[2].lower().replace("_", "-")
    consent = officer.record_consent(
        subject, purpose="access_control", evidence=b"signed", expires_at=datetime.now(UTC) + timedelta(days=9)
    )
    photos = [_chip(p) for p in people[list(people)[2]][5:8]]

    submitted = officer.enrol(GALLERY, subject, consent["consent_id"], images=photos)
    outcome = officer.wait_for_request(submitted["request_id"], timeout=240)
    run = cloud.wait_for(_execution(cloud, submitted["request_id"]))  # Finish deletes after the row is written

    assert run.status == "SUCCEEDED", run
    assert outcome["status"] == "completed", outcome
    assert outcome["result"]["references"] == 3
    assert len(_templates(subject)) == 1
    assert _uploaded(cloud) == 0


def _execution(cloud: LocalCloud, request_id: str) -> str:
    """The Enrol execution the API started for a request (named after its request id)."""
    sfn = cloud.client("stepfunctions")
    listed = sfn.list_executions(stateMachineArn=cloud.state_machine_arn("EnrolStateMachineArn"))["executions"]
    (arn,) = [e["executionArn"] for e in listed if e["name"] == request_id[:80]]
    return str(arn)


def _uploaded(cloud: LocalCloud) -> int:
    listed = cloud.client("s3").list_object_versions(Bucket=cloud.bucket, Prefix=f"tenants/{PRISON.tenant_id}/uploads/")
    return len(listed.get("Versions", []))


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("label", "fields"),
    [
        ("six photos", {"images_b64": [_b64(f"photo {i}") for i in range(6)]}),
        ("an empty list", {"images_b64": []}),
        ("both fields", {"image_b64": _b64("photo"), "images_b64": [_b64("another photo")]}),
        ("no photo", {}),
    ],
)
def test_an_enrolment_of_no_photo_or_more_than_five_is_a_400_and_nothing_is_stored(
    cloud: LocalCloud, officer: FacegateClient, label: str, fields: dict[str, Any]
) -> None:
    before = _uploaded(cloud)
    body = {"gallery_id": GALLERY, "subject_id": "s-1", "consent_id": "c-1", **fields}
    with pytest.raises(FacegateApiError) as refused:
        officer._call("POST", "/enrolments", body)
    assert refused.value.status == 400
    assert refused.value.code == "request.enrolment_photos"
    assert _uploaded(cloud) == before


def test_the_sdk_sends_six_photos_and_the_api_refuses_them(
    cloud: LocalCloud, officer: FacegateClient, people: dict[str, list[Path]]
) -> None:
    before = _uploaded(cloud)
    photos = [_chip(p) for p in next(iter(people.values()))[:6]]
    with pytest.raises(FacegateApiError) as refused:
        officer.enrol(GALLERY, "s-2", "c-2", images=photos)
    assert refused.value.status == 400
    assert refused.value.code == "request.enrolment_photos"
    assert "5" in refused.value.message
    assert _uploaded(cloud) == before
