"""The model card and the accountability report are generated from the catalog, the policies, the models'
specs and the calibration, never written by hand.

GIVEN the packaged sources WHEN the card is generated THEN every threshold is the catalog's and every
figure (k, n, rate, Wilson interval) is what the calibration holds; GIVEN a tenant's approvals WHEN its
report is generated THEN it lists exactly those use cases with the catalog's retention and limits, the
refusals no approval unlocks, and renders as escaped, self-contained HTML.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import pytest

from facegate import models
from facegate.accountability import accountability_report, model_card, render_html
from facegate.cli import main
from facegate.embedding import MODEL_VERSION
from facegate.errors import UnknownUseCaseError
from facegate.match import Calibration
from facegate.policy import PolicyGate
from facegate.policy.catalog import default_catalog
from facegate.policy.gate import default_policies
from facegate.service import DEFAULT_RETENTION, REQUEST_RETENTION
from facegate.stats import wilson
from facegate.store.repositories import Approval

NOW = datetime(2027, 1, 15, tzinfo=UTC)
FIGURE_TABLES = (
    "fmr_by_group",
    "fmr_cross_group",
    "fmr_by_predicted_group",
    "fmr_upper_bound_by_group",
    "fnmr_by_gender",
    "fnmr_every_pair_by_gender",
)


def approval(use_case: str, deployment: str | None = None, *, status: str = "active", days: int = 30) -> Approval:
    case = default_catalog().use_cases.get(use_case)
    return Approval(
        use_case=use_case,
        deployment=deployment or (case.deployments[0] if case else "closed_facility"),
        jurisdiction="GB",
        approver="operator-1",
        approved_at=NOW - timedelta(days=1),
        expires_at=NOW + timedelta(days=days),
        status=status,
    )


@pytest.fixture(scope="module")
def card() -> dict[str, Any]:
    return model_card()


@pytest.fixture(scope="module")
def raw_calibration() -> dict[str, Any]:
    """The calibration file as written by the benchmark, read without facegate's reader."""
    data: dict[str, Any] = json.loads(resources.files("facegate.match").joinpath("calibration.json").read_text())
    return data


def _row(raw: dict[str, Any], threshold: float) -> dict[str, Any]:
    (row,) = [r for r in raw["thresholds"] if abs(r["threshold"] - threshold) < 1e-9]
    return row


# --- the model card --------------------------------------------------------------------------------------


def test_every_use_cases_threshold_in_the_card_is_the_catalogs(card: dict[str, Any]) -> None:
    catalog = default_catalog()
    assert set(card["use_cases"]) == set(catalog.use_cases)
    for name, case in catalog.use_cases.items():
        entry = card["use_cases"][name]
        assert entry["threshold"] == case.default_threshold, name
        assert entry["threshold_floor"] == case.threshold_floor, name
        assert entry["target_fmr"] == case.target_fmr, name
        assert entry["calibrated_threshold"] == Calibration.packaged().threshold_for(case.target_fmr), name


def test_every_figure_in_the_card_is_what_the_calibration_holds(
    card: dict[str, Any], raw_calibration: dict[str, Any]
) -> None:
    """k and n straight from the file; rate, interval and n as facegate's Calibration computes them."""
    cal = Calibration.packaged()
    for name, entry in card["use_cases"].items():
        t = entry["threshold"]
        row = _row(raw_calibration, t)
        rates = {
            "fmr_by_group": cal.fmr_by_group(t),
            "fmr_cross_group": cal.fmr_cross_group(t),
            "fmr_by_predicted_group": cal.fmr_by_predicted_group(t),
            "fmr_upper_bound_by_group": cal.fmr_upper_bound_by_group(t),
            "fnmr_by_gender": cal.fnmr_by_gender(t),
            "fnmr_every_pair_by_gender": cal.fnmr_every_pair_by_gender(t),
        }
        for table in FIGURE_TABLES:
            groups = {r["group"]: r for r in entry[table]}
            assert set(groups) == set(row[table]), (name, table)
            for group, figures in groups.items():
                k, n = row[table][group]["k"], row[table][group]["n"]
                assert (figures["k"], figures["n"]) == (k, n), (name, table, group)
                assert figures["n"] == cal.counts()[table][group]
                assert figures["observed"] == k / n
                assert figures["rate"] == rates[table][group], (name, table, group)
                assert (figures["wilson_low"], figures["wilson_high"]) == wilson(k, n), (name, table, group)
        for group in cal.groups:
            fmr = next(r for r in entry["fmr_by_group"] if r["group"] == group)
            assert (fmr["wilson_low"], fmr["wilson_high"]) == cal.fmr_interval(group, t)
            # The threshold meets the use case's target in every group, at the top of the interval.
            assert fmr["wilson_high"] <= entry["target_fmr"]
        assert entry["worst_group"] == cal.worst_group(t)
        assert entry["worst_group_fmr"] == cal.worst_group_fmr(t)
        assert entry["overall_fmr"] == cal.overall_fmr(t)
        assert entry["overall_fnmr"] == cal.overall_fnmr(t)
        fused = {f["references"]: f for f in entry["fused_templates"]}
        assert set(fused) == set(cal.fused_references)
        for r, f in fused.items():
            assert f["offset"] == cal.reference_offset(r, entry["target_fmr"])
            assert f["threshold"] == cal.threshold_for(entry["target_fmr"], r)


def test_the_card_names_the_models_with_their_pins_and_licences(card: dict[str, Any]) -> None:
    assert card["model"]["version"] == MODEL_VERSION
    components = {c["key"]: c for c in card["model"]["components"]}
    for spec in models.SPECS:
        got = components[spec.key]
        assert (got["version"], got["sha256"], got["bytes"]) == (spec.version, spec.sha256, spec.size)
        assert (got["licence"], got["upstream"]) == (spec.licence, spec.upstream)
    assert card["model"]["fetched_from"]["sha256"] == models.MODEL_WHEEL.sha256
    assert "PRelu" in card["model"]["build"]  # what the build does, from models/build.py's own docstring


def test_intended_and_out_of_scope_uses_come_from_the_catalog_and_the_promise(card: dict[str, Any]) -> None:
    catalog = default_catalog()
    intended = {u["use_case"]: u for u in card["intended_uses"]}
    assert set(intended) == set(catalog.use_cases)
    assert intended["access_control"]["description"] == catalog.use_cases["access_control"].description
    # 1:N is not offered for identity verification: the gate says so, and the card with it.
    ops = {o["operation"] for o in intended["identity_verification"]["operations"]}
    assert "search" not in ops
    assert {"enrol", "verify"} <= ops
    never = {m.code: m.reason for m in default_policies().meta.values() if m.code.startswith("never.")}
    refused = {u["code"]: u["reason"] for u in card["out_of_scope_uses"]}
    assert refused == never
    assert "never.public_space_identification" in refused  # patrol cars, body cameras, camera networks
    moratoria = card["moratoria"]
    assert [m["sector"] for m in moratoria] == [m.sector.value for m in catalog.moratoria]
    assert "US" in moratoria[0]["countries"]


def test_the_capture_rules_are_read_from_the_modules_that_enforce_them(card: dict[str, Any]) -> None:
    from facegate.vision import decode, detector, quality, subject

    capture = card["capture"]
    assert capture["quality_bars"]["MIN_EYE_DISTANCE_PX"] == quality.MIN_EYE_DISTANCE_PX
    assert capture["quality_bars"]["MIN_SHARPNESS"] == quality.MIN_SHARPNESS
    assert capture["quality_bars"]["MIN_MEAN_GREY"] == quality.MIN_MEAN_GREY
    assert capture["quality_bars"]["MAX_BLOWN_OUT"] == quality.MAX_BLOWN_OUT
    assert capture["quality_bars"]["BLOWN_OUT_LEVEL"] == quality.BLOWN_OUT_LEVEL
    assert capture["subject_rule"]["SUBJECT_TIE"] == subject.SUBJECT_TIE
    assert capture["subject_rule"]["BYSTANDER_RATIO"] == subject.BYSTANDER_RATIO
    assert capture["detector_score_threshold"] == detector.DEFAULT_SCORE_THRESHOLD
    assert capture["image_limits"]["MAX_BYTES"] == decode.MAX_BYTES
    assert capture["image_limits"]["MAX_PIXELS"] == decode.MAX_PIXELS
    assert capture["image_formats"] == [f.value for f in decode.ImageFormat]


def test_the_known_limits_state_the_measured_gap_between_women_and_men(card: dict[str, Any]) -> None:
    cal = Calibration.packaged()
    t = default_catalog().use_cases["access_control"].default_threshold
    fnmr = cal.fnmr_by_gender(t)
    assert fnmr["F"] > fnmr["M"]  # the calibration's finding, which the card must carry
    k, n = cal.observed("fnmr_by_gender", "F", t)
    limits = " ".join(card["known_limits"])
    assert f"{k}/{n}" in limits
    assert "women" in limits
    assert "predicted" in limits  # the predicted groups' caveat
    assert "upper bound" in limits  # FairFace has no identities


def test_the_card_and_the_report_need_no_vision_stack() -> None:
    """The API is a zip function without OpenCV or onnxruntime: generating both must not import them."""
    code = (
        "import sys\n"
        "from facegate.accountability import accountability_report, model_card, render_html\n"
        "render_html(accountability_report('t-one', [], name='T'))\n"
        "model_card()\n"
        "bad = [m for m in ('cv2', 'onnxruntime', 'facegate.vision') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


# --- the accountability report ---------------------------------------------------------------------------


def test_a_report_lists_exactly_the_approved_use_case_with_the_catalogs_retention() -> None:
    case = default_catalog().use_cases["access_control"]
    report = accountability_report("hmp-north", [approval("access_control")], name="HMP North", now=NOW)
    (entry,) = report["use_cases"]
    assert entry["use_case"] == "access_control"
    assert entry["purpose"] == case.description
    assert entry["deployment"] == "closed_facility"
    assert entry["in_force"] is True
    assert entry["retention"]["template_days"] == case.retention_days
    assert entry["retention"]["template_days_at_most"] == DEFAULT_RETENTION.days
    assert entry["retention"]["result_days"] == REQUEST_RETENTION.days
    assert entry["retention"]["probe_image"].startswith("deleted")
    assert entry["limits"]["max_gallery_size"] == case.max_gallery_size
    assert entry["limits"]["rate_limits"]["search"] == case.rate_limits["search"].model_dump()
    assert entry["thresholds"]["threshold"] == case.default_threshold
    assert entry["results"]["fmr_by_group"] == model_card()["use_cases"]["access_control"]["fmr_by_group"]
    assert report["tenant"]["tenant_id"] == "hmp-north"
    assert report["generated"]["generated_at"] == NOW.isoformat()
    assert report["generated"]["catalog_version"] == default_catalog().version
    assert report["generated"]["policy_version"] == PolicyGate().version
    assert report["generated"]["model_version"] == MODEL_VERSION


def test_access_control_supports_a_two_person_human_decision_and_identity_verification_decides() -> None:
    report = accountability_report(
        "t-both", [approval("access_control"), approval("identity_verification", "online_service")], now=NOW
    )
    by_case = {u["use_case"]: u for u in report["use_cases"]}
    access = by_case["access_control"]
    assert access["human_review"]["required"] is True
    assert access["human_review"]["two_person"] is True
    assert access["human_review"]["requester_may_review"] is False
    assert {d["operation"]: d["decision_system"] for d in access["decisions"]} == {
        "verify": "support",
        "search": "support",
    }
    identity = by_case["identity_verification"]
    assert identity["human_review"]["required"] is False
    assert {d["operation"]: d["decision_system"] for d in identity["decisions"]} == {"verify": "final"}


def test_the_refused_uses_are_listed_with_their_reason_codes() -> None:
    report = accountability_report("t-refused", [approval("photo_organization", "personal")], now=NOW)
    codes = {u["code"] for u in report["civil_rights_and_liberties"]["refused_uses"]}
    assert codes == {m.code for m in default_policies().meta.values() if m.code.startswith("never.")}
    assert report["civil_rights_and_liberties"]["moratoria"][0]["sector"] == "law_enforcement"


def test_a_tenant_quota_lowers_the_reported_rate_limit_never_raises_it() -> None:
    case = default_catalog().use_cases["access_control"]
    lower = case.rate_limits["search"].per_day - 1
    quotas = {"access_control": {"search": {"per_minute": case.rate_limits["search"].per_minute + 5, "per_day": lower}}}
    report = accountability_report("t-quota", [approval("access_control")], quotas=quotas, now=NOW)
    limit = report["use_cases"][0]["limits"]["rate_limits"]["search"]
    assert limit == {"per_minute": case.rate_limits["search"].per_minute, "per_day": lower}


def test_a_suspended_tenant_or_an_expired_approval_has_nothing_in_force() -> None:
    suspended = accountability_report("t-susp", [approval("access_control")], status="suspended", now=NOW)
    assert suspended["use_cases"][0]["in_force"] is False
    expired = accountability_report("t-exp", [approval("access_control", days=-1)], now=NOW)
    assert expired["use_cases"][0]["in_force"] is False
    none = accountability_report("t-none", [], now=NOW)
    assert none["use_cases"] == []


def test_rates_above_one_percent_are_flagged_from_the_calibration() -> None:
    cal = Calibration.packaged()
    report = accountability_report("t-flag", [approval("identity_verification", "online_service")], now=NOW)
    (entry,) = report["use_cases"]
    t = entry["thresholds"]["threshold"]
    expected = {("fnmr_by_gender", g) for g, rate in cal.fnmr_by_gender(t).items() if rate > 0.01}
    expected |= {("fmr_by_group", g) for g, rate in cal.fmr_by_group(t).items() if rate > 0.01}
    expected |= {("fmr_cross_group", g) for g, rate in cal.fmr_cross_group(t).items() if rate > 0.01}
    assert expected  # at this threshold women's false non-match rate is above one percent
    assert {(f["table"], f["group"]) for f in entry["rates_above_one_percent"]} == expected


def test_the_evaluation_is_carried_as_given() -> None:
    evaluation = {"dataset": "site-photos-2027", "fnmr_by_group": {"F": {"k": 3, "n": 400}}}
    report = accountability_report("t-eval", [approval("access_control")], evaluation=evaluation, now=NOW)
    assert report["testing"]["evaluation"] == evaluation
    assert accountability_report("t-eval", [], now=NOW)["testing"]["evaluation"] is None


def test_an_unknown_use_case_in_the_approvals_is_a_clear_error() -> None:
    with pytest.raises(UnknownUseCaseError, match="city_cctv"):
        accountability_report("t-bad", [approval("city_cctv", "closed_facility")], now=NOW)


def test_the_report_is_json_all_the_way_down() -> None:
    report = accountability_report("t-json", [approval("access_control")], name="J", now=NOW)
    again = json.loads(json.dumps(report, allow_nan=False))
    assert again == report


def test_the_html_escapes_a_hostile_tenant_name_and_loads_nothing_from_outside() -> None:
    hostile = '<script>alert("x")</script>&<img src=x onerror=y>'
    page = render_html(accountability_report("t-html", [approval("access_control")], name=hostile, now=NOW))
    assert "<script" not in page
    assert "<img" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&lt;img" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page
    assert page.startswith("<!DOCTYPE html>")
    assert "access_control" in page


# --- the command line ------------------------------------------------------------------------------------


def test_cli_prints_the_model_card(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "model-card"]) == 0
    assert json.loads(capsys.readouterr().out)["model"]["version"] == MODEL_VERSION
    assert main(["report", "model-card", "--format", "html"]) == 0
    assert capsys.readouterr().out.startswith("<!DOCTYPE html>")


def test_cli_writes_an_offline_report_for_the_listed_use_cases(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["report", "accountability", "--use-case", "access_control", "--tenant", "HMP <North>"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [u["use_case"] for u in report["use_cases"]] == ["access_control"]
    assert report["use_cases"][0]["in_force"] is False  # offline: proposed, not an approval
    assert report["tenant"]["name"] == "HMP <North>"
    assert main(["report", "accountability", "--use-case", "photo_organization", "--format", "html"]) == 0
    assert "photo_organization" in capsys.readouterr().out


def test_cli_refuses_an_unknown_use_case(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "accountability", "--use-case", "city_cctv"]) == 2
    assert "city_cctv" in capsys.readouterr().err
