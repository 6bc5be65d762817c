"""What the gallery cache and snapshot tests share: a movable clock, padded registry faces, tenants approved
for access control, enrolment and search helpers, and a count of every template read from the table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facegate.service import FaceService
from facegate.store.repositories import Templates
from facegate.tenancy import TenantContext
from facegate.vision import FaceAnalysis, FacePipeline, decode_image
from facegate.vision.decode import cv2

START = (datetime.now(UTC) + timedelta(minutes=30)).replace(second=0, microsecond=0)
OPERATOR = "operator@facegate"


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now


def padded_faces(pipeline: FacePipeline, johns: dict[str, list[Path]]) -> dict[str, list[FaceAnalysis]]:
    """Three photos of each of three people, padded so the detector sees the whole face."""

    def padded(p: Path) -> FaceAnalysis:
        image = cv2.copyMakeBorder(decode_image(p.read_bytes()), 75, 75, 75, 75, cv2.BORDER_CONSTANT)
        return pipeline.analyse_image(np.asarray(image))

    return {n: [padded(p) for p in johns[n][:3]] for n in sorted(johns)[:3]}


def approve_prisons(service: FaceService, *tenants: TenantContext) -> FaceService:
    for ctx in tenants:
        service.registry.register(
            ctx.tenant_id, name=ctx.tenant_id, sector="corrections", country="GB", jurisdiction="GB"
        )
        service.approve_use_case(OPERATOR, ctx.tenant_id, use_case="access_control", deployment="closed_facility",
                                 expires_at=START + timedelta(days=365))  # fmt: skip
    return service


def enrol(service: FaceService, ctx: TenantContext, faces: dict[str, list[FaceAnalysis]], days: int = 200,
          gallery: str = "residents") -> dict[str, str]:  # fmt: skip
    """Each person enrolled from their first photo under a consent of ``days``; their consent ids."""
    if service.galleries.find(ctx, gallery) is None:
        service.create_gallery(ctx, gallery, name=gallery, use_case="access_control")
    consents = {}
    for name, analyses in faces.items():
        consent = service.record_consent(ctx, subject_id=name, purpose="access_control", evidence=b"signed",
                                         expires_at=START + timedelta(days=days))  # fmt: skip
        service.enrol(ctx, gallery, subject_id=name, consent_id=consent.consent_id, analysis=analyses[0])
        consents[name] = consent.consent_id
    return consents


def found(service: FaceService, ctx: TenantContext, probe: FaceAnalysis, gallery: str = "residents") -> list[str]:
    result: Any = service.search(ctx, gallery, analysis=probe, top_k=5, purpose="entry").result
    return [c.subject_id for c in result.candidates]


def count_template_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every read of a gallery's templates from the table, by gallery id."""
    seen: list[str] = []
    real = Templates.in_gallery

    def counted(self: Templates, ctx: TenantContext, gallery_id: str, **kw: Any) -> Any:
        seen.append(gallery_id)
        return real(self, ctx, gallery_id, **kw)

    monkeypatch.setattr(Templates, "in_gallery", counted)
    return seen
