"""``facegate`` command line: build models, fetch test data, inspect images, run the local demo."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from facegate.errors import FacegateError, InvalidRequestError

# The CLI decides as the service does: the use case's threshold from the catalog, never below its floor.
DEFAULT_USE_CASE = "identity_verification"


def _models_build(args: argparse.Namespace) -> int:
    from facegate.models.build import main as build_main

    return build_main((["--out", str(args.out)] if args.out else []) + (["--force"] if args.force else []))


def _data_fetch(_: argparse.Namespace) -> int:
    from facegate import datasets

    for name, path in datasets.fetch_all().items():
        print(f"{name}: {path}")
    return 0


def _detect(args: argparse.Namespace) -> int:
    from facegate.vision import FacePipeline

    pipeline = FacePipeline.from_store()
    analysis = pipeline.analyse(Path(args.image).read_bytes())
    faces = [
        {
            "box": [round(v, 1) for v in f.box],
            "score": round(f.score, 3),
            "size_px": round(f.size, 1),
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in f.landmarks],
            "role": "subject" if i == 0 else ("comparable" if i < analysis.face_count else "bystander"),
        }
        for i, f in enumerate(analysis.faces)
    ]
    out = {"width": analysis.width, "height": analysis.height, "face_count": analysis.face_count, "faces": faces}
    print(json.dumps(out, indent=2))
    return 0


def verify_threshold(use_case: str, threshold: float | None) -> float:
    """The threshold a verification under ``use_case`` runs at: its default, or a stricter one asked for.
    A threshold below the use case's floor is refused, as the service's gate refuses it."""
    from facegate.policy.catalog import default_catalog

    cases = default_catalog().use_cases
    if use_case not in cases:
        raise InvalidRequestError(f"unknown use case {use_case!r} (one of {', '.join(sorted(cases))})")
    case = cases[use_case]
    if threshold is None:
        return case.default_threshold
    if not 0.0 < threshold <= 1.0:
        raise InvalidRequestError(f"threshold {threshold} is not a cosine in (0, 1]")
    if threshold < case.threshold_floor:
        raise InvalidRequestError(
            f"threshold {threshold} is below the {use_case} floor {case.threshold_floor} "
            f"(false-match rate target {case.target_fmr:g} in every group)"
        )
    return threshold


def _verify(args: argparse.Namespace) -> int:
    from facegate.vision import FacePipeline

    threshold = verify_threshold(args.use_case, args.threshold)
    pipeline = FacePipeline.from_store()
    embeddings = []
    for image in (args.image_a, args.image_b):
        analysis = pipeline.analyse(Path(image).read_bytes())
        if analysis.face_count != 1:
            print(
                f"{image}: {analysis.face_count} faces comparable to the subject found; verification needs exactly one",
                file=sys.stderr,
            )
            return 2
        embeddings.append(analysis.subject_embedding)
    score = embeddings[0].cosine(embeddings[1])
    verdict = "same person" if score >= threshold else "different people"
    out = {"cosine": round(score, 4), "use_case": args.use_case, "threshold": threshold, "decision": verdict}
    print(json.dumps(out))
    return 0


def _demo(_: argparse.Namespace) -> int:
    from facegate.demo import run_vision_demo

    return run_vision_demo()


def _local_demo(_: argparse.Namespace) -> int:
    from facegate.localcloud.demo import run_cloud_demo

    return run_cloud_demo()


def _local_deploy(_: argparse.Namespace) -> int:
    """Deploy the template into a fresh local cloud and print what was created (a quick check)."""
    from facegate.localcloud.cloud import LocalCloud

    with LocalCloud() as cloud:
        assert cloud.stack is not None
        for logical in cloud.stack.order():
            kind = cloud.stack.template["Resources"][logical]["Type"]
            print(f"{kind:<36} {logical:<44} {cloud.stack.refs[logical]}")
        print(json.dumps(cloud.outputs, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facegate", description="facegate: bounded, consented face recognition")
    sub = parser.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", help="the ONNX models").add_subparsers(dest="action", required=True)
    build = models.add_parser("build", help="fetch, verify, rewrite and check the models")
    build.add_argument("--out", type=Path)
    build.add_argument("--force", action="store_true")
    build.set_defaults(func=_models_build)

    data = sub.add_parser("data", help="registry test data").add_subparsers(dest="action", required=True)
    data.add_parser("fetch", help="fetch and verify the test images").set_defaults(func=_data_fetch)

    detect = sub.add_parser("detect", help="detect faces in one image (JSON out)")
    detect.add_argument("image")
    detect.set_defaults(func=_detect)

    verify = sub.add_parser("verify", help="1:1 verification of two single-face images")
    verify.add_argument("image_a")
    verify.add_argument("image_b")
    verify.add_argument("--use-case", default=DEFAULT_USE_CASE, help="the catalog's use case (its threshold)")
    verify.add_argument("--threshold", type=float, default=None, help="stricter than the use case's floor only")
    verify.set_defaults(func=_verify)

    sub.add_parser("demo", help="the vision pipeline alone on the embedded default data").set_defaults(func=_demo)

    local = sub.add_parser("local", help="the local cloud: moto, the real template, ASL and handlers")
    local_sub = local.add_subparsers(dest="action", required=True)
    local_sub.add_parser("demo", help="the whole service, end to end, in plain words").set_defaults(func=_local_demo)
    local_sub.add_parser("deploy", help="deploy template.yaml locally and list the resources").set_defaults(
        func=_local_deploy
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        code: int = args.func(args)
    except FacegateError as exc:
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return 2
    if args.command == "demo" or (args.command == "local" and args.action == "demo"):
        print(f"done in {time.perf_counter() - start:.1f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
