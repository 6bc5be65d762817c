"""AuditExport: a tenant's whole audit log, verified and signed, written to its own S3 prefix.

Started asynchronously by ``POST /audit/exports`` (event ``{tenant_id, export_id, actor}``, set by the
API from the verified identity). A thin handler around :func:`facegate.audit.exports.run_export`:
everything it reads and writes goes through the tenant's own session (tables and
``tenants/<tenant>/audit-exports/``); the anchor is signed under this function's own role. A failure is
recorded and answered, never raised (an asynchronous invocation that raises is retried by Lambda; the
tenant asks again instead).
"""

from __future__ import annotations

import os
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
    ctx = TenantContext(tenant_id=str(event.get("tenant_id")), actor=str(event.get("actor") or "audit-export"))
    export_id = str(event.get("export_id"))
    logger.append_keys(tenant=ctx.tenant_id, operation="audit_export", export_id=export_id)
    try:
        with tenant_scope(ctx.tenant_id):
            manifest = run_export(runtime.service.audit, signer, tenant_client("s3"), BUCKET, ctx, export_id)
    except FacegateError as exc:
        logger.error("audit export failed", extra={"reason_codes": [exc.code]})
        return {"export_id": export_id, "status": "failed", "error": {"code": exc.code}}
    level = logger.info if manifest.get("status") == "completed" else logger.warning
    level("audit export " + str(manifest.get("status")), extra={"entries": manifest.get("entries")})
    return {
        k: manifest.get(k) for k in ("export_id", "status", "entries", "last_seq", "sha256", "error") if k in manifest
    }
