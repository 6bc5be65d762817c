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
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import moto
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from facegate.localcloud import adapter as adapter_module
from facegate.localcloud import runtime
from facegate.localcloud.adapter import MOTO_VERSION, Adapter, LocalFunction, activate, deactivate
from facegate.localcloud.cloud import MOTO_CONFIG
from facegate.localcloud.deploy import Stack
from facegate.localcloud.runtime import Container
from facegate.localcloud.template import load_template, translate

REGION = "us-east-1"
ACCOUNT = "123456789012"
ROOT = Path(__file__).resolve().parents[3]
OPERATOR_MFA = {"SerialNumber": f"arn:aws:iam::{ACCOUNT}:mfa/operator", "TokenCode": "123456"}
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


@contextmanager
def local_admin() -> Iterator[Any]:
    """A DynamoDB client with credentials no stack role issued (the account's administrator: not evaluated)."""
    yield boto3.client("dynamodb", aws_access_key_id="admin", aws_secret_access_key="admin")


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
        ({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, "condition key aws:SourceIp"),
        ({"NumericLessThan": {"aws:PrincipalAccount": "1"}}, "condition operator NumericLessThan"),
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


WRITER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/writer"
OTHER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/other"
ONLY_THE_WRITER_PUTS_UNDER_TENANTS = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "OnlyTheWritersPutUnderTenants",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": f"arn:aws:s3:::{BUCKET}/tenants/*",
            "Condition": {"ArnNotLike": {"aws:PrincipalArn": [WRITER_ROLE]}},
        }
    ],
}


def _signed_client(service: str, creds: dict[str, Any]) -> Any:
    """A client of ``service`` signing with an AssumeRole answer's credentials."""
    return boto3.client(
        service,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def _signed_as(role_arn: str, **tags: str) -> Any:
    """An S3 client signing with a session of ``role_arn`` (an AssumeRole by this process's credentials)."""
    creds = boto3.client("sts").assume_role(
        RoleArn=role_arn, RoleSessionName="gaps", Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
    )["Credentials"]
    return _signed_client("s3", creds)


def _refusal(call: Callable[[], Any]) -> dict[str, Any]:
    with pytest.raises(ClientError) as denied:
        call()
    return dict(denied.value.response["Error"]) | {
        "status": denied.value.response["ResponseMetadata"]["HTTPStatusCode"]
    }


def test_plain_moto_ignores_the_principal_so_the_writers_deny_refuses_the_writer_too(plain: None) -> None:
    s3 = _with_policy(ONLY_THE_WRITER_PUTS_UNDER_TENANTS)
    writer = _signed_as(WRITER_ROLE)
    refused = _refusal(lambda: writer.put_object(Bucket=BUCKET, Key="tenants/t1/probes/g1/x.jpg", Body=b"jpeg"))
    assert refused["status"] == 403
    assert refused["Code"] != "AccessDenied"  # an empty 403: moto names no error
    s3.put_object(Bucket=BUCKET, Key="elsewhere/x.jpg", Body=b"jpeg")  # the Resource is matched


def test_adapter_evaluates_the_bucket_policy_for_the_signer(local: Adapter) -> None:
    s3 = _with_policy(ONLY_THE_WRITER_PUTS_UNDER_TENANTS)
    key = "tenants/t1/probes/g1/x.jpg"
    _signed_as(WRITER_ROLE).put_object(Bucket=BUCKET, Key=key, Body=b"jpeg")
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"jpeg"  # a read is not denied

    other = _signed_as(OTHER_ROLE, tenant_id="t1")
    refused = _refusal(lambda: other.put_object(Bucket=BUCKET, Key=key, Body=b"forged"))
    assert refused["status"] == 403
    assert refused["Code"] == "AccessDenied"
    assert refused["Message"].endswith("with an explicit deny in a resource-based policy")
    assert "assumed-role/other/gaps" in refused["Message"]
    # Credentials no role issued are the account itself: a bucket policy's Deny binds it too, as in AWS.
    refused = _refusal(lambda: s3.put_object(Bucket=BUCKET, Key=key, Body=b"forged"))
    assert refused["Code"] == "AccessDenied"
    assert f"arn:aws:iam::{ACCOUNT}:root" in refused["Message"]
    other.put_object(Bucket=BUCKET, Key="elsewhere/x.jpg", Body=b"jpeg")  # outside the Resource
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"jpeg"


# --- 8. IAM for S3 writes ---------------------------------------------------------------------------


UPLOADER_STATEMENTS = (
    {
        "Effect": "Allow",
        "Action": "s3:PutObject",
        "Resource": f"arn:aws:s3:::{BUCKET}/tenants/${{aws:PrincipalTag/tenant_id}}/*",
    },
    {"Effect": "Deny", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{BUCKET}/tenants/*/reports/*"},
)


def test_plain_moto_lets_a_session_put_outside_what_its_role_allows(plain: None) -> None:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    _signed_as(WRITER_ROLE, tenant_id="t1").put_object(Bucket=BUCKET, Key="tenants/t2/probes/g/x.jpg", Body=b"x")


def test_adapter_evaluates_a_stack_roles_policy_for_its_puts(local: Adapter) -> None:
    from facegate.localcloud.adapter import RoleDefinition

    trust = {"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": ["sts:AssumeRole", "sts:TagSession"]}
    local.register_role(RoleDefinition(WRITER_ROLE, UPLOADER_STATEMENTS, (trust,)))
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    uploader = _signed_as(WRITER_ROLE, tenant_id="t1")

    uploader.put_object(Bucket=BUCKET, Key="tenants/t1/probes/g/x.jpg", Body=b"x")
    upload = uploader.create_multipart_upload(Bucket=BUCKET, Key="tenants/t1/probes/g/big.jpg")
    uploader.abort_multipart_upload(Bucket=BUCKET, Key="tenants/t1/probes/g/big.jpg", UploadId=upload["UploadId"])
    for key, why in [
        ("tenants/t2/probes/g/x.jpg", "because no identity-based policy allows the s3:PutObject action"),
        ("tenants/t1*/probes/g/x.jpg", "because no identity-based policy allows the s3:PutObject action"),
        ("tenants/t1/reports/job.json", "with an explicit deny in an identity-based policy"),
    ]:
        refused = _refusal(partial(uploader.put_object, Bucket=BUCKET, Key=key, Body=b"x"))
        assert (refused["status"], refused["Code"]) == (403, "AccessDenied")
        assert refused["Message"].endswith(why), refused["Message"]
    refused = _refusal(lambda: uploader.create_multipart_upload(Bucket=BUCKET, Key="tenants/t2/probes/g/big.jpg"))
    assert refused["Code"] == "AccessDenied"
    copy = {"Bucket": BUCKET, "Key": "tenants/t2/probes/g/c.jpg"}
    refused = _refusal(lambda: uploader.copy_object(**copy, CopySource=f"{BUCKET}/tenants/t1/probes/g/x.jpg"))
    assert refused["Code"] == "AccessDenied"
    # Other credentials are not evaluated against identity policies (the administrator's).
    s3.put_object(Bucket=BUCKET, Key="tenants/t2/probes/g/x.jpg", Body=b"x")


def _s3_as(creds: dict[str, Any]) -> Any:
    return _signed_client("s3", creds)


def test_adapter_keeps_each_tenants_gallery_snapshots_to_its_own_session(local: Adapter) -> None:
    """The real template's tenant data role reads and writes snapshots under its own tag's prefix only:
    another tenant's session is refused whatever key or object version it names (issue 15 item 3)."""
    stack = _tenant_stack(local)
    bucket = stack.refs["ProbeBucket"]
    a, b = _s3_as(_tenant_session(stack, "t-a")), _s3_as(_tenant_session(stack, "t-b"))
    key = "tenants/t-a/snapshots/residents/v3"
    put = a.put_object(Bucket=bucket, Key=key, Body=b"FGS1", ServerSideEncryption="aws:kms")
    assert a.get_object(Bucket=bucket, Key=key, VersionId=put["VersionId"])["Body"].read() == b"FGS1"
    for call in (
        partial(b.get_object, Bucket=bucket, Key=key),
        partial(b.get_object, Bucket=bucket, Key=key, VersionId=put["VersionId"]),
        partial(b.head_object, Bucket=bucket, Key=key),
        partial(b.put_object, Bucket=bucket, Key=key, Body=b"forged"),
        partial(b.delete_object, Bucket=bucket, Key=key, VersionId=put["VersionId"]),
        partial(b.get_object, Bucket=bucket, Key="tenants/t-a/snapshots/../snapshots/residents/v3"),
    ):
        refused = _refusal(call)
        assert refused["status"] == 403, refused
    # Nor outside snapshots/ under its own prefix: probes and reports are not the tenant data role's.
    assert _refusal(partial(a.get_object, Bucket=bucket, Key="tenants/t-a/probes/g/x.jpg"))["status"] == 403
    a.delete_object(Bucket=bucket, Key=key, VersionId=put["VersionId"])
    assert "Versions" not in boto3.client("s3").list_object_versions(Bucket=bucket, Prefix="tenants/t-a/snapshots/")


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


# --- 1 (continued). A function runs in its own container ----------------------------------------------


def test_adapter_lambda_runs_each_handler_in_its_own_environment_only(
    local: Adapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inside a handler os.environ is exactly the function's, nothing of the host's or another function's,
    and boto3's default session signs with that function's credentials, even when invocations overlap."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setenv("HOST_ONLY_CANARY", "leaked")
    seen: dict[str, list[tuple[dict[str, str], str]]] = {"gaps-a": [], "gaps-b": []}
    barrier = threading.Barrier(2, timeout=5)

    def handler_for(name: str) -> Callable[[dict[str, Any], Any], Any]:
        def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
            barrier.wait()  # both invocations are inside their handlers at once
            caller = boto3.client("sts").get_caller_identity()["Arn"]
            seen[name].append((dict(os.environ), caller))
            return {}

        return handler

    for name in seen:
        arn = _create_function(name)
        role = f"arn:aws:iam::{ACCOUNT}:role/{name}-role"
        creds = local.service_credentials(role, name, "lambda.amazonaws.com", REGION)
        env = {"FUNCTION_ONLY": name, "AWS_REGION": REGION, **creds}
        local.register_function(LocalFunction(name, arn, handler_for(name), 128, 3, Container(name, env)))

    with ThreadPoolExecutor(max_workers=2) as pool:
        assert list(pool.map(lambda n: _invoke(n, {}), seen)) == [(None, {}), (None, {})]

    for name, [(env, caller)] in seen.items():
        assert env == local.functions[name].container.env  # type: ignore[union-attr]
        assert env["FUNCTION_ONLY"] == name
        assert "HOST_ONLY_CANARY" not in env
        assert caller == f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}-role/{name}"
    assert os.environ["HOST_ONLY_CANARY"] == "leaked"  # the host's own view is untouched


# --- 6. STS: session tags and trust policies -------------------------------------------------------


def _tenant_stack(adapter: Adapter, name: str = "gaps", edit: Callable[[dict[str, Any]], None] | None = None) -> Stack:
    """The real template's tables, tenant role, operator role and user pool, translated and deployed into moto: what
    the adapter enforces is read from there (``edit`` changes the template first)."""
    template = translate(load_template(ROOT / "template.yaml"), region=REGION)
    keep = {"DataKey", "ProbeBucket", "TenantDataRole", "OperatorRole", "TenantUserPool"} | {
        k for k, v in template["Resources"].items() if v["Type"] == "AWS::DynamoDB::Table"
    }
    sub = {"Resources": {k: v for k, v in template["Resources"].items() if k in keep}}
    sub["Resources"]["TenantUserPool"]["Properties"].pop("LambdaConfig")  # its trigger is not deployed here
    if edit is not None:
        edit(sub)
    stack = Stack(name, sub, root=ROOT, region=REGION, adapter=adapter)
    stack.deploy()
    return stack


def _session(role_arn: str, **kwargs: Any) -> dict[str, Any]:
    creds: dict[str, Any] = boto3.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="gaps-session", **kwargs)[
        "Credentials"
    ]
    return creds


def _tenant_session(stack: Stack, tenant: str) -> dict[str, Any]:
    return _session(stack.attrs["TenantDataRole"]["Arn"], Tags=[{"Key": "tenant_id", "Value": tenant}])


def _dynamodb(creds: dict[str, Any]) -> Any:
    return _signed_client("dynamodb", creds)


def test_plain_moto_sts_keeps_no_session_tags_and_ignores_the_trust_policy(plain: None) -> None:
    from moto.sts.models import sts_backends

    stack = _tenant_stack(Adapter())
    role = stack.attrs["TenantDataRole"]["Arn"]
    # The trust policy requires a tenant_id tag (and MFA for the operators): moto grants both anyway.
    assert _session(role)["AccessKeyId"]
    assert _session(stack.attrs["OperatorRole"]["Arn"])["AccessKeyId"]
    assert _session(f"arn:aws:iam::{ACCOUNT}:role/no-such-role")["AccessKeyId"]
    tagged = _tenant_session(stack, "t-a")
    (assumed,) = [r for r in sts_backends[ACCOUNT]["aws"].assumed_roles if r.access_key_id == tagged["AccessKeyId"]]
    assert not any("tag" in name.lower() for name in vars(assumed))  # the session's tags are gone
    assert _tenant_session(stack, "t-#")["AccessKeyId"]  # STS refuses '#' in a tag value; moto does not


def test_adapter_sts_evaluates_the_trust_policy_and_keeps_the_tags(local: Adapter) -> None:
    stack = _tenant_stack(local)
    role = stack.attrs["TenantDataRole"]["Arn"]
    with pytest.raises(ClientError, match="AccessDenied"):
        _session(role)  # no tenant_id tag
    with pytest.raises(ClientError, match="AccessDenied"):
        _session(role, Tags=[{"Key": "tenant_id", "Value": "t-a"}, {"Key": "admin", "Value": "yes"}])
    with pytest.raises(ClientError, match="ValidationError"):
        _tenant_session(stack, "t-#")
    creds = _tenant_session(stack, "t-a")
    (record,) = local.assume_role_calls
    assert (record.access_key, record.role_arn, dict(record.tags)) == (creds["AccessKeyId"], role, {"tenant_id": "t-a"})

    operator = stack.attrs["OperatorRole"]["Arn"]
    with pytest.raises(ClientError, match="AccessDenied"):
        _session(operator)  # without MFA
    assert _session(operator, **OPERATOR_MFA)["AccessKeyId"]


def test_adapter_sts_evaluates_the_callers_own_policy(local: Adapter) -> None:
    """A session of a stack role may assume another role only where its own policy says so: the operators
    may open a tenant session, a tenant session may not open another one."""
    stack = _tenant_stack(local)
    operator = _session(stack.attrs["OperatorRole"]["Arn"], **OPERATOR_MFA)
    tenant = _tenant_session(stack, "t-a")

    def assume_as(creds: dict[str, Any], tenant_id: str) -> Any:
        sts = boto3.client(
            "sts",
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        )
        role = stack.attrs["TenantDataRole"]["Arn"]
        return sts.assume_role(RoleArn=role, RoleSessionName="x-y", Tags=[{"Key": "tenant_id", "Value": tenant_id}])

    assert assume_as(operator, "t-b")["Credentials"]["AccessKeyId"]
    with pytest.raises(ClientError, match="no identity-based policy"):
        assume_as(tenant, "t-b")


# --- 7. IAM for DynamoDB: the tenant role's own policy, LeadingKeys enforced -----------------------


def _item(**values: str) -> dict[str, Any]:
    return {k: {"N": v} if k == "seq" else {"S": v} for k, v in values.items()}


def _denied(call: Callable[[], Any]) -> str:
    with pytest.raises(ClientError) as refused:
        call()
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    return str(refused.value.response["Error"]["Message"])


def test_plain_moto_lets_a_tenant_session_reach_any_tenants_rows(plain: None) -> None:
    stack = _tenant_stack(Adapter())
    ddb = _dynamodb(_tenant_session(stack, "t-a"))
    galleries, audit, tenants = (f"{stack.name}-{t}" for t in ("galleries", "audit", "tenants"))
    ddb.put_item(TableName=galleries, Item=_item(tenant_id="t-b", gallery_id="g"))  # another tenant's key
    assert ddb.get_item(TableName=galleries, Key=_item(tenant_id="t-b", gallery_id="g"))["Item"]
    ddb.put_item(TableName=audit, Item=_item(tenant_id="t-a", seq="1"))
    ddb.update_item(
        TableName=audit,
        Key=_item(tenant_id="t-a", seq="1"),
        UpdateExpression="SET actor = :a",
        ExpressionAttributeValues={":a": {"S": "rewritten"}},
    )
    ddb.delete_item(TableName=audit, Key=_item(tenant_id="t-a", seq="1"))
    ddb.put_item(TableName=tenants, Item=_item(tenant_id="t-a", status="active"))
    assert ddb.scan(TableName=galleries)["Count"] == 1


def test_adapter_confines_a_tenant_session_to_its_own_partition(local: Adapter) -> None:
    stack = _tenant_stack(local)
    ddb = _dynamodb(_tenant_session(stack, "t-a"))
    galleries = f"{stack.name}-galleries"
    ddb.put_item(TableName=galleries, Item=_item(tenant_id="t-a", gallery_id="g"))
    assert ddb.get_item(TableName=galleries, Key=_item(tenant_id="t-a", gallery_id="g"))["Item"]
    message = _denied(lambda: ddb.get_item(TableName=galleries, Key=_item(tenant_id="t-b", gallery_id="g")))
    assert "dynamodb:GetItem" in message
    assert f"table/{galleries}" in message
    assert "assumed-role/gaps-TenantDataRole/" in message
    _denied(lambda: ddb.put_item(TableName=galleries, Item=_item(tenant_id="t-b", gallery_id="g")))
    _denied(lambda: ddb.put_item(TableName=galleries, Item=_item(tenant_id="t-ab", gallery_id="g")))
    _denied(
        lambda: ddb.query(
            TableName=galleries,
            KeyConditionExpression="#t = :t",
            ExpressionAttributeNames={"#t": "tenant_id"},
            ExpressionAttributeValues={":t": {"S": "t-b"}},
        )
    )
    _denied(lambda: ddb.scan(TableName=galleries))  # never granted (ForAllValues holds with no key at all)
    templates = f"{stack.name}-templates"
    _denied(lambda: ddb.put_item(TableName=templates, Item=_item(tenant_gallery="t-b#g", template_id="s#1")))
    ddb.put_item(TableName=templates, Item=_item(tenant_gallery="t-a#g", template_id="s#1", tenant_subject="t-a#s"))
    denied = [c for c in local.dynamodb_calls if not c.allowed]
    assert [c.operation for c in denied] == ["GetItem", "PutItem", "PutItem", "Query", "Scan", "PutItem"]
    assert all(c.session is not None and c.session.tags == {"tenant_id": "t-a"} for c in denied)


def test_adapter_keeps_the_registry_read_only_and_the_audit_append_only(local: Adapter) -> None:
    stack = _tenant_stack(local)
    ddb = _dynamodb(_tenant_session(stack, "t-a"))
    tenants, audit = f"{stack.name}-tenants", f"{stack.name}-audit"
    ddb.get_item(TableName=tenants, Key=_item(tenant_id="t-a"))
    _denied(lambda: ddb.put_item(TableName=tenants, Item=_item(tenant_id="t-a", status="active")))
    _denied(
        lambda: ddb.update_item(
            TableName=tenants,
            Key=_item(tenant_id="t-a"),
            UpdateExpression="SET #s = :s",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": "active"}},
        )
    )
    _denied(lambda: ddb.delete_item(TableName=tenants, Key=_item(tenant_id="t-a")))
    ddb.put_item(
        TableName=audit,
        Item=_item(tenant_id="t-a", seq="1", actor="a"),
        ConditionExpression="attribute_not_exists(seq)",
    )
    _denied(
        lambda: ddb.update_item(
            TableName=audit,
            Key=_item(tenant_id="t-a", seq="1"),
            UpdateExpression="SET actor = :a",
            ExpressionAttributeValues={":a": {"S": "rewritten"}},
        )
    )
    _denied(lambda: ddb.delete_item(TableName=audit, Key=_item(tenant_id="t-a", seq="1")))
    _denied(
        lambda: ddb.batch_write_item(
            RequestItems={audit: [{"DeleteRequest": {"Key": _item(tenant_id="t-a", seq="1")}}]}
        )
    )


def test_adapter_authorizes_every_item_of_a_transaction(local: Adapter) -> None:
    stack = _tenant_stack(local)
    ddb = _dynamodb(_tenant_session(stack, "t-a"))
    galleries, audit = f"{stack.name}-galleries", f"{stack.name}-audit"
    own = [
        {"Put": {"TableName": audit, "Item": _item(tenant_id="t-a", seq="1")}},
        {"Put": {"TableName": galleries, "Item": _item(tenant_id="t-a", gallery_id="g")}},
    ]
    ddb.transact_write_items(TransactItems=own)
    foreign = {"Put": {"TableName": galleries, "Item": _item(tenant_id="t-b", gallery_id="g")}}
    next_entry = {"Put": {"TableName": audit, "Item": _item(tenant_id="t-a", seq="2")}}
    message = _denied(lambda: ddb.transact_write_items(TransactItems=[next_entry, foreign]))
    assert "dynamodb:PutItem" in message
    rewrite = {
        "Update": {
            "TableName": audit,
            "Key": _item(tenant_id="t-a", seq="1"),
            "UpdateExpression": "SET actor = :a",
            "ExpressionAttributeValues": {":a": {"S": "x"}},
        }
    }
    assert "dynamodb:UpdateItem" in _denied(lambda: ddb.transact_write_items(TransactItems=[next_entry, rewrite]))
    with local_admin() as admin:  # nothing of the refused transactions was written
        assert admin.get_item(TableName=audit, Key=_item(tenant_id="t-a", seq="2")).get("Item") is None
        assert admin.get_item(TableName=galleries, Key=_item(tenant_id="t-b", gallery_id="g")).get("Item") is None
    (refused_call, rewrite_call) = [c for c in local.dynamodb_calls if not c.allowed]
    assert [c.action for c in refused_call.checks] == ["dynamodb:PutItem", "dynamodb:PutItem"]
    assert refused_call.leading_keys == {"t-a", "t-b"}
    assert [c.action for c in rewrite_call.checks] == ["dynamodb:PutItem", "dynamodb:UpdateItem"]


def test_adapter_confines_index_queries_but_not_index_attributes_of_writes(local: Adapter) -> None:
    """IAM reads LeadingKeys from the request's key: for an index Query the index's partition key, so a
    query for another tenant's subject is refused. A written item's index attribute is no key, so an item
    in the caller's own partition may name another tenant's subject (IAM allows it, as in AWS); that
    tenant's index query then finds it, which is why the store filters what index reads return."""
    stack = _tenant_stack(local)
    templates = f"{stack.name}-templates"
    a, b = _dynamodb(_tenant_session(stack, "t-a")), _dynamodb(_tenant_session(stack, "t-b"))

    def by_subject(ddb: Any, key: str) -> Any:
        return ddb.query(
            TableName=templates,
            IndexName="by_subject",
            KeyConditionExpression="#s = :s",
            ExpressionAttributeNames={"#s": "tenant_subject"},
            ExpressionAttributeValues={":s": {"S": key}},
        )

    a.put_item(TableName=templates, Item=_item(tenant_gallery="t-a#g", template_id="s#1", tenant_subject="t-b#s"))
    assert by_subject(a, "t-a#s")["Count"] == 0
    assert "index/by_subject" in _denied(lambda: by_subject(a, "t-b#s"))
    assert by_subject(b, "t-b#s")["Count"] == 1  # A's item, in B's index partition


def test_adapter_gives_the_operators_the_registry_and_audit_appends_only(local: Adapter) -> None:
    stack = _tenant_stack(local)
    ddb = _dynamodb(_session(stack.attrs["OperatorRole"]["Arn"], **OPERATOR_MFA))
    tenants, audit, galleries = (f"{stack.name}-{t}" for t in ("tenants", "audit", "galleries"))
    ddb.put_item(TableName=tenants, Item=_item(tenant_id="t-a", status="active"))
    ddb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": audit, "Item": _item(tenant_id="t-b", seq="1")}},
            {
                "Update": {
                    "TableName": tenants,
                    "Key": _item(tenant_id="t-a"),
                    "UpdateExpression": "SET #s = :s",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": {":s": {"S": "suspended"}},
                }
            },
        ]
    )
    _denied(lambda: ddb.delete_item(TableName=audit, Key=_item(tenant_id="t-b", seq="1")))
    _denied(lambda: ddb.get_item(TableName=galleries, Key=_item(tenant_id="t-a", gallery_id="g")))


def test_adapter_enforces_what_the_template_says_not_a_restatement(local: Adapter) -> None:
    """The same check against a template whose tenant role may also update audit entries: allowed."""

    def audit_updatable(template: dict[str, Any]) -> None:
        policy = template["Resources"]["TenantDataRole"]["Properties"]["Policies"][0]["PolicyDocument"]
        (statement,) = [s for s in policy["Statement"] if s.get("Sid") == "AuditAppendOnly"]
        statement["Action"] = [*statement["Action"], "dynamodb:UpdateItem"]

    stack = _tenant_stack(local, "edited", edit=audit_updatable)
    ddb = _dynamodb(_tenant_session(stack, "t-a"))
    ddb.update_item(
        TableName=f"{stack.name}-audit",
        Key=_item(tenant_id="t-a", seq="1"),
        UpdateExpression="SET actor = :a",
        ExpressionAttributeValues={":a": {"S": "rewritten"}},
    )


def test_adapter_refuses_credentials_a_container_does_not_hold(local: Adapter) -> None:
    """Inside a function only its own credentials (and the sessions it assumed) sign: a connection
    another container (or the host) made cannot be borrowed, as separate Lambda processes could not."""
    stack = _tenant_stack(local)
    borrowed = _dynamodb(_tenant_session(stack, "t-a"))  # the host's session
    creds = local.service_credentials(stack.attrs["OperatorRole"]["Arn"], "fn", "lambda.amazonaws.com", REGION)
    with runtime.inside(Container("gaps-fn", {"AWS_REGION": REGION, **creds})):
        message = _denied(
            lambda: borrowed.get_item(TableName=f"{stack.name}-galleries", Key=_item(tenant_id="t-a", gallery_id="g"))
        )
    assert "gaps-fn holds no credentials" in message


# --- gap 9: StartSyncExecution ---------------------------------------------------------------------------


def _express(sfn: Any, name: str, kind: str = "EXPRESS") -> str:
    asl = {"StartAt": "Answer", "States": {"Answer": {"Type": "Pass", "Result": {"answer": 42}, "End": True}}}
    arn: str = sfn.create_state_machine(name=name, definition=json.dumps(asl), roleArn=FAKE_ROLE, type=kind)[
        "stateMachineArn"
    ]
    return arn


def test_plain_moto_does_not_implement_start_sync_execution(plain: None) -> None:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    with pytest.raises(ClientError, match="Not yet implemented"):
        sfn.start_sync_execution(stateMachineArn=_express(sfn, "sync-plain"), input="{}")


def test_adapter_runs_an_express_execution_to_its_end_in_one_call(local: Adapter) -> None:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    answer = sfn.start_sync_execution(stateMachineArn=_express(sfn, "sync-local"), name="one", input="{}")
    assert answer["status"] == "SUCCEEDED"
    assert json.loads(answer["output"]) == {"answer": 42}
    assert answer["stopDate"] >= answer["startDate"]
    with pytest.raises(ClientError, match="not supported by this type of state machine"):
        sfn.start_sync_execution(stateMachineArn=_express(sfn, "sync-standard", "STANDARD"), input="{}")


# --- 10. Cognito: the pre-token-generation trigger and the client-credentials grant --------------------


def _pool_with_trigger(function_arn: str) -> tuple[str, str]:
    idp = boto3.client("cognito-idp")
    pool = idp.create_user_pool(
        PoolName="gaps",
        UserPoolTier="ESSENTIALS",
        Schema=[{"Name": "tenant_id", "AttributeDataType": "String", "Mutable": False}],
        LambdaConfig={"PreTokenGenerationConfig": {"LambdaArn": function_arn, "LambdaVersion": "V3_0"}},
    )["UserPool"]["Id"]
    client = idp.create_user_pool_client(
        UserPoolId=pool, ClientName="people", ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH"]
    )["UserPoolClient"]["ClientId"]
    idp.admin_create_user(
        UserPoolId=pool,
        Username="officer",
        UserAttributes=[{"Name": "custom:tenant_id", "Value": "hmp-gaps"}],
        MessageAction="SUPPRESS",
    )
    idp.admin_set_user_password(UserPoolId=pool, Username="officer", Password="Gaps-password-123", Permanent=True)
    return pool, client


def _access_claims(pool: str, client: str) -> dict[str, Any]:
    import base64

    token = boto3.client("cognito-idp").admin_initiate_auth(
        UserPoolId=pool,
        ClientId=client,
        AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": "officer", "PASSWORD": "Gaps-password-123"},
    )["AuthenticationResult"]["AccessToken"]
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def test_plain_moto_cognito_runs_no_token_trigger(plain: None) -> None:
    arn = _create_function("gaps-trigger")
    claims = _access_claims(*_pool_with_trigger(arn))
    assert "custom:tenant_id" not in claims
    assert claims["scope"] == "aws.cognito.signin.user.admin"


def test_adapter_cognito_runs_the_token_trigger_and_applies_its_answer(local: Adapter) -> None:
    arn = _create_function("gaps-trigger")
    events: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        events.append(event)
        if event["request"]["userAttributes"].get("custom:tenant_id") == "refused":
            raise RuntimeError("no token for you")
        event["response"] = {
            "claimsAndScopeOverrideDetails": {
                "accessTokenGeneration": {
                    "claimsToAddOrOverride": {
                        "custom:tenant_id": event["request"]["userAttributes"]["custom:tenant_id"]
                    },
                    "scopesToAdd": ["facegate/api"],
                    "scopesToSuppress": ["aws.cognito.signin.user.admin"],
                }
            }
        }
        return event

    local.register_function(LocalFunction("gaps-trigger", arn, handler, 128, 3))
    pool, client = _pool_with_trigger(arn)
    claims = _access_claims(pool, client)
    assert claims["custom:tenant_id"] == "hmp-gaps"
    assert claims["scope"] == "facegate/api"
    (event,) = events
    assert (event["version"], event["triggerSource"]) == ("3", "TokenGeneration_Authentication")
    assert event["callerContext"]["clientId"] == client

    idp = boto3.client("cognito-idp")
    idp.admin_create_user(
        UserPoolId=pool, Username="refused", UserAttributes=[{"Name": "custom:tenant_id", "Value": "refused"}],
        MessageAction="SUPPRESS",
    )  # fmt: skip
    idp.admin_set_user_password(UserPoolId=pool, Username="refused", Password="Gaps-password-123", Permanent=True)
    with pytest.raises(ClientError) as refused:  # a failing trigger refuses the sign-in, as Cognito does
        idp.admin_initiate_auth(
            UserPoolId=pool, ClientId=client, AuthFlow="ADMIN_USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": "refused", "PASSWORD": "Gaps-password-123"},
        )  # fmt: skip
    assert refused.value.response["Error"]["Code"] == "UserLambdaValidationException"


def test_adapter_cognito_trigger_may_not_override_reserved_claims(local: Adapter) -> None:
    from facegate.localcloud.cognito import apply

    with pytest.raises(Exception, match="cannot be overridden"):
        apply({"sub": "u", "scope": ""}, {"claimsToAddOrOverride": {"sub": "someone-else"}})
    with pytest.raises(Exception, match="cannot be overridden"):
        apply({"sub": "u", "scope": ""}, {"claimsToAddOrOverride": {"cognito:groups": ["admins"]}})
    assert apply({"sub": "u", "scope": "a b"}, {"scopesToSuppress": ["a"], "claimsToSuppress": ["sub"]}) == {
        "sub": "u",  # a reserved claim is never suppressed either
        "scope": "b",
    }


def test_adapter_drops_the_metrics_the_local_stand_in_disables(
    local: Adapter, capsys: pytest.CaptureFixture[str]
) -> None:
    """With POWERTOOLS_METRICS_DISABLED (the local cloud's stand-in) Powertools neither prints nor clears
    a handler's metrics at the end of an invocation, and prints the set when one metric reaches 100
    values: a stray EMF line on whatever stdout is current (it broke a CLI test's JSON). Each invocation
    ends with the set dropped, as a flush would."""
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.metrics import MetricUnit

    metrics = Metrics(namespace="gaps", service="gaps")

    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        metrics.add_metric(name="Calls", unit=MetricUnit.Count, value=1)
        return {"ok": True}

    arn = _create_function("gaps-metrics")
    container = Container("gaps-metrics", {"POWERTOOLS_METRICS_DISABLED": "true", "AWS_REGION": REGION})
    local.register_function(LocalFunction("gaps-metrics", arn, handler, 128, 3, container))
    capsys.readouterr()
    for _ in range(120):
        assert _invoke("gaps-metrics", {}) == (None, {"ok": True})
    assert "CloudWatchMetrics" not in capsys.readouterr().out
    assert Metrics._metrics == {}
