"""Which face is the subject: the candidate rules compared on LFW, where each person has other photos.

Run: ``python -m benchmarks.subject_rule`` (about 2 minutes on 2 cores; needs ``../shared/data``).

For every LFW development image with more than one detected face, the *true* subject is the face that best
agrees with the same person's other photos (their central faces averaged; images whose best agreement is
below 0.3 are left out). Each rule's pick is compared with it. Then, for the rule in the product
(:mod:`facegate.vision.subject`), how many genuine View-2 pairs a second counted face would refuse as a
crowd at several size ratios, with and without the frame rule.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable

import numpy as np

from benchmarks.accuracy import SHARED, read_csv, read_lfw_pairs
from facegate.vision import FacePipeline, decode_image
from facegate.vision.detector import Detections
from facegate.vision.subject import SUBJECT_TIE, subject_faces

Rule = Callable[[Detections, int, int], int]


def _centre_distance(det: Detections, w: int, h: int) -> np.ndarray:
    c = det.boxes[:, :2] + det.boxes[:, 2:] / 2
    return np.asarray(np.hypot(c[:, 0] - w / 2, c[:, 1] - h / 2))


def _size(det: Detections) -> np.ndarray:
    return np.asarray(det.boxes[:, 2:].min(axis=1))


def _tie(tie: float) -> Rule:
    def rule(det: Detections, w: int, h: int) -> int:
        size, dist = _size(det), _centre_distance(det, w, h)
        candidates = [i for i in range(len(det)) if size[i] >= tie * size.max()]
        return min(candidates, key=lambda i: dist[i])

    return rule


RULES: dict[str, Rule] = {
    "highest score": lambda det, w, h: int(np.argmax(det.scores)),
    "most central": lambda det, w, h: int(np.argmin(_centre_distance(det, w, h))),
    "largest": lambda det, w, h: int(np.argmax(_size(det))),
    **{f"largest, centre tie-break at {t}": _tie(t) for t in (0.9, 0.8, SUBJECT_TIE)},
    "product (facegate.vision.subject)": lambda det, w, h: int(subject_faces(det, w, h).subject or 0),
}


def main() -> int:
    pipeline = FacePipeline.from_store()
    root = SHARED / "lfw"
    rows = read_csv(root / "labels.csv")
    found: list[tuple[Detections, int, int]] = []
    vectors: list[np.ndarray] = []
    for row in rows:
        image = decode_image((root / row["path"]).read_bytes())
        det = pipeline.detector.detect(image)
        found.append((det, image.shape[1], image.shape[0]))
        vectors.append(
            np.stack([e.vector for e in pipeline.embed_detections(image, det)]) if len(det) else np.zeros((0, 128))
        )
    by_person: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_person[row["identity"]].append(i)
    central = {i: RULES["most central"](*found[i]) for i in range(len(rows)) if len(found[i][0])}
    truth: dict[int, int] = {}
    for i, row in enumerate(rows):
        others = [central[j] for j in by_person[row["identity"]] if j != i and j in central]
        if len(found[i][0]) < 2 or not others:
            continue
        ref = np.mean([vectors[j][central[j]] for j in by_person[row["identity"]] if j != i and j in central], axis=0)
        agreement = vectors[i] @ ref
        if agreement.max() >= 0.3:
            truth[i] = int(np.argmax(agreement))
    print(
        f"LFW: {len(rows)} images, {sum(len(f[0]) > 1 for f in found)} with several faces, "
        f"{len(truth)} with a known subject"
    )
    for name, rule in RULES.items():
        wrong = sum(rule(*found[i]) != t for i, t in truth.items())
        print(f"  {name:40s} wrong subject in {wrong}/{len(truth)}")

    index = {r["path"]: i for i, r in enumerate(rows)}
    pairs, _ = read_lfw_pairs(root)
    genuine = [(index[a], index[b]) for a, b, same, _ in pairs if same]

    def counted(i: int, ratio: float, frame: bool) -> int:
        det, w, h = found[i]
        if not len(det):
            return 0
        s = RULES["product (facegate.vision.subject)"](det, w, h)
        size, b = _size(det), det.boxes
        inside = (b[:, 0] >= 0) & (b[:, 1] >= 0) & (b[:, 0] + b[:, 2] <= w) & (b[:, 1] + b[:, 3] <= h)
        return 1 + sum(1 for k in range(len(det)) if k != s and size[k] >= ratio * size[s] and (inside[k] or not frame))

    print("genuine View-2 pairs with a second counted face (refused as a crowd):")
    every = sum(len(found[a][0]) > 1 or len(found[b][0]) > 1 for a, b in genuine)
    print(f"  every face at the detector's score: {every}/{len(genuine)} = {100 * every / len(genuine):.2f}%")
    for ratio in (0.5, 0.7, 0.8, 0.85, 0.9):
        for frame in (False, True):
            k = sum(counted(a, ratio, frame) > 1 or counted(b, ratio, frame) > 1 for a, b in genuine)
            print(
                f"  ratio {ratio:.2f}{' + in frame' if frame else '           '}: "
                f"{k}/{len(genuine)} = {100 * k / len(genuine):.2f}%"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
