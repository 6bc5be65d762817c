"""The model card, generated from what decides: the catalog (uses, thresholds), the Cedar policies (what
is offered and what never is), the model specs (names, pins, licences), the capture modules (bars and
the subject rule, read from their source) and the calibration (per-group error counts).

Every figure is computed here from those sources; none is typed in. Per use case the card carries its
threshold and, at that threshold, for every measured group: the false decisions ``k`` of ``n`` pairs, the
observed rate ``k/n``, the rate facegate reports (a false-match rate never below 3/n) and the Wilson 95%
interval of ``k/n``.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any, Final

import facegate
from facegate.accountability.sources import read_module
from facegate.accountability.uses import offered_operations, refused_uses
from facegate.embedding import EMBEDDING_DIM, MODEL_VERSION
from facegate.errors import AccountabilityError
from facegate.match import Calibration
from facegate.match.calibration import RESOURCE, RULE_OF_THREE
from facegate.models import MODEL_WHEEL, PUBLISHED_THRESHOLD, RECIPE_VERSION, SPECS
from facegate.policy import Operation, PolicyGate, UseCase
from facegate.stats import wilson

SCHEMA: Final = 1
SERVICE: Final = "facegate"
_GENDER_WORDS: Final = {"F": "women", "M": "men", "": "people without a gender label"}
_FMR_TABLES: Final = ("fmr_by_group", "fmr_cross_group", "fmr_by_predicted_group", "fmr_upper_bound_by_group")
_FNMR_TABLES: Final = ("fnmr_by_gender", "fnmr_every_pair_by_gender")
QUALITY_BARS: Final = ("MIN_EYE_DISTANCE_PX", "MIN_SHARPNESS", "MIN_MEAN_GREY", "MAX_BLOWN_OUT", "BLOWN_OUT_LEVEL")
SUBJECT_RULE: Final = ("SUBJECT_TIE", "BYSTANDER_RATIO")
IMAGE_LIMITS: Final = ("MAX_BYTES", "MAX_PIXELS", "MAX_DECODE_MEMORY", "MAX_JPEG_SCANS")


def label(group: str) -> str:
    """A group's name in words: ``F`` women, ``asian_M`` asian men, ``F~M`` women with men."""
    if "~" in group:
        return " with ".join(label(g) for g in group.split("~"))
    prefix, _, gender = group.rpartition("_")
    words = _GENDER_WORDS.get(gender, gender)
    return f"{prefix} {words}" if prefix else words


def pct(rate: float) -> str:
    return f"{rate * 100:.3g}%"


def calibration_digest() -> str:
    """The first 12 hex digits of the packaged calibration file's sha256 (as the policy digest is cut)."""
    data = resources.files("facegate.match").joinpath(RESOURCE).read_bytes()
    return hashlib.sha256(data).hexdigest()[:12]


def _rows(cal: Calibration, table: str, rates: Mapping[str, float], threshold: float) -> list[dict[str, Any]]:
    rows = []
    for group in cal.counts()[table]:
        k, n = cal.observed(table, group, threshold)
        low, high = wilson(k, n)
        rows.append(
            {
                "group": group,
                "label": label(group),
                "k": k,
                "n": n,
                "observed": k / n,
                "rate": rates[group],
                "wilson_low": low,
                "wilson_high": high,
            }
        )
    return rows


def use_case_figures(cal: Calibration, case: UseCase, threshold: float) -> dict[str, Any]:
    """Every measured rate at ``threshold``, per group, with its counts and interval."""
    rates = {
        "fmr_by_group": cal.fmr_by_group(threshold),
        "fmr_cross_group": cal.fmr_cross_group(threshold),
        "fmr_by_predicted_group": cal.fmr_by_predicted_group(threshold),
        "fmr_upper_bound_by_group": cal.fmr_upper_bound_by_group(threshold),
        "fnmr_by_gender": cal.fnmr_by_gender(threshold),
        "fnmr_every_pair_by_gender": cal.fnmr_every_pair_by_gender(threshold),
    }
    figures: dict[str, Any] = {
        table: _rows(cal, table, rates[table], threshold) for table in (*_FMR_TABLES, *_FNMR_TABLES)
    }
    figures.update(
        {
            "worst_group": cal.worst_group(threshold),
            "worst_group_fmr": cal.worst_group_fmr(threshold),
            "overall_fmr": cal.overall_fmr(threshold),
            "overall_fnmr": cal.overall_fnmr(threshold),
            "fused_templates": [
                {
                    "references": r,
                    "threshold": cal.threshold_for(case.target_fmr, r),
                    "offset": cal.reference_offset(r, case.target_fmr),
                }
                for r in cal.fused_references
            ],
        }
    )
    return figures


def _use_case(gate: PolicyGate, cal: Calibration, name: str, case: UseCase) -> dict[str, Any]:
    threshold = case.default_threshold
    try:
        figures = use_case_figures(cal, case, threshold)
    except ValueError as exc:
        raise AccountabilityError(f"{name}: no calibrated figures at {threshold}: {exc}") from exc
    entry: dict[str, Any] = {
        "description": case.description,
        "deployments": list(case.deployments),
        "target_fmr": case.target_fmr,
        "threshold_floor": case.threshold_floor,
        "default_threshold": case.default_threshold,
        "threshold": threshold,
        "calibrated_threshold": cal.threshold_for(case.target_fmr),
        **figures,
    }
    searches = any(
        o["operation"] == Operation.SEARCH.value for d in case.deployments for o in offered_operations(gate, name, d)
    )
    if searches:
        # Linearity of expectation: N people compared at a per-comparison rate FMR give N × FMR false
        # candidates on average (facegate.match.SearchResult), with the worst group's rate.
        entry["expected_false_candidates_in_a_full_gallery"] = case.max_gallery_size * figures["worst_group_fmr"]
    return entry


def _intended(gate: PolicyGate, name: str, case: UseCase) -> dict[str, Any]:
    operations: dict[str, dict[str, Any]] = {}
    for deployment in case.deployments:
        for offered in offered_operations(gate, name, deployment):
            entry = operations.setdefault(
                offered["operation"], {"operation": offered["operation"], "deployments": [], "obligations": []}
            )
            entry["deployments"].append(deployment)
            entry["obligations"] = sorted(set(entry["obligations"]) | set(offered["obligations"]))
    return {
        "use_case": name,
        "description": case.description,
        "deployments": list(case.deployments),
        "operations": list(operations.values()),
    }


def _capture() -> dict[str, Any]:
    quality = read_module("facegate.vision.quality")
    subject = read_module("facegate.vision.subject")
    detector = read_module("facegate.vision.detector")
    decode = read_module("facegate.vision.decode")
    return {
        "image_formats": decode.members("ImageFormat"),
        "image_limits": {name: decode.get(name) for name in IMAGE_LIMITS},
        "detector_score_threshold": detector.get("DEFAULT_SCORE_THRESHOLD"),
        "subject_rule": {name: subject.get(name) for name in SUBJECT_RULE},
        "subject_rule_notes": {name: subject.notes.get(name, "") for name in SUBJECT_RULE},
        "subject_rule_derivation": subject.docstring,
        "quality_bars": {name: quality.get(name) for name in QUALITY_BARS},
        "quality_derivation": quality.docstring,
    }


def _known_limits(gate: PolicyGate, cal: Calibration) -> list[str]:
    limits: list[str] = []
    catalog = gate.catalog
    for threshold in sorted({c.default_threshold for c in catalog.use_cases.values()}):
        users = ", ".join(n for n, c in catalog.use_cases.items() if c.default_threshold == threshold)
        fnmr = cal.fnmr_by_gender(threshold)
        worst, best = max(fnmr, key=lambda g: fnmr[g]), min(fnmr, key=lambda g: fnmr[g])
        if fnmr[worst] > fnmr[best]:
            kw, nw = cal.observed("fnmr_by_gender", worst, threshold)
            kb, nb = cal.observed("fnmr_by_gender", best, threshold)
            how_often = f"{fnmr[worst] / fnmr[best]:.1f}× as often as" if fnmr[best] > 0 else "more often than"
            limits.append(
                f"At threshold {threshold} ({users}) genuine attempts by {label(worst)} fail {how_often} those by "
                f"{label(best)}: false non-match rate {pct(fnmr[worst])} ({kw}/{nw} LFW View-2 pairs) against "
                f"{pct(fnmr[best])} ({kb}/{nb})."
            )
        group = cal.worst_group(threshold)
        k, n = cal.observed("fmr_by_group", group, threshold)
        limits.append(
            f"At threshold {threshold} ({users}) false matches are likeliest among {label(group)}: "
            f"{pct(cal.worst_group_fmr(threshold))} ({k}/{n} impostor pairs, reported never below {RULE_OF_THREE}/n)."
        )
    for r in cal.fused_references:
        offsets = "; ".join(
            f"{cal.reference_offset(r, target):.3f} at a target FMR of {target:g}"
            for target in sorted({c.target_fmr for c in catalog.use_cases.values()})
        )
        limits.append(
            f"A template fused from {r} photos scores impostors higher than a single photo: the matcher "
            f"subtracts {offsets} from its cosine to keep the same false-match rate."
        )
    lfw = cal.provenance["datasets"]["lfw"]
    people = lfw.get("people_by_gender", {})
    if people:
        counted = ", ".join(f"{people[g]} {label(g)}" for g in people)
        limits.append(f"Identity-labelled calibration data (LFW, {lfw['people']} people: {counted}).")
    limits.append(
        "Rates per predicted race and gender group are reported for rough stratification only: " + lfw.get("groups", "")
    )
    fairface = cal.provenance["datasets"].get("fairface")
    if fairface:
        limits.append(
            "FairFace rates are an upper bound on the false-match rate, not a measurement of it: "
            + str(fairface.get("what", ""))
        )
    if cal.model_version != MODEL_VERSION:
        limits.append(
            f"The calibration was measured with {cal.model_version}, not the running {MODEL_VERSION}: its "
            "figures do not describe this model."
        )
    return limits


@cache
def _card() -> dict[str, Any]:
    gate = PolicyGate()
    cal = Calibration.packaged()
    catalog = gate.catalog
    build = read_module("facegate.models.build")
    provenance = cal.provenance
    return {
        "title": f"Model card: {SERVICE} {MODEL_VERSION}",
        "kind": "facegate.model_card",
        "schema": SCHEMA,
        "generated": {
            "facegate_version": facegate.__version__,
            "catalog_version": catalog.version,
            "policy_version": gate.version,
            "model_version": MODEL_VERSION,
            "calibration_date": provenance["date"],
            "calibration_digest": calibration_digest(),
            "calibration_command": provenance["command"],
        },
        "model": {
            "name": f"{SERVICE} face recognition",
            "version": MODEL_VERSION,
            "components": [
                {
                    "key": spec.key,
                    "version": spec.version,
                    "sha256": spec.sha256,
                    "bytes": spec.size,
                    "built_name": spec.built_name,
                    "licence": spec.licence,
                    "attribution": spec.attribution,
                    "upstream": spec.upstream,
                }
                for spec in SPECS
            ],
            "fetched_from": {
                "requirement": MODEL_WHEEL.requirement,
                "filename": MODEL_WHEEL.filename,
                "sha256": MODEL_WHEEL.sha256,
            },
            "build_recipe_version": RECIPE_VERSION,
            "build": build.docstring,
            "embedding_dim": EMBEDDING_DIM,
            "score": provenance["score"],
            "published_threshold": PUBLISHED_THRESHOLD,
        },
        "intended_uses": [_intended(gate, name, case) for name, case in catalog.use_cases.items()],
        "out_of_scope_uses": [dict(u) for u in refused_uses()],
        "moratoria": [
            {"sector": m.sector.value, "countries": list(m.countries), "note": m.note} for m in catalog.moratoria
        ],
        "calibration_data": {
            "datasets": copy.deepcopy(dict(provenance["datasets"])),
            "pairs_measured": cal.counts(),
            "how_counted": provenance["counts"],
            "face_pick": provenance["face_pick"],
            "detector_score_threshold": provenance["detector_score_threshold"],
            "calibrated_model": cal.model_version,
        },
        "use_cases": {name: _use_case(gate, cal, name, case) for name, case in catalog.use_cases.items()},
        "capture": _capture(),
        "known_limits": _known_limits(gate, cal),
    }


def model_card() -> dict[str, Any]:
    """The model card as JSON-ready data (a fresh copy; the sources are read once per process)."""
    return copy.deepcopy(_card())
