"""One validated settings model, read once at cold start (``Settings.from_env()``)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    """Configuration shared by handlers, the SDK and the local cloud. Names are set in template.yaml."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    table_prefix: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,200}$")
    """Table names are ``<prefix>-tenants``, ``<prefix>-galleries``, ... (``FACEGATE_TABLE_PREFIX``)."""
    region: str = Field(min_length=1)
    """``AWS_REGION`` (set by Lambda; the local cloud sets it too)."""
    dynamodb_endpoint: str | None = None
    """``AWS_ENDPOINT_URL_DYNAMODB`` or ``AWS_ENDPOINT_URL``: moto's server or DynamoDB Local."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the environment; a missing required variable is a validation error naming it."""
        e = os.environ if env is None else env
        return cls.model_validate(
            {
                "table_prefix": e.get("FACEGATE_TABLE_PREFIX"),
                "region": e.get("AWS_REGION") or e.get("AWS_DEFAULT_REGION"),
                "dynamodb_endpoint": e.get("AWS_ENDPOINT_URL_DYNAMODB") or e.get("AWS_ENDPOINT_URL"),
            }
        )
