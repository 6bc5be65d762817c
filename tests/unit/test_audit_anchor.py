"""Unit tests of :mod:`facegate.audit.anchor`: the chain head signed with a KMS key, kept outside the table.

The intruder here can write the audit table (a tenant's own IAM session can) and knows the published hash
recipe, so it rewrites entries *and* every later hash *and* the head: the table alone then verifies. What
it cannot do is sign with the service's KMS key, so an anchor the tenant kept from an earlier export
still tells. Everything runs against moto's in-process DynamoDB and KMS.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from moto import mock_aws

from facegate.audit import (
    GENESIS_HASH,
    HEAD_SEQ,
    AuditLog,
    ChainReport,
    canonical_json,
    compute_entry_hash,
)
from facegate.audit.anchor import (
    ANCHOR_TYPE,
    SIGNING_ALGORITHM,
    AnchorSigner,
    AuditExport,
    ChainFault,
    SignedAnchor,
    export_with_anchor,
    verify_anchor,
)
from facegate.errors import AuditChainError, StorageError
from facegate.sdk import verify_export
from facegate.settings import Settings
from facegate.store.models import AuditRecord, configure, create_tables
from facegate.tenancy import TenantContext

REGION = "us-east-1"
N = 8
DENIAL = 4  # the seq of the refusal the intruder wants gone


# --- fixtures and helpers ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aws_session() -> Iterator[Settings]:
    """moto for this module only; dummy credentials, and no endpoint or profile from the developer's shell."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
            patch.delenv(name, raising=False)
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            patch.setenv(name, "testing")
        patch.setenv("AWS_DEFAULT_REGION", REGION)
        with mock_aws():
            settings = Settings(table_prefix="a" + uuid.uuid4().hex, region=REGION)
            configure(settings)
            create_tables()
            yield settings


@pytest.fixture(scope="module")
def kms(aws_session: Settings) -> Any:
    return boto3.client("kms", region_name=REGION)


def signing_key(kms: Any) -> str:
    """A key as template.yaml declares it: ECC_NIST_P256, SIGN_VERIFY."""
    meta = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY", Description="audit anchors")
    return str(meta["KeyMetadata"]["Arn"])


@pytest.fixture(scope="module")
def signer(kms: Any) -> AnchorSigner:
    return AnchorSigner(kms, signing_key(kms))


@pytest.fixture(scope="module")
def public_key(signer: AnchorSigner) -> bytes:
    return signer.public_key_der()


@pytest.fixture(autouse=True)
def aws(aws_session: Settings) -> Iterator[None]:
    yield
    if AuditRecord.Meta.table_name != f"{aws_session.table_prefix}-audit":  # a test pointed the models away
        configure(aws_session)


@pytest.fixture
def log() -> AuditLog:
    return AuditLog(page_size=3)


def new_ctx(actor: str = "officer-1") -> TenantContext:
    return TenantContext(tenant_id="tenant-" + uuid.uuid4().hex[:12], actor=actor)


def fill(log: AuditLog, ctx: TenantContext, n: int) -> None:
    """``n`` entries; seq :data:`DENIAL` is a refusal by the gate."""
    for seq in range(1, n + 1):
        if seq == DENIAL:
            log.append(ctx, "search.refused", {"decision": "deny", "reasons": ["policy.watchlist_not_approved"]})
        else:
            log.append(ctx, "search.completed", {"decision": "allow", "i": seq})


def record(tenant: str, seq: int) -> AuditRecord:
    return AuditRecord.get(tenant, seq, consistent_read=True)


def rehash(rec: AuditRecord) -> str:
    """What an intruder who knows the (public) recipe computes for an item."""
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
    """Make the head exactly what an honest head would hold after append ``last``."""
    newest = record(tenant, last)
    head = record(tenant, HEAD_SEQ)
    head.head_seq = last
    head.at, head.actor, head.prev_hash, head.entry_hash = newest.at, newest.actor, newest.prev_hash, newest.entry_hash
    head.save()


def rewrite_the_denial(tenant: str, last: int) -> None:
    """Turn the refusal into a completed search, recompute its hash, every later link and hash, and the head."""
    prev = record(tenant, DENIAL - 1).entry_hash
    for seq in range(DENIAL, last + 1):
        rec = record(tenant, seq)
        if seq == DENIAL:
            rec.action = "search.completed"
            rec.details = {"decision": "allow", "i": seq}
        rec.prev_hash = prev
        rec.entry_hash = prev = rehash(rec)
        rec.save()
    roll_back_head(tenant, last)


def truncate_and_roll_back(tenant: str, last: int, k: int) -> None:
    """Delete the newest ``k`` entries (the denial among them) and roll the head back to match."""
    for seq in range(last - k + 1, last + 1):
        record(tenant, seq).delete()
    roll_back_head(tenant, last - k)


def payload_of(anchor: SignedAnchor) -> dict[str, Any]:
    claims: dict[str, Any] = json.loads(anchor.payload)
    return claims


def expect_broken(seq: int, kind: str, exc: AuditChainError) -> None:
    assert f"broken at seq {seq} ({kind})" in exc.message, exc.message
    assert "anchor" in exc.message, exc.message


# --- signing and verifying an anchor ---------------------------------------------------------------------


def test_a_signed_anchor_carries_the_head_and_verifies_with_the_public_key(
    log: AuditLog, signer: AnchorSigner, public_key: bytes
) -> None:
    """GIVEN a verified log WHEN its head is signed THEN the anchor's canonical payload names the tenant,
    head seq and hash and signing time, and the public key alone (no AWS) gives the report back."""
    ctx = new_ctx()
    fill(log, ctx, N)
    report = log.verify(ctx)
    anchor = signer.sign(report)

    claims = payload_of(anchor)
    assert anchor.payload == canonical_json(claims)  # the bytes signed are the canonical encoding
    assert claims["type"] == ANCHOR_TYPE
    assert (claims["tenant_id"], claims["head_seq"], claims["head_hash"]) == (ctx.tenant_id, N, report.head_hash)
    assert datetime.fromisoformat(claims["at"]).tzinfo is not None
    assert anchor.algorithm == SIGNING_ALGORITHM == "ECDSA_SHA_256"
    assert anchor.key_id == signer.key_id
    assert verify_anchor(anchor, public_key) == report
    assert signer.verify(anchor) == report


def test_an_anchor_round_trips_through_its_dict_and_its_token(log: AuditLog, signer: AnchorSigner) -> None:
    """The dict is what GET /audit returns; the token (base64url JSON) is what GET /audit?anchor= takes."""
    ctx = new_ctx()
    fill(log, ctx, 2)
    anchor = signer.sign(log.verify(ctx))
    as_json = json.loads(json.dumps(anchor.to_dict()))
    assert SignedAnchor.from_dict(as_json) == anchor
    token = anchor.to_token()
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")  # URL-safe as is
    assert SignedAnchor.from_token(token) == anchor
    assert len(token) < 1024  # fits a query string comfortably (the payload is ~200 bytes)


def test_an_empty_log_has_an_anchor_too(log: AuditLog, signer: AnchorSigner, public_key: bytes) -> None:
    ctx = new_ctx()
    report = log.verify(ctx)
    assert verify_anchor(signer.sign(report), public_key) == ChainReport(ctx.tenant_id, 0, 0, GENESIS_HASH)


# --- what the table alone cannot show, and the anchor can ------------------------------------------------


def test_a_denial_rewritten_with_a_recomputed_chain_passes_the_table_check_but_not_the_anchor(
    log: AuditLog, signer: AnchorSigner, public_key: bytes
) -> None:
    """GIVEN a log whose head the tenant holds as a signed anchor WHEN an intruder with write access to
    the table rewrites the denial, recomputes every later hash and rewrites the head THEN the table is
    self-consistent (documented: nothing in it can tell) and verification against the anchor fails
    (altered), on the table and on an export alike."""
    ctx = new_ctx()
    fill(log, ctx, N)
    anchor = signer.sign(log.verify(ctx))

    rewrite_the_denial(ctx.tenant_id, N)

    assert log.verify(ctx).head_seq == N  # the table alone: verified clean (today's behaviour, documented)
    assert "search.refused" not in [e.action for e in log.entries(ctx)]
    held = verify_anchor(anchor, public_key)
    with pytest.raises(AuditChainError) as on_table:
        log.verify(ctx, anchor=held)
    expect_broken(N, "altered", on_table.value)
    export = {"entries": log.export(ctx)}
    with pytest.raises(AuditChainError) as offline:
        verify_export(export, anchor.to_dict(), public_key)
    expect_broken(N, "altered", offline.value)


def test_an_older_anchor_still_catches_a_rewrite_before_it_and_accepts_honest_appends(
    log: AuditLog, signer: AnchorSigner, public_key: bytes
) -> None:
    """GIVEN an anchor taken after the denial WHEN honest entries follow THEN it still verifies; WHEN the
    denial is then rewritten (chain and head recomputed) THEN the anchored seq no longer matches."""
    ctx = new_ctx()
    fill(log, ctx, DENIAL + 1)
    anchor = signer.sign(log.verify(ctx))
    log.append(ctx, "search.completed", {"decision": "allow", "i": 99})
    held = verify_anchor(anchor, public_key)
    assert log.verify(ctx, anchor=held).head_seq == DENIAL + 2
    assert verify_export({"entries": log.export(ctx)}, anchor.to_token(), public_key).head_seq == DENIAL + 2

    rewrite_the_denial(ctx.tenant_id, DENIAL + 2)
    with pytest.raises(AuditChainError) as info:
        log.verify(ctx, anchor=held)
    expect_broken(DENIAL + 1, "altered", info.value)


@pytest.mark.parametrize("k", [1, N - DENIAL + 1, N])
def test_a_truncation_with_the_head_rolled_back_fails_against_the_anchor(
    log: AuditLog, signer: AnchorSigner, public_key: bytes, k: int
) -> None:
    """GIVEN a signed anchor WHEN the newest k entries are deleted and the head rolled back exactly THEN the
    table alone passes, and against the anchor it is truncated, naming the first seq gone."""
    ctx = new_ctx()
    fill(log, ctx, N)
    anchor = signer.sign(log.verify(ctx))

    if k == N:
        for seq in (*range(1, N + 1), HEAD_SEQ):
            record(ctx.tenant_id, seq).delete()
    else:
        truncate_and_roll_back(ctx.tenant_id, N, k)

    assert log.verify(ctx).head_seq == N - k  # the table alone: an honest shorter log
    held = verify_anchor(anchor, public_key)
    with pytest.raises(AuditChainError) as on_table:
        log.verify(ctx, anchor=held)
    expect_broken(N - k + 1, "truncated", on_table.value)
    with pytest.raises(AuditChainError) as offline:
        verify_export({"entries": log.export(ctx)}, anchor.to_dict(), public_key)
    expect_broken(N - k + 1, "truncated", offline.value)


def test_an_export_with_an_entry_removed_fails_offline(log: AuditLog, signer: AnchorSigner, public_key: bytes) -> None:
    """The export a tenant downloads is checked as it stands: a gap is missing, whatever the service says."""
    ctx = new_ctx()
    fill(log, ctx, N)
    anchor = signer.sign(log.verify(ctx))
    entries = log.export(ctx)
    del entries[DENIAL - 1]
    with pytest.raises(AuditChainError) as info:
        verify_export({"entries": entries}, anchor.to_dict(), public_key)
    assert f"broken at seq {DENIAL} (missing)" in info.value.message


# --- forged anchors are refused ---------------------------------------------------------------------------


def _with_payload(anchor: SignedAnchor, **changes: Any) -> SignedAnchor:
    claims = {**payload_of(anchor), **changes}
    return SignedAnchor(
        payload=canonical_json(claims), signature=anchor.signature, key_id=anchor.key_id, algorithm=anchor.algorithm
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"head_seq": 3},
        {"head_hash": "f" * 64},
        {"tenant_id": "tenant-someone-else"},
        {"at": "2031-01-01T00:00:00.000000Z"},
    ],
    ids=["seq", "hash", "tenant", "time"],
)
def test_an_anchor_whose_payload_was_changed_is_refused(
    log: AuditLog, signer: AnchorSigner, public_key: bytes, changes: dict[str, Any]
) -> None:
    ctx = new_ctx()
    fill(log, ctx, N)
    forged = _with_payload(signer.sign(log.verify(ctx)), **changes)
    with pytest.raises(ValueError, match="signature"):
        verify_anchor(forged, public_key)
    with pytest.raises(ValueError, match="signature"):
        signer.verify(forged)


def test_an_anchor_signed_by_another_kms_key_is_refused(
    log: AuditLog, kms: Any, signer: AnchorSigner, public_key: bytes
) -> None:
    """GIVEN an intruder who rewrote the log WHEN it signs the forged head with a key of its own (even one
    in KMS, even naming our key id) THEN the service's public key refuses it."""
    ctx = new_ctx()
    fill(log, ctx, N)
    rewrite_the_denial(ctx.tenant_id, N)
    theirs = AnchorSigner(kms, signing_key(kms)).sign(log.verify(ctx))
    posing = SignedAnchor(theirs.payload, theirs.signature, key_id=signer.key_id, algorithm=theirs.algorithm)
    for forged in (theirs, posing):
        with pytest.raises(ValueError, match="signature"):
            verify_anchor(forged, public_key)


def test_an_anchor_signed_with_a_local_key_is_refused(log: AuditLog, signer: AnchorSigner, public_key: bytes) -> None:
    ctx = new_ctx()
    fill(log, ctx, 2)
    genuine = signer.sign(log.verify(ctx))
    private = ec.generate_private_key(ec.SECP256R1())
    signature = private.sign(genuine.payload, ec.ECDSA(hashes.SHA256()))
    forged = SignedAnchor(genuine.payload, signature, key_id=genuine.key_id, algorithm=genuine.algorithm)
    with pytest.raises(ValueError, match="signature"):
        verify_anchor(forged, public_key)
    # ... and the forger's own public key is not the service's: a tenant pins the key it was given.
    other_key = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert verify_anchor(forged, other_key).head_seq == 2


def test_a_genuine_signature_over_something_that_is_not_an_anchor_is_refused(
    kms: Any, signer: AnchorSigner, public_key: bytes
) -> None:
    """The key signs anchors only, but the payload's type is checked anyway: a signature over any other
    message (should the key ever sign one) does not make it an anchor."""
    message = canonical_json({"tenant_id": "t", "head_seq": 1, "head_hash": "a" * 64, "at": "2024-01-01T00:00:00Z"})
    signed = kms.sign(KeyId=signer.key_id, Message=message, MessageType="RAW", SigningAlgorithm=SIGNING_ALGORITHM)
    anchor = SignedAnchor(message, signed["Signature"], key_id=signer.key_id, algorithm=SIGNING_ALGORITHM)
    with pytest.raises(ValueError, match="not an audit anchor"):
        verify_anchor(anchor, public_key)


def test_an_anchor_naming_another_algorithm_is_refused(log: AuditLog, signer: AnchorSigner, public_key: bytes) -> None:
    ctx = new_ctx()
    genuine = signer.sign(log.verify(ctx))
    renamed = SignedAnchor(genuine.payload, genuine.signature, key_id=genuine.key_id, algorithm="ECDSA_SHA_384")
    with pytest.raises(ValueError, match="ECDSA_SHA_384"):
        verify_anchor(renamed, public_key)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not base64 !",
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        base64.urlsafe_b64encode(b'{"payload": "x"}').decode(),
        base64.urlsafe_b64encode(
            json.dumps({"payload": "%%", "signature": "", "key_id": "k", "algorithm": "a"}).encode()
        )
        .decode()
        .rstrip("="),
        "A" * 5000,
    ],
    ids=["empty", "not-base64", "not-an-object", "fields-missing", "field-not-base64", "too-long"],
)
def test_a_malformed_token_is_a_value_error(token: str) -> None:
    with pytest.raises(ValueError, match="anchor"):
        SignedAnchor.from_token(token)


def test_a_public_key_that_is_not_p256_is_refused(log: AuditLog, signer: AnchorSigner) -> None:
    ctx = new_ctx()
    anchor = signer.sign(log.verify(ctx))
    p384 = (
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for key in (p384, b"not a key"):
        with pytest.raises(ValueError, match="P-256"):
            verify_anchor(anchor, key)


def test_a_signer_over_a_key_that_cannot_sign_anchors_fails_clearly(kms: Any) -> None:
    symmetric = kms.create_key(KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["Arn"]
    with pytest.raises(StorageError, match="ECC_NIST_P256"):
        AnchorSigner(kms, symmetric).public_key_der()
    with pytest.raises(StorageError, match="KMS"):
        AnchorSigner(kms, "arn:aws:kms:us-east-1:123456789012:key/" + str(uuid.uuid4())).sign(
            ChainReport("t", 0, 0, GENESIS_HASH)
        )


# --- the export GET /audit answers --------------------------------------------------------------------


def test_the_export_of_an_intact_log_is_verified_and_anchored(
    log: AuditLog, signer: AnchorSigner, public_key: bytes
) -> None:
    ctx = new_ctx()
    fill(log, ctx, N)
    export = export_with_anchor(log, signer, ctx)
    body = json.loads(json.dumps(export.to_dict()))
    assert body["verified"] is True
    assert body["error"] is None
    assert (body["entries_checked"], body["head_seq"]) == (N, N)
    assert body["head_hash"] == body["entries"][-1]["entry_hash"]
    assert verify_anchor(SignedAnchor.from_dict(body["anchor"]), public_key) == log.verify(ctx)
    assert base64.b64decode(body["public_key"]) == public_key
    assert verify_export(body, body["anchor"], public_key).head_seq == N


def test_the_export_of_a_broken_chain_keeps_its_entries_and_names_the_fault(
    log: AuditLog, signer: AnchorSigner
) -> None:
    """GIVEN a log with an entry edited in place WHEN exported THEN not an exception: the entries, verified
    false, the fault's kind, seq and message, and no anchor (a broken chain is never signed)."""
    ctx = new_ctx()
    fill(log, ctx, N)
    rec = record(ctx.tenant_id, DENIAL)
    rec.details = {"decision": "allow"}
    rec.save()
    body: dict[str, Any] = export_with_anchor(log, signer, ctx).to_dict()
    assert body["verified"] is False
    assert len(body["entries"]) == N
    assert body["anchor"] is None
    assert body["head_seq"] is None
    assert body["error"]["kind"] == "altered"
    assert body["error"]["seq"] == DENIAL
    assert f"broken at seq {DENIAL} (altered)" in body["error"]["message"]


def test_the_export_checked_against_a_held_anchor_reports_the_rewrite(
    log: AuditLog, signer: AnchorSigner, public_key: bytes
) -> None:
    ctx = new_ctx()
    fill(log, ctx, N)
    anchor = signer.sign(log.verify(ctx))
    truncate_and_roll_back(ctx.tenant_id, N, N - DENIAL + 1)
    assert export_with_anchor(log, signer, ctx).verified is True  # the table alone looks honest
    export = export_with_anchor(log, signer, ctx, held=verify_anchor(anchor, public_key))
    assert isinstance(export, AuditExport)
    assert export.verified is False
    assert export.anchor is None
    assert export.error is not None
    assert (export.error.kind, export.error.seq) == ("truncated", DENIAL)
    assert len(export.entries) == DENIAL - 1


def test_a_fault_names_kind_and_seq_from_the_chain_error() -> None:
    fault = ChainFault.from_error(AuditChainError("audit chain of tenant 't' broken at seq 7 (truncated): gone"))
    assert (fault.kind, fault.seq) == ("truncated", 7)
    odd = ChainFault.from_error(AuditChainError("audit chain of tenant 't' broken at seq 2.5 (forged): between"))
    assert (odd.kind, odd.seq) == ("forged", "2.5")


def test_signing_uses_the_signers_clock(kms: Any, signer: AnchorSigner, public_key: bytes) -> None:
    at = datetime(2030, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    clocked = AnchorSigner(kms, signer.key_id, clock=lambda: at)
    anchor = clocked.sign(ChainReport("t", 0, 0, GENESIS_HASH))
    assert payload_of(anchor)["at"] == "2030-01-02T03:04:05.000006Z"
    assert verify_anchor(anchor, public_key) == ChainReport("t", 0, 0, GENESIS_HASH)
