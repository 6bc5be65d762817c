"""Accuracy per person and per group on registry and shared labelled data (a benchmark, never a gate).

Run: ``python -m benchmarks.accuracy [--sections johns,dlib,lfw,fairface] [--json out.json]``

- johns: dlib's 5 × 11 chips (padded 75 px, black), all 1,485 pairs.
- dlib: detector recall on dlib's hand-labelled photos (IoU ≥ 0.3), false boxes counted.
- lfw: LFW View-2 folds 1–5 (``../shared/data/lfw/pairs_dev.txt``), accuracy at the operating threshold,
  FNMR / FMR per gender (manual labels, reliable) and per predicted group (model predictions, noisy).
- fairface: detection rate per group at score 0.6 and OpenCV's default 0.9, and the false-match rate per
  group over every within-group pair (FairFace has one image per person: only impostor pairs).

Every rate is at one fixed threshold (cosine 0.363) with a Wilson 95% interval, reported per group.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from facegate import datasets
from facegate.evaluation import all_pairs, embed_subject, johns_chip, verification_stats
from facegate.fetch import cache_dir
from facegate.models import PUBLISHED_THRESHOLD
from facegate.stats import wilson
from facegate.vision import FacePipeline, decode_image
from facegate.vision.decode import cv2
from facegate.vision.detector import DEFAULT_SCORE_THRESHOLD, YuNetDetector

THRESHOLD = PUBLISHED_THRESHOLD
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _pct(x: float) -> str:
    return f"{100 * x:6.2f}%"


def _ci(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"[{100 * lo:.2f}, {100 * hi:.2f}]"


def johns(pipeline: FacePipeline) -> dict[str, Any]:
    embeddings, labels, missed = [], [], 0
    for name, paths in datasets.johns().items():
        for path in paths:
            image = johns_chip(path)
            emb = embed_subject(pipeline, image)
            if emb is None:
                missed += 1
                continue
            embeddings.append(emb)
            labels.append(name)
    scores, same = all_pairs(embeddings, labels)
    st = verification_stats(scores, same, THRESHOLD)
    print(f"johns: {st.genuine} genuine / {st.impostor} impostor pairs, no face in {missed} images")
    print(
        f"  accuracy {_pct(st.accuracy)}  genuine min {st.genuine_min:.3f}  impostor max {st.impostor_max:.3f}"
        f"  (threshold {THRESHOLD})"
    )
    return {
        "genuine": st.genuine,
        "impostor": st.impostor,
        "accuracy": st.accuracy,
        "genuine_min": st.genuine_min,
        "impostor_max": st.impostor_max,
        "missed": missed,
    }


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def dlib_recall(pipeline: FacePipeline, thresholds: tuple[float, ...] = (0.6, 0.9)) -> dict[str, Any]:
    out = {}
    images = datasets.dlib_face_boxes()
    decoded = [decode_image(item.path.read_bytes()) for item in images]
    for thr in thresholds:
        detector = YuNetDetector(pipeline.detector._session, score_threshold=thr)
        found = labelled = false = 0
        for item, image in zip(images, decoded, strict=True):
            det = detector.detect(image)
            boxes = [f.box for f in det]
            used: set[int] = set()
            for truth in item.boxes:
                best = max(range(len(boxes)), key=lambda i: _iou(truth, boxes[i]), default=None)
                if best is not None and best not in used and _iou(truth, boxes[best]) >= 0.3:
                    used.add(best)
                    found += 1
            labelled += len(item.boxes)
            false += len(boxes) - len(used)
        print(f"dlib faces @ score {thr}: recall {found}/{labelled} = {_pct(found / labelled)}, false boxes {false}")
        out[str(thr)] = {"found": found, "labelled": labelled, "false_boxes": false}
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


# (image a, image b, same person, fold), paths relative to the LFW root.
LfwPair = tuple[str, str, bool, int]
Embedder = Callable[[np.ndarray], np.ndarray | None]


def read_lfw_pairs(root: Path) -> tuple[list[LfwPair], int]:
    """LFW View-2 pairs from ``pairs_dev.txt`` (per fold: same-person lines, then different-person lines)."""
    lines = (root / "pairs_dev.txt").read_text().split("\n")
    folds, per_fold = (int(x) for x in lines[0].split())
    pairs: list[LfwPair] = []
    row = 1
    for fold in range(folds):
        for k in range(2 * per_fold):
            parts = lines[row].split()
            row += 1
            if k < per_fold:
                a = f"{parts[0]}/{parts[0]}_{int(parts[1]):04d}.jpg"
                b = f"{parts[0]}/{parts[0]}_{int(parts[2]):04d}.jpg"
                pairs.append((a, b, True, fold))
            else:
                a = f"{parts[0]}/{parts[0]}_{int(parts[1]):04d}.jpg"
                b = f"{parts[2]}/{parts[2]}_{int(parts[3]):04d}.jpg"
                pairs.append((a, b, False, fold))
    return pairs, folds


def embed_lfw(
    pipeline: FacePipeline, root: Path, pairs: list[LfwPair], embed: Embedder | None = None
) -> dict[str, np.ndarray | None]:
    """Each image of the pairs embedded once (the central face), ``None`` where no face is detected."""
    cache: dict[str, np.ndarray | None] = {}
    for a, b, _, _ in pairs:
        for p in (a, b):
            if p not in cache:
                image = decode_image((root / p).read_bytes())
                if embed is not None:
                    cache[p] = embed(image)
                    continue
                emb = embed_subject(pipeline, image)
                cache[p] = None if emb is None else emb.vector
    return cache


def lfw_pair_scores(cache: dict[str, np.ndarray | None], pairs: list[LfwPair]) -> np.ndarray:
    """Cosine score per pair; NaN where either image has no detected face (a non-match)."""
    return np.array(
        [np.nan if cache[a] is None or cache[b] is None else float(cache[a] @ cache[b]) for a, b, _, _ in pairs]
    )


def fairface_images(root: Path) -> Iterator[tuple[dict[str, str], np.ndarray]]:
    """FairFace's label rows (one person per image; ``group`` = race4 + gender), each with its decoded image."""
    for row in read_csv(root / "labels.csv"):
        yield row, decode_image((root / row["path"]).read_bytes())


def _opencv_peer() -> Embedder:
    """OpenCV's own pipeline on the original files: 640-capped detection at score 0.6, alignCrop, feature."""
    originals = cache_dir() / "models-original"
    det = cv2.FaceDetectorYN.create(
        str(originals / "face_detection_yunet_2023mar.onnx"),
        "",
        (320, 320),
        DEFAULT_SCORE_THRESHOLD,
        0.3,
        5000,
    )
    rec = cv2.FaceRecognizerSF.create(str(originals / "face_recognition_sface_2021dec.onnx"), "")

    def embed(image: np.ndarray) -> np.ndarray | None:
        scale = min(1.0, 640 / max(image.shape[:2]))
        small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image
        det.setInputSize((small.shape[1], small.shape[0]))
        _, faces = det.detect(small)
        if faces is None or len(faces) == 0:
            return None
        centres = faces[:, :2] + faces[:, 2:4] / 2
        row = faces[int(np.argmin(np.linalg.norm(centres - [small.shape[1] / 2, small.shape[0] / 2], axis=1)))].copy()
        row[:14] /= scale
        feature = rec.feature(rec.alignCrop(image, row)).reshape(-1)
        return feature / np.linalg.norm(feature)

    return embed


def lfw_opencv(pipeline: FacePipeline) -> dict[str, Any]:
    """The same LFW pairs through OpenCV's own pipeline: the peer measured in the same run."""
    print("LFW through OpenCV's FaceDetectorYN + FaceRecognizerSF (peer):")
    return lfw(pipeline, _opencv_peer())


def lfw(pipeline: FacePipeline, embed: Embedder | None = None) -> dict[str, Any]:
    root = SHARED / "lfw"
    labels = {row["path"]: row for row in read_csv(root / "labels.csv")}
    pairs, folds = read_lfw_pairs(root)
    cache = embed_lfw(pipeline, root, pairs, embed)
    missed = sorted(p for p, v in cache.items() if v is None)
    scores = lfw_pair_scores(cache, pairs)
    same = np.array([s for _, _, s, _ in pairs])
    fold_ids = np.array([f for *_, f in pairs])
    overall = verification_stats(scores, same, THRESHOLD)
    fold_acc = [
        verification_stats(scores[fold_ids == f], same[fold_ids == f], THRESHOLD).accuracy for f in range(folds)
    ]
    print(
        f"LFW folds 1-{folds}: {overall.genuine} genuine / {overall.impostor} impostor pairs, "
        f"{len(missed)} of {len(cache)} images without a detected face"
    )
    print(
        f"  accuracy {_pct(overall.accuracy)} (per fold {', '.join(f'{100 * a:.2f}' for a in fold_acc)}), "
        f"FNMR {_pct(overall.fnmr)}, FMR {_pct(overall.fmr)}"
    )
    result: dict[str, Any] = {
        "accuracy": overall.accuracy,
        "fold_accuracy": fold_acc,
        "fnmr": overall.fnmr,
        "fmr": overall.fmr,
        "missed_images": missed,
        "groups": {},
    }
    # Genuine pairs belong to one person's group; impostor pairs are counted when both people share it.
    for key, note in (("gender_id", "manual labels"), ("group", "PREDICTED race4+gender, noisy")):
        print(f"  by {key} ({note}):")
        groups: dict[str, list[int]] = defaultdict(list)
        for i, (a, b, _, _) in enumerate(pairs):
            ga, gb = labels[a][key], labels[b][key]
            if ga == gb:
                groups[ga].append(i)
        for g in sorted(groups):
            idx = np.array(groups[g])
            st = verification_stats(scores[idx], same[idx], THRESHOLD)
            print(
                f"    {g:10s} genuine {st.genuine:4d} FNMR {_pct(st.fnmr)} {_ci(st.false_non_matches, st.genuine):>17s}"
                f"  impostor {st.impostor:4d} FMR {_pct(st.fmr)} {_ci(st.false_matches, st.impostor):>17s}"
            )
            result["groups"][f"{key}={g}"] = {
                "genuine": st.genuine,
                "fnmr": st.fnmr,
                "impostor": st.impostor,
                "fmr": st.fmr,
            }
    return result


def fairface(pipeline: FacePipeline) -> dict[str, Any]:
    root = SHARED / "fairface"
    strict = YuNetDetector(pipeline.detector._session, score_threshold=0.9)
    found: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    by_group: dict[str, list[np.ndarray]] = defaultdict(list)
    images = 0
    for row, image in fairface_images(root):
        images += 1
        g = row["group"]
        found[g][2] += 1
        if len(strict.detect(image)):
            found[g][1] += 1
        emb = embed_subject(pipeline, image)
        if emb is not None:
            found[g][0] += 1
            by_group[g].append(emb.vector)
    print(f"FairFace: {images} images, one person each (impostor pairs only)")
    print(
        f"  {'group':10s} {'n':>5s}  no face @{DEFAULT_SCORE_THRESHOLD}  no face @0.9   within-group FMR @ {THRESHOLD}"
    )
    result: dict[str, Any] = {}
    fmrs = []
    for g in sorted(found):
        ok, ok_strict, n = found[g]
        vectors = np.stack(by_group[g])
        s = vectors @ vectors.T
        iu = np.triu_indices(len(vectors), 1)
        k, m = int((s[iu] >= THRESHOLD).sum()), len(iu[0])
        fmrs.append(k / m)
        print(
            f"  {g:10s} {n:5d}  {_pct(1 - ok / n)}      {_pct(1 - ok_strict / n)}     "
            f"{k:4d}/{m:6d} = {100 * k / m:.3f}% {_ci(k, m)}"
        )
        result[g] = {
            "n": n,
            "miss_rate": 1 - ok / n,
            "miss_rate_0.9": 1 - ok_strict / n,
            "fmr": k / m,
            "false_matches": k,
            "impostor_pairs": m,
        }
    # The threshold each group needs for FMR <= 1e-3; the strictest is what a 1:N use case needs.
    needed = {
        g: float(np.quantile((np.stack(v) @ np.stack(v).T)[np.triu_indices(len(v), 1)], 1 - 1e-3))
        for g, v in by_group.items()
    }
    worst = max(needed, key=lambda g: needed[g])
    print(
        "  threshold for FMR 0.1% per group: "
        + ", ".join(f"{g} {t:.3f}" for g, t in sorted(needed.items()))
        + f"  -> strictest {worst} {needed[worst]:.3f}"
    )
    result["threshold_for_fmr_1e-3"] = needed
    positive = [f for f in fmrs if f > 0]
    if positive:
        geo = math.exp(sum(math.log(f) for f in positive) / len(positive))
        print(f"  FMR max/geomean across groups: {max(fmrs) / geo:.2f} (FRVT part 8 summary)")
    return result


def _targets(pipeline: FacePipeline) -> dict[str, Any]:
    from benchmarks.targets import targets

    return targets(pipeline)


SECTIONS = {
    "johns": johns,
    "dlib": dlib_recall,
    "lfw": lfw,
    "lfw_opencv": lfw_opencv,
    "fairface": fairface,
    "targets": _targets,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    pipeline = FacePipeline.from_store()
    report: dict[str, Any] = {"threshold": THRESHOLD, "detector_score": DEFAULT_SCORE_THRESHOLD}
    for name in args.sections.split(","):
        start = time.perf_counter()
        report[name] = SECTIONS[name](pipeline)
        print(f"  ({time.perf_counter() - start:.1f} s)\n")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
