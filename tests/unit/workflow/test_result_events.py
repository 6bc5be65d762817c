"""The result bus's events (workflow/events.py): their shape, and a failed publication is said, never silent (moto)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from facegate import observability
from facegate.workflow import events

ENDED = {
    "tenant_id": "hmp-ev",
    "request_id": "r-1",
    "operation": "search",
    "status": "refused",
    "gallery_id": "staff",
    "reason_codes": ["request.crowd_probe"],
}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        yield


def _client() -> object:
    return boto3.client("events", region_name="us-east-1")


def test_an_event_carries_ids_and_codes_only() -> None:
    entry = events.request_event(bus="b", **ENDED)
    assert (entry["Source"], entry["DetailType"], entry["EventBusName"]) == ("facegate", "Request Refused", "b")
    assert set(json.loads(entry["Detail"])) == {
        "version", "tenant_id", "request_id", "operation", "status", "gallery_id", "review_state", "reason_codes",
    }  # fmt: skip
    with pytest.raises(ValueError, match="completed, refused or failed"):
        events.request_event(bus="b", **{**ENDED, "status": "pending"})


def test_without_a_bus_nothing_is_published(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(events.BUS_VARIABLE, raising=False)
    assert events.publish(_client, **ENDED) is False


def test_a_published_event_reaches_the_bus(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    boto3.client("events", region_name="us-east-1").create_event_bus(Name="results")
    monkeypatch.setenv(events.BUS_VARIABLE, "results")
    before = observability.counts[observability.UNPUBLISHED]
    assert events.publish(_client, **ENDED) is True
    assert observability.counts[observability.UNPUBLISHED] == before


def test_a_publication_eventbridge_refuses_is_logged_and_counted(
    aws: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The bus is gone (deleted, or the function's permission revoked): the request stays recorded, the
    failure is an ERROR line with the ids and a count the template's alarm watches."""
    monkeypatch.setenv(events.BUS_VARIABLE, "no-such-bus")
    before = observability.counts[observability.UNPUBLISHED]
    assert events.publish(_client, **ENDED) is False
    assert observability.counts[observability.UNPUBLISHED] == before + 1
    (line,) = [r for r in caplog.records if getattr(r, "signal", None) == observability.UNPUBLISHED]
    assert line.levelname == "ERROR"
    assert (line.request_id, line.tenant) == ("r-1", "hmp-ev")  # type: ignore[attr-defined]
