"""PolicyCheck: the first state of every workflow, and the re-check on the detected face count.

A thin handler: Powertools logging, tracing and a metric around one step of ``facegate.workflow``
(``facegate.workflow.handler``); settings are validated at cold start.
"""

from __future__ import annotations

from typing import Any

from facegate.workflow import steps
from facegate.workflow.handler import lambda_handler_for


def _denied(result: dict[str, Any]) -> int:
    """The request stage answers ``{duplicate, request, decision}``; the faces stage the decision itself.
    A duplicate was decided the first time: it is not counted again."""
    if result.get("duplicate"):
        return 0
    decision = result.get("decision") if "duplicate" in result else result
    return 0 if decision and decision.get("allowed") else 1


lambda_handler = lambda_handler_for(steps.policy_check, metric=lambda result: ("PolicyDenied", _denied(result)))
