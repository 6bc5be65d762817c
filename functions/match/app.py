"""Match: verify (1:1) or search (1:N) the caller's gallery; store the result with its review state.

A thin handler: Powertools logging, tracing and a metric around one step of ``facegate.workflow``
(``facegate.workflow.handler``); settings are validated at cold start.
"""

from __future__ import annotations

from facegate.workflow import steps
from facegate.workflow.handler import lambda_handler_for

lambda_handler = lambda_handler_for(
    steps.match, metric=lambda result: ("ReviewPending", int(result["review_state"] == "pending"))
)
