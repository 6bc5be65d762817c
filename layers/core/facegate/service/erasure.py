"""Consent withdrawal and erasure: revoke first, then delete, redact and re-check; every step audited."""

from __future__ import annotations

from typing import TYPE_CHECKING

from facegate.audit import JSON
from facegate.errors import (
    ConsentError,
    WriteConditionError,
)
from facegate.policy import Operation
from facegate.tenancy import TenantContext, check_entity_id

if TYPE_CHECKING:  # the vision stack (onnxruntime, OpenCV) stays out of the non-vision functions
    pass

from facegate.service.base import ServiceBase
from facegate.service.records import (
    ERASURE_ROUNDS,
    TEMPLATES_PER_TRANSACTION,
    ErasureReceipt,
    chunks,
)


class Erasure(ServiceBase):
    def revoke_consent(self, ctx: TenantContext, subject_id: str, consent_id: str) -> int:
        """Revoking a consent deletes every template enrolled under it; returns how many.

        The revocation, the deletions and the audit entry are one transaction. Every template write
        checks its consent in its own transaction, so once this commits none can follow it; a template
        that committed just before is found by the strongly consistent re-read and deleted too."""
        if self.consents.get(ctx, subject_id, consent_id) is None:
            raise ConsentError("No such consent.")
        now = self.clock()
        deleted = 0
        touched: set[str] = set()
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
                    writes=[*revoke, *self.delete_writes(ctx, doomed)],
                )
            except WriteConditionError:
                continue  # a template went meanwhile (TTL, a concurrent erasure): read again
            deleted += len(doomed)
            touched.update(t.gallery_id for t in doomed)
            revoke = []
        self.snapshots.purge(ctx, sorted(touched))  # the versions that held them are never loaded again
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
        for chunk in chunks(revoked):
            self.audit.append(
                ctx,
                "subject.erasure.consents_revoked",
                {"subject_id": subject, "consent_ids": chunk},
                writes=[self.consents.revoke_write(ctx, subject, cid, now) for cid in chunk],
            )
        deleted: list[str] = []
        redacted: list[str] = []
        touched: set[str] = set()
        for _ in range(ERASURE_ROUNDS):
            found = {t.template_id: t for t in self.templates.of_subject(ctx, subject)}
            found.update({t.template_id: t for t in self.templates.indexed_of_subject(ctx, subject)})
            doomed = list(found.values())
            rows = [r for r in self.requests.naming(ctx, subject) if r.request_id not in redacted]
            if not doomed and not rows:
                break
            try:
                for tchunk in chunks(doomed, size=TEMPLATES_PER_TRANSACTION):
                    self.audit.append(
                        ctx,
                        "subject.erasure.templates_deleted",
                        {"subject_id": subject, "template_ids": [t.template_id for t in tchunk]},
                        writes=self.delete_writes(ctx, tchunk),
                    )
                    deleted += [t.template_id for t in tchunk]
                    touched.update(t.gallery_id for t in tchunk)
                for rchunk in chunks(rows):
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
        unpurged = self.snapshots.purge(ctx, sorted(touched))
        remaining = [
            {
                "what": "audit entries naming the subject id (no biometric data)",
                "where": "the tenant's audit log",
                "why": "the record of every decision is append-only and outlives the data it describes",
            },
        ]
        if left:
            remaining.append({"what": f"{left} templates", "where": "templates table", "why": "erasure did not finish"})
        for key in unpurged:
            remaining.append(
                {
                    "what": "a gallery snapshot that held the subject's templates",
                    "where": key,
                    "why": "its deletion failed; the bucket's lifecycle rule deletes it within two days",
                }
            )
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
