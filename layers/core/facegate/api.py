"""The tenant API (API Gateway REST → the ``api`` function), what the SDK calls.

Every route builds its :class:`TenantContext` from the verified identity (the Cognito authorizer's
claims ``custom:tenant_id`` and ``sub``); no route takes a tenant from the body or the path, so a caller
cannot name another tenant. Images are never processed here: a probe is written to the tenant's
``probes/`` prefix and its S3 event starts Recognize; an enrolment's photos (one, or up to five of the
same person) go to ``uploads/`` and the Enrol workflow is started on all of them. Results are read
back by request id.

``GET /audit`` answers the tenant's whole log, verified: a broken chain is a 200 with ``verified: false``
and the fault (the tenant needs its export most then), an intact one carries its head signed by the
audit signing key (:mod:`facegate.audit.anchor`). ``GET /audit?anchor=<token>`` also checks the log
against an anchor the tenant kept (the token is :meth:`SignedAnchor.to_token`, base64url JSON): a query
parameter rather than a POST route, so the same read-only route serves both and nothing is written.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Final, Literal
from urllib.parse import unquote

import boto3
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from botocore.exceptions import ClientError, ConnectTimeoutError, ReadTimeoutError
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from facegate import observability
from facegate.accountability import render_html, tenant_report
from facegate.audit.anchor import AnchorSigner, SignedAnchor, export_with_anchor
from facegate.audit.chain import ChainReport
from facegate.audit.pages import DEFAULT_PAGE, read_page
from facegate.embedding import MAX_REFERENCES, MODEL_VERSION
from facegate.errors import (
    AlreadyExistsError,
    ClientTokenReusedError,
    ConflictError,
    ConsentError,
    EnrolmentPhotosError,
    FacegateError,
    GalleryNotFoundError,
    ImageError,
    InvalidIdentifierError,
    InvalidRequestError,
    PolicyDeniedError,
    ResourceNotFoundError,
    TenantNotFoundError,
    UnknownRequestError,
)
from facegate.policy import Operation
from facegate.service import FaceService
from facegate.service.management import consent_view, template_view
from facegate.store.repositories import TEMPLATE_ID
from facegate.store.scope import tenant_scope
from facegate.store.submissions import Submissions, token_request_id
from facegate.tenancy import ENTITY_ID, TENANT_ID, TenantContext, check_entity_id
from facegate.workflow.models import TEST_SET_NAME, ObjectRef, TestSet, WorkflowRequest
from facegate.workflow.uploads import UploadProofs, checksum_sha256


class ApiSettings(BaseModel):
    """What the API function needs beyond :class:`facegate.settings.Settings` (set in template.yaml)."""

    model_config = ConfigDict(frozen=True)

    bucket: str = Field(min_length=3)
    enrol_state_machine_arn: str = Field(pattern=r"^arn:aws[a-z-]*:states:")
    bulk_enrol_state_machine_arn: str = Field(pattern=r"^arn:aws[a-z-]*:states:")
    recognize_state_machine_arn: str = Field(pattern=r"^arn:aws[a-z-]*:states:")
    """Recognize (Express), started synchronously by the one-call routes."""
    independent_test_state_machine_arn: str = Field(pattern=r"^arn:aws[a-z-]*:states:")
    audit_signing_key_id: str = Field(min_length=1)
    upload_proof_key_id: str = Field(min_length=1)
    """The KMS HMAC key that proves a probe's actor (:mod:`facegate.workflow.uploads`)."""
    audit_export_function: str | None = None
    """The ``AuditExport`` function ``POST /audit/exports`` starts (``FACEGATE_AUDIT_EXPORT_FUNCTION``)."""

    @classmethod
    def from_env(cls) -> ApiSettings:
        return cls.model_validate(
            {
                "bucket": os.environ.get("FACEGATE_BUCKET"),
                "enrol_state_machine_arn": os.environ.get("FACEGATE_ENROL_STATE_MACHINE_ARN"),
                "bulk_enrol_state_machine_arn": os.environ.get("FACEGATE_BULK_ENROL_STATE_MACHINE_ARN"),
                "recognize_state_machine_arn": os.environ.get("FACEGATE_RECOGNIZE_STATE_MACHINE_ARN"),
                "independent_test_state_machine_arn": os.environ.get("FACEGATE_INDEPENDENT_TEST_STATE_MACHINE_ARN"),
                "audit_signing_key_id": os.environ.get("FACEGATE_AUDIT_SIGNING_KEY_ID"),
                "upload_proof_key_id": os.environ.get("FACEGATE_UPLOAD_PROOF_KEY_ID"),
                "audit_export_function": os.environ.get("FACEGATE_AUDIT_EXPORT_FUNCTION") or None,
            }
        )


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _metadata_text(value: str) -> str:
    """S3 user metadata travels as HTTP headers: US-ASCII only, and a CR or LF would end the header
    (botocore refuses both before sending, which surfaced as a 5xx). Tabs and other control characters
    are refused too, so what the workflow reads back is exactly what the caller sent."""
    if not (value.isascii() and value.isprintable()):
        raise ValueError(
            "must be printable ASCII (it is stored as S3 object metadata): "
            "no accented or other non-ASCII letters, no line breaks, tabs or other control characters"
        )
    return value


MetadataText = AfterValidator(_metadata_text)


class GalleryBody(_Body):
    gallery_id: str = Field(pattern=ENTITY_ID.pattern)
    name: str = Field(min_length=1, max_length=256)
    use_case: str


class ConsentBody(_Body):
    subject_id: str = Field(pattern=ENTITY_ID.pattern)
    purpose: str
    evidence_b64: str = Field(min_length=1, max_length=1_000_000)
    expires_at: AwareDatetime
    """With its UTC offset: a naive time names no instant (and cannot be compared with the grant's)."""


class ProbeBody(_Body):
    gallery_id: str = Field(pattern=ENTITY_ID.pattern)
    operation: Literal["verify", "search"]
    image_b64: str = Field(min_length=1)
    subject_id: str | None = Field(default=None, pattern=ENTITY_ID.pattern)
    # The same bounds as the WorkflowRequest that Recognize builds from this metadata. S3 allows 2 KB of
    # user metadata (names and values); at most ~1.3 KB is used: operation 15, actor 5+256, top-k 7,
    # subject 7+128, purpose 7+512, case-reference 14+256, threshold 9+24.
    purpose: Annotated[str, Field(max_length=512), MetadataText] | None = None
    case_reference: Annotated[str, Field(max_length=256), MetadataText] | None = None
    top_k: int = Field(default=1, ge=1, le=50)
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)


class CallBody(_Body):
    """A one-call verify (``subject_id`` required) or search: the image and the request's declared fields."""

    gallery_id: str = Field(pattern=ENTITY_ID.pattern)
    image_b64: str = Field(min_length=1)
    subject_id: str | None = Field(default=None, pattern=ENTITY_ID.pattern)
    purpose: str | None = Field(default=None, max_length=512)
    case_reference: str | None = Field(default=None, max_length=256)
    top_k: int = Field(default=1, ge=1, le=50)
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)


CLIENT_TOKEN: Final = r"^[A-Za-z0-9_-]{1,64}$"
CLAIM_WAIT_S: Final = 5.0
"""How long a retry waits on a twin that holds its client token before starting the request itself."""


class EnrolBody(_Body):
    client_token: str | None = Field(default=None, pattern=CLIENT_TOKEN)
    """The same token, the same request: a retried enrolment enrols once (the SDK sends one per call)."""
    gallery_id: str = Field(pattern=ENTITY_ID.pattern)
    subject_id: str = Field(pattern=ENTITY_ID.pattern)
    consent_id: str = Field(pattern=ENTITY_ID.pattern)
    image_b64: str | None = Field(default=None, min_length=1)
    """One photo; or ``images_b64``: 1 to ``MAX_REFERENCES`` photos of the person, fused into one template."""
    images_b64: list[Annotated[str, Field(min_length=1)]] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> EnrolBody:
        # Raised as itself (pydantic wraps only ValueError): the caller gets its own reason code.
        if self.image_b64 is not None and self.images_b64 is not None:
            raise EnrolmentPhotosError("send the photo as image_b64 or the photos as images_b64, not both")
        if self.image_b64 is None and self.images_b64 is None:
            raise EnrolmentPhotosError(f"an enrolment needs a photo: image_b64, or images_b64 (1 to {MAX_REFERENCES})")
        if self.images_b64 is not None and not 1 <= len(self.images_b64) <= MAX_REFERENCES:
            raise EnrolmentPhotosError(f"an enrolment takes 1 to {MAX_REFERENCES} photos, got {len(self.images_b64)}")
        return self

    def photos(self) -> list[bytes]:
        """Every photo, decoded, in the order sent; the same photo twice is refused (it would count
        as two references of one capture)."""
        photos = [_image(data) for data in (self.images_b64 if self.images_b64 is not None else [self.image_b64 or ""])]
        for i, photo in enumerate(photos):
            if photo in photos[:i]:
                raise EnrolmentPhotosError(f"photo {i + 1} is photo {photos.index(photo) + 1} sent twice")
        return photos


MAX_PRESIGNED = 100
PRESIGNED_EXPIRY_S = 900
"""A presigned upload URL is good for 15 minutes (the object itself, as all of tenants/, for a day)."""


class BulkBody(_Body):
    client_token: str | None = Field(default=None, pattern=CLIENT_TOKEN)
    gallery_id: str = Field(pattern=ENTITY_ID.pattern)
    manifest_jsonl: str = Field(min_length=1, max_length=5_000_000)


class UploadsBody(_Body):
    """Presigned uploads for a bulk manifest's photos: ``count`` keys under the tenant's ``uploads/``."""

    gallery_id: str = Field(pattern=ENTITY_ID.pattern)
    count: int = Field(ge=1, le=MAX_PRESIGNED)


class ReviewBody(_Body):
    confirm: bool


class IndependentTestBody(_Body):
    """A tester's labelled set: a zip of ``labels.csv`` (``path``, ``identity``[, ``group``]) and the
    images (:mod:`facegate.sandbox.archive`); ``identities: false`` for a set without identity labels."""

    set_zip_b64: str = Field(min_length=1, max_length=10_000_000)
    name: str = Field(default="independent-test", pattern=TEST_SET_NAME)
    identities: bool = True
    group_source: Literal["annotated", "manual", "predicted", "self-reported"] = "annotated"


ONE_CALL_ROUTES = frozenset({("POST", "/verify"), ("POST", "/search")})
TEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
REPORT_FORMATS = {"json": "application/json", "html": "text/html; charset=utf-8"}
STATUS = {
    InvalidRequestError: 400,
    ImageError: 400,
    InvalidIdentifierError: 400,
    ConsentError: 400,
    PolicyDeniedError: 403,
    GalleryNotFoundError: 404,
    ResourceNotFoundError: 404,
    UnknownRequestError: 404,
    ClientTokenReusedError: 409,
    AlreadyExistsError: 409,
    TenantNotFoundError: 403,
    ConflictError: 409,
}


AUDIT_EXPORTS_PER_HOUR: Final = 6
"""``POST /audit/exports`` per tenant and hour (each is a run of up to 14 minutes over the whole log)."""
PROBLEM: Final = "application/problem+json"
TITLES: Final = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Refused",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    410: "Gone",
    413: "Payload too large",
    429: "Too many requests",
    500: "Internal error",
    502: "Bad gateway",
    504: "Gateway timeout",
}


def status_of(exc: FacegateError) -> int:
    """The HTTP status of a facegate error: the caller's mistakes are 4xx, the rest 500."""
    return next((code for cls, code in STATUS.items() if isinstance(exc, cls)), 500)


def problem(status: int, code: str, detail: str, **extra: Any) -> Response[Any]:
    """An RFC 7807 problem document: ``type`` names the error (``urn:facegate:problem:<code>``), ``title``
    the status, ``detail`` what went wrong; ``code`` and ``reason_codes`` are for machines (a refusal's
    ``decision`` carries the gate's reasons), ``message`` repeats ``detail`` for older clients."""
    decision = extra.get("decision")
    reasons = [r["code"] for r in decision.get("reasons", [])] if isinstance(decision, dict) else []
    body: dict[str, Any] = {
        "type": f"urn:facegate:problem:{code}",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
        "reason_codes": reasons or [code],
        "message": detail,
        **extra,
    }
    # Serialised here: Powertools serialises a dict body only for application/json.
    return Response(status_code=status, content_type=PROBLEM, body=json.dumps(body, default=str))


def _error(exc: FacegateError) -> Response[Any]:
    extra: dict[str, Any] = {}
    if isinstance(exc, PolicyDeniedError) and hasattr(exc.decision, "to_dict"):
        extra["decision"] = exc.decision.to_dict()
    return problem(status_of(exc), exc.code, exc.message, **extra)


def _decoded(data_b64: str, what: str) -> bytes:
    try:
        return base64.b64decode(data_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequestError(f"{what} is not valid base64") from exc


def _request_view(row: Any) -> dict[str, Any]:
    """A request as the tenant reads it (``GET /requests/{id}`` and the one-call routes)."""
    return {
        "request_id": row.request_id,
        "operation": row.operation,
        "gallery_id": row.gallery_id,
        "status": row.status,
        "decision": row.decision,
        "result": row.result,
        "review_state": row.review_state,
        "reviewers": list(row.reviewers),
    }


def _gallery_view(gallery: Any) -> dict[str, Any]:
    """A gallery as the tenant reads it: its use case and caps, its size and version, its model."""
    return {
        "gallery_id": gallery.gallery_id,
        "name": gallery.name,
        "use_case": gallery.use_case,
        "size": gallery.template_count,
        "max_size": gallery.max_size,
        "version": gallery.version,
        "model_version": MODEL_VERSION,  # every template is made by this model (search refuses any other)
    }


def _whole(value: str, name: str) -> int:
    if not value.isdigit() or len(value) > 18:
        raise InvalidRequestError(f"{name} is a whole number, not {value[:20]!r}")
    return int(value)


def _page_token(token: str | None, shape: re.Pattern[str] = ENTITY_ID) -> str | None:
    """A list's ``next_token`` back to the last id of the page before (base64url of an id of ``shape``:
    a request id, or a template id; anything else is a 400)."""
    if token is None:
        return None
    try:
        decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidRequestError("next_token is not one this API gave") from None
    if shape.fullmatch(decoded) is None:
        raise InvalidRequestError("next_token is not one this API gave")
    return decoded


def _next_token(last: str) -> str:
    """The ``next_token`` for a page whose last id is ``last`` (what :func:`_page_token` reads back)."""
    return base64.urlsafe_b64encode(last.encode()).decode().rstrip("=")


def _image(data_b64: str) -> bytes:
    return _decoded(data_b64, "the image")


class TenantApi:
    """The routes, over one service, one S3 client and one Step Functions client (built at cold start).

    ``anchors`` signs audit heads; by default a signer over ``settings.audit_signing_key_id`` with a KMS
    client of its own (the function's role, never the tenant's session).
    """

    def __init__(
        self, service: FaceService, s3: Any, sfn: Any, settings: ApiSettings, *, anchors: AnchorSigner | None = None
    ) -> None:
        self.service = service
        self.s3 = s3
        self._presign_client: Any = None
        self._lambda_client: Any = None
        self.sfn = sfn
        self.settings = settings
        self.anchors = anchors or AnchorSigner.for_key(settings.audit_signing_key_id)
        self.uploads = UploadProofs(boto3.client("kms"), settings.upload_proof_key_id)
        self.submissions = Submissions()
        self.app = APIGatewayRestResolver()
        self._routes()

    def ctx(self) -> TenantContext:
        claims = self.app.current_event.request_context.authorizer.claims or {}
        return TenantContext.from_claims(dict(claims))

    def body(self, model: type[Any]) -> Any:
        """The request body as ``model``; validated before anything is written, so a refused request
        leaves nothing behind."""
        try:
            return model.model_validate(self.app.current_event.json_body or {})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise InvalidRequestError(f"invalid request body: {problems}") from exc
        except ValueError as exc:
            raise InvalidRequestError("the request body is not JSON") from exc
        except RecursionError as exc:
            # Python's json recurses once per nesting level; every request body is one flat object.
            raise InvalidRequestError("the request body is nested too deeply to be a request") from exc

    def held_anchor(self, ctx: TenantContext) -> ChainReport | None:
        """The anchor the caller kept (``?anchor=``), verified as this service's and the caller's, or ``None``."""
        token = (self.app.current_event.query_string_parameters or {}).get("anchor")
        if token is None:
            return None
        try:
            held = self.anchors.verify(SignedAnchor.from_token(token))
        except ValueError as exc:
            raise InvalidRequestError(f"the anchor is refused: {exc}") from exc
        if held.tenant_id != ctx.tenant_id:
            raise InvalidRequestError("the anchor is refused: it is of another tenant's log")
        return held

    def _put(self, key: str, data: bytes, metadata: dict[str, str] | None = None) -> ObjectRef:
        # With its SHA-256 checksum, which S3 keeps with the object: the upload proof covers it.
        put = self.s3.put_object(
            Bucket=self.settings.bucket,
            Key=key,
            Body=data,
            Metadata=metadata or {},
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=checksum_sha256(data),
        )
        return ObjectRef(bucket=self.settings.bucket, key=key, version_id=put.get("VersionId"))

    def _lambda(self) -> Any:
        """The client that starts the audit export (asynchronously), made once per container."""
        if self._lambda_client is None:
            self._lambda_client = boto3.client("lambda", region_name=os.environ.get("AWS_REGION"))
        return self._lambda_client

    def _presigner(self) -> Any:
        """The client that signs upload URLs, for S3's endpoint or ``FACEGATE_PRESIGN_ENDPOINT`` (the
        endpoint other processes reach: ``facegate local serve``'s moto); made once per container."""
        if self._presign_client is None:
            from botocore.config import Config

            # SigV4 (query-string auth with X-Amz-Credential), which S3 requires for KMS-encrypted objects.
            self._presign_client = boto3.client(
                "s3",
                region_name=os.environ.get("AWS_REGION"),
                endpoint_url=os.environ.get("FACEGATE_PRESIGN_ENDPOINT") or None,
                config=Config(signature_version="s3v4"),
            )
        return self._presign_client

    @contextmanager
    def _deleted_on_failure(
        self, ref: ObjectRef, errors: tuple[type[BaseException], ...] = (Exception,)
    ) -> Iterator[None]:
        """Delete what was just stored if the workflow that owns it cannot be started: nothing is left
        behind without a request, a row or an audit entry."""
        try:
            yield
        except errors:
            self.s3.delete_object(**ref.s3_args())
            raise

    def _submit(self, ctx: TenantContext, arn: str, request: WorkflowRequest, *, claimed: bool) -> None:
        """Record the submission (a client token's claim already is one), start the workflow, and mark a
        claimed request started (its retries then start nothing)."""
        if not claimed:
            self.submissions.mark(ctx, request.request_id, request.operation, self.service.clock())
        self._start(arn, request)
        if claimed:
            self.submissions.started(ctx, request.request_id)

    def _start(self, arn: str, request: WorkflowRequest) -> str:
        execution: str = self.sfn.start_execution(
            stateMachineArn=arn, name=request.request_id[:80], input=request.model_dump_json()
        )["executionArn"]
        return execution

    def _once_per_token(self, ctx: TenantContext, operation: str, body: Any) -> tuple[str | None, bool]:
        """A request with a client token: its request id (derived from the tenant, the operation and the
        token) and whether it was already started, by an earlier attempt or a concurrent twin, in which
        case the caller answers with the same request id and starts nothing. The same token with another
        body is refused (409). A twin that claimed the token but has not started its workflow is waited
        on briefly; if it never does (it failed between the two), this attempt starts the request."""
        token = getattr(body, "client_token", None)
        if token is None:
            return None, False
        request_id = token_request_id(ctx.tenant_id, operation, token)
        fingerprint = hashlib.sha256(body.model_dump_json(exclude={"client_token"}).encode()).hexdigest()
        held = self.submissions.claim(ctx, request_id, operation, fingerprint, self.service.clock())
        if held is None:
            return request_id, False
        if held.fingerprint != fingerprint or held.operation != operation:
            raise ClientTokenReusedError("this client token was used for a different request: use a new token")
        deadline = time.monotonic() + CLAIM_WAIT_S
        while not held.started and time.monotonic() < deadline:
            time.sleep(0.2)
            held = self.submissions.held(ctx, request_id) or held
        return request_id, held.started

    def _call(self, operation: str, body: CallBody) -> Response[Any]:
        """A verify or search in one call: the probe is stored under the tenant's ``calls/`` prefix (no
        event rule starts anything there), Recognize runs synchronously, and the answer is the request
        as recorded, decision and result together. A refusal is an answer (200, with its reason codes); a
        bad image is the caller's 400, recorded as a failure; a run past the time limit is a 504 naming
        the request to read later (``GET /requests/{id}``)."""
        ctx = self.ctx()
        data = _image(body.image_b64)
        ref = self._put(f"tenants/{ctx.tenant_id}/calls/{body.gallery_id}/{uuid.uuid4().hex}", data)
        request = WorkflowRequest.for_call(
            ctx,
            ref,
            operation,
            body.gallery_id,
            subject_id=body.subject_id,
            purpose=body.purpose,
            case_reference=body.case_reference,
            top_k=body.top_k,
            threshold=body.threshold,
        )
        # Outside any tenant scope: the workflow's own functions open theirs (in one process, as the local
        # cloud runs them, a scope held here would wait on them); the answer is read inside one.
        try:
            with self._deleted_on_failure(ref, (ClientError,)):
                run = self.sfn.start_sync_execution(
                    stateMachineArn=self.settings.recognize_state_machine_arn,
                    name=request.request_id[:80],
                    input=request.model_dump_json(),
                )
        except (ReadTimeoutError, ConnectTimeoutError):
            # Past the wait this function allows (below API Gateway's 29 s): the run goes on and records its
            # outcome; the caller reads it by id.
            with tenant_scope(ctx.tenant_id):
                self.submissions.mark(ctx, request.request_id, operation, self.service.clock(), state="running")
            running = {"request_id": request.request_id, "status": "running"}
            return Response(status_code=202, content_type="application/json", body=running)
        with tenant_scope(ctx.tenant_id):
            row = self.service.requests.get(ctx, request.request_id)
        if row is None:  # past the time limit, or the workflow could not record anything
            status = 504 if run.get("status") == "TIMED_OUT" else 502
            return problem(status, "request.no_outcome", "no outcome yet", request_id=request.request_id)
        answer = _request_view(row)
        if row.status == "failed":
            reasons = (row.result or {}).get("reasons", [])
            code = reasons[0]["code"] if reasons else "workflow.failed"
            caller = code.split(".")[0] in ("image", "request")
            status = 400 if caller else 502
            detail = str(reasons[0].get("message", code)) if reasons else code
            reason_codes = [r["code"] for r in reasons] or [code]
            # The request as recorded rides along under "request": a problem's "status" is the HTTP one.
            return problem(status, code, detail, reason_codes=reason_codes, request_id=row.request_id, request=answer)
        return Response(status_code=200, content_type="application/json", body=answer)

    def _routes(self) -> None:
        app = self.app

        @app.exception_handler(FacegateError)  # type: ignore[untyped-decorator]
        def facegate_error(exc: FacegateError) -> Response[Any]:
            return _error(exc)

        @app.exception_handler(ServiceError)  # type: ignore[untyped-decorator]
        def http_error(exc: ServiceError) -> Response[Any]:
            return problem(exc.status_code, f"http.{exc.status_code}", str(exc.msg))

        @app.not_found
        def no_route(_: Exception) -> Response[Any]:
            event = self.app.current_event
            return problem(404, "http.404", f"no route {event.http_method} {event.path}")

        @app.post("/galleries")
        def create_gallery() -> tuple[dict[str, Any], int]:
            body = self.body(GalleryBody)
            gallery = self.service.create_gallery(self.ctx(), body.gallery_id, name=body.name, use_case=body.use_case)
            return {"gallery_id": gallery.gallery_id, "use_case": gallery.use_case, "max_size": gallery.max_size}, 201

        @app.post("/consents")
        def record_consent() -> tuple[dict[str, Any], int]:
            body = self.body(ConsentBody)
            consent = self.service.record_consent(
                self.ctx(),
                subject_id=body.subject_id,
                purpose=body.purpose,
                evidence=_image(body.evidence_b64),
                expires_at=body.expires_at,
            )
            return {"consent_id": consent.consent_id, "subject_id": body.subject_id, "purpose": body.purpose}, 201

        @app.post("/probes")
        def submit_probe() -> tuple[dict[str, Any], int]:
            ctx, body = self.ctx(), self.body(ProbeBody)
            metadata = {"operation": body.operation, "actor": ctx.actor, "top-k": str(body.top_k)}
            optional = {
                "subject": body.subject_id,
                "purpose": body.purpose,
                "case-reference": body.case_reference,
                "threshold": None if body.threshold is None else str(body.threshold),
            }
            metadata.update({k: v for k, v in optional.items() if v is not None})
            key = f"tenants/{ctx.tenant_id}/probes/{body.gallery_id}/{uuid.uuid4().hex}"
            data = _image(body.image_b64)
            # The proof that this actor, authenticated by the token, submitted these bytes at this key.
            metadata["actor-proof"] = self.uploads.sign(
                tenant_id=ctx.tenant_id,
                bucket=self.settings.bucket,
                key=key,
                checksum=checksum_sha256(data),
                actor=ctx.actor,
            )
            ref = self._put(key, data, metadata)
            self.submissions.mark(ctx, ref.request_id(), body.operation, self.service.clock())
            # The S3 "Object Created" event starts Recognize; the request id is the object version's.
            return {"request_id": ref.request_id(), "status": "submitted"}, 202

        @app.post("/verify")
        def verify_now() -> Response[Any]:
            body = self.body(CallBody)
            if body.subject_id is None:
                raise InvalidRequestError("a verification names the subject_id to verify against")
            return self._call("verify", body)

        @app.post("/search")
        def search_now() -> Response[Any]:
            body = self.body(CallBody)
            if body.subject_id is not None:
                raise InvalidRequestError("a search names no subject_id (that is a verification)")
            return self._call("search", body)

        @app.post("/enrolments")
        def enrol() -> tuple[dict[str, Any], int]:
            ctx, body = self.ctx(), self.body(EnrolBody)
            photos = body.photos()  # every photo decoded before the first is stored
            request_id, started = self._once_per_token(ctx, "enrol", body)
            if started:
                return {"request_id": request_id, "status": "submitted", "duplicate": True}, 202
            refs = [
                self._put(f"tenants/{ctx.tenant_id}/uploads/{body.gallery_id}/{uuid.uuid4().hex}", data)
                for data in photos
            ]
            request = WorkflowRequest.for_upload(
                ctx,
                refs,
                "enrol",
                body.gallery_id,
                subject_id=body.subject_id,
                consent_id=body.consent_id,
                request_id=request_id,
            )
            self._submit(ctx, self.settings.enrol_state_machine_arn, request, claimed=request_id is not None)
            return {"request_id": request.request_id, "status": "submitted"}, 202

        @app.post("/bulk-enrolments")
        def bulk_enrol() -> tuple[dict[str, Any], int]:
            ctx, body = self.ctx(), self.body(BulkBody)
            # Validated before anything is claimed, stored or started: a malformed manifest or a gallery the
            # tenant does not hold is the caller's answer now, not a failed job later.
            from facegate.batch import parse_manifest

            parse_manifest(body.manifest_jsonl, ctx.tenant_id)
            with tenant_scope(ctx.tenant_id):
                self.service.galleries.get(ctx, check_entity_id(body.gallery_id, "gallery"))
            request_id, started = self._once_per_token(ctx, "bulk_enrol", body)
            if started:
                return {"request_id": request_id, "status": "submitted", "duplicate": True}, 202
            key = f"tenants/{ctx.tenant_id}/manifests/{uuid.uuid4().hex}.jsonl"
            ref = self._put(key, body.manifest_jsonl.encode())
            request = WorkflowRequest.for_upload(ctx, ref, "bulk_enrol", body.gallery_id, request_id=request_id)
            self._submit(ctx, self.settings.bulk_enrol_state_machine_arn, request, claimed=request_id is not None)
            return {"request_id": request.request_id, "status": "submitted"}, 202

        @app.post("/uploads")
        def presigned_uploads() -> dict[str, Any]:
            """``count`` presigned PUT URLs, each for one new key under the tenant's ``uploads/`` (where a
            bulk manifest's photos lie): the photos go straight to S3, not through the API's 10 MB body.
            The URL fixes the key and the signer (the API's role); the size and type are checked when the
            job decodes each photo (15 MB, 40 MP), as for every image."""
            ctx, body = self.ctx(), self.body(UploadsBody)
            with tenant_scope(ctx.tenant_id):  # as a bulk enrolment's first check: the gate, the gallery
                self.service.decide(
                    ctx, Operation.ENROL, body.gallery_id, count_attempt=False, consent_per_subject=True
                )
            signer = self._presigner()
            uploads = []
            for _ in range(body.count):
                key = f"tenants/{ctx.tenant_id}/uploads/{body.gallery_id}/{uuid.uuid4().hex}"
                url = signer.generate_presigned_url(
                    "put_object",
                    Params={"Bucket": self.settings.bucket, "Key": key},
                    ExpiresIn=PRESIGNED_EXPIRY_S,
                )
                uploads.append({"key": key, "url": url, "method": "PUT", "expires_in": PRESIGNED_EXPIRY_S})
            return {"uploads": uploads}

        @app.get("/bulk-enrolments/<request_id>/report")
        def bulk_report(request_id: str) -> dict[str, Any]:
            """The per-subject report of a bulk enrolment: ``state`` ``running`` (written after each batch:
            ``lines``, ``done``, the counts and the lines so far) or ``completed``; ``queued`` before the job
            starts. The report lives under the tenant's prefix for a day, as every object there."""
            from facegate.batch import report_key

            ctx = self.ctx()
            key = report_key(ctx.tenant_id, check_entity_id(request_id, "request"))
            try:
                report: dict[str, Any] = json.loads(
                    self.s3.get_object(Bucket=self.settings.bucket, Key=key)["Body"].read()
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                    raise
                submitted = self.submissions.get(ctx, request_id, self.service.clock())
                if submitted is None or submitted[0] != "bulk_enrol":
                    raise UnknownRequestError(f"no bulk enrolment {request_id} of yours has a report") from None
                return {"request_id": request_id, "state": "queued"}
            report.pop("tenant_id", None)
            return report

        @app.get("/galleries")
        def list_galleries() -> dict[str, Any]:
            return {"galleries": [_gallery_view(g) for g in self.service.galleries.list_all(self.ctx())]}

        @app.get("/galleries/<gallery_id>")
        def describe_gallery(gallery_id: str) -> dict[str, Any]:
            return _gallery_view(self.service.galleries.get(self.ctx(), gallery_id))

        @app.delete("/galleries/<gallery_id>")
        def delete_gallery(gallery_id: str) -> dict[str, Any]:
            return self.service.delete_gallery(self.ctx(), gallery_id)

        @app.get("/galleries/<gallery_id>/templates")
        def list_templates(gallery_id: str) -> dict[str, Any]:
            query = self.app.current_event.query_string_parameters or {}
            limit = _whole(query.get("limit", "50"), "limit")
            after = _page_token(query.get("next_token"), TEMPLATE_ID)
            rows, last = self.service.templates_page(self.ctx(), gallery_id, limit=limit, after=after)
            page: dict[str, Any] = {"gallery_id": gallery_id, "templates": [template_view(t) for t in rows]}
            if last is not None:
                page["next_token"] = _next_token(last)
            return page

        @app.delete("/galleries/<gallery_id>/templates/<template_id>")
        def delete_template(gallery_id: str, template_id: str) -> dict[str, Any]:
            return self.service.delete_template(self.ctx(), gallery_id, unquote(template_id))

        @app.get("/subjects/<subject_id>/consents")
        def list_consents(subject_id: str) -> dict[str, Any]:
            consents = self.service.consents_of(self.ctx(), subject_id)
            return {"subject_id": subject_id, "consents": [consent_view(c) for c in consents]}

        @app.get("/subjects/<subject_id>/consents/<consent_id>")
        def get_consent(subject_id: str, consent_id: str) -> dict[str, Any]:
            return consent_view(self.service.consent(self.ctx(), subject_id, consent_id))

        @app.delete("/subjects/<subject_id>/consents/<consent_id>")
        def revoke_consent(subject_id: str, consent_id: str) -> dict[str, Any]:
            ctx = self.ctx()
            deleted = self.service.revoke_consent(ctx, check_entity_id(subject_id, "subject"), consent_id)
            return {"subject_id": subject_id, "consent_id": consent_id, "revoked": True, "templates_deleted": deleted}

        @app.get("/requests")
        def list_requests() -> dict[str, Any]:
            query = self.app.current_event.query_string_parameters or {}
            try:
                limit = int(query.get("limit", "50"))
            except ValueError:
                raise InvalidRequestError("limit is a whole number from 1 to 100") from None
            after = _page_token(query.get("next_token"))
            rows, last = self.service.requests.page(self.ctx(), limit=limit, after=after)
            page: dict[str, Any] = {"requests": [_request_view(row) for row in rows]}
            if last is not None:
                page["next_token"] = _next_token(last)
            return page

        @app.get("/requests/<request_id>")
        def get_request(request_id: str) -> dict[str, Any]:
            ctx = self.ctx()
            check_entity_id(request_id, "request")
            row = self.service.requests.get(ctx, request_id)
            if row is not None:
                return _request_view(row)
            submitted = self.submissions.get(ctx, request_id, self.service.clock())
            if submitted is None:
                raise UnknownRequestError(f"no request {request_id} was submitted by you (or it is over a day old)")
            operation, state = submitted
            return {"request_id": request_id, "operation": operation, "status": state}

        @app.post("/requests/<request_id>/review")
        def review(request_id: str) -> dict[str, Any]:
            body = self.body(ReviewBody)
            row = self.service.review(self.ctx(), request_id, confirm=body.confirm)
            return {"request_id": row.request_id, "review_state": row.review_state, "reviewers": list(row.reviewers)}

        @app.delete("/subjects/<subject_id>")
        def erase_subject(subject_id: str) -> dict[str, Any]:
            # The receipt: what was deleted (templates, consents), what was redacted (request rows),
            # and what remains where (the audit log's entries naming the subject id, by design).
            return self.service.erase_subject(self.ctx(), subject_id).to_dict()

        @app.get("/audit")
        def export_audit() -> dict[str, Any]:
            ctx = self.ctx()
            query = self.app.current_event.query_string_parameters or {}
            if {"from_seq", "to_seq", "limit", "next_token"} & set(query):
                if "anchor" in query:
                    raise InvalidRequestError("an anchor is checked on the whole log: export it without a range")
                first = _whole(query.get("next_token") or query.get("from_seq") or "1", "from_seq")
                last = _whole(query["to_seq"], "to_seq") if "to_seq" in query else None
                limit = _whole(query.get("limit", str(DEFAULT_PAGE)), "limit")
                return read_page(self.service.audit, ctx, first=first, last=last, limit=limit).to_dict()
            export = export_with_anchor(self.service.audit, self.anchors, ctx, held=self.held_anchor(ctx))
            if export.error is not None:  # the answer carries it; the operators are paged on it too
                seq = export.error.seq if isinstance(export.error.seq, int) else None
                observability.audit_chain_broken(tenant=ctx.tenant_id, kind=export.error.kind, seq=seq)
            return export.to_dict()

        @app.post("/audit/exports")
        def request_audit_export() -> tuple[dict[str, Any], int]:
            """The whole log, verified and signed, to the tenant's S3 prefix (for a log too large for
            ``GET /audit``'s answer): recorded, then started; 202 with the export's id to read it by."""
            from datetime import timedelta

            from facegate.audit.exports import mark_failed, request_export
            from facegate.store.repositories import Counters
            from facegate.store.scope import tenant_client

            ctx = self.ctx()
            if not self.settings.audit_export_function:
                raise ServiceError(503, "audit exports to S3 are not configured (FACEGATE_AUDIT_EXPORT_FUNCTION)")
            with tenant_scope(ctx.tenant_id):
                # Each export is a long run of the whole log: a few an hour per tenant, and the refusal
                # is on the record like every other.
                hits = Counters().hit(ctx, "audit-exports", window=timedelta(hours=1), now=self.service.clock())
                if hits > AUDIT_EXPORTS_PER_HOUR:
                    self.service.audit.append(ctx, "audit.export_refused", {"code": "audit_export.throttled"})
                    return problem(  # type: ignore[return-value]
                        429,
                        "audit_export.throttled",
                        f"at most {AUDIT_EXPORTS_PER_HOUR} audit exports an hour: read the last one "
                        "(GET /audit/exports/{id}) or ask again later",
                    )
                s3 = tenant_client("s3")
                manifest = request_export(self.service.audit, s3, self.settings.bucket, ctx)
                try:
                    self._lambda().invoke(
                        FunctionName=self.settings.audit_export_function,
                        InvocationType="Event",
                        Payload=json.dumps(
                            {"tenant_id": ctx.tenant_id, "export_id": manifest["export_id"], "actor": ctx.actor}
                        ).encode(),
                    )
                except Exception as exc:
                    mark_failed(self.service.audit, s3, self.settings.bucket, ctx, manifest, "export.not_started")
                    raise ServiceError(503, "the export could not be started (recorded as failed): ask again") from exc
            return manifest, 202

        @app.get("/audit/exports/<export_id>")
        def audit_export(export_id: str) -> dict[str, Any]:
            """An export's manifest (``queued``, ``completed`` with a presigned URL of the document valid 15
            minutes, or ``failed`` with its code); another tenant's id is 'no such export'."""
            from facegate.audit.exports import read_export
            from facegate.store.scope import tenant_client

            ctx = self.ctx()
            with tenant_scope(ctx.tenant_id):
                # The manifest through the tenant's session; the URL signed where the caller can reach it
                # (the API's role, which may read only exports' documents).
                return read_export(tenant_client("s3"), self.settings.bucket, ctx, export_id, signer=self._presigner())

        @app.post("/independent-tests")
        def submit_independent_test() -> tuple[dict[str, Any], int]:
            # The set is checked here as the job will read it, before anything is stored: a bad archive
            # is the caller's 400 and leaves nothing. The gate decides in the workflow's first state.
            from facegate.sandbox.archive import inspect
            from facegate.sandbox.keys import set_key

            ctx, body = self.ctx(), self.body(IndependentTestBody)
            data = _decoded(body.set_zip_b64, "the set's archive")
            summary = inspect(
                data,
                self.service.gate.catalog.sandbox,
                name=body.name,
                identities_known=body.identities,
                group_source=body.group_source,
            )
            ref = self._put(set_key(ctx.tenant_id, uuid.uuid4().hex), data)
            test_set = TestSet.model_validate(summary.to_dict())
            request = WorkflowRequest.for_upload(ctx, ref, "independent_test", None, test_set=test_set)
            with self._deleted_on_failure(ref):
                self._start(self.settings.independent_test_state_machine_arn, request)
            return {"test_id": request.request_id, "status": "submitted", "set": summary.to_dict()}, 202

        @app.get("/independent-tests/<test_id>")
        def get_independent_test(test_id: str) -> Response[Any]:
            from facegate.sandbox.keys import report_keys

            ctx = self.ctx()
            fmt = (self.app.current_event.query_string_parameters or {}).get("format", "json")
            if fmt not in REPORT_FORMATS:
                raise InvalidRequestError(f"format must be one of {', '.join(REPORT_FORMATS)}, not {fmt[:20]!r}")
            row = self.service.requests.get(ctx, test_id) if TEST_ID.fullmatch(test_id) else None
            if row is None or row.operation != "independent_test":
                raise NotFoundError("no such independent test (or it is still running)")
            if row.status != "completed":
                reasons = (row.result or {}).get("reasons", [])
                body = {"test_id": test_id, "status": row.status, "reasons": reasons}
                if fmt == "html":  # no report to show: the answer is the refusal, as JSON
                    return Response(status_code=409, content_type=REPORT_FORMATS["json"], body=body)
                return Response(status_code=200, content_type=REPORT_FORMATS["json"], body=body)
            json_key, html_key = report_keys(ctx.tenant_id, test_id)
            try:
                stored = self.s3.get_object(Bucket=self.settings.bucket, Key=html_key if fmt == "html" else json_key)
            except ClientError as exc:  # reports are transient (tenants/ expires within a day or two)
                if exc.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                    raise
                detail = "the report has expired; the outcome stays"
                return problem(
                    410, "request.report_expired", detail, test_id=test_id, outcome=row.status, set=row.result
                )
            text = stored["Body"].read().decode("utf-8")
            if fmt == "html":
                return Response(status_code=200, content_type=REPORT_FORMATS["html"], body=text)
            payload = {"test_id": test_id, "status": row.status, "set": row.result, "report": json.loads(text)}
            return Response(status_code=200, content_type=REPORT_FORMATS["json"], body=payload)

        @app.get("/accountability-report")
        def accountability_report() -> Response[Any]:
            # Read-only, from the caller's own registry row: a suspended tenant still reads its report
            # (nothing in force), as it still reads its audit log.
            ctx = self.ctx()
            fmt = (self.app.current_event.query_string_parameters or {}).get("format", "json")
            if fmt not in REPORT_FORMATS:
                raise InvalidRequestError(f"format must be one of {', '.join(REPORT_FORMATS)}, not {fmt[:20]!r}")
            tenant = self.service.registry.current(ctx)
            report = tenant_report(tenant, now=self.service.clock())
            if fmt == "html":
                return Response(status_code=200, content_type=REPORT_FORMATS[fmt], body=render_html(report))
            return Response(status_code=200, content_type=REPORT_FORMATS[fmt], body=report)

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """Resolve the route inside the caller's tenant scope (only that tenant's rows are reachable)."""
        claims = ((event.get("requestContext") or {}).get("authorizer") or {}).get("claims") or {}
        tenant = claims.get("custom:tenant_id")
        if not isinstance(tenant, str) or TENANT_ID.fullmatch(tenant) is None:
            return self.app.resolve(event, context)  # the route refuses a missing identity (400)
        if (event.get("httpMethod"), event.get("resource")) in ONE_CALL_ROUTES:
            return self.app.resolve(event, context)  # reads its answer in a scope of its own (see _call)
        with tenant_scope(tenant):
            return self.app.resolve(event, context)
