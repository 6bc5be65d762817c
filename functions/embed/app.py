"""Embed: the aligned template of the face the re-check let through (SFace).

A thin handler: Powertools logging, tracing and a metric around one step of ``facegate.workflow``
(``facegate.workflow.handler``); settings are validated at cold start.
"""

from __future__ import annotations

from facegate.workflow import steps
from facegate.workflow.handler import lambda_handler_for

steps.embedder()  # the model session is built at cold start, not on the first request
lambda_handler = lambda_handler_for(steps.embed, metric=lambda result: ("ProbesEmbedded", 1), service=False)
