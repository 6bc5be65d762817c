"""What Lambda's runtime gives each function and the local cloud, running every function in one process,
must give each one itself: its own environment and its own SDK session.

In Lambda a function's process sees exactly its configured variables plus what the runtime sets (the
region, the execution role's credentials, the function's name, ...), and nothing of any other function.
Here every function shares the test's process, so :func:`install` makes ``os.environ`` per thread:
inside :func:`inside` (one invocation, one handler import, one Batch job) a thread sees only its
container's variables, and ``boto3``'s default session is the container's own (botocore caches
credentials on a session, so a shared one would sign every function's calls with whichever credentials
it met first). Outside, a thread sees the process's environment, unchanged.

What is not isolated: C libraries read the process environment (``getenv``), so a variable a handler
sets is also written there, and threads a handler starts itself see the process's environment.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3


@dataclass(eq=False)
class Container:
    """One function's (or one Batch job's) execution environment, warm across its invocations."""

    name: str
    env: dict[str, str]
    """Exactly what the code sees in ``os.environ`` (its own writes persist, as in a warm container)."""
    _session: Any = field(default=None, repr=False)

    @property
    def access_key(self) -> str | None:
        """The execution role's access key the runtime put in the environment."""
        return self.env.get("AWS_ACCESS_KEY_ID")

    def session(self) -> Any:
        """``boto3``'s default session inside this container (created, and its credentials resolved, inside it)."""
        if self._session is None:
            self._session = boto3.session.Session()
        return self._session


class ThreadEnviron(MutableMapping[str, str]):
    """``os.environ`` that shows a thread inside a container that container's variables only."""

    def __init__(self, process: MutableMapping[str, str]) -> None:
        self.process = process
        self._local = threading.local()

    @property
    def container(self) -> Container | None:
        return getattr(self._local, "container", None)

    def _view(self) -> MutableMapping[str, str]:
        container = self.container
        return self.process if container is None else container.env

    def __getitem__(self, key: str) -> str:
        return self._view()[key]

    def __setitem__(self, key: str, value: str) -> None:
        view = self._view()
        if view is not self.process:
            os.putenv(key, value)  # for C libraries (OpenCV reads its image limits with getenv)
        view[key] = value

    def __delitem__(self, key: str) -> None:
        del self._view()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._view()))

    def __len__(self) -> int:
        return len(self._view())

    def copy(self) -> dict[str, str]:
        return dict(self._view())

    def __repr__(self) -> str:
        where = f"container {self.container.name}" if self.container else "the process"
        return f"ThreadEnviron({where}, {len(self)} variables)"


_lock = threading.Lock()
_installed: ThreadEnviron | None = None
_users = 0
_original_default_session: Any = None


def install() -> ThreadEnviron:
    """Make ``os.environ`` and ``boto3``'s default session per container (once per process; counted)."""
    global _installed, _users, _original_default_session
    with _lock:
        _users += 1
        if _installed is None:
            _installed = ThreadEnviron(os.environ)
            # Replacing the mapping (not its contents) is the point: the process's variables stay as they are.
            os.environ = _installed  # type: ignore[assignment]  # noqa: B003
            _original_default_session = boto3._get_default_session

            def default_session() -> Any:
                container = _installed.container if _installed is not None else None
                return container.session() if container is not None else _original_default_session()

            boto3._get_default_session = default_session
        return _installed


def uninstall() -> None:
    """Undo :func:`install` once its last user is done."""
    global _installed, _users
    with _lock:
        _users = max(0, _users - 1)
        if _users or _installed is None:
            return
        os.environ = _installed.process  # type: ignore[assignment]  # noqa: B003
        boto3._get_default_session = _original_default_session
        _installed = None


def current() -> Container | None:
    """The container the calling thread is inside, if any."""
    return _installed.container if _installed is not None else None


@contextmanager
def inside(container: Container) -> Iterator[Container]:
    """Run the block as ``container``'s code: its environment, its SDK session (nesting restores the outer)."""
    environ = _installed
    if environ is None:
        raise RuntimeError("the local cloud's runtime is not installed (runtime.install())")
    outer = environ.container
    environ._local.container = container
    try:
        yield container
    finally:
        environ._local.container = outer


def environment_of(env: Mapping[str, str]) -> dict[str, str]:
    """A container's variables: strings only, as Lambda and ECS pass them."""
    return {str(k): str(v) for k, v in env.items()}
