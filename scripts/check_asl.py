"""Check the state machines' ASL files: valid JSON, and accepted by moto's ASL parser.

    python scripts/check_asl.py [FILE ...]                 # parse each file with moto (the project's .venv)
    python scripts/check_asl.py --substitute-into DIR [FILE ...]
                                                           # write each file with its placeholders substituted
                                                           # into DIR (stdlib only: any python runs it)

Without FILE arguments the files are $FACEGATE_ASL_DIR/*.asl.json (default infra/statemachine, relative to the
repository root); finding none is an error, since the application requires them.

The files carry DefinitionSubstitutions placeholders (``${PolicyCheckFunctionArn}``) that SAM replaces at deploy.
A placeholder is not an ARN, so both moto (it parses a Task's Resource ARN) and statelint (Resource must be a URI)
refuse it: each is replaced first with a syntactically valid dummy value shaped by the placeholder's name
(``...FunctionArn`` -> a Lambda function ARN, ``...TableName`` -> a table name, see SHAPES). Exit status 1 with the
file name and the parser's error on the first failure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ASL_DIR = "infra/statemachine"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_.:-]+)\}")

_REGION = "us-east-1"
_ACCOUNT = "123456789012"
_ARN = f"{_REGION}:{_ACCOUNT}"
# Suffix of the placeholder's name -> dummy value; the first matching suffix wins (longest suffixes first).
# {name} is the placeholder's name, {lower} the same in lower case with '-' for '_' (valid bucket/queue names).
SHAPES: tuple[tuple[str, str], ...] = (
    ("FunctionArn", "arn:aws:lambda:" + _ARN + ":function:{name}"),
    ("FunctionName", "{name}"),
    ("StateMachineArn", "arn:aws:states:" + _ARN + ":stateMachine:{name}"),
    ("ActivityArn", "arn:aws:states:" + _ARN + ":activity:{name}"),
    ("JobQueueArn", "arn:aws:batch:" + _ARN + ":job-queue/{name}"),
    ("JobQueueName", "{name}"),
    ("JobDefinitionArn", "arn:aws:batch:" + _ARN + ":job-definition/{name}:1"),
    ("JobDefinitionName", "{name}"),
    ("TableArn", "arn:aws:dynamodb:" + _ARN + ":table/{name}"),
    ("TableName", "{name}"),
    ("BucketArn", "arn:aws:s3:::{lower}"),
    ("BucketName", "{lower}"),
    ("TopicArn", "arn:aws:sns:" + _ARN + ":{name}"),
    ("QueueArn", "arn:aws:sqs:" + _ARN + ":{name}"),
    ("QueueUrl", "https://sqs." + _REGION + ".amazonaws.com/" + _ACCOUNT + "/{name}"),
    ("EventBusArn", "arn:aws:events:" + _ARN + ":event-bus/{name}"),
    ("EventBusName", "{name}"),
    ("RoleArn", "arn:aws:iam::" + _ACCOUNT + ":role/{name}"),
    ("KeyArn", "arn:aws:kms:" + _ARN + ":key/00000000-0000-0000-0000-000000000000"),
    ("ClusterArn", "arn:aws:ecs:" + _ARN + ":cluster/{name}"),
    ("TaskDefinitionArn", "arn:aws:ecs:" + _ARN + ":task-definition/{name}:1"),
    ("Arn", "arn:aws:unknown:" + _ARN + ":{name}"),
)


def dummy_value(name: str) -> str:
    for suffix, shape in SHAPES:
        if name.endswith(suffix):
            return shape.format(name=name, lower=name.lower().replace("_", "-"))
    return f"placeholder-{name}"


def placeholders(text: str) -> set[str]:
    """Names of the ``${...}`` placeholders in an ASL text."""
    return set(PLACEHOLDER.findall(text))


def substitute(text: str) -> str:
    """The ASL text with each placeholder replaced by its dummy value (none contains a quote or backslash)."""
    return PLACEHOLDER.sub(lambda m: dummy_value(m.group(1)), text)


def asl_files(paths: list[str]) -> list[Path]:
    if paths:
        return [Path(p) for p in paths]
    asl_dir = Path(os.environ.get("FACEGATE_ASL_DIR", DEFAULT_ASL_DIR))
    if not asl_dir.is_absolute():
        asl_dir = ROOT / asl_dir
    files = sorted(asl_dir.glob("*.asl.json"))
    if not files:
        print(f"check_asl: no *.asl.json under {asl_dir}: the application requires them", file=sys.stderr)
        raise SystemExit(1)
    return files


def read_substituted(path: Path) -> str:
    try:
        text = substitute(path.read_text(encoding="utf-8"))
        json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{path}: cannot read: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    except json.JSONDecodeError as exc:
        print(f"{path}: not valid JSON: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    return text


def parse_error(definition: str) -> str | None:
    """moto's ASL parser on a definition: None when accepted, else the error. Needs moto (the project's .venv)."""
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser, ASLParserException

    try:
        # Syntax errors (ANTLR, against moto's ASL grammar) raise ASLParserException; building the evaluation
        # components (the preprocessor: resource ARNs, paths, intrinsic functions) raises other exceptions.
        AmazonStateLanguageParser.parse(definition)
    except ASLParserException as exc:
        return "; ".join(exc.errors) or repr(exc)
    except Exception as exc:  # any failure to build the program is a rejection
        return f"{type(exc).__name__}: {exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check ASL files (placeholders substituted) with moto's parser.")
    parser.add_argument("files", nargs="*", help="ASL files (default: $FACEGATE_ASL_DIR/*.asl.json)")
    parser.add_argument("--substitute-into", type=Path, metavar="DIR", help="only write substituted copies to DIR")
    args = parser.parse_args(argv)
    files = asl_files(args.files)

    if args.substitute_into:
        args.substitute_into.mkdir(parents=True, exist_ok=True)
        for path in files:
            out = args.substitute_into / path.name
            out.write_text(read_substituted(path), encoding="utf-8")
            print(out)
        return 0

    import moto

    print(f"moto {moto.__version__}: AmazonStateLanguageParser.parse")
    for path in files:
        text = read_substituted(path)
        error = parse_error(text)
        if error is not None:
            print(f"{path}: moto's ASL parser rejects it: {error}", file=sys.stderr)
            return 1
        names = sorted(placeholders(path.read_text(encoding="utf-8")))
        print(f"ok {path} ({len(names)} placeholders substituted: {', '.join(names) or '-'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
