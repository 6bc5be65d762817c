#!/usr/bin/env python3
"""Deployment sizes of the Lambda functions in template.yaml, checked against Lambda's limits.

Run by ``scripts/check-packaging`` after ``sam build`` (zip functions and their layers, in the build
dir) and after the Dockerfile's install has been emulated for the image functions (one folder per
function under the image dir: ``task/`` is ``$LAMBDA_TASK_ROOT``, ``opt/models`` the models). Reads the
template with ``facegate.localcloud.template.load_template`` (short tags in their long form: ``!Ref X`` is
``{"Ref": "X"}``), so it runs with the project's virtualenv (``.venv/bin/python``).

    package_sizes.py list                 # ``zip|image <TAB> id <TAB> layers|FUNCTION <TAB> handler|command``
    package_sizes.py env FUNCTION         # KEY=VALUE lines: the function's environment, placeholders for refs
    package_sizes.py report               # the table; exit 1 when a function is over its limit

Sizes are the sum of the regular files' sizes (what Lambda counts when it unpacks a zip), in MiB:
the 250 MB limit is 262,144,000 bytes, function and all its layers together. Zipped sizes are
measured by deflating each artefact (function, each layer) as ``sam deploy`` uploads it; the 50 MB
limit applies only to direct uploads, so it is reported, not enforced (deploys go through S3).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facegate.localcloud.template import load_template as _load_cfn_template

ROOT = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
ZIP_UNZIPPED_LIMIT = 262_144_000  # function + layers, unzipped
ZIP_DIRECT_UPLOAD_LIMIT = 50 * MIB  # zipped, direct upload only (not enforced: S3-based deploys)
IMAGE_LIMIT = 10 * 1024 * MIB  # container image, uncompressed
STACK_NAME = "facegate"  # stands in for AWS::StackName


@dataclass
class Function:
    logical_id: str
    package_type: str  # "Zip" or "Image"
    layers: list[str] = field(default_factory=list)
    code_uri: str | None = None
    handler: str | None = None
    image_function: str | None = None  # DockerBuildArgs.FUNCTION
    command: str | None = None  # ImageConfig.Command[0]
    environment: dict[str, Any] = field(default_factory=dict)


def load_template(path: Path) -> dict[str, Any]:
    """The template, intrinsics in their long form (``{"Ref": X}``, ``{"Fn::GetAtt": [A, B]}``, ...)."""
    try:
        return _load_cfn_template(path)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


def _ref_name(value: Any) -> str | None:
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return str(value["Ref"])
    return None


def functions(template: dict[str, Any]) -> list[Function]:
    global_env = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}) or {}
    found = []
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") not in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            continue
        props = resource.get("Properties", {}) or {}
        meta = resource.get("Metadata", {}) or {}
        env = dict(global_env)
        env.update((props.get("Environment", {}) or {}).get("Variables", {}) or {})
        fn = Function(logical_id, props.get("PackageType", "Zip"), environment=env)
        if fn.package_type == "Image":
            fn.image_function = (meta.get("DockerBuildArgs", {}) or {}).get("FUNCTION")
            command = (props.get("ImageConfig", {}) or {}).get("Command") or []
            fn.command = command[0] if command else None
        else:
            fn.code_uri = props.get("CodeUri")
            fn.handler = props.get("Handler")
            for layer in props.get("Layers", []) or []:
                if isinstance(layer, dict) and (layer.get("Fn::If") or [None])[0] == "UseOpenTelemetry":
                    continue  # AWS's optional OpenTelemetry layer (a parameter's ARN): not built or sized here
                name = _ref_name(layer)
                if name is None:
                    raise SystemExit(f"{logical_id}: layer {layer!r} is not a !Ref to a layer in this template")
                fn.layers.append(name)
        found.append(fn)
    return found


PSEUDO = {
    "AWS::StackName": STACK_NAME,
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}
# Where a resource keeps its physical name, and the service and ARN resource prefix of its type.
NAME_PROPERTY = {
    "AWS::DynamoDB::Table": "TableName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::Events::EventBus": "Name",
    "AWS::SQS::Queue": "QueueName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::Serverless::StateMachine": "Name",
    "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::Serverless::Function": "FunctionName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Logs::LogGroup": "LogGroupName",
}
ARN_SHAPE = {
    "AWS::DynamoDB::Table": ("dynamodb", "table/"),
    "AWS::S3::Bucket": ("s3", ""),
    "AWS::Events::EventBus": ("events", "event-bus/"),
    "AWS::SQS::Queue": ("sqs", ""),
    "AWS::SNS::Topic": ("sns", ""),
    "AWS::Serverless::StateMachine": ("states", "stateMachine:"),
    "AWS::StepFunctions::StateMachine": ("states", "stateMachine:"),
    "AWS::Serverless::Function": ("lambda", "function:"),
    "AWS::Lambda::Function": ("lambda", "function:"),
    "AWS::KMS::Key": ("kms", "key/"),
    "AWS::Logs::LogGroup": ("logs", "log-group:"),
}
REF_IS_ARN = {"AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine", "AWS::SNS::Topic"}


class Placeholders:
    """Plausible stand-ins for the values CloudFormation would resolve: names, ARNs, ``!Sub`` strings."""

    def __init__(self, template: dict[str, Any]) -> None:
        self.resources: dict[str, Any] = template.get("Resources", {}) or {}
        self.parameters: dict[str, Any] = template.get("Parameters", {}) or {}

    def value(self, value: Any) -> str:
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, str | int | float):
            return str(value)
        if isinstance(value, dict) and len(value) == 1:
            ((key, inner),) = value.items()
            if key == "Ref":
                return self.ref(str(inner))
            if key == "Fn::GetAtt":
                target = inner.split(".", 1) if isinstance(inner, str) else list(inner)
                return self.get_att(str(target[0]), str(target[1]))
            if key == "Fn::Sub":
                text, extra = (inner, {}) if isinstance(inner, str) else inner
                return self.sub(str(text), extra or {})
            if key == "Fn::Join":
                sep, items = inner
                return str(sep).join(self.value(item) for item in items)
        return f"{STACK_NAME}-placeholder"

    def sub(self, text: str, extra: dict[str, Any]) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in extra:
                return self.value(extra[name])
            if "." in name and name.split(".", 1)[0] in self.resources:
                target, attr = name.split(".", 1)
                return self.get_att(target, attr)
            return self.ref(name)

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def name_of(self, logical_id: str) -> str:
        resource = self.resources.get(logical_id, {}) or {}
        prop = NAME_PROPERTY.get(resource.get("Type", ""))
        explicit = (resource.get("Properties", {}) or {}).get(prop) if prop else None
        if explicit is not None:
            return self.value(explicit)
        return f"{STACK_NAME}-{logical_id}"

    def arn_of(self, logical_id: str) -> str:
        rtype = (self.resources.get(logical_id, {}) or {}).get("Type", "")
        service, prefix = ARN_SHAPE.get(rtype, (rtype.split("::")[1].lower() if "::" in rtype else "unknown", ""))
        if service == "s3":
            return f"arn:aws:s3:::{self.name_of(logical_id).lower()}"
        if service == "iam":  # IAM is global: its ARNs have no region
            return f"arn:aws:iam::{PSEUDO['AWS::AccountId']}:{prefix or 'role/'}{self.name_of(logical_id)}"
        ident = "1234abcd-12ab-34cd-56ef-1234567890ab" if service == "kms" else self.name_of(logical_id)
        return f"arn:aws:{service}:{PSEUDO['AWS::Region']}:{PSEUDO['AWS::AccountId']}:{prefix}{ident}"

    def ref(self, name: str) -> str:
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.parameters:
            return str((self.parameters[name] or {}).get("Default", f"{STACK_NAME}-{name}"))
        rtype = (self.resources.get(name, {}) or {}).get("Type", "")
        if rtype in REF_IS_ARN:
            return self.arn_of(name)
        if rtype == "AWS::SQS::Queue":
            return f"https://sqs.{PSEUDO['AWS::Region']}.amazonaws.com/{PSEUDO['AWS::AccountId']}/{self.name_of(name)}"
        if rtype == "AWS::KMS::Key":
            return "1234abcd-12ab-34cd-56ef-1234567890ab"
        return self.name_of(name)

    def get_att(self, logical_id: str, attr: str) -> str:
        if attr == "Arn":
            return self.arn_of(logical_id)
        if attr == "Name":
            return self.name_of(logical_id)
        return f"{self.name_of(logical_id)}-{attr.lower()}"


def tree_size(path: Path) -> int:
    """Sum of the sizes of the regular files under ``path`` (symlinks not followed)."""
    total = 0
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def zipped_size(path: Path) -> int:
    """Size of ``path``'s contents as a deflated zip (what ``sam package`` uploads)."""
    with tempfile.TemporaryFile() as handle:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames.sort()
                for name in sorted(filenames):
                    full = Path(dirpath) / name
                    if full.is_file() and not full.is_symlink():
                        archive.write(full, full.relative_to(path).as_posix())
        handle.seek(0, os.SEEK_END)
        return handle.tell()


def mib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / MIB:.1f}"


def cmd_list(template: dict[str, Any]) -> int:
    for fn in functions(template):
        if fn.package_type == "Image":
            print(f"image\t{fn.logical_id}\t{fn.image_function or '-'}\t{fn.command or '-'}")
        else:
            print(f"zip\t{fn.logical_id}\t{','.join(fn.layers) or '-'}\t{fn.handler or '-'}")
    return 0


def cmd_env(template: dict[str, Any], logical_id: str) -> int:
    for fn in functions(template):
        if fn.logical_id == logical_id:
            values = Placeholders(template)
            for name, value in fn.environment.items():
                print(f"{name}={values.value(value)}")
            return 0
    print(f"no function {logical_id} in the template", file=sys.stderr)
    return 2


def cmd_report(template: dict[str, Any], build_dir: Path, image_dir: Path, as_json: Path | None) -> int:
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    layer_cache: dict[str, tuple[int, int]] = {}

    def layer_sizes(layer_id: str) -> tuple[int, int]:
        if layer_id not in layer_cache:
            path = build_dir / layer_id
            if not path.is_dir():
                raise SystemExit(f"{path} is missing: run `sam build` first (scripts/check-packaging)")
            layer_cache[layer_id] = (tree_size(path), zipped_size(path))
        return layer_cache[layer_id]

    for fn in functions(template):
        if fn.package_type == "Image":
            root = image_dir / fn.logical_id
            if not root.is_dir():
                raise SystemExit(f"{root} is missing: the image install was not emulated (scripts/check-packaging)")
            unzipped = tree_size(root)
            ok = unzipped <= IMAGE_LIMIT
            rows.append(
                {
                    "function": fn.logical_id,
                    "type": "Image",
                    "unzipped": unzipped,
                    "zipped": None,
                    "limit": "10 GB image",
                    "ok": ok,
                    "note": "over 250 MB: too big for a zip" if unzipped > ZIP_UNZIPPED_LIMIT else "",
                }
            )
            if not ok:
                problems.append(f"{fn.logical_id}: {mib(unzipped)} MiB is over the 10 GB image limit")
            continue
        path = build_dir / fn.logical_id
        if not path.is_dir():
            raise SystemExit(f"{path} is missing: run `sam build` first (scripts/check-packaging)")
        unzipped, zipped = tree_size(path), zipped_size(path)
        notes = []
        for layer_id in fn.layers:
            layer_unzipped, layer_zipped = layer_sizes(layer_id)
            unzipped += layer_unzipped
            zipped += layer_zipped
        if len(fn.layers) > 5:
            problems.append(f"{fn.logical_id}: {len(fn.layers)} layers (Lambda allows 5)")
        if zipped > ZIP_DIRECT_UPLOAD_LIMIT:
            notes.append("zip over 50 MB: S3 upload only")
        ok = unzipped <= ZIP_UNZIPPED_LIMIT
        if not ok:
            problems.append(
                f"{fn.logical_id}: {unzipped:,} bytes unzipped with its layers, over Lambda's {ZIP_UNZIPPED_LIMIT:,}"
            )
        rows.append(
            {
                "function": fn.logical_id + (f" (+{', '.join(fn.layers)})" if fn.layers else ""),
                "type": "Zip",
                "unzipped": unzipped,
                "zipped": zipped,
                "limit": "250 MB unzipped",
                "ok": ok,
                "note": "; ".join(notes),
            }
        )
    for layer_id, (layer_unzipped, layer_zipped) in sorted(layer_cache.items()):
        rows.append(
            {
                "function": f"{layer_id} (layer alone)",
                "type": "Layer",
                "unzipped": layer_unzipped,
                "zipped": layer_zipped,
                "limit": "(counted above)",
                "ok": layer_unzipped <= ZIP_UNZIPPED_LIMIT,
                "note": "",
            }
        )

    header = ("function", "package", "unzipped MiB", "zipped MiB", "limit", "OK", "note")
    table = [
        (
            r["function"],
            r["type"],
            mib(r["unzipped"]),
            mib(r["zipped"]),
            r["limit"],
            "yes" if r["ok"] else "NO",
            r["note"],
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in [header, *table]) for i in range(len(header))]
    numeric = {2, 3}
    for row in [header, *table]:
        cells = [
            str(c).rjust(w) if i in numeric else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
    print(
        f"(MiB = 2^20 bytes; zip limit {ZIP_UNZIPPED_LIMIT:,} bytes = 250 MiB, function + layers unzipped; "
        "zipped = function zip + layer zips, deflated; images: task root + /opt/models, base image not counted)"
    )
    if as_json is not None:
        as_json.write_text(json.dumps(rows, indent=2) + "\n")
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", type=Path, default=ROOT / "template.yaml")
    parser.add_argument("--build-dir", type=Path, default=ROOT / ".aws-sam" / "build")
    parser.add_argument("--image-dir", type=Path, default=ROOT / ".aws-sam" / "packaging" / "images")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    parser.add_argument("command", nargs="?", default="report", choices=("report", "list", "env"))
    parser.add_argument("function", nargs="?", help="for `env`: the function's logical id")
    args = parser.parse_args(argv)
    template = load_template(args.template)
    if args.command == "list":
        return cmd_list(template)
    if args.command == "env":
        if not args.function:
            parser.error("env needs a function logical id")
        return cmd_env(template, args.function)
    return cmd_report(template, args.build_dir, args.image_dir, args.json)


if __name__ == "__main__":
    sys.exit(main())
