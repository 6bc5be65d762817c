"""The bulk enrolment job (AWS Batch, GPU when there is one): ``python -m facegate.batch``.

The BulkEnrol workflow's PolicyCheck has allowed the tenant to enrol into the gallery; this job then
reads the manifest (JSON lines: ``subject_id``, ``consent_id``, and ``key`` of a photo, or ``keys`` of 1 to
5 photos fused into one template, under the tenant's ``uploads/`` prefix), decodes the photos, detects
and embeds them in batches (CUDA first, CPU as the fallback), and enrols each subject through
``FaceService.enrol``, so each template still passes the gate (consent for the gallery's use case,
exactly one subject face per photo, the capture-quality bars, limits). A subject that is refused or
whose photo is bad is reported with its reason code and does not stop the others; each photo is
deleted once handled. The report goes to ``tenants/<tenant>/reports/<request_id>.json``.

Exit codes: 0 when every line was handled (enrolled, refused or failed: see the report), 2 when the
job itself cannot run (bad arguments, an unreadable or malformed manifest).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from facegate.embedding import MAX_REFERENCES
from facegate.errors import FacegateError, InvalidRequestError, PolicyDeniedError
from facegate.store.scope import tenant_scope
from facegate.tenancy import ENTITY_ID, TenantContext
from facegate.workflow.models import ObjectRef

MAX_LINES: Final = 10_000
BATCH_SIZE: Final = 32


class ManifestLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    subject_id: str = Field(pattern=ENTITY_ID.pattern)
    consent_id: str = Field(pattern=ENTITY_ID.pattern)
    key: str | None = Field(default=None, min_length=1, max_length=1024)
    """One photo of the subject; or ``keys``: several (fused into one template)."""
    keys: tuple[Annotated[str, Field(min_length=1, max_length=1024)], ...] | None = Field(
        default=None, min_length=1, max_length=MAX_REFERENCES
    )

    @model_validator(mode="after")
    def _one_form(self) -> ManifestLine:
        if (self.key is None) == (self.keys is None):
            raise ValueError("a line names its photo as 'key' or its photos as 'keys', not both")
        if self.keys is not None and len(set(self.keys)) != len(self.keys):
            raise ValueError("a photo is listed twice")
        return self

    @property
    def photos(self) -> tuple[str, ...]:
        return self.keys if self.keys is not None else (self.key or "",)


@dataclass
class Report:
    request_id: str
    tenant_id: str
    gallery_id: str
    results: list[dict[str, Any]] = field(default_factory=list)

    def add(self, line: int, subject_id: str, status: str, **extra: Any) -> None:
        self.results.append({"line": line, "subject_id": subject_id, "status": status, **extra})

    def counts(self) -> dict[str, int]:
        out = {"enrolled": 0, "refused": 0, "failed": 0}
        for r in self.results:
            out[r["status"]] += 1
        return out

    total: int = 0
    """Lines in the manifest; the report is written after each batch (``state: running``) and at the end."""

    def to_dict(self, *, state: str = "completed") -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "tenant_id": self.tenant_id,
            "gallery_id": self.gallery_id,
            "state": state,
            "lines": self.total,
            "done": len(self.results),
            **self.counts(),
            "results": sorted(self.results, key=lambda r: int(r["line"])),
        }


def report_key(tenant_id: str, request_id: str) -> str:
    return f"tenants/{tenant_id}/reports/{request_id}.json"


def parse_manifest(text: str, tenant_id: str) -> list[ManifestLine]:
    """Every line, validated before anything is enrolled: a malformed manifest enrols nobody."""
    lines: list[ManifestLine] = []
    prefix = f"tenants/{tenant_id}/uploads/"
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = ManifestLine.model_validate_json(raw)
        except ValidationError as exc:
            raise InvalidRequestError(f"manifest line {number}: {exc.errors()[0]['msg']}") from exc
        if any(not key.startswith(prefix) or ".." in key for key in line.photos):
            raise InvalidRequestError(f"manifest line {number}: the photo must lie under {prefix}")
        lines.append(line)
        if len(lines) > MAX_LINES:
            raise InvalidRequestError(f"a manifest holds at most {MAX_LINES} subjects")
    if not lines:
        raise InvalidRequestError("the manifest lists no subject")
    return lines


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def run(
    *, tenant_id: str, actor: str, gallery_id: str, bucket: str, manifest_key: str, manifest_version: str | None,
    request_id: str,
) -> Report:  # fmt: skip
    import boto3

    from facegate.service import FaceService
    from facegate.settings import Settings
    from facegate.store.models import configure
    from facegate.vision import FacePipeline

    settings = Settings.from_env()
    configure(settings)
    s3 = boto3.client("s3", region_name=settings.region)
    ctx = TenantContext(tenant_id=tenant_id, actor=actor)
    if not manifest_key.startswith(f"tenants/{tenant_id}/manifests/"):
        raise InvalidRequestError("the manifest must lie under the tenant's manifests/ prefix")
    manifest = ObjectRef(bucket=bucket, key=manifest_key, version_id=manifest_version)
    lines = parse_manifest(s3.get_object(**manifest.s3_args())["Body"].read().decode("utf-8"), tenant_id)

    service = FaceService()
    pipeline = FacePipeline.from_store()
    report = Report(request_id, tenant_id, gallery_id, total=len(lines))

    def write(state: str) -> None:  # the progress a tenant reads while it runs (GET /bulk-enrolments/{id}/report)
        s3.put_object(
            Bucket=bucket,
            Key=report_key(tenant_id, request_id),
            Body=json.dumps(report.to_dict(state=state)).encode(),
            ContentType="application/json",
        )

    write("running")
    with tenant_scope(tenant_id):
        _enrol_all(s3, bucket, lines, ctx, gallery_id, service, pipeline, report, progress=lambda: write("running"))
    write("completed")
    return report


def _enrol_all(
    s3: Any, bucket: str, lines: list[ManifestLine], ctx: TenantContext, gallery_id: str, service: Any,
    pipeline: Any, report: Report, progress: Callable[[], None] = lambda: None,
) -> None:  # fmt: skip
    from facegate.vision import decode_image

    numbered = list(enumerate(lines, start=1))
    for chunk in _chunks(numbered, BATCH_SIZE):
        images, ready = [], []
        for number, line in chunk:
            earlier = _enrolled_before(service, ctx, gallery_id, line, line_request_id(report.request_id, number))
            if earlier is not None:  # an earlier attempt of this job enrolled this line (and deleted its photo)
                report.add(number, line.subject_id, "enrolled", template_id=earlier)
                continue
            key = ""
            try:
                decoded = []
                for key in line.photos:
                    decoded.append(decode_image(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
                images.extend(decoded)
                ready.append((number, line))
            except FacegateError as exc:
                report.add(number, line.subject_id, "failed", code=exc.code, message=exc.message)
            except s3.exceptions.NoSuchKey:
                report.add(number, line.subject_id, "failed", code="image.missing", message=f"no object {key}")
        analyses = iter(pipeline.analyse_batch(images) if images else [])
        for number, line in ready:
            photos = [next(analyses) for _ in line.photos]
            try:
                enrolled = enrol_paced(
                    service,
                    ctx,
                    gallery_id,
                    line,
                    photos if line.keys is not None else photos[0],
                    request_id=line_request_id(report.request_id, number),
                )
                report.add(
                    number, line.subject_id, "enrolled", template_id=enrolled.template_id, references=len(photos)
                )
            except PolicyDeniedError as exc:
                codes = [r.code for r in getattr(exc.decision, "reasons", ())]
                report.add(number, line.subject_id, "refused", codes=codes)
            except FacegateError as exc:
                report.add(number, line.subject_id, "failed", code=exc.code, message=exc.message)
        for _, line in chunk:
            for key in line.photos:
                s3.delete_object(Bucket=bucket, Key=key)  # photos are transient: templates are what is kept
        progress()


def line_request_id(request_id: str, number: int) -> str:
    """The request id of one manifest line: the template it stores derives from it, so a second
    Batch attempt of the same job (retry strategy: 2 attempts) cannot store a second template."""
    return f"{request_id}-{number}"


def _enrolled_before(service: Any, ctx: TenantContext, gallery_id: str, line: ManifestLine, key: str) -> str | None:
    template_id = service.templates.template_id(ctx, gallery_id, line.subject_id, key)
    stored = service.templates.get(ctx, gallery_id, template_id)
    return None if stored is None else str(stored.template_id)


def enrol_paced(
    service: Any, ctx: TenantContext, gallery_id: str, line: ManifestLine, analysis: Any,
    sleep: Callable[[float], None] = time.sleep, request_id: str | None = None,
) -> Any:  # fmt: skip
    """Enrol one subject; when the only refusal is the per-minute rate limit, wait for the next window
    once and try again (the job keeps to the tenant's limits instead of failing the rest)."""
    kwargs = {"subject_id": line.subject_id, "consent_id": line.consent_id, "analysis": analysis}
    try:
        return service.enrol(ctx, gallery_id, request_id=request_id, **kwargs)
    except PolicyDeniedError as exc:
        if [r.code for r in getattr(exc.decision, "reasons", ())] != ["request.rate_limited"]:
            raise
    sleep(61 - datetime.now(UTC).second)
    return service.enrol(ctx, gallery_id, request_id=request_id, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m facegate.batch", description=__doc__.splitlines()[0])
    for name in ("tenant", "actor", "gallery", "bucket", "manifest-key", "request-id"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--manifest-version", default="")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = run(
            tenant_id=args.tenant,
            actor=args.actor,
            gallery_id=args.gallery,
            bucket=args.bucket,
            manifest_key=args.manifest_key,
            manifest_version=args.manifest_version if args.manifest_version not in ("", "null") else None,
            request_id=args.request_id,
        )
    except FacegateError as exc:
        print(json.dumps({"error": exc.code, "message": exc.message}), file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in report.to_dict().items() if k != "results"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
