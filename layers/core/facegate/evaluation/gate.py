"""The release gate: configured bounds on an evaluation report, checked in CI on every labelled set.

A configuration (``benchmarks/release_gate.json``) lists sets, how to read each, and its bounds::

    {"schema": 1, "sets": [{"name": "lfw-gender", "dataset": "../../shared/data/lfw",
       "identity_column": "identity", "group_column": "gender_id", "group_source": "manual",
       "bounds": {"fmr_max": "target", "fmr_max_over_geomean": 2.5, "fnmr_max": {"access_control": 0.11}}}]}

Bounds (each optional; a number applies to every use case, a map names use cases, ``"target"`` is the use
case's own target FMR from the catalog):

- ``fmr_max``: the worst group's FMR (within group) at the use case's threshold;
- ``fmr_cross_group_max``: the worst cross-group FMR there;
- ``fmr_max_over_geomean`` / ``fnmr_max_over_geomean``: the differential across groups (FRVT Part 8);
- ``fnmr_max``: the worst group's FNMR;
- ``fnir_max`` / ``fpir_max``: the worst group's 1:N rates, for use cases that search;
- ``no_face_max`` / ``quality_refused_max``: the worst group's per-image rates (numbers only).

Point estimates are compared (an interval's upper bound on a small set would fail every release); the
report carries the intervals beside them. A bound on a figure the report lacks fails: a gate never passes
by measuring nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facegate.errors import InvalidRequestError
from facegate.policy.catalog import Catalog, default_catalog

SCHEMA = 1
PER_USE_CASE = (
    "fmr_max",
    "fmr_cross_group_max",
    "fmr_max_over_geomean",
    "fnmr_max",
    "fnmr_max_over_geomean",
    "fnir_max",
    "fpir_max",
)
PER_IMAGE = {"no_face_max": "no_face", "quality_refused_max": "quality_refused"}
DATASET_KEYS = {"name", "dataset", "identity_column", "group_column", "group_source", "path_column", "bounds"}


@dataclass(frozen=True)
class GateSet:
    name: str
    dataset: str
    options: dict[str, Any]
    bounds: dict[str, Any]


def load_config(path: Path) -> list[GateSet]:
    """Read and check a gate configuration; dataset paths are relative to the file's folder."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidRequestError(f"release gate configuration {path} cannot be read: {exc}") from exc
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("sets"), list):
        raise InvalidRequestError(f"{path}: expected {{'schema': {SCHEMA}, 'sets': [...]}}")
    out = []
    for entry in data["sets"]:
        if not isinstance(entry, dict) or not {"name", "dataset", "bounds"} <= set(entry):
            raise InvalidRequestError(f"{path}: every set needs name, dataset and bounds")
        unknown = set(entry) - DATASET_KEYS
        if unknown:
            raise InvalidRequestError(f"{path}: set {entry['name']!r} has unknown keys {sorted(unknown)}")
        check_bounds(entry["bounds"], where=f"{path}: set {entry['name']!r}")
        spec = str(entry["dataset"])
        if "/" in spec or spec.endswith(".csv"):
            spec = str((path.parent / spec).resolve())
        options = {
            k: entry[k] for k in ("identity_column", "group_column", "group_source", "path_column") if k in entry
        }
        out.append(GateSet(str(entry["name"]), spec, options, dict(entry["bounds"])))
    if len({s.name for s in out}) != len(out):
        raise InvalidRequestError(f"{path}: set names must be unique")
    return out


def check_bounds(bounds: Any, *, where: str) -> None:
    if not isinstance(bounds, dict) or not bounds:
        raise InvalidRequestError(f"{where}: bounds must be a non-empty object")
    unknown = set(bounds) - set(PER_USE_CASE) - set(PER_IMAGE)
    if unknown:
        raise InvalidRequestError(f"{where}: unknown bounds {sorted(unknown)} (known: {[*PER_USE_CASE, *PER_IMAGE]})")
    for key, value in bounds.items():
        values = value.values() if isinstance(value, dict) else [value]
        for v in values:
            if v == "target" and key in ("fmr_max", "fmr_cross_group_max"):
                continue
            if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
                raise InvalidRequestError(f"{where}: bound {key} must be a non-negative number, got {v!r}")


def _bound_for(value: Any, use_case: str, catalog: Catalog) -> float | None:
    if isinstance(value, dict):
        value = value.get(use_case)
    if value is None:
        return None
    if value == "target":
        return catalog.use_cases[use_case].target_fmr
    return float(value)


def _worst(cells: Mapping[str, Any]) -> tuple[str, float] | None:
    rated = {g: c["k"] / c["n"] for g, c in cells.items() if g != "*" and c["n"]}
    if not rated:
        return None
    group = max(sorted(rated), key=lambda g: rated[g])
    return group, rated[group]


def check(report: Mapping[str, Any], bounds: Mapping[str, Any], *, catalog: Catalog | None = None) -> dict[str, Any]:
    """Every bound against the report: ``{"passed": bool, "checks": [{"bound", "value", "limit", ...}]}``."""
    catalog = catalog or default_catalog()
    checks: list[dict[str, Any]] = []
    name = report["dataset"]["name"]

    def record(bound: str, label: str, value: float | None, limit: float, group: str | None) -> None:
        passed = value is not None and value <= limit
        shown = "not measured" if value is None else f"{value:.3g}" + (f" ({group})" if group else "")
        checks.append(
            {
                "bound": bound,
                "label": label,
                "value": value,
                "group": group,
                "limit": limit,
                "passed": passed,
                "text": f"{name}: {label} {shown} {'≤' if passed else '>'} {limit:g}",
            }
        )

    verification = {u: p for p in report["verification"]["at"] for u in p["use_cases"]}
    identification = {p["use_case"]: p for p in (report.get("identification") or {}).get("at", [])}
    for use_case in sorted(catalog.use_cases):
        point = verification.get(use_case)
        at = f"at {catalog.use_cases[use_case].default_threshold} ({use_case})"
        for bound in PER_USE_CASE:
            limit = _bound_for(bounds.get(bound), use_case, catalog)
            if limit is None:
                continue
            if bound in ("fnir_max", "fpir_max"):
                if "search" not in catalog.use_cases[use_case].rate_limits:
                    continue
                cells = (identification.get(use_case) or {}).get(bound.split("_")[0])
                worst = _worst(cells) if cells else None
                record(
                    bound,
                    f"worst-group {bound.split('_')[0].upper()} {at}",
                    worst and worst[1],
                    limit,
                    worst and worst[0],
                )
                continue
            if bound.endswith("_over_geomean"):
                kind = bound.split("_")[0]
                s = (point or {}).get(f"{kind}_summary") or {}
                value = s.get("max_over_geomean") if s.get("groups", 0) >= 2 else None
                if s.get("groups") == 1:
                    continue  # one group: no differential to bound
                record(bound, f"{kind.upper()} max/geomean across groups {at}", value, limit, s.get("worst_group"))
                continue
            key = {"fmr_max": "fmr", "fmr_cross_group_max": "fmr_cross_group", "fnmr_max": "fnmr"}[bound]
            cells = (point or {}).get(key)
            worst = _worst(cells) if cells else None
            if bound == "fmr_cross_group_max" and cells == {}:
                continue  # one group: no cross-group pair exists
            label = {"fmr": "worst-group FMR", "fmr_cross_group": "worst cross-group FMR", "fnmr": "worst-group FNMR"}[
                key
            ]
            record(bound, f"{label} {at}", worst and worst[1], limit, worst and worst[0])
    for bound, key in PER_IMAGE.items():
        if bound in bounds:
            worst = _worst({g: c[key] for g, c in report["images"].items()})
            record(
                bound,
                f"worst-group {key.replace('_', ' ')} rate",
                worst and worst[1],
                float(bounds[bound]),
                worst and worst[0],
            )
    return {"passed": all(c["passed"] for c in checks) and bool(checks), "checks": checks}


SUMMARY_KIND = "facegate.release_evaluation"


def release_summary(reports: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """What the accountability report carries of a release-gate run (``facegate release-gate --summary``):
    per set, the dataset's description, the per-group FMR and FNMR at each operating threshold (counts
    and Wilson intervals), the per-image refusal rates and whether the set passed its bounds. Counts only,
    as the reports hold them; the curves stay in the reports."""
    if not reports:
        raise InvalidRequestError("a release summary needs at least one evaluated set")
    first = next(iter(reports.values()))
    sets = []
    for name, report in reports.items():
        dataset = {k: v for k, v in report["dataset"].items() if k != "source"}
        gate = report.get("gate") or {}
        sets.append(
            {
                "name": name,
                "dataset": dataset,
                "at": report["verification"]["at"],
                "images": report["images"],
                "passed": gate.get("passed"),
                "checks": len(gate.get("checks", [])),
            }
        )
    return {
        "kind": SUMMARY_KIND,
        "schema": SCHEMA,
        "generated_at": first["generated_at"],
        "model_version": first["model_version"],
        "catalog_version": first["catalog_version"],
        "policy_version": first["policy_version"],
        "command": "facegate release-gate --out build/release-gate --summary "
        "layers/core/facegate/accountability/release_evaluation.json",
        "sets": sets,
    }
