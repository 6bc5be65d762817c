"""Gallery snapshots: one S3 object per gallery version, so a cold Match reads one object, not the table.

A search at version *v* of a gallery (``GalleryRecord.version``) that finds no warm copy in its process
(:mod:`facegate.service.gallery_cache`) loads the snapshot recorded for *v* on the gallery row; where none
is recorded, it reads the templates from the table as before and writes the snapshot for the next cold
container. What makes it safe:

* **Where and who.** ``tenants/<tenant>/snapshots/<gallery>/v<version>``, read and written only with the
  request's tenant session (:func:`facegate.store.scope.tenant_client`): the tenant data role may reach
  ``snapshots/`` under its own tag's prefix and nowhere else, so another tenant's session is refused by
  IAM whatever key it builds. Encrypted with the data key (SSE-KMS). Tenant uploaders may not write there.
* **Which object.** The gallery row records the snapshot's version, its S3 object version and the sha256
  of its bytes, in a conditional update that holds only while the gallery is still at that version. A
  load reads exactly that object version and checks the digest and the header (tenant, gallery, version,
  model version, count): an object put there by anyone else, or a newer one under the same key, is not
  used. Any failure to load (missing, refused, corrupt) falls back to the table.
* **Never stale.** The snapshot for *v* is built from a strongly consistent read made after *v* was read,
  so it holds *v*'s changes or later ones; every change of the templates raises the version in its own
  transaction, so a snapshot of an earlier version is never loaded after an erasure or a withdrawal.
  It also stops at its earliest template expiry, like the warm copy.
* **Deleted with what it holds.** Writing the snapshot for a new version deletes the previous one; an
  erasure or a consent withdrawal deletes the galleries' snapshots after its transactions
  (:meth:`GallerySnapshots.purge`); a snapshot whose recording lost the race with a change is deleted at
  once by its writer. Should a delete fail, the bucket's lifecycle rule for ``tenants/`` removes the
  object within two days (a day current, a day noncurrent).

Templates are stored as float32, as in the table: a compact form (float16, int8) would save S3 bytes that
cost nothing here (S3 prices a GET, not its size, within a region) and would move scores.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import struct
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.exceptions import PynamoDBException

from facegate.embedding import EMBEDDING_DIM, Embedding
from facegate.store.models import GalleryRecord
from facegate.store.repositories import Gallery, StoredTemplate
from facegate.store.scope import current_tenant, tenant_client
from facegate.tenancy import TenantContext

log = logging.getLogger(__name__)

BUCKET_VARIABLE: Final = "FACEGATE_BUCKET"
KEY_VARIABLE: Final = "FACEGATE_DATA_KEY_ID"
MAGIC: Final = b"FGS1"
MAX_HEADER: Final = 16 * 2**20
_S3_ERRORS: Final = (ClientError, BotoCoreError)


def snapshot_prefix(tenant_id: str, gallery_id: str) -> str:
    return f"tenants/{tenant_id}/snapshots/{gallery_id}/"


def snapshot_key(tenant_id: str, gallery_id: str, version: int) -> str:
    return f"{snapshot_prefix(tenant_id, gallery_id)}v{version}"


@dataclass(frozen=True)
class SnapshotTemplate:
    template_id: str
    subject_id: str
    references: int
    vector: np.ndarray[Any, np.dtype[np.float32]]


@dataclass(frozen=True)
class Snapshot:
    """One gallery version's live templates (what a search stacks), with their earliest expiry."""

    tenant_id: str
    gallery_id: str
    version: int
    model_version: str | None
    valid_until: datetime | None
    templates: tuple[SnapshotTemplate, ...]

    @classmethod
    def of(cls, ctx: TenantContext, gallery: Gallery, live: list[StoredTemplate]) -> Snapshot:
        versions = {t.embedding.model_version for t in live}
        return cls(
            ctx.tenant_id,
            gallery.gallery_id,
            gallery.version,
            versions.pop() if len(versions) == 1 else None,
            min((t.expires_at for t in live), default=None),
            tuple(SnapshotTemplate(t.template_id, t.subject_id, t.references, t.embedding.vector) for t in live),
        )

    def to_bytes(self) -> bytes:
        header = json.dumps(
            {
                "tenant_id": self.tenant_id,
                "gallery_id": self.gallery_id,
                "version": self.version,
                "model_version": self.model_version,
                "valid_until": self.valid_until.isoformat() if self.valid_until else None,
                "dim": EMBEDDING_DIM,
                "templates": [[t.template_id, t.subject_id, t.references] for t in self.templates],
            },
            separators=(",", ":"),
        ).encode()
        matrix = (
            np.stack([t.vector for t in self.templates]).astype("<f4")
            if self.templates
            else np.zeros((0, EMBEDDING_DIM), dtype="<f4")
        )
        return MAGIC + struct.pack("<I", len(header)) + header + matrix.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> Snapshot:
        """Parse a snapshot; ``ValueError`` for anything that is not one, exactly."""
        if data[:4] != MAGIC or len(data) < 8:
            raise ValueError("not a gallery snapshot")
        (length,) = struct.unpack("<I", data[4:8])
        if length > MAX_HEADER or 8 + length > len(data):
            raise ValueError("a gallery snapshot's header is cut short")
        header = json.loads(data[8 : 8 + length])
        rows = header["templates"]
        if header.get("dim") != EMBEDDING_DIM:
            raise ValueError("a gallery snapshot of another template size")
        body = data[8 + length :]
        if len(body) != len(rows) * EMBEDDING_DIM * 4:
            raise ValueError("a gallery snapshot's templates do not match its header")
        matrix = np.frombuffer(body, dtype="<f4").reshape(len(rows), EMBEDDING_DIM).astype(np.float32)
        valid_until = header["valid_until"]
        return cls(
            str(header["tenant_id"]),
            str(header["gallery_id"]),
            int(header["version"]),
            header["model_version"],
            datetime.fromisoformat(valid_until) if valid_until else None,
            tuple(
                SnapshotTemplate(str(tid), str(sid), int(refs), matrix[i].copy())
                for i, (tid, sid, refs) in enumerate(rows)
            ),
        )

    def stored_templates(self) -> list[StoredTemplate]:
        """The templates as the table holds them, for the same stacking a table read gets (the consent id
        and each expiry are not kept: a search uses neither, and the snapshot ends at the earliest)."""
        if self.model_version is None and self.templates:
            raise ValueError("a gallery snapshot without a model version")
        until = self.valid_until or datetime.max
        return [
            StoredTemplate(
                t.template_id,
                self.gallery_id,
                t.subject_id,
                "",
                Embedding(t.vector, self.model_version or ""),
                until,
                references=t.references,
            )
            for t in self.templates
        ]


class GallerySnapshots:
    """Writes, loads and deletes gallery snapshots under the open tenant scope; disabled (every miss
    reads the table) where no bucket is configured (``FACEGATE_BUCKET``)."""

    def __init__(self, bucket: str | None = None, kms_key_id: str | None = None) -> None:
        self.bucket = bucket if bucket is not None else os.environ.get(BUCKET_VARIABLE) or None
        self.kms_key_id = kms_key_id if kms_key_id is not None else os.environ.get(KEY_VARIABLE) or None
        self.loads = 0
        self.writes = 0
        self._process_client: Any = None

    @property
    def enabled(self) -> bool:
        return self.bucket is not None

    def _s3(self, ctx: TenantContext) -> Any:
        """The tenant session's client inside its scope (what Match and the API always open); with no
        scope open, the process's own credentials, as the tables are reached then (operator tools, tests).
        Never under another tenant's scope."""
        scoped = current_tenant()
        if scoped is None:
            if self._process_client is None:
                import boto3

                self._process_client = boto3.client("s3")
            return self._process_client
        if scoped != ctx.tenant_id:
            raise PermissionError(f"a gallery snapshot of {ctx.tenant_id} is not reached in the scope of {scoped}")
        return tenant_client("s3")

    def load(self, ctx: TenantContext, gallery: Gallery, now: datetime) -> Snapshot | None:
        """The snapshot recorded for the gallery's current version, if it is there, intact and current."""
        recorded = gallery.snapshot
        if not self.enabled or not recorded or recorded.get("version") != gallery.version:
            return None
        key = snapshot_key(ctx.tenant_id, gallery.gallery_id, gallery.version)
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if recorded.get("object_version"):
            args["VersionId"] = recorded["object_version"]
        try:
            data = self._s3(ctx).get_object(**args)["Body"].read()
        except _S3_ERRORS as exc:  # any failure to load reads the table instead
            log.warning("gallery snapshot not loaded, reading the table: %s", type(exc).__name__)
            return None
        if hashlib.sha256(data).hexdigest() != recorded.get("sha256"):
            log.warning("gallery snapshot's digest differs from the recorded one: reading the table")
            return None
        try:
            snapshot = Snapshot.from_bytes(data)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("gallery snapshot unreadable (%s): reading the table", exc)
            return None
        if (snapshot.tenant_id, snapshot.gallery_id, snapshot.version) != (
            ctx.tenant_id,
            gallery.gallery_id,
            gallery.version,
        ) or len(snapshot.templates) != recorded.get("count"):
            log.warning("gallery snapshot is not this gallery version's: reading the table")
            return None
        if snapshot.valid_until is not None and now >= snapshot.valid_until:
            return None  # a template in it has expired since: the table says which
        self.loads += 1
        return snapshot

    def save(self, ctx: TenantContext, gallery: Gallery, snapshot: Snapshot) -> bool:
        """Write the snapshot and record it on the gallery row while the gallery is still at its version;
        delete the one it replaces. ``False`` (nothing kept) where the gallery changed meanwhile or S3
        refused; a search never fails for a snapshot."""
        if not self.enabled or (snapshot.model_version is None and snapshot.templates):
            return False  # templates of two model versions (a migration under way): the table serves it
        s3 = self._s3(ctx)
        key = snapshot_key(ctx.tenant_id, gallery.gallery_id, snapshot.version)
        data = snapshot.to_bytes()
        put: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": data,
            "ContentType": "application/octet-stream",
            "ServerSideEncryption": "aws:kms",
            "BucketKeyEnabled": True,
        }
        if self.kms_key_id:
            put["SSEKMSKeyId"] = self.kms_key_id
        try:
            answer = s3.put_object(**put)
        except _S3_ERRORS as exc:
            log.warning("gallery snapshot not written: %s", type(exc).__name__)
            return False
        written = {
            "version": snapshot.version,
            "object_version": answer.get("VersionId"),
            "sha256": hashlib.sha256(data).hexdigest(),
            "count": len(snapshot.templates),
        }
        try:
            GalleryRecord(ctx.tenant_id, gallery.gallery_id).update(
                actions=[GalleryRecord.snapshot.set(written)],
                condition=(GalleryRecord.version == snapshot.version) & GalleryRecord.gallery_id.exists(),
            )
        except PynamoDBException:
            self._delete(s3, key, written["object_version"])  # the gallery changed meanwhile: never kept
            return False
        self.writes += 1
        previous = gallery.snapshot
        if previous:
            old_key = snapshot_key(ctx.tenant_id, gallery.gallery_id, int(previous.get("version", -1)))
            old_version = previous.get("object_version")
            if old_key != key or (old_version and old_version != written["object_version"]):
                self._delete(s3, old_key, old_version)
        return True

    def purge(self, ctx: TenantContext, gallery_ids: list[str]) -> list[str]:
        """Delete the recorded snapshots of these galleries (after an erasure or a withdrawal changed
        them) and clear the record; returns the keys that could not be deleted."""
        if not self.enabled:
            return []
        failed: list[str] = []
        for gallery_id in sorted(set(gallery_ids)):
            try:
                record = GalleryRecord.get(ctx.tenant_id, gallery_id, consistent_read=True)
            except PynamoDBException:
                continue
            recorded = record.snapshot
            if not recorded:
                continue
            key = snapshot_key(ctx.tenant_id, gallery_id, int(recorded.get("version", -1)))
            if not self._delete(self._s3(ctx), key, recorded.get("object_version")):
                failed.append(key)
                continue
            with contextlib.suppress(PynamoDBException):  # a newer one was recorded meanwhile: of the changed gallery
                record.update(actions=[GalleryRecord.snapshot.remove()], condition=GalleryRecord.snapshot == recorded)
        return failed

    def _delete(self, s3: Any, key: str, object_version: str | None) -> bool:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if object_version:
            args["VersionId"] = object_version  # permanently, in a versioned bucket
        try:
            s3.delete_object(**args)
        except _S3_ERRORS as exc:
            log.warning("gallery snapshot %s not deleted: %s", key, type(exc).__name__)
            return False
        return True
