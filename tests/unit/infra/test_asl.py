"""The state machines' ASL files (infra/statemachine/*.asl.json) against the code and the template.

* every error name a Retry or Catch matches exists: a ``States.*`` error, a class of ``facegate.errors`` (the
  handlers raise those; Step Functions matches the class name), one of the Lambda service errors, or on a Batch
  task one of the Batch integration's errors;
* every ``${...}`` placeholder is a DefinitionSubstitutions key of the state machine using the file;
* every workflow starts with the policy gate: a Task state named PolicyCheck;
* every Lambda Task retries Lambda's transient service errors;
* moto's ASL parser (the local cloud runs these files on moto) accepts each file, placeholders substituted.

The static checks (scripts/static-checks) run statelint and cfn-lint over the same files.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import facegate.errors
from facegate.localcloud.template import load_template, local_definition

ROOT = Path(__file__).resolve().parents[3]
ASL_DIR = ROOT / "infra" / "statemachine"
TEMPLATE = ROOT / "template.yaml"
ASL_FILES = sorted(ASL_DIR.glob("*.asl.json"))

LAMBDA_SERVICE_ERRORS = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)
# The errors of the AWS Batch integration (arn:aws:states:::batch:submitJob[.sync]): Step Functions names an AWS API
# error <Service>.<SDK exception>. Allowed only on a Batch task's Retry/Catch.
BATCH_SERVICE_ERRORS = ("Batch.AWSBatchException", "Batch.ServerException", "Batch.ClientException")
# Step Functions' predefined error names (the same list as moto's ASL grammar, plus States.Http.Socket).
STATES_ERRORS = frozenset(
    {
        "States.ALL",
        "States.BranchFailed",
        "States.DataLimitExceeded",
        "States.ExceedToleratedFailureThreshold",
        "States.HeartbeatTimeout",
        "States.Http.Socket",
        "States.IntrinsicFailure",
        "States.ItemReaderFailed",
        "States.NoChoiceMatched",
        "States.ParameterPathFailure",
        "States.Permissions",
        "States.QueryEvaluationError",
        "States.ResultPathMatchFailure",
        "States.ResultWriterFailed",
        "States.Runtime",
        "States.TaskFailed",
        "States.Timeout",
    }
)
FACEGATE_ERRORS = frozenset(
    name
    for name, cls in inspect.getmembers(facegate.errors, inspect.isclass)
    if issubclass(cls, BaseException) and cls.__module__ == facegate.errors.__name__
)
LAMBDA_RESOURCE_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")

if ASL_FILES:
    PARAMS = [pytest.param(path, id=path.name) for path in ASL_FILES]
else:
    PARAMS = [pytest.param(None, marks=pytest.mark.skip(reason=f"no *.asl.json in {ASL_DIR} yet"), id="no-asl-files")]


def _check_asl() -> ModuleType:
    """scripts/check_asl.py (placeholder substitution, moto's parser), imported from its path."""
    name = "facegate_scripts_check_asl"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "check_asl.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


def _definition(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict), f"{path.name}: not a JSON object"
    return doc


def _states(machine: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state, nested ones too (Parallel branches, Map's ItemProcessor/Iterator), as (path, state)."""
    for name, state in machine.get("States", {}).items():
        path = f"{prefix}{name}"
        yield path, state
        for i, branch in enumerate(state.get("Branches", [])):
            yield from _states(branch, f"{path}.Branches[{i}].")
        for key in ("ItemProcessor", "Iterator"):
            if isinstance(state.get(key), dict):
                yield from _states(state[key], f"{path}.{key}.")


def _state_machine_for(path: Path, template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    users = [
        (logical_id, resource.get("Properties", {}))
        for logical_id, resource in template["Resources"].items()
        if resource.get("Type") in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine")
        and (uri := local_definition(resource)) is not None
        and (TEMPLATE.parent / uri).resolve() == path.resolve()
    ]
    assert users, f"no state machine in template.yaml has its definition in {path.relative_to(ROOT)}"
    assert len(users) == 1, f"{path.name} is the definition of several state machines: {[u[0] for u in users]}"
    return users[0]


def _is_batch_task(state: dict[str, Any]) -> bool:
    resource = state.get("Resource")
    return state.get("Type") == "Task" and isinstance(resource, str) and resource.startswith("arn:aws:states:::batch:")


def _is_lambda_task(state: dict[str, Any], substitutions: dict[str, Any], template: dict[str, Any]) -> bool:
    if state.get("Type") != "Task":
        return False
    resource = state.get("Resource", "")
    if not isinstance(resource, str):
        return False
    if resource.startswith(("arn:aws:lambda:", "arn:aws:states:::lambda:invoke")):
        return True
    name = resource[2:-1] if resource.startswith("${") and resource.endswith("}") else None
    if name is None:
        return False
    value = substitutions.get(name)
    target = None
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        target = value["Fn::GetAtt"][0]
    elif isinstance(value, dict) and "Ref" in value:
        target = value["Ref"]
    if isinstance(target, str) and target in template["Resources"]:
        return template["Resources"][target].get("Type") in LAMBDA_RESOURCE_TYPES
    return name.endswith("FunctionArn")


@pytest.mark.parametrize("path", PARAMS)
def test_is_valid_json(path: Path) -> None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        pytest.fail(f"{path.name}: not valid JSON: {exc}")
    assert isinstance(doc, dict), f"{path.name}: not a JSON object"
    assert isinstance(doc.get("States"), dict), f"{path.name}: no States object"


@pytest.mark.parametrize("path", PARAMS)
def test_error_names_exist(path: Path) -> None:
    assert FACEGATE_ERRORS, "no exception classes found in facegate.errors"
    unknown = []
    for state_path, state in _states(_definition(path)):
        for kind in ("Retry", "Catch"):
            for i, clause in enumerate(state.get(kind, [])):
                for error in clause.get("ErrorEquals", []):
                    if error.startswith("States."):
                        known = error in STATES_ERRORS
                    elif error.startswith("Batch."):
                        known = error in BATCH_SERVICE_ERRORS and _is_batch_task(state)
                    else:
                        known = error in FACEGATE_ERRORS or error in LAMBDA_SERVICE_ERRORS
                    if not known:
                        unknown.append(f"{state_path}.{kind}[{i}]: {error}")
    assert not unknown, (
        f"{path.name}: error names that are neither a States.* error, a class in facegate.errors, a Lambda "
        f"service error nor (on a Batch task) a Batch service error: {unknown}"
    )


@pytest.mark.parametrize("path", PARAMS)
def test_placeholders_are_substitutions(path: Path, template: dict[str, Any]) -> None:
    logical_id, props = _state_machine_for(path, template)
    used = _check_asl().placeholders(path.read_text(encoding="utf-8"))
    declared = set(props.get("DefinitionSubstitutions", {}))
    missing = sorted(used - declared)
    assert not missing, f"{path.name}: placeholders missing from {logical_id}.DefinitionSubstitutions: {missing}"


@pytest.mark.parametrize("path", PARAMS)
def test_starts_with_policy_check(path: Path) -> None:
    doc = _definition(path)
    assert doc.get("StartAt") == "PolicyCheck", f"{path.name}: StartAt is {doc.get('StartAt')!r}, not PolicyCheck"
    first = doc["States"].get("PolicyCheck")
    assert isinstance(first, dict), f"{path.name}: StartAt names PolicyCheck but there is no such state"
    assert first.get("Type") == "Task", f"{path.name}: PolicyCheck is a {first.get('Type')!r} state, not a Task"


@pytest.mark.parametrize("path", PARAMS)
def test_lambda_tasks_retry_service_errors(path: Path, template: dict[str, Any]) -> None:
    _, props = _state_machine_for(path, template)
    substitutions = props.get("DefinitionSubstitutions", {})
    lambda_tasks = 0
    problems = []
    for state_path, state in _states(_definition(path)):
        if not _is_lambda_task(state, substitutions, template):
            continue
        lambda_tasks += 1
        retried = {
            error
            for retrier in state.get("Retry", [])
            if retrier.get("MaxAttempts", 3) > 0
            for error in retrier.get("ErrorEquals", [])
        }
        missing = [e for e in LAMBDA_SERVICE_ERRORS if e not in retried]
        if missing:
            problems.append(f"{state_path} does not retry {missing}")
    assert lambda_tasks, f"{path.name}: no Lambda Task state found"
    assert not problems, f"{path.name}: Lambda tasks without a Retry on Lambda's service errors: {problems}"


@pytest.mark.parametrize("path", PARAMS)
def test_moto_parses(path: Path) -> None:
    check_asl = _check_asl()
    definition = check_asl.substitute(path.read_text(encoding="utf-8"))
    error = check_asl.parse_error(definition)
    assert error is None, f"{path.name}: moto's ASL parser rejects it: {error}"
