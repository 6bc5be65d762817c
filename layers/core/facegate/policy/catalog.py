"""The use-case catalog: a small, versioned, validated data file of limits, floors and retention.

What each use case *permits* is written in Cedar (``cedar/use_cases.cedar``); the catalog holds the
numbers the gate needs (threshold floors, result and gallery caps, rate limits, retention) and the
moratoria. Loading validates it; a floor below the embedder's published operating point is refused.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from facegate.errors import CatalogError
from facegate.models import PUBLISHED_THRESHOLD
from facegate.policy.vocabulary import COUNTRIES, Sector, TenantVocabulary

# SFace's published operating point (cosine 0.363). A floor below it would accept more false matches
# than the model's authors recommend for any use.
MIN_THRESHOLD_FLOOR: Final = PUBLISHED_THRESHOLD
DEPLOYMENTS: Final = frozenset({"online_service", "closed_facility", "personal"})
RATE_OPERATIONS: Final = frozenset({"create_gallery", "enrol", "verify", "search"})


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RateLimit(_Strict):
    per_minute: int = Field(ge=1, le=10_000)
    per_day: int = Field(ge=1, le=10_000_000)


class UseCase(_Strict):
    description: str = Field(min_length=10)
    deployments: tuple[str, ...] = Field(min_length=1)
    target_fmr: float = Field(gt=0.0, le=1e-2)
    """The false-match rate this use case is run at, for every group: its floor is the lowest calibrated
    threshold whose identity-labelled FMR (Wilson 95% upper bound) meets it in every group
    (``facegate.match.Calibration.threshold_for``; a test keeps the two equal)."""
    threshold_floor: float = Field(ge=MIN_THRESHOLD_FLOOR, le=1.0)
    default_threshold: float = Field(le=1.0)
    max_results: int = Field(ge=1, le=50)
    max_faces_in_probe: int = Field(ge=1, le=10)
    max_gallery_size: int = Field(ge=1, le=10_000_000)
    retention_days: int = Field(ge=1, le=3 * 365)
    """BIPA: destroy at purpose end or 3 years after the last interaction, whichever is first."""
    purpose_required: bool
    case_reference_required: bool
    rate_limits: dict[str, RateLimit]
    max_galleries_per_tenant: int = Field(ge=1, le=1000)
    """A gallery is bounded; so is how many of them one tenant may hold for the use case."""
    max_enrolled_per_tenant: int = Field(ge=1, le=10_000_000)
    """Templates one tenant may hold under the use case across all its galleries."""
    search_comparisons_per_day: int | None = Field(default=None, ge=1)
    """One search budget across galleries: templates compared per tenant and day."""
    verify_distinct_subjects_per_day: int | None = Field(default=None, ge=1)
    """Distinct subjects one tenant may verify against per day (1:1 calls cannot sweep a gallery)."""
    enumeration_window_s: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    """How long a verified probe is remembered to refuse it against a second subject."""

    @model_validator(mode="after")
    def _consistent(self) -> UseCase:
        if self.default_threshold < self.threshold_floor:
            raise ValueError("default_threshold is below threshold_floor")
        unknown = set(self.deployments) - DEPLOYMENTS
        if unknown:
            raise ValueError(f"deployments {sorted(unknown)} are not offered (allowed: {sorted(DEPLOYMENTS)})")
        bad_ops = set(self.rate_limits) - RATE_OPERATIONS
        if bad_ops:
            raise ValueError(f"rate limits for unknown operations {sorted(bad_ops)}")
        return self


class Moratorium(_Strict):
    """No use at all by a sector in the listed countries. Both are checked against the registration
    vocabularies on load: a misspelt moratorium would match no tenant and so refuse nobody."""

    sector: Sector
    countries: tuple[str, ...] = Field(min_length=1)
    note: str

    @model_validator(mode="after")
    def _known_countries(self) -> Moratorium:
        unknown = [c for c in self.countries if c not in COUNTRIES]
        if unknown:
            raise ValueError(f"moratorium countries {unknown} are not ISO 3166-1 alpha-2 codes")
        return self


SANDBOX_USE_CASE: Final = "independent_testing"
"""What a tester's authorisation is recorded under (an approval of its own kind: never a catalog use
case, so no tenant can apply for it and no gallery can be made under it)."""
SANDBOX_DEPLOYMENT: Final = "sandbox"


class Sandbox(_Strict):
    """Independent testing (``facegate.sandbox``): an operator authorises a tester for a while; the
    tester's labelled set is evaluated apart from every gallery and only counts come back."""

    description: str = Field(min_length=10)
    max_grant_days: int = Field(ge=1, le=366)
    """The longest an operator may authorise a tester for at once (renewal is a new decision)."""
    min_images: int = Field(ge=2)
    min_identities: int = Field(ge=2)
    """A set of fewer people is a comparison of faces, not a test of the system: refused. Both minimums
    hold for every group of the set, so a group of two photos cannot single out one pair's score."""
    max_groups: int = Field(ge=1, le=100)
    """A report has a row per group and per pair of groups: many small groups would read like pairs."""
    max_images: int = Field(ge=2, le=100_000)
    max_archive_bytes: int = Field(ge=1024, le=7_500_000)
    """The set's zip, as sent through API Gateway (10 MB body, base64: at most 7.5 MB of bytes)."""
    max_uncompressed_bytes: int = Field(ge=1024, le=2_000_000_000)
    rate_limits: dict[str, RateLimit]

    @model_validator(mode="after")
    def _consistent(self) -> Sandbox:
        if self.min_images > self.max_images:
            raise ValueError("min_images exceeds max_images")
        if set(self.rate_limits) != {"independent_test"}:
            raise ValueError("the sandbox rate-limits independent_test, and only it")
        return self


class Catalog(_Strict):
    version: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}\.\d+$")
    moratoria: tuple[Moratorium, ...]
    use_cases: dict[str, UseCase] = Field(min_length=1)
    sandbox: Sandbox

    @model_validator(mode="after")
    def _sandbox_apart(self) -> Catalog:
        if SANDBOX_USE_CASE in self.use_cases:
            raise ValueError(f"{SANDBOX_USE_CASE!r} names the sandbox; no use case may take that name")
        return self

    def under_moratorium(self, registration: TenantVocabulary) -> bool:
        """Whether a (validated, hence canonical) registration falls under a moratorium."""
        return any(m.sector is registration.sector and registration.country in m.countries for m in self.moratoria)

    @classmethod
    def from_json(cls, text: str) -> Catalog:
        try:
            return cls.model_validate(json.loads(text))
        except (ValidationError, ValueError) as exc:
            raise CatalogError(f"the use-case catalog is invalid: {exc}") from exc


@cache
def default_catalog() -> Catalog:
    """The catalog shipped with this version of facegate."""
    return Catalog.from_json(resources.files("facegate.policy").joinpath("catalog.json").read_text())
