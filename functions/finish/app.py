"""Finish: delete the image after the result; record refusals and failures with their reasons.

A thin handler: Powertools logging, tracing and a metric around one step of ``facegate.workflow``
(``facegate.workflow.handler``); settings are validated at cold start.
"""

from __future__ import annotations

from facegate.workflow import steps
from facegate.workflow.handler import lambda_handler_for

lambda_handler = lambda_handler_for(steps.finish, metric=lambda result: ("Failed", int(result["status"] == "failed")))
