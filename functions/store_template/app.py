"""StoreTemplate: the enrolment's template, under the subject's consent, with its expiry.

A thin handler: Powertools logging, tracing and a metric around one step of ``facegate.workflow``
(``facegate.workflow.handler``); settings are validated at cold start.
"""

from __future__ import annotations

from facegate.workflow import steps
from facegate.workflow.handler import lambda_handler_for

lambda_handler = lambda_handler_for(steps.store_template, metric=lambda result: ("TemplatesStored", 1))
