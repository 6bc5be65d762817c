"""The independent-test job (AWS Batch, GPU when there is one): ``python -m facegate.sandbox``.

The IndependentTest workflow's PolicyCheck has allowed the tester's set; this job reads the set's archive
(one object version under the tester's ``independent-tests/`` prefix), checks it as the API did
(:mod:`facegate.sandbox.archive`: the same images and people the gate decided on), runs it through the
production path exactly as ``facegate evaluate`` does (:func:`facegate.evaluation.report.evaluate`), and
writes the report beside it: ``report.json`` (counts and intervals, never a score, template or image)
and ``report.html`` with its plots (transient, like everything under ``tenants/``: the bucket's
lifecycle rule removes them within a day or two; the test's outcome row keeps the set's digests). It
touches no table: its role has no DynamoDB permission at all, so no gallery, consent or audit row is
within its reach; the workflow's Finish records the outcome.

Exit codes: 0 with the report written, 2 when the set cannot be evaluated (the archive changed or is
refused, or the object is gone): the workflow records that failure with its reason.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from facegate.errors import FacegateError, InvalidRequestError
from facegate.sandbox.keys import report_keys, set_key_match
from facegate.workflow.models import ObjectRef


def run(
    *, tester: str, test_id: str, bucket: str, key: str, version: str | None, name: str, identities: bool,
    group_source: str, images: int, s3: Any = None,
) -> dict[str, Any]:  # fmt: skip
    """Evaluate one set and write its report; returns the report."""
    from facegate.evaluation.render import plots, render_html
    from facegate.evaluation.report import evaluate
    from facegate.policy.catalog import default_catalog
    from facegate.policy.gate import PolicyGate
    from facegate.sandbox.archive import unpacked
    from facegate.vision import FacePipeline

    match = set_key_match(key)
    if match is None or match["tenant"] != tester:
        raise InvalidRequestError(f"the set must lie under tenants/{tester}/independent-tests/")
    if s3 is None:
        import boto3

        s3 = boto3.client("s3", region_name=os.environ.get("AWS_DEFAULT_REGION"))
    ref = ObjectRef(bucket=bucket, key=key, version_id=version)
    try:
        data = s3.get_object(**ref.s3_args())["Body"].read()
    except s3.exceptions.NoSuchKey as exc:
        raise InvalidRequestError(f"the set's archive {key} is gone") from exc
    limits = default_catalog().sandbox
    with unpacked(data, limits, name=name, identities_known=identities, group_source=group_source) as (
        dataset,
        summary,
    ):
        if summary.images != images:
            raise InvalidRequestError(
                f"the archive lists {summary.images} images, not the {images} the gate decided on"
            )
        report = evaluate(dataset, FacePipeline.from_store(), policy_version=PolicyGate().version)
    report["independent_test"] = {"test_id": test_id, "archive_sha256": summary.archive_sha256}
    html = render_html(report, plots(report))
    json_key, html_key = report_keys(tester, test_id)
    for out_key, body, content_type in (
        (html_key, html.encode("utf-8"), "text/html; charset=utf-8"),
        (json_key, (json.dumps(report, indent=1) + "\n").encode("utf-8"), "application/json"),
    ):  # the JSON last: Finish reads it as the sign that the report is whole
        s3.put_object(Bucket=bucket, Key=out_key, Body=body, ContentType=content_type)
    return report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m facegate.sandbox", description=__doc__.splitlines()[0])
    for name in ("tester", "test-id", "bucket", "key", "name", "group-source", "images"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--version", default="")
    parser.add_argument("--identities", choices=("true", "false"), default="true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = run(
            tester=args.tester,
            test_id=args.test_id,
            bucket=args.bucket,
            key=args.key,
            version=args.version if args.version not in ("", "null") else None,
            name=args.name,
            identities=args.identities == "true",
            group_source=args.group_source,
            images=int(args.images),
        )
    except (FacegateError, ValueError) as exc:
        code = exc.code if isinstance(exc, FacegateError) else "request.invalid"
        print(json.dumps({"error": code, "message": str(exc)[:500]}), file=sys.stderr)
        return 2
    print(json.dumps({"test_id": args.test_id, "images": report["dataset"]["images"]}))
    return 0
