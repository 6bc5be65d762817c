"""Cognito's part moto leaves out: the pre-token-generation trigger, and the client-credentials grant.

moto (5.2.5) issues access tokens without running a user pool's Lambda triggers, and has no OAuth
``/oauth2/token`` endpoint. The local cloud fills both, as Cognito does (V3_0 events):

- every access token moto issues to a person (SRP sign-in, refresh) passes through the pool's
  pre-token-generation function, invoked through the adapter (the real handler), and its answer is
  applied: claims added, overridden or suppressed, scopes added or suppressed. A trigger that fails
  refuses the sign-in (``UserLambdaValidationException``), as Cognito does.
- :func:`client_credentials` is the token endpoint's grant: the client's secret (HTTP Basic), a client
  allowed the ``client_credentials`` flow and the scopes asked for, then the trigger
  (``TokenGeneration_ClientCredentials``), then an access token signed with moto's pool key, the key the
  local API verifies against.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any, Final

# What a trigger may not touch on an access token (Cognito's reserved claims).
RESERVED: Final = frozenset(
    {
        "iss",
        "sub",
        "aud",
        "client_id",
        "token_use",
        "scope",
        "exp",
        "iat",
        "auth_time",
        "jti",
        "origin_jti",
        "username",
        "nbf",
        "amr",
        "identities",
        "nonce",
        "azp",
        "acr",
    }
)
ACCESS_TOKEN_SECONDS: Final = 3600


class OAuthError(Exception):
    """An OAuth error answer of the token endpoint (RFC 6749 section 5.2)."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


def _trigger_error(message: str) -> Exception:
    from moto.core.exceptions import JsonRESTError

    return JsonRESTError("UserLambdaValidationException", message)


def _trigger_arn(pool: Any) -> str | None:
    config = (pool.extended_config.get("LambdaConfig") or {}).get("PreTokenGenerationConfig") or {}
    return config.get("LambdaArn") or (pool.extended_config.get("LambdaConfig") or {}).get("PreTokenGeneration")


def run_trigger(
    invoke: Callable[[str, bytes, dict[str, str]], bytes],
    pool: Any,
    *,
    source: str,
    client_id: str,
    username: str,
    attributes: dict[str, str],
    scopes: list[str],
) -> dict[str, Any]:
    """The trigger's ``accessTokenGeneration`` answer (``{}`` for a pool without one)."""
    arn = _trigger_arn(pool)
    if not arn:
        return {}
    event = {
        "version": "3",
        "triggerSource": source,
        "region": pool.region,
        "userPoolId": pool.id,
        "userName": username,
        "callerContext": {"awsSdkVersion": "facegate-local", "clientId": client_id},
        "request": {"userAttributes": attributes, "groupConfiguration": {}, "scopes": scopes},
        "response": {"claimsAndScopeOverrideDetails": None},
    }
    headers: dict[str, str] = {}
    answer = json.loads(invoke(arn, json.dumps(event).encode(), headers) or b"{}")
    if headers.get("x-amz-function-error"):
        raise _trigger_error(f"PreTokenGeneration failed with error {answer.get('errorMessage', 'unknown')}.")
    details = ((answer.get("response") or {}).get("claimsAndScopeOverrideDetails")) or {}
    return dict(details.get("accessTokenGeneration") or {})


def apply(payload: dict[str, Any], access: dict[str, Any]) -> dict[str, Any]:
    """``payload`` (an access token's claims) as the trigger's answer changes it."""
    for claim in access.get("claimsToSuppress") or []:
        if claim not in RESERVED:
            payload.pop(claim, None)
    for claim, value in (access.get("claimsToAddOrOverride") or {}).items():
        if claim in RESERVED or claim.startswith("cognito:"):
            raise _trigger_error(f"PreTokenGeneration failed: the claim {claim} cannot be overridden.")
        payload[claim] = value
    scopes = [s for s in str(payload.get("scope", "")).split() if s]
    scopes = [s for s in scopes if s not in set(access.get("scopesToSuppress") or [])]
    scopes += [s for s in access.get("scopesToAdd") or [] if s not in scopes]
    payload["scope"] = " ".join(scopes)
    return payload


def person_access_token(
    invoke: Callable[[str, bytes, dict[str, str]], bytes],
    pool: Any,
    original: Callable[..., tuple[str, int]],
    client_id: str,
    username: str,
    origin_jti: str,
) -> tuple[str, int]:
    """moto's access token for a person, re-signed after the pool's trigger changed its claims."""
    from joserfc import jwt

    token, expires_in = original(pool, client_id, username, origin_jti)
    if not _trigger_arn(pool):
        return token, expires_in
    user = pool._get_user(username)
    attributes = {a["Name"]: a["Value"] for a in user.attributes}
    attributes.setdefault("sub", user.id)
    claims = dict(jwt.decode(token, pool.json_web_key).claims)
    access = run_trigger(
        invoke,
        pool,
        source="TokenGeneration_Authentication",
        client_id=client_id,
        username=username,
        attributes=attributes,
        scopes=str(claims.get("scope", "")).split(),
    )
    signed = jwt.encode({"kid": "dummy", "alg": "RS256"}, apply(claims, access), pool.json_web_key)
    pool.access_tokens.pop(token, None)
    pool.access_tokens[signed] = (client_id, username)
    return signed, expires_in


def client_credentials(
    invoke: Callable[[str, bytes, dict[str, str]], bytes],
    region: str,
    client_id: str,
    secret: str,
    scope: str | None,
) -> dict[str, Any]:
    """The token endpoint's answer to a client-credentials grant (``access_token``, ``expires_in``)."""
    from joserfc import jwt
    from moto.cognitoidp.models import cognitoidp_backends

    from facegate.localcloud.deploy import ACCOUNT

    backend = cognitoidp_backends[ACCOUNT][region]
    found = [(pool, pool.clients[client_id]) for pool in backend.user_pools.values() if client_id in pool.clients]
    if not found:
        raise OAuthError("invalid_client", "no such client", 401)
    pool, client = found[0]
    config = client.extended_config
    if not client.generate_secret or not secret or secret != client.secret:
        raise OAuthError("invalid_client", "the client's credentials are wrong", 401)
    if "client_credentials" not in (config.get("AllowedOAuthFlows") or []) or not config.get(
        "AllowedOAuthFlowsUserPoolClient"
    ):
        raise OAuthError("unauthorized_client", "the client is not allowed the client_credentials grant")
    allowed = list(config.get("AllowedOAuthScopes") or [])
    asked = scope.split() if scope else allowed
    if not asked or any(s not in allowed for s in asked):
        raise OAuthError("invalid_scope", "a scope the client is not allowed")
    try:
        access = run_trigger(
            invoke,
            pool,
            source="TokenGeneration_ClientCredentials",
            client_id=client_id,
            username=client_id,
            attributes={},
            scopes=asked,
        )
    except Exception as exc:  # the trigger refused: Cognito answers invalid_request, and issues nothing
        raise OAuthError("invalid_request", str(getattr(exc, "message", exc) or exc)) from exc
    now = int(time.time())
    validity = int(config.get("AccessTokenValidity") or 0)
    units = (config.get("TokenValidityUnits") or {}).get("AccessToken", "hours")
    seconds = (
        validity * {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}[units]
        if validity
        else ACCESS_TOKEN_SECONDS
    )
    payload = {
        "iss": f"https://cognito-idp.{region}.amazonaws.com/{pool.id}",
        "sub": client_id,
        "client_id": client_id,
        "token_use": "access",
        "scope": " ".join(asked),
        "auth_time": now,
        "iat": now,
        "exp": now + seconds,
        "jti": str(uuid.uuid4()),
        "version": 2,
    }
    token = jwt.encode({"kid": "dummy", "alg": "RS256"}, apply(payload, access), pool.json_web_key)
    return {"access_token": token, "expires_in": seconds, "token_type": "Bearer"}


def install(invoke: Callable[[], Callable[[str, bytes, dict[str, str]], bytes] | None]) -> None:
    """Patch moto's access tokens to pass through the pool's trigger while ``invoke()`` gives an invoker."""
    from moto.cognitoidp.models import CognitoIdpUserPool

    original = CognitoIdpUserPool.create_access_token

    def create_access_token(self: Any, client_id: str, username: str, origin_jti: str) -> tuple[str, int]:
        invoker = invoke()
        if invoker is None:
            return original(self, client_id, username, origin_jti)
        return person_access_token(invoker, self, original, client_id, username, origin_jti)

    CognitoIdpUserPool.create_access_token = create_access_token  # type: ignore[method-assign]
