"""The tenant SDK: a small client of the tenant API (``ApiUrl`` in the stack's outputs).

    client = FacegateClient(api_url, id_token)          # an ID token from the tenant's Cognito sign-in
    client.create_gallery("staff", name="Staff", use_case="access_control")
    consent = client.record_consent("s-42", purpose="access_control", evidence=signed_pdf, expires_at=...)
    client.enrol("staff", "s-42", consent["consent_id"], photo_bytes)
    client.enrol("staff", "s-43", other["consent_id"], images=[front, left, right])   # up to 5, fused
    answer = client.search("staff", probe_bytes, purpose="entry at gate B")   # one call: decision and result
    submitted = client.submit_search("staff", probe_bytes, purpose="...")     # or asynchronous
    result = client.wait_for_request(submitted["request_id"])

The tenant is never a parameter: it comes from the identity behind the token. Errors are
:class:`FacegateApiError` with the service's reason code (and, for a refusal, the gate's decision).

The audit log, and why to keep its anchors::

    export = client.export_audit()                     # entries, verified, head_seq, head_hash, anchor
    keep(export["anchor"])                             # outside the service: the head, signed by its KMS key
    ...
    later = client.export_audit(anchor=kept)           # the service checks its log still holds that head
    verify_export(later, kept, pinned_public_key)      # and so can you, offline

Whoever can write the audit table can rewrite it consistently, hashes and head included; only an anchor
kept from before shows it. The client is standard library only, so it installs anywhere;
:func:`verify_export` also needs the facegate package's audit code (and ``cryptography``).
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, overload
from urllib.parse import quote

if TYPE_CHECKING:
    from facegate.audit.anchor import SignedAnchor
    from facegate.audit.chain import ChainReport


class FacegateApiError(Exception):
    def __init__(self, status: int, code: str, message: str, decision: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.decision = decision

    @property
    def reason_codes(self) -> list[str]:
        return [r["code"] for r in (self.decision or {}).get("reasons", [])]


class FacegateClient:
    def __init__(self, endpoint: str, id_token: str, *, timeout: float = 30.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.id_token = id_token
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.endpoint + path,
            data=data,
            method=method,
            headers={"Authorization": self.id_token, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload: dict[str, Any] = json.loads(response.read() or b"{}")
                return payload
        except urllib.error.HTTPError as exc:
            raise _api_error(exc) from None

    # --- galleries and consent ------------------------------------------------------------------------

    def create_gallery(self, gallery_id: str, *, name: str, use_case: str) -> dict[str, Any]:
        return self._call("POST", "/galleries", {"gallery_id": gallery_id, "name": name, "use_case": use_case})

    def record_consent(self, subject_id: str, *, purpose: str, evidence: bytes, expires_at: datetime) -> dict[str, Any]:
        """Only the sha256 of ``evidence`` (the signed release) is kept by the service."""
        return self._call(
            "POST",
            "/consents",
            {
                "subject_id": subject_id,
                "purpose": purpose,
                "evidence_b64": base64.b64encode(evidence).decode(),
                "expires_at": expires_at.isoformat(),
            },
        )

    def enrol(
        self,
        gallery_id: str,
        subject_id: str,
        consent_id: str,
        image: bytes | None = None,
        *,
        images: Sequence[bytes] | None = None,
    ) -> dict[str, Any]:
        """Enrol a consenting subject from one photo (``image``) or several (``images``: 1 to 5 photos
        of the same person, fused by the service into one template). Returns ``request_id``; the
        outcome's ``result`` says how many ``references`` the template fuses. Photos of different
        people are refused (``image.photos_disagree``); more than five, or none, is a 400
        (``request.enrolment_photos``)."""
        if (image is None) == (images is None):
            raise TypeError("enrol takes one photo as image or several as images, not both (nor neither)")
        body: dict[str, Any] = {"gallery_id": gallery_id, "subject_id": subject_id, "consent_id": consent_id}
        if images is not None:
            body["images_b64"] = [base64.b64encode(photo).decode() for photo in images]
        else:
            body["image_b64"] = base64.b64encode(image or b"").decode()
        return self._call("POST", "/enrolments", body)

    def bulk_enrol(self, gallery_id: str, lines: list[dict[str, str]]) -> dict[str, Any]:
        """``lines``: ``subject_id``, ``consent_id``, ``key`` (a photo already under ``uploads/``)."""
        manifest = "\n".join(json.dumps(line) for line in lines)
        return self._call("POST", "/bulk-enrolments", {"gallery_id": gallery_id, "manifest_jsonl": manifest})

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
    ) -> dict[str, Any]:
        """A 1:1 check in one call: the request as recorded, with its ``decision`` and ``result``
        (``result["matched"]``). A refusal is an answer: ``status`` ``refused`` with the reasons.
        :meth:`submit_verify` is the asynchronous form."""
        return self._now(
            "/verify",
            gallery_id,
            image,
            subject_id=subject_id,
            purpose=purpose,
            case_reference=case_reference,
            threshold=threshold,
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
    ) -> dict[str, Any]:
        """A 1:N search of one of your galleries in one call: the request as recorded (``result``:
        the candidates above the threshold, possibly none). :meth:`submit_search` is asynchronous."""
        return self._now(
            "/search",
            gallery_id,
            image,
            purpose=purpose,
            case_reference=case_reference,
            top_k=top_k,
            threshold=threshold,
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
    ) -> dict[str, Any]:
        """Submit a 1:1 check; returns ``request_id`` (read the result with :meth:`wait_for_request`)."""
        return self._probe(
            gallery_id,
            "verify",
            image,
            subject_id=subject_id,
            purpose=purpose,
            case_reference=case_reference,
            threshold=threshold,
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
    ) -> dict[str, Any]:
        """Submit a 1:N search of one of your galleries; returns ``request_id``."""
        return self._probe(
            gallery_id,
            "search",
            image,
            purpose=purpose,
            case_reference=case_reference,
            top_k=top_k,
            threshold=threshold,
        )

    def get_request(self, request_id: str) -> dict[str, Any] | None:
        """The request's outcome, or ``None`` while it is still running."""
        try:
            return self._call("GET", f"/requests/{quote(request_id, safe='')}")
        except FacegateApiError as exc:
            if exc.status == 404:
                return None
            raise

    def wait_for_request(self, request_id: str, *, timeout: float = 60.0, poll: float = 0.2) -> dict[str, Any]:
        return _wait(lambda: self.get_request(request_id), f"request {request_id}", timeout, poll)

    def review(self, request_id: str, *, confirm: bool) -> dict[str, Any]:
        return self._call("POST", f"/requests/{quote(request_id, safe='')}/review", {"confirm": confirm})

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
        request = urllib.request.Request(self.endpoint + path, method="GET", headers={"Authorization": self.id_token})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                page: str = response.read().decode("utf-8")
                return page
        except urllib.error.HTTPError as exc:
            raise _api_error(exc) from None

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
        return _wait(lambda: self.independent_test(test_id), f"independent test {test_id}", timeout, poll)


def _wait(fetch: Callable[[], dict[str, Any] | None], what: str, timeout: float, poll: float) -> dict[str, Any]:
    """Poll ``fetch`` until it returns an outcome (``None``: still running), or time out."""
    deadline = time.monotonic() + timeout
    while True:
        found = fetch()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} has no outcome after {timeout} s")
        time.sleep(poll)


def _api_error(exc: urllib.error.HTTPError) -> FacegateApiError:
    """The service's error body (code, message, decision) as the SDK's error."""
    raw = exc.read()
    try:
        detail = json.loads(raw or b"{}")
    except json.JSONDecodeError:
        detail = {"message": raw.decode(errors="replace")}
    return FacegateApiError(
        exc.code, detail.get("code", f"http.{exc.code}"), detail.get("message", ""), detail.get("decision")
    )


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
    from facegate.audit.anchor import SignedAnchor, verify_anchor
    from facegate.audit.chain import AuditEntry, check_chain

    held = verify_anchor(SignedAnchor.parse(anchor), public_key)
    items = export if isinstance(export, list) else export["entries"]
    entries = [AuditEntry.from_dict(item) for item in items]
    return check_chain(held.tenant_id, entries, head=None, head_required=False, anchor=held)
