"""A tenant's audit log exported to its own S3 prefix, for logs too large for one API answer.

``POST /audit/exports`` records the request (``audit.export_requested``), writes the export's manifest
(``queued``) and starts the ``AuditExport`` function, which verifies the whole log, writes the same
document ``GET /audit`` answers (entries, the verification, the signed anchor, the key's public half:
``facegate_sdk.verify_export`` checks it offline) to ``tenants/<tenant>/audit-exports/<id>/audit.json``,
records ``audit.exported`` (entries, last seq, the document's SHA-256) and marks the manifest
``completed``. ``GET /audit/exports/<id>`` reads the manifest and, once completed, adds a presigned GET
URL of the document. Every object is written and read with the tenant's own session (its role reaches
only ``tenants/<its tenant>/audit-exports/``), so an export id of another tenant is 'no such export'.

A failure is recorded too (``audit.export_failed`` with its code, the manifest ``failed``) and never
retried on its own: the tenant asks again. An export still ``queued`` 20 minutes after it was asked for
(the function crashed or timed out before it could record anything) is answered ``failed``
(``audit_export.lost``). The objects live under ``tenants/``, which the bucket expires after a day.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import uuid
from datetime import UTC, datetime
from typing import Any, Final

from facegate.audit.anchor import AnchorSigner, export_with_anchor
from facegate.audit.log import AuditLog
from facegate.errors import FacegateError, InvalidRequestError, ResourceNotFoundError, StorageError
from facegate.tenancy import TenantContext

PREFIX: Final = "audit-exports"
EXPORT_ID: Final = re.compile(r"^[0-9a-f]{32}$")
URL_SECONDS: Final = 900
"""A completed export's presigned URL lives this long (at most; the tenant session signing it may end sooner)."""


def _keys(tenant_id: str, export_id: str) -> tuple[str, str]:
    base = f"tenants/{tenant_id}/{PREFIX}/{export_id}"
    return f"{base}/manifest.json", f"{base}/audit.json"


LOST_AFTER_S: Final = 20 * 60
"""A queued export older than this is reported failed: the start waits at most 5 minutes in Lambda's
queue (``MaximumEventAgeInSeconds``, no retry) and the function runs at most 14."""


def _older_than(stamp: Any, seconds: float) -> bool:
    try:
        at = datetime.fromisoformat(str(stamp))
    except ValueError:
        return False
    return (datetime.now(UTC) - at).total_seconds() > seconds


def check_export_id(value: str) -> str:
    if not isinstance(value, str) or not EXPORT_ID.fullmatch(value):
        raise InvalidRequestError("an export id is 32 lowercase hex digits (the id POST /audit/exports answered)")
    return value


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _put_manifest(s3: Any, bucket: str, key: str, manifest: dict[str, Any]) -> None:
    s3.put_object(
        Bucket=bucket, Key=key, Body=json.dumps(manifest, sort_keys=True).encode(), ContentType="application/json"
    )


def request_export(log: AuditLog, s3: Any, bucket: str, ctx: TenantContext) -> dict[str, Any]:
    """Record the request and write its ``queued`` manifest; the caller then starts the export."""
    export_id = uuid.uuid4().hex
    manifest_key, document_key = _keys(ctx.tenant_id, export_id)
    log.append(ctx, "audit.export_requested", {"export_id": export_id})
    manifest = {
        "export_id": export_id,
        "status": "queued",
        "requested_by": ctx.actor,
        "requested_at": _now(),
        "bucket": bucket,
        "key": document_key,
    }
    try:
        _put_manifest(s3, bucket, manifest_key, manifest)
    except Exception as exc:  # the request is on the record; what became of it must be too
        log.append(ctx, "audit.export_failed", {"export_id": export_id, "code": "storage.failed"})
        raise StorageError(f"writing the export's manifest failed: {type(exc).__name__}") from exc
    return manifest


def mark_failed(
    log: AuditLog, s3: Any, bucket: str, ctx: TenantContext, manifest: dict[str, Any], code: str
) -> dict[str, Any]:
    """The export could not run or finish: recorded, and the manifest says so."""
    manifest_key, _ = _keys(ctx.tenant_id, manifest["export_id"])
    failed = {**manifest, "status": "failed", "error": {"code": code}, "failed_at": _now()}
    log.append(ctx, "audit.export_failed", {"export_id": manifest["export_id"], "code": code})
    _put_manifest(s3, bucket, manifest_key, failed)
    return failed


def _manifest(s3: Any, bucket: str, key: str, export_id: str) -> dict[str, Any]:
    """The stored manifest, or 'no such export' (a missing one, or anything that is not one)."""
    try:
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ValueError as exc:
        raise ResourceNotFoundError(f"no export {export_id}") from exc
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code in {"NoSuchKey", "404", "AccessDenied"} or code is None:
            raise ResourceNotFoundError(f"no export {export_id}") from exc
        raise StorageError(f"reading export {export_id} failed: {code}") from exc
    if not isinstance(manifest, dict) or manifest.get("export_id") != export_id:
        raise ResourceNotFoundError(f"no export {export_id}")
    return manifest


def run_export(
    log: AuditLog, signer: AnchorSigner, s3: Any, bucket: str, ctx: TenantContext, export_id: str
) -> dict[str, Any]:
    """Verify and export the whole log to the tenant's prefix (the ``AuditExport`` function's work).

    Claimed first with an audit entry written once per export (``audit.export_started``, the log's
    ``once`` key): a second delivery of the same start (Lambda delivers at least once), concurrent or
    later, finds the claim another run holds and does nothing. An export asked for longer ago than
    :data:`LOST_AFTER_S` is not run (it was answered lost) but recorded failed."""
    manifest_key, document_key = _keys(ctx.tenant_id, check_export_id(export_id))
    manifest = _manifest(s3, bucket, manifest_key, export_id)
    if manifest.get("status") != "queued":
        return manifest
    if _older_than(manifest.get("requested_at"), LOST_AFTER_S):
        return mark_failed(log, s3, bucket, ctx, manifest, "audit_export.lost")
    run = uuid.uuid4().hex
    claim = log.append(
        ctx, "audit.export_started", {"export_id": export_id, "run": run}, once=f"audit-export:{export_id}"
    )
    if claim.details.get("run") != run:
        return manifest  # another delivery holds it
    path: str | None = None
    try:
        export = export_with_anchor(log, signer, ctx)
        document = export.to_dict()
        entries: list[Any] = list(document.get("entries") or [])  # type: ignore[arg-type]
        verified = bool(document.get("verified"))
        digest = hashlib.sha256()
        size = 0
        with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as out:
            path = out.name
            for chunk in json.JSONEncoder(sort_keys=True, default=str).iterencode(document):
                data = chunk.encode()
                digest.update(data)
                size += len(data)
                out.write(data)
        del document, export  # the entries' dicts: the upload below needs only the file
        s3.upload_file(path, bucket, document_key, ExtraArgs={"ContentType": "application/json"})
        summary = {
            "export_id": export_id,
            "entries": len(entries),
            "last_seq": entries[-1]["seq"] if entries else 0,
            "verified": verified,
            "sha256": digest.hexdigest(),
        }
        log.append(ctx, "audit.exported", summary)
        completed = {**manifest, **summary, "status": "completed", "bytes": size, "completed_at": _now()}
        _put_manifest(s3, bucket, manifest_key, completed)
        return completed
    except Exception as exc:  # recorded, never raised (an asynchronous invocation that raises is retried)
        code = exc.code if isinstance(exc, FacegateError) else "storage.failed"
        return mark_failed(log, s3, bucket, ctx, manifest, code)
    finally:
        if path is not None and os.path.exists(path):
            os.unlink(path)


def read_export(s3: Any, bucket: str, ctx: TenantContext, export_id: str, *, signer: Any = None) -> dict[str, Any]:
    """The manifest, with a presigned GET URL of the document once it is completed, signed by ``signer``
    (default ``s3``; the API passes a client whose URLs the caller can reach). The document's key is the
    one built from the caller's tenant and the id, never a field of the stored manifest."""
    manifest_key, document_key = _keys(ctx.tenant_id, check_export_id(export_id))
    manifest = _manifest(s3, bucket, manifest_key, export_id)
    manifest["key"] = document_key
    if manifest.get("status") == "queued" and _older_than(manifest.get("requested_at"), LOST_AFTER_S):
        # Queued longer than the queue keeps a start plus the function's limit: it was lost (a crash, a timeout).
        manifest = {**manifest, "status": "failed", "error": {"code": "audit_export.lost"}}
    if manifest.get("status") == "completed":
        manifest["download_url"] = (signer or s3).generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": document_key}, ExpiresIn=URL_SECONDS
        )
        manifest["download_expires_in"] = URL_SECONDS
    return manifest
