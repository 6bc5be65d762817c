"""The tenant API on loopback: API Gateway's part, played from the deployed API's own OpenAPI body.

Routes, path parameters and which Lambda function serves each route come from the body SAM generated
for ``TenantApi``; a route secured by the Cognito authorizer needs ``Authorization: <token>``, which is
verified as API Gateway does: RS256 signature against the user pool's keys, issuer, expiry, and, since
the authorizer names scopes, an access token (``token_use: access``) carrying one of them (an ID token,
or an access token without the scope, is 401). Its claims are handed to the function in
``requestContext.authorizer.claims``. The function is invoked through Lambda (the local cloud's adapter
runs the real handler) with the REST proxy event, and its proxy response becomes the HTTP response.

The same server answers ``POST /oauth2/token``, the user pool domain's client-credentials grant, which
moto does not serve (:func:`facegate.localcloud.cognito.client_credentials`).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, unquote_plus, urlsplit

if TYPE_CHECKING:
    from facegate.localcloud.cloud import LocalCloud

_FUNCTION_IN_URI: Final = re.compile(r"functions/(?P<arn>arn:[^/]+)/invocations$")
MAX_BODY: Final = 10 * 1024 * 1024  # API Gateway's payload limit


class UnauthorizedError(Exception):
    pass


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    function_arn: str
    authorizer: str | None
    scopes: tuple[str, ...] = ()


def routes_of(body: dict[str, Any]) -> list[Route]:
    """Every (method, path) of an OpenAPI body with an ``aws_proxy`` Lambda integration."""
    out = []
    for template, methods in body.get("paths", {}).items():
        regex = "^" + re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$"
        for method, spec in methods.items():
            integration = spec.get("x-amazon-apigateway-integration", {})
            found = _FUNCTION_IN_URI.search(str(integration.get("uri", "")))
            if integration.get("type") != "aws_proxy" or found is None:
                raise ValueError(f"{method.upper()} {template}: only Lambda proxy integrations are served locally")
            security = spec.get("security") or []
            authorizer = next(iter(security[0]), None) if security else None
            scopes = tuple(security[0][authorizer] or ()) if authorizer is not None else ()
            out.append(Route(method.upper(), template, re.compile(regex), found["arn"], authorizer, scopes))
    return out


class TokenVerifier:
    """What API Gateway's Cognito authorizer checks on a token, against the local user pool: with scopes
    on the method, an access token of the pool (any of its app clients) carrying one of them; without,
    an ID token issued to one of ``client_ids``."""

    def __init__(self, region: str, user_pool_id: str, client_ids: set[str]) -> None:
        from joserfc.jwk import KeySet
        from moto.utilities.utils import load_resource

        self.keys = KeySet.import_key_set(load_resource("cognitoidp/resources/jwks-public.json"))
        self.issuer = f"https://cognito-idp.{region}.amazonaws.com/{user_pool_id}"
        self.client_ids = client_ids

    def claims(self, token: str, scopes: tuple[str, ...] = ()) -> dict[str, Any]:
        from joserfc import jwt
        from joserfc.errors import JoseError

        try:
            decoded = jwt.decode(token.removeprefix("Bearer ").strip(), self.keys, algorithms=["RS256"])
        except (JoseError, ValueError) as exc:
            raise UnauthorizedError(f"invalid token: {exc}") from exc
        claims = dict(decoded.claims)
        if claims.get("iss") != self.issuer:
            raise UnauthorizedError("not a token of this user pool")
        if scopes:
            if claims.get("token_use") != "access":
                raise UnauthorizedError("not an access token")
            if not set(str(claims.get("scope", "")).split()) & set(scopes):
                raise UnauthorizedError("the token carries none of the method's scopes")
        elif claims.get("token_use") != "id" or claims.get("aud") not in self.client_ids:
            raise UnauthorizedError("not an ID token of this API's clients")
        try:
            expires = float(claims.get("exp", 0))
        except (TypeError, ValueError):
            expires = 0.0
        if expires <= time.time():
            raise UnauthorizedError("the token has expired")
        return claims


class LocalApi:
    def __init__(self, cloud: LocalCloud, logical: str = "TenantApi") -> None:
        assert cloud.stack is not None
        self.cloud = cloud
        self.routes = routes_of(cloud.stack.apis[logical])
        self.gateway_responses: dict[str, Any] = cloud.stack.apis[logical].get(
            "x-amazon-apigateway-gateway-responses", {}
        )
        api_id = cloud.stack.refs[logical]
        self.stage = cloud.stack.stages.get(api_id, "v1")
        self.verifier = TokenVerifier(
            cloud.stack.region, cloud.outputs["UserPoolId"], {str(cloud.outputs["UserPoolClientId"])}
        )
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "the API is not being served"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/{self.stage}"

    @property
    def token_url(self) -> str:
        """The user pool domain's token endpoint, as this server answers it."""
        assert self._server is not None, "the API is not being served"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/oauth2/token"

    def start(self, port: int = 0) -> str:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet: the demo prints what matters
                return

            def _serve(self) -> None:
                raw = (self.headers.get("Content-Length") or "0").strip()
                length = int(raw) if raw.isdigit() else -1
                if length < 0:  # API Gateway refuses a request it cannot frame; so does this server
                    status, headers, body = _json(400, {"message": "Bad Request: invalid Content-Length"})
                    self.close_connection = True
                elif length > MAX_BODY:  # refused unread (API Gateway's 10 MB limit); what is sent is drained
                    self._drain(length)
                    status, headers, body = api.gateway("REQUEST_TOO_LARGE", 413, "Request Too Long", "local")
                    self.close_connection = True
                else:
                    status, headers, body = api.dispatch(
                        self.command, self.path, dict(self.headers), self.rfile.read(length)
                    )
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _drain(self, length: int) -> None:
                """Read and drop what the client sends of an oversized body (so it reads the 413 instead of
                a reset connection), stopping when it pauses: a length it never means to send is not waited for."""

                self.connection.settimeout(1.0)
                left = length
                try:
                    while left > 0:
                        chunk = self.rfile.read(min(left, 1 << 20))
                        if not chunk:
                            break
                        left -= len(chunk)
                except (TimeoutError, OSError):
                    return

            # Every method reaches dispatch, as every method reaches API Gateway: one the API does not
            # define is its 403 "Missing Authentication Token", never this server's own 501 page.
            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_TRACE = _serve  # noqa: N815

            def __getattr__(self, name: str) -> Any:  # any other method token (QUERY, PROPFIND, ...)
                if name.startswith("do_"):
                    return self._serve
                raise AttributeError(name)

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self._server.serve_forever, name="facegate-local-api", daemon=True).start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def dispatch(
        self, method: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(raw_path)
        prefix = f"/{self.stage}"
        request_id = str(uuid.uuid4())
        if parts.path == "/oauth2/token":
            return self.token(method, headers, body)
        if not parts.path.startswith(prefix + "/"):
            return self.gateway("MISSING_AUTHENTICATION_TOKEN", 403, "Missing Authentication Token", request_id)
        path = parts.path[len(prefix) :]
        matches = [(r, m) for r in self.routes if (m := r.pattern.match(path))]
        route_match = next(((r, m) for r, m in matches if r.method == method), None)
        if route_match is None:
            return self.gateway("MISSING_AUTHENTICATION_TOKEN", 403, "Missing Authentication Token", request_id)
        if len(body) > MAX_BODY:
            return self.gateway("REQUEST_TOO_LARGE", 413, "Request Too Long", request_id)
        route, match = route_match
        claims: dict[str, Any] = {}
        if route.authorizer is not None:
            token = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
            try:
                claims = self.verifier.claims(token, route.scopes)
            except UnauthorizedError:
                return self.gateway("UNAUTHORIZED", 401, "Unauthorized", request_id)
        event = {
            "resource": route.template,
            "path": path,
            "httpMethod": method,
            "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": {k: v[-1] for k, v in parse_qs(parts.query).items()} or None,
            "pathParameters": match.groupdict() or None,
            "stageVariables": None,
            **_proxy_body(body),
            "requestContext": {
                "resourcePath": route.template,
                "httpMethod": method,
                "path": parts.path,
                "stage": self.stage,
                "requestId": request_id,
                "authorizer": {"claims": {k: str(v) for k, v in claims.items()}},
                "identity": {"sourceIp": "127.0.0.1"},
            },
        }
        response = self.cloud.client("lambda").invoke(
            FunctionName=route.function_arn, Payload=json.dumps(event).encode()
        )
        payload = json.loads(response["Payload"].read() or b"{}")
        if response.get("FunctionError"):
            import sys  # the function's error is the operator's to read (CloudWatch there), never the caller's

            print(f"local API: {route.template} failed: {json.dumps(payload)[:2000]}", file=sys.stderr)
            return self.gateway("DEFAULT_5XX", 502, "Internal server error", request_id)
        out_headers = {k: str(v) for k, v in (payload.get("headers") or {}).items()}
        # A REST proxy integration may answer either form; API Gateway sends both (Powertools uses the
        # multi-value one, so without this every response would lose its Content-Type).
        for key, values in (payload.get("multiValueHeaders") or {}).items():
            out_headers[key] = ", ".join(str(v) for v in values)
        text = payload.get("body") or ""
        return int(payload.get("statusCode", 200)), out_headers, text.encode("utf-8")

    def token(self, method: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        """``POST /oauth2/token`` with ``grant_type=client_credentials``: the client authenticates with
        HTTP Basic (or ``client_id``/``client_secret`` in the form), as Cognito's endpoint accepts."""
        import base64
        import binascii

        from facegate.localcloud import adapter, cognito

        def error(kind: str, text: str, status: int = 400) -> tuple[int, dict[str, str], bytes]:
            return _json(status, {"error": kind, "error_description": text})

        if method != "POST":
            return error("invalid_request", "the token endpoint takes POST", 405)
        form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return error("unsupported_grant_type", "this endpoint serves grant_type=client_credentials")
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        if auth.lower().startswith("basic "):
            try:
                pair = base64.b64decode(auth[6:].strip(), validate=True).decode()
                client_id, _, secret = (unquote_plus(part) for part in pair.partition(":"))  # RFC 6749 2.3.1
            except (binascii.Error, UnicodeDecodeError):
                return error("invalid_client", "malformed Basic credentials", 401)
        active = adapter._active
        if active is None:
            return error("invalid_request", "the local cloud is not active", 503)
        assert self.cloud.stack is not None
        try:
            answer = cognito.client_credentials(
                active.invoke, self.cloud.stack.region, client_id, secret, form.get("scope")
            )
        except cognito.OAuthError as exc:
            return error(exc.error, exc.description, exc.status)
        return _json(200, answer)

    def gateway(self, kind: str, status: int, message: str, request_id: str) -> tuple[int, dict[str, str], bytes]:
        """API Gateway's own error response of ``kind`` as the deployed API defines it (its
        ``GatewayResponses``: status, headers, template), falling back as API Gateway does to
        DEFAULT_4XX or DEFAULT_5XX, and to its bare ``{"message": ...}`` where none is defined."""
        fallback = "DEFAULT_5XX" if status >= 500 else "DEFAULT_4XX"
        spec = self.gateway_responses.get(kind) or self.gateway_responses.get(fallback)
        if spec is None:
            return _json(status, {"message": message})
        headers = {"Content-Type": "application/json"}
        for key, value in (spec.get("responseParameters") or {}).items():
            if key.startswith("gatewayresponse.header.") and value.startswith("'") and value.endswith("'"):
                headers[key.removeprefix("gatewayresponse.header.")] = value[1:-1]
        template = (spec.get("responseTemplates") or {}).get("application/json")
        if template is None:
            body = json.dumps({"message": message})
        else:  # the context variables these templates use; API Gateway's VTL knows many more
            body = (
                template.replace("$context.error.messageString", json.dumps(message))
                .replace("$context.error.message", message)
                .replace("$context.error.responseType", kind)
                .replace("$context.requestId", request_id)
            )
        return int(spec.get("statusCode") or status), headers, body.encode()


def _proxy_body(body: bytes) -> dict[str, Any]:
    """The proxy event's body: text when it is UTF-8, else base64 with ``isBase64Encoded`` (as API Gateway
    passes bytes it cannot pass as text), so a caller's stray bytes reach the function as its 400."""
    if not body:
        return {"body": None, "isBase64Encoded": False}
    try:
        return {"body": body.decode("utf-8"), "isBase64Encoded": False}
    except UnicodeDecodeError:
        import base64

        return {"body": base64.b64encode(body).decode("ascii"), "isBase64Encoded": True}


def _json(status: int, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()
