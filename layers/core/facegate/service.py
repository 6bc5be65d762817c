"""The domain service: every operation goes through the policy gate, then the repositories.

No path reaches a gallery without a decision: each public method computes the stateful facts (the
tenant's approvals, the rate counters, the face count, the consent), asks the gate, records the
decision in the tenant's audit log, and only then reads or writes templates. Handlers, the SDK and the
local cloud call this class; they never call the repositories directly.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, TypeVar

from facegate.audit import JSON, AuditLog
from facegate.embedding import Embedding
from facegate.errors import (
    ConflictError,
    ConsentError,
    GalleryNotFoundError,
    InvalidRequestError,
    PolicyDeniedError,
    StorageError,
    WriteConditionError,
)
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
from facegate.store.writes import Write
from facegate.tenancy import TenantContext, check_entity_id

if TYPE_CHECKING:  # the vision stack (onnxruntime, OpenCV) stays out of the non-vision functions
    from facegate.vision.pipeline import FaceAnalysis

DEFAULT_RETENTION: Final = timedelta(days=3 * 365)
REQUEST_RETENTION: Final = timedelta(days=90)
HUMAN_REVIEW: Final = "human_review_before_action"
TWO_PERSON: Final = "two_person_confirmation"
REVIEW_ATTEMPTS: Final = 5
ERASURE_ROUNDS: Final = 3
"""Rounds of read, delete and re-read: a round fails only if something vanished meanwhile."""
TEMPLATES_PER_TRANSACTION: Final = 45
"""Two writes per template (the delete and its gallery's count, at worst one gallery each)."""
MAX_DECLARED: Final = 256
REQUEST: Final = "request"
FACES: Final = "faces"
"""The two stages of a decision: before detection, and re-checked on the faces detected."""


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
    """What an erasure deleted, what remains and where (the tenant keeps it as its proof)."""

    subject_id: str
    templates_deleted: int
    consents_revoked: int
    audit_seq: int
    at: datetime
    template_ids: tuple[str, ...] = ()
    consent_ids: tuple[str, ...] = ()
    request_ids: tuple[str, ...] = ()
    """Request rows whose result named the subject, now redacted (id, scores and template ids)."""
    templates_remaining: int = 0
    remaining: tuple[dict[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject_id": self.subject_id,
            "templates_deleted": self.templates_deleted,
            "consents_revoked": self.consents_revoked,
            "requests_redacted": len(self.request_ids),
            "template_ids": list(self.template_ids),
            "consent_ids": list(self.consent_ids),
            "request_ids": list(self.request_ids),
            "templates_remaining": self.templates_remaining,
            "remaining": [dict(r) for r in self.remaining],
            "audit_seq": self.audit_seq,
            "at": self.at.isoformat(),
        }


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
        approval = Approval(
            use_case=use_case,
            deployment=deployment,
            jurisdiction=tenant.jurisdiction,
            approver=operator,
            approved_at=self.clock(),
            expires_at=expires_at,
        )
        self.audit.append(
            ctx,
            "approval.granted",
            {"decision": decision.to_dict(), "deployment": deployment, "expires_at": expires_at.isoformat()},
            writes=[self.registry.approval_write(tenant_id, approval)],
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
        self,
        ctx: TenantContext,
        operation: Operation,
        use_case: str,
        *,
        count_attempt: bool = True,
        **facts: Any,
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
        gallery, write = self.galleries.create_write(
            ctx, gallery_id, name=name, use_case=use_case, max_size=spec.max_gallery_size
        )
        details = {"gallery_id": gallery_id, "use_case": use_case, "policy": decision.policy_version}
        try:
            self.audit.append(ctx, "gallery.created", details, writes=[write])
        except WriteConditionError as exc:
            raise ConflictError(f"a gallery {gallery_id!r} exists already") from exc
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
        consent, write = self.consents.record_write(
            ctx,
            subject_id=subject_id,
            purpose=purpose,
            granted_at=self.clock(),
            expires_at=expires_at,
            evidence_hash=hashlib.sha256(evidence).hexdigest(),
        )
        details = {
            "subject_id": subject_id,
            "consent_id": consent.consent_id,
            "purpose": purpose,
            "expires_at": expires_at.isoformat(),
        }
        self.audit.append(ctx, "consent.recorded", details, writes=[write])
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
        self,
        ctx: TenantContext,
        gallery_id: str,
        *,
        subject_id: str,
        consent_id: str,
        analysis: FaceAnalysis,
        request_id: str | None = None,
    ) -> EnrolResult:
        """Store one template of a consenting subject. Exactly one face; consent for the gallery's use case.

        ``request_id`` (a workflow's, or a bulk job's line) makes it idempotent: the template's id
        derives from it, so a retry returns the template the first attempt stored."""
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
            request_id=request_id,
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
        request_id: str | None = None,
    ) -> EnrolResult:
        """Write the template an allowed enrol decision covers, in one transaction with everything it
        depends on and everything that records it: the consent checked still granted, the gallery's
        count under its cap, the request's row (with a ``request_id``) and the audit entry.

        With a ``request_id`` it is idempotent: the template id derives from it and is written only if
        free, so a retried step (or a second Batch attempt) returns the template the first one stored.
        """
        if not decision.allowed or decision.operation != Operation.ENROL.value or decision.stage != FACES:
            raise PolicyDeniedError(
                "storing a template needs an allowed enrol decision re-checked on the detected face", decision
            )
        gallery = self.galleries.find(ctx, gallery_id)
        consent = self.consents.get(ctx, subject_id, consent_id)
        now = self.clock()
        if gallery is None:
            raise GalleryNotFoundError("No such gallery.")
        request_key = request_id or uuid.uuid4().hex
        if request_id is not None:
            existing = self.templates.get(
                ctx, gallery_id, self.templates.template_id(ctx, gallery_id, subject_id, request_key)
            )
            if existing is not None:  # a retry of a step that did commit: the same answer, nothing written
                return EnrolResult(
                    existing.template_id,
                    gallery_id,
                    subject_id,
                    existing.expires_at,
                    existing.embedding.model_version,
                    decision,
                )
        if consent is None or not consent.valid_for(gallery.use_case, now):
            raise ConsentError("the consent was withdrawn or expired before the template was stored")
        spec = self._use_case(gallery.use_case)
        retention = timedelta(days=spec.retention_days) if spec else DEFAULT_RETENTION
        expires_at = min(consent.expires_at, now + retention, now + DEFAULT_RETENTION)
        stored, writes = self.templates.enrol_writes(
            ctx,
            gallery,
            subject_id=subject_id,
            consent_id=consent_id,
            embedding=embedding,
            expires_at=expires_at,
            request_key=request_key,
            now=now,
            consent_purpose=gallery.use_case,
        )
        result = {
            "template_id": stored.template_id,
            "subject_id": stored.subject_id,
            "expires_at": expires_at.isoformat(),
            "model_version": embedding.model_version,
        }
        if request_id is not None:
            _, row = self.requests.put_write(
                ctx,
                request_id=request_id,
                operation="enrol",
                gallery_id=gallery_id,
                status="completed",
                decision=decision.to_dict(),
                result=result,
                review_state="not_required",
                retention=REQUEST_RETENTION,
            )
            writes.append(row)
        details = {
            "gallery_id": gallery_id,
            "subject_id": subject_id,
            "template_id": stored.template_id,
            "consent_id": consent_id,
            "model_version": embedding.model_version,
            "expires_at": expires_at.isoformat(),
            "policy": decision.policy_version,
            **({"request_id": request_id} if request_id else {}),
        }
        try:
            self.audit.append(ctx, "template.enrolled", details, writes=writes)
        except WriteConditionError as exc:
            if "template" in exc.names and request_id is not None:
                again = self.templates.get(ctx, gallery_id, stored.template_id)
                if again is not None:  # a concurrent twin of this request committed first
                    return EnrolResult(
                        again.template_id,
                        gallery_id,
                        subject_id,
                        again.expires_at,
                        again.embedding.model_version,
                        decision,
                    )
            if "consent" in exc.names:
                raise ConsentError("the consent was withdrawn or expired before the template was stored") from exc
            if "gallery_capacity" in exc.names:
                raise ConflictError("the gallery is full (or was deleted) before the template was stored") from exc
            raise
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
        if not decision.allowed or decision.threshold is None or decision.stage != FACES:
            raise PolicyDeniedError(
                "matching needs an allowed verify or search decision re-checked on the detected faces", decision
            )
        if decision.operation == Operation.VERIFY.value:
            if subject_id is None:
                raise GalleryNotFoundError("A verification names the subject to verify against.")
            references = [
                _reference(t)
                for t in self.templates.of_subject(ctx, check_entity_id(subject_id, "subject"), gallery_id=gallery_id)
                if t.expires_at > self.clock()
            ]
            if not references:
                raise GalleryNotFoundError("No such subject in this gallery.")
            return verify(probe, references, threshold=decision.threshold)
        if decision.operation != Operation.SEARCH.value:
            raise PolicyDeniedError("matching needs an allowed verify or search decision", decision)
        templates = [_reference(t) for t in self.templates.in_gallery(ctx, gallery_id, now=self.clock())]
        return search(probe, templates, threshold=decision.threshold, top_k=top_k, calibration=self.calibration)

    def record_result(
        self,
        ctx: TenantContext,
        gallery_id: str,
        decision: Decision,
        result: VerifyResult | SearchResult,
        *,
        request_id: str | None = None,
        purpose: str | None = None,
        case_reference: str | None = None,
    ) -> RequestRow:
        """Store the result with its review state and its audit entry in one transaction. With a
        ``request_id`` it is idempotent: a second call for the same request returns the stored row and
        writes nothing (the row exists only together with its entry)."""
        review = "not_required"
        if HUMAN_REVIEW in decision.obligations and not _no_match(result):
            review = "pending"
        purpose, case_reference = declared(purpose, "purpose"), declared(case_reference, "case reference")
        row, write = self.requests.put_write(
            ctx,
            request_id=request_id or uuid.uuid4().hex,
            operation=decision.operation,
            gallery_id=gallery_id,
            status="completed",
            decision=decision.to_dict(),
            result=result.to_dict(),
            review_state=review,
            retention=REQUEST_RETENTION,
            purpose=purpose,
            case_reference=case_reference,
        )
        details = {
            "request_id": row.request_id,
            "gallery_id": gallery_id,
            "matched": not _no_match(result),
            "review_state": review,
            "policy": decision.policy_version,
            "purpose": purpose,
            "case_reference": case_reference,
        }
        return self._record_once(ctx, f"{decision.operation}.completed", details, row, write)

    def _record_once(
        self, ctx: TenantContext, action: str, details: dict[str, Any], row: RequestRow, write: Write
    ) -> RequestRow:
        """Commit a request row with its audit entry; a row already there (a retried step, a
        concurrent twin) is returned as stored, with nothing written."""
        try:
            self.audit.append(ctx, action, details, writes=[write])
        except WriteConditionError as exc:
            existing = self.requests.get(ctx, row.request_id) if "request" in exc.names else None
            if existing is None:
                raise
            return existing
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
        action: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> RequestRow:
        """Record how a workflow request ended, once per request id (a retry returns the stored row),
        always in one transaction with its audit entry: ``completed`` (a bulk job), ``refused`` by the
        gate (its decision was audited as ``request.denied``; this entry records the outcome) or
        ``failed`` (bad input, an error), with its reasons."""
        if status not in ("completed", "refused", "failed"):
            raise ValueError(f"a request ends 'completed', 'refused' or 'failed', not {status!r}")
        row, write = self.requests.put_write(
            ctx,
            request_id=request_id,
            operation=operation,
            gallery_id=gallery_id,
            status=status,
            decision=decision or {"allowed": False, "reasons": result.get("reasons", [])},
            result=result,
            review_state="not_required",
            retention=REQUEST_RETENTION,
        )
        entry = {
            "request_id": request_id,
            "operation": operation,
            "gallery_id": gallery_id,
            "reasons": [str(r.get("code", "")) for r in result.get("reasons", [])],
            **(details or {}),
        }
        return self._record_once(ctx, action or f"request.{status}", entry, row, write)

    def _outcome(
        self,
        ctx: TenantContext,
        gallery_id: str,
        decision: Decision,
        result: VerifyResult | SearchResult,
        purpose: str | None,
        case_reference: str | None,
    ) -> MatchOutcome:
        row = self.record_result(ctx, gallery_id, decision, result, purpose=purpose, case_reference=case_reference)
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
        return self._outcome(ctx, gallery_id, decision, result, purpose, case_reference)

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
        return self._outcome(ctx, gallery_id, decision, result, purpose, case_reference)

    def review(self, ctx: TenantContext, request_id: str, *, confirm: bool) -> RequestRow:
        """A reviewer confirms or rejects a match; two distinct people when the decision obliges it.

        The review and its audit entry commit together, as a conditional list append: two reviewers
        confirming at the same moment both count (the second re-reads and appends after the first),
        and nobody counts twice."""
        for _ in range(REVIEW_ATTEMPTS):
            row = self.requests.get(ctx, request_id)
            if row is None or row.review_state != "pending":
                raise ConflictError("the request is not awaiting review")
            if ctx.actor in row.reviewers:
                raise ConflictError("each reviewer counts once (two-person confirmation)")
            needed = 2 if TWO_PERSON in row.decision.get("obligations", []) else 1
            state, write = self.requests.review_write(ctx, row, reviewer=ctx.actor, confirm=confirm, needed=needed)
            details: dict[str, JSON] = {
                "request_id": request_id,
                "confirm": confirm,
                "state": state,
                "reviewers": len(row.reviewers) + 1,
            }
            try:
                self.audit.append(ctx, "review.recorded", details, writes=[write])
            except WriteConditionError:
                continue  # another reviewer got there first: re-read and count after them
            updated = self.requests.get(ctx, request_id)
            if updated is None:
                raise StorageError("the reviewed request vanished")
            return updated
        raise ConflictError("the review lost every race to concurrent reviews; try again")

    # --- consent withdrawal and erasure --------------------------------------------------------------

    def revoke_consent(self, ctx: TenantContext, subject_id: str, consent_id: str) -> int:
        """Revoking a consent deletes every template enrolled under it; returns how many.

        The revocation, the deletions and the audit entry are one transaction. Every template write
        checks its consent in its own transaction, so once this commits none can follow it; a template
        that committed just before is found by the strongly consistent re-read and deleted too."""
        if self.consents.get(ctx, subject_id, consent_id) is None:
            raise ConsentError("No such consent.")
        now = self.clock()
        deleted = 0
        revoke = [self.consents.revoke_write(ctx, subject_id, consent_id, now)]
        for _ in range(ERASURE_ROUNDS):
            doomed = [t for t in self.templates.of_subject(ctx, subject_id) if t.consent_id == consent_id]
            if not doomed and not revoke:
                break
            details: dict[str, JSON] = {
                "subject_id": subject_id,
                "consent_id": consent_id,
                "templates_deleted": len(doomed),
                "template_ids": [t.template_id for t in doomed],
            }
            try:
                self.audit.append(
                    ctx,
                    "consent.revoked" if revoke else "consent.revoked.cleanup",
                    details,
                    writes=[*revoke, *self.templates.delete_writes(ctx, doomed)],
                )
            except WriteConditionError:
                continue  # a template went meanwhile (TTL, a concurrent erasure): read again
            deleted += len(doomed)
            revoke = []
        return deleted

    def erase_subject(self, ctx: TenantContext, subject_id: str) -> ErasureReceipt:
        """Erase a subject from the tenant: revoke every consent first (so no template can be stored
        after), delete every template, redact every request row that names them, and re-check; each
        step is one transaction with its audit entry. The receipt lists what was deleted and what
        remains, and where."""
        # Erasure is tenant-wide and always permitted (even with an expired approval): it is audited.
        self._decide(ctx, Operation.DELETE_SUBJECT, "erasure")
        subject = check_entity_id(subject_id, "subject")
        now = self.clock()
        revoked = [c.consent_id for c in self.consents.of_subject(ctx, subject) if c.status == "granted"]
        for chunk in _chunks(revoked):
            self.audit.append(
                ctx,
                "subject.erasure.consents_revoked",
                {"subject_id": subject, "consent_ids": chunk},
                writes=[self.consents.revoke_write(ctx, subject, cid, now) for cid in chunk],
            )
        deleted: list[str] = []
        redacted: list[str] = []
        for _ in range(ERASURE_ROUNDS):
            found = {t.template_id: t for t in self.templates.of_subject(ctx, subject)}
            found.update({t.template_id: t for t in self.templates.indexed_of_subject(ctx, subject)})
            doomed = list(found.values())
            rows = [r for r in self.requests.naming(ctx, subject) if r.request_id not in redacted]
            if not doomed and not rows:
                break
            try:
                for tchunk in _chunks(doomed, size=TEMPLATES_PER_TRANSACTION):
                    self.audit.append(
                        ctx,
                        "subject.erasure.templates_deleted",
                        {"subject_id": subject, "template_ids": [t.template_id for t in tchunk]},
                        writes=self.templates.delete_writes(ctx, tchunk),
                    )
                    deleted += [t.template_id for t in tchunk]
                for rchunk in _chunks(rows):
                    self.audit.append(
                        ctx,
                        "subject.erasure.requests_redacted",
                        {"subject_id": subject, "request_ids": [r.request_id for r in rchunk]},
                        writes=[self.requests.redact_write(ctx, r, subject, now) for r in rchunk],
                    )
                    redacted += [r.request_id for r in rchunk]
            except WriteConditionError:
                continue  # something went meanwhile (TTL, a concurrent erasure): read again
        left = len(self.templates.of_subject(ctx, subject))
        remaining = [
            {
                "what": "audit entries naming the subject id (no biometric data)",
                "where": "the tenant's audit log",
                "why": "the record of every decision is append-only and outlives the data it describes",
            },
        ]
        if left:
            remaining.append({"what": f"{left} templates", "where": "templates table", "why": "erasure did not finish"})
        entry = self.audit.append(
            ctx,
            "subject.erased",
            {
                "subject_id": subject,
                "templates_deleted": len(deleted),
                "consents_revoked": len(revoked),
                "requests_redacted": len(redacted),
                "templates_remaining": left,
            },
        )
        return ErasureReceipt(
            subject,
            len(deleted),
            len(revoked),
            entry.seq,
            now,
            template_ids=tuple(deleted),
            consent_ids=tuple(revoked),
            request_ids=tuple(redacted),
            templates_remaining=left,
            remaining=tuple(remaining),
        )


T = TypeVar("T")


def _chunks(items: Sequence[T], size: int = 90) -> list[list[T]]:
    """Pieces that fit one transaction beside an audit entry and its head (DynamoDB allows 100)."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def declared(text: str | None, what: str) -> str | None:
    """A declared purpose or case reference as it is stored and audited: bounded, printable, one line."""
    if text is None:
        return None
    value = text.strip()
    if len(value) > MAX_DECLARED or not value.isprintable():
        raise InvalidRequestError(f"the {what} is at most {MAX_DECLARED} printable characters on one line")
    return value or None


def _reference(t: StoredTemplate) -> GalleryTemplate:
    return GalleryTemplate(template_id=t.template_id, subject_id=t.subject_id, embedding=t.embedding)


def _no_match(result: VerifyResult | SearchResult) -> bool:
    return not result.matched if isinstance(result, VerifyResult) else result.no_match


def _denial_text(decision: Decision) -> str:
    return "Refused: " + "; ".join(f"{r.code} ({r.message})" for r in decision.reasons)
