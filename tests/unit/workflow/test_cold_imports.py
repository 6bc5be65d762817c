"""What each Lambda function imports at cold start (issue 15 item 4): heavy modules stay off the paths
that do not need them. Each function's ``app.py`` is imported in a fresh process with the template's
environment, as its container does; its modules are then listed.

Detect and Embed never import the policy gate (Cedar), the service or the audit log: Detect needs S3 and
its model, Embed the probe-template store. No function imports the X-Ray SDK (a third of a cold start,
and in maintenance mode); Lambda's active tracing records the invocation without it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

from benchmarks.coldstart import FUNCTIONS, child_environment

ROOT: Final = Path(__file__).resolve().parents[3]
NEVER_ANYWHERE: Final = ("aws_xray_sdk",)
NOT_IN_VISION: Final = (
    "cedarpy",
    "facegate.service",
    "facegate.policy.gate",
    "facegate.audit",
    "facegate.store.repositories",
)

PROBE: Final = """
import json, sys
sys.path.insert(0, sys.argv[1])
import app
print(json.dumps(sorted(sys.modules)))
"""


def _modules(function: str) -> set[str]:
    env = child_environment(function, "cold-imports")
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(ROOT / "functions" / function)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def _imported(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


@pytest.mark.parametrize("function", FUNCTIONS)
def test_no_function_imports_the_xray_sdk(function: str) -> None:
    assert _imported(_modules(function), NEVER_ANYWHERE) == []


@pytest.mark.parametrize("function", ["detect", "embed"])
def test_the_vision_functions_import_neither_the_policy_nor_the_service(function: str) -> None:
    modules = _modules(function)
    assert _imported(modules, NOT_IN_VISION) == []
    assert "onnxruntime" in modules  # and the model session is built at import, as before


def test_detect_imports_neither_boto3_nor_the_table_models() -> None:
    """Detect reads one S3 object with a botocore client: boto3 (s3transfer, the resource layer) and
    pynamodb (the table models) are another 60-150 ms of its cold start and nothing it uses."""
    modules = _modules("detect")
    assert _imported(modules, ("boto3", "pynamodb", "facegate.store.models", "facegate.store.transient")) == []
    assert "botocore.client" in modules


def test_a_model_session_hands_freed_memory_back() -> None:
    """Building a session frees a copy of the weights: glibc keeps it unless its thresholds are fixed
    (SFace's peak 151 -> 128 MiB, ``make bench-coldstart``). The setting holds for the process."""
    probe = """
import ctypes, sys
sys.path.insert(0, sys.argv[1])
import app
from facegate.vision.runtime import release_freed_memory_promptly
print(release_freed_memory_promptly.cache_info().currsize, release_freed_memory_promptly())
"""
    done = subprocess.run(
        [sys.executable, "-c", probe, str(ROOT / "functions" / "embed")],
        capture_output=True,
        text=True,
        env=child_environment("embed", "cold-imports"),
        cwd=ROOT,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["1", "True"]  # applied once, at the session's build, and accepted
