"""The local deployer's intrinsic functions and ordering, on small hand-made templates (no AWS calls)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from facegate.localcloud.adapter import Adapter
from facegate.localcloud.deploy import ACCOUNT, CREATORS, DeployError, Stack, _image_env, managed_policy

REGION = "eu-west-2"
TABLE_ARN = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/demo-things"


def _stack(resources: dict[str, Any] | None = None, **parameters: Any) -> Stack:
    template = {
        "Parameters": {
            "Env": {"Type": "String", "Default": "dev"},
            "Days": {"Type": "Number", "Default": 90},
        },
        "Resources": resources or {},
    }
    return Stack("demo", template, root=Path("."), region=REGION, adapter=Adapter(), parameters=parameters)


@pytest.fixture
def stack() -> Stack:
    """A stack whose ``Things`` table and ``Key`` key are already deployed."""
    s = _stack()
    s.refs["Things"] = "demo-things"
    s.attrs["Things"] = {"Arn": TABLE_ARN, "StreamArn": f"{TABLE_ARN}/stream/1"}
    s.refs["Key"] = "key-id"
    s.attrs["Key"] = {"Arn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/key-id", "KeyId": "key-id"}
    return s


# --- Ref ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "value"),
    [
        ("Env", "dev"),
        ("Days", 90),
        ("AWS::StackName", "demo"),
        ("AWS::Region", REGION),
        ("AWS::AccountId", ACCOUNT),
        ("AWS::Partition", "aws"),
        ("AWS::URLSuffix", "amazonaws.com"),
        ("Things", "demo-things"),
    ],
)
def test_ref(stack: Stack, ref: str, value: Any) -> None:
    assert stack.resolve({"Ref": ref}) == value


def test_parameter_value_overrides_default() -> None:
    assert _stack(Env="prod").resolve({"Ref": "Env"}) == "prod"


def test_parameter_without_value_or_default_is_an_error() -> None:
    template = {"Parameters": {"Needed": {"Type": "String"}}, "Resources": {}}
    with pytest.raises(DeployError, match="parameter Needed"):
        Stack("demo", template, root=Path("."), region=REGION, adapter=Adapter())


def test_ref_to_something_not_deployed_is_an_error(stack: Stack) -> None:
    with pytest.raises(DeployError, match="Ref to Later"):
        stack.resolve({"Ref": "Later"})


# --- GetAtt ---------------------------------------------------------------------------------------


def test_get_att_list_and_dotted_forms(stack: Stack) -> None:
    assert stack.resolve({"Fn::GetAtt": ["Things", "Arn"]}) == TABLE_ARN
    assert stack.resolve({"Fn::GetAtt": "Things.StreamArn"}) == f"{TABLE_ARN}/stream/1"


@pytest.mark.parametrize("arg", [["Things", "Nope"], ["Later", "Arn"]])
def test_get_att_unavailable_is_an_error(stack: Stack, arg: list[str]) -> None:
    with pytest.raises(DeployError, match=f"GetAtt {arg[0]}.{arg[1]}"):
        stack.resolve({"Fn::GetAtt": arg})


# --- Sub ------------------------------------------------------------------------------------------


def test_sub_string_form(stack: Stack) -> None:
    assert stack.resolve({"Fn::Sub": "${AWS::StackName}-${Env}-${AWS::Region}"}) == f"demo-dev-{REGION}"
    assert stack.resolve({"Fn::Sub": "${Things.Arn}/index/by_subject"}) == f"{TABLE_ARN}/index/by_subject"
    assert stack.resolve({"Fn::Sub": "no variables"}) == "no variables"


def test_sub_list_form(stack: Stack) -> None:
    value = {"Fn::Sub": ["${Name}/${Arn}:${Env}", {"Name": {"Ref": "Things"}, "Arn": {"Fn::GetAtt": "Key.Arn"}}]}
    assert stack.resolve(value) == f"demo-things/arn:aws:kms:{REGION}:{ACCOUNT}:key/key-id:dev"


def test_sub_list_form_variables_shadow_parameters(stack: Stack) -> None:
    assert stack.resolve({"Fn::Sub": ["${Env}", {"Env": "shadowed"}]}) == "shadowed"


def test_sub_of_something_not_deployed_is_an_error(stack: Stack) -> None:
    with pytest.raises(DeployError):
        stack.resolve({"Fn::Sub": "${Later.Arn}"})


def test_sub_escaped_literal(stack: Stack) -> None:
    assert stack.resolve({"Fn::Sub": "${!Literal}-${Env}"}) == "${Literal}-dev"


# --- Join, Select, NoValue, nesting ---------------------------------------------------------------


def test_join(stack: Stack) -> None:
    assert stack.resolve({"Fn::Join": [":", ["a", {"Ref": "Env"}, {"Fn::GetAtt": ["Key", "KeyId"]}]]}) == "a:dev:key-id"
    assert stack.resolve({"Fn::Join": ["", []]}) == ""


def test_select(stack: Stack) -> None:
    assert stack.resolve({"Fn::Select": [1, ["a", {"Ref": "Env"}, "c"]]}) == "dev"
    assert stack.resolve({"Fn::Select": ["0", [{"Ref": "Things"}]]}) == "demo-things"


def test_split_and_the_stack_id(stack: Stack) -> None:
    """The user pool domain's prefix is the stack id's UUID, as CloudFormation's stack ids end."""
    assert stack.resolve({"Fn::Split": [",", "a,,b"]}) == ["a", "", "b"]
    stack_id = stack.resolve({"Ref": "AWS::StackId"})
    assert re.fullmatch(r"arn:aws:cloudformation:[\w-]+:\d{12}:stack/[\w-]+/[0-9a-f-]{36}", stack_id)
    assert stack.resolve({"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]}) == stack_id.split("/")[2]


def test_no_value_drops_keys_and_items(stack: Stack) -> None:
    value = {
        "Keep": {"Ref": "Env"},
        "Drop": {"Ref": "AWS::NoValue"},
        "List": ["a", {"Ref": "AWS::NoValue"}, "b"],
        "Nested": {"Inner": {"Ref": "AWS::NoValue"}},
    }
    assert stack.resolve(value) == {"Keep": "dev", "List": ["a", "b"], "Nested": {}}
    assert stack.resolve({"Fn::Join": [",", ["a", {"Ref": "AWS::NoValue"}, "b"]]}) == "a,b"


def test_nested_intrinsics(stack: Stack) -> None:
    value = {
        "Properties": {
            "Name": {"Fn::Join": ["-", [{"Fn::Sub": "${AWS::StackName}"}, {"Fn::Select": [0, [{"Ref": "Env"}]]}]]},
            "Resources": [{"Fn::GetAtt": ["Things", "Arn"]}, {"Fn::Sub": "${Things.Arn}/*"}],
            "Literal": 3,
        }
    }
    assert stack.resolve(value) == {
        "Properties": {"Name": "demo-dev", "Resources": [TABLE_ARN, f"{TABLE_ARN}/*"], "Literal": 3}
    }


@pytest.mark.parametrize(
    "value",
    [
        {"Fn::GetAZs": ""},
        {"Fn::ImportValue": "shared"},
    ],
    ids=lambda v: next(iter(v)),
)
def test_unsupported_function_is_an_error(stack: Stack, value: dict[str, Any]) -> None:
    (name,) = value
    with pytest.raises(DeployError, match=f"does not support {name}"):
        stack.resolve({"Outer": [value]})


@pytest.mark.parametrize(("env", "expected"), [("dev", "b"), ("prod", "a")])
def test_conditions_are_evaluated_as_cloudformation_does(env: str, expected: str) -> None:
    """``Conditions`` (Fn::Equals, Fn::Not, Fn::And, Fn::Or, Condition), ``Fn::If`` with
    ``AWS::NoValue`` dropping a key or a list item, and a resource or output under a false condition
    not created."""
    s = _stack(Env=env)
    s.template["Conditions"] = {
        "IsProd": {"Fn::Equals": [{"Ref": "Env"}, "prod"]},
        "IsDev": {"Fn::Not": [{"Condition": "IsProd"}]},
        "Either": {"Fn::Or": [{"Condition": "IsProd"}, {"Condition": "IsDev"}]},
        "Both": {"Fn::And": [{"Condition": "IsProd"}, {"Condition": "IsDev"}]},
    }
    assert s.resolve({"Fn::If": ["IsProd", "a", "b"]}) == expected
    assert s.condition("Either") is True
    assert s.condition("Both") is False
    dropped = s.resolve(
        {
            "K": {"Fn::If": ["IsDev", {"Ref": "AWS::NoValue"}, 1]},
            "L": [1, {"Fn::If": ["IsDev", {"Ref": "AWS::NoValue"}, 2]}],
        }
    )
    assert dropped == ({} if env == "dev" else {"K": 1}) | {"L": [1] if env == "dev" else [1, 2]}
    with pytest.raises(DeployError, match="no condition"):
        s.condition("Unknown")


# --- order ----------------------------------------------------------------------------------------


def test_order_puts_dependencies_first() -> None:
    resources = {
        "Api": {"Type": "T", "Properties": {"Table": {"Ref": "Table"}, "Env": {"Ref": "Env"}}},
        "Table": {"Type": "T", "Properties": {"Key": {"Fn::GetAtt": ["Key", "Arn"]}}},
        "Key": {"Type": "T", "Properties": {"Region": {"Ref": "AWS::Region"}}},
        "Policy": {"Type": "T", "Properties": {"Resource": {"Fn::Sub": "${Bucket.Arn}/*-${AWS::StackName}"}}},
        "Bucket": {"Type": "T", "Properties": {"Key": {"Fn::GetAtt": "Key.Arn"}}},
        "Alarm": {"Type": "T", "DependsOn": "Api"},
        "Dashboard": {"Type": "T", "DependsOn": ["Alarm", "Policy"]},
        "Role": {"Type": "T", "Properties": {"Name": {"Fn::Sub": ["${X}", {"X": {"Ref": "Loose"}}]}}},
        "Loose": {"Type": "T"},
    }
    order = _stack(resources).order()
    assert sorted(order) == sorted(resources)
    position = {logical: i for i, logical in enumerate(order)}
    for later, earlier in [
        ("Api", "Table"),
        ("Table", "Key"),
        ("Bucket", "Key"),
        ("Policy", "Bucket"),
        ("Alarm", "Api"),
        ("Dashboard", "Alarm"),
        ("Dashboard", "Policy"),
        ("Role", "Loose"),
    ]:
        assert position[earlier] < position[later], f"{earlier} must come before {later}: {order}"
    assert _stack(resources).order() == order  # deterministic


@pytest.mark.parametrize(
    "resources",
    [
        {"A": {"Type": "T", "Properties": {"B": {"Ref": "B"}}}, "B": {"Type": "T", "DependsOn": "A"}},
        {
            "A": {"Type": "T", "Properties": {"X": {"Fn::GetAtt": ["B", "Arn"]}}},
            "B": {"Type": "T", "Properties": {"X": {"Fn::Sub": "${C.Arn}"}}},
            "C": {"Type": "T", "Properties": {"X": {"Ref": "A"}}},
            "Free": {"Type": "T"},
        },
        {"Self": {"Type": "T", "Properties": {"X": {"Ref": "Self"}}}},
    ],
    ids=["pair", "triangle", "self"],
)
def test_order_detects_cycles(resources: dict[str, Any]) -> None:
    with pytest.raises(DeployError, match="circular references") as error:
        _stack(resources).order()
    assert "Free" not in str(error.value)


def test_unknown_resource_type_is_an_error_naming_it() -> None:
    stack = _stack({"Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": {"Ref": "Env"}}}})
    with pytest.raises(DeployError, match=r"the local cloud cannot deploy Queue \(AWS::SQS::Queue\)"):
        stack.deploy()
    assert "Queue" not in stack.refs


def test_depends_on_an_unknown_resource_is_named() -> None:
    stack = _stack({"A": {"Type": "AWS::SQS::Queue", "DependsOn": "Missing", "Properties": {}}})
    with pytest.raises(DeployError, match="A: DependsOn unknown resource Missing"):
        stack.order()


# --- what a function's container holds -------------------------------------------------------------


def test_an_image_functions_environment_is_its_final_stages_env_with_local_paths(tmp_path: Path) -> None:
    (tmp_path / "functions").mkdir()
    (tmp_path / "functions" / "Dockerfile").write_text(
        "FROM base AS build\nENV BUILD_ONLY=1\n"
        "FROM base\nARG FUNCTION\nENV FACEGATE_MODEL_DIR=/opt/models\nENV MODE fast\n",
        encoding="utf-8",
    )
    stack = Stack(
        "demo", {"Resources": {}}, root=tmp_path, region=REGION, adapter=Adapter(), image_paths={"/opt/models": "/here"}
    )
    body = {"Metadata": {"Dockerfile": "functions/Dockerfile", "DockerContext": "."}}
    assert _image_env(stack, "Detect", body) == {"FACEGATE_MODEL_DIR": "/here", "MODE": "fast"}


def test_a_function_may_not_set_what_lambdas_runtime_sets() -> None:
    stack = _stack()
    props = {"Environment": {"Variables": {"AWS_REGION": "eu-west-1"}}, "Role": "r"}
    with pytest.raises(DeployError, match="Lambda reserves AWS_REGION"):
        CREATORS["AWS::Lambda::Function"](stack, "Fn", props, {})


def test_managed_policies_are_read_from_the_ones_aws_publishes() -> None:
    document = managed_policy("arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole")
    actions = {
        a for s in document["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert actions == {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}
    with pytest.raises(DeployError, match="does not know the managed policy"):
        managed_policy("arn:aws:iam::123456789012:policy/mine")
