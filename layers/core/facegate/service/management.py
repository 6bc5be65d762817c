"""A tenant managing what it holds: its galleries' templates page by page, one template deleted, a gallery
deleted, its subjects' consents. Every change goes through the gate (deletion is always allowed, as
erasure is) and commits with its audit entry; reads show ids, dates and counts, never an embedding."""

from __future__ import annotations

from typing import Any

from facegate.errors import InvalidRequestError, ResourceNotFoundError, WriteConditionError
from facegate.policy import Operation
from facegate.service.base import ServiceBase
from facegate.service.records import ERASURE_ROUNDS, TEMPLATES_PER_TRANSACTION, chunks
from facegate.store.repositories import Consent, StoredTemplate
from facegate.tenancy import TenantContext, check_entity_id

DELETE_ROUNDS = 5
"""Reads of a gallery's templates while deleting it: an enrolment that commits meanwhile is deleted too."""


def template_view(t: StoredTemplate) -> dict[str, Any]:
    return {
        "template_id": t.template_id,
        "subject_id": t.subject_id,
        "consent_id": t.consent_id,
        "expires_at": t.expires_at.isoformat(),
        "model_version": t.embedding.model_version,
        "references": t.references,
    }


def consent_view(c: Consent) -> dict[str, Any]:
    return {
        "subject_id": c.subject_id,
        "consent_id": c.consent_id,
        "purpose": c.purpose,
        "status": c.status,
        "granted_at": c.granted_at.isoformat(),
        "expires_at": c.expires_at.isoformat(),
        "evidence_sha256": c.evidence_hash,
    }


class Management(ServiceBase):
    def templates_page(
        self, ctx: TenantContext, gallery_id: str, *, limit: int, after: str | None
    ) -> tuple[list[StoredTemplate], str | None]:
        """One page of a gallery's templates (a gallery the caller does not hold is not found)."""
        self.galleries.get(ctx, gallery_id)
        return self.templates.page(ctx, gallery_id, limit=limit, after=after)

    def delete_template(self, ctx: TenantContext, gallery_id: str, template_id: str) -> dict[str, Any]:
        """Delete one template (the subject's others and its consent stay), with its gallery's count and
        the tenant's totals, in one audited transaction."""
        self._decide(ctx, Operation.DELETE_SUBJECT, "erasure")
        gallery = self.galleries.get(ctx, gallery_id)
        if not 1 <= len(template_id) <= 300:
            raise InvalidRequestError("a template id is what the API listed")
        found = self.templates.get(ctx, gallery.gallery_id, template_id)
        if found is None:
            raise ResourceNotFoundError(f"no template {template_id} in gallery {gallery_id}")
        details = {"gallery_id": gallery.gallery_id, "template_id": template_id, "subject_id": found.subject_id}
        try:
            self.audit.append(ctx, "template.deleted", details, writes=self.delete_writes(ctx, [found]))
        except WriteConditionError as exc:  # deleted meanwhile (a concurrent deletion, erasure or TTL)
            raise ResourceNotFoundError(f"no template {template_id} in gallery {gallery_id}") from exc
        self.snapshots.purge(ctx, [gallery.gallery_id])
        return {"gallery_id": gallery.gallery_id, "template_id": template_id, "deleted": True}

    def delete_gallery(self, ctx: TenantContext, gallery_id: str) -> dict[str, Any]:
        """Delete a gallery and every template in it: templates first (audited, in transactions of up to
        45), then the gallery itself, only once it counts none (an enrolment that committed meanwhile is
        read and deleted in the next round). A call that stopped half way is finished by calling again."""
        self._decide(ctx, Operation.DELETE_SUBJECT, "erasure")
        gallery = self.galleries.get(ctx, check_entity_id(gallery_id, "gallery"))
        deleted = 0
        for _ in range(DELETE_ROUNDS):
            for batch in chunks(self.templates.stored_in(ctx, gallery.gallery_id), TEMPLATES_PER_TRANSACTION):
                ids = [t.template_id for t in batch]
                for _attempt in range(ERASURE_ROUNDS):
                    try:
                        self.audit.append(
                            ctx,
                            "gallery.templates_deleted",
                            {"gallery_id": gallery.gallery_id, "template_ids": ids},
                            writes=self.delete_writes(ctx, list(batch)),
                        )
                    except WriteConditionError:  # one went meanwhile: delete what is left of the batch
                        batch = [t for t in batch if self.templates.get(ctx, t.gallery_id, t.template_id)]
                        ids = [t.template_id for t in batch]
                        if not batch:
                            break
                        continue
                    deleted += len(batch)
                    break
            try:
                self.audit.append(
                    ctx,
                    "gallery.deleted",
                    {"gallery_id": gallery.gallery_id, "use_case": gallery.use_case, "templates_deleted": deleted},
                    writes=[self.galleries.delete_write(ctx, gallery.gallery_id)],
                )
            except WriteConditionError:
                continue  # a template committed since the read: another round
            self.snapshots.purge(ctx, [gallery.gallery_id])
            return {"gallery_id": gallery.gallery_id, "deleted": True, "templates_deleted": deleted}
        raise InvalidRequestError("the gallery kept receiving enrolments while it was being deleted: try again")

    def consents_of(self, ctx: TenantContext, subject_id: str) -> list[Consent]:
        return self.consents.of_subject(ctx, check_entity_id(subject_id, "subject"))

    def consent(self, ctx: TenantContext, subject_id: str, consent_id: str) -> Consent:
        found = self.consents.get(ctx, check_entity_id(subject_id, "subject"), check_entity_id(consent_id, "consent"))
        if found is None:
            raise ResourceNotFoundError(f"no consent {consent_id} of subject {subject_id}")
        return found
