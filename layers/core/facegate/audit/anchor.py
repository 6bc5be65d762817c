"""Signed anchors: the chain head signed with a KMS key, so that it can be kept, and checked, outside the table.

Why
---
Whoever can write the audit table (a tenant's own IAM session can) can rewrite an entry and recompute
every later hash and the head, or delete the newest entries and roll the head back: the table then
holds exactly what an honest log would, and :meth:`AuditLog.verify` passes. A :class:`ChainReport` kept
elsewhere catches both (``verify(ctx, anchor=report)``), but only if the holder can trust that it is the
service's and unchanged. A signed anchor is that report, signed by a key no table writer holds.

Format
------
``payload`` is the canonical JSON (:func:`canonical_json`) of::

    {"type": "facegate.audit.anchor", "v": 1, "tenant_id": ..., "head_seq": ..., "head_hash": ..., "at": ...}

(``at``: when it was signed, in the audit timestamp spelling). ``signature`` is KMS's ECDSA signature
(DER, ``ECDSA_SHA_256`` over the payload bytes, key spec ``ECC_NIST_P256``). On the wire
(:meth:`SignedAnchor.to_dict`) both are base64url without padding, beside ``key_id`` (the key's ARN) and
``algorithm``; :meth:`SignedAnchor.to_token` is that object's canonical JSON, base64url again: one
URL-safe string (~600 characters) for ``GET /audit?anchor=``. The payload is carried as the exact bytes
that were signed, so a verifier in any language checks the signature first and parses JSON second.

Verifying needs only the public key (DER SubjectPublicKeyInfo, ``aws kms get-public-key``), not AWS:
:func:`verify_anchor`. Pin it once; an anchor that verifies only under some other key proves nothing.
The key is never rotated in place (KMS does not rotate asymmetric keys): anchors signed by a retired
key verify with that key's public half, which is why the key is retained.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from facegate.audit.chain import (
    JSON,
    ChainReport,
    canonical_json,
    format_timestamp,
    parse_timestamp,
)
from facegate.audit.log import AuditLog
from facegate.errors import AuditChainError, StorageError
from facegate.tenancy import TenantContext

ANCHOR_TYPE: Final = "facegate.audit.anchor"
ANCHOR_VERSION: Final = 1
KEY_SPEC: Final = "ECC_NIST_P256"
SIGNING_ALGORITHM: Final = "ECDSA_SHA_256"
MAX_TOKEN_CHARS: Final = 4096
"""A genuine token is ~600 characters (payload ~200 bytes, signature ≤ 72, a key ARN ~75, each base64'd,
then the whole base64'd again); anything far longer is refused before it is decoded."""

_HASH: Final = re.compile(r"[0-9a-f]{64}")
_FIELDS: Final = frozenset({"payload", "signature", "key_id", "algorithm"})
_CLAIMS: Final = frozenset({"type", "v", "tenant_id", "head_seq", "head_hash", "at"})
# chain_error's documented message: "audit chain of tenant 't' broken at seq 5 (altered): ...".
_FAULT: Final = re.compile(r"broken at seq (?P<seq>\S+) \((?P<kind>[a-z]+)\)")


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: object, what: str) -> bytes:
    if not isinstance(text, str) or not text.isascii():
        raise ValueError(f"the anchor's {what} is not base64url text")
    try:
        # Strict: urlsafe_b64decode would skip characters outside the alphabet instead of refusing them.
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the anchor's {what} is not base64url") from None


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --- the anchor ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignedAnchor:
    """A chain head as the service signed it; :func:`verify_anchor` says whether it is genuine."""

    payload: bytes
    """The canonical JSON that was signed (see the module docstring)."""
    signature: bytes
    """The DER-encoded ECDSA signature over ``payload``."""
    key_id: str
    """The ARN of the KMS key that signed (informational: trust comes from the public key you pinned)."""
    algorithm: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready, as ``GET /audit`` returns it."""
        return {
            "payload": _b64encode(self.payload),
            "signature": _b64encode(self.signature),
            "key_id": self.key_id,
            "algorithm": self.algorithm,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SignedAnchor:
        """The inverse of :meth:`to_dict`. Nothing is verified yet.

        Raises
        ------
        ValueError
            Not an object of exactly ``payload``, ``signature``, ``key_id`` and ``algorithm``, or a field
            that is not what it should be.
        """
        if not isinstance(data, Mapping) or set(data) != _FIELDS:
            raise ValueError(f"an anchor is an object of exactly {', '.join(sorted(_FIELDS))}")
        key_id, algorithm = data["key_id"], data["algorithm"]
        if not isinstance(key_id, str) or not isinstance(algorithm, str):
            raise ValueError("the anchor's key_id and algorithm are strings")
        return cls(
            payload=_b64decode(data["payload"], "payload"),
            signature=_b64decode(data["signature"], "signature"),
            key_id=key_id,
            algorithm=algorithm,
        )

    def to_token(self) -> str:
        """One URL-safe string: base64url of the canonical JSON of :meth:`to_dict`."""
        return _b64encode(canonical_json(self.to_dict()))

    @classmethod
    def from_token(cls, token: str) -> SignedAnchor:
        """The inverse of :meth:`to_token`. Nothing is verified yet.

        Raises
        ------
        ValueError
            Too long, not base64url, or not the JSON of an anchor.
        """
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            raise ValueError(f"an anchor token is 1 to {MAX_TOKEN_CHARS} characters of base64url")
        raw = _b64decode(token, "token")
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise ValueError("the anchor token is not base64url JSON") from None
        return cls.from_dict(data)

    @classmethod
    def parse(cls, value: SignedAnchor | Mapping[str, Any] | str) -> SignedAnchor:
        """An anchor in any of its forms: itself, its dict (as ``GET /audit`` returned it) or its token."""
        if isinstance(value, SignedAnchor):
            return value
        if isinstance(value, str):
            return cls.from_token(value)
        return cls.from_dict(value)


def _claims(payload: bytes) -> ChainReport:
    """The report a (verified) payload vouches for; the payload's shape is checked as strictly as its signature."""
    try:
        claims = json.loads(payload)
    except (ValueError, RecursionError):
        raise ValueError("the signed payload is not an audit anchor (not JSON)") from None
    if not isinstance(claims, dict) or claims.get("type") != ANCHOR_TYPE or set(claims) != _CLAIMS:
        raise ValueError(
            f"the signed payload is not an audit anchor (type {ANCHOR_TYPE!r} and fields {sorted(_CLAIMS)})"
        )
    if claims["v"] != ANCHOR_VERSION:
        raise ValueError(f"anchor version {claims['v']!r} is not supported (this code reads version {ANCHOR_VERSION})")
    tenant_id, head_seq, head_hash, at = claims["tenant_id"], claims["head_seq"], claims["head_hash"], claims["at"]
    well_formed = (
        isinstance(tenant_id, str)
        and tenant_id != ""
        and isinstance(head_seq, int)
        and not isinstance(head_seq, bool)
        and head_seq >= 0
        and isinstance(head_hash, str)
        and _HASH.fullmatch(head_hash) is not None
        and isinstance(at, str)
    )
    if not well_formed:
        raise ValueError("the signed payload is not an audit anchor (a field is missing or of the wrong type)")
    try:
        parse_timestamp(at)
    except ValueError:
        raise ValueError(
            "the signed payload is not an audit anchor (its time is not ISO-8601 with an offset)"
        ) from None
    if canonical_json(claims) != payload:
        raise ValueError("the signed payload is not an audit anchor (not canonical JSON)")
    # Seqs run 1..n without gaps, so a verified head at seq n vouches for n entries.
    return ChainReport(tenant_id=tenant_id, entries_checked=head_seq, head_seq=head_seq, head_hash=head_hash)


def verify_anchor(anchor: SignedAnchor, public_key_der: bytes) -> ChainReport:
    """Check an anchor offline with the signing key's public half; the report it vouches for.

    Pass the result as ``anchor=`` to :meth:`AuditLog.verify` or :func:`check_chain`: the log must still
    hold that head entry unchanged.

    Parameters
    ----------
    anchor
        As :meth:`SignedAnchor.parse` reads it.
    public_key_der
        The key's DER SubjectPublicKeyInfo (``aws kms get-public-key``), pinned by whoever verifies.

    Raises
    ------
    ValueError
        Not a P-256 public key; an algorithm other than ``ECDSA_SHA_256``; a signature that does not
        verify under this key (the payload was changed, or another key signed it); a payload that is
        not an anchor.
    """
    if anchor.algorithm != SIGNING_ALGORITHM:
        raise ValueError(f"the anchor names algorithm {anchor.algorithm!r}; anchors are signed {SIGNING_ALGORITHM}")
    try:
        key = serialization.load_der_public_key(public_key_der)
    except (ValueError, TypeError):
        raise ValueError("the public key is not a DER SubjectPublicKeyInfo of a P-256 key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("the public key is not a P-256 (ECC_NIST_P256) key")
    try:
        key.verify(anchor.signature, anchor.payload, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise ValueError(
            "the anchor's signature does not verify under this public key: its payload was changed, or "
            "another key signed it"
        ) from None
    return _claims(anchor.payload)


# --- signing (the service side) -------------------------------------------------------------------------


class AnchorSigner:
    """Sign chain heads with the KMS key (``SIGN_VERIFY``, ``ECC_NIST_P256``) that only the API may use.

    Parameters
    ----------
    kms
        A boto3 KMS client, under credentials that may ``kms:Sign`` and ``kms:GetPublicKey`` on the key.
    key_id
        The key's ARN (what template.yaml passes as ``FACEGATE_AUDIT_SIGNING_KEY_ID``).
    clock
        Where the anchor's ``at`` comes from (timezone-aware).
    """

    def __init__(self, kms: Any, key_id: str, *, clock: Callable[[], datetime] = _utcnow) -> None:
        if not key_id:
            raise ValueError("an anchor signer needs a key id")
        self.kms = kms
        self.key_id = key_id
        self._clock = clock
        self._public_key: bytes | None = None

    @classmethod
    def for_key(cls, key_id: str, *, region: str | None = None) -> AnchorSigner:
        """A signer with its own client (under the function's own role, never a tenant session)."""
        return cls(boto3.client("kms", region_name=region), key_id)

    def sign(self, report: ChainReport) -> SignedAnchor:
        """Sign ``report``'s head. Sign only what was just verified: the signature vouches for it.

        Raises
        ------
        StorageError
            KMS refused or failed.
        """
        claims: dict[str, JSON] = {
            "type": ANCHOR_TYPE,
            "v": ANCHOR_VERSION,
            "tenant_id": report.tenant_id,
            "head_seq": report.head_seq,
            "head_hash": report.head_hash,
            "at": format_timestamp(self._clock()),
        }
        payload = canonical_json(claims)
        try:
            signed = self.kms.sign(
                KeyId=self.key_id, Message=payload, MessageType="RAW", SigningAlgorithm=SIGNING_ALGORITHM
            )
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"signing the audit anchor with KMS failed: {exc}") from exc
        return SignedAnchor(
            payload=payload, signature=signed["Signature"], key_id=signed["KeyId"], algorithm=SIGNING_ALGORITHM
        )

    def public_key_der(self) -> bytes:
        """The key's public half (DER SubjectPublicKeyInfo), fetched once per signer.

        Raises
        ------
        StorageError
            KMS failed, or the key is not an ``ECC_NIST_P256`` signing key.
        """
        if self._public_key is None:
            try:
                found = self.kms.get_public_key(KeyId=self.key_id)
            except (ClientError, BotoCoreError) as exc:
                raise StorageError(f"reading the audit signing key from KMS failed: {exc}") from exc
            # KeySpec is the current name; moto (and older responses) carry only CustomerMasterKeySpec.
            spec = found.get("KeySpec") or found.get("CustomerMasterKeySpec")
            usable = found.get("KeyUsage") == "SIGN_VERIFY" and SIGNING_ALGORITHM in found.get("SigningAlgorithms", [])
            if spec != KEY_SPEC or not usable:
                raise StorageError(
                    f"the audit signing key {self.key_id} is {spec} {found.get('KeyUsage')}, "
                    f"not {KEY_SPEC} SIGN_VERIFY with {SIGNING_ALGORITHM}"
                )
            self._public_key = bytes(found["PublicKey"])
        return self._public_key

    def verify(self, anchor: SignedAnchor) -> ChainReport:
        """:func:`verify_anchor` under this signer's own key (for an anchor a tenant sends back)."""
        return verify_anchor(anchor, self.public_key_der())


# --- the anchored export (GET /audit) -------------------------------------------------------------------


@dataclass(frozen=True)
class ChainFault:
    """Where and how a chain is broken, for an answer that still carries the entries."""

    kind: str
    """altered, missing, reordered, truncated or forged (:data:`facegate.audit.Kind`)."""
    seq: int | str
    """The first seq at fault (as the error names it: a forged item's seq need not be a whole number)."""
    message: str

    @classmethod
    def from_error(cls, exc: AuditChainError) -> ChainFault:
        # Read from the message chain_error writes (its format is documented there); AuditChainError
        # carries no kind or seq of its own.
        found = _FAULT.search(exc.message)
        if found is None:
            return cls(kind="unknown", seq="?", message=exc.message)
        seq = found["seq"]
        return cls(kind=found["kind"], seq=int(seq) if seq.isdigit() else seq, message=exc.message)

    def to_dict(self) -> dict[str, JSON]:
        return {"kind": self.kind, "seq": self.seq, "message": self.message}


@dataclass(frozen=True)
class AuditExport:
    """A tenant's log, whether it verified, and (only if it did) its head signed as an anchor."""

    entries: list[dict[str, JSON]]
    report: ChainReport | None
    anchor: SignedAnchor | None
    error: ChainFault | None
    public_key: bytes | None

    @property
    def verified(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, JSON]:
        """What ``GET /audit`` answers (``head_*`` and ``anchor`` are ``None`` when not verified)."""
        report = self.report
        return {
            "entries": self.entries,
            "verified": self.verified,
            "entries_checked": report.entries_checked if report else None,
            "head_seq": report.head_seq if report else None,
            "head_hash": report.head_hash if report else None,
            "anchor": self.anchor.to_dict() if self.anchor else None,
            "public_key": base64.b64encode(self.public_key).decode("ascii") if self.public_key else None,
            "error": self.error.to_dict() if self.error else None,
        }


def export_with_anchor(
    log: AuditLog, signer: AnchorSigner, ctx: TenantContext, *, held: ChainReport | None = None
) -> AuditExport:
    """Verify the tenant's log (against ``held``, an anchor it kept, if given), export it, and sign the
    head if and only if it verified.

    A broken chain is an answer, not a failure: the entries come back with the fault, since a tenant
    needs its export most when its log is broken. The entries are read after the verification, so they
    may run past the signed head when appends land in between (the log only grows).

    Raises
    ------
    StorageError
        DynamoDB or KMS failed.
    """
    fault: ChainFault | None = None
    report: ChainReport | None = None
    try:
        report = log.verify(ctx, anchor=held)
    except AuditChainError as exc:
        fault = ChainFault.from_error(exc)
    try:
        entries = log.export(ctx)
    except AuditChainError as exc:
        # An item that cannot even be read as an entry: verification failed on it first, so the fault
        # is already set; the readable entries cannot be separated from it without a lenient export.
        entries = []
        fault = fault or ChainFault.from_error(exc)
    if fault is not None or report is None:
        return AuditExport(entries=entries, report=None, anchor=None, error=fault, public_key=None)
    return AuditExport(
        entries=entries, report=report, anchor=signer.sign(report), error=None, public_key=signer.public_key_der()
    )
