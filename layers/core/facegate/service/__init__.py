"""The domain service: every operation goes through the policy gate, then the repositories.

No path reaches a gallery without a decision: each public method computes the stateful facts (the
tenant's approvals, the rate counters, the face count, the consent), asks the gate, records the
decision in the tenant's audit log, and only then reads or writes templates. Handlers, the SDK and the
local cloud call this class; they never call the repositories directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from facegate.service.enrolment import Enrolment
from facegate.service.erasure import Erasure
from facegate.service.management import Management
from facegate.service.matching import Matching
from facegate.service.operators import Operators
from facegate.service.records import (
    DEFAULT_RETENTION,
    FACES,
    HUMAN_REVIEW,
    REQUEST,
    REQUEST_RETENTION,
    TWO_PERSON,
    EnrolResult,
    ErasureReceipt,
    MatchOutcome,
    declared,
    utc_now,
)
from facegate.service.review import Reviews
from facegate.service.sandbox import IndependentTesting


@dataclass
class FaceService(Operators, Enrolment, Matching, Reviews, Erasure, Management, IndependentTesting):
    """The domain service: operators' approvals, enrolment, matching, review, erasure, a tenant's
    management of what it holds and independent testing, each in its own module over one
    :class:`~facegate.service.base.ServiceBase` (the gate, repositories, audit)."""


__all__ = [
    "DEFAULT_RETENTION",
    "FACES",
    "HUMAN_REVIEW",
    "REQUEST",
    "REQUEST_RETENTION",
    "TWO_PERSON",
    "EnrolResult",
    "ErasureReceipt",
    "FaceService",
    "MatchOutcome",
    "declared",
    "utc_now",
]
