"""Translate the SAM template into plain CloudFormation, offline, for cfn-lint.

    .venv/bin/python scripts/translate_template.py TEMPLATE OUT.json [--region us-east-1]

The same translation the local cloud deploys (``facegate.localcloud.template``: local paths packaged as
``sam package`` would, aws-sam-translator with an offline managed-policy map), with each state
machine's ASL inlined and its ``DefinitionString`` joined into a literal, so cfn-lint checks the ASL
(rule E3601) and the placeholders against ``DefinitionSubstitutions`` (E1029) too.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from facegate.localcloud.template import inline_state_machines, join_definition_strings, load_template, translate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("template", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--region", default="us-east-1")
    args = parser.parse_args(argv)
    source = inline_state_machines(load_template(args.template), args.template.parent)
    translated = translate(source, region=args.region)
    joined = join_definition_strings(translated)
    args.output.write_text(json.dumps(translated, indent=2) + "\n", encoding="utf-8")
    kinds = Counter(r["Type"] for r in translated["Resources"].values())
    summary = ", ".join(f"{n} {t}" for t, n in sorted(kinds.items()))
    print(f"translated {args.template} -> {args.output}: {sum(kinds.values())} resources ({summary})")
    print(f"state machine definitions inlined as literal DefinitionString: {joined}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
