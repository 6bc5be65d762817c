"""Repositories over the DynamoDB tables. None of them can cross tenants.

Every request-path method takes a :class:`~facegate.tenancy.TenantContext` first and builds every key
from ``ctx.tenant_id``; there is no scan and no method that accepts a tenant id from a request. A
gallery id of another tenant is simply not found (the same error, the same message, as a gallery that
does not exist). The operator-only :class:`TenantRegistry` is the one place that takes tenant ids.
SDK errors are translated here (``raise StorageError(...) from exc``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pynamodb.exceptions import DoesNotExist, PynamoDBException
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from facegate.embedding import Embedding
from facegate.errors import ConflictError, ConsentError, GalleryNotFoundError, StorageError, TenantNotFoundError
from facegate.policy.gate import ApprovalFacts, GalleryFacts, TenantFacts
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
from facegate.tenancy import TenantContext, check_entity_id, check_tenant_id

M = TypeVar("M", bound=Model)
_CONFLICT_CODES = {"ConditionalCheckFailedException", "TransactionCanceledException"}


@contextmanager
def storage(what: str) -> Iterator[None]:
    """Translate pynamodb/botocore failures into facegate's errors."""
    try:
        yield
    except DoesNotExist:
        raise  # a missing item is an answer, not a failure: callers turn it into their own result
    except PynamoDBException as exc:
        code = getattr(exc, "cause_response_code", None)
        if code in _CONFLICT_CODES:
            raise ConflictError(f"{what}: a condition failed ({code})") from exc
        raise StorageError(f"{what} failed: {code or type(exc).__name__}") from exc


def _get_or_none(model: type[M], what: str, hash_key: str, range_key: str) -> M | None:
    """One item of the caller's partition, or ``None`` when it does not exist."""
    try:
        with storage(what):
            return model.get(hash_key, range_key)
    except DoesNotExist:
        return None


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
        record = TenantRecord(
            check_tenant_id(tenant_id),
            name=name,
            sector=sector,
            country=country,
            jurisdiction=jurisdiction,
            status="active",
            approvals=[],
            quotas={},
            created_at=_now(),
        )
        with storage("registering a tenant"):
            record.save(condition=TenantRecord.tenant_id.does_not_exist())
        return _tenant(record)

    def get(self, tenant_id: str) -> Tenant:
        try:
            with storage("reading a tenant"):
                return _tenant(TenantRecord.get(check_tenant_id(tenant_id)))
        except DoesNotExist as exc:
            raise TenantNotFoundError(f"no tenant {tenant_id}") from exc

    def current(self, ctx: TenantContext) -> Tenant:
        """The caller's own tenant record (request path)."""
        return self.get(ctx.tenant_id)

    def add_approval(self, tenant_id: str, approval: Approval) -> Tenant:
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
        record = TenantRecord(check_tenant_id(tenant_id))
        with storage("recording an approval"):
            record.update(
                actions=[TenantRecord.approvals.set(TenantRecord.approvals.append([item]))],
                condition=TenantRecord.tenant_id.exists(),
            )
        return self.get(tenant_id)

    def set_quota(self, tenant_id: str, use_case: str, operation: str, *, per_minute: int, per_day: int) -> Tenant:
        """Lower a tenant's limits for one use case and operation (the catalog's limits stay the ceiling)."""
        if per_minute < 1 or per_day < 1:
            raise ValueError("quotas are positive")
        quotas = dict(self.get(tenant_id).quotas)
        quotas.setdefault(use_case, {})[operation] = {"per_minute": per_minute, "per_day": per_day}
        with storage("setting a quota"):
            TenantRecord(check_tenant_id(tenant_id)).update(
                actions=[TenantRecord.quotas.set(quotas)], condition=TenantRecord.tenant_id.exists()
            )
        return self.get(tenant_id)

    def set_status(self, tenant_id: str, status: str) -> None:
        if status not in {"active", "suspended"}:
            raise ValueError(f"unknown tenant status {status}")
        with storage("changing a tenant's status"):
            TenantRecord(check_tenant_id(tenant_id)).update(
                actions=[TenantRecord.status.set(status)], condition=TenantRecord.tenant_id.exists()
            )


# --- galleries -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gallery:
    gallery_id: str
    use_case: str
    name: str
    max_size: int
    template_count: int

    def facts(self) -> GalleryFacts:
        return GalleryFacts(gallery_id=self.gallery_id, use_case=self.use_case, size=self.template_count)


def _gallery(r: GalleryRecord) -> Gallery:
    return Gallery(r.gallery_id, r.use_case, r.name, int(r.max_size), int(r.template_count))


class Galleries:
    def create(self, ctx: TenantContext, gallery_id: str, *, name: str, use_case: str, max_size: int) -> Gallery:
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
        with storage("creating a gallery"):
            record.save(condition=GalleryRecord.gallery_id.does_not_exist())
        return _gallery(record)

    def find(self, ctx: TenantContext, gallery_id: str) -> Gallery | None:
        """The caller's gallery, or ``None``: another tenant's gallery is indistinguishable from none."""
        record = _get_or_none(GalleryRecord, "reading a gallery", ctx.tenant_id, check_entity_id(gallery_id, "gallery"))
        return None if record is None else _gallery(record)

    def get(self, ctx: TenantContext, gallery_id: str) -> Gallery:
        gallery = self.find(ctx, gallery_id)
        if gallery is None:
            raise GalleryNotFoundError("No such gallery.")
        return gallery

    def list_all(self, ctx: TenantContext) -> list[Gallery]:
        with storage("listing galleries"):
            return [_gallery(r) for r in GalleryRecord.query(ctx.tenant_id)]


# --- templates -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredTemplate:
    template_id: str
    gallery_id: str
    subject_id: str
    consent_id: str
    embedding: Embedding
    expires_at: datetime


def _template(r: TemplateRecord) -> StoredTemplate:
    return StoredTemplate(
        template_id=r.template_id,
        gallery_id=r.gallery_id,
        subject_id=r.subject_id,
        consent_id=r.consent_id,
        embedding=Embedding.from_bytes(r.embedding, r.model_version),
        expires_at=r.expires_at,
    )


class Templates:
    """Face templates (embeddings, never photos). Adds and deletes keep the gallery's count exact."""

    def add(
        self,
        ctx: TenantContext,
        gallery: Gallery,
        *,
        subject_id: str,
        consent_id: str,
        embedding: Embedding,
        expires_at: datetime,
    ) -> StoredTemplate:
        subject = check_entity_id(subject_id, "subject")
        template_id = f"{subject}{SEP}{uuid.uuid4().hex}"
        record = TemplateRecord(
            f"{ctx.tenant_id}{SEP}{gallery.gallery_id}",
            template_id,
            tenant_subject=f"{ctx.tenant_id}{SEP}{subject}",
            tenant_id=ctx.tenant_id,
            gallery_id=gallery.gallery_id,
            subject_id=subject,
            embedding=embedding.to_bytes(),
            model_version=embedding.model_version,
            consent_id=consent_id,
            created_at=_now(),
            expires_at=expires_at,
        )
        # One transaction: the template and the gallery's count, which must stay under its cap, so
        # concurrent enrolments can neither overfill a gallery nor leave a count that lies.
        counter = GalleryRecord(ctx.tenant_id, gallery.gallery_id)
        with storage("storing a template"), TransactWrite(connection=connection_of(TemplateRecord)) as tx:
            tx.save(record, condition=TemplateRecord.template_id.does_not_exist())
            tx.update(
                counter,
                actions=[GalleryRecord.template_count.add(1)],
                condition=GalleryRecord.gallery_id.exists() & (GalleryRecord.template_count < gallery.max_size),
            )
        return _template(record)

    def in_gallery(self, ctx: TenantContext, gallery_id: str, *, now: datetime | None = None) -> list[StoredTemplate]:
        """Live templates of one of the caller's galleries (DynamoDB's TTL deletes lazily: filter here)."""
        cutoff = now or _now()
        with storage("reading templates"):
            records = TemplateRecord.query(f"{ctx.tenant_id}{SEP}{check_entity_id(gallery_id, 'gallery')}")
            return [_template(r) for r in records if r.expires_at > cutoff]

    def of_subject(self, ctx: TenantContext, subject_id: str) -> list[StoredTemplate]:
        with storage("reading a subject's templates"):
            records = TemplateRecord.by_subject.query(f"{ctx.tenant_id}{SEP}{check_entity_id(subject_id, 'subject')}")
            return [_template(r) for r in records]

    def delete(self, ctx: TenantContext, templates: list[StoredTemplate]) -> int:
        """Delete templates (each with its gallery's count) and return how many were deleted."""
        deleted = 0
        for t in templates:
            record = TemplateRecord(f"{ctx.tenant_id}{SEP}{t.gallery_id}", t.template_id)
            counter = GalleryRecord(ctx.tenant_id, t.gallery_id)
            try:
                with storage("deleting a template"), TransactWrite(connection=connection_of(TemplateRecord)) as tx:
                    tx.delete(record, condition=TemplateRecord.template_id.exists())
                    tx.update(counter, actions=[GalleryRecord.template_count.add(-1)])
            except ConflictError:
                continue  # already gone (a concurrent erasure or TTL): nothing left to delete
            deleted += 1
        return deleted


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
        if expires_at <= granted_at:
            raise ConsentError("a consent must expire after it is granted")
        if len(evidence_hash) != 64 or any(c not in "0123456789abcdef" for c in evidence_hash):
            raise ConsentError("the evidence reference is the sha256 (hex) of the signed consent")
        subject = check_entity_id(subject_id, "subject")
        consent_id = uuid.uuid4().hex
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
        with storage("recording a consent"):
            record.save(condition=ConsentRecord.consent_key.does_not_exist())
        return _consent(record)

    def get(self, ctx: TenantContext, subject_id: str, consent_id: str) -> Consent | None:
        key = f"{check_entity_id(subject_id, 'subject')}{SEP}{check_entity_id(consent_id, 'consent')}"
        record = _get_or_none(ConsentRecord, "reading a consent", ctx.tenant_id, key)
        return None if record is None else _consent(record)

    def of_subject(self, ctx: TenantContext, subject_id: str) -> list[Consent]:
        prefix = f"{check_entity_id(subject_id, 'subject')}{SEP}"
        with storage("reading consents"):
            return [
                _consent(r) for r in ConsentRecord.query(ctx.tenant_id, ConsentRecord.consent_key.startswith(prefix))
            ]

    def revoke(self, ctx: TenantContext, subject_id: str, consent_id: str, now: datetime) -> None:
        key = f"{check_entity_id(subject_id, 'subject')}{SEP}{check_entity_id(consent_id, 'consent')}"
        with storage("revoking a consent"):
            ConsentRecord(ctx.tenant_id, key).update(
                actions=[ConsentRecord.status.set("revoked"), ConsentRecord.revoked_at.set(now)],
                condition=ConsentRecord.consent_key.exists(),
            )


# --- counters ------------------------------------------------------------------------------------------


class Counters:
    """Atomic per-tenant counters in fixed windows (``ADD`` is atomic in DynamoDB)."""

    def hit(self, ctx: TenantContext, name: str, *, window: timedelta, now: datetime) -> int:
        """Count one event in the current window of ``name`` and return the window's total."""
        seconds = int(window.total_seconds())
        bucket = int(now.timestamp()) // seconds
        record = CounterRecord(ctx.tenant_id, f"{name}{SEP}{seconds}{SEP}{bucket}")
        expires = datetime.fromtimestamp((bucket + 2) * seconds, UTC)
        with storage("counting a request"):
            # UpdateItem returns the new value (ALL_NEW) and pynamodb writes it back onto `record`.
            record.update(actions=[CounterRecord.hits.add(1), CounterRecord.expires_at.set(expires)])
        return int(record.hits)


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
    )


class Requests:
    def put(
        self,
        ctx: TenantContext,
        *,
        operation: str,
        gallery_id: str | None,
        status: str,
        decision: dict[str, Any],
        result: dict[str, Any] | None,
        review_state: str,
        retention: timedelta,
        request_id: str | None = None,
    ) -> RequestRow:
        now = _now()
        record = RequestRecord(
            ctx.tenant_id,
            request_id or uuid.uuid4().hex,
            operation=operation,
            gallery_id=gallery_id,
            status=status,
            decision=decision,
            result=result,
            review_state=review_state,
            reviewers=[],
            created_at=now,
            expires_at=now + retention,
        )
        with storage("recording a request"):
            record.save(condition=RequestRecord.request_id.does_not_exist())
        return _request(record)

    def get(self, ctx: TenantContext, request_id: str) -> RequestRow | None:
        record = _get_or_none(RequestRecord, "reading a request", ctx.tenant_id, check_entity_id(request_id, "request"))
        return None if record is None else _request(record)

    def review(self, ctx: TenantContext, request_id: str, *, reviewer: str, confirm: bool, needed: int) -> RequestRow:
        """Record one reviewer's decision; ``needed`` distinct reviewers confirm, any one rejects."""
        row = self.get(ctx, request_id)
        if row is None or row.review_state != "pending":
            raise ConflictError("the request is not awaiting review")
        if reviewer in row.reviewers:
            raise ConflictError("each reviewer counts once (two-person confirmation)")
        reviewers = [*row.reviewers, reviewer]
        state = "rejected" if not confirm else ("confirmed" if len(reviewers) >= needed else "pending")
        with storage("recording a review"):
            RequestRecord(ctx.tenant_id, request_id).update(
                actions=[RequestRecord.reviewers.set(reviewers), RequestRecord.review_state.set(state)],  # type: ignore[arg-type]
                condition=RequestRecord.review_state == "pending",
            )
        refreshed = self.get(ctx, request_id)
        if refreshed is None:
            raise StorageError("the reviewed request vanished")
        return refreshed
