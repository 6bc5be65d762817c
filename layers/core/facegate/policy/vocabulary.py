"""Closed vocabularies for a tenant's registration: sector, country and jurisdiction.

The gate decides on these values (the police moratorium is "sector ``law_enforcement`` in a country
under moratorium"), so each is a closed list compared exactly. A value outside its list is refused
with a reason that names the canonical value to use; nothing is normalised into an accepted value,
since a lenient mapping is one more place where ``Police``/``USA`` could slip past an exact rule, and
an operator should see and correct what was actually submitted.

- **sector**: one of :class:`Sector`, lowercase with underscores; :data:`SECTOR_DEFINITIONS` says
  what each covers (police are ``law_enforcement`` whatever their parent body is called).
- **country**: an officially assigned ISO 3166-1 alpha-2 code, two capital letters (``US``, ``GB``).
- **jurisdiction**: the area whose law governs the tenant's use: the country code itself (national
  law only, ``FR``) or an ISO 3166-2 subdivision code of that country (``US-WA``, ``GB-ENG``). It
  always lies within the registered country.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, NamedTuple

from facegate.errors import RegistrationError, UnknownCountryError, UnknownJurisdictionError, UnknownSectorError
from facegate.policy.iso3166 import COUNTRY_TABLE, SUBDIVISION_TABLE


class Sector(StrEnum):
    CORRECTIONS = "corrections"
    EDUCATION = "education"
    GOVERNMENT = "government"
    HEALTHCARE = "healthcare"
    INDIVIDUAL = "individual"
    LAW_ENFORCEMENT = "law_enforcement"
    NONPROFIT = "nonprofit"
    PRIVATE = "private"


SECTOR_DEFINITIONS: Final[Mapping[Sector, str]] = {
    Sector.CORRECTIONS: "Prisons, jails and other places of detention, for their own closed facilities.",
    Sector.EDUCATION: "Schools, colleges and universities.",
    Sector.GOVERNMENT: "Public administration other than law enforcement and corrections: a ministry, an agency, "
    "a city.",
    Sector.HEALTHCARE: "Hospitals, clinics, care homes and other providers of health care.",
    Sector.INDIVIDUAL: "A natural person using facegate for their own purposes.",
    Sector.LAW_ENFORCEMENT: "Police and every other body with powers of arrest or criminal investigation: "
    "sheriffs, state and federal police, border, customs and immigration enforcement.",
    Sector.NONPROFIT: "Charities, associations and other non-governmental, not-for-profit organisations.",
    Sector.PRIVATE: "Companies and other for-profit organisations.",
}


class Country(NamedTuple):
    alpha_3: str
    name: str


def _countries(table: str) -> dict[str, Country]:
    rows = (line.split(" ", 2) for line in table.strip().splitlines())
    return {alpha_2: Country(alpha_3, name) for alpha_2, alpha_3, name in rows}


def _subdivisions(table: str) -> dict[str, frozenset[str]]:
    found: dict[str, set[str]] = {}
    for line in table.strip().splitlines():
        country, *codes = line.split()
        found.setdefault(country, set()).update(codes)
    return {country: frozenset(codes) for country, codes in found.items()}


COUNTRIES: Final[Mapping[str, Country]] = _countries(COUNTRY_TABLE)
"""Every officially assigned ISO 3166-1 alpha-2 code, with its alpha-3 code and English short name."""
SUBDIVISIONS: Final[Mapping[str, frozenset[str]]] = _subdivisions(SUBDIVISION_TABLE)
"""ISO 3166-2: for each country that has subdivisions, the part of each code after ``<country>-``."""

_SECTORS: Final = frozenset(s.value for s in Sector)
_BY_ALPHA_3: Final = {c.alpha_3: alpha_2 for alpha_2, c in COUNTRIES.items()}
_BY_NAME: Final = {c.name.casefold(): alpha_2 for alpha_2, c in COUNTRIES.items()}
# Codes people reach for that ISO 3166-1 does not assign (reserved or user-assigned), and what to use.
_NOT_ASSIGNED: Final = {
    "UK": "'UK' is reserved, not assigned: the United Kingdom is 'GB'",
    "EU": "the European Union is not a country: register the member state, e.g. 'DE'",
}
# Words people use for a sector. They only shape the hint in a refusal; they are never accepted.
_SECTOR_WORDS: Final = {
    "police": Sector.LAW_ENFORCEMENT,
    "policing": Sector.LAW_ENFORCEMENT,
    "sheriff": Sector.LAW_ENFORCEMENT,
    "border_control": Sector.LAW_ENFORCEMENT,
    "prison": Sector.CORRECTIONS,
    "prisons": Sector.CORRECTIONS,
    "jail": Sector.CORRECTIONS,
    "correctional": Sector.CORRECTIONS,
    "public_sector": Sector.GOVERNMENT,
    "municipality": Sector.GOVERNMENT,
    "city": Sector.GOVERNMENT,
    "hospital": Sector.HEALTHCARE,
    "health": Sector.HEALTHCARE,
    "school": Sector.EDUCATION,
    "university": Sector.EDUCATION,
    "company": Sector.PRIVATE,
    "business": Sector.PRIVATE,
    "commercial": Sector.PRIVATE,
    "ngo": Sector.NONPROFIT,
    "charity": Sector.NONPROFIT,
    "non_profit": Sector.NONPROFIT,
    "not_for_profit": Sector.NONPROFIT,
    "person": Sector.INDIVIDUAL,
    "personal": Sector.INDIVIDUAL,
    "consumer": Sector.INDIVIDUAL,
}
_SHOWN_CHARS: Final = 40
_SEPARATORS: Final = re.compile(r"[\s\-./_]+")


def _shown(value: object) -> str:
    """The refused value as an operator should see it: escaped, so look-alike letters and stray
    whitespace are visible, and cut short, so a refusal cannot carry a payload into the logs."""
    if not isinstance(value, str):
        return f"a value of type {type(value).__name__}"
    cut = value[:_SHOWN_CHARS]
    return ascii(cut) + ("…" if len(value) > _SHOWN_CHARS else "")


def _missing(value: object) -> bool:
    return isinstance(value, str) and not value.strip()


def _non_ascii_note(value: object) -> str:
    if isinstance(value, str) and not unicodedata.normalize("NFKC", value).isascii():
        return " (it holds non-ASCII characters: look-alike letters are not the same name)"
    return ""


def _sector_problem(value: object) -> UnknownSectorError | None:
    if isinstance(value, str) and value in _SECTORS:
        return None
    listed = ", ".join(Sector)
    if _missing(value):
        return UnknownSectorError(f"the sector is missing; give one of: {listed}.")
    hint = ""
    if isinstance(value, str):
        folded = _SEPARATORS.sub("_", unicodedata.normalize("NFKC", value).casefold()).strip("_")
        near = Sector(folded) if folded in _SECTORS else _SECTOR_WORDS.get(folded)
        if near is not None:
            hint = f"; use {near.value!r}, written exactly so ({SECTOR_DEFINITIONS[near].rstrip('.')})"
    return UnknownSectorError(
        f"{_shown(value)} is not a sector facegate registers{_non_ascii_note(value)}{hint}. Sectors: {listed}."
    )


def _country_hint(value: str) -> str:
    folded = re.sub(r"[\s.]+", "", unicodedata.normalize("NFKC", value)).upper()
    if folded in COUNTRIES:
        return f"; use {folded!r} ({COUNTRIES[folded].name}), two capital letters and nothing around them"
    if folded in _BY_ALPHA_3:
        alpha_2 = _BY_ALPHA_3[folded]
        return f"; that is the alpha-3 code, use the alpha-2 code {alpha_2!r} ({COUNTRIES[alpha_2].name})"
    if folded in _NOT_ASSIGNED:
        return "; " + _NOT_ASSIGNED[folded]
    by_name = _BY_NAME.get(unicodedata.normalize("NFKC", value).strip().casefold())
    if by_name is not None:
        return f"; use the code {by_name!r}, not the name"
    return "; give the country's two-letter code, e.g. 'US', 'GB' or 'DE'"


def _country_problem(value: object) -> UnknownCountryError | None:
    if isinstance(value, str) and value in COUNTRIES:
        return None
    if _missing(value):
        return UnknownCountryError("the country is missing; give its ISO 3166-1 alpha-2 code, e.g. 'US'.")
    hint = _country_hint(value) if isinstance(value, str) else ""
    return UnknownCountryError(
        f"{_shown(value)} is not an officially assigned ISO 3166-1 alpha-2 country code{_non_ascii_note(value)}{hint}."
    )


def is_jurisdiction(code: str, country: str) -> bool:
    """Whether ``code`` is a jurisdiction of ``country``: the country code itself or one of its
    ISO 3166-2 subdivision codes, written exactly."""
    if code == country:
        return country in COUNTRIES
    prefix, dash, subdivision = code.partition("-")
    return bool(dash) and prefix == country and subdivision in SUBDIVISIONS.get(country, frozenset())


def _elsewhere(code: str) -> str | None:
    """The country a jurisdiction code belongs to, when that is a valid code at all."""
    country = code.partition("-")[0]
    return country if is_jurisdiction(code, country) else None


def _jurisdiction_hint(value: str, country: str) -> str:
    folded = re.sub(r"\s+", "", unicodedata.normalize("NFKC", value)).upper().replace("_", "-")
    for candidate in (folded, f"{country}-{folded}", _BY_ALPHA_3.get(folded, "")):
        if is_jurisdiction(candidate, country):
            return f"; use {candidate!r}, written exactly so"
    if folded == "EU":
        return f"; EU law applies through the member state: use {country!r} or one of its subdivision codes"
    other = _elsewhere(folded)
    if other is not None:
        return f"; {folded!r} is in {other}: a jurisdiction lies within the registered country ({country})"
    subdivisions = sorted(SUBDIVISIONS.get(country, ()))
    if not subdivisions:
        return f"; {country} has no ISO 3166-2 subdivisions, so use {country!r}"
    return f"; use {country!r} or one of its ISO 3166-2 subdivision codes, e.g. '{country}-{subdivisions[0]}'"


def _jurisdiction_problem(value: object, country: str) -> UnknownJurisdictionError | None:
    if isinstance(value, str) and is_jurisdiction(value, country):
        return None
    if _missing(value):
        return UnknownJurisdictionError(
            f"the jurisdiction is missing; give {country!r} or an ISO 3166-2 subdivision code of {country}."
        )
    hint = _jurisdiction_hint(value, country) if isinstance(value, str) else ""
    return UnknownJurisdictionError(
        f"{_shown(value)} is not a jurisdiction of {country}{_non_ascii_note(value)}{hint}."
    )


def _problem(sector: object, country: object, jurisdiction: object) -> RegistrationError | None:
    """The first value refused, checked in order (a jurisdiction is checked against a valid country)."""
    sector_problem = _sector_problem(sector)
    if sector_problem is not None:
        return sector_problem
    country_problem = _country_problem(country)
    if country_problem is not None:
        return country_problem
    return _jurisdiction_problem(jurisdiction, str(country))


@dataclass(frozen=True)
class TenantVocabulary:
    """A registration's sector, country and jurisdiction, each a canonical value: it cannot be built
    from anything else, so code that takes one (the moratorium check) never sees free text."""

    sector: Sector
    country: str
    jurisdiction: str

    def __post_init__(self) -> None:
        problem = _problem(self.sector, self.country, self.jurisdiction)
        if problem is not None:
            raise problem
        # A plain "law_enforcement" passes the check; keep the enum, so the type says what it holds.
        object.__setattr__(self, "sector", Sector(self.sector))


def validate_registration(sector: str, country: str, jurisdiction: str) -> TenantVocabulary:
    """Check a registration against the closed vocabularies and return its canonical values.

    Parameters
    ----------
    sector
        One of :class:`Sector`, e.g. ``"law_enforcement"``.
    country
        An officially assigned ISO 3166-1 alpha-2 code, e.g. ``"US"``.
    jurisdiction
        ``country`` itself or an ISO 3166-2 subdivision code of it, e.g. ``"US-WA"``.

    Raises
    ------
    UnknownSectorError, UnknownCountryError, UnknownJurisdictionError
        For the first value outside its vocabulary (all :class:`~facegate.errors.RegistrationError`,
        an invalid request). The message names the canonical value where one is near; the value
        given is never mapped onto it.
    """
    problem = _problem(sector, country, jurisdiction)
    if problem is not None:
        raise problem
    return TenantVocabulary(Sector(sector), country, jurisdiction)
