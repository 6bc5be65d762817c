"""What one recognition costs on AWS, counted on the local cloud and priced at list prices.

Run from the repository root::

    python -m benchmarks.cost [--sizes 100 1000 5000] [--runs N]

Method
------
One local cloud (:class:`facegate.localcloud.cloud.LocalCloud`: moto in-process, the real template, the
real ASL files, the real handlers) holds one prison approved for ``access_control`` and one gallery. For
each gallery size, smallest first, the gallery is filled up to ``size - runs`` people with synthetic
templates (unit-norm random 128-d vectors of the running ``MODEL_VERSION``) through the service itself,
as the operator acting for the prison: ``FaceService.record_consent``, ``FaceService.decide`` (not
counted against the enrolment rate limit) and ``FaceService.store_template``, the method the
StoreTemplate step runs, with its audited transaction. No photo goes through the vision pipeline for
them. Then ``runs`` people are enrolled through the API and the Enrol workflow from a real photo of
dlib's johns (``facegate.datasets.johns()``), which brings the gallery to ``size``, and these paths run,
each ``runs`` times:

- **enrol**: ``POST /consents`` then ``POST /enrolments`` (the SDK), and the Enrol workflow it starts;
- **search, cold**: ``POST /search`` right after the enrolments (once per size): Match's warm copy of the
  gallery is out of date (an enrolment raised its version), so Match reads the whole gallery again;
- **search**: ``POST /search`` again: Match uses its copy after one read of the gallery's row;
- **verify**: ``POST /verify`` against the enrolled person;
- **search, S3**: a probe uploaded as the tenant's system does (``LocalCloud.put_probe``: S3 → the
  "Object Created" event → EventBridge → Recognize), with no API call.

Every probe is a different photo of the person enrolled at that size. Before the first size, one more
enrolment and one run of each recognition path warm every function up (not recorded): a function's first
invocation in its container does one-off work that a warm Lambda has done already. Cold starts are not
measured (see below).

What is counted, and from where
-------------------------------
- **AWS requests**: every request any code in the process sends (moto intercepts boto3/botocore's own
  send), by service and operation, attributed to the Lambda invocation that made it. The benchmark's own
  requests (reading execution histories, polling) are left out.
- **Lambda**: every invocation (the adapter's ``Invoke``), its wall time and its thread's CPU time, priced
  at its function's configured ``MemorySize`` as the local deployer read it from ``template.yaml``. The
  API function's wall time includes waiting for ``StartSyncExecution``: Lambda bills that wait too.
- **DynamoDB**: read and write request units computed from the items each request touched (moto's
  ``ReturnConsumedCapacity`` is not DynamoDB's, so the units are computed here): item sizes by DynamoDB's
  rules (attribute names + values; numbers ~ digits/2 + 1; lists and maps + 3 bytes and 1 per element);
  reads from the stored item (a ``GetItem`` of a missing item still takes the minimum), 1 RRU per 4 KB
  strongly consistent, 0.5 eventually consistent, 2 in ``TransactGetItems``; a ``Query`` by the total
  size of the items it returned, rounded up to 4 KB; writes the larger of the item before and after, 1
  WRU per 1 KB, 2 in ``TransactWriteItems`` (condition checks included), failed conditional writes
  included; each global secondary index whose projection the write changes, 1 WRU per 1 KB of the
  projected item (delete and put when its key changes).
- **S3**: requests by price class (PUT/COPY/POST/LIST, GET/HEAD, DELETE free).
- **EventBridge**: ``PutEvents`` entries (Finish publishes each request's end) and the S3 events the bucket sends to
  EventBridge as moto emits them, Object Created and Object Deleted only (moto also emits Object Tags
  Added for every PutObject, which AWS sends only for PutObjectTagging: listed, not counted).
- **KMS**: the calls the code makes (``GenerateMac``, ``VerifyMac``, ...). Not observable here: the
  envelope encryption calls S3 (SSE-KMS with a bucket key), DynamoDB (table keys cached by DynamoDB) and
  Step Functions (data key reused for 300 s) make on their own; they are amortised across requests and
  counted as zero per recognition (an assumption, printed).
- **Step Functions**: the states entered (execution history, Map iterations' states included) are
  Standard's state transitions; Express is priced per request and by duration (the execution's start to
  stop, rounded up to 100 ms) at the billed memory estimated by the published rule (50 MB + the
  definition + the largest state payload x the Map iterations, in 64 MB chunks).
- **API Gateway**: one REST request per API call on the path.
- **X-Ray** and **CloudWatch Logs**: estimates, not observations: one trace per request at the default
  sampling rule (5% at volume); log bytes the functions wrote here plus Lambda's START/END/REPORT lines
  and one EMF metric line per invocation (sizes assumed, printed).

Durations are priced twice: as measured here, and modelled, with the time each AWS request took on moto
replaced by an assumed typical AWS latency (the figures are printed with the report): at thousands of
items moto's own work (it copies every table a transaction touches) dominates the measured durations.

Prices come from ``benchmarks/prices.json`` (dated list prices, first tier: no free tier, no volume
discount). Latency is the local cloud's: this machine's CPU, moto for every service (in-process, no
network). The DynamoDB share of each state is printed beside it, because at thousands of items moto
measures moto (it copies every table a transaction touches and scans a whole table for an index
query, see ``benchmarks/__init__``). What a real deployment adds is printed from published figures, not
measured.

The gallery build replaces moto's per-transaction deep copy of every table it touches (its rollback)
with no copy while it runs, so that 5,000 enrolments take minutes rather than hours; any failed
transaction aborts the build. Measured runs use moto unchanged.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import platform
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

PRICES_PATH: Final = Path(__file__).with_name("prices.json")
TARGET_PER_1000: Final = 0.03
"""The issue's target: cost per 1,000 searches at the 5,000-person cap, all services."""
TENANT: Final = "hmp-cost"
ACTOR: Final = "officer-1"
GALLERY: Final = "residents"
USE_CASE: Final = "access_control"
PURPOSE: Final = "entry at gate A"
OPERATOR: Final = "operator@facegate"
XRAY_SAMPLED: Final = 0.05
"""The default sampling rule at volume: the first request each second and 5% of the rest."""
LAMBDA_PLATFORM_LOG_BYTES: Final = 330
"""START, END and REPORT lines Lambda writes per invocation (assumed, from their usual length)."""
EMF_LOG_BYTES: Final = 450
"""One Powertools EMF metric line per invocation (disabled in the local cloud; assumed size)."""
MODEL_REQUEST_MS: Final = {
    "dynamodb.GetItem": 5.0,
    "dynamodb.PutItem": 6.0,
    "dynamodb.UpdateItem": 6.0,
    "dynamodb.DeleteItem": 6.0,
    "dynamodb.Query": 6.0,
    "dynamodb.Scan": 6.0,
    "dynamodb.BatchGetItem": 10.0,
    "dynamodb.BatchWriteItem": 12.0,
    "dynamodb.TransactGetItems": 10.0,
    "dynamodb.TransactWriteItems": 15.0,
    "s3.GetObject": 20.0,
    "s3.HeadObject": 15.0,
    "s3.PutObject": 30.0,
    "s3.DeleteObject": 15.0,
    "sts.AssumeRole": 15.0,
    "kms.GenerateMac": 8.0,
    "kms.VerifyMac": 8.0,
    "eventbridge.PutEvents": 15.0,
    "sfn.StartExecution": 20.0,
}
"""The modelled latency of one request in AWS (in-region, warm connection; assumed typical figures, not
measurements): what replaces the time moto took for it when durations are modelled."""
MODEL_DEFAULT_MS: Final = 10.0
MODEL_QUERY_MS_PER_MB: Final = 30.0
"""A Query's or Scan's time per MB it reads, on top of its request time (1 MB pages; assumed)."""
MODEL_TASK_MS: Final = 20.0
"""Step Functions → Lambda → Step Functions per Task state, on top of the function's duration (assumed)."""
PUT_CLASS: Final = frozenset(
    {
        "PutObject",
        "CopyObject",
        "PostObject",
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPartCopy",
        "CompleteMultipartUpload",
        "ListObjects",
        "ListObjectsV2",
        "ListObjectVersions",
        "ListBuckets",
        "ListMultipartUploads",
        "ListParts",
    }
)
FREE_S3: Final = frozenset({"DeleteObject", "DeleteObjects", "AbortMultipartUpload"})
FREE_SERVICES: Final = frozenset({"sts", "cognito-identity-provider", "logs", "iam"})


# --- prices ---------------------------------------------------------------------------------------------


def load_prices(path: Path = PRICES_PATH) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def price(prices: Mapping[str, Any], key: str) -> float:
    return float(prices["prices"][key]["usd"])


def standard_cost(transitions: int, prices: Mapping[str, Any]) -> float:
    """Step Functions Standard: per state transition."""
    return transitions * price(prices, "stepfunctions.standard.state_transition")


def express_billed_memory_mb(memory_mb: float, prices: Mapping[str, Any]) -> int:
    entry = prices["prices"]["stepfunctions.express.duration"]
    step = int(entry["memory_increment_mb"])
    return max(step, math.ceil(memory_mb / step) * step)


def express_memory_estimate_mb(
    definition_bytes: int, payload_bytes: int, map_steps: int, prices: Mapping[str, Any]
) -> float:
    """The published estimate: 50 MB + definition + execution data x Map/Parallel steps (MB = 2**20 B)."""
    base = float(prices["prices"]["stepfunctions.express.duration"]["memory_base_mb"])
    return base + (definition_bytes + payload_bytes * max(1, map_steps)) / 2**20


def express_billed_seconds(duration_s: float, prices: Mapping[str, Any]) -> float:
    step = float(prices["prices"]["stepfunctions.express.duration"]["billing_increment_ms"]) / 1000
    return max(step, math.ceil(round(duration_s / step, 9)) * step)


def express_cost(duration_s: float, memory_mb: float, prices: Mapping[str, Any], *, requests: int = 1) -> float:
    """Step Functions Express: per request plus duration (rounded up to 100 ms) x billed memory (64 MB
    chunks), at the first duration tier."""
    gb = express_billed_memory_mb(memory_mb, prices) / 1024
    seconds = express_billed_seconds(duration_s, prices)
    return requests * price(prices, "stepfunctions.express.request") + seconds * gb * price(
        prices, "stepfunctions.express.duration"
    )


def lambda_cost(memory_mb: int, duration_ms: float, prices: Mapping[str, Any]) -> float:
    """One Lambda invocation (x86): the request plus duration rounded up to 1 ms at the configured memory."""
    billed_s = math.ceil(duration_ms) / 1000
    return price(prices, "lambda.request") + billed_s * memory_mb / 1024 * price(prices, "lambda.duration.x86_64")


def dynamodb_cost(read_units: float, write_units: float, prices: Mapping[str, Any]) -> float:
    return read_units * price(prices, "dynamodb.on_demand.read_request_unit") + write_units * price(
        prices, "dynamodb.on_demand.write_request_unit"
    )


def rekognition_per_1000(prices: Mapping[str, Any]) -> tuple[float, float]:
    """Rekognition's group-1 price per 1,000 images: the first tier and the largest-volume one."""
    tiers = prices["prices"]["rekognition.image_group1"]["tiers"]
    return 1000 * float(tiers[0]["usd_per_image"]), 1000 * float(tiers[-1]["usd_per_image"])


# --- DynamoDB item sizes and request units ----------------------------------------------------------------


def _number_size(text: str) -> int:
    digits = Decimal(text).normalize().as_tuple().digits
    return math.ceil(len(digits) / 2) + 1


def attribute_size(value: Mapping[str, Any]) -> int:
    """The size DynamoDB counts for one attribute value, in its wire form (``{"S": "..."}``)."""
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(str(raw).encode())
    if kind == "N":
        return _number_size(str(raw))
    if kind == "B":
        return len(base64.b64decode(raw)) if isinstance(raw, str) else len(raw)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(s).encode()) for s in raw)
    if kind == "NS":
        return sum(_number_size(str(n)) for n in raw)
    if kind == "BS":
        return sum(len(base64.b64decode(b)) if isinstance(b, str) else len(b) for b in raw)
    if kind == "L":
        return 3 + sum(1 + attribute_size(v) for v in raw)
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + attribute_size(v) for k, v in raw.items())
    raise ValueError(f"unknown DynamoDB attribute type {kind}")


def item_size(item: Mapping[str, Any] | None) -> int:
    """An item's size as DynamoDB counts it: each attribute's name plus its value."""
    if not item:
        return 0
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


def read_units(size: int, *, consistent: bool, transactional: bool = False) -> float:
    units = max(1, math.ceil(size / 4096))
    if transactional:
        return 2.0 * units
    return float(units) if consistent else units / 2


def write_units(size: int, *, transactional: bool = False) -> float:
    units = max(1, math.ceil(size / 1024))
    return 2.0 * units if transactional else float(units)


# --- recording ------------------------------------------------------------------------------------------


@dataclass
class InvocationRecord:
    index: int
    function: str
    memory_mb: int
    started: float
    wall_ms: float = 0.0
    cpu_ms: float = 0.0
    error: str | None = None


@dataclass
class CallRecord:
    service: str
    operation: str
    invocation: int | None
    ms: float
    rru: float = 0.0
    wru: float = 0.0
    count: int = 1
    """Events for EventBridge (entries), else 1."""
    size: int = 0
    """Bytes a Query or Scan read."""
    note: str = ""


@dataclass
class Recording:
    invocations: list[InvocationRecord] = field(default_factory=list)
    calls: list[CallRecord] = field(default_factory=list)
    s3_events: list[str] = field(default_factory=list)
    log_bytes: int = 0
    notes: set[str] = field(default_factory=set)


class CountingStream:
    """``sys.stdout`` for the run: what other threads (the functions' loggers) write is counted and kept
    out of the report (the last lines are kept to show if a run fails); the main thread's passes."""

    def __init__(self, inner: Any, main: int) -> None:
        self.inner = inner
        self.main = main
        self.counted = 0
        self.tail: list[str] = []

    def write(self, text: str) -> int:
        if threading.get_ident() == self.main:
            return int(self.inner.write(text))
        self.counted += len(text.encode())
        self.tail = [*self.tail[-40:], text]
        return len(text)

    def flush(self) -> None:
        self.inner.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Recorder:
    """Patches moto's botocore stubber (every AWS request in the process), the adapter's Lambda invoke and
    moto's S3 → EventBridge notification, and records them into the current :class:`Recording`."""

    def __init__(self, cloud: Any, stream: CountingStream) -> None:
        self.cloud = cloud
        self.stream = stream
        self.main = threading.get_ident()
        self.current: Recording | None = None
        self.count_main = False
        self._local = threading.local()
        self._lock = threading.Lock()
        self._undo: list[Callable[[], None]] = []

    # the current invocation of this thread (a stack: the API's invocation waits while others run)
    def _stack(self) -> list[int]:
        stack: list[int] | None = getattr(self._local, "stack", None)
        if stack is None:
            stack = []
            self._local.stack = stack
        return stack

    def install(self) -> None:
        import moto.s3.notifications as s3_notifications
        from moto.core.botocore_stubber import BotocoreStubber

        recorder = self
        original_call = BotocoreStubber.__call__

        def call(stub: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
            rec = recorder.current
            if rec is None or not stub.enabled or recorder._excluded():
                return original_call(stub, event_name, request, **kwargs)
            _, service, operation = [*event_name.split(".", 2), "", ""][:3]
            body = _json_body(request.body) if service == "dynamodb" else {}
            before = recorder._items_before(operation, body) if service == "dynamodb" else {}
            started = time.perf_counter()
            response = original_call(stub, event_name, request, **kwargs)
            ms = (time.perf_counter() - started) * 1000
            record = CallRecord(service, operation, recorder._invocation(), ms)
            if service == "dynamodb" and response is not None:
                recorder._dynamodb_units(record, operation, body, before, response, rec)
            elif service == "eventbridge" and operation == "PutEvents":
                record.count = len(_json_body(request.body).get("Entries") or [])
            with recorder._lock:
                rec.calls.append(record)
            return response

        BotocoreStubber.__call__ = call  # type: ignore[method-assign]
        self._undo.append(lambda: setattr(BotocoreStubber, "__call__", original_call))

        adapter = self.cloud.adapter
        original_invoke = adapter.invoke

        def invoke(function_name: str, body: Any, response_headers: dict[str, str]) -> bytes:
            rec = recorder.current
            if rec is None:
                result: bytes = original_invoke(function_name, body, response_headers)
                return result
            fn = adapter.functions.get(function_name) or adapter.functions.get(function_name.split(":")[-1])
            with recorder._lock:
                index = len(rec.invocations)
                entry = InvocationRecord(index, fn.name if fn else function_name, fn.memory_mb if fn else 0, 0.0)
                rec.invocations.append(entry)
            stack = recorder._stack()
            stack.append(index)
            cpu, entry.started = time.thread_time(), time.perf_counter()
            try:
                result = original_invoke(function_name, body, response_headers)
            finally:
                entry.wall_ms = (time.perf_counter() - entry.started) * 1000
                entry.cpu_ms = (time.thread_time() - cpu) * 1000
                stack.pop()
            if response_headers.get("x-amz-function-error"):
                entry.error = json.loads(result or b"{}").get("errorType", "error")
            return result

        adapter.invoke = invoke
        self._undo.append(lambda: delattr(adapter, "invoke"))

        original_send = s3_notifications._send_event_bridge_message

        def send(account_id: str, bucket: Any, event_name: str, key: Any) -> None:
            rec = recorder.current
            if rec is not None:
                with recorder._lock:
                    rec.s3_events.append(str(getattr(event_name, "value", event_name)))
            original_send(account_id, bucket, event_name, key)

        s3_notifications._send_event_bridge_message = send
        self._undo.append(lambda: setattr(s3_notifications, "_send_event_bridge_message", original_send))

    def uninstall(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo.clear()

    @contextmanager
    def recording(self) -> Iterator[Recording]:
        rec = Recording()
        start = self.stream.counted
        self.current = rec
        try:
            yield rec
        finally:
            self.current = None
            rec.log_bytes = self.stream.counted - start

    @contextmanager
    def as_tenant_system(self) -> Iterator[None]:
        """This thread's requests count (the tenant system's own upload)."""
        self.count_main = True
        try:
            yield
        finally:
            self.count_main = False

    def _excluded(self) -> bool:
        return threading.get_ident() == self.main and not self.count_main and not self._stack()

    def _invocation(self) -> int | None:
        stack = self._stack()
        return stack[-1] if stack else None

    # --- DynamoDB units -----------------------------------------------------------------------------

    def _table(self, name: str) -> Any:
        from moto.dynamodb.models import dynamodb_backends

        from facegate.localcloud.deploy import ACCOUNT

        try:
            return dynamodb_backends[ACCOUNT]["us-east-1"].get_table(name)
        except Exception:
            return None

    def _stored(self, table_name: str, key: Mapping[str, Any]) -> dict[str, Any] | None:
        from moto.dynamodb.models.dynamo_type import DynamoType

        table = self._table(table_name)
        if table is None:
            return None
        try:
            hash_value = DynamoType(key[table.hash_key_attr])
            range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
            item = table.get_item(hash_value, range_value)
        except Exception:
            return None
        if item is None:
            return None
        attributes: dict[str, Any] = item.to_json()["Attributes"]
        return json.loads(json.dumps(attributes, default=_json_default))

    def _key_of(self, table_name: str, item: Mapping[str, Any]) -> dict[str, Any]:
        table = self._table(table_name)
        if table is None:
            return {}
        names = [table.hash_key_attr, *([table.range_key_attr] if table.range_key_attr else [])]
        return {n: item[n] for n in names if n in item}

    def _write_targets(self, operation: str, body: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
        """(kind, table, key) of every item a write request names."""
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            table = body["TableName"]
            key = self._key_of(table, body["Item"]) if operation == "PutItem" else dict(body.get("Key") or {})
            return [(operation, table, key)]
        if operation == "TransactWriteItems":
            out = []
            for entry in body.get("TransactItems") or []:
                ((kind, spec),) = entry.items()
                table = spec["TableName"]
                key = self._key_of(table, spec["Item"]) if kind == "Put" else dict(spec.get("Key") or {})
                out.append((kind, table, key))
            return out
        if operation == "BatchWriteItem":
            out = []
            for table, requests in (body.get("RequestItems") or {}).items():
                for r in requests:
                    if "PutRequest" in r:
                        out.append(("Put", table, self._key_of(table, r["PutRequest"]["Item"])))
                    else:
                        out.append(("Delete", table, dict(r["DeleteRequest"]["Key"])))
            return out
        return []

    def _items_before(self, operation: str, body: Mapping[str, Any]) -> dict[tuple[str, str], dict[str, Any] | None]:
        return {
            (table, json.dumps(key, sort_keys=True)): self._stored(table, key)
            for _, table, key in self._write_targets(operation, body)
        }

    def _index_write_units(self, table_name: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> float:
        table = self._table(table_name)
        if table is None:
            return 0.0
        units = 0.0
        table_keys = [table.hash_key_attr, *([table.range_key_attr] if table.range_key_attr else [])]
        for index in [*table.global_indexes, *table.indexes]:
            keys = [k["AttributeName"] for k in index.schema]
            projection = (index.projection or {}).get("ProjectionType", "ALL")
            included = set((index.projection or {}).get("NonKeyAttributes") or [])

            def projected(
                item: dict[str, Any] | None, keys: list[str] = keys, p: str = projection, inc: set[str] = included
            ) -> dict[str, Any] | None:
                if item is None or keys[0] not in item:
                    return None
                if p == "ALL":
                    return item
                wanted = {*table_keys, *keys, *(inc if p == "INCLUDE" else set())}
                return {k: v for k, v in item.items() if k in wanted}

            old, new = projected(before), projected(after)
            if old == new:
                continue
            if new is not None:
                units += write_units(item_size(new))
            if old is not None and (new is None or any(old.get(k) != new.get(k) for k in keys)):
                units += write_units(item_size(old))
        return units

    def _dynamodb_units(
        self,
        record: CallRecord,
        operation: str,
        body: Mapping[str, Any],
        before: Mapping[tuple[str, str], dict[str, Any] | None],
        response: Any,
        rec: Recording,
    ) -> None:
        answer = _json_body(response.content) if response.content else {}
        failed = response.status_code >= 400
        consistent = bool(body.get("ConsistentRead"))
        if operation == "GetItem":
            size = item_size(self._stored(body["TableName"], body["Key"]))
            record.rru = read_units(size, consistent=consistent)
            record.note = f"{body['TableName'].split('-', 1)[-1]} {size} B{'' if consistent else ' (eventual)'}"
        elif operation == "BatchGetItem":
            for table, spec in (body.get("RequestItems") or {}).items():
                for key in spec.get("Keys") or []:
                    size = item_size(self._stored(table, key))
                    record.rru += read_units(size, consistent=bool(spec.get("ConsistentRead")))
        elif operation == "TransactGetItems":
            for entry in body.get("TransactItems") or []:
                spec = entry["Get"]
                record.rru += read_units(
                    item_size(self._stored(spec["TableName"], spec["Key"])), consistent=True, transactional=True
                )
        elif operation in ("Query", "Scan"):
            items = answer.get("Items") or []
            size = sum(item_size(i) for i in items)
            scanned, count = int(answer.get("ScannedCount", len(items))), int(answer.get("Count", len(items)))
            if body.get("Select") == "COUNT" or (scanned > count and count == 0):
                rec.notes.add(f"a {operation} returned no items it read ({scanned} scanned): counted at the minimum")
            elif scanned > count:
                size = math.ceil(size * scanned / count)
                rec.notes.add(f"a filtered {operation} was sized from its returned items x scanned/returned")
            record.rru = read_units(size, consistent=consistent)
            record.size = size
            record.note = f"{body.get('TableName', '').split('-', 1)[-1]}: {count} items, {size} B"
        else:
            targets = self._write_targets(operation, body)
            transactional = operation == "TransactWriteItems"
            written = []
            for kind, table, key in targets:
                old = before.get((table, json.dumps(key, sort_keys=True)))
                new = None if failed else self._stored(table, key)
                if failed:  # a refused condition or a cancelled transaction still consumes write units
                    new = old
                size = max(item_size(old), item_size(new))
                units = write_units(size, transactional=transactional)
                index_units = 0.0 if failed else self._index_write_units(table, old, new)
                record.wru += units + index_units
                written.append(f"{kind} {table.split('-', 1)[-1]} {size} B = {units:g}+{index_units:g} WRU")
            record.note = "; ".join(written) + (" (refused: units still consumed)" if targets and failed else "")


def _aws_sends(event_name: str) -> bool:
    """Whether S3 sends this event to EventBridge in AWS: moto also emits "Object Tags Added" for every
    PutObject (it sets the empty tag set), which AWS sends only for PutObjectTagging."""
    return "ObjectCreated" in str(event_name) or "ObjectRemoved" in str(event_name)


def _json_body(raw: Any) -> dict[str, Any]:
    if not raw:
        return {}
    if isinstance(raw, bytes | bytearray):
        raw = raw.decode()
    try:
        value = json.loads(raw)
    except (ValueError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, Decimal | set):
        return str(value) if isinstance(value, Decimal) else sorted(value)
    return str(value)


@contextmanager
def fast_moto_transactions() -> Iterator[None]:
    """moto snapshots (deep-copies) every table a transaction touches, to roll a failed one back. While the
    gallery is built that copy is skipped (a failed transaction then aborts the build: nothing reads the
    half-written state)."""
    import copy

    import moto.dynamodb.models as models
    from moto.dynamodb.models.table import Table

    class _NoTableCopy:
        def __getattr__(self, name: str) -> Any:
            return getattr(copy, name)

        @staticmethod
        def deepcopy(value: Any, memo: Any = None) -> Any:
            return value if isinstance(value, Table) else copy.deepcopy(value, memo)

    saved = models.copy  # type: ignore[attr-defined]
    models.copy = _NoTableCopy()  # type: ignore[attr-defined]
    try:
        yield
    finally:
        models.copy = saved  # type: ignore[attr-defined]


# --- one run of a path ----------------------------------------------------------------------------------


@dataclass
class StateTime:
    name: str
    ms: float


@dataclass
class Run:
    path: str
    size: int
    recording: Recording
    executions: list[str]
    states: list[StateTime]
    transitions: int
    express_s: float
    express_memory_mb: float
    end_to_end_ms: float
    api_requests: int
    outcome: str


@dataclass
class Usage:
    transitions: int = 0
    express_requests: int = 0
    express_s: float = 0.0
    express_memory_mb: float = 64.0
    lambda_requests: int = 0
    lambda_gb_s: float = 0.0
    lambda_cost: float = 0.0
    rru: float = 0.0
    wru: float = 0.0
    s3_put: int = 0
    s3_get: int = 0
    s3_free: int = 0
    custom_events: int = 0
    s3_events: int = 0
    kms: int = 0
    api_requests: int = 0
    xray_traces: float = 0.0
    log_bytes: int = 0
    requests: Counter[str] = field(default_factory=Counter)
    unpriced: Counter[str] = field(default_factory=Counter)


def modelled_request_ms(call: CallRecord) -> float:
    base = MODEL_REQUEST_MS.get(f"{call.service}.{call.operation}", MODEL_DEFAULT_MS)
    return base + MODEL_QUERY_MS_PER_MB * call.size / 2**20


def modelled_durations(run: Run) -> tuple[dict[int, float], float]:
    """Each invocation's duration and the workflow's with every AWS request at its modelled latency: the
    function's own time here (its wall time less the time its requests took on moto) plus the modelled
    time of each request. The workflow is its invocations in sequence plus the Task overhead and its own
    requests (none now: Finish publishes the request's end itself); an API invocation waiting on
    StartSyncExecution waits for it."""
    rec = run.recording
    calls: dict[int | None, list[CallRecord]] = defaultdict(list)
    for call in rec.calls:
        calls[call.invocation].append(call)

    def own(inv: InvocationRecord) -> float:
        return max(0.0, inv.wall_ms - sum(c.ms for c in calls[inv.index]))

    durations: dict[int, float] = {}
    steps = [i for i in rec.invocations if _short(i.function) != "Api"]
    for inv in steps:
        durations[inv.index] = own(inv) + sum(modelled_request_ms(c) for c in calls[inv.index])
    workflow_ms = sum(durations[i.index] + MODEL_TASK_MS for i in steps) + sum(
        modelled_request_ms(c) for c in calls[None] if c.service == "eventbridge"
    )
    for inv in rec.invocations:
        if inv.index in durations:
            continue
        durations[inv.index] = own(inv) + sum(
            workflow_ms + MODEL_REQUEST_MS["sfn.StartExecution"]
            if c.operation == "StartSyncExecution"
            else modelled_request_ms(c)
            for c in calls[inv.index]
        )
    return durations, workflow_ms / 1000 if run.executions else 0.0


def usage_of(run: Run, *, modelled: bool = False) -> Usage:
    """What ``run`` used: durations as measured on the local cloud, or (``modelled``) with every AWS request
    at its modelled latency in AWS (:func:`modelled_durations`)."""
    rec = run.recording
    prices = load_prices()
    u = Usage(transitions=run.transitions, api_requests=run.api_requests)
    u.express_requests = len(run.executions)
    u.express_s = run.express_s
    u.express_memory_mb = run.express_memory_mb
    durations = {i.index: i.wall_ms for i in rec.invocations}
    if modelled:
        durations, u.express_s = modelled_durations(run)
    for inv in rec.invocations:
        ms = durations[inv.index]
        u.lambda_requests += 1
        u.lambda_gb_s += math.ceil(ms) / 1000 * inv.memory_mb / 1024
        u.lambda_cost += lambda_cost(inv.memory_mb, ms, prices)
    for call in rec.calls:
        u.requests[f"{call.service}.{call.operation}"] += 1
        if call.service == "dynamodb":
            u.rru += call.rru
            u.wru += call.wru
        elif call.service == "s3":
            if call.operation in PUT_CLASS:
                u.s3_put += 1
            elif call.operation in FREE_S3:
                u.s3_free += 1
            else:
                u.s3_get += 1
        elif call.service == "eventbridge" and call.operation == "PutEvents":
            u.custom_events += call.count
        elif call.service == "kms":
            u.kms += 1
        elif call.service not in FREE_SERVICES and call.service not in ("lambda", "sfn"):
            u.unpriced[f"{call.service}.{call.operation}"] += 1
    u.s3_events = sum(1 for e in rec.s3_events if _aws_sends(e))
    u.xray_traces = XRAY_SAMPLED
    u.log_bytes = rec.log_bytes + len(rec.invocations) * (LAMBDA_PLATFORM_LOG_BYTES + EMF_LOG_BYTES)
    return u


@dataclass(frozen=True)
class Costs:
    """One recognition's cost by component (USD)."""

    standard: float
    express: float
    lambda_: float
    dynamodb: float
    s3: float
    eventbridge: float
    kms: float
    api: float
    xray: float
    logs: float

    @property
    def common(self) -> float:
        return self.lambda_ + self.dynamodb + self.s3 + self.eventbridge + self.kms + self.api + self.xray + self.logs

    @property
    def total_standard(self) -> float:
        return self.standard + self.common

    @property
    def total_express(self) -> float:
        return self.express + self.common


def costs_of(u: Usage, prices: Mapping[str, Any]) -> Costs:
    return Costs(
        standard=standard_cost(u.transitions, prices),
        express=express_cost(u.express_s, u.express_memory_mb, prices, requests=u.express_requests)
        if u.express_requests
        else 0.0,
        lambda_=u.lambda_cost,
        dynamodb=dynamodb_cost(u.rru, u.wru, prices),
        s3=u.s3_put * price(prices, "s3.standard.put_copy_post_list")
        + u.s3_get * price(prices, "s3.standard.get_and_other"),
        eventbridge=u.custom_events * price(prices, "eventbridge.custom_event")
        + u.s3_events * price(prices, "eventbridge.s3_event"),
        kms=u.kms * price(prices, "kms.request"),
        api=u.api_requests * price(prices, "apigateway.rest.request"),
        xray=u.xray_traces * price(prices, "xray.trace_recorded"),
        logs=u.log_bytes / 1e9 * price(prices, "cloudwatch.logs_ingested"),
    )


# --- the bench ------------------------------------------------------------------------------------------


class Bench:
    def __init__(self, cloud: Any, recorder: Recorder, runs: int) -> None:
        from facegate import datasets
        from facegate.service import FaceService
        from facegate.tenancy import TenantContext

        self.cloud = cloud
        self.recorder = recorder
        self.runs = runs
        self.ctx = TenantContext(tenant_id=TENANT, actor=ACTOR)
        self.service = FaceService()
        self.johns = datasets.johns()
        self.people = sorted(self.johns)
        self.enrolled = 0
        self.synthetic = 0
        self.until = datetime.now(UTC) + timedelta(days=30)
        self.client: Any = None
        self.rng: Any = None

    def setup(self) -> None:
        import numpy as np

        from facegate.sdk import FacegateClient
        from facegate.store.scope import tenant_scope

        url = self.cloud.serve_api()
        self.service.registry.register(TENANT, name="HMP Cost", sector="corrections", country="GB", jurisdiction="GB")
        self.service.approve_use_case(
            OPERATOR, TENANT, use_case=USE_CASE, deployment="closed_facility", expires_at=self.until
        )
        with tenant_scope(TENANT):
            self.service.create_gallery(self.ctx, GALLERY, name="Residents", use_case=USE_CASE)
        self.client = FacegateClient(url, self.cloud.issue_token(TENANT, ACTOR), timeout=300.0)
        self.rng = np.random.default_rng(20261202)

    def fill(self, count: int) -> float:
        """Enrol ``count`` synthetic people through the service (consent, decision, audited store)."""
        import numpy as np

        from facegate.embedding import EMBEDDING_DIM, MODEL_VERSION, Embedding
        from facegate.policy import Operation
        from facegate.store.scope import tenant_scope

        started = time.perf_counter()
        with fast_moto_transactions(), tenant_scope(TENANT):
            for _ in range(count):
                subject = f"syn-{self.synthetic:05d}"
                self.synthetic += 1
                consent = self.service.record_consent(
                    self.ctx, subject_id=subject, purpose=USE_CASE, evidence=b"signed", expires_at=self.until
                )
                decision = self.service.decide(
                    self.ctx,
                    Operation.ENROL,
                    GALLERY,
                    face_count=1,
                    subject_id=subject,
                    consent_id=consent.consent_id,
                    count_attempt=False,
                )
                vector = self.rng.standard_normal(EMBEDDING_DIM).astype(np.float32)
                vector /= np.float32(np.linalg.norm(vector))
                self.service.store_template(
                    self.ctx,
                    GALLERY,
                    subject_id=subject,
                    consent_id=consent.consent_id,
                    embedding=Embedding(vector.astype(np.float32), MODEL_VERSION),
                    decision=decision,
                )
        return time.perf_counter() - started

    def gallery_size(self) -> int:
        from facegate.store.scope import tenant_scope

        with tenant_scope(TENANT):
            gallery = self.service.galleries.find(self.ctx, GALLERY, consistent=True)
        return gallery.template_count if gallery is not None else 0

    def warm_up(self, size: int) -> None:
        """One enrolment (a gallery member from then on) and one run of each recognition path, not recorded:
        every function's first invocation in its container does one-off work (lazy imports, first
        clients, the first gallery copy) that a warm Lambda has done already."""
        _, person, subject = self.enrol(size, -1)
        self.one_call("warm-up", size, "search", self._photo(person, 10), subject)
        self.one_call("warm-up", size, "verify", self._photo(person, 10), subject)
        self.s3_search(size, self._photo(person, 10), subject)

    # --- paths --------------------------------------------------------------------------------------

    def _photo(self, person: str, index: int) -> bytes:
        from facegate.evaluation import johns_chip
        from facegate.vision.decode import cv2

        ok, data = cv2.imencode(".png", johns_chip(self.johns[person][index]))
        assert ok
        return bytes(data.tobytes())

    def _executions(self, output: str) -> set[str]:
        sfn = self.cloud.client("stepfunctions")
        arn = self.cloud.state_machine_arn(output)
        found: set[str] = set()
        for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=arn):
            found.update(e["executionArn"] for e in page["executions"])
        return found

    def enrol(self, size: int, run: int) -> tuple[Run, str, str]:
        person = self.people[self.enrolled % len(self.people)]
        subject = f"e{size}-{run}" if run >= 0 else f"warm-{size}"
        self.enrolled += 1
        before = self._executions("EnrolStateMachineArn")
        started = time.perf_counter()
        with self.recorder.recording() as rec:
            consent = self.client.record_consent(
                subject, purpose=USE_CASE, evidence=b"signed release", expires_at=self.until
            )
            self.client.enrol(GALLERY, subject, consent["consent_id"], self._photo(person, 0))
            new = self._wait_new("EnrolStateMachineArn", before)
            execution = self.cloud.wait_for(new[0], timeout=300)
        end_to_end = (time.perf_counter() - started) * 1000
        outcome = execution.output.get("status", execution.status) if execution.output else execution.status
        return self._run("enrol", size, rec, new, end_to_end, api_requests=2, outcome=str(outcome)), person, subject

    def _wait_new(self, output: str, before: set[str], timeout: float = 30.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = sorted(self._executions(output) - before)
            if new:
                return new
            time.sleep(0.05)
        raise TimeoutError(f"no new execution of {output}")

    def one_call(self, path: str, size: int, operation: str, photo: bytes, subject: str) -> Run:
        before = self._executions("RecognizeStateMachineArn")
        started = time.perf_counter()
        with self.recorder.recording() as rec:
            if operation == "verify":
                answer = self.client.verify(GALLERY, subject, photo, purpose=PURPOSE)
            else:
                answer = self.client.search(GALLERY, photo, purpose=PURPOSE, top_k=3)
        end_to_end = (time.perf_counter() - started) * 1000
        new = sorted(self._executions("RecognizeStateMachineArn") - before)
        return self._run(path, size, rec, new, end_to_end, api_requests=1, outcome=_outcome(answer, subject))

    def s3_search(self, size: int, photo: bytes, subject: str) -> Run:
        started = time.perf_counter()
        with self.recorder.recording() as rec:
            with self.recorder.as_tenant_system():
                ref = self.cloud.put_probe(
                    TENANT, GALLERY, photo, operation="search", purpose=PURPOSE, actor=ACTOR, top_k="3"
                )
            arn = self.cloud.execution_for(ref, timeout=60)
            execution = self.cloud.wait_for(arn, timeout=300)
        end_to_end = (time.perf_counter() - started) * 1000
        return self._run(
            "search, S3",
            size,
            rec,
            [arn],
            end_to_end,
            api_requests=0,
            outcome=_outcome(execution.output or {}, subject),
        )

    def _run(
        self,
        path: str,
        size: int,
        rec: Recording,
        executions: list[str],
        end_to_end: float,
        *,
        api_requests: int,
        outcome: str,
    ) -> Run:
        sfn = self.cloud.client("stepfunctions")
        prices = load_prices()
        states: list[StateTime] = []
        transitions = 0
        express_s = 0.0
        memory = 0.0
        for arn in executions:
            desc = sfn.describe_execution(executionArn=arn)
            express_s += (desc["stopDate"] - desc["startDate"]).total_seconds()
            definition = sfn.describe_state_machine(stateMachineArn=desc["stateMachineArn"])["definition"]
            events = sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
            opened: dict[str, list[datetime]] = defaultdict(list)
            payload = len(desc.get("input") or "")
            maps = 0
            for event in events:
                if "stateEnteredEventDetails" in event:
                    details = event["stateEnteredEventDetails"]
                    transitions += 1
                    opened[details["name"]].append(event["timestamp"])
                    payload = max(payload, len(details.get("input") or ""))
                elif "stateExitedEventDetails" in event:
                    details = event["stateExitedEventDetails"]
                    payload = max(payload, len(details.get("output") or ""))
                    if opened[details["name"]]:
                        entered = opened[details["name"]].pop(0)
                        ms = (event["timestamp"] - entered).total_seconds() * 1000
                        states.append(StateTime(details["name"], ms))
                if event["type"] == "MapIterationStarted":
                    maps += 1
            estimate = express_memory_estimate_mb(len(definition.encode()), payload, maps, prices)
            memory = max(memory, estimate)
        return Run(
            path,
            size,
            rec,
            executions,
            states,
            transitions,
            express_s,
            memory or 64.0,
            end_to_end,
            api_requests,
            outcome,
        )


def _outcome(answer: Mapping[str, Any], subject: str) -> str:
    status = str(answer.get("status", "?"))
    result = answer.get("result") or {}
    if "matched" in result:
        return f"{status}, matched={result['matched']}"
    candidates = [c.get("subject_id") for c in result.get("candidates") or []]
    if candidates:
        return f"{status}, top={'the enrolled person' if candidates[0] == subject else candidates[0]}"
    return status if status != "refused" else f"refused {[r.get('code') for r in result.get('reasons') or []]}"


# --- report ---------------------------------------------------------------------------------------------

VECTOR_FLAGS: Final = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "sve",
)


def machine() -> dict[str, Any]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            if key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    import moto

    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "vector_extensions": [f for f in VECTOR_FLAGS if f in flags],
        "python": platform.python_version(),
        "moto": moto.__version__,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


PATHS: Final = ("search", "search, cold", "verify", "search, S3", "enrol")
REKOGNITION_OPERATION: Final = {
    "search": "SearchFacesByImage",
    "search, cold": "SearchFacesByImage",
    "search, S3": "SearchFacesByImage",
    "verify": "CompareFaces",
    "enrol": "IndexFaces",
}


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _mean_costs(costs: Sequence[Costs]) -> Costs:
    return Costs(*(_mean([getattr(c, f) for c in costs]) for f in Costs.__dataclass_fields__))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def report(runs: list[Run], prices: Mapping[str, Any], info: Mapping[str, Any], build_s: Mapping[int, float]) -> None:
    sizes = sorted({r.size for r in runs})
    by: dict[tuple[str, int], list[Run]] = defaultdict(list)
    for r in runs:
        by[(r.path, r.size)].append(r)
    costs = {k: _mean_costs([costs_of(usage_of(r), prices) for r in v]) for k, v in by.items()}
    modelled = {k: _mean_costs([costs_of(usage_of(r, modelled=True), prices) for r in v]) for k, v in by.items()}
    first, largest = rekognition_per_1000(prices)
    top = max(sizes)
    present = [p for p in PATHS if (p, top) in by]

    print(
        f"\nprices: benchmarks/{PRICES_PATH.name}, {prices['region']} list prices as of {prices['date']} (first tier, "
        "no free tier; re-check them against the sources the file names)"
    )
    print(
        f"machine: {info['cpu']}, {info['cpus']} CPUs, vector extensions: {' '.join(info['vector_extensions'])}; "
        f"Python {info['python']}, moto {info['moto']}; load average at start {info['load_average']}"
    )
    print(
        "gallery build (synthetic people through FaceService, moto's transaction copy skipped): "
        + ", ".join(f"up to {n:,} in {s:.0f} s" for n, s in build_s.items())
    )

    print("\n## Cost per 1,000 recognitions (USD, all services): Standard vs Express orchestration\n")
    print(
        "measured: Lambda and Express durations as the local cloud measured them (moto's time for each request "
        "included: at\n1,000 and 5,000 people mostly moto copying tables); modelled: the same runs with every AWS "
        "request at a typical\nAWS latency instead (the model and its figures are under Assumptions). Everything "
        "else (requests, units, events) is counted.\n"
    )
    rows = []
    for path in PATHS:
        for size in sizes:
            if (path, size) not in costs:
                continue
            c, m = costs[(path, size)], modelled[(path, size)]
            rows.append(
                [
                    path,
                    f"{size:,}",
                    str(len(by[(path, size)])),
                    "; ".join(sorted({r.outcome for r in by[(path, size)]})),
                    f"${1000 * c.total_standard:.4f}",
                    f"${1000 * c.total_express:.4f}",
                    f"${1000 * m.total_standard:.4f}",
                    f"${1000 * m.total_express:.4f}",
                    f"${first:.2f} / ${largest:.2f} ({REKOGNITION_OPERATION[path]})",
                ]
            )
    _table(
        [
            "path",
            "people",
            "runs",
            "outcome",
            "Standard, measured",
            "Express, measured",
            "Standard, modelled",
            "Express, modelled",
            "Rekognition, first / largest tier",
        ],
        rows,
    )
    print()
    for path in ("search", "search, cold", "search, S3"):
        if (path, top) in costs:
            for label, table in (("measured", costs), ("modelled", modelled)):
                value = 1000 * table[(path, top)].total_express
                verdict = "met" if value <= TARGET_PER_1000 else "NOT met"
                print(
                    f"target: {path} at {top:,} people, Express, {label}: ${value:.4f} per 1,000 "
                    f"<= ${TARGET_PER_1000:.2f}: {verdict}"
                )

    print(f"\n## Where it goes: per 1,000 recognitions at {top:,} people (USD)\n")
    fields = [
        ("Standard: state transitions", "standard", costs),
        ("Express: requests + duration, measured", "express", costs),
        ("Express: requests + duration, modelled", "express", modelled),
        ("Lambda, measured", "lambda_", costs),
        ("Lambda, modelled", "lambda_", modelled),
        ("DynamoDB", "dynamodb", costs),
        ("S3", "s3", costs),
        ("EventBridge", "eventbridge", costs),
        ("KMS", "kms", costs),
        ("API Gateway", "api", costs),
        ("X-Ray (estimate)", "xray", costs),
        ("CloudWatch Logs (estimate)", "logs", costs),
        ("total, Standard, measured", "total_standard", costs),
        ("total, Express, measured", "total_express", costs),
        ("total, Standard, modelled", "total_standard", modelled),
        ("total, Express, modelled", "total_express", modelled),
    ]
    _table(
        ["component", *present],
        [[label, *(f"${1000 * getattr(t[(p, top)], name):.5f}" for p in present)] for label, name, t in fields],
    )

    print(f"\n## What one recognition uses at {top:,} people (mean of its runs)\n")
    rows = []
    for p in present:
        us = [usage_of(r) for r in by[(p, top)]]
        ms = [usage_of(r, modelled=True) for r in by[(p, top)]]
        billed = _mean([express_billed_seconds(u.express_s, prices) * u.express_requests for u in us])
        memory = max(express_billed_memory_mb(u.express_memory_mb, prices) for u in us)
        rows.append(
            [
                p,
                f"{_mean([u.transitions for u in us]):.0f}",
                f"{_mean([u.express_s for u in us]):.2f} s ({billed:.1f} s billed) at {memory} MB; "
                f"modelled {_mean([u.express_s for u in ms]):.2f} s",
                f"{_mean([u.lambda_requests for u in us]):.0f}; {_mean([u.lambda_gb_s for u in us]):.3f} GB-s, "
                f"modelled {_mean([u.lambda_gb_s for u in ms]):.3f}",
                f"{_mean([u.rru for u in us]):.1f}",
                f"{_mean([u.wru for u in us]):.1f}",
                f"{_mean([u.s3_put for u in us]):.0f} / {_mean([u.s3_get for u in us]):.0f} / "
                f"{_mean([u.s3_free for u in us]):.0f}",
                f"{_mean([u.custom_events for u in us]):.0f} + {_mean([u.s3_events for u in us]):.0f}",
                f"{_mean([u.kms for u in us]):.0f}",
                f"{_mean([u.api_requests for u in us]):.0f}",
                f"{_mean([u.log_bytes for u in us]) / 1024:.1f}",
            ]
        )
    _table(
        [
            "path",
            "state transitions",
            "Express duration",
            "Lambda invocations; GB-s",
            "RRU",
            "WRU",
            "S3 PUT / GET / DELETE",
            "events: custom + S3",
            "KMS calls",
            "API requests",
            "log KB",
        ],
        rows,
    )

    memory_sizes(by, present, top, prices)

    print(
        f"\n## Requests of one run at {top:,} people (Lambda: wall and thread CPU time; moto runs in the calling "
        "thread, so\nboth include moto's work for the function's requests)\n"
    )
    for p in present:
        run = by[(p, top)][0]
        lambdas = "; ".join(
            f"{_short(i.function)} {i.memory_mb} MB {i.wall_ms:.0f} ms wall / {i.cpu_ms:.0f} ms CPU"
            + (f" ({i.error})" if i.error else "")
            for i in run.recording.invocations
        )
        print(f"- {p}: Lambda: {lambdas}")
        ops: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
        for call in run.recording.calls:
            if call.service == "dynamodb":
                ops[call.operation][0] += 1
                ops[call.operation][1] += call.rru
                ops[call.operation][2] += call.wru
        print(
            "  DynamoDB (count, RRU, WRU): "
            + ", ".join(f"{k} x{int(v[0])} ({v[1]:g}, {v[2]:g})" for k, v in sorted(ops.items()))
        )
        other = Counter(f"{c.service}.{c.operation}" for c in run.recording.calls if c.service != "dynamodb")
        print("  other requests: " + ", ".join(f"{k} x{n}" for k, n in sorted(other.items())))
        events = Counter(run.recording.s3_events)
        if events:
            print(
                "  S3 events to EventBridge: "
                + ", ".join(
                    f"{k} x{n}{'' if _aws_sends(k) else ' (moto only: not counted)'}" for k, n in events.items()
                )
            )
        unpriced = usage_of(run).unpriced
        if unpriced:
            print("  requests of a service not priced here: " + ", ".join(f"{k} x{n}" for k, n in unpriced.items()))
        for note in sorted(run.recording.notes):
            print(f"  note: {note}")

    print(
        "\n## End-to-end latency on the local cloud (ms, mean of runs; in brackets the workflow's own duration; "
        "then the workflow\nwith AWS requests at modelled latency)\n"
    )
    rows = []
    for p in PATHS:
        cells = [p]
        for s in sizes:
            rs = by.get((p, s), [])
            e2e, wf = _mean([r.end_to_end_ms for r in rs]), 1000 * _mean([r.express_s for r in rs])
            wm = 1000 * _mean([modelled_durations(r)[1] for r in rs])
            cells.append(f"{e2e:.0f} ({wf:.0f}); modelled workflow {wm:.0f}" if rs else "")
        rows.append(cells)
    _table(["path", *(f"{s:,} people" for s in sizes)], rows)

    print(
        "\n## Per state (ms on the local cloud; in brackets the part spent in DynamoDB requests, on moto; then the "
        "Task state\nwith AWS requests at modelled latency and the Task overhead)\n"
    )
    for p in PATHS:
        if not any((p, s) in by for s in sizes):
            continue
        names: list[str] = []
        for s in sizes:
            for r in by.get((p, s), []):
                names.extend(st.name for st in r.states if st.name not in names)
        rows = []
        for name in names:
            cells = [name]
            for s in sizes:
                rs = by.get((p, s), [])
                times = [st.ms for r in rs for st in r.states if st.name == name]
                dyn = [_dynamodb_ms_of_state(r, name) for r in rs]
                mod = [m for r in rs if (m := _modelled_ms_of_state(r, name)) is not None]
                cell = f"{_mean(times):.0f}" + (f" ({_mean(dyn):.0f})" if any(dyn) else "")
                cell += f"; modelled {_mean(mod):.0f}" if mod else ""
                cells.append(cell if times else "")
            rows.append(cells)
        print(f"{p}:\n")
        _table(["state", *(f"{s:,} people" for s in sizes)], rows)
        print()

    print(REAL_DEPLOYMENT)
    print()
    model = ", ".join(f"{k.split('.', 1)[1]} {v:g} ms" for k, v in MODEL_REQUEST_MS.items())
    print(
        ASSUMPTIONS.format(
            xray=int(XRAY_SAMPLED * 100),
            platform=LAMBDA_PLATFORM_LOG_BYTES,
            emf=EMF_LOG_BYTES,
            model=model,
            per_mb=MODEL_QUERY_MS_PER_MB,
            default=MODEL_DEFAULT_MS,
            task=MODEL_TASK_MS,
        )
    )


STATE_FUNCTION: Final = {
    "PolicyCheck": "PolicyCheck",
    "FaceCheck": "PolicyCheck",
    "Detect": "Detect",
    "Embed": "Embed",
    "Match": "Match",
    "Finish": "Finish",
    "RecordRefusal": "Finish",
    "RecordFailure": "Finish",
    "StoreTemplate": "StoreTemplate",
}


MEMORY_SIZES: Final = (256, 512, 1024, 1769, 2048, 3008)
LATENCY_BUDGET_MS: Final = 50.0
"""How much slower than at a full vCPU a function may run for a smaller bill (per state)."""
FULL_VCPU_MB: Final = 1769
"""Lambda allocates CPU in proportion to memory: one full vCPU at 1,769 MB (AWS's documentation)."""
MEMORY_FLOORS: Final = {
    "Detect": (1024, "a 40-megapixel photo decodes to 120 MB and the detector's input pyramid beside it"),
    "Embed": (1024, "the photo decoded again, SFace's session (about 220 MiB peak with its imports)"),
    **{
        name: (
            1024,
            "a cold start: the import (1.0-1.3 s at a full vCPU here, make bench-coldstart) takes 1,769 / MB "
            "times as long, so 3.5-4.5 s at 512 MB, and a one-call verify that meets it waits for it",
        )
        for name in ("PolicyCheck", "Match", "StoreTemplate", "Finish", "Api")
    },
}
"""What each function must have whatever the cost model says, with the reason."""


def duration_at(own_ms: float, wait_ms: float, memory_mb: int) -> float:
    """An invocation at ``memory_mb``: its own (CPU) time slowed below a full vCPU, its waits unchanged."""
    return own_ms * max(1.0, FULL_VCPU_MB / memory_mb) + wait_ms


def memory_sizes(
    by: Mapping[tuple[str, int], list[Run]], present: list[str], top: int, prices: Mapping[str, Any]
) -> None:
    """Each function's cost x duration at the memory sizes Lambda offers, from its modelled run: its own
    time (wall less its requests' time on moto, measured here on a full core) scales with the CPU share,
    the modelled request latencies do not."""
    samples: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for p in present:
        for run in by[(p, top)]:
            calls: dict[int | None, list[CallRecord]] = defaultdict(list)
            for call in run.recording.calls:
                calls[call.invocation].append(call)
            durations, _ = modelled_durations(run)
            for inv in run.recording.invocations:
                own = max(0.0, inv.wall_ms - sum(c.ms for c in calls[inv.index]))
                samples[_short(inv.function)].append((own, max(0.0, durations[inv.index] - own), inv.memory_mb))
    print(f"\n## Memory size per function: cost and duration per invocation at {top:,} people (modelled)\n")
    print(
        "Own time scales as 1,769 MB / memory below a full vCPU (single-threaded), waits do not; the choice is\n"
        f"the cheapest size at most {LATENCY_BUDGET_MS:.0f} ms slower than at a full vCPU, never below the function's\n"
        "floor (a one-call verify waits for every state in turn: the budget bounds what the sizes add to it).\n"
    )
    rows = []
    for name, values in sorted(samples.items()):
        own = _mean([v[0] for v in values])
        wait = _mean([v[1] for v in values])
        configured = values[0][2]
        cells = []
        options = []
        for memory in MEMORY_SIZES:
            ms = duration_at(own, wait, memory)
            cost = lambda_cost(memory, ms, prices) * 1000
            options.append((memory, ms, cost))
            cells.append(f"{ms:.0f} ms ${cost:.4f}")
        floor, _why = MEMORY_FLOORS.get(name, (256, ""))
        full = duration_at(own, wait, FULL_VCPU_MB)
        fitting = [o for o in options if o[0] >= floor and o[1] <= full + LATENCY_BUDGET_MS]
        chosen = min(fitting, key=lambda o: (round(o[2], 6), o[1]))[0] if fitting else FULL_VCPU_MB
        rows.append([name, f"{own:.0f} / {wait:.0f}", *cells, f"{chosen} (now {configured})"])
    _table(
        ["function", "own / wait ms", *(f"{m} MB (per 1,000)" for m in MEMORY_SIZES), "chosen MB"],
        rows,
    )
    for name, (floor, why) in MEMORY_FLOORS.items():
        print(f"- {name} at least {floor} MB: {why}.")


def _short(function: str) -> str:
    for name in ("PolicyCheck", "Detect", "Embed", "Match", "StoreTemplate", "Finish", "Api"):
        if name in function:
            return name
    return function


def _invocation_of_state(run: Run, state: str) -> int | None:
    """The invocation a Task state ran (by position when one function runs in two states of the path)."""
    function = STATE_FUNCTION.get(state)
    if function is None:
        return None
    invocations = [i.index for i in run.recording.invocations if _short(i.function) == function]
    states = [s.name for s in run.states if STATE_FUNCTION.get(s.name) == function]
    position = states.index(state) if state in states else len(invocations)
    return invocations[position] if position < len(invocations) else None


def _dynamodb_ms_of_state(run: Run, state: str) -> float:
    index = _invocation_of_state(run, state)
    if index is None:
        return 0.0
    return sum(c.ms for c in run.recording.calls if c.service == "dynamodb" and c.invocation == index)


def _modelled_ms_of_state(run: Run, state: str) -> float | None:
    index = _invocation_of_state(run, state)
    if index is None:
        return None
    return modelled_durations(run)[0][index] + MODEL_TASK_MS


REAL_DEPLOYMENT: Final = """## What a real deployment adds (published figures, not measured here)

- Every request here is an in-process call to moto: no network. In AWS each DynamoDB, S3, KMS and STS
  request is a network round trip (DynamoDB: single-digit milliseconds per request; S3 GET of a small
  object: tens of milliseconds), and each Task state adds the Step Functions → Lambda invoke round trip
  (typically tens of milliseconds).
- The S3 path waits for delivery: S3 → EventBridge → StartExecution is asynchronous. EventBridge's
  delivery to a target is typically sub-second (about half a second is the figure AWS quotes for its
  typical latency); S3 documents its event notifications as typically delivered in seconds, sometimes a
  minute or longer.
- Lambda cold starts: every invocation here is warm (the handlers were imported at deployment). A cold
  Python zip function with this core layer (116.5 MiB unzipped) takes hundreds of milliseconds to start
  (Python runtimes are published in the low hundreds of ms for small packages; more for large ones),
  and Detect and Embed are 381 MiB container images: image functions start in about a second or more
  (lazy-loaded images), plus the model load and first inference (about 430 ms on this project's own cold
  start measurement, make bench-speed). Since 2025-08-01 Lambda bills the INIT phase as duration too.
- API Gateway REST adds its own overhead (typically tens of milliseconds) to the one-call paths, and
  Cognito's authorizer a cached token check; API Gateway's 29 s integration limit bounds a one-call run.
- CPU: Lambda gives CPU in proportion to memory (1,769 MB = one vCPU): the 1,024 MB functions get about
  0.58 vCPU, so CPU-bound work there takes up to about 1.7x this machine's single-thread time, and
  costs as much more (the Lambda column scales with it)."""

ASSUMPTIONS: Final = """## Assumptions (what the local cloud cannot observe)

- Prices: list prices of the first tier (no free tier, no volume discount, no savings plan); entries of
  prices.json marked "sure": false are uncertain (S3 events to EventBridge are priced as $1.00/M opt-in
  data events; if they are free, subtract the S3 events' share).
- Lambda duration, measured: this machine's wall time of the warm handler, billed per 1 ms at MemorySize;
  it includes moto's time for every request, which at 1,000 and 5,000 people is mostly moto copying the
  tables a transaction touches (hundreds of ms to seconds per transaction), not anything AWS would bill.
- Lambda and Express durations, modelled: each function's own time here (its wall time less its requests'
  time on moto) plus, per request, an assumed typical in-region AWS latency ({model}; Query and Scan also
  {per_mb:g} ms per MB read; any other request {default:g} ms), plus {task:g} ms per Task state (Step
  Functions → Lambda and back); the workflow is its Task states in sequence (Finish's PutEvents of the
  request's end included), and the one-call API function's StartSyncExecution waits for all of it. Neither figure
  scales the CPU: Lambda at 1,024 MB runs on about 0.58 vCPU (above), and cold starts (INIT, billed since
  2025-08-01) are not priced.
- Express memory: the published estimate (50 MB + definition + payload x Map iterations), billed in 64 MB
  chunks; Express duration is the execution's start to stop here, rounded up to 100 ms.
- Standard for the one-call paths is hypothetical: StartSyncExecution exists for Express only (a Standard
  workflow would need the API to poll). The Standard column prices the same states as transitions.
- KMS: only calls the code makes are counted. Envelope encryption by S3 (SSE-KMS with a bucket key),
  DynamoDB (customer managed key, table keys cached) and Step Functions (data key reused 300 s) is
  amortised over many requests and counted as zero per recognition; at low volume each caller's first
  request in a 5-minute window adds a Decrypt or GenerateDataKey ($0.000003 each).
- DynamoDB: units computed from item sizes by DynamoDB's published rules, not read from DynamoDB.
  ConditionCheck items in a transaction are counted as 2 WRU per KB like the writes (unsure), GSI writes
  at 1 WRU per KB of the projected item (standard, not doubled, in transactions), a Query by the items it
  returned. Storage, point-in-time recovery and backups are monthly, not per request.
- Search cost depends on Match's warm copy of the gallery: "search" is a warm function whose copy is at
  the gallery's version (one strongly consistent read of the gallery row); "search, cold" is the first
  search after a change of the gallery (any enrolment, erasure, withdrawal) or on a new Lambda instance,
  which reads every template. A deployment's figure lies between, by how often searches meet a fresh
  instance or a changed gallery.
- X-Ray: one trace per recognition, {xray}% sampled (the default rule at volume); at low volume more is
  sampled (the first request each second). CloudWatch Logs: what the functions logged here at INFO, plus
  {platform} B of START/END/REPORT lines and {emf} B of EMF metric per invocation (assumed sizes); the EMF
  metrics themselves are custom metrics billed per metric-month, not per request.
- Not counted: data transfer (in-region, free to Lambda and S3), Cognito (billed per monthly active user,
  not per token check), CloudWatch metrics and alarms, S3 storage (probes live seconds; a day at most),
  the Express workflows' own log delivery (level ERROR, no execution data: nothing on success), KMS key
  months ($1 each), and the tenant's polling of GET /requests on the S3 path (results go to the event
  bus)."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="runs of each path per size (default 1). Each run enrols one of the five johns; past five enrolments a "
        "person is enrolled again under another subject id, and a verify of that person may then be refused as "
        "an enumeration pattern (the outcome column says so)",
    )
    args = parser.parse_args(argv)
    sizes = sorted(set(args.sizes))
    if args.runs < 1 or sizes[0] <= args.runs:
        parser.error("every size must exceed --runs (the runs are enrolled through the workflow)")

    from facegate.localcloud.cloud import LocalCloud
    from facegate.policy.catalog import default_catalog

    cap = default_catalog().use_cases[USE_CASE].max_gallery_size
    if sizes[-1] > cap:
        parser.error(f"{USE_CASE} galleries hold at most {cap:,} people")

    prices = load_prices()
    info = machine()
    stream = CountingStream(sys.stdout, threading.get_ident())
    sys.stdout = stream
    runs: list[Run] = []
    build_s: dict[int, float] = {}
    try:
        print("starting the local cloud (moto, the real template, ASL and handlers)...", flush=True)
        with LocalCloud(stack_name="fgcost") as cloud:
            recorder = Recorder(cloud, stream)
            recorder.install()
            try:
                bench = Bench(cloud, recorder, args.runs)
                bench.setup()
                for size in sizes:
                    missing = size - args.runs - bench.gallery_size()
                    build_s[size] = bench.fill(max(0, missing - (1 if size == sizes[0] else 0)))
                    if size == sizes[0]:
                        bench.warm_up(size)
                    print(
                        f"gallery at {bench.gallery_size():,} synthetic + enrolled people "
                        f"({build_s[size]:.0f} s); running the paths...",
                        flush=True,
                    )
                    enrolled: list[tuple[str, str]] = []
                    for i in range(args.runs):
                        run, person, subject = bench.enrol(size, i)
                        runs.append(run)
                        enrolled.append((person, subject))
                    person, subject = enrolled[0]
                    assert bench.gallery_size() == size, bench.gallery_size()
                    runs.append(bench.one_call("search, cold", size, "search", bench._photo(person, 4), subject))
                    for i in range(args.runs):
                        p, s = enrolled[i]
                        runs.append(bench.one_call("search", size, "search", bench._photo(p, 4 + i % 5), s))
                        runs.append(bench.one_call("verify", size, "verify", bench._photo(p, 3), s))
                        runs.append(bench.s3_search(size, bench._photo(p, 9 - i % 5), s))
                    for r in runs:
                        if r.size == size:
                            print(f"  {r.path}: {r.outcome}, {r.end_to_end_ms:.0f} ms", flush=True)
            finally:
                recorder.uninstall()
    except BaseException:
        sys.stdout = stream.inner
        print("".join(stream.tail[-40:]), file=sys.stderr)
        raise
    sys.stdout = stream.inner
    report(runs, prices, info, build_s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
