"""The DynamoDB data model, declared once (pynamodb); template.yaml declares the same tables.

Every table's partition key leads with the tenant id, so IAM's ``dynamodb:LeadingKeys`` condition can
confine a tenant-scoped session to its own rows, and no request-path key can be built for another
tenant. The tenant registry is the only table keyed by the tenant id alone; only operators write it.

- tenants: ``tenant_id``. Approvals (use case, deployment, jurisdiction, approver, dates, status), quotas.
- galleries: ``tenant_id`` / ``gallery_id``. Bound to one approved use case; template count.
- templates: ``tenant_gallery`` = ``<tenant>#<gallery>`` / ``template_id`` = ``<subject>#<uuid>``. The
  512-byte embedding, model version, consent id, TTL expiry; GSI ``by_subject`` on ``<tenant>#<subject>``.
- consents: ``tenant_id`` / ``consent_key`` = ``<subject>#<consent>``. Purpose, dates, evidence hash.
- requests: ``tenant_id`` / ``request_id``. Decision, result, review state, TTL.
- audit: ``tenant_id`` / ``seq``. The append-only hash chain; ``seq`` 0 is the head (newest seq and hash).
- counters: ``tenant_id`` / ``counter_key``. Atomic rate and volume counters, TTL.
- machine-clients: ``client_id``. Which tenant a checkpoint system's Cognito app client acts for (read
  by the token trigger, which is given only the client id); like the registry, only operators write it.
"""

from __future__ import annotations

from typing import Any, Final

from pynamodb.attributes import (
    BinaryAttribute,
    JSONAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.connection import Connection
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from facegate.settings import Settings

SEP: Final = "#"


class ApprovalAttribute(MapAttribute[str, Any]):
    use_case = UnicodeAttribute()
    deployment = UnicodeAttribute()
    """Where it is used: ``closed_facility``, ``online_service``, ``personal`` (never a public space)."""
    jurisdiction = UnicodeAttribute()
    approver = UnicodeAttribute()
    approved_at = UTCDateTimeAttribute()
    expires_at = UTCDateTimeAttribute()
    status = UnicodeAttribute()
    """``active``, ``suspended`` or ``revoked``."""
    max_gallery_size = NumberAttribute(null=True)


class TenantRecord(Model):
    class Meta:
        table_name = "facegate-tenants"
        region = "us-east-1"

    tenant_id = UnicodeAttribute(hash_key=True)
    name = UnicodeAttribute()
    sector = UnicodeAttribute()
    """``corrections``, ``law_enforcement``, ``government``, ``private``, ``individual``, ..."""
    country = UnicodeAttribute()
    jurisdiction = UnicodeAttribute()
    status = UnicodeAttribute(default="active")
    approvals = ListAttribute(of=ApprovalAttribute, default=list)
    quotas = JSONAttribute(default=dict)
    """Per-use-case overrides of the catalog's limits (only ever lower)."""
    created_at = UTCDateTimeAttribute()


class GalleryRecord(Model):
    class Meta:
        table_name = "facegate-galleries"
        region = "us-east-1"

    tenant_id = UnicodeAttribute(hash_key=True)
    gallery_id = UnicodeAttribute(range_key=True)
    use_case = UnicodeAttribute()
    name = UnicodeAttribute()
    source = UnicodeAttribute()
    """How templates get in: ``consented_enrolment`` only (scraped or untargeted sources are refused)."""
    max_size = NumberAttribute()
    template_count = NumberAttribute(default=0)
    version = NumberAttribute(default=0)
    """Raised by one in the same transaction as every change of the gallery's templates (an enrolment,
    a deletion, an erasure, a recount): a cached copy of the gallery is current only at its version."""
    snapshot = JSONAttribute(null=True)
    """The S3 snapshot written for a version (:mod:`facegate.store.snapshots`): ``version``,
    ``object_version``, ``sha256``, ``count``; a load reads exactly that object and checks it."""
    created_at = UTCDateTimeAttribute()


class SubjectIndex(GlobalSecondaryIndex["TemplateRecord"]):  # type: ignore[no-untyped-call]
    class Meta:
        index_name = "by_subject"
        projection = AllProjection()

    tenant_subject = UnicodeAttribute(hash_key=True)
    template_id = UnicodeAttribute(range_key=True)


class TemplateRecord(Model):
    class Meta:
        table_name = "facegate-templates"
        region = "us-east-1"

    tenant_gallery = UnicodeAttribute(hash_key=True)
    template_id = UnicodeAttribute(range_key=True)
    tenant_subject = UnicodeAttribute()
    tenant_id = UnicodeAttribute()
    gallery_id = UnicodeAttribute()
    subject_id = UnicodeAttribute()
    embedding = BinaryAttribute(legacy_encoding=False)
    model_version = UnicodeAttribute()
    references = NumberAttribute(default=1)
    """Photos fused into this template (1 to ``facegate.embedding.MAX_REFERENCES``)."""
    consent_id = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()
    expires_at = TTLAttribute()
    by_subject = SubjectIndex()


class ConsentRecord(Model):
    class Meta:
        table_name = "facegate-consents"
        region = "us-east-1"

    tenant_id = UnicodeAttribute(hash_key=True)
    consent_key = UnicodeAttribute(range_key=True)
    subject_id = UnicodeAttribute()
    consent_id = UnicodeAttribute()
    purpose = UnicodeAttribute()
    """The use case consented to; enrolment requires it to equal the gallery's use case."""
    granted_at = UTCDateTimeAttribute()
    expires_at = UTCDateTimeAttribute()
    evidence_hash = UnicodeAttribute()
    status = UnicodeAttribute(default="granted")
    revoked_at = UTCDateTimeAttribute(null=True)


class RequestRecord(Model):
    class Meta:
        table_name = "facegate-requests"
        region = "us-east-1"

    tenant_id = UnicodeAttribute(hash_key=True)
    request_id = UnicodeAttribute(range_key=True)
    operation = UnicodeAttribute()
    gallery_id = UnicodeAttribute(null=True)
    status = UnicodeAttribute()
    decision = JSONAttribute()
    result = JSONAttribute(null=True)
    review_state = UnicodeAttribute(default="not_required")
    """``not_required``, ``pending``, ``confirmed``, ``rejected``."""
    reviewers = ListAttribute(of=UnicodeAttribute, default=list)
    requested_by = UnicodeAttribute(null=True)
    """Who asked (the authenticated actor): never one of the reviewers of its own result."""
    purpose = UnicodeAttribute(null=True)
    """The declared purpose and case reference, kept so a reviewer can see why a search was run."""
    case_reference = UnicodeAttribute(null=True)
    subjects = ListAttribute(of=UnicodeAttribute, default=list)
    """The subject ids the result names, so an erasure can find and redact the rows that name them."""
    redacted_at = UTCDateTimeAttribute(null=True)
    created_at = UTCDateTimeAttribute()
    expires_at = TTLAttribute(null=True)


class AuditRecord(Model):
    class Meta:
        table_name = "facegate-audit"
        region = "us-east-1"

    tenant_id = UnicodeAttribute(hash_key=True)
    seq = NumberAttribute(range_key=True)
    at = UTCDateTimeAttribute()
    actor = UnicodeAttribute()
    action = UnicodeAttribute()
    details = JSONAttribute(default=dict)
    prev_hash = UnicodeAttribute()
    entry_hash = UnicodeAttribute()
    head_seq = NumberAttribute(null=True)
    """Only on the tenant's head item (``seq`` 0, see :mod:`facegate.audit`): the newest entry's seq.

    The head item mirrors the newest entry's ``at``, ``actor``, ``prev_hash`` and ``entry_hash`` and is
    rewritten in the same transaction as every append, so deleting the newest entries (truncation) shows.
    """


class CounterRecord(Model):
    class Meta:
        table_name = "facegate-counters"
        region = "us-east-1"

    tenant_id = UnicodeAttribute(hash_key=True)
    counter_key = UnicodeAttribute(range_key=True)
    # Not ``count``: that name is pynamodb's Model.count() classmethod.
    hits = NumberAttribute(default=0)
    expires_at = TTLAttribute(null=True)
    blob = BinaryAttribute(null=True, legacy_encoding=False)
    """Only on a tenant's recent-probe memory (:class:`~facegate.store.repositories.ProbeMemory`)."""
    names = ListAttribute(of=UnicodeAttribute, null=True)


class MachineClientRecord(Model):
    """A machine client (OAuth client credentials) of one tenant: the token trigger's only source of the
    tenant claim for it, so a client can never choose its tenant."""

    class Meta:
        table_name = "facegate-machine-clients"
        region = "us-east-1"

    client_id = UnicodeAttribute(hash_key=True)
    tenant_id = UnicodeAttribute()
    name = UnicodeAttribute()
    status = UnicodeAttribute(default="active")
    """``active`` or ``disabled`` (a disabled client gets no token)."""
    created_by = UnicodeAttribute()
    created_at = UTCDateTimeAttribute()


ALL_MODELS: Final[tuple[type[Model], ...]] = (
    TenantRecord,
    GalleryRecord,
    TemplateRecord,
    ConsentRecord,
    RequestRecord,
    AuditRecord,
    CounterRecord,
    MachineClientRecord,
)
SUFFIXES: Final = {
    TenantRecord: "tenants",
    GalleryRecord: "galleries",
    TemplateRecord: "templates",
    ConsentRecord: "consents",
    RequestRecord: "requests",
    AuditRecord: "audit",
    CounterRecord: "counters",
    MachineClientRecord: "machine-clients",
}


def connection_of(model: type[Model]) -> Connection:
    """The model's own cached connection (configured region and endpoint), for ``TransactWrite``."""
    return model._get_connection().connection


def configure(settings: Settings) -> None:
    """Point every model at this deployment's tables, region and (locally) endpoint."""
    for model in ALL_MODELS:
        model.Meta.table_name = f"{settings.table_prefix}-{SUFFIXES[model]}"
        model.Meta.region = settings.region
        model.Meta.host = settings.dynamodb_endpoint
        model._connection = None


def create_tables(*, wait: bool = True) -> None:
    """Create every table (on-demand billing) if missing: for the local cloud and tests."""
    for model in ALL_MODELS:
        if not model.exists():
            model.create_table(billing_mode="PAY_PER_REQUEST", wait=wait)
