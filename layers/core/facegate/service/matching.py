"""Verification (1:1) and search (1:N), and the request rows that record how a request ended."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from facegate import observability
from facegate.embedding import Embedding
from facegate.errors import (
    EnumerationRefusedError,
    GalleryNotFoundError,
    PolicyDeniedError,
    WriteConditionError,
)
from facegate.match import Gallery, search, search_faces, verify
from facegate.policy import Decision, Operation
from facegate.store.repositories import (
    RequestRow,
)
from facegate.store.snapshots import Snapshot
from facegate.store.writes import Write
from facegate.tenancy import TenantContext, check_entity_id

if TYPE_CHECKING:  # the vision stack (onnxruntime, OpenCV) stays out of the non-vision functions
    from facegate.vision.pipeline import FaceAnalysis

from facegate.service.base import ServiceBase
from facegate.service.records import (
    FACES,
    HUMAN_REVIEW,
    REQUEST_RETENTION,
    MatchOutcome,
    MatchResult,
    declared,
    no_match,
    reference,
    require_quality,
)


class Matching(ServiceBase):
    def match(
        self,
        ctx: TenantContext,
        gallery_id: str,
        decision: Decision,
        probe: Embedding,
        *,
        subject_id: str | None = None,
        top_k: int = 1,
        purpose: str | None = None,
        case_reference: str | None = None,
        faces: Sequence[tuple[tuple[float, float, float, float], Embedding]] = (),
    ) -> MatchResult:
        """Compare a probe with the caller's gallery under an allowed verify or search decision.

        A verification first asks whether the same face was verified against another subject within
        the window (a sweep of 1:1 calls): if so the gate refuses it (audited) before any comparison.
        ``faces`` (a search under a use case that allows several faces in a photo: ``(box, template)``,
        the subject first, ``probe`` its template) searches every one of them, each its own open-set
        search: a :class:`PhotoSearchResult`. More faces than the decision was taken on are refused."""
        if not decision.allowed or decision.threshold is None or decision.stage != FACES:
            raise PolicyDeniedError(
                "matching needs an allowed verify or search decision re-checked on the detected faces", decision
            )
        if decision.operation == Operation.VERIFY.value:
            if subject_id is None:
                raise GalleryNotFoundError("A verification names the subject to verify against.")
            references = [
                reference(t, self._offset(t.references, decision.use_case))
                for t in self.templates.of_subject(ctx, check_entity_id(subject_id, "subject"), gallery_id=gallery_id)
                if t.expires_at > self.clock()
            ]
            if not references:
                raise GalleryNotFoundError("No such subject in this gallery.")
            self._refuse_a_sweep(ctx, gallery_id, decision, probe, subject_id, purpose, case_reference)
            return verify(probe, references, threshold=decision.threshold)
        if decision.operation != Operation.SEARCH.value:
            raise PolicyDeniedError("matching needs an allowed verify or search decision", decision)
        templates = self._searchable(ctx, gallery_id, decision.use_case)
        if len(faces) > 1:
            spec = self._use_case(decision.use_case)
            allowed = min(spec.max_faces_in_probe if spec else 1, int(decision.facts.get("face_count", len(faces))))
            if len(faces) > allowed or not np.array_equal(faces[0][1].vector, probe.vector):
                raise PolicyDeniedError(
                    f"{len(faces)} faces to search, but {decision.use_case} allows {allowed} in a photo "
                    "(and the subject leads)",
                    decision,
                )
            return search_faces(
                faces, templates, threshold=decision.threshold, top_k=top_k, calibration=self.calibration
            )
        return search(probe, templates, threshold=decision.threshold, top_k=top_k, calibration=self.calibration)

    def _searchable(self, ctx: TenantContext, gallery_id: str, use_case: str | None) -> Gallery:
        """The gallery's live templates, stacked for search: the warm copy at the gallery's current
        version (:mod:`facegate.service.gallery_cache`: one consistent read of the gallery row), else
        the snapshot recorded for that version (:mod:`facegate.store.snapshots`: one S3 object), else
        a consistent read of its templates, kept in the cache and written as the version's snapshot."""
        now = self.clock()
        row = self.galleries.find(ctx, gallery_id, consistent=True)

        def build() -> tuple[Gallery, datetime | None]:
            snapshot = self.snapshots.load(ctx, row, now) if row is not None else None
            if snapshot is not None:
                live = snapshot.stored_templates()
            else:
                live = self.templates.in_gallery(ctx, gallery_id, now=now, consistent=True)
                if row is not None:  # for the next cold container: one object instead of the table
                    self.snapshots.save(ctx, row, Snapshot.of(ctx, row, live))
            stacked = Gallery([reference(t, self._offset(t.references, use_case)) for t in live])
            return stacked, min((t.expires_at for t in live), default=None)

        if row is None:  # not this tenant's gallery (the decision said it was): read, never cache
            return build()[0]
        return self.gallery_cache.get((ctx.tenant_id, gallery_id, row.version), now, build)

    def _offset(self, references: int, use_case: str | None) -> float:
        """What a template fused from ``references`` photos gives up so its false-match rate stays at the
        use case's target (0 for a single photo)."""
        spec = self._use_case(use_case) if use_case is not None and references != 1 else None
        if spec is None:
            return 0.0
        return self.calibration.reference_offset(references, spec.target_fmr)

    def _refuse_a_sweep(
        self,
        ctx: TenantContext,
        gallery_id: str,
        decision: Decision,
        probe: Embedding,
        subject_id: str,
        purpose: str | None,
        case_reference: str | None,
    ) -> None:
        spec = self._use_case(decision.use_case)
        if spec is None or decision.threshold is None:
            return
        window = timedelta(seconds=spec.enumeration_window_s)
        swept = self.probes.near_duplicate(
            ctx, decision.use_case, probe, subject_id, threshold=decision.threshold, now=self.clock(), window=window
        )
        if not swept:
            return
        gallery = self.galleries.find(ctx, gallery_id)
        try:
            self._decide(
                ctx,
                Operation.VERIFY,
                decision.use_case,
                count_attempt=False,
                gallery=gallery.facts() if gallery else None,
                gallery_found=gallery is not None,
                face_count=1,
                threshold=decision.threshold,
                purpose=purpose,
                case_reference=case_reference,
                enumeration_suspected=True,
            )
        except PolicyDeniedError as exc:
            raise EnumerationRefusedError(str(exc), exc.decision) from exc
        raise EnumerationRefusedError("the same face was verified against another subject", decision)

    def record_result(
        self,
        ctx: TenantContext,
        gallery_id: str,
        decision: Decision,
        result: MatchResult,
        *,
        request_id: str | None = None,
        purpose: str | None = None,
        case_reference: str | None = None,
        transient_ref: str | None = None,
        transient_refs: Sequence[str] = (),
    ) -> RequestRow:
        """Store the result with its review state and its audit entry in one transaction (which also
        deletes the probe's short-lived template, ``transient_ref``, that the result consumed). With a
        ``request_id`` it is idempotent: a second call for the same request returns the stored row and
        writes nothing (the row exists only together with its entry)."""
        review = "not_required"
        if HUMAN_REVIEW in decision.obligations and not no_match(result):
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
            "matched": not no_match(result),
            "review_state": review,
            "policy": decision.policy_version,
            "purpose": purpose,
            "case_reference": case_reference,
        }
        refs = [*([transient_ref] if transient_ref else []), *transient_refs]
        extra = [self.transient.delete_write(ctx, ref) for ref in refs]
        return self._record_once(ctx, f"{decision.operation}.completed", details, row, write, extra)

    def _record_once(
        self,
        ctx: TenantContext,
        action: str,
        details: dict[str, Any],
        row: RequestRow,
        write: Write,
        extra: Sequence[Write] = (),
    ) -> RequestRow:
        """Commit a request row with its audit entry; a row already there (a retried step, a
        concurrent twin) is returned as stored, with nothing written."""
        try:
            self.audit.append(ctx, action, details, writes=[write, *extra])
        except WriteConditionError as exc:
            existing = self.requests.get(ctx, row.request_id) if "request" in exc.names else None
            if existing is None:
                raise
            return existing  # said when it was first recorded
        reasons = (row.result or {}).get("reasons", []) if row.status != "completed" else []
        observability.outcome(
            request_id=row.request_id,
            tenant=ctx.tenant_id,
            operation=row.operation,
            status=row.status,
            reason_codes=[str(r.get("code", "")) for r in reasons if isinstance(r, dict)],
            gallery_id=row.gallery_id,
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
        result: MatchResult,
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
        if analysis.face_count:
            require_quality(analysis)
        decision = self.decide(
            ctx,
            Operation.VERIFY,
            gallery_id,
            face_count=analysis.face_count,
            subject_id=subject_id,
            threshold=threshold,
            purpose=purpose,
            case_reference=case_reference,
        )
        result = self.match(
            ctx,
            gallery_id,
            decision,
            analysis.subject_embedding,
            subject_id=subject_id,
            purpose=purpose,
            case_reference=case_reference,
        )
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
        if analysis.face_count:
            require_quality(analysis)
        decision = self.decide(
            ctx,
            Operation.SEARCH,
            gallery_id,
            face_count=analysis.face_count,
            threshold=threshold,
            top_k=top_k,
            purpose=purpose,
            case_reference=case_reference,
        )
        result = self.match(
            ctx,
            gallery_id,
            decision,
            analysis.subject_embedding,
            top_k=top_k,
            faces=self._faces_to_search(decision, analysis),
        )
        return self._outcome(ctx, gallery_id, decision, result, purpose, case_reference)

    def _faces_to_search(
        self, decision: Decision, analysis: FaceAnalysis
    ) -> list[tuple[tuple[float, float, float, float], Embedding]]:
        """Every comparable face, where the use case allows several in a photo (photo organisation: who
        is in this picture), else none (the subject alone is searched). Bystanders never are."""
        spec = self._use_case(decision.use_case)
        if spec is None or spec.max_faces_in_probe <= 1 or analysis.face_count <= 1:
            return []
        return [(face.box, emb) for face, emb in zip(analysis.faces, analysis.embeddings, strict=False)]
