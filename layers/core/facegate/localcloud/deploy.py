"""Deploy the translated template into moto, resource by resource, as CloudFormation would.

moto's own CloudFormation does not do for this template what AWS does (state machines land in the
non-executing backend and ignore ``DefinitionSubstitutions``, the bucket's EventBridge configuration
is dropped), so the stack is created here through the services' APIs, in dependency order, with the
intrinsic functions resolved. A resource type this deployer does not know is an error, never skipped.

Each role is registered with the adapter as deployed (its inline policies and the AWS managed policies
it names, its trust policy): that is what the local cloud's IAM evaluates. Each function gets a
container (:mod:`facegate.localcloud.runtime`) holding exactly what Lambda would give it: the variables
of its translated ``Environment`` (an image function's image ``ENV`` under them), then what Lambda's
runtime sets (:data:`LAMBDA_RUNTIME_VARIABLES`: the region, the execution role's credentials, the
function's name, ...), then the local cloud's declared stand-ins for services it does not have.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import uuid
import zipfile
from collections.abc import Callable
from functools import cache
from io import BytesIO
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import boto3

from facegate.localcloud.adapter import Adapter, LocalFunction, RoleDefinition, camel_keys
from facegate.localcloud.runtime import Container, environment_of, inside

ACCOUNT: Final = "123456789012"
NO_VALUE: Final = object()
_SUB: Final = re.compile(r"\$\{([^}!][^}]*)\}")
LAMBDA_RUNTIME_VARIABLES: Final = (
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_EXECUTION_ENV",
    "LAMBDA_TASK_ROOT",
    "_HANDLER",
    "TZ",
)
"""What Lambda's runtime sets in every function's environment (a function may not set these itself)."""


class DeployError(RuntimeError):
    pass


def _placeholder_zip() -> bytes:
    """Lambda needs a code package; the local cloud runs the handler from the source tree instead."""
    buf = BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("README", "facegate local cloud: the handler runs from the source tree")
    return buf.getvalue()


class Stack:
    """One deployed stack: physical ids (``Ref``) and attributes (``GetAtt``) of every resource."""

    def __init__(
        self,
        name: str,
        template: dict[str, Any],
        *,
        root: Path,
        region: str,
        adapter: Adapter,
        parameters: dict[str, Any] | None = None,
        local_env: dict[str, str] | None = None,
        image_paths: dict[str, str] | None = None,
        session: Any = None,
    ) -> None:
        self.name = name
        self.template = template
        self.root = root
        self.region = region
        self.adapter = adapter
        self.local_env = local_env or {}
        """The local cloud's stand-ins, set last in every function's environment."""
        self.image_paths = image_paths or {}
        """An image's paths (``/opt/models``) → where the same files are on this machine."""
        self.session = session
        """The deployer's boto3 session (the account's administrator); ``None``: boto3's default."""
        self.refs: dict[str, Any] = {
            "AWS::StackName": name,
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{ACCOUNT}:stack/{name}/{uuid.uuid4()}",
            "AWS::Region": region,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": NO_VALUE,
        }
        for key, spec in template.get("Parameters", {}).items():
            value = (parameters or {}).get(key, spec.get("Default"))
            if value is None:
                raise DeployError(f"parameter {key} has no value and no default")
            if isinstance(value, str) and (
                spec.get("Type", "").startswith("List<") or spec.get("Type") == "CommaDelimitedList"
            ):
                value = [v.strip() for v in value.split(",") if v.strip()]
            self.refs[key] = value
        self.attrs: dict[str, dict[str, Any]] = {}
        self.modules: dict[str, ModuleType] = {}
        self.apis: dict[str, dict[str, Any]] = {}
        """Each REST API's OpenAPI body (resolved), by logical id: what the loopback server routes."""
        self.stages: dict[str, str] = {}
        self._client_cache: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._client_cache:
            maker = self.session.client if self.session is not None else boto3.client
            self._client_cache[service] = maker(service, region_name=self.region)
        return self._client_cache[service]

    # --- intrinsic functions ------------------------------------------------------------------------

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(x) for x in value) if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                if arg not in self.refs:
                    raise DeployError(f"Ref to {arg}, which is not deployed (yet)")
                return self.refs[arg]
            if key == "Fn::GetAtt":
                logical, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                try:
                    return self.attrs[logical][attr]
                except KeyError:
                    raise DeployError(f"GetAtt {logical}.{attr} is not available") from None
            if key == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
                rendered = _SUB.sub(lambda m: str(self._sub_var(m.group(1), extra)), text)
                return rendered.replace("${!", "${")  # ${!Literal} renders as ${Literal}
            if key == "Fn::Join":
                sep, items = arg
                return sep.join(str(v) for v in self.resolve(items))
            if key == "Fn::Split":
                sep, text = arg
                return str(self.resolve(text)).split(sep)
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::If":
                name, when_true, when_false = arg
                return self.resolve(when_true if self.condition(name) else when_false)
            if key in ("Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or", "Condition"):
                return self._condition_value(value)
            if key.startswith("Fn::"):
                raise DeployError(f"the local deployer does not support {key}")
        return {k: r for k, r in ((k, self.resolve(v)) for k, v in value.items()) if r is not NO_VALUE}

    def condition(self, name: str) -> bool:
        """A template condition's value (``Conditions``), as CloudFormation evaluates it."""
        conditions = self.template.get("Conditions", {})
        if name not in conditions:
            raise DeployError(f"no condition {name} in the template")
        return self._condition_value(conditions[name])

    def _condition_value(self, node: Any) -> bool:
        ((key, arg),) = node.items()
        if key == "Condition":
            return self.condition(arg)
        if key == "Fn::Equals":
            left, right = (self.resolve(v) for v in arg)
            return bool(str(left) == str(right))
        if key == "Fn::Not":
            return not self._condition_value(arg[0])
        if key == "Fn::And":
            return all(self._condition_value(c) for c in arg)
        if key == "Fn::Or":
            return any(self._condition_value(c) for c in arg)
        raise DeployError(f"{key} is not a condition function")

    def _sub_var(self, name: str, extra: dict[str, Any]) -> Any:
        if name in extra:
            return extra[name]
        if "." in name:
            logical, attr = name.split(".", 1)
            return self.resolve({"Fn::GetAtt": [logical, attr]})
        return self.resolve({"Ref": name})

    # --- order ------------------------------------------------------------------------------------

    def order(self) -> list[str]:
        resources = self.template["Resources"]
        deps = {logical: _references(body) & set(resources) for logical, body in resources.items()}
        for logical, body in resources.items():
            extra = body.get("DependsOn", [])
            named = {extra} if isinstance(extra, str) else set(extra)
            unknown = sorted(named - set(resources))
            if unknown:
                raise DeployError(f"{logical}: DependsOn unknown resource {', '.join(unknown)}")
            deps[logical] |= named
        done: list[str] = []
        while len(done) < len(resources):
            ready = sorted(r for r in resources if r not in done and deps[r] <= set(done))
            if not ready:
                raise DeployError(f"circular references among {sorted(set(resources) - set(done))}")
            done.extend(ready)
        return done

    def deploy(self) -> None:
        unknown = sorted(
            f"{k} ({v['Type']})" for k, v in self.template["Resources"].items() if v["Type"] not in CREATORS
        )
        if unknown:  # refuse before creating anything
            raise DeployError(f"the local cloud cannot deploy {', '.join(unknown)}")
        for logical in self.order():
            body = self.template["Resources"][logical]
            if "Condition" in body and not self.condition(body["Condition"]):
                self.refs[logical] = NO_VALUE  # not created, as CloudFormation skips it
                continue
            creator = CREATORS.get(body["Type"])
            if creator is None:
                raise DeployError(f"{logical}: the local cloud cannot deploy {body['Type']}")
            props = self.resolve(body.get("Properties", {}))
            ref, attrs = creator(self, logical, props, body)
            self.refs[logical] = ref
            self.attrs[logical] = attrs

    def outputs(self) -> dict[str, Any]:
        return {
            k: self.resolve(v["Value"])
            for k, v in self.template.get("Outputs", {}).items()
            if "Condition" not in v or self.condition(v["Condition"])
        }

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{ACCOUNT}:{resource}"


def _references(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, arg in node.items():
            if key == "Ref" and isinstance(arg, str):
                found.add(arg)
            elif key == "Fn::GetAtt":
                found.add(arg[0] if isinstance(arg, list) else arg.split(".", 1)[0])
            elif key == "Fn::Sub":
                text = arg if isinstance(arg, str) else arg[0]
                found |= {m.split(".", 1)[0] for m in _SUB.findall(text)}
                if not isinstance(arg, str):
                    found |= _references(arg[1])
            else:
                found |= _references(arg)
    elif isinstance(node, list):
        for item in node:
            found |= _references(item)
    return found


Created = tuple[Any, dict[str, Any]]


def _kms_key(stack: Stack, logical: str, p: dict[str, Any], body: dict[str, Any]) -> Created:
    # An asymmetric key (the audit signing key) is created as one: KeySpec and KeyUsage as declared.
    shape = {k: p[k] for k in ("KeySpec", "KeyUsage") if k in p}
    key = stack.client("kms").create_key(
        Description=p.get("Description", logical), Policy=json.dumps(p["KeyPolicy"]), **shape
    )
    meta = key["KeyMetadata"]
    if p.get("EnableKeyRotation"):
        stack.client("kms").enable_key_rotation(KeyId=meta["KeyId"])
    return meta["KeyId"], {"Arn": meta["Arn"], "KeyId": meta["KeyId"]}


def _bucket(stack: Stack, logical: str, p: dict[str, Any], body: dict[str, Any]) -> Created:
    s3 = stack.client("s3")
    name = p.get("BucketName") or f"{stack.name}-{logical.lower()}"
    s3.create_bucket(Bucket=name)
    if "VersioningConfiguration" in p:
        s3.put_bucket_versioning(
            Bucket=name, VersioningConfiguration={"Status": p["VersioningConfiguration"]["Status"]}
        )
    if "BucketEncryption" in p:
        rules = [
            {
                "ApplyServerSideEncryptionByDefault": {
                    "SSEAlgorithm": r["ServerSideEncryptionByDefault"]["SSEAlgorithm"],
                    "KMSMasterKeyID": r["ServerSideEncryptionByDefault"].get("KMSMasterKeyID", ""),
                },
                "BucketKeyEnabled": bool(r.get("BucketKeyEnabled", False)),
            }
            for r in p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        ]
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
    if "PublicAccessBlockConfiguration" in p:
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=p["PublicAccessBlockConfiguration"])
    if "OwnershipControls" in p:
        s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=p["OwnershipControls"])
    if "LifecycleConfiguration" in p:
        s3.put_bucket_lifecycle_configuration(
            Bucket=name,
            LifecycleConfiguration={"Rules": [_lifecycle_rule(r) for r in p["LifecycleConfiguration"]["Rules"]]},
        )
    notification = p.get("NotificationConfiguration", {})
    if notification.get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
        s3.put_bucket_notification_configuration(
            Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
    return name, {"Arn": f"arn:aws:s3:::{name}", "DomainName": f"{name}.s3.amazonaws.com"}


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation's lifecycle rule shape to the S3 API's."""
    out: dict[str, Any] = {
        "ID": rule.get("Id", "rule"),
        "Status": rule["Status"],
        "Filter": {"Prefix": rule.get("Prefix", "")},
    }
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "NoncurrentVersionExpiration" in rule:
        out["NoncurrentVersionExpiration"] = {
            "NoncurrentDays": int(rule["NoncurrentVersionExpiration"]["NoncurrentDays"])
        }
    if "AbortIncompleteMultipartUpload" in rule:
        days = int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        out["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": days}
    return out


def _bucket_policy(stack: Stack, logical: str, p: dict[str, Any], body: dict[str, Any]) -> Created:
    stack.client("s3").put_bucket_policy(Bucket=p["Bucket"], Policy=json.dumps(p["PolicyDocument"]))
    return f"{p['Bucket']}-policy", {}


def _event_bus(stack: Stack, logical: str, p: dict[str, Any], body: dict[str, Any]) -> Created:
    arn = stack.client("events").create_event_bus(Name=p["Name"])["EventBusArn"]
    return p["Name"], {"Arn": arn, "Name": p["Name"]}


def _topic(stack: Stack, logical: str, p: dict[str, Any], body: dict[str, Any]) -> Created:
    name = p.get("TopicName") or f"{stack.name}-{logical}"[:256]
    attributes = {k: str(p[k]) for k in ("DisplayName", "KmsMasterKeyId") if k in p}
    arn = stack.client("sns").create_topic(Name=name, Attributes=attributes)["TopicArn"]
    return arn, {"TopicArn": arn, "TopicName": name}


ALARM_FIELDS: Final = (
    "AlarmDescription", "ActionsEnabled", "AlarmActions", "OKActions", "InsufficientDataActions", "MetricName",
    "Namespace", "Statistic", "ExtendedStatistic", "Dimensions", "Period", "Unit", "EvaluationPeriods",
    "DatapointsToAlarm", "Threshold", "ComparisonOperator", "TreatMissingData", "Metrics",
)  # fmt: skip


def _alarm(stack: Stack, logical: str, p: dict[str, Any], body: dict[str, Any]) -> Created:
    """CloudWatch's PutMetricAlarm takes the resource's properties as they are (moto checks their shape;
    nothing here raises an alarm, since the local cloud has no metrics)."""
    name = p.get("AlarmName") or f"{stack.name}-{logical}"[:255]
    args = {k: p[k] for k in ALARM_FIELDS if k in p}
    for key in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
        if key in args:
            args[key] = int(args[key])
    if "Threshold" in args:
        args["Threshold"] = float(args["Threshold"])
    for query in args.get("Metrics", []):
        if "MetricStat" in query:
            query["MetricStat"]["Period"] = int(query["MetricStat"]["Period"])
    stack.client("cloudwatch").put_metric_alarm(AlarmName=name, **args)
    return name, {"Arn": stack.arn("cloudwatch", f"alarm:{name}")}


def _table(stack: Stack, logical: str, p: dict[str, Any], body: dict[str, Any]) -> Created:
    ddb = stack.client("dynamodb")
    args: dict[str, Any] = {
        "TableName": p["TableName"],
        "AttributeDefinitions": p["AttributeDefinitions"],
        "KeySchema": p["KeySchema"],
        "BillingMode": p.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if "GlobalSecondaryIndexes" in p:
        args["GlobalSecondaryIndexes"] = p["GlobalSecondaryIndexes"]
    sse = p.get("SSESpecification")
    if sse:
        args["SSESpecification"] = {"Enabled": bool(sse["SSEEnabled"]), "SSEType": sse.get("SSEType", "KMS")}
        if "KMSMasterKeyId" in sse:
            args["SSESpecification"]["KMSMasterKeyId"] = sse["KMSMasterKeyId"]
    table = ddb.create_table(**args)["TableDescription"]
    if "TimeToLiveSpecification" in p:
        ddb.update_time_to_live(TableName=p["TableName"], TimeToLiveSpecification=p["TimeToLiveSpecification"])
    pitr = p.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled")
    if pitr:
        ddb.update_continuous_backups(
            TableName=p["TableName"], PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )
    return p["TableName"], {"Arn": table["TableArn"]}


def _role(stack: Stack, logical: str, p: dict[str, Any], body: dict[str, Any]) -> Created:
    iam = stack.client("iam")
    name = p.get("RoleName") or f"{stack.name}-{logical}"[:64]
    if "PermissionsBoundary" in p:
        raise DeployError(f"{logical}: the local cloud does not evaluate permissions boundaries")
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(p["AssumeRolePolicyDocument"]))["Role"]
    statements: list[dict[str, Any]] = []
    for policy in p.get("Policies", []):
        # SAM's generated policies carry no Version (IAM then reads them as 2008-10-17); moto refuses
        # anything older than 2012-10-17. They use no policy variables, so the two read the same.
        document = {"Version": "2012-10-17", **policy["PolicyDocument"]}
        iam.put_role_policy(RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(document))
        statements.extend(_statements(document))
    for arn in p.get("ManagedPolicyArns", []):
        statements.extend(_statements(managed_policy(arn)))
    stack.adapter.register_role(
        RoleDefinition(role["Arn"], tuple(statements), tuple(_statements(p["AssumeRolePolicyDocument"])))
    )
    return name, {"Arn": role["Arn"], "RoleId": role["RoleId"], "ManagedPolicyArns": p.get("ManagedPolicyArns", [])}


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    statement = document.get("Statement", [])
    return list(statement) if isinstance(statement, list) else [statement]


@cache
def _managed_policies() -> dict[str, Any]:
    from moto.iam.aws_managed_policies import aws_managed_policies_data

    policies: dict[str, Any] = json.loads(aws_managed_policies_data)
    return policies


def managed_policy(arn: str) -> dict[str, Any]:
    """An AWS managed policy's document (moto ships them), which IAM evaluates with the inline ones."""
    name = arn.rsplit("/", 1)[-1]
    if not arn.startswith("arn:aws:iam::aws:policy/") or name not in _managed_policies():
        raise DeployError(f"the local cloud does not know the managed policy {arn}")
    document: dict[str, Any] = _managed_policies()[name]["Document"]
    return document


def _instance_profile(stack: Stack, logical: str, p: dict[str, Any], body: dict[str, Any]) -> Created:
    iam = stack.client("iam")
    name = p.get("InstanceProfileName") or f"{stack.name}-{logical}"[:128]
    profile = iam.create_instance_profile(InstanceProfileName=name)["InstanceProfile"]
    for role in p.get("Roles", []):
        iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=role)
    return name, {"Arn": profile["Arn"]}


def _layer(stack: Stack, logical: str, p: dict[str, Any], body: dict[str, Any]) -> Created:
    arn = stack.client("lambda").publish_layer_version(
        LayerName=p["LayerName"],
        Content={"ZipFile": _placeholder_zip()},
        CompatibleRuntimes=p.get("CompatibleRuntimes", []),
    )["LayerVersionArn"]
    return arn, {}


def _log_group(stack: Stack, logical: str, p: dict[str, Any], body: dict[str, Any]) -> Created:
    logs = stack.client("logs")
    name = p.get("LogGroupName") or f"/{stack.name}/{logical}"
    logs.create_log_group(logGroupName=name)
    if "RetentionInDays" in p:
        logs.put_retention_policy(logGroupName=name, retentionInDays=int(p["RetentionInDays"]))
    return name, {"Arn": stack.arn("logs", f"log-group:{name}:*")}


def _function(stack: Stack, logical: str, p: dict[str, Any], body: dict[str, Any]) -> Created:
    name = p.get("FunctionName") or f"{stack.name}-{logical}"[:64]
    env = environment_of(p.get("Environment", {}).get("Variables", {}))
    reserved = sorted(set(env) & set(LAMBDA_RUNTIME_VARIABLES))
    if reserved:
        raise DeployError(f"{logical}: Lambda reserves {', '.join(reserved)}")
    args: dict[str, Any] = {
        "FunctionName": name,
        "Role": p["Role"],
        "Timeout": int(p.get("Timeout", 3)),
        "MemorySize": int(p.get("MemorySize", 128)),
        "Environment": {"Variables": env},
    }
    if p.get("PackageType") == "Image":
        command = p.get("ImageConfig", {}).get("Command", [])
        folder = body.get("Metadata", {}).get("DockerBuildArgs", {}).get("FUNCTION")
        if not command or not folder:
            raise DeployError(f"{logical}: an image function needs ImageConfig.Command and DockerBuildArgs.FUNCTION")
        source = stack.root / "functions" / folder
        module, _, attr = command[0].rpartition(".")
        module_file = source / f"{module.split('.', 1)[1].replace('.', '/')}.py"
        args.update(PackageType="Image", Code={"ImageUri": p["Code"]["ImageUri"]})
        handler_name, task_root = command[0], source.parent
        env = {**_image_env(stack, logical, body), **env}
    else:
        key = p["Code"]["S3Key"]
        source = stack.root / key
        module, _, attr = p["Handler"].rpartition(".")
        module_file = source / f"{module.replace('.', '/')}.py"
        args.update(Runtime=p["Runtime"], Handler=p["Handler"], Code={"ZipFile": _placeholder_zip()})
        if p.get("Layers"):
            args["Layers"] = p["Layers"]
        handler_name, task_root = p["Handler"], source
    fn = stack.client("lambda").create_function(**args)
    if "ReservedConcurrentExecutions" in p:
        stack.client("lambda").put_function_concurrency(
            FunctionName=name, ReservedConcurrentExecutions=int(p["ReservedConcurrentExecutions"])
        )
    runtime_env = {
        "AWS_REGION": stack.region,
        "AWS_DEFAULT_REGION": stack.region,
        **stack.adapter.service_credentials(p["Role"], name, "lambda.amazonaws.com", stack.region),
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(args["MemorySize"]),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "local",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{p.get('Runtime', 'python3.12')}",
        "LAMBDA_TASK_ROOT": str(task_root),
        "_HANDLER": handler_name,
        "TZ": ":UTC",
    }
    container = Container(name, {**env, **runtime_env, **stack.local_env})
    handler = _load_handler(stack, logical, module_file, attr, container)
    stack.adapter.register_function(
        LocalFunction(name, fn["FunctionArn"], handler, int(args["MemorySize"]), int(args["Timeout"]), container)
    )
    return name, {"Arn": fn["FunctionArn"]}


def _event_invoke_config(stack: Stack, logical: str, p: dict[str, Any], body: dict[str, Any]) -> Created:
    """An asynchronous invocation's retries and queue age (the local cloud runs an ``Event`` start once,
    on its own thread: it never retries)."""
    keys = ("MaximumRetryAttempts", "MaximumEventAgeInSeconds")
    stack.client("lambda").put_function_event_invoke_config(
        FunctionName=p["FunctionName"], **{k: int(p[k]) for k in keys if k in p}
    )
    return f"{p['FunctionName']}|{p.get('Qualifier', '$LATEST')}", {}


def _image_env(stack: Stack, logical: str, body: dict[str, Any]) -> dict[str, str]:
    """The ``ENV`` of an image function's final build stage (its Dockerfile, as SAM builds it), with the
    image's paths mapped to where the same files are here (``Stack.image_paths``)."""
    metadata = body.get("Metadata", {})
    dockerfile = stack.root / metadata.get("DockerContext", ".") / metadata.get("Dockerfile", "Dockerfile")
    env: dict[str, str] = {}
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        words = line.split(None, 1)
        if words and words[0].upper() == "FROM":
            env = {}  # each stage starts afresh: only the last one's ENV is the image's
        elif words and words[0].upper() == "ENV" and len(words) == 2:
            match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:=|\s+)(\S.*)", words[1].strip())
            if match is None:
                raise DeployError(f"{logical}: cannot read {dockerfile.name}'s {line.strip()!r}")
            env[match.group(1)] = stack.image_paths.get(match.group(2), match.group(2))
    return env


def _load_handler(stack: Stack, logical: str, path: Path, attr: str, container: Container) -> Callable[..., Any]:
    if not path.is_file():
        raise DeployError(f"{logical}: handler source {path} does not exist")
    module_name = f"facegate_local_{logical}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise DeployError(f"{logical}: cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    with inside(container):  # module-level code (the cold start) runs in the function's container
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    stack.modules[logical] = module
    handler = getattr(module, attr, None)
    if not callable(handler):
        raise DeployError(f"{logical}: {path} has no handler {attr}")
    return handler  # type: ignore[no-any-return]


def _state_machine(stack: Stack, logical: str, p: dict[str, Any], body: dict[str, Any]) -> Created:
    location = p.get("DefinitionS3Location")
    if location:
        definition = (stack.root / location["Key"]).read_text(encoding="utf-8")
    else:
        definition = p.get("DefinitionString") or json.dumps(p["Definition"])
    subs = {k: str(v) for k, v in p.get("DefinitionSubstitutions", {}).items()}
    missing = sorted(set(_SUB.findall(definition)) - set(subs))
    if missing:
        raise DeployError(f"{logical}: the definition uses undefined substitutions {missing}")
    definition = _SUB.sub(lambda m: subs[m.group(1)], definition)
    name = p.get("StateMachineName") or f"{stack.name}-{logical}"
    extra: dict[str, Any] = {}
    if "EncryptionConfiguration" in p:
        extra["encryptionConfiguration"] = camel_keys(p["EncryptionConfiguration"])
    if "LoggingConfiguration" in p:  # the level and whether execution data is logged, as deployed
        extra["loggingConfiguration"] = camel_keys(p["LoggingConfiguration"])
    if "TracingConfiguration" in p:
        extra["tracingConfiguration"] = camel_keys(p["TracingConfiguration"])
    arn = stack.client("stepfunctions").create_state_machine(
        name=name, definition=definition, roleArn=p["RoleArn"], type=p.get("StateMachineType", "STANDARD"), **extra
    )["stateMachineArn"]
    return arn, {"Arn": arn, "Name": name}


def _rule(stack: Stack, logical: str, p: dict[str, Any], body: dict[str, Any]) -> Created:
    events = stack.client("events")
    name = p.get("Name") or f"{stack.name}-{logical}"[:64]
    bus = p.get("EventBusName", "default")
    arn = events.put_rule(
        Name=name, EventPattern=json.dumps(p["EventPattern"]), State=p.get("State", "ENABLED"), EventBusName=bus
    )["RuleArn"]
    targets = [
        {k: v for k, v in t.items() if k in ("Id", "Arn", "RoleArn", "Input", "InputPath")}
        for t in p.get("Targets", [])
    ]
    if targets:
        events.put_targets(Rule=name, EventBusName=bus, Targets=targets)
    return name, {"Arn": arn}


def _permission(stack: Stack, logical: str, p: dict[str, Any], body: dict[str, Any]) -> Created:
    stack.client("lambda").add_permission(
        FunctionName=p["FunctionName"],
        StatementId=logical,
        Action=p["Action"],
        Principal=p["Principal"],
        **({"SourceArn": p["SourceArn"]} if "SourceArn" in p else {}),
    )
    return logical, {}


def _batch_compute(stack: Stack, logical: str, p: dict[str, Any], body: dict[str, Any]) -> Created:
    args: dict[str, Any] = {
        "computeEnvironmentName": p.get("ComputeEnvironmentName") or f"{stack.name}-{logical}",
        "type": p["Type"],
        "state": p.get("State", "ENABLED"),
    }
    if "ServiceRole" in p:
        args["serviceRole"] = p["ServiceRole"]
    else:  # AWS then uses Batch's service-linked role; moto insists on a role: name that one
        iam = stack.client("iam")
        linked = "AWSServiceRoleForBatch"
        try:
            arn = iam.get_role(RoleName=linked)["Role"]["Arn"]
        except iam.exceptions.NoSuchEntityException:
            trust = {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "batch.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
            arn = iam.create_role(
                RoleName=linked,
                Path="/aws-service-role/batch.amazonaws.com/",
                AssumeRolePolicyDocument=json.dumps(trust),
            )["Role"]["Arn"]
        args["serviceRole"] = arn
    if "ComputeResources" in p:
        args["computeResources"] = camel_keys(p["ComputeResources"])
    env = stack.client("batch").create_compute_environment(**args)
    return env["computeEnvironmentArn"], {"ComputeEnvironmentArn": env["computeEnvironmentArn"]}


def _batch_queue(stack: Stack, logical: str, p: dict[str, Any], body: dict[str, Any]) -> Created:
    queue = stack.client("batch").create_job_queue(
        jobQueueName=p.get("JobQueueName") or f"{stack.name}-{logical}",
        state=p.get("State", "ENABLED"),
        priority=int(p["Priority"]),
        computeEnvironmentOrder=camel_keys(p["ComputeEnvironmentOrder"]),
    )
    return queue["jobQueueArn"], {"JobQueueArn": queue["jobQueueArn"]}


def _batch_job_definition(stack: Stack, logical: str, p: dict[str, Any], body: dict[str, Any]) -> Created:
    args: dict[str, Any] = {
        "jobDefinitionName": p.get("JobDefinitionName") or f"{stack.name}-{logical}",
        "type": p["Type"],
    }
    if "ContainerProperties" in p:
        args["containerProperties"] = camel_keys(p["ContainerProperties"])
    if "Parameters" in p:
        args["parameters"] = p["Parameters"]
    if "RetryStrategy" in p:
        args["retryStrategy"] = camel_keys(p["RetryStrategy"])
    if "Timeout" in p:
        args["timeout"] = camel_keys(p["Timeout"])
    if "PlatformCapabilities" in p:
        args["platformCapabilities"] = p["PlatformCapabilities"]
    arn = stack.client("batch").register_job_definition(**args)["jobDefinitionArn"]
    return arn, {}


def _user_pool(stack: Stack, logical: str, p: dict[str, Any], body: dict[str, Any]) -> Created:
    keys = ("Policies", "Schema", "AdminCreateUserConfig", "MfaConfiguration", "UserPoolTier", "LambdaConfig")
    pool = stack.client("cognito-idp").create_user_pool(
        PoolName=p.get("UserPoolName") or f"{stack.name}-{logical}", **{k: p[k] for k in keys if k in p}
    )["UserPool"]
    return pool["Id"], {"Arn": pool["Arn"], "ProviderName": f"cognito-idp.{stack.region}.amazonaws.com/{pool['Id']}"}


def _user_pool_client(stack: Stack, logical: str, p: dict[str, Any], body: dict[str, Any]) -> Created:
    keys = ("GenerateSecret", "ExplicitAuthFlows", "ReadAttributes", "WriteAttributes", "PreventUserExistenceErrors")
    client = stack.client("cognito-idp").create_user_pool_client(
        UserPoolId=p["UserPoolId"], ClientName=p.get("ClientName", logical), **{k: p[k] for k in keys if k in p}
    )["UserPoolClient"]
    return client["ClientId"], {}


def _user_pool_domain(stack: Stack, logical: str, p: dict[str, Any], body: dict[str, Any]) -> Created:
    stack.client("cognito-idp").create_user_pool_domain(UserPoolId=p["UserPoolId"], Domain=p["Domain"])
    return p["Domain"], {}


def _resource_server(stack: Stack, logical: str, p: dict[str, Any], body: dict[str, Any]) -> Created:
    stack.client("cognito-idp").create_resource_server(
        UserPoolId=p["UserPoolId"], Identifier=p["Identifier"], Name=p["Name"], Scopes=p.get("Scopes", [])
    )
    return f"{p['UserPoolId']}|{p['Identifier']}", {}


def _rest_api(stack: Stack, logical: str, p: dict[str, Any], body: dict[str, Any]) -> Created:
    """The API as its OpenAPI body (what SAM generates); the local cloud serves it from this body."""
    api = stack.client("apigateway").create_rest_api(name=p.get("Name") or f"{stack.name}-{logical}")
    resources = stack.client("apigateway").get_resources(restApiId=api["id"])["items"]
    root = next(r["id"] for r in resources if r["path"] == "/")
    stack.apis[logical] = p.get("Body", {})
    return api["id"], {"RootResourceId": root}


def _api_deployment(stack: Stack, logical: str, p: dict[str, Any], body: dict[str, Any]) -> Created:
    return f"{p['RestApiId']}-{logical}", {}


def _api_stage(stack: Stack, logical: str, p: dict[str, Any], body: dict[str, Any]) -> Created:
    stack.stages[p["RestApiId"]] = p["StageName"]
    return p["StageName"], {}


CREATORS: Final[dict[str, Callable[[Stack, str, dict[str, Any], dict[str, Any]], Created]]] = {
    "AWS::KMS::Key": _kms_key,
    "AWS::S3::Bucket": _bucket,
    "AWS::S3::BucketPolicy": _bucket_policy,
    "AWS::Events::EventBus": _event_bus,
    "AWS::SNS::Topic": _topic,
    "AWS::CloudWatch::Alarm": _alarm,
    "AWS::Events::Rule": _rule,
    "AWS::DynamoDB::Table": _table,
    "AWS::IAM::Role": _role,
    "AWS::IAM::InstanceProfile": _instance_profile,
    "AWS::Lambda::LayerVersion": _layer,
    "AWS::Lambda::Function": _function,
    "AWS::Lambda::Permission": _permission,
    "AWS::Lambda::EventInvokeConfig": _event_invoke_config,
    "AWS::Logs::LogGroup": _log_group,
    "AWS::StepFunctions::StateMachine": _state_machine,
    "AWS::Batch::ComputeEnvironment": _batch_compute,
    "AWS::Cognito::UserPool": _user_pool,
    "AWS::Cognito::UserPoolClient": _user_pool_client,
    "AWS::Cognito::UserPoolDomain": _user_pool_domain,
    "AWS::Cognito::UserPoolResourceServer": _resource_server,
    "AWS::ApiGateway::RestApi": _rest_api,
    "AWS::ApiGateway::Deployment": _api_deployment,
    "AWS::ApiGateway::Stage": _api_stage,
    "AWS::Batch::JobQueue": _batch_queue,
    "AWS::Batch::JobDefinition": _batch_job_definition,
}
