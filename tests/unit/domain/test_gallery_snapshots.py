"""Gallery snapshots (issue 15 item 3): a cold Match loads one S3 object for the gallery's version instead
of reading every template, and no snapshot can ever return an erased, withdrawn or expired subject.

S3 is moto's; DynamoDB is moto or DynamoDB Local (moto lets the loopback endpoint through). Each probe is
tried the way an attacker or an unlucky schedule would: a cold container after an erasure, a withdrawal
and an expiry; an object planted at the snapshot's key; a change that lands between the table read and
the snapshot's record; another tenant with the same gallery id; a search outside any tenant scope.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from _galleries import START, Clock, approve_prisons, count_template_reads, enrol, found, padded_faces
from moto import mock_aws

from facegate.service import FaceService
from facegate.service.gallery_cache import GalleryCache
from facegate.store.models import GalleryRecord
from facegate.store.repositories import Templates
from facegate.store.scope import tenant_client, tenant_scope
from facegate.store.snapshots import GallerySnapshots, Snapshot, snapshot_key, snapshot_prefix
from facegate.tenancy import TenantContext
from facegate.vision import FaceAnalysis, FacePipeline

PRISON = TenantContext(tenant_id="hmp-snap", actor="officer")
OTHER = TenantContext(tenant_id="hmp-snap-two", actor="officer")
BUCKET = "facegate-snapshots-test"


@pytest.fixture(scope="module")
def faces(pipeline: FacePipeline, johns: dict[str, list[Path]]) -> dict[str, list[FaceAnalysis]]:
    return padded_faces(pipeline, johns)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def s3(dynamo: str) -> Iterator[Any]:
    """A versioned bucket (as the template's); on DynamoDB Local, moto serves S3 only."""
    with mock_aws() if dynamo != "moto" else contextlib.nullcontext():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client


def _service(clock: Clock) -> FaceService:
    """A service as a fresh container has it: an empty warm cache, the stack's bucket."""
    return FaceService(clock=clock, gallery_cache=GalleryCache(), snapshots=GallerySnapshots(bucket=BUCKET))


@pytest.fixture
def service(s3: Any, clock: Clock) -> FaceService:
    return approve_prisons(_service(clock), PRISON, OTHER)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every read of a gallery's templates from the table (what a snapshot spares a cold container)."""
    return count_template_reads(monkeypatch)


def _scores(service: FaceService, ctx: TenantContext, probe: FaceAnalysis) -> list[tuple[str, float]]:
    result: Any = service.search(ctx, "residents", analysis=probe, top_k=5, purpose="entry").result
    return [(c.subject_id, round(float(c.score), 6)) for c in result.candidates]


def _objects(s3: Any, ctx: TenantContext = PRISON, gallery: str = "residents") -> list[dict[str, Any]]:
    """Every object version and delete marker under the gallery's snapshot prefix."""
    listed = s3.list_object_versions(Bucket=BUCKET, Prefix=snapshot_prefix(ctx.tenant_id, gallery))
    return [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])]


def _subjects_in_stored_snapshots(s3: Any, ctx: TenantContext = PRISON) -> set[str]:
    held: set[str] = set()
    for version in s3.list_object_versions(Bucket=BUCKET, Prefix=snapshot_prefix(ctx.tenant_id, "residents")).get(
        "Versions", []
    ):
        body = s3.get_object(Bucket=BUCKET, Key=version["Key"], VersionId=version["VersionId"])["Body"].read()
        held |= {t.subject_id for t in Snapshot.from_bytes(body).templates}
    return held


def test_a_cold_container_loads_the_snapshot_and_reads_no_template(
    service: FaceService, faces: dict[str, list[FaceAnalysis]], reads: list[str], clock: Clock, s3: Any
) -> None:
    a = sorted(faces)[0]
    enrol(service, PRISON, faces)
    warm = _scores(service, PRISON, faces[a][1])
    assert warm[0][0] == a
    assert reads == ["residents"]
    assert service.snapshots.writes == 1
    row = service.galleries.get(PRISON, "residents")
    assert row.snapshot is not None
    assert row.snapshot["version"] == row.version
    assert [o["Key"] for o in _objects(s3)] == [snapshot_key(PRISON.tenant_id, "residents", row.version)]

    cold = _service(clock)
    assert _scores(cold, PRISON, faces[a][1]) == warm  # the same candidates, the same scores
    assert reads == ["residents"]  # no template read by the cold container
    assert cold.snapshots.loads == 1
    assert cold.snapshots.writes == 0


def test_the_snapshot_is_encrypted_with_kms_under_the_tenants_prefix(
    service: FaceService, faces: dict[str, list[FaceAnalysis]], s3: Any
) -> None:
    enrol(service, PRISON, faces)
    found(service, PRISON, faces[sorted(faces)[0]][1])
    (only,) = _objects(s3)
    assert only["Key"].startswith(f"tenants/{PRISON.tenant_id}/snapshots/residents/")
    head = s3.head_object(Bucket=BUCKET, Key=only["Key"])
    assert head["ServerSideEncryption"] == "aws:kms"


def test_a_cold_container_after_an_erasure_never_returns_the_erased_subject(
    service: FaceService, faces: dict[str, list[FaceAnalysis]], clock: Clock, s3: Any
) -> None:
    a = sorted(faces)[0]
    enrol(service, PRISON, faces)
    assert found(service, PRISON, faces[a][1])[:1] == [a]  # warm, and a snapshot holding the subject
    assert a in _subjects_in_stored_snapshots(s3)
    receipt = service.erase_subject(PRISON, a)
    assert not [r for r in receipt.remaining if "snapshot" in r["what"]]
    assert _objects(s3) == []  # deleted with every version, no delete marker left behind
    assert service.galleries.get(PRISON, "residents").snapshot is None

    for svc in (service, _service(clock)):  # the warm container and a cold one
        assert a not in found(svc, PRISON, faces[a][1])
        assert a not in found(svc, PRISON, faces[a][2])
    assert a not in _subjects_in_stored_snapshots(s3)  # the new version's snapshot does not hold them


def test_a_cold_container_after_a_withdrawal_never_returns_the_subject(
    service: FaceService, faces: dict[str, list[FaceAnalysis]], clock: Clock, s3: Any
) -> None:
    b = sorted(faces)[1]
    consents = enrol(service, PRISON, faces)
    assert found(service, PRISON, faces[b][1])[:1] == [b]
    service.revoke_consent(PRISON, b, consents[b])
    assert b not in _subjects_in_stored_snapshots(s3)
    assert b not in found(_service(clock), PRISON, faces[b][1])
    assert b not in found(service, PRISON, faces[b][1])


def test_an_old_versions_snapshot_is_never_loaded_even_if_its_record_and_object_survive(
    service: FaceService, faces: dict[str, list[FaceAnalysis]], clock: Clock, s3: Any
) -> None:
    """Were the purge to fail and the old record be written back (a bug, a restore), the row's version
    has moved on, so the old snapshot is not the current one and is never read."""
    a = sorted(faces)[0]
    enrol(service, PRISON, faces)
    found(service, PRISON, faces[a][1])
    old = service.galleries.get(PRISON, "residents").snapshot
    body = s3.get_object(Bucket=BUCKET, Key=snapshot_key(PRISON.tenant_id, "residents", old["version"]))["Body"]
    kept = body.read()
    service.erase_subject(PRISON, a)
    put = s3.put_object(Bucket=BUCKET, Key=snapshot_key(PRISON.tenant_id, "residents", old["version"]), Body=kept)
    GalleryRecord(PRISON.tenant_id, "residents").update(
        actions=[GalleryRecord.snapshot.set({**old, "object_version": put["VersionId"]})]
    )
    cold = _service(clock)
    assert a not in found(cold, PRISON, faces[a][1])
    assert cold.snapshots.loads == 0


def test_an_object_planted_at_the_snapshots_key_is_not_used(
    service: FaceService, faces: dict[str, list[FaceAnalysis]], clock: Clock, s3: Any, reads: list[str]
) -> None:
    """Someone who could write the key (it is not the tenant's uploaders: IAM refuses them) still cannot
    make a search return their template: the recorded object version and digest are what is loaded."""
    names = sorted(faces)
    enrol(service, PRISON, {n: faces[n] for n in names[:2]})
    found(service, PRISON, faces[names[0]][1])
    row = service.galleries.get(PRISON, "residents")
    key = snapshot_key(PRISON.tenant_id, "residents", row.version)
    recorded = Snapshot.from_bytes(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    forged = Snapshot(
        recorded.tenant_id, recorded.gallery_id, recorded.version, recorded.model_version, None,
        tuple(t.__class__(t.template_id, names[2], t.references, faces[names[2]][0].subject_embedding.vector)
              for t in recorded.templates),
    )  # fmt: skip
    s3.put_object(Bucket=BUCKET, Key=key, Body=forged.to_bytes())  # a newer version of the same key

    cold = _service(clock)
    assert names[2] not in found(cold, PRISON, faces[names[2]][1])
    assert cold.snapshots.loads == 1  # the recorded version, not the planted one

    GalleryRecord(PRISON.tenant_id, "residents").update(  # the record points at the planted object too
        actions=[GalleryRecord.snapshot.set({**row.snapshot, "object_version": None})]
    )
    colder = _service(clock)
    assert names[2] not in found(colder, PRISON, faces[names[2]][1])
    assert colder.snapshots.loads == 0
    assert reads[-1] == "residents"


def test_a_missing_or_unreadable_snapshot_falls_back_to_the_table(
    service: FaceService, faces: dict[str, list[FaceAnalysis]], clock: Clock, s3: Any, reads: list[str]
) -> None:
    a = sorted(faces)[0]
    enrol(service, PRISON, faces)
    found(service, PRISON, faces[a][1])
    for version in _objects(s3):
        s3.delete_object(Bucket=BUCKET, Key=version["Key"], VersionId=version["VersionId"])
    cold = _service(clock)
    assert found(cold, PRISON, faces[a][1])[:1] == [a]
    assert cold.snapshots.loads == 0
    assert len(reads) == 2
    assert cold.snapshots.writes == 1  # and it wrote the version's snapshot again


def test_a_snapshot_stops_at_its_earliest_expiry(
    service: FaceService, faces: dict[str, list[FaceAnalysis]], clock: Clock, s3: Any
) -> None:
    names = sorted(faces)
    enrol(service, PRISON, {names[0]: faces[names[0]]}, days=2)
    enrol(service, PRISON, {n: faces[n] for n in names[1:]}, days=200)
    found(service, PRISON, faces[names[0]][1])
    clock.now = START + timedelta(days=3)
    cold = _service(clock)
    assert names[0] not in found(cold, PRISON, faces[names[0]][1])
    assert found(cold, PRISON, faces[names[1]][1])[:1] == [names[1]]
    assert cold.snapshots.loads == 0


def test_a_snapshot_whose_gallery_changed_meanwhile_is_deleted_not_recorded(
    service: FaceService, faces: dict[str, list[FaceAnalysis]], s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An enrolment lands between the search's table read and the snapshot's record: the snapshot (of the
    older version) is not recorded, and its object is deleted."""
    names = sorted(faces)
    enrol(service, PRISON, {names[0]: faces[names[0]]})
    real = Templates.in_gallery
    raced: list[bool] = []

    def then_enrol(self: Templates, ctx: TenantContext, gallery_id: str, **kw: Any) -> Any:
        live = real(self, ctx, gallery_id, **kw)
        if not raced:
            raced.append(True)
            enrol(service, PRISON, {names[1]: faces[names[1]]})
        return live

    monkeypatch.setattr(Templates, "in_gallery", then_enrol)
    found(service, PRISON, faces[names[0]][1])
    assert raced
    assert service.snapshots.writes == 0
    assert service.galleries.get(PRISON, "residents").snapshot is None
    assert _objects(s3) == []


@pytest.mark.dynamo_backends("dynamodb-local")  # moto's transactions are not atomic across threads
def test_concurrent_searches_and_an_erasure_leave_no_snapshot_holding_the_subject(
    service: FaceService, faces: dict[str, list[FaceAnalysis]], clock: Clock, s3: Any
) -> None:
    """Cold searches race an erasure (on DynamoDB Local this is real concurrency): whatever the order, no
    recorded snapshot holds the erased subject, and no later search returns them."""
    a = sorted(faces)[0]
    enrol(service, PRISON, faces)
    errors: list[BaseException] = []

    def search() -> None:
        try:
            for _ in range(3):
                found(_service(clock), PRISON, faces[sorted(faces)[1]][1])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=search) for _ in range(3)]
    for t in threads:
        t.start()
    service.erase_subject(PRISON, a)
    for t in threads:
        t.join()
    assert errors == []
    row = service.galleries.get(PRISON, "residents")
    if row.snapshot is not None:
        assert row.snapshot["version"] == row.version
    for svc in (service, _service(clock)):
        assert a not in found(svc, PRISON, faces[a][1])
    loaded = _service(clock).snapshots.load(PRISON, service.galleries.get(PRISON, "residents"), clock.now)
    assert loaded is None or a not in {t.subject_id for t in loaded.templates}


def test_two_tenants_with_one_gallery_id_never_read_each_others_snapshot(
    service: FaceService, faces: dict[str, list[FaceAnalysis]], clock: Clock, s3: Any
) -> None:
    names = sorted(faces)
    enrol(service, PRISON, {names[0]: faces[names[0]]})
    enrol(service, OTHER, {names[1]: faces[names[1]]})
    found(service, PRISON, faces[names[0]][1])
    found(service, OTHER, faces[names[1]][1])
    cold = _service(clock)
    assert names[0] not in found(cold, OTHER, faces[names[0]][1])
    assert names[1] not in found(cold, PRISON, faces[names[1]][1])
    assert _objects(s3, OTHER)[0]["Key"].startswith(f"tenants/{OTHER.tenant_id}/")


def test_a_snapshot_is_reached_only_inside_its_tenants_scope(
    service: FaceService, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACEGATE_TENANT_SESSIONS", "process-credentials")
    with pytest.raises(PermissionError):
        tenant_client("s3")
    with tenant_scope(OTHER.tenant_id), pytest.raises(PermissionError):
        service.snapshots._s3(PRISON)
