"""The tenant SDK against the tenant API on loopback: API Gateway's routes and Cognito authorizer played
from the deployed API's own definition, the real ``api`` handler, the real workflows behind it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from facegate import datasets
from facegate.evaluation import johns_chip
from facegate.localcloud.cloud import LocalCloud
from facegate.sdk import FacegateApiError, FacegateClient
from facegate.service import FaceService
from facegate.vision.decode import cv2

ROOT = Path(__file__).resolve().parents[2]
TENANT = "hmp-sdk"
OTHER = "lab-sdk"


def _chip(path: Path) -> bytes:
    ok, data = cv2.imencode(".png", johns_chip(path))
    assert ok
    return bytes(data)


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

    submitted = officer.search("staff", _chip(people[subjects[0]][3]), purpose="entry at gate A", top_k=2)
    outcome = officer.wait_for_request(submitted["request_id"])
    assert outcome["status"] == "completed"
    assert outcome["result"]["candidates"][0]["subject_id"] == subjects[0]
    assert outcome["review_state"] == "pending"

    first = officer.review(outcome["request_id"], confirm=True)
    assert first["review_state"] == "pending"  # access control: two people confirm
    second = FacegateClient(cloud.serve_api(), cloud.issue_token(TENANT, "officer-2"))
    assert second.review(outcome["request_id"], confirm=True)["review_state"] == "confirmed"

    receipt = officer.erase_subject(subjects[1])
    assert receipt["templates_deleted"] == 1
    audit = officer.export_audit()
    actions = [e["action"] for e in audit["entries"]]
    assert "subject.erased" in actions
    assert "search.completed" in actions
    assert audit["verified"]["entries_checked"] == len(audit["entries"])


def test_without_a_valid_token_nothing_is_served(cloud: LocalCloud) -> None:
    anonymous = FacegateClient(cloud.serve_api(), "not-a-token")
    with pytest.raises(FacegateApiError) as refused:
        anonymous.create_gallery("x", name="X", use_case="access_control")
    assert refused.value.status == 401


def test_another_tenant_cannot_read_a_request_or_search_a_gallery(
    cloud: LocalCloud, officer: FacegateClient, people: dict[str, list[Path]]
) -> None:
    officer.create_gallery("gate", name="Gate", use_case="access_control")
    mine = officer.search("gate", _chip(people[next(iter(people))][5]), purpose="entry")
    assert officer.wait_for_request(mine["request_id"])["status"] == "completed"

    other = FacegateClient(cloud.serve_api(), cloud.issue_token(OTHER, "guard-1"))
    assert other.get_request(mine["request_id"]) is None  # another tenant's request does not exist for them
    theirs = other.search("gate", _chip(people[next(iter(people))][6]), purpose="entry")
    refused = other.wait_for_request(theirs["request_id"])
    assert refused["status"] == "refused"
    assert [r["code"] for r in refused["result"]["reasons"]] == ["request.gallery_not_found"]


def test_a_malformed_body_is_a_clear_400(officer: FacegateClient) -> None:
    with pytest.raises(FacegateApiError) as bad:
        officer._call("POST", "/probes", {"gallery_id": "staff", "operation": "identify", "image_b64": "x"})
    assert bad.value.status == 400
    assert bad.value.code == "request.invalid"
    assert "operation" in bad.value.message
