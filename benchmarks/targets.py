"""The recognition targets, measured through the product's own path (``make bench-accuracy`` prints them).

Every image is decoded, detected, put through the subject-face rule, aligned and embedded exactly as the
service does; thresholds are the packaged calibration's for each use case's target FMR (the catalog's floors,
once it is up to date; a note is printed where they differ). Printed:

1. LFW View-2 folds 1–5 accuracy at the calibrated 1:1 threshold (and at SFace's published 0.363).
2. Genuine View-2 pairs refused as a crowd (either photo shows more than one counted face): with the
   subject-face rule, and as the old rule counted (every face at score 0.6).
3. FNMR at the access-control operating point with 3 enrolment photos (LFW people with ≥ 4 photos: the
   first 3 enrolled, every other photo a probe), per gender with Wilson intervals and the women/men
   ratio, for a single reference, a fused template and the best of 3 references. A fused template's
   impostor scores differ from a single photo's, so each kind is also measured at the threshold that
   holds *its own* FMR at the target (against every photo of every other person of the same gender).
4. Test-time flip (the crop and its mirror, averaged: the production embedding since sface-2021dec+flip)
   against the crop alone ("plain", ``forward`` without the mirror): the same figures, and the embed time
   it costs.
5. FairFace: no face found per group.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.accuracy import SHARED, read_csv, read_lfw_pairs
from facegate.embedding import l2_normalise
from facegate.match import Calibration
from facegate.policy.catalog import default_catalog
from facegate.stats import wilson
from facegate.vision import FacePipeline, decode_image
from facegate.vision.align import align_face
from facegate.vision.decode import BgrImage

Vectors = npt.NDArray[np.float32]
GRID = np.round(np.arange(0.30, 0.701, 0.005), 3)


@dataclass
class Embedded:
    plain: Vectors  # (N, 128), NaN where no face: the crop alone
    flip: Vectors  # the product's embedding: the crop and its mirror
    counted: npt.NDArray[np.int64]  # faces the crowd rule counts
    detected: npt.NDArray[np.int64]  # every face at the detector's score


def embed_set(pipeline: FacePipeline, root: Path, rows: list[dict[str, str]]) -> Embedded:
    n = len(rows)
    plain = np.full((n, 128), np.nan, np.float32)
    flip = np.full((n, 128), np.nan, np.float32)
    counted = np.zeros(n, np.int64)
    detected = np.zeros(n, np.int64)
    if not pipeline.embedder.flip:
        raise ValueError("targets compares the product's flipped embedding with the crop alone: build it with flip")
    for i, row in enumerate(rows):
        image = decode_image((root / row["path"]).read_bytes())
        analysis = pipeline.analyse_image(image)
        detected[i] = len(analysis.faces)
        counted[i] = analysis.face_count
        if analysis.subject is None:
            continue
        flip[i] = analysis.subject_embedding.vector
        plain[i] = unflipped(pipeline, image, analysis.subject.landmarks)
    return Embedded(plain, flip, counted, detected)


def unflipped(pipeline: FacePipeline, image: BgrImage, landmarks: Any) -> Vectors:
    """The crop alone, without its mirror: the normalised ``fc1`` output (the embedding before flip)."""
    vector: Vectors = l2_normalise(pipeline.embedder.forward([align_face(image, landmarks)]))[0]
    return vector


def _pct(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{100 * k / n:5.2f}% [{100 * lo:.2f}, {100 * hi:.2f}] ({k}/{n})" if n else "n/a"


def view2(vectors: Vectors, rows: list[dict[str, str]], emb: Embedded, thresholds: dict[str, float]) -> dict[str, Any]:
    root = SHARED / "lfw"
    index = {r["path"]: i for i, r in enumerate(rows)}
    pairs, folds = read_lfw_pairs(root)
    a = np.array([index[p[0]] for p in pairs])
    b = np.array([index[p[1]] for p in pairs])
    same = np.array([p[2] for p in pairs])
    fold = np.array([p[3] for p in pairs])
    scores = np.nan_to_num(np.einsum("ij,ij->i", vectors[a], vectors[b]), nan=-1.0)
    out: dict[str, Any] = {}
    for name, t in thresholds.items():
        correct = (scores >= t) == same
        per_fold = [float(correct[fold == f].mean()) for f in range(folds)]
        out[name] = {"threshold": t, "accuracy": float(correct.mean()), "per_fold": per_fold}
    gender = np.array([rows[i]["gender_id"] for i in a])
    crowd_now = (emb.counted[a] > 1) | (emb.counted[b] > 1)
    crowd_before = (emb.detected[a] > 1) | (emb.detected[b] > 1)
    out["crowd"] = {
        g: {
            "refused": int(crowd_now[same & (gender == g)].sum()),
            "refused_before": int(crowd_before[same & (gender == g)].sum()),
            "pairs": int((same & (gender == g)).sum()),
        }
        for g in ("F", "M")
    }
    out["crowd"]["all"] = {
        "refused": int(crowd_now[same].sum()),
        "refused_before": int(crowd_before[same].sum()),
        "pairs": int(same.sum()),
    }
    return out


Fuse = Callable[[Vectors], Vectors]


def _fused(refs: Vectors) -> Vectors:
    return l2_normalise(refs.mean(axis=0, keepdims=True))[0]


def multi_photo(vectors: Vectors, rows: list[dict[str, str]], target: float, threshold: float) -> dict[str, Any]:
    """3 enrolment photos per person (≥ 4 photos), every other photo a probe; each template kind's FNMR
    at the catalog threshold and at the threshold that holds its own FMR at ``target`` per gender."""
    people: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        if r["gender_id"] in ("F", "M") and not np.isnan(vectors[i]).any():
            people[r["identity"]].append(i)
    identity = np.array([r["identity"] for r in rows])
    gender = np.array([r["gender_id"] for r in rows])
    valid = ~np.isnan(vectors).any(axis=1)
    enrolled = {p: sorted(v, key=lambda i: rows[i]["path"]) for p, v in people.items() if len(v) >= 3}
    out: dict[str, Any] = {}
    for kind in ("single", "fused", "best"):
        names = sorted(enrolled)
        refs = [vectors[enrolled[p][:1] if kind == "single" else enrolled[p][:3]] for p in names]
        g_of = np.array([gender[enrolled[p][0]] for p in names])
        # Impostor scores: each template against every photo of every other person of the same gender.
        imp: dict[str, list[npt.NDArray[np.float64]]] = {"F": [], "M": []}
        gen: dict[str, list[float]] = {"F": [], "M": []}
        for p, r, g in zip(names, refs, g_of, strict=True):
            others = valid & (identity != p) & (gender == g)
            if kind == "best":
                s_imp = (vectors[others] @ r.T).max(axis=1)
            else:
                t_vec = _fused(r) if kind == "fused" else r[0]
                s_imp = vectors[others] @ t_vec
            imp[g].append(s_imp.astype(np.float64))
            if len(enrolled[p]) >= 4:  # probes: every photo after the enrolled three
                probes = vectors[enrolled[p][3:]]
                if kind == "best":
                    s_gen = (probes @ r.T).max(axis=1)
                else:
                    s_gen = probes @ (_fused(r) if kind == "fused" else r[0])
                gen[g].extend(float(x) for x in s_gen)
        imp_sorted = {g: np.sort(np.concatenate(v)) for g, v in imp.items()}

        def fmr_hi(t: float, imp_sorted: dict[str, npt.NDArray[np.float64]] = imp_sorted) -> float:
            return max(wilson(int(len(s) - np.searchsorted(s, t)), len(s))[1] for s in imp_sorted.values())

        own = next((float(t) for t in GRID if fmr_hi(float(t)) <= target), float("nan"))
        row: dict[str, Any] = {"own_threshold": own}
        for label, t in (("catalog", threshold), ("own", own)):
            cell: dict[str, Any] = {"threshold": t}
            for g in ("F", "M"):
                s = np.asarray(gen[g])
                k_imp = int(len(imp_sorted[g]) - np.searchsorted(imp_sorted[g], t))
                cell[g] = {
                    "fnmr_k": int((s < t).sum()),
                    "probes": len(s),
                    "fmr_k": k_imp,
                    "impostor_pairs": len(imp_sorted[g]),
                    "people": int((g_of == g).sum()),
                }
            row[label] = cell
        out[kind] = row
    return out


def embed_cost(pipeline: FacePipeline, rows: list[dict[str, str]], count: int = 100) -> dict[str, float]:
    root = SHARED / "lfw"
    crops = []
    for r in rows[:count]:
        image = decode_image((root / r["path"]).read_bytes())
        analysis = pipeline.analyse_image(image)
        if analysis.subject is not None:
            crops.append(align_face(image, analysis.subject.landmarks))
    start = time.perf_counter()
    for c in crops:
        pipeline.embedder.forward([c])
    one = (time.perf_counter() - start) / len(crops)
    start = time.perf_counter()
    for c in crops:
        pipeline.embedder.forward([c, np.ascontiguousarray(c[:, ::-1])])
    two = (time.perf_counter() - start) / len(crops)
    return {"embed_ms": 1000 * one, "embed_with_flip_ms": 1000 * two}


def fairface_no_face(pipeline: FacePipeline) -> dict[str, dict[str, int]]:
    root = SHARED / "fairface"
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"images": 0, "no_face": 0})
    for row in read_csv(root / "labels.csv"):
        analysis = pipeline.analyse_image(decode_image((root / row["path"]).read_bytes()))
        out[row["group"]]["images"] += 1
        out[row["group"]]["no_face"] += int(analysis.subject is None)
    return dict(out)


def targets(pipeline: FacePipeline) -> dict[str, Any]:
    catalog = default_catalog().use_cases
    access = catalog["access_control"]
    # The thresholds the packaged calibration gives each target FMR (the catalog's floors follow from them;
    # a unit test keeps the two equal). Taken from the calibration so that a recalibration is measured at
    # its own operating points before the catalog is updated.
    calibration = Calibration.packaged()
    one_to_one = calibration.threshold_for(catalog["identity_verification"].target_fmr)
    access_threshold = calibration.threshold_for(access.target_fmr)
    for name, t in (("identity_verification", one_to_one), ("access_control", access_threshold)):
        if catalog[name].default_threshold != t:
            print(f"note: {name}'s catalog threshold {catalog[name].default_threshold} is not the calibration's {t}")
    rows = read_csv(SHARED / "lfw" / "labels.csv")
    start = time.perf_counter()
    emb = embed_set(pipeline, SHARED / "lfw", rows)
    seconds = time.perf_counter() - start
    print(f"targets: {len(rows)} LFW images through the product path, plain and flipped ({seconds:.0f} s)")
    report: dict[str, Any] = {"thresholds": {"1:1": one_to_one, "access_control": access_threshold}}
    for variant, vectors in (("plain", emb.plain), ("flip", emb.flip)):
        v2 = view2(vectors, rows, emb, {"calibrated_1to1": one_to_one, "published_0.363": 0.363})
        mp = multi_photo(vectors, rows, access.target_fmr, access_threshold)
        report[variant] = {"view2": v2, "multi_photo": mp}
    report["embed_cost"] = embed_cost(pipeline, rows)
    report["fairface_no_face"] = fairface_no_face(pipeline)
    print_targets(report, access.target_fmr)
    return report


def print_targets(report: dict[str, Any], target: float) -> None:
    plain, flip = report["plain"], report["flip"]
    v2 = plain["view2"]
    c = v2["crowd"]
    print("\nTargets (product path, ../shared/data):")
    acc = v2["calibrated_1to1"]
    print(
        f"  1. LFW View-2 folds 1-5 accuracy at the calibrated 1:1 threshold {acc['threshold']}: "
        f"{100 * acc['accuracy']:.2f}% (target >= 99.6%); per fold "
        + ", ".join(f"{100 * a:.2f}" for a in acc["per_fold"])
        + f"; at 0.363: {100 * v2['published_0.363']['accuracy']:.2f}%"
    )
    print(
        f"  2. genuine pairs refused as a crowd: {_pct(c['all']['refused'], c['all']['pairs'])} (target <= 2%); "
        f"women {_pct(c['F']['refused'], c['F']['pairs'])}, men {_pct(c['M']['refused'], c['M']['pairs'])}; "
        f"counting every face at score 0.6: {_pct(c['all']['refused_before'], c['all']['pairs'])}"
    )
    print(f"  3. FNMR with 3 enrolment photos, access control (target FMR {target:g}; target FNMR <= 5%, F/M <= 1.25):")
    for variant, data in (("plain", plain), ("flip", flip)):
        for kind, row in data["multi_photo"].items():
            for label in ("catalog", "own"):
                cell = row[label]
                f, m = cell["F"], cell["M"]
                ratio = (f["fnmr_k"] / f["probes"]) / max(m["fnmr_k"] / m["probes"], 1e-12)
                print(
                    f"     {variant:5s} {kind:6s} @{cell['threshold']:.3f} ({label:7s}) "
                    f"F {_pct(f['fnmr_k'], f['probes'])}  M {_pct(m['fnmr_k'], m['probes'])}  F/M {ratio:.2f}"
                    f"  FMR F {f['fmr_k']}/{f['impostor_pairs']} M {m['fmr_k']}/{m['impostor_pairs']}"
                )
    fv2 = flip["view2"]["calibrated_1to1"]
    cost = report["embed_cost"]
    print(
        f"  4. flip: 1:1 accuracy {100 * fv2['accuracy']:.2f}% vs {100 * acc['accuracy']:.2f}%; embed "
        f"{cost['embed_with_flip_ms']:.1f} ms vs {cost['embed_ms']:.1f} ms per face"
    )
    ff = report["fairface_no_face"]
    worst = max(ff, key=lambda g: ff[g]["no_face"] / ff[g]["images"])
    print(
        f"  5. FairFace no face found, worst group {worst}: {_pct(ff[worst]['no_face'], ff[worst]['images'])} "
        "(target <= 0.6%); " + ", ".join(f"{g} {ff[g]['no_face']}/{ff[g]['images']}" for g in sorted(ff))
    )
