"""``facegate local serve`` started as a separate process, for the tests that reach it from outside."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import pytest

ROOT: Final = Path(__file__).resolve().parents[1]
FACEGATE: Final = [sys.executable, "-m", "facegate.cli"]
STARTUP_S: Final = 240.0


def clean_environment() -> dict[str, str]:
    """This process's variables without any AWS or facegate connection (the caches and models stay)."""
    kept = {"FACEGATE_CACHE_DIR", "FACEGATE_MODEL_DIR", "FACEGATE_DEBUG"}
    return {k: v for k, v in os.environ.items() if k in kept or not k.startswith(("AWS_", "FACEGATE_"))}


@contextmanager
def local_serve(folder: Path, *args: str) -> Iterator[dict[str, Any]]:
    """Start ``facegate local serve --write-env folder`` on free ports and yield its ``state.json``
    (plus ``log``, its stdout, and ``folder``); SIGTERM it afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    log = (folder / "serve.log").open("w")
    proc = subprocess.Popen(
        [*FACEGATE, "local", "serve", "--aws-port", "0", "--api-port", "0", "--write-env", str(folder), *args],
        cwd=ROOT,
        env=clean_environment(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    state_file = folder / "state.json"
    deadline = time.monotonic() + STARTUP_S
    while not state_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            pytest.fail(f"local serve did not come up:\n{(folder / 'serve.log').read_text()[-3000:]}")
        time.sleep(0.5)
    state = json.loads(state_file.read_text())
    state["log"] = folder / "serve.log"
    state["folder"] = folder
    try:
        yield state
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def log_lines(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The server's JSON log lines (the functions' Powertools lines)."""
    lines = []
    for line in Path(state["log"]).read_text().splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines
