"""Security signals the domain raises outside a handler's own metric: one place, ids only.

Never pass an embedding, a face crop, an image or a score here: these lines and metrics outlive the
templates they describe. Each signal is a structured log line (``facegate.security`` logger) and a
CloudWatch metric in embedded metric format, so an alarm can watch it without parsing text.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Final

from aws_lambda_powertools.metrics import MetricUnit, single_metric

NAMESPACE: Final = "facegate"
FOREIGN_ITEM: Final = "ForeignItemDropped"
DISCARDED_UPLOAD: Final = "UploadDiscarded"

logger = logging.getLogger("facegate.security")
counts: Counter[str] = Counter()
"""Signals raised in this process (tests read it; a Lambda container's copy dies with it)."""


def foreign_item(*, caller: str, partition: str, template_id: str) -> None:
    """An item read for ``caller`` (through an index, which IAM does not confine) is not the caller's:
    it was dropped. Logged with the ids alone, and counted as a metric."""
    counts[FOREIGN_ITEM] += 1
    logger.warning(
        "dropped an item that is not the caller's",
        extra={"signal": FOREIGN_ITEM, "caller": caller, "partition": partition, "template_id": template_id},
    )
    with single_metric(name=FOREIGN_ITEM, unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="tenant", value=caller)


def discarded_upload(*, key: str, reason: str, deleted: bool) -> None:
    """An object under ``tenants/`` that names no valid tenant: it cannot be recorded under anyone, so
    it is deleted (``deleted``) and counted, never left behind silently."""
    counts[DISCARDED_UPLOAD] += 1
    logger.warning(
        "discarded an upload that names no valid tenant",
        extra={"signal": DISCARDED_UPLOAD, "key": key, "reason": reason, "deleted": deleted},
    )
    with single_metric(name=DISCARDED_UPLOAD, unit=MetricUnit.Count, value=1, namespace=NAMESPACE):
        pass
