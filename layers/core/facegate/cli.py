"""``facegate`` command line: build models, fetch test data, inspect images, run the local demo.

Exit codes (every command):

====  ==========================================================================================
0     done; for ``verify``, the same person
1     no match: ``verify`` found different people
2     bad input: an argument, a file that cannot be read, an image, a face count, a threshold
3     refused: the policy gate said no (its reason codes are printed), or a gate's bound was exceeded
4     error: the service, the network or this machine failed, or there is no outcome yet
130   interrupted
====  ==========================================================================================

Errors are one line on stderr (``error [code]: message``), never a traceback; ``FACEGATE_DEBUG=1`` shows
the traceback of an unexpected one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facegate import __version__
from facegate.errors import (
    AuditChainError,
    FacegateError,
    FetchError,
    InvalidRequestError,
    ModelError,
    PolicyDeniedError,
    StorageError,
)

if TYPE_CHECKING:  # the vision stack loads only for the commands that need it
    from facegate.vision import FacePipeline

EXIT_OK = 0
EXIT_NO_MATCH = 1
EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3
EXIT_ERROR = 4
EXIT_INTERRUPTED = 130
READ_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
"""What reading a named file can raise: the caller's mistake (exit 2), unlike a network's OSError."""

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
            return EXIT_BAD_INPUT
        embeddings.append(analysis.subject_embedding)
    score = embeddings[0].cosine(embeddings[1])
    same = score >= threshold
    verdict = "same person" if same else "different people"
    out = {"cosine": round(score, 4), "use_case": args.use_case, "threshold": threshold, "decision": verdict}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{verdict}: cosine {score:.4f} {'>=' if same else '<'} {threshold} ({args.use_case}'s threshold)")
    return EXIT_OK if same else EXIT_NO_MATCH


def _evaluate_one(
    spec: str,
    options: dict[str, object],
    out: Path | None,
    *,
    bounds: dict[str, object] | None,
    json_only: bool,
    pipeline: FacePipeline,
) -> dict[str, object]:
    """Evaluate one labelled set through the production path; write report.json (and the HTML, plots)."""
    from facegate.evaluation import dataset as ds
    from facegate.evaluation.gate import check
    from facegate.evaluation.report import evaluate
    from facegate.policy.gate import PolicyGate

    dataset = ds.load(spec, **options)  # type: ignore[arg-type]
    print(f"{dataset.name}: {len(dataset.images):,} images of {len(dataset.groups())} group(s)", file=sys.stderr)
    report = evaluate(dataset, pipeline, policy_version=PolicyGate().version)
    if bounds is not None:
        report["gate"] = check(report, bounds)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        if not json_only:
            from facegate.evaluation.render import write

            write(report, out)
        print(f"{dataset.name}: report in {out}", file=sys.stderr)
    return report


def _dataset_options(args: argparse.Namespace) -> dict[str, object]:
    return {
        "path_column": args.path_column,
        "identity_column": None if args.no_identities else args.identity_column,
        "group_column": None if args.no_groups else args.group_column,
        "group_source": args.group_source,
        **({"name": args.name} if args.name else {}),
    }


def _dataset_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", help="a CSV of path,identity[,group], a folder with labels.csv or of "
                        "<identity>/<image>, or a fetched set (johns, face_recognition)")  # fmt: skip
    parser.add_argument("--path-column", default="path", help="the CSV's column of image paths (default: path)")
    parser.add_argument(
        "--identity-column", default="identity", help="the CSV's column of identities (default: identity)"
    )
    parser.add_argument("--no-identities", action="store_true", help="every image a different person")
    parser.add_argument("--group-column", default="group", help="the CSV's column of groups (default: group)")
    parser.add_argument("--no-groups", action="store_true", help="one group")
    parser.add_argument("--group-source", default="annotated", help="manual, annotated, predicted, self-reported")
    parser.add_argument("--name", help="the set's name in the report")


def _endpoint_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", default=os.environ.get("FACEGATE_API_URL"), help="the API (FACEGATE_API_URL)")
    parser.add_argument(
        "--token", default=os.environ.get("FACEGATE_TOKEN"), help="the tester's access token (FACEGATE_TOKEN)"
    )


def _client(args: argparse.Namespace) -> Any:
    from facegate.sdk import FacegateClient

    if not args.endpoint or not args.token:
        raise InvalidRequestError(
            "name the API and the tester's token: --endpoint/--token or FACEGATE_API_URL/FACEGATE_TOKEN"
        )
    return FacegateClient(args.endpoint, args.token, timeout=120.0)


def _packed(args: argparse.Namespace) -> tuple[bytes, str, bool, str]:
    """The set read as `facegate evaluate` reads it, packed, and checked as the service will check it."""
    from facegate.evaluation import dataset as ds
    from facegate.policy.catalog import default_catalog
    from facegate.sandbox.archive import inspect, pack

    dataset = ds.load(args.dataset, **_dataset_options(args))  # type: ignore[arg-type]
    data = pack(dataset)
    name = "".join(c if c.isalnum() or c in " _.-" else "-" for c in (args.name or dataset.name))[:64] or "set"
    grouped = dataset.group_source if dataset.group_source != "none" else "annotated"
    summary = inspect(
        data, default_catalog().sandbox, name=name, identities_known=dataset.identities_known, group_source=grouped
    )
    print(
        f"{name}: {summary.images:,} images of {summary.identities:,} identities, {len(data):,} bytes",
        file=sys.stderr,
    )
    return data, name, dataset.identities_known, grouped


def _sandbox_pack(args: argparse.Namespace) -> int:
    data, *_ = _packed(args)
    args.out.write_bytes(data)
    print(f"wrote {args.out}")
    return 0


def _write_test(client: Any, test_id: str, outcome: dict[str, Any], out: Path | None) -> int:
    print(json.dumps({k: v for k, v in outcome.items() if k != "report"}, indent=1))
    if outcome.get("status") != "completed":
        return 4
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(outcome["report"], indent=1) + "\n", encoding="utf-8")
        (out / "report.html").write_text(client.independent_test(test_id, "html"), encoding="utf-8")
        print(f"report in {out}", file=sys.stderr)
    _print_summary(outcome["report"])
    return 0


def _sandbox_submit(args: argparse.Namespace) -> int:
    data, name, identities, group_source = _packed(args)
    client = _client(args)
    submitted = client.submit_independent_test(data, name=name, identities=identities, group_source=group_source)
    print(f"test {submitted['test_id']}: {submitted['status']}", file=sys.stderr)
    if not args.wait:
        print(json.dumps(submitted, indent=1))
        return 0
    outcome = client.wait_for_independent_test(submitted["test_id"])
    return _write_test(client, submitted["test_id"], outcome, args.out)


def _sandbox_report(args: argparse.Namespace) -> int:
    client = _client(args)
    outcome = client.independent_test(args.test_id)
    if outcome is None:
        print(f"test {args.test_id}: no outcome yet (or no such test)", file=sys.stderr)
        return 4
    return _write_test(client, args.test_id, outcome, args.out)


def _print_summary(report: dict[str, object]) -> None:
    from facegate.evaluation.report import ALL

    verification = report["verification"]
    assert isinstance(verification, dict)
    for point in verification["at"]:
        fmr = {g: c["rate"] for g, c in point["fmr"].items() if g != ALL}
        line = f"threshold {point['threshold']} ({', '.join(point['use_cases'])}): FMR " + ", ".join(
            f"{g} {v:.2g}" for g, v in fmr.items()
        )
        if "fnmr" in point:
            line += "; FNMR " + ", ".join(f"{g} {c['rate']:.3g}" for g, c in point["fnmr"].items() if g != ALL)
        print(line)


def _print_checks(gate: dict[str, Any]) -> None:
    for c in gate["checks"]:
        print(("ok       " if c["passed"] else "EXCEEDED ") + c["text"])


def _evaluate(args: argparse.Namespace) -> int:
    bounds = None
    if args.gate:
        from facegate.evaluation.gate import check_bounds

        bounds = json.loads(Path(args.gate).read_text(encoding="utf-8"))
        check_bounds(bounds, where=args.gate)
    from facegate.vision import FacePipeline

    report = _evaluate_one(
        args.dataset,
        _dataset_options(args),
        args.out,
        bounds=bounds,
        json_only=args.json_only,
        pipeline=FacePipeline.from_store(),
    )
    if args.out is None:
        print(json.dumps(report, indent=1))
    else:
        _print_summary(report)
    gate = report.get("gate")
    if isinstance(gate, dict):
        _print_checks(gate)
        return 0 if gate["passed"] else 3
    return 0


def _release_gate(args: argparse.Namespace) -> int:
    """Every set of the gate configuration, evaluated and checked; exit 3 when any bound is exceeded."""
    from facegate.evaluation.gate import load_config

    sets = load_config(Path(args.config))
    chosen = [s for s in sets if not args.set or s.name in args.set]
    if args.set and len(chosen) != len(set(args.set)):
        raise InvalidRequestError(f"unknown set(s) {sorted(set(args.set) - {s.name for s in sets})}")
    from facegate.vision import FacePipeline

    pipeline = FacePipeline.from_store()  # one per run: every set goes through the same sessions
    failed = []
    reports: dict[str, Any] = {}
    for s in chosen:
        out = args.out / s.name if args.out else None
        report = _evaluate_one(
            s.dataset, {**s.options, "name": s.name}, out, bounds=s.bounds, json_only=args.json_only, pipeline=pipeline
        )
        reports[s.name] = report
        gate = report["gate"]
        assert isinstance(gate, dict)
        _print_checks(gate)
        if not gate["passed"]:
            failed.append(s.name)
    print(f"release gate: {'FAILED on ' + ', '.join(failed) if failed else 'passed'} ({len(chosen)} sets)")
    if args.summary is not None:
        from facegate.evaluation.gate import release_summary

        args.summary.write_text(json.dumps(release_summary(reports), indent=1) + "\n", encoding="utf-8")
        print(f"summary for the accountability report in {args.summary}", file=sys.stderr)
    return 3 if failed else 0


def _report(args: argparse.Namespace) -> int:
    """The model card, or an offline accountability report for use cases as if applied for (not approved)."""
    from datetime import UTC, datetime

    from facegate.accountability import accountability_report, model_card, render_html
    from facegate.policy.catalog import default_catalog
    from facegate.store.repositories import Approval

    if args.action == "model-card":
        document = model_card()
    else:
        now = datetime.now(UTC)
        cases = default_catalog().use_cases
        proposed = []
        for use_case in args.use_case:
            offered = cases[use_case].deployments if use_case in cases else ("",)
            if args.deployment is not None and use_case in cases and args.deployment not in offered:
                raise InvalidRequestError(
                    f"{use_case} is not offered at {args.deployment!r} (only {', '.join(offered)})"
                )
            proposed.append(
                Approval(
                    use_case=use_case,
                    deployment=args.deployment or offered[0],
                    jurisdiction=args.jurisdiction or "",
                    approver="none: an offline report, not an approval",
                    approved_at=now,
                    expires_at=now,
                    status="proposed",
                )
            )
        evaluation = json.loads(Path(args.evaluation).read_text(encoding="utf-8")) if args.evaluation else None
        tenant = args.tenant or "offline"
        document = accountability_report(
            "offline", proposed, name=tenant, jurisdiction=args.jurisdiction, evaluation=evaluation, now=now
        )
    print(render_html(document) if args.format == "html" else json.dumps(document, indent=1, ensure_ascii=False))
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


def _local_serve(args: argparse.Namespace) -> int:
    from facegate.localcloud.serve import serve_forever

    return serve_forever(
        aws_port=args.aws_port,
        api_port=args.api_port,
        write_env=args.write_env,
        env_vars=args.env_vars,
        seed=not args.no_seed,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facegate",
        description="facegate: bounded, consented face recognition",
        epilog="exit codes: 0 done (verify: same person), 1 no match, 2 bad input, 3 refused, 4 error",
    )
    parser.add_argument("--version", action="version", version=f"facegate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", help="the ONNX models").add_subparsers(dest="action", required=True)
    build = models.add_parser("build", help="fetch, verify, rewrite and check the models")
    build.add_argument("--out", type=Path, help="where the models go (default: FACEGATE_MODEL_DIR or the cache)")
    build.add_argument("--force", action="store_true", help="build again even if the models are there")
    build.set_defaults(func=_models_build)

    data = sub.add_parser("data", help="registry test data").add_subparsers(dest="action", required=True)
    data.add_parser("fetch", help="fetch and verify the test images").set_defaults(func=_data_fetch)

    detect = sub.add_parser("detect", help="detect faces in one image (JSON out)")
    detect.add_argument("image", help="a JPEG, PNG or WebP file")
    detect.set_defaults(func=_detect)

    verify = sub.add_parser("verify", help="1:1 verification of two single-face images")
    verify.add_argument("image_a", help="a photo of one person (JPEG, PNG or WebP)")
    verify.add_argument("image_b", help="a photo to compare with it")
    verify.add_argument("--use-case", default=DEFAULT_USE_CASE, help="the catalog's use case (its threshold)")
    verify.add_argument("--threshold", type=float, default=None, help="stricter than the use case's floor only")
    verify.add_argument("--json", action="store_true", help="the answer as one JSON object")
    verify.set_defaults(func=_verify)

    evaluate = sub.add_parser(
        "evaluate",
        help="per-group accuracy of a labelled set through the production path (JSON, HTML and plots)",
        description="DATASET: a CSV of path,identity[,group], a folder holding labels.csv, a folder of "
        "<identity>/<image>, or a fetched set (johns, face_recognition).",
    )
    _dataset_arguments(evaluate)
    evaluate.add_argument("--out", type=Path, help="folder for report.json, report.html and the PNGs")
    evaluate.add_argument("--gate", help="a JSON of bounds (facegate.evaluation.gate): exit 3 when one is exceeded")
    evaluate.add_argument("--json-only", action="store_true", help="no HTML or plots (no matplotlib needed)")
    evaluate.set_defaults(func=_evaluate)

    gate = sub.add_parser("release-gate", help="evaluate every set of a gate configuration and check its bounds")
    gate.add_argument("--config", default="benchmarks/release_gate.json", help="the gate's sets and bounds (JSON)")
    gate.add_argument("--out", type=Path, help="one report folder per set")
    gate.add_argument("--set", action="append", help="only this set (repeatable)")
    gate.add_argument("--json-only", action="store_true", help="no HTML or plots (no matplotlib needed)")
    gate.add_argument(
        "--summary", type=Path, help="also write the per-group summary the accountability report carries (JSON)"
    )
    gate.set_defaults(func=_release_gate)

    sandbox = sub.add_parser("sandbox", help="independent testing: a labelled set evaluated by the service, apart")
    sandbox_sub = sandbox.add_subparsers(dest="action", required=True)
    pack = sandbox_sub.add_parser("pack", help="a labelled set as the sandbox's zip (labels.csv and numbered images)")
    _dataset_arguments(pack)
    pack.add_argument("--out", type=Path, required=True, help="the zip to write")
    pack.set_defaults(func=_sandbox_pack)
    submit = sandbox_sub.add_parser("submit", help="submit a labelled set to the service's sandbox (a tester's token)")
    _dataset_arguments(submit)
    _endpoint_arguments(submit)
    submit.add_argument("--wait", action="store_true", help="wait for the report (and write it with --out)")
    submit.add_argument("--out", type=Path, help="folder for report.json and report.html (with --wait)")
    submit.set_defaults(func=_sandbox_submit)
    fetch = sandbox_sub.add_parser("report", help="a submitted test's outcome and report")
    fetch.add_argument("test_id", help="the id the submission returned")
    _endpoint_arguments(fetch)
    fetch.add_argument("--out", type=Path, help="folder for report.json and report.html")
    fetch.set_defaults(func=_sandbox_report)

    report = sub.add_parser("report", help="the model card and accountability reports, generated")
    report_sub = report.add_subparsers(dest="action", required=True)
    card = report_sub.add_parser("model-card", help="the model card, from the catalog, the models and the calibration")
    card.add_argument("--format", choices=("json", "html"), default="json", help="json (default) or html")
    card.set_defaults(func=_report)
    accountability = report_sub.add_parser(
        "accountability", help="an offline accountability report (RCW 43.386.020) for the listed use cases"
    )
    accountability.add_argument("--use-case", action="append", required=True, help="a catalog use case (repeatable)")
    accountability.add_argument("--format", choices=("json", "html"), default="json", help="json (default) or html")
    accountability.add_argument("--tenant", help="the organisation's name in the report")
    accountability.add_argument("--deployment", help="the deployment applied for (default: the use case's first)")
    accountability.add_argument("--jurisdiction", help="e.g. US-WA")
    accountability.add_argument("--evaluation", help="a JSON evaluation report to carry (facegate evaluate --out)")
    accountability.set_defaults(func=_report)

    sub.add_parser("demo", help="the vision pipeline alone on the embedded default data").set_defaults(func=_demo)

    local = sub.add_parser("local", help="the local cloud: moto, the real template, ASL and handlers")
    local_sub = local.add_subparsers(dest="action", required=True)
    local_sub.add_parser("demo", help="the whole service, end to end, in plain words").set_defaults(func=_local_demo)
    local_sub.add_parser("deploy", help="deploy template.yaml locally and list the resources").set_defaults(
        func=_local_deploy
    )
    local_serve = local_sub.add_parser(
        "serve",
        help="a long-lived local stack on loopback for other processes (state in memory)",
        description="Deploy the template into moto and serve it on loopback until interrupted: moto's "
        "endpoint (S3, DynamoDB, Step Functions, STS, Cognito, CloudFormation) for boto3 and the AWS CLI, "
        "and the tenant API. Prints the environment to use; everything is lost when it stops.",
    )
    local_serve.add_argument("--aws-port", type=int, default=4566, help="moto's endpoint (default 4566; 0: any)")
    local_serve.add_argument("--api-port", type=int, default=8787, help="the tenant API (default 8787; 0: any)")
    local_serve.add_argument(
        "--write-env", type=Path, help="a folder for tenant.env, operator.env, machine.env and state.json"
    )
    local_serve.add_argument("--env-vars", type=Path, help="a JSON of each function's variables for sam local invoke")
    local_serve.add_argument("--no-seed", action="store_true", help="no demo tenant (onboard your own)")
    local_serve.set_defaults(func=_local_serve)
    from facegate import operator_cli, tenant_cli

    tenant_cli.register(sub)
    operator_cli.register(sub)
    return parser


def _fail(code: int, message: str) -> int:
    print(f"error{message}", file=sys.stderr)
    return code


def _reasons(decision: Any) -> str:
    reasons = decision.get("reasons", []) if isinstance(decision, dict) else getattr(decision, "reasons", [])
    codes = [r["code"] if isinstance(r, dict) else getattr(r, "code", str(r)) for r in reasons]
    return f" (reasons: {', '.join(codes)})" if codes else ""


def _exit_for(exc: BaseException) -> int:
    """The exit code and the one line for an error a command raised."""
    from facegate.sdk import FacegateApiError, FacegateConnectionError

    if isinstance(exc, PolicyDeniedError):
        return _fail(EXIT_REFUSED, f" [{exc.code}]: {exc.message}{_reasons(exc.decision)}")
    if isinstance(exc, FacegateError):
        # The machine's or the service's failures are 4; every other facegate error names what the
        # caller gave (an argument, a file, an image, a use case): 2.
        failed = isinstance(exc, StorageError | ModelError | FetchError | AuditChainError)
        return _fail(EXIT_ERROR if failed else EXIT_BAD_INPUT, f" [{exc.code}]: {exc.message}")
    if isinstance(exc, FacegateApiError):
        refused = exc.status == 403 and exc.decision
        code = EXIT_REFUSED if refused else EXIT_BAD_INPUT if exc.status < 500 else EXIT_ERROR
        return _fail(code, f" [{exc.code}]: {exc.message}{_reasons(exc.decision)}")
    from facegate_sdk.auth import AuthError

    if isinstance(exc, AuthError):  # a refused sign-in (password, disabled user, revoked refresh token)
        return _fail(EXIT_BAD_INPUT, f" [auth]: {exc}")
    if isinstance(exc, FacegateConnectionError):
        return _fail(EXIT_ERROR, f" [connection]: {exc}")
    if isinstance(exc, TimeoutError):  # a waiter gave up: no outcome yet
        return _fail(EXIT_ERROR, f" [timeout]: {exc}")
    if isinstance(exc, READ_ERRORS) and exc.filename is not None:
        return _fail(EXIT_BAD_INPUT, f" [file]: cannot read {exc.filename}: {exc.strerror}")
    if isinstance(exc, KeyboardInterrupt):
        return _fail(EXIT_INTERRUPTED, ": interrupted")
    if os.environ.get("FACEGATE_DEBUG"):
        raise exc
    return _fail(EXIT_ERROR, f" [{type(exc).__name__}]: {exc} (FACEGATE_DEBUG=1 shows the traceback)")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # a bad argument: argparse's usage line and exit 2
    start = time.perf_counter()
    try:
        code: int = args.func(args)
    except (Exception, KeyboardInterrupt) as exc:  # every error: one line and an exit code
        return _exit_for(exc)
    if args.command == "demo" or (args.command == "local" and args.action == "demo"):
        print(f"done in {time.perf_counter() - start:.1f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
