"""Machine clients: which tenant a checkpoint system's Cognito app client acts for.

A machine signs in with OAuth client credentials; Cognito's pre-token-generation trigger is given only
the client id, so the tenant claim on its access token comes from this registry (written by operators,
``facegate operator clients ...``), never from anything the client sends. A client that is not here, or
is disabled, gets no token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from pynamodb.exceptions import DoesNotExist

from facegate.errors import InvalidRequestError
from facegate.store.items import storage
from facegate.store.models import MachineClientRecord
from facegate.store.writes import Write
from facegate.tenancy import check_entity_id, check_tenant_id

CLIENT_ID: Final = re.compile(r"^[\w+]{1,128}$")  # Cognito's app client id pattern
STATUSES: Final = ("active", "disabled")


@dataclass(frozen=True)
class MachineClient:
    client_id: str
    tenant_id: str
    name: str
    status: str
    created_by: str
    created_at: datetime

    @property
    def active(self) -> bool:
        return self.status == "active"


def check_client_id(value: str) -> str:
    if not isinstance(value, str) or not CLIENT_ID.fullmatch(value):
        raise InvalidRequestError("a client id is 1-128 letters, digits, '_' or '+'")
    return value


def _client(r: MachineClientRecord) -> MachineClient:
    return MachineClient(
        client_id=r.client_id,
        tenant_id=r.tenant_id,
        name=r.name,
        status=r.status,
        created_by=r.created_by,
        created_at=r.created_at,
    )


class MachineClients:
    """The registry of machine clients (operators write it; the token trigger reads one item)."""

    def create_write(self, client_id: str, tenant_id: str, name: str, operator: str) -> Write:
        """A new client of ``tenant_id`` (a client id already registered is a failed condition)."""
        record = MachineClientRecord(
            check_client_id(client_id),
            tenant_id=check_tenant_id(tenant_id),
            name=check_entity_id(name, "client name"),
            status="active",
            created_by=operator,
            created_at=datetime.now(UTC),
        )
        return Write("save", record, "machine_client", condition=MachineClientRecord.client_id.does_not_exist())

    def status_write(self, client: MachineClient, status: str) -> Write:
        """Enable or disable ``client`` as it was read (a concurrent change fails the condition)."""
        if status not in STATUSES:
            raise InvalidRequestError(f"a client's status is one of {', '.join(STATUSES)}, not {status!r}")
        return Write(
            "update",
            MachineClientRecord(client.client_id),
            "machine_client",
            actions=[MachineClientRecord.status.set(status)],
            condition=(MachineClientRecord.tenant_id == client.tenant_id)
            & (MachineClientRecord.status == client.status),
        )

    def get(self, client_id: str, *, consistent: bool = False) -> MachineClient | None:
        try:
            with storage("reading a machine client"):
                return _client(MachineClientRecord.get(check_client_id(client_id), consistent_read=consistent))
        except DoesNotExist:
            return None

    def of_tenant(self, tenant_id: str) -> list[MachineClient]:
        """A tenant's clients (an operator's listing: a scan of this small registry, never a request path)."""
        check_tenant_id(tenant_id)
        with storage("listing machine clients"):
            found = MachineClientRecord.scan(MachineClientRecord.tenant_id == tenant_id)
            return sorted((_client(r) for r in found), key=lambda c: (c.created_at, c.client_id))
