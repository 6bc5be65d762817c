"""A tenant managing what it holds: its galleries' templates page by page, one template deleted, a gallery
deleted, its subjects' consents. Every change goes through the gate (deletion is always allowed, as
erasure is) and commits with its audit entry; reads show ids, dates and counts, never an embedding."""

from __future__ import annotations

from typing import Any

from facegate.audit import JSON
from facegate.errors import ConflictError, ResourceNotFoundError, WriteConditionError
from facegate.policy import Operation
from facegate.service.base import ServiceBase
from facegate.service.records import ERASURE_ROUNDS, TEMPLATES_PER_TRANSACTION, chunks
from facegate.store.repositories import Consent, StoredTemplate, Totals, check_template_id
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
        found = self.templates.get(ctx, gallery.gallery_id, check_template_id(template_id))
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
        45), then the gallery with its place under the tenant's cap, only as of the version read after the
        last deletion (an enrolment that committed meanwhile raises it: another round deletes that too). A
        call that stopped half way is finished by calling again; a concurrent twin finds it done."""
        self._decide(ctx, Operation.DELETE_SUBJECT, "erasure")
        gallery_id = check_entity_id(gallery_id, "gallery")
        self.galleries.get(ctx, gallery_id)  # one the caller does not hold is not found
        deleted = 0
        for _ in range(DELETE_ROUNDS):
            deleted += self._delete_templates_of(ctx, gallery_id)
            current = self.galleries.find(ctx, gallery_id, consistent=True)
            if current is None:  # a concurrent deletion finished it
                return {"gallery_id": gallery_id, "deleted": True, "templates_deleted": deleted}
            if self.templates.stored_in(ctx, gallery_id):
                continue  # an enrolment committed since: delete it in the next round
            writes = [
                self.galleries.delete_write(ctx, current),
                self.totals.add_write(ctx, Totals.GALLERIES, current.use_case, -1),
            ]
            details: dict[str, JSON] = {
                "gallery_id": gallery_id,
                "use_case": current.use_case,
                "templates_deleted": deleted,
            }
            try:
                self.audit.append(ctx, "gallery.deleted", details, writes=writes)
            except WriteConditionError:
                continue  # changed since the read (an enrolment, a twin): read again
            self.snapshots.purge(ctx, [gallery_id])
            return {"gallery_id": gallery_id, "deleted": True, "templates_deleted": deleted}
        raise ConflictError("the gallery kept changing while it was being deleted (enrolments?): call again")

    def _delete_templates_of(self, ctx: TenantContext, gallery_id: str) -> int:
        """Delete every template stored in the gallery now, audited per transaction; how many."""
        deleted = 0
        for chunk in chunks(self.templates.stored_in(ctx, gallery_id), TEMPLATES_PER_TRANSACTION):
            batch = list(chunk)
            for _ in range(ERASURE_ROUNDS):
                if not batch:
                    break
                ids: list[JSON] = [t.template_id for t in batch]
                listed: dict[str, JSON] = {"gallery_id": gallery_id, "template_ids": ids}
                try:
                    self.audit.append(ctx, "gallery.templates_deleted", listed, writes=self.delete_writes(ctx, batch))
                except WriteConditionError:  # one went meanwhile (TTL, erasure): delete what is left
                    batch = [t for t in batch if self.templates.get(ctx, t.gallery_id, t.template_id)]
                    continue
                deleted += len(batch)
                break
        return deleted

    def consents_of(self, ctx: TenantContext, subject_id: str) -> list[Consent]:
        return self.consents.of_subject(ctx, check_entity_id(subject_id, "subject"))

    def consent(self, ctx: TenantContext, subject_id: str, consent_id: str) -> Consent:
        found = self.consents.get(ctx, check_entity_id(subject_id, "subject"), check_entity_id(consent_id, "consent"))
        if found is None:
            raise ResourceNotFoundError(f"no consent {consent_id} of subject {subject_id}")
        return found
