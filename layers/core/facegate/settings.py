"""One validated settings model, read once at cold start (``Settings.from_env()``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TENANT_ROLE_VARIABLE: Final = "FACEGATE_TENANT_ROLE_ARN"
TENANT_SESSIONS_VARIABLE: Final = "FACEGATE_TENANT_SESSIONS"
TENANT_ROLE: Final = "tenant-role"
PROCESS_CREDENTIALS: Final = "process-credentials"
DEPLOYED_MARKERS: Final = ("AWS_LAMBDA_FUNCTION_NAME", "AWS_BATCH_JOB_ID")
"""Set by Lambda in every function and by AWS Batch in every job: where the opt-out is refused."""


class TenantSessions(BaseModel):
    """How a tenant scope (:func:`facegate.store.scope.tenant_scope`) reaches the tenant tables.

    With ``FACEGATE_TENANT_ROLE_ARN`` every scope assumes that role with the session tag
    ``tenant_id``. Without it nothing reaches the tenant tables, unless the process opts out explicitly
    with ``FACEGATE_TENANT_SESSIONS=process-credentials`` (unit tests and the vision-only CLI, which
    have no role to assume); a deployed function or job (``AWS_LAMBDA_FUNCTION_NAME`` or
    ``AWS_BATCH_JOB_ID`` set) may not opt out.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    role_arn: str | None = Field(
        default=None, pattern=r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]{1,512}$"
    )
    mode: str = TENANT_ROLE
    deployed: bool = False

    @property
    def process_credentials(self) -> bool:
        return self.mode == PROCESS_CREDENTIALS

    @field_validator("mode")
    @classmethod
    def _known_mode(cls, mode: str) -> str:
        if mode not in (TENANT_ROLE, PROCESS_CREDENTIALS):
            raise ValueError(f"{TENANT_SESSIONS_VARIABLE} is {TENANT_ROLE} (the default) or {PROCESS_CREDENTIALS}")
        return mode

    @model_validator(mode="after")
    def _one_way_to_the_tables(self) -> TenantSessions:
        if self.role_arn is not None and self.process_credentials:
            raise ValueError(
                f"both {TENANT_ROLE_VARIABLE} and {TENANT_SESSIONS_VARIABLE}={PROCESS_CREDENTIALS} are set: "
                "a tenant scope either assumes the tenant role or opts out, not both"
            )
        if self.process_credentials and self.deployed:
            raise ValueError(
                f"{TENANT_SESSIONS_VARIABLE}={PROCESS_CREDENTIALS} is refused in a deployed function or job: "
                f"set {TENANT_ROLE_VARIABLE}"
            )
        if self.role_arn is None and not self.process_credentials:
            raise ValueError(
                f"{TENANT_ROLE_VARIABLE} is required: tenant rows are reached only through the tenant role "
                f"(set {TENANT_SESSIONS_VARIABLE}={PROCESS_CREDENTIALS} only in unit tests or the vision-only CLI)"
            )
        return self

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TenantSessions:
        """Read the environment; a missing role is a validation error naming its variable."""
        return cls.model_validate(cls.raw(os.environ if env is None else env))

    @staticmethod
    def raw(env: Mapping[str, str]) -> dict[str, object]:
        return {
            "role_arn": env.get(TENANT_ROLE_VARIABLE) or None,
            "mode": env.get(TENANT_SESSIONS_VARIABLE) or TENANT_ROLE,
            "deployed": any(env.get(marker) for marker in DEPLOYED_MARKERS),
        }


class Settings(BaseModel):
    """Configuration shared by handlers, the SDK and the local cloud. Names are set in template.yaml."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    table_prefix: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,200}$")
    """Table names are ``<prefix>-tenants``, ``<prefix>-galleries``, ... (``FACEGATE_TABLE_PREFIX``)."""
    region: str = Field(min_length=1)
    """``AWS_REGION`` (set by Lambda; the local cloud sets it too)."""
    dynamodb_endpoint: str | None = None
    """``AWS_ENDPOINT_URL_DYNAMODB`` or ``AWS_ENDPOINT_URL``: moto's server or DynamoDB Local."""
    tenant_sessions: TenantSessions | None = None
    """How tenant scopes reach the tables; always read by :meth:`from_env` (a model built in code, as the
    store's tests do, opens no scope through it)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the environment; a missing required variable is a validation error naming it."""
        e = os.environ if env is None else env
        return cls.model_validate(
            {
                "table_prefix": e.get("FACEGATE_TABLE_PREFIX"),
                "region": e.get("AWS_REGION") or e.get("AWS_DEFAULT_REGION"),
                "dynamodb_endpoint": e.get("AWS_ENDPOINT_URL_DYNAMODB") or e.get("AWS_ENDPOINT_URL"),
                "tenant_sessions": TenantSessions.raw(e),
            }
        )
