"""The events a tenant subscribes to: every request's end, on the stack's result bus (``ResultBus``).

Finish publishes one event when a request ends, whichever way it ended and whoever started it (the
API's one call, an asynchronous submission, a tenant system's S3 upload, a bulk manifest):

* ``source``: ``facegate``
* ``detail-type``: ``Request Completed``, ``Request Refused`` or ``Request Failed``
* ``detail`` (schema version ``1``): ``version``, ``tenant_id``, ``request_id``, ``operation``
  (``verify``, ``search``, ``enrol``, ``bulk_enrol``, ``independent_test``), ``status`` (``completed``,
  ``refused``, ``failed``), ``gallery_id`` (or null), ``review_state`` (``pending`` when a person must
  confirm a match first, ``not_required``, or null), ``reason_codes`` (the gate's or the failure's codes;
  empty when completed).

Ids and codes only: never an image, a template, a score, a candidate or a subject id. A subscriber reads
the result through the API (``GET /requests/{id}``), as that tenant, so an event names nothing its
reader could not already ask for. Delivery is EventBridge's: at least once (a retried Finish may publish
again; ``request_id`` is the key to deduplicate on). A publication that fails after botocore's retries
is logged at ERROR with the ids and counted (``EventsUnpublished``, alarmed in the template): the request
itself is recorded either way, so a lost event never loses a result.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any, Final

SOURCE: Final = "facegate"
SCHEMA_VERSION: Final = "1"
BUS_VARIABLE: Final = "FACEGATE_RESULT_BUS"
DETAIL_TYPES: Final = {
    "completed": "Request Completed",
    "refused": "Request Refused",
    "failed": "Request Failed",
}


def request_event(
    *,
    bus: str,
    tenant_id: str,
    request_id: str,
    operation: str,
    status: str,
    gallery_id: str | None,
    review_state: str | None = None,
    reason_codes: Sequence[str] = (),
) -> dict[str, Any]:
    """The ``PutEvents`` entry for one request's end."""
    if status not in DETAIL_TYPES:
        raise ValueError(f"a request ends completed, refused or failed, not {status!r}")
    detail = {
        "version": SCHEMA_VERSION,
        "tenant_id": tenant_id,
        "request_id": request_id,
        "operation": operation,
        "status": status,
        "gallery_id": gallery_id,
        "review_state": review_state,
        "reason_codes": list(reason_codes),
    }
    return {"EventBusName": bus, "Source": SOURCE, "DetailType": DETAIL_TYPES[status], "Detail": json.dumps(detail)}


def publish(client_of: Callable[[], Any], **event: Any) -> bool:
    """Publish one request's end on ``FACEGATE_RESULT_BUS`` (no bus named: nothing to publish, as in
    unit tests). ``False`` when EventBridge refused it after botocore's retries (logged and counted)."""
    bus = os.environ.get(BUS_VARIABLE)
    if not bus:
        return False
    entry = request_event(bus=bus, **event)
    from botocore.exceptions import BotoCoreError, ClientError

    from facegate import observability

    try:
        answer = client_of().put_events(Entries=[entry])
        failed = int(answer.get("FailedEntryCount", 0))
        error = str((answer.get("Entries") or [{}])[0].get("ErrorCode", "")) if failed else ""
    except (BotoCoreError, ClientError) as exc:
        failed, error = 1, type(exc).__name__
    except Exception as exc:
        failed, error = 1, f"unexpected {type(exc).__name__}"
    if failed:
        observability.event_unpublished(
            tenant=event["tenant_id"], request_id=event["request_id"], status=event["status"], error=error
        )
        return False
    return True
