"""GET /audit through the SDK and the loopback API, on the deployed template: the head, a signed anchor,
a broken chain answered (200, verified false) rather than failed, and an anchor the tenant kept checked
against a log an intruder with write access to the audit table has rewritten or cut back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from facegate.audit import HEAD_SEQ, compute_entry_hash
from facegate.errors import AuditChainError, PolicyDeniedError
from facegate.localcloud.cloud import LocalCloud
from facegate.sdk import FacegateApiError, FacegateClient, verify_export
from facegate.service import FaceService
from facegate.store.models import AuditRecord

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud(root=ROOT, stack_name="fgaudit") as local:
        local.serve_api()
        yield local


@pytest.fixture(scope="module")
def public_key(cloud: LocalCloud) -> bytes:
    """What a tenant pins: the signing key's public half, from the stack's output (not from the API)."""
    key: bytes = cloud.client("kms").get_public_key(KeyId=cloud.outputs["AuditSigningKeyArn"])["PublicKey"]
    return key


def tenant_with_a_denial(cloud: LocalCloud) -> tuple[str, FacegateClient]:
    """A fresh tenant whose log holds an approval, a refused approval (the denial) and a gallery."""
    tenant = "t-" + uuid.uuid4().hex[:10]
    service = FaceService()
    service.registry.register(tenant, name=tenant, sector="corrections", country="GB", jurisdiction="GB")
    until = datetime.now(UTC) + timedelta(days=30)
    service.approve_use_case(
        "operator", tenant, use_case="access_control", deployment="closed_facility", expires_at=until
    )
    with pytest.raises(PolicyDeniedError):
        service.approve_use_case(
            "operator", tenant, use_case="access_control", deployment="public_space", expires_at=until
        )
    client = FacegateClient(cloud.serve_api(), cloud.issue_token(tenant, f"officer-{tenant}"))
    client.create_gallery("staff", name="Staff", use_case="access_control")
    return tenant, client


def denial_seq(export: dict[str, Any]) -> int:
    (seq,) = [e["seq"] for e in export["entries"] if e["action"] == "approval.refused"]
    return int(seq)


def record(tenant: str, seq: int) -> AuditRecord:
    return AuditRecord.get(tenant, seq, consistent_read=True)


def rehash(rec: AuditRecord) -> str:
    return compute_entry_hash(
        tenant_id=rec.tenant_id,
        seq=int(rec.seq),
        at=rec.at,
        actor=rec.actor,
        action=rec.action,
        details=rec.details,
        prev_hash=rec.prev_hash,
    )


def roll_back_head(tenant: str, last: int) -> None:
    newest, head = record(tenant, last), record(tenant, HEAD_SEQ)
    head.head_seq = last
    head.at, head.actor, head.prev_hash, head.entry_hash = newest.at, newest.actor, newest.prev_hash, newest.entry_hash
    head.save()


def rewrite(tenant: str, seq: int, last: int) -> None:
    """What an intruder with write access to the audit table does: the denial becomes a grant, and every
    hash from there on, and the head, are recomputed with the published recipe."""
    prev = record(tenant, seq - 1).entry_hash
    for s in range(seq, last + 1):
        rec = record(tenant, s)
        if s == seq:
            rec.action = "approval.granted"
            rec.details = {"deployment": "public_space"}
        rec.prev_hash = prev
        rec.entry_hash = prev = rehash(rec)
        rec.save()
    roll_back_head(tenant, last)


def test_get_audit_returns_the_head_and_an_anchor_the_tenant_verifies_offline(
    cloud: LocalCloud, public_key: bytes
) -> None:
    _, client = tenant_with_a_denial(cloud)
    export = client.export_audit()
    assert export["verified"] is True
    assert export["error"] is None
    assert export["head_seq"] == export["entries_checked"] == len(export["entries"])
    assert export["head_hash"] == export["entries"][-1]["entry_hash"]
    assert export["anchor"]["algorithm"] == "ECDSA_SHA_256"
    assert export["anchor"]["key_id"] == cloud.outputs["AuditSigningKeyArn"]
    report = verify_export(export, export["anchor"], public_key)
    assert (report.head_seq, report.head_hash) == (export["head_seq"], export["head_hash"])


def test_a_broken_chain_is_answered_with_its_entries_and_the_fault_not_a_500(cloud: LocalCloud) -> None:
    """GIVEN an entry edited in the table WHEN the tenant exports its log THEN 200: every entry, verified
    false, the fault's kind and seq, and no anchor."""
    tenant, client = tenant_with_a_denial(cloud)
    seq = denial_seq(client.export_audit())
    with cloud.admin():  # an intruder with write access to the audit table (not a role of the stack)
        rec = record(tenant, seq)
        rec.details = {"deployment": "closed_facility"}
        rec.save()

    from facegate import observability

    before = observability.counts[observability.AUDIT_BROKEN]
    export = client.export_audit()
    assert export["verified"] is False
    assert export["anchor"] is None
    assert [e["seq"] for e in export["entries"]] == list(range(1, len(export["entries"]) + 1))
    assert export["error"]["kind"] == "altered"
    assert export["error"]["seq"] == seq
    # ...and the operators hear of it: an ERROR line and the AuditChainBroken metric an alarm watches.
    assert observability.counts[observability.AUDIT_BROKEN] == before + 1
    assert f"broken at seq {seq} (altered)" in export["error"]["message"]


def test_a_rewritten_denial_verifies_clean_alone_but_not_against_the_anchor_the_tenant_kept(
    cloud: LocalCloud, public_key: bytes
) -> None:
    tenant, client = tenant_with_a_denial(cloud)
    before = client.export_audit()
    kept, last = before["anchor"], before["head_seq"]

    with cloud.admin():
        rewrite(tenant, denial_seq(before), last)

    alone = client.export_audit()
    assert alone["verified"] is True  # nothing in the table can tell: documented, not hidden
    assert "approval.refused" not in [e["action"] for e in alone["entries"]]
    checked = client.export_audit(anchor=kept)
    assert checked["verified"] is False
    assert checked["anchor"] is None
    assert (checked["error"]["kind"], checked["error"]["seq"]) == ("altered", last)
    assert len(checked["entries"]) == last
    with pytest.raises(AuditChainError, match=rf"broken at seq {last} \(altered\)"):
        verify_export(alone, kept, public_key)


def test_a_truncation_with_the_head_rolled_back_fails_against_the_anchor(cloud: LocalCloud, public_key: bytes) -> None:
    tenant, client = tenant_with_a_denial(cloud)
    before = client.export_audit()
    kept, last, denied = before["anchor"], before["head_seq"], denial_seq(before)

    with cloud.admin():
        for seq in range(denied, last + 1):
            record(tenant, seq).delete()
        roll_back_head(tenant, denied - 1)

    assert client.export_audit()["verified"] is True
    checked = client.export_audit(anchor=kept)
    assert checked["verified"] is False
    assert (checked["error"]["kind"], checked["error"]["seq"]) == ("truncated", denied)
    assert len(checked["entries"]) == denied - 1
    with pytest.raises(AuditChainError, match=rf"broken at seq {denied} \(truncated\)"):
        verify_export(checked, kept, public_key)


def test_an_anchor_the_service_did_not_sign_or_of_another_tenant_is_a_400(cloud: LocalCloud) -> None:
    _, client = tenant_with_a_denial(cloud)
    _, other = tenant_with_a_denial(cloud)
    genuine = client.export_audit()["anchor"]
    forged = {**genuine, "signature": other.export_audit()["anchor"]["signature"]}
    for anchor, reason in ((forged, "signature"), (other.export_audit()["anchor"], "tenant"), ("garbage", "anchor")):
        with pytest.raises(FacegateApiError) as refused:
            client.export_audit(anchor=anchor)
        assert refused.value.status == 400, anchor
        assert refused.value.code == "request.invalid"
        assert reason in refused.value.message


def test_the_log_reads_in_pages_by_sequence_and_each_page_checks_its_links(cloud: LocalCloud) -> None:
    """GIVEN a tenant's log WHEN it is read a page at a time (from_seq, to_seq, limit) THEN the pages
    together are the full export, each says its links hold; an entry edited in the table shows on the
    page that holds it (and the page after it still links to it as stored); bad ranges are a 400."""
    from facegate.sdk import BadRequestError

    tenant, client = tenant_with_a_denial(cloud)
    full = client.export_audit()["entries"]
    assert len(full) >= 2
    pages = list(client.get_paginator("audit_page").paginate(PageSize=1))
    assert [e for p in pages for e in p["entries"]] == full
    assert all(p["links_verified"] for p in pages)
    assert pages[0]["next_seq"] == 2
    assert "next_seq" not in pages[-1]
    ranged = client.audit_page(from_seq=2, to_seq=2)
    assert [e["seq"] for e in ranged["entries"]] == [2]
    assert ranged["links_verified"] is True

    seq = denial_seq(client.export_audit())
    with cloud.admin():
        rec = record(tenant, seq)
        rec.details = {"deployment": "closed_facility"}
        rec.save()
    broken = client.audit_page(from_seq=seq, to_seq=seq)
    assert broken["links_verified"] is False
    assert (broken["error"]["kind"], broken["error"]["seq"]) == ("altered", seq)

    for bad in ({"from_seq": 0}, {"from_seq": 3, "to_seq": 2}, {"limit": 5000}):
        with pytest.raises(BadRequestError):
            client.audit_page(**bad)  # type: ignore[arg-type]


# --- the export to the tenant's S3 prefix (POST /audit/exports) -----------------------------------------


def _document(cloud: LocalCloud, manifest: dict[str, Any]) -> tuple[bytes, dict[str, Any]]:
    import json

    with cloud.admin():
        raw: bytes = cloud.client("s3").get_object(Bucket=manifest["bucket"], Key=manifest["key"])["Body"].read()
    return raw, json.loads(raw)


def test_a_large_log_goes_to_the_tenants_prefix_verified_signed_and_on_the_record(
    cloud: LocalCloud, public_key: bytes
) -> None:
    """The export is asked for (202, queued), runs on its own, and its document is the one ``GET /audit``
    answers (verify_export checks it offline against the pinned key); its SHA-256 is the one the
    ``audit.exported`` entry recorded; the request and the export are both on the record."""
    import hashlib

    tenant, client = tenant_with_a_denial(cloud)
    kept = client.export_audit()["anchor"]  # an anchor the tenant kept before
    started = client.start_audit_export()
    assert started["status"] == "queued"
    assert started["key"] == f"tenants/{tenant}/audit-exports/{started['export_id']}/audit.json"
    done = client.wait_for_audit_export(started["export_id"], timeout=60)
    assert done["status"] == "completed", done
    assert done["verified"] is True
    assert done["download_expires_in"] == 900
    assert done["download_url"].startswith("https://")
    raw, document = _document(cloud, done)
    assert hashlib.sha256(raw).hexdigest() == done["sha256"]
    assert len(raw) == done["bytes"]
    report = verify_export(document, document["anchor"], public_key)
    assert report.head_seq == done["last_seq"] == document["entries"][-1]["seq"]
    verify_export(document, kept, public_key)  # and it still holds the head the tenant kept
    assert [e["action"] for e in document["entries"][-2:]] == ["audit.export_requested", "audit.export_started"]

    log = client.export_audit()
    exported = [e for e in log["entries"] if e["action"] == "audit.exported"]
    assert [e["details"] for e in exported] == [
        {
            "export_id": started["export_id"],
            "entries": len(document["entries"]),
            "last_seq": done["last_seq"],
            "sha256": done["sha256"],
            "verified": True,
        }
    ]


def test_another_tenants_export_is_no_export_and_a_bad_id_is_bad_input(cloud: LocalCloud) -> None:
    _, owner = tenant_with_a_denial(cloud)
    _, other = tenant_with_a_denial(cloud)
    export_id = owner.start_audit_export()["export_id"]
    owner.wait_for_audit_export(export_id, timeout=60)
    with pytest.raises(FacegateApiError) as foreign:
        other.audit_export(export_id)
    assert (foreign.value.status, foreign.value.code) == (404, "resource.not_found")
    for bad in ("x" * 32, "../" + export_id, export_id.upper()):
        with pytest.raises(FacegateApiError) as refused:
            other.audit_export(bad)
        assert refused.value.status in (400, 404), bad  # a path with '/' is no route at all (404)
        assert refused.value.status != 500


def test_an_export_that_cannot_start_is_recorded_failed(cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch) -> None:
    """The failure between two steps: the request is recorded and its manifest written, then Lambda
    refuses the start. The tenant gets a 503 to retry, and the record and the manifest say it failed."""
    from botocore.exceptions import ClientError

    from facegate import api as api_module

    _, client = tenant_with_a_denial(cloud)

    def refuse(self: Any) -> Any:
        class Refusing:
            def invoke(self, **kwargs: Any) -> Any:
                raise ClientError({"Error": {"Code": "TooManyRequestsException", "Message": "rate"}}, "Invoke")

        return Refusing()

    monkeypatch.setattr(api_module.TenantApi, "_lambda", refuse)
    with pytest.raises(FacegateApiError) as refused:
        client.start_audit_export()
    assert refused.value.status == 503
    actions = [(e["action"], e["details"]) for e in client.export_audit()["entries"]]
    requested = [d["export_id"] for a, d in actions if a == "audit.export_requested"]
    failed = [d for a, d in actions if a == "audit.export_failed"]
    assert requested  # the SDK retried the 503 (nothing was exported): each attempt is on the record, failed
    assert failed == [{"export_id": e, "code": "export.not_started"} for e in requested]
    monkeypatch.undo()
    assert client.audit_export(requested[-1])["status"] == "failed"
    assert client.audit_export(requested[-1])["error"] == {"code": "export.not_started"}


def test_a_loop_of_exports_is_throttled_and_on_the_record(cloud: LocalCloud) -> None:
    """Each export is a long run over the whole log: a tenant may start 6 an hour; the 7th is a 429
    (recorded), and the other tenants' exports are not touched by it."""
    _, client = tenant_with_a_denial(cloud)
    once = FacegateClient(client.endpoint, auth=client.auth, max_attempts=1)  # the SDK would retry a 429
    started = [once.start_audit_export()["export_id"] for _ in range(6)]
    with pytest.raises(FacegateApiError) as throttled:
        once.start_audit_export()
    assert (throttled.value.status, throttled.value.code) == (429, "audit_export.throttled")
    # The exports run on threads of this process (the local cloud's Lambda): let them end before the
    # next tenant is set up outside any scope (separate processes in Lambda; one here).
    assert {client.wait_for_audit_export(e, timeout=120)["status"] for e in started} == {"completed"}
    actions = [e["action"] for e in client.export_audit()["entries"]]
    assert actions.count("audit.export_requested") == 6
    assert actions.count("audit.export_refused") == 1
    _, other = tenant_with_a_denial(cloud)
    assert other.wait_for_audit_export(other.start_audit_export()["export_id"], timeout=60)["status"] == "completed"


def test_a_tenant_system_cannot_plant_an_exports_objects(cloud: LocalCloud) -> None:
    """The uploader session writes under its tenant's prefix, but never an export's manifest or
    document (a forged manifest would otherwise decide what the API presigns)."""
    from botocore.exceptions import ClientError

    tenant, _ = tenant_with_a_denial(cloud)
    with pytest.raises(ClientError) as denied:
        cloud.uploader(tenant).put_object(
            Bucket=cloud.bucket, Key=f"tenants/{tenant}/audit-exports/{'ab' * 16}/manifest.json", Body=b"{}"
        )
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
