"""Independent testing: an operator authorises a tester (a decision of the gate, audited, with an
expiry), and each of the tester's labelled sets is decided before it is evaluated in the sandbox
(:mod:`facegate.sandbox`), which reads and writes no gallery."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from facegate.errors import InvalidRequestError, PolicyDeniedError
from facegate.policy import Decision, Operation, PolicyRequest
from facegate.policy.catalog import SANDBOX_DEPLOYMENT, SANDBOX_USE_CASE
from facegate.service.base import ServiceBase
from facegate.service.records import denial_text
from facegate.store.repositories import Approval
from facegate.tenancy import TenantContext


class IndependentTesting(ServiceBase):
    def authorise_tester(self, operator: str, tester_id: str, *, expires_at: datetime) -> Decision:
        """Decide an operator's authorisation of a tester (a registered tenant) until ``expires_at``;
        on allow, record it (an approval of the sandbox's own kind) in one write with its audit entry.
        Renewal is a new decision; an expired authorisation refuses the tester's next set."""
        if expires_at.tzinfo is None:
            raise InvalidRequestError("expires_at needs its UTC offset: a naive time names no instant")
        tenant = self.registry.get(tester_id)
        ctx = TenantContext(tenant_id=tester_id, actor=operator)
        now = self.clock()
        decision = self.gate.decide(
            PolicyRequest(
                tenant=tenant.facts(),
                operation=Operation.AUTHORISE_TESTER,
                use_case=SANDBOX_USE_CASE,
                deployment=SANDBOX_DEPLOYMENT,
                now=now,
                grant_until=expires_at,
            )
        )
        details: dict[str, Any] = {"decision": decision.to_dict(), "expires_at": expires_at.isoformat()}
        if not decision.allowed:
            self.audit.append(ctx, "tester.refused", details)
            raise PolicyDeniedError(denial_text(decision), decision)
        approval = Approval(
            use_case=SANDBOX_USE_CASE,
            deployment=SANDBOX_DEPLOYMENT,
            jurisdiction=tenant.jurisdiction,
            approver=operator,
            approved_at=now,
            expires_at=expires_at,
        )
        self.audit.append(ctx, "tester.authorised", details, writes=[self.registry.approval_write(tester_id, approval)])
        return decision

    def decide_independent_test(
        self,
        ctx: TenantContext,
        *,
        images: int,
        identities: int,
        groups: int = 1,
        smallest_group_images: int | None = None,
        smallest_group_identities: int | None = None,
        request_id: str | None = None,
    ) -> Decision:
        """The gate's decision on a tester's labelled set (counted against the sandbox's rate limits);
        a refusal is audited once per request and raised as :class:`PolicyDeniedError`."""
        return self._decide(
            ctx,
            Operation.INDEPENDENT_TEST,
            SANDBOX_USE_CASE,
            once=f"{request_id}:decision:request" if request_id else None,
            set_images=images,
            set_identities=identities,
            set_groups=groups,
            set_smallest_group_images=images if smallest_group_images is None else smallest_group_images,
            set_smallest_group_identities=identities
            if smallest_group_identities is None
            else smallest_group_identities,
        )
