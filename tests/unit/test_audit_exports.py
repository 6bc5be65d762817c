"""The audit export to S3, its steps on moto: a repeated start does the work once, an export lost in
flight is answered failed, a failure is on the record, and ids are checked before any key is built."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from facegate.audit import AuditLog
from facegate.audit.anchor import AnchorSigner
from facegate.audit.exports import check_export_id, read_export, request_export, run_export
from facegate.errors import InvalidRequestError, ResourceNotFoundError
from facegate.tenancy import TenantContext

BUCKET = "exports-bucket"
CTX = TenantContext(tenant_id="hmp-export", actor="officer")


@pytest.fixture
def world(dynamo: str) -> tuple[AuditLog, AnchorSigner, Any]:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    kms = boto3.client("kms", region_name="us-east-1")
    key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    log = AuditLog()
    log.append(CTX, "gallery.created", {"gallery_id": "staff"})
    return log, AnchorSigner(kms, key), s3


def _actions(log: AuditLog) -> list[str]:
    return [e.action for e in log.entries(CTX)]


@pytest.mark.dynamo_backends("moto")
def test_a_repeated_start_exports_once(world: tuple[AuditLog, AnchorSigner, Any]) -> None:
    log, signer, s3 = world
    manifest = request_export(log, s3, BUCKET, CTX)
    first = run_export(log, signer, s3, BUCKET, CTX, manifest["export_id"])
    again = run_export(log, signer, s3, BUCKET, CTX, manifest["export_id"])  # Lambda delivers at least once
    assert first["status"] == again["status"] == "completed"
    assert again["sha256"] == first["sha256"]
    assert _actions(log) == ["gallery.created", "audit.export_requested", "audit.export_started", "audit.exported"]
    document = json.loads(s3.get_object(Bucket=BUCKET, Key=manifest["key"])["Body"].read())
    assert [e["action"] for e in document["entries"]] == [
        "gallery.created",
        "audit.export_requested",
        "audit.export_started",
    ]
    assert read_export(s3, BUCKET, CTX, manifest["export_id"])["download_expires_in"] == 900


@pytest.mark.dynamo_backends("moto")
def test_an_export_never_requested_or_of_a_bad_id_is_refused(world: tuple[AuditLog, AnchorSigner, Any]) -> None:
    log, signer, s3 = world
    with pytest.raises(ResourceNotFoundError):
        run_export(log, signer, s3, BUCKET, CTX, "0" * 32)
    with pytest.raises(ResourceNotFoundError):
        read_export(s3, BUCKET, CTX, "0" * 32)
    for bad in ("", "0" * 31, "../" + "0" * 29, "A" * 32, "0" * 32 + "\n"):
        with pytest.raises(InvalidRequestError):
            check_export_id(bad)
    assert _actions(log) == ["gallery.created"]


@pytest.mark.dynamo_backends("moto")
def test_an_export_lost_in_flight_is_answered_failed(world: tuple[AuditLog, AnchorSigner, Any]) -> None:
    """The function crashed or timed out before it recorded anything: after 20 minutes still queued, the
    export is answered failed (audit_export.lost) rather than queued for ever."""
    log, _, s3 = world
    manifest = request_export(log, s3, BUCKET, CTX)
    assert read_export(s3, BUCKET, CTX, manifest["export_id"])["status"] == "queued"
    key = manifest["key"].replace("audit.json", "manifest.json")
    old = {**manifest, "requested_at": (datetime.now(UTC) - timedelta(minutes=21)).isoformat()}
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(old).encode())
    lost = read_export(s3, BUCKET, CTX, manifest["export_id"])
    assert (lost["status"], lost["error"]) == ("failed", {"code": "audit_export.lost"})
    assert "download_url" not in lost


@pytest.mark.dynamo_backends("moto")
def test_a_failure_while_exporting_is_recorded_and_answered(
    world: tuple[AuditLog, AnchorSigner, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    log, signer, s3 = world
    manifest = request_export(log, s3, BUCKET, CTX)

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(s3, "upload_file", refuse)
    failed = run_export(log, signer, s3, BUCKET, CTX, manifest["export_id"])
    assert (failed["status"], failed["error"]) == ("failed", {"code": "storage.failed"})
    assert _actions(log)[-1] == "audit.export_failed"
    assert read_export(s3, BUCKET, CTX, manifest["export_id"])["status"] == "failed"


@pytest.mark.dynamo_backends("moto")
def test_a_second_delivery_of_a_start_finds_the_claim_and_does_nothing(
    world: tuple[AuditLog, AnchorSigner, Any],
) -> None:
    """The concurrent twin: another delivery claimed the run (its audit.export_started entry, written
    once per export) while the manifest still says queued: this one exports nothing."""
    log, signer, s3 = world
    manifest = request_export(log, s3, BUCKET, CTX)
    log.append(CTX, "audit.export_started", {"export_id": manifest["export_id"], "run": "the-other-delivery"},
               once=f"audit-export:{manifest['export_id']}")  # fmt: skip
    assert run_export(log, signer, s3, BUCKET, CTX, manifest["export_id"])["status"] == "queued"
    assert _actions(log).count("audit.export_started") == 1
    assert "audit.exported" not in _actions(log)
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=manifest["key"])  # no document written


@pytest.mark.dynamo_backends("moto")
def test_a_start_arriving_after_the_export_was_answered_lost_is_recorded_not_run(
    world: tuple[AuditLog, AnchorSigner, Any],
) -> None:
    log, signer, s3 = world
    manifest = request_export(log, s3, BUCKET, CTX)
    key = manifest["key"].replace("audit.json", "manifest.json")
    old = {**manifest, "requested_at": (datetime.now(UTC) - timedelta(minutes=25)).isoformat()}
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(old).encode())
    late = run_export(log, signer, s3, BUCKET, CTX, manifest["export_id"])
    assert (late["status"], late["error"]) == ("failed", {"code": "audit_export.lost"})
    assert _actions(log)[-1] == "audit.export_failed"
    assert "audit.export_started" not in _actions(log)


@pytest.mark.dynamo_backends("moto")
def test_a_failure_after_the_upload_is_recorded_too(
    world: tuple[AuditLog, AnchorSigner, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The document is uploaded, then the completed manifest cannot be written: recorded failed, not left queued."""
    log, signer, s3 = world
    manifest = request_export(log, s3, BUCKET, CTX)
    put = s3.put_object

    def put_object(**kwargs: Any) -> Any:
        if b'"completed"' in kwargs["Body"]:
            raise OSError("network down")
        return put(**kwargs)

    monkeypatch.setattr(s3, "put_object", put_object)
    failed = run_export(log, signer, s3, BUCKET, CTX, manifest["export_id"])
    assert failed["status"] == "failed"
    assert _actions(log)[-2:] == ["audit.exported", "audit.export_failed"]
    assert read_export(s3, BUCKET, CTX, manifest["export_id"])["status"] == "failed"


@pytest.mark.dynamo_backends("moto")
def test_the_key_answered_is_built_from_the_caller_never_read_from_the_manifest(
    world: tuple[AuditLog, AnchorSigner, Any],
) -> None:
    """A manifest planted under the caller's prefix that names another tenant's document, or that is not
    a manifest at all: the answer's key (what the API presigns) is the caller's own, or no export."""
    _, _, s3 = world
    export_id = "ab" * 16
    key = f"tenants/{CTX.tenant_id}/audit-exports/{export_id}/manifest.json"
    forged = {"export_id": export_id, "status": "completed", "key": "tenants/victim/audit-exports/x/audit.json"}
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(forged).encode())
    answered = read_export(s3, BUCKET, CTX, export_id)
    assert answered["key"] == f"tenants/{CTX.tenant_id}/audit-exports/{export_id}/audit.json"
    assert "victim" not in answered["download_url"]
    for body in (b"[1, 2]", b"not json", json.dumps({**forged, "export_id": "cd" * 16}).encode()):
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        with pytest.raises(ResourceNotFoundError):
            read_export(s3, BUCKET, CTX, export_id)
