"""Who uploaded a probe: the API's authenticated actor when its proof verifies, otherwise only a claim.

GIVEN a probe's object metadata naming an actor WHEN the policy check builds the request THEN the actor
is recorded as authenticated only if the API's HMAC proof (over tenant, bucket, key, the object's
SHA-256 checksum and the actor) verifies with the KMS key; a spoofed, copied, replayed or missing proof
leaves the tenant's own system as the actor and the declared one as ``claimed_actor``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from facegate.workflow.models import ObjectRef, WorkflowRequest
from facegate.workflow.uploads import UploadProofs, checksum_sha256

TENANT = "state-prison-7"
BUCKET = "facegate-probes"
KEY = f"tenants/{TENANT}/probes/residents/3f2a.jpg"
DATA = b"\xff\xd8 pretend jpeg bytes"


@pytest.fixture
def kms(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for k, v in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        yield boto3.client("kms", region_name="us-east-1")


def _key(kms: Any) -> str:
    return str(kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"])


def _proof(proofs: UploadProofs, *, key: str = KEY, data: bytes = DATA, actor: str = "officer-1") -> str:
    return proofs.sign(tenant_id=TENANT, bucket=BUCKET, key=key, checksum=checksum_sha256(data), actor=actor)


def _verify(
    proofs: UploadProofs, proof: str | None, *, key: str = KEY, data: bytes = DATA, actor: str = "officer-1"
) -> bool:
    return proofs.verify(proof, tenant_id=TENANT, bucket=BUCKET, key=key, checksum=checksum_sha256(data), actor=actor)


def test_the_apis_proof_verifies(kms: Any) -> None:
    proofs = UploadProofs(kms, _key(kms))
    assert _verify(proofs, _proof(proofs)) is True


@pytest.mark.parametrize(
    "change",
    [
        {"actor": "officer-2"},  # metadata edited to name someone else
        {"key": f"tenants/{TENANT}/probes/residents/other.jpg"},  # proof copied onto another object
        {"data": b"other bytes"},  # the object overwritten with other bytes, metadata kept
    ],
)
def test_a_proof_does_not_carry_over_to_another_actor_key_or_content(kms: Any, change: dict[str, Any]) -> None:
    proofs = UploadProofs(kms, _key(kms))
    assert _verify(proofs, _proof(proofs), **change) is False


@pytest.mark.parametrize("proof", [None, "", "not base64!", "AAAA", "b2ZmaWNlci0x"])
def test_a_missing_or_forged_proof_does_not_verify(kms: Any, proof: str | None) -> None:
    assert _verify(UploadProofs(kms, _key(kms)), proof) is False


def test_a_proof_made_with_another_key_does_not_verify(kms: Any) -> None:
    mine, theirs = UploadProofs(kms, _key(kms)), UploadProofs(kms, _key(kms))
    assert _verify(mine, _proof(theirs)) is False


def test_an_unproven_upload_records_the_tenants_system_and_keeps_the_claim() -> None:
    ref = ObjectRef(bucket=BUCKET, key=KEY, version_id="v1")
    req = WorkflowRequest.from_probe(ref, {"operation": "search", "actor": "officer-1", "purpose": "entry"})
    assert req.actor == f"s3-upload:{TENANT}"
    assert req.claimed_actor == "officer-1"
    assert req.ctx.actor == f"s3-upload:{TENANT}"


def test_a_proven_upload_records_the_authenticated_actor() -> None:
    ref = ObjectRef(bucket=BUCKET, key=KEY, version_id="v1")
    meta = {"operation": "search", "actor": "officer-1", "actor-proof": "x", "purpose": "entry"}
    req = WorkflowRequest.from_probe(ref, meta, proven=True)
    assert req.actor == "officer-1"
    assert req.claimed_actor is None
