"""The DynamoDB behaviours facegate relies on hold on moto and on AWS's DynamoDB Local alike.

Every test runs once per backend (the ``dynamo`` fixture, tests/_backends.py). Where the two differ, the
difference is pinned down in ``test_known_differences`` so a moto or DynamoDB Local upgrade that changes it fails.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from _backends import DYNAMODB_LOCAL, MOTO, DynamoBackend
from botocore.exceptions import ClientError
from pynamodb.exceptions import PutError, TransactWriteError
from pynamodb.transactions import TransactWrite

from facegate.store.models import (
    ALL_MODELS,
    SEP,
    ApprovalAttribute,
    AuditRecord,
    ConsentRecord,
    CounterRecord,
    GalleryRecord,
    RequestRecord,
    TemplateRecord,
    TenantRecord,
)

NOW = datetime(2026, 3, 1, 12, 30, 15, 123000, tzinfo=UTC)
EXPIRY = datetime(2031, 1, 1, tzinfo=UTC)
EMBEDDING = bytes(range(256)) * 2  # 512 bytes, every byte value (NUL, 0x80, 0xff) included


def tenant(tenant_id: str = "acme") -> TenantRecord:
    approval = ApprovalAttribute(
        use_case="access_control",
        deployment="closed_facility",
        jurisdiction="DE",
        approver="ops@example.org",
        approved_at=NOW,
        expires_at=EXPIRY,
        status="active",
        max_gallery_size=500,
    )
    return TenantRecord(
        tenant_id,
        name="Acme Ltd",
        sector="private",
        country="DE",
        jurisdiction="DE",
        approvals=[approval],
        quotas={"access_control": {"per_minute": 60}},
        created_at=NOW,
    )


def template(tenant_id: str, gallery_id: str, subject_id: str, n: int) -> TemplateRecord:
    return TemplateRecord(
        f"{tenant_id}{SEP}{gallery_id}",
        f"{subject_id}{SEP}{n:04d}",
        tenant_subject=f"{tenant_id}{SEP}{subject_id}",
        tenant_id=tenant_id,
        gallery_id=gallery_id,
        subject_id=subject_id,
        embedding=EMBEDDING,
        model_version="arcface-r100-v1",
        consent_id=f"consent-{subject_id}",
        created_at=NOW,
        expires_at=EXPIRY,
    )


def test_tables_exist_with_the_test_prefix_and_ttl(dynamo: DynamoBackend) -> None:
    client = dynamo.client()
    names = set(client.list_tables()["TableNames"])
    assert set(dynamo.table_names.values()) <= names
    assert all(name.startswith(f"{dynamo.settings.table_prefix}-") for name in dynamo.table_names.values())
    assert len(dynamo.table_names) == len(ALL_MODELS)
    for model in (TemplateRecord, RequestRecord, CounterRecord):
        ttl = client.describe_time_to_live(TableName=model.Meta.table_name)["TimeToLiveDescription"]
        assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    described = client.describe_table(TableName=TemplateRecord.Meta.table_name)["Table"]
    assert [index["IndexName"] for index in described["GlobalSecondaryIndexes"]] == ["by_subject"]


def test_tenant_round_trip(dynamo: DynamoBackend) -> None:
    tenant().save()
    got = TenantRecord.get("acme")
    assert got.name == "Acme Ltd"
    assert got.status == "active"
    assert got.quotas == {"access_control": {"per_minute": 60}}
    assert got.created_at == NOW
    [approval] = got.approvals
    assert approval.use_case == "access_control"
    assert approval.approved_at == NOW
    assert approval.expires_at == EXPIRY
    assert approval.max_gallery_size == 500


def test_gallery_put_get_query(dynamo: DynamoBackend) -> None:
    for gallery_id in ("staff", "visitors", "contractors"):
        GalleryRecord(
            "acme",
            gallery_id,
            use_case="access_control",
            name=gallery_id,
            source="consented_enrolment",
            max_size=100,
            created_at=NOW,
        ).save()
    assert GalleryRecord.get("acme", "staff").template_count == 0
    assert [g.gallery_id for g in GalleryRecord.query("acme")] == ["contractors", "staff", "visitors"]
    assert [g.gallery_id for g in GalleryRecord.query("acme", GalleryRecord.gallery_id.startswith("s"))] == ["staff"]


def test_template_binary_ttl_and_subject_index(dynamo: DynamoBackend) -> None:
    for n, (gallery_id, subject_id) in enumerate(
        [("staff", "alice"), ("staff", "bob"), ("visitors", "alice"), ("staff", "alice")]
    ):
        template("acme", gallery_id, subject_id, n).save()

    got = TemplateRecord.get(f"acme{SEP}staff", f"alice{SEP}0000")
    assert got.embedding == EMBEDDING
    assert len(got.embedding) == 512
    assert got.expires_at == EXPIRY
    assert got.created_at == NOW

    raw = dynamo.client().get_item(
        TableName=TemplateRecord.Meta.table_name,
        Key={"tenant_gallery": {"S": f"acme{SEP}staff"}, "template_id": {"S": f"alice{SEP}0000"}},
    )["Item"]
    assert raw["embedding"] == {"B": EMBEDDING}
    assert raw["expires_at"] == {"N": str(int(EXPIRY.timestamp()))}  # TTL: epoch seconds, a number

    in_staff = TemplateRecord.query(f"acme{SEP}staff", TemplateRecord.template_id.startswith(f"alice{SEP}"))
    assert [t.template_id for t in in_staff] == [f"alice{SEP}0000", f"alice{SEP}0003"]

    by_subject = list(TemplateRecord.by_subject.query(f"acme{SEP}alice"))
    assert [(t.gallery_id, t.template_id) for t in by_subject] == [
        ("staff", f"alice{SEP}0000"),
        ("visitors", f"alice{SEP}0002"),
        ("staff", f"alice{SEP}0003"),
    ]
    assert all(t.embedding == EMBEDDING for t in by_subject)  # AllProjection
    assert TemplateRecord.by_subject.count(f"acme{SEP}bob") == 1


def test_consent_put_get_query(dynamo: DynamoBackend) -> None:
    for subject_id, consent_id in [("alice", "c1"), ("alice", "c2"), ("bob", "c3")]:
        ConsentRecord(
            "acme",
            f"{subject_id}{SEP}{consent_id}",
            subject_id=subject_id,
            consent_id=consent_id,
            purpose="access_control",
            granted_at=NOW,
            expires_at=EXPIRY,
            evidence_hash="ab" * 32,
        ).save()
    got = ConsentRecord.get("acme", f"alice{SEP}c1")
    assert (got.status, got.revoked_at, got.expires_at) == ("granted", None, EXPIRY)
    alice = ConsentRecord.query("acme", ConsentRecord.consent_key.startswith(f"alice{SEP}"))
    assert [c.consent_id for c in alice] == ["c1", "c2"]

    got.update(actions=[ConsentRecord.status.set("revoked"), ConsentRecord.revoked_at.set(NOW)])
    again = ConsentRecord.get("acme", f"alice{SEP}c1")
    assert (again.status, again.revoked_at) == ("revoked", NOW)


def test_request_put_get_query(dynamo: DynamoBackend) -> None:
    RequestRecord(
        "acme",
        "r1",
        operation="identify",
        gallery_id="staff",
        status="done",
        decision={"allowed": True, "rules": ["policy-1"]},
        created_at=NOW,
        expires_at=EXPIRY,
    ).save()
    RequestRecord(
        "acme",
        "r2",
        operation="verify",
        status="pending",
        decision={"allowed": True},
        result={"score": 0.93, "match": None},
        review_state="pending",
        reviewers=["rev-1"],
        created_at=NOW,
    ).save()
    r1 = RequestRecord.get("acme", "r1")
    assert (r1.decision, r1.result, r1.review_state, r1.reviewers) == (
        {"allowed": True, "rules": ["policy-1"]},
        None,
        "not_required",
        [],
    )
    assert r1.expires_at == EXPIRY
    r2 = RequestRecord.get("acme", "r2")
    assert (r2.result, r2.reviewers, r2.expires_at, r2.gallery_id) == (
        {"score": 0.93, "match": None},
        ["rev-1"],
        None,
        None,
    )
    pending = RequestRecord.query("acme", filter_condition=RequestRecord.review_state == "pending")
    assert [r.request_id for r in pending] == ["r2"]


def test_audit_numeric_sort_key(dynamo: DynamoBackend) -> None:
    prev = "0" * 64
    for seq in (1, 2, 10, 100):  # numeric order, not string order
        AuditRecord(
            "acme",
            seq,
            at=NOW,
            actor="ops",
            action="enrol",
            details={"seq": seq},
            prev_hash=prev,
            entry_hash=f"{seq:064d}",
        ).save()
        prev = f"{seq:064d}"
    assert [a.seq for a in AuditRecord.query("acme")] == [1, 2, 10, 100]
    [last] = AuditRecord.query("acme", scan_index_forward=False, limit=1)
    assert (last.seq, last.details, last.prev_hash) == (100, {"seq": 100}, f"{10:064d}")
    assert [a.seq for a in AuditRecord.query("acme", AuditRecord.seq > 2)] == [10, 100]


def test_counter_put_get_query(dynamo: DynamoBackend) -> None:
    CounterRecord("acme", "minute#202603011230", hits=3, expires_at=EXPIRY).save()
    CounterRecord("acme", "minute#202603011231").save()
    assert CounterRecord.get("acme", "minute#202603011230").hits == 3
    assert CounterRecord.get("acme", "minute#202603011231").expires_at is None
    assert [c.hits for c in CounterRecord.query("acme", CounterRecord.counter_key.startswith("minute#"))] == [3, 0]


def test_conditional_put_refuses_an_existing_item(dynamo: DynamoBackend) -> None:
    tenant().save(condition=TenantRecord.tenant_id.does_not_exist())
    replacement = tenant()
    replacement.name = "Impostor"
    with pytest.raises(PutError) as caught:
        replacement.save(condition=TenantRecord.tenant_id.does_not_exist())
    assert caught.value.cause_response_code == "ConditionalCheckFailedException"
    assert TenantRecord.get("acme").name == "Acme Ltd"


@pytest.mark.dynamo_backends("dynamodb-local")
def test_atomic_counter_from_threads(dynamo: DynamoBackend) -> None:
    """Concurrent ``ADD`` is atomic in DynamoDB. Only DynamoDB Local can show it: moto 5.2.5 serves
    in-process requests without a lock, so its read-modify-write can lose an increment under threads
    (seen once in a CI-like run), which says nothing about facegate's counters."""
    threads = 8
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def bump() -> None:
        try:
            start.wait(timeout=30)
            # No prior item: ADD creates it. One update per thread, all released at once.
            CounterRecord("acme", "volume#2026-03").update(actions=[CounterRecord.hits.add(1)])
        except BaseException as exc:  # surfaced below, with the thread's traceback
            errors.append(exc)

    workers = [threading.Thread(target=bump) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not errors, errors
    assert CounterRecord.get("acme", "volume#2026-03").hits == threads


def test_counter_adds_are_counted_exactly(dynamo: DynamoBackend) -> None:
    for expected in range(1, 6):
        record = CounterRecord("acme", "volume#2026-04")
        record.update(actions=[CounterRecord.hits.add(1)])
        assert record.hits == expected
    assert CounterRecord.get("acme", "volume#2026-04").hits == 5


def test_transaction_rolls_back_on_a_failed_condition(dynamo: DynamoBackend) -> None:
    tenant().save()
    gallery = GalleryRecord(
        "acme",
        "staff",
        use_case="access_control",
        name="Staff",
        source="consented_enrolment",
        max_size=100,
        created_at=NOW,
    )

    def gallery_and_duplicate_tenant() -> None:
        with TransactWrite(connection=dynamo.connection()) as tx:
            tx.save(gallery)
            tx.save(tenant(), condition=TenantRecord.tenant_id.does_not_exist())

    with pytest.raises(TransactWriteError) as caught:
        gallery_and_duplicate_tenant()
    assert caught.value.cause_response_code == "TransactionCanceledException"
    reasons = caught.value.cancellation_reasons
    assert len(reasons) == 2
    assert reasons[0] is None
    assert reasons[1] is not None
    assert reasons[1].code == "ConditionalCheckFailed"
    assert GalleryRecord.count("acme") == 0  # the unconditional write was rolled back

    with TransactWrite(connection=dynamo.connection()) as tx:  # and the same write alone goes through
        tx.save(gallery, condition=GalleryRecord.gallery_id.does_not_exist())
    assert GalleryRecord.get("acme", "staff").name == "Staff"


def test_another_tenants_partition_is_empty(dynamo: DynamoBackend) -> None:
    tenant("acme").save()
    GalleryRecord(
        "acme",
        "staff",
        use_case="access_control",
        name="Staff",
        source="consented_enrolment",
        max_size=100,
        created_at=NOW,
    ).save()
    template("acme", "staff", "alice", 0).save()
    ConsentRecord(
        "acme",
        f"alice{SEP}c1",
        subject_id="alice",
        consent_id="c1",
        purpose="access_control",
        granted_at=NOW,
        expires_at=EXPIRY,
        evidence_hash="ab" * 32,
    ).save()
    AuditRecord("acme", 1, at=NOW, actor="ops", action="enrol", prev_hash="0" * 64, entry_hash="1" * 64).save()

    assert list(TenantRecord.query("globex")) == []
    assert list(GalleryRecord.query("globex")) == []
    assert list(TemplateRecord.query(f"globex{SEP}staff")) == []
    assert list(TemplateRecord.by_subject.query(f"globex{SEP}alice")) == []
    assert list(ConsentRecord.query("globex")) == []
    assert list(AuditRecord.query("globex")) == []
    # A prefix of the right key is not the key: partition keys match exactly.
    assert list(TemplateRecord.query("acme")) == []
    assert [t.template_id for t in TemplateRecord.query(f"acme{SEP}staff")] == [f"alice{SEP}0000"]


def test_known_differences(dynamo: DynamoBackend) -> None:
    """DynamoDB Local enforces two request validations that moto 5.2.5 skips; facegate code must obey them anyway.

    Real DynamoDB behaves like DynamoDB Local here. If moto starts enforcing them, the moto branch fails: then
    delete it and assert the error on both backends.
    """
    client = dynamo.client()
    table = CounterRecord.Meta.table_name

    def unused_value() -> None:
        client.put_item(
            TableName=table,
            Item={"tenant_id": {"S": "acme"}, "counter_key": {"S": "unused"}},
            ConditionExpression="attribute_not_exists(tenant_id)",
            ExpressionAttributeValues={":unused": {"N": "1"}},
        )

    def batch_of_26() -> None:
        items = [
            {"PutRequest": {"Item": {"tenant_id": {"S": "acme"}, "counter_key": {"S": f"k{i:02d}"}}}} for i in range(26)
        ]
        client.batch_write_item(RequestItems={table: items})

    if dynamo == DYNAMODB_LOCAL:
        with pytest.raises(ClientError) as unused:
            unused_value()
        assert unused.value.response["Error"]["Code"] == "ValidationException"
        assert "ExpressionAttributeValues unused in expressions" in unused.value.response["Error"]["Message"]
        with pytest.raises(ClientError) as batch:
            batch_of_26()
        assert batch.value.response["Error"]["Code"] == "ValidationException"
        assert "Too many items requested for the BatchWriteItem call" in batch.value.response["Error"]["Message"]
        assert CounterRecord.count("acme") == 0
    else:
        assert dynamo == MOTO
        unused_value()  # accepted, and written
        batch_of_26()  # accepted: all 26 written, none unprocessed
        assert CounterRecord.count("acme") == 27

    # Both agree on the limit itself: 25 items in one batch are fine.
    client.batch_write_item(
        RequestItems={
            table: [
                {"PutRequest": {"Item": {"tenant_id": {"S": "beta"}, "counter_key": {"S": f"k{i:02d}"}}}}
                for i in range(25)
            ]
        }
    )
    assert CounterRecord.count("beta") == 25


@pytest.mark.dynamo_backends(MOTO)
def test_marker_selects_one_backend(dynamo: DynamoBackend) -> None:
    assert dynamo == MOTO
    assert dynamo.settings.dynamodb_endpoint is None
    assert TenantRecord.Meta.host is None
