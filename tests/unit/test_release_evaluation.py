"""The release gate's summary packaged with the release (``accountability/release_evaluation.json``, written
by ``facegate release-gate --summary``) is what every tenant's accountability report carries as its
per-group evaluation. It must be of the running model and thresholds, and say what the calibration
says: the same images through the same counting code give the same counts."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest

from facegate.accountability import tenant_report
from facegate.accountability.report import release_evaluation
from facegate.embedding import MODEL_VERSION
from facegate.evaluation.gate import SUMMARY_KIND
from facegate.policy.catalog import default_catalog
from facegate.store.repositories import Tenant

SUMMARY = release_evaluation()
REGENERATE = "regenerate it: facegate release-gate --out build/release-gate --summary " + (
    "layers/core/facegate/accountability/release_evaluation.json"
)


def _set(name: str) -> dict[str, object]:
    (found,) = [s for s in SUMMARY["sets"] if s["name"] == name]
    return found


def test_the_summary_is_of_the_running_model_and_every_set_passed() -> None:
    assert SUMMARY["kind"] == SUMMARY_KIND
    assert SUMMARY["model_version"] == MODEL_VERSION, REGENERATE
    assert {s["name"] for s in SUMMARY["sets"]} >= {"lfw-gender", "lfw-predicted-groups", "fairface"}
    assert all(s["passed"] is True and s["checks"] > 0 for s in SUMMARY["sets"])


def test_its_operating_points_are_the_catalogs_thresholds() -> None:
    catalog = default_catalog()
    expected = {(u.threshold_floor, name) for name, u in catalog.use_cases.items()}
    found = {(point["threshold"], use) for point in _set("lfw-gender")["at"] for use in point["use_cases"]}  # type: ignore[attr-defined]
    assert found == expected, REGENERATE


@pytest.mark.parametrize("use_case", sorted(default_catalog().use_cases))
def test_its_per_gender_counts_agree_with_the_calibration(use_case: str) -> None:
    """The same LFW images, the same pair counting; the evaluation also holds each image to the quality
    bar (the production path), so a refused image only removes impostor pairs and adds non-matches."""
    threshold = default_catalog().use_cases[use_case].threshold_floor
    (row,) = [r for r in _calibration()["thresholds"] if abs(r["threshold"] - threshold) < 1e-9]
    (point,) = [p for p in _set("lfw-gender")["at"] if use_case in p["use_cases"]]  # type: ignore[attr-defined]
    for group in ("F", "M"):
        fmr, cal_fmr = point["fmr"][group], row["fmr_by_group"][group]
        assert fmr["k"] <= cal_fmr["k"], (group, REGENERATE)
        assert 0.99 * cal_fmr["n"] <= fmr["n"] <= cal_fmr["n"], (group, REGENERATE)
        fnmr, cal_fnmr = point["fnmr"][group], row["fnmr_every_pair_by_gender"][group]
        assert fnmr["n"] == cal_fnmr["n"], (group, REGENERATE)
        assert fnmr["k"] >= cal_fnmr["k"], (group, REGENERATE)


def _calibration() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        resources.files("facegate.match").joinpath("calibration.json").read_text(encoding="utf-8")
    )
    return data


def test_every_tenants_report_carries_it() -> None:
    from datetime import UTC, datetime

    tenant = Tenant("clinic-x", "Clinic", "healthcare", "GB", "GB", "active", ())
    report = tenant_report(tenant, now=datetime.now(UTC))
    assert report["testing"]["evaluation"]["kind"] == SUMMARY_KIND
    assert report["testing"]["evaluation"]["model_version"] == MODEL_VERSION
