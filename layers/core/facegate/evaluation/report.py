"""The per-group evaluation report (JSON): what ``facegate evaluate`` writes and the release gate reads.

Everything is counts (``k`` errors of ``n`` trials, with a Wilson 95% interval), never a per-pair score or a
template: the report of a tester's set can be handed back without carrying biometric data.

- **Images**, per group: no face found, refused by the quality bar (too small, low quality), unreadable,
  and more than one face comparable to the subject (refused as a crowd by the 1:1 use cases).
- **Verification** at each operating threshold of the catalog (one threshold for all groups): FMR over every
  cross-person pair within each group, FMR across groups (reported apart), FNMR over every same-person
  pair (an image without a template is a non-match), and NIST FRVT Part 8-style summaries across groups:
  the worst group, the geometric mean and their ratio.
- **Identification** (1:N) on a gallery/probe split: alternate identities with ≥ 2 images are enrolled
  from one image (their other images are mated probes); every image of the others is a non-mated probe.
  FNIR (mate not returned at or above the threshold within the use case's candidate list) and FPIR (any
  candidate at or above it), per probe group, for each use case that searches.
- **Curves**: error counts on a grid of thresholds per group, for DET curves and score distributions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from facegate.embedding import MODEL_VERSION
from facegate.evaluation.dataset import UNLABELLED, Dataset
from facegate.evaluation.measure import OUTCOMES, Measurements, measure
from facegate.evaluation.pairs import count_pairs
from facegate.policy.catalog import Catalog, default_catalog
from facegate.stats import wilson

if TYPE_CHECKING:
    from facegate.vision import FacePipeline

SCHEMA = 1
KIND = "facegate.evaluation"
GRID_STEP = 0.005
GRID = tuple(round(-0.2 + GRID_STEP * i, 3) for i in range(241))  # -0.2 … 1.0
ALL = "*"
"""The key of the figure over every group together."""


def rate(k: int, n: int) -> dict[str, Any]:
    lo, hi = wilson(int(k), int(n))
    return {"k": int(k), "n": int(n), "rate": (k / n) if n else None, "ci95": [lo, hi]}


def summary(cells: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Across groups (FRVT Part 8 style): the worst group, the geometric mean, max / geometric mean and
    max / min.

    A group without an error is floored at one error in its trials (``1/n``, its count's resolution) so
    that the geometric mean is defined (``floored``); such a group takes part only when it is large enough
    to have shown three errors at the worst group's rate (the rule of three), else a small group's floor
    would exceed every measured rate (``too_small``)."""
    groups = {g: c for g, c in cells.items() if g != ALL and c["n"]}
    if not groups:
        return {"groups": 0}
    observed = {g: c["k"] / c["n"] for g, c in groups.items()}
    worst = max(sorted(groups), key=lambda g: observed[g])
    top = observed[worst]
    if top == 0:  # no error in any group: no differential
        return {
            "groups": len(groups),
            "worst_group": worst,
            "max": 0.0,
            "best_group": worst,
            "min": 0.0,
            "geomean": 0.0,
            "max_over_geomean": 1.0,
            "max_over_min": 1.0,
            "floored": sorted(groups),
            "too_small": [],
        }
    too_small = sorted(g for g, c in groups.items() if c["k"] == 0 and c["n"] * top < 3)
    kept = {g: c for g, c in groups.items() if g not in too_small}
    floored = sorted(g for g, c in kept.items() if c["k"] == 0)
    rates = {g: max(c["k"], 1) / c["n"] for g, c in kept.items()}
    best = min(sorted(kept), key=lambda g: rates[g])
    geomean = math.exp(sum(math.log(r) for r in rates.values()) / len(rates))
    return {
        "groups": len(kept),
        "worst_group": worst,
        "max": top,
        "best_group": best,
        "min": observed[best],
        "geomean": geomean,
        "max_over_geomean": rates[worst] / geomean,
        "max_over_min": rates[worst] / rates[best],
        "floored": floored,
        "too_small": too_small,
    }


def operating_points(catalog: Catalog) -> list[dict[str, Any]]:
    """Each distinct threshold of the catalog's use cases, with the use cases run at it."""
    points: dict[float, list[str]] = {}
    for name, case in sorted(catalog.use_cases.items()):
        points.setdefault(round(case.default_threshold, 3), []).append(name)
    return [
        {
            "threshold": t,
            "use_cases": names,
            "target_fmr": min(catalog.use_cases[n].target_fmr for n in names),
        }
        for t, names in sorted(points.items())
    ]


def _images(m: Measurements) -> dict[str, Any]:
    groups = sorted({g for g in m.groups if g != UNLABELLED})
    out: dict[str, Any] = {}
    for g in [*groups, ALL]:
        idx = [i for i, grp in enumerate(m.groups) if g in (ALL, grp)]
        n = len(idx)
        got = [m.outcomes[i] for i in idx]
        cell: dict[str, Any] = {o: rate(got.count(o), n) for o in OUTCOMES if o != "ok"}
        cell["quality_refused"] = rate(got.count("face_too_small") + got.count("low_quality"), n)
        cell["templated"] = rate(got.count("ok"), n)
        cell["crowd"] = rate(sum(1 for i in idx if m.comparable_faces[i] > 1), n)
        out[g] = cell
    return out


def _grid(extra: Sequence[float]) -> tuple[float, ...]:
    return tuple(sorted({*GRID, *(round(t, 3) for t in extra)}))


def _verification(m: Measurements, points: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    grid = _grid([p["threshold"] for p in points])
    pc = count_pairs(m.vectors, m.identities, m.groups, grid)
    at: list[dict[str, Any]] = []
    for p in points:
        i = grid.index(p["threshold"])
        within = {g: rate(k[i], n) for g, (k, n) in pc.within().items()}
        cross = {g: rate(k[i], n) for g, (k, n) in pc.cross().items()}
        all_k = sum(int(k[i]) for k, _ in pc.impostor.values())
        all_n = sum(n for _, n in pc.impostor.values())
        within[ALL] = rate(all_k, all_n)
        entry: dict[str, Any] = {
            **p,
            "fmr": within,
            "fmr_cross_group": cross,
            "fmr_summary": summary(within),
        }
        if m.dataset.identities_known and pc.genuine:
            fnmr = {g: rate(k[i], n) for g, (k, n) in pc.genuine.items()}
            fnmr[ALL] = rate(sum(int(k[i]) for k, _ in pc.genuine.values()), sum(n for _, n in pc.genuine.values()))
            entry["fnmr"] = fnmr
            entry["fnmr_summary"] = summary(fnmr)
        at.append(entry)
    curves = {
        "thresholds": list(grid),
        "impostor": {g: {"k": [int(x) for x in k], "n": n} for g, (k, n) in pc.impostor.items()},
        "genuine": {g: {"k": [int(x) for x in k], "n": n} for g, (k, n) in pc.genuine.items()},
        "meaning": "impostor k: pairs scoring at or above each threshold; genuine k: pairs below it",
    }
    return {"at": at}, curves


def split(m: Measurements) -> tuple[list[int], list[int], list[int]]:
    """Gallery images, mated probes and non-mated probes (indices), deterministic from the labels."""
    by_person: dict[str, list[int]] = {}
    for i, image in sorted(enumerate(m.dataset.images), key=lambda t: str(t[1].path)):
        if image.group != UNLABELLED:
            by_person.setdefault(image.identity, []).append(i)
    multi = sorted(p for p, idx in by_person.items() if len(idx) >= 2 and any(m.outcomes[i] == "ok" for i in idx))
    enrolled = set(multi[::2])
    gallery: list[int] = []
    mated: list[int] = []
    non_mated: list[int] = []
    for person, idx in sorted(by_person.items()):
        if person in enrolled:
            first = next(i for i in idx if m.outcomes[i] == "ok")
            gallery.append(first)
            mated.extend(i for i in idx if i != first)
        else:
            non_mated.extend(idx)
    return gallery, mated, non_mated


def _identification(m: Measurements, catalog: Catalog) -> dict[str, Any] | None:
    if not m.dataset.identities_known:
        return None
    gallery, mated, non_mated = split(m)
    if not gallery or not mated:
        return None
    g_vec = m.vectors[gallery].astype(np.float64)
    g_owner = np.asarray([m.identities[i] for i in gallery])

    def scores(probes: list[int]) -> npt.NDArray[np.float64]:
        x = np.nan_to_num(m.vectors[probes].astype(np.float64), nan=0.0)
        s = x @ g_vec.T
        s[np.isnan(m.vectors[probes]).any(axis=1)] = -np.inf  # no template: no candidate at all
        return s

    s_mated, s_non = scores(mated), scores(non_mated)
    owner_col = np.asarray([int(np.nonzero(g_owner == m.identities[i])[0][0]) for i in mated])
    mate = s_mated[np.arange(len(mated)), owner_col]
    rank = 1 + (s_mated > mate[:, None]).sum(axis=1)  # ties in the mate's favour
    top_non = s_non.max(axis=1) if len(non_mated) else np.zeros(0)
    mated_group = np.asarray([m.groups[i] for i in mated])
    non_group = np.asarray([m.groups[i] for i in non_mated])
    out: dict[str, Any] = {
        "gallery_size": len(gallery),
        "mated_probes": len(mated),
        "non_mated_probes": len(non_mated),
        "protocol": "alternate identities with >= 2 images enrolled from their first templated image; "
        "their other images are mated probes; every image of the other identities is a non-mated probe",
        "at": [],
    }
    for name, case in sorted(catalog.use_cases.items()):
        if "search" not in case.rate_limits:
            continue
        t, r = case.default_threshold, case.max_results
        miss = (mate < t) | (rank > r)
        false_pos = top_non >= t
        fnir = {
            g: rate(int(miss[mated_group == g].sum()), int((mated_group == g).sum())) for g in sorted(set(mated_group))
        }
        fnir[ALL] = rate(int(miss.sum()), len(mated))
        fpir = {
            g: rate(int(false_pos[non_group == g].sum()), int((non_group == g).sum())) for g in sorted(set(non_group))
        }
        fpir[ALL] = rate(int(false_pos.sum()), len(non_mated))
        out["at"].append(
            {
                "use_case": name,
                "threshold": t,
                "candidates": r,
                "fnir": fnir,
                "fnir_summary": summary(fnir),
                "fpir": fpir,
                "fpir_summary": summary(fpir),
            }
        )
    return out


def build_report(
    m: Measurements, *, catalog: Catalog | None = None, policy_version: str | None = None
) -> dict[str, Any]:
    catalog = catalog or default_catalog()
    points = operating_points(catalog)
    verification, curves = _verification(m, points)
    notes = list(m.dataset.notes)
    if m.dataset.identities_known:
        notes.append("FNMR counts an image without a template (no face, refused by the quality bar) as a non-match")
    return {
        "schema": SCHEMA,
        "kind": KIND,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": m.dataset.summary(),
        "model_version": MODEL_VERSION,
        "catalog_version": catalog.version,
        "policy_version": policy_version,
        "operating_points": points,
        "images": _images(m),
        "verification": verification,
        "identification": _identification(m, catalog),
        "curves": curves,
        "notes": notes,
    }


def evaluate(dataset: Dataset, pipeline: FacePipeline, *, policy_version: str | None = None) -> dict[str, Any]:
    """A labelled set through the production path, counted: the report ``facegate evaluate`` writes and
    the sandbox's job returns to a tester (the same function, so the same figures)."""
    return build_report(measure(dataset, pipeline), policy_version=policy_version)
