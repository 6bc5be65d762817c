"""Human review of a match: distinct reviewers, each counted once, as a conditional append."""

from __future__ import annotations

from typing import TYPE_CHECKING

from facegate.audit import JSON
from facegate.errors import (
    ConflictError,
    StorageError,
    WriteConditionError,
)
from facegate.policy import Operation
from facegate.store.repositories import (
    RequestRow,
)
from facegate.tenancy import TenantContext

if TYPE_CHECKING:  # the vision stack (onnxruntime, OpenCV) stays out of the non-vision functions
    pass

from facegate.service.base import ServiceBase
from facegate.service.records import (
    REVIEW_ATTEMPTS,
    TWO_PERSON,
)


class Reviews(ServiceBase):
    def review(self, ctx: TenantContext, request_id: str, *, confirm: bool) -> RequestRow:
        """A reviewer confirms or rejects a match; two distinct people when the decision obliges it.

        The review and its audit entry commit together, as a conditional list append: two reviewers
        confirming at the same moment both count (the second re-reads and appends after the first),
        and nobody counts twice."""
        for _ in range(REVIEW_ATTEMPTS):
            row = self.requests.get(ctx, request_id)
            if row is None or row.review_state != "pending":
                raise ConflictError("the request is not awaiting review")
            if ctx.actor in row.reviewers:
                raise ConflictError("each reviewer counts once (two-person confirmation)")
            # Through the gate: a suspended tenant or an expired approval confirms nothing, and the
            # person who asked for the identification is never one of its reviewers.
            self._decide(
                ctx,
                Operation.REVIEW,
                str(row.decision.get("use_case", "unknown")),
                reviewer_is_requester=row.requested_by == ctx.actor,
            )
            needed = 2 if TWO_PERSON in row.decision.get("obligations", []) else 1
            state, write = self.requests.review_write(ctx, row, reviewer=ctx.actor, confirm=confirm, needed=needed)
            details: dict[str, JSON] = {
                "request_id": request_id,
                "confirm": confirm,
                "state": state,
                "reviewers": len(row.reviewers) + 1,
            }
            try:
                self.audit.append(ctx, "review.recorded", details, writes=[write])
            except WriteConditionError:
                continue  # another reviewer got there first: re-read and count after them
            updated = self.requests.get(ctx, request_id)
            if updated is None:
                raise StorageError("the reviewed request vanished")
            return updated
        raise ConflictError("the review lost every race to concurrent reviews; try again")
