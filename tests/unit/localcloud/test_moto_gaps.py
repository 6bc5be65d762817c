"""Each moto gap the local cloud's adapter closes, pinned twice: once on plain moto (the gap is still
there) and once with the adapter active (the gap is closed).

When a moto upgrade changes one of these behaviours the plain-moto test fails: that is the signal to
shrink (or fix) ``facegate/localcloud/adapter.py``, whose docstring numbers the gaps as here. The
adapter patches moto's classes once per process but acts only while an ``Adapter`` is active, so the
plain-moto tests run with none active (whether or not the patches are installed yet).
"""

from __future__ import annotations

import inspect
import io
import json
import os
import time
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import moto
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from facegate.localcloud import adapter as adapter_module
from facegate.localcloud.adapter import MOTO_VERSION, Adapter, LocalFunction, activate, deactivate
from facegate.localcloud.cloud import MOTO_CONFIG

REGION = "us-east-1"
ACCOUNT = "123456789012"
FAKE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/x"  # moto does not check Step Functions' or Batch's role
PASS_ASL = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}})
BUCKET = "gaps-probes"
PROBE_PATTERN = {
    "source": ["aws.s3"],
    "detail-type": ["Object Created"],
    "detail": {"bucket": {"name": [BUCKET]}, "object": {"key": [{"wildcard": "tenants/*/probes/*"}]}},
}
TLS_ONLY_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    ],
}


# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials and region; nothing from a developer's ~/.aws or endpoint variables."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def plain() -> Iterator[None]:
    """moto as the local cloud configures it, with no adapter active."""
    deactivate()
    with mock_aws(config=MOTO_CONFIG):  # type: ignore[call-overload]
        yield


@pytest.fixture
def local() -> Iterator[Adapter]:
    """moto as the local cloud configures it, with an adapter active."""
    adapter = Adapter()
    with mock_aws(config=MOTO_CONFIG):  # type: ignore[call-overload]
        activate(adapter)
        try:
            yield adapter
        finally:
            deactivate()


def test_installed_moto_is_the_one_the_adapter_is_written_against() -> None:
    assert moto.__version__ == MOTO_VERSION


def test_check_moto_refuses_another_version(monkeypatch: pytest.MonkeyPatch) -> None:
    deactivate()
    monkeypatch.setattr(moto, "__version__", "5.2.6")
    with pytest.raises(RuntimeError, match=r"moto 5\.2\.5, found 5\.2\.6"):
        adapter_module._check_moto()
    with pytest.raises(RuntimeError, match="test_moto_gaps"):
        activate(Adapter())
    assert adapter_module._active is None


# --- helpers --------------------------------------------------------------------------------------


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", "def handler(event, context):\n    raise AssertionError('never run')\n")
    return buf.getvalue()


def _create_function(name: str) -> str:
    """A moto Lambda function (moto's Lambda does check that the role exists and trusts Lambda)."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    role = boto3.client("iam").create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument=json.dumps(trust))
    arn: str = boto3.client("lambda").create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role["Role"]["Arn"],
        Handler="app.handler",
        Code={"ZipFile": _zip()},
    )["FunctionArn"]
    return arn


def _invoke(name: str, payload: Any) -> tuple[str | None, Any]:
    response = boto3.client("lambda").invoke(FunctionName=name, Payload=json.dumps(payload))
    return response.get("FunctionError"), json.loads(response["Payload"].read())


def _until(probe: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll ``probe`` until it returns something truthy (executions run on moto's background threads)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


def _state_machine(name: str = "gaps-sm", definition: str = PASS_ASL) -> str:
    arn: str = boto3.client("stepfunctions").create_state_machine(name=name, definition=definition, roleArn=FAKE_ROLE)[
        "stateMachineArn"
    ]
    return arn


def _finished(execution_arn: str) -> dict[str, Any] | None:
    desc: dict[str, Any] = boto3.client("stepfunctions").describe_execution(executionArn=execution_arn)
    return None if desc["status"] == "RUNNING" else desc


def _bucket_with_eventbridge() -> Any:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={"EventBridgeConfiguration": {}})
    return s3


def _rule_to(target_arn: str, name: str = "probe-uploaded") -> None:
    events = boto3.client("events")
    events.put_rule(Name=name, EventPattern=json.dumps(PROBE_PATTERN))
    events.put_targets(Rule=name, Targets=[{"Id": "t", "Arn": target_arn, "RoleArn": FAKE_ROLE}])


# --- 1. Lambda runs the function ------------------------------------------------------------------


class ProbeRejectedError(Exception):
    pass


def test_plain_moto_lambda_echoes_the_payload_instead_of_running_code(plain: None) -> None:
    _create_function("gaps-fn")
    error, body = _invoke("gaps-fn", {"probe": "x.jpg"})
    assert error is None
    assert body == {"probe": "x.jpg"}


def test_adapter_lambda_runs_the_registered_handler(local: Adapter) -> None:
    arn = _create_function("gaps-fn")
    seen: list[tuple[str, str, int]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.append((context.function_name, context.invoked_function_arn, context.get_remaining_time_in_millis()))
        if event.get("reject"):
            raise ProbeRejectedError("no face in the probe")
        return {"faces": 1, "echo": event}

    local.register_function(LocalFunction("gaps-fn", arn, handler, memory_mb=256, timeout_s=7))

    assert _invoke("gaps-fn", {"probe": "x.jpg"}) == (None, {"faces": 1, "echo": {"probe": "x.jpg"}})
    assert _invoke(arn, {"probe": "y.jpg"}) == (None, {"faces": 1, "echo": {"probe": "y.jpg"}})
    assert seen[0] == ("gaps-fn", arn, 7000)

    error, body = _invoke("gaps-fn", {"reject": True})
    assert error == "Unhandled"
    assert body["errorType"] == "ProbeRejectedError"
    assert body["errorMessage"] == "no face in the probe"
    assert [i.error for i in local.invoked("gaps-fn")] == [None, None, "ProbeRejectedError"]


def test_adapter_lambda_injected_fault_fails_exactly_once(local: Adapter) -> None:
    arn = _create_function("gaps-fn")
    local.register_function(LocalFunction("gaps-fn", arn, lambda event, context: {"ok": True}, 128, 3))
    local.inject_fault("gaps-fn", "Lambda.ServiceException")

    error, body = _invoke("gaps-fn", {})
    assert error == "Unhandled"
    assert body["errorType"] == "Lambda.ServiceException"
    assert _invoke("gaps-fn", {}) == (None, {"ok": True})
    assert _invoke("gaps-fn", {}) == (None, {"ok": True})
    assert [i.error for i in local.invoked("gaps-fn")] == ["Lambda.ServiceException", None, None]


# --- 2. EventBridge delivers to a state machine ---------------------------------------------------


def test_plain_moto_eventbridge_rule_never_starts_a_state_machine(plain: None) -> None:
    s3 = _bucket_with_eventbridge()
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName="witness")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    # The witness rule comes first: the state machine target raises, which also ends delivery to later rules.
    _rule_to(queue_arn, name="witness")
    machine = _state_machine()
    _rule_to(machine)

    s3.put_object(Bucket=BUCKET, Key="tenants/t1/probes/g1/x.jpg", Body=b"jpeg")

    messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0).get("Messages", [])
    assert len(messages) == 1, "the event was not even delivered: the gap cannot be told apart"
    assert json.loads(messages[0]["Body"])["detail"]["object"]["key"] == "tenants/t1/probes/g1/x.jpg"
    time.sleep(0.2)
    assert boto3.client("stepfunctions").list_executions(stateMachineArn=machine)["executions"] == []


def test_adapter_eventbridge_rule_starts_one_execution_per_upload(local: Adapter) -> None:
    s3 = _bucket_with_eventbridge()
    machine = _state_machine()
    _rule_to(machine)
    sfn = boto3.client("stepfunctions")

    s3.put_object(Bucket=BUCKET, Key="tenants/t1/probes/g1/x.jpg", Body=b"jpeg")
    executions = sfn.list_executions(stateMachineArn=machine)["executions"]
    assert len(executions) == 1
    assert local.executions_started == [executions[0]["executionArn"]]
    done = _until(lambda: _finished(executions[0]["executionArn"]))
    assert done is not None, "the execution did not finish"
    assert done["status"] == "SUCCEEDED"
    event = json.loads(done["input"])
    assert event["source"] == "aws.s3"
    assert event["detail-type"] == "Object Created"
    assert event["detail"]["bucket"]["name"] == BUCKET
    assert event["detail"]["object"]["key"] == "tenants/t1/probes/g1/x.jpg"

    s3.put_object(Bucket=BUCKET, Key="tenants/t1/uploads/g1/x.jpg", Body=b"jpeg")  # not a probe: no execution
    s3.put_object(Bucket=BUCKET, Key="tenants/t1/probes/g1/x.jpg", Body=b"jpeg again")
    executions = sfn.list_executions(stateMachineArn=machine)["executions"]
    assert len(executions) == 2
    assert len({e["name"] for e in executions}) == 2
    assert all(e["name"].startswith("x-jpg-") for e in executions)
    for execution in executions:
        done = _until(lambda arn=execution["executionArn"]: _finished(arn))
        assert done is not None
        assert done["status"] == "SUCCEEDED"


def test_plain_moto_names_an_unnamed_execution_none(plain: None) -> None:
    """Why the adapter names each execution it starts: a second unnamed one would clash with the first."""
    sfn = boto3.client("stepfunctions")
    machine = _state_machine()
    arn = sfn.start_execution(stateMachineArn=machine, input='{"n": 1}')["executionArn"]
    assert arn.endswith(":None")
    with pytest.raises(ClientError, match="ExecutionAlreadyExists"):
        sfn.start_execution(stateMachineArn=machine, input='{"n": 2}')
    assert _until(lambda: _finished(arn)) is not None


# --- 3. Batch from Step Functions -----------------------------------------------------------------


def _batch_machine() -> str:
    batch = boto3.client("batch")
    role = boto3.client("iam").create_role(RoleName="batch-service", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    env = batch.create_compute_environment(
        computeEnvironmentName="gaps-env", type="UNMANAGED", state="ENABLED", serviceRole=role
    )
    queue = batch.create_job_queue(
        jobQueueName="gaps-queue",
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": env["computeEnvironmentArn"]}],
    )
    definition = batch.register_job_definition(
        jobDefinitionName="gaps-job",
        type="container",
        parameters={"gallery": "default"},
        containerProperties={
            "image": "facegate",
            "vcpus": 1,
            "memory": 512,
            "command": ["reindex", "Ref::gallery"],
            "environment": [{"name": "MODE", "value": "full"}],
        },
    )
    task = {
        "Type": "Task",
        "Resource": "arn:aws:states:::batch:submitJob.sync",
        "Parameters": {
            "JobName": "reindex",
            "JobQueue": queue["jobQueueArn"],
            "JobDefinition": definition["jobDefinitionArn"],
            "Parameters": {"gallery": "residents"},
        },
        "End": True,
    }
    return _state_machine("gaps-batch", json.dumps({"StartAt": "Reindex", "States": {"Reindex": task}}))


def _run(machine: str) -> dict[str, Any]:
    # Always named: moto names an unnamed execution "None", so a second one would clash.
    name = f"run-{time.monotonic_ns()}"
    arn = boto3.client("stepfunctions").start_execution(stateMachineArn=machine, name=name, input="{}")["executionArn"]
    done = _until(lambda: _finished(arn))
    assert done is not None, "the execution did not finish"
    return dict(done)


def test_plain_moto_batch_submit_job_sync_fails_on_parameter_casing(plain: None) -> None:

    done = _run(_batch_machine())
    assert done["status"] == "FAILED"
    assert done["error"] == "States.Runtime"
    assert "'JobName'" in done["cause"]  # moto's interpreter looks the PascalCase ASL parameter up in camelCase


def test_adapter_batch_job_runs_its_command_in_process(local: Adapter) -> None:
    calls: list[tuple[list[str], dict[str, str]]] = []
    local.batch_entrypoints["reindex"] = lambda args, env: calls.append((args, env)) or 0
    machine = _batch_machine()

    done = _run(machine)
    assert done["status"] == "SUCCEEDED", done
    output = json.loads(done["output"])
    assert output["Status"] == "SUCCEEDED"
    assert output["JobName"] == "reindex"
    assert len(calls) == 1
    args, env = calls[0]
    assert args == ["residents"]  # Ref::gallery, from the task's Parameters over the definition's default
    assert env["MODE"] == "full"

    local.batch_entrypoints["reindex"] = lambda args, env: 3
    failed = _run(machine)
    assert failed["status"] == "FAILED"
    assert failed["error"] == "States.TaskFailed"
    assert json.loads(failed["cause"])["StatusReason"] == "exit code 3"


# --- 4. S3 bucket policy conditions ---------------------------------------------------------------


def _with_policy(policy: dict[str, Any]) -> Any:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(policy))
    return s3


def _deny(condition: dict[str, Any]) -> dict[str, Any]:
    statement = {**TLS_ONLY_POLICY["Statement"][0], "Condition": condition}
    return {**TLS_ONLY_POLICY, "Statement": [statement]}


def test_plain_moto_ignores_the_condition_so_tls_only_denies_everything(plain: None) -> None:
    s3 = _with_policy(TLS_ONLY_POLICY)
    with pytest.raises(ClientError) as denied:
        s3.put_object(Bucket=BUCKET, Key="tenants/t1/probes/g1/x.jpg", Body=b"jpeg")
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_adapter_evaluates_secure_transport(local: Adapter) -> None:
    s3 = _with_policy(TLS_ONLY_POLICY)
    s3.put_object(Bucket=BUCKET, Key="tenants/t1/probes/g1/x.jpg", Body=b"jpeg")
    assert s3.get_object(Bucket=BUCKET, Key="tenants/t1/probes/g1/x.jpg")["Body"].read() == b"jpeg"

    # The condition is evaluated, not dropped: a Deny on TLS requests does deny.
    s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(_deny({"Bool": {"aws:SecureTransport": "true"}})))
    with pytest.raises(ClientError) as denied:
        s3.put_object(Bucket=BUCKET, Key="tenants/t1/probes/g1/y.jpg", Body=b"jpeg")
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, "condition IpAddress"),
        ({"Bool": {"aws:MultiFactorAuthPresent": "false"}}, "condition key aws:MultiFactorAuthPresent"),
    ],
)
def test_adapter_refuses_a_condition_it_cannot_evaluate(
    local: Adapter, condition: dict[str, Any], message: str
) -> None:
    s3 = _with_policy(_deny(condition))
    # Raised inside moto's request handling, it reaches the caller as itself (not as an HTTP error).
    with pytest.raises(NotImplementedError, match=message):
        s3.put_object(Bucket=BUCKET, Key="tenants/t1/probes/g1/x.jpg", Body=b"jpeg")


# --- 5. DynamoDB requests are atomic --------------------------------------------------------------


def test_plain_moto_dynamodb_has_one_entry_point_and_no_lock() -> None:
    """No race test (not deterministic): pin what the adapter relies on and what makes the gap."""
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.responses import DynamoHandler

    # Every DynamoDB request goes through DynamoHandler's own call_action, the method the adapter wraps.
    assert "call_action" in vars(DynamoHandler)
    assert "def call_action(self)" in inspect.getsource(DynamoHandler)
    # A transaction checks and writes shared dicts with no lock, and rolls back by restoring deep copies.
    transact = inspect.getsource(DynamoDBBackend.transact_write_items)
    assert "copy.deepcopy" in transact
    assert "lock" not in transact.lower()
    assert "lock" not in inspect.getsource(DynamoHandler).lower()


def test_adapter_holds_one_lock_for_each_dynamodb_request(local: Adapter, monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.responses import DynamoHandler

    assert "_install" in DynamoHandler.call_action.__qualname__  # the adapter's wrapper is in place
    held: list[bool] = []
    original = DynamoDBBackend.list_tables

    def list_tables(self: Any, *args: Any, **kwargs: Any) -> Any:
        held.append(adapter_module._DYNAMODB_LOCK.locked())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DynamoDBBackend, "list_tables", list_tables)
    ddb = boto3.client("dynamodb")
    ddb.list_tables()
    deactivate()
    ddb.list_tables()
    assert held == [True, False]  # held while an adapter is active, plain moto otherwise
