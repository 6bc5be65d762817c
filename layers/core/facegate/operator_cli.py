"""``facegate operator ...``: onboarding and running tenants on a deployed (or local) stack.

The commands act with boto3's default credentials (an operator's: an ``OperatorRole`` session,
assumed with MFA as its trust policy requires, e.g. a profile with ``role_arn`` and ``mfa_serial``) on
the stack ``--stack`` names: its outputs (``describe_stacks``) say which tables, roles and user pool.
Against ``facegate local serve``, source the ``operator.env`` it writes (the same calls, sent to its
endpoint). Every change to the registry goes through the service and its gate and commits with its
entry in the tenant's audit log; the operator's identity (the caller's ARN) is the entry's actor.

    facegate operator tenants register hmp-northfield --name "HMP Northfield" --sector corrections \\
        --country GB --jurisdiction GB-ENG
    facegate operator use-cases approve hmp-northfield --use-case access_control --deployment closed_facility
    facegate operator users create hmp-northfield officer-ruiz --email ruiz@example.org
    facegate operator clients create hmp-northfield gate-b-turnstile    # a machine: client credentials
    facegate operator quotas set hmp-northfield --use-case access_control --operation search \\
        --per-minute 5 --per-day 2000
    facegate operator tenants suspend hmp-northfield --reason "licence lapsed"

Exit codes are the CLI's: 0 done, 2 bad input (an unknown tenant, a vocabulary value, ...), 3 refused
by the policy (the reason codes are printed), 4 an error.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import string
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from facegate.errors import AlreadyExistsError, InvalidRequestError, PolicyDeniedError, StorageError

DEFAULT_STACK = "facegate"
APPROVAL_DAYS = 365
TENANT_ATTRIBUTE = "custom:tenant_id"
API_SCOPE = "facegate/api"


class Operator:
    """One operator's session against a stack: its outputs, boto3 clients and the service."""

    def __init__(self, stack: str, region: str | None = None) -> None:
        import boto3

        self.region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        cfn = boto3.client("cloudformation", region_name=self.region)
        try:
            described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
        except cfn.exceptions.ClientError as exc:
            raise InvalidRequestError(f"no stack {stack!r} in {self.region} for these credentials: {exc}") from exc
        self.outputs: dict[str, str] = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
        missing = [k for k in ("TablePrefix", "TenantDataRoleArn", "UserPoolId") if k not in self.outputs]
        if missing:
            raise InvalidRequestError(f"stack {stack!r} is not a facegate stack (no output {', '.join(missing)})")
        os.environ.update(
            {
                "FACEGATE_TABLE_PREFIX": self.outputs["TablePrefix"],
                "FACEGATE_TENANT_ROLE_ARN": self.outputs["TenantDataRoleArn"],
                "AWS_REGION": self.region,
            }
        )
        from facegate.service.operators import Operators
        from facegate.settings import Settings
        from facegate.store.models import configure

        configure(Settings.from_env())
        self.actor = str(boto3.client("sts", region_name=self.region).get_caller_identity()["Arn"])
        self.service = Operators()
        self.idp = boto3.client("cognito-idp", region_name=self.region)

    @property
    def pool(self) -> str:
        return str(self.outputs["UserPoolId"])

    def user(self, tenant_id: str, username: str) -> dict[str, Any]:
        """A user of the pool that belongs to ``tenant_id`` (another tenant's user is 'no such user')."""
        try:
            user = self.idp.admin_get_user(UserPoolId=self.pool, Username=username)
        except self.idp.exceptions.UserNotFoundException:
            user = None
        attributes = {a["Name"]: a["Value"] for a in (user or {}).get("UserAttributes", [])}
        if user is None or attributes.get(TENANT_ATTRIBUTE) != tenant_id:
            raise InvalidRequestError(f"{tenant_id} has no user {username!r}")
        return {"username": username, "enabled": bool(user.get("Enabled")), "status": user.get("UserStatus")}


def _tenant_json(tenant: Any) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(json.dumps(asdict(tenant), default=str))
    return answer


def _emit(args: argparse.Namespace, answer: Any, line: str) -> None:
    print(json.dumps(answer, indent=1, default=str) if args.json else line)


def _session(args: argparse.Namespace) -> Operator:
    return Operator(args.stack, args.region)


# --- tenants ----------------------------------------------------------------------------------------------


def _register(args: argparse.Namespace) -> int:
    op = _session(args)
    tenant = op.service.register_tenant(
        op.actor,
        args.tenant_id,
        name=args.name,
        sector=args.sector,
        country=args.country,
        jurisdiction=args.jurisdiction,
    )
    _emit(args, _tenant_json(tenant), f"registered {tenant.tenant_id} ({tenant.sector}, {tenant.jurisdiction})")
    return 0


def _list_tenants(args: argparse.Namespace) -> int:
    tenants = _session(args).service.registry.list_tenants()
    if args.json:
        print(json.dumps([_tenant_json(t) for t in tenants], indent=1, default=str))
    for t in tenants if not args.json else ():
        active = ", ".join(a.use_case for a in t.approvals if a.status == "active") or "no approved use case"
        print(f"{t.tenant_id:<32} {t.status:<10} {t.sector:<16} {t.jurisdiction:<8} {active}")
    return 0


def _show(args: argparse.Namespace) -> int:
    tenant = _session(args).service.registry.get(args.tenant_id)
    print(json.dumps(_tenant_json(tenant), indent=1, default=str))
    return 0


def _status(status: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        op = _session(args)
        tenant = op.service.set_tenant_status(op.actor, args.tenant_id, status, reason=args.reason)
        _emit(args, _tenant_json(tenant), f"{tenant.tenant_id} is {tenant.status}")
        return 0

    return run


# --- use cases and quotas -------------------------------------------------------------------------------


def _approve(args: argparse.Namespace) -> int:
    op = _session(args)
    if args.expires:
        try:
            expires = datetime.fromisoformat(args.expires)
        except ValueError:
            raise InvalidRequestError(f"--expires is an ISO 8601 date (2027-06-01), not {args.expires!r}") from None
        expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
    else:
        expires = datetime.now(UTC) + timedelta(days=args.days)
    decision = op.service.approve_use_case(
        op.actor,
        args.tenant_id,
        use_case=args.use_case,
        deployment=args.deployment,
        expires_at=expires,
        source_kind=args.source_kind,
    )
    answer = {"tenant_id": args.tenant_id, "use_case": args.use_case, "decision": decision.to_dict()}
    obligations = "; ".join(decision.obligations)
    _emit(
        args,
        answer,
        f"approved {args.use_case} ({args.deployment}) for {args.tenant_id} until {expires.date()}"
        + (f" — obligations: {obligations}" if obligations else ""),
    )
    return 0


def _revoke(args: argparse.Namespace) -> int:
    op = _session(args)
    tenant = op.service.revoke_use_case(op.actor, args.tenant_id, args.use_case, reason=args.reason)
    _emit(args, _tenant_json(tenant), f"revoked {args.use_case} for {tenant.tenant_id}")
    return 0


def _use_cases(args: argparse.Namespace) -> int:
    tenant = _session(args).service.registry.get(args.tenant_id)
    approvals = [json.loads(json.dumps(asdict(a), default=str)) for a in tenant.approvals]
    if args.json:
        print(json.dumps(approvals, indent=1))
    for a in approvals if not args.json else ():
        print(
            f"{a['use_case']:<24} {a['deployment']:<20} {a['status']:<8} "
            f"until {a['expires_at'][:10]} by {a['approver']}"
        )
    return 0


def _quota(args: argparse.Namespace) -> int:
    op = _session(args)
    tenant = op.service.set_quota(
        op.actor, args.tenant_id, args.use_case, args.operation, per_minute=args.per_minute, per_day=args.per_day
    )
    _emit(
        args,
        _tenant_json(tenant),
        f"{tenant.tenant_id} {args.use_case} {args.operation}: {args.per_minute}/minute, {args.per_day}/day",
    )
    return 0


# --- users ------------------------------------------------------------------------------------------------


def _password() -> str:
    """A temporary password that meets Cognito's default policy (upper, lower, digit, symbol; 16+)."""
    alphabet = string.ascii_letters + string.digits
    core = "".join(secrets.choice(alphabet) for _ in range(16))
    return f"{core}Aa1!"


def _create_user(args: argparse.Namespace) -> int:
    """Create a tenant user. The tenant attribute is the operator's to set (the app client cannot write
    it). The user is created only when its audit entry can follow: should the append fail, the user is
    deleted again, so no user exists off the record."""
    op = _session(args)
    op.service.registry.get(args.tenant_id)  # an unknown tenant gets no user
    from facegate.tenancy import TenantContext, check_entity_id

    check_entity_id(args.username, "user")
    attributes = [{"Name": TENANT_ATTRIBUTE, "Value": args.tenant_id}]
    if args.email:
        attributes += [{"Name": "email", "Value": args.email}, {"Name": "email_verified", "Value": "true"}]
    temporary = args.password or _password()  # Cognito checks the pool's policy here, before any user exists
    with _cognito("creating the user"):
        try:
            op.idp.admin_create_user(
                UserPoolId=op.pool,
                Username=args.username,
                UserAttributes=attributes,
                TemporaryPassword=temporary,
                **({} if args.email else {"MessageAction": "SUPPRESS"}),
            )
        except op.idp.exceptions.UsernameExistsException as exc:
            raise AlreadyExistsError(f"a user {args.username!r} already exists") from exc
    try:
        if args.password:  # the operator sets the first password (a local stack, or a managed hand-over)
            with _cognito("setting the password"):
                op.idp.admin_set_user_password(
                    UserPoolId=op.pool, Username=args.username, Password=args.password, Permanent=True
                )
        op.service.audit.append(
            TenantContext(tenant_id=args.tenant_id, actor=op.actor), "user.created", {"username": args.username}
        )
    except BaseException:
        op.idp.admin_delete_user(UserPoolId=op.pool, Username=args.username)
        raise
    answer: dict[str, Any] = {"tenant_id": args.tenant_id, "username": args.username}
    if not (args.password or args.email):
        answer["temporary_password"] = temporary
    how = "invited by email" if args.email else "password set" if args.password else f"temporary password {temporary}"
    _emit(args, answer, f"user {args.username} of {args.tenant_id} ({how})")
    return 0


@contextmanager
def _cognito(what: str) -> Iterator[None]:
    """Cognito's refusals of what the operator gave (a password its policy refuses, a malformed e-mail)
    are bad input, said in one line."""
    from botocore.exceptions import ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        if error.get("Code") in {"InvalidPasswordException", "InvalidParameterException"}:
            raise InvalidRequestError(f"{what}: {error.get('Message')}") from exc
        raise


def _list_users(args: argparse.Namespace) -> int:
    op = _session(args)
    users = []
    for page in op.idp.get_paginator("list_users").paginate(UserPoolId=op.pool):
        for user in page["Users"]:
            attributes = {a["Name"]: a["Value"] for a in user.get("Attributes", [])}
            if attributes.get(TENANT_ATTRIBUTE) == args.tenant_id:
                users.append(
                    {"username": user["Username"], "enabled": user.get("Enabled"), "status": user.get("UserStatus")}
                )
    if args.json:
        print(json.dumps(users, indent=1))
    for u in users if not args.json else ():
        print(f"{u['username']:<32} {'enabled' if u['enabled'] else 'disabled':<9} {u['status']}")
    return 0


def _user_state(enable: bool) -> Any:
    def run(args: argparse.Namespace) -> int:
        op = _session(args)
        was = op.user(args.tenant_id, args.username)["enabled"]
        user = {"UserPoolId": op.pool, "Username": args.username}
        if enable:
            op.idp.admin_enable_user(**user)
        else:
            op.idp.admin_disable_user(**user)
        from facegate.tenancy import TenantContext

        action = "user.enabled" if enable else "user.disabled"
        try:
            op.service.audit.append(
                TenantContext(tenant_id=args.tenant_id, actor=op.actor), action, {"username": args.username}
            )
        except BaseException:  # no change off the record: put the user back as it was
            (op.idp.admin_enable_user if was else op.idp.admin_disable_user)(**user)
            raise
        if not enable:
            op.idp.admin_user_global_sign_out(**user)  # its refresh tokens end too
        answer = op.user(args.tenant_id, args.username)
        _emit(args, answer, f"user {args.username} of {args.tenant_id} is {'enabled' if enable else 'disabled'}")
        return 0

    return run


# --- machine clients --------------------------------------------------------------------------------------

MACHINE_TOKEN_MINUTES = 15
"""A machine's access token lives this long: a disabled client's last token ends within it."""


def _client_json(client: Any, token_url: str | None) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(json.dumps(asdict(client), default=str))
    if token_url:
        answer["token_url"] = token_url
    return answer


def create_machine_client(idp: Any, pool: str, service: Any, actor: str, tenant_id: str, name: str) -> tuple[Any, str]:
    """A checkpoint system's sign-in: a Cognito app client allowed only the client-credentials grant and
    the API's scope, with a secret, recorded as ``tenant_id``'s in the machine-client registry (what the
    token trigger reads) with its audit entry. Should that record fail, the app client is deleted again:
    an app client off the registry would get no token anyway, and none is left behind. Returns the
    registered client and its secret (shown once)."""
    service.registry.get(tenant_id)  # an unknown tenant gets no client
    from facegate.tenancy import check_entity_id

    check_entity_id(name, "client name")
    with _cognito("creating the machine client"):
        created = idp.create_user_pool_client(
            UserPoolId=pool,
            ClientName=f"machine.{tenant_id}.{name}"[:128],
            GenerateSecret=True,
            AllowedOAuthFlows=["client_credentials"],
            AllowedOAuthScopes=[API_SCOPE],
            AllowedOAuthFlowsUserPoolClient=True,
            ExplicitAuthFlows=["ALLOW_REFRESH_TOKEN_AUTH"],  # no password sign-in through a machine's client
            AccessTokenValidity=MACHINE_TOKEN_MINUTES,
            TokenValidityUnits={"AccessToken": "minutes"},
            PreventUserExistenceErrors="ENABLED",
            EnableTokenRevocation=True,
        )["UserPoolClient"]
    client_id = created["ClientId"]
    try:
        client = service.register_machine_client(actor, tenant_id, client_id, name)
    except BaseException as exc:
        from facegate.store.machine_clients import MachineClients

        try:
            recorded = MachineClients().get(client_id, consistent=True)
        except Exception:
            recorded = None  # unknown: the registry cannot be read; an app client off it gets no token anyway
        if recorded is not None:  # the record committed (an answer lost on the way): keep the client it names
            raise StorageError(
                f"machine client {client_id} of {tenant_id} was created and recorded, but the answer failed "
                f"({type(exc).__name__}): its secret was not shown; disable it and create another"
            ) from exc
        try:
            idp.delete_user_pool_client(UserPoolId=pool, ClientId=client_id)
        except Exception as cleanup:
            raise StorageError(
                f"recording machine client {client_id} failed ({type(exc).__name__}) and deleting its app client "
                f"failed too ({type(cleanup).__name__}): it gets no token (it is not registered); delete it "
                "in Cognito"
            ) from exc
        raise
    return client, str(created["ClientSecret"])


def _create_client(args: argparse.Namespace) -> int:
    op = _session(args)
    client, secret = create_machine_client(op.idp, op.pool, op.service, op.actor, args.tenant_id, args.name)
    answer = _client_json(client, op.outputs.get("TokenUrl"))
    answer["client_secret"] = secret
    line = (
        f"machine client {args.name} of {args.tenant_id}: FACEGATE_CLIENT_ID={client.client_id} "
        f"FACEGATE_CLIENT_SECRET={secret} FACEGATE_TOKEN_URL={op.outputs.get('TokenUrl', '')}"
        " (the secret is shown once: keep it in the system's secret store)"
    )
    _emit(args, answer, line)
    return 0


def _list_clients(args: argparse.Namespace) -> int:
    op = _session(args)
    op.service.registry.get(args.tenant_id)
    from facegate.store.machine_clients import MachineClients

    clients = [_client_json(c, None) for c in MachineClients().of_tenant(args.tenant_id)]
    if args.json:
        print(json.dumps(clients, indent=1))
    for c in clients if not args.json else ():
        print(f"{c['client_id']:<28} {c['name']:<32} {c['status']:<9} {c['created_at']}")
    return 0


def _client_state(status: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        op = _session(args)
        client = op.service.set_machine_client_status(
            op.actor, args.tenant_id, args.client_id, status, reason=args.reason
        )
        _emit(
            args,
            _client_json(client, None),
            f"machine client {client.client_id} of {client.tenant_id} is {client.status}",
        )
        return 0

    return run


# --- the parser --------------------------------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stack", default=os.environ.get("FACEGATE_STACK", DEFAULT_STACK), help="the stack's name (FACEGATE_STACK)"
    )
    parser.add_argument("--region", help="the stack's region (default: AWS_REGION)")
    parser.add_argument("--json", action="store_true", help="the answer as JSON")


def register(sub: Any) -> None:
    """Add ``operator`` and its commands to the CLI's subparsers."""
    operator = sub.add_parser("operator", help="onboard and run tenants (an operator's credentials)")
    groups = operator.add_subparsers(dest="action", required=True)

    tenants = groups.add_parser("tenants", help="the tenant registry").add_subparsers(dest="what", required=True)
    reg = tenants.add_parser("register", help="register a tenant (closed vocabularies, checked exactly)")
    reg.add_argument("tenant_id", help="3-63 lowercase letters, digits or '-'")
    reg.add_argument("--name", required=True, help="the organisation's name")
    reg.add_argument("--sector", required=True, help="corrections, law_enforcement, government, private, ...")
    reg.add_argument("--country", required=True, help="ISO 3166-1 alpha-2, e.g. GB, US")
    reg.add_argument("--jurisdiction", required=True, help="ISO 3166-2, e.g. GB-ENG, US-WA")
    reg.set_defaults(func=_register)
    listing = tenants.add_parser("list", help="every tenant, its status and approved use cases")
    listing.set_defaults(func=_list_tenants)
    show = tenants.add_parser("show", help="one tenant's record (JSON)")
    show.add_argument("tenant_id", help="the tenant")
    show.set_defaults(func=_show)
    for name, status, text in (
        ("suspend", "suspended", "refuse every request"),
        ("reinstate", "active", "undo a suspension"),
    ):
        cmd = tenants.add_parser(name, help=f"{text} (recorded with the reason)")
        cmd.add_argument("tenant_id", help="the tenant")
        cmd.add_argument("--reason", required=True, help="why (goes on the tenant's audit record)")
        cmd.set_defaults(func=_status(status))
    for cmd in (reg, listing, show, *[tenants.choices[n] for n in ("suspend", "reinstate")]):
        _common(cmd)

    uses = groups.add_parser("use-cases", help="approved use cases").add_subparsers(dest="what", required=True)
    approve = uses.add_parser("approve", help="decide an application (the policy may refuse it: exit 3)")
    approve.add_argument("tenant_id", help="the tenant")
    approve.add_argument("--use-case", required=True, help="a catalog use case, e.g. access_control")
    approve.add_argument("--deployment", required=True, help="e.g. closed_facility, consented_checkpoint")
    approve.add_argument("--source-kind", default="still", help="still (default) or stream")
    approve.add_argument("--expires", help="when the approval ends (ISO 8601 date)")
    approve.add_argument("--days", type=int, default=APPROVAL_DAYS, help="or: days from now (default 365)")
    approve.set_defaults(func=_approve)
    revoke = uses.add_parser("revoke", help="revoke an approval: its requests are refused from now on")
    revoke.add_argument("tenant_id", help="the tenant")
    revoke.add_argument("--use-case", required=True, help="the approved use case")
    revoke.add_argument("--reason", required=True, help="why (goes on the tenant's audit record)")
    revoke.set_defaults(func=_revoke)
    list_uses = uses.add_parser("list", help="a tenant's approvals, active and revoked")
    list_uses.add_argument("tenant_id", help="the tenant")
    list_uses.set_defaults(func=_use_cases)
    for cmd in (approve, revoke, list_uses):
        _common(cmd)

    quotas = groups.add_parser("quotas", help="lower a tenant's rate limits").add_subparsers(dest="what", required=True)
    quota = quotas.add_parser("set", help="per use case and operation; never above the catalog's")
    quota.add_argument("tenant_id", help="the tenant")
    quota.add_argument("--use-case", required=True, help="the use case")
    quota.add_argument("--operation", required=True, help="create_gallery, enrol, verify or search")
    quota.add_argument("--per-minute", type=int, required=True, help="requests per minute")
    quota.add_argument("--per-day", type=int, required=True, help="requests per day")
    quota.set_defaults(func=_quota)
    _common(quota)

    users = groups.add_parser("users", help="a tenant's people (Cognito users)").add_subparsers(
        dest="what", required=True
    )
    create = users.add_parser("create", help="a user whose tokens carry the tenant (set here, never by the user)")
    create.add_argument("tenant_id", help="the tenant")
    create.add_argument("username", help="the sign-in name")
    create.add_argument("--email", help="send Cognito's invitation there (else a temporary password is printed)")
    create.add_argument("--password", help="set a permanent first password instead (a local stack)")
    create.set_defaults(func=_create_user)
    list_users = users.add_parser("list", help="a tenant's users")
    list_users.add_argument("tenant_id", help="the tenant")
    list_users.set_defaults(func=_list_users)
    for name, enable in (("disable", False), ("enable", True)):
        cmd = users.add_parser(name, help=f"{name} a user" + ("" if enable else " (and end its sessions)"))
        cmd.add_argument("tenant_id", help="the user's tenant")
        cmd.add_argument("username", help="the user")
        cmd.set_defaults(func=_user_state(enable))
    for cmd in (create, list_users, users.choices["disable"], users.choices["enable"]):
        _common(cmd)

    clients = groups.add_parser(
        "clients", help="a tenant's machine clients (checkpoint systems: OAuth client credentials)"
    ).add_subparsers(dest="what", required=True)
    make = clients.add_parser("create", help="a client whose tokens carry the tenant (set here, never by the client)")
    make.add_argument("tenant_id", help="the tenant")
    make.add_argument("name", help="what the system is, e.g. gate-b-turnstile (1-128 letters, digits, '_', '.', '-')")
    make.set_defaults(func=_create_client)
    list_clients = clients.add_parser("list", help="a tenant's machine clients and their status")
    list_clients.add_argument("tenant_id", help="the tenant")
    list_clients.set_defaults(func=_list_clients)
    for name, status in (("disable", "disabled"), ("enable", "active")):
        cmd = clients.add_parser(
            name,
            help=f"{name} a client"
            + (
                f" (no new token; its last ends within {MACHINE_TOKEN_MINUTES} minutes)" if status == "disabled" else ""
            ),
        )
        cmd.add_argument("tenant_id", help="the client's tenant")
        cmd.add_argument("client_id", help="the client id")
        cmd.add_argument("--reason", required=True, help="why (goes on the tenant's audit record)")
        cmd.set_defaults(func=_client_state(status))
    for cmd in (make, list_clients, clients.choices["disable"], clients.choices["enable"]):
        _common(cmd)


__all__ = ["Operator", "PolicyDeniedError", "create_machine_client", "register"]
