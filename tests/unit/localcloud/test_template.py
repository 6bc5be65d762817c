"""template.yaml, read and translated offline: what the local cloud can deploy, what the store declares,
and the security properties the service promises (encryption, retention, least privilege).
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any, cast

import pytest
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from moto.events.models import EventPattern
from moto.events.utils import EventMessageType
from pynamodb.attributes import TTLAttribute

from facegate.localcloud.deploy import CREATORS
from facegate.localcloud.template import (
    ARTIFACT_BUCKET,
    inline_state_machines,
    load_template,
    package_offline,
    translate,
)
from facegate.store.models import ALL_MODELS, SUFFIXES

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = ROOT / "template.yaml"
BUCKET = "facegate-probes-123456789012-us-east-1"
DATA_SERVICES = ("dynamodb", "s3")


@pytest.fixture(scope="module")
def source() -> dict[str, Any]:
    return load_template(TEMPLATE)


@pytest.fixture(scope="module")
def translated(source: dict[str, Any]) -> dict[str, Any]:
    return translate(source)


def _of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v.get("Properties", {}) for k, v in template["Resources"].items() if v["Type"] == kind}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- (a) short tags ---------------------------------------------------------------------------------


def test_short_tags_become_long_form(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "Resources:\n"
        "  R:\n"
        "    Type: X\n"
        "    Properties:\n"
        "      A: !Ref Thing\n"
        "      B: !GetAtt Thing.Arn\n"
        "      C: !GetAtt Thing.Endpoint.Address\n"
        "      D: !Sub '${AWS::StackName}-x'\n"
        "      E: !Sub ['${A}-y', { A: !Ref Other }]\n"
        "      F: !Join [',', [a, !Ref Thing]]\n"
        "      G: !Select [0, !Split [',', 'a,b']]\n"
        "      H: !If [IsProd, !Ref AWS::NoValue, 1]\n"
        "      I: !Equals [!Ref Env, prod]\n",
        encoding="utf-8",
    )
    props = load_template(path)["Resources"]["R"]["Properties"]
    assert props == {
        "A": {"Ref": "Thing"},
        "B": {"Fn::GetAtt": ["Thing", "Arn"]},
        "C": {"Fn::GetAtt": ["Thing", "Endpoint.Address"]},
        "D": {"Fn::Sub": "${AWS::StackName}-x"},
        "E": {"Fn::Sub": ["${A}-y", {"A": {"Ref": "Other"}}]},
        "F": {"Fn::Join": [",", ["a", {"Ref": "Thing"}]]},
        "G": {"Fn::Select": [0, {"Fn::Split": [",", "a,b"]}]},
        "H": {"Fn::If": ["IsProd", {"Ref": "AWS::NoValue"}, 1]},
        "I": {"Fn::Equals": [{"Ref": "Env"}, "prod"]},
    }


def test_real_template_short_tags(source: dict[str, Any]) -> None:
    resources = source["Resources"]
    assert resources["ProbeBucketPolicy"]["Properties"]["Bucket"] == {"Ref": "ProbeBucket"}
    sse = resources["TenantsTable"]["Properties"]["SSESpecification"]
    assert sse["KMSMasterKeyId"] == {"Fn::GetAtt": ["DataKey", "Arn"]}
    assert resources["ProbeBucket"]["Properties"]["BucketName"] == {
        "Fn::Sub": "${AWS::StackName}-probes-${AWS::AccountId}-${AWS::Region}"
    }


def test_a_file_without_resources_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("Parameters: {}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not a CloudFormation template"):
        load_template(path)


# --- (b) the deployer knows every resource type -----------------------------------------------------


def test_translation_leaves_only_types_the_deployer_supports(translated: dict[str, Any]) -> None:
    types = {r["Type"] for r in translated["Resources"].values()}
    assert not any(t.startswith("AWS::Serverless::") for t in types)
    assert types <= set(CREATORS), f"the local cloud cannot deploy {sorted(types - set(CREATORS))}"


# --- (c) tables match the store's models ------------------------------------------------------------


def _table_by_name(source: dict[str, Any]) -> dict[str, dict[str, Any]]:
    tables = {}
    for logical, props in _of_type(source, "AWS::DynamoDB::Table").items():
        name = props["TableName"]
        assert isinstance(name, dict), f"{logical}: TableName should be a !Sub on the stack name"
        tables[name["Fn::Sub"]] = props
    return tables


def _keys(key_schema: list[dict[str, str]]) -> dict[str, str]:
    return {k["KeyType"]: k["AttributeName"] for k in key_schema}


def _ttl_attribute(props: dict[str, Any]) -> str | None:
    ttl = props.get("TimeToLiveSpecification")
    if not ttl:
        return None
    assert ttl["Enabled"] is True
    return str(ttl["AttributeName"])


def _key_types(props: dict[str, Any], names: set[str]) -> dict[str, str]:
    defined = {d["AttributeName"]: d["AttributeType"] for d in props["AttributeDefinitions"]}
    return {name: defined[name] for name in names}


@pytest.mark.parametrize("model", ALL_MODELS, ids=lambda m: m.__name__)
def test_each_model_has_its_table(source: dict[str, Any], model: Any) -> None:
    tables = _table_by_name(source)
    name = f"${{AWS::StackName}}-{SUFFIXES[model]}"
    assert name in tables, f"{model.__name__}: no table named {name} in template.yaml"
    props = tables[name]
    schema = model._get_schema()

    assert _keys(props["KeySchema"]) == _keys(schema["key_schema"])
    defined = {d["AttributeName"]: d["AttributeType"] for d in schema["attribute_definitions"]}
    declared = {d["AttributeName"]: d["AttributeType"] for d in props["AttributeDefinitions"]}
    assert declared == defined  # CloudFormation refuses definitions no key uses; all key types must agree

    indexes = {i["IndexName"]: i for i in props.get("GlobalSecondaryIndexes", [])}
    expected = {i["index_name"]: i for i in schema["global_secondary_indexes"]}
    assert set(indexes) == set(expected)
    for index_name, index in indexes.items():
        assert _keys(index["KeySchema"]) == _keys(expected[index_name]["key_schema"]), index_name
        assert index["Projection"]["ProjectionType"] == expected[index_name]["projection"]["ProjectionType"]
    assert props.get("LocalSecondaryIndexes", []) == schema["local_secondary_indexes"] == []

    ttl = [a.attr_name for a in model.get_attributes().values() if isinstance(a, TTLAttribute)]
    assert _ttl_attribute(props) == (ttl[0] if ttl else None)


def test_templates_table_indexes_by_subject(source: dict[str, Any]) -> None:
    props = _table_by_name(source)["${AWS::StackName}-templates"]
    assert [i["IndexName"] for i in props["GlobalSecondaryIndexes"]] == ["by_subject"]


def test_idempotency_table_uses_powertools_defaults(source: dict[str, Any]) -> None:
    props = _table_by_name(source)["${AWS::StackName}-idempotency"]
    defaults = inspect.signature(DynamoDBPersistenceLayer.__init__).parameters
    key_attr = defaults["key_attr"].default
    assert _keys(props["KeySchema"]) == {"HASH": key_attr}
    assert _key_types(props, {key_attr}) == {key_attr: "S"}
    assert defaults["sort_key_attr"].default is None
    assert _ttl_attribute(props) == defaults["expiry_attr"].default


def test_no_table_without_a_model(source: dict[str, Any]) -> None:
    expected = {f"${{AWS::StackName}}-{s}" for s in SUFFIXES.values()} | {"${AWS::StackName}-idempotency"}
    assert set(_table_by_name(source)) == expected


# --- (d) encryption, retention, public access -------------------------------------------------------


def test_every_table_has_pitr_kms_and_on_demand_billing(translated: dict[str, Any]) -> None:
    tables = _of_type(translated, "AWS::DynamoDB::Table")
    assert tables
    for logical, props in tables.items():
        assert props["BillingMode"] == "PAY_PER_REQUEST", logical
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}, logical
        sse = props["SSESpecification"]
        assert sse["SSEEnabled"] is True, logical
        assert sse["SSEType"] == "KMS", logical
        assert sse["KMSMasterKeyId"] == {"Fn::GetAtt": ["DataKey", "Arn"]}, logical


def test_bucket_is_encrypted_private_versioned_and_transient(translated: dict[str, Any]) -> None:
    buckets = _of_type(translated, "AWS::S3::Bucket")
    assert list(buckets) == ["ProbeBucket"]
    props = buckets["ProbeBucket"]
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == {"Fn::GetAtt": ["DataKey", "Arn"]}
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["NotificationConfiguration"]["EventBridgeConfiguration"] == {"EventBridgeEnabled": True}
    expiring = [
        r
        for r in props["LifecycleConfiguration"]["Rules"]
        if r["Status"] == "Enabled"
        and (r.get("Prefix") or r.get("Filter", {}).get("Prefix")) == "tenants/"
        and "ExpirationInDays" in r
        and "NoncurrentVersionExpiration" in r  # versioned: old versions must expire too
    ]
    assert expiring, "no enabled lifecycle rule expires tenants/ (current and noncurrent versions)"


def _bucket_statements(translated: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (props,) = _of_type(translated, "AWS::S3::BucketPolicy").values()
    assert props["Bucket"] == {"Ref": "ProbeBucket"}
    return {s["Sid"]: s for s in _as_list(props["PolicyDocument"]["Statement"])}


def test_bucket_policy_denies_insecure_transport(translated: dict[str, Any]) -> None:
    statement = _bucket_statements(translated)["DenyInsecureTransport"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_every_log_group_has_retention_and_every_function_a_log_group(translated: dict[str, Any]) -> None:
    groups = _of_type(translated, "AWS::Logs::LogGroup")
    assert groups
    for logical, props in groups.items():
        assert "RetentionInDays" in props, f"{logical} keeps logs forever"
        assert "KmsKeyId" in props, f"{logical} is not encrypted with the data key"
    # Otherwise Lambda creates /aws/lambda/<name> itself, with no retention.
    named = {json.dumps(p.get("LogGroupName"), sort_keys=True) for p in groups.values()}
    for function in _of_type(translated, "AWS::Lambda::Function"):
        assert json.dumps({"Fn::Sub": f"/aws/lambda/${{{function}}}"}) in named, f"{function} has no log group"


# --- (e) least privilege on the data services -------------------------------------------------------


def _policy_documents(translated: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for logical, resource in translated["Resources"].items():
        props = resource.get("Properties", {})
        # An IAM role's inline policies (a user pool's "Policies" are its password rules).
        for policy in props.get("Policies", []) if resource["Type"] == "AWS::IAM::Role" else []:
            found.append((f"{logical}/{policy['PolicyName']}", policy["PolicyDocument"]))
        for key in ("PolicyDocument", "KeyPolicy"):
            if key in props:
                found.append((f"{logical}/{key}", props[key]))
    return found


def _allow_statements(translated: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (where, statement)
        for where, document in _policy_documents(translated)
        for statement in _as_list(document["Statement"])
        if statement["Effect"] == "Allow"
    ]


def test_no_allow_statement_grants_a_wildcard_on_data_services(translated: dict[str, Any]) -> None:
    statements = _allow_statements(translated)
    assert len(statements) > 10  # the roles' inline policies were found
    for where, statement in statements:
        assert "NotAction" not in statement, where
        for action in _as_list(statement["Action"]):
            service, _, name = action.partition(":")
            assert action != "*", where
            assert not (service in DATA_SERVICES and "*" in name), f"{where}: {action}"


def _resource_table(resource: Any, tables: set[str]) -> str | None:
    """The table a DynamoDB statement's resource names (the table or one of its indexes), if exactly one."""
    if isinstance(resource, dict) and list(resource) == ["Fn::GetAtt"]:
        logical, attr = resource["Fn::GetAtt"]
        return logical if attr == "Arn" and logical in tables else None
    if isinstance(resource, dict) and list(resource) == ["Fn::Sub"] and isinstance(resource["Fn::Sub"], str):
        match = re.fullmatch(r"\$\{(\w+)\.Arn\}/index/[\w.-]+", resource["Fn::Sub"])
        return match.group(1) if match and match.group(1) in tables else None
    return None


def test_dynamodb_statements_name_specific_tables(translated: dict[str, Any]) -> None:
    tables = set(_of_type(translated, "AWS::DynamoDB::Table"))
    checked = 0
    for where, statement in _allow_statements(translated):
        if not any(a.startswith("dynamodb:") for a in _as_list(statement["Action"])):
            continue
        for resource in _as_list(statement["Resource"]):
            assert "*" not in json.dumps(resource), f"{where}: {resource}"
            assert _resource_table(resource, tables), f"{where}: {resource} is not a table of this stack"
            checked += 1
    assert checked > 0


def _dynamodb_tables_granted(translated: dict[str, Any], where_prefix: str) -> list[tuple[str, str, Any]]:
    tables = set(_of_type(translated, "AWS::DynamoDB::Table"))
    return [
        (where, str(_resource_table(resource, tables)), statement.get("Condition"))
        for where, statement in _allow_statements(translated)
        if where.startswith(where_prefix) and any(a.startswith("dynamodb:") for a in _as_list(statement["Action"]))
        for resource in _as_list(statement["Resource"])
    ]


OPERATOR_TABLES = {"TenantsTable", "AuditTable", "MachineClientsTable"}
"""What the operator's own role reaches: the registries it writes and the audit log it appends approvals to."""
REGISTRY_TABLES = {"MachineClientsTable"}
"""Operators' registries keyed by something other than the tenant (no LeadingKeys can confine them): no
tenant-scoped session reaches them; the token trigger reads the machine clients (GetItem only)."""


def test_only_the_tenant_role_reaches_the_tenant_tables(translated: dict[str, Any]) -> None:
    """Every function's own role reaches at most the idempotency table; the tenant tables are reached
    only through TenantDataRole, i.e. through a session tagged with the request's tenant (and the
    operators' role reaches the registry and the audit log, never a tenant's data)."""
    for where, table, _ in _dynamodb_tables_granted(translated, ""):
        if where.startswith("OperatorRole/"):
            assert table in OPERATOR_TABLES, f"{where} grants {table} to the operators"
        elif where.startswith("TokenClaimsFunctionRole/") and table == "MachineClientsTable":
            continue  # its one GetItem: test_the_token_trigger_reads_one_machine_client_and_nothing_else
        elif not where.startswith("TenantDataRole/"):
            assert table == "IdempotencyTable", f"{where} grants {table} outside the tenant-scoped session"


def test_the_tenant_role_is_confined_to_rows_led_by_its_session_tag(translated: dict[str, Any]) -> None:
    granted = _dynamodb_tables_granted(translated, "TenantDataRole/")
    tenant_tables = set(_of_type(translated, "AWS::DynamoDB::Table")) - {"IdempotencyTable"} - REGISTRY_TABLES
    assert {table for _, table, _ in granted} == tenant_tables
    for where, table, condition in granted:
        assert condition is not None, f"{where}: {table} without a LeadingKeys condition"
        ((operator, keys),) = condition.items()
        assert operator.startswith("ForAllValues:"), where  # every key of a batch, not just one
        expected = "${aws:PrincipalTag/tenant_id}#*" if table == "TemplatesTable" else "${aws:PrincipalTag/tenant_id}"
        assert keys == {"dynamodb:LeadingKeys": [expected]}, f"{where}: {table}: {keys}"
    trust = translated["Resources"]["TenantDataRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert set(trust["Action"]) == {"sts:AssumeRole", "sts:TagSession"}
    assert trust["Condition"]["StringLike"] == {"aws:RequestTag/tenant_id": "?*"}


def _grants(translated: dict[str, Any], role: str) -> dict[str, set[str]]:
    """The DynamoDB actions one role may take, per table (``Table`` or ``Table/index/name``)."""
    tables = set(_of_type(translated, "AWS::DynamoDB::Table"))
    out: dict[str, set[str]] = {}
    for where, statement in _allow_statements(translated):
        if not where.startswith(f"{role}/"):
            continue
        actions = {a for a in _as_list(statement["Action"]) if a.startswith("dynamodb:")}
        for resource in _as_list(statement["Resource"]) if actions else []:
            table = _resource_table(resource, tables)
            assert table, f"{where}: {resource}"
            sub = resource.get("Fn::Sub", "") if isinstance(resource, dict) else ""
            index = re.search(r"/index/([\w.-]+)$", sub) if isinstance(sub, str) else None
            out.setdefault(f"{table}/index/{index.group(1)}" if index else table, set()).update(actions)
    return out


# What the repositories (store/repositories.py), the audit log (audit/log.py) and store/writes.py send
# for a tenant. Writes go through TransactWriteItems, which IAM authorizes item by item as PutItem,
# UpdateItem, DeleteItem or ConditionCheckItem; there is no batch write on the request path.
TENANT_GRANTS = {
    # The caller's own registry row, read by the gate; only operators write the registry.
    "TenantsTable": {"dynamodb:GetItem"},
    # find/get (GetItem), list_all and of_subject (Query), create (Put), the template count (Update),
    # deleting an empty gallery (Delete, conditioned on its count).
    "GalleriesTable": {
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
    },
    # get (GetItem), in_gallery/of_subject (Query), enrol (conditional Put), erasure (Delete).
    "TemplatesTable": {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:DeleteItem"},
    # indexed_of_subject: erasure's cross-check on the by_subject index.
    "TemplatesTable/index/by_subject": {"dynamodb:Query"},
    # record (Put), get (GetItem), of_subject (Query), revoke (Update), the enrolment's consent check.
    "ConsentsTable": {
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:ConditionCheckItem",
    },
    # put (conditional Put), get (GetItem), naming (Query), review and redaction (Update).
    "RequestsTable": {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem"},
    # Append-only: the head read (GetItem), entries (Query), the entry and the head (conditional Put).
    "AuditTable": {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem"},
    # Rate counters and totals (UpdateItem ADD), the audit's "once" markers and the enumeration check's
    # memory (conditional Put, GetItem), probe templates between Embed and Match (Put, GetItem, and
    # DeleteItem in the result's transaction).
    "CountersTable": {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"},
}


def test_tenant_sessions_get_per_table_only_the_actions_the_repositories_use(translated: dict[str, Any]) -> None:
    assert _grants(translated, "TenantDataRole") == TENANT_GRANTS


def test_the_registry_is_read_only_to_tenant_sessions(translated: dict[str, Any]) -> None:
    assert _grants(translated, "TenantDataRole")["TenantsTable"] == {"dynamodb:GetItem"}


def test_no_role_may_rewrite_or_delete_audit_entries(translated: dict[str, Any]) -> None:
    """Append-only: no role of the stack (request path or operator) may update, delete or batch-write the
    audit table; a conditional Put inside the append's transaction is the only write."""
    roles = {where.split("/", 1)[0] for where, _ in _allow_statements(translated)}
    for role in roles:
        actions = _grants(translated, role).get("AuditTable", set())
        assert not actions & {"dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}, role
        assert not any("*" in a for a in actions), role


def test_the_operators_have_their_own_role(translated: dict[str, Any]) -> None:
    """Operators write the registry and append the audit entry that records an approval (one transaction
    with the registry update, in the tenant's audit partition); to act for a tenant they open a tenant
    session like any request. Only principals of this account that signed in with MFA may assume it.
    They list the registry (a Scan of the tenants table, nothing else), manage the user pool's users
    (never its clients or its configuration) and read this stack's outputs."""
    role = translated["Resources"]["OperatorRole"]["Properties"]
    assert _grants(translated, "OperatorRole") == {
        "TenantsTable": {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Scan"},
        "AuditTable": {"dynamodb:GetItem", "dynamodb:PutItem"},
        "MachineClientsTable": {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Scan"},
    }
    statements = [s for p in role["Policies"] for s in _as_list(p["PolicyDocument"]["Statement"])]
    (users,) = [s for s in statements if s.get("Sid") == "TenantUsers"]
    assert users["Resource"] == {"Fn::GetAtt": ["TenantUserPool", "Arn"]}
    machine_clients = {
        "cognito-idp:CreateUserPoolClient",
        "cognito-idp:DescribeUserPoolClient",
        "cognito-idp:DeleteUserPoolClient",
    }
    assert all(
        a.startswith("cognito-idp:Admin") or a == "cognito-idp:ListUsers" or a in machine_clients
        for a in users["Action"]
    )
    (stack,) = [s for s in statements if s.get("Sid") == "StackOutputs"]
    assert stack["Action"] == "cloudformation:DescribeStacks"
    assert "${AWS::StackName}/*" in stack["Resource"]["Fn::Sub"]
    sts = [s for s in statements if any(a.startswith("sts:") for a in _as_list(s["Action"]))]
    assert [(set(s["Action"]), s["Resource"]) for s in sts] == [
        ({"sts:AssumeRole", "sts:TagSession"}, {"Fn::GetAtt": ["TenantDataRole", "Arn"]})
    ]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
    assert _as_list(trust["Action"]) == ["sts:AssumeRole"]
    assert trust["Condition"] == {"Bool": {"aws:MultiFactorAuthPresent": "true"}}
    outputs = translated["Outputs"]
    assert outputs["OperatorRoleArn"]["Value"] == {"Fn::GetAtt": ["OperatorRole", "Arn"]}


def test_no_deployed_code_opts_out_of_tenant_sessions(translated: dict[str, Any]) -> None:
    """Every function and the bulk job name the tenant role; none sets the opt-out that lets a tenant
    scope use the process's own credentials (that is for unit tests and the vision-only CLI)."""
    for logical, props in _of_type(translated, "AWS::Lambda::Function").items():
        variables = props.get("Environment", {}).get("Variables", {})
        assert variables.get("FACEGATE_TENANT_ROLE_ARN") == {"Fn::GetAtt": ["TenantDataRole", "Arn"]}, logical
        assert "FACEGATE_TENANT_SESSIONS" not in variables, logical
    for logical, props in _of_type(translated, "AWS::Batch::JobDefinition").items():
        env = {e["Name"]: e["Value"] for e in props["ContainerProperties"]["Environment"]}
        assert "FACEGATE_TENANT_SESSIONS" not in env, logical
        if logical == "IndependentTestJobDefinition":  # no table at all: see the next test
            assert "FACEGATE_TENANT_ROLE_ARN" not in env
            assert "FACEGATE_TABLE_PREFIX" not in env
            continue
        assert env.get("FACEGATE_TENANT_ROLE_ARN") == {"Fn::GetAtt": ["TenantDataRole", "Arn"]}, logical


def test_the_independent_test_job_can_reach_no_table_and_only_testers_sets(translated: dict[str, Any]) -> None:
    """The sandbox touches no tenant's gallery: its job's role grants no DynamoDB action, no session of
    the tenant role, and S3 only under independent-tests/ (read the set, write the report)."""
    definition = translated["Resources"]["IndependentTestJobDefinition"]["Properties"]
    statements = _role_statements(translated, definition["ContainerProperties"]["JobRoleArn"])
    actions = {a for st in statements for a in _as_list(st["Action"])}
    assert not [a for a in actions if a.split(":")[0] in ("dynamodb", "sts", "states", "lambda")], actions
    for st in statements:
        if any(a.startswith("s3:") for a in _as_list(st["Action"])):
            for resource in _as_list(st["Resource"]):
                assert "/tenants/*/independent-tests/" in json.dumps(resource), resource
        assert st["Effect"] == "Allow"
        assert "*" not in _as_list(st["Action"])


def test_every_function_that_touches_tenant_rows_can_open_a_tenant_session(source: dict[str, Any]) -> None:
    env = source["Globals"]["Function"]["Environment"]["Variables"]
    assert env["FACEGATE_TENANT_ROLE_ARN"] == {"Fn::GetAtt": ["TenantDataRole", "Arn"]}
    # Embed keeps the probe's template under the tenant's key (out of the execution's state) until Match.
    touching = ("PolicyCheckFunction", "EmbedFunction", "MatchFunction", "StoreTemplateFunction", "FinishFunction")
    for name in (*touching, "ApiFunction"):
        statements = [st for p in source["Resources"][name]["Properties"]["Policies"] for st in p["Statement"]]
        assert any(
            st.get("Resource") == {"Fn::GetAtt": ["TenantDataRole", "Arn"]}
            and set(st["Action"]) == {"sts:AssumeRole", "sts:TagSession"}
            for st in statements
        ), name


# --- (f) state machine substitutions ----------------------------------------------------------------


def _definition_path(props: dict[str, Any]) -> str:
    """The local ASL file of a SAM (``DefinitionUri``) or plain (``DefinitionS3Location``) state machine."""
    path = props.get("DefinitionUri", props.get("DefinitionS3Location"))
    assert isinstance(path, str), f"the definition is not a local file: {path!r}"
    return path


def test_definition_substitutions_match_the_asl_placeholders(source: dict[str, Any]) -> None:
    machines = {
        **_of_type(source, "AWS::Serverless::StateMachine"),
        **_of_type(source, "AWS::StepFunctions::StateMachine"),
    }
    assert machines
    for logical, props in machines.items():
        asl = (ROOT / _definition_path(props)).read_text(encoding="utf-8")
        json.loads(asl)
        placeholders = set(re.findall(r"\$\{([^}]*)\}", asl))
        assert set(props["DefinitionSubstitutions"]) == placeholders, logical


# --- (g) the probe rule -----------------------------------------------------------------------------


def _replace_ref(node: Any, name: str, value: str) -> Any:
    if node == {"Ref": name}:
        return value
    if isinstance(node, dict):
        return {k: _replace_ref(v, name, value) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_ref(v, name, value) for v in node]
    return node


def _s3_event(key: str, bucket: str = BUCKET, detail_type: str = "Object Created") -> dict[str, Any]:
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2025-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "size": 4, "etag": "x", "version-id": "v1", "sequencer": "1"},
            "reason": "PutObject",
        },
    }


@pytest.fixture(scope="module")
def probe_rule(translated: dict[str, Any]) -> EventPattern:
    rules = _of_type(translated, "AWS::Events::Rule")
    (props,) = rules.values()
    targets = props["Targets"]
    assert [t["Arn"] for t in targets] == [{"Ref": "RecognizeStateMachine"}]
    pattern = _replace_ref(props["EventPattern"], "ProbeBucket", BUCKET)
    return EventPattern.load(json.dumps(pattern))


@pytest.mark.parametrize(
    ("event", "matches"),
    [
        (_s3_event("tenants/t1/probes/g1/x.jpg"), True),
        (_s3_event("tenants/hmp-northfield/probes/staff-access/2f0c.jpg"), True),
        (_s3_event("tenants/t1/uploads/g1/x.jpg"), False),
        (_s3_event("probes/t1/g1/x.jpg"), False),
        (_s3_event("tenants/t1/probes/g1/x.jpg", bucket="someone-elses-bucket"), False),
        (_s3_event("tenants/t1/probes/g1/x.jpg", detail_type="Object Deleted"), False),
    ],
    ids=["probe", "real-names", "upload", "no-tenant-prefix", "other-bucket", "deleted"],
)
def test_probe_rule_matches_probe_uploads_only(probe_rule: EventPattern, event: dict[str, Any], matches: bool) -> None:
    assert probe_rule.matches_event(cast(EventMessageType, event)) is matches


# --- (h) what the workflows carry: never in traces, at rest under the data key --------------------------

TRACER_OFF = {"POWERTOOLS_TRACER_CAPTURE_RESPONSE": "false", "POWERTOOLS_TRACER_CAPTURE_ERROR": "false"}
STATES_CONTEXT = "kms:EncryptionContext:aws:states:stateMachineArn"
DATA_KEY_ARN = {"Fn::GetAtt": ["DataKey", "Arn"]}


def test_no_function_traces_its_responses_or_errors(translated: dict[str, Any]) -> None:
    """Powertools' tracer records a handler's return value (Embed's template, Match's candidates and
    scores) and its exception as X-Ray metadata unless told not to; every function is told not to."""
    functions = _of_type(translated, "AWS::Lambda::Function")
    assert len(functions) >= 7
    for logical, props in functions.items():
        variables = props.get("Environment", {}).get("Variables", {})
        assert {k: variables.get(k) for k in TRACER_OFF} == TRACER_OFF, logical


def _state_machine_arn(props: dict[str, Any]) -> dict[str, str]:
    """The ARN a state machine will have, from its name (a Ref would make its role depend on it: a cycle)."""
    name = props["StateMachineName"]
    assert list(name) == ["Fn::Sub"], name
    assert isinstance(name["Fn::Sub"], str), name
    return {
        "Fn::Sub": f"arn:${{AWS::Partition}}:states:${{AWS::Region}}:${{AWS::AccountId}}:stateMachine:{name['Fn::Sub']}"
    }


def test_every_state_machine_is_encrypted_with_the_data_key(translated: dict[str, Any]) -> None:
    machines = _of_type(translated, "AWS::StepFunctions::StateMachine")
    assert set(machines) == {
        "RecognizeStateMachine",
        "EnrolStateMachine",
        "BulkEnrolStateMachine",
        "IndependentTestStateMachine",
    }
    for logical, props in machines.items():
        encryption = props.get("EncryptionConfiguration")
        assert encryption is not None, f"{logical}: execution history is encrypted with an AWS owned key only"
        assert encryption["Type"] == "CUSTOMER_MANAGED_KMS_KEY", logical
        assert encryption["KmsKeyId"] == DATA_KEY_ARN, logical
        assert 60 <= encryption["KmsDataKeyReusePeriodSeconds"] <= 900, logical  # Step Functions' bounds


def _role_statements(translated: dict[str, Any], role_arn: Any) -> list[dict[str, Any]]:
    assert list(role_arn) == ["Fn::GetAtt"], role_arn
    assert role_arn["Fn::GetAtt"][1] == "Arn", role_arn
    role = translated["Resources"][role_arn["Fn::GetAtt"][0]]
    assert role["Type"] == "AWS::IAM::Role"
    return [
        statement
        for policy in role["Properties"].get("Policies", [])
        for statement in _as_list(policy["PolicyDocument"]["Statement"])
    ]


def test_each_state_machine_role_uses_the_data_key_for_its_own_machine_only(translated: dict[str, Any]) -> None:
    """Decrypt and GenerateDataKey (what an execution needs) under the encryption context Step Functions
    sets, the machine's own ARN; GenerateDataKey for its log delivery; nothing else on the key."""
    logs_context = {
        "kms:EncryptionContext:SourceArn": {"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:*"}
    }
    for logical, props in _of_type(translated, "AWS::StepFunctions::StateMachine").items():
        on_key = [
            s
            for s in _role_statements(translated, props["RoleArn"])
            if any(a.startswith("kms:") for a in _as_list(s["Action"]))
        ]
        grants = sorted((sorted(_as_list(s["Action"])), json.dumps(s.get("Condition"), sort_keys=True)) for s in on_key)
        own = {"StringEquals": {STATES_CONTEXT: _state_machine_arn(props)}}
        assert grants == sorted(
            [
                (["kms:Decrypt", "kms:GenerateDataKey"], json.dumps(own, sort_keys=True)),
                (["kms:GenerateDataKey"], json.dumps({"StringLike": logs_context}, sort_keys=True)),
            ]
        ), logical
        for statement in on_key:
            assert statement["Effect"] == "Allow", logical
            assert statement["Resource"] == DATA_KEY_ARN, logical


def test_the_data_key_lets_log_delivery_decrypt_for_this_account_only(translated: dict[str, Any]) -> None:
    """An encrypted state machine's logs reach its (encrypted) log group through CloudWatch Logs'
    delivery service, which must decrypt them with the state machine's key."""
    statements = _as_list(translated["Resources"]["DataKey"]["Properties"]["KeyPolicy"]["Statement"])
    delivery = [s for s in statements if s.get("Principal") == {"Service": "delivery.logs.amazonaws.com"}]
    assert len(delivery) == 1
    (statement,) = delivery
    assert statement["Effect"] == "Allow"
    assert _as_list(statement["Action"]) == ["kms:Decrypt"]
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


# --- (i) plain state machines are packaged and inlined like SAM's ---------------------------------------


def test_package_offline_gives_a_plain_state_machine_an_s3_location(source: dict[str, Any]) -> None:
    packaged = package_offline(source)
    for logical, props in _of_type(source, "AWS::StepFunctions::StateMachine").items():
        location = packaged["Resources"][logical]["Properties"]["DefinitionS3Location"]
        assert location == {"Bucket": ARTIFACT_BUCKET, "Key": props["DefinitionS3Location"]}, logical
    assert _of_type(source, "AWS::StepFunctions::StateMachine")["EnrolStateMachine"]["DefinitionS3Location"] == (
        "infra/statemachine/enrol.asl.json"
    )  # the source is left as it was


def test_inline_state_machines_writes_each_definition_file_as_a_literal_string(source: dict[str, Any]) -> None:
    inlined = inline_state_machines(source, ROOT)
    machines = _of_type(inlined, "AWS::StepFunctions::StateMachine")
    assert machines
    for logical, props in machines.items():
        assert "DefinitionS3Location" not in props, logical
        path = _of_type(source, "AWS::StepFunctions::StateMachine")[logical]["DefinitionS3Location"]
        assert json.loads(props["DefinitionString"]) == json.loads((ROOT / path).read_text(encoding="utf-8"))
    translated = translate(inlined)
    for logical, props in machines.items():
        assert translated["Resources"][logical]["Properties"]["DefinitionString"] == props["DefinitionString"]


# --- uploads under tenants/ (threat model row 14) -------------------------------------------------------


UPLOADER_PREFIX: dict[str, Any] = {"Fn::Sub": "${ProbeBucket.Arn}/tenants/${!aws:PrincipalTag/tenant_id}/*"}
WRITERS_UNDER_TENANTS: frozenset[str] = frozenset(
    {"TenantUploaderRole", "TenantDataRole", "ApiFunctionRole", "BatchJobRole", "IndependentTestJobRole"}
)


def _role_policy_statements(translated: dict[str, Any], role: str) -> list[dict[str, Any]]:
    props = translated["Resources"][role]["Properties"]
    return [s for p in props.get("Policies", []) for s in _as_list(p["PolicyDocument"]["Statement"])]


def test_the_tenant_uploader_role_may_only_put_under_its_own_tenant_prefix(translated: dict[str, Any]) -> None:
    """A tenant system's direct uploads: PutObject under tenants/<its session tag>/, and the data key for
    SSE-KMS; nothing to read, list or delete, and not the jobs' reports, a tester's set, a one-call probe,
    a gallery snapshot or an audit export (what the API, the jobs and Match store and the workflows trust)."""
    role = translated["Resources"]["TenantUploaderRole"]
    assert role["Type"] == "AWS::IAM::Role"
    statements = _role_policy_statements(translated, "TenantUploaderRole")
    allows = [
        (set(_as_list(s["Action"])), s["Resource"], s.get("Condition")) for s in statements if s["Effect"] == "Allow"
    ]
    assert allows == [
        ({"s3:PutObject"}, UPLOADER_PREFIX, None),
        ({"kms:GenerateDataKey", "kms:Encrypt"}, {"Fn::GetAtt": ["DataKey", "Arn"]}, None),
    ]
    denies = [s for s in statements if s["Effect"] == "Deny"]
    assert [(_as_list(s["Action"]), s["Resource"]) for s in denies] == [
        (
            ["s3:PutObject"],
            [
                {"Fn::Sub": "${ProbeBucket.Arn}/tenants/*/reports/*"},
                {"Fn::Sub": "${ProbeBucket.Arn}/tenants/*/independent-tests/*"},
                {"Fn::Sub": "${ProbeBucket.Arn}/tenants/*/calls/*"},
                {"Fn::Sub": "${ProbeBucket.Arn}/tenants/*/snapshots/*"},
                {"Fn::Sub": "${ProbeBucket.Arn}/tenants/*/audit-exports/*"},
            ],
        )
    ]
    assert translated["Outputs"]["TenantUploaderRoleArn"]["Value"] == {"Fn::GetAtt": ["TenantUploaderRole", "Arn"]}
    assert translated["Outputs"]["TenantUploaderRoleArn"]["Description"]


def test_the_tenant_data_role_reaches_only_its_own_tenants_gallery_snapshots(translated: dict[str, Any]) -> None:
    """The S3 grants of the tenant data role: its own tag's snapshots/ prefix, to read, write and delete
    (Match and erasure), and its own audit-exports/ prefix, to write and read (no delete: an export
    expires with the bucket's lifecycle); nothing to list, nothing elsewhere in the bucket."""
    s3 = [
        (set(_as_list(st["Action"])), st["Resource"])
        for st in _role_policy_statements(translated, "TenantDataRole")
        if any(str(a).startswith("s3:") for a in _as_list(st["Action"]))
    ]
    assert s3 == [
        (
            {"s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion"},
            {"Fn::Sub": "${ProbeBucket.Arn}/tenants/${!aws:PrincipalTag/tenant_id}/snapshots/*"},
        ),
        (
            {"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"},
            {"Fn::Sub": "${ProbeBucket.Arn}/tenants/${!aws:PrincipalTag/tenant_id}/audit-exports/*"},
        ),
    ]


def test_the_tenant_uploader_role_is_assumed_exactly_like_the_tenant_role(translated: dict[str, Any]) -> None:
    """Principals of this account, only with exactly the session tag tenant_id (non-empty)."""
    resources = translated["Resources"]
    uploader = resources["TenantUploaderRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    tenant = resources["TenantDataRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    (trust,) = uploader
    assert trust["Principal"] == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
    assert set(trust["Action"]) == {"sts:AssumeRole", "sts:TagSession"}
    assert trust["Condition"] == {
        "StringLike": {"aws:RequestTag/tenant_id": "?*"},
        "ForAllValues:StringEquals": {"aws:TagKeys": ["tenant_id"]},
    }
    assert [{k: v for k, v in s.items() if k != "Sid"} for s in uploader] == [
        {k: v for k, v in s.items() if k != "Sid"} for s in tenant
    ]


def test_the_bucket_denies_puts_under_tenants_but_by_the_writer_roles(translated: dict[str, Any]) -> None:
    statement = _bucket_statements(translated)["OnlyTheWritersPutUnderTenants"]
    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == "*"
    assert _as_list(statement["Action"]) == ["s3:PutObject"]
    assert statement["Resource"] == {"Fn::Sub": "${ProbeBucket.Arn}/tenants/*"}
    ((operator, tests),) = statement["Condition"].items()
    assert operator == "ArnNotLike"
    assert list(tests) == ["aws:PrincipalArn"]
    excepted = {ref["Fn::GetAtt"][0] for ref in _as_list(tests["aws:PrincipalArn"]) if ref["Fn::GetAtt"][1] == "Arn"}
    assert excepted == WRITERS_UNDER_TENANTS


def test_every_role_allowed_to_put_in_the_bucket_is_one_of_its_writers(translated: dict[str, Any]) -> None:
    """A role granted s3:PutObject but missing from the bucket's exceptions would be refused in AWS."""
    writers = set()
    for logical, resource in translated["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for statement in _role_policy_statements(translated, logical):
            actions = _as_list(statement["Action"])
            resources = json.dumps(statement.get("Resource"))
            if statement["Effect"] == "Allow" and "s3:PutObject" in actions and "ProbeBucket" in resources:
                writers.add(logical)
    assert writers == WRITERS_UNDER_TENANTS


EXPRESS_MACHINES: frozenset[str] = frozenset({"RecognizeStateMachine", "EnrolStateMachine"})


def test_recognize_and_enrol_are_express_and_the_batch_workflows_standard(translated: dict[str, Any]) -> None:
    """Express for the short, high-volume workflows (priced per request, not per state transition);
    BulkEnrol and IndependentTest wait on batch:submitJob.sync, which only Standard runs."""
    machines = _of_type(translated, "AWS::StepFunctions::StateMachine")
    for logical, props in machines.items():
        kind = props.get("StateMachineType", "STANDARD")
        assert kind == ("EXPRESS" if logical in EXPRESS_MACHINES else "STANDARD"), logical
        logging = props["LoggingConfiguration"]
        assert logging["Level"] == "ERROR", logical  # failures only: no result or template in the logs
        assert logging["IncludeExecutionData"] is False, logical


@pytest.mark.parametrize("name", ["recognize", "enrol"])
def test_an_express_definition_uses_only_what_express_runs(name: str) -> None:
    """Express runs for at most five minutes and has no .sync or callback (.waitForTaskToken) tasks."""
    definition = json.loads((ROOT / "infra" / "statemachine" / f"{name}.asl.json").read_text())
    assert definition["TimeoutSeconds"] <= 300

    def resources(states: dict[str, Any]) -> list[str]:
        found = []
        for state in states.values():
            found.append(str(state.get("Resource", "")))
            if "ItemProcessor" in state:
                found.extend(resources(state["ItemProcessor"]["States"]))
        return found

    for resource in resources(definition["States"]):
        assert not resource.endswith((".sync", ".waitForTaskToken")), resource


OTEL_VARIABLES = ("AWS_LAMBDA_EXEC_WRAPPER", "OTEL_SERVICE_NAME", "OTEL_PROPAGATORS")


@pytest.mark.parametrize(
    "layer", ["", "arn:aws:lambda:eu-west-2:901920570463:layer:aws-otel-python-amd64-ver-1-32-0:1"]
)
def test_opentelemetry_is_behind_one_parameter_and_only_where_a_layer_can_go(
    translated: dict[str, Any], layer: str
) -> None:
    """GIVEN OpenTelemetryLayerArn empty (the default) or set WHEN the template is resolved THEN with it
    empty no function has the wrapper or the layer; set, every zip function has both (the wrapper needs
    the layer's file) and the image functions neither (they take no layers: the wrapper would not exist)."""
    from facegate.localcloud.deploy import NO_VALUE, Stack

    stack = Stack("otel", translated, root=ROOT, region="eu-west-2", adapter=None,  # type: ignore[arg-type]
                  parameters={"BatchImageUri": "x", "BatchSubnetIds": "s", "BatchSecurityGroupIds": "g",
                              "OpenTelemetryLayerArn": layer})  # fmt: skip
    for name, resource in translated["Resources"].items():  # the layer's version, as SAM names it
        if resource["Type"] == "AWS::Lambda::LayerVersion":
            stack.refs[name] = "arn:core"
    assert stack.condition("UseOpenTelemetry") is bool(layer)
    for logical, props in _of_type(translated, "AWS::Lambda::Function").items():
        variables = props.get("Environment", {}).get("Variables", {})
        image = props.get("PackageType") == "Image"
        assert not (image and set(OTEL_VARIABLES) & set(variables)), logical
        if image:
            assert "Layers" not in props, logical
            continue
        resolved = {k: stack.resolve(variables[k]) for k in OTEL_VARIABLES}
        layers = stack.resolve(props["Layers"])
        if layer:
            assert resolved["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/otel-instrument", logical
            assert layers == ["arn:core", layer], logical
        else:
            assert all(v is NO_VALUE for v in resolved.values()), logical
            assert layers == ["arn:core"], logical


def test_the_token_trigger_reads_one_machine_client_and_nothing_else(translated: dict[str, Any]) -> None:
    """The tenant claim of every access token comes from the V3_0 pre-token-generation trigger, and the
    trigger's role reads the machine-client registry one item at a time: no tenant's data, no write."""
    resources = translated["Resources"]
    pool = resources["TenantUserPool"]["Properties"]
    assert pool["UserPoolTier"] == "ESSENTIALS"  # access-token customization needs Essentials or Plus
    assert pool["LambdaConfig"]["PreTokenGenerationConfig"] == {
        "LambdaArn": {"Fn::GetAtt": ["TokenClaimsFunction", "Arn"]},
        "LambdaVersion": "V3_0",
    }
    assert _grants(translated, "TokenClaimsFunctionRole") == {"MachineClientsTable": {"dynamodb:GetItem"}}
    permission = resources["TokenClaimsPermission"]["Properties"]
    assert permission["Principal"] == "cognito-idp.amazonaws.com"
    assert permission["SourceArn"] == {"Fn::GetAtt": ["TenantUserPool", "Arn"]}


def test_the_api_accepts_access_tokens_with_its_scope_only(translated: dict[str, Any]) -> None:
    """Every route's authorizer names the facegate/api scope: API Gateway then takes access tokens only (an
    ID token is refused), a person's and a machine's alike; machine clients are allowed that scope alone."""
    resources = translated["Resources"]
    body = resources["TenantApi"]["Properties"]["Body"]
    for path, methods in body["paths"].items():
        for method, spec in methods.items():
            assert spec.get("security") == [{"TenantCognito": ["facegate/api"]}], f"{method.upper()} {path}"
    server = resources["TenantApiResourceServer"]["Properties"]
    assert (server["Identifier"], [s["ScopeName"] for s in server["Scopes"]]) == ("facegate", ["api"])
    people = resources["TenantUserPoolClient"]["Properties"]
    assert "AllowedOAuthFlows" not in people
    assert people["GenerateSecret"] is False
    assert "custom:tenant_id" not in people["WriteAttributes"]
    outputs = translated["Outputs"]
    assert "/oauth2/token" in outputs["TokenUrl"]["Value"]["Fn::Sub"]
