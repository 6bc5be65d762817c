"""Operators' decisions: a tenant's application for a use case, approved only through the gate."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from facegate.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidRequestError,
    PolicyDeniedError,
    ResourceNotFoundError,
    WriteConditionError,
)
from facegate.policy import Decision, Operation, PolicyRequest
from facegate.policy.catalog import RATE_OPERATIONS, default_catalog
from facegate.service.base import ServiceBase
from facegate.service.records import denial_text
from facegate.store.machine_clients import MachineClient, MachineClients
from facegate.store.repositories import Approval, Tenant
from facegate.tenancy import TenantContext, check_tenant_id

if TYPE_CHECKING:  # the vision stack (onnxruntime, OpenCV) stays out of the non-vision functions
    pass


class Operators(ServiceBase):
    """What an operator does to the registry. Every change commits in one transaction with its entry in
    the tenant's audit log (``tenant.registered``, ``tenant.suspended``, ``approval.granted``, ...), so
    an operator's change is never off the record; the actor is the operator's identity."""

    def register_tenant(
        self, operator: str, tenant_id: str, *, name: str, sector: str, country: str, jurisdiction: str
    ) -> Tenant:
        """Register a tenant (closed vocabularies, checked exactly); an id already taken is a conflict."""
        write = self.registry.register_write(
            tenant_id, name=name, sector=sector, country=country, jurisdiction=jurisdiction
        )
        record = write.item
        ctx = TenantContext(tenant_id=tenant_id, actor=operator)
        details = {k: getattr(record, k) for k in ("name", "sector", "country", "jurisdiction")}
        try:
            self.audit.append(
                ctx,
                "tenant.registered",
                details,
                writes=[write],
            )
        except WriteConditionError as exc:
            raise AlreadyExistsError(f"a tenant {tenant_id} is already registered") from exc
        return self.registry.get(tenant_id)

    def set_tenant_status(self, operator: str, tenant_id: str, status: str, *, reason: str) -> Tenant:
        """Suspend a tenant (every request refused, ``tenant.suspended``) or reinstate it; ``reason`` is recorded."""
        before = self.registry.get(tenant_id)
        if not reason.strip():
            raise InvalidRequestError("say why (the reason goes on the tenant's audit record)")
        write = self.registry.status_write(tenant_id, status)
        action = "tenant.suspended" if status == "suspended" else "tenant.reinstated"
        ctx = TenantContext(tenant_id=tenant_id, actor=operator)
        self.audit.append(ctx, action, {"was": before.status, "reason": reason.strip()[:500]}, writes=[write])
        return self.registry.get(tenant_id)

    def revoke_use_case(self, operator: str, tenant_id: str, use_case: str, *, reason: str) -> Tenant:
        """Revoke a tenant's approval of ``use_case``: the next request of that use case is refused."""
        if not reason.strip():
            raise InvalidRequestError("say why (the reason goes on the tenant's audit record)")
        ctx = TenantContext(tenant_id=tenant_id, actor=operator)
        for _ in range(3):  # a concurrent approval or revocation changed the list: read it again
            tenant = self.registry.get(tenant_id)
            write = self.registry.revoke_write(tenant, use_case)
            try:
                self.audit.append(
                    ctx, "approval.revoked", {"use_case": use_case, "reason": reason.strip()[:500]}, writes=[write]
                )
            except WriteConditionError:
                continue
            return self.registry.get(tenant_id)
        raise ConflictError(f"{tenant_id}'s approvals kept changing: try again")

    def set_quota(
        self, operator: str, tenant_id: str, use_case: str, operation: str, *, per_minute: int, per_day: int
    ) -> Tenant:
        """Lower a tenant's rate limits for one use case and operation; never above the catalog's."""
        if operation not in RATE_OPERATIONS:
            raise InvalidRequestError(f"a quota is for one of {', '.join(sorted(RATE_OPERATIONS))}, not {operation!r}")
        limits = default_catalog().use_cases.get(use_case)
        if limits is None:
            raise InvalidRequestError(f"{use_case!r} is not a use case of the catalog")
        ceiling = limits.rate_limits.get(operation)
        if ceiling is not None and (per_minute > ceiling.per_minute or per_day > ceiling.per_day):
            raise InvalidRequestError(
                f"a quota only lowers the catalog's limit for {use_case} {operation} "
                f"({ceiling.per_minute}/minute, {ceiling.per_day}/day)"
            )
        ctx = TenantContext(tenant_id=check_tenant_id(tenant_id), actor=operator)
        for _ in range(3):  # another quota changed since the read: read again and set this one on top
            tenant = self.registry.get(tenant_id)
            write = self.registry.quota_write(tenant, use_case, operation, per_minute=per_minute, per_day=per_day)
            try:
                self.audit.append(
                    ctx,
                    "quota.set",
                    {"use_case": use_case, "operation": operation, "per_minute": per_minute, "per_day": per_day},
                    writes=[write],
                )
            except WriteConditionError:
                continue
            return self.registry.get(tenant_id)
        raise ConflictError(f"{tenant_id}'s quotas kept changing: try again")

    # --- machine clients (checkpoint systems signing in with client credentials) ----------------------

    def register_machine_client(self, operator: str, tenant_id: str, client_id: str, name: str) -> MachineClient:
        """Record that the Cognito app client ``client_id`` acts for ``tenant_id`` (what the token trigger
        reads), with its audit entry in the same transaction. An unknown tenant gets no client."""
        self.registry.get(tenant_id)
        clients = MachineClients()
        write = clients.create_write(client_id, tenant_id, name, operator)
        ctx = TenantContext(tenant_id=tenant_id, actor=operator)
        try:
            self.audit.append(ctx, "machine_client.created", {"client_id": client_id, "name": name}, writes=[write])
        except WriteConditionError as exc:
            raise AlreadyExistsError(f"a machine client {client_id} is already registered") from exc
        found = clients.get(client_id, consistent=True)
        if found is None:  # committed a moment ago: a read that misses it is a storage failure
            raise ConflictError(f"machine client {client_id} was recorded but cannot be read back: try reading it")
        return found

    def machine_client(self, tenant_id: str, client_id: str) -> MachineClient:
        """One of ``tenant_id``'s machine clients (another tenant's is 'no such client')."""
        found = MachineClients().get(client_id, consistent=True)
        if found is None or found.tenant_id != check_tenant_id(tenant_id):
            raise ResourceNotFoundError(f"{tenant_id} has no machine client {client_id}")
        return found

    def set_machine_client_status(
        self, operator: str, tenant_id: str, client_id: str, status: str, *, reason: str
    ) -> MachineClient:
        """Disable a machine client (it gets no new token) or enable it again; recorded with ``reason``.
        Setting the status it already has changes and records nothing."""
        if not reason.strip():
            raise InvalidRequestError("say why (the reason goes on the tenant's audit record)")
        clients = MachineClients()
        ctx = TenantContext(tenant_id=tenant_id, actor=operator)
        action = "machine_client.disabled" if status == "disabled" else "machine_client.enabled"
        for _ in range(3):  # a concurrent change: read again (a twin's same change leaves nothing to do)
            client = self.machine_client(tenant_id, client_id)
            if client.status == status:
                return client
            write = clients.status_write(client, status)
            try:
                self.audit.append(ctx, action, {"client_id": client_id, "reason": reason.strip()[:500]}, writes=[write])
            except WriteConditionError:
                continue
            return self.machine_client(tenant_id, client_id)
        raise ConflictError(f"machine client {client_id} kept changing: try again")

    def approve_use_case(
        self,
        operator: str,
        tenant_id: str,
        *,
        use_case: str,
        deployment: str,
        expires_at: datetime,
        source_kind: str = "still",
    ) -> Decision:
        """Decide a tenant's application for a use case; on allow, record the approval."""
        tenant = self.registry.get(tenant_id)
        ctx = TenantContext(tenant_id=tenant_id, actor=operator)
        decision = self.gate.decide(
            PolicyRequest(
                tenant=tenant.facts(),
                operation=Operation.APPLY_USE_CASE,
                use_case=use_case,
                deployment=deployment,
                source_kind=source_kind,
                now=self.clock(),
            )
        )
        if not decision.allowed:
            self.audit.append(ctx, "approval.refused", {"decision": decision.to_dict(), "deployment": deployment})
            raise PolicyDeniedError(denial_text(decision), decision)
        approval = Approval(
            use_case=use_case,
            deployment=deployment,
            jurisdiction=tenant.jurisdiction,
            approver=operator,
            approved_at=self.clock(),
            expires_at=expires_at,
        )
        self.audit.append(
            ctx,
            "approval.granted",
            {"decision": decision.to_dict(), "deployment": deployment, "expires_at": expires_at.isoformat()},
            writes=[self.registry.approval_write(tenant_id, approval)],
        )
        return decision
