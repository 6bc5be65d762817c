"""The template's alarms (issue 16 item 6): every function's errors and throttles, every workflow's
failed or timed-out executions and an audit log failing verification page the operators' topic.

GIVEN the translated template WHEN its alarms are listed THEN each Lambda function and each state
machine has one, on its own metrics, sending to AlarmTopic; the audit alarm watches exactly the series
``facegate.observability.audit_chain_broken`` emits (its name and its dimensions).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from facegate import observability
from facegate.localcloud.template import load_template, translate

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return translate(load_template(ROOT / "template.yaml"))


def _alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in template["Resources"].items() if v["Type"] == "AWS::CloudWatch::Alarm"}


def _watched(alarm: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(namespace, metric, the resource its dimension references) for each metric the alarm reads."""
    found = set()
    for query in alarm.get("Metrics", []):
        if "MetricStat" in query:
            metric = query["MetricStat"]["Metric"]
            (dimension,) = metric["Dimensions"]
            found.add((metric["Namespace"], metric["MetricName"], json.dumps(dimension["Value"])))
    return found


@pytest.mark.parametrize("kind", ["AWS::Lambda::Function", "AWS::StepFunctions::StateMachine"])
def test_every_function_and_workflow_has_an_alarm_to_the_operators(template: dict[str, Any], kind: str) -> None:
    resources = [k for k, v in template["Resources"].items() if v["Type"] == kind]
    assert resources
    alarms = _alarms(template)
    for logical in resources:
        ref = json.dumps({"Ref": logical})
        watching = [a for a in alarms.values() if any(r == ref for _, _, r in _watched(a))]
        assert len(watching) == 1, logical
        (alarm,) = watching
        metrics = {m for _, m, _ in _watched(alarm)}
        expected = (
            {"Errors", "Throttles"} if kind == "AWS::Lambda::Function" else {"ExecutionsFailed", "ExecutionsTimedOut"}
        )
        assert metrics == expected, logical
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
        assert alarm["TreatMissingData"] == "notBreaching"


def test_the_audit_alarm_watches_the_series_the_service_emits(
    template: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "facegate")
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    observability.audit_chain_broken(tenant="t-1", kind="altered", seq=3)
    emitted = next(json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line)
    (directive,) = emitted["_aws"]["CloudWatchMetrics"]
    alarm = _alarms(template)["AuditChainBrokenAlarm"]
    assert (alarm["Namespace"], alarm["MetricName"]) == (directive["Namespace"], directive["Metrics"][0]["Name"])
    assert [[d["Name"] for d in alarm["Dimensions"]]] == directive["Dimensions"]
    assert {d["Name"]: emitted[d["Name"]] for d in alarm["Dimensions"]} == {
        d["Name"]: d["Value"] for d in alarm["Dimensions"]
    }
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
