"""The tenant SDK: a small client of the tenant API (``ApiUrl`` in the stack's outputs).

Its own distribution, ``facegate-sdk`` (``pip install ./clients/python``): the standard library only, no
OpenCV, onnxruntime or AWS SDK. The ``facegate`` package carries it too, as ``facegate.sdk``.

    client = FacegateClient(api_url, token)             # an access token (a person's sign-in, a machine's)
    client.create_gallery("staff", name="Staff", use_case="access_control")
    consent = client.record_consent("s-42", purpose="access_control", evidence=signed_pdf, expires_at=...)
    client.enrol("staff", "s-42", consent["consent_id"], photo_bytes)
    client.enrol("staff", "s-43", other["consent_id"], images=[front, left, right])   # up to 5, fused
    answer = client.search("staff", probe_bytes, purpose="entry at gate B")   # one call: decision and result
    submitted = client.submit_search("staff", probe_bytes, purpose="...")     # or asynchronous
    result = client.wait_for_request(submitted["request_id"])

The tenant is never a parameter: it comes from the identity behind the token. ``FacegateClient()`` with
no arguments reads ``FACEGATE_API_URL`` and ``FACEGATE_TOKEN`` (and ``FACEGATE_MAX_ATTEMPTS``,
``FACEGATE_TIMEOUT``) from the environment; with ``FACEGATE_REFRESH_TOKEN`` and
``FACEGATE_USER_POOL_CLIENT_ID`` too, the SDK refreshes the token itself before it expires and after a
401 (:mod:`facegate_sdk.auth`; ``CognitoSession.sign_in`` signs a person in with SRP); with
``FACEGATE_CLIENT_ID``, ``FACEGATE_CLIENT_SECRET`` and ``FACEGATE_TOKEN_URL``, a machine signs in with
client credentials (``ClientCredentials``).

Errors: the service's answers are :class:`FacegateApiError` subclasses by kind (:class:`BadRequestError`,
:class:`UnauthorizedError`, :class:`RefusedError` with the gate's ``decision`` and ``reason_codes``,
:class:`ForbiddenError`, :class:`NotFoundError` and its :class:`UnknownRequestError`,
:class:`ConflictError`, :class:`ThrottlingError`, :class:`ServiceError`), each with the problem
document's ``code`` and ``reason_codes``; a network failure is :class:`FacegateConnectionError`, never a
``urllib`` error. Throttling, 5xx and connection failures are retried with exponential backoff and full
jitter, as botocore's standard mode does (``max_attempts``, 3 by default, counts the first try); a POST
that may have been carried out (a 500 or 502, a dropped connection after the request was sent) is not
retried, since repeating it could repeat what it did.

The audit log, and why to keep its anchors::

    export = client.export_audit()                     # entries, verified, head_seq, head_hash, anchor
    keep(export["anchor"])                             # outside the service: the head, signed by its KMS key
    ...
    later = client.export_audit(anchor=kept)           # the service checks its log still holds that head
    verify_export(later, kept, pinned_public_key)      # and so can you, offline

Whoever can write the audit table can rewrite it consistently, hashes and head included; only an anchor
kept from before shows it. The client is standard library only, so it installs anywhere;
:func:`verify_export` also needs the facegate package's audit code (``pip install facegate``).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import random
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypedDict, cast, overload
from urllib.parse import quote

from facegate_sdk.auth import (
    AuthError,
    ClientCredentials,
    CognitoSession,
    StaticToken,
    TokenProvider,
    from_environment,
    open_credentialed,
)

if TYPE_CHECKING:
    from facegate.audit.anchor import SignedAnchor
    from facegate.audit.chain import ChainReport


__version__ = "0.1.0"
__all__ = [
    "AuthError",
    "BadRequestError",
    "ClientCredentials",
    "CognitoSession",
    "ConflictError",
    "Consent",
    "ConsentList",
    "ConsentRevoked",
    "ConsentView",
    "Decision",
    "FacegateApiError",
    "FacegateClient",
    "FacegateConnectionError",
    "ForbiddenError",
    "GalleryCreated",
    "GalleryDescription",
    "GalleryList",
    "GoneError",
    "NotFoundError",
    "Paginator",
    "Reason",
    "RefusedError",
    "Request",
    "RequestPage",
    "Review",
    "ServiceError",
    "StaticToken",
    "Submitted",
    "TemplatePage",
    "TemplateView",
    "ThrottlingError",
    "TokenProvider",
    "UnauthorizedError",
    "UnknownRequestError",
    "WaiterError",
    "__version__",
    "verify_export",
]


# --- typed results (each is the JSON object the API answers: a dict at run time, as boto3's) ----------


class Reason(TypedDict):
    code: str
    message: str


class Decision(TypedDict, total=False):
    """The policy gate's decision: allowed or not, why, under which policy version."""

    allowed: bool
    reasons: list[Reason]
    obligations: list[str]
    policy_version: str
    operation: str
    use_case: str
    threshold: float | None
    max_results: int | None
    stage: str


class Request(TypedDict, total=False):
    """A request as the service has it (``get_request``, the one-call ``verify`` and ``search``):
    ``status`` ``queued`` or ``running`` (no outcome yet), ``completed``, ``refused`` or ``failed``."""

    request_id: str
    operation: str
    gallery_id: str | None
    status: str
    decision: Decision | None
    result: dict[str, Any] | None
    review_state: str
    reviewers: list[str]


class Submitted(TypedDict, total=False):
    """An accepted asynchronous request: read its outcome with ``wait_for_request``."""

    request_id: str
    status: str
    duplicate: bool


class RequestPage(TypedDict, total=False):
    requests: list[Request]
    next_token: str


class GalleryCreated(TypedDict):
    gallery_id: str
    use_case: str
    max_size: int


class GalleryDescription(TypedDict):
    gallery_id: str
    name: str
    use_case: str
    size: int
    max_size: int
    version: int
    model_version: str


class GalleryList(TypedDict):
    galleries: list[GalleryDescription]


class Consent(TypedDict):
    consent_id: str
    subject_id: str
    purpose: str


class ConsentRevoked(TypedDict):
    subject_id: str
    consent_id: str
    revoked: bool
    templates_deleted: int


class TemplateView(TypedDict):
    template_id: str
    subject_id: str
    consent_id: str
    expires_at: str
    model_version: str
    references: int


class TemplatePage(TypedDict, total=False):
    gallery_id: str
    templates: list[TemplateView]
    next_token: str


class ConsentView(TypedDict):
    subject_id: str
    consent_id: str
    purpose: str
    status: str
    granted_at: str
    expires_at: str
    evidence_sha256: str


class ConsentList(TypedDict):
    subject_id: str
    consents: list[ConsentView]


class Review(TypedDict):
    request_id: str
    review_state: str
    reviewers: list[str]


class FacegateApiError(Exception):
    """The service answered with an error: its problem document's ``code``, ``message`` and, for a
    refusal, the gate's ``decision``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        decision: dict[str, Any] | None = None,
        problem: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.decision = decision
        self.problem = problem or {}

    @property
    def reason_codes(self) -> list[str]:
        """The gate's reason codes for a refusal; otherwise the problem's (at least its ``code``)."""
        if self.decision:
            return [r["code"] for r in self.decision.get("reasons", [])]
        listed = self.problem.get("reason_codes")
        return [str(c) for c in listed] if isinstance(listed, list) else [self.code]


class BadRequestError(FacegateApiError):
    """400 (and 405, 413): the request itself is wrong; sending it again will not help."""


class UnauthorizedError(FacegateApiError):
    """401: no token, or an expired one."""


class ForbiddenError(FacegateApiError):
    """403 without a decision: this identity may not do that."""


class RefusedError(ForbiddenError):
    """403 with the policy gate's ``decision``: refused by rule, with ``reason_codes``."""


class NotFoundError(FacegateApiError):
    """404: no such gallery, subject, request or route for you (another tenant's look the same)."""


class UnknownRequestError(NotFoundError):
    """404 ``request.unknown``: no request of that id was submitted by you (or it is over a day old)."""


class ConflictError(FacegateApiError):
    """409: the state does not allow it (a concurrent change, a review by the requester)."""


class GoneError(FacegateApiError):
    """410: it existed and has expired (a report)."""


class ThrottlingError(FacegateApiError):
    """429: too many requests; retried with backoff before it is raised."""


class ServiceError(FacegateApiError):
    """5xx: the service failed; safe requests are retried before it is raised."""


class FacegateConnectionError(Exception):
    """The service could not be reached, or the connection failed, after every attempt."""


class WaiterError(TimeoutError):
    """A waiter gave up: the request had no outcome within its time."""


KINDS: dict[int, type[FacegateApiError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    405: BadRequestError,
    409: ConflictError,
    410: GoneError,
    413: BadRequestError,
    429: ThrottlingError,
}
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
NOT_CARRIED_OUT = frozenset({429, 503})
"""Statuses that say the request was not carried out: a POST is retried only on these."""
SAFE_METHODS = frozenset({"GET", "HEAD", "DELETE"})
"""Repeating these does nothing more than doing them once (an erasure twice erases once)."""
MAX_BACKOFF_S = 20.0
FINAL_STATES = frozenset({"completed", "refused", "failed"})


def _int_from_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} is a whole number, not {raw!r}") from None
    if value < 1:
        raise ValueError(f"{name} is at least 1, not {value}")
    return value


class FacegateClient:
    """A client of one tenant API. ``endpoint`` and ``token`` default to ``FACEGATE_API_URL`` and
    ``FACEGATE_TOKEN``; ``max_attempts`` (``FACEGATE_MAX_ATTEMPTS``, default 3) counts the first try;
    ``timeout`` (``FACEGATE_TIMEOUT``, default 30 s) is per attempt."""

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        *,
        auth: TokenProvider | None = None,
        timeout: float | None = None,
        max_attempts: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        endpoint = endpoint or os.environ.get("FACEGATE_API_URL")
        provider = auth or (StaticToken(token) if token else from_environment())
        if not endpoint:
            raise ValueError("no API endpoint: pass endpoint or set FACEGATE_API_URL (the stack's ApiUrl)")
        if provider is None:
            raise ValueError(
                "no token: pass token or auth (facegate_sdk.auth.CognitoSession or ClientCredentials), or set "
                "FACEGATE_TOKEN (and FACEGATE_REFRESH_TOKEN with FACEGATE_USER_POOL_CLIENT_ID for a session the SDK "
                "refreshes), or FACEGATE_CLIENT_ID, FACEGATE_CLIENT_SECRET and FACEGATE_TOKEN_URL for a machine"
            )
        if not endpoint.startswith(("https://", "http://")):
            raise ValueError(f"the endpoint is an http(s) URL, not {endpoint[:60]!r}")
        self.endpoint = endpoint.rstrip("/")
        self.auth: TokenProvider = provider
        self.timeout = float(timeout if timeout is not None else os.environ.get("FACEGATE_TIMEOUT") or 30.0)
        self.max_attempts = max_attempts if max_attempts is not None else _int_from_env("FACEGATE_MAX_ATTEMPTS", 3)
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts is at least 1, not {self.max_attempts}")
        self._sleep = sleep

    @property
    def token(self) -> str:
        """The token the next call sends (refreshed first if it nears its expiry)."""
        return self.auth.token()

    def _send(
        self, method: str, path: str, data: bytes | None, headers: dict[str, str], *, idempotent: bool = False
    ) -> bytes:
        """One call with the retry rule above (``idempotent``: a POST carrying a client token, which the
        service carries out once however often it arrives); the body of a 2xx answer."""
        safe = idempotent or method in SAFE_METHODS
        attempt = 0
        refreshed = False
        while True:
            attempt += 1
            retry_after: float | None = None
            token = self.auth.token()
            request = urllib.request.Request(
                self.endpoint + path, data=data, method=method, headers={"Authorization": token, **headers}
            )
            try:
                with open_credentialed(request, self.timeout) as response:  # a token: no redirect followed
                    body: bytes = response.read()
                    return body
            except urllib.error.HTTPError as exc:
                error = _api_error(exc)
                if exc.code == 401 and not refreshed and not isinstance(self.auth, StaticToken):
                    # The token expired or was revoked on the way: the request was not carried out
                    # (the gateway refused it), so one more try with a fresh token is safe.
                    self.auth.expired(token)
                    refreshed = True
                    attempt -= 1
                    continue
                retried = exc.code in (RETRIED_STATUSES if safe else NOT_CARRIED_OUT)
                if not retried or attempt >= self.max_attempts:
                    raise error from None
                retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
                # Refused: nothing was sent. Otherwise the request may have arrived: only safe methods repeat.
                unsent = isinstance(reason, ConnectionRefusedError | socket.gaierror)
                if attempt >= self.max_attempts or not (unsent or safe):
                    raise FacegateConnectionError(
                        f"{method} {self.endpoint}{path.split('?')[0]} failed after {attempt} attempt(s): {reason}"
                    ) from None
            backoff = random.uniform(0, min(MAX_BACKOFF_S, 0.5 * 2 ** (attempt - 1)))
            self._sleep(max(backoff, retry_after or 0.0))

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, idempotent: bool = False
    ) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        raw = self._send(method, path, data, {"Content-Type": "application/json"}, idempotent=idempotent)
        try:
            payload: dict[str, Any] = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            raise ServiceError(502, "http.bad_body", "the service's answer is not JSON") from None
        return payload

    # --- galleries and consent ------------------------------------------------------------------------

    def create_gallery(self, gallery_id: str, *, name: str, use_case: str) -> GalleryCreated:
        return cast(
            GalleryCreated,
            self._call("POST", "/galleries", {"gallery_id": gallery_id, "name": name, "use_case": use_case}),
        )

    def list_galleries(self) -> GalleryList:
        """``galleries``: each with ``gallery_id``, ``name``, ``use_case``, ``size``, ``max_size``,
        ``version`` and ``model_version``."""
        return cast(GalleryList, self._call("GET", "/galleries"))

    def describe_gallery(self, gallery_id: str) -> GalleryDescription:
        """One gallery as :meth:`list_galleries` lists it; :class:`NotFoundError` for none of yours."""
        return cast(GalleryDescription, self._call("GET", f"/galleries/{quote(gallery_id, safe='')}"))

    def revoke_consent(self, subject_id: str, consent_id: str) -> ConsentRevoked:
        """Revoke a consent: every template enrolled under it is deleted in the same audited
        transaction (``templates_deleted``)."""
        return cast(
            ConsentRevoked,
            self._call("DELETE", f"/subjects/{quote(subject_id, safe='')}/consents/{quote(consent_id, safe='')}"),
        )

    def list_requests(self, *, limit: int = 50, next_token: str | None = None) -> RequestPage:
        """One page of your requests (``requests``, as :meth:`get_request` returns each) and, when more
        may follow, ``next_token``. :meth:`get_paginator` (``"list_requests"``) walks every page."""
        query = f"?limit={int(limit)}" + (f"&next_token={quote(next_token, safe='')}" if next_token else "")
        return cast(RequestPage, self._call("GET", "/requests" + query))

    def get_paginator(self, operation: str) -> Paginator:
        """A paginator for a listing operation, as boto3's: ``paginate(PageSize=...)`` yields each page
        (``list_templates`` takes its ``gallery_id`` there: ``paginate(gallery_id="staff")``)."""
        if operation == "list_requests":
            return Paginator(self.list_requests, "requests")
        if operation == "audit_page":
            return Paginator(self.audit_page, "entries")
        if operation == "list_templates":
            return Paginator(self.list_templates, "templates")
        raise ValueError(f"no paginator for {operation!r} (list_requests, list_templates and audit_page have one)")

    def delete_gallery(self, gallery_id: str) -> dict[str, Any]:
        """Delete a gallery and every template in it (audited); ``templates_deleted``. Calling again after
        an interruption finishes the deletion."""
        return self._call("DELETE", f"/galleries/{quote(gallery_id, safe='')}")

    def list_templates(self, gallery_id: str, *, limit: int = 50, next_token: str | None = None) -> TemplatePage:
        """One page of a gallery's templates (ids, subject, consent, expiry, model version; never the
        embedding); ``next_token`` when more may follow."""
        query = f"?limit={int(limit)}" + (f"&next_token={quote(next_token, safe='')}" if next_token else "")
        return cast(TemplatePage, self._call("GET", f"/galleries/{quote(gallery_id, safe='')}/templates{query}"))

    def delete_template(self, gallery_id: str, template_id: str) -> dict[str, Any]:
        """Delete one template (the subject's other templates and consents stay), audited."""
        path = f"/galleries/{quote(gallery_id, safe='')}/templates/{quote(template_id, safe='')}"
        return self._call("DELETE", path)

    def list_consents(self, subject_id: str) -> ConsentList:
        """A subject's consents, granted and revoked (only the evidence's sha256 is kept)."""
        return cast(ConsentList, self._call("GET", f"/subjects/{quote(subject_id, safe='')}/consents"))

    def get_consent(self, subject_id: str, consent_id: str) -> ConsentView:
        path = f"/subjects/{quote(subject_id, safe='')}/consents/{quote(consent_id, safe='')}"
        return cast(ConsentView, self._call("GET", path))

    def record_consent(self, subject_id: str, *, purpose: str, evidence: bytes, expires_at: datetime) -> Consent:
        """Only the sha256 of ``evidence`` (the signed release) is kept by the service."""
        return cast(
            Consent,
            self._call(
                "POST",
                "/consents",
                {
                    "subject_id": subject_id,
                    "purpose": purpose,
                    "evidence_b64": base64.b64encode(evidence).decode(),
                    "expires_at": expires_at.isoformat(),
                },
            ),
        )

    def enrol(
        self,
        gallery_id: str,
        subject_id: str,
        consent_id: str,
        image: bytes | None = None,
        *,
        images: Sequence[bytes] | None = None,
        client_token: str | None = None,
    ) -> Submitted:
        """Enrol a consenting subject from one photo (``image``) or several (``images``: 1 to 5 photos
        of the same person, fused by the service into one template). Returns ``request_id``; the
        outcome's ``result`` says how many ``references`` the template fuses. Photos of different
        people are refused (``image.photos_disagree``); more than five, or none, is a 400
        (``request.enrolment_photos``).

        ``client_token`` (a fresh one per call by default, as boto3 fills ClientToken): the service
        enrols once per token, so the call is retried on 5xx and connection failures too, and calling
        again with the same token returns the same ``request_id`` (``duplicate``: true). The same token
        with other photos or ids is refused (409 ``request.client_token_reused``)."""
        if (image is None) == (images is None):
            raise TypeError("enrol takes one photo as image or several as images, not both (nor neither)")
        body: dict[str, Any] = {"gallery_id": gallery_id, "subject_id": subject_id, "consent_id": consent_id}
        if images is not None:
            body["images_b64"] = [base64.b64encode(photo).decode() for photo in images]
        else:
            body["image_b64"] = base64.b64encode(image or b"").decode()
        body["client_token"] = client_token or uuid.uuid4().hex
        return cast(Submitted, self._call("POST", "/enrolments", body, idempotent=True))

    def bulk_enrol(self, gallery_id: str, lines: list[dict[str, str]], *, client_token: str | None = None) -> Submitted:
        """``lines``: ``subject_id``, ``consent_id``, ``key`` (a photo already under ``uploads/``).
        ``client_token``: as :meth:`enrol`'s (one bulk job per token)."""
        manifest = "\n".join(json.dumps(line) for line in lines)
        body = {"gallery_id": gallery_id, "manifest_jsonl": manifest, "client_token": client_token or uuid.uuid4().hex}
        return cast(Submitted, self._call("POST", "/bulk-enrolments", body, idempotent=True))

    def upload_photos(self, gallery_id: str, photos: Sequence[bytes]) -> list[str]:
        """Upload photos for a bulk enrolment straight to S3 (presigned PUT URLs the API signs, 15 minutes
        each, at most 100 a call): the keys, in order, for :meth:`bulk_enrol`'s lines."""
        keys: list[str] = []
        for start in range(0, len(photos), 100):
            batch = photos[start : start + 100]
            answer = self._call("POST", "/uploads", {"gallery_id": gallery_id, "count": len(batch)})
            for upload, photo in zip(answer["uploads"], batch, strict=True):
                self._put_presigned(upload["url"], photo)
                keys.append(str(upload["key"]))
        return keys

    def _put_presigned(self, url: str, data: bytes) -> None:
        # urllib would label the bytes as a form (application/x-www-form-urlencoded): say what they are.
        request = urllib.request.Request(
            url, data=data, method="PUT", headers={"Content-Type": "application/octet-stream"}
        )
        attempt = 0
        while True:  # a PUT of the same bytes to the same key is safe to repeat
            attempt += 1
            try:
                with urllib.request.urlopen(request, timeout=self.timeout):
                    return
            except urllib.error.HTTPError as exc:
                if exc.code < 500 or attempt >= self.max_attempts:
                    detail = exc.read().decode(errors="replace")[:200]
                    kind = ServiceError if exc.code >= 500 else ForbiddenError if exc.code == 403 else BadRequestError
                    raise kind(exc.code, "upload.failed", f"S3 refused the photo upload: {detail}") from None
            except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
                if attempt >= self.max_attempts:
                    raise FacegateConnectionError(
                        f"the photo upload failed after {attempt} attempt(s): {exc}"
                    ) from None
            self._sleep(random.uniform(0, min(MAX_BACKOFF_S, 0.5 * 2 ** (attempt - 1))))

    def bulk_report(self, request_id: str) -> dict[str, Any]:
        """A bulk enrolment's per-subject report: ``state`` ``queued``, ``running`` (``lines``, ``done``,
        the counts and the lines so far) or ``completed`` (``results``: each line's ``status`` and codes)."""
        return self._call("GET", f"/bulk-enrolments/{quote(request_id, safe='')}/report")

    # --- recognition -------------------------------------------------------------------------------------

    def _probe(self, gallery_id: str, operation: str, image: bytes, **fields: Any) -> dict[str, Any]:
        body = {"gallery_id": gallery_id, "operation": operation, "image_b64": base64.b64encode(image).decode()}
        body.update({k: v for k, v in fields.items() if v is not None})
        return self._call("POST", "/probes", body)

    def verify(
        self,
        gallery_id: str,
        subject_id: str,
        image: bytes,
        *,
        purpose: str | None = None,
        case_reference: str | None = None,
        threshold: float | None = None,
    ) -> Request:
        """A 1:1 check in one call: the request as recorded, with its ``decision`` and ``result``
        (``result["matched"]``). A refusal is an answer: ``status`` ``refused`` with the reasons.
        :meth:`submit_verify` is the asynchronous form."""
        return cast(
            Request,
            self._now(
                "/verify",
                gallery_id,
                image,
                subject_id=subject_id,
                purpose=purpose,
                case_reference=case_reference,
                threshold=threshold,
            ),
        )

    def search(
        self,
        gallery_id: str,
        image: bytes,
        *,
        purpose: str | None = None,
        case_reference: str | None = None,
        top_k: int = 1,
        threshold: float | None = None,
    ) -> Request:
        """A 1:N search of one of your galleries in one call: the request as recorded (``result``:
        the candidates above the threshold, possibly none). :meth:`submit_search` is asynchronous."""
        return cast(
            Request,
            self._now(
                "/search",
                gallery_id,
                image,
                purpose=purpose,
                case_reference=case_reference,
                top_k=top_k,
                threshold=threshold,
            ),
        )

    def _now(self, path: str, gallery_id: str, image: bytes, **fields: Any) -> dict[str, Any]:
        body = {"gallery_id": gallery_id, "image_b64": base64.b64encode(image).decode()}
        body.update({k: v for k, v in fields.items() if v is not None})
        return self._call("POST", path, body)

    def submit_verify(
        self,
        gallery_id: str,
        subject_id: str,
        image: bytes,
        *,
        purpose: str | None = None,
        case_reference: str | None = None,
        threshold: float | None = None,
    ) -> Submitted:
        """Submit a 1:1 check; returns ``request_id`` (read the result with :meth:`wait_for_request`)."""
        return cast(
            Submitted,
            self._probe(
                gallery_id,
                "verify",
                image,
                subject_id=subject_id,
                purpose=purpose,
                case_reference=case_reference,
                threshold=threshold,
            ),
        )

    def submit_search(
        self,
        gallery_id: str,
        image: bytes,
        *,
        purpose: str | None = None,
        case_reference: str | None = None,
        top_k: int = 1,
        threshold: float | None = None,
    ) -> Submitted:
        """Submit a 1:N search of one of your galleries; returns ``request_id``."""
        return cast(
            Submitted,
            self._probe(
                gallery_id,
                "search",
                image,
                purpose=purpose,
                case_reference=case_reference,
                top_k=top_k,
                threshold=threshold,
            ),
        )

    def get_request(self, request_id: str) -> Request:
        """The request as the service has it: ``status`` is ``queued`` or ``running`` (no outcome yet),
        or ``completed``, ``refused`` or ``failed`` with its ``decision`` and ``result``. A request you
        did not submit (or over a day old without an outcome) raises :class:`UnknownRequestError`."""
        return cast(Request, self._call("GET", f"/requests/{quote(request_id, safe='')}"))

    def wait_for_request(
        self, request_id: str, *, timeout: float = 60.0, poll: float = 0.2, max_poll: float = 5.0
    ) -> Request:
        """Poll until the request has an outcome: the first wait ``poll`` seconds, each next one 1.5x
        longer up to ``max_poll``. :class:`WaiterError` after ``timeout``; :class:`UnknownRequestError`
        at once for a request the service does not know."""

        def outcome() -> dict[str, Any] | None:
            found = self.get_request(request_id)
            return dict(found) if found.get("status") in FINAL_STATES else None

        return cast(Request, _wait(outcome, f"request {request_id}", timeout, poll, max_poll, self._sleep))

    def review(self, request_id: str, *, confirm: bool) -> Review:
        return cast(Review, self._call("POST", f"/requests/{quote(request_id, safe='')}/review", {"confirm": confirm}))

    # --- erasure and transparency ----------------------------------------------------------------------

    def erase_subject(self, subject_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/subjects/{quote(subject_id, safe='')}")

    def export_audit(self, *, anchor: Mapping[str, Any] | str | None = None) -> dict[str, Any]:
        """Your audit log: ``entries``; ``verified`` (``False`` with ``error``: ``kind``, ``seq``,
        ``message`` when the chain is broken, the entries still there); ``entries_checked``, ``head_seq``,
        ``head_hash`` and ``anchor`` (the head signed by the service's KMS key; only when verified);
        ``public_key`` (base64 DER: pin it once, or better take it from the stack's signing key).

        ``anchor``: one you kept from an earlier export (its dict or token). The service then also checks
        that the log still holds that head unchanged; if not, ``verified`` is ``False`` (``truncated`` or
        ``altered``). An anchor the service did not sign, or of another tenant, is a 400.
        """
        if anchor is None:
            return self._call("GET", "/audit")
        token = anchor if isinstance(anchor, str) else _anchor_token(anchor)
        return self._call("GET", f"/audit?anchor={quote(token, safe='')}")

    def audit_page(
        self,
        *,
        from_seq: int = 1,
        to_seq: int | None = None,
        limit: int = 200,
        next_token: str | None = None,
    ) -> dict[str, Any]:
        """Entries ``from_seq``..``to_seq`` of your audit log, at most ``limit`` (up to 1,000), with
        ``links_verified`` (each hash and link of the page, the first to the entry before it) and, when
        more follow, ``next_seq``. The whole chain and anchors: :meth:`export_audit`.
        ``get_paginator("audit_page")`` walks a range."""
        query = f"?from_seq={int(next_token or from_seq)}&limit={int(limit)}"
        if to_seq is not None:
            query += f"&to_seq={int(to_seq)}"
        return self._call("GET", "/audit" + query)

    def start_audit_export(self) -> dict[str, Any]:
        """Export your whole audit log, verified and signed, to your S3 prefix (for a log too large for
        :meth:`export_audit`'s one answer): the export's manifest, ``status`` ``queued``, its
        ``export_id``. Recorded (``audit.export_requested``, then ``audit.exported``)."""
        return self._call("POST", "/audit/exports")

    def audit_export(self, export_id: str) -> dict[str, Any]:
        """An export's manifest: ``queued``; ``completed`` (``entries``, ``last_seq``, ``verified``,
        ``sha256``, ``bytes`` and a ``download_url`` valid ``download_expires_in`` seconds); ``failed``
        (``error.code``)."""
        return self._call("GET", f"/audit/exports/{quote(export_id, safe='')}")

    def wait_for_audit_export(
        self, export_id: str, *, timeout: float = 900.0, poll: float = 0.5, max_poll: float = 10.0
    ) -> dict[str, Any]:
        """Poll until the export is ``completed`` or ``failed`` (backoff as :meth:`wait_for_request`)."""

        def outcome() -> dict[str, Any] | None:
            found = self.audit_export(export_id)
            return found if found.get("status") in ("completed", "failed") else None

        return _wait(outcome, f"audit export {export_id}", timeout, poll, max_poll, self._sleep)

    def download_audit_export(self, export_id: str) -> dict[str, Any]:
        """A completed export's document (the same shape :meth:`export_audit` answers), its SHA-256
        checked against the manifest's (the ``audit.exported`` entry in your log records the same digest;
        :func:`verify_export` then checks the chain itself)."""
        import hashlib

        manifest = self.audit_export(export_id)
        if manifest.get("status") != "completed":
            raise ConflictError(409, "audit_export.not_completed", f"export {export_id} is {manifest.get('status')}")
        url = str(manifest["download_url"])
        if not url.startswith(("https://", "http://")):
            raise ServiceError(502, "http.bad_body", "the export's download URL is not an http(s) URL")
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:  # the scheme is checked above
                raw: bytes = response.read()
        except urllib.error.HTTPError as exc:
            raise ServiceError(
                exc.code, "audit_export.download_failed", f"downloading the export failed: {exc.code}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise FacegateConnectionError(f"downloading the export failed: {exc}") from None
        if hashlib.sha256(raw).hexdigest() != manifest.get("sha256"):
            raise ServiceError(
                502, "audit_export.digest_mismatch", "the export's bytes do not match its recorded SHA-256"
            )
        document: dict[str, Any] = json.loads(raw)
        return document

    @overload
    def accountability_report(self, format: Literal["json"] = "json") -> dict[str, Any]: ...

    @overload
    def accountability_report(self, format: Literal["html"]) -> str: ...

    def accountability_report(self, format: Literal["json", "html"] = "json") -> dict[str, Any] | str:
        """Your accountability report (in the spirit of Washington's RCW 43.386.020), generated by the
        service from your approvals, its use-case catalog, its model card and its calibration: as a dict
        (``"json"``) or as one self-contained HTML page (``"html"``, a str). A suspended tenant still gets
        it, with nothing in force."""
        if format == "json":
            return self._call("GET", "/accountability-report")
        return self._page("/accountability-report?format=html")

    def _page(self, path: str) -> str:
        return self._send("GET", path, None, {}).decode("utf-8")

    # --- independent testing (a tester authorised by an operator) -------------------------------------

    def submit_independent_test(
        self,
        archive: bytes,
        *,
        name: str = "independent-test",
        identities: bool = True,
        group_source: str = "annotated",
    ) -> dict[str, Any]:
        """Submit a labelled set to the sandbox: ``archive`` is a zip of ``labels.csv`` (``path``,
        ``identity``[, ``group``]) and the images (``facegate sandbox pack`` builds one from any set
        ``facegate evaluate`` reads). ``identities=False`` for a set without identity labels. Returns
        ``test_id``, ``status`` and the ``set`` as the service read it; a bad archive is a 400 that
        stores nothing. The set is evaluated apart from every gallery; only counts come back."""
        body = {
            "set_zip_b64": base64.b64encode(archive).decode("ascii"),
            "name": name,
            "identities": identities,
            "group_source": group_source,
        }
        return self._call("POST", "/independent-tests", body)

    @overload
    def independent_test(self, test_id: str, format: Literal["json"] = "json") -> dict[str, Any] | None: ...

    @overload
    def independent_test(self, test_id: str, format: Literal["html"]) -> str | None: ...

    def independent_test(self, test_id: str, format: Literal["json", "html"] = "json") -> dict[str, Any] | str | None:
        """The test's outcome, or ``None`` while it runs: ``"json"``, a dict with ``status``
        (``completed``, ``refused`` or ``failed``, with ``reasons``), the ``set`` and the ``report``
        (the same JSON ``facegate evaluate`` writes); ``"html"``, the report's page with its plots."""
        path = f"/independent-tests/{quote(test_id, safe='')}"
        try:
            return self._call("GET", path) if format == "json" else self._page(path + "?format=html")
        except FacegateApiError as exc:
            if exc.status == 404:
                return None
            raise

    def wait_for_independent_test(self, test_id: str, *, timeout: float = 3600.0, poll: float = 2.0) -> dict[str, Any]:
        return _wait(
            lambda: self.independent_test(test_id), f"independent test {test_id}", timeout, poll, 30.0, self._sleep
        )


class Paginator:
    """Walks a listing page by page, following ``next_token`` until there is none."""

    def __init__(self, fetch: Callable[..., Any], key: str) -> None:
        self._fetch = fetch
        self.key = key

    def paginate(
        self,
        *,
        PageSize: int = 50,  # noqa: N803 - boto3's names
        StartingToken: str | None = None,  # noqa: N803
        **kwargs: Any,
    ) -> Iterator[dict[str, Any]]:
        token = StartingToken
        while True:
            page = self._fetch(limit=PageSize, next_token=token, **kwargs)
            yield page
            token = page.get("next_token")
            if not token:
                return

    def items(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every item of every page, in order."""
        for page in self.paginate(**kwargs):
            yield from page.get(self.key, [])


def _wait(
    fetch: Callable[[], dict[str, Any] | None],
    what: str,
    timeout: float,
    poll: float,
    max_poll: float,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll ``fetch`` until it returns an outcome (``None``: not yet), waiting longer each time."""
    deadline = time.monotonic() + timeout
    delay = poll
    while True:
        found = fetch()
        if found is not None:
            return found
        left = deadline - time.monotonic()
        if left <= 0:
            raise WaiterError(f"{what} has no outcome after {timeout} s")
        sleep(min(delay, left))
        delay = min(max_poll, delay * 1.5)


def _retry_after(value: str | None) -> float | None:
    try:
        return min(MAX_BACKOFF_S, max(0.0, float(value))) if value else None
    except ValueError:
        return None


def _api_error(exc: urllib.error.HTTPError) -> FacegateApiError:
    """The service's problem document (RFC 7807: ``code``, ``detail``, ``reason_codes``, a refusal's
    ``decision``) as the error class of its kind."""
    raw = exc.read()
    try:
        detail = json.loads(raw or b"{}")
    except json.JSONDecodeError:
        detail = {"message": raw.decode(errors="replace")[:500]}
    if not isinstance(detail, dict):
        detail = {"message": str(detail)[:500]}
    code = str(detail.get("code") or f"http.{exc.code}")
    message = str(detail.get("detail") or detail.get("message") or "")
    decision = detail.get("decision") if isinstance(detail.get("decision"), dict) else None
    kind = KINDS.get(exc.code, ServiceError if exc.code >= 500 else FacegateApiError)
    if exc.code == 403 and decision is not None:
        kind = RefusedError
    elif exc.code == 404 and code == "request.unknown":
        kind = UnknownRequestError
    return kind(exc.code, code, message, decision, detail)


def _anchor_token(anchor: Mapping[str, Any]) -> str:
    """The token form of an anchor's dict (base64url of its canonical JSON, as the service writes it)."""
    text = json.dumps(dict(anchor), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode()).decode("ascii").rstrip("=")


def verify_export(
    export: Mapping[str, Any] | list[dict[str, Any]],
    anchor: SignedAnchor | Mapping[str, Any] | str,
    public_key: bytes,
) -> ChainReport:
    """Check an export offline against an anchor you kept: no call to the service, no AWS.

    The anchor's signature is checked with ``public_key`` (DER, the one you pinned), then every entry of
    the export is re-hashed and re-linked, and the entry at the anchor's seq must carry the anchor's
    hash: a log rewritten (hashes and head recomputed) or cut back since the anchor was signed fails.
    Checking an export against the anchor it came with proves only that the two agree; keep anchors.

    Parameters
    ----------
    export
        What :meth:`FacegateClient.export_audit` returned, or just its ``entries``.
    anchor
        A kept anchor: its dict, its token, or a :class:`~facegate.audit.anchor.SignedAnchor`.
    public_key
        The signing key's public half (DER SubjectPublicKeyInfo).

    Returns
    -------
    ChainReport
        The export's newest entry (seq and hash) and how many entries were checked.

    Raises
    ------
    ValueError
        The anchor is malformed, or its signature does not verify under ``public_key``.
    AuditChainError
        The export is broken, or no longer holds the anchored head (``truncated``, ``altered``).
    """
    # Imported here, not at the top: the client above stays standard library only.
    try:
        from facegate.audit.anchor import SignedAnchor, verify_anchor
        from facegate.audit.chain import AuditEntry, check_chain
    except ImportError as exc:
        raise ImportError(
            "verify_export re-hashes the log with the facegate package's audit code: pip install facegate"
        ) from exc

    held = verify_anchor(SignedAnchor.parse(anchor), public_key)
    items = export if isinstance(export, list) else export["entries"]
    entries = [AuditEntry.from_dict(item) for item in items]
    return check_chain(held.tenant_id, entries, head=None, head_required=False, anchor=held)
