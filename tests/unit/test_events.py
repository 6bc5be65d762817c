"""The sample events in ``events/`` (for ``sam local invoke <Function> -e events/<file>.json``).

Every file is checked against what the workflow really passes: the typed state models, the decision's
round trip, the probe template's encoding, the ASL's Parameters for the function it is named after and
the policy gate's current answer. No network, no AWS, and no vision stack (cv2/onnxruntime): the
imports below are the ones the Match/Finish functions use at cold start.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from facegate import errors
from facegate.embedding import MODEL_VERSION
from facegate.policy import (
    ApprovalFacts,
    Decision,
    GalleryFacts,
    Operation,
    PolicyGate,
    PolicyRequest,
    TenantFacts,
    default_catalog,
)
from facegate.policy.gate import POLICY_FILES, UNKNOWN
from facegate.workflow.models import (
    MAX_FACES_LISTED,
    PROBE_KEY,
    Detection,
    ObjectRef,
    ProbeTemplate,
    StateError,
    WorkflowRequest,
    object_created,
    photo_ref,
)

ROOT = Path(__file__).resolve().parents[2]
EVENTS_DIR = ROOT / "events"
FUNCTIONS_DIR = ROOT / "functions"
ASL_DIR = ROOT / "infra" / "statemachine"
CEDAR_DIR = ROOT / "layers" / "core" / "facegate" / "policy" / "cedar"
EVENTS = sorted(EVENTS_DIR.glob("*.json"))
FUNCTIONS = sorted(p.parent.name for p in FUNCTIONS_DIR.glob("*/app.py"))
RAW_EVENTBRIDGE = "eventbridge.s3-object-created.json"

TENANT, GALLERY, SUBJECT, CONSENT = "hmp-northfield", "staff-access", "s-0042", "c-0042"
PROBE = "tenants/hmp-northfield/probes/staff-access/gate-2-0001.jpg"
BUCKET = "facegate-probes-123456789012-eu-west-2"

# The face count each file's decision was taken with (the gate is asked again below): the decision a
# task after the re-check carries saw one face; the request stage runs before detection.
DECIDED_WITH_FACES: dict[str, int] = {
    "embed.recognize.json": 1,
    "match.search.json": 1,
    "match.verify.json": 1,
    "store_template.enrol.json": 1,
    "finish.refused.json": 7,
    "finish.failed-not-an-image.json": UNKNOWN,
}


def _load(path: Path) -> Any:
    return json.loads(path.read_text())


def _walk(node: Any, key: str) -> Iterator[Any]:
    """Every value held under ``key`` anywhere in the document."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            yield from _walk(v, key)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item, key)


def _function_of(path: Path) -> str:
    return path.name.split(".", 1)[0]


def _name(path: Path) -> str:
    return path.name


def _with(*keys: str) -> list[Path]:
    """The workflow's files holding a non-null value under one of ``keys`` (Cognito's trigger events have
    a ``request`` of their own kind: tested on their own below)."""
    return [
        p
        for p in EVENTS
        if not p.name.startswith("token_claims.") and any(v is not None for k in keys for v in _walk(_load(p), k))
    ]


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _tasks(machine: dict[str, Any], selector: dict[str, Any] | None = None) -> Iterator[tuple[dict[str, Any], Any]]:
    """Every Task state with what it is given: its Parameters, or inside a Map (when it has none) the
    Map's ItemSelector, which builds each iteration's input."""
    for state in machine["States"].values():
        if state.get("Type") == "Task":
            yield state, state.get("Parameters", selector or {})
        if state.get("Type") == "Map":
            yield from _tasks(state.get("ItemProcessor") or state["Iterator"], state.get("ItemSelector"))


def _task_parameters() -> dict[str, list[dict[str, Any]]]:
    """For each function, the Parameters of every ASL Task state that invokes it (nested ones too)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for asl in sorted(ASL_DIR.glob("*.asl.json")):
        for state, params in _tasks(_load(asl)):
            m = re.fullmatch(r"\$\{(\w+)FunctionArn\}", str(state.get("Resource", "")))
            if m and params not in found.setdefault(m[1], []):
                found[m[1]].append(params)
    return found


# --- every file ------------------------------------------------------------------------------------------


def test_there_are_events() -> None:
    assert EVENTS, f"no events in {EVENTS_DIR}"
    assert (EVENTS_DIR / RAW_EVENTBRIDGE).is_file()


@pytest.mark.parametrize("path", EVENTS, ids=_name)
def test_each_event_is_a_json_object_named_for_its_function(path: Path) -> None:
    data = _load(path)
    assert isinstance(data, dict)
    assert data
    function, _, rest = path.name.partition(".")
    assert re.fullmatch(r"[a-z0-9-]+\.json", rest), "name it <function>.<scenario>.json"
    assert function in {*FUNCTIONS, "eventbridge"}, f"{function} is not a functions/<name>/ with an app.py"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_function_has_a_sample_event(function: str) -> None:
    assert list(EVENTS_DIR.glob(f"{function}.*.json")), f"add events/{function}.<scenario>.json"


API_EVENTS = [p for p in EVENTS if p.name.startswith("api.")]


@pytest.mark.parametrize("path", API_EVENTS, ids=_name)
def test_api_events_are_rest_proxy_events_for_a_declared_route(path: Path) -> None:
    """The API function is invoked by API Gateway: a REST proxy event for one of the template's routes,
    with the Cognito authorizer's claims (the tenant comes from them, never from the body)."""
    from facegate.localcloud.template import load_template

    data = _load(path)
    routes = {
        (e["Properties"]["Method"].upper(), e["Properties"]["Path"])
        for e in load_template(ROOT / "template.yaml")["Resources"]["ApiFunction"]["Properties"]["Events"].values()
    }
    assert (data["httpMethod"], data["resource"]) in routes
    assert {"custom:tenant_id", "sub"} <= set(data["requestContext"]["authorizer"]["claims"])
    if data["body"] is not None:
        assert "tenant_id" not in json.loads(data["body"])


TRIGGER_EVENTS = [p for p in EVENTS if p.name.startswith("token_claims.")]
"""Cognito's pre-token-generation trigger: V3_0 events, no ASL Task."""
EXPORT_EVENTS = [p for p in EVENTS if p.name.startswith("audit_export.")]
"""The audit export, started asynchronously by POST /audit/exports: no ASL Task."""


@pytest.mark.parametrize("path", TRIGGER_EVENTS, ids=_name)
def test_trigger_events_are_cognitos_v3_events_and_get_the_tenant_operators_set(path: Path) -> None:
    from facegate.token_claims import MACHINE_SOURCE, PERSON_SOURCES, add_claims

    data = _load(path)
    assert data["version"] == "3"
    assert data["triggerSource"] in {MACHINE_SOURCE, *PERSON_SOURCES}
    assert data["callerContext"]["clientId"]
    if data["triggerSource"] != MACHINE_SOURCE:  # a machine's tenant is read from the registry (DynamoDB)
        access = add_claims(data)["response"]["claimsAndScopeOverrideDetails"]["accessTokenGeneration"]
        assert access["claimsToAddOrOverride"] == {"custom:tenant_id": TENANT}


@pytest.mark.parametrize("path", EXPORT_EVENTS, ids=_name)
def test_export_events_are_what_the_api_starts_the_export_with(path: Path) -> None:
    from facegate.audit.exports import check_export_id

    data = _load(path)
    assert set(data) == {"tenant_id", "export_id", "actor"}
    assert data["tenant_id"] == TENANT
    check_export_id(data["export_id"])


@pytest.mark.parametrize(
    "path",
    [p for p in EVENTS if p.name != RAW_EVENTBRIDGE and p not in (*API_EVENTS, *TRIGGER_EVENTS, *EXPORT_EVENTS)],
    ids=_name,
)
def test_each_event_has_the_shape_an_asl_task_gives_its_function(path: Path) -> None:
    """Same keys as the Parameters of a Task invoking the function, and the same constants (stage, action)."""
    data = _load(path)
    candidates = _task_parameters().get(_camel(_function_of(path)), [])
    assert candidates, f"no ASL Task invokes {_function_of(path)}"

    def fits(params: dict[str, Any]) -> bool:
        keys = {k.removesuffix(".$") for k in params}
        constants = {k: v for k, v in params.items() if not k.endswith(".$")}
        return set(data) == keys and all(data[k] == v for k, v in constants.items())

    assert any(fits(p) for p in candidates), f"{sorted(data)} matches no Task's Parameters: {candidates}"


# --- requests ------------------------------------------------------------------------------------------


def _requests(data: Any) -> Iterator[WorkflowRequest]:
    for raw in _walk(data, "request"):
        if raw is not None:
            yield WorkflowRequest.parse(raw)
    for raw in _walk(data, "input"):
        if isinstance(raw, dict) and object_created(raw) is None and "request_id" in raw:
            yield WorkflowRequest.parse(raw)  # a workflow input that is a request itself (Enrol, the API)


@pytest.mark.parametrize("path", _with("request", "input"), ids=_name)
def test_requests_parse_and_keep_the_same_tenant_gallery_and_people(path: Path) -> None:
    reqs = list(_requests(_load(path)))
    if path.name.startswith("policy_check.recognize"):
        return  # its input is the S3 event (tested below)
    assert reqs, "no request found"
    raw_event = _load(EVENTS_DIR / RAW_EVENTBRIDGE)
    for req in reqs:
        assert (req.tenant_id, req.gallery_id, req.image.bucket) == (TENANT, GALLERY, BUCKET)
        assert req.subject_id in (None, SUBJECT)
        assert req.consent_id in (None, CONSENT)
        if PROBE_KEY.fullmatch(req.image.key):
            assert req.operation != "enrol"
            assert req.image.version_id, "a probe is one object version (the bucket is versioned)"
            # what PolicyCheck makes of that upload: its request id is the object version's
            assert req.request_id == req.image.request_id()
            if req.image.key == PROBE:
                assert req.image == object_created(raw_event)
        else:
            assert req.operation == "enrol"
            assert req.photos[0] == req.image
            assert all(p.key.startswith(f"tenants/{TENANT}/uploads/{GALLERY}/") for p in req.photos)


# --- decisions -----------------------------------------------------------------------------------------


def _cedar_annotations(name: str) -> set[str]:
    values: set[str] = set()
    for policy in POLICY_FILES:
        for found in re.findall(rf'@{name}\("([^"]*)"\)', (CEDAR_DIR / policy).read_text()):
            values.update(v for v in found.split(",") if v)
    return values


@pytest.fixture(scope="module")
def gate() -> PolicyGate:
    return PolicyGate()


def _decisions(data: Any) -> list[dict[str, Any]]:
    return [d for d in _walk(data, "decision") if d is not None]


@pytest.mark.parametrize("path", _with("decision"), ids=_name)
def test_decisions_round_trip_with_real_codes_obligations_and_version(path: Path) -> None:
    obligations, codes = _cedar_annotations("obligations"), _cedar_annotations("id")
    version = re.compile(rf"^{re.escape(default_catalog().version)}\+[0-9a-f]{{12}}$")
    for raw in _decisions(_load(path)):
        decision = Decision.from_dict(raw)
        assert decision.to_dict() == raw
        assert version.fullmatch(decision.policy_version), decision.policy_version
        assert set(decision.obligations) <= obligations
        assert {r.code for r in decision.reasons} <= codes
        assert decision.allowed == (not decision.reasons)
        assert decision.use_case in default_catalog().use_cases


@pytest.mark.parametrize("path", _with("decision"), ids=_name)
def test_decisions_are_what_the_gate_decides_now(gate: PolicyGate, path: Path) -> None:
    """The same facts (an approved prison, its access-control gallery) give the same decision."""
    assert path.name in DECIDED_WITH_FACES, "say which face count the decision was taken with"
    now = datetime.now(UTC)
    tenant = TenantFacts(
        tenant_id=TENANT,
        sector="corrections",
        country="GB",
        jurisdiction="GB-ENG",
        approvals=(
            ApprovalFacts(use_case="access_control", deployment="closed_facility", expires_at=now + timedelta(days=1)),
        ),
    )
    data = _load(path)
    (req,) = _requests(data)
    for raw in _decisions(data):
        expected = gate.decide(
            PolicyRequest(
                tenant=tenant,
                operation=Operation(req.operation),
                use_case=raw["use_case"],
                now=now,
                gallery=GalleryFacts(gallery_id=req.gallery_id, use_case="access_control", size=120),
                face_count=DECIDED_WITH_FACES[path.name],
                consent_valid=req.operation == "enrol",
                purpose=req.purpose,
                case_reference=req.case_reference,
                threshold=req.threshold,
                top_k=req.top_k,
            )
        ).to_dict()
        assert {**raw, "policy_version": None} == {**expected, "policy_version": None}


@pytest.mark.parametrize("name", ["match.search.json", "match.verify.json", "store_template.enrol.json"])
def test_match_and_store_get_an_allowed_decision_for_their_operation(name: str) -> None:
    data = _load(EVENTS_DIR / name)
    req, decision = WorkflowRequest.parse(data["request"]), Decision.from_dict(data["decision"])
    assert decision.allowed
    assert decision.operation == req.operation == name.split(".")[1]
    if req.operation in ("search", "verify"):  # access control: a person reviews every match
        assert {"human_review_before_action", "two_person_confirmation"} <= set(decision.obligations)


def test_the_refusal_is_the_crowd_probe() -> None:
    data = _load(EVENTS_DIR / "finish.refused.json")
    decision = Decision.from_dict(data["decision"])
    assert not decision.allowed
    assert decision.codes == ["request.crowd_probe"]
    assert all(r.message for r in decision.reasons)
    crowd = _load(EVENTS_DIR / "policy_check.faces-crowd.json")
    assert crowd["face_count"] == 7
    assert crowd["request"] == data["request"]


# --- probe templates, detections, errors ----------------------------------------------------------------


@pytest.mark.parametrize("path", _with("probe", "probes"), ids=_name)
def test_a_probe_crosses_a_state_as_a_reference_never_as_a_template(path: Path) -> None:
    """One probe under the request id; an enrolment's photos one each, under the photo's reference."""
    data = _load(path)
    (req,) = _requests(data)
    refs = [(raw, req.request_id) for raw in _walk(data, "probe")]
    for several in _walk(data, "probes"):
        assert len(several) == len(req.photos)
        refs += [(raw, photo_ref(req.request_id, i)) for i, raw in enumerate(several)]
    assert refs
    for raw, ref in refs:
        probe = ProbeTemplate.model_validate(raw)
        assert probe.ref == ref
        assert probe.model_version == MODEL_VERSION
        assert set(raw) == {"ref", "model_version"}, "no embedding in the state"


@pytest.mark.parametrize("path", _with("detection", "detections"), ids=_name)
def test_detections_are_one_plausible_face(path: Path) -> None:
    data = _load(path)
    listed = [d for several in _walk(data, "detections") for d in several]
    if listed:  # an enrolment's photos: one detection each, of different images
        (req,) = _requests(data)
        assert len(listed) == len(req.photos)
        assert len({d["content_sha256"] for d in listed}) == len(listed)
    for raw in [*_walk(data, "detection"), *listed]:
        detection = Detection.model_validate(raw)
        assert detection.face_count == len(detection.faces) == 1 <= MAX_FACES_LISTED
        (face,) = detection.faces
        x, y, w, h = face.box
        assert 0 <= x < x + w <= detection.width
        assert 0 <= y < y + h <= detection.height
        assert all(x <= px <= x + w and y <= py <= y + h for px, py in face.landmarks)
        assert 0.0 < face.score <= 1.0


@pytest.mark.parametrize("path", _with("error"), ids=_name)
def test_caught_errors_look_like_a_lambda_failure_of_a_facegate_error(path: Path) -> None:
    data = _load(path)
    for raw in _walk(data, "error"):
        error = StateError.model_validate(raw)
        cause = json.loads(error.cause)
        assert cause["errorType"] == error.error
        assert cause["errorMessage"]
        cls = getattr(errors, error.error)
        assert issubclass(cls, errors.FacegateError)
    assert list(_requests(data)), "a failure record carries the request it failed on"


def test_the_not_an_image_failure_names_its_error() -> None:
    data = _load(EVENTS_DIR / "finish.failed-not-an-image.json")
    error = StateError.model_validate(data["input"]["error"])
    assert error.error == "NotAnImageError"
    assert errors.NotAnImageError.code == "image.not_an_image"


# --- the S3 event ---------------------------------------------------------------------------------------


def test_the_eventbridge_event_has_s3_object_created_shape() -> None:
    event = _load(EVENTS_DIR / RAW_EVENTBRIDGE)
    assert set(event) == {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
    assert (event["source"], event["detail-type"], event["version"]) == ("aws.s3", "Object Created", "0")
    detail = event["detail"]
    assert set(detail) >= {"version", "bucket", "object", "request-id", "requester", "source-ip-address", "reason"}
    assert detail["reason"] == "PutObject"
    assert set(detail["object"]) == {"key", "size", "etag", "version-id", "sequencer"}
    assert event["resources"] == [f"arn:aws:s3:::{detail['bucket']['name']}"]
    assert detail["bucket"]["name"].endswith(f"-{event['account']}-{event['region']}")
    datetime.fromisoformat(event["time"])


def test_the_eventbridge_event_names_one_probe_version() -> None:
    event = _load(EVENTS_DIR / RAW_EVENTBRIDGE)
    ref = object_created(event)
    assert ref == ObjectRef(bucket=BUCKET, key=PROBE, version_id=event["detail"]["object"]["version-id"])
    assert ref.version_id
    req = WorkflowRequest.from_probe(
        ref, {"operation": "search", "purpose": "entry at checkpoint B", "case-reference": "NF-2026-0113"}
    )
    assert (req.tenant_id, req.gallery_id, req.operation) == (TENANT, GALLERY, "search")
    assert req.request_id == ref.request_id()
    assert req.case_reference == "NF-2026-0113"


def test_the_recognize_policy_check_input_is_that_event() -> None:
    data = _load(EVENTS_DIR / "policy_check.recognize-s3-object-created.json")
    assert data["stage"] == "request"
    assert data["input"] == _load(EVENTS_DIR / RAW_EVENTBRIDGE)


def test_the_enrol_policy_check_input_is_an_enrol_request() -> None:
    data = _load(EVENTS_DIR / "policy_check.enrol-request.json")
    assert data["stage"] == "request"
    assert object_created(data["input"]) is None
    req = WorkflowRequest.parse(data["input"])
    assert (req.operation, req.subject_id, req.consent_id) == ("enrol", SUBJECT, CONSENT)
    assert len(req.photos) == 3


def test_the_enrol_states_run_on_the_same_request_and_photos() -> None:
    """The Enrol events tell one story: the request PolicyCheck decided, each photo's Detect and Embed,
    the re-check on all three detections, and StoreTemplate fusing their three references."""
    request = _load(EVENTS_DIR / "policy_check.enrol-request.json")["input"]
    names = ("detect.enrol-photo.json", "embed.enrol-photo.json", "policy_check.faces-enrol-photos.json")
    for name in (*names, "store_template.enrol.json"):
        assert _load(EVENTS_DIR / name)["request"] == request, name
    faces = _load(EVENTS_DIR / "policy_check.faces-enrol-photos.json")
    embed = _load(EVENTS_DIR / "embed.enrol-photo.json")
    assert embed["detection"] == faces["detections"][embed["photo"]]
    assert _load(EVENTS_DIR / "detect.enrol-photo.json")["photo"] == embed["photo"]


def test_these_checks_need_no_vision_stack() -> None:
    """Importing this module loads neither OpenCV nor onnxruntime (the conftest does, for other tests)."""
    code = (
        "import sys; sys.path[:0] = [sys.argv[1]]; import test_events; "
        "bad = [m for m in ('cv2', 'onnxruntime', 'facegate.vision', 'boto3') if m in sys.modules]; "
        "assert not bad, bad"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
