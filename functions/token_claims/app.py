"""TokenClaims: Cognito's pre-token-generation trigger (V3_0), the tenant claim on every access token.

A thin handler around :func:`facegate.token_claims.add_claims`: the tables are configured once per
container; a refused token is one WARNING line (the client id and why, never a secret) and an error
back to Cognito, which then issues nothing.
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger

from facegate.settings import Settings
from facegate.store.models import configure
from facegate.store.scope import signed_with
from facegate.token_claims import TokenRefusedError, add_claims

logger = Logger()
configure(
    Settings(
        table_prefix=os.environ["FACEGATE_TABLE_PREFIX"],
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "",
        dynamodb_endpoint=os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL"),
    )
)


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    try:
        # The registry is read with this function's own role (no tenant is known yet): its credentials,
        # never a connection some other caller in the process opened (the local cloud runs all in one).
        with signed_with(
            os.environ.get("AWS_ACCESS_KEY_ID", ""),
            os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
            os.environ.get("AWS_SESSION_TOKEN") or None,
        ):
            answer = add_claims(event)
    except TokenRefusedError as exc:
        logger.warning(
            "token refused",
            extra={
                "trigger_source": event.get("triggerSource"),
                "client_id": (event.get("callerContext") or {}).get("clientId"),
                "reason_codes": [exc.code],
                "detail": str(exc),
            },
        )
        raise
    logger.info(
        "token claims added",
        extra={
            "trigger_source": event.get("triggerSource"),
            "client_id": (event.get("callerContext") or {}).get("clientId"),
        },
    )
    return answer
