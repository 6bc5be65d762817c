"""What the service says about itself: decisions, outcomes and security signals, one place, ids only.

Never pass an embedding, a face crop, an image, a score or a subject's result here: these lines and
metrics outlive the templates they describe. Each is a structured log line (the ``facegate.*`` loggers:
inside a Lambda handler they are children of Powertools' JSON ``Logger``, so every line is one JSON
object with the function's context) and a CloudWatch metric in embedded metric format, with bounded
dimensions (operation, use case, outcome, reason code: closed vocabularies, never a tenant's free text),
so an alarm can watch it without parsing text.

* ``decision``: every policy decision, allowed or refused (``facegate.decisions``, INFO), with the
  request id, tenant, use case, operation, stage, policy version and reason codes; metrics
  ``Decisions`` (operation, use_case, outcome) and, for a refusal, ``Refusals`` (operation, reason).
* ``outcome``: how each request ended (``facegate.requests``: INFO when completed, WARNING when refused
  or failed, with the reason codes); metric ``RequestOutcomes`` (operation, status, reason).
* ``foreign_item``, ``discarded_upload``, ``audit_chain_broken``: security signals (``facegate.security``,
  WARNING or ERROR), each its own metric, each watched by an alarm in the template.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Final

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

NAMESPACE: Final = "facegate"
FOREIGN_ITEM: Final = "ForeignItemDropped"
DISCARDED_UPLOAD: Final = "UploadDiscarded"

AUDIT_BROKEN: Final = "AuditChainBroken"
DECISIONS: Final = "Decisions"
REFUSALS: Final = "Refusals"
OUTCOMES: Final = "RequestOutcomes"
UNPUBLISHED: Final = "EventsUnpublished"

logger = logging.getLogger("facegate.security")
decisions = logging.getLogger("facegate.decisions")
requests = logging.getLogger("facegate.requests")
counts: Counter[str] = Counter()
"""Signals raised in this process (tests read it; a Lambda container's copy dies with it)."""


def _metric(name: str, **dimensions: str) -> None:
    """One count in embedded metric format, unless metrics are off (``POWERTOOLS_METRICS_DISABLED``, as
    the local cloud sets: Powertools' ``single_metric`` prints regardless)."""
    if is_metrics_disabled():
        return
    with single_metric(name=name, unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
        for key, value in dimensions.items():
            metric.add_dimension(name=key, value=value)


def foreign_item(*, caller: str, partition: str, template_id: str) -> None:
    """An item read for ``caller`` (through an index, which IAM does not confine) is not the caller's:
    it was dropped. Logged with the ids alone, and counted as a metric."""
    counts[FOREIGN_ITEM] += 1
    logger.warning(
        "dropped an item that is not the caller's",
        extra={"signal": FOREIGN_ITEM, "caller": caller, "partition": partition, "template_id": template_id},
    )
    _metric(FOREIGN_ITEM, tenant=caller)


def discarded_upload(*, key: str, reason: str, deleted: bool) -> None:
    """An object under ``tenants/`` that names no valid tenant: it cannot be recorded under anyone, so
    it is deleted (``deleted``) and counted, never left behind silently."""
    counts[DISCARDED_UPLOAD] += 1
    logger.warning(
        "discarded an upload that names no valid tenant",
        extra={"signal": DISCARDED_UPLOAD, "key": key, "reason": reason, "deleted": deleted},
    )
    _metric(DISCARDED_UPLOAD)


def audit_chain_broken(*, tenant: str, kind: str, seq: int | None) -> None:
    """A tenant's audit log failed verification (``kind``: ``broken``, ``truncated``, ``altered``): the
    one thing that must never happen, so it is an ERROR line and a metric an alarm pages on."""
    counts[AUDIT_BROKEN] += 1
    logger.error(
        "the audit log failed verification",
        extra={"signal": AUDIT_BROKEN, "tenant": tenant, "kind": kind, "seq": seq},
    )
    _metric(AUDIT_BROKEN)  # the service dimension alone: AuditChainBrokenAlarm watches this exact series


def event_unpublished(*, tenant: str, request_id: str, status: str, error: str) -> None:
    """A request's end could not be published on the result bus (the request is recorded regardless):
    ERROR with the ids, and a metric the template alarms on."""
    counts[UNPUBLISHED] += 1
    logger.error(
        "a request's event was not published",
        extra={"signal": UNPUBLISHED, "tenant": tenant, "request_id": request_id, "status": status, "error": error},
    )
    _metric(UNPUBLISHED)  # the service dimension alone: EventsUnpublishedAlarm watches this exact series


def decision(
    *,
    request_id: str | None,
    tenant: str,
    operation: str,
    use_case: str,
    stage: str,
    allowed: bool,
    reason_codes: list[str],
    policy_version: str,
    gallery_id: str | None,
) -> None:
    """One policy decision, allowed or refused: a structured line and its metrics."""
    outcome = "allowed" if allowed else "refused"
    counts[f"{DECISIONS}:{outcome}"] += 1
    decisions.info(
        f"{operation} {outcome}",
        extra={
            "event": "decision",
            "request_id": request_id,
            "tenant": tenant,
            "operation": operation,
            "use_case": use_case,
            "stage": stage,
            "outcome": outcome,
            "reason_codes": reason_codes,
            "policy_version": policy_version,
            "gallery_id": gallery_id,
        },
    )
    _metric(DECISIONS, operation=operation, use_case=use_case, outcome=outcome)
    if not allowed:
        for code in reason_codes:
            _metric(REFUSALS, operation=operation, reason=code)


def outcome(
    *, request_id: str, tenant: str, operation: str, status: str, reason_codes: list[str], gallery_id: str | None
) -> None:
    """How a request ended (``completed``, ``refused``, ``failed``): a structured line and a metric."""
    counts[f"{OUTCOMES}:{status}"] += 1
    level = logging.INFO if status == "completed" else logging.WARNING
    requests.log(
        level,
        f"{operation} {status}",
        extra={
            "event": "outcome",
            "request_id": request_id,
            "tenant": tenant,
            "operation": operation,
            "status": status,
            "reason_codes": reason_codes,
            "gallery_id": gallery_id,
        },
    )
    _metric(OUTCOMES, operation=operation, status=status, **({"reason": reason_codes[0]} if reason_codes else {}))
