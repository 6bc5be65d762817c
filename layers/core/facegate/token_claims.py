"""The tenant claim on every access token: Cognito's pre-token-generation trigger (event version V3_0).

The API accepts access tokens that carry the ``facegate/api`` scope and a ``custom:tenant_id`` claim.
This trigger is the only thing that writes that claim, server side, from what operators set:

- a person (SRP sign-in, refresh): from the user's ``custom:tenant_id`` attribute, which only operators
  can write (the app client's write attributes leave it out); the ``facegate/api`` scope is added with it.
  A user without the attribute gets a token without the scope, which the API refuses.
- a machine (``TokenGeneration_ClientCredentials``): from the machine-client registry, keyed by the
  app client's id (:mod:`facegate.store.machine_clients`). An unregistered or disabled client gets no
  token at all: the trigger fails, and Cognito refuses the grant.

Nothing the caller sends (client metadata, requested scopes, a claim of its own) reaches the claim.
"""

from __future__ import annotations

from typing import Any, Final

from facegate.errors import FacegateError

TENANT_CLAIM: Final = "custom:tenant_id"
API_SCOPE: Final = "facegate/api"
MACHINE_SOURCE: Final = "TokenGeneration_ClientCredentials"
PERSON_SOURCES: Final = frozenset(
    {
        "TokenGeneration_HostedAuth",
        "TokenGeneration_Authentication",
        "TokenGeneration_NewPasswordChallenge",
        "TokenGeneration_AuthenticateDevice",
        "TokenGeneration_RefreshTokens",
    }
)


class TokenRefusedError(FacegateError):
    """No token for this caller (an unknown or disabled machine client, an event of another kind)."""

    code = "auth.token_refused"


def add_claims(event: dict[str, Any], clients: Any = None) -> dict[str, Any]:
    """Answer a V3_0 pre-token-generation event: ``event`` with its ``response`` set."""
    source = event.get("triggerSource")
    if source == MACHINE_SOURCE:
        from facegate.store.machine_clients import MachineClients

        client_id = str((event.get("callerContext") or {}).get("clientId") or "")
        client = (clients or MachineClients()).get(client_id, consistent=True) if client_id else None
        if client is None:
            raise TokenRefusedError(f"client {client_id!r} is not a registered machine client")
        if not client.active:
            raise TokenRefusedError(f"machine client {client_id!r} is disabled")
        access: dict[str, Any] = {"claimsToAddOrOverride": {TENANT_CLAIM: client.tenant_id}}
    elif source in PERSON_SOURCES:
        attributes = (event.get("request") or {}).get("userAttributes") or {}
        tenant = attributes.get(TENANT_CLAIM)
        if tenant:
            access = {"claimsToAddOrOverride": {TENANT_CLAIM: tenant}, "scopesToAdd": [API_SCOPE]}
        else:  # a user no operator gave a tenant: signed in, but without the API's scope
            access = {"claimsToSuppress": [TENANT_CLAIM], "scopesToSuppress": [API_SCOPE]}
    else:
        raise TokenRefusedError(f"no tokens for trigger source {source!r}")
    event["response"] = {"claimsAndScopeOverrideDetails": {"accessTokenGeneration": access}}
    return event
