"""The local cloud: moto in-process, the real template deployed, the real ASL executed, the real
handlers run for the Lambda tasks, S3 → EventBridge → Step Functions delivered. No Docker, no account.

    with LocalCloud() as cloud:
        ref = cloud.put_probe("hmp-northfield", "staff-access", jpeg, operation="search", purpose="...")
        run = cloud.wait_for(cloud.execution_for(ref))
        print(run.status, run.path)
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from facegate.localcloud.adapter import Adapter, activate, deactivate
from facegate.localcloud.deploy import ACCOUNT, Stack
from facegate.localcloud.template import load_template, translate
from facegate.tenancy import TenantContext
from facegate.workflow.models import ObjectRef, WorkflowRequest

REGION: Final = "us-east-1"
MOTO_CONFIG: Final = {
    "lambda": {"use_docker": False},
    "batch": {"use_docker": False},
    "stepfunctions": {"execute_state_machine": True},
}
LOCAL_STAND_INS: Final = {
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
}
"""The only variables a function sees here that neither its template nor Lambda's runtime sets: there
is no X-Ray daemon to trace to and no CloudWatch to receive the metrics' log lines."""
ADMIN_CREDENTIALS: Final = ("local-admin", "local-admin")
"""The account's administrator (the deployer; an intruder in tests): its requests are not evaluated."""
OPERATOR_MFA: Final = (f"arn:aws:iam::{ACCOUNT}:mfa/local-operator", "000000")
_ENDPOINT_VARIABLES: Final = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_S3")


def _run_batch_job(argv: list[str], environment: dict[str, str]) -> int:
    """The bulk job's real entrypoint, on this machine's CPU (the adapter runs it in the job's container)."""
    from facegate.batch import main

    return main(argv)


def _run_independent_test_job(argv: list[str], environment: dict[str, str]) -> int:
    """The independent-test job's real entrypoint, on this machine's CPU, under the job role's credentials."""
    from facegate.sandbox.job import main

    return main(argv)


def repo_root() -> Path:
    """The source tree holding template.yaml: the working directory or one of its parents."""
    here = Path.cwd().resolve()
    for candidate in (here, *here.parents):
        if (candidate / "template.yaml").is_file() and (candidate / "functions").is_dir():
            return candidate
    raise FileNotFoundError("template.yaml not found here or above: run from the facegate source tree")


@dataclass(frozen=True)
class Execution:
    arn: str
    status: str
    path: list[str]
    output: Any
    error: str | None
    cause: str | None


class LocalCloud:
    """The stack deployed into moto, and this process as the account's operator.

    After :meth:`start` this process signs as an ``OperatorRole`` session (assumed with MFA, as its trust
    policy requires): registry writes and audited approvals run as the operators' role, with what that
    role may do and nothing more. What this process does for one tenant goes through
    :func:`facegate.store.scope.tenant_scope` (``FACEGATE_TENANT_ROLE_ARN`` is set to the stack's
    ``TenantDataRole``), as an operator's tool would; :meth:`admin` signs as the account's administrator,
    whose requests are not evaluated (to inspect or tamper with tables in tests). ``log_level`` overrides
    the template's ``POWERTOOLS_LOG_LEVEL`` in every function (``None``: the template's).
    """

    def __init__(
        self,
        *,
        root: Path | None = None,
        stack_name: str = "facegate",
        log_level: str | None = None,
        presign_endpoint: str | None = None,
    ) -> None:
        self.root = root or repo_root()
        self.stack_name = stack_name
        self.log_level = log_level
        self.presign_endpoint = presign_endpoint
        """Where the API's presigned upload URLs point (``facegate local serve``: its moto endpoint, which
        other processes reach); ``None``: S3's own endpoint, as deployed."""
        self.adapter = Adapter()
        self._mock: Any = None
        self._saved_env: dict[str, str] = {}
        self.stack: Stack | None = None
        self.outputs: dict[str, Any] = {}
        self.api: Any = None
        self.operator_arn: str | None = None
        self._uploaders: dict[str, Any] = {}

    # --- lifecycle --------------------------------------------------------------------------------

    def __enter__(self) -> LocalCloud:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        import boto3
        from moto import mock_aws

        from facegate.models import default_model_dir
        from facegate.settings import Settings
        from facegate.store.models import configure

        self._saved_env = dict(os.environ)
        for name in _ENDPOINT_VARIABLES:  # in-process moto intercepts AWS's own endpoints only
            os.environ.pop(name, None)
        os.environ.update(
            {
                "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION,
                "FACEGATE_TABLE_PREFIX": self.stack_name,
            }
        )
        self._mock = mock_aws(config=MOTO_CONFIG)  # type: ignore[call-overload]
        self._mock.start()
        activate(self.adapter)
        template = translate(load_template(self.root / "template.yaml"), region=REGION)
        self.adapter.batch_entrypoints["python -m facegate.batch"] = _run_batch_job
        self.adapter.batch_entrypoints["python -m facegate.sandbox"] = _run_independent_test_job
        key, secret = ADMIN_CREDENTIALS
        self.stack = Stack(
            self.stack_name,
            template,
            root=self.root,
            region=REGION,
            adapter=self.adapter,
            parameters=self._account_network(),
            local_env={
                **LOCAL_STAND_INS,
                **({"POWERTOOLS_LOG_LEVEL": self.log_level} if self.log_level else {}),
                **({"FACEGATE_PRESIGN_ENDPOINT": self.presign_endpoint} if self.presign_endpoint else {}),
            },
            image_paths={"/opt/models": str(default_model_dir())},  # functions/Dockerfile builds them there
            session=boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret, region_name=REGION),
        )
        self.stack.deploy()
        self.outputs = self.stack.outputs()
        self._become_the_operator()
        configure(Settings.from_env())  # this process (operator tools, the demo) uses the same tables

    def _become_the_operator(self) -> None:
        """Sign this process's requests as an OperatorRole session, and name the tenant role for its scopes."""
        import boto3

        serial, code = OPERATOR_MFA
        assumed = self.client("sts").assume_role(
            RoleArn=self.outputs["OperatorRoleArn"],
            RoleSessionName="local-operator",
            SerialNumber=serial,
            TokenCode=code,
        )
        creds = assumed["Credentials"]
        os.environ.update(
            {
                "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
                "AWS_SESSION_TOKEN": creds["SessionToken"],
                "FACEGATE_TENANT_ROLE_ARN": self.outputs["TenantDataRoleArn"],
            }
        )
        boto3.DEFAULT_SESSION = None  # botocore caches credentials on a session: start one as the operator
        self.operator_arn = str(assumed["AssumedRoleUser"]["Arn"])

    @contextmanager
    def admin(self) -> Iterator[None]:
        """This process's table requests signed as the account's administrator (never evaluated): for
        tests that inspect tables or play an intruder with write access to them."""
        from facegate.store.scope import signed_with

        key, secret = ADMIN_CREDENTIALS
        with signed_with(key, secret):
            yield

    def _account_network(self) -> dict[str, str]:
        """What a deployer brings to ``sam deploy``: a subnet and a security group for the GPU instances,
        and the bulk job's image (which the local cloud runs in-process instead)."""
        import boto3

        ec2 = boto3.client("ec2", region_name=REGION)
        vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.1.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(GroupName="facegate-batch", Description="bulk job", VpcId=vpc)["GroupId"]
        return {
            "BatchSubnetIds": subnet,
            "BatchSecurityGroupIds": group,
            "BatchImageUri": "000000000000.dkr.ecr.us-east-1.amazonaws.com/facegate-batch:local",
        }

    def serve_api(self, port: int = 0) -> str:
        """Serve the tenant API on loopback (its routes from the deployed API's body); returns its URL."""
        from facegate.localcloud.api_server import LocalApi

        if self.api is None:
            self.api = LocalApi(self)
            self.api.start(port)
            self.outputs["TokenUrl"] = self.api.token_url  # the user pool domain's endpoint, served here
        return str(self.api.url)

    def issue_token(self, tenant_id: str, username: str) -> str:
        """An operator creates a tenant user (``custom:tenant_id`` set by the operator, never by the user)
        and signs in as it: the access token the SDK presents to the API (the pool's trigger put the
        tenant claim and the API's scope on it)."""
        return self.sign_in(tenant_id, username, f"Local-{uuid.uuid4().hex}")["AccessToken"]

    def machine_client(self, tenant_id: str, name: str) -> dict[str, str]:
        """An operator creates a machine client of ``tenant_id`` (``facegate operator clients create``):
        ``FACEGATE_CLIENT_ID``, ``FACEGATE_CLIENT_SECRET`` and ``FACEGATE_TOKEN_URL`` (served by the local API)."""
        from facegate.operator_cli import create_machine_client
        from facegate.service.operators import Operators

        self.serve_api()
        client, secret = create_machine_client(  # as the operator (its role's policy is what is evaluated)
            self.client("cognito-idp"), self.outputs["UserPoolId"], Operators(), str(self.operator_arn), tenant_id, name
        )
        return {
            "FACEGATE_CLIENT_ID": client.client_id,
            "FACEGATE_CLIENT_SECRET": secret,
            "FACEGATE_TOKEN_URL": str(self.outputs["TokenUrl"]),
        }

    def sign_in(self, tenant_id: str, username: str, password: str) -> dict[str, str]:
        """Create the tenant user with ``password`` and sign in with SRP: ``AccessToken`` and ``RefreshToken``.
        (moto never checks an SRP password claim: the local stack is not a security boundary.)"""
        from facegate_sdk.auth import CognitoSession

        idp = self.client("cognito-idp")
        pool, client = self.outputs["UserPoolId"], self.outputs["UserPoolClientId"]
        idp.admin_create_user(
            UserPoolId=pool,
            Username=username,
            UserAttributes=[{"Name": "custom:tenant_id", "Value": tenant_id}],
            MessageAction="SUPPRESS",
        )
        idp.admin_set_user_password(UserPoolId=pool, Username=username, Password=password, Permanent=True)
        # As a person signs in, with the flow the deployed app client allows (SRP, not an admin flow).
        session = CognitoSession.sign_in(username, password, user_pool_id=pool, client_id=client, region=REGION)
        return {"AccessToken": session.token(), "RefreshToken": session.refresh_token}

    def stop(self) -> None:
        self._uploaders.clear()
        if self.api is not None:
            self.api.stop()
            self.api = None
        deactivate()
        if self._mock is not None:
            self._mock.stop()
            self._mock = None
        os.environ.clear()
        os.environ.update(self._saved_env)

    # --- clients ----------------------------------------------------------------------------------

    def client(self, service: str) -> Any:
        if self.stack is None:
            raise RuntimeError("the local cloud is not started")
        return self.stack.client(service)

    @property
    def bucket(self) -> str:
        return str(self.outputs["ProbeBucketName"])

    def function_name(self, logical: str) -> str:
        assert self.stack is not None
        return str(self.stack.refs[logical])

    # --- S3 and workflows -------------------------------------------------------------------------

    def uploader(self, tenant_id: str) -> Any:
        """An S3 client signed as ``tenant_id``'s system: a ``TenantUploaderRole`` session tagged with the
        tenant, assumed once per tenant by a principal of the account (as a tenant system's own role would)."""
        import boto3

        if tenant_id not in self._uploaders:
            creds = self.uploader_credentials(tenant_id)
            self._uploaders[tenant_id] = boto3.session.Session(
                aws_access_key_id=creds["AccessKeyId"],
                aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds["SessionToken"],
                region_name=REGION,
            ).client("s3")
        return self._uploaders[tenant_id]

    def uploader_credentials(self, tenant_id: str) -> dict[str, Any]:
        """A ``TenantUploaderRole`` session tagged with ``tenant_id`` (STS's ``Credentials``)."""
        creds: dict[str, Any] = self.client("sts").assume_role(
            RoleArn=self.outputs["TenantUploaderRoleArn"],
            RoleSessionName=f"uploader-{tenant_id}"[:64],
            Tags=[{"Key": "tenant_id", "Value": tenant_id}],
        )["Credentials"]
        return creds

    def put_object(self, key: str, data: bytes, metadata: dict[str, str] | None = None) -> ObjectRef:
        """Upload as a tenant system would (under ``tenants/<tenant>/``, through that tenant's uploader
        session: the bucket refuses any other writer there); the bucket's EventBridge notification fires
        on the way. A key outside ``tenants/`` is written by the account's administrator."""
        segments = key.split("/")
        tenant = segments[1] if len(segments) > 2 and segments[0] == "tenants" else ""
        s3 = self.uploader(tenant) if tenant else self.client("s3")
        put = s3.put_object(Bucket=self.bucket, Key=key, Body=data, Metadata=metadata or {})
        return ObjectRef(bucket=self.bucket, key=key, version_id=put.get("VersionId"))

    def put_probe(self, tenant: str, gallery: str, data: bytes, name: str | None = None, **metadata: str) -> ObjectRef:
        """A probe under ``tenants/<tenant>/probes/<gallery>/``; metadata keys use '-' for '_'."""
        key = f"tenants/{tenant}/probes/{gallery}/{name or uuid.uuid4().hex + '.jpg'}"
        return self.put_object(key, data, {k.replace("_", "-"): str(v) for k, v in metadata.items()})

    def state_machine_arn(self, output: str) -> str:
        return str(self.outputs[output])

    def start_execution(self, output: str, payload: dict[str, Any], name: str | None = None) -> str:
        """Start a workflow directly (as the API does for Enrol), always with a unique name."""
        name = name or f"{payload.get('request_id', 'run')}-{uuid.uuid4().hex[:8]}"
        arn: str = self.client("stepfunctions").start_execution(
            stateMachineArn=self.state_machine_arn(output), name=name[:80], input=json.dumps(payload)
        )["executionArn"]
        return arn

    def start_enrolment(
        self, ctx: TenantContext, gallery_id: str, subject_id: str, consent_id: str, image: bytes | Sequence[bytes]
    ) -> str:
        """Upload an enrolment photo (or several of one person) under the tenant's ``uploads/`` and start
        Enrol for it (what the API's ``POST /enrolments`` does); returns the execution ARN."""
        photos = [image] if isinstance(image, bytes) else list(image)
        refs = [self.put_object(f"tenants/{ctx.tenant_id}/uploads/{gallery_id}/{uuid.uuid4().hex}", p) for p in photos]
        request = WorkflowRequest.for_upload(
            ctx, refs, "enrol", gallery_id, subject_id=subject_id, consent_id=consent_id
        )
        return self.start_execution("EnrolStateMachineArn", request.model_dump(mode="json"))

    def executions_for(self, ref: ObjectRef) -> list[str]:
        """The executions the upload's event started (a duplicated event starts a second one)."""
        sfn = self.client("stepfunctions")
        found = []
        for arn in list(self.adapter.executions_started):
            detail = json.loads(sfn.describe_execution(executionArn=arn)["input"]).get("detail", {})
            obj = detail.get("object", {})
            if obj.get("key") == ref.key and obj.get("version-id") == ref.version_id:
                found.append(arn)
        return found

    def execution_for(self, ref: ObjectRef, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.executions_for(ref)
            if found:
                return found[0]
            time.sleep(0.05)
        raise TimeoutError(f"no execution started for s3://{ref.bucket}/{ref.key}: is the rule's pattern right?")

    def wait_for(self, execution_arn: str, timeout: float = 120.0) -> Execution:
        sfn = self.client("stepfunctions")
        deadline = time.monotonic() + timeout
        while True:
            desc = sfn.describe_execution(executionArn=execution_arn)
            if desc["status"] != "RUNNING":
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{execution_arn} still running after {timeout} s")
            time.sleep(0.05)
        output = json.loads(desc["output"]) if desc.get("output") else None
        return Execution(
            execution_arn, desc["status"], self.path(execution_arn), output, desc.get("error"), desc.get("cause")
        )

    def path(self, execution_arn: str) -> list[str]:
        """The states the execution entered, in order."""
        events = self.client("stepfunctions").get_execution_history(executionArn=execution_arn, maxResults=1000)[
            "events"
        ]
        return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]

    def object_exists(self, ref: ObjectRef) -> bool:
        try:
            self.client("s3").head_object(**ref.s3_args())
        except self.client("s3").exceptions.ClientError:
            return False
        return True
