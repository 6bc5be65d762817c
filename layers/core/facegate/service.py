"""The domain service: every operation goes through the policy gate, then the repositories.

No path reaches a gallery without a decision: each public method computes the stateful facts (the
tenant's approvals, the rate counters, the face count, the consent), asks the gate, records the
decision in the tenant's audit log, and only then reads or writes templates. Handlers, the SDK and the
local cloud call this class; they never call the repositories directly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from facegate.audit import AuditLog
from facegate.embedding import Embedding
from facegate.errors import ConflictError, ConsentError, GalleryNotFoundError, PolicyDeniedError
from facegate.match import Calibration, GalleryTemplate, SearchResult, VerifyResult, search, verify
from facegate.policy import Decision, Operation, PolicyGate, PolicyRequest
from facegate.policy.catalog import UseCase
from facegate.policy.gate import UNKNOWN
from facegate.store.repositories import (
    Approval,
    Consent,
    Consents,
    Counters,
    Galleries,
    Gallery,
    RequestRow,
    Requests,
    StoredTemplate,
    Templates,
    Tenant,
    TenantRegistry,
)
from facegate.tenancy import TenantContext, check_entity_id

if TYPE_CHECKING:  # the vision stack (onnxruntime, OpenCV) stays out of the non-vision functions
    from facegate.vision.pipeline import FaceAnalysis

DEFAULT_RETENTION: Final = timedelta(days=3 * 365)
REQUEST_RETENTION: Final = timedelta(days=90)
HUMAN_REVIEW: Final = "human_review_before_action"
TWO_PERSON: Final = "two_person_confirmation"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class EnrolResult:
    template_id: str
    gallery_id: str
    subject_id: str
    expires_at: datetime
    model_version: str
    decision: Decision


@dataclass(frozen=True)
class MatchOutcome:
    """A verify or search result as the tenant sees it: the decision, the result, what must follow."""

    request_id: str
    decision: Decision
    result: VerifyResult | SearchResult
    review_state: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "decision": self.decision.to_dict(),
            "result": self.result.to_dict(),
            "review_state": self.review_state,
        }


@dataclass(frozen=True)
class ErasureReceipt:
    subject_id: str
    templates_deleted: int
    consents_revoked: int
    audit_seq: int
    at: datetime


@dataclass
class FaceService:
    gate: PolicyGate = field(default_factory=PolicyGate)
    registry: TenantRegistry = field(default_factory=TenantRegistry)
    galleries: Galleries = field(default_factory=Galleries)
    templates: Templates = field(default_factory=Templates)
    consents: Consents = field(default_factory=Consents)
    counters: Counters = field(default_factory=Counters)
    requests: Requests = field(default_factory=Requests)
    audit: AuditLog = field(default_factory=AuditLog)
    calibration: Calibration = field(default_factory=Calibration.packaged)
    clock: Callable[[], datetime] = utc_now

    # --- operators -----------------------------------------------------------------------------------

    def approve_use_case(
        self,
        operator: str,
        tenant_id: str,
        *,
        use_case: str,
        deployment: str,
        expires_at: datetime,
        source_kind: str = "still",
    ) -> Decision:
        """Decide a tenant's application for a use case; on allow, record the approval."""
        tenant = self.registry.get(tenant_id)
        ctx = TenantContext(tenant_id=tenant_id, actor=operator)
        decision = self.gate.decide(
            PolicyRequest(
                tenant=tenant.facts(),
                operation=Operation.APPLY_USE_CASE,
                use_case=use_case,
                deployment=deployment,
                source_kind=source_kind,
                now=self.clock(),
            )
        )
        if not decision.allowed:
            self.audit.append(ctx, "approval.refused", {"decision": decision.to_dict(), "deployment": deployment})
            raise PolicyDeniedError(_denial_text(decision), decision)
        self.registry.add_approval(
            tenant_id,
            Approval(
                use_case=use_case,
                deployment=deployment,
                jurisdiction=tenant.jurisdiction,
                approver=operator,
                approved_at=self.clock(),
                expires_at=expires_at,
            ),
        )
        self.audit.append(
            ctx,
            "approval.granted",
            {"decision": decision.to_dict(), "deployment": deployment, "expires_at": expires_at.isoformat()},
        )
        return decision

    # --- the request path ----------------------------------------------------------------------------

    def _use_case(self, name: str) -> UseCase | None:
        return self.gate.catalog.use_cases.get(name)

    def _limits(
        self, ctx: TenantContext, tenant: Tenant, operation: Operation, use_case: str, now: datetime
    ) -> tuple[bool, bool]:
        """Count this attempt (denied ones too: enumeration is attempts) and compare with the limits:
        the catalog's, or the tenant's quota where an operator set a lower one."""
        spec = self._use_case(use_case)
        limit = spec.rate_limits.get(operation.value) if spec else None
        if limit is None:
            return False, False
        quota = tenant.quotas.get(use_case, {}).get(operation.value, {})
        per_minute = min(limit.per_minute, quota.get("per_minute", limit.per_minute))
        per_day = min(limit.per_day, quota.get("per_day", limit.per_day))
        name = f"{operation.value}#{use_case}"
        minute = self.counters.hit(ctx, name, window=timedelta(minutes=1), now=now)
        day = self.counters.hit(ctx, name, window=timedelta(days=1), now=now)
        return minute > per_minute, day > per_day

    def _decide(
        self, ctx: TenantContext, operation: Operation, use_case: str, *, count_attempt: bool = True, **facts: Any
    ) -> Decision:
        now = self.clock()
        tenant = self.registry.current(ctx)
        rate, volume = self._limits(ctx, tenant, operation, use_case, now) if count_attempt else (False, False)
        decision = self.gate.decide(
            PolicyRequest(
                tenant=tenant.facts(),
                operation=operation,
                use_case=use_case,
                now=now,
                rate_exceeded=rate,
                volume_exceeded=volume,
                **facts,
            )
        )
        if not decision.allowed:
            gallery = facts.get("gallery")
            self.audit.append(
                ctx,
                "request.denied",
                {"decision": decision.to_dict(), "gallery_id": gallery.gallery_id if gallery is not None else None},
            )
            raise PolicyDeniedError(_denial_text(decision), decision)
        return decision

    def _gallery_facts(self, ctx: TenantContext, gallery_id: str) -> tuple[Gallery | None, str]:
        """The caller's gallery (None for a missing or foreign one) and the use case to decide under."""
        gallery = self.galleries.find(ctx, gallery_id)
        return gallery, gallery.use_case if gallery else "unknown"

    def create_gallery(self, ctx: TenantContext, gallery_id: str, *, name: str, use_case: str) -> Gallery:
        decision = self._decide(ctx, Operation.CREATE_GALLERY, use_case)
        spec = self._use_case(use_case)
        if spec is None:  # the gate refuses unknown use cases; this keeps the type checker honest
            raise GalleryNotFoundError("No such use case.")
        gallery = self.galleries.create(ctx, gallery_id, name=name, use_case=use_case, max_size=spec.max_gallery_size)
        self.audit.append(
            ctx, "gallery.created", {"gallery_id": gallery_id, "use_case": use_case, "policy": decision.policy_version}
        )
        return gallery

    def record_consent(
        self,
        ctx: TenantContext,
        *,
        subject_id: str,
        purpose: str,
        evidence: bytes,
        expires_at: datetime,
    ) -> Consent:
        """Record a subject's consent; only the sha256 of the signed evidence is kept."""
        if not evidence:
            raise ConsentError("consent needs its evidence (the signed release)")
        if purpose not in self.gate.catalog.use_cases:
            raise ConsentError(f"'{purpose}' is not a use case a subject can consent to")
        consent = self.consents.record(
            ctx,
            subject_id=subject_id,
            purpose=purpose,
            granted_at=self.clock(),
            expires_at=expires_at,
            evidence_hash=hashlib.sha256(evidence).hexdigest(),
        )
        self.audit.append(
            ctx,
            "consent.recorded",
            {
                "subject_id": subject_id,
                "consent_id": consent.consent_id,
                "purpose": purpose,
                "expires_at": expires_at.isoformat(),
            },
        )
        return consent

    def decide(
        self,
        ctx: TenantContext,
        operation: Operation,
        gallery_id: str,
        *,
        face_count: int = UNKNOWN,
        subject_id: str | None = None,
        consent_id: str | None = None,
        threshold: float | None = None,
        top_k: int = 1,
        purpose: str | None = None,
        case_reference: str | None = None,
        count_attempt: bool = True,
        consent_per_subject: bool = False,
    ) -> Decision:
        """The gate's decision for an enrol, verify or search on one of the caller's galleries.

        The workflows call it twice: first before detection (``face_count`` unknown; the attempt is
        counted against the rate limits), then with the detected face count (not counted again).
        ``consent_per_subject`` is for a bulk enrolment's first check only: the job then enrols each
        subject through :meth:`enrol`, which decides again with that subject's consent and face count.
        Raises :class:`PolicyDeniedError` (audited) on deny.
        """
        gallery, use_case = self._gallery_facts(ctx, gallery_id)
        facts: dict[str, Any] = {}
        if operation is Operation.ENROL and consent_per_subject:
            facts["consent_valid"] = True
        elif operation is Operation.ENROL:
            consent = self.consents.get(ctx, subject_id, consent_id) if subject_id and consent_id else None
            facts["consent_valid"] = consent is not None and consent.valid_for(use_case, self.clock())
        else:
            facts.update(threshold=threshold, top_k=top_k, purpose=purpose, case_reference=case_reference)
        decision = self._decide(
            ctx,
            operation,
            use_case,
            count_attempt=count_attempt,
            gallery=gallery.facts() if gallery else None,
            gallery_found=gallery is not None,
            face_count=face_count,
            **facts,
        )
        if operation is not Operation.ENROL and decision.threshold is None:
            raise PolicyDeniedError("the decision carries no threshold", decision)
        return decision

    def enrol(
        self, ctx: TenantContext, gallery_id: str, *, subject_id: str, consent_id: str, analysis: FaceAnalysis
    ) -> EnrolResult:
        """Store one template of a consenting subject. Exactly one face; consent for the gallery's use case."""
        decision = self.decide(
            ctx, Operation.ENROL, gallery_id, face_count=len(analysis), subject_id=subject_id, consent_id=consent_id
        )
        return self.store_template(
            ctx,
            gallery_id,
            subject_id=subject_id,
            consent_id=consent_id,
            embedding=analysis.embeddings[0],
            decision=decision,
        )

    def store_template(
        self,
        ctx: TenantContext,
        gallery_id: str,
        *,
        subject_id: str,
        consent_id: str,
        embedding: Embedding,
        decision: Decision,
    ) -> EnrolResult:
        """Write the template an allowed enrol decision covers (gallery count capped in the same write)."""
        if not decision.allowed or decision.operation != Operation.ENROL.value:
            raise PolicyDeniedError("storing a template needs an allowed enrol decision", decision)
        gallery = self.galleries.find(ctx, gallery_id)
        consent = self.consents.get(ctx, subject_id, consent_id)
        now = self.clock()
        if gallery is None:
            raise GalleryNotFoundError("No such gallery.")
        if consent is None or not consent.valid_for(gallery.use_case, now):
            raise ConsentError("the consent was withdrawn or expired before the template was stored")
        spec = self._use_case(gallery.use_case)
        retention = timedelta(days=spec.retention_days) if spec else DEFAULT_RETENTION
        expires_at = min(consent.expires_at, now + retention, now + DEFAULT_RETENTION)
        stored = self.templates.add(
            ctx, gallery, subject_id=subject_id, consent_id=consent_id, embedding=embedding, expires_at=expires_at
        )
        self.audit.append(
            ctx,
            "template.enrolled",
            {
                "gallery_id": gallery_id,
                "subject_id": subject_id,
                "template_id": stored.template_id,
                "consent_id": consent_id,
                "model_version": embedding.model_version,
                "expires_at": expires_at.isoformat(),
                "policy": decision.policy_version,
            },
        )
        return EnrolResult(stored.template_id, gallery_id, subject_id, expires_at, embedding.model_version, decision)

    def match(
        self,
        ctx: TenantContext,
        gallery_id: str,
        decision: Decision,
        probe: Embedding,
        *,
        subject_id: str | None = None,
        top_k: int = 1,
    ) -> VerifyResult | SearchResult:
        """Compare a probe with the caller's gallery under an allowed verify or search decision."""
        if not decision.allowed or decision.threshold is None:
            raise PolicyDeniedError("matching needs an allowed verify or search decision", decision)
        if decision.operation == Operation.VERIFY.value:
            if subject_id is None:
                raise GalleryNotFoundError("A verification names the subject to verify against.")
            references = [
                _reference(t)
                for t in self.templates.of_subject(ctx, check_entity_id(subject_id, "subject"))
                if t.gallery_id == gallery_id and t.expires_at > self.clock()
            ]
            if not references:
                raise GalleryNotFoundError("No such subject in this gallery.")
            return verify(probe, references, threshold=decision.threshold)
        if decision.operation != Operation.SEARCH.value:
            raise PolicyDeniedError("matching needs an allowed verify or search decision", decision)
        templates = [_reference(t) for t in self.templates.in_gallery(ctx, gallery_id, now=self.clock())]
        return search(probe, templates, threshold=decision.threshold, top_k=top_k, calibration=self.calibration)

    def _put_once(self, ctx: TenantContext, request_id: str | None, **row: Any) -> tuple[RequestRow, bool]:
        """The request's row, written once: a second write for the same request id gets the stored row
        back (and ``False``), so a retried step neither records nor audits twice."""
        try:
            return self.requests.put(ctx, request_id=request_id, retention=REQUEST_RETENTION, **row), True
        except ConflictError:
            existing = self.requests.get(ctx, request_id) if request_id else None
            if existing is None:
                raise
            return existing, False

    def record_result(
        self,
        ctx: TenantContext,
        gallery_id: str,
        decision: Decision,
        result: VerifyResult | SearchResult,
        *,
        request_id: str | None = None,
    ) -> RequestRow:
        """Store the result with its review state, then audit it. With a ``request_id`` it is idempotent:
        a second call for the same request returns the stored row and writes nothing."""
        review = "not_required"
        if HUMAN_REVIEW in decision.obligations and not _no_match(result):
            review = "pending"
        row, written = self._put_once(
            ctx,
            request_id,
            operation=decision.operation,
            gallery_id=gallery_id,
            status="completed",
            decision=decision.to_dict(),
            result=result.to_dict(),
            review_state=review,
        )
        if not written:
            return row
        self.audit.append(
            ctx,
            f"{decision.operation}.completed",
            {
                "request_id": row.request_id,
                "gallery_id": gallery_id,
                "matched": not _no_match(result),
                "review_state": review,
                "policy": decision.policy_version,
            },
        )
        return row

    def record_outcome(
        self,
        ctx: TenantContext,
        *,
        request_id: str,
        operation: str,
        gallery_id: str | None,
        status: str,
        result: dict[str, Any],
        decision: dict[str, Any] | None = None,
    ) -> RequestRow:
        """Record how a workflow request ended, once per request id (a retry returns the stored row):
        ``completed`` (an enrolment, a bulk job: its own steps audited it), ``refused`` by the gate
        (already audited as ``request.denied``) or ``failed`` (bad input, an error), audited here with
        its reasons."""
        if status not in ("completed", "refused", "failed"):
            raise ValueError(f"a request ends 'completed', 'refused' or 'failed', not {status!r}")
        row, written = self._put_once(
            ctx,
            request_id,
            operation=operation,
            gallery_id=gallery_id,
            status=status,
            decision=decision or {"allowed": False, "reasons": result.get("reasons", [])},
            result=result,
            review_state="not_required",
        )
        if written and status == "failed":
            self.audit.append(
                ctx,
                "request.failed",
                {
                    "request_id": request_id,
                    "operation": operation,
                    "gallery_id": gallery_id,
                    "reasons": result.get("reasons", []),
                },
            )
        return row

    def _outcome(
        self, ctx: TenantContext, gallery_id: str, decision: Decision, result: VerifyResult | SearchResult
    ) -> MatchOutcome:
        row = self.record_result(ctx, gallery_id, decision, result)
        return MatchOutcome(row.request_id, decision, result, row.review_state)

    def verify(
        self,
        ctx: TenantContext,
        gallery_id: str,
        *,
        subject_id: str,
        analysis: FaceAnalysis,
        threshold: float | None = None,
        purpose: str | None = None,
        case_reference: str | None = None,
    ) -> MatchOutcome:
        """1:1: is the person in the probe the enrolled ``subject_id``?"""
        decision = self.decide(
            ctx,
            Operation.VERIFY,
            gallery_id,
            face_count=len(analysis),
            threshold=threshold,
            purpose=purpose,
            case_reference=case_reference,
        )
        result = self.match(ctx, gallery_id, decision, analysis.embeddings[0], subject_id=subject_id)
        return self._outcome(ctx, gallery_id, decision, result)

    def search(
        self,
        ctx: TenantContext,
        gallery_id: str,
        *,
        analysis: FaceAnalysis,
        top_k: int = 1,
        threshold: float | None = None,
        purpose: str | None = None,
        case_reference: str | None = None,
    ) -> MatchOutcome:
        """1:N over one of the caller's galleries: open set, capped, with the expected false candidates."""
        decision = self.decide(
            ctx,
            Operation.SEARCH,
            gallery_id,
            face_count=len(analysis),
            threshold=threshold,
            top_k=top_k,
            purpose=purpose,
            case_reference=case_reference,
        )
        result = self.match(ctx, gallery_id, decision, analysis.embeddings[0], top_k=top_k)
        return self._outcome(ctx, gallery_id, decision, result)

    def review(self, ctx: TenantContext, request_id: str, *, confirm: bool) -> RequestRow:
        """A reviewer confirms or rejects a match; two distinct people when the decision obliges it."""
        row = self.requests.get(ctx, request_id)
        needed = 2 if row is not None and TWO_PERSON in row.decision.get("obligations", []) else 1
        updated = self.requests.review(ctx, request_id, reviewer=ctx.actor, confirm=confirm, needed=needed)
        self.audit.append(
            ctx, "review.recorded", {"request_id": request_id, "confirm": confirm, "state": updated.review_state}
        )
        return updated

    # --- consent withdrawal and erasure --------------------------------------------------------------

    def revoke_consent(self, ctx: TenantContext, subject_id: str, consent_id: str) -> int:
        """Revoking a consent deletes every template enrolled under it; returns how many."""
        if self.consents.get(ctx, subject_id, consent_id) is None:
            raise ConsentError("No such consent.")
        self.consents.revoke(ctx, subject_id, consent_id, self.clock())
        doomed = [t for t in self.templates.of_subject(ctx, subject_id) if t.consent_id == consent_id]
        deleted = self.templates.delete(ctx, doomed)
        self.audit.append(
            ctx, "consent.revoked", {"subject_id": subject_id, "consent_id": consent_id, "templates_deleted": deleted}
        )
        return deleted

    def erase_subject(self, ctx: TenantContext, subject_id: str) -> ErasureReceipt:
        """Delete every template of a subject in the tenant, revoke their consents, write a receipt."""
        # Erasure is tenant-wide and always permitted (even with an expired approval): it is audited.
        self._decide(ctx, Operation.DELETE_SUBJECT, "erasure")
        deleted = self.templates.delete(ctx, self.templates.of_subject(ctx, subject_id))
        now = self.clock()
        revoked = 0
        for consent in self.consents.of_subject(ctx, subject_id):
            if consent.status == "granted":
                self.consents.revoke(ctx, subject_id, consent.consent_id, now)
                revoked += 1
        remaining = len(self.templates.of_subject(ctx, subject_id))
        entry = self.audit.append(
            ctx,
            "subject.erased",
            {
                "subject_id": subject_id,
                "templates_deleted": deleted,
                "consents_revoked": revoked,
                "templates_remaining": remaining,
            },
        )
        return ErasureReceipt(subject_id, deleted, revoked, entry.seq, now)


def _reference(t: StoredTemplate) -> GalleryTemplate:
    return GalleryTemplate(template_id=t.template_id, subject_id=t.subject_id, embedding=t.embedding)


def _no_match(result: VerifyResult | SearchResult) -> bool:
    return not result.matched if isinstance(result, VerifyResult) else result.no_match


def _denial_text(decision: Decision) -> str:
    return "Refused: " + "; ".join(f"{r.code} ({r.message})" for r in decision.reasons)
