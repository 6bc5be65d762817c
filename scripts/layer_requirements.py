"""The core layer's requirements (``layers/core/requirements.txt``), generated from ``pyproject.toml``.

``sam build`` installs that file for the zip functions' layer (CoreLayer). It is the package's own
run-time dependencies less the vision stack (OpenCV and onnxruntime: only Detect and Embed use them, and
they are container images that install the whole package), so it is never kept by hand:

    python scripts/layer_requirements.py           # write it
    python scripts/layer_requirements.py --check   # exit 1 if it is stale (scripts/static-checks runs it)
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[1]
TARGET: Final = ROOT / "layers" / "core" / "requirements.txt"
VISION: Final = frozenset({"onnxruntime", "opencv-python-headless"})
HEADER: Final = """\
# Generated from pyproject.toml by scripts/layer_requirements.py: do not edit (CI checks it is current).
# Run-time dependencies of the core layer, installed by `sam build` (BuildMethod: python3.12) for the
# zip functions. They never import the vision stack, so OpenCV and onnxruntime stay out of this layer;
# the vision functions are container images that install the whole package (functions/Dockerfile).
"""


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return match.group(0).lower().replace("_", "-")


def render(pyproject: Path = ROOT / "pyproject.toml") -> str:
    dependencies = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    kept = [d for d in dependencies if _name(d) not in VISION]
    return HEADER + "".join(f"{d}\n" for d in kept)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs from what it would be")
    args = parser.parse_args(argv)
    wanted = render()
    if args.check:
        if not TARGET.is_file() or TARGET.read_text(encoding="utf-8") != wanted:
            print(f"{TARGET.relative_to(ROOT)} is stale: run python scripts/layer_requirements.py", file=sys.stderr)
            return 1
        print(f"ok {TARGET.relative_to(ROOT)} matches pyproject.toml")
        return 0
    TARGET.write_text(wanted, encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
