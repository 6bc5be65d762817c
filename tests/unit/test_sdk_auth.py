"""The SDK's tokens: where a refresh token may go, and one refresh for many threads."""

from __future__ import annotations

import base64
import json
import time

import pytest
from facegate_sdk.auth import AuthError, CognitoSession, StaticToken, cognito_endpoint, from_environment


def _jwt(exp: float) -> str:
    body = base64.urlsafe_b64encode(json.dumps({"exp": exp}).encode()).decode().rstrip("=")
    return f"e30.{body}.sig"


def test_a_refresh_token_goes_only_to_cognitos_own_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://proxy.example:8080")  # another emulator, a proxy
    monkeypatch.delenv("AWS_ENDPOINT_URL_COGNITO_IDP", raising=False)
    assert cognito_endpoint("eu-west-2") == "https://cognito-idp.eu-west-2.amazonaws.com/"
    monkeypatch.setenv("AWS_ENDPOINT_URL_COGNITO_IDP", "http://127.0.0.1:4566")
    assert cognito_endpoint("eu-west-2") == "http://127.0.0.1:4566/"
    for bad in ("http://cognito.example", "ftp://127.0.0.1", "file:///etc/passwd"):
        with pytest.raises(AuthError, match="https"):
            cognito_endpoint("eu-west-2", bad)


def test_a_401_clears_only_the_token_it_was_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """A thread whose call met a 401 with an old token must not throw away the new one another thread
    just refreshed (that would refresh once per thread, each holding the lock)."""
    monkeypatch.delenv("AWS_ENDPOINT_URL_COGNITO_IDP", raising=False)
    fresh = _jwt(time.time() + 3600)
    session = CognitoSession(client_id="c", refresh_token="r", access_token=fresh)
    session.expired(_jwt(time.time() - 10))  # an older token than the one held
    assert session.token() == fresh  # no refresh was needed (none could reach Cognito here)
    session.expired(fresh)
    assert session._access_token is None


def test_the_environment_names_a_refreshing_session_or_a_fixed_token(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FACEGATE_TOKEN", "FACEGATE_REFRESH_TOKEN", "FACEGATE_USER_POOL_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    assert from_environment() is None
    monkeypatch.setenv("FACEGATE_TOKEN", "t")
    assert isinstance(from_environment(), StaticToken)
    monkeypatch.setenv("FACEGATE_REFRESH_TOKEN", "r")
    monkeypatch.setenv("FACEGATE_USER_POOL_CLIENT_ID", "c")
    assert isinstance(from_environment(), CognitoSession)


MACHINE = ("FACEGATE_CLIENT_ID", "FACEGATE_CLIENT_SECRET", "FACEGATE_TOKEN_URL")


def _clear(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FACEGATE_TOKEN", "FACEGATE_REFRESH_TOKEN", "FACEGATE_USER_POOL_CLIENT_ID", *MACHINE):
        monkeypatch.delenv(name, raising=False)


def test_the_environment_names_a_machine_client_whole_and_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine's three variables make a ClientCredentials; one missing is an error naming all three,
    and a machine beside a person's token is refused rather than guessed (the actor goes on the record)."""
    from facegate_sdk.auth import ClientCredentials

    _clear(monkeypatch)
    monkeypatch.setenv("FACEGATE_CLIENT_ID", "abc")
    with pytest.raises(AuthError, match="FACEGATE_CLIENT_SECRET and FACEGATE_TOKEN_URL"):
        from_environment()
    monkeypatch.setenv("FACEGATE_CLIENT_SECRET", "s3cret-value")
    monkeypatch.setenv("FACEGATE_TOKEN_URL", "https://facegate-x.auth.eu-west-2.amazoncognito.com/oauth2/token")
    machine = from_environment()
    assert isinstance(machine, ClientCredentials)
    assert "s3cret-value" not in repr(machine)
    monkeypatch.setenv("FACEGATE_TOKEN", "a-person's")
    with pytest.raises(AuthError, match="machine client and a person's token"):
        from_environment()


@pytest.mark.parametrize(
    "url",
    ["http://auth.example/oauth2/token", "ftp://127.0.0.1/oauth2/token", "file:///etc/passwd", "//host/token"],
)
def test_a_client_secret_goes_only_to_an_https_or_loopback_token_endpoint(url: str) -> None:
    from facegate_sdk.auth import ClientCredentials

    with pytest.raises(AuthError, match="https"):
        ClientCredentials("abc", "s3cret", url)
    assert ClientCredentials("abc", "s3cret", "http://127.0.0.1:8787/oauth2/token").token_url.startswith("http://")
    with pytest.raises(AuthError, match="client id and secret"):
        ClientCredentials("abc", "", "https://x.example/oauth2/token")


def test_a_machine_401_clears_only_the_token_it_was_for() -> None:
    from facegate_sdk.auth import ClientCredentials

    machine = ClientCredentials("abc", "s3cret", "https://x.example/oauth2/token")
    fresh = _jwt(time.time() + 900)
    machine._access_token = fresh
    machine.expired(_jwt(time.time() - 10))
    assert machine.token() == fresh  # no request was needed (none could reach the endpoint here)
    machine.expired(fresh)
    assert machine._access_token is None


def test_a_credential_never_follows_a_redirect() -> None:
    """urllib would follow a 302 from the token endpoint to any host, plain http included, with the
    Authorization header (the client secret) on it: the SDK answers the redirect as an error instead."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from facegate_sdk.auth import ClientCredentials

    seen: list[tuple[str, str | None]] = []

    class Redirecting(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return

        def _answer(self) -> None:
            seen.append((self.path, self.headers.get("Authorization")))
            if self.path.startswith("/oauth2/token"):
                self.send_response(302)
                self.send_header("Location", f"http://127.0.0.1:{self.server.server_address[1]}/stolen")
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        do_GET = do_POST = _answer  # noqa: N815

    server = HTTPServer(("127.0.0.1", 0), Redirecting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        machine = ClientCredentials("cid", "TOP-SECRET", f"http://127.0.0.1:{server.server_address[1]}/oauth2/token")
        with pytest.raises(AuthError, match="302"):
            machine.token()
    finally:
        server.shutdown()
    assert [path for path, _ in seen] == ["/oauth2/token"]  # /stolen was never asked for
