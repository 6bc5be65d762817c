"""Tokens for the tenant API: a person's Cognito sign-in or a machine's client credentials, kept fresh
by the SDK itself.

The API accepts Cognito access tokens that carry the ``facegate/api`` scope and the tenant claim
(``custom:tenant_id``), which the user pool's trigger adds from what an operator set: a person's user
attribute, or the machine-client registry. Nothing here chooses the tenant.

A person signs in with Cognito's SRP flow (the password never leaves the machine): the maintained
implementation is ``pycognito``'s (``pip install 'facegate-sdk[srp]'``, which brings boto3). From then
on the SDK needs no AWS SDK: it refreshes the access token with the refresh token (Cognito's
``REFRESH_TOKEN_AUTH``, one unsigned JSON call) before it expires and after a 401.

A machine (a checkpoint system) has a client id and secret from ``facegate operator clients create``
and asks the user pool domain's token endpoint (the stack's ``TokenUrl``) for a token with the OAuth
client-credentials grant, again before the last one expires and after a 401.

    session = CognitoSession.sign_in("officer-ruiz", password, user_pool_id=..., client_id=..., region=...)
    client = FacegateClient(api_url, auth=session)

    machine = ClientCredentials(client_id, client_secret, token_url)
    client = FacegateClient(api_url, auth=machine)

    # or, from the environment (FACEGATE_CLIENT_ID, FACEGATE_CLIENT_SECRET and FACEGATE_TOKEN_URL; or
    # FACEGATE_REFRESH_TOKEN and FACEGATE_USER_POOL_CLIENT_ID; or FACEGATE_TOKEN alone):
    client = FacegateClient()
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Protocol

REFRESH_MARGIN_S = 120.0
"""A token this close to its expiry is refreshed before it is sent."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as the error it is: urllib would follow it to any host, plain http
    included, with the request's Authorization header (a token, a client secret) still on it."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def open_credentialed(request: urllib.request.Request, timeout: float) -> Any:
    """``urlopen`` for a request carrying a credential: no redirect is followed (a 3xx is an HTTPError)."""
    return _OPENER.open(request, timeout=timeout)


API_SCOPE = "facegate/api"
"""The one scope of the tenant API's resource server."""


class AuthError(Exception):
    """Signing in or refreshing a token failed (wrong password, disabled user, revoked refresh token,
    an unknown or disabled machine client)."""


class TokenProvider(Protocol):
    def token(self) -> str:
        """A token to send now."""
        ...

    def expired(self, token: str) -> None:
        """The API refused ``token`` (401): the next :meth:`token` must be a new one, if it can."""
        ...


class StaticToken:
    """A token the caller manages (``FACEGATE_TOKEN`` alone): sent as it is, never refreshed."""

    def __init__(self, token: str) -> None:
        self._token = token

    def token(self) -> str:
        return self._token

    def expired(self, token: str) -> None:
        return None


def _expiry(jwt: str) -> float:
    """A JWT's ``exp`` (read, not verified: the API verifies; this only decides when to refresh)."""
    try:
        payload = jwt.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return 0.0


def cognito_endpoint(region: str, endpoint: str | None = None) -> str:
    """Where the refresh token goes: ``endpoint``, else ``AWS_ENDPOINT_URL_COGNITO_IDP`` (a local stack
    sets it), else the region's Cognito. Never the general ``AWS_ENDPOINT_URL`` (often a proxy or another
    emulator: the refresh token is a long-lived credential), and plain http only to this machine."""
    url = (endpoint or os.environ.get("AWS_ENDPOINT_URL_COGNITO_IDP") or "").strip()
    url = url or f"https://cognito-idp.{region}.amazonaws.com"
    return _credential_url(url, "Cognito's endpoint").rstrip("/") + "/"


def _credential_url(url: str, what: str) -> str:
    """A URL a credential may be sent to: https, or plain http only to this machine (a local stack)."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "https" and not (
        parsed.scheme == "http" and parsed.hostname in ("127.0.0.1", "localhost", "::1")
    ):
        raise AuthError(f"{what} must be https (or http on this machine), not {url[:80]!r}")
    return url


class CognitoSession:
    """A person's sign-in: an access token, refreshed with the refresh token when it nears its expiry."""

    def __init__(
        self,
        *,
        client_id: str,
        refresh_token: str,
        access_token: str | None = None,
        region: str | None = None,
        endpoint: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.client_id = client_id
        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.endpoint = cognito_endpoint(self.region, endpoint)
        self.timeout = timeout
        self._refresh_token = refresh_token
        self._access_token = access_token
        self._lock = threading.Lock()

    @classmethod
    def sign_in(
        cls,
        username: str,
        password: str,
        *,
        user_pool_id: str,
        client_id: str,
        region: str | None = None,
        endpoint: str | None = None,
        new_password: str | None = None,
    ) -> CognitoSession:
        """Sign in with SRP (``pycognito``'s implementation, through boto3's Cognito client).
        ``new_password``: a first sign-in with the temporary password an operator's invitation gave
        (Cognito's ``NEW_PASSWORD_REQUIRED``) sets it."""
        try:
            import boto3
            from botocore import UNSIGNED
            from botocore.config import Config
            from pycognito.aws_srp import AWSSRP
        except ImportError as exc:
            raise AuthError("signing in with a password needs pycognito: pip install 'facegate-sdk[srp]'") from exc
        region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        idp = boto3.client(
            "cognito-idp",
            region_name=region,
            endpoint_url=endpoint,
            # InitiateAuth and RespondToAuthChallenge are unsigned: no AWS credentials are needed.
            config=Config(signature_version=UNSIGNED),
        )
        srp = AWSSRP(username=username, password=password, pool_id=user_pool_id, client_id=client_id, client=idp)
        from pycognito.exceptions import ForceChangePasswordException

        try:
            try:
                result = srp.authenticate_user()["AuthenticationResult"]
            except ForceChangePasswordException:
                if new_password is None:
                    raise AuthError(f"{username} signs in for the first time: choose a new password") from None
                result = srp.set_new_password_challenge(new_password)["AuthenticationResult"]
        except AuthError:
            raise
        except Exception as exc:  # pycognito raises boto3's errors and its own challenge exceptions
            raise AuthError(f"signing in as {username} failed: {exc}") from exc
        return cls(
            client_id=client_id,
            refresh_token=result["RefreshToken"],
            access_token=result["AccessToken"],
            region=region,
            endpoint=cognito_endpoint(region, endpoint),
        )

    @property
    def refresh_token(self) -> str:
        return self._refresh_token

    def token(self) -> str:
        with self._lock:
            if self._access_token is None or _expiry(self._access_token) - time.time() < REFRESH_MARGIN_S:
                self._access_token = self._refresh()
            return self._access_token

    def expired(self, token: str) -> None:
        with self._lock:
            if self._access_token == token:  # a thread that refreshed meanwhile keeps its new token
                self._access_token = None

    def _refresh(self) -> str:
        body = json.dumps(
            {
                "AuthFlow": "REFRESH_TOKEN_AUTH",
                "ClientId": self.client_id,
                "AuthParameters": {"REFRESH_TOKEN": self._refresh_token},
            }
        ).encode()
        request = urllib.request.Request(
            self.endpoint,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/x-amz-json-1.1",
                "X-Amz-Target": "AWSCognitoIdentityProviderService.InitiateAuth",
            },
        )
        try:
            with open_credentialed(request, self.timeout) as response:
                answer: dict[str, Any] = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise AuthError(f"refreshing the token failed ({exc.code}): {detail}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise AuthError(f"refreshing the token failed: {exc}") from None
        token = (answer.get("AuthenticationResult") or {}).get("AccessToken")
        if not isinstance(token, str):
            raise AuthError("Cognito's answer carries no access token")
        return token


class ClientCredentials:
    """A machine's sign-in: OAuth client credentials at the user pool domain's token endpoint (the
    stack's ``TokenUrl``), a new access token asked for when the last nears its expiry or after a 401.
    The secret goes to ``token_url`` only (https, or http on this machine), in an HTTP Basic header."""

    def __init__(
        self, client_id: str, client_secret: str, token_url: str, *, scope: str = API_SCOPE, timeout: float = 10.0
    ) -> None:
        if not client_id or not client_secret:
            raise AuthError("a machine client needs its client id and secret (facegate operator clients create)")
        self.client_id = client_id
        self.token_url = _credential_url(token_url.strip(), "the token endpoint")
        self.scope = scope
        self.timeout = timeout
        self._secret = client_secret
        self._access_token: str | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the secret
        return f"ClientCredentials(client_id={self.client_id!r}, token_url={self.token_url!r})"

    def token(self) -> str:
        with self._lock:
            if self._access_token is None or _expiry(self._access_token) - time.time() < REFRESH_MARGIN_S:
                self._access_token = self._request()
            return self._access_token

    def expired(self, token: str) -> None:
        with self._lock:
            if self._access_token == token:
                self._access_token = None

    def _request(self) -> str:
        basic = base64.b64encode(
            f"{urllib.parse.quote(self.client_id, safe='')}:{urllib.parse.quote(self._secret, safe='')}".encode()
        ).decode("ascii")
        request = urllib.request.Request(
            self.token_url,
            data=urllib.parse.urlencode({"grant_type": "client_credentials", "scope": self.scope}).encode(),
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Basic {basic}"},
        )
        try:
            with open_credentialed(request, self.timeout) as response:
                answer: dict[str, Any] = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                problem = json.loads(exc.read())
                detail = f"{problem.get('error')}: {problem.get('error_description') or ''}".strip(": ")
            except (ValueError, AttributeError):
                detail = exc.reason
            raise AuthError(f"the token endpoint refused client {self.client_id} ({exc.code}): {detail}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise AuthError(f"asking for a token failed: {exc}") from None
        token = answer.get("access_token")
        if not isinstance(token, str):
            raise AuthError("the token endpoint's answer carries no access token")
        return token


def from_environment(token: str | None = None) -> TokenProvider | None:
    """What the environment names: a machine client (``FACEGATE_CLIENT_ID``, ``FACEGATE_CLIENT_SECRET``,
    ``FACEGATE_TOKEN_URL``), a person's refreshable session (``FACEGATE_REFRESH_TOKEN`` and
    ``FACEGATE_USER_POOL_CLIENT_ID``, with ``FACEGATE_TOKEN`` as its first token), or a fixed token
    (``FACEGATE_TOKEN`` alone); ``None`` when it names none of them."""
    token = token or os.environ.get("FACEGATE_TOKEN") or None
    machine = [os.environ.get(k) or "" for k in ("FACEGATE_CLIENT_ID", "FACEGATE_CLIENT_SECRET", "FACEGATE_TOKEN_URL")]
    refresh = os.environ.get("FACEGATE_REFRESH_TOKEN")
    if any(machine):
        if not all(machine):
            raise AuthError("a machine client needs FACEGATE_CLIENT_ID, FACEGATE_CLIENT_SECRET and FACEGATE_TOKEN_URL")
        if token or refresh:  # two identities: acting as either could put the wrong actor on the record
            raise AuthError(
                "the environment names a machine client and a person's token: unset FACEGATE_TOKEN and "
                "FACEGATE_REFRESH_TOKEN, or FACEGATE_CLIENT_ID, FACEGATE_CLIENT_SECRET and FACEGATE_TOKEN_URL"
            )
        return ClientCredentials(*machine)
    client_id = os.environ.get("FACEGATE_USER_POOL_CLIENT_ID")
    if refresh and client_id:
        return CognitoSession(client_id=client_id, refresh_token=refresh, access_token=token)
    return StaticToken(token) if token else None
