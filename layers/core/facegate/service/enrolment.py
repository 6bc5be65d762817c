"""Galleries, consent and enrolment: a template is stored only under a valid consent, re-checked in
the same transaction that stores it and its audit entry."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from facegate import observability
from facegate.audit.chain import JSON
from facegate.embedding import MAX_REFERENCES, Embedding, fuse
from facegate.errors import (
    ConflictError,
    ConsentError,
    EnrolmentPhotosError,
    GalleryNotFoundError,
    PhotosDisagreeError,
    PolicyDeniedError,
    WriteConditionError,
)
from facegate.models import PUBLISHED_THRESHOLD
from facegate.policy import Decision, Operation
from facegate.store.repositories import (
    Consent,
    Gallery,
    Totals,
)
from facegate.tenancy import TenantContext

if TYPE_CHECKING:  # the vision stack (onnxruntime, OpenCV) stays out of the non-vision functions
    from facegate.vision.pipeline import FaceAnalysis

from facegate.service.base import ServiceBase
from facegate.service.records import (
    DEFAULT_RETENTION,
    FACES,
    REQUEST_RETENTION,
    EnrolResult,
    require_quality,
)


def check_same_person(embeddings: Sequence[Embedding]) -> None:
    """Refuse photos that do not show one person: each against the others fused must reach SFace's
    published operating point (a loose bar: two photos of one person rarely fall below it)."""
    if len(embeddings) < 2:
        return
    for i, e in enumerate(embeddings):
        others = fuse([o for j, o in enumerate(embeddings) if j != i])
        score = e.cosine(others)
        if score < PUBLISHED_THRESHOLD:
            raise PhotosDisagreeError(
                f"photo {i + 1} does not show the same person as the others (cosine {score:.3f} < "
                f"{PUBLISHED_THRESHOLD}): enrol photos of one person only"
            )


class Enrolment(ServiceBase):
    def create_gallery(self, ctx: TenantContext, gallery_id: str, *, name: str, use_case: str) -> Gallery:
        """Create a gallery for one of the tenant's approved use cases, within the tenant's gallery cap
        (counted in the same transaction, so concurrent creations cannot exceed it)."""
        held = self.totals.read(ctx, Totals.GALLERIES, use_case)
        decision = self._decide(ctx, Operation.CREATE_GALLERY, use_case, tenant_galleries=held)
        spec = self._use_case(use_case)
        if spec is None:  # the gate refuses unknown use cases; this keeps the type checker honest
            raise GalleryNotFoundError("No such use case.")
        gallery, write = self.galleries.create_write(
            ctx, gallery_id, name=name, use_case=use_case, max_size=spec.max_gallery_size
        )
        count = self.totals.add_write(ctx, Totals.GALLERIES, use_case, 1, cap=spec.max_galleries_per_tenant)
        details = {"gallery_id": gallery_id, "use_case": use_case, "policy": decision.policy_version}
        try:
            self.audit.append(ctx, "gallery.created", details, writes=[write, count])
        except WriteConditionError as exc:
            if count.name in exc.names:
                raise ConflictError(
                    f"the tenant holds {spec.max_galleries_per_tenant} galleries of {use_case} already"
                ) from exc
            existing = self.galleries.find(ctx, gallery_id)
            if existing is not None and (existing.use_case, existing.name) == (use_case, name):
                return existing  # a retry of a creation that did commit (with its entry): the same answer
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
        # Through the gate like every operation: a suspended tenant, or one whose approval for this
        # use case expired, collects no more consents (and so enrols nobody new).
        self._decide(ctx, Operation.RECORD_CONSENT, purpose)
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

    def enrol(
        self,
        ctx: TenantContext,
        gallery_id: str,
        *,
        subject_id: str,
        consent_id: str,
        analysis: FaceAnalysis | Sequence[FaceAnalysis],
        request_id: str | None = None,
    ) -> EnrolResult:
        """Store one template of a consenting subject from one photo or several (up to
        ``MAX_REFERENCES``, fused into one template). Each photo shows exactly one subject face; consent
        for the gallery's use case.

        Several photos must show one person: each is compared with the others fused, and a photo
        below SFace's published operating point against them is refused (``image.photos_disagree``)
        before the gate decides, so two people can never be fused into one template.

        ``request_id`` (a workflow's, or a bulk job's line) makes it idempotent: the template's id
        derives from it, so a retry returns the template the first attempt stored."""
        photos = [analysis] if not isinstance(analysis, Sequence) else list(analysis)
        if not 1 <= len(photos) <= MAX_REFERENCES:
            raise EnrolmentPhotosError(f"an enrolment takes 1 to {MAX_REFERENCES} photos, got {len(photos)}")
        counts = [p.face_count for p in photos]
        face_count = next((c for c in counts if c != 1), 1)
        if face_count == 1:
            for photo in photos:
                require_quality(photo)
            check_same_person([p.subject_embedding for p in photos])
        decision = self.decide(
            ctx, Operation.ENROL, gallery_id, face_count=face_count, subject_id=subject_id, consent_id=consent_id
        )
        return self.store_template(
            ctx,
            gallery_id,
            subject_id=subject_id,
            consent_id=consent_id,
            embedding=fuse([p.subject_embedding for p in photos]),
            decision=decision,
            request_id=request_id,
            references=len(photos),
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
        transient_ref: str | None = None,
        references: int = 1,
        transient_refs: Sequence[str] = (),
    ) -> EnrolResult:
        """Write the template an allowed enrol decision covers (and delete the probe's short-lived
        template, ``transient_ref``, or each photo's, ``transient_refs``, in the same transaction), in
        one transaction with everything it depends on and everything that records it: the consent
        checked still granted, the gallery's count under its cap, the request's row (with a
        ``request_id``) and the audit entry.

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
                    existing.references,
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
            references=references,
        )
        if spec is not None:  # the tenant's total under this use case, capped in the same transaction
            writes.append(
                self.totals.add_write(ctx, Totals.TEMPLATES, gallery.use_case, 1, cap=spec.max_enrolled_per_tenant)
            )
        result = {
            "template_id": stored.template_id,
            "subject_id": stored.subject_id,
            "expires_at": expires_at.isoformat(),
            "model_version": embedding.model_version,
            "references": references,
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
        for ref in (*([transient_ref] if transient_ref is not None else []), *transient_refs):
            writes.append(self.transient.delete_write(ctx, ref))
        details: dict[str, JSON] = {
            "gallery_id": gallery_id,
            "subject_id": subject_id,
            "template_id": stored.template_id,
            "consent_id": consent_id,
            "model_version": embedding.model_version,
            "references": references,
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
                        again.references,
                    )
            if "consent" in exc.names:
                raise ConsentError("the consent was withdrawn or expired before the template was stored") from exc
            if "gallery_capacity" in exc.names or f"total:{Totals.TEMPLATES}:{gallery.use_case}" in exc.names:
                raise ConflictError("the gallery is full (or was deleted) before the template was stored") from exc
            raise
        if request_id is not None:  # an Enrol request's end, said as a recognition's is (ids only)
            observability.outcome(
                request_id=request_id,
                tenant=ctx.tenant_id,
                operation="enrol",
                status="completed",
                reason_codes=[],
                gallery_id=gallery_id,
            )
        return EnrolResult(
            stored.template_id, gallery_id, subject_id, expires_at, embedding.model_version, decision, references
        )
