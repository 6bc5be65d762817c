"""Operators' decisions: a tenant's application for a use case, approved only through the gate."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from facegate.errors import (
    PolicyDeniedError,
)
from facegate.policy import Decision, Operation, PolicyRequest
from facegate.store.repositories import (
    Approval,
)
from facegate.tenancy import TenantContext

if TYPE_CHECKING:  # the vision stack (onnxruntime, OpenCV) stays out of the non-vision functions
    pass

from facegate.service.base import ServiceBase
from facegate.service.records import (
    denial_text,
)


class Operators(ServiceBase):
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
