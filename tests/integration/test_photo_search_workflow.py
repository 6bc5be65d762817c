"""Photo organisation through the Recognize workflow on the local cloud: every comparable face of an
uploaded photo is embedded (one batch), searched, named by its box, and each face's short-lived
template is deleted with the result; a small bystander is never embedded."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from _images import png, side_by_side

from facegate.localcloud.cloud import LocalCloud
from facegate.service import FaceService
from facegate.store.models import CounterRecord
from facegate.store.scope import tenant_scope
from facegate.tenancy import TenantContext
from facegate.vision import FacePipeline, decode_image
from facegate.vision.decode import cv2

ROOT = Path(__file__).resolve().parents[2]
FAMILY = TenantContext(tenant_id="family-album", actor="parent")
ALBUM = "album"


@pytest.fixture(scope="module")
def cloud(pipeline: FacePipeline, johns: dict[str, list[Path]]) -> Iterator[LocalCloud]:
    with LocalCloud(root=ROOT, stack_name="fgalbum") as local:
        service = FaceService()
        service.registry.register(FAMILY.tenant_id, name="Family", sector="individual", country="GB", jurisdiction="GB")
        until = datetime.now(UTC) + timedelta(days=30)
        service.approve_use_case(
            "operator@facegate",
            FAMILY.tenant_id,
            use_case="photo_organization",
            deployment="personal",
            expires_at=until,
        )
        with tenant_scope(FAMILY.tenant_id):
            service.create_gallery(FAMILY, ALBUM, name="Album", use_case="photo_organization")
            for name in sorted(johns)[:3]:
                padded = cv2.copyMakeBorder(
                    decode_image(johns[name][0].read_bytes()), 75, 75, 75, 75, cv2.BORDER_CONSTANT
                )
                consent = service.record_consent(
                    FAMILY, subject_id=name, purpose="photo_organization", evidence=b"signed", expires_at=until
                )
                service.enrol(
                    FAMILY,
                    ALBUM,
                    subject_id=name,
                    consent_id=consent.consent_id,
                    analysis=pipeline.analyse_image(np.asarray(padded)),
                )
        yield local


def _left_to_right(faces: list[dict[str, object]]) -> list[list[str]]:
    ordered = sorted(faces, key=lambda f: f["box"][0])  # type: ignore[index]
    return [[c["subject_id"] for c in f["candidates"]] for f in ordered]  # type: ignore[index, union-attr]


def _transient_left(cloud: LocalCloud) -> list[str]:
    with cloud.admin():  # the tenant's role may not list its counters; the administrator looks
        return [
            r.counter_key for r in CounterRecord.query(FAMILY.tenant_id) if r.counter_key.startswith("probe-template")
        ]


def test_a_photo_of_two_people_finds_both_and_leaves_no_template(
    cloud: LocalCloud, johns: dict[str, list[Path]]
) -> None:
    a, b, c = sorted(johns)[:3]
    photo = png(side_by_side(johns[a][3], johns[b][3], small=johns[c][3]))
    ref = cloud.put_probe(FAMILY.tenant_id, ALBUM, photo, operation="search", top_k="3", actor=FAMILY.actor)
    run = cloud.wait_for(cloud.execution_for(ref))
    assert run.status == "SUCCEEDED", run.cause
    assert run.output["status"] == "completed"
    result = run.output["result"]
    assert len(result["faces"]) == 2, "the two people, never the small bystander"
    found = _left_to_right(result["faces"])
    assert found[0][:1] == [a]
    assert found[1][:1] == [b]
    assert c not in [x["subject_id"] for x in result["candidates"]]
    assert _transient_left(cloud) == []
