"""The README's demo command, end to end, on the embedded default data."""

from __future__ import annotations

from pathlib import Path

import pytest

from facegate.cli import main


def test_demo_enrols_matches_and_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    """GIVEN the built models and the johns WHEN `facegate demo` runs THEN every probe is matched right,
    the stranger gets no match, the crowd photo is recognised as such and bad uploads are refused."""
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "enrolled 5 templates" in out
    assert "50/50 probes matched the right person, 0 the wrong one, 0 no match" in out
    assert "a stranger's photo" in out
    assert "no match (open set" in out
    assert "faces detected" in out
    for code in ("image.empty", "image.not_an_image", "image.truncated"):
        assert f"refused [{code}]" in out


def test_verify_command_reports_a_decision(capsys: pytest.CaptureFixture[str], fr_images: dict[str, Path]) -> None:
    assert main(["verify", str(fr_images["obama"]), str(fr_images["obama2"]), "--json"]) == 0
    assert '"decision": "same person"' in capsys.readouterr().out
    assert main(["verify", str(fr_images["obama"]), str(fr_images["biden"]), "--json"]) == 1  # no match: exit 1
    assert '"decision": "different people"' in capsys.readouterr().out


def test_bad_image_gives_a_clear_error_and_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("not a photo")
    assert main(["detect", str(bad)]) == 2
    assert "error [image.not_an_image]" in capsys.readouterr().err


def test_the_cloud_demo_runs_the_whole_service_and_explains_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIVEN the source tree WHEN `facegate local demo` (the README's `make demo`) runs THEN the prison is
    approved and the city refused with reasons, 5 people are enrolled through the Enrol workflow (one from
    3 photos fused into one template), a probe runs the whole Recognize path to a result awaiting review,
    and the crowd, cross-tenant and burst probes are refused with their reason codes; the audit chain
    verifies and no image is left behind."""
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    assert main(["local", "demo"]) == 0
    out = capsys.readouterr().out
    assert "REFUSED   capital-city" in out
    assert "never.public_space_identification" in out
    assert "5 templates stored" in out
    assert "the template fuses 3 references" in out
    assert "Detect -> FaceCheck -> IsFaceAllowed -> Embed -> Match -> NeedsReview -> AwaitingReview" in out
    assert "review: pending" in out
    assert "REFUSED: request.crowd_probe" in out
    assert "REFUSED: request.gallery_not_found" in out
    assert "request.rate_limited" in out
    assert "hash-chained, verified up to seq" in out
    assert "No photo left in the probe bucket: True" in out
    assert "encrypted templates under each tenant's prefix: 1)" in out  # the prison's gallery, searched
