"""Who is asking: the tenant context every request-path call carries.

A :class:`TenantContext` is built only from an authenticated identity (an API Gateway authorizer's
claims, the S3 key prefix a tenant's role may write to, the SDK's signed session). Repositories take it
as their first argument and build every key from ``ctx.tenant_id``; no request-path method accepts a
tenant id from the request body, so a caller cannot name another tenant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from facegate.errors import InvalidIdentifierError

TENANT_ID: Final = re.compile(r"^[a-z0-9][a-z0-9-]{2,62}$")
ENTITY_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_tenant_id(value: str) -> str:
    if not TENANT_ID.fullmatch(value):
        raise InvalidIdentifierError("a tenant id is 3-63 lowercase letters, digits or '-'")
    return value


def check_entity_id(value: str, what: str) -> str:
    """Gallery, subject and consent ids: no '#' (the key separator) and no control characters."""
    if not ENTITY_ID.fullmatch(value):
        raise InvalidIdentifierError(f"a {what} id is 1-128 letters, digits, '_', '.' or '-'")
    return value


@dataclass(frozen=True)
class TenantContext:
    """The authenticated tenant of a request, and who acted for it (for the audit log)."""

    tenant_id: str
    actor: str

    def __post_init__(self) -> None:
        check_tenant_id(self.tenant_id)
        if not self.actor or len(self.actor) > 256:
            raise InvalidIdentifierError("the actor is 1-256 characters")

    @classmethod
    def from_claims(cls, claims: dict[str, str]) -> TenantContext:
        """From verified identity claims (``custom:tenant_id`` and ``sub``, as Cognito issues them)."""
        try:
            return cls(tenant_id=claims["custom:tenant_id"], actor=claims["sub"])
        except KeyError as exc:
            raise InvalidIdentifierError(f"the identity has no {exc.args[0]} claim") from exc
