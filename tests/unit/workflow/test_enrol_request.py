"""An Enrol request of several photos, as the workflow's states see it (no AWS, no vision stack).

GIVEN an enrolment naming 1 to 5 uploads WHEN it is parsed THEN ``images`` lists them, ``image`` first,
each under the tenant's prefix, none twice; a request naming only ``image`` (as before) is an enrolment
of that one photo, with the same request id. GIVEN the photos' detections WHEN the face re-check runs
THEN the gate is asked with the same face count as the service path (the first photo not showing one
face), and the same bytes uploaded twice are refused. A state naming a photo or a template reference
that is not its request's is refused before it touches AWS.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from facegate.embedding import MODEL_VERSION
from facegate.errors import EnrolmentPhotosError, InvalidRequestError
from facegate.tenancy import TenantContext
from facegate.workflow import steps
from facegate.workflow.models import ObjectRef, WorkflowRequest, photo_ref

BUCKET = "facegate-probes-123456789012-eu-west-2"
TENANT = "hmp-northfield"
CTX = TenantContext(tenant_id=TENANT, actor="officer-ruiz")


def _ref(name: str, tenant: str = TENANT) -> ObjectRef:
    return ObjectRef(bucket=BUCKET, key=f"tenants/{tenant}/uploads/staff-access/{name}", version_id=f"v-{name}")


def _request(**fields: Any) -> dict[str, Any]:
    return {
        "request_id": "enrol-1",
        "tenant_id": TENANT,
        "actor": "officer-ruiz",
        "operation": "enrol",
        "gallery_id": "staff-access",
        "subject_id": "s-0042",
        "consent_id": "c-0042",
        "image": _ref("a.jpg").model_dump(),
        **fields,
    }


def test_a_request_naming_one_image_enrols_that_photo() -> None:
    req = WorkflowRequest.parse(_request())
    assert req.images == (_ref("a.jpg"),)
    assert req.photos == (_ref("a.jpg"),)


def test_several_images_keep_their_order_with_image_first() -> None:
    refs = [_ref(n) for n in ("a.jpg", "b.jpg", "c.jpg")]
    req = WorkflowRequest.parse(_request(images=[r.model_dump() for r in refs]))
    assert req.photos == tuple(refs)
    assert WorkflowRequest.parse(req.model_dump(mode="json")) == req


def test_images_alone_name_the_first_as_image() -> None:
    raw = _request(images=[_ref("a.jpg").model_dump(), _ref("b.jpg").model_dump()])
    del raw["image"]
    assert WorkflowRequest.parse(raw).image == _ref("a.jpg")


@pytest.mark.parametrize(
    ("images", "message"),
    [
        ([_ref(f"{i}.jpg") for i in range(6)], "at most 5"),
        ([], "at least 1"),
        ([_ref("b.jpg"), _ref("a.jpg")], "first of the images"),
        ([_ref("a.jpg"), _ref("b.jpg"), _ref("a.jpg")], "twice"),
        ([_ref("a.jpg"), _ref("b.jpg", tenant="riverside-lab")], "tenant's own prefix"),
    ],
    ids=["six", "none", "image-not-first", "twice", "another-tenant"],
)
def test_an_enrolment_of_bad_photos_does_not_parse(images: list[ObjectRef], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        WorkflowRequest.parse(_request(images=[r.model_dump() for r in images]))


def test_only_an_enrolment_names_several_images() -> None:
    probe = ObjectRef(bucket=BUCKET, key=f"tenants/{TENANT}/probes/staff-access/p.jpg", version_id="v1")
    raw = {
        "request_id": "search-1",
        "tenant_id": TENANT,
        "actor": "officer-ruiz",
        "operation": "search",
        "gallery_id": "staff-access",
        "image": probe.model_dump(),
        "images": [probe.model_dump()],
    }
    with pytest.raises(InvalidRequestError, match="only an enrolment"):
        WorkflowRequest.parse(raw)
    del raw["images"]
    assert WorkflowRequest.parse(raw).images is None


def test_the_request_id_of_one_upload_is_its_versions_and_of_several_all_of_theirs() -> None:
    refs = [_ref(n) for n in ("a.jpg", "b.jpg", "c.jpg")]
    one = WorkflowRequest.for_upload(CTX, refs[0], "enrol", "staff-access", subject_id="s-1", consent_id="c-1")
    several = WorkflowRequest.for_upload(CTX, refs, "enrol", "staff-access", subject_id="s-1", consent_id="c-1")
    again = WorkflowRequest.for_upload(CTX, list(refs), "enrol", "staff-access", subject_id="s-1", consent_id="c-1")
    assert one.request_id == refs[0].request_id()
    assert several.request_id == again.request_id != one.request_id
    assert several.photos == tuple(refs)


# --- the states ---------------------------------------------------------------------------------------


class _NoRuntime:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the step reached {name} before refusing")


class _Gate:
    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []

    def decide(self, ctx: TenantContext, operation: Any, gallery_id: str, **facts: Any) -> Any:
        self.asked.append(facts)
        from facegate.policy import Decision

        return Decision(True, (), (), "test", "enrol", "access_control", stage="faces")


class _Runtime:
    def __init__(self) -> None:
        self.service = _Gate()


def _detection(faces: int, content: str) -> dict[str, Any]:
    box = {"box": [10.0, 10.0, 50.0, 60.0], "landmarks": [[20.0, 30.0]] * 5, "score": 0.9}
    return {
        "width": 300,
        "height": 300,
        "face_count": faces,
        "bystander_count": 0,
        "faces": [box] * faces,
        "content_sha256": content * 64,
    }


def _three_photos() -> dict[str, Any]:
    refs = [_ref(n).model_dump() for n in ("a.jpg", "b.jpg", "c.jpg")]
    return WorkflowRequest.parse(_request(images=refs)).model_dump(mode="json")


@pytest.mark.parametrize(("counts", "asked"), [((1, 1, 1), 1), ((1, 2, 1), 2), ((1, 1, 0), 0), ((3, 0, 1), 3)])
def test_the_face_recheck_asks_with_the_first_count_that_is_not_one(
    monkeypatch: pytest.MonkeyPatch, counts: tuple[int, ...], asked: int
) -> None:
    monkeypatch.setenv("FACEGATE_TENANT_SESSIONS", "process-credentials")
    rt = _Runtime()
    detections = [_detection(c, "abc"[i]) for i, c in enumerate(counts)]
    event = {"stage": "faces", "request": _three_photos(), "detections": detections}
    steps.policy_check(event, rt)  # type: ignore[arg-type]
    (facts,) = rt.service.asked
    assert facts["face_count"] == asked
    assert facts["count_attempt"] is False


def test_the_same_bytes_uploaded_twice_are_refused_at_the_face_recheck() -> None:
    detections = [_detection(1, "a"), _detection(1, "b"), _detection(1, "a")]
    event = {"stage": "faces", "request": _three_photos(), "detections": detections}
    with pytest.raises(EnrolmentPhotosError, match="photos 1 and 3"):
        steps.policy_check(event, _NoRuntime())  # type: ignore[arg-type]


def test_a_detection_for_each_photo_is_required() -> None:
    event = {"stage": "faces", "request": _three_photos(), "detections": [_detection(1, "a")]}
    with pytest.raises(InvalidRequestError, match="one detection per photo"):
        steps.policy_check(event, _NoRuntime())  # type: ignore[arg-type]


@pytest.mark.parametrize("photo", [3, -1, "0", True])
@pytest.mark.parametrize("step", [steps.detect, steps.embed])
def test_detect_and_embed_refuse_a_photo_the_request_does_not_name(photo: Any, step: Any) -> None:
    event = {"request": _three_photos(), "photo": photo, "detection": _detection(1, "a")}
    with pytest.raises(InvalidRequestError, match="photo"):
        step(event, _NoRuntime())


def test_store_template_refuses_references_that_are_not_its_photos() -> None:
    decision = {
        "allowed": True,
        "reasons": [],
        "obligations": [],
        "policy_version": "test",
        "operation": "enrol",
        "use_case": "access_control",
        "threshold": None,
        "max_results": None,
        "stage": "faces",
    }
    request = _three_photos()
    good = [{"ref": photo_ref(request["request_id"], i), "model_version": MODEL_VERSION} for i in range(3)]
    for probes in (good[:2], [good[0], good[2], good[1]], [*good[:2], {**good[2], "ref": "enrol-2.2"}]):
        event = {"request": copy.deepcopy(request), "decision": decision, "probes": probes}
        with pytest.raises(InvalidRequestError, match="references"):
            steps.store_template(event, _NoRuntime())  # type: ignore[arg-type]
