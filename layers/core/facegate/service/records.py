"""What the service's operations return, and the small rules they share (limits of one transaction,
the declared purpose's shape)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, TypeVar

from facegate.errors import (
    InvalidRequestError,
)
from facegate.match import GalleryTemplate, PhotoSearchResult, SearchResult, VerifyResult
from facegate.policy import Decision
from facegate.policy.gate import FACES_STAGE, REQUEST_STAGE
from facegate.store.repositories import (
    StoredTemplate,
)

if TYPE_CHECKING:  # the vision stack (onnxruntime, OpenCV) stays out of the non-vision functions
    from facegate.vision.pipeline import FaceAnalysis


MatchResult = VerifyResult | SearchResult | PhotoSearchResult
"""A match's answer: 1:1, a search of the subject, or (photo organisation) a search of every face."""

DEFAULT_RETENTION: Final = timedelta(days=3 * 365)
REQUEST_RETENTION: Final = timedelta(days=90)
HUMAN_REVIEW: Final = "human_review_before_action"
TWO_PERSON: Final = "two_person_confirmation"
REVIEW_ATTEMPTS: Final = 5
ERASURE_ROUNDS: Final = 3
"""Rounds of read, delete and re-read: a round fails only if something vanished meanwhile."""
TEMPLATES_PER_TRANSACTION: Final = 45
"""Two writes per template (the delete and its gallery's count, at worst one gallery each)."""
MAX_DECLARED: Final = 256
REQUEST: Final = REQUEST_STAGE
FACES: Final = FACES_STAGE
"""The two stages of a decision: before detection, and re-checked on the faces detected."""


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class EnrolResult:
    template_id: str
    gallery_id: str
    subject_id: str
    expires_at: datetime
    model_version: str
    decision: Decision
    references: int = 1
    """Photos fused into the template."""


@dataclass(frozen=True)
class MatchOutcome:
    """A verify or search result as the tenant sees it: the decision, the result, what must follow."""

    request_id: str
    decision: Decision
    result: MatchResult
    review_state: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "decision": self.decision.to_dict(),
            "result": self.result.to_dict(),
            "review_state": self.review_state,
        }


@dataclass(frozen=True)
class ErasureReceipt:
    """What an erasure deleted, what remains and where (the tenant keeps it as its proof)."""

    subject_id: str
    templates_deleted: int
    consents_revoked: int
    audit_seq: int
    at: datetime
    template_ids: tuple[str, ...] = ()
    consent_ids: tuple[str, ...] = ()
    request_ids: tuple[str, ...] = ()
    """Request rows whose result named the subject, now redacted (id, scores and template ids)."""
    templates_remaining: int = 0
    remaining: tuple[dict[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject_id": self.subject_id,
            "templates_deleted": self.templates_deleted,
            "consents_revoked": self.consents_revoked,
            "requests_redacted": len(self.request_ids),
            "template_ids": list(self.template_ids),
            "consent_ids": list(self.consent_ids),
            "request_ids": list(self.request_ids),
            "templates_remaining": self.templates_remaining,
            "remaining": [dict(r) for r in self.remaining],
            "audit_seq": self.audit_seq,
            "at": self.at.isoformat(),
        }


T = TypeVar("T")


def chunks(items: Sequence[T], size: int = 90) -> list[list[T]]:
    """Pieces that fit one transaction beside an audit entry and its head (DynamoDB allows 100)."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def declared(text: str | None, what: str) -> str | None:
    """A declared purpose or case reference as it is stored and audited: bounded, printable, one line."""
    if text is None:
        return None
    value = text.strip()
    if len(value) > MAX_DECLARED or not value.isprintable():
        raise InvalidRequestError(f"the {what} is at most {MAX_DECLARED} printable characters on one line")
    return value or None


def reference(t: StoredTemplate, offset: float = 0.0) -> GalleryTemplate:
    return GalleryTemplate(template_id=t.template_id, subject_id=t.subject_id, embedding=t.embedding, offset=offset)


def no_match(result: MatchResult) -> bool:
    return not result.matched if isinstance(result, VerifyResult) else result.no_match


def denial_text(decision: Decision) -> str:
    return "Refused: " + "; ".join(f"{r.code} ({r.message})" for r in decision.reasons)


def require_quality(analysis: FaceAnalysis) -> None:
    """The capture-quality bars (``facegate.vision.quality``) on the subject's face of a photo."""
    if analysis.quality is not None:
        from facegate.vision.quality import require

        require(analysis.quality)
