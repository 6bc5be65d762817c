"""The command line's contract: documented exit codes, one-line errors, help on every argument, a version.

GIVEN ``facegate verify`` WHEN the photos show different people THEN it exits 1 (not 0); GIVEN a file
that does not exist, a folder or an unreadable path WHEN any command reads it THEN one line on stderr
names it and the exit is 2, with no traceback; GIVEN an unexpected failure THEN one line and exit 4.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from facegate import __version__, cli
from facegate.cli import EXIT_BAD_INPUT, EXIT_ERROR, EXIT_NO_MATCH, EXIT_OK, EXIT_REFUSED, main
from facegate.errors import PolicyDeniedError


@pytest.mark.usefixtures("model_store")
def test_different_people_exit_1_and_the_same_person_0(
    fr_images: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", str(fr_images["obama"]), str(fr_images["biden"])]) == EXIT_NO_MATCH
    assert capsys.readouterr().out.startswith("different people: cosine ")
    assert main(["verify", str(fr_images["obama"]), str(fr_images["obama2"]), "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["decision"] == "same person"


@pytest.mark.parametrize("command", [["verify", "{missing}", "{image}"], ["detect", "{missing}"]])
@pytest.mark.usefixtures("model_store")
def test_a_missing_file_is_one_line_and_exit_2(
    command: list[str], fr_images: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such.jpg"
    argv = [a.format(missing=missing, image=fr_images["obama"]) for a in command]
    assert main(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert f"cannot read {missing}" in err


@pytest.mark.usefixtures("model_store")
def test_a_folder_given_as_an_image_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["detect", str(tmp_path)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error [file]: cannot read")
    assert err.count("\n") == 1


@pytest.mark.usefixtures("model_store")
def test_a_file_that_is_not_an_image_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    assert main(["detect", str(text)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error [image.")
    assert err.count("\n") == 1


def test_a_refusal_is_exit_3_with_its_reasons(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    decision = {"reasons": [{"code": "use_case.prohibited"}, {"code": "jurisdiction.moratorium"}]}

    def refuse(_: argparse.Namespace) -> int:
        raise PolicyDeniedError("refused", decision)

    monkeypatch.setattr(cli, "_detect", refuse)
    assert main(["detect", "x.jpg"]) == EXIT_REFUSED
    assert "use_case.prohibited, jurisdiction.moratorium" in capsys.readouterr().err


def test_an_unexpected_failure_is_one_line_and_exit_4(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(_: argparse.Namespace) -> int:
        raise RuntimeError("the disk is full")

    monkeypatch.delenv("FACEGATE_DEBUG", raising=False)
    monkeypatch.setattr(cli, "_detect", broken)
    assert main(["detect", "x.jpg"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err == "error [RuntimeError]: the disk is full (FACEGATE_DEBUG=1 shows the traceback)\n"


def test_an_unreachable_service_is_exit_4(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["sandbox", "report", "t-1", "--endpoint", "http://127.0.0.1:9", "--token", "x"])
    assert code == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("error [connection]:")
    assert err.count("\n") == 1


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"facegate {__version__}"


def _actions(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, argparse.Action]]:
    found: list[tuple[str, argparse.Action]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _actions(child, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction | argparse._VersionAction):
            found.append((path, action))
    return found


def test_every_argument_of_every_command_has_help_text() -> None:
    missing = [f"{path}: {a.dest}" for path, a in _actions(cli.build_parser(), "facegate") if not a.help]
    assert missing == []
