"""Detect: every face in the image (YuNet, two-scale policy); only counts and geometry leave the function.

A thin handler: Powertools logging, tracing and a metric around one step of ``facegate.workflow``
(``facegate.workflow.handler``); settings are validated at cold start.
"""

from __future__ import annotations

from facegate.workflow import steps
from facegate.workflow.handler import lambda_handler_for

steps.detector()  # the model session is built at cold start, not on the first request
lambda_handler = lambda_handler_for(
    steps.detect, metric=lambda result: ("FacesDetected", result["face_count"]), service=False
)
