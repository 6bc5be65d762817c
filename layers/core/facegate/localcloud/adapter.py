"""Where moto 5.2.5 falls short of AWS for this application, and nothing else.

Each gap is closed here, in one place, by wrapping one moto method; ``tests/unit/localcloud`` runs
moto without this module and fails loudly when an upgrade changes what it does, so the adapter can
shrink as moto grows. The gaps (RESEARCH.md lists what was seen):

1. **Lambda**: without Docker, moto's Lambda echoes the payload instead of running the function.
   Here ``Invoke`` runs the function's real handler in-process (imported from the function's code
   with the function's environment), and an exception becomes Lambda's ``Unhandled`` function error
   with ``errorType``/``errorMessage``, the shape Step Functions' Retry and Catch match on. Faults can
   be injected (``Lambda.ServiceException`` and friends) to test the workflows' Retry.
2. **EventBridge → Step Functions**: moto's rules never deliver to a state machine target (the
   attempt raises and is swallowed). Here a matching rule starts an execution of the target state
   machine with the event as input, with a unique execution name (moto names it ``None`` otherwise).
3. **Batch from Step Functions**: ``batch:submitJob.sync`` fails on parameter casing in moto's
   interpreter, and moto's Batch cannot run a container without Docker. Here the job is submitted
   to moto's Batch (so the queue and job definition must exist), then the job definition's command
   runs in-process through a registered entrypoint, and its outcome is the job's status.
4. **S3 bucket policies**: moto evaluates a bucket policy's statements without their ``Condition``,
   so the template's TLS-only ``Deny`` (``aws:SecureTransport`` false) denies every request. Here the
   condition is evaluated: requests to the local cloud count as TLS (boto3 speaks HTTPS to AWS's
   endpoints, which in-process moto intercepts). Any other condition key is refused loudly.
5. **DynamoDB atomicity**: moto applies a TransactWriteItems as check-then-write on shared dicts with
   no lock (and rolls a failed one back by restoring a copy that erases other threads' writes), so
   concurrent executions corrupt each other's transactions. DynamoDB runs each request atomically;
   here each moto DynamoDB request holds one lock, which gives moto that property.
"""

from __future__ import annotations

import json
import threading
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

MOTO_VERSION: Final = "5.2.5"
LAMBDA_SERVICE_ERRORS: Final = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)

Handler = Callable[[dict[str, Any], Any], Any]
BatchEntrypoint = Callable[[list[str], dict[str, str]], int]


@dataclass
class LambdaContext:
    """The context object Lambda passes to a handler (what Powertools reads from it)."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    timeout_ms: int = 30_000

    def get_remaining_time_in_millis(self) -> int:
        return self.timeout_ms


@dataclass
class LocalFunction:
    name: str
    arn: str
    handler: Handler
    memory_mb: int
    timeout_s: int


@dataclass
class Invocation:
    function: str
    payload: Any
    error: str | None = None


class Adapter:
    """The registry the patched moto methods consult; one per local cloud."""

    def __init__(self) -> None:
        self.functions: dict[str, LocalFunction] = {}
        self.batch_entrypoints: dict[str, BatchEntrypoint] = {}
        self.invocations: list[Invocation] = []
        self.faults: dict[str, list[str]] = {}
        self.executions_started: list[str] = []
        self._lock = threading.Lock()
        self._batch_outcomes: dict[str, tuple[str, str]] = {}

    # --- Lambda -----------------------------------------------------------------------------------

    def register_function(self, fn: LocalFunction) -> None:
        self.functions[fn.name] = fn
        self.functions[fn.arn] = fn

    def inject_fault(self, function_name: str, error: str = "Lambda.ServiceException", times: int = 1) -> None:
        """The next ``times`` invocations of the function fail as the Lambda service would."""
        with self._lock:
            self.faults.setdefault(function_name, []).extend([error] * times)

    def invoke(self, function_name: str, body: Any, response_headers: dict[str, str]) -> bytes:
        fn = self.functions.get(function_name) or self.functions.get(function_name.split(":")[-1])
        if fn is None:
            raise KeyError(f"no local handler for Lambda function {function_name}")
        payload = json.loads(body) if body else {}
        with self._lock:
            pending = self.faults.get(fn.name)
            fault = pending.pop(0) if pending else None
        if fault is not None:
            self.invocations.append(Invocation(fn.name, payload, fault))
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": fault, "errorMessage": f"injected fault: {fault}"}).encode()
        context = LambdaContext(fn.name, fn.memory_mb, fn.arn, timeout_ms=fn.timeout_s * 1000)
        try:
            result = fn.handler(payload, context)
        except Exception as exc:
            self.invocations.append(Invocation(fn.name, payload, type(exc).__name__))
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(
                {
                    "errorType": type(exc).__name__,
                    "errorMessage": str(exc),
                    "stackTrace": traceback.format_exception(exc)[-3:],
                }
            ).encode()
        self.invocations.append(Invocation(fn.name, payload))
        return json.dumps(result).encode()

    def invoked(self, function_name: str) -> list[Invocation]:
        return [i for i in self.invocations if i.function == function_name]

    # --- Batch ------------------------------------------------------------------------------------

    def run_batch_job(self, job_id: str, command: list[str], environment: dict[str, str]) -> None:
        """Run the job definition's command through the entrypoint registered for its program: the
        first word (``reindex``) or, for ``python -m module``, those three words."""
        words = 3 if command[:2] == ["python", "-m"] else 1
        entry = self.batch_entrypoints.get(" ".join(command[:words]))
        if entry is None:
            self._batch_outcomes[job_id] = ("FAILED", f"no local entrypoint for command {command!r}")
            return
        try:
            code = entry(command[words:], environment)
        except Exception as exc:
            self._batch_outcomes[job_id] = ("FAILED", f"{type(exc).__name__}: {exc}")
            return
        self._batch_outcomes[job_id] = ("SUCCEEDED", "") if code == 0 else ("FAILED", f"exit code {code}")

    def batch_outcome(self, job_id: str) -> tuple[str, str] | None:
        return self._batch_outcomes.get(job_id)


_active: Adapter | None = None
_DYNAMODB_LOCK: Final = threading.Lock()
_installed = False


def activate(adapter: Adapter) -> None:
    """Point the patched moto methods at ``adapter`` (patching once per process)."""
    global _active
    _check_moto()
    _install()
    _active = adapter


def deactivate() -> None:
    global _active
    _active = None


def _check_moto() -> None:
    import moto

    if moto.__version__ != MOTO_VERSION:
        raise RuntimeError(
            f"the local cloud's adapter is written against moto {MOTO_VERSION}, found {moto.__version__}: "
            "re-run tests/unit/localcloud/test_moto_gaps.py and update the adapter"
        )


def _install() -> None:
    global _installed
    if _installed:
        return
    from moto.awslambda_simple.models import LambdaSimpleBackend
    from moto.events.models import Rule
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_batch as sfn_batch,
    )

    original_invoke = LambdaSimpleBackend.invoke

    def invoke(
        self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
    ) -> Any:
        if _active is None:
            return original_invoke(self, function_name, qualifier, body, headers, response_headers)
        return _active.invoke(function_name, body, response_headers)

    original_send = Rule.send_to_targets

    def send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
        if _active is None or not self.event_pattern.matches_event(original_event):
            return original_send(self, original_event, transform_input)
        others = [t for t in self.targets if ":states:" not in t["Arn"]]
        for target in self.targets:
            if ":states:" in target["Arn"]:
                _start_execution(target["Arn"], original_event)
        if others:
            saved = self.targets
            self.targets = others
            try:
                original_send(self, original_event, transform_input)
            finally:
                self.targets = saved
        return None

    batch_task = sfn_batch.StateTaskServiceBatch
    original_eval = batch_task._eval_service_task
    original_sync = batch_task._build_sync_resolver

    # moto calls these with keyword arguments: the parameter names are moto's.
    def eval_batch(self: Any, env: Any, resource_runtime_part: Any, **kwargs: Any) -> Any:
        if _active is None:
            return original_eval(self, env=env, resource_runtime_part=resource_runtime_part, **kwargs)
        return _submit_batch(self, env, resource_runtime_part, kwargs["normalised_parameters"])

    def build_sync_resolver(self: Any, env: Any, resource_runtime_part: Any, **kwargs: Any) -> Any:
        if _active is None:
            return original_sync(self, env=env, resource_runtime_part=resource_runtime_part, **kwargs)
        return _batch_resolver(self, env)

    from moto.s3.models import FakeBucket

    original_permission = FakeBucket.get_permission

    def get_permission(self: Any, action: str, resource: str) -> Any:
        if _active is None or self.policy is None:
            return original_permission(self, action, resource)
        document = json.loads(self.policy)
        statements = document.get("Statement", [])
        applicable = [s for s in (statements if isinstance(statements, list) else [statements]) if _condition_holds(s)]
        saved = self.policy
        self.policy = json.dumps({**document, "Statement": [_unconditional(s) for s in applicable]}).encode()
        try:
            return original_permission(self, action, resource)
        finally:
            self.policy = saved

    from moto.dynamodb.responses import DynamoHandler

    original_call = DynamoHandler.call_action

    def call_action(self: Any) -> Any:
        if _active is None:
            return original_call(self)
        with _DYNAMODB_LOCK:
            return original_call(self)

    DynamoHandler.call_action = call_action  # type: ignore[method-assign]
    FakeBucket.get_permission = get_permission  # type: ignore[method-assign]
    LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
    Rule.send_to_targets = send_to_targets  # type: ignore[method-assign]
    batch_task._eval_service_task = eval_batch  # type: ignore[method-assign,assignment]
    batch_task._build_sync_resolver = build_sync_resolver  # type: ignore[method-assign,assignment]
    _installed = True


LOCAL_CONDITION_KEYS: Final = {"aws:SecureTransport": "true"}


def _condition_holds(statement: dict[str, Any]) -> bool:
    """A bucket policy statement's Condition, for the keys a local request has values for."""
    for operator, tests in statement.get("Condition", {}).items():
        if operator != "Bool":
            raise NotImplementedError(f"the local cloud cannot evaluate bucket policy condition {operator}")
        for key, expected in tests.items():
            if key not in LOCAL_CONDITION_KEYS:
                raise NotImplementedError(f"the local cloud cannot evaluate bucket policy condition key {key}")
            values = expected if isinstance(expected, list) else [expected]
            if LOCAL_CONDITION_KEYS[key] not in [str(v).lower() for v in values]:
                return False
    return True


def _unconditional(statement: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in statement.items() if k != "Condition"}


def _start_execution(state_machine_arn: str, event: dict[str, Any]) -> None:
    import boto3

    region = state_machine_arn.split(":")[3]
    detail = event.get("detail") or {}
    obj = detail.get("object") or {}
    stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in str(obj.get("key", "event")).split("/")[-1])[:40]
    name = f"{stem}-{uuid.uuid4().hex[:12]}"  # unique: a duplicated event is a second execution, as in AWS
    arn = boto3.client("stepfunctions", region_name=region).start_execution(
        stateMachineArn=state_machine_arn, name=name, input=json.dumps(event, default=str)
    )["executionArn"]
    if _active is not None:
        _active.executions_started.append(arn)


def camel_keys(value: Any) -> Any:
    """CloudFormation and ASL spell Batch's parameters in PascalCase; the Batch API (boto3) in camelCase."""
    if isinstance(value, dict):
        return {k[:1].lower() + k[1:]: camel_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [camel_keys(v) for v in value]
    return value


def _submit_batch(task: Any, env: Any, part: Any, params: dict[str, Any]) -> None:
    import boto3

    if _active is None:
        raise RuntimeError("the local cloud is not active")
    batch = boto3.client("batch", region_name=part.region)
    request: dict[str, Any] = camel_keys(params)
    job_id = batch.submit_job(**request)["jobId"]
    definition = batch.describe_job_definitions(jobDefinitions=[request["jobDefinition"]])["jobDefinitions"]
    if not definition:
        raise RuntimeError(f"no job definition {request['jobDefinition']}")
    container = definition[0].get("containerProperties", {})
    parameters = {**definition[0].get("parameters", {}), **request.get("parameters", {})}
    command = [_substitute(arg, parameters) for arg in container.get("command", [])]
    environment = {e["name"]: e["value"] for e in container.get("environment", [])}
    overrides = request.get("containerOverrides", {})
    environment.update({e["name"]: e["value"] for e in overrides.get("environment", [])})
    _active.run_batch_job(job_id, command, environment)
    env.stack.append({"JobId": job_id, "JobName": request.get("jobName")})


def _substitute(arg: str, parameters: dict[str, str]) -> str:
    """Batch's ``Ref::name`` placeholders in a job definition's command."""
    if arg.startswith("Ref::"):
        return parameters.get(arg[5:], arg)
    return arg


def _batch_resolver(task: Any, env: Any) -> Callable[[], dict[str, Any] | None]:
    from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    submitted: dict[str, Any] = env.stack.pop()
    job_id = submitted["JobId"]

    def resolve() -> dict[str, Any] | None:
        outcome = _active.batch_outcome(job_id) if _active is not None else None
        if outcome is None:
            return None
        status, reason = outcome
        job = {"JobId": job_id, "JobName": submitted.get("JobName"), "Status": status, "StatusReason": reason}
        if status == "SUCCEEDED":
            return job
        raise FailureEventException(
            FailureEvent(
                env=env,
                error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                event_type=HistoryEventType.TaskFailed,
                event_details=EventDetails(  # type: ignore[typeddict-item]
                    taskFailedEventDetails=TaskFailedEventDetails(
                        resource=task._get_sfn_resource(),
                        resourceType=task._get_sfn_resource_type(),
                        error=StatesErrorNameType.StatesTaskFailed.to_name(),
                        cause=json.dumps(job),
                    )
                ),
            )
        )

    return resolve
