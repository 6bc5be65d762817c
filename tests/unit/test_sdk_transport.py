"""The SDK's transport, as botocore's standard mode behaves: errors by kind, retries with backoff, no
``urllib`` error ever reaching the caller, configuration from the environment, waiters that back off.

The service here is a loopback HTTP server that answers a script of (status, headers, body) in order
and records what it was asked; the SDK under test is the real one, over real sockets. Sleeps are
recorded, not slept.

GIVEN a throttled or failing service WHEN a safe call (GET, DELETE) is made THEN it is retried up to
``max_attempts`` with exponential, jittered backoff (``Retry-After`` honoured), and the last answer
raised as its kind; GIVEN a POST that may have been carried out (500, 502) THEN it is sent once;
GIVEN no service at all THEN the error is :class:`FacegateConnectionError`.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from facegate_sdk import (
    BadRequestError,
    FacegateApiError,
    FacegateClient,
    FacegateConnectionError,
    ForbiddenError,
    NotFoundError,
    RefusedError,
    ServiceError,
    ThrottlingError,
    UnknownRequestError,
    WaiterError,
)

Answer = tuple[int, dict[str, str], Any]


def _problem(status: int, code: str, **extra: Any) -> Answer:
    body = {"type": f"urn:facegate:problem:{code}", "title": "t", "status": status, "detail": code, "code": code}
    return status, {"Content-Type": "application/problem+json"}, {**body, **extra}


class Scripted:
    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []


@pytest.fixture
def service() -> Iterator[tuple[Scripted, str]]:
    script = Scripted()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            script.seen.append((self.command, self.path, dict(self.headers), self.rfile.read(length)))
            status, headers, body = script.answers.pop(0) if script.answers else (200, {}, {})
            raw = json.dumps(body).encode()
            self.send_response(status)
            for k, v in {"Content-Type": "application/json", **headers}.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_DELETE = _answer  # noqa: N815 - http.server's method names

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield script, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _client(url: str, sleeps: list[float], **kw: Any) -> FacegateClient:
    return FacegateClient(url, "token", sleep=sleeps.append, **kw)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_a_get_is_retried_on_throttling_and_5xx_then_answers(service: tuple[Scripted, str], status: int) -> None:
    script, url = service
    script.answers = [_problem(status, "x"), _problem(status, "x"), (200, {}, {"request_id": "r", "status": "queued"})]
    sleeps: list[float] = []
    assert _client(url, sleeps).get_request("r")["status"] == "queued"
    assert len(script.seen) == 3
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.5
    assert 0 <= sleeps[1] <= 1.0


def test_the_last_attempt_raises_the_answer_of_its_kind(service: tuple[Scripted, str]) -> None:
    script, url = service
    script.answers = [_problem(503, "service.unavailable")] * 5
    sleeps: list[float] = []
    with pytest.raises(ServiceError) as failed:
        _client(url, sleeps, max_attempts=4).get_request("r")
    assert (failed.value.status, failed.value.code) == (503, "service.unavailable")
    assert len(script.seen) == 4
    assert len(sleeps) == 3


def test_retry_after_is_honoured(service: tuple[Scripted, str]) -> None:
    script, url = service
    status, headers, body = _problem(429, "request.throttled")
    script.answers = [(status, {**headers, "Retry-After": "7"}, body), (200, {}, {"status": "completed"})]
    sleeps: list[float] = []
    _client(url, sleeps).get_request("r")
    assert sleeps == [7.0]


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_post_that_may_have_been_carried_out_is_sent_once(service: tuple[Scripted, str], status: int) -> None:
    script, url = service
    script.answers = [_problem(status, "x"), (200, {}, {"request_id": "r2"})]
    with pytest.raises(ServiceError):
        _client(url, []).submit_search("g", b"img")
    assert len(script.seen) == 1  # a second search would be a second recognition, a second audit entry


@pytest.mark.parametrize("status", [429, 503])
def test_a_post_refused_before_it_ran_is_retried(service: tuple[Scripted, str], status: int) -> None:
    script, url = service
    script.answers = [_problem(status, "x"), (202, {}, {"request_id": "r2", "status": "submitted"})]
    assert _client(url, []).submit_search("g", b"img")["request_id"] == "r2"
    assert len(script.seen) == 2


@pytest.mark.parametrize(
    ("answer", "kind", "reasons"),
    [
        (_problem(400, "request.invalid"), BadRequestError, ["request.invalid"]),
        (_problem(403, "tenant.forbidden"), ForbiddenError, ["tenant.forbidden"]),
        (
            _problem(403, "policy.denied", decision={"reasons": [{"code": "use_case.not_approved"}]}),
            RefusedError,
            ["use_case.not_approved"],
        ),
        (_problem(404, "gallery.not_found"), NotFoundError, ["gallery.not_found"]),
        (_problem(404, "request.unknown"), UnknownRequestError, ["request.unknown"]),
        (_problem(429, "request.throttled"), ThrottlingError, ["request.throttled"]),
    ],
    ids=["400", "403", "403-refused", "404", "404-unknown", "429"],
)
def test_each_answer_is_an_error_of_its_kind_with_its_reason_codes(
    service: tuple[Scripted, str], answer: Answer, kind: type[FacegateApiError], reasons: list[str]
) -> None:
    script, url = service
    script.answers = [answer] * 3
    with pytest.raises(kind) as raised:
        _client(url, []).get_request("r")
    assert type(raised.value) is kind
    assert raised.value.reason_codes == reasons
    assert raised.value.problem["type"] == f"urn:facegate:problem:{answer[2]['code']}"


def test_a_body_that_is_not_json_is_still_an_api_error(service: tuple[Scripted, str]) -> None:
    script, url = service
    script.answers = [(502, {}, "<html>Bad Gateway</html>")]  # a JSON string, not an object
    with pytest.raises(ServiceError) as raised:
        _client(url, [], max_attempts=1).get_request("r")
    assert raised.value.status == 502


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_no_service_is_a_connection_error_not_a_urllib_one() -> None:
    sleeps: list[float] = []
    client = _client(f"http://127.0.0.1:{_closed_port()}", sleeps, max_attempts=3, timeout=2)
    with pytest.raises(FacegateConnectionError, match="after 3 attempt"):
        client.get_request("r")
    with pytest.raises(FacegateConnectionError):  # refused: nothing was sent, so even a POST retries
        client.submit_search("g", b"img")
    assert len(sleeps) == 4


def test_configuration_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEGATE_API_URL", "https://api.example/prod/")
    monkeypatch.setenv("FACEGATE_TOKEN", "tok")
    monkeypatch.setenv("FACEGATE_MAX_ATTEMPTS", "5")
    monkeypatch.setenv("FACEGATE_TIMEOUT", "12.5")
    client = FacegateClient()
    assert (client.endpoint, client.token, client.max_attempts, client.timeout) == (
        "https://api.example/prod",
        "tok",
        5,
        12.5,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FACEGATE_TOKEN": "t"}, "FACEGATE_API_URL"),
        ({"FACEGATE_API_URL": "https://a"}, "FACEGATE_TOKEN"),
        ({"FACEGATE_API_URL": "ftp://a", "FACEGATE_TOKEN": "t"}, "http"),
        ({"FACEGATE_API_URL": "https://a", "FACEGATE_TOKEN": "t", "FACEGATE_MAX_ATTEMPTS": "0"}, "at least 1"),
        ({"FACEGATE_API_URL": "https://a", "FACEGATE_TOKEN": "t", "FACEGATE_MAX_ATTEMPTS": "x"}, "whole number"),
    ],
)
def test_missing_or_bad_configuration_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name in ("FACEGATE_API_URL", "FACEGATE_TOKEN", "FACEGATE_MAX_ATTEMPTS", "FACEGATE_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ValueError, match=message):
        FacegateClient()


def test_the_waiter_backs_off_until_an_outcome(service: tuple[Scripted, str]) -> None:
    script, url = service
    pending: list[Answer] = [
        (200, {}, {"request_id": "r", "status": s}) for s in ("queued", "queued", "running", "running")
    ]
    script.answers = [*pending, (200, {}, {"request_id": "r", "status": "completed", "result": {}})]
    sleeps: list[float] = []
    assert _client(url, sleeps).wait_for_request("r", poll=0.2, max_poll=0.5)["status"] == "completed"
    assert sleeps == pytest.approx([0.2, 0.3, 0.45, 0.5])


def test_the_waiter_says_unknown_at_once(service: tuple[Scripted, str]) -> None:
    script, url = service
    script.answers = [_problem(404, "request.unknown")]
    sleeps: list[float] = []
    with pytest.raises(UnknownRequestError):
        _client(url, sleeps).wait_for_request("nope")
    assert sleeps == []
    assert len(script.seen) == 1


def test_the_waiter_gives_up_with_a_timeout_error(
    service: tuple[Scripted, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    script, url = service
    script.answers = [(200, {}, {"request_id": "r", "status": "running"})] * 50
    clock = iter(range(0, 1000, 10))
    monkeypatch.setattr("facegate_sdk.time.monotonic", lambda: float(next(clock)))
    with pytest.raises(WaiterError, match="no outcome after 25"):
        _client(url, []).wait_for_request("r", timeout=25)
    assert issubclass(WaiterError, TimeoutError)
