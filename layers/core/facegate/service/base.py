"""The service's state (the gate, the repositories, the audit log, the clock) and the gate's facts:
every operation's decision is computed here."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from facegate import observability
from facegate.audit import AuditLog
from facegate.errors import (
    PolicyDeniedError,
    WriteConditionError,
)
from facegate.match import Calibration
from facegate.policy import Decision, Operation, PolicyGate, PolicyRequest
from facegate.policy.catalog import SANDBOX_USE_CASE, UseCase
from facegate.policy.gate import UNKNOWN, stage_of
from facegate.service.gallery_cache import GalleryCache
from facegate.store.models import SEP
from facegate.store.repositories import (
    Consents,
    Counters,
    Galleries,
    Gallery,
    ProbeMemory,
    Requests,
    StoredTemplate,
    Templates,
    Tenant,
    TenantRegistry,
    Totals,
)
from facegate.store.snapshots import GallerySnapshots
from facegate.store.transient import TransientTemplates
from facegate.store.writes import Write
from facegate.tenancy import TenantContext

if TYPE_CHECKING:  # the vision stack (onnxruntime, OpenCV) stays out of the non-vision functions
    pass

from facegate.service.records import (
    TEMPLATES_PER_TRANSACTION,
    chunks,
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
    totals: Totals = field(default_factory=Totals)
    probes: ProbeMemory = field(default_factory=ProbeMemory)
    transient: TransientTemplates = field(default_factory=TransientTemplates)
    audit: AuditLog = field(default_factory=AuditLog)
    calibration: Calibration = field(default_factory=Calibration.packaged)
    gallery_cache: GalleryCache = field(default_factory=GalleryCache)
    """This process's warm copies of galleries (a warm Lambda keeps them between searches)."""
    snapshots: GallerySnapshots = field(default_factory=GallerySnapshots)
    """Each gallery version's templates as one S3 object, for a cold container (``FACEGATE_BUCKET``)."""
    clock: Callable[[], datetime] = utc_now

    def _use_case(self, name: str) -> UseCase | None:
        return self.gate.catalog.use_cases.get(name)

    def _limits(
        self, ctx: TenantContext, tenant: Tenant, operation: Operation, use_case: str, now: datetime
    ) -> tuple[bool, bool]:
        """Count this attempt (denied ones too: enumeration is attempts) and compare with the limits:
        the catalog's, or the tenant's quota where an operator set a lower one."""
        spec = self._use_case(use_case)
        limits = spec.rate_limits if spec else {}
        if use_case == SANDBOX_USE_CASE:
            limits = self.gate.catalog.sandbox.rate_limits
        limit = limits.get(operation.value)
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
        once: str | None = None,
        **facts: Any,
    ) -> Decision:
        """Decide with the tenant's current facts; a denial is audited (once per ``once`` key: a
        retried step does not record the same refusal twice) and raised."""
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
        gallery = facts.get("gallery")
        observability.decision(
            request_id=once.split(":", 1)[0] if once else None,
            tenant=ctx.tenant_id,
            operation=str(operation.value if hasattr(operation, "value") else operation),
            use_case=use_case,
            stage=decision.stage,
            allowed=decision.allowed,
            reason_codes=decision.codes,
            policy_version=decision.policy_version,
            gallery_id=gallery.gallery_id if gallery is not None else None,
        )
        if not decision.allowed:
            self.audit.append(
                ctx,
                "request.denied",
                {"decision": decision.to_dict(), "gallery_id": gallery.gallery_id if gallery is not None else None},
                once=once,
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
        request_id: str | None = None,
        content_hash: str | None = None,
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
        if operation is Operation.ENROL:
            if gallery is not None:
                gallery, facts["tenant_enrolled"] = self._capacity(ctx, gallery)
            if consent_per_subject:
                facts["consent_valid"] = True
            else:
                consent = self.consents.get(ctx, subject_id, consent_id) if subject_id and consent_id else None
                facts["consent_valid"] = consent is not None and consent.valid_for(use_case, self.clock())
        else:
            facts.update(threshold=threshold, top_k=top_k, purpose=purpose, case_reference=case_reference)
            facts.update(
                self._sweep_facts(
                    ctx, operation, use_case, gallery, subject_id, content_hash, count_attempt, face_count
                )
            )
        stage = stage_of(face_count)
        decision = self._decide(
            ctx,
            operation,
            use_case,
            count_attempt=count_attempt,
            once=f"{request_id}:decision:{stage}" if request_id else None,
            gallery=gallery.facts() if gallery else None,
            gallery_found=gallery is not None,
            face_count=face_count,
            **facts,
        )
        if operation is not Operation.ENROL and decision.threshold is None:
            raise PolicyDeniedError("the decision carries no threshold", decision)
        return decision

    def _sweep_facts(
        self,
        ctx: TenantContext,
        operation: Operation,
        use_case: str,
        gallery: Gallery | None,
        subject_id: str | None,
        content_hash: str | None,
        count_attempt: bool,
        face_count: int = UNKNOWN,
    ) -> dict[str, Any]:
        """The facts that refuse a sweep made of allowed calls: the distinct subjects verified today
        (counted with the attempt), the same image verified against another subject (at the face
        re-check, once Detect has hashed it) and the templates searched today across galleries."""
        spec = self._use_case(use_case)
        if spec is None or gallery is None:
            return {}
        now = self.clock()
        facts: dict[str, Any] = {}
        if operation is Operation.VERIFY and subject_id:
            if count_attempt and spec.verify_distinct_subjects_per_day is not None:
                facts["distinct_subjects"] = self.probes.distinct_subjects(ctx, use_case, subject_id, now)
            if content_hash:
                window = timedelta(seconds=spec.enumeration_window_s)
                facts["enumeration_suspected"] = not self.probes.claim_content(
                    ctx, use_case, content_hash, subject_id, now, window
                )
        if operation is Operation.SEARCH and spec.search_comparisons_per_day is not None:
            # Where a photo's every face is searched (photo organisation), each face is a search of the
            # gallery: the budget counts them all. The workflow counts the first search with the attempt
            # and the other faces at the face re-check, once they are known.
            faces = min(face_count, spec.max_faces_in_probe) if face_count > 1 else 1
            searches = faces if count_attempt else faces - 1
            if searches > 0:
                facts["comparisons_today"] = self.counters.hit(
                    ctx,
                    f"comparisons{SEP}{use_case}",
                    window=timedelta(days=1),
                    now=now,
                    amount=gallery.template_count * searches,
                )
        return facts

    # --- capacity: the gallery's and the tenant's counts, kept exact --------------------------------

    def _capacity(self, ctx: TenantContext, gallery: Gallery) -> tuple[Gallery, int]:
        """The gallery and the tenant's template total for its use case, recounted when either looks
        full: DynamoDB's TTL deletes expired templates without lowering any count, so a count only
        ever overstates; the recount deletes what expired (audited) and corrects what TTL removed."""
        total = self.totals.read(ctx, Totals.TEMPLATES, gallery.use_case)
        spec = self._use_case(gallery.use_case)
        cap = spec.max_enrolled_per_tenant if spec else 0
        if gallery.template_count < gallery.max_size and total < cap:
            return gallery, total
        self.reconcile(ctx, gallery.use_case)
        refreshed = self.galleries.find(ctx, gallery.gallery_id) or gallery
        return refreshed, self.totals.read(ctx, Totals.TEMPLATES, gallery.use_case)

    def reconcile(self, ctx: TenantContext, use_case: str) -> int:
        """Delete the expired templates of the tenant's galleries of ``use_case`` and set every count to
        what is really stored; returns how many expired templates were deleted. Each step is one
        transaction with its audit entry; a step that meets a concurrent change is left for next time."""
        now = self.clock()
        expired_total = 0
        live_total = 0
        for gallery in [g for g in self.galleries.list_all(ctx) if g.use_case == use_case]:
            stored = self.templates.stored_in(ctx, gallery.gallery_id)
            expired = [t for t in stored if t.expires_at <= now]
            for chunk in chunks(expired, size=TEMPLATES_PER_TRANSACTION):
                try:
                    self.audit.append(
                        ctx,
                        "template.expired",
                        {"gallery_id": gallery.gallery_id, "template_ids": [t.template_id for t in chunk]},
                        writes=self.delete_writes(ctx, chunk),
                    )
                    expired_total += len(chunk)
                except WriteConditionError:
                    continue
            live = len(stored) - len(expired)
            live_total += live
            current = self.galleries.find(ctx, gallery.gallery_id)
            if current is not None and current.template_count != live:
                with contextlib.suppress(WriteConditionError):
                    self.audit.append(
                        ctx,
                        "gallery.recounted",
                        {"gallery_id": gallery.gallery_id, "was": current.template_count, "now": live},
                        writes=[self.galleries.recount_write(ctx, current, live)],
                    )
        total = self.totals.read(ctx, Totals.TEMPLATES, use_case)
        if total != live_total:
            with contextlib.suppress(WriteConditionError):
                self.audit.append(
                    ctx,
                    "tenant.templates_recounted",
                    {"use_case": use_case, "was": total, "now": live_total},
                    writes=[self.totals.set_write(ctx, Totals.TEMPLATES, use_case, was=total, now=live_total)],
                )
        return expired_total

    def delete_writes(self, ctx: TenantContext, templates: Sequence[StoredTemplate]) -> list[Write]:
        """Delete templates with their galleries' counts and the tenant's totals lowered by as many."""
        writes = self.templates.delete_writes(ctx, list(templates))
        use_cases = {g.gallery_id: g.use_case for g in self.galleries.list_all(ctx)}
        per_use_case: dict[str, int] = {}
        for t in templates:
            uc = use_cases.get(t.gallery_id)
            if uc is not None:
                per_use_case[uc] = per_use_case.get(uc, 0) + 1
        writes += [self.totals.add_write(ctx, Totals.TEMPLATES, uc, -n) for uc, n in per_use_case.items()]
        return writes
