"""What each use case offers, what is refused whatever the approval, and what a result means, all asked
of the policy gate and the Cedar files themselves rather than restated.

The operations a use case offers are found by asking the gate: for each operation, a request that passes
every per-request check (an active, approved tenant outside any moratorium, one face, consent, purpose,
the default threshold) is decided, and the operation is offered exactly when the gate allows it. A
refusal for any reason other than "not permitted for this use case" means the probe itself is wrong,
and is an error, never a silent omission.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any, Final

import cedarpy

from facegate.errors import AccountabilityError
from facegate.policy import ApprovalFacts, GalleryFacts, Operation, PolicyGate, PolicyRequest, TenantFacts
from facegate.policy.gate import NOT_PERMITTED
from facegate.policy.vocabulary import COUNTRIES, Sector, validate_registration
from facegate.service.records import HUMAN_REVIEW, TWO_PERSON

# The obligation the permits attach so that the workflows delete the image (use_cases.cedar).
DELETE_PROBE: Final = "delete_probe_after_result"
OBLIGATIONS: Final = {
    DELETE_PROBE: "The probe image is deleted once the result is recorded (Finish deletes it after a result, a "
    "refusal or a failure alike).",
    HUMAN_REVIEW: "A match is stored as pending review and is not confirmed until reviewed; a result without a "
    "match needs no review.",
    TWO_PERSON: "Two distinct people confirm a match; the person who asked for the identification is never one "
    "of them (request.self_review).",
}
# The operations a tenant's application performs under an approval (erasure and the audit export are
# always allowed, and inferring attributes never: both are stated from the policies apart).
PROBED: Final = (
    Operation.CREATE_GALLERY,
    Operation.RECORD_CONSENT,
    Operation.ENROL,
    Operation.VERIFY,
    Operation.SEARCH,
    Operation.REVIEW,
)
MATCHING: Final = (Operation.VERIFY, Operation.SEARCH)
_FOREVER: Final = datetime.max.replace(tzinfo=UTC)
_PROBE_TENANT: Final = "accountability-probe"
_PROBE_TEXT: Final = "accountability report"


def _registration(gate: PolicyGate) -> tuple[str, str]:
    """A registration outside every moratorium: a private company in the first such country."""
    for country in sorted(COUNTRIES):
        if not gate.catalog.under_moratorium(validate_registration(Sector.PRIVATE.value, country, country)):
            return Sector.PRIVATE.value, country
    raise AccountabilityError("every country is under a moratorium for private tenants: nothing is offered")


def _probe(gate: PolicyGate, use_case: str, deployment: str, operation: Operation) -> PolicyRequest:
    sector, country = _registration(gate)
    tenant = TenantFacts(
        tenant_id=_PROBE_TENANT,
        sector=sector,
        country=country,
        jurisdiction=country,
        approvals=(ApprovalFacts(use_case=use_case, deployment=deployment, expires_at=_FOREVER),),
    )
    return PolicyRequest(
        tenant=tenant,
        operation=operation,
        use_case=use_case,
        now=datetime.now(UTC),
        gallery=GalleryFacts(gallery_id="probe", use_case=use_case, size=0),
        face_count=1,
        consent_valid=True,
        purpose=_PROBE_TEXT,
        case_reference=_PROBE_TEXT,
    )


def offered_operations(gate: PolicyGate, use_case: str, deployment: str) -> list[dict[str, Any]]:
    """Each operation the gate allows under an approval for ``use_case`` at ``deployment``, with the
    obligations its permit attaches."""
    offered: list[dict[str, Any]] = []
    for operation in PROBED:
        decision = gate.decide(_probe(gate, use_case, deployment, operation))
        if decision.allowed:
            unknown = sorted(set(decision.obligations) - set(OBLIGATIONS))
            if unknown:
                raise AccountabilityError(f"obligations {unknown} have no description for the report")
            offered.append({"operation": operation.value, "obligations": list(decision.obligations)})
        elif decision.codes != [NOT_PERMITTED]:
            raise AccountabilityError(
                f"asking the gate what {use_case} offers at {deployment} was refused for {decision.codes}: "
                "the report's probe no longer passes the per-request checks"
            )
    return offered


def decision_role(operation: str, obligations: list[str]) -> dict[str, Any]:
    """Whether a verify or search result is the decision (final) or supports a person's (support), as
    the service treats it: a match is held for review only under the human-review obligation."""
    if HUMAN_REVIEW in obligations:
        reviewers = "two distinct people" if TWO_PERSON in obligations else "a person"
        return {
            "operation": operation,
            "decision_system": "support",
            "what_the_code_does": f"A match is stored with review state 'pending' and is confirmed only when "
            f"{reviewers} other than the requester confirm it (POST /requests/{{id}}/review); until then it is a "
            "candidate for a human decision, not a decision. A result without a match needs no review.",
        }
    answer = (
        "matched (the score at or above the threshold) or not"
        if operation == Operation.VERIFY.value
        else "the people scoring at or above the threshold, at most the use case's result cap"
    )
    return {
        "operation": operation,
        "decision_system": "final",
        "what_the_code_does": f"The result ({answer}) goes to the tenant's application as it is; facegate holds "
        "no human review for this use case. Where the application's decision has legal or similarly "
        "significant effects, the agency must add meaningful human review (RCW 43.386.030).",
    }


def _annotated(file: str) -> list[dict[str, str]]:
    text = resources.files("facegate.policy").joinpath("cedar", file).read_text(encoding="utf-8")
    policies = json.loads(cedarpy.policies_to_json_str(text))["staticPolicies"]
    ordered = sorted(policies.items(), key=lambda item: int("".join(c for c in item[0] if c.isdigit()) or 0))
    found = []
    for _, body in ordered:
        notes = body.get("annotations", {})
        if body.get("effect") == "forbid":
            found.append({"code": notes["id"], "reason": notes["reason"]})
    return found


@cache
def refused_uses() -> tuple[dict[str, str], ...]:
    """The ``forbid`` policies of ``never.cedar``: refused whatever a tenant is approved for."""
    return tuple(_annotated("never.cedar"))


@cache
def request_checks() -> tuple[dict[str, str], ...]:
    """The per-request ``forbid`` policies of ``requests.cedar``."""
    return tuple(_annotated("requests.cedar"))
