"""The local cloud's IAM evaluation (facegate.localcloud.iam): the semantics the template's safety rests on,
IAM's documented quirks included, and a loud refusal of anything it cannot evaluate."""

from __future__ import annotations

from typing import Any

import pytest

from facegate.localcloud.iam import Decision, Principal, Request, evaluate

TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/fg-galleries"
TAG = "aws:PrincipalTag/tenant_id"
KNOWN = ("dynamodb:LeadingKeys", "aws:PrincipalTag/", "aws:RequestTag/", "aws:TagKeys", "aws:MultiFactorAuthPresent")


def _rows_of_the_tag(pattern: str = "${aws:PrincipalTag/tenant_id}", actions: Any = "dynamodb:GetItem") -> list[Any]:
    return [
        {
            "Effect": "Allow",
            "Action": actions,
            "Resource": TABLE,
            "Condition": {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [pattern]}},
        }
    ]


def _get(*keys: str, tenant: str | None = "t-a", action: str = "dynamodb:GetItem") -> Request:
    context: dict[str, tuple[str, ...]] = {"dynamodb:LeadingKeys": keys} if keys else {}
    if tenant is not None:
        context[TAG] = (tenant,)
    return Request(action, TABLE, context)


def test_leading_keys_follow_the_session_tag() -> None:
    policy = _rows_of_the_tag()
    assert evaluate(policy, _get("t-a"), known_keys=KNOWN) is Decision.ALLOW
    assert evaluate(policy, _get("t-b"), known_keys=KNOWN) is Decision.IMPLICIT_DENY
    assert evaluate(policy, _get("t-a", "t-b"), known_keys=KNOWN) is Decision.IMPLICIT_DENY  # every key
    assert evaluate(policy, _get("t-a", action="dynamodb:PutItem"), known_keys=KNOWN) is Decision.IMPLICIT_DENY


def test_for_all_values_holds_when_the_request_has_no_leading_keys() -> None:
    """IAM's documented quirk: why a Scan must never be granted under a LeadingKeys condition."""
    policy = _rows_of_the_tag(actions=["dynamodb:GetItem", "dynamodb:Scan"])
    assert evaluate(policy, _get(action="dynamodb:Scan"), known_keys=KNOWN) is Decision.ALLOW


def test_prefix_patterns_and_wildcards_in_tag_values() -> None:
    policy = _rows_of_the_tag("${aws:PrincipalTag/tenant_id}#*")
    assert evaluate(policy, _get("t-a#residents"), known_keys=KNOWN) is Decision.ALLOW
    assert evaluate(policy, _get("t-a"), known_keys=KNOWN) is Decision.IMPLICIT_DENY
    assert evaluate(policy, _get("t-ab#residents"), known_keys=KNOWN) is Decision.IMPLICIT_DENY
    # A tag value is matched literally: a tenant tagged "t-*" does not get every tenant's rows.
    assert evaluate(policy, _get("t-a#x", tenant="t-*"), known_keys=KNOWN) is Decision.IMPLICIT_DENY


def test_an_unresolvable_variable_matches_nothing() -> None:
    assert evaluate(_rows_of_the_tag(), _get("t-a", tenant=None), known_keys=KNOWN) is Decision.IMPLICIT_DENY


def test_an_explicit_deny_wins() -> None:
    policy = [*_rows_of_the_tag(), {"Effect": "Deny", "Action": "dynamodb:*", "Resource": TABLE}]
    assert evaluate(policy, _get("t-a"), known_keys=KNOWN) is Decision.DENY


def test_actions_match_case_insensitively_and_resources_exactly() -> None:
    policy = [{"Effect": "Allow", "Action": "DynamoDB:Get*", "Resource": f"{TABLE}/index/*"}]
    index = f"{TABLE}/index/by_subject"
    assert evaluate(policy, Request("dynamodb:GetItem", index)) is Decision.ALLOW
    assert evaluate(policy, Request("dynamodb:GetItem", TABLE)) is Decision.IMPLICIT_DENY
    assert evaluate(policy, Request("dynamodb:Query", index)) is Decision.IMPLICIT_DENY


def test_trust_policy_with_tag_conditions() -> None:
    trust = [
        {
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Condition": {
                "StringLike": {"aws:RequestTag/tenant_id": "?*"},
                "ForAllValues:StringEquals": {"aws:TagKeys": ["tenant_id"]},
            },
        }
    ]
    role = "arn:aws:iam::123456789012:role/tenant-data"
    caller = Principal(
        "arn:aws:sts::123456789012:assumed-role/fn/x", "123456789012", role_arn="arn:aws:iam::123456789012:role/fn"
    )
    tagged = {"aws:RequestTag/tenant_id": ("t-a",), "aws:TagKeys": ("tenant_id",)}
    assert (
        evaluate(trust, Request("sts:AssumeRole", role, tagged), principal=caller, known_keys=KNOWN) is Decision.ALLOW
    )
    untagged: dict[str, tuple[str, ...]] = {}
    assert evaluate(trust, Request("sts:AssumeRole", role, untagged), principal=caller, known_keys=KNOWN) is (
        Decision.IMPLICIT_DENY
    )
    extra = {**tagged, "aws:TagKeys": ("tenant_id", "admin")}
    assert evaluate(trust, Request("sts:TagSession", role, extra), principal=caller, known_keys=KNOWN) is (
        Decision.IMPLICIT_DENY
    )
    elsewhere = Principal("arn:aws:sts::999999999999:assumed-role/fn/x", "999999999999")
    assert evaluate(trust, Request("sts:AssumeRole", role, tagged), principal=elsewhere, known_keys=KNOWN) is (
        Decision.IMPLICIT_DENY
    )
    lambda_service = Principal("lambda.amazonaws.com", "123456789012", service="lambda.amazonaws.com")
    assert evaluate(trust, Request("sts:AssumeRole", role, tagged), principal=lambda_service, known_keys=KNOWN) is (
        Decision.IMPLICIT_DENY
    )


def test_mfa_condition() -> None:
    trust = [
        {
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
            "Action": "sts:AssumeRole",
            "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "true"}},
        }
    ]
    admin = Principal("arn:aws:iam::123456789012:root", "123456789012")
    role = "arn:aws:iam::123456789012:role/operator"
    with_mfa = Request("sts:AssumeRole", role, {"aws:MultiFactorAuthPresent": ("true",)})
    assert evaluate(trust, with_mfa, principal=admin, known_keys=KNOWN) is Decision.ALLOW
    assert evaluate(trust, Request("sts:AssumeRole", role), principal=admin, known_keys=KNOWN) is (
        Decision.IMPLICIT_DENY
    )


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ({"NumericLessThan": {"dynamodb:LeadingKeys": "3"}}, "NumericLessThan"),
        ({"ForAllValues:StringEquals": {"dynamodb:Attributes": ["a"]}}, "condition key dynamodb:Attributes"),
        ({"StringEquals": {"dynamodb:LeadingKeys": "t-a"}}, "multivalued"),
    ],
)
def test_what_cannot_be_evaluated_is_refused_loudly(condition: dict[str, Any], message: str) -> None:
    policy = [{"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": TABLE, "Condition": condition}]
    known = (*KNOWN, "dynamodb:LeadingKeys") if "Attributes" not in message else KNOWN
    with pytest.raises(NotImplementedError, match=message):
        evaluate(policy, _get("t-a"), known_keys=known)
