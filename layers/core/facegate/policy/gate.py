"""The policy gate: every workflow's first state and every SDK call's first step.

The rules are Cedar policies (``cedar/``): ``never.cedar`` holds the refusals no approval can unlock
(a Cedar ``forbid`` overrides every ``permit``), ``requests.cedar`` the per-request checks,
``use_cases.cedar`` what each use case permits, with obligations. The gate turns facts about the
request (computed beforehand: approvals, counters, the face count, consent) into the Cedar context,
evaluates, and returns a :class:`Decision` with machine-readable reason codes and human text.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any, Final

import cedarpy
from pydantic import BaseModel, ConfigDict, Field

from facegate.errors import CatalogError, RegistrationError
from facegate.policy.catalog import DEPLOYMENTS, SANDBOX_DEPLOYMENT, SANDBOX_USE_CASE, Catalog, default_catalog
from facegate.policy.vocabulary import TenantVocabulary, validate_registration

POLICY_FILES: Final = ("never.cedar", "requests.cedar", "use_cases.cedar")
SCHEMA_FILE: Final = "schema.cedarschema"
NOT_PERMITTED: Final = "request.not_permitted"
GALLERY_NOT_FOUND: Final = "request.gallery_not_found"
# Sentinel for "not known yet": the first policy check runs before detection.
UNKNOWN: Final = -1
REQUEST_STAGE: Final = "request"
FACES_STAGE: Final = "faces"


def stage_of(face_count: int) -> str:
    """A decision's stage: before detection (the face count unknown), or re-checked on the faces."""
    return FACES_STAGE if face_count != UNKNOWN else REQUEST_STAGE


class Operation(StrEnum):
    APPLY_USE_CASE = "apply_use_case"
    CREATE_GALLERY = "create_gallery"
    ENROL = "enrol"
    VERIFY = "verify"
    SEARCH = "search"
    DELETE_SUBJECT = "delete_subject"
    EXPORT_AUDIT = "export_audit"
    INFER_ATTRIBUTE = "infer_attribute"
    RECORD_CONSENT = "record_consent"
    REVIEW = "review"
    AUTHORISE_TESTER = "authorise_tester"
    """An operator's decision to let a tester use the sandbox (``facegate.sandbox``) until a date."""
    INDEPENDENT_TEST = "independent_test"
    """A tester's labelled set, evaluated in the sandbox (no gallery is read or written)."""


SANDBOX_OPERATIONS: Final = frozenset({Operation.AUTHORISE_TESTER, Operation.INDEPENDENT_TEST})


class _Facts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ApprovalFacts(_Facts):
    use_case: str
    deployment: str
    expires_at: datetime
    status: str = "active"


class TenantFacts(_Facts):
    tenant_id: str
    sector: str
    country: str
    jurisdiction: str
    active: bool = True
    approvals: tuple[ApprovalFacts, ...] = ()


class GalleryFacts(_Facts):
    gallery_id: str
    use_case: str
    size: int = Field(ge=0)


class PolicyRequest(_Facts):
    """Everything the gate needs to decide; stateful facts are computed by the caller first."""

    tenant: TenantFacts
    operation: Operation
    use_case: str
    now: datetime
    deployment: str | None = None
    """Only for ``apply_use_case`` (declared by the applicant); otherwise taken from the approval."""
    source_kind: str = "still"
    gallery: GalleryFacts | None = None
    gallery_found: bool = True
    face_count: int = UNKNOWN
    consent_valid: bool = False
    enrolment_source: str = "consented_capture"
    purpose: str | None = None
    case_reference: str | None = None
    threshold: float | None = None
    top_k: int = 1
    rate_exceeded: bool = False
    volume_exceeded: bool = False
    attributes_requested: tuple[str, ...] = ()
    reviewer_is_requester: bool = False
    """A review by the person who asked for the identification (never one of its reviewers)."""
    enumeration_suspected: bool = False
    """The same probe (content hash, or a near-duplicate embedding) was verified against another subject
    within the window: 1:1 calls adding up to 1:N."""
    distinct_subjects: int = 0
    """Distinct subjects this tenant verified against today, this request's included."""
    tenant_galleries: int = 0
    """The tenant's galleries of this use case (before this request)."""
    tenant_enrolled: int = 0
    """Templates the tenant holds under this use case, across its galleries (before this request)."""
    comparisons_today: int = 0
    """Templates searched today by this tenant under this use case, this search's included."""
    grant_until: datetime | None = None
    """``authorise_tester``: until when the operator would authorise the tester."""
    set_images: int = 0
    """``independent_test``: the labelled set's images and distinct identities (as the archive lists them)."""
    set_identities: int = 0
    set_groups: int = 1
    set_smallest_group_images: int | None = None
    """The fewest images and people in any group of the set (``None``: the totals, one group)."""
    set_smallest_group_identities: int | None = None


@dataclass(frozen=True)
class Reason:
    code: str
    message: str


@dataclass(frozen=True)
class Decision:
    """Allow or deny, why (reason codes + text), under which policy version, and what must follow."""

    allowed: bool
    reasons: tuple[Reason, ...]
    obligations: tuple[str, ...]
    policy_version: str
    operation: str
    use_case: str
    threshold: float | None = None
    max_results: int | None = None
    stage: str = REQUEST_STAGE
    """``request`` (decided before detection: the face count unknown) or ``faces`` (re-checked on the
    faces detected). Only a ``faces`` decision lets a template be stored or a probe be matched."""
    facts: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def codes(self) -> list[str]:
        return [r.code for r in self.reasons]

    def to_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "reasons": [{"code": r.code, "message": r.message} for r in self.reasons],
            "obligations": list(self.obligations),
            "policy_version": self.policy_version,
            "operation": self.operation,
            "use_case": self.use_case,
            "threshold": self.threshold,
            "max_results": self.max_results,
            "stage": self.stage,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        """The inverse of :meth:`to_dict` (a decision carried between workflow states)."""
        return cls(
            allowed=bool(data["allowed"]),
            reasons=tuple(Reason(r["code"], r["message"]) for r in data["reasons"]),
            obligations=tuple(data["obligations"]),
            policy_version=data["policy_version"],
            operation=data["operation"],
            use_case=data["use_case"],
            threshold=data.get("threshold"),
            max_results=data.get("max_results"),
            stage=str(data.get("stage", REQUEST_STAGE)),
        )


@dataclass(frozen=True)
class _PolicyMeta:
    code: str
    reason: str
    obligations: tuple[str, ...]


@dataclass(frozen=True)
class PolicyBundle:
    """The Cedar policies and schema, parsed once, with each policy's annotations."""

    text: str
    policy_set: Any
    schema: Any
    meta: dict[str, _PolicyMeta]
    digest: str

    @classmethod
    def from_texts(cls, policies: Sequence[str], schema_text: str) -> PolicyBundle:
        text = "\n".join(policies)
        try:
            schema = cedarpy.Schema.from_str(schema_text)
            policy_set = cedarpy.PolicySet.from_str(text)
        except ValueError as exc:
            raise CatalogError(f"the Cedar policies or schema do not parse: {exc}") from exc
        result = cedarpy.validate_policies(text, schema)
        if not result.validation_passed:
            raise CatalogError("the Cedar policies fail schema validation: " + "; ".join(str(e) for e in result.errors))
        meta: dict[str, _PolicyMeta] = {}
        for pid, body in json.loads(cedarpy.policies_to_json_str(text))["staticPolicies"].items():
            notes = body.get("annotations", {})
            if "id" not in notes or (body["effect"] == "forbid" and "reason" not in notes):
                raise CatalogError(f"policy {pid} needs an @id (and a @reason if it forbids)")
            obligations = tuple(o for o in notes.get("obligations", "").split(",") if o)
            meta[pid] = _PolicyMeta(notes["id"], notes.get("reason", ""), obligations)
        codes = [m.code for m in meta.values()]
        if len(codes) != len(set(codes)):
            raise CatalogError("two policies share an @id")
        digest = hashlib.sha256((text + schema_text).encode()).hexdigest()[:12]
        return cls(text, policy_set, schema, meta, digest)


@cache
def default_policies() -> PolicyBundle:
    base = resources.files("facegate.policy").joinpath("cedar")
    texts = [base.joinpath(name).read_text() for name in POLICY_FILES]
    return PolicyBundle.from_texts(texts, base.joinpath(SCHEMA_FILE).read_text())


def _milli(value: float) -> int:
    return round(value * 1000)


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def _registration(tenant: TenantFacts) -> TenantVocabulary | None:
    """The tenant's canonical registration, or None for a row that predates validation and holds
    free text: the gate then refuses (``request.registration_invalid``) rather than guess."""
    try:
        return validate_registration(tenant.sector, tenant.country, tenant.jurisdiction)
    except RegistrationError:
        return None


class PolicyGate:
    """Evaluates requests against the catalog and the Cedar policies (both versioned together)."""

    def __init__(self, catalog: Catalog | None = None, policies: PolicyBundle | None = None) -> None:
        self.catalog = catalog or default_catalog()
        self.policies = policies or default_policies()
        self.version = f"{self.catalog.version}+{self.policies.digest}"

    def context(self, req: PolicyRequest) -> dict[str, Any]:
        """The Cedar context for a request: every attribute present, derived only from the facts."""
        use_case = self.catalog.use_cases.get(req.use_case)
        sandbox = self.catalog.sandbox
        current = [a for a in req.tenant.approvals if a.use_case == req.use_case and a.status == "active"]
        live = [a for a in current if a.expires_at > req.now]
        # A tester's authorisation is an approval of the sandbox's own kind (never a catalog use case).
        tester = req.use_case == SANDBOX_USE_CASE and req.operation in SANDBOX_OPERATIONS
        grant_days = (req.grant_until - req.now).total_seconds() / 86400 if req.grant_until is not None else 0.0
        if req.operation is Operation.APPLY_USE_CASE:
            deployment = req.deployment or ""
        elif live:
            deployment = live[0].deployment
        else:
            deployment = current[0].deployment if current else ""
        threshold = req.threshold
        if threshold is None and use_case is not None:
            threshold = use_case.default_threshold
        gallery = req.gallery
        registration = _registration(req.tenant)
        return {
            "use_case": req.use_case,
            "use_case_known": use_case is not None,
            "deployment": deployment,
            "source_kind": req.source_kind,
            "approval_active": bool(live)
            and (
                deployment == SANDBOX_DEPLOYMENT if tester else deployment in (use_case.deployments if use_case else ())
            ),
            "approval_expired": bool(current) and not live,
            # Revoked by an operator, and nothing active or expired left for the use case: its own reason.
            "approval_revoked": not current
            and any(a.use_case == req.use_case and a.status == "revoked" for a in req.tenant.approvals),
            # Deployment names are compared exactly: "Camera_Network" or "bodycam" is not offered.
            "deployment_offered": deployment in DEPLOYMENTS,
            "deployment_allowed": deployment in (use_case.deployments if use_case else ()),
            "registration_valid": registration is not None,
            "moratorium": registration is not None and self.catalog.under_moratorium(registration),
            "gallery_found": req.gallery_found and gallery is not None
            if req.operation in (Operation.ENROL, Operation.VERIFY, Operation.SEARCH)
            else True,
            "gallery_use_case": gallery.use_case if gallery else req.use_case,
            "face_count": req.face_count,
            "max_faces": 1 if req.operation is Operation.ENROL else (use_case.max_faces_in_probe if use_case else 1),
            "consent_valid": req.consent_valid,
            "enrolment_source": req.enrolment_source,
            "purpose_required": bool(use_case and use_case.purpose_required),
            "purpose_given": bool(req.purpose and req.purpose.strip()),
            "case_reference_required": bool(use_case and use_case.case_reference_required),
            "case_reference_given": bool(req.case_reference and req.case_reference.strip()),
            "rate_exceeded": req.rate_exceeded,
            "volume_exceeded": req.volume_exceeded,
            "threshold_milli": _milli(threshold) if threshold is not None else 0,
            "threshold_floor_milli": _milli(use_case.threshold_floor) if use_case else 1000,
            "top_k": req.top_k,
            "max_results": use_case.max_results if use_case else 0,
            "gallery_size": gallery.size if gallery else 0,
            "max_gallery_size": use_case.max_gallery_size if use_case else 0,
            "attributes_requested": list(req.attributes_requested),
            "reviewer_is_requester": req.reviewer_is_requester,
            "enumeration_suspected": req.enumeration_suspected,
            "distinct_subjects_exceeded": bool(
                use_case
                and use_case.verify_distinct_subjects_per_day is not None
                and req.distinct_subjects > use_case.verify_distinct_subjects_per_day
            ),
            "tenant_galleries": req.tenant_galleries,
            "max_tenant_galleries": use_case.max_galleries_per_tenant if use_case else 0,
            "tenant_enrolled": req.tenant_enrolled,
            "max_tenant_enrolled": use_case.max_enrolled_per_tenant if use_case else 0,
            "search_budget_exceeded": bool(
                use_case
                and use_case.search_comparisons_per_day is not None
                and req.comparisons_today > use_case.search_comparisons_per_day
            ),
            "sandbox_use_case": tester,
            "grant_days_exceeded": grant_days > sandbox.max_grant_days,
            "grant_in_past": req.grant_until is not None and grant_days <= 0,
            "set_too_small": min(req.set_images, _or(req.set_smallest_group_images, req.set_images))
            < sandbox.min_images
            or min(req.set_identities, _or(req.set_smallest_group_identities, req.set_identities))
            < sandbox.min_identities,
            "set_too_many_groups": req.set_groups > sandbox.max_groups,
            "set_too_large": req.set_images > sandbox.max_images,
        }

    def decide(self, req: PolicyRequest) -> Decision:
        ctx = self.context(req)
        request = {
            "principal": {"type": "Tenant", "id": req.tenant.tenant_id},
            "action": {"type": "Action", "id": req.operation.value},
            "resource": {"type": "Gallery", "id": req.gallery.gallery_id if req.gallery else "_new"},
            "context": ctx,
        }
        entities: list[dict[str, Any]] = [
            {
                "uid": {"type": "Tenant", "id": req.tenant.tenant_id},
                "attrs": {
                    "sector": req.tenant.sector,
                    "country": req.tenant.country,
                    "jurisdiction": req.tenant.jurisdiction,
                    "active": req.tenant.active,
                },
                "parents": [],
            },
            {
                "uid": {"type": "Gallery", "id": req.gallery.gallery_id if req.gallery else "_new"},
                "attrs": {"use_case": req.gallery.use_case if req.gallery else req.use_case},
                "parents": [],
            },
        ]
        result = cedarpy.is_authorized(request, self.policies.policy_set, entities, self.policies.schema)
        if result.diagnostics.errors:
            raise CatalogError("policy evaluation failed: " + "; ".join(str(e) for e in result.diagnostics.errors))
        allowed = result.decision == cedarpy.Decision.Allow
        stage = stage_of(req.face_count)
        determining = [self.policies.meta[pid] for pid in result.diagnostics.reasons]
        use_case = self.catalog.use_cases.get(req.use_case)
        if allowed:
            obligations = tuple(sorted({o for m in determining for o in m.obligations}))
            return Decision(
                True,
                (),
                obligations,
                self.version,
                req.operation.value,
                req.use_case,
                threshold=ctx["threshold_milli"] / 1000
                if req.operation in (Operation.VERIFY, Operation.SEARCH)
                else None,
                max_results=use_case.max_results if use_case and req.operation is Operation.SEARCH else None,
                stage=stage,
                facts=ctx,
            )
        reasons = tuple(sorted((Reason(m.code, m.reason) for m in determining), key=lambda r: r.code))
        if any(r.code == GALLERY_NOT_FOUND for r in reasons):
            # Without a gallery there is no use case to check against: every other per-request reason
            # would only restate that, so the answer is "not found", the same for a foreign gallery.
            reasons = tuple(r for r in reasons if r.code == GALLERY_NOT_FOUND or r.code.startswith("never."))
        if not reasons:
            reasons = (
                Reason(NOT_PERMITTED, f"'{req.operation.value}' is not permitted for the use case '{req.use_case}'."),
            )
        return Decision(False, reasons, (), self.version, req.operation.value, req.use_case, stage=stage, facts=ctx)
