"""Where moto 5.2.5 falls short of AWS for this application, and nothing else.

Each gap is closed here, in one place, by wrapping one moto method; ``tests/unit/localcloud`` runs
moto without this module and fails loudly when an upgrade changes what it does, so the adapter can
shrink as moto grows. The gaps (RESEARCH.md lists what was seen):

1. **Lambda**: without Docker, moto's Lambda echoes the payload instead of running the function.
   Here ``Invoke`` runs the function's real handler in-process, inside the function's container
   (:mod:`facegate.localcloud.runtime`: exactly its environment and its own SDK session, at import
   and at every invocation), and an exception becomes Lambda's ``Unhandled`` function error with
   ``errorType``/``errorMessage``, the shape Step Functions' Retry and Catch match on. Faults can be
   injected (``Lambda.ServiceException`` and friends) to test the workflows' Retry. An ``Event``
   (asynchronous) invocation runs on a thread of its own and is answered 202 at once, as Lambda queues it.
2. **EventBridge → Step Functions**: moto's rules never deliver to a state machine target (the
   attempt raises and is swallowed). Here a matching rule starts an execution of the target state
   machine with the event as input, with a unique execution name (moto names it ``None`` otherwise).
3. **Batch from Step Functions**: ``batch:submitJob.sync`` fails on parameter casing in moto's
   interpreter, and moto's Batch cannot run a container without Docker. Here the job is submitted
   to moto's Batch (so the queue and job definition must exist), then the job definition's command
   runs in-process through a registered entrypoint, and its outcome is the job's status.
4. **S3 bucket policies**: moto evaluates a bucket policy's statements without their ``Condition``
   (and without their ``Principal``), so the template's TLS-only ``Deny`` (``aws:SecureTransport``
   false) denies every request, and the ``Deny`` of writes under ``tenants/`` by any principal but the
   writer roles (``ArnNotLike`` on ``aws:PrincipalArn``) denies the writers too. Here the bucket policy
   is evaluated by :mod:`facegate.localcloud.iam` for the principal that signed the request (a session's
   role, or the account itself for other credentials: a bucket policy's Deny binds the account's
   administrator too, as in AWS): requests to the local cloud count as TLS (boto3 speaks HTTPS to AWS's
   endpoints, which in-process moto intercepts), and ``aws:PrincipalArn``, ``aws:PrincipalAccount`` and
   ``aws:PrincipalTag/...`` are the signer's. A refused object request is S3's ``AccessDenied``. Any
   other condition key or operator is refused loudly.
5. **DynamoDB atomicity**: moto applies a TransactWriteItems as check-then-write on shared dicts with
   no lock (and rolls a failed one back by restoring a copy that erases other threads' writes), so
   concurrent executions corrupt each other's transactions. DynamoDB runs each request atomically;
   here each moto DynamoDB request holds one lock, which gives moto that property.
6. **STS session tags and trust policies**: moto's ``AssumeRole`` keeps no session tags, never reads
   the role's trust policy and issues credentials for any role, existing or not. Here an
   ``AssumeRole`` of a role the stack deployed is authorized as IAM would: the role's trust policy
   (principal and conditions: ``aws:RequestTag/...``, ``aws:TagKeys``, ``aws:MultiFactorAuthPresent``,
   set by ``SerialNumber`` and ``TokenCode``; the code itself is not checked) and, when the caller is a
   session of a stack role, the caller's own policy (``sts:AssumeRole``, and ``sts:TagSession`` for
   tags). Tag values are validated as STS does (``#``, ``*`` and ``?`` are refused). The session's
   tags, its caller and the container that asked are recorded: they are what gap 7 evaluates, and
   what tests count (``assume_role_calls``).
7. **IAM for DynamoDB**: moto does not authorize DynamoDB requests (and its opt-in access control
   checks every request against resource ``*`` without condition keys). Here every DynamoDB request
   signed by a session of a role the stack deployed is evaluated against that role's policy as
   deployed from the translated template (:mod:`facegate.localcloud.iam`), never a restatement: one
   authorization per item for ``TransactWriteItems`` (``PutItem``, ``UpdateItem``, ``DeleteItem``,
   ``ConditionCheckItem``) and ``TransactGetItems``, one per table for batches, on the table's ARN or
   the index's, with ``dynamodb:LeadingKeys`` set to the partition key values the request names. For an
   index ``Query`` that is the index's partition key value in the key condition: IAM reads the key of
   the request, so a condition on LeadingKeys confines index queries too, while an item's index
   attribute is not a key when the item is written and no condition sees it (an item in the caller's own
   partition can name another tenant's index key; the store filters index reads for that). A refusal is
   ``AccessDeniedException``, as from DynamoDB. Inside a container a request must also be signed with
   credentials that container holds (its execution role's, or a session it assumed): a connection
   another container created cannot be borrowed, as separate Lambda processes could not. Requests with
   other credentials (the local cloud's administrator) are not evaluated.
8. **IAM for S3 objects**: moto does not authorize S3 requests against the signer's policies either
   (a presigned URL's request is the principal's that signed the URL, from its ``X-Amz-Credential``).
   Here a ``PutObject`` (also an ``UploadPart``, a ``CopyObject``'s write, a multipart upload's start
   and completion: IAM authorizes all of them as ``s3:PutObject``), a ``GetObject`` or ``HeadObject``
   (``s3:GetObject``, ``s3:GetObjectVersion`` with a version) and a ``DeleteObject`` (``s3:DeleteObject``,
   ``s3:DeleteObjectVersion``) signed by a session of a stack role is evaluated against that role's
   deployed policy on the object's ARN, with the session's tags for ``${aws:PrincipalTag/...}``: a tenant
   uploader session writing outside ``tenants/<its tenant>/``, or a tenant data session reading another
   tenant's gallery snapshot, is refused with ``AccessDenied``. Other S3 actions (listing, tagging, ACLs),
   and requests with other credentials, are not evaluated against identity policies (the bucket policy,
   gap 4, still applies to them).
9. **StartSyncExecution**: moto 5.2.5 answers "Not yet implemented" (boto3 sends it to the
   ``sync-states`` host, which moto does not route either). Here it starts the Express execution and
   waits for its end (at most Express's five minutes), answering status, output or error and cause as
   AWS does; a Standard state machine is refused as AWS refuses it.
10. **Cognito's pre-token-generation trigger and the client-credentials grant**: moto issues access
   tokens without running a pool's Lambda triggers, and has no ``/oauth2/token``. Here every access
   token moto issues to a person passes through the pool's V3_0 trigger (the real handler, through
   gap 1) and is re-signed with the pool's key as the trigger changed it; the local API serves the
   token endpoint's client-credentials grant (:mod:`facegate.localcloud.cognito`).
"""

from __future__ import annotations

import json
import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qs, urlparse
from xml.sax.saxutils import escape as xml_escape

from facegate.localcloud import iam, runtime
from facegate.localcloud.runtime import Container

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
    container: Container | None = None
    """Where the handler runs (its environment, its credentials); ``None``: the caller's thread as it is."""


@dataclass(frozen=True)
class RoleDefinition:
    """A role the stack deployed, as IAM holds it: its identity policy statements and its trust policy."""

    arn: str
    statements: tuple[Mapping[str, Any], ...]
    trust: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class SessionRecord:
    """One set of role credentials: from an ``AssumeRole`` call, or given by a service (Lambda, ECS)."""

    access_key: str
    role_arn: str
    session_name: str
    tags: Mapping[str, str]
    caller: str
    """The caller's ARN, or the service principal that handed the credentials out."""
    caller_key: str | None
    container: str | None
    """The container (function, job) whose code asked for it, if any."""
    mfa: bool = False

    @property
    def arn(self) -> str:
        account = self.role_arn.split(":")[4]
        return f"arn:aws:sts::{account}:assumed-role/{self.role_arn.rsplit('/', 1)[-1]}/{self.session_name}"


@dataclass(frozen=True)
class DynamoDBCall:
    """One DynamoDB request as the local cloud authorized it (kept for tests: who touched which keys)."""

    operation: str
    access_key: str
    session: SessionRecord | None
    """The role session that signed it; ``None`` for credentials no stack role issued (not evaluated)."""
    container: str | None
    checks: tuple[iam.Request, ...]
    allowed: bool
    reason: str | None = None

    @property
    def leading_keys(self) -> set[str]:
        return {k for check in self.checks for k in check.context.get("dynamodb:LeadingKeys", ())}

    @property
    def tables(self) -> set[str]:
        return {check.resource.split(":table/", 1)[-1].split("/", 1)[0] for check in self.checks}


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
        self.roles: dict[str, RoleDefinition] = {}
        self.sessions: dict[str, SessionRecord] = {}
        """Every role credential the local cloud knows, by access key."""
        self.assume_role_calls: list[SessionRecord] = []
        """Every ``AssumeRole`` through the STS API that was granted, in order."""
        self.refused_assume_roles: list[tuple[str, str, str]] = []
        """(caller, role, reason) of every refused ``AssumeRole``."""
        self.dynamodb_calls: list[DynamoDBCall] = []
        self._lock = threading.Lock()
        self._batch_outcomes: dict[str, tuple[str, str]] = {}

    # --- IAM (gaps 6 and 7) -------------------------------------------------------------------------

    def register_role(self, role: RoleDefinition) -> None:
        """A role the stack deployed: its credentials are authorized from now on."""
        self.roles[role.arn] = role

    def service_credentials(self, role_arn: str, session_name: str, service: str, region: str) -> dict[str, str]:
        """The credentials a service hands its code (Lambda's execution role, ECS's task role): issued
        by moto's STS directly, as the service does without a caller of its own, and recorded."""
        from moto.sts.models import sts_backends

        account = role_arn.split(":")[4]
        role = sts_backends[account]["aws"].assume_role(
            region_name=region,
            role_session_name=session_name[:64],
            role_arn=role_arn,
            policy="",
            duration=43_200,
            external_id="",
        )
        record = SessionRecord(role.access_key_id, role_arn, role.session_name, {}, service, None, None)
        with self._lock:
            self.sessions[record.access_key] = record
        return {
            "AWS_ACCESS_KEY_ID": role.access_key_id,
            "AWS_SECRET_ACCESS_KEY": role.secret_access_key,
            "AWS_SESSION_TOKEN": role.session_token,
        }

    def sessions_of(self, tenant_id: str) -> list[SessionRecord]:
        """The ``AssumeRole`` calls tagged with ``tenant_id``."""
        return [s for s in self.assume_role_calls if s.tags.get("tenant_id") == tenant_id]

    def _caller(self, access_key: str, account: str) -> tuple[iam.Principal, SessionRecord | None]:
        session = self.sessions.get(access_key)
        if session is None:  # credentials no stack role issued: the account's administrator
            return iam.Principal(f"arn:aws:iam::{account}:root", account), None
        return iam.Principal(session.arn, session.role_arn.split(":")[4], role_arn=session.role_arn), session

    def assume_role(self, response: Any, original: Callable[[Any], Any]) -> Any:
        """Gap 6: authorize an ``AssumeRole`` of a stack role as IAM would, then record the session."""
        from moto.sts.exceptions import STSValidationError

        role_arn = str(response._get_param("RoleArn"))
        session_name = str(response._get_param("RoleSessionName"))
        tags = {str(t["Key"]): str(t.get("Value", "")) for t in response._get_param("Tags") or []}
        for key, value in tags.items():
            if not _TAG_KEY.fullmatch(key) or not _TAG_VALUE.fullmatch(value):
                raise STSValidationError(f"session tag {key}={value!r} has characters STS does not accept")
        mfa = bool(response._get_param("SerialNumber") and response._get_param("TokenCode"))
        caller_key = _access_key(response.headers)
        principal, caller_session = self._caller(caller_key, response.current_account)
        container = runtime.current()
        role = self.roles.get(role_arn)
        if role is not None:
            reason = self._refuse_assume_role(role, principal, caller_session, tags, mfa)
            if reason is not None:
                with self._lock:
                    self.refused_assume_roles.append((principal.arn, role_arn, reason))
                message = f"User: {principal.arn} is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
                return _sts_error("AccessDenied", f"{message} ({reason})", 403)
        result = original(response)
        assumed = result.result["Credentials"]  # moto's AssumedRole: the new session's access key
        record = SessionRecord(
            assumed.access_key_id,
            role_arn,
            session_name,
            tags,
            principal.arn,
            caller_key,
            container.name if container is not None else None,
            mfa,
        )
        with self._lock:
            self.sessions[record.access_key] = record
            self.assume_role_calls.append(record)
        return result

    def _refuse_assume_role(
        self,
        role: RoleDefinition,
        principal: iam.Principal,
        caller: SessionRecord | None,
        tags: Mapping[str, str],
        mfa: bool,
    ) -> str | None:
        actions = ["sts:AssumeRole", *(["sts:TagSession"] if tags else [])]
        context: dict[str, tuple[str, ...]] = {
            **_principal_context(principal, caller),
            "aws:MultiFactorAuthPresent": ("true" if mfa else "false",),
            **{f"aws:RequestTag/{k}": (v,) for k, v in tags.items()},
        }
        if tags:
            context["aws:TagKeys"] = tuple(tags)
        for action in actions:
            request = iam.Request(action, role.arn, context)
            if iam.evaluate(role.trust, request, principal=principal, known_keys=STS_CONDITION_KEYS) != (
                iam.Decision.ALLOW
            ):
                return f"the trust policy of {role.arn} does not allow {action} by {principal.arn}"
            own = self.roles.get(caller.role_arn) if caller is not None else None
            if own is not None and iam.evaluate(own.statements, request, known_keys=STS_CONDITION_KEYS) != (
                iam.Decision.ALLOW
            ):
                return f"no identity-based policy of {own.arn} allows {action}"
        return None

    def authorize_dynamodb(self, handler: Any) -> Any:
        """Gap 7: IAM's answer for one DynamoDB request; ``None`` lets it through, else the refusal."""
        operation = handler._get_action()
        access_key = _access_key(handler.headers)
        account, region = handler.current_account, handler.region
        principal, session = self._caller(access_key, account)
        container = runtime.current()
        checks: tuple[iam.Request, ...] = ()
        reason: str | None = None
        if container is not None and not self._holds(container, access_key):
            reason = f"{container.name} holds no credentials {access_key}: it cannot sign with them"
        elif session is not None and session.role_arn in self.roles:
            context = _principal_context(principal, session)
            checks = tuple(
                iam.Request(
                    action, resource, {**context, **({"dynamodb:LeadingKeys": keys} if keys is not None else {})}
                )
                for action, resource, keys in _dynamodb_checks(operation, handler.params, account, region)
            )
            statements = self.roles[session.role_arn].statements
            for check in checks:
                decision = iam.evaluate(statements, check, known_keys=DYNAMODB_CONDITION_KEYS)
                if decision is not iam.Decision.ALLOW:
                    why = (
                        "with an explicit deny in an identity-based policy"
                        if decision is iam.Decision.DENY
                        else f"because no identity-based policy allows the {check.action} action"
                    )
                    reason = (
                        f"User: {principal.arn} is not authorized to perform: {check.action} on resource: "
                        f"{check.resource} {why}"
                    )
                    break
        call = DynamoDBCall(
            operation, access_key, session, container.name if container else None, checks, reason is None, reason
        )
        with self._lock:
            self.dynamodb_calls.append(call)
        if reason is None:
            return None
        body = {"__type": "com.amazonaws.dynamodb.v20120810#AccessDeniedException", "message": reason}
        return 400, {"Content-Type": "application/x-amz-json-1.0"}, json.dumps(body)

    # --- S3 (gaps 4 and 8) ---------------------------------------------------------------------------

    def bucket_policy_decision(
        self, policy: str, action: str, resource: str, access_key: str, account: str
    ) -> iam.Decision:
        """Gap 4: the bucket policy's answer for the principal that signed the request."""
        principal, session = self._caller(access_key, account)
        statements = json.loads(policy).get("Statement", [])
        request = iam.Request(action, resource, _principal_context(principal, session))
        return iam.evaluate(
            statements if isinstance(statements, list) else [statements],
            request,
            principal=principal,
            known_keys=S3_CONDITION_KEYS,
        )

    def authorize_s3_object(
        self, action: str, bucket: str, key: str, policy: str | None, access_key: str, account: str
    ) -> str | None:
        """Gaps 8 and 4 for one object request: the refusal's message, or ``None`` to let it through."""
        principal, session = self._caller(access_key, account)
        resource = f"arn:aws:s3:::{bucket}/{key}"
        denied = f'User: {principal.arn} is not authorized to perform: {action} on resource: "{resource}"'
        # As IAM decides within one account: an explicit Deny in either policy refuses; otherwise an Allow
        # in either one grants (the bucket's own Allow suffices for a principal of its account).
        own: iam.Decision | None = None
        if action in _EVALUATED_OBJECT_ACTIONS and session is not None and session.role_arn in self.roles:
            request = iam.Request(action, resource, _principal_context(principal, session))
            own = iam.evaluate(self.roles[session.role_arn].statements, request, known_keys=S3_CONDITION_KEYS)
        bucket_says = (
            self.bucket_policy_decision(policy, action, resource, access_key, account) if policy is not None else None
        )
        if own is iam.Decision.DENY:
            return f"{denied} with an explicit deny in an identity-based policy"
        if bucket_says is iam.Decision.DENY:
            return f"{denied} with an explicit deny in a resource-based policy"
        if own is iam.Decision.IMPLICIT_DENY and bucket_says is not iam.Decision.ALLOW:
            return f"{denied} because no identity-based policy allows the {action} action"
        return None

    def _holds(self, container: Container, access_key: str) -> bool:
        own = container.access_key
        if own is None:
            return True  # a container without credentials of its own (a unit test's): nothing to compare
        if access_key == own:
            return True
        session = self.sessions.get(access_key)
        return session is not None and session.caller_key == own

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
            with runtime.inside(fn.container) if fn.container is not None else nullcontext():
                try:
                    result = fn.handler(payload, context)
                finally:
                    _discard_disabled_metrics(fn.container)
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

    def run_batch_job(
        self,
        job_id: str,
        command: list[str],
        environment: dict[str, str],
        *,
        job_role_arn: str | None = None,
        region: str = "us-east-1",
    ) -> None:
        """Run the job definition's command through the entrypoint registered for its program: the
        first word (``reindex``) or, for ``python -m module``, those three words. It runs in a fresh
        container, as each Batch attempt does: the job's environment, Batch's job id and the job role's
        credentials (which ECS serves the SDK from its credentials endpoint; here, as variables)."""
        words = 3 if command[:2] == ["python", "-m"] else 1
        entry = self.batch_entrypoints.get(" ".join(command[:words]))
        if entry is None:
            self._batch_outcomes[job_id] = ("FAILED", f"no local entrypoint for command {command!r}")
            return
        env = {**environment, "AWS_BATCH_JOB_ID": job_id}
        if job_role_arn is not None:
            env.update(self.service_credentials(job_role_arn, f"batch-{job_id}", "ecs-tasks.amazonaws.com", region))
        container = Container(f"batch:{job_id}", env)
        try:
            with runtime.inside(container):
                code = entry(command[words:], dict(environment))
        except Exception as exc:
            self._batch_outcomes[job_id] = ("FAILED", f"{type(exc).__name__}: {exc}")
            return
        self._batch_outcomes[job_id] = ("SUCCEEDED", "") if code == 0 else ("FAILED", f"exit code {code}")

    def batch_outcome(self, job_id: str) -> tuple[str, str] | None:
        return self._batch_outcomes.get(job_id)


_active: Adapter | None = None
_DYNAMODB_LOCK: Final = threading.Lock()
_installed = False

# STS's rules for session tags ([\p{L}\p{Z}\p{N}_.:/=+\-@]): so "#", "*" and "?" are refused.
_TAG_KEY: Final = re.compile(r"[\w\s.:/=+\-@]{1,128}")
_TAG_VALUE: Final = re.compile(r"[\w\s.:/=+\-@]{0,256}")
_CREDENTIAL: Final = re.compile(r"Credential=([^/,\s]+)/")
PRINCIPAL_CONDITION_KEYS: Final = (
    "aws:PrincipalTag/",
    "aws:PrincipalArn",
    "aws:PrincipalAccount",
    "aws:SecureTransport",
    "aws:MultiFactorAuthPresent",
)
"""What the local cloud knows of every request's principal (in-process moto intercepts TLS endpoints)."""
DYNAMODB_CONDITION_KEYS: Final = (*PRINCIPAL_CONDITION_KEYS, "dynamodb:LeadingKeys")
STS_CONDITION_KEYS: Final = (*PRINCIPAL_CONDITION_KEYS, "aws:RequestTag/", "aws:TagKeys")
S3_CONDITION_KEYS: Final = ("aws:PrincipalTag/", "aws:PrincipalArn", "aws:PrincipalAccount", "aws:SecureTransport")
"""What the local cloud evaluates in S3's policies (no MFA age, source IP or S3-specific keys)."""
_ITEM_OPERATIONS: Final = {"GetItem": "Key", "PutItem": "Item", "UpdateItem": "Key", "DeleteItem": "Key"}
_TRANSACT_ACTIONS: Final = {
    "Put": ("dynamodb:PutItem", "Item"),
    "Update": ("dynamodb:UpdateItem", "Key"),
    "Delete": ("dynamodb:DeleteItem", "Key"),
    "ConditionCheck": ("dynamodb:ConditionCheckItem", "Key"),
    "Get": ("dynamodb:GetItem", "Key"),
}


def _discard_disabled_metrics(container: Container | None) -> None:
    """What a metrics flush does at the end of an invocation, where the local stand-in disables metrics:
    Powertools then neither prints nor clears the set, and its 100th value of one metric is printed
    anyway (as a stray EMF line on whatever stdout is current), so the set is dropped here instead."""
    if container is None or container.env.get("POWERTOOLS_METRICS_DISABLED", "").lower() != "true":
        return
    try:
        from aws_lambda_powertools import Metrics
    except ImportError:  # a function without Powertools
        return
    Metrics._metrics.clear()


def activate(adapter: Adapter) -> None:
    """Point the patched moto methods at ``adapter`` (patching once per process), with per-container
    environments installed (:mod:`facegate.localcloud.runtime`)."""
    global _active
    _check_moto()
    _install()
    if _active is None:
        runtime.install()
    _active = adapter


def deactivate() -> None:
    global _active
    if _active is not None:
        runtime.uninstall()
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
        if (headers or {}).get("X-Amz-Invocation-Type") == "Event":  # queued, as Lambda does: 202 at once
            threading.Thread(
                target=_active.invoke, args=(function_name, body, {}), name=f"lambda-event-{function_name}", daemon=True
            ).start()
            return b""
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

    from moto.iam.access_control import PermissionResult
    from moto.s3.models import FakeBucket
    from moto.s3.responses import S3Response

    original_permission = FakeBucket.get_permission

    def get_permission(self: Any, action: str, resource: str) -> Any:
        if _active is None or self.policy is None:
            return original_permission(self, action, resource)
        decision = _active.bucket_policy_decision(
            _policy_text(self.policy), action, resource, getattr(_S3_SIGNER, "access_key", ""), self.account_id
        )
        return {
            iam.Decision.DENY: PermissionResult.DENIED,
            iam.Decision.ALLOW: PermissionResult.PERMITTED,
        }.get(decision, PermissionResult.NEUTRAL)

    original_setup = S3Response.setup_class

    def setup_class(self: Any, request: Any, full_url: str | None = None, headers: Any = None) -> None:
        # Every S3 request passes here first: the signer is what the bucket policy is evaluated for.
        url = full_url or str(getattr(request, "url", "") or "")
        _S3_SIGNER.access_key = _s3_signer(request, url) if _active is not None else ""
        original_setup(self, request, full_url, headers)

    original_key_response = S3Response._key_response

    def key_response(self: Any, request: Any, full_url: str) -> Any:
        if _active is None:
            return original_key_response(self, request, full_url)
        from moto.s3.exceptions import S3ClientError

        query = parse_qs(urlparse(full_url).query, keep_blank_values=True)
        signed_in_query = {k for k in query if k.startswith("X-Amz-")}  # a presigned URL's own parameters
        bucket_name = self.parse_bucket_name_from_url(request, full_url)
        try:
            bucket = self.backend.get_bucket(bucket_name)
        except S3ClientError:  # S3 answers that itself
            return original_key_response(self, request, full_url)
        method = str(request.method).upper()
        action = _s3_object_action(method, set(query) - signed_in_query)
        refusal = _active.authorize_s3_object(
            action,
            bucket_name,
            self.parse_key_name(),
            _policy_text(bucket.policy) if bucket.policy is not None else None,
            _s3_signer(request, full_url),
            bucket.account_id,
        )
        if refusal is not None:
            return _s3_access_denied(refusal)
        return original_key_response(self, request, full_url)

    from moto.dynamodb.responses import DynamoHandler

    original_call = DynamoHandler.call_action

    def call_action(self: Any) -> Any:
        if _active is None:
            return original_call(self)
        refusal = _active.authorize_dynamodb(self)
        if refusal is not None:
            return refusal
        with _DYNAMODB_LOCK:
            return original_call(self)

    from moto.sts.responses import TokenResponse

    original_assume = TokenResponse.assume_role

    def assume_role(self: Any) -> Any:
        if _active is None:
            return original_assume(self)
        return _active.assume_role(self, original_assume)

    from moto import backend_index
    from moto.stepfunctions import urls as sfn_urls
    from moto.stepfunctions.responses import StepFunctionResponse

    def start_sync_execution(self: Any) -> Any:
        if _active is None:  # plain moto's answer for an operation it does not implement
            from moto.core.exceptions import JsonRESTError

            error = JsonRESTError("NotImplemented", "Not yet implemented")
            error.code = 404
            raise error
        return _start_sync_execution(self)

    # boto3 sends StartSyncExecution to sync-states.<region>.amazonaws.com, a host moto does not route.
    sync_host = r"https?://sync-states\.(.+)\.amazonaws.com"
    sfn_urls.url_bases.append(sync_host)
    backend_index.backend_url_patterns.append(("stepfunctions", re.compile(sync_host)))

    StepFunctionResponse.start_sync_execution = start_sync_execution  # type: ignore[attr-defined]
    TokenResponse.assume_role = assume_role  # type: ignore[method-assign]
    DynamoHandler.call_action = call_action  # type: ignore[method-assign]
    FakeBucket.get_permission = get_permission  # type: ignore[method-assign]
    S3Response.setup_class = setup_class  # type: ignore[method-assign]
    S3Response._key_response = key_response  # type: ignore[method-assign]
    LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
    Rule.send_to_targets = send_to_targets  # type: ignore[method-assign]
    batch_task._eval_service_task = eval_batch  # type: ignore[method-assign,assignment]
    batch_task._build_sync_resolver = build_sync_resolver  # type: ignore[method-assign,assignment]
    from facegate.localcloud import cognito

    cognito.install(lambda: _active.invoke if _active is not None else None)  # gap 10
    _installed = True


_S3_SIGNER: Final = threading.local()
"""The access key of the S3 request this thread is serving (in-process moto serves it on the caller's thread)."""
_PUT_OBJECT_QUERIES: Final = frozenset({"x-id", "uploadId", "partNumber"})
"""Query parameters of the object PUTs that IAM authorizes as ``s3:PutObject`` (a PutObject, an UploadPart,
a CopyObject); any other (``?tagging``, ``?acl``, ``?retention``...) is another action."""
_READ_OBJECT_QUERIES: Final = frozenset(
    {"x-id", "versionId", "partNumber"}
    | {
        f"response-{h}"
        for h in (
            "content-type",
            "content-language",
            "expires",
            "cache-control",
            "content-disposition",
            "content-encoding",
        )
    }
)
"""Query parameters of the object GETs and HEADs that IAM authorizes as ``s3:GetObject`` (or
``s3:GetObjectVersion`` with a ``versionId``)."""
_EVALUATED_OBJECT_ACTIONS: Final = frozenset(
    {"s3:PutObject", "s3:GetObject", "s3:GetObjectVersion", "s3:DeleteObject", "s3:DeleteObjectVersion"}
)
"""The object actions gap 8 evaluates against a stack role session's identity policy."""


def _s3_object_action(method: str, query: set[str]) -> str:
    """The IAM action of an object request: ``s3:PutObject`` for every write IAM authorizes so, the read
    and delete actions (a HEAD is authorized as ``s3:GetObject``; naming a version, as the ``...Version``
    action); else moto's own name for it."""
    if method == "PUT" and not query - _PUT_OBJECT_QUERIES:
        return "s3:PutObject"
    if method == "POST" and query & {"uploads", "uploadId"}:  # a multipart upload's start and completion
        return "s3:PutObject"
    if method in ("GET", "HEAD") and not query - _READ_OBJECT_QUERIES:
        return "s3:GetObjectVersion" if "versionId" in query else "s3:GetObject"
    if method == "DELETE" and not query - {"versionId", "x-id"}:
        return "s3:DeleteObjectVersion" if "versionId" in query else "s3:DeleteObject"
    if method == "DELETE" and "uploadId" in query:
        return "s3:AbortMultipartUpload"
    if method == "GET" and "uploadId" in query:
        return "s3:ListMultipartUploadParts"
    verb = f"{method[:1]}{method[1:].lower()}"
    for sub, name in (("tagging", "Tagging"), ("acl", "Acl"), ("retention", "Retention"), ("legal-hold", "LegalHold")):
        if sub in query:
            return f"s3:{verb}Object{name}"
    return f"s3:{verb}Object"


def _policy_text(policy: bytes | str) -> str:
    return policy.decode() if isinstance(policy, bytes) else policy


def _s3_access_denied(message: str) -> tuple[int, dict[str, str], str]:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
        f"<Message>{xml_escape(message)}</Message><RequestId>{uuid.uuid4()}</RequestId></Error>"
    )
    return 403, {"Content-Type": "application/xml"}, body


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


SYNC_EXECUTION_LIMIT_S: Final = 300.0
"""An Express workflow runs for at most five minutes; a synchronous start waits no longer."""


def _start_sync_execution(response: Any) -> Any:
    """Gap 9: ``StartSyncExecution`` of an Express state machine, as AWS answers it: the execution
    runs to its end and the call returns its status, output (or error and cause) and dates. A Standard
    state machine is refused as AWS refuses it."""
    from moto.core.responses import ActionResult
    from moto.stepfunctions.parser.api import ExecutionStatus, StateMachineTypeNotSupported

    backend = response.stepfunction_backend
    arn = response._get_param("stateMachineArn")
    machine = backend.describe_state_machine(arn)
    if str(getattr(machine, "type", "STANDARD")) != "EXPRESS":
        raise StateMachineTypeNotSupported("This operation is not supported by this type of state machine")
    name = response._get_param("name") or uuid.uuid4().hex
    execution = backend.start_execution(arn, name, response._get_param("input", if_none="{}"))
    deadline = time.monotonic() + SYNC_EXECUTION_LIMIT_S
    done = (ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.ABORTED, ExecutionStatus.TIMED_OUT)
    while True:
        found = backend.describe_execution(execution.execution_arn)
        status = found.status
        if status in done or str(status) in {str(d) for d in done}:
            break
        if time.monotonic() > deadline:
            status = ExecutionStatus.TIMED_OUT
            break
        time.sleep(0.02)
    answer: dict[str, Any] = {
        "executionArn": execution.execution_arn,
        "stateMachineArn": arn,
        "name": name,
        "startDate": found.start_date,
        "stopDate": getattr(found, "stop_date", None),
        "status": str(getattr(status, "value", status)),
        "input": found.execution_input,
    }
    if found.output is not None:
        answer["output"] = found.output if isinstance(found.output, str) else json.dumps(found.output)
    if found.error is not None:
        answer["error"] = found.error
    if found.cause is not None:
        answer["cause"] = found.cause
    return ActionResult({k: v for k, v in answer.items() if v is not None})


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
    _active.run_batch_job(job_id, command, environment, job_role_arn=container.get("jobRoleArn"), region=part.region)
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


# --- IAM helpers (gaps 6 and 7) ---------------------------------------------------------------------


def _sts_error(code: str, message: str, status: int) -> tuple[str, dict[str, Any]]:
    """An STS error response as AWS sends it (moto's serializer knows no ``AccessDenied`` shape)."""
    body = (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>{xml_escape(message)}</Message></Error>"
        f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )
    return body, {"status": status, "Content-Type": "text/xml"}


def _access_key(headers: Mapping[str, str]) -> str:
    """The access key a SigV4 request was signed with."""
    match = _CREDENTIAL.search(str(headers.get("Authorization") or headers.get("authorization") or ""))
    return match.group(1) if match else ""


def _s3_signer(request: Any, full_url: str) -> str:
    """The access key an S3 request was signed with: its Authorization header's, or a presigned URL's
    ``X-Amz-Credential`` (a presigned request is authorized as the principal that signed the URL)."""
    key = _access_key(request.headers)
    if key:
        return key
    credential = parse_qs(urlparse(full_url).query).get("X-Amz-Credential", [""])[0]
    return credential.split("/", 1)[0]


def _principal_context(principal: iam.Principal, session: SessionRecord | None) -> dict[str, tuple[str, ...]]:
    context: dict[str, tuple[str, ...]] = {
        "aws:PrincipalArn": (principal.role_arn or principal.arn,),
        "aws:PrincipalAccount": (principal.account,),
        "aws:SecureTransport": ("true",),
        "aws:MultiFactorAuthPresent": ("true" if session is not None and session.mfa else "false",),
    }
    for key, value in (session.tags if session is not None else {}).items():
        context[f"aws:PrincipalTag/{key}"] = (value,)
    return context


def _key_schema(account: str, region: str, table: str) -> dict[str | None, str]:
    """The partition key attribute of a table (key ``None``) and of each of its global indexes."""
    from moto.dynamodb.models import dynamodb_backends

    try:
        found = dynamodb_backends[account][region].get_table(table)
    except Exception:  # a missing table: DynamoDB answers that itself, after IAM
        return {}
    keys: dict[str | None, str] = {None: found.hash_key_attr}
    for index in [*found.indexes, *found.global_indexes]:
        keys[index.name] = next(k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH")
    return keys


def _value(attribute: Mapping[str, Any]) -> str:
    ((_, value),) = attribute.items()
    return str(value)


def _partition_value(item: Mapping[str, Any], schema: Mapping[str | None, str], index: str | None = None) -> str | None:
    attribute = schema.get(index)
    return _value(item[attribute]) if attribute is not None and attribute in item else None


def _keys(*values: str | None) -> tuple[str, ...]:
    return tuple(v for v in values if v is not None)


def _query_partition_value(params: Mapping[str, Any], attribute: str | None) -> str | None:
    """The partition key value a Query's key condition names (``#k = :v``, either way round)."""
    if attribute is None:
        return None
    names = params.get("ExpressionAttributeNames") or {}
    values = params.get("ExpressionAttributeValues") or {}
    expression = params.get("KeyConditionExpression")
    if expression:
        for match in re.finditer(r"(#?[\w.]+)\s*=\s*(:\w+)|(:\w+)\s*=\s*(#?[\w.]+)", expression):
            name, placeholder = (match.group(1), match.group(2)) if match.group(1) else (match.group(4), match.group(3))
            if names.get(name, name) == attribute and placeholder in values:
                return _value(values[placeholder])
    conditions = params.get("KeyConditions") or {}
    if attribute in conditions and conditions[attribute].get("ComparisonOperator") == "EQ":
        return _value(conditions[attribute]["AttributeValueList"][0])
    raise NotImplementedError(f"the local cloud cannot read the partition key of this Query: {expression!r}")


def _dynamodb_checks(
    operation: str, params: Mapping[str, Any], account: str, region: str
) -> list[tuple[str, str, tuple[str, ...] | None]]:
    """The authorizations IAM makes for one DynamoDB request: (action, resource, LeadingKeys or None)."""

    def arn(table: str, index: str | None = None) -> str:
        base = f"arn:aws:dynamodb:{region}:{account}:table/{table}"
        return f"{base}/index/{index}" if index else base

    def schema(table: str) -> dict[str | None, str]:
        return _key_schema(account, region, table)

    if operation in _ITEM_OPERATIONS:
        table = params["TableName"]
        key = _partition_value(params.get(_ITEM_OPERATIONS[operation]) or {}, schema(table))
        return [(f"dynamodb:{operation}", arn(table), _keys(key))]
    if operation == "Query":
        table, index = params["TableName"], params.get("IndexName")
        key = _query_partition_value(params, schema(table).get(index))
        return [("dynamodb:Query", arn(table, index), _keys(key))]
    if operation == "Scan":
        return [("dynamodb:Scan", arn(params["TableName"], params.get("IndexName")), None)]
    if operation in ("TransactWriteItems", "TransactGetItems"):
        checks: list[tuple[str, str, tuple[str, ...] | None]] = []
        for item in params.get("TransactItems") or []:
            ((kind, body),) = item.items()
            action, field_name = _TRANSACT_ACTIONS[kind]
            table = body["TableName"]
            checks.append((action, arn(table), _keys(_partition_value(body.get(field_name) or {}, schema(table)))))
        return checks
    if operation == "BatchGetItem":
        return [
            ("dynamodb:BatchGetItem", arn(table), _keys(*(_partition_value(k, schema(table)) for k in spec["Keys"])))
            for table, spec in (params.get("RequestItems") or {}).items()
        ]
    if operation == "BatchWriteItem":
        return [
            (
                "dynamodb:BatchWriteItem",
                arn(table),
                _keys(
                    *(
                        _partition_value(
                            r.get("PutRequest", {}).get("Item") or r.get("DeleteRequest", {}).get("Key") or {},
                            schema(table),
                        )
                        for r in requests
                    )
                ),
            )
            for table, requests in (params.get("RequestItems") or {}).items()
        ]
    table = params.get("TableName")
    return [(f"dynamodb:{operation}", arn(table) if table else "*", None)]
