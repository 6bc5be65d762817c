"""The real template.yaml, read and translated offline (aws-sam-translator, no AWS account).

``load_template`` reads CloudFormation YAML with its short tags (``!Ref``, ``!Sub``, ``!GetAtt``, ...);
``translate`` expands the SAM resources into plain CloudFormation, the same transform CloudFormation
runs on deploy. The local cloud deploys that translated template; the static checks lint it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Final

import yaml

SHORT_TAGS: Final = (
    "Ref",
    "Condition",
    "GetAtt",
    "Sub",
    "Join",
    "Select",
    "Split",
    "If",
    "Not",
    "Equals",
    "And",
    "Or",
    "FindInMap",
    "GetAZs",
    "Base64",
    "Cidr",
    "ImportValue",
    "Transform",
)
# The AWS managed policies SAM may name by their short name; the translator maps names to ARNs.
MANAGED_POLICIES: Final = (
    "AWSLambdaBasicExecutionRole",
    "AWSXrayWriteOnlyAccess",
    "AWSXRayDaemonWriteAccess",
    "AWSLambdaVPCAccessExecutionRole",
    "AWSBatchServiceRole",
)


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader plus CloudFormation's short-form intrinsic functions."""


def _construct(tag: str) -> Any:
    full = "Ref" if tag in ("Ref", "Condition") else f"Fn::{tag}"

    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if tag == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {"Condition" if tag == "Condition" else full: value}

    return construct


for _tag in SHORT_TAGS:
    _CfnLoader.add_constructor(f"!{_tag}", _construct(_tag))


def load_template(path: Path | str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        doc = yaml.load(f, Loader=_CfnLoader)
    if not isinstance(doc, dict) or "Resources" not in doc:
        raise ValueError(f"{path} is not a CloudFormation template")
    return doc


class OfflinePolicyLoader:
    """The translator's managed-policy loader, without IAM: AWS managed policy ARNs are fixed."""

    def __init__(self, partition: str = "aws") -> None:
        self._map = {name: f"arn:{partition}:iam::aws:policy/{name}" for name in MANAGED_POLICIES}
        self._map["AWSLambdaBasicExecutionRole"] = (
            f"arn:{partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
        )

    def load(self) -> dict[str, str]:
        return dict(self._map)


ARTIFACT_BUCKET: Final = "facegate-local-artifacts"
LOCAL_IMAGE_REPO: Final = "000000000000.dkr.ecr.us-east-1.amazonaws.com/facegate"
_URI_PROPERTIES: Final = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
    "AWS::Serverless::StateMachine": "DefinitionUri",
}
# Plain CloudFormation resources whose local path ``sam package`` replaces with an S3 location object.
_S3_LOCATION_PROPERTIES: Final = {"AWS::StepFunctions::StateMachine": "DefinitionS3Location"}


def local_definition(resource: dict[str, Any]) -> str | None:
    """The local ASL path of a state machine, SAM's (``DefinitionUri``) or plain (``DefinitionS3Location``),
    or ``None`` when its definition is inline or already in S3."""
    props = resource.get("Properties", {})
    if resource["Type"] == "AWS::Serverless::StateMachine":
        uri = props.get("DefinitionUri")
    elif resource["Type"] == "AWS::StepFunctions::StateMachine":
        uri = props.get("DefinitionS3Location")
    else:
        return None
    return uri if isinstance(uri, str) and "://" not in uri else None


def package_offline(template: dict[str, Any]) -> dict[str, Any]:
    """What ``sam package`` does, without uploading: local paths become S3 URIs of an artifact bucket,
    image functions get an image URI. The local paths stay readable in the source template."""
    out = copy.deepcopy(template)
    for logical_id, resource in out["Resources"].items():
        props = resource.setdefault("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function" and props.get("PackageType") == "Image":
            props.setdefault("ImageUri", f"{LOCAL_IMAGE_REPO}:{logical_id.lower()}")
            continue
        key = _URI_PROPERTIES.get(resource["Type"])
        if key and isinstance(props.get(key), str) and not props[key].startswith("s3://"):
            props[key] = f"s3://{ARTIFACT_BUCKET}/{props[key].strip('/')}"
        location = _S3_LOCATION_PROPERTIES.get(resource["Type"])
        if location and isinstance(props.get(location), str):
            props[location] = {"Bucket": ARTIFACT_BUCKET, "Key": props[location].strip("/")}
    return out


def inline_state_machines(template: dict[str, Any], base: Path) -> dict[str, Any]:
    """Each state machine's local definition file read into the template, so the translated template
    carries the ASL itself (for cfn-lint, which checks a literal definition): a SAM ``DefinitionUri``
    becomes ``Definition`` (the translator writes it out as ``DefinitionString``), a plain
    ``DefinitionS3Location`` becomes a literal ``DefinitionString`` (where cfn-lint also checks the
    placeholders against ``DefinitionSubstitutions``; in a ``Definition`` object it does not)."""
    out = copy.deepcopy(template)
    for resource in out["Resources"].values():
        path = local_definition(resource)
        if path is None:
            continue
        props = resource["Properties"]
        definition = json.loads((base / path).read_text(encoding="utf-8"))
        if resource["Type"] == "AWS::Serverless::StateMachine":
            props["Definition"] = definition
            del props["DefinitionUri"]
        else:
            props["DefinitionString"] = json.dumps(definition, indent=2)
            del props["DefinitionS3Location"]
    return out


def join_definition_strings(translated: dict[str, Any]) -> int:
    """The translator writes an inline definition as ``DefinitionString: {"Fn::Join": ["\\n", lines]}``;
    cfn-lint validates a literal string's ASL but not an ``Fn::Join``, so the join (the string
    CloudFormation would build) replaces it. Returns how many were joined."""
    joined = 0
    for resource in translated["Resources"].values():
        props = resource.get("Properties", {})
        join = props.get("DefinitionString")
        if resource["Type"] == "AWS::StepFunctions::StateMachine" and isinstance(join, dict) and "Fn::Join" in join:
            sep, parts = join["Fn::Join"]
            if all(isinstance(p, str) for p in parts):
                props["DefinitionString"] = sep.join(parts)
                joined += 1
    return joined


def translate(
    template: dict[str, Any], parameters: dict[str, Any] | None = None, *, region: str = "us-east-1"
) -> dict[str, Any]:
    """Plain CloudFormation from a SAM template (the transform runs on a copy), for ``region``."""
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator
    from samtranslator.utils.py27hash_fix import to_py27_compatible_template, undo_mark_unicode_str_in_template

    fragment = package_offline(template)
    values = dict(parameters or {})
    to_py27_compatible_template(fragment, values)
    policies = OfflinePolicyLoader(partition="aws").load()
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))
    out = translator.translate(fragment, parameter_values=values, get_managed_policy_map=lambda: policies)
    return dict(undo_mark_unicode_str_in_template(out))
