"""The policy gate: declared use cases, hard refusals and per-request checks as Cedar policies."""

from facegate.policy.catalog import Catalog, UseCase, default_catalog
from facegate.policy.gate import (
    ApprovalFacts,
    Decision,
    GalleryFacts,
    Operation,
    PolicyGate,
    PolicyRequest,
    Reason,
    TenantFacts,
)
from facegate.policy.vocabulary import Sector, TenantVocabulary, validate_registration

__all__ = [
    "ApprovalFacts",
    "Catalog",
    "Decision",
    "GalleryFacts",
    "Operation",
    "PolicyGate",
    "PolicyRequest",
    "Reason",
    "Sector",
    "TenantFacts",
    "TenantVocabulary",
    "UseCase",
    "default_catalog",
    "validate_registration",
]
