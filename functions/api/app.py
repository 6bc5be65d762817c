"""The tenant API behind API Gateway (REST, Cognito authorizer): what the SDK calls.

A thin handler: Powertools logging, tracing and metrics around ``facegate.api.TenantApi``. Settings are
read and validated at cold start: a misconfigured deployment fails on its first invocation.
"""

from __future__ import annotations

from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from facegate.api import ApiSettings, TenantApi
from facegate.workflow import steps

logger = Logger()
metrics = Metrics()
runtime = steps.Runtime.from_env()
api = TenantApi(
    runtime.service,
    runtime.s3,
    # A one-call verify or search waits at most 25 s (API Gateway answers for it at 29 s): then a 202
    # names the request, which goes on and is read by id.
    boto3.client(
        "stepfunctions",
        region_name=runtime.settings.region,
        config=Config(read_timeout=25, retries={"max_attempts": 1}),
    ),
    ApiSettings.from_env(),
)


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = api.handle(event, context)
    metrics.add_metric(name="ApiErrors", unit=MetricUnit.Count, value=int(response.get("statusCode", 200) >= 400))
    return response
