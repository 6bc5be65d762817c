"""``facegate local serve``: the local cloud as a long-lived stack on loopback, for other processes.

The stack is the local cloud's (:class:`~facegate.localcloud.cloud.LocalCloud`: the real template
deployed into moto, the real handlers, the adapter's gap-fillers); here it is also served:

- **moto's endpoint** (``AWS_ENDPOINT_URL``): moto in server mode in this process, on the same state,
  so boto3, the AWS CLI or the operator CLI in another process reach its S3, DynamoDB, Step Functions,
  STS, Cognito and CloudFormation. The adapter's gap-fillers are moto's own methods patched in this
  process, so they serve those requests too: an ``aws s3 cp`` under a tenant's probe prefix fires the
  bucket's EventBridge notification and starts Recognize; a Lambda ``Invoke`` runs the real handler;
  IAM is evaluated for the session that signed each request.
- **the tenant API** (``FACEGATE_API_URL``): the deployed API's routes on loopback, behind the user
  pool's token check.
- **a CloudFormation stack** named as the stack, holding its outputs (and nothing else), so the
  operator CLI finds the tables, roles and user pool exactly as on AWS (``describe_stacks``).
- **a seeded demo tenant** (``demo``, approved for access control in a closed facility) with a user
  and an uploader session, unless ``--no-seed``.

Everything lives in this process's memory and is lost when it stops.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from facegate.localcloud.cloud import REGION, LocalCloud
from facegate.tenancy import TenantContext

SEED: Final = TenantContext(tenant_id="demo", actor="demo-user")
SEED_REGISTRATION: Final = {"name": "Demo facility", "sector": "private", "country": "GB", "jurisdiction": "GB-ENG"}
SEED_PASSWORD: Final = "Demo-password-1"
"""The seeded user's password (a local stack on loopback; printed with the rest)."""
HOST: Final = "127.0.0.1"


@dataclass
class LocalServer:
    """The local cloud served on loopback. ``start`` returns when every endpoint answers."""

    aws_port: int = 4566
    api_port: int = 8787
    seed: bool = True
    cloud: LocalCloud = field(default_factory=LocalCloud)
    _moto: Any = None
    tenant_env: dict[str, str] = field(default_factory=dict)
    operator_env: dict[str, str] = field(default_factory=dict)
    aws_endpoint: str = ""
    api_url: str = ""

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        # The same state as the in-process mock (moto's documented combination): requests from other
        # processes reach the deployed stack, and the adapter's patched methods serve them. Started first,
        # so the API's presigned upload URLs can name its endpoint.
        self._moto = ThreadedMotoServer(ip_address=HOST, port=self.aws_port, verbose=False)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.aws_endpoint = f"http://{host}:{port}"
        self.cloud.presign_endpoint = self.aws_endpoint
        self.cloud.start()
        self.api_url = self.cloud.serve_api(self.api_port)
        self._publish_outputs()
        common = {
            "AWS_ENDPOINT_URL": self.aws_endpoint,
            # The SDK sends a refresh token only to Cognito's own endpoint variable, never the general one.
            "AWS_ENDPOINT_URL_COGNITO_IDP": self.aws_endpoint,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
        }
        self.operator_env = {
            **common,
            **{k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")},
            "FACEGATE_STACK": self.cloud.stack_name,
        }
        self.tenant_env = {
            **common,
            "FACEGATE_API_URL": self.api_url,
            "FACEGATE_PROBE_BUCKET": self.cloud.bucket,
            "FACEGATE_USER_POOL_ID": str(self.cloud.outputs["UserPoolId"]),
            "FACEGATE_USER_POOL_CLIENT_ID": str(self.cloud.outputs["UserPoolClientId"]),
        }
        self.machine_env: dict[str, str] = {}
        if self.seed:
            self.tenant_env.update(self._seed())
            # A checkpoint system of the demo tenant: client credentials at the token endpoint served here.
            self.machine_env = {
                **common,
                "FACEGATE_API_URL": self.api_url,
                **self.cloud.machine_client(SEED.tenant_id, "demo-checkpoint"),
            }

    def _publish_outputs(self) -> None:
        """A CloudFormation stack in moto that holds the deployed stack's outputs as literal values (its
        one resource is CloudFormation's no-op), so ``describe_stacks`` answers as AWS would."""
        template = {
            "Resources": {"LocalStack": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
            "Outputs": {k: {"Value": str(v)} for k, v in self.cloud.outputs.items()},
        }
        with warnings.catch_warnings():  # moto parses the no-op handle as an unsupported resource
            warnings.simplefilter("ignore")
            with self.cloud.admin():
                self.cloud.client("cloudformation").create_stack(
                    StackName=self.cloud.stack_name, TemplateBody=json.dumps(template)
                )

    def _seed(self) -> dict[str, str]:
        """The demo tenant, registered and approved by the operator (audited), its user and its uploader."""
        from facegate.service.operators import Operators

        operator = str(self.cloud.operator_arn)
        service = Operators()
        service.register_tenant(operator, SEED.tenant_id, **SEED_REGISTRATION)
        service.approve_use_case(
            operator,
            SEED.tenant_id,
            use_case="access_control",
            deployment="closed_facility",
            expires_at=datetime.now(UTC) + timedelta(days=365),
        )
        tokens = self.cloud.sign_in(SEED.tenant_id, SEED.actor, SEED_PASSWORD)
        uploader = self.cloud.uploader_credentials(SEED.tenant_id)
        return {
            "FACEGATE_TOKEN": tokens["AccessToken"],
            "FACEGATE_REFRESH_TOKEN": tokens["RefreshToken"],
            "FACEGATE_TENANT": SEED.tenant_id,
            "FACEGATE_USERNAME": SEED.actor,
            "AWS_ACCESS_KEY_ID": uploader["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": uploader["SecretAccessKey"],
            "AWS_SESSION_TOKEN": uploader["SessionToken"],
        }

    def function_environments(self) -> dict[str, dict[str, str]]:
        """Each function's variables as deployed here, by logical id (``sam local invoke --env-vars``):
        SAM overrides only the variables the template declares for a function."""
        assert self.cloud.stack is not None
        out: dict[str, dict[str, str]] = {}
        lam = self.cloud.client("lambda")
        for logical, resource in self.cloud.stack.template["Resources"].items():
            if resource["Type"] != "AWS::Lambda::Function":
                continue
            config = lam.get_function_configuration(FunctionName=self.cloud.function_name(logical))
            out[logical] = dict((config.get("Environment") or {}).get("Variables") or {})
        return out

    def write(self, folder: Path | None, env_vars: Path | None) -> None:
        if env_vars is not None:
            env_vars.write_text(json.dumps(self.function_environments(), indent=1, sort_keys=True))
        if folder is None:
            return
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tenant.env").write_text(_exports(self.tenant_env))
        (folder / "operator.env").write_text(_exports(self.operator_env))
        if self.machine_env:
            (folder / "machine.env").write_text(_exports(self.machine_env))
        state = {
            "aws_endpoint": self.aws_endpoint,
            "api_url": self.api_url,
            "region": REGION,
            "stack": self.cloud.stack_name,
            "bucket": self.cloud.bucket,
            "tenant": self.tenant_env,
            "operator": self.operator_env,
            "machine": self.machine_env,
            "token_url": str(self.cloud.outputs["TokenUrl"]),
            "pid": os.getpid(),
        }
        tmp = folder / "state.json.tmp"
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(folder / "state.json")  # written last: its presence says the stack is ready

    def stop(self) -> None:
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        self.cloud.stop()


def _exports(env: dict[str, str]) -> str:
    return "".join(f"export {k}={_quote(v)}\n" for k, v in env.items())


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def banner(server: LocalServer) -> str:
    lines = [
        "facegate local serve: the stack is up (state in memory; Ctrl-C stops it and loses everything).",
        f"  AWS endpoint (moto): {server.aws_endpoint}   tenant API: {server.api_url}",
        f"  probes: s3://{server.cloud.bucket}/tenants/<tenant>/probes/<gallery>/<name> start Recognize",
        "",
        "# the operator (facegate operator ...):",
        _exports(server.operator_env).rstrip(),
    ]
    if server.seed:
        lines += [
            "",
            f"# the demo tenant '{SEED.tenant_id}' (facegate tenant ..., the SDK, aws s3 cp under its prefix):",
            _exports(server.tenant_env).rstrip(),
            "",
            f"# a checkpoint system of '{SEED.tenant_id}' (a machine: client credentials, no person):",
            _exports(server.machine_env).rstrip(),
        ]
    return "\n".join(lines)


def serve_forever(
    *,
    aws_port: int = 4566,
    api_port: int = 8787,
    write_env: Path | None = None,
    env_vars: Path | None = None,
    seed: bool = True,
    out: Callable[[str], None] = print,
) -> int:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server = LocalServer(aws_port=aws_port, api_port=api_port, seed=seed)
    try:
        server.start()
        server.write(write_env, env_vars)
        out(banner(server))
        sys.stdout.flush()
        stop.wait()
    finally:
        server.stop()
    return 0
