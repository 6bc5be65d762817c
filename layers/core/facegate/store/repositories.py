"""Repositories over the DynamoDB tables. None of them can cross tenants.

Every request-path method takes a :class:`~facegate.tenancy.TenantContext` first and builds every key
from ``ctx.tenant_id``; there is no scan and no method that accepts a tenant id from a request. A
gallery id of another tenant is simply not found (the same error, the same message, as a gallery that
does not exist). The operator-only :class:`TenantRegistry` is the one place that takes tenant ids.
SDK errors are translated here (``raise StorageError(...) from exc``).
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pynamodb.exceptions import DoesNotExist
from pynamodb.expressions.condition import size

from facegate.embedding import Embedding
from facegate.errors import (
    ConflictError,
    ConsentError,
    GalleryNotFoundError,
    InvalidIdentifierError,
    InvalidRequestError,
    TenantNotFoundError,
)
from facegate.policy.gate import ApprovalFacts, GalleryFacts, TenantFacts
from facegate.policy.vocabulary import validate_registration
from facegate.store.items import get_or_none, storage
from facegate.store.models import (
    SEP,
    ApprovalAttribute,
    ConsentRecord,
    CounterRecord,
    GalleryRecord,
    RequestRecord,
    TemplateRecord,
    TenantRecord,
    connection_of,
)
from facegate.store.writes import Write, commit
from facegate.tenancy import ENTITY_ID, TenantContext, check_entity_id, check_tenant_id

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


# --- tenants (operator only) -------------------------------------------------------------------------


@dataclass(frozen=True)
class Approval:
    use_case: str
    deployment: str
    jurisdiction: str
    approver: str
    approved_at: datetime
    expires_at: datetime
    status: str = "active"
    max_gallery_size: int | None = None


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    name: str
    sector: str
    country: str
    jurisdiction: str
    status: str
    approvals: tuple[Approval, ...]
    quotas: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    """use case → operation → ``{"per_minute": n, "per_day": n}``; only ever lower than the catalog's."""

    def facts(self) -> TenantFacts:
        """What the policy gate needs to know about this tenant."""
        return TenantFacts(
            tenant_id=self.tenant_id,
            sector=self.sector,
            country=self.country,
            jurisdiction=self.jurisdiction,
            active=self.status == "active",
            approvals=tuple(
                ApprovalFacts(use_case=a.use_case, deployment=a.deployment, expires_at=a.expires_at, status=a.status)
                for a in self.approvals
            ),
        )


def _tenant(record: TenantRecord) -> Tenant:
    return Tenant(
        tenant_id=record.tenant_id,
        name=record.name,
        sector=record.sector,
        country=record.country,
        jurisdiction=record.jurisdiction,
        status=record.status,
        approvals=tuple(
            Approval(
                use_case=a.use_case,
                deployment=a.deployment,
                jurisdiction=a.jurisdiction,
                approver=a.approver,
                approved_at=a.approved_at,
                expires_at=a.expires_at,
                status=a.status,
                max_gallery_size=int(a.max_gallery_size) if a.max_gallery_size is not None else None,
            )
            for a in record.approvals
        ),
        quotas=dict(record.quotas or {}),
    )


class TenantRegistry:
    """The tenant registry. Operators write it; the request path only reads the caller's own record."""

    def register(self, tenant_id: str, *, name: str, sector: str, country: str, jurisdiction: str) -> Tenant:
        """Register a tenant. Sector, country (ISO 3166-1 alpha-2) and jurisdiction are closed
        vocabularies, checked here exactly (``USA``, ``us`` or ``police`` are refused, never mapped),
        because the moratorium and the approvals are decided on them."""
        write = self.register_write(tenant_id, name=name, sector=sector, country=country, jurisdiction=jurisdiction)
        with storage("registering a tenant"):
            write.item.save(condition=write.condition)
        return _tenant(write.item)  # type: ignore[arg-type]

    def register_write(self, tenant_id: str, *, name: str, sector: str, country: str, jurisdiction: str) -> Write:
        """The write that registers a tenant (validated as :meth:`register`; fails if the id is taken)."""
        facts = validate_registration(sector, country, jurisdiction)
        if not name.strip() or len(name) > 200:
            raise InvalidRequestError("a tenant's name is 1-200 characters")
        record = TenantRecord(
            check_tenant_id(tenant_id),
            name=name.strip(),
            sector=facts.sector.value,
            country=facts.country,
            jurisdiction=facts.jurisdiction,
            status="active",
            approvals=[],
            quotas={},
            created_at=_now(),
        )
        return Write("save", record, "tenant", condition=TenantRecord.tenant_id.does_not_exist())

    def list_tenants(self) -> list[Tenant]:
        """Every registered tenant (an operator's listing: a scan of the registry, never on a request path)."""
        with storage("listing tenants"):
            return sorted((_tenant(r) for r in TenantRecord.scan()), key=lambda t: t.tenant_id)

    def get(self, tenant_id: str) -> Tenant:
        try:
            with storage("reading a tenant"):
                return _tenant(TenantRecord.get(check_tenant_id(tenant_id)))
        except DoesNotExist as exc:
            raise TenantNotFoundError(f"no tenant {tenant_id}") from exc

    def current(self, ctx: TenantContext) -> Tenant:
        """The caller's own tenant record (request path)."""
        return self.get(ctx.tenant_id)

    def approval_write(self, tenant_id: str, approval: Approval) -> Write:
        """The write that records an approval (an operator's; committed with its audit entry)."""
        item = ApprovalAttribute(  # type: ignore[no-untyped-call]
            use_case=approval.use_case,
            deployment=approval.deployment,
            jurisdiction=approval.jurisdiction,
            approver=approval.approver,
            approved_at=approval.approved_at,
            expires_at=approval.expires_at,
            status=approval.status,
            max_gallery_size=approval.max_gallery_size,
        )
        return Write(
            "update",
            TenantRecord(check_tenant_id(tenant_id)),
            "approval",
            actions=[TenantRecord.approvals.set(TenantRecord.approvals.append([item]))],
            condition=TenantRecord.tenant_id.exists(),
        )

    def add_approval(self, tenant_id: str, approval: Approval) -> Tenant:
        with storage("recording an approval"):
            commit([self.approval_write(tenant_id, approval)], connection_of(TenantRecord))
        return self.get(tenant_id)

    def set_quota(self, tenant_id: str, use_case: str, operation: str, *, per_minute: int, per_day: int) -> Tenant:
        """Lower a tenant's limits for one use case and operation (the catalog's limits stay the ceiling)."""
        write = self.quota_write(self.get(tenant_id), use_case, operation, per_minute=per_minute, per_day=per_day)
        with storage("setting a quota"):
            commit([write], connection_of(TenantRecord))
        return self.get(tenant_id)

    def quota_write(self, tenant: Tenant, use_case: str, operation: str, *, per_minute: int, per_day: int) -> Write:
        """The write that sets one quota, conditioned on the quotas read (a concurrent change fails it)."""
        if per_minute < 1 or per_day < 1:
            raise InvalidRequestError("quotas are positive whole numbers")
        quotas = {k: dict(v) for k, v in tenant.quotas.items()}
        quotas.setdefault(use_case, {})[operation] = {"per_minute": per_minute, "per_day": per_day}
        return Write(
            "update",
            TenantRecord(tenant.tenant_id),
            "quota",
            actions=[TenantRecord.quotas.set(quotas)],
            # The map as read: a concurrent change to another quota fails this one (the caller reads again),
            # never overwritten with a stale copy.
            condition=TenantRecord.tenant_id.exists() & (TenantRecord.quotas == tenant.quotas),
        )

    def set_status(self, tenant_id: str, status: str) -> None:
        with storage("changing a tenant's status"):
            commit([self.status_write(tenant_id, status)], connection_of(TenantRecord))

    def status_write(self, tenant_id: str, status: str) -> Write:
        if status not in {"active", "suspended"}:
            raise InvalidRequestError(f"a tenant's status is active or suspended, not {status!r}")
        return Write(
            "update",
            TenantRecord(check_tenant_id(tenant_id)),
            "status",
            actions=[TenantRecord.status.set(status)],
            condition=TenantRecord.tenant_id.exists(),
        )

    def revoke_write(self, tenant: Tenant, use_case: str) -> Write:
        """The write that revokes every active approval of ``use_case`` (the approvals as read must still
        be there: a concurrent approval or revocation fails the condition, and the caller retries)."""
        indexes = [i for i, a in enumerate(tenant.approvals) if a.use_case == use_case and a.status == "active"]
        if not indexes:
            raise InvalidRequestError(f"{tenant.tenant_id} holds no active approval for {use_case}")
        condition = size(TenantRecord.approvals) == len(tenant.approvals)  # type: ignore[no-untyped-call]
        actions = []
        for i in indexes:
            path = TenantRecord.approvals[i]
            condition &= path["use_case"] == use_case
            condition &= path["status"] == "active"
            actions.append(path["status"].set("revoked"))
        return Write("update", TenantRecord(tenant.tenant_id), "approval", actions=actions, condition=condition)


# --- galleries -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gallery:
    gallery_id: str
    use_case: str
    name: str
    max_size: int
    template_count: int
    version: int = 0
    """The gallery's change counter (see ``GalleryRecord.version``)."""
    snapshot: dict[str, Any] | None = None
    """The snapshot recorded for a version (see ``GalleryRecord.snapshot``)."""

    def facts(self) -> GalleryFacts:
        return GalleryFacts(gallery_id=self.gallery_id, use_case=self.use_case, size=self.template_count)


def _gallery(r: GalleryRecord) -> Gallery:
    return Gallery(
        r.gallery_id,
        r.use_case,
        r.name,
        int(r.max_size),
        int(r.template_count),
        int(r.version or 0),
        dict(r.snapshot) if r.snapshot else None,
    )


RESERVED_GALLERY_IDS: Final = frozenset(
    {"probes", "uploads", "calls", "manifests", "reports", "independent-tests", "snapshots"}
)
"""Names of the prefixes under ``tenants/<tenant>/``: a gallery named so would put keys such as
``calls/probes/...`` under the S3 event rule's ``tenants/*/probes/*`` (its ``*`` spans a ``/``)."""


class Galleries:
    def create_write(
        self, ctx: TenantContext, gallery_id: str, *, name: str, use_case: str, max_size: int
    ) -> tuple[Gallery, Write]:
        if gallery_id in RESERVED_GALLERY_IDS:
            raise InvalidIdentifierError(
                f"'{gallery_id}' names one of the service's own prefixes; choose another gallery id"
            )
        record = GalleryRecord(
            ctx.tenant_id,
            check_entity_id(gallery_id, "gallery"),
            use_case=use_case,
            name=name,
            source="consented_capture",
            max_size=max_size,
            template_count=0,
            created_at=_now(),
        )
        return _gallery(record), Write("save", record, "gallery", condition=GalleryRecord.gallery_id.does_not_exist())

    def create(self, ctx: TenantContext, gallery_id: str, *, name: str, use_case: str, max_size: int) -> Gallery:
        gallery, write = self.create_write(ctx, gallery_id, name=name, use_case=use_case, max_size=max_size)
        with storage("creating a gallery"):
            commit([write], connection_of(GalleryRecord))
        return gallery

    def find(self, ctx: TenantContext, gallery_id: str, *, consistent: bool = False) -> Gallery | None:
        """The caller's gallery, or ``None``: another tenant's gallery is indistinguishable from none.
        ``consistent``: a strongly consistent read (the version a cached copy is checked against)."""
        key = check_entity_id(gallery_id, "gallery")
        if consistent:
            try:
                with storage("reading a gallery"):
                    return _gallery(GalleryRecord.get(ctx.tenant_id, key, consistent_read=True))
            except DoesNotExist:
                return None
        record = get_or_none(GalleryRecord, "reading a gallery", ctx.tenant_id, key)
        return None if record is None else _gallery(record)

    def get(self, ctx: TenantContext, gallery_id: str) -> Gallery:
        gallery = self.find(ctx, gallery_id)
        if gallery is None:
            raise GalleryNotFoundError("No such gallery.")
        return gallery

    def delete_write(self, ctx: TenantContext, gallery: Gallery) -> Write:
        """Delete a gallery whose templates were all deleted, as of ``gallery.version`` (read after the
        last deletion): every template write and deletion raises the version, so an enrolment that
        committed since fails the condition and nothing is ever left under a deleted gallery. The count
        is not the condition: DynamoDB's TTL deletes templates without lowering it."""
        return Write(
            "delete",
            GalleryRecord(ctx.tenant_id, check_entity_id(gallery.gallery_id, "gallery")),
            "gallery",
            condition=GalleryRecord.gallery_id.exists() & (GalleryRecord.version == gallery.version),
        )

    def recount_write(self, ctx: TenantContext, gallery: Gallery, live: int) -> Write:
        """Set a gallery's count to the templates it really holds (DynamoDB's TTL deletes expired ones
        without telling anyone), only if no enrolment or deletion changed it in between."""
        return Write(
            "update",
            GalleryRecord(ctx.tenant_id, gallery.gallery_id),
            f"recount:{gallery.gallery_id}",
            actions=[GalleryRecord.template_count.set(live), GalleryRecord.version.add(1)],
            condition=GalleryRecord.template_count == gallery.template_count,
        )

    def list_all(self, ctx: TenantContext) -> list[Gallery]:
        with storage("listing galleries"):
            return [_gallery(r) for r in GalleryRecord.query(ctx.tenant_id, consistent_read=True)]


# --- templates -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredTemplate:
    template_id: str
    gallery_id: str
    subject_id: str
    consent_id: str
    embedding: Embedding
    expires_at: datetime
    references: int = 1
    """Photos fused into the template."""


TEMPLATE_ID: Final = re.compile(rf"(?:{ENTITY_ID.pattern.strip('^$')}){SEP}[0-9a-f]{{32}}")


def check_template_id(value: str, what: str = "a template id") -> str:
    """A template id as :meth:`Templates.template_id` makes them (``<subject>#<32 hex>``), or a 400: a
    caller's odd id never reaches DynamoDB (a key over 1,024 bytes would be its ValidationException)."""
    if not TEMPLATE_ID.fullmatch(value):
        raise InvalidRequestError(f"{what} is not a template id this API gave")
    return value


def _template(r: TemplateRecord) -> StoredTemplate:
    return StoredTemplate(
        template_id=r.template_id,
        gallery_id=r.gallery_id,
        subject_id=r.subject_id,
        consent_id=r.consent_id,
        embedding=Embedding.from_bytes(r.embedding, r.model_version),
        expires_at=r.expires_at,
        references=int(r.references or 1),
    )


class Templates:
    """Face templates (embeddings, never photos). Adds and deletes keep the gallery's count exact."""

    @staticmethod
    def template_id(ctx: TenantContext, gallery_id: str, subject_id: str, request_key: str) -> str:
        """The template id an enrolment request gets: derived from the request (for a bulk job, the
        manifest line), so a retried step or a second Batch attempt names the same template and its
        conditional write cannot store a second one."""
        digest = hashlib.sha256(f"{ctx.tenant_id}|{gallery_id}|{request_key}".encode()).hexdigest()[:32]
        return f"{check_entity_id(subject_id, 'subject')}{SEP}{digest}"

    def enrol_writes(
        self,
        ctx: TenantContext,
        gallery: Gallery,
        *,
        subject_id: str,
        consent_id: str,
        embedding: Embedding,
        expires_at: datetime,
        request_key: str,
        now: datetime,
        consent_purpose: str | None = None,
        references: int = 1,
    ) -> tuple[StoredTemplate, list[Write]]:
        """The writes that store one template: the template (only if its id is free), the gallery's
        count (only while under the cap) and, with ``consent_purpose``, a check that the consent is
        still granted, unexpired and for that purpose, all in the one transaction (with the audit
        entry), so an erasure or a withdrawal that revoked the consent first cannot be outrun."""
        subject = check_entity_id(subject_id, "subject")
        record = TemplateRecord(
            f"{ctx.tenant_id}{SEP}{gallery.gallery_id}",
            self.template_id(ctx, gallery.gallery_id, subject, request_key),
            tenant_subject=f"{ctx.tenant_id}{SEP}{subject}",
            tenant_id=ctx.tenant_id,
            gallery_id=gallery.gallery_id,
            subject_id=subject,
            embedding=embedding.to_bytes(),
            model_version=embedding.model_version,
            references=references,
            consent_id=consent_id,
            created_at=now,
            expires_at=expires_at,
        )
        writes = [
            Write("save", record, "template", condition=TemplateRecord.template_id.does_not_exist()),
            Write(
                "update",
                GalleryRecord(ctx.tenant_id, gallery.gallery_id),
                "gallery_capacity",
                actions=[GalleryRecord.template_count.add(1), GalleryRecord.version.add(1)],
                condition=GalleryRecord.gallery_id.exists() & (GalleryRecord.template_count < gallery.max_size),
            ),
        ]
        if consent_purpose is not None:
            key = f"{subject}{SEP}{check_entity_id(consent_id, 'consent')}"
            writes.append(
                Write(
                    "check",
                    ConsentRecord(ctx.tenant_id, key),
                    "consent",
                    condition=(ConsentRecord.status == "granted")
                    & (ConsentRecord.purpose == consent_purpose)
                    & (ConsentRecord.granted_at <= now)
                    & (ConsentRecord.expires_at > now),
                )
            )
        return _template(record), writes

    def add(
        self,
        ctx: TenantContext,
        gallery: Gallery,
        *,
        subject_id: str,
        consent_id: str,
        embedding: Embedding,
        expires_at: datetime,
        request_key: str | None = None,
    ) -> StoredTemplate:
        """Store one template without an audit entry (store-level tests); the service always records
        its enrolments with :meth:`enrol_writes` in the audit entry's transaction."""
        stored, writes = self.enrol_writes(
            ctx,
            gallery,
            subject_id=subject_id,
            consent_id=consent_id,
            embedding=embedding,
            expires_at=expires_at,
            request_key=request_key or uuid.uuid4().hex,
            now=_now(),
        )
        with storage("storing a template"):
            commit(writes, connection_of(TemplateRecord))
        return stored

    def get(self, ctx: TenantContext, gallery_id: str, template_id: str) -> StoredTemplate | None:
        key = f"{ctx.tenant_id}{SEP}{check_entity_id(gallery_id, 'gallery')}"
        record = get_or_none(TemplateRecord, "reading a template", key, template_id)
        return None if record is None else _template(record)

    def stored_in(self, ctx: TenantContext, gallery_id: str) -> list[StoredTemplate]:
        """Every template stored in one of the caller's galleries, expired ones too (strongly consistent)."""
        with storage("reading templates"):
            key = f"{ctx.tenant_id}{SEP}{check_entity_id(gallery_id, 'gallery')}"
            return [_template(r) for r in TemplateRecord.query(key, consistent_read=True)]

    def page(
        self, ctx: TenantContext, gallery_id: str, *, limit: int, after: str | None = None
    ) -> tuple[list[StoredTemplate], str | None]:
        """Up to ``limit`` templates of one of the caller's galleries in template-id order, from after
        ``after`` (the last template id of the page before); the second value is this page's last id
        when more may follow. The start key is rebuilt from the caller's tenant and gallery, so no token
        reaches another partition."""
        if not 1 <= limit <= 100:
            raise InvalidRequestError(f"a page holds 1 to 100 templates, not {limit}")
        key = f"{ctx.tenant_id}{SEP}{check_entity_id(gallery_id, 'gallery')}"
        start = None
        if after is not None:
            start = {"tenant_gallery": {"S": key}, "template_id": {"S": check_template_id(after, "next_token")}}
        with storage("listing templates"):
            found = TemplateRecord.query(key, limit=limit, last_evaluated_key=start, consistent_read=True)
            rows = [_template(r) for r in found if _owned(ctx, r, str(r.subject_id))]
            last = found.last_evaluated_key
        return rows, (str(last["template_id"]["S"]) if last else None)

    def in_gallery(
        self, ctx: TenantContext, gallery_id: str, *, now: datetime | None = None, consistent: bool = False
    ) -> list[StoredTemplate]:
        """Live templates of one of the caller's galleries (DynamoDB's TTL deletes lazily: filter here).
        ``consistent``: strongly consistent (what a cached copy of a gallery version is built from)."""
        cutoff = now or _now()
        with storage("reading templates"):
            records = TemplateRecord.query(
                f"{ctx.tenant_id}{SEP}{check_entity_id(gallery_id, 'gallery')}", consistent_read=consistent
            )
            return [_template(r) for r in records if r.expires_at > cutoff and _owned(ctx, r, str(r.subject_id))]

    def of_subject(self, ctx: TenantContext, subject_id: str, *, gallery_id: str | None = None) -> list[StoredTemplate]:
        """A subject's templates in one of the caller's galleries (or in all of them), read from the
        base table: its partition key leads with the tenant (IAM's LeadingKeys confines it) and the
        read is strongly consistent, so a template stored a moment ago is seen, unlike on the index."""
        subject = check_entity_id(subject_id, "subject")
        if gallery_id is not None:
            gallery_ids = [check_entity_id(gallery_id, "gallery")]
        else:
            with storage("listing galleries"):
                gallery_ids = [r.gallery_id for r in GalleryRecord.query(ctx.tenant_id, consistent_read=True)]
        found: list[StoredTemplate] = []
        with storage("reading a subject's templates"):
            for gid in gallery_ids:
                records = TemplateRecord.query(
                    f"{ctx.tenant_id}{SEP}{gid}",
                    TemplateRecord.template_id.startswith(f"{subject}{SEP}"),
                    consistent_read=True,
                )
                found.extend(_template(r) for r in records if _owned(ctx, r, subject))
        return found

    def indexed_of_subject(self, ctx: TenantContext, subject_id: str) -> list[StoredTemplate]:
        """A subject's templates found through the ``by_subject`` index (erasure's cross-check).

        IAM's LeadingKeys condition confines the base table's key only, never an index's: an item
        another tenant wrote with this tenant's ``tenant_subject`` is visible here. Every item whose
        base key or tenant attribute is not the caller's is dropped, counted and logged (ids only).
        """
        subject = check_entity_id(subject_id, "subject")
        with storage("reading a subject's templates"):
            records = list(TemplateRecord.by_subject.query(f"{ctx.tenant_id}{SEP}{subject}"))
        return [_template(r) for r in records if _owned(ctx, r, subject)]

    def delete_writes(self, ctx: TenantContext, templates: list[StoredTemplate]) -> list[Write]:
        """Delete each template (only if still there) and lower each gallery's count by as many (one
        update per gallery: a transaction may not touch an item twice)."""
        writes: list[Write] = []
        per_gallery: dict[str, int] = {}
        for t in templates:
            writes.append(
                Write(
                    "delete",
                    TemplateRecord(f"{ctx.tenant_id}{SEP}{t.gallery_id}", t.template_id),
                    f"template:{t.template_id}",
                    condition=TemplateRecord.template_id.exists(),
                )
            )
            per_gallery[t.gallery_id] = per_gallery.get(t.gallery_id, 0) + 1
        for gallery_id, n in per_gallery.items():
            writes.append(
                Write(
                    "update",
                    GalleryRecord(ctx.tenant_id, gallery_id),
                    f"count:{gallery_id}",
                    actions=[GalleryRecord.template_count.add(-n), GalleryRecord.version.add(1)],
                    condition=GalleryRecord.gallery_id.exists(),
                )
            )
        return writes

    def delete(self, ctx: TenantContext, templates: list[StoredTemplate]) -> int:
        """Delete templates (each with its gallery's count) without an audit entry (store-level
        tests); returns how many were deleted."""
        deleted = 0
        for t in templates:
            try:
                with storage("deleting a template"):
                    commit(self.delete_writes(ctx, [t]), connection_of(TemplateRecord))
            except ConflictError:
                continue  # already gone (a concurrent erasure or TTL): nothing left to delete
            deleted += 1
        return deleted


def _owned(ctx: TenantContext, record: TemplateRecord, subject: str) -> bool:
    """Whether an item read for ``ctx`` really is the caller's: base key, tenant and subject attributes."""
    ok = (
        record.tenant_id == ctx.tenant_id
        and record.tenant_gallery == f"{ctx.tenant_id}{SEP}{record.gallery_id}"
        and record.tenant_subject == f"{ctx.tenant_id}{SEP}{subject}"
        and record.subject_id == subject
        and record.template_id.startswith(f"{subject}{SEP}")
    )
    if not ok:
        _report_foreign(ctx, record)
    return ok


def _report_foreign(ctx: TenantContext, record: TemplateRecord) -> None:
    # Ids only (never the embedding): which partition the stray item sits in, and for whom it was read.
    from facegate.observability import foreign_item

    foreign_item(caller=ctx.tenant_id, partition=str(record.tenant_gallery), template_id=str(record.template_id))


# --- consent -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Consent:
    subject_id: str
    consent_id: str
    purpose: str
    granted_at: datetime
    expires_at: datetime
    evidence_hash: str
    status: str

    def valid_for(self, purpose: str, now: datetime) -> bool:
        return self.status == "granted" and self.purpose == purpose and self.granted_at <= now < self.expires_at


def _consent(r: ConsentRecord) -> Consent:
    return Consent(r.subject_id, r.consent_id, r.purpose, r.granted_at, r.expires_at, r.evidence_hash, r.status)


class Consents:
    def record(
        self,
        ctx: TenantContext,
        *,
        subject_id: str,
        purpose: str,
        granted_at: datetime,
        expires_at: datetime,
        evidence_hash: str,
    ) -> Consent:
        """Record a consent without an audit entry (store-level tests)."""
        consent, write = self.record_write(
            ctx,
            subject_id=subject_id,
            purpose=purpose,
            granted_at=granted_at,
            expires_at=expires_at,
            evidence_hash=evidence_hash,
        )
        with storage("recording a consent"):
            commit([write], connection_of(ConsentRecord))
        return consent

    def record_write(
        self,
        ctx: TenantContext,
        *,
        subject_id: str,
        purpose: str,
        granted_at: datetime,
        expires_at: datetime,
        evidence_hash: str,
        consent_id: str | None = None,
    ) -> tuple[Consent, Write]:
        """The consent and the write that records it (committed with its audit entry by the service)."""
        if expires_at <= granted_at:
            raise ConsentError("a consent must expire after it is granted")
        if len(evidence_hash) != 64 or any(c not in "0123456789abcdef" for c in evidence_hash):
            raise ConsentError("the evidence reference is the sha256 (hex) of the signed consent")
        subject = check_entity_id(subject_id, "subject")
        consent_id = check_entity_id(consent_id or uuid.uuid4().hex, "consent")
        record = ConsentRecord(
            ctx.tenant_id,
            f"{subject}{SEP}{consent_id}",
            subject_id=subject,
            consent_id=consent_id,
            purpose=purpose,
            granted_at=granted_at,
            expires_at=expires_at,
            evidence_hash=evidence_hash,
            status="granted",
        )
        return _consent(record), Write("save", record, "consent", condition=ConsentRecord.consent_key.does_not_exist())

    def get(self, ctx: TenantContext, subject_id: str, consent_id: str) -> Consent | None:
        key = f"{check_entity_id(subject_id, 'subject')}{SEP}{check_entity_id(consent_id, 'consent')}"
        record = get_or_none(ConsentRecord, "reading a consent", ctx.tenant_id, key)
        return None if record is None else _consent(record)

    def of_subject(self, ctx: TenantContext, subject_id: str) -> list[Consent]:
        prefix = f"{check_entity_id(subject_id, 'subject')}{SEP}"
        with storage("reading consents"):
            return [
                _consent(r) for r in ConsentRecord.query(ctx.tenant_id, ConsentRecord.consent_key.startswith(prefix))
            ]

    def revoke_write(self, ctx: TenantContext, subject_id: str, consent_id: str, now: datetime) -> Write:
        """Revoke a consent (only one that exists): from then on no template can be stored under it,
        because every template write checks the consent in its own transaction."""
        key = f"{check_entity_id(subject_id, 'subject')}{SEP}{check_entity_id(consent_id, 'consent')}"
        return Write(
            "update",
            ConsentRecord(ctx.tenant_id, key),
            f"consent:{consent_id}",
            actions=[ConsentRecord.status.set("revoked"), ConsentRecord.revoked_at.set(now)],
            condition=ConsentRecord.consent_key.exists(),
        )

    def revoke(self, ctx: TenantContext, subject_id: str, consent_id: str, now: datetime) -> None:
        with storage("revoking a consent"):
            commit([self.revoke_write(ctx, subject_id, consent_id, now)], connection_of(ConsentRecord))


# --- counters ------------------------------------------------------------------------------------------


class Counters:
    """Atomic per-tenant counters in fixed windows (``ADD`` is atomic in DynamoDB)."""

    def hit(self, ctx: TenantContext, name: str, *, window: timedelta, now: datetime, amount: int = 1) -> int:
        """Count ``amount`` events in the current window of ``name`` and return the window's total."""
        seconds = int(window.total_seconds())
        bucket = int(now.timestamp()) // seconds
        record = CounterRecord(ctx.tenant_id, f"{name}{SEP}{seconds}{SEP}{bucket}")
        expires = datetime.fromtimestamp((bucket + 2) * seconds, UTC)
        with storage("counting a request"):
            # UpdateItem returns the new value (ALL_NEW) and pynamodb writes it back onto `record`.
            record.update(actions=[CounterRecord.hits.add(amount), CounterRecord.expires_at.set(expires)])
        return int(record.hits)


class Totals:
    """A tenant's totals per use case (its galleries, its templates) in the counters table, kept in
    the same transactions as the changes they count, so a cap holds under concurrent requests."""

    GALLERIES: Final = "galleries"
    TEMPLATES: Final = "templates"

    @staticmethod
    def _key(kind: str, use_case: str) -> str:
        return f"total{SEP}{kind}{SEP}{use_case}"

    def read(self, ctx: TenantContext, kind: str, use_case: str) -> int:
        record = get_or_none(CounterRecord, "reading a total", ctx.tenant_id, self._key(kind, use_case))
        return int(record.hits) if record is not None and record.hits is not None else 0

    def add_write(self, ctx: TenantContext, kind: str, use_case: str, n: int, *, cap: int | None = None) -> Write:
        """Add ``n`` (negative to subtract); with a ``cap``, only while the total is below it."""
        condition = None
        if cap is not None:
            condition = CounterRecord.hits.does_not_exist() | (CounterRecord.hits <= cap - n)
        return Write(
            "update",
            CounterRecord(ctx.tenant_id, self._key(kind, use_case)),
            f"total:{kind}:{use_case}",
            actions=[CounterRecord.hits.add(n)],
            condition=condition,
        )

    def set_write(self, ctx: TenantContext, kind: str, use_case: str, *, was: int, now: int) -> Write:
        """Correct a total from ``was`` to ``now`` (a recount), only if no change came in between."""
        key = self._key(kind, use_case)
        condition = (
            (CounterRecord.hits == was) if was else (CounterRecord.hits.does_not_exist() | (CounterRecord.hits == 0))
        )
        return Write(
            "update",
            CounterRecord(ctx.tenant_id, key),
            f"total:{kind}:{use_case}",
            actions=[CounterRecord.hits.set(now)],
            condition=condition,
        )


PROBE_MEMORY_SIZE: Final = 256
"""Recent verification probes remembered per tenant and use case (float16: 256 bytes each, 64 KiB in
all, well inside DynamoDB's 400 KB item limit). A sweep must interleave this many other verifications
between two attempts with the same face to slip past the near-duplicate check."""


def _subject_number(subject: str) -> int:
    return int(hashlib.sha256(subject.encode()).hexdigest()[:12], 16)


class ProbeMemory:
    """What the enumeration check remembers: which subject a probe was verified against, for a window.

    Three signals, each refusing 1:1 calls that add up to 1:N: the same image (content hash) verified
    against a second subject; a near-duplicate face (cosine at the use case's threshold: the same person
    by the service's own rule) verified against a second subject; and the number of distinct subjects a
    tenant verified against today. Kept in the counters table under the tenant's key, encrypted at rest,
    expiring with the window: the remembered probe templates are biometric data and live no longer.
    """

    def claim_content(
        self, ctx: TenantContext, use_case: str, content_sha256: str, subject_id: str, now: datetime, window: timedelta
    ) -> bool:
        """Remember that this image is verified against ``subject_id``; ``False`` when the same image
        was verified against another subject within the window."""
        record = CounterRecord(
            ctx.tenant_id,
            f"probe-content{SEP}{use_case}{SEP}{content_sha256}",
            hits=_subject_number(subject_id),
            expires_at=now + window,
        )
        same_or_new = (
            CounterRecord.counter_key.does_not_exist()
            | (CounterRecord.hits == _subject_number(subject_id))
            | (CounterRecord.expires_at < now)
        )
        try:
            with storage("remembering a probe"):
                record.save(condition=same_or_new)
        except ConflictError:
            return False
        return True

    def distinct_subjects(self, ctx: TenantContext, use_case: str, subject_id: str, now: datetime) -> int:
        """Count ``subject_id`` among the subjects verified against today; returns today's total."""
        day = now.strftime("%Y%m%d")
        marker = CounterRecord(
            ctx.tenant_id,
            f"verified{SEP}{use_case}{SEP}{day}{SEP}{check_entity_id(subject_id, 'subject')}",
            hits=1,
            expires_at=now + timedelta(days=2),
        )
        total = CounterRecord(ctx.tenant_id, f"distinct{SEP}{use_case}{SEP}{day}")
        try:
            with storage("counting a subject"):
                marker.save(condition=CounterRecord.counter_key.does_not_exist())
        except ConflictError:  # already counted today
            record = get_or_none(CounterRecord, "reading a count", total.tenant_id, total.counter_key)
            return int(record.hits) if record is not None else 0
        with storage("counting a subject"):
            total.update(actions=[CounterRecord.hits.add(1), CounterRecord.expires_at.set(now + timedelta(days=2))])
        return int(total.hits)

    def near_duplicate(
        self,
        ctx: TenantContext,
        use_case: str,
        probe: Embedding,
        subject_id: str,
        *,
        threshold: float,
        now: datetime,
        window: timedelta,
        attempts: int = 5,
    ) -> bool:
        """``True`` when a probe verified against another subject within the window is the same face
        (cosine ≥ ``threshold``); otherwise remember this probe and return ``False``."""
        import numpy as np

        key = f"recent-probes{SEP}{use_case}"
        vector = probe.vector.astype("<f2")
        for _ in range(attempts):
            record = get_or_none(CounterRecord, "reading recent probes", ctx.tenant_id, key)
            version = int(record.hits) if record is not None and record.hits is not None else 0
            names = [str(n) for n in (record.names or [])] if record is not None else []
            blob = bytes(record.blob or b"") if record is not None else b""
            kept: list[tuple[str, bytes]] = []
            for i, name in enumerate(names):
                at, _, subject = name.partition("|")
                chunk = blob[i * 256 : (i + 1) * 256]
                if len(chunk) == 256 and float(at) > (now - window).timestamp():
                    kept.append((f"{at}|{subject}", chunk))
            others = [chunk for name, chunk in kept if name.partition("|")[2] != subject_id]
            if others:
                matrix = np.frombuffer(b"".join(others), dtype="<f2").reshape(-1, 128).astype(np.float32)
                if float(np.max(matrix @ probe.vector)) >= threshold:
                    return True
            kept = [*kept, (f"{now.timestamp():.3f}|{subject_id}", vector.tobytes())][-PROBE_MEMORY_SIZE:]
            fresh = CounterRecord(
                ctx.tenant_id,
                key,
                hits=version + 1,
                blob=b"".join(chunk for _, chunk in kept),
                names=[name for name, _ in kept],
                expires_at=now + window,
            )
            condition = (
                CounterRecord.counter_key.does_not_exist() if record is None else (CounterRecord.hits == version)
            )
            try:
                with storage("remembering a probe"):
                    fresh.save(condition=condition)
            except ConflictError:
                continue  # a concurrent verification got there first: read again
            return False
        raise ConflictError("the recent-probe memory kept changing under concurrent verifications; try again")


# --- requests and results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestRow:
    request_id: str
    operation: str
    gallery_id: str | None
    status: str
    decision: dict[str, Any]
    result: dict[str, Any] | None
    review_state: str
    reviewers: tuple[str, ...]
    requested_by: str | None = None
    purpose: str | None = None
    case_reference: str | None = None
    redacted: bool = False


def _request(r: RequestRecord) -> RequestRow:
    return RequestRow(
        r.request_id,
        r.operation,
        r.gallery_id,
        r.status,
        r.decision,
        r.result,
        r.review_state,
        tuple(str(x) for x in r.reviewers),
        r.requested_by,
        r.purpose,
        r.case_reference,
        r.redacted_at is not None,
    )


ERASED: Final = "[erased]"


def subjects_named(result: dict[str, Any] | None) -> list[str]:
    """The subject ids a stored result names (a verification's subject, a search's candidates)."""
    if not result:
        return []
    named = [str(result["subject_id"])] if result.get("subject_id") else []
    named += [str(c["subject_id"]) for c in result.get("candidates", []) if c.get("subject_id")]
    for face in result.get("faces") or []:  # a photo search: each face's own candidates
        named += subjects_named(face)
    return sorted(set(named) - {ERASED})


def redact(result: dict[str, Any] | None, subject_id: str) -> dict[str, Any] | None:
    """The result with every trace of ``subject_id`` (its id, scores, template ids) replaced."""
    if result is None:
        return None
    out = dict(result)
    if out.get("subject_id") == subject_id:
        out.update(subject_id=ERASED, template_id=None, score=None, references=None)
    if "candidates" in out:
        out["candidates"] = [
            {"subject_id": ERASED, "template_id": None, "score": None} if c.get("subject_id") == subject_id else c
            for c in out["candidates"]
        ]
    if out.get("faces"):  # a photo search: every face's candidates too
        out["faces"] = [redact(face, subject_id) for face in out["faces"]]
    return out


class Requests:
    def put_write(
        self,
        ctx: TenantContext,
        *,
        request_id: str,
        operation: str,
        gallery_id: str | None,
        status: str,
        decision: dict[str, Any],
        result: dict[str, Any] | None,
        review_state: str,
        retention: timedelta,
        purpose: str | None = None,
        case_reference: str | None = None,
    ) -> tuple[RequestRow, Write]:
        """The request's row and the write that stores it once (a second write for the same request
        id fails its condition: that is how a retried step finds it was already recorded)."""
        now = _now()
        record = RequestRecord(
            ctx.tenant_id,
            check_entity_id(request_id, "request"),
            operation=operation,
            gallery_id=gallery_id,
            status=status,
            decision=decision,
            result=result,
            review_state=review_state,
            reviewers=[],
            requested_by=ctx.actor,
            purpose=purpose,
            case_reference=case_reference,
            subjects=subjects_named(result),
            created_at=now,
            expires_at=now + retention,
        )
        return _request(record), Write("save", record, "request", condition=RequestRecord.request_id.does_not_exist())

    def put(self, ctx: TenantContext, *, request_id: str | None = None, **row: Any) -> RequestRow:
        """Store a row with no audit entry (store-level tests)."""
        stored, write = self.put_write(ctx, request_id=request_id or uuid.uuid4().hex, **row)
        with storage("recording a request"):
            commit([write], connection_of(RequestRecord))
        return stored

    def get(self, ctx: TenantContext, request_id: str) -> RequestRow | None:
        key = check_entity_id(request_id, "request")
        try:
            with storage("reading a request"):
                record = RequestRecord.get(ctx.tenant_id, key, consistent_read=True)
        except DoesNotExist:
            return None
        return _request(record)

    def page(self, ctx: TenantContext, *, limit: int, after: str | None = None) -> tuple[list[RequestRow], str | None]:
        """Up to ``limit`` of the caller's requests in request-id order, from after ``after`` (the last id
        of the page before); the second value is the last id of this page when more may follow. The start
        key is rebuilt from the caller's tenant, so no token can reach another partition."""
        if not 1 <= limit <= 100:
            raise InvalidRequestError(f"a page holds 1 to 100 requests, not {limit}")
        start = None
        if after is not None:
            start = {"tenant_id": {"S": ctx.tenant_id}, "request_id": {"S": check_entity_id(after, "request")}}
        with storage("listing requests"):
            found = RequestRecord.query(ctx.tenant_id, limit=limit, last_evaluated_key=start, consistent_read=True)
            rows = [_request(record) for record in found]
            last = found.last_evaluated_key
        return rows, (str(last["request_id"]["S"]) if last else None)

    def review_write(
        self, ctx: TenantContext, row: RequestRow, *, reviewer: str, confirm: bool, needed: int
    ) -> tuple[str, Write]:
        """One reviewer's decision as a conditional list append: it lands only if the row is still
        pending with exactly the reviewers read (so two reviewers at the same moment cannot overwrite
        each other: the second fails its condition, re-reads and counts too) and this reviewer is new."""
        count = len(row.reviewers) + 1
        state = "rejected" if not confirm else ("confirmed" if count >= needed else "pending")
        write = Write(
            "update",
            RequestRecord(ctx.tenant_id, row.request_id),
            "review",
            actions=[
                RequestRecord.reviewers.set(RequestRecord.reviewers.append([reviewer])),
                RequestRecord.review_state.set(state),
            ],
            condition=(RequestRecord.review_state == "pending")
            & (size(RequestRecord.reviewers) == len(row.reviewers))  # type: ignore[no-untyped-call]
            & ~RequestRecord.reviewers.contains(reviewer),
        )
        return state, write

    def naming(self, ctx: TenantContext, subject_id: str) -> list[RequestRow]:
        """The caller's request rows whose result names ``subject_id`` (erasure redacts them)."""
        subject = check_entity_id(subject_id, "subject")
        with storage("reading requests"):
            records = RequestRecord.query(
                ctx.tenant_id, filter_condition=RequestRecord.subjects.contains(subject), consistent_read=True
            )
            return [_request(r) for r in records]

    def redact_write(self, ctx: TenantContext, row: RequestRow, subject_id: str, now: datetime) -> Write:
        """Replace every trace of an erased subject in one row (id, scores, template ids)."""
        remaining = [s for s in subjects_named(row.result) if s != subject_id]
        return Write(
            "update",
            RequestRecord(ctx.tenant_id, row.request_id),
            f"request:{row.request_id}",
            actions=[
                RequestRecord.result.set(redact(row.result, subject_id)),
                RequestRecord.subjects.set(remaining),  # type: ignore[arg-type]
                RequestRecord.redacted_at.set(now),
            ],
            condition=RequestRecord.request_id.exists(),
        )
