"""`facegate evaluate`: labelled sets read strictly, the production path measured, counts that add up,
per-group summaries, the HTML report with its plots, and the release gate (which must be able to fail)."""

from __future__ import annotations

import csv
import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from facegate.cli import main
from facegate.errors import InvalidRequestError
from facegate.evaluation import all_pairs, embed_subject, johns_chip
from facegate.evaluation.dataset import Dataset, LabelledImage, fetched, load, read_csv
from facegate.evaluation.gate import check, check_bounds, load_config
from facegate.evaluation.measure import Measurements, measure
from facegate.evaluation.render import render_html, write
from facegate.evaluation.report import ALL, build_report, split, summary
from facegate.policy.catalog import default_catalog
from facegate.vision import FacePipeline

ROOT = Path(__file__).resolve().parents[3]


def _csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def johns_report(pipeline: FacePipeline) -> tuple[Measurements, dict]:
    m = measure(fetched("johns"), pipeline)
    return m, build_report(m)


# --- reading a labelled set -------------------------------------------------------------------------


def test_a_csv_that_escapes_its_folder_or_lists_nothing_real_is_refused_with_every_problem(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    labels = _csv(
        tmp_path / "labels.csv",
        [
            {"path": "a.jpg", "identity": "p1", "group": "F"},
            {"path": "../outside.jpg", "identity": "p1", "group": "F"},
            {"path": "/etc/passwd", "identity": "p2", "group": "F"},
            {"path": "missing.jpg", "identity": "p2", "group": "M"},
            {"path": "notes.txt", "identity": "p3", "group": "M"},
            {"path": "a.jpg", "identity": "p1", "group": "F"},
            {"path": "a.jpg", "identity": "", "group": "F"},
        ],
    )
    with pytest.raises(InvalidRequestError) as err:
        read_csv(labels)
    text = str(err.value)
    for expected in ("line 3", "line 4", "line 5", "line 6", "listed twice", "empty identity"):
        assert expected in text


def test_a_missing_column_names_the_columns_there_are(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    labels = _csv(tmp_path / "labels.csv", [{"path": "a.jpg", "person": "p1"}])
    with pytest.raises(InvalidRequestError, match=r"no column 'identity'.*person"):
        read_csv(labels)
    with pytest.raises(InvalidRequestError, match="neither a CSV"):
        load(str(tmp_path / "nowhere"))


def test_a_group_label_cannot_spell_a_cross_group_key(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    labels = _csv(tmp_path / "labels.csv", [{"path": "a.jpg", "identity": "p1", "group": "F~M"}])
    with pytest.raises(InvalidRequestError, match="no '~'"):
        read_csv(labels)


def test_a_set_without_identities_forms_only_impostor_pairs_and_says_its_fmr_is_an_upper_bound(
    tmp_path: Path, johns: dict[str, list[Path]], pipeline: FacePipeline
) -> None:
    paths = [p for person in sorted(johns) for p in johns[person][:2]]
    for i, p in enumerate(paths):
        (tmp_path / f"{i}.jpg").write_bytes(p.read_bytes())
    labels = _csv(tmp_path / "labels.csv", [{"path": f"{i}.jpg", "group": "M"} for i in range(len(paths))])
    dataset = read_csv(labels, identity_column=None)
    report = build_report(measure(dataset, pipeline))
    at = report["verification"]["at"][0]
    assert "fnmr" not in at
    assert report["identification"] is None
    assert at["fmr"]["M"]["n"] == len(paths) * (len(paths) - 1) // 2
    assert any("upper bound" in n for n in report["notes"])


# --- the production path, counted -------------------------------------------------------------------


def test_the_counts_are_every_pair_of_the_products_own_templates(
    johns_report: tuple[Measurements, dict], pipeline: FacePipeline, johns: dict[str, list[Path]]
) -> None:
    """The same templates as the product's path (subject rule, alignment, embedder), every pair once."""
    _m, report = johns_report
    labels = [person for person in sorted(johns) for _ in johns[person]]
    embeddings = [embed_subject(pipeline, johns_chip(p)) for person in sorted(johns) for p in johns[person]]
    assert all(e is not None for e in embeddings)
    scores, same = all_pairs(embeddings, labels)  # type: ignore[arg-type]
    for point in report["verification"]["at"]:
        t = point["threshold"]
        assert point["fnmr"]["all"] == {**point["fnmr"]["all"], "k": int((scores[same] < t).sum()), "n": 275}
        assert point["fmr"]["all"]["k"] == int((scores[~same] >= t).sum())
        assert point["fmr"]["all"]["n"] == len(list(combinations(range(55), 2))) - 275
        lo, hi = point["fnmr"]["all"]["ci95"]
        assert lo <= point["fnmr"]["all"]["rate"] <= hi
    assert report["images"]["all"]["templated"]["k"] == 55


def test_an_image_the_quality_bar_refuses_is_a_non_match_not_a_silent_skip(
    tmp_path: Path, johns: dict[str, list[Path]], pipeline: FacePipeline
) -> None:
    import cv2

    person = sorted(johns)[0]
    rows = []
    for i, p in enumerate(johns[person][:3]):
        chip = johns_chip(p)
        if i == 0:  # a face far too small: eyes a few pixels apart
            chip = cv2.resize(chip, (40, 40), interpolation=cv2.INTER_AREA)
            chip = cv2.copyMakeBorder(chip, 100, 100, 100, 100, cv2.BORDER_CONSTANT)
        cv2.imwrite(str(tmp_path / f"{i}.png"), chip)
        rows.append({"path": f"{i}.png", "identity": person, "group": "M"})
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    rows.append({"path": "broken.jpg", "identity": person, "group": "M"})
    report = build_report(measure(read_csv(_csv(tmp_path / "labels.csv", rows)), pipeline))
    images = report["images"]["M"]
    assert images["unreadable"]["k"] == 1
    assert images["face_too_small"]["k"] + images["no_face"]["k"] == 1
    fnmr = report["verification"]["at"][0]["fnmr"]["M"]
    assert fnmr["n"] == 6  # every same-person pair of the 4 images is counted
    assert fnmr["k"] >= 5  # each pair with the refused or unreadable image is a non-match


def test_identification_split_is_identity_disjoint_and_each_enrolled_person_is_in_the_gallery_once(
    johns_report: tuple[Measurements, dict],
) -> None:
    m, report = johns_report
    gallery, mated, non_mated = split(m)
    owners = [m.identities[i] for i in gallery]
    assert len(owners) == len(set(owners)) == report["identification"]["gallery_size"]
    assert {m.identities[i] for i in mated} == set(owners)
    assert not {m.identities[i] for i in non_mated} & set(owners)
    assert len(gallery) + len(mated) + len(non_mated) == 55
    use_cases = {p["use_case"] for p in report["identification"]["at"]}
    assert use_cases == {n for n, c in default_catalog().use_cases.items() if "search" in c.rate_limits}


def test_the_report_carries_counts_never_templates_or_scores(johns_report: tuple[Measurements, dict]) -> None:
    _, report = johns_report
    text = json.dumps(report)
    assert "vector" not in text
    assert "embedding" not in text

    def longest_float_list(node: object) -> int:
        if isinstance(node, dict):
            return max((longest_float_list(v) for v in node.values()), default=0)
        if isinstance(node, list):
            floats = sum(isinstance(v, float) for v in node)
            return max([floats, *(longest_float_list(v) for v in node)])
        return 0

    assert longest_float_list({k: v for k, v in report.items() if k != "curves"}) <= 2  # intervals only
    assert all(isinstance(k, int) for c in report["curves"]["impostor"].values() for k in c["k"])


# --- summaries across groups ------------------------------------------------------------------------


def _cell(k: int, n: int) -> dict:
    return {"k": k, "n": n}


def test_summary_is_the_worst_group_over_the_geometric_mean() -> None:
    s = summary({"F": _cell(40, 1000), "M": _cell(10, 1000), ALL: _cell(50, 2000)})
    assert s["worst_group"] == "F"
    assert s["best_group"] == "M"
    assert s["geomean"] == pytest.approx(0.02)
    assert s["max_over_geomean"] == pytest.approx(2.0)
    assert s["max_over_min"] == pytest.approx(4.0)


def test_a_small_group_without_errors_cannot_inflate_the_geometric_mean() -> None:
    """14 trials floored at 1/14 would exceed the worst measured rate: such a group is left out."""
    s = summary({"F": _cell(50, 1000), "M": _cell(20, 1000), "tiny": _cell(0, 14), "big": _cell(0, 10_000)})
    assert s["too_small"] == ["tiny"]
    assert s["floored"] == ["big"]
    assert s["geomean"] <= s["max"]
    assert summary({"F": _cell(0, 10), "M": _cell(0, 10)})["max_over_geomean"] == 1.0


# --- HTML and plots ---------------------------------------------------------------------------------


def test_the_html_report_embeds_its_plots_and_escapes_the_labels(
    johns_report: tuple[Measurements, dict], tmp_path: Path
) -> None:
    _m, report = johns_report
    hostile = json.loads(json.dumps(report))
    hostile["dataset"]["name"] = "<script>alert(1)</script>"
    written = write(hostile, tmp_path)
    names = {p.name for p in written}
    assert {"det.png", "scores.png", "rates.png", "images.png", "identification.png", "report.html"} <= names
    for p in written:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert p.stat().st_size > 5_000
    page = (tmp_path / "report.html").read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert page.count("data:image/png;base64,") == 5
    assert render_html(report, {}).count("<table>") >= 3


# --- the release gate ---------------------------------------------------------------------------------


def _two_groups(rng_seed: int = 7) -> Measurements:
    """Synthetic templates: group F's people are closer to one another than group M's (more false matches)."""
    rng = np.random.default_rng(rng_seed)
    images, vectors, outcomes = [], [], []
    # Per-dimension variances: shared by the group, the person's own, the photo's noise. Expected cosines:
    # impostor ≈ shared, genuine ≈ shared + own (F: 0.30 / 0.55; M: 0.20 / 0.55).
    for group, shared, own in (("F", 0.30, 0.25), ("M", 0.20, 0.35)):
        centre = rng.normal(size=128)
        for person in range(30):
            identity = np.sqrt(shared) * centre + np.sqrt(own) * rng.normal(size=128)
            for shot in range(3):
                v = identity + np.sqrt(1 - shared - own) * rng.normal(size=128)
                vectors.append(v / np.linalg.norm(v))
                images.append(LabelledImage(Path(f"/{group}{person}_{shot}.jpg"), f"{group}{person}", group))
                outcomes.append("ok")
    dataset = Dataset("synthetic", "test", tuple(images), True, "annotated")
    return Measurements(dataset, tuple(outcomes), (1,) * len(images), np.asarray(vectors, np.float32))


def test_the_gate_passes_at_the_measured_figures_and_fails_when_a_bound_is_lowered_below_them() -> None:
    report = build_report(_two_groups())
    at = {u: p for p in report["verification"]["at"] for u in p["use_cases"]}["access_control"]
    worst_fmr = max(c["k"] / c["n"] for g, c in at["fmr"].items() if g != ALL)
    worst_fnmr = max(c["k"] / c["n"] for g, c in at["fnmr"].items() if g != ALL)
    assert worst_fmr > 0
    assert worst_fnmr > 0
    ratio = at["fmr_summary"]["max_over_geomean"]
    loose = {
        "fmr_max": {"access_control": worst_fmr},
        "fnmr_max": {"access_control": worst_fnmr},
        "fmr_max_over_geomean": {"access_control": ratio},
    }
    assert check(report, loose)["passed"]
    for bound, value in (("fmr_max", worst_fmr), ("fnmr_max", worst_fnmr), ("fmr_max_over_geomean", ratio)):
        tight = {**loose, bound: {"access_control": value * 0.99}}
        result = check(report, tight)
        assert not result["passed"]
        failed = [c for c in result["checks"] if not c["passed"]]
        assert [c["bound"] for c in failed] == [bound]
        assert (
            failed[0]["group"] == at[bound.split("_")[0] + "_summary"]["worst_group"] or bound != "fmr_max_over_geomean"
        )


def test_a_bound_on_a_figure_the_report_lacks_fails_instead_of_passing_by_measuring_nothing(
    johns_report: tuple[Measurements, dict],
) -> None:
    _, report = johns_report
    no_search = json.loads(json.dumps(report))
    no_search["identification"] = None
    result = check(no_search, {"fnir_max": 0.5})
    assert not result["passed"]
    assert "not measured" in result["checks"][0]["text"]
    assert not check(report, {})["passed"]  # no bound at all is no gate


def test_bounds_are_checked_before_anything_runs(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="unknown bounds"):
        check_bounds({"fmr_maxx": 0.1}, where="x")
    with pytest.raises(InvalidRequestError, match="non-negative"):
        check_bounds({"fnmr_max": "target"}, where="x")
    config = tmp_path / "gate.json"
    config.write_text(json.dumps({"schema": 1, "sets": [{"name": "a", "dataset": "johns", "bounds": {"x": 1}}]}))
    with pytest.raises(InvalidRequestError, match="unknown bounds"):
        load_config(config)


def test_the_projects_gate_configuration_covers_every_set_and_every_use_case() -> None:
    sets = load_config(ROOT / "benchmarks" / "release_gate.json")
    names = {s.name for s in sets}
    assert {"lfw-gender", "fairface", "johns", "face_recognition"} <= names
    lfw = next(s for s in sets if s.name == "lfw-gender")
    assert lfw.bounds["fmr_max"] == "target"  # the catalog's own targets, never a looser number
    assert Path(lfw.dataset).name == "lfw"


def test_the_cli_gate_exits_3_on_a_mislabelled_set_and_0_on_the_true_labels(
    tmp_path: Path, johns: dict[str, list[Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    """Labelling two different men as one person makes false non-matches: a 0 FNMR bound must fail."""
    import cv2

    people = sorted(johns)[:2]
    rows = []
    for person in people:
        for i, p in enumerate(johns[person][:3]):
            cv2.imwrite(str(tmp_path / f"{person}{i}.png"), johns_chip(p))
            rows.append({"path": f"{person}{i}.png", "identity": person, "group": "M"})
    bounds = tmp_path / "bounds.json"
    bounds.write_text(json.dumps({"fnmr_max": 0.0, "fmr_max": "target"}))
    _csv(tmp_path / "labels.csv", rows)
    assert main(["evaluate", str(tmp_path), "--gate", str(bounds), "--out", str(tmp_path / "ok"), "--json-only"]) == 0
    wrong = [{**r, "identity": "one_person"} for r in rows]
    _csv(tmp_path / "labels.csv", wrong)
    assert main(["evaluate", str(tmp_path), "--gate", str(bounds), "--out", str(tmp_path / "bad")]) == 3
    out = capsys.readouterr().out
    assert "EXCEEDED" in out
    assert "worst-group FNMR" in out
    saved = json.loads((tmp_path / "bad" / "report.json").read_text())
    assert saved["gate"]["passed"] is False
    assert "FAILED" in (tmp_path / "bad" / "report.html").read_text()


def test_an_image_without_a_template_is_in_no_impostor_pair_not_even_in_the_denominator() -> None:
    """It cannot falsely match, and counting its pairs in n would lower the reported FMR."""
    from facegate.evaluation import count_pairs

    v = np.eye(4, 128, dtype=np.float32)
    v[3] = np.nan
    counts = count_pairs(v, ["a", "b", "c", "d"], ["F"] * 4, [0.5])
    assert counts.impostor["F"][1] == 3  # a-b, a-c, b-c; never d
