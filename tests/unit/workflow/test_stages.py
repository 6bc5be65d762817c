"""A decision carries its stage, and each workflow starts only from what it is for.

GIVEN a decision taken before detection (the face count unknown) WHEN it reaches Match or
StoreTemplate THEN it is refused: only a decision re-checked on the detected faces lets a probe be
matched or a template be stored. GIVEN Recognize's policy check WHEN its input is anything but S3's
"Object Created" event THEN it is refused (a raw request object would bypass the probe key and the
uploader's prefix).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from facegate.errors import InvalidRequestError, PolicyDeniedError
from facegate.workflow import steps

EVENTS = Path(__file__).resolve().parents[3] / "events"


def _event(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return data


class _NoRuntime:
    """Any attribute access fails: these refusals happen before the step touches AWS."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the step reached {name} before refusing")


@pytest.mark.parametrize(
    ("name", "step"),
    [
        ("match.verify.json", steps.match),
        ("match.search.json", steps.match),
        ("store_template.enrol.json", steps.store_template),
    ],
)
def test_a_decision_not_rechecked_on_the_faces_is_refused(name: str, step: Any) -> None:
    event = copy.deepcopy(_event(name))
    event["decision"]["stage"] = "request"
    with pytest.raises(PolicyDeniedError, match="re-checked on the detected faces"):
        step(event, _NoRuntime())


@pytest.mark.parametrize("name", ["match.verify.json", "store_template.enrol.json"])
def test_a_decision_without_a_stage_is_taken_as_before_detection(name: str) -> None:
    event = copy.deepcopy(_event(name))
    del event["decision"]["stage"]
    with pytest.raises(PolicyDeniedError):
        (steps.match if name.startswith("match") else steps.store_template)(event, _NoRuntime())


def test_recognize_refuses_a_raw_request_object() -> None:
    raw = _event("match.search.json")["request"]
    with pytest.raises(InvalidRequestError, match="Object Created"):
        steps.policy_check({"stage": "request", "workflow": "recognize", "input": raw}, _NoRuntime())


@pytest.mark.parametrize("workflow", [None, "", "Recognize", "verify", "anything"])
def test_the_policy_check_names_its_workflow(workflow: Any) -> None:
    event = _event("policy_check.recognize-s3-object-created.json")
    with pytest.raises(InvalidRequestError, match="names its workflow"):
        steps.policy_check({**event, "workflow": workflow}, _NoRuntime())


def test_enrol_refuses_an_s3_event_and_another_operation() -> None:
    s3_event = _event("policy_check.recognize-s3-object-created.json")["input"]
    with pytest.raises(InvalidRequestError, match="API request"):
        steps.policy_check({"stage": "request", "workflow": "enrol", "input": s3_event}, _NoRuntime())
    search = _event("match.search.json")["request"]
    with pytest.raises(InvalidRequestError, match="does not run 'search'"):
        steps.policy_check({"stage": "request", "workflow": "enrol", "input": search}, _NoRuntime())
