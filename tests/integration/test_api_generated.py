"""Property-based tests of the tenant API, generated from its checked-in OpenAPI document (schemathesis).

GIVEN the local cloud's API with two tenants that each hold a gallery, a consented subject and a
template WHEN schemathesis sends each operation of ``docs/openapi.json`` requests generated from its
schema (valid and invalid bodies, odd path and query values) as one tenant THEN no answer is a 5xx,
every answer conforms to the document (status code, content type, body schema), and no answer ever
carries anything of the other tenant (its id, gallery, subject, consent or request ids).

``FACEGATE_API_EXAMPLES`` sets the examples per operation (default 50; derandomised, so CI is
reproducible: raise it locally to search further).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from _images import chip_png
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from facegate import datasets
from facegate.localcloud.cloud import LocalCloud
from facegate.service import FaceService
from facegate.store.scope import tenant_scope
from facegate.tenancy import TenantContext

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = schemathesis.openapi.from_path(ROOT / "docs" / "openapi.json")
EXAMPLES = int(os.environ.get("FACEGATE_API_EXAMPLES", "50"))
MAIN = TenantContext(tenant_id="st-main", actor="officer-main")
OTHER = TenantContext(tenant_id="st-other", actor="officer-other")
OTHER_GALLERY = "other-secret-gallery"
OTHER_SUBJECT = "other-secret-subject"


def _enrolled(
    cloud: LocalCloud, service: FaceService, ctx: TenantContext, gallery: str, subject: str, photo: bytes
) -> dict[str, str]:
    until = datetime.now(UTC) + timedelta(days=30)
    with tenant_scope(ctx.tenant_id):
        service.create_gallery(ctx, gallery, name=gallery, use_case="access_control")
        consent = service.record_consent(
            ctx, subject_id=subject, purpose="access_control", evidence=b"signed", expires_at=until
        )
    run = cloud.wait_for(cloud.start_enrolment(ctx, gallery, subject, consent.consent_id, photo))
    assert run.status == "SUCCEEDED", run
    return {"consent_id": consent.consent_id, "request_id": str((run.output or {}).get("request_id", ""))}


@pytest.fixture(scope="module")
def api() -> Iterator[dict[str, Any]]:
    with LocalCloud(root=ROOT, stack_name="fgst") as cloud:
        url = cloud.serve_api()
        service = FaceService()
        until = datetime.now(UTC) + timedelta(days=365)
        for ctx in (MAIN, OTHER):
            service.registry.register(
                ctx.tenant_id, name=ctx.tenant_id, sector="private", country="GB", jurisdiction="GB-ENG"
            )
            service.approve_use_case(
                "operator", ctx.tenant_id, use_case="access_control", deployment="closed_facility", expires_at=until
            )
        (first, first_paths), (_second, second_paths) = list(datasets.johns().items())[:2]
        _enrolled(cloud, service, MAIN, "staff", first, chip_png(first_paths[0]))
        other = _enrolled(cloud, service, OTHER, OTHER_GALLERY, OTHER_SUBJECT, chip_png(second_paths[0]))
        secrets = {OTHER.tenant_id, OTHER_GALLERY, OTHER_SUBJECT, other["consent_id"]}
        secrets |= {v for v in (other["request_id"],) if v}
        yield {"url": url, "token": cloud.issue_token(MAIN.tenant_id, MAIN.actor), "secrets": secrets}


@SCHEMA.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
def test_every_operation_answers_within_its_document_and_its_tenant(case: Any, api: dict[str, Any]) -> None:
    response = case.call(base_url=api["url"], headers={"Authorization": api["token"]})
    case.validate_response(
        response,
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
    )
    text = response.text
    leaked = sorted(s for s in api["secrets"] if s in text)
    assert not leaked, f"{case.method} {case.formatted_path} answered with another tenant's {leaked}: {text[:300]}"
    if response.headers.get("Content-Type", "").startswith("application/problem+json"):
        problem = json.loads(text)
        assert problem["type"].startswith("urn:facegate:problem:"), problem
