"""A one-call verify or search (the API starts Recognize itself): the request is the API's, on its own
``calls/`` probe. An API-shaped start of Recognize on an uploaded probe (whose actor only its S3 event
and proof can name), on another tenant's key or another gallery's, is refused before anything is read."""

from __future__ import annotations

from typing import Any

import pytest

from facegate.errors import InvalidRequestError
from facegate.tenancy import TenantContext
from facegate.workflow import steps
from facegate.workflow.models import ObjectRef, WorkflowRequest

CTX = TenantContext(tenant_id="hmp-calls", actor="officer-1")
NAME = "0123456789abcdef0123456789abcdef"


def _ref(key: str) -> ObjectRef:
    return ObjectRef(bucket="probes-bucket", key=key, version_id="v1")


def test_a_call_names_its_probe_under_calls_and_its_actor_from_the_token() -> None:
    req = WorkflowRequest.for_call(CTX, _ref(f"tenants/hmp-calls/calls/gate/{NAME}"), "search", "gate", purpose="entry")
    assert (req.actor, req.operation, req.gallery_id, req.purpose) == ("officer-1", "search", "gate", "entry")
    assert req.request_id == _ref(f"tenants/hmp-calls/calls/gate/{NAME}").request_id()


@pytest.mark.parametrize(
    "key",
    [
        f"tenants/hmp-calls/probes/gate/{NAME}",  # an upload's probe: recognised from its S3 event
        f"tenants/hmp-calls/uploads/gate/{NAME}",
        f"tenants/other-tenant/calls/gate/{NAME}",
        f"tenants/hmp-calls/calls/other-gallery/{NAME}",
        "tenants/hmp-calls/calls/gate/not-hex",
    ],
)
def test_a_call_on_another_key_is_refused(key: str) -> None:
    with pytest.raises(InvalidRequestError):
        WorkflowRequest.for_call(CTX, _ref(key), "search", "gate")


def test_a_verify_or_search_request_lies_under_its_gallerys_probe_prefix() -> None:
    base: dict[str, Any] = {"request_id": "r1", "tenant_id": "hmp-calls", "actor": "a", "operation": "search"}
    good = {**base, "gallery_id": "gate", "image": _ref(f"tenants/hmp-calls/probes/gate/{NAME}").model_dump()}
    assert WorkflowRequest.parse(good).gallery_id == "gate"
    for key in (f"tenants/hmp-calls/uploads/gate/{NAME}", f"tenants/hmp-calls/probes/other/{NAME}"):
        with pytest.raises(InvalidRequestError, match="probes/<gallery>"):
            WorkflowRequest.parse({**good, "image": _ref(key).model_dump()})


class _NoRuntime:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"nothing may be read before the request is checked (asked for {name})")


def test_recognize_started_by_hand_on_an_uploaded_probe_is_refused() -> None:
    """Only an S3 event can start Recognize on an upload (its metadata's actor then needs its proof); an
    API-shaped input naming the same probe, with an actor of its choosing, is not a way around that."""
    forged = {
        "request_id": "r2",
        "tenant_id": "hmp-calls",
        "actor": "someone-else",
        "operation": "search",
        "gallery_id": "gate",
        "image": _ref(f"tenants/hmp-calls/probes/gate/{NAME}").model_dump(),
    }
    with pytest.raises(InvalidRequestError, match="from the API on a call"):
        steps.policy_check({"stage": "request", "workflow": "recognize", "input": forged}, _NoRuntime())  # type: ignore[arg-type]
