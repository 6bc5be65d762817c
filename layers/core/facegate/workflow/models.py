"""Typed inputs and outputs of the workflow states (what the ASL files pass between Lambda tasks).

States pass S3 keys, ids and small JSON, never image bytes, crops or templates: a Step Functions
payload is at most 256 KB, and a photo or a template is biometric data that must not sit in execution
history. Embed leaves the probe's template in a short-lived item and passes its reference.

Where a tenant's files go in the bucket (the tenant's uploader role may write only under its prefix):

- ``tenants/<tenant>/probes/<gallery>/<name>``: a probe; its "Object Created" event starts Recognize.
  Object metadata says what to do: ``operation`` (``search`` or ``verify``), ``subject`` (verify),
  ``purpose``, ``case-reference``, ``top-k``, ``threshold``, ``actor``.
- ``tenants/<tenant>/uploads/<gallery>/<name>``: an enrolment photo, named in an Enrol request (one
  request names 1 to ``MAX_REFERENCES`` of them, fused into one template).
- ``tenants/<tenant>/manifests/<name>.jsonl``: a bulk enrolment manifest (one subject per line).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from facegate.embedding import MAX_REFERENCES
from facegate.errors import InvalidRequestError
from facegate.tenancy import ENTITY_ID, TENANT_ID, TenantContext

PROBE_KEY: Final = re.compile(r"^tenants/(?P<tenant>[^/]+)/probes/(?P<gallery>[^/]+)/(?P<name>[^/]+)$")
UPLOAD_KEY: Final = re.compile(r"^tenants/(?P<tenant>[^/]+)/uploads/(?P<gallery>[^/]+)/[^/]+$")
CALL_KEY: Final = re.compile(r"^tenants/(?P<tenant>[^/]+)/calls/(?P<gallery>[^/]+)/(?P<name>[0-9a-f]{32})$")
"""A probe of a one-call verify or search (``POST /verify``, ``POST /search``): the API starts Recognize
on it synchronously, so no S3 event rule matches this prefix (a second, asynchronous run would race it)."""
MANIFEST_KEY: Final = re.compile(r"^tenants/(?P<tenant>[^/]+)/manifests/[^/]+\.jsonl$")
TEST_SET_NAME: Final = r"^[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}$"
TEST_SET_KEY: Final = re.compile(r"^tenants/(?P<tenant>[^/]+)/independent-tests/[0-9a-f]{32}\.zip$")
MAX_FACES_LISTED: Final = 10
"""Detect reports every face's count, but lists at most this many boxes (crowds are refused anyway)."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ObjectRef(_Model):
    """One S3 object version: the only way an image enters a workflow."""

    bucket: str = Field(min_length=3, max_length=63)
    key: str = Field(min_length=1, max_length=1024)
    version_id: str | None = None

    @property
    def idempotency_key(self) -> str:
        return f"{self.bucket}/{self.key}#{self.version_id or ''}"

    def s3_args(self) -> dict[str, str]:
        """``Bucket``, ``Key`` and (when versioned) ``VersionId``: the arguments of S3's object calls."""
        args = {"Bucket": self.bucket, "Key": self.key}
        if self.version_id:
            args["VersionId"] = self.version_id
        return args

    def request_id(self) -> str:
        """The same object version always names the same request (a duplicated event finds it)."""
        return hashlib.sha256(self.idempotency_key.encode()).hexdigest()[:32]


def request_id_of(photos: Sequence[ObjectRef]) -> str:
    """The request id of an upload: one object version's own, or for several photos the digest of all
    their versions (the same photos always name the same request; another set, another request)."""
    if len(photos) == 1:
        return photos[0].request_id()
    joined = "\n".join(p.idempotency_key for p in photos)
    return hashlib.sha256(joined.encode()).hexdigest()[:32]


def photo_ref(request_id: str, index: int) -> str:
    """The short-lived template reference of an enrolment's photo ``index`` (Embed writes it,
    StoreTemplate fuses and deletes it). Within the 128 characters of an id, whatever the request id."""
    stem = request_id if len(request_id) <= 120 else hashlib.sha256(request_id.encode()).hexdigest()[:32]
    return f"{stem}.{index}"


def face_ref(request_id: str, index: int) -> str:
    """The short-lived template reference of a photo search's face ``index`` (0, the subject, is the
    request id itself): Embed writes them, Match searches each and deletes them with the result."""
    if index == 0:
        return request_id
    stem = request_id if len(request_id) <= 120 else hashlib.sha256(request_id.encode()).hexdigest()[:32]
    return f"{stem}.face{index}"


def tenant_of_key(key: str) -> str | None:
    """The tenant whose prefix holds ``key`` (``tenants/<tenant>/...``), or ``None``."""
    parts = key.split("/")
    if len(parts) >= 3 and parts[0] == "tenants" and TENANT_ID.fullmatch(parts[1]):
        return parts[1]
    return None


class TestSet(_Model):
    """An independent test's labelled set, as the API checked it (:mod:`facegate.sandbox.archive`): what
    the gate decides on; the job checks the archive again and refuses one that lists other images."""

    name: str = Field(pattern=TEST_SET_NAME)
    images: int = Field(ge=0, le=100_000)
    identities: int = Field(ge=0, le=100_000)
    identities_known: bool
    grouped: bool
    groups: int = Field(ge=0, le=100_000)
    smallest_group_images: int = Field(ge=0, le=100_000)
    smallest_group_identities: int = Field(ge=0, le=100_000)
    group_source: Literal["annotated", "manual", "predicted", "self-reported", "none"]
    labels_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    archive_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class WorkflowRequest(_Model):
    """What Recognize and Enrol run on, normalised by the first state from an S3 event or an API call."""

    request_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    tenant_id: str = Field(pattern=TENANT_ID.pattern)
    actor: str = Field(min_length=1, max_length=256)
    """Who is recorded as acting: an authenticated identity, or ``s3-upload:<tenant>`` for an upload
    whose metadata names an actor without the API's proof."""
    claimed_actor: str | None = Field(default=None, max_length=256)
    """The actor an unproven upload declared: kept as a claim, never recorded as the actor."""
    operation: Literal["enrol", "verify", "search", "bulk_enrol", "independent_test"]
    gallery_id: str | None = Field(default=None, pattern=ENTITY_ID.pattern)
    """Every operation's gallery, except an independent test's: it has none (the sandbox reads none)."""
    image: ObjectRef
    """The photo (or, for ``bulk_enrol``, the manifest) this request runs on; an enrolment's first photo."""
    images: tuple[ObjectRef, ...] | None = Field(default=None, min_length=1, max_length=MAX_REFERENCES)
    """An enrolment's photos, ``image`` first: 1 to ``MAX_REFERENCES`` of one person, each detected,
    re-checked and embedded, fused into one template. Always set for ``enrol`` (a request naming only
    ``image``, as before, enrols that one photo); never for another operation."""
    subject_id: str | None = Field(default=None, pattern=ENTITY_ID.pattern)
    consent_id: str | None = Field(default=None, pattern=ENTITY_ID.pattern)
    purpose: str | None = Field(default=None, max_length=512)
    case_reference: str | None = Field(default=None, max_length=256)
    top_k: int = Field(default=1, ge=1, le=50)
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    test_set: TestSet | None = None
    """An independent test's set (and only its)."""

    @model_validator(mode="before")
    @classmethod
    def _photos_listed(cls, data: Any) -> Any:
        """An enrolment's ``images`` from its one ``image`` (the request shape before several photos),
        or its ``image`` from the first of ``images``."""
        if not isinstance(data, dict) or data.get("operation") != "enrol":
            return data
        if data.get("images") is None and data.get("image") is not None:
            return {**data, "images": [data["image"]]}
        if data.get("image") is None and data.get("images"):
            return {**data, "image": data["images"][0]}
        return data

    @model_validator(mode="after")
    def _coherent(self) -> WorkflowRequest:
        if self.operation in ("verify", "enrol") and not self.subject_id:
            raise ValueError(f"a {self.operation} request names its subject")
        if self.operation == "enrol" and not self.consent_id:
            raise ValueError("an enrol request names the consent it relies on")
        if self.operation in ("search", "bulk_enrol") and (self.subject_id or self.consent_id):
            raise ValueError(f"a {self.operation} request names no subject or consent")
        if self.images is not None:
            if self.operation != "enrol":
                raise ValueError(f"only an enrolment names several images, not a {self.operation} request")
            if self.images[0] != self.image:
                raise ValueError("the image is the first of the images")
            if len({i.idempotency_key for i in self.images}) != len(self.images):
                raise ValueError("a photo is listed twice")
        if any(tenant_of_key(photo.key) != self.tenant_id for photo in self.photos):
            raise ValueError("the image must lie under the tenant's own prefix (tenants/<tenant>/...)")
        if self.operation == "bulk_enrol" and MANIFEST_KEY.fullmatch(self.image.key) is None:
            raise ValueError("a bulk enrolment names a manifest under tenants/<tenant>/manifests/<name>.jsonl")
        if self.operation in ("verify", "search"):
            key = PROBE_KEY.fullmatch(self.image.key) or CALL_KEY.fullmatch(self.image.key)
            if key is None or key["gallery"] != self.gallery_id:
                raise ValueError("a verify or search probe lies under tenants/<tenant>/probes/<gallery>/ (or calls/)")
        sandbox = self.operation == "independent_test"
        if sandbox != (self.test_set is not None):
            raise ValueError("an independent test, and only it, names its labelled set")
        if sandbox != (self.gallery_id is None):
            raise ValueError("every request but an independent test names its gallery")
        if sandbox and (self.subject_id or self.consent_id):
            raise ValueError("an independent test names no subject or consent")
        if sandbox and TEST_SET_KEY.fullmatch(self.image.key) is None:
            raise ValueError("an independent test names a set under tenants/<tenant>/independent-tests/<name>.zip")
        return self

    @property
    def ctx(self) -> TenantContext:
        return TenantContext(tenant_id=self.tenant_id, actor=self.actor)

    @property
    def gallery(self) -> str:
        """The request's gallery (every operation's but an independent test's)."""
        if self.gallery_id is None:
            raise InvalidRequestError(f"a {self.operation} request has no gallery")
        return self.gallery_id

    @property
    def photos(self) -> tuple[ObjectRef, ...]:
        """Every object this request runs on (an enrolment's photos; else the one image)."""
        return self.images if self.images is not None else (self.image,)

    def photo(self, index: Any) -> ObjectRef:
        """Photo ``index`` (0-based, as a Map state's item index) of this request's photos."""
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(self.photos):
            raise InvalidRequestError(f"the request has {len(self.photos)} photo(s): no photo {index!r}")
        return self.photos[index]

    @classmethod
    def parse(cls, data: Any) -> WorkflowRequest:
        return _parse(cls, data)

    @classmethod
    def for_upload(
        cls,
        ctx: TenantContext,
        image: ObjectRef | Sequence[ObjectRef],
        operation: str,
        gallery_id: str | None,
        *,
        subject_id: str | None = None,
        consent_id: str | None = None,
        test_set: TestSet | None = None,
        request_id: str | None = None,
    ) -> WorkflowRequest:
        """An Enrol or BulkEnrol request for what the caller uploaded: one object, or an enrolment's
        photos (the request id is the object versions', so a retried start finds the same request), or
        ``request_id`` when a client token names it (a retried call finds the same request)."""
        photos = [image] if isinstance(image, ObjectRef) else list(image)
        if not photos:
            raise InvalidRequestError("an upload names at least one object")
        return cls.parse(
            {
                "request_id": request_id or request_id_of(photos),
                "tenant_id": ctx.tenant_id,
                "actor": ctx.actor,
                "operation": operation,
                "gallery_id": gallery_id,
                "subject_id": subject_id,
                "consent_id": consent_id,
                "image": photos[0].model_dump(),
                **({"images": [p.model_dump() for p in photos]} if len(photos) > 1 else {}),
                **({"test_set": test_set.model_dump()} if test_set is not None else {}),
            }
        )

    @classmethod
    def for_call(
        cls,
        ctx: TenantContext,
        image: ObjectRef,
        operation: str,
        gallery_id: str,
        *,
        subject_id: str | None = None,
        purpose: str | None = None,
        case_reference: str | None = None,
        top_k: int = 1,
        threshold: float | None = None,
    ) -> WorkflowRequest:
        """A one-call verify or search the API starts itself (the actor is the token's, no metadata)."""
        if CALL_KEY.fullmatch(image.key) is None:
            raise InvalidRequestError("a one-call probe lies under tenants/<tenant>/calls/<gallery>/<name>")
        return cls.parse(
            {
                "request_id": image.request_id(),
                "tenant_id": ctx.tenant_id,
                "actor": ctx.actor,
                "operation": operation,
                "gallery_id": gallery_id,
                "image": image.model_dump(),
                "subject_id": subject_id,
                "purpose": purpose,
                "case_reference": case_reference,
                "top_k": top_k,
                "threshold": threshold,
            }
        )

    @classmethod
    def from_probe(cls, image: ObjectRef, metadata: dict[str, str], *, proven: bool = False) -> WorkflowRequest:
        """A Recognize request from an uploaded probe: its key names the tenant and gallery, its
        metadata the operation and declared purpose. Unknown metadata is refused, not ignored. The
        metadata's ``actor`` is the actor only when ``proven`` (:mod:`facegate.workflow.uploads`)."""
        match = PROBE_KEY.fullmatch(image.key)
        if match is None:
            raise InvalidRequestError(f"'{image.key}' is not a probe key (tenants/<tenant>/probes/<gallery>/<name>)")
        meta = {k.lower(): v for k, v in metadata.items()}
        known = {"operation", "subject", "purpose", "case-reference", "top-k", "threshold", "actor", "actor-proof"}
        unknown = sorted(set(meta) - known)
        if unknown:
            raise InvalidRequestError(
                f"unknown probe metadata: {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        try:
            top_k = int(meta.get("top-k", "1"))
            threshold = float(meta["threshold"]) if "threshold" in meta else None
        except ValueError as exc:
            raise InvalidRequestError(f"probe metadata top-k/threshold is not a number: {exc}") from exc
        return cls.parse(
            {
                "request_id": image.request_id(),
                "tenant_id": match["tenant"],
                "actor": meta["actor"] if proven and meta.get("actor") else f"s3-upload:{match['tenant']}",
                "claimed_actor": None if proven else meta.get("actor"),
                "operation": meta.get("operation", "verify" if "subject" in meta else "search"),
                "gallery_id": match["gallery"],
                "image": image.model_dump(),
                "subject_id": meta.get("subject"),
                "purpose": meta.get("purpose"),
                "case_reference": meta.get("case-reference"),
                "top_k": top_k,
                "threshold": threshold,
            }
        )


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], data: Any) -> M:
    """Validate a state's input; a bad payload is an :class:`InvalidRequestError` naming the fields."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in exc.errors())
        raise InvalidRequestError(f"invalid {model.__name__}: {problems}") from exc


def object_created(event: dict[str, Any]) -> ObjectRef | None:
    """The object of an EventBridge "Object Created" event from S3, or ``None`` for another shape."""
    if event.get("source") != "aws.s3" or event.get("detail-type") != "Object Created":
        return None
    detail = event.get("detail") or {}
    try:
        return ObjectRef(
            bucket=detail["bucket"]["name"],
            key=detail["object"]["key"],
            version_id=detail["object"].get("version-id"),
        )
    except (KeyError, TypeError, ValidationError) as exc:
        raise InvalidRequestError(f"malformed S3 'Object Created' event: {exc}") from exc


class FaceBox(_Model):
    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...] = Field(min_length=5, max_length=5)
    score: float


class Detection(_Model):
    """Detect's output: the face count (what the policy re-check needs) and the comparable faces' geometry."""

    width: int
    height: int
    face_count: int = Field(ge=0)
    """Faces comparable to the subject, the subject included (what the crowd rule counts)."""
    bystander_count: int = Field(default=0, ge=0)
    """Faces much smaller than the subject or cut by the frame: neither listed, embedded nor counted."""
    faces: tuple[FaceBox, ...]
    """The comparable faces, subject first (at most ``MAX_FACES_LISTED``)."""
    content_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    """The sha256 of the image's bytes: the face re-check refuses the same image verified against a
    second subject (a hash, never the image)."""

    @model_validator(mode="after")
    def _listed(self) -> Detection:
        if len(self.faces) != min(self.face_count, MAX_FACES_LISTED):
            raise ValueError(f"{len(self.faces)} faces listed for a count of {self.face_count}")
        return self


class FaceRef(_Model):
    ref: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    box: tuple[float, float, float, float]


class ProbeTemplate(_Model):
    """Embed's output: a *reference* to the probe's template, never the template itself.

    The 512-byte template is biometric data: it is kept in a short-lived item under the tenant's key
    (:class:`~facegate.store.transient.TransientTemplates`, encrypted at rest, expiring within the
    hour, deleted in the same transaction that records the result), so it never enters the execution's
    state, history or logs. ``ref`` names that item; ``model_version`` travels for the checks."""

    ref: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    model_version: str = Field(min_length=1, max_length=64)
    faces: tuple[FaceRef, ...] = Field(default=(), max_length=MAX_FACES_LISTED)
    """A photo search's faces (photo organisation: every comparable face is searched), the subject first
    (its ``ref`` is this template's): references and boxes only. Empty when the subject alone is searched."""


class StateError(_Model):
    """What a Catch puts at ``$.error``: the error name and its cause (Lambda's JSON, or text)."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    error: str = Field(alias="Error")
    cause: str = Field(default="", alias="Cause")
