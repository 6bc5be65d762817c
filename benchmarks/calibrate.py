"""Calibrate the matcher from identity-labelled pairs: error rates per group on a grid of thresholds.

Run: ``python -m benchmarks.calibrate [--out PATH]`` (a few minutes on 2 cores; needs ``../shared/data``).

Every image goes through the product's own path (decode, detect, the subject-face rule, align, embed: the
crop and its mirror, averaged, since ``sface-2021dec+flip``).

- **False matches** come from identity-labelled pairs: every cross-person pair of LFW development images
  (``../shared/data/lfw``, 6,922 images of 3,554 people), per gender (manual labels, Afifi & Abdelhamed
  2017) within a group and across groups, and per *predicted* race4+gender group (model predictions,
  noisy: reported, never used to choose a threshold).
- **False non-matches**: LFW View-2 folds 1–5 genuine pairs (the standard protocol) and every
  same-person pair of the development images, per gender.
- **FairFace** has no identity labels (one man photographed 8 times gave 21 of his group's 25 "false
  matches" at 0.55): its within-group pairs are kept only as an *upper bound* on FMR per human-labelled
  group.

Writes ``layers/core/facegate/match/calibration.json``: counts (k false decisions of n pairs) per threshold,
so that intervals can be recomputed; never a per-pair score. ``facegate.match.Calibration`` reads it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.accuracy import SHARED, read_csv, read_lfw_pairs
from facegate.embedding import MAX_REFERENCES, MODEL_VERSION, Embedding, fuse
from facegate.evaluation import PairCounts, count_pairs, count_template_impostors, embed_subject
from facegate.vision import FacePipeline, decode_image
from facegate.vision.detector import DEFAULT_SCORE_THRESHOLD

OUT = Path(__file__).resolve().parents[1] / "layers" / "core" / "facegate" / "match" / "calibration.json"
THRESHOLDS = tuple(round(0.30 + 0.01 * i, 2) for i in range(51))  # 0.30 … 0.80
COMMAND = "python -m benchmarks.calibrate"
SCHEMA = 2


def _cell(k: int, n: int) -> dict[str, Any]:
    return {"k": int(k), "n": int(n)}


def embed_all(pipeline: FacePipeline, root: Path, rows: list[dict[str, str]]) -> npt.NDArray[np.float32]:
    """One template per image through the product path; NaN where no face is detected."""
    out = np.full((len(rows), 128), np.nan, np.float32)
    for i, row in enumerate(rows):
        emb = embed_subject(pipeline, decode_image((root / row["path"]).read_bytes()))
        if emb is not None:
            out[i] = emb.vector
    return out


def view2_fnmr(
    vectors: npt.NDArray[np.float32], rows: list[dict[str, str]], root: Path
) -> tuple[dict[str, Any], dict[str, tuple[npt.NDArray[np.int64], int]]]:
    """False non-matches over the View-2 folds 1–5 genuine pairs, per gender, per threshold."""
    index = {row["path"]: i for i, row in enumerate(rows)}
    pairs, folds = read_lfw_pairs(root)
    genuine = [(index[a], index[b]) for a, b, same, _ in pairs if same]
    grid = np.asarray(THRESHOLDS)
    by_gender: dict[str, list[float]] = {}
    for a, b in genuine:
        s = float(vectors[a] @ vectors[b])
        by_gender.setdefault(rows[a]["gender_id"], []).append(-np.inf if np.isnan(s) else s)
    counts = {}
    for g, scores in sorted(by_gender.items()):
        s = np.asarray(scores)
        counts[g] = (np.array([(s < t).sum() for t in grid], np.int64), len(s))
    summary = {
        "folds": folds,
        "genuine_pairs": len(genuine),
        "genuine_pairs_by_gender": {g: n for g, (_, n) in counts.items()},
    }
    return summary, counts


def fused_impostors(
    vectors: npt.NDArray[np.float32], rows: list[dict[str, str]]
) -> tuple[dict[int, dict[str, tuple[npt.NDArray[np.int64], int]]], dict[str, dict[str, int]]]:
    """FMR of templates fused from r photos (r = 2..5), per gender, on the threshold grid."""
    by_person: dict[str, list[int]] = {}
    for i in sorted(range(len(rows)), key=lambda i: rows[i]["path"]):
        if rows[i]["gender_id"] and not np.isnan(vectors[i]).any():
            by_person.setdefault(rows[i]["identity"], []).append(i)
    identities = [r["identity"] for r in rows]
    genders = [r["gender_id"] for r in rows]
    out, people = {}, {}
    for r in range(2, MAX_REFERENCES + 1):
        owners = [p for p, v in by_person.items() if len(v) >= r]
        templates = np.stack(
            [fuse([Embedding(vectors[i], MODEL_VERSION) for i in by_person[p][:r]]).vector for p in owners]
        )
        owner_groups = [genders[by_person[p][0]] for p in owners]
        out[r] = count_template_impostors(templates, owners, owner_groups, vectors, identities, genders, THRESHOLDS)
        people[str(r)] = {g: owner_groups.count(g) for g in sorted(set(owner_groups))}
    return out, people


def _rows(counts: dict[str, tuple[npt.NDArray[np.int64], int]], i: int) -> dict[str, Any]:
    return {g: _cell(k[i], n) for g, (k, n) in counts.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    pipeline = FacePipeline.from_store()

    start = time.perf_counter()
    lfw_root = SHARED / "lfw"
    lfw_rows = read_csv(lfw_root / "labels.csv")
    lfw = embed_all(pipeline, lfw_root, lfw_rows)
    identities = [r["identity"] for r in lfw_rows]
    by_gender: PairCounts = count_pairs(lfw, identities, [r["gender_id"] for r in lfw_rows], THRESHOLDS)
    by_predicted = count_pairs(lfw, identities, [r["group"] for r in lfw_rows], THRESHOLDS)
    every = count_pairs(lfw, identities, ["all"] * len(lfw_rows), THRESHOLDS)
    v2_summary, v2 = view2_fnmr(lfw, lfw_rows, lfw_root)
    fused, fused_people = fused_impostors(lfw, lfw_rows)
    print(f"LFW: {len(lfw_rows)} images embedded and every pair counted ({time.perf_counter() - start:.0f} s)")

    start = time.perf_counter()
    ff_root = SHARED / "fairface"
    ff_rows = read_csv(ff_root / "labels.csv")
    ff = embed_all(pipeline, ff_root, ff_rows)
    if len({r["identity"] for r in ff_rows}) != len(ff_rows):
        raise SystemExit("FairFace identities repeat: this calibration assumes one image per person")
    ff_counts = count_pairs(ff, [r["identity"] for r in ff_rows], [r["group"] for r in ff_rows], THRESHOLDS)
    print(f"FairFace: {len(ff_rows)} images embedded ({time.perf_counter() - start:.0f} s)")

    no_face = {
        "lfw": int(np.isnan(lfw).any(axis=1).sum()),
        "fairface": int(np.isnan(ff).any(axis=1).sum()),
    }
    people: dict[str, set[str]] = {}
    for r in lfw_rows:
        people.setdefault(r["gender_id"], set()).add(r["identity"])
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "provenance": {
            "command": COMMAND,
            "date": datetime.now(UTC).date().isoformat(),
            "models": {"detector": "yunet-2023mar", "embedder": pipeline.embedder.model_version},
            "detector_score_threshold": DEFAULT_SCORE_THRESHOLD,
            "face_pick": "the subject-face rule (facegate.vision.subject): the product's own choice",
            "embedding": "test-time flip: the aligned crop and its horizontal mirror in one batch, each fc1 "
            "output L2-normalised, the two averaged and renormalised"
            if pipeline.embedder.flip
            else "the aligned crop alone, its fc1 output L2-normalised",
            "score": "cosine similarity of L2-normalised embeddings; a decision is a match iff score >= threshold",
            "datasets": {
                "lfw": {
                    "what": "LFW development images (../shared/data/lfw): every cross-person pair for FMR; View-2 "
                    "folds 1-5 genuine pairs and every same-person pair for FNMR",
                    "images": len(lfw_rows),
                    "people": len(set(identities)),
                    "people_by_gender": {g: len(v) for g, v in sorted(people.items())},
                    "images_without_face": no_face["lfw"],
                    "groups": "gender_id: manual labels (Afifi & Abdelhamed 2017); predicted groups: race4+gender "
                    "by model predictions (DeepFace, FaRL), noisy, for rough stratification only",
                    "attribution": "Huang et al., Labeled Faces in the Wild, UMass Amherst, 2007",
                    "view2": v2_summary,
                    "fused_templates": {
                        "what": "for r = 2..5 photos: each person with >= r photos, the first r fused (mean of unit "
                        "vectors, renormalised), against every photo of every other person of the same gender",
                        "people": fused_people,
                    },
                },
                "fairface": {
                    "what": "FairFace validation images, first 2,500 (../shared/data/fairface), no identity labels: "
                    "within-group pairs as an upper bound on FMR only",
                    "images": len(ff_rows),
                    "images_without_face": no_face["fairface"],
                    "groups": "FairFace's own human labels: race4 + gender",
                    "attribution": "Kärkkäinen & Joo, FairFace, WACV 2021 (labels CC BY 4.0)",
                },
            },
            "counts": "k false decisions of n pairs per threshold; facegate.match.Calibration reports a group's FMR "
            "as max(k, 3)/n (rule of three) and chooses thresholds on the Wilson 95% upper bound",
        },
        "thresholds": [
            {
                "threshold": t,
                "fmr_by_group": _rows(by_gender.within(), i),
                "fmr_cross_group": _rows(by_gender.cross(), i),
                "fmr_overall": _rows(every.within(), i)["all"],
                "fmr_by_predicted_group": _rows(by_predicted.within(), i),
                "fmr_upper_bound_by_group": _rows(ff_counts.within(), i),
                "fnmr_by_gender": _rows(v2, i),
                "fnmr_every_pair_by_gender": _rows(by_gender.genuine, i),
                "fmr_by_references": {str(r): _rows(c, i) for r, c in fused.items()},
            }
            for i, t in enumerate(THRESHOLDS)
        ],
    }
    args.out.write_text(_dump(report), encoding="utf-8")
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")
    return 0


def _dump(report: dict[str, Any]) -> str:
    """Indented JSON with one line per threshold: small, readable and diff-friendly."""
    rows = report.pop("thresholds")
    text = json.dumps(report, indent=2, ensure_ascii=False)
    lines = ",\n".join("    " + json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in rows)
    report["thresholds"] = rows
    return text[:-2] + ',\n  "thresholds": [\n' + lines + "\n  ]\n}\n"


if __name__ == "__main__":
    sys.exit(main())
