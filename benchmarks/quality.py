"""The capture-quality bars (``facegate.vision.quality``): what each refuses, per group, and what it buys.

Run: ``python -m benchmarks.quality [--pairs N]`` (about 10 minutes on 2 cores for every pair; needs
``../shared/data``).

1. Natural photos: the share of subjects each bar refuses, per LFW gender (manual labels) and per
   FairFace group (human labels). A bar that refuses one group more often is a bias and needs a reason.
2. Degraded photos: for each LFW View-2 genuine pair, one photo is shrunk (eyes 8–32 px apart), blurred
   (Gaussian σ 1–6 px at LFW's scale), darkened or brightened, and put through the product path again;
   FNMR at the 1:1 and access-control thresholds, and the share of the degraded photos each bar refuses.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from collections.abc import Callable

import numpy as np

from benchmarks.accuracy import SHARED, read_csv, read_lfw_pairs
from facegate.errors import FaceTooSmallError, LowQualityError
from facegate.policy.catalog import default_catalog
from facegate.stats import wilson
from facegate.vision import FacePipeline, decode_image
from facegate.vision.decode import BgrImage, cv2
from facegate.vision.quality import Quality, require

Degrade = Callable[[BgrImage, float], BgrImage]


def refusal(quality: Quality | None) -> str:
    """``ok``, ``no_face``, or the code of the bar that refuses the subject."""
    if quality is None:
        return "no_face"
    try:
        require(quality)
    except FaceTooSmallError:
        return "face_too_small"
    except LowQualityError as exc:
        return "low_quality:" + exc.message.split(" (")[0].split(":")[0].removeprefix("the face is ")
    return "ok"


def _shrink(target_ied: float) -> Degrade:
    def degrade(image: BgrImage, ied: float) -> BgrImage:
        scale = min(1.0, target_ied / ied)
        return np.asarray(cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))

    return degrade


def _blur(sigma: float) -> Degrade:
    return lambda image, _: np.asarray(cv2.GaussianBlur(image, (0, 0), sigma))


def _gain(factor: float) -> Degrade:
    return lambda image, _: np.clip(image.astype(np.float32) * factor, 0, 255).astype(np.uint8)


def _gamma(g: float) -> Degrade:
    return lambda image, _: (255.0 * (image.astype(np.float32) / 255.0) ** g).astype(np.uint8)


CONDITIONS: dict[str, Degrade] = {
    **{f"eyes {n} px": _shrink(n) for n in (8, 10, 12, 14, 16, 20, 24, 32)},
    **{f"blur σ {s}": _blur(s) for s in (1, 2, 3, 4, 5, 6)},
    "dark ×0.125": _gain(0.125),
    "dark γ 4": _gamma(4.0),
    "bright ×2": _gain(2.0),
    "bright ×3": _gain(3.0),
}


def _pct(k: int, n: int) -> str:
    if not n:
        return "n/a"
    lo, hi = wilson(k, n)
    return f"{100 * k / n:5.2f}% [{100 * lo:.2f}, {100 * hi:.2f}]"


def natural(pipeline: FacePipeline) -> None:
    print("1. Natural photos: refused per group (subject's face, product path)")
    for name, column in (("lfw", "gender_id"), ("fairface", "group")):
        root = SHARED / name
        counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for row in read_csv(root / "labels.csv"):
            if not row[column]:
                continue
            analysis = pipeline.analyse_image(decode_image((root / row["path"]).read_bytes()))
            counts[row[column]][refusal(analysis.quality)] += 1
            counts[row[column]]["n"] += 1
        for group in sorted(counts):
            c = counts[group]
            refused = sum(v for k, v in c.items() if k not in ("n", "ok", "no_face"))
            detail = ", ".join(f"{k} {v}" for k, v in sorted(c.items()) if k not in ("n", "ok"))
            print(f"   {name:8s} {group:10s} refused {_pct(refused, c['n'])} of {c['n']}  ({detail or 'none'})")


def degraded(pipeline: FacePipeline, limit: int | None) -> None:
    catalog = default_catalog().use_cases
    thresholds = (catalog["identity_verification"].default_threshold, catalog["access_control"].default_threshold)
    root = SHARED / "lfw"
    labels = {r["path"]: r for r in read_csv(root / "labels.csv")}
    pairs, _ = read_lfw_pairs(root)
    genuine = [(a, b) for a, b, same, _ in pairs if same][:limit]
    print(f"2. Degraded photos: {len(genuine)} genuine View-2 pairs, photo b degraded; FNMR at {thresholds}")
    reference = {}
    for a, _ in genuine:
        if a not in reference:
            analysis = pipeline.analyse_image(decode_image((root / a).read_bytes()))
            reference[a] = analysis.subject_embedding.vector if analysis.face_count else None
    for label, degrade in {"none": lambda im, _: im, **CONDITIONS}.items():
        fails = {t: defaultdict(int) for t in thresholds}
        kept_fails = {t: defaultdict(int) for t in thresholds}
        refused: dict[str, int] = defaultdict(int)
        n: dict[str, int] = defaultdict(int)
        kept: dict[str, int] = defaultdict(int)
        for a, b in genuine:
            g = labels[a]["gender_id"] or "?"
            image = decode_image((root / b).read_bytes())
            first = pipeline.analyse_image(image)
            if first.quality is None:
                continue
            probe = pipeline.analyse_image(np.ascontiguousarray(degrade(image, first.quality.eye_distance_px)))
            n[g] += 1
            verdict = refusal(probe.quality)
            score = -1.0
            if probe.face_count and reference[a] is not None:
                score = float(probe.subject_embedding.vector @ reference[a])
            if verdict not in ("ok", "no_face"):
                refused[g] += 1
            else:
                kept[g] += 1
            for t in thresholds:
                if score < t:
                    fails[t][g] += 1
                    if verdict in ("ok", "no_face"):
                        kept_fails[t][g] += 1
        cells = []
        for g in ("F", "M"):
            fnmr = " ".join(
                f"{100 * fails[t][g] / max(n[g], 1):5.1f}%→{100 * kept_fails[t][g] / max(kept[g], 1):5.1f}%"
                for t in thresholds
            )
            cells.append(f"{g}: refused {100 * refused[g] / max(n[g], 1):5.1f}%, FNMR all→kept {fnmr}")
        print(f"   {label:13s} " + " | ".join(cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=None, help="only the first N genuine pairs")
    parser.add_argument("--skip-natural", action="store_true")
    args = parser.parse_args(argv)
    pipeline = FacePipeline.from_store()
    if not args.skip_natural:
        natural(pipeline)
    degraded(pipeline, args.pairs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
