"""Tenant-scoped sessions: the second wall around each tenant's rows, after the keys themselves.

Every function's own role may not read or write the tenant tables. To touch them, a request assumes
``FACEGATE_TENANT_ROLE_ARN`` with the session tag ``tenant_id=<the request's tenant>``; that role's
policy allows DynamoDB only where ``dynamodb:LeadingKeys`` is the tag (``<tenant>`` or
``<tenant>#...``). So even a bug that built another tenant's key in this process would be refused by
IAM. There is no silent fallback: without the variable a scope is refused with a validation error
naming it, unless the process opted out explicitly (``FACEGATE_TENANT_SESSIONS=process-credentials``:
unit tests and the vision-only CLI; refused in a deployed function or job, see
:class:`facegate.settings.TenantSessions`).

The credentials are cached per caller and tenant until shortly before they expire, and so are the
table connections built with them, so a warm container does not pay an ``AssumeRole`` or a new client
per request, and credentials one principal obtained are never used by another (the local cloud runs
every function in one process). pynamodb's connections live on the model classes, so a scope holds a
process-wide lock: Lambda runs one request at a time per container anyway, and concurrent scopes in
one process (the local cloud, threads) take turns instead of sharing a tenant's session.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from facegate.settings import TENANT_ROLE_VARIABLE, TenantSessions
from facegate.tenancy import check_tenant_id

ROLE_VARIABLE: Final = TENANT_ROLE_VARIABLE
TAG: Final = "tenant_id"
SESSION_SECONDS: Final = 900
REFRESH_BEFORE: Final = timedelta(minutes=2)


@dataclass
class _Session:
    access_key: str
    secret_key: str
    token: str | None
    expires: datetime
    connections: dict[type[Any], Any] = field(default_factory=dict)
    clients: dict[str, Any] = field(default_factory=dict)
    """boto3 clients signed with this session (``tenant_client``)."""


_lock = threading.RLock()
_current: list[_Session | None] = []
"""The session of each open scope (``None`` where the process's own credentials serve it)."""
_sessions: dict[tuple[str, str, str], _Session] = {}
"""(caller's access key, role, tenant) → the tenant session that caller obtained."""
_active: list[str] = []


def _assume(role_arn: str, tenant_id: str) -> _Session:
    import boto3

    creds = boto3.client("sts").assume_role(
        RoleArn=role_arn,
        RoleSessionName=f"{tenant_id}-{uuid.uuid4().hex[:8]}"[:64],
        DurationSeconds=SESSION_SECONDS,
        Tags=[{"Key": TAG, "Value": tenant_id}],
    )["Credentials"]
    expires = creds["Expiration"]
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    return _Session(creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"], expires)


def _session(role_arn: str, tenant_id: str, valid_for: timedelta = REFRESH_BEFORE) -> _Session:
    # Lambda and the local cloud put the function's credentials in its environment; elsewhere (an
    # instance profile) the process has one principal and the key is empty.
    key = (os.environ.get("AWS_ACCESS_KEY_ID", ""), role_arn, tenant_id)
    cached = _sessions.get(key)
    if cached is None or cached.expires - max(valid_for, REFRESH_BEFORE) <= datetime.now(UTC):
        cached = _sessions[key] = _assume(role_arn, tenant_id)
    return cached


def _models() -> tuple[Any, ...]:
    """The table models, imported on first use (pynamodb stays off Detect's cold start)."""
    from facegate.store.models import ALL_MODELS

    return tuple(ALL_MODELS)


def _use(session: _Session | None) -> None:
    for model in _models():
        meta = model.Meta
        meta.aws_access_key_id = session.access_key if session else None
        meta.aws_secret_access_key = session.secret_key if session else None
        meta.aws_session_token = session.token if session else None
        model._connection = session.connections.get(model) if session else None


@contextmanager
def tenant_scope(tenant_id: str, *, valid_for: timedelta | None = None) -> Iterator[None]:
    """Run the block with credentials that can reach only ``tenant_id``'s rows.

    Nested scopes must name the same tenant: crossing tenants inside a request is refused outright.
    ``valid_for``: the block's longest run (a long job's): a cached session ending sooner is replaced by a
    fresh one first (a session lasts :data:`SESSION_SECONDS`, so a block must end within that).

    Raises
    ------
    pydantic.ValidationError
        ``FACEGATE_TENANT_ROLE_ARN`` is missing and the process did not opt out (see the module docstring).
    """
    check_tenant_id(tenant_id)
    role_arn = TenantSessions.from_env().role_arn
    with _lock:
        if _active and _active[-1] != tenant_id:
            raise PermissionError(f"a scope for {_active[-1]} is open: {tenant_id} cannot be entered inside it")
        if not role_arn or _active:
            _active.append(tenant_id)
            _current.append(_current[-1] if _current else None)
            try:
                yield
            finally:
                _active.pop()
                _current.pop()
            return
        if valid_for is not None and valid_for > timedelta(seconds=SESSION_SECONDS - 30):
            raise ValueError(f"a tenant session lasts {SESSION_SECONDS} s: a block of {valid_for} cannot use one")
        saved = {model: model._connection for model in _models()}
        session = _session(role_arn, tenant_id, valid_for or REFRESH_BEFORE)
        _use(session)
        _active.append(tenant_id)
        _current.append(session)
        try:
            yield
        finally:
            _active.pop()
            _current.pop()
            for model in _models():  # keep this tenant's connections for its next request
                if model._connection is not None:
                    session.connections[model] = model._connection
            _use(None)
            for model, connection in saved.items():
                model._connection = connection


@contextmanager
def signed_with(access_key: str, secret_key: str, token: str | None = None) -> Iterator[None]:
    """Reach the tables with these credentials for the block, outside any tenant scope: the local
    cloud's administrator (see :meth:`facegate.localcloud.cloud.LocalCloud.admin`)."""
    with _lock:
        if _active:
            raise PermissionError(f"a scope for {_active[-1]} is open: leave it before signing as someone else")
        saved = {model: model._connection for model in _models()}
        _use(_Session(access_key, secret_key, token, datetime.max.replace(tzinfo=UTC)))
        try:
            yield
        finally:
            _use(None)
            for model, connection in saved.items():
                model._connection = connection


def current_tenant() -> str | None:
    """The tenant whose scope is open in this process, if any (for assertions and logs)."""
    with _lock:
        return _active[-1] if _active else None


def tenant_client(service: str, *, region: str | None = None) -> Any:
    """A boto3 client signed with the open scope's tenant session (the S3 objects only that tenant may
    read: its gallery snapshots); outside a tenant-role scope, the process's own credentials (unit tests,
    ``process-credentials``, built each time). Cached with the session, so a warm container builds it once.

    Raises
    ------
    PermissionError
        No tenant scope is open.
    """
    import boto3

    with _lock:
        if not _active:
            raise PermissionError("a tenant's objects are reached only inside its tenant scope")
        session = _current[-1]
        name = f"{service}:{region or ''}"
        if session is None:
            return boto3.client(service, region_name=region)
        client = session.clients.get(name)
        if client is None:
            client = session.clients[name] = boto3.client(
                service,
                region_name=region,
                aws_access_key_id=session.access_key,
                aws_secret_access_key=session.secret_key,
                aws_session_token=session.token,
            )
        return client
