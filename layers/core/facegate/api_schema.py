"""The tenant API's OpenAPI document, generated from the code: the routes as Powertools' resolver has
them (``facegate.api.TenantApi``), each body's schema from its pydantic model, every error an RFC 7807
problem document. ``docs/openapi.json`` is this document checked in; CI fails when it is stale:

    python -m facegate.api_schema --write     # regenerate docs/openapi.json
    python -m facegate.api_schema --check     # exit 1 if docs/openapi.json differs (scripts/static-checks)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Final

from facegate import __version__

DOCUMENT: Final = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"
PROBLEM_SCHEMA: Final = {
    "type": "object",
    "description": "RFC 7807 problem document (application/problem+json).",
    "required": ["type", "title", "detail", "code", "reason_codes"],
    "properties": {
        "type": {"type": "string", "description": "urn:facegate:problem:<code>"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string", "description": "the machine-readable reason code"},
        "reason_codes": {"type": "array", "items": {"type": "string"}},
        "decision": {"type": "object", "description": "a refusal's decision: reasons, policy version"},
        "request_id": {"type": "string"},
        "message": {"type": "string", "description": "detail again, for older clients"},
    },
}


def _bodies() -> dict[tuple[str, str], Any]:
    from facegate import api

    return {
        ("post", "/galleries"): api.GalleryBody,
        ("post", "/consents"): api.ConsentBody,
        ("post", "/probes"): api.ProbeBody,
        ("post", "/verify"): api.CallBody,
        ("post", "/search"): api.CallBody,
        ("post", "/enrolments"): api.EnrolBody,
        ("post", "/bulk-enrolments"): api.BulkBody,
        ("post", "/uploads"): api.UploadsBody,
        ("post", "/requests/{request_id}/review"): api.ReviewBody,
        ("post", "/independent-tests"): api.IndependentTestBody,
    }


def _resolver() -> Any:
    """The resolver with every route registered, built without reaching AWS (no call is made)."""
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    from facegate.api import ApiSettings, TenantApi

    arn = "arn:aws:states:us-east-1:123456789012:stateMachine:schema"
    settings = ApiSettings(
        bucket="schema-bucket",
        enrol_state_machine_arn=arn,
        bulk_enrol_state_machine_arn=arn,
        recognize_state_machine_arn=arn,
        independent_test_state_machine_arn=arn,
        audit_signing_key_id="schema-key",
        upload_proof_key_id="schema-key",
    )
    return TenantApi(None, None, None, settings).app  # type: ignore[arg-type]


ACCEPTED: dict[tuple[str, str], tuple[str, bool]] = {
    ("post", "/probes"): ("submitted: the upload's event starts Recognize", False),
    ("post", "/enrolments"): ("submitted to Enrol", False),
    ("post", "/bulk-enrolments"): ("submitted to the bulk job (the manifest is valid)", False),
    ("post", "/independent-tests"): ("submitted to the sandbox", False),
    ("post", "/verify"): ("still running past the API's wait: read the outcome by id", True),
    ("post", "/search"): ("still running past the API's wait: read the outcome by id", True),
    ("post", "/audit/exports"): ("recorded and started: read it by export_id (GET /audit/exports/{id})", False),
}
"""Operations that answer 202 (method, path → description, whether they may also answer 200)."""
SUBMITTED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "request_id": {"type": "string"},
        "test_id": {"type": "string"},
        "status": {"type": "string", "enum": ["submitted", "running"]},
        "duplicate": {"type": "boolean"},
        "set": {"type": "object"},
    },
    "required": ["status"],
}


AUDIT_EXPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "export_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        "status": {"type": "string", "enum": ["queued", "completed", "failed"]},
        "requested_by": {"type": "string"},
        "requested_at": {"type": "string"},
        "bucket": {"type": "string"},
        "key": {"type": "string"},
        "entries": {"type": "integer"},
        "last_seq": {"type": "integer"},
        "verified": {"type": "boolean"},
        "sha256": {"type": "string"},
        "bytes": {"type": "integer"},
        "completed_at": {"type": "string"},
        "download_url": {"type": "string"},
        "download_expires_in": {"type": "integer"},
        "error": {"type": "object", "properties": {"code": {"type": "string"}}},
    },
    "required": ["export_id", "status", "key"],
}
"""An audit export to S3 (facegate/audit/exports.py): its manifest."""
EXPORT_ROUTES: dict[tuple[str, str], str] = {
    ("post", "/audit/exports"): "202",
    ("get", "/audit/exports/{export_id}"): "200",
}


def openapi_document() -> dict[str, Any]:
    app = _resolver()
    document: dict[str, Any] = json.loads(
        app.get_openapi_json_schema(
            title="facegate tenant API",
            version=__version__,
            description=(
                "Every route takes the tenant from the custom:tenant_id claim of a Cognito access token "
                "with the facegate/api scope (Authorization header): a person's (SRP sign-in) or a "
                "machine's (client credentials). Every error is an RFC 7807 problem document."
            ),
        )
    )
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    components["Submitted"] = SUBMITTED_SCHEMA
    components["AuditExport"] = AUDIT_EXPORT_SCHEMA
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    bodies = _bodies()
    for path, methods in document.get("paths", {}).items():
        for method, operation in methods.items():
            model = bodies.get((method, path))
            if model is not None:
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, definition in schema.pop("$defs", {}).items():
                    components[name] = definition
                components[model.__name__] = schema
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
                }
            responses = operation.setdefault("responses", {})
            accepted = ACCEPTED.get((method, path))
            if accepted is not None:  # submitted (or still running): the outcome is read by id
                if not accepted[1]:
                    responses.pop("200", None)
                responses["202"] = {
                    "description": accepted[0],
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Submitted"}}},
                }
            if (method, path) in EXPORT_ROUTES:
                responses[EXPORT_ROUTES[method, path]] = {
                    "description": "the export's manifest",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AuditExport"}}},
                }
                if method == "post":
                    responses["503"] = {
                        "description": "the export could not be started (recorded as failed): ask again",
                        "content": {"application/problem+json": {"schema": problem_ref}},
                    }
            responses.pop("422", None)  # Powertools' validation answer; this API answers 400 problems
            for status, what in (("400", "bad input"), ("401", "no valid token"), ("403", "refused"),
                                 ("404", "not found"), ("409", "conflict"), ("429", "throttled"),
                                 ("500", "service error")):  # fmt: skip
                responses.setdefault(
                    status, {"description": what, "content": {"application/problem+json": {"schema": problem_ref}}}
                )
            operation["security"] = [{"TenantCognito": []}]
    document["components"]["securitySchemes"] = {
        "TenantCognito": {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "A Cognito access token of the stack's user pool carrying the facegate/api scope and "
            "custom:tenant_id (API Gateway's Cognito authorizer; ID tokens are refused).",
        }
    }
    return document


def rendered() -> str:
    return json.dumps(openapi_document(), indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="regenerate docs/openapi.json")
    action.add_argument("--check", action="store_true", help="exit 1 if docs/openapi.json is stale")
    args = parser.parse_args(argv)
    text = rendered()
    if args.write:
        DOCUMENT.write_text(text, encoding="utf-8")
        print(f"wrote {DOCUMENT}")
        return 0
    if not DOCUMENT.is_file() or DOCUMENT.read_text(encoding="utf-8") != text:
        print(f"{DOCUMENT} is stale: run python -m facegate.api_schema --write", file=sys.stderr)
        return 1
    print(f"ok {DOCUMENT.name} matches the code")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
