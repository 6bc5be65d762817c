"""The tenant API's OpenAPI document (``docs/openapi.json``) is generated from the code and current, and
it describes exactly the routes the template deploys (issue 16 item 2).

GIVEN the resolver's routes and the template's API events WHEN the document is generated THEN it equals
the checked-in file, its (method, path) pairs are the template's, every POST names its body's schema, and
every operation documents its errors as problem documents.
"""

from __future__ import annotations

import json
from pathlib import Path

from facegate.api_schema import DOCUMENT, openapi_document, rendered
from facegate.localcloud.template import load_template

ROOT = Path(__file__).resolve().parents[3]


def test_the_checked_in_document_is_current() -> None:
    assert DOCUMENT.read_text(encoding="utf-8") == rendered(), "run python -m facegate.api_schema --write"


def test_it_describes_exactly_the_routes_the_template_deploys() -> None:
    events = load_template(ROOT / "template.yaml")["Resources"]["ApiFunction"]["Properties"]["Events"]
    deployed = {
        (e["Properties"]["Method"].lower(), e["Properties"]["Path"]) for e in events.values() if e["Type"] == "Api"
    }
    documented = {(m, p) for p, methods in openapi_document()["paths"].items() for m in methods}
    assert documented == deployed


BODYLESS_POSTS = {"/audit/exports"}
"""POSTs that take no body (starting an export of the caller's own whole log)."""


def test_every_post_has_its_body_and_every_operation_its_problems() -> None:
    document = json.loads(DOCUMENT.read_text(encoding="utf-8"))
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            if method == "post" and path not in BODYLESS_POSTS:
                ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                assert ref.split("/")[-1] in document["components"]["schemas"], (method, path)
            for status in ("400", "401", "403", "500"):
                content = operation["responses"][status]["content"]
                assert content["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
