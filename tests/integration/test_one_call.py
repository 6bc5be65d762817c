"""One-call verify and search (``POST /verify``, ``POST /search``, the SDK's ``verify`` and ``search``):
the API starts the Express Recognize workflow synchronously and answers with the decision and the result
in the same response, on the local cloud with the real template, ASL and handlers.

A refusal is an answer (200, with reason codes); a non-image is the caller's 400, recorded; the probe is
gone when the answer comes; the one-call probe never starts a second, asynchronous run.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from _images import chip_png, png, side_by_side

from facegate.localcloud.cloud import LocalCloud
from facegate.sdk import FacegateApiError, FacegateClient
from facegate.service import FaceService
from facegate.store.scope import tenant_scope
from facegate.tenancy import TenantContext
from facegate.vision import FacePipeline, decode_image
from facegate.vision.decode import cv2

ROOT = Path(__file__).resolve().parents[2]
PRISON = TenantContext(tenant_id="hmp-one-call", actor="officer-3")
BANK = TenantContext(tenant_id="bank-one-call", actor="teller-9")
OPERATOR = "operator@facegate"


def _enrol_johns(service: FaceService, ctx: TenantContext, gallery: str, use_case: str, johns: dict[str, list[Path]],
                 pipeline: FacePipeline) -> None:  # fmt: skip
    until = datetime.now(UTC) + timedelta(days=30)
    with tenant_scope(ctx.tenant_id):
        service.create_gallery(ctx, gallery, name=gallery, use_case=use_case)
        for name in sorted(johns)[:3]:
            padded = cv2.copyMakeBorder(decode_image(johns[name][0].read_bytes()), 75, 75, 75, 75, cv2.BORDER_CONSTANT)
            consent = service.record_consent(
                ctx, subject_id=name, purpose=use_case, evidence=b"signed", expires_at=until
            )
            service.enrol(ctx, gallery, subject_id=name, consent_id=consent.consent_id,
                          analysis=pipeline.analyse_image(np.asarray(padded)))  # fmt: skip


@pytest.fixture(scope="module")
def cloud(pipeline: FacePipeline, johns: dict[str, list[Path]]) -> Iterator[LocalCloud]:
    with LocalCloud(root=ROOT, stack_name="fgonecall") as local:
        local.serve_api()
        service = FaceService()
        until = datetime.now(UTC) + timedelta(days=30)
        service.registry.register(PRISON.tenant_id, name="HMP", sector="corrections", country="GB", jurisdiction="GB")
        service.registry.register(BANK.tenant_id, name="Bank", sector="private", country="GB", jurisdiction="GB")
        service.approve_use_case(OPERATOR, PRISON.tenant_id, use_case="access_control", deployment="closed_facility",
                                 expires_at=until)  # fmt: skip
        service.approve_use_case(OPERATOR, BANK.tenant_id, use_case="identity_verification",
                                 deployment="online_service", expires_at=until)  # fmt: skip
        _enrol_johns(service, PRISON, "residents", "access_control", johns, pipeline)
        _enrol_johns(service, BANK, "customers", "identity_verification", johns, pipeline)
        yield local


@pytest.fixture(scope="module")
def officer(cloud: LocalCloud) -> FacegateClient:
    return FacegateClient(cloud.serve_api(), cloud.issue_token(PRISON.tenant_id, "officer-3"), timeout=120.0)


@pytest.fixture(scope="module")
def teller(cloud: LocalCloud) -> FacegateClient:
    return FacegateClient(cloud.serve_api(), cloud.issue_token(BANK.tenant_id, "teller-9"), timeout=120.0)


def _calls_left(cloud: LocalCloud, tenant: str) -> list[str]:
    with cloud.admin():
        listed = cloud.client("s3").list_objects_v2(Bucket=cloud.bucket, Prefix=f"tenants/{tenant}/calls/")
    return [o["Key"] for o in listed.get("Contents", [])]


def test_a_search_answers_with_the_decision_and_the_result_in_one_call(
    cloud: LocalCloud, officer: FacegateClient, johns: dict[str, list[Path]]
) -> None:
    who = sorted(johns)[1]
    started = len(cloud.adapter.executions_started)
    answer = officer.search("residents", chip_png(johns[who][4]), purpose="entry at gate B", top_k=3)
    assert answer["status"] == "completed"
    assert answer["decision"]["allowed"] is True
    assert answer["decision"]["use_case"] == "access_control"
    assert [c["subject_id"] for c in answer["result"]["candidates"]][:1] == [who]
    assert answer["review_state"] == "pending"  # access control: a human confirms before anything follows
    assert officer.get_request(answer["request_id"]) == answer  # the same record, readable later
    assert _calls_left(cloud, PRISON.tenant_id) == []  # the probe is gone when the answer comes
    # No event rule matches calls/: the synchronous run is the only one.
    assert len(cloud.adapter.executions_started) == started


def test_a_verification_answers_matched_or_not(teller: FacegateClient, johns: dict[str, list[Path]]) -> None:
    a, b = sorted(johns)[:2]
    same = teller.verify("customers", a, chip_png(johns[a][3]))
    other = teller.verify("customers", a, chip_png(johns[b][3]))
    assert same["status"] == other["status"] == "completed"
    assert same["result"]["matched"] is True
    assert other["result"]["matched"] is False
    assert same["decision"]["threshold"] >= 0.40


def test_a_refusal_is_an_answer_with_its_reason_codes(officer: FacegateClient, johns: dict[str, list[Path]]) -> None:
    a, b = sorted(johns)[:2]
    unpurposed = officer.search("residents", chip_png(johns[a][5]))
    assert unpurposed["status"] == "refused"
    assert [r["code"] for r in unpurposed["result"]["reasons"]] == ["request.purpose_missing"]
    crowd = officer.search("residents", png(side_by_side(johns[a][5], johns[b][5])), purpose="entry")
    assert crowd["status"] == "refused"
    assert [r["code"] for r in crowd["result"]["reasons"]] == ["request.crowd_probe"]


def test_a_bad_image_is_the_callers_400_recorded_and_removed(cloud: LocalCloud, officer: FacegateClient) -> None:
    with pytest.raises(FacegateApiError) as bad:
        officer.search("residents", b"this is not a photo", purpose="entry")
    assert bad.value.status == 400
    assert bad.value.code == "image.not_an_image"
    assert _calls_left(cloud, PRISON.tenant_id) == []


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/verify", {"gallery_id": "customers", "image_b64": "aGVsbG8="}),  # no subject
        ("/search", {"gallery_id": "customers", "image_b64": "aGVsbG8=", "subject_id": "x"}),
        ("/search", {"gallery_id": "customers", "image_b64": "***"}),
        ("/search", {"gallery_id": "../x", "image_b64": "aGVsbG8="}),
        ("/search", {"gallery_id": "customers", "image_b64": "aGVsbG8=", "tenant_id": PRISON.tenant_id}),
    ],
)
def test_a_malformed_call_is_a_400_that_stores_nothing(
    cloud: LocalCloud, teller: FacegateClient, path: str, body: dict[str, object]
) -> None:
    started = len(cloud.adapter.executions_started)
    with pytest.raises(FacegateApiError) as bad:
        teller._call("POST", path, body)
    assert bad.value.status == 400
    assert _calls_left(cloud, BANK.tenant_id) == []
    assert len(cloud.adapter.executions_started) == started


def test_another_tenants_gallery_is_not_found_in_one_call(
    officer: FacegateClient, johns: dict[str, list[Path]]
) -> None:
    answer = officer.search("customers", chip_png(johns[sorted(johns)[0]][3]), purpose="entry")
    assert answer["status"] == "refused"
    assert [r["code"] for r in answer["result"]["reasons"]] == ["request.gallery_not_found"]


@pytest.mark.parametrize("name", ["probes", "calls", "uploads"])
def test_a_gallery_cannot_take_the_name_of_one_of_the_services_prefixes(officer: FacegateClient, name: str) -> None:
    """``tenants/<t>/calls/probes/<x>`` would match the S3 event rule's ``tenants/*/probes/*`` (a ``*`` spans a
    ``/``) and start a second run on the one-call probe."""
    with pytest.raises(FacegateApiError) as refused:
        officer.create_gallery(name, name="x", use_case="access_control")
    assert refused.value.status == 400
    assert refused.value.code == "request.invalid_identifier"
