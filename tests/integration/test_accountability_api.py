"""GET /accountability-report through the SDK and the loopback API, on the deployed template: each tenant
gets the report of its own approvals (never another's), as JSON or as one escaped HTML page; a tenant
with no approvals, or a suspended one, still gets its report with nothing in force."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from facegate.localcloud.cloud import LocalCloud
from facegate.policy.catalog import default_catalog
from facegate.sdk import FacegateApiError, FacegateClient
from facegate.service import FaceService

ROOT = Path(__file__).resolve().parents[2]
PRISON = "hmp-report"
PRISON_NAME = '<script>alert("HMP")</script> North'
CLINIC = "clinic-report"
EMPTY = "empty-report"
SUSPENDED = "susp-report"


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud(root=ROOT, stack_name="fgreport") as local:
        local.serve_api()
        service = FaceService()
        until = datetime.now(UTC) + timedelta(days=30)
        service.registry.register(PRISON, name=PRISON_NAME, sector="corrections", country="GB", jurisdiction="GB")
        service.registry.register(CLINIC, name="Clinic", sector="healthcare", country="GB", jurisdiction="GB")
        service.registry.register(EMPTY, name="Empty", sector="private", country="GB", jurisdiction="GB")
        service.registry.register(SUSPENDED, name="Gone", sector="corrections", country="GB", jurisdiction="GB")
        for tenant in (PRISON, SUSPENDED):
            service.approve_use_case(
                "operator", tenant, use_case="access_control", deployment="closed_facility", expires_at=until
            )
        service.approve_use_case(
            "operator", CLINIC, use_case="identity_verification", deployment="online_service", expires_at=until
        )
        service.registry.set_status(SUSPENDED, "suspended")
        yield local


@pytest.fixture(scope="module")
def clients(cloud: LocalCloud) -> dict[str, FacegateClient]:
    """One signed-in officer per tenant (a user is created once per pool)."""
    return {
        tenant: FacegateClient(cloud.serve_api(), cloud.issue_token(tenant, f"officer-{tenant}"))
        for tenant in (PRISON, CLINIC, EMPTY, SUSPENDED)
    }


def test_each_tenant_gets_the_report_of_its_own_approvals_only(clients: dict[str, FacegateClient]) -> None:
    prison = clients[PRISON].accountability_report()
    clinic = clients[CLINIC].accountability_report()
    catalog = default_catalog()

    assert prison["tenant"]["tenant_id"] == PRISON
    assert [u["use_case"] for u in prison["use_cases"]] == ["access_control"]
    (entry,) = prison["use_cases"]
    assert entry["in_force"] is True
    assert entry["retention"]["template_days"] == catalog.use_cases["access_control"].retention_days
    assert entry["human_review"]["two_person"] is True
    assert [a["approver"] for a in entry["approvals"]] == ["operator"]
    assert prison["generated"]["catalog_version"] == catalog.version

    assert [u["use_case"] for u in clinic["use_cases"]] == ["identity_verification"]
    # Tenant isolation: nothing of the other tenant appears anywhere in either report.
    assert CLINIC not in json.dumps(prison)
    assert PRISON not in json.dumps(clinic)
    assert "identity_verification" not in [u["use_case"] for u in prison["use_cases"]]


def test_the_html_report_is_one_escaped_page(clients: dict[str, FacegateClient]) -> None:
    prison = clients[PRISON]
    page = prison.accountability_report("html")
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page
    assert "&lt;script&gt;alert(&quot;HMP&quot;)&lt;/script&gt; North" in page
    assert "access_control" in page
    request = urllib.request.Request(
        f"{prison.endpoint}/accountability-report?format=html", headers={"Authorization": prison.token}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/html")


def test_no_approvals_or_a_suspension_is_still_a_report_with_nothing_in_force(
    clients: dict[str, FacegateClient],
) -> None:
    empty = clients[EMPTY].accountability_report()
    assert empty["use_cases"] == []
    assert empty["tenant"]["use_cases_in_force"] == []
    suspended = clients[SUSPENDED].accountability_report()
    assert suspended["tenant"]["status"] == "suspended"
    assert [u["in_force"] for u in suspended["use_cases"]] == [False]


def test_an_unknown_format_is_a_400_and_no_token_a_401(cloud: LocalCloud, clients: dict[str, FacegateClient]) -> None:
    with pytest.raises(FacegateApiError) as bad:
        clients[PRISON]._call("GET", "/accountability-report?format=pdf")
    assert bad.value.status == 400
    assert bad.value.code == "request.invalid"
    with pytest.raises(FacegateApiError) as anonymous:
        FacegateClient(cloud.serve_api(), "not-a-token").accountability_report()
    assert anonymous.value.status == 401
