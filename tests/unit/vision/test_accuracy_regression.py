"""Regression tests of who gets recognised: dlib's johns, face_recognition's images, dlib's boxes."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from facegate import datasets
from facegate.evaluation import all_pairs, embed_subject, johns_chip, verification_stats
from facegate.vision import FacePipeline, decode_image
from facegate.vision.decode import cv2
from facegate.vision.detector import DEFAULT_SCORE_THRESHOLD

OPERATING_THRESHOLD = 0.363


def test_johns_all_pairs_are_decided_right(pipeline: FacePipeline, johns: dict[str, list[Path]]) -> None:
    """GIVEN 5 people x 11 chips WHEN every pair is compared THEN all 1,485 decisions are right."""
    embeddings, labels = [], []
    for name, paths in johns.items():
        for path in paths:
            emb = embed_subject(pipeline, johns_chip(path))
            assert emb is not None, f"no face detected in {path.name}"
            embeddings.append(emb)
            labels.append(name)
    scores, same = all_pairs(embeddings, labels)
    stats = verification_stats(scores, same, OPERATING_THRESHOLD)
    print(
        f"\njohns: genuine {stats.genuine} min {stats.genuine_min:.3f} | impostor {stats.impostor} "
        f"max {stats.impostor_max:.3f} | margin {stats.genuine_min - stats.impostor_max:.3f}"
    )
    assert (stats.genuine, stats.impostor) == (275, 1210)
    assert stats.false_non_matches == 0
    assert stats.false_matches == 0
    assert stats.genuine_min > OPERATING_THRESHOLD > stats.impostor_max


def test_face_recognition_images_verify_obama_against_biden(pipeline: FacePipeline, fr_images: dict[str, Path]) -> None:
    """GIVEN five Obama photos (two partial faces) and one of Biden WHEN all pairs are compared THEN all are right."""
    names = ["obama", "obama2", "obama3", "obama_partial_face", "obama_partial_face2", "biden", "32bit"]
    embeddings = {}
    for name in names:
        emb = embed_subject(pipeline, decode_image(fr_images[name].read_bytes()))
        assert emb is not None, f"no face detected in {name}"
        embeddings[name] = emb
    # 32bit.png is an RGBA photo of Obama (alpha channel composited on decode).
    identity = {n: ("biden" if n == "biden" else "obama") for n in names}
    genuine, impostor = [], []
    for a, b in itertools.combinations(names, 2):
        score = embeddings[a].cosine(embeddings[b])
        (genuine if identity[a] == identity[b] else impostor).append(score)
    print(f"\nface_recognition: genuine min {min(genuine):.3f}, impostor max {max(impostor):.3f}")
    assert min(genuine) >= OPERATING_THRESHOLD
    assert max(impostor) < OPERATING_THRESHOLD


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_detector_recall_on_hand_labelled_photos(pipeline: FacePipeline) -> None:
    """GIVEN dlib's 43 hand-boxed faces WHEN detected at the chosen threshold THEN recall ≥ 0.95, ≤ 2 false boxes."""
    assert pipeline.detector.score_threshold == DEFAULT_SCORE_THRESHOLD
    found = labelled = false = 0
    for item in datasets.dlib_face_boxes():
        boxes = [f.box for f in pipeline.detector.detect(decode_image(item.path.read_bytes()))]
        hits, extra = _match(list(item.boxes), boxes)
        found += hits
        false += extra
        labelled += len(item.boxes)
    print(f"\ndlib recall {found}/{labelled}, false boxes {false}")
    assert labelled == 43
    assert found / labelled >= 0.95
    assert false <= 2


@pytest.mark.parametrize("factor", [1, 2, 4, 6, 8])
def test_scale_policy_finds_exactly_one_face_at_every_size(
    pipeline: FacePipeline, johns: dict[str, list[Path]], factor: int
) -> None:
    """GIVEN one portrait enlarged up to 8x (faces ~100 to ~1,000 px) WHEN detected THEN exactly one face.

    At native size alone YuNet misses faces above ~550 px or boxes part of them; the two-scale policy
    must find each face once, whatever its size.
    """
    for name, paths in johns.items():
        image = johns_chip(paths[0])
        big = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
        faces = pipeline.detector.detect(big)
        assert len(faces) == 1, f"{name} x{factor}: {len(faces)} faces"


def _match(truth: list[tuple[float, ...]], boxes: list[tuple[float, ...]]) -> tuple[int, int]:
    """(faces found, false boxes) with one box per labelled face at IoU ≥ 0.3."""
    used: set[int] = set()
    for t in truth:
        candidates = [i for i in range(len(boxes)) if i not in used and _iou(t, boxes[i]) >= 0.3]
        if candidates:
            used.add(max(candidates, key=lambda i: _iou(t, boxes[i])))
    return len(used), len(boxes) - len(used)


def test_large_group_photo_keeps_its_small_faces(pipeline: FacePipeline) -> None:
    """GIVEN a 2250x2250 photo of 43 faces of ~37-110 px WHEN detected THEN the policy finds them all.

    The photo is a mosaic of dlib's hand-labelled photos at native size (so every box is known). A
    detector that only downscales to 640 px, as letterboxing does, loses the smallest faces.
    """
    items = datasets.dlib_face_boxes()
    cell, cols = 750, 3
    rows = -(-len(items) // cols)
    canvas = np.full((rows * cell, cols * cell, 3), 127, np.uint8)
    truth: list[tuple[float, ...]] = []
    for k, item in enumerate(items):
        image = decode_image(item.path.read_bytes())
        r, c = divmod(k, cols)
        canvas[r * cell : r * cell + image.shape[0], c * cell : c * cell + image.shape[1]] = image
        truth += [(x + c * cell, y + r * cell, w, h) for (x, y, w, h) in item.boxes]

    found, false = _match(truth, [f.box for f in pipeline.detector.detect(canvas)])
    scale = 640 / canvas.shape[1]
    small = cv2.resize(canvas, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    small_boxes = [tuple(v / scale for v in f.box) for f in pipeline.detector.detect(small)]
    found_small, _ = _match(truth, small_boxes)
    print(f"\nmosaic: policy {found}/{len(truth)} (false {false}); 640 px only {found_small}/{len(truth)}")
    assert found / len(truth) >= 0.95
    assert false <= 2
    assert found > found_small
