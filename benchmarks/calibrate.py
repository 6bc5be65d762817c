"""Calibrate the matcher: error rates per group on a grid of thresholds, written as package data.

Run: ``python -m benchmarks.calibrate [--out PATH]`` (a few minutes on 2 cores; needs ``../shared/data``).

- FairFace (2,500 images, one person each; groups = FairFace's own human race4 + gender labels): the
  false-match rate per group over every within-group impostor pair, and over every pair (cross-group
  included). Images without a detected face take part in no pair (they cannot falsely match).
- LFW View-2 folds 1–5: the false-non-match rate over the genuine pairs per gender (manual labels) and
  overall; an image without a detected face makes its pair a non-match.

Writes ``layers/core/facegate/match/calibration.json``: counts (k false decisions of n pairs) per threshold
so that intervals can be recomputed, never a per-pair score. ``facegate.match.Calibration`` reads it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.accuracy import SHARED, embed_lfw, fairface_images, lfw_pair_scores, read_csv, read_lfw_pairs
from facegate.evaluation import Pick, all_pairs, embed_subject, verification_stats
from facegate.vision import FacePipeline
from facegate.vision.detector import DEFAULT_SCORE_THRESHOLD
from facegate.vision.embedder import Embedding

OUT = Path(__file__).resolve().parents[1] / "layers" / "core" / "facegate" / "match" / "calibration.json"
THRESHOLDS = tuple(round(0.30 + 0.01 * i, 2) for i in range(51))  # 0.30 … 0.80
COMMAND = "python -m benchmarks.calibrate"
SCHEMA = 1


def _count(k: int, n: int) -> dict[str, Any]:
    return {"k": k, "n": n, "rate": round(k / n, 7) if n else None}


def fairface_counts(pipeline: FacePipeline) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Per-group image counts, and per threshold the false matches per group and over all pairs."""
    images: dict[str, int] = defaultdict(int)
    by_group: dict[str, list[Embedding]] = defaultdict(list)
    ids_by_group: dict[str, list[str]] = defaultdict(list)
    for row, image in fairface_images(SHARED / "fairface"):
        g = row["group"]
        images[g] += 1
        emb = embed_subject(pipeline, image, Pick.CENTRAL)
        if emb is not None:
            by_group[g].append(emb)
            ids_by_group[g].append(row["identity"])
    groups = sorted(images)
    within: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]] = {
        g: all_pairs(by_group[g], ids_by_group[g]) for g in groups
    }
    every = all_pairs([e for g in groups for e in by_group[g]], [i for g in groups for i in ids_by_group[g]])
    if any(same.any() for _, same in [*within.values(), every]):
        raise SystemExit("FairFace identities repeat: this calibration assumes one image per person")
    summary = {
        "groups": {g: {"images": images[g], "embedded": len(by_group[g])} for g in groups},
        "images": sum(images.values()),
        "embedded": sum(len(v) for v in by_group.values()),
    }
    per_threshold = []
    for t in THRESHOLDS:
        per_group = {}
        for g in groups:
            st = verification_stats(*within[g], t)
            per_group[g] = _count(st.false_matches, st.impostor)
        st = verification_stats(*every, t)
        worst = max(groups, key=lambda g: per_group[g]["k"] / per_group[g]["n"])
        rate = per_group[worst]["k"] / per_group[worst]["n"]
        per_threshold.append(
            {
                "fmr_by_group": per_group,
                "fmr_overall": _count(st.false_matches, st.impostor),
                # The observed worst group; none when no group has a false match left.
                "worst_group": {"group": worst if rate > 0 else None, "rate": per_group[worst]["rate"]},
            }
        )
    return summary, per_threshold


def lfw_counts(pipeline: FacePipeline) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Pair and image counts, and per threshold the false non-matches per gender and overall."""
    root = SHARED / "lfw"
    labels = {row["path"]: row for row in read_csv(root / "labels.csv")}
    pairs, folds = read_lfw_pairs(root)
    cache = embed_lfw(pipeline, root, pairs)
    scores = lfw_pair_scores(cache, pairs)
    same = np.array([s for _, _, s, _ in pairs])
    genders = np.array([labels[a]["gender_id"] for a, *_ in pairs])
    by_gender = {g: same & (genders == g) for g in sorted(set(genders[same]))}
    summary = {
        "folds": folds,
        "pairs": len(pairs),
        "genuine_pairs": int(same.sum()),
        "images": len(cache),
        "images_without_face": sum(v is None for v in cache.values()),
        "genuine_pairs_by_gender": {g: int(m.sum()) for g, m in by_gender.items()},
    }
    per_threshold = []
    for t in THRESHOLDS:
        per_gender = {}
        for g, mask in by_gender.items():
            st = verification_stats(scores[mask], same[mask], t)
            per_gender[g] = _count(st.false_non_matches, st.genuine)
        st = verification_stats(scores[same], same[same], t)
        per_threshold.append({"fnmr_by_gender": per_gender, "fnmr_overall": _count(st.false_non_matches, st.genuine)})
    return summary, per_threshold


def _dump(report: dict[str, Any]) -> str:
    """Indented JSON with one line per threshold: small, readable and diff-friendly."""
    rows = report.pop("thresholds")
    text = json.dumps(report, indent=2, ensure_ascii=False)
    lines = ",\n".join("    " + json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in rows)
    report["thresholds"] = rows
    return text[:-2] + ',\n  "thresholds": [\n' + lines + "\n  ]\n}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    pipeline = FacePipeline.from_store()
    start = time.perf_counter()
    ff_summary, ff_rows = fairface_counts(pipeline)
    seconds = time.perf_counter() - start
    print(f"FairFace: {ff_summary['embedded']}/{ff_summary['images']} images embedded ({seconds:.0f} s)")
    start = time.perf_counter()
    lfw_summary, lfw_rows = lfw_counts(pipeline)
    print(f"LFW: {lfw_summary['images']} images, {lfw_summary['pairs']} pairs ({time.perf_counter() - start:.0f} s)")
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "provenance": {
            "command": COMMAND,
            "date": datetime.now(UTC).date().isoformat(),
            "models": {"detector": "yunet-2023mar", "embedder": pipeline.embedder.model_version},
            "detector_score_threshold": DEFAULT_SCORE_THRESHOLD,
            "face_pick": "central face of each image",
            "score": "cosine similarity of L2-normalised embeddings; a decision is a match iff score >= threshold",
            "datasets": {
                "fairface": {
                    "what": "FairFace validation images, first 2,500 (../shared/data/fairface), one person per "
                    "image: impostor pairs only",
                    "groups": "FairFace's own human labels: race4 + gender (labels.csv column 'group')",
                    "attribution": "Kärkkäinen & Joo, FairFace, WACV 2021 (labels CC BY 4.0)",
                    "counted": "fmr_by_group: every within-group pair; fmr_overall: every pair, cross-group included",
                    **ff_summary,
                },
                "lfw": {
                    "what": "LFW View-2 folds 1-5 (../shared/data/lfw/pairs_dev.txt), deep-funneled images",
                    "groups": "gender_id: manual labels (Afifi & Abdelhamed 2017)",
                    "attribution": "Huang et al., Labeled Faces in the Wild, UMass Amherst, 2007",
                    "counted": "fnmr over genuine pairs; an image without a detected face makes its pair a non-match",
                    **lfw_summary,
                },
            },
            "counts": "k false decisions of n pairs; rate = k/n (observed, no bound applied); "
            "facegate.match.Calibration reports a group's FMR as max(k, 3)/n (rule of three)",
        },
        "thresholds": [{"threshold": t, **f, **g} for t, f, g in zip(THRESHOLDS, ff_rows, lfw_rows, strict=True)],
    }
    args.out.write_text(_dump(report), encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")
    for row in report["thresholds"]:
        if row["threshold"] in (0.36, 0.40, 0.45, 0.50, 0.52, 0.55, 0.60):
            w, o = row["worst_group"], row["fmr_overall"]
            f = row["fnmr_by_gender"]
            print(
                f"  {row['threshold']:.2f}: worst FMR {w['rate']:.5f} ({w['group']}), overall FMR {o['rate']:.6f}, "
                f"FNMR F {f['F']['rate']:.4f} M {f['M']['rate']:.4f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
