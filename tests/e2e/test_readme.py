"""The README's walkthrough of ``facegate local serve``, run exactly as written, from another process.

GIVEN ``facegate local serve --write-env`` running as its own process and a folder holding the photos,
releases and probe the README names WHEN the README's bash block runs there, unchanged but for the
folder it sources THEN every command in it succeeds (the refused application is refused, with its
reason codes), the search finds alice, and the audit export it writes holds every step, verified.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from _serve import ROOT, clean_environment, local_serve, log_lines

from facegate import datasets
from facegate.evaluation import johns_chip
from facegate.vision.decode import cv2

BLOCK = re.compile(r"<!-- local-serve-walkthrough -->\n```bash\n(.*?)```\n<!-- /local-serve-walkthrough -->", re.S)


def _jpeg(path: Path) -> bytes:
    ok, encoded = cv2.imencode(".jpg", johns_chip(path))
    assert ok
    return bytes(encoded)


def test_the_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    (script,) = BLOCK.findall((ROOT / "README.md").read_text())
    work = tmp_path / "work"
    (alice, alice_photos), (bob, bob_photos) = list(datasets.johns().items())[:2]
    for name, photos in (("alice", alice_photos), ("bob", bob_photos)):
        (work / "photos" / name).mkdir(parents=True)
        for i, photo in enumerate(photos[:2]):
            (work / "photos" / name / f"{i}.jpg").write_bytes(_jpeg(photo))
        (work / f"{name}-release.pdf").write_bytes(f"%PDF-1.4 signed release of {name}".encode())
    (work / "probe.jpg").write_bytes(_jpeg(alice_photos[3]))
    venv = Path(sys.prefix)
    if (venv / "bin" / "activate").exists():
        (work / ".venv").symlink_to(venv)

    with local_serve(tmp_path / "fg") as state:
        text = script.replace("/tmp/fg", str(tmp_path / "fg"))
        run = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", text],
            cwd=work,
            env=clean_environment(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
        assert "refused, exit 3" in run.stdout
        assert "never.public_space_identification" in run.stderr
        assert "enrolled 2 of 2" in run.stdout
        assert re.search(r"1 candidate\(s\): alice", run.stdout), run.stdout
        export = json.loads((work / "audit.json").read_text())
        assert export["verified"] is True
        actions = [e["action"] for e in export["entries"]]
        for step in ("tenant.registered", "approval.granted", "user.created", "gallery.created", "consent.recorded"):
            assert step in actions, (step, actions)
        assert actions.count("template.enrolled") == 2
        logged = {(line.get("event"), line.get("operation")) for line in log_lines(state)}
        assert {("decision", "search"), ("outcome", "search"), ("outcome", "enrol")} <= logged
    assert alice != bob
