"""Reading and writing one item: pynamodb's failures as facegate's errors (every store module's)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final, TypeVar

from pynamodb.exceptions import DoesNotExist, PynamoDBException
from pynamodb.models import Model

from facegate.errors import ConflictError, StorageError

M = TypeVar("M", bound=Model)
CONFLICT_CODES: Final = {"ConditionalCheckFailedException", "TransactionCanceledException"}


@contextmanager
def storage(what: str) -> Iterator[None]:
    """Translate pynamodb/botocore failures into facegate's errors."""
    try:
        yield
    except DoesNotExist:
        raise  # a missing item is an answer, not a failure: callers turn it into their own result
    except PynamoDBException as exc:
        code = getattr(exc, "cause_response_code", None)
        if code in CONFLICT_CODES:
            raise ConflictError(f"{what}: a condition failed ({code})") from exc
        raise StorageError(f"{what} failed: {code or type(exc).__name__}") from exc


def get_or_none(model: type[M], what: str, hash_key: str, range_key: str) -> M | None:
    """One item of the caller's partition, or ``None`` when it does not exist."""
    try:
        with storage(what):
            return model.get(hash_key, range_key)
    except DoesNotExist:
        return None
