"""The accountability report of one tenant, in the spirit of Washington's RCW 43.386.020, generated from
the tenant's approvals, the catalog, the policies, the model card and (when given) an evaluation.

The statute asks an agency, before it uses a face recognition service, for clear statements of: (a) the
service's name, vendor and version, its capabilities and limits, including foreseeable capabilities
outside the proposed use; (b) the data it takes in, how that data is collected and processed, and what it
generates; (c) the purpose and proposed use, the decisions it makes or supports, whether it is a final or
a support decision system, and its benefits; (d) a use and data management policy: deployment, data
minimisation, retention and deletion, rules before each use, security and sharing, training; (e) testing,
including operational testing; (f) the rate of false matches, the impact on protected subpopulations and
how error rates above one percent are addressed; (g) the impacts on civil rights and liberties and the
steps that prevent unauthorised use; (h) the procedures for feedback. ``statute_map`` in the report says
where each is answered. What only the agency can state (its benefits, who deploys and where, training,
its operational tests, feedback channels) is listed under ``agency_statements_required``, not invented.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any, Final

from pynamodb.attributes import TTLAttribute
from pynamodb.models import Model

import facegate
from facegate.accountability.model_card import SERVICE, model_card, pct
from facegate.accountability.uses import (
    DELETE_PROBE,
    MATCHING,
    OBLIGATIONS,
    PROBED,
    decision_role,
    offered_operations,
    refused_uses,
    request_checks,
)
from facegate.embedding import EMBEDDING_DIM, MODEL_VERSION
from facegate.errors import UnknownUseCaseError
from facegate.policy import PolicyGate, UseCase
from facegate.policy.catalog import SANDBOX_USE_CASE
from facegate.service.records import DEFAULT_RETENTION, HUMAN_REVIEW, REQUEST_RETENTION, TWO_PERSON
from facegate.store.models import AuditRecord, ConsentRecord, RequestRecord, TemplateRecord
from facegate.store.repositories import Approval, Tenant

SCHEMA: Final = 1
RELEASE_EVALUATION: Final = "release_evaluation.json"
"""The release gate's summary packaged with the release (``facegate release-gate --summary``)."""
STATUTE: Final = "Washington RCW 43.386.020 (accountability report), in its spirit"
# RCW 43.386.020(2)(f) asks how error rates above one percent are addressed: the statute's own figure.
RCW_ERROR_RATE: Final = 0.01
# The tables whose rates are measurements on identity-labelled pairs (the predicted-group and FairFace
# tables are stratification and an upper bound, reported but not flagged).
FLAGGED_TABLES: Final = ("fmr_by_group", "fmr_cross_group", "fnmr_by_gender")
SELF_REVIEW: Final = "request.self_review"
LIMIT_FIELDS: Final = frozenset(
    {
        "max_results",
        "max_faces_in_probe",
        "max_gallery_size",
        "max_galleries_per_tenant",
        "max_enrolled_per_tenant",
        "search_comparisons_per_day",
        "verify_distinct_subjects_per_day",
        "enumeration_window_s",
        "purpose_required",
        "case_reference_required",
    }
)
RESULT_TABLES: Final = (
    "fmr_by_group",
    "fmr_cross_group",
    "fnmr_by_gender",
    "fnmr_every_pair_by_gender",
    "fmr_by_predicted_group",
    "fmr_upper_bound_by_group",
    "worst_group",
    "worst_group_fmr",
    "overall_fmr",
    "overall_fnmr",
    "fused_templates",
)
AGENCY_STATEMENTS: Final = (
    ("(2)(a)(i)", "The vendor: the organisation that operates this facegate deployment for the agency."),
    ("(2)(c)(iii)", "The intended benefits of the use, and any data or research that demonstrates them."),
    (
        "(2)(d)(i)",
        "How, when, where and by whom the service is used, and whether continuously or only in specific circumstances.",
    ),
    ("(2)(d)(iv)", "Any further rules of the agency that govern each use, and what is done before each use."),
    ("(2)(d)(v)", "Whether and why the agency shares access to the data, and how sharing partners comply."),
    ("(2)(d)(vi)", "The agency's training procedures for the people who operate the service and review its results."),
    ("(2)(e)", "The agency's own testing, including operational testing in its conditions (RCW 43.386.040)."),
    ("(2)(g)", "The agency's assessment of impacts on civil rights and liberties in its own setting."),
    ("(2)(h)", "The channels for feedback from the people affected and from the community, and how it is answered."),
)


def _expires(model: type[Model]) -> bool:
    """Whether a table's rows expire (a DynamoDB TTL attribute on the model)."""
    return any(isinstance(a, TTLAttribute) for a in model.get_attributes().values())


def _kept(model: type[Model], what: str) -> str:
    return f"{what} expire by DynamoDB TTL" if _expires(model) else f"{what} are kept with no expiry"


def _rate_limits(name: str, case: UseCase, quotas: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """The catalog's limits, or the tenant's quota where an operator set a lower one (as the service
    counts them: the lower of the two, per window)."""
    own = quotas.get(name, {})
    limits = {}
    for operation, limit in case.rate_limits.items():
        quota = own.get(operation, {})
        limits[operation] = {
            "per_minute": min(limit.per_minute, int(quota.get("per_minute", limit.per_minute))),
            "per_day": min(limit.per_day, int(quota.get("per_day", limit.per_day))),
        }
    return limits


def _flags(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        {"table": table, **row} for table in FLAGGED_TABLES for row in results[table] if row["rate"] > RCW_ERROR_RATE
    ]


def _retention(name: str, case: UseCase, obligations: set[str]) -> dict[str, Any]:
    probe = (
        "deleted once the result is recorded (obligation delete_probe_after_result); the workflows delete it "
        "after a refusal or a failure too"
        if DELETE_PROBE in obligations
        else "deleted by the workflows once the request ends"
    )
    return {
        "template_days": case.retention_days,
        "template_days_at_most": DEFAULT_RETENTION.days,
        "template_rule": f"A template of {name} expires at the earliest of its consent's expiry, "
        f"{case.retention_days} days after enrolment and {DEFAULT_RETENTION.days} days; an expired template is "
        f"never matched. {_kept(TemplateRecord, 'Templates')}.",
        "result_days": REQUEST_RETENTION.days,
        "results": f"{_kept(RequestRecord, 'Results and their review state')} ({REQUEST_RETENTION.days} days "
        "after the request).",
        "probe_image": probe,
        "erasure": "DELETE /subjects/{id} deletes the subject's templates, revokes its consents and redacts the "
        "results that named it, at any time (erasure is allowed even to a suspended tenant).",
        "audit_log": f"{_kept(AuditRecord, 'Audit entries')}; the log is append-only and hash-chained, and its "
        "entries hold decisions and ids, never images or templates.",
    }


def _use_case_entry(
    gate: PolicyGate,
    card: Mapping[str, Any],
    name: str,
    approvals: Sequence[Approval],
    *,
    tenant_active: bool,
    quotas: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    case = gate.catalog.use_cases[name]
    # The gate's reading of the approvals: the first live one decides the deployment.
    current = [a for a in approvals if a.status == "active"]
    live = [a for a in current if a.expires_at > now]
    deployment = (live or current or list(approvals))[0].deployment
    offered = offered_operations(gate, name, deployment) if deployment in case.deployments else []
    matching = [o for o in offered if o["operation"] in {m.value for m in MATCHING}]
    obligations = {ob for o in matching for ob in o["obligations"]}
    figures = card["use_cases"][name]
    results = {key: figures[key] for key in RESULT_TABLES}
    thresholds = {key: figures[key] for key in ("target_fmr", "threshold_floor", "threshold", "calibrated_threshold")}
    if "expected_false_candidates_in_a_full_gallery" in figures:
        thresholds["expected_false_candidates_in_a_full_gallery"] = figures[
            "expected_false_candidates_in_a_full_gallery"
        ]
    self_review_forbidden = any(c["code"] == SELF_REVIEW for c in request_checks())
    return {
        "use_case": name,
        "purpose": case.description,
        "deployment": deployment,
        "deployments_offered": list(case.deployments),
        "in_force": tenant_active and bool(live) and deployment in case.deployments,
        "approvals": [
            {
                "deployment": a.deployment,
                "jurisdiction": a.jurisdiction,
                "approver": a.approver,
                "approved_at": a.approved_at.isoformat(),
                "expires_at": a.expires_at.isoformat(),
                "status": a.status,
            }
            for a in approvals
        ],
        "operations": offered,
        "not_offered": [op.value for op in PROBED if op.value not in {o["operation"] for o in offered}],
        "decisions": [decision_role(o["operation"], o["obligations"]) for o in matching],
        "human_review": {
            "required": HUMAN_REVIEW in obligations,
            "two_person": TWO_PERSON in obligations,
            "requester_may_review": not self_review_forbidden,
            "rules": [OBLIGATIONS[ob] for ob in (HUMAN_REVIEW, TWO_PERSON) if ob in obligations],
        },
        "retention": _retention(name, case, obligations),
        "limits": {
            "rate_limits": _rate_limits(name, case, quotas),
            **case.model_dump(include=set(LIMIT_FIELDS)),
        },
        "thresholds": thresholds,
        "results": results,
        "rates_above_one_percent": _flags(results),
    }


def _disparities(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for entry in entries:
        for table in ("fnmr_by_gender", "fmr_by_group"):
            rows = entry["results"][table]
            high = max(rows, key=lambda r: r["rate"])
            low = min(rows, key=lambda r: r["rate"])
            found.append(
                {
                    "use_case": entry["use_case"],
                    "table": table,
                    "highest": high["label"],
                    "highest_rate": high["rate"],
                    "lowest": low["label"],
                    "lowest_rate": low["rate"],
                    "ratio": high["rate"] / low["rate"] if low["rate"] > 0 else None,
                }
            )
    return found


def _data(card: Mapping[str, Any]) -> dict[str, Any]:
    capture = card["capture"]
    rule, bars = capture["subject_rule"], capture["quality_bars"]
    return {
        "inputs": [
            {
                "data": "still images",
                "how": f"Sent by the tenant's application through the API or written to its own S3 prefix; "
                f"{', '.join(str(f) for f in capture['image_formats'])} only, at most "
                f"{capture['image_limits']['MAX_BYTES']} bytes and {capture['image_limits']['MAX_PIXELS']} pixels. "
                "Video and streams are refused (never.realtime_stream).",
            },
            {
                "data": "consent records",
                "how": "Subject id, purpose, validity and the sha256 of the tenant's evidence (only the hash is "
                f"kept). {_kept(ConsentRecord, 'Consent records')}; an erasure revokes them.",
            },
            {
                "data": "declared purpose and case reference",
                "how": "Given with each verification or search; required where the use case says so.",
            },
        ],
        "processing": (
            "The image's header is checked before any pixel is decoded; faces are detected (YuNet, score at "
            f"least {capture['detector_score_threshold']}); the subject is the dominant face (ties within "
            f"{rule['SUBJECT_TIE']} of its size go to the most central); faces smaller than "
            f"{rule['BYSTANDER_RATIO']} of the subject's size, or cut by the frame, are bystanders, never embedded "
            f"or counted; the subject's face is refused below {bars['MIN_EYE_DISTANCE_PX']} px between the eyes, "
            f"a sharpness (Laplacian variance) of {bars['MIN_SHARPNESS']}, a mean grey of {bars['MIN_MEAN_GREY']}, "
            f"or with more than {pct(bars['MAX_BLOWN_OUT'])} of its inner pixels above {bars['BLOWN_OUT_LEVEL']}; "
            f"it is aligned, embedded ({MODEL_VERSION}) and compared by cosine similarity with the tenant's own "
            "gallery only."
        ),
        "generated": [
            {
                "data": "face templates",
                "what": f"{EMBEDDING_DIM} numbers per face with the model version, subject, consent id and expiry; "
                "templates are kept, photos are not.",
            },
            {
                "data": "results",
                "what": "Verification: matched or not, the score and the threshold. Search: the candidates above "
                "the threshold with their scores, and the expected number of false candidates.",
            },
            {"data": "reviews", "what": "Who confirmed or rejected a match, and the review state."},
            {"data": "audit log", "what": "Every decision, with its reason codes and the policy version."},
        ],
        "never_generated": "Race, gender, emotion, age or any other attribute inferred from a face "
        "(never.sensitive_attribute_inference).",
    }


def _statute_map() -> list[dict[str, str]]:
    return [
        {"item": "(2)(a)(i)", "requirement": "name, vendor and version", "answered_in": "service"},
        {
            "item": "(2)(a)(ii)",
            "requirement": "capabilities and limitations, foreseeable capabilities outside the proposed use",
            "answered_in": "capabilities_and_limitations",
        },
        {
            "item": "(2)(b)",
            "requirement": "data inputs, collection and processing, data generated",
            "answered_in": "data",
        },
        {
            "item": "(2)(c)",
            "requirement": "purpose, decisions made or supported, final or support decision system",
            "answered_in": "use_cases[].purpose, use_cases[].decisions, use_cases[].human_review",
        },
        {
            "item": "(2)(d)",
            "requirement": "use and data management: deployment, minimisation, retention, security",
            "answered_in": "use_cases[].operations, use_cases[].limits, use_cases[].retention, data_management",
        },
        {"item": "(2)(e)", "requirement": "testing procedures", "answered_in": "testing"},
        {
            "item": "(2)(f)",
            "requirement": "false-match rates, impact on subpopulations, error rates above one percent",
            "answered_in": "use_cases[].results, use_cases[].rates_above_one_percent, "
            "civil_rights_and_liberties.measured_disparities",
        },
        {"item": "(2)(g)", "requirement": "civil rights and liberties", "answered_in": "civil_rights_and_liberties"},
        {"item": "(2)(h)", "requirement": "feedback procedures", "answered_in": "feedback"},
    ]


def accountability_report(
    tenant_id: str,
    approvals: Sequence[Approval],
    *,
    evaluation: Mapping[str, Any] | None = None,
    name: str | None = None,
    status: str = "active",
    sector: str | None = None,
    country: str | None = None,
    jurisdiction: str | None = None,
    quotas: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The report for ``tenant_id`` from its approvals as the store holds them (one entry per use case,
    every approval record of it listed). An approval for a use case the catalog does not hold is an
    :class:`UnknownUseCaseError`: nothing true can be said about it."""
    gate = PolicyGate()
    now = now or datetime.now(UTC)
    # A tester's authorisation is the sandbox's, not a use case: listed apart, never as one in force.
    testing = [a for a in approvals if a.use_case == SANDBOX_USE_CASE]
    approvals = [a for a in approvals if a.use_case != SANDBOX_USE_CASE]
    unknown = sorted({a.use_case for a in approvals} - set(gate.catalog.use_cases))
    if unknown:
        raise UnknownUseCaseError(
            f"approvals of {tenant_id} name use cases {unknown} that catalog {gate.catalog.version} does not hold "
            f"(it holds: {', '.join(gate.catalog.use_cases)})"
        )
    card = model_card()
    grouped: dict[str, list[Approval]] = {}
    for a in approvals:
        grouped.setdefault(a.use_case, []).append(a)
    entries = [
        _use_case_entry(gate, card, use_case, held, tenant_active=status == "active", quotas=quotas or {}, now=now)
        for use_case, held in grouped.items()
    ]
    not_offered = [{"use_case": e["use_case"], "operation": op} for e in entries for op in e["not_offered"]]
    refused = [dict(u) for u in refused_uses()]
    return {
        "title": f"Accountability report: {name or tenant_id}",
        "kind": "facegate.accountability_report",
        "schema": SCHEMA,
        "statute": STATUTE,
        "generated": {"generated_at": now.isoformat(), **card["generated"]},
        "tenant": {
            "tenant_id": tenant_id,
            "name": name,
            "status": status,
            "sector": sector,
            "country": country,
            "jurisdiction": jurisdiction,
            "use_cases_in_force": [e["use_case"] for e in entries if e["in_force"]],
        },
        "service": {
            "name": SERVICE,
            "version": facegate.__version__,
            "policy_version": gate.version,
            "model": card["model"]["name"],
            "model_version": MODEL_VERSION,
            "components": [
                {k: c[k] for k in ("key", "version", "licence", "attribution", "upstream", "sha256")}
                for c in card["model"]["components"]
            ],
        },
        "capabilities_and_limitations": {
            "what_it_does": "Finds the subject's face in a still image, turns it into a template and compares "
            "templates: 1:1 verification against one enrolled subject and, where the use case offers it, 1:N "
            "search of one of the tenant's own galleries. It does nothing else.",
            "known_limits": card["known_limits"],
            "refused_whatever_the_approval": refused,
            "not_offered_under_these_approvals": not_offered,
        },
        "data": _data(card),
        "use_cases": entries,
        "data_management": {
            "minimisation": "Only the subject's face is embedded (bystanders never are); photos are deleted after "
            "the result and templates, not photos, are kept; a crowd photo is refused (request.crowd_probe).",
            "access_and_security": "Every key leads with the tenant id and each request runs on a tenant-scoped "
            "session (IAM dynamodb:LeadingKeys), so one tenant's requests cannot reach another's rows; tables and "
            "the image bucket are encrypted with KMS; only an append-only writer touches the audit log and its "
            "head is signed with a KMS key the tenant can check (GET /audit).",
            "per_request_checks": [dict(c) for c in request_checks()],
        },
        "testing": {
            "calibration": {
                "command": card["generated"]["calibration_command"],
                "date": card["generated"]["calibration_date"],
                "digest": card["generated"]["calibration_digest"],
                "datasets": {
                    key: {k: v for k, v in data.items() if k in ("what", "attribution", "images", "people")}
                    for key, data in card["calibration_data"]["datasets"].items()
                },
                "how_counted": card["calibration_data"]["how_counted"],
            },
            "evaluation": dict(evaluation) if evaluation is not None else None,
            "independent_testing": {
                "what": gate.catalog.sandbox.description,
                "authorisations": [
                    {
                        "approver": a.approver,
                        "approved_at": a.approved_at.isoformat(),
                        "expires_at": a.expires_at.isoformat(),
                        "status": a.status,
                        "live": a.status == "active" and a.expires_at > now,
                    }
                    for a in testing
                ],
            },
        },
        "civil_rights_and_liberties": {
            "refused_uses": refused,
            "moratoria": card["moratoria"],
            "measured_disparities": _disparities(entries),
        },
        "feedback": {
            "facegate_channels": [
                "GET /audit: the tenant's own audit log, verified, with a signed head.",
                "DELETE /subjects/{id}: a subject's erasure, at any time.",
                "GET /accountability-report: this report, regenerated from the current sources.",
                "POST /independent-tests: an operator-authorised tester's labelled set, evaluated apart from "
                "every gallery; the same per-group report comes back (GET /independent-tests/{id}).",
            ],
        },
        "agency_statements_required": [{"item": item, "statement": text} for item, text in AGENCY_STATEMENTS],
        "statute_map": _statute_map(),
        "model_card": card,
    }


@cache
def _release_evaluation() -> str:
    return resources.files("facegate.accountability").joinpath(RELEASE_EVALUATION).read_text(encoding="utf-8")


def release_evaluation() -> dict[str, Any]:
    """The release gate's per-group results for this release, as packaged with it
    (``facegate release-gate --summary``; a test keeps it of the running model and thresholds)."""
    data: dict[str, Any] = json.loads(_release_evaluation())
    return data


def tenant_report(
    tenant: Tenant, *, evaluation: Mapping[str, Any] | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """The report of a tenant as the registry holds it (its approvals, quotas and status), with the
    release gate's per-group evaluation of this release unless another ``evaluation`` is given."""
    return accountability_report(
        tenant.tenant_id,
        tenant.approvals,
        evaluation=evaluation if evaluation is not None else release_evaluation(),
        name=tenant.name,
        status=tenant.status,
        sector=tenant.sector,
        country=tenant.country,
        jurisdiction=tenant.jurisdiction,
        quotas=tenant.quotas,
        now=now,
    )


__all__ = ["accountability_report", "release_evaluation", "tenant_report"]
