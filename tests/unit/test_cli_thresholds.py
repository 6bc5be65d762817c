"""The CLI decides as the service does.

GIVEN ``facegate verify`` WHEN no threshold is given THEN it uses the use case's calibrated default from
the catalog; WHEN a threshold below the use case's floor is given THEN it is refused (exit 2, a clear
error), as the service's gate refuses it; and a photo with a bystander is verified on its subject.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facegate.cli import main
from facegate.policy.catalog import default_catalog


@pytest.mark.usefixtures("model_store")
def test_verify_uses_the_use_case_threshold(fr_images: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["verify", str(fr_images["obama"]), str(fr_images["obama2"]), "--json"])
    out = json.loads(capsys.readouterr().out)
    case = default_catalog().use_cases["identity_verification"]
    assert code == 0
    assert out["threshold"] == case.default_threshold
    assert out["use_case"] == "identity_verification"
    assert out["decision"] == "same person"


@pytest.mark.parametrize("use_case", sorted(default_catalog().use_cases))
def test_a_threshold_below_the_floor_is_refused(
    use_case: str, fr_images: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    floor = default_catalog().use_cases[use_case].threshold_floor
    below = round(floor - 0.01, 3)
    code = main(
        ["verify", str(fr_images["obama"]), str(fr_images["biden"]), "--use-case", use_case, "--threshold", str(below)]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "below the" in err
    assert str(floor) in err


def test_the_published_point_is_below_every_floor(
    fr_images: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["verify", str(fr_images["obama"]), str(fr_images["biden"]), "--threshold", "0.363"])
    assert code == 2
    assert "floor" in capsys.readouterr().err


def test_an_unknown_use_case_is_refused(fr_images: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["verify", str(fr_images["obama"]), str(fr_images["obama2"]), "--use-case", "surveillance"])
    assert code == 2
    assert "unknown use case" in capsys.readouterr().err
