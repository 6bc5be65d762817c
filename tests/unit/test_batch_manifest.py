"""The bulk job's manifest: one photo (``key``) or several (``keys``, fused into one template) per line.

GIVEN a manifest WHEN a line lists 1 to 5 photos under the tenant's uploads THEN it is accepted; WHEN a
line names both forms, neither, more than five photos, a photo twice or one outside the prefix THEN the
whole manifest is refused before anyone is enrolled.
"""

from __future__ import annotations

import json

import pytest

from facegate.batch import parse_manifest
from facegate.errors import InvalidRequestError

PREFIX = "tenants/t1/uploads/"


def _line(**fields: object) -> str:
    return json.dumps({"subject_id": "s1", "consent_id": "c1", **fields})


def test_one_photo_or_several() -> None:
    lines = parse_manifest(
        "\n".join([_line(key=PREFIX + "a.jpg"), _line(keys=[PREFIX + f"b{i}.jpg" for i in range(3)])]), "t1"
    )
    assert lines[0].photos == (PREFIX + "a.jpg",)
    assert lines[1].photos == tuple(PREFIX + f"b{i}.jpg" for i in range(3))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"key": PREFIX + "a.jpg", "keys": [PREFIX + "b.jpg"]}, "not both"),
        ({}, "not both"),
        ({"keys": [PREFIX + f"b{i}.jpg" for i in range(6)]}, "at most 5"),
        ({"keys": []}, "at least 1"),
        ({"keys": [PREFIX + "b.jpg", PREFIX + "b.jpg"]}, "twice"),
        ({"keys": [PREFIX + "b.jpg", "tenants/t2/uploads/c.jpg"]}, "must lie under"),
        ({"keys": [PREFIX + "../../t2/uploads/c.jpg"]}, "must lie under"),
    ],
)
def test_a_bad_line_refuses_the_whole_manifest(fields: dict[str, object], message: str) -> None:
    text = "\n".join([_line(key=PREFIX + "ok.jpg"), _line(**fields)])
    with pytest.raises(InvalidRequestError, match=message):
        parse_manifest(text, "t1")
