"""AuditExport: a tenant's whole audit log, verified and signed, written to its own S3 prefix.

Started asynchronously by ``POST /audit/exports`` (event ``{tenant_id, export_id, actor}``, set by the
API from the verified identity). A thin handler around :func:`facegate.audit.exports.run_export`:
everything it reads and writes goes through the tenant's own session (tables and
``tenants/<tenant>/audit-exports/``), taken fresh enough to outlast the run; the anchor is signed under
this function's own role. It never raises: a failure is recorded where it can be, and logged (Lambda
would otherwise retry an asynchronous start; the template allows it no retry either).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from aws_lambda_powertools import Logger

from facegate.audit.anchor import AnchorSigner
from facegate.audit.exports import run_export
from facegate.errors import FacegateError
from facegate.store.scope import tenant_client, tenant_scope
from facegate.tenancy import TenantContext
from facegate.workflow import steps

logger = Logger()
runtime = steps.Runtime.from_env()
signer = AnchorSigner.for_key(os.environ["FACEGATE_AUDIT_SIGNING_KEY_ID"], region=runtime.settings.region)
BUCKET = os.environ["FACEGATE_BUCKET"]


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    export_id = str(event.get("export_id"))
    logger.append_keys(tenant=event.get("tenant_id"), operation="audit_export", export_id=export_id)
    try:
        ctx = TenantContext(tenant_id=str(event.get("tenant_id")), actor=str(event.get("actor") or "audit-export"))
        remaining = timedelta(milliseconds=context.get_remaining_time_in_millis()) + timedelta(seconds=30)
        with tenant_scope(ctx.tenant_id, valid_for=remaining):
            manifest = run_export(runtime.service.audit, signer, tenant_client("s3"), BUCKET, ctx, export_id)
    except Exception as exc:  # not even the failure could be recorded: the export is answered lost later
        code = exc.code if isinstance(exc, FacegateError) else type(exc).__name__
        logger.exception("audit export failed, unrecorded", extra={"reason_codes": [code]})
        return {"export_id": export_id, "status": "failed", "error": {"code": code}}
    level = logger.info if manifest.get("status") == "completed" else logger.warning
    level("audit export " + str(manifest.get("status")), extra={"entries": manifest.get("entries")})
    keys = ("export_id", "status", "entries", "last_seq", "sha256", "error")
    return {k: manifest.get(k) for k in keys if k in manifest}
