"""The warm gallery cache (issue 15 item 3): a search on a warm function reads only the gallery row, and a
stale copy can never return an erased, withdrawn or expired subject. On moto and on DynamoDB Local.

Each probe is tried the way an attacker would time it: a warm cache across an erasure, a withdrawal, an
enrolment and an expiry; a planted copy of an old version still holding the erased subject; two tenants
with the same gallery id; a cache too small for the gallery.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from _galleries import START, Clock, approve_prisons, count_template_reads, enrol, found, padded_faces

from facegate.match import Gallery, GalleryTemplate
from facegate.service import FaceService
from facegate.service.gallery_cache import CachedGallery, GalleryCache
from facegate.tenancy import TenantContext
from facegate.vision import FaceAnalysis, FacePipeline

PRISON = TenantContext(tenant_id="hmp-cache", actor="officer")
OTHER = TenantContext(tenant_id="hmp-cache-two", actor="officer")


@pytest.fixture(scope="module")
def faces(pipeline: FacePipeline, johns: dict[str, list[Path]]) -> dict[str, list[FaceAnalysis]]:
    return padded_faces(pipeline, johns)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(dynamo: str, clock: Clock) -> FaceService:
    return approve_prisons(FaceService(clock=clock), PRISON, OTHER)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every read of a gallery's templates (what a warm search must not do)."""
    return count_template_reads(monkeypatch)


def test_a_warm_search_reads_only_the_gallery_row(
    service: FaceService, faces: dict[str, list[FaceAnalysis]], reads: list[str]
) -> None:
    a = sorted(faces)[0]
    enrol(service, PRISON, faces)
    assert found(service, PRISON, faces[a][1])[:1] == [a]
    assert found(service, PRISON, faces[a][2])[:1] == [a]
    assert found(service, PRISON, faces[a][1])[:1] == [a]
    assert reads == ["residents"]  # built once, then warm
    assert service.gallery_cache.hits == 2


def test_a_warm_cache_never_returns_an_erased_subject(
    service: FaceService, faces: dict[str, list[FaceAnalysis]], reads: list[str]
) -> None:
    a = sorted(faces)[0]
    enrol(service, PRISON, faces)
    assert found(service, PRISON, faces[a][1])[:1] == [a]  # warm, with the subject in it
    service.erase_subject(PRISON, a)
    assert a not in found(service, PRISON, faces[a][1])
    assert a not in found(service, PRISON, faces[a][2])
    assert len(reads) == 2  # the erasure raised the version: rebuilt once


def test_a_withdrawn_consent_leaves_the_warm_cache_at_once(
    service: FaceService, faces: dict[str, list[FaceAnalysis]]
) -> None:
    a = sorted(faces)[1]
    consents = enrol(service, PRISON, faces)
    assert found(service, PRISON, faces[a][1])[:1] == [a]
    service.revoke_consent(PRISON, a, consents[a])
    assert a not in found(service, PRISON, faces[a][1])


def test_a_planted_copy_of_an_old_version_is_never_used(
    service: FaceService, faces: dict[str, list[FaceAnalysis]]
) -> None:
    """Even if a copy of the version before an erasure were still in the cache (a bug, a race), a search
    after the erasure reads the new version and cannot reach it."""
    a = sorted(faces)[0]
    enrol(service, PRISON, faces)
    before = service.galleries.get(PRISON, "residents").version
    assert found(service, PRISON, faces[a][1])[:1] == [a]
    stale = Gallery([GalleryTemplate("planted", a, faces[a][1].subject_embedding)])
    service.erase_subject(PRISON, a)
    service.gallery_cache._entries[(PRISON.tenant_id, "residents", before)] = CachedGallery(stale, None, 1)
    assert service.galleries.get(PRISON, "residents").version > before
    assert a not in found(service, PRISON, faces[a][1])


def test_an_enrolment_is_seen_by_the_next_search(service: FaceService, faces: dict[str, list[FaceAnalysis]]) -> None:
    names = sorted(faces)
    enrol(service, PRISON, {n: faces[n] for n in names[:2]})
    assert names[2] not in found(service, PRISON, faces[names[2]][1])
    enrol(service, PRISON, {names[2]: faces[names[2]]})
    assert found(service, PRISON, faces[names[2]][1])[:1] == [names[2]]


def test_a_template_that_expires_leaves_the_warm_cache_without_any_write(
    service: FaceService, faces: dict[str, list[FaceAnalysis]], clock: Clock
) -> None:
    a = sorted(faces)[0]
    enrol(service, PRISON, faces, days=2)  # each consent (so each template) ends in two days
    assert found(service, PRISON, faces[a][1])[:1] == [a]
    clock.now = START + timedelta(days=3)
    assert found(service, PRISON, faces[a][1]) == []


def test_no_two_tenants_share_an_entry(service: FaceService, faces: dict[str, list[FaceAnalysis]]) -> None:
    names = sorted(faces)
    enrol(service, PRISON, {names[0]: faces[names[0]]})
    enrol(service, OTHER, {names[1]: faces[names[1]]})  # the same gallery id, another tenant
    assert found(service, PRISON, faces[names[0]][1])[:1] == [names[0]]
    assert names[0] not in found(service, OTHER, faces[names[0]][1])
    assert found(service, OTHER, faces[names[1]][1])[:1] == [names[1]]
    assert names[1] not in found(service, PRISON, faces[names[1]][1])
    assert {k[0] for k in service.gallery_cache.cached()} == {PRISON.tenant_id, OTHER.tenant_id}


def test_the_cache_is_bounded_and_still_answers_when_a_gallery_does_not_fit(
    service: FaceService, faces: dict[str, list[FaceAnalysis]], reads: list[str]
) -> None:
    a = sorted(faces)[0]
    enrol(service, PRISON, faces)
    service.gallery_cache = GalleryCache(max_bytes=100)  # smaller than any gallery
    assert found(service, PRISON, faces[a][1])[:1] == [a]
    assert found(service, PRISON, faces[a][1])[:1] == [a]
    assert service.gallery_cache.cached() == []
    assert len(reads) == 2  # not cached: read each time, answered each time
