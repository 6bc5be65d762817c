"""The service's state (the gate, the repositories, the audit log, the clock) and the gate's facts:
every operation's decision is computed here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from facegate.audit import AuditLog
from facegate.errors import (
    PolicyDeniedError,
)
from facegate.match import Calibration
from facegate.policy import Decision, Operation, PolicyGate, PolicyRequest
from facegate.policy.catalog import UseCase
from facegate.policy.gate import UNKNOWN
from facegate.store.repositories import (
    Consents,
    Counters,
    Galleries,
    Gallery,
    Requests,
    Templates,
    Tenant,
    TenantRegistry,
)
from facegate.tenancy import TenantContext

if TYPE_CHECKING:  # the vision stack (onnxruntime, OpenCV) stays out of the non-vision functions
    pass

from facegate.service.records import (
    denial_text,
    utc_now,
)


@dataclass
class ServiceBase:
    """The parts every operation uses; :class:`facegate.service.FaceService` composes the operations."""

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
            raise PolicyDeniedError(denial_text(decision), decision)
        return decision

    def _gallery_facts(self, ctx: TenantContext, gallery_id: str) -> tuple[Gallery | None, str]:
        """The caller's gallery (None for a missing or foreign one) and the use case to decide under."""
        gallery = self.galleries.find(ctx, gallery_id)
        return gallery, gallery.use_case if gallery else "unknown"

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
