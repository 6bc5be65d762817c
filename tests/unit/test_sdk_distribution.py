"""The SDK's own distribution, ``facegate-sdk`` (``clients/python``): what a tenant's system installs.

GIVEN the wheel built from ``clients/python`` WHEN it is inspected and imported by an interpreter that
sees nothing but the standard library and that wheel THEN it declares no dependency (the audit extra
aside), holds the SDK alone, imports, reads its configuration and answers with its own errors; and
``facegate.sdk`` is the same module's surface, so the two never drift apart.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import facegate_sdk
import pytest

import facegate.sdk

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out),
         str(ROOT / "clients" / "python")],
        check=True,
        timeout=300,
    )  # fmt: skip
    (built,) = out.glob("facegate_sdk-*.whl")
    return built


def test_the_wheel_holds_the_sdk_alone_and_depends_on_nothing(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = Parser().parsestr(archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
    packaged = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert packaged == {"facegate_sdk"}
    assert metadata["Name"] == "facegate-sdk"
    requires = metadata.get_all("Requires-Dist") or []
    assert all("extra ==" in r for r in requires), requires  # only the optional audit extra
    assert wheel.stat().st_size < 100_000


def test_it_runs_on_the_standard_library_alone(wheel: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path)
    probe = """
import sys
sys.path.insert(0, sys.argv[1])
import facegate_sdk
client = facegate_sdk.FacegateClient("http://127.0.0.1:9", "token", max_attempts=1, timeout=2)
try:
    client.get_request("r")
except facegate_sdk.FacegateConnectionError:
    pass
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("cv2", "onnxruntime", "numpy", "boto3", "botocore",
                                                                "pydantic", "facegate"))
print("ok", heavy)
"""
    # -S: no site-packages at all, so only the standard library and the extracted wheel can be imported.
    done = subprocess.run(
        [sys.executable, "-S", "-c", probe, str(tmp_path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok []"


def test_facegate_sdk_is_the_same_surface() -> None:
    assert facegate.sdk.__all__ == facegate_sdk.__all__
    for name in facegate_sdk.__all__:
        assert getattr(facegate.sdk, name) is getattr(facegate_sdk, name)
