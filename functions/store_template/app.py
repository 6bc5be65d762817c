"""StoreTemplate: the enrolment's template, under the subject's consent, with its expiry.

A thin handler: Powertools logging, tracing and metrics around one step of ``facegate.workflow``.
Settings are read and validated at cold start (``Runtime.from_env``): a misconfigured deployment fails
on its first invocation with the variable's name, not on some later request.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from facegate.workflow import steps

logger = Logger()
tracer = Tracer()
metrics = Metrics()
runtime = steps.Runtime.from_env()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = steps.store_template(event, runtime, context)
    metrics.add_metric(name="TemplatesStored", unit=MetricUnit.Count, value=1)
    return result
