"""The one shape of every workflow function's Lambda handler: Powertools logging (with the Lambda
context), tracing and one metric around a step of :mod:`facegate.workflow.steps`.

The runtime (settings, clients, the service) is built when the handler module is imported, i.e. at
cold start: a misconfigured deployment fails on its first invocation with the variable's name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from facegate.workflow.steps import Runtime

Step = Callable[[dict[str, Any], Runtime, Any], dict[str, Any]]
Metric = Callable[[dict[str, Any]], tuple[str, int]]
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def lambda_handler_for(step: Step, *, metric: Metric) -> Handler:
    """A Lambda handler running ``step`` with this container's runtime and recording ``metric(result)``."""
    logger = Logger()
    tracer = Tracer()
    metrics = Metrics()
    runtime = Runtime.from_env()

    @logger.inject_lambda_context
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        result = step(event, runtime, context)
        name, value = metric(result)
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        return result

    return lambda_handler
