"""A probe's template between Embed and Match (or StoreTemplate): its own module, so Embed reaches it
without the policy gate and the other repositories (:class:`facegate.workflow.steps.Runtime`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from facegate.embedding import Embedding
from facegate.errors import InvalidRequestError
from facegate.store.items import get_or_none, storage
from facegate.store.models import SEP, CounterRecord
from facegate.store.writes import Write
from facegate.tenancy import TenantContext, check_entity_id

TRANSIENT_TTL: Final = timedelta(hours=1)
"""A Recognize or Enrol run lasts seconds (its state machine times out at 15 minutes): an hour is a
backstop; the item is deleted with the result that consumes it."""


class TransientTemplates:
    """A probe's template between Embed and Match (or StoreTemplate), under the tenant's key: the
    workflow's state carries only the reference."""

    @staticmethod
    def _key(ref: str) -> str:
        return f"probe-template{SEP}{check_entity_id(ref, 'template reference')}"

    def put(self, ctx: TenantContext, ref: str, embedding: Embedding, now: datetime) -> None:
        record = CounterRecord(
            ctx.tenant_id,
            self._key(ref),
            hits=0,
            blob=embedding.to_bytes(),
            names=[embedding.model_version],
            expires_at=now + TRANSIENT_TTL,
        )
        with storage("keeping a probe template"):
            record.save()  # a retried Embed writes the same template again

    def get(self, ctx: TenantContext, ref: str, now: datetime) -> Embedding:
        record = get_or_none(CounterRecord, "reading a probe template", ctx.tenant_id, self._key(ref))
        if record is None or record.blob is None or not record.names or record.expires_at <= now:
            raise InvalidRequestError("the probe's template is gone (expired or already used): run the request again")
        return Embedding.from_bytes(bytes(record.blob), str(record.names[0]))

    def delete_write(self, ctx: TenantContext, ref: str) -> Write:
        """Delete the item (whether or not it is still there) with the result that used it."""
        return Write("delete", CounterRecord(ctx.tenant_id, self._key(ref)), "transient_template")

    def delete(self, ctx: TenantContext, ref: str) -> None:
        with storage("deleting a probe template"):
            CounterRecord(ctx.tenant_id, self._key(ref)).delete()
