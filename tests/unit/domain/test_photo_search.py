"""Photo organisation searches every comparable face of a photo, not only the first (issue 14 item 1).

A family's photo of two people finds both; a small bystander is never searched; the answer names each
face by its box; the same photo under access control (one face) is a crowd and refused; the daily
search budget counts every face searched. On moto and on DynamoDB Local.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from _images import side_by_side

from facegate.errors import PolicyDeniedError
from facegate.match import PhotoSearchResult, SearchResult
from facegate.service import FaceService
from facegate.store.models import SEP
from facegate.tenancy import TenantContext
from facegate.vision import FaceAnalysis, FacePipeline, decode_image
from facegate.vision.decode import cv2

NOW = (datetime.now(UTC) + timedelta(minutes=30)).replace(second=0, microsecond=0)
FAMILY = TenantContext(tenant_id="family-photos", actor="parent")
PRISON = TenantContext(tenant_id="hmp-photo-search", actor="officer")
OPERATOR = "operator@facegate"


@pytest.fixture
def service(dynamo: str) -> FaceService:
    svc = FaceService(clock=lambda: NOW)
    svc.registry.register(FAMILY.tenant_id, name="Family", sector="individual", country="GB", jurisdiction="GB")
    svc.registry.register(PRISON.tenant_id, name="HMP", sector="corrections", country="GB", jurisdiction="GB")
    until = NOW + timedelta(days=30)
    svc.approve_use_case(
        OPERATOR, FAMILY.tenant_id, use_case="photo_organization", deployment="personal", expires_at=until
    )
    svc.approve_use_case(
        OPERATOR, PRISON.tenant_id, use_case="access_control", deployment="closed_facility", expires_at=until
    )
    return svc


def _enrol(
    service: FaceService, ctx: TenantContext, gallery: str, use_case: str, people: dict[str, FaceAnalysis]
) -> None:
    service.create_gallery(ctx, gallery, name=gallery, use_case=use_case)
    for name, analysis in people.items():
        consent = service.record_consent(
            ctx, subject_id=name, purpose=use_case, evidence=b"signed", expires_at=NOW + timedelta(days=200)
        )
        service.enrol(ctx, gallery, subject_id=name, consent_id=consent.consent_id, analysis=analysis)


@pytest.fixture(scope="module")
def people(pipeline: FacePipeline, johns: dict[str, list[Path]]) -> dict[str, FaceAnalysis]:
    """Three johns, each enrolled from one photo (padded for the detector)."""
    names = sorted(johns)[:3]
    return {
        n: pipeline.analyse_image(
            np.asarray(cv2.copyMakeBorder(decode_image(johns[n][0].read_bytes()), 75, 75, 75, 75, cv2.BORDER_CONSTANT))
        )
        for n in names
    }


def test_every_face_of_a_family_photo_is_searched_and_named_by_its_box(
    service: FaceService, people: dict[str, FaceAnalysis], pipeline: FacePipeline, johns: dict[str, list[Path]]
) -> None:
    a, b, c = sorted(people)
    _enrol(service, FAMILY, "album", "photo_organization", people)
    photo = pipeline.analyse_image(side_by_side(johns[a][3], johns[b][3]))
    assert photo.face_count == 2
    outcome = service.search(FAMILY, "album", analysis=photo, top_k=3)
    result = outcome.result
    assert isinstance(result, PhotoSearchResult)
    found = {f.face: [x.subject_id for x in f.result.candidates] for f in result.faces}
    names = {f.face: f.box for f in result.faces}
    left = 0 if names[0][0] < names[1][0] else 1
    assert found[left][:1] == [a]
    assert found[1 - left][:1] == [b]
    assert {x.subject_id for x in result.candidates} >= {a, b}
    assert c not in [x.subject_id for x in result.candidates]
    stored = service.requests.get(FAMILY, outcome.request_id)
    assert stored is not None
    assert [f["face"] for f in stored.result["faces"]] == [0, 1]  # type: ignore[index]
    assert all(len(f["box"]) == 4 for f in stored.result["faces"])  # type: ignore[index]


def test_a_small_bystander_is_never_searched(
    service: FaceService, people: dict[str, FaceAnalysis], pipeline: FacePipeline, johns: dict[str, list[Path]]
) -> None:
    a, b, c = sorted(people)
    _enrol(service, FAMILY, "album", "photo_organization", people)
    photo = pipeline.analyse_image(side_by_side(johns[a][3], johns[b][3], small=johns[c][3]))
    assert photo.face_count == 2, "the small face is a bystander"
    result = service.search(FAMILY, "album", analysis=photo, top_k=3).result
    assert isinstance(result, PhotoSearchResult)
    assert len(result.faces) == 2
    assert c not in [x.subject_id for x in result.candidates]


def test_one_face_is_still_one_search_and_access_control_refuses_two(
    service: FaceService, people: dict[str, FaceAnalysis], pipeline: FacePipeline, johns: dict[str, list[Path]]
) -> None:
    a, b, _ = sorted(people)
    _enrol(service, FAMILY, "album", "photo_organization", people)
    single = service.search(FAMILY, "album", analysis=people[a], top_k=3).result
    assert isinstance(single, SearchResult)
    _enrol(service, PRISON, "residents", "access_control", people)
    with pytest.raises(PolicyDeniedError) as crowd:
        service.search(
            PRISON,
            "residents",
            analysis=pipeline.analyse_image(side_by_side(johns[a][3], johns[b][3])),
            purpose="entry",
        )
    assert crowd.value.decision.codes == ["request.crowd_probe"]  # type: ignore[union-attr]


def test_the_search_budget_counts_every_face_searched(
    service: FaceService, people: dict[str, FaceAnalysis], pipeline: FacePipeline, johns: dict[str, list[Path]]
) -> None:
    a, b, _ = sorted(people)
    _enrol(service, FAMILY, "album", "photo_organization", people)
    name = f"comparisons{SEP}photo_organization"
    before = service.counters.hit(FAMILY, name, window=timedelta(days=1), now=NOW, amount=0)
    service.search(FAMILY, "album", analysis=pipeline.analyse_image(side_by_side(johns[a][3], johns[b][3])), top_k=3)
    after = service.counters.hit(FAMILY, name, window=timedelta(days=1), now=NOW, amount=0)
    assert after - before == 2 * len(people)  # two faces, each against the gallery's three templates


def test_erasing_a_person_found_in_a_photo_search_redacts_every_face_of_the_stored_result(
    service: FaceService, people: dict[str, FaceAnalysis], pipeline: FacePipeline, johns: dict[str, list[Path]]
) -> None:
    a, b, _ = sorted(people)
    _enrol(service, FAMILY, "album", "photo_organization", people)
    outcome = service.search(
        FAMILY, "album", analysis=pipeline.analyse_image(side_by_side(johns[a][3], johns[b][3])), top_k=3
    )
    receipt = service.erase_subject(FAMILY, b)
    assert receipt.to_dict()["requests_redacted"] >= 1
    stored = service.requests.get(FAMILY, outcome.request_id)
    assert stored is not None
    text = repr(stored.result)
    assert b not in text, "the erased person is still named in a face of the stored result"
    assert a in text
    assert service.requests.naming(FAMILY, b) == []
