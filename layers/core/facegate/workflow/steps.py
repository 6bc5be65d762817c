"""The workflow states' work, one function per Lambda task; the handlers in ``functions/`` are thin
wrappers that parse the event, call one of these and return its JSON.

Recognize: PolicyCheck → Detect → FaceCheck → Embed → Match (result, review state, audit) →
Finish (probe deleted, audited). Enrol: PolicyCheck → Detect (each photo, a Map state) → FaceCheck
(all the photos' faces) → Embed (each photo) → StoreTemplate (the photos must show one person; their
templates fused into one) → Finish. A refusal or a failure goes to Finish as well, which records it
(one request row, one audit entry) and deletes every image: nothing half-written, nothing silently
dropped. However a request ends, Finish publishes its end on the result bus
(:mod:`facegate.workflow.events`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError

from facegate import errors
from facegate.embedding import Embedding, fuse
from facegate.errors import (
    EnrolmentPhotosError,
    FacegateError,
    ImageTooLargeError,
    InvalidRequestError,
    PhotosDisagreeError,
    PolicyDeniedError,
)
from facegate.settings import Settings
from facegate.store.scope import tenant_scope
from facegate.workflow.models import (
    CALL_KEY,
    MAX_FACES_LISTED,
    Detection,
    FaceBox,
    FaceRef,
    ObjectRef,
    ProbeTemplate,
    StateError,
    WorkflowRequest,
    face_ref,
    object_created,
    photo_ref,
    tenant_of_key,
)
from facegate.workflow.uploads import UploadProofs

if TYPE_CHECKING:
    from datetime import datetime

    from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer

    from facegate.policy import Decision
    from facegate.service import FaceService
    from facegate.store.transient import TransientTemplates
    from facegate.vision.decode import BgrImage
    from facegate.vision.detector import YuNetDetector
    from facegate.vision.embedder import SFaceEmbedder

CONTENT_HASH: Final = re.compile(r"^[0-9a-f]{64}$")
IDEMPOTENCY_TTL_S: Final = 24 * 3600
"""A duplicated S3 event arrives within seconds to hours; a day's window covers it, and the request id
(derived from the object version) still refuses a second result after the record expires."""


@dataclass
class Runtime:
    """What a handler builds once per container (cold start): settings, clients, the service.

    Detect and Embed never build the service (policy, audit, the repositories and their imports: a
    third of a cold start, ``make bench-coldstart``): Detect needs S3 and the model, Embed the probe's
    short-lived template store (:attr:`transient`). Every other function builds it at cold start."""

    settings: Settings
    s3: Any
    idempotency: BasePersistenceLayer | None = None
    uploads: UploadProofs | None = None
    """Verifies the API's proof of who uploaded a probe (``FACEGATE_UPLOAD_PROOF_KEY_ID``)."""
    built_service: FaceService | None = None
    tables_configured: bool = False

    def _tables(self) -> None:
        """The table models pointed at this deployment's tables, on first use: Detect never imports them."""
        if not self.tables_configured:
            from facegate.store.models import configure

            configure(self.settings)
            self.tables_configured = True

    @property
    def service(self) -> FaceService:
        if self.built_service is None:
            self._tables()
            from facegate.service import FaceService

            self.built_service = FaceService()
        return self.built_service

    @property
    def transient(self) -> TransientTemplates:
        """The probe templates' store, without the rest of the service where it is not built."""
        if self.built_service is not None:
            return self.built_service.transient
        self._tables()
        from facegate.store.transient import TransientTemplates

        return TransientTemplates()

    def now(self) -> datetime:
        if self.built_service is not None:
            return self.built_service.clock()
        from datetime import UTC, datetime

        return datetime.now(UTC)

    @classmethod
    def from_env(cls, *, service: bool = True) -> Runtime:
        """``service=False``: the service is built only if a request needs it (Detect and Embed)."""
        settings = Settings.from_env()
        s3 = _client("s3", settings.region)
        persistence = None
        table = os.environ.get("FACEGATE_IDEMPOTENCY_TABLE")
        if table:
            from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

            persistence = DynamoDBPersistenceLayer(table_name=table)
        proof_key = os.environ.get("FACEGATE_UPLOAD_PROOF_KEY_ID")
        uploads = UploadProofs(_client("kms", settings.region), proof_key) if proof_key else None
        runtime = cls(settings=settings, s3=s3, idempotency=persistence, uploads=uploads)
        if service:
            runtime.service  # noqa: B018 - built at cold start, not on the first request
        return runtime

    # --- images in S3 ------------------------------------------------------------------------------

    def read_image(self, ref: ObjectRef) -> BgrImage:
        """Fetch and safely decode one object version; the size is checked before the download."""
        return self.read_image_and_hash(ref)[0]

    def read_image_and_hash(self, ref: ObjectRef) -> tuple[BgrImage, str]:
        """The decoded image and the sha256 of its bytes (the content hash the enumeration check uses)."""
        from facegate.vision.decode import MAX_BYTES, decode_image

        args = ref.s3_args()
        try:
            head = self.s3.head_object(**args)
            if head["ContentLength"] > MAX_BYTES:
                raise ImageTooLargeError(f"the image is {head['ContentLength']} bytes; the limit is {MAX_BYTES}")
            data = self.s3.get_object(**args)["Body"].read()
        except ClientError as exc:
            raise InvalidRequestError(f"the image s3://{ref.bucket}/{ref.key} cannot be read: {_code(exc)}") from exc
        return decode_image(data), hashlib.sha256(data).hexdigest()

    def delete_image(self, ref: ObjectRef) -> bool:
        """Delete the object version (permanently, in a versioned bucket). ``False`` if it was gone."""
        try:
            self.s3.delete_object(**ref.s3_args())
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "NoSuchVersion", "404"):
                return False
            raise
        return True


def _client(service: str, region: str) -> Any:
    """A botocore client with the default credential chain and endpoint settings (``AWS_ENDPOINT_URL``
    included), as ``boto3.client`` makes one, without boto3's own import (s3transfer and the resource
    layer, which no step uses: 60-80 ms of Detect's cold start)."""
    import botocore.session

    return botocore.session.get_session().create_client(service, region_name=region)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "unknown"))


@cache
def detector() -> YuNetDetector:
    from facegate.models import DETECTOR, ModelStore
    from facegate.vision.detector import YuNetDetector
    from facegate.vision.runtime import create_session

    return YuNetDetector(create_session(ModelStore().path(DETECTOR)))


@cache
def embedder() -> SFaceEmbedder:
    from facegate.models import EMBEDDER, ModelStore
    from facegate.vision.embedder import SFaceEmbedder
    from facegate.vision.runtime import create_session

    return SFaceEmbedder(create_session(ModelStore().path(EMBEDDER)))


# --- PolicyCheck -------------------------------------------------------------------------------------


def policy_check(event: dict[str, Any], rt: Runtime, context: Any = None) -> dict[str, Any]:
    """The first state of every workflow (``stage: request``) and the re-check on what Detect found
    (``stage: faces``, which returns the decision alone). A deny is an answer, not an error: it comes
    back as the decision, and the workflow's Choice state routes it to Finish."""
    stage = event.get("stage")
    if stage == "request":
        return _request_stage(event.get("input"), rt, context, event.get("workflow"))
    if stage == "faces":
        req = WorkflowRequest.parse(event.get("request"))
        if "detections" in event:  # an enrolment's photos, each detected by the Map before this state
            count = _enrolment_face_count(req, event.get("detections"))
            return _decide(rt, req, face_count=count, count_attempt=False).to_dict()
        face_count = event.get("face_count")
        if not isinstance(face_count, int) or face_count < 0:
            raise InvalidRequestError("the face re-check needs the detected face_count")
        content = event.get("content_sha256")
        if content is not None and (not isinstance(content, str) or not CONTENT_HASH.fullmatch(content)):
            raise InvalidRequestError("content_sha256 is the image's sha256 in hex, as Detect reports it")
        return _decide(rt, req, face_count=face_count, count_attempt=False, content_hash=content).to_dict()
    raise InvalidRequestError(f"unknown policy stage {stage!r} (request or faces)")


def _enrolment_face_count(req: WorkflowRequest, raw: Any) -> int:
    """The face count an enrolment's photos are decided on, by the service path's rule
    (``FaceService.enrol``): the first photo that does not show exactly one face, else one. The same
    bytes uploaded twice are refused (two references of one photo are not two photos)."""
    if req.operation != "enrol":
        raise InvalidRequestError(f"only an enrolment re-checks several photos, not a {req.operation} request")
    if not isinstance(raw, list) or len(raw) != len(req.photos):
        raise InvalidRequestError(f"the face re-check needs one detection per photo ({len(req.photos)})")
    detections = [Detection.model_validate(d) for d in raw]
    seen: dict[str, int] = {}
    for i, detection in enumerate(detections):
        if detection.content_sha256 is None:
            continue
        if detection.content_sha256 in seen:
            raise EnrolmentPhotosError(
                f"photos {seen[detection.content_sha256] + 1} and {i + 1} are the same image: "
                "enrol different photos of the person"
            )
        seen[detection.content_sha256] = i
    return next((d.face_count for d in detections if d.face_count != 1), 1)


def _decide(rt: Runtime, req: WorkflowRequest, **facts: Any) -> Decision:
    from facegate.policy import Decision, Operation

    bulk = req.operation == "bulk_enrol"
    try:
        with tenant_scope(req.tenant_id):
            if req.test_set is not None:  # an independent test: the sandbox's decision, no gallery
                return rt.service.decide_independent_test(
                    req.ctx,
                    images=req.test_set.images,
                    identities=req.test_set.identities,
                    groups=req.test_set.groups,
                    smallest_group_images=req.test_set.smallest_group_images,
                    smallest_group_identities=req.test_set.smallest_group_identities,
                    request_id=req.request_id,
                )
            return rt.service.decide(
                req.ctx,
                Operation.ENROL if bulk else Operation(req.operation),
                req.gallery,
                subject_id=req.subject_id,
                consent_id=req.consent_id,
                threshold=req.threshold,
                top_k=req.top_k,
                purpose=req.purpose,
                case_reference=req.case_reference,
                consent_per_subject=bulk,
                request_id=req.request_id,
                **facts,
            )
    except PolicyDeniedError as exc:  # already audited as request.denied by the service
        if isinstance(exc.decision, Decision):
            return exc.decision
        raise


WORKFLOW_OPERATIONS: Final = {
    "recognize": ("verify", "search"),
    "enrol": ("enrol",),
    "bulk_enrol": ("bulk_enrol",),
    "independent_test": ("independent_test",),
}
"""What each workflow may be started with besides an S3 event: Recognize runs only on S3's
"Object Created" events for a probe key (its metadata says what to do), Enrol and BulkEnrol only on
the API's requests of their own operation."""


def _request_stage(raw: Any, rt: Runtime, context: Any, workflow: Any = None) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidRequestError("the workflow input is a JSON object")
    if workflow not in WORKFLOW_OPERATIONS:
        raise InvalidRequestError(
            f"the policy check names its workflow ({', '.join(WORKFLOW_OPERATIONS)}), not {workflow!r}"
        )
    probe = object_created(raw)
    if workflow != "recognize" and probe is not None:
        raise InvalidRequestError(f"the {workflow} workflow starts from an API request, not from an S3 event")
    request = None if probe is not None else WorkflowRequest.parse(raw)
    if workflow == "recognize" and request is not None and CALL_KEY.fullmatch(request.image.key) is None:
        # Started by the API (a one-call verify or search) only on its own calls/ probe; an uploaded
        # probe is recognised from its S3 event, with its actor proven or not.
        raise InvalidRequestError("Recognize starts from S3's 'Object Created' event, or from the API on a call")
    if request is not None and request.operation not in WORKFLOW_OPERATIONS[str(workflow)]:
        raise InvalidRequestError(f"the {workflow} workflow does not run {request.operation!r} requests")
    claim = {"request": probe.idempotency_key if probe is not None else request.request_id}  # type: ignore[union-attr]

    def first_decision(claim: dict[str, str]) -> dict[str, Any]:
        req = request
        if probe is not None:
            try:
                head = rt.s3.head_object(**probe.s3_args(), ChecksumMode="ENABLED")
            except ClientError as exc:
                raise InvalidRequestError(f"the probe {probe.key} cannot be read: {_code(exc)}") from exc
            metadata = head.get("Metadata", {})
            req = WorkflowRequest.from_probe(probe, metadata, proven=_proven(rt, probe, head))
        assert req is not None
        decision = _decide(rt, req)
        return {"duplicate": False, "request": req.model_dump(mode="json"), "decision": decision.to_dict()}

    in_progress = {"duplicate": True, "request": None, "decision": None}
    return _once(rt, first_decision, claim, context, while_in_progress=in_progress)


def _proven(rt: Runtime, probe: ObjectRef, head: dict[str, Any]) -> bool:
    """Whether the probe's declared actor is the API's authenticated one (its proof verifies)."""
    tenant = tenant_of_key(probe.key)
    meta = {k.lower(): v for k, v in head.get("Metadata", {}).items()}
    if rt.uploads is None or tenant is None or "actor" not in meta:
        return False
    return rt.uploads.verify(
        meta.get("actor-proof"),
        tenant_id=tenant,
        bucket=probe.bucket,
        key=probe.key,
        checksum=head.get("ChecksumSHA256"),
        actor=meta["actor"],
    )


def _mark_duplicate(response: Any, _record: Any) -> Any:
    return {**response, "duplicate": True} if isinstance(response, dict) else response


def _once(
    rt: Runtime,
    fn: Callable[[dict[str, str]], dict[str, Any]],
    claim: dict[str, str],
    context: Any = None,
    *,
    while_in_progress: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``fn`` once per claim (Powertools idempotency on DynamoDB): a duplicate gets the first answer
    back, marked ``duplicate``, and writes nothing. While the first is still running, a duplicate gets
    ``while_in_progress`` (or the in-progress error, which the workflow records as a failure)."""
    if rt.idempotency is None:
        return fn(claim)
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
    from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError

    config = IdempotencyConfig(expires_after_seconds=IDEMPOTENCY_TTL_S, response_hook=_mark_duplicate)  # type: ignore[arg-type]
    if context is not None:
        config.register_lambda_context(context)  # an in-progress claim expires with the invocation
    once = idempotent_function(data_keyword_argument="claim", persistence_store=rt.idempotency, config=config)(fn)
    try:
        result: dict[str, Any] = once(claim=claim)
    except IdempotencyAlreadyInProgressError:
        if while_in_progress is None:
            raise
        return while_in_progress
    return result


# --- Detect and Embed ----------------------------------------------------------------------------------


def _image_of(req: WorkflowRequest, event: dict[str, Any]) -> ObjectRef:
    """The photo a Detect or Embed runs on: an enrolment's ``photo`` (the Map's item index), else the
    request's one image."""
    return req.photo(event["photo"]) if "photo" in event else req.image


def detect(event: dict[str, Any], rt: Runtime, context: Any = None) -> dict[str, Any]:
    req = WorkflowRequest.parse(event.get("request"))
    ref = _image_of(req, event)
    from facegate.vision.subject import subject_faces

    image, content = rt.read_image_and_hash(ref)
    found = detector().detect(image)
    # The subject-face rule (facegate.vision.subject): the comparable faces, subject first, are what
    # the re-check counts and Embed embeds; bystanders are only counted apart.
    rule = subject_faces(found, image.shape[1], image.shape[0])
    faces = tuple(
        FaceBox(
            box=face.box,
            landmarks=tuple((float(x), float(y)) for x, y in face.landmarks),
            score=face.score,
        )
        for face in (found[i] for i in rule.comparable[:MAX_FACES_LISTED])
    )
    detection = Detection(
        width=image.shape[1],
        height=image.shape[0],
        face_count=rule.count,
        bystander_count=len(rule.bystanders),
        faces=faces,
        content_sha256=content,
    )
    return detection.model_dump(mode="json")


def embed(event: dict[str, Any], rt: Runtime, context: Any = None) -> dict[str, Any]:
    """The subject's template (Detect lists the subject first; the re-check let its face count through).
    An enrolment's photo ``i`` leaves it under :func:`~facegate.workflow.models.photo_ref`, any other
    request under its request id."""
    import numpy as np

    from facegate.vision.align import align_face

    req = WorkflowRequest.parse(event.get("request"))
    detection = Detection.model_validate(event.get("detection"))
    if not detection.faces:
        raise InvalidRequestError("Embed needs a detected face")
    ref = _image_of(req, event)
    transient = photo_ref(req.request_id, event["photo"]) if "photo" in event else req.request_id
    from facegate.vision.quality import assess, require

    image = rt.read_image(ref)
    landmarks = np.asarray(detection.faces[0].landmarks, dtype=np.float32)
    require(assess(image, landmarks))  # measured again here, never taken from the state
    searched = detection.faces[: _faces_searched(rt, req, event.get("decision"), detection)]
    crops = [align_face(image, np.asarray(face.landmarks, dtype=np.float32)) for face in searched]
    embeddings = embedder().embed(crops)  # one batch: the subject first, then the other faces searched
    refs = [transient] + [face_ref(req.request_id, i) for i in range(1, len(embeddings))]
    with tenant_scope(req.tenant_id):  # the templates stay under the tenant's key, out of the state
        for key, embedding in zip(refs, embeddings, strict=True):
            rt.transient.put(req.ctx, key, embedding, rt.now())
    faces = (
        tuple(FaceRef(ref=key, box=face.box) for key, face in zip(refs, searched, strict=True)) if len(refs) > 1 else ()
    )
    return ProbeTemplate(ref=transient, model_version=embeddings[0].model_version, faces=faces).model_dump(mode="json")


def _faces_searched(rt: Runtime, req: WorkflowRequest, raw: Any, detection: Detection) -> int:
    """How many faces Embed embeds: every comparable one for a search whose use case allows several in
    a photo (photo organisation), decided on those faces; else the subject alone."""
    if req.operation != "search" or not isinstance(raw, dict) or detection.face_count <= 1:
        return 1
    from facegate.policy import Decision
    from facegate.policy.gate import FACES_STAGE

    decision = Decision.from_dict(raw)
    spec = rt.service.gate.catalog.use_cases.get(decision.use_case)
    if not decision.allowed or decision.stage != FACES_STAGE or spec is None:
        return 1
    return max(1, min(detection.face_count, spec.max_faces_in_probe, len(detection.faces)))


# --- Match and StoreTemplate ------------------------------------------------------------------------


def _allowed_decision(event: dict[str, Any]) -> tuple[WorkflowRequest, Decision]:
    from facegate.policy import Decision
    from facegate.policy.gate import FACES_STAGE

    req = WorkflowRequest.parse(event.get("request"))
    decision = Decision.from_dict(event.get("decision") or {})
    if not decision.allowed or decision.operation != req.operation or decision.stage != FACES_STAGE:
        raise PolicyDeniedError(
            f"this state needs an allowed {req.operation} decision re-checked on the detected faces", decision
        )
    return req, decision


def _allowed(event: dict[str, Any]) -> tuple[WorkflowRequest, Decision, ProbeTemplate]:
    req, decision = _allowed_decision(event)
    return req, decision, ProbeTemplate.model_validate(event.get("probe"))


def _photo_probes(req: WorkflowRequest, raw: Any) -> list[ProbeTemplate]:
    """The references Embed left for an enrolment's photos: one per photo, in the photos' order."""
    if not isinstance(raw, list):
        raise InvalidRequestError("the template references (probes) are a list, one per photo")
    probes = [ProbeTemplate.model_validate(p) for p in raw]
    expected = [photo_ref(req.request_id, i) for i in range(len(req.photos))]
    if [p.ref for p in probes] != expected:
        raise InvalidRequestError("the template references are not this request's photos' (one per photo, in order)")
    return probes


def _probe_embedding(rt: Runtime, req: WorkflowRequest, probe: ProbeTemplate) -> Embedding:
    """The probe's template from its short-lived item (inside the request's tenant scope)."""
    if probe.ref != req.request_id:
        raise InvalidRequestError("the probe reference is not this request's")
    return _kept_embedding(rt, req, probe)


def _face_probes(
    rt: Runtime, req: WorkflowRequest, probe: ProbeTemplate, subject: Embedding
) -> list[tuple[tuple[float, float, float, float], Embedding]]:
    """A photo search's faces as Embed left them (the subject first, then this request's face refs)."""
    if not probe.faces:
        return []
    if [f.ref for f in probe.faces] != [face_ref(req.request_id, i) for i in range(len(probe.faces))]:
        raise InvalidRequestError("the faces' template references are not this request's")
    others = [
        (f.box, _kept_embedding(rt, req, ProbeTemplate(ref=f.ref, model_version=probe.model_version)))
        for f in probe.faces[1:]
    ]
    return [(probe.faces[0].box, subject), *others]


def _kept_embedding(rt: Runtime, req: WorkflowRequest, probe: ProbeTemplate) -> Embedding:
    embedding = rt.service.transient.get(req.ctx, probe.ref, rt.service.clock())
    if embedding.model_version != probe.model_version:
        raise InvalidRequestError("the probe's template is of another model version than Embed reported")
    return embedding


def match(event: dict[str, Any], rt: Runtime, context: Any = None) -> dict[str, Any]:
    """Compare, then store the result with its review state and audit it (once per request)."""
    req, decision, probe = _allowed(event)
    with tenant_scope(req.tenant_id):
        subject = _probe_embedding(rt, req, probe)
        result = rt.service.match(
            req.ctx,
            req.gallery,
            decision,
            subject,
            subject_id=req.subject_id,
            top_k=req.top_k,
            purpose=req.purpose,
            case_reference=req.case_reference,
            faces=_face_probes(rt, req, probe, subject),
        )
        row = rt.service.record_result(
            req.ctx,
            req.gallery,
            decision,
            result,
            request_id=req.request_id,
            purpose=req.purpose,
            case_reference=req.case_reference,
            transient_ref=probe.ref,
            transient_refs=[f.ref for f in probe.faces[1:]],
        )
    return {
        "request_id": row.request_id,
        "status": row.status,
        "review_state": row.review_state,
        "matched": bool(row.result and (row.result.get("matched") or row.result.get("candidates"))),
        "result": row.result,
    }


def store_template(event: dict[str, Any], rt: Runtime, context: Any = None) -> dict[str, Any]:
    """Store the template, the enrolment's request row and its audit entry in one transaction. The
    template id derives from the request, so a retried invocation (or a concurrent duplicate) finds
    the first one's template and gets the same answer: never a second template.

    ``probes`` (one reference per photo, from Embed's Map): the photos must show one person, by the
    service path's rule (:func:`~facegate.service.enrolment.check_same_person`, else
    ``PhotosDisagreeError``, recorded as a refusal), and their templates are fused into one, stored
    with its reference count; each photo's short-lived item goes in the same transaction. ``probe``
    (one reference under the request id) is the shape before several photos."""
    from facegate.service.enrolment import check_same_person

    req, decision = _allowed_decision(event)
    subject_id, consent_id = req.subject_id, req.consent_id
    if subject_id is None or consent_id is None:  # the request model requires both for enrol
        raise InvalidRequestError("an enrolment names its subject and consent")
    several = "probes" in event
    probes = _photo_probes(req, event["probes"]) if several else [ProbeTemplate.model_validate(event.get("probe"))]
    with tenant_scope(req.tenant_id):
        if several:
            embeddings = [_kept_embedding(rt, req, p) for p in probes]
            check_same_person(embeddings)
        else:
            embeddings = [_probe_embedding(rt, req, probes[0])]
        stored = rt.service.store_template(
            req.ctx,
            req.gallery,
            subject_id=subject_id,
            consent_id=consent_id,
            embedding=fuse(embeddings),
            decision=decision,
            request_id=req.request_id,
            references=len(embeddings),
            transient_refs=[p.ref for p in probes],
        )
    return {
        "template_id": stored.template_id,
        "subject_id": stored.subject_id,
        "expires_at": stored.expires_at.isoformat(),
        "model_version": stored.model_version,
        "references": stored.references,
    }


# --- Finish: the result's obligations, refusals and failures -----------------------------------------


def finish(event: dict[str, Any], rt: Runtime, context: Any = None) -> dict[str, Any]:
    """``complete``: delete the image (the result is stored). ``refused``: record the gate's refusal.
    ``failed``: record what went wrong, with a reason code. Each deletes every image of the request
    (an enrolment's photos, all of them) and is audited."""
    action = event.get("action")
    if action == "failed":
        return _record_failure(event, rt)
    req = WorkflowRequest.parse(event.get("request"))
    with tenant_scope(req.tenant_id):
        return _finish(action, req, event, rt)


def _finish(action: Any, req: WorkflowRequest, event: dict[str, Any], rt: Runtime) -> dict[str, Any]:
    if action == "complete":
        deleted = [rt.delete_image(photo) for photo in req.photos]
        what = "upload.deleted" if req.operation == "enrol" else "probe.deleted"
        details: dict[str, Any] = {"request_id": req.request_id, "key": req.image.key, "deleted": deleted[0]}
        if len(req.photos) > 1:  # one entry for the request's photos, as for its one template
            keys = [p.key for p in req.photos]
            details = {"request_id": req.request_id, "keys": keys, "photos_deleted": sum(deleted)}
        rt.service.audit.append(req.ctx, what, details, once=f"{req.request_id}:{what}")
        _published(rt, req, "completed", review_state=_review_state(rt, req))
        return {"status": "completed", "image_deleted": all(deleted)}
    if action == "refused":
        decision = event.get("decision") or {}
        rt.service.record_outcome(
            req.ctx,
            request_id=req.request_id,
            operation=req.operation,
            gallery_id=req.gallery_id,
            status="refused",
            result={"reasons": [{"code": r["code"], "message": r["message"]} for r in decision.get("reasons", [])]},
            decision=decision,
        )
        gone = all([rt.delete_image(photo) for photo in req.photos])
        _published(rt, req, "refused", reason_codes=[str(r.get("code")) for r in decision.get("reasons", [])])
        return {"status": "refused", "reasons": decision.get("reasons", []), "image_deleted": gone}
    if action == "bulk_complete":
        return _bulk_complete(req, rt)
    if action == "independent_test_complete":
        return _independent_test_complete(req, rt)
    raise InvalidRequestError(
        f"unknown finish action {action!r} (complete, refused, failed, bulk_complete or independent_test_complete)"
    )


def _review_state(rt: Runtime, req: WorkflowRequest) -> str | None:
    """The recorded review state, for the event (a failed read says none: the event is not the record)."""
    try:
        row = rt.service.requests.get(req.ctx, req.request_id)
    except Exception:
        return None
    return row.review_state if row is not None else None


@cache
def _events_client_for(region: str) -> Any:
    """EventBridge with short timeouts and two attempts: a slow bus must not hold Finish past its timeout
    (the request is recorded before it publishes; a lost event is logged and alarmed)."""
    import botocore.session
    from botocore.config import Config

    config = Config(connect_timeout=2, read_timeout=3, retries={"max_attempts": 2, "mode": "standard"})
    return botocore.session.get_session().create_client("events", region_name=region, config=config)


def _events_client(rt: Runtime) -> Callable[[], Any]:
    return lambda: _events_client_for(rt.settings.region)


def _published(
    rt: Runtime,
    req: WorkflowRequest,
    status: str,
    *,
    review_state: str | None = None,
    reason_codes: list[str] | None = None,
) -> None:
    """The request's end on the result bus (ids and codes only)."""
    from facegate.workflow import events

    events.publish(
        _events_client(rt),
        tenant_id=req.tenant_id,
        request_id=req.request_id,
        operation=req.operation,
        status=status,
        gallery_id=req.gallery_id,
        review_state=review_state,
        reason_codes=reason_codes or [],
    )


def _independent_test_complete(req: WorkflowRequest, rt: Runtime) -> dict[str, Any]:
    """The sandbox job's report, recorded as the test's outcome (what was measured, never a figure
    that could single out a face) with its audit entry; the set's archive is deleted like any upload."""
    from facegate.sandbox.keys import report_keys

    assert req.test_set is not None  # the request model requires it for an independent test
    json_key, html_key = report_keys(req.tenant_id, req.request_id)
    try:
        report = json.loads(rt.s3.get_object(Bucket=req.image.bucket, Key=json_key)["Body"].read())
        measured = report["dataset"]
    except (ClientError, ValueError, KeyError, TypeError) as exc:
        raise InvalidRequestError(f"the independent-test job left no readable report at {json_key}") from exc
    summary = {
        "report": json_key,
        "report_html": html_key,
        "images": int(measured["images"]),
        "identities": int(measured["identities"]),
        "groups": sorted(measured.get("groups", {})),
        "labels_sha256": req.test_set.labels_sha256,
        "archive_sha256": req.test_set.archive_sha256,
        "model_version": report.get("model_version"),
        "policy_version": report.get("policy_version"),
    }
    rt.service.record_outcome(
        req.ctx,
        request_id=req.request_id,
        operation="independent_test",
        gallery_id=None,
        status="completed",
        result=summary,
        decision={"allowed": True, "reasons": []},
        action="independent_test.completed",
        details=summary,
    )
    gone = rt.delete_image(req.image)
    _published(rt, req, "completed")
    return {"status": "completed", **summary, "image_deleted": gone}


def _bulk_complete(req: WorkflowRequest, rt: Runtime) -> dict[str, Any]:
    """The job's report, counted into the audit log; the manifest is deleted like any upload."""
    from facegate.batch import report_key

    key = report_key(req.tenant_id, req.request_id)
    try:
        report = json.loads(rt.s3.get_object(Bucket=req.image.bucket, Key=key)["Body"].read())
    except ClientError as exc:
        raise InvalidRequestError(f"the bulk job left no report at {key}: {_code(exc)}") from exc
    counts = {k: int(report[k]) for k in ("enrolled", "refused", "failed")}
    rt.service.record_outcome(
        req.ctx,
        request_id=req.request_id,
        operation="bulk_enrol",
        gallery_id=req.gallery_id,
        status="completed",
        result={"report": key, **counts},
        decision={"allowed": True, "reasons": []},
        action="bulk_enrol.completed",
        details={"report": key, **counts},
    )
    gone = rt.delete_image(req.image)
    _published(rt, req, "completed")
    return {"status": "completed", "report": key, **counts, "image_deleted": gone}


def _record_failure(event: dict[str, Any], rt: Runtime) -> dict[str, Any]:
    raw = event.get("input")
    if not isinstance(raw, dict):
        raise InvalidRequestError("a failure record needs the state data (input) that failed")
    error = StateError.model_validate(raw.get("error") or {"Error": "States.Runtime"})
    reason = failure_reason(error)
    req: WorkflowRequest | None = None
    try:
        req = WorkflowRequest.parse(raw.get("request"))
    except InvalidRequestError:
        req = None
    probe = req.image if req else _probe_of(raw)
    photos = req.photos if req else ((probe,) if probe is not None else ())
    tenant = req.tenant_id if req else (tenant_of_key(probe.key) if probe else None)
    if tenant is None:
        # No tenant can be named (an invalid tenant segment, or not one of our inputs): nothing can be
        # recorded under a tenant, but the object is not left behind: deleted and counted.
        deleted = rt.delete_image(probe) if probe is not None and probe.key.startswith("tenants/") else False
        if probe is not None:
            from facegate.observability import discarded_upload

            discarded_upload(key=probe.key[:256], reason=reason["code"], deleted=deleted)
        raise InvalidRequestError(f"a failed workflow without a tenant: {reason['code']}: {reason['message']}")
    from facegate.tenancy import TenantContext

    ctx = req.ctx if req else TenantContext(tenant_id=tenant, actor="workflow")
    request_id = req.request_id if req else probe.request_id() if probe else "unknown"
    with tenant_scope(ctx.tenant_id):
        if req is not None and isinstance(raw.get("probe"), dict) and raw["probe"].get("ref") == req.request_id:
            rt.service.transient.delete(ctx, req.request_id)  # the probe's template goes with the request
        if req is not None and req.operation == "search" and isinstance(raw.get("detection"), dict):
            # A photo search's other faces (Embed may have kept some before failing): each goes too.
            count = raw["detection"].get("face_count")
            for i in range(1, min(count, MAX_FACES_LISTED) if isinstance(count, int) else 1):
                rt.service.transient.delete(ctx, face_ref(req.request_id, i))
        if req is not None and isinstance(raw.get("detections"), list):
            # Embed's Map may have kept some photos' templates before one failed (or StoreTemplate
            # refused them): each goes with the request, whether or not it was written.
            for i in range(len(req.photos)):
                rt.service.transient.delete(ctx, photo_ref(req.request_id, i))
        status = "refused" if _is_refusal(error) else "failed"
        recorded = rt.service.record_outcome(
            ctx,
            request_id=request_id,
            operation=req.operation if req else "recognize",
            gallery_id=req.gallery_id if req else None,
            status=status,
            result={"reasons": [reason]},
        )
    gone = [rt.delete_image(photo) for photo in photos]  # the images first: the event is last
    from facegate.workflow import events

    # What was recorded is what is said: a request already recorded (completed before a later state
    # failed, or a retried failure) is published with its recorded status, never a contradicting one.
    events.publish(
        _events_client(rt),
        tenant_id=ctx.tenant_id,
        request_id=request_id,
        operation=recorded.operation,
        status=recorded.status,
        gallery_id=recorded.gallery_id,
        review_state=recorded.review_state if recorded.status == "completed" else None,
        reason_codes=[] if recorded.status == "completed" else [str(reason["code"])],
    )
    return {"status": status, "reasons": [reason], "image_deleted": bool(gone) and all(gone)}


REFUSALS: Final = (PolicyDeniedError, PhotosDisagreeError)
"""Errors raised inside a task that refuse the request rather than fail it."""


def _is_refusal(error: StateError) -> bool:
    """A gate's refusal raised inside a task (e.g. a sweep caught at matching time), or an
    enrolment's photos that do not show one person: recorded as ``refused`` with its reason code,
    like a refusal at the policy check, not as a failure."""
    cls = _error_class(error)
    return cls is not None and issubclass(cls, REFUSALS)


def _probe_of(raw: dict[str, Any]) -> ObjectRef | None:
    try:
        return object_created(raw)
    except InvalidRequestError:
        return None


def _error_class(error: StateError) -> type[FacegateError] | None:
    """facegate's error class named by the Lambda's ``errorType`` (in the JSON cause) or by the error."""
    try:
        cause = json.loads(error.cause)
    except (json.JSONDecodeError, TypeError):
        cause = None
    name = str(cause.get("errorType", error.error)) if isinstance(cause, dict) else error.error
    cls = getattr(errors, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, FacegateError) else None


def failure_reason(error: StateError) -> dict[str, str]:
    """A machine-readable reason for a caught error: facegate's own error code where the Lambda's
    ``errorType`` names one of its errors, else the Step Functions error name."""
    message = error.cause
    try:
        cause = json.loads(error.cause)
    except (json.JSONDecodeError, TypeError):
        cause = None
    if isinstance(cause, dict):
        message = str(cause.get("errorMessage", message))
    cls = _error_class(error)
    code = cls.code if cls is not None else f"workflow.{error.error}"
    return {"code": code, "message": message[:1000] or error.error}
