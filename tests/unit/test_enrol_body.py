"""POST /enrolments' body: one photo (``image_b64``) or several (``images_b64``, 1 to 5), never both.

GIVEN a body naming no photo, an empty list, more than five photos, both fields or the same photo twice
WHEN it is validated THEN it is refused with ``request.enrolment_photos`` (a 400) before anything is
written; one photo or up to five are accepted in the order sent.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from facegate.api import STATUS, EnrolBody, _error
from facegate.embedding import MAX_REFERENCES
from facegate.errors import EnrolmentPhotosError, InvalidRequestError

IDS = {"gallery_id": "staff", "subject_id": "s-1", "consent_id": "c-1"}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _body(**fields: Any) -> EnrolBody:
    return EnrolBody.model_validate({**IDS, **fields})


def test_one_photo_as_image_b64_is_one_photo() -> None:
    assert _body(image_b64=_b64(b"one")).photos() == [b"one"]


@pytest.mark.parametrize("count", range(1, MAX_REFERENCES + 1))
def test_one_to_five_photos_as_images_b64_keep_their_order(count: int) -> None:
    photos = [f"photo {i}".encode() for i in range(count)]
    assert _body(images_b64=[_b64(p) for p in photos]).photos() == photos


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"images_b64": [_b64(f"photo {i}".encode()) for i in range(MAX_REFERENCES + 1)]}, "1 to 5 photos, got 6"),
        ({"images_b64": []}, "1 to 5 photos, got 0"),
        ({"image_b64": _b64(b"one"), "images_b64": [_b64(b"two")]}, "not both"),
        ({}, "needs a photo"),
    ],
    ids=["six", "empty-list", "both-fields", "none"],
)
def test_a_body_with_no_photo_too_many_or_both_fields_is_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(EnrolmentPhotosError, match=message) as refused:
        _body(**fields)
    assert refused.value.code == "request.enrolment_photos"
    assert _error(refused.value).status_code == 400


def test_the_same_photo_twice_is_refused() -> None:
    with pytest.raises(EnrolmentPhotosError, match="twice"):
        _body(images_b64=[_b64(b"same"), _b64(b"other"), _b64(b"same")]).photos()


def test_a_photo_that_is_not_base64_is_a_400() -> None:
    with pytest.raises(InvalidRequestError, match="base64"):
        _body(images_b64=[_b64(b"fine"), "not base64!"]).photos()


def test_the_photo_count_error_is_a_request_error() -> None:
    assert issubclass(EnrolmentPhotosError, InvalidRequestError)
    assert STATUS[InvalidRequestError] == 400
