"""A tenant managing what it holds through the API and the SDK: templates page by page, one template
deleted, a gallery deleted, consents listed and read; each change audited, nothing of another tenant's
reachable, not even by the ids it holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from _images import chip_png

from facegate import datasets
from facegate.localcloud.cloud import LocalCloud
from facegate.sdk import FacegateClient, NotFoundError
from facegate.service import FaceService

ROOT = Path(__file__).resolve().parents[2]
TENANT = "hmp-manage"
OTHER = "lab-manage"
GALLERY = "managed"


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud(root=ROOT, stack_name="fgmanage") as local:
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
    return FacegateClient(cloud.serve_api(), cloud.issue_token(TENANT, "officer-m"))


@pytest.fixture(scope="module")
def other(cloud: LocalCloud) -> FacegateClient:
    return FacegateClient(cloud.serve_api(), cloud.issue_token(OTHER, "guard-m"))


@pytest.fixture(scope="module")
def enrolled(officer: FacegateClient) -> dict[str, str]:
    """Three people enrolled into GALLERY; subject → consent id."""
    officer.create_gallery(GALLERY, name="Managed", use_case="access_control")
    consents = {}
    for subject, paths in list(datasets.johns().items())[:3]:
        consent = officer.record_consent(
            subject, purpose="access_control", evidence=b"signed", expires_at=datetime.now(UTC) + timedelta(days=90)
        )
        submitted = officer.enrol(GALLERY, subject, consent["consent_id"], chip_png(paths[0]))
        assert officer.wait_for_request(submitted["request_id"], timeout=120)["status"] == "completed"
        consents[subject] = consent["consent_id"]
    return consents


def _actions(client: FacegateClient) -> list[str]:
    return [e["action"] for e in client.export_audit()["entries"]]


def test_templates_page_by_page_without_embeddings(officer: FacegateClient, enrolled: dict[str, str]) -> None:
    first = officer.list_templates(GALLERY, limit=2)
    assert len(first["templates"]) == 2
    assert "next_token" in first
    second = officer.list_templates(GALLERY, limit=2, next_token=first["next_token"])
    assert len(second["templates"]) == 1
    assert "next_token" not in second
    every = list(officer.get_paginator("list_templates").items(gallery_id=GALLERY, PageSize=1))
    assert sorted(t["subject_id"] for t in every) == sorted(enrolled)
    for t in every:
        assert set(t) == {"template_id", "subject_id", "consent_id", "expires_at", "model_version", "references"}
        assert t["consent_id"] == enrolled[t["subject_id"]]


def test_consents_are_listed_and_read_with_only_the_evidence_hash(
    officer: FacegateClient, enrolled: dict[str, str]
) -> None:
    subject, consent_id = next(iter(enrolled.items()))
    (listed,) = officer.list_consents(subject)["consents"]
    assert listed == officer.get_consent(subject, consent_id)
    assert listed["status"] == "granted"
    assert len(listed["evidence_sha256"]) == 64
    with pytest.raises(NotFoundError):
        officer.get_consent(subject, "no-such-consent")


def test_another_tenant_reaches_nothing_even_with_the_ids(
    officer: FacegateClient, other: FacegateClient, enrolled: dict[str, str]
) -> None:
    """The other tenant names this tenant's gallery, template, subject and consent: every answer is the
    one for ids that do not exist, and nothing is deleted."""
    template = officer.list_templates(GALLERY)["templates"][0]
    subject, consent_id = template["subject_id"], template["consent_id"]
    attempts: list[Any] = [
        lambda: other.list_templates(GALLERY),
        lambda: other.delete_template(GALLERY, template["template_id"]),
        lambda: other.delete_gallery(GALLERY),
        lambda: other.get_consent(subject, consent_id),
    ]
    for attempt in attempts:
        with pytest.raises(NotFoundError):
            attempt()
    assert other.list_consents(subject)["consents"] == []
    assert len(officer.list_templates(GALLERY)["templates"]) == len(enrolled)


def test_one_template_is_deleted_and_audited(officer: FacegateClient, enrolled: dict[str, str]) -> None:
    before = officer.describe_gallery(GALLERY)["size"]
    template = officer.list_templates(GALLERY)["templates"][0]
    assert officer.delete_template(GALLERY, template["template_id"])["deleted"] is True
    assert officer.describe_gallery(GALLERY)["size"] == before - 1
    assert template["template_id"] not in [t["template_id"] for t in officer.list_templates(GALLERY)["templates"]]
    with pytest.raises(NotFoundError):  # deleting it again: it is not there
        officer.delete_template(GALLERY, template["template_id"])
    assert _actions(officer).count("template.deleted") == 1
    assert officer.get_consent(template["subject_id"], template["consent_id"])["status"] == "granted"


def test_a_gallery_is_deleted_with_its_templates_and_its_id_freed(
    officer: FacegateClient, enrolled: dict[str, str]
) -> None:
    left = len(officer.list_templates(GALLERY)["templates"])
    answer = officer.delete_gallery(GALLERY)
    assert answer == {"gallery_id": GALLERY, "deleted": True, "templates_deleted": left}
    with pytest.raises(NotFoundError):
        officer.describe_gallery(GALLERY)
    with pytest.raises(NotFoundError):
        officer.delete_gallery(GALLERY)
    actions = _actions(officer)
    assert actions.count("gallery.deleted") == 1
    assert "gallery.templates_deleted" in actions
    probe = chip_png(next(iter(datasets.johns().values()))[3])
    refused = officer.search(GALLERY, probe, purpose="entry")
    assert [r["code"] for r in refused["result"]["reasons"]] == ["request.gallery_not_found"]
    officer.create_gallery(GALLERY, name="Again", use_case="access_control")  # the same id, empty
    assert officer.describe_gallery(GALLERY)["size"] == 0


def test_a_deleted_gallery_frees_its_place_under_the_cap(officer: FacegateClient) -> None:
    """The tenant's galleries per use case are capped (2 for access control here): a deleted gallery's
    place is given back, however many times."""
    for round_ in range(4):
        officer.create_gallery("cycle", name=f"Cycle {round_}", use_case="access_control")
        assert officer.delete_gallery("cycle")["deleted"] is True


def test_a_gallery_whose_count_overstates_its_templates_is_still_deleted(
    cloud: LocalCloud, officer: FacegateClient
) -> None:
    """DynamoDB's TTL deletes expired templates without lowering the gallery's count: the deletion
    decides on the templates really there (and the version), never on the count."""
    from facegate.store.models import GalleryRecord

    officer.create_gallery("stale", name="Stale", use_case="access_control")
    with cloud.admin():
        GalleryRecord(TENANT, "stale").update(actions=[GalleryRecord.template_count.add(5)])
    assert officer.delete_gallery("stale") == {"gallery_id": "stale", "deleted": True, "templates_deleted": 0}


@pytest.mark.parametrize("template_id", ["x" * 300, "\U0001f600" * 300, "no-hash", "s#" + "g" * 32])
def test_an_odd_template_id_is_a_400(officer: FacegateClient, template_id: str) -> None:
    from facegate.sdk import BadRequestError

    with pytest.raises(BadRequestError):
        officer.delete_template(GALLERY, template_id)
    with pytest.raises(BadRequestError):
        officer.list_templates(
            GALLERY, next_token=__import__("base64").urlsafe_b64encode(template_id.encode()).decode()
        )
