"""``facegate tenant ...`` against the local cloud's API, as a tenant's operator runs it.

GIVEN a tenant approved for access control WHEN its operator creates a gallery, records consents,
enrols a folder (one subfolder of photos per subject, a consent file), verifies, searches, reads a
result, erases and exports the audit log from the command line THEN each answers in one line (or JSON
with ``--json``) and exits as documented: 0 match or done, 1 no match, 2 bad input, 3 refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from _images import chip_png

from facegate import datasets
from facegate.cli import EXIT_BAD_INPUT, EXIT_NO_MATCH, EXIT_OK, EXIT_REFUSED, main
from facegate.localcloud.cloud import LocalCloud
from facegate.service import FaceService

ROOT = Path(__file__).resolve().parents[2]
TENANT = "hmp-cli"


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud(root=ROOT, stack_name="fgcli") as local:
        local.serve_api()
        until = datetime.now(UTC) + timedelta(days=30)
        service = FaceService()
        service.registry.register(TENANT, name=TENANT, sector="corrections", country="GB", jurisdiction="GB")
        service.approve_use_case(
            "operator", TENANT, use_case="access_control", deployment="closed_facility", expires_at=until
        )
        yield local


@pytest.fixture(scope="module")
def connection(cloud: LocalCloud) -> list[str]:
    return ["--endpoint", cloud.serve_api(), "--token", cloud.issue_token(TENANT, "operator-cli")]


def _run(argv: list[str], connection: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([*argv, *connection])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_tenant_runs_the_whole_cycle_from_the_command_line(
    connection: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    people = datasets.johns()
    first, second = list(people)[:2]
    code, out, _ = _run(["tenant", "galleries", "create", "staff", "--use-case", "access_control"], connection, capsys)
    assert code == EXIT_OK
    assert out.startswith("gallery staff (access_control"), out

    evidence = tmp_path / "release.pdf"
    evidence.write_bytes(b"signed release")
    expires = (datetime.now(UTC) + timedelta(days=60)).date().isoformat()
    consents = ["subject_id,consent_id"]
    for subject in (first, second):
        code, out, _ = _run(
            ["tenant", "consent", subject, "--purpose", "access_control", "--evidence", str(evidence),
             "--expires", expires, "--json"],
            connection,
            capsys,
        )  # fmt: skip
        assert code == EXIT_OK
        consents.append(f"{subject},{json.loads(out)['consent_id']}")
    (tmp_path / "consents.csv").write_text("\n".join(consents) + "\n")
    for subject in (first, second):
        folder = tmp_path / "photos" / subject
        folder.mkdir(parents=True)
        (folder / "front.png").write_bytes(chip_png(people[subject][0]))

    code, out, _ = _run(
        ["tenant", "enrol", "staff", str(tmp_path / "photos"), "--consents", str(tmp_path / "consents.csv"), "--json"],
        connection,
        capsys,
    )
    assert code == EXIT_OK, out
    assert json.loads(out)["enrolled"] == 2

    probe = tmp_path / "probe.png"
    probe.write_bytes(chip_png(people[first][3]))
    code, out, _ = _run(["tenant", "verify", "staff", first, str(probe), "--purpose", "entry"], connection, capsys)
    assert (code, out.split(" (")[0]) == (EXIT_OK, "match")
    stranger = tmp_path / "stranger.png"  # another photo: the same probe against a second subject is a sweep
    stranger.write_bytes(chip_png(people[list(people)[2]][0]))
    code, out, _ = _run(["tenant", "verify", "staff", second, str(stranger), "--purpose", "entry"], connection, capsys)
    assert (code, out.split(" (")[0]) == (EXIT_NO_MATCH, "no match")

    code, out, _ = _run(["tenant", "search", "staff", str(probe), "--purpose", "entry", "--json"], connection, capsys)
    answer = json.loads(out)
    assert code == EXIT_OK
    assert answer["result"]["candidates"][0]["subject_id"] == first
    code, out, _ = _run(["tenant", "results", answer["request_id"]], connection, capsys)
    assert code == EXIT_OK
    assert out.startswith(f"1 candidate(s): {first}")

    code, out, _ = _run(["tenant", "search", "staff", str(probe)], connection, capsys)  # no purpose: refused
    assert code == EXIT_REFUSED
    assert out.startswith("refused: ")

    code, out, _ = _run(["tenant", "erase", second], connection, capsys)
    assert code == EXIT_OK
    assert out.startswith(f"erased {second}: 1 template(s) deleted"), out
    exported = tmp_path / "audit.json"
    code, out, _ = _run(["tenant", "audit", "export", "--out", str(exported)], connection, capsys)
    assert code == EXIT_OK
    assert "verified: True" in out
    assert json.loads(exported.read_text())["verified"] is True


def test_bad_input_is_one_line_and_exit_2(
    connection: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = _run(["tenant", "verify", "staff", "s-1", str(tmp_path / "missing.png")], connection, capsys)
    assert code == EXIT_BAD_INPUT
    assert err.startswith("error [file]: cannot read")
    assert err.count("\n") == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "c.csv").write_text("subject_id,consent_id\n")
    code, _, err = _run(
        ["tenant", "enrol", "staff", str(empty), "--consents", str(tmp_path / "c.csv")], connection, capsys
    )
    assert code == EXIT_BAD_INPUT
    assert "no subject folder with photos" in err
    code, _, err = _run(["tenant", "results", "nope#1"], connection, capsys)
    assert code == EXIT_BAD_INPUT
    code, _, err = _run(["tenant", "results", "f" * 32], connection, capsys)
    assert code == EXIT_BAD_INPUT  # unknown to this tenant: a 404, the caller's
    assert "request.unknown" in err
