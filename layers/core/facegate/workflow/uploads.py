"""Who uploaded a probe: the authenticated actor, proven, or only a claim.

A probe's object metadata names an ``actor``, and whoever can write the object can write any metadata.
So the API, which knows the caller from a verified token, also writes ``actor-proof``: an HMAC (a KMS
``HMAC_SHA_256`` key that only the API may use to generate and only the policy check may use to verify)
over the tenant, the bucket, the key, the object's SHA-256 checksum (S3 stores it with the object: an
overwrite with other bytes changes it) and the actor. The policy check records the actor as
authenticated only when the proof verifies; otherwise the uploader is recorded as the tenant's own
system (``s3-upload:<tenant>``) and the declared actor is kept as ``claimed_actor``, never trusted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any, Final

from botocore.exceptions import ClientError

from facegate.errors import StorageError

ALGORITHM: Final = "HMAC_SHA_256"
PROOF_VERSION: Final = "facegate.upload.v1"


def checksum_sha256(data: bytes) -> str:
    """S3's spelling of a SHA-256 checksum (base64 of the digest)."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def proof_message(*, tenant_id: str, bucket: str, key: str, checksum: str, actor: str) -> bytes:
    # Newline-separated: none of the fields can hold one (S3 metadata and keys here are printable).
    return "\n".join((PROOF_VERSION, tenant_id, bucket, key, checksum, actor)).encode()


class UploadProofs:
    """Generate (API) and verify (policy check) actor proofs with one KMS HMAC key."""

    def __init__(self, kms: Any, key_id: str) -> None:
        self.kms = kms
        self.key_id = key_id

    def sign(self, *, tenant_id: str, bucket: str, key: str, checksum: str, actor: str) -> str:
        message = proof_message(tenant_id=tenant_id, bucket=bucket, key=key, checksum=checksum, actor=actor)
        try:
            mac = self.kms.generate_mac(KeyId=self.key_id, MacAlgorithm=ALGORITHM, Message=message)["Mac"]
        except ClientError as exc:
            raise StorageError(f"proving the uploader failed: {exc.response.get('Error', {}).get('Code')}") from exc
        return base64.b64encode(mac).decode()

    def verify(
        self, proof: str | None, *, tenant_id: str, bucket: str, key: str, checksum: str | None, actor: str
    ) -> bool:
        """Whether ``proof`` proves that the API stored these bytes at this key for ``actor``."""
        if not proof or not checksum:
            return False
        try:
            mac = base64.b64decode(proof, validate=True)
        except (binascii.Error, ValueError):
            return False
        message = proof_message(tenant_id=tenant_id, bucket=bucket, key=key, checksum=checksum, actor=actor)
        try:
            response = self.kms.verify_mac(KeyId=self.key_id, MacAlgorithm=ALGORITHM, Message=message, Mac=mac)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "KMSInvalidMacException":
                return False
            raise StorageError(f"checking the uploader failed: {exc.response.get('Error', {}).get('Code')}") from exc
        return bool(response.get("MacValid"))
