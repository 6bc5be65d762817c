"""The cloud demo (``facegate local demo``, ``make demo``): the whole service on the local cloud.

This process is the operator (``LocalCloud`` signs it as an ``OperatorRole`` session): it registers
and approves tenants in its own right, and does what a tenant would (a gallery, consents, reading the
audit trail) inside that tenant's scope, i.e. through a ``TenantDataRole`` session tagged with it.

An operator approves a prison for access control and refuses a city's camera network; the prison
enrols a consented gallery (the Enrol workflow, from dlib's public-domain "johns"; the first person
from three photos, fused into one template of three references); a checkpoint photo
is uploaded to S3 and the Recognize workflow decides, matches and audits it. Then the refusals: a crowd
photo, another tenant naming the prison's gallery, a burst over the rate limit.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from facegate import datasets
from facegate.errors import PolicyDeniedError
from facegate.localcloud.cloud import Execution, LocalCloud
from facegate.service import FaceService
from facegate.store.scope import tenant_scope
from facegate.tenancy import TenantContext
from facegate.workflow.models import ObjectRef

OPERATOR: Final = "operator@facegate"
PRISON: Final = TenantContext(tenant_id="hmp-northfield", actor="officer-ruiz")
OTHER: Final = TenantContext(tenant_id="riverside-lab", actor="guard-okafor")
GALLERY: Final = "staff-access"
PURPOSE: Final = "entry at checkpoint B"
BURST: Final = 12
"""Over two fixed one-minute windows at worst, 12 attempts still put 6 in one: some are refused."""
FUSED: Final = 3
"""Photos the first person is enrolled from (the checkpoint photo, their fourth, is none of them)."""


def _png(path: Any) -> bytes:
    """A johns chip, padded for the detector, as the PNG a tenant would upload."""
    from facegate.evaluation import johns_chip
    from facegate.vision.decode import cv2

    ok, encoded = cv2.imencode(".png", johns_chip(path))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return bytes(encoded)


def _path(states: list[str]) -> str:
    """The states an execution entered, a Map's repeated iterations counted (``Detect x3``)."""
    runs: list[list[Any]] = []
    for state in states:
        if runs and runs[-1][0] == state:
            runs[-1][1] += 1
        else:
            runs.append([state, 1])
    return " -> ".join(name if n == 1 else f"{name} x{n}" for name, n in runs)


def _reasons(decision: Any) -> str:
    return ", ".join(r["code"] if isinstance(r, dict) else r.code for r in decision)


class Demo:
    def __init__(self, cloud: LocalCloud, out: Any = print) -> None:
        self.cloud = cloud
        self.say = out
        self.service = FaceService()

    def run(self) -> dict[str, Any]:
        start = time.monotonic()
        summary: dict[str, Any] = {}
        resources = len(self.cloud.stack.template["Resources"]) if self.cloud.stack else 0
        self.say(f"The local cloud is up: template.yaml translated and deployed into moto ({resources} resources);")
        self.say(f"  probes go to s3://{self.cloud.bucket}/tenants/<tenant>/probes/<gallery>/ and start Recognize.\n")
        summary["approval"], summary["refusal"] = self._operators()
        summary["enrolled"], summary["fused_references"] = self._enrol()
        summary["recognize"] = self._recognize()
        summary["crowd"] = self._probe_refused(
            "A crowd photo (dlib's bald_guys.jpg) at the checkpoint", PRISON, self._crowd()
        )
        summary["cross_tenant"] = self._probe_refused(
            f"Another approved tenant ({OTHER.tenant_id}) names the prison's gallery '{GALLERY}'",
            OTHER,
            self._probe_bytes(),
        )
        summary["burst"] = self._burst()
        self._audit()
        summary["seconds"] = round(time.monotonic() - start, 1)
        photos, snapshots = self._bucket_left()
        self.say(
            f"\nDone in {summary['seconds']} s. No photo left in the probe bucket: {not photos} "
            f"(gallery snapshots, encrypted templates under each tenant's prefix: {snapshots})."
        )
        return summary

    # --- steps --------------------------------------------------------------------------------------

    def _operators(self) -> tuple[list[str], list[str]]:
        self.say("1. The operator decides two applications (Cedar policies; reasons are machine-readable).")
        reg = self.service.registry
        reg.register(PRISON.tenant_id, name="HMP Northfield", sector="corrections", country="GB", jurisdiction="GB-ENG")
        reg.register(OTHER.tenant_id, name="Riverside Lab", sector="private", country="GB", jurisdiction="GB-ENG")
        reg.register("capital-city", name="Capital City", sector="government", country="GB", jurisdiction="GB-LND")
        until = datetime.now(UTC) + timedelta(days=365)
        granted = self.service.approve_use_case(
            OPERATOR, PRISON.tenant_id, use_case="access_control", deployment="closed_facility", expires_at=until
        )
        self.service.approve_use_case(
            OPERATOR, OTHER.tenant_id, use_case="access_control", deployment="closed_facility", expires_at=until
        )
        self.say(
            f"   APPROVED  {PRISON.tenant_id}: access control in a closed facility (policy {granted.policy_version})"
        )
        try:
            self.service.approve_use_case(
                OPERATOR,
                "capital-city",
                use_case="access_control",
                deployment="camera_network",
                expires_at=until,
                source_kind="stream",
            )
            refused: list[str] = []
            self.say("   capital-city: APPROVED (unexpected)")
        except PolicyDeniedError as exc:
            refused = [r.code for r in exc.decision.reasons]  # type: ignore[attr-defined]
            self.say("   REFUSED   capital-city: identification over a city camera network")
            for reason in exc.decision.reasons:  # type: ignore[attr-defined]
                self.say(f"             - {reason.code}: {reason.message}")
        # The operator acts for each tenant through that tenant's session, as any request does.
        with tenant_scope(PRISON.tenant_id):
            self.service.create_gallery(PRISON, GALLERY, name="Staff and residents", use_case="access_control")
        with tenant_scope(OTHER.tenant_id):
            self.service.create_gallery(OTHER, "lab-staff", name="Lab staff", use_case="access_control")
        self.service.registry.set_quota(PRISON.tenant_id, "access_control", "search", per_minute=5, per_day=2000)
        return list(granted.obligations), refused

    def _enrol(self) -> tuple[int, int]:
        people = datasets.johns()
        first = next(iter(people))
        self.say(
            f"\n2. {PRISON.tenant_id} enrols {len(people)} consenting people through the Enrol workflow "
            f"({first} from {FUSED} photos, each detected, re-checked and embedded, then fused)."
        )
        runs: list[tuple[str, str]] = []
        for subject, paths in people.items():
            with tenant_scope(PRISON.tenant_id):
                consent = self.service.record_consent(
                    PRISON,
                    subject_id=subject,
                    purpose="access_control",
                    evidence=f"signed release of {subject}".encode(),
                    expires_at=datetime.now(UTC) + timedelta(days=365),
                )
            photos = [_png(path) for path in paths[: FUSED if subject == first else 1]]
            arn = self.cloud.start_enrolment(PRISON, GALLERY, subject, consent.consent_id, photos)
            runs.append((subject, arn))
        enrolled, fused = 0, 0
        for subject, arn in runs:
            run = self.cloud.wait_for(arn)
            ok = run.status == "SUCCEEDED" and run.output and run.output.get("status") == "enrolled"
            enrolled += bool(ok)
            references = int(((run.output or {}).get("template") or {}).get("references", 0))
            fused = max(fused, references)
            self.say(f"   {subject:>12}: {_path(run.path)}  [{run.output.get('status') if run.output else run.status}]")
            if references > 1:
                self.say(f"   {'':>12}  the template fuses {references} references (one per photo)")
        self.say(f"   {enrolled} templates stored (photos deleted; each template carries its consent id and expiry).")
        return enrolled, fused

    def _probe_bytes(self) -> bytes:
        people = datasets.johns()
        _, paths = next(iter(people.items()))
        return _png(paths[3])

    def _crowd(self) -> bytes:
        return (datasets.fetch_dlib() / "examples" / "faces" / "bald_guys.jpg").read_bytes()

    def _upload_and_run(self, ctx: TenantContext, gallery: str, data: bytes) -> tuple[ObjectRef, Execution]:
        ref = self.cloud.put_probe(
            ctx.tenant_id, gallery, data, operation="search", purpose=PURPOSE, actor=ctx.actor, top_k="3"
        )
        return ref, self.cloud.wait_for(self.cloud.execution_for(ref))

    def _recognize(self) -> dict[str, Any]:
        subject = next(iter(datasets.johns()))
        self.say(f"\n3. A checkpoint photo of {subject} (none of the enrolment photos) is uploaded to S3.")
        ref, run = self._upload_and_run(PRISON, GALLERY, self._probe_bytes())
        self.say(f"   S3 'Object Created' -> EventBridge rule -> Recognize execution {run.arn.rsplit(':', 1)[-1]}")
        self.say(f"   path: {' -> '.join(run.path)}")
        out = run.output or {}
        result = out.get("result") or {}
        for c in result.get("candidates", []):
            self.say(f"   candidate: {c['subject_id']} (cosine {c['score']:.3f}, threshold {result['threshold']})")
        self.say(
            f"   {result.get('gallery_size')} people searched; expected false candidates at this threshold: "
            f"{result.get('expected_false_candidates', 0):.4f}"
        )
        self.say(f"   review: {out.get('review_state')} (two people must confirm before the gate opens)")
        self.say(f"   the probe photo still in S3: {self.cloud.object_exists(ref)}")
        return {"path": run.path, "review_state": out.get("review_state"), "candidates": result.get("candidates", [])}

    def _probe_refused(self, title: str, ctx: TenantContext, data: bytes) -> dict[str, Any]:
        self.say(f"\n{self._n()}. {title}.")
        ref, run = self._upload_and_run(ctx, GALLERY, data)
        out = run.output or {}
        self.say(f"   path: {' -> '.join(run.path)}")
        self.say(f"   REFUSED: {_reasons(out.get('reasons', []))}")
        for r in out.get("reasons", []):
            self.say(f"     - {r['message']}")
        return {
            "path": run.path,
            "codes": [r["code"] for r in out.get("reasons", [])],
            "probe_left": self.cloud.object_exists(ref),
        }

    _step = 3

    def _n(self) -> int:
        self._step += 1
        return self._step

    def _burst(self) -> dict[str, Any]:
        self.say(
            f"\n{self._n()}. A burst of {BURST} searches in a few seconds (this tenant's quota: 5 a minute; "
            "every attempt counts, refused ones too)."
        )
        data = self._probe_bytes()
        refs = [
            self.cloud.put_probe(
                PRISON.tenant_id, GALLERY, data, operation="search", purpose=PURPOSE, actor=PRISON.actor
            )
            for _ in range(BURST)
        ]
        outcomes = [self.cloud.wait_for(self.cloud.execution_for(r)).output or {} for r in refs]
        allowed = sum(1 for o in outcomes if o.get("status") == "completed")
        refused = [o for o in outcomes if o.get("status") == "refused"]
        codes = sorted({r["code"] for o in refused for r in o.get("reasons", [])})
        self.say(f"   {allowed} ran, {len(refused)} refused before any image was read: {', '.join(codes)}")
        return {"allowed": allowed, "refused": len(refused), "codes": codes}

    def _audit(self) -> None:
        with tenant_scope(PRISON.tenant_id):
            entries = self.service.audit.entries(PRISON)
            report = self.service.audit.verify(PRISON)
        self.say(
            f"\n{self._n()}. The prison's audit trail: {len(entries)} entries, hash-chained, "
            f"verified up to seq {report.head_seq}:"
        )
        keys = ("gallery_id", "subject_id", "request_id", "review_state", "matched")
        for e in entries:
            detail: dict[str, Any] = {k: v for k, v in e.details.items() if k in keys}
            decision = e.details.get("decision")
            if isinstance(decision, dict) and not decision.get("allowed", True):
                detail["reasons"] = [r["code"] for r in decision.get("reasons", [])]
            self.say(f"   #{e.seq:<3} {e.action:<22} {detail}")

    def _bucket_left(self) -> tuple[list[str], int]:
        """The photos (any object but a gallery snapshot) left under ``tenants/``, and how many snapshots."""
        listed = self.cloud.client("s3").list_object_versions(Bucket=self.cloud.bucket, Prefix="tenants/")
        keys = [v["Key"] for v in listed.get("Versions", [])]
        snapshots = [k for k in keys if k.split("/")[2:3] == ["snapshots"]]
        return [k for k in keys if k not in snapshots], len(snapshots)


def run_cloud_demo() -> int:
    with LocalCloud(log_level="WARNING") as cloud:  # the functions' INFO lines would drown the story
        summary = Demo(cloud).run()
    ok = (
        summary["enrolled"] == 5
        and summary["fused_references"] == FUSED
        and summary["recognize"]["review_state"] == "pending"
        and "request.crowd_probe" in summary["crowd"]["codes"]
        and summary["cross_tenant"]["codes"] == ["request.gallery_not_found"]
        and "request.rate_limited" in summary["burst"]["codes"]
        and summary["refusal"]
    )
    return 0 if ok else 1
