"""The SDK's ``enrol``: one photo positionally (as before) or several with ``images=[...]``.

GIVEN a client WHEN it enrols one photo or several THEN the body carries ``image_b64`` or
``images_b64`` (in order); naming both, or neither, is a caller's mistake refused before any call.
The count itself (1 to 5) is the API's to judge (a 400 with ``request.enrolment_photos``).
"""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest

from facegate.sdk import FacegateClient


class _Recording(FacegateClient):
    def __init__(self) -> None:
        super().__init__("https://api.example", "token")
        self.calls: list[tuple[str, str, dict[str, Any] | None]] = []

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, idempotent: bool = False
    ) -> dict[str, Any]:
        assert idempotent  # an enrolment carries a client token, so its retries are safe
        self.calls.append((method, path, body))
        return {"request_id": "r-1", "status": "submitted"}


def test_one_photo_positionally_is_sent_as_image_b64() -> None:
    client = _Recording()
    assert client.enrol("staff", "s-1", "c-1", b"photo")["request_id"] == "r-1"
    ((method, path, body),) = client.calls
    assert (method, path) == ("POST", "/enrolments")
    assert body is not None
    assert re.fullmatch(r"[0-9a-f]{32}", body.pop("client_token"))  # one per call, as boto3's ClientToken
    assert body == {
        "gallery_id": "staff",
        "subject_id": "s-1",
        "consent_id": "c-1",
        "image_b64": base64.b64encode(b"photo").decode(),
    }


def test_several_photos_are_sent_as_images_b64_in_order() -> None:
    client = _Recording()
    photos = [b"first", b"second", b"third"]
    client.enrol("staff", "s-1", "c-1", images=photos)
    ((_, _, body),) = client.calls
    assert body is not None
    assert "image_b64" not in body
    assert [base64.b64decode(p) for p in body["images_b64"]] == photos


def test_six_photos_are_left_to_the_api_to_refuse() -> None:
    client = _Recording()
    client.enrol("staff", "s-1", "c-1", images=[bytes([i]) for i in range(6)])
    ((_, _, body),) = client.calls
    assert body is not None
    assert len(body["images_b64"]) == 6


@pytest.mark.parametrize("kwargs", [{"image": b"one", "images": [b"two"]}, {}], ids=["both", "neither"])
def test_naming_both_or_neither_is_refused_before_any_call(kwargs: dict[str, Any]) -> None:
    client = _Recording()
    with pytest.raises(TypeError, match="image"):
        client.enrol("staff", "s-1", "c-1", **kwargs)
    assert client.calls == []


def test_a_client_token_given_is_sent_and_each_call_gets_its_own_otherwise() -> None:
    client = _Recording()
    client.enrol("staff", "s-1", "c-1", b"photo", client_token="retry-me")
    client.enrol("staff", "s-1", "c-1", b"photo")
    client.enrol("staff", "s-1", "c-1", b"photo")
    tokens = [body["client_token"] for _, _, body in client.calls if body is not None]
    assert tokens[0] == "retry-me"
    assert tokens[1] != tokens[2]
