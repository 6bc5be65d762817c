"""The one shape of every workflow function's Lambda handler: Powertools logging (with the Lambda
context) and one metric around a step of :mod:`facegate.workflow.steps`.

No tracing SDK is imported: Lambda's active tracing records each invocation's segment (timings, no
payload), and the X-Ray SDK that Powertools' tracer wraps cost a third of Detect's and Embed's cold start
(``make bench-coldstart``) and is in maintenance mode (end of support 2027-02-25).

The runtime (settings, clients, the service) is built when the handler module is imported, i.e. at
cold start: a misconfigured deployment fails on its first invocation with the variable's name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from facegate.workflow.steps import Runtime

Step = Callable[[dict[str, Any], Runtime, Any], dict[str, Any]]
Metric = Callable[[dict[str, Any]], tuple[str, int]]
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def lambda_handler_for(step: Step, *, metric: Metric, service: bool = True) -> Handler:
    """A Lambda handler running ``step`` with this container's runtime and recording ``metric(result)``;
    ``service=False`` (Detect, Embed) leaves the service unbuilt unless a request needs it."""
    logger = Logger()
    metrics = Metrics()
    runtime = Runtime.from_env(service=service)

    @logger.inject_lambda_context
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        result = step(event, runtime, context)
        name, value = metric(result)
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        return result

    return lambda_handler
