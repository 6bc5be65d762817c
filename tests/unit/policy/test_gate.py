"""Per-request checks, the catalog's validation and the Cedar bundle's own checks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from importlib import resources

import pytest

from facegate.errors import CatalogError
from facegate.policy import ApprovalFacts, Catalog, GalleryFacts, Operation, PolicyGate, PolicyRequest, TenantFacts
from facegate.policy.gate import POLICY_FILES, SCHEMA_FILE, UNKNOWN, PolicyBundle, default_policies

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
FAMILY = TenantFacts(
    tenant_id="family-album",
    sector="individual",
    country="FR",
    jurisdiction="FR",
    approvals=(
        ApprovalFacts(use_case="photo_organization", deployment="personal", expires_at=NOW + timedelta(days=30)),
    ),
)
ALBUM = GalleryFacts(gallery_id="family", use_case="photo_organization", size=40)


@pytest.fixture(scope="module")
def gate() -> PolicyGate:
    return PolicyGate()


def _req(**overrides: object) -> PolicyRequest:
    fields: dict[str, object] = {
        "tenant": FAMILY,
        "operation": Operation.SEARCH,
        "use_case": "photo_organization",
        "now": NOW,
        "gallery": ALBUM,
        "face_count": 1,
        "top_k": 5,
    }
    fields.update(overrides)
    return PolicyRequest.model_validate(fields)


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"threshold": 0.30}, "request.threshold_below_floor"),
        ({"top_k": 11}, "request.result_cap"),
        ({"face_count": 0}, "request.no_face"),
        ({"operation": Operation.ENROL, "consent_valid": True, "face_count": 2}, "request.enrolment_needs_one_face"),
        (
            {"operation": Operation.ENROL, "consent_valid": True, "gallery": ALBUM.model_copy(update={"size": 500})},
            "request.gallery_full",
        ),
        ({"tenant": FAMILY.model_copy(update={"active": False})}, "request.tenant_inactive"),
        ({"gallery": ALBUM.model_copy(update={"use_case": "access_control"})}, "request.gallery_use_case_mismatch"),
        ({"use_case": "mass_surveillance"}, "request.unknown_use_case"),
        ({"source_kind": "video"}, "never.realtime_stream"),
    ],
)
def test_each_request_check_has_its_reason_code(gate: PolicyGate, overrides: dict[str, object], code: str) -> None:
    decision = gate.decide(_req(**overrides))
    assert not decision.allowed
    assert code in decision.codes
    assert decision.to_dict()["reasons"][0]["message"]


def test_an_allowed_search_passes_every_check(gate: PolicyGate) -> None:
    decision = gate.decide(_req())
    assert decision.allowed, decision.codes
    assert decision.threshold == gate.catalog.use_cases["photo_organization"].default_threshold


def test_the_first_check_runs_before_detection_with_an_unknown_face_count(gate: PolicyGate) -> None:
    assert gate.decide(_req(face_count=UNKNOWN)).allowed


def test_a_threshold_above_the_floor_is_kept(gate: PolicyGate) -> None:
    assert gate.decide(_req(threshold=0.61)).threshold == pytest.approx(0.61)


def test_purpose_is_required_where_the_use_case_says_so(gate: PolicyGate) -> None:
    prison = TenantFacts(
        tenant_id="prison",
        sector="corrections",
        country="US",
        jurisdiction="US-WA",
        approvals=(
            ApprovalFacts(use_case="access_control", deployment="closed_facility", expires_at=NOW + timedelta(1)),
        ),
    )
    req = _req(
        tenant=prison,
        use_case="access_control",
        gallery=GalleryFacts(gallery_id="g", use_case="access_control", size=5),
    )
    denied = gate.decide(req.model_copy(update={"top_k": 3}))
    assert denied.codes == ["request.purpose_missing"]
    assert gate.decide(req.model_copy(update={"top_k": 3, "purpose": "gate B entry"})).allowed


def test_an_approval_for_one_deployment_does_not_cover_another(gate: PolicyGate) -> None:
    tenant = FAMILY.model_copy(
        update={
            "approvals": (
                ApprovalFacts(
                    use_case="photo_organization", deployment="online_service", expires_at=NOW + timedelta(1)
                ),
            )
        }
    )
    decision = gate.decide(_req(tenant=tenant))
    assert not decision.allowed
    assert "request.not_approved" in decision.codes


def test_suspended_approvals_do_not_count(gate: PolicyGate) -> None:
    tenant = FAMILY.model_copy(
        update={
            "approvals": (
                ApprovalFacts(
                    use_case="photo_organization",
                    deployment="personal",
                    expires_at=NOW + timedelta(1),
                    status="suspended",
                ),
            )
        }
    )
    assert gate.decide(_req(tenant=tenant)).codes == ["request.not_approved"]


def test_every_catalog_use_case_has_a_permit_and_every_permit_a_use_case() -> None:
    catalog = PolicyGate().catalog
    text = default_policies().text
    for name in catalog.use_cases:
        assert f'context.use_case == "{name}"' in text, name
    for pid, meta in default_policies().meta.items():
        assert meta.code, pid


def _catalog_dict() -> dict[str, object]:
    data: dict[str, object] = json.loads(resources.files("facegate.policy").joinpath("catalog.json").read_text())
    return data


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("use_cases", "access_control", "threshold_floor"), 0.30, "greater than or equal"),
        (("use_cases", "access_control", "default_threshold"), 0.40, "below threshold_floor"),
        (("use_cases", "access_control", "deployments"), ["public_space"], "not offered"),
        (("use_cases", "access_control", "retention_days"), 2000, "less than or equal"),
        (("version",), "latest", "pattern"),
    ],
)
def test_the_catalog_refuses_unsafe_or_malformed_values(path: tuple[str, ...], value: object, message: str) -> None:
    data = _catalog_dict()
    node: dict[str, object] = data
    for key in path[:-1]:
        node = node[key]  # type: ignore[assignment]
    node[path[-1]] = value
    with pytest.raises(CatalogError, match=message):
        Catalog.from_json(json.dumps(data))


def _bundle_texts() -> tuple[list[str], str]:
    base = resources.files("facegate.policy").joinpath("cedar")
    return [base.joinpath(n).read_text() for n in POLICY_FILES], base.joinpath(SCHEMA_FILE).read_text()


def test_the_policies_validate_against_the_schema() -> None:
    texts, schema = _bundle_texts()
    bundle = PolicyBundle.from_texts(texts, schema)
    assert len(bundle.meta) >= 20


def test_a_misspelt_attribute_fails_schema_validation() -> None:
    texts, schema = _bundle_texts()
    bad = '@id("x")\n@reason("y")\nforbid (principal, action, resource) when { context.face_cuont > 1 };\n'
    with pytest.raises(CatalogError, match="schema validation"):
        PolicyBundle.from_texts([*texts, bad], schema)


def test_a_forbid_without_reason_or_a_duplicate_id_is_refused() -> None:
    texts, schema = _bundle_texts()
    with pytest.raises(CatalogError, match="@id"):
        PolicyBundle.from_texts([*texts, "forbid (principal, action, resource);"], schema)
    with pytest.raises(CatalogError, match="share an @id"):
        PolicyBundle.from_texts(
            [*texts, '@id("never.realtime_stream")\n@reason("r")\nforbid (principal, action, resource);'], schema
        )


def test_the_policy_version_changes_with_the_policies() -> None:
    texts, schema = _bundle_texts()
    changed = PolicyBundle.from_texts(
        [*texts, '@id("extra")\n@reason("r")\nforbid (principal, action, resource) when { false };'], schema
    )
    assert changed.digest != default_policies().digest
