"""Data writes that commit in one DynamoDB transaction with the audit entry that records them.

A state-changing operation (a template stored, a result recorded, a subject erased) and its audit
entry are one unit: the repositories describe their writes as :class:`Write` values instead of
executing them, and :meth:`facegate.audit.AuditLog.append` commits them with the entry and the chain
head in one ``TransactWriteItems``. Either all of it lands or none of it does, so a failure between
two writes cannot leave a template without its audit entry, and a retry that finds its own earlier
write (a condition on a key derived from the request) converges instead of writing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

MAX_TRANSACTION_ITEMS = 100
"""DynamoDB's limit on the items of one TransactWriteItems (an audit entry and its head take two)."""


@dataclass(frozen=True)
class Write:
    """One item of a transaction: a conditional save, update, delete or a bare condition check.

    ``name`` identifies the write when its own condition fails (:class:`~facegate.errors.WriteConditionError`).
    """

    op: Literal["save", "update", "delete", "check"]
    item: Model
    name: str
    condition: Any = None
    actions: Sequence[Any] = ()

    def add_to(self, tx: TransactWrite) -> None:
        if self.op == "save":
            tx.save(self.item, condition=self.condition)
        elif self.op == "update":
            tx.update(self.item, actions=list(self.actions), condition=self.condition)
        elif self.op == "delete":
            tx.delete(self.item, condition=self.condition)
        else:
            model = type(self.item)
            hash_key = getattr(self.item, model._hash_keyname or "")
            range_key = getattr(self.item, model._range_keyname) if model._range_keyname else None
            tx.condition_check(model, hash_key, range_key, condition=self.condition)


def commit(writes: Sequence[Write], connection: Any) -> None:
    """Commit ``writes`` as one transaction with no audit entry (only store-level tests and the
    operator's tools do that; the request path always commits through the audit log)."""
    if not writes:
        return
    if len(writes) > MAX_TRANSACTION_ITEMS:
        raise ValueError(f"{len(writes)} writes do not fit one transaction")
    with TransactWrite(connection=connection) as tx:
        for write in writes:
            write.add_to(tx)
