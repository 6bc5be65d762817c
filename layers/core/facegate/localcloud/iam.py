"""IAM's policy evaluation, for the requests the local cloud authorizes itself (moto does not).

The subset template.yaml uses, evaluated the way AWS documents it for identity-based policies in one
account: an explicit ``Deny`` that applies wins; otherwise an ``Allow`` that applies is needed; otherwise
the request is implicitly denied. A statement applies when its ``Action`` (or ``NotAction``), its
``Resource`` (or ``NotResource``) and every one of its ``Condition`` blocks match the request. Trust
policies are evaluated the same way with a ``Principal`` as well.

Conditions follow IAM's documented semantics, quirks included, because the template's safety depends on
them:

- several operators, or several keys under one operator, must all hold; several values for one key are
  alternatives;
- a plain (single-valued) operator on a key the request lacks is false (true for the negated ones,
  ``StringNotEquals``, ``StringNotLike``, ``ArnNotEquals``, ``ArnNotLike``), and ``...IfExists`` is true;
- ``ForAllValues:`` is true when every value of the request's key matches, and so **true when the key is
  missing or empty** (a ``Scan`` carries no ``dynamodb:LeadingKeys``: granting it under a LeadingKeys
  condition would grant the whole table); ``ForAnyValue:`` needs at least one matching value;
- policy variables (``${aws:PrincipalTag/tenant_id}``) are replaced by the request's value; one the
  request has no value for makes that condition value match nothing; ``${*}``, ``${?}`` and ``${$}``
  are the literal characters.

Anything else (an operator, a condition key the caller cannot supply, ``NotPrincipal``) raises
``NotImplementedError``: a condition the local cloud cannot evaluate is refused loudly, never skipped.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final

MULTIVALUED: Final = frozenset({"dynamodb:LeadingKeys", "dynamodb:Attributes", "aws:TagKeys"})
"""Condition keys that carry a set of values (they need ``ForAllValues:`` or ``ForAnyValue:``)."""

_STRING_OPERATORS: Final = {
    "StringEquals": (False, False, False),
    "StringNotEquals": (True, False, False),
    "StringEqualsIgnoreCase": (False, False, True),
    "StringNotEqualsIgnoreCase": (True, False, True),
    "StringLike": (False, True, False),
    "StringNotLike": (True, True, False),
}
"""operator → (negated, wildcards, ignore case)."""
_ARN_OPERATORS: Final = {"ArnEquals": False, "ArnLike": False, "ArnNotEquals": True, "ArnNotLike": True}
_VARIABLE: Final = re.compile(r"\$\{([^}]*)\}")
_LITERALS: Final = {"*": "*", "?": "?", "$": "$"}


class Decision(Enum):
    ALLOW = "allow"
    DENY = "deny"
    """An explicit Deny applied."""
    IMPLICIT_DENY = "implicit_deny"
    """No Allow applied (and no Deny)."""


@dataclass(frozen=True)
class Principal:
    """Who makes a request: an assumed-role session of a role, the account itself, or a service."""

    arn: str
    account: str
    role_arn: str | None = None
    service: str | None = None


@dataclass(frozen=True)
class Request:
    """One authorization IAM makes: an action on a resource, with the request's condition keys.

    A DynamoDB ``TransactWriteItems`` is several of these (one per item), a ``BatchWriteItem`` one per table.
    """

    action: str
    resource: str
    context: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Condition key → its values; a key that is absent is missing from the request."""


def evaluate(
    statements: Sequence[Mapping[str, Any]],
    request: Request,
    *,
    principal: Principal | None = None,
    known_keys: Collection[str] = (),
) -> Decision:
    """IAM's decision for ``request`` under ``statements`` (identity policy, or a trust policy with ``principal``).

    ``known_keys`` are the condition keys (or prefixes ending in ``/``) the caller supplies values for;
    a statement that would apply but tests another key raises ``NotImplementedError``.
    """
    allowed = False
    for statement in statements:
        if not _applies(statement, request, principal, known_keys):
            continue
        if statement.get("Effect") == "Deny":
            return Decision.DENY
        if statement.get("Effect") == "Allow":
            allowed = True
    return Decision.ALLOW if allowed else Decision.IMPLICIT_DENY


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _applies(
    statement: Mapping[str, Any], request: Request, principal: Principal | None, known_keys: Collection[str]
) -> bool:
    if "NotPrincipal" in statement:
        raise NotImplementedError("the local cloud cannot evaluate NotPrincipal")
    if "Action" in statement:
        if not any(_wildcard(a, request.action, ignore_case=True) for a in _as_list(statement["Action"])):
            return False
    elif "NotAction" in statement:
        if any(_wildcard(a, request.action, ignore_case=True) for a in _as_list(statement["NotAction"])):
            return False
    else:
        return False
    if "Resource" in statement:
        if not any(_resource_matches(r, request) for r in _as_list(statement["Resource"])):
            return False
    elif "NotResource" in statement:
        if any(_resource_matches(r, request) for r in _as_list(statement["NotResource"])):
            return False
    elif principal is None:
        return False  # an identity policy statement without a resource grants nothing
    if principal is not None and not _principal_matches(statement.get("Principal"), principal):
        return False
    return _conditions_hold(statement.get("Condition", {}), request, known_keys)


def _resource_matches(pattern: str, request: Request) -> bool:
    resolved = _substitute(pattern, request.context)
    return resolved is not None and _wildcard(resolved, request.resource)


def _principal_matches(expected: Any, principal: Principal) -> bool:
    """A trust policy's ``Principal``: ``*``, an account (its root ARN or id), a role, a session, a service."""
    if expected is None:
        return False
    if expected == "*":
        return True
    if not isinstance(expected, Mapping):
        raise NotImplementedError(f"the local cloud cannot evaluate the principal {expected!r}")
    for kind, values in expected.items():
        for value in _as_list(values):
            if kind == "Service" and principal.service == value:
                return True
            if kind != "AWS" or principal.service is not None:
                continue
            if value == "*" or value in (principal.account, f"arn:aws:iam::{principal.account}:root"):
                return True
            if value in (principal.arn, principal.role_arn):
                return True
    return False


def _conditions_hold(conditions: Mapping[str, Any], request: Request, known_keys: Collection[str]) -> bool:
    for operator, tests in conditions.items():
        for key, expected in tests.items():
            if not _known(key, known_keys):
                raise NotImplementedError(f"the local cloud cannot evaluate condition key {key}")
            if not _condition(operator, key, [str(v) for v in _as_list(expected)], request):
                return False
    return True


def _known(key: str, known_keys: Collection[str]) -> bool:
    return any(key == k or (k.endswith("/") and key.startswith(k)) for k in known_keys)


def _condition(operator: str, key: str, expected: list[str], request: Request) -> bool:
    qualifier, _, name = operator.rpartition(":")
    if_exists = name.endswith("IfExists")
    name = name.removesuffix("IfExists")
    values = request.context.get(key)
    patterns = [p for p in (_substitute(v, request.context) for v in expected) if p is not None]
    if name == "Null":
        return (values is None) == (expected[0].lower() == "true")
    negated, test = _test(name)
    if qualifier == "ForAllValues":
        return all(negated != any(test(p, v) for p in patterns) for v in values or ())
    if qualifier == "ForAnyValue":
        return any(negated != any(test(p, v) for p in patterns) for v in values or ())
    if qualifier:
        raise NotImplementedError(f"the local cloud cannot evaluate condition operator {operator}")
    if key in MULTIVALUED:
        raise NotImplementedError(f"{key} is multivalued: a plain {name} on it is not evaluated")
    if values is None:
        return if_exists or negated
    return all(negated != any(test(p, v) for p in patterns) for v in values)


def _test(name: str) -> tuple[bool, Any]:
    """(negated, match(pattern, value)) for a condition operator's base name."""
    if name in _STRING_OPERATORS:
        negated, wildcards, ignore_case = _STRING_OPERATORS[name]
        if wildcards:
            return negated, lambda p, v: _wildcard(p, v, ignore_case=ignore_case)
        if ignore_case:
            return negated, lambda p, v: p.lower() == v.lower()
        return negated, lambda p, v: p == v
    if name in _ARN_OPERATORS:
        return _ARN_OPERATORS[name], _arn_like
    if name == "Bool":
        return False, lambda p, v: p.lower() == v.lower()
    raise NotImplementedError(f"the local cloud cannot evaluate condition operator {name}")


def _substitute(text: str, context: Mapping[str, tuple[str, ...]]) -> str | None:
    """``text`` with its policy variables replaced, or ``None`` when one has no single value in the request.

    The replaced values are escaped (``*`` and ``?`` in a tag are matched literally, as IAM does).
    """
    missing = False

    def replace(match: re.Match[str]) -> str:
        nonlocal missing
        name = match.group(1)
        if name in _LITERALS:
            return "\x00" + _LITERALS[name]
        values = context.get(name)
        if values is None or len(values) != 1:
            missing = True
            return ""
        return "".join("\x00" + c if c in "*?" else c for c in values[0])

    out = _VARIABLE.sub(replace, text)
    return None if missing else out


def _wildcard(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM's ``*`` (any run of characters) and ``?`` (one character); ``\\x00`` escapes a literal."""
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\x00" and i + 1 < len(pattern):
            parts.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        parts.append(".*" if c == "*" else "." if c == "?" else re.escape(c))
        i += 1
    return re.fullmatch("".join(parts), value, re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None


def _arn_like(pattern: str, value: str) -> bool:
    """``ArnLike``: each of the six colon-separated parts is matched on its own (wildcards stay inside one)."""
    expected, actual = pattern.split(":", 5), value.split(":", 5)
    return len(expected) == len(actual) == 6 and all(_wildcard(p, v) for p, v in zip(expected, actual, strict=True))
