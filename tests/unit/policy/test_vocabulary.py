"""Registration vocabularies: sector, country and jurisdiction are closed lists compared exactly.

Every near-miss spelling is refused with a reason that names the canonical value; none is mapped onto
one, because a lenient mapping is what would let a misspelt police registration past the moratorium.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facegate.errors import (
    CatalogError,
    InvalidRequestError,
    RegistrationError,
    UnknownCountryError,
    UnknownJurisdictionError,
    UnknownSectorError,
)
from facegate.policy import Catalog, default_catalog
from facegate.policy.vocabulary import (
    COUNTRIES,
    SECTOR_DEFINITIONS,
    SUBDIVISIONS,
    Sector,
    TenantVocabulary,
    is_jurisdiction,
    validate_registration,
)

ISO_CODES = Path("/usr/share/iso-codes/json/iso_3166-1.json")
CYRILLIC_A = "\u0430"  # looks like a Latin "a"
CYRILLIC_DZE = "\u0405"  # looks like a Latin "S"


def test_a_canonical_registration_comes_back_canonical() -> None:
    registration = validate_registration("law_enforcement", "US", "US-IL")
    assert registration == TenantVocabulary(Sector.LAW_ENFORCEMENT, "US", "US-IL")
    assert registration.sector is Sector.LAW_ENFORCEMENT
    assert validate_registration("corrections", "GB", "GB-ENG").jurisdiction == "GB-ENG"
    assert validate_registration("individual", "FR", "FR").jurisdiction == "FR"


@pytest.mark.parametrize("sector", list(Sector))
def test_every_sector_registers_and_is_defined(sector: Sector) -> None:
    assert validate_registration(sector.value, "DE", "DE").sector is sector
    assert len(SECTOR_DEFINITIONS[sector]) > 20


@pytest.mark.parametrize(
    ("sector", "hint"),
    [
        ("police", "'law_enforcement'"),
        ("Police", "'law_enforcement'"),
        ("sheriff", "'law_enforcement'"),
        ("Law_Enforcement", "'law_enforcement'"),
        ("LAW_ENFORCEMENT", "'law_enforcement'"),
        ("law-enforcement", "'law_enforcement'"),
        ("law enforcement", "'law_enforcement'"),
        (" law_enforcement", "'law_enforcement'"),
        ("law_enforcement\n", "'law_enforcement'"),
        ("ｌａｗ_ｅｎｆｏｒｃｅｍｅｎｔ", "'law_enforcement'"),  # fullwidth letters
        (f"l{CYRILLIC_A}w_enforcement", "non-ASCII"),
        ("prison", "'corrections'"),
        ("non-profit", "'nonprofit'"),
        ("", "missing"),
        ("   ", "missing"),
        ("surveillance", "corrections, education"),
    ],
)
def test_near_miss_sectors_are_refused_with_the_canonical_value(sector: str, hint: str) -> None:
    with pytest.raises(UnknownSectorError) as refused:
        validate_registration(sector, "US", "US-IL")
    assert refused.value.code == "registration.unknown_sector"
    assert hint in refused.value.message


@pytest.mark.parametrize(
    ("country", "hint"),
    [
        ("us", "'US'"),
        ("Us", "'US'"),
        ("uS", "'US'"),
        (" US", "'US'"),
        ("US ", "'US'"),
        ("US\n", "'US'"),
        ("U.S.", "'US'"),
        ("ＵＳ", "'US'"),  # fullwidth letters
        (f"U{CYRILLIC_DZE}", "non-ASCII"),
        ("USA", "'US'"),
        ("usa", "'US'"),
        ("United States", "'US'"),
        ("UK", "'GB'"),
        ("EU", "member state"),
        ("XK", "ISO 3166-1"),
        ("ZZ", "ISO 3166-1"),
        ("", "missing"),
    ],
)
def test_near_miss_countries_are_refused_with_the_canonical_value(country: str, hint: str) -> None:
    with pytest.raises(UnknownCountryError) as refused:
        validate_registration("law_enforcement", country, "US")
    assert refused.value.code == "registration.unknown_country"
    assert hint in refused.value.message


@pytest.mark.parametrize(
    ("country", "jurisdiction", "hint"),
    [
        ("US", "us-wa", "'US-WA'"),
        ("US", "US-wa", "'US-WA'"),
        ("US", "US_WA", "'US-WA'"),
        ("US", "US-WA ", "'US-WA'"),
        ("US", "WA", "'US-WA'"),
        ("US", "us", "'US'"),
        ("US", "USA", "'US'"),
        ("US", "US-", "subdivision"),
        ("US", "US-XX", "subdivision"),
        ("US", "GB-ENG", "within the registered country"),
        ("US", "GB", "within the registered country"),
        ("DE", "EU", "member state"),
        ("XK", "XK", "ISO 3166-1"),  # reported on the country, which is checked first
        ("US", "", "missing"),
    ],
)
def test_jurisdictions_outside_the_registered_country_are_refused(country: str, jurisdiction: str, hint: str) -> None:
    with pytest.raises(RegistrationError) as refused:
        validate_registration("corrections", country, jurisdiction)
    expected = UnknownCountryError if country == "XK" else UnknownJurisdictionError
    assert type(refused.value) is expected
    assert hint in refused.value.message


def test_registration_errors_are_invalid_requests_with_their_own_codes() -> None:
    """An invalid registration is the caller's mistake (HTTP 400), never a policy denial."""
    codes = {cls.code for cls in (UnknownSectorError, UnknownCountryError, UnknownJurisdictionError)}
    assert codes == {"registration.unknown_sector", "registration.unknown_country", "registration.unknown_jurisdiction"}
    assert issubclass(RegistrationError, InvalidRequestError)


@pytest.mark.parametrize("value", [None, 1, b"US", ["US"]])
def test_values_that_are_not_text_are_refused(value: object) -> None:
    with pytest.raises(UnknownSectorError):
        validate_registration(value, "US", "US")  # type: ignore[arg-type]
    with pytest.raises(UnknownCountryError):
        validate_registration("private", value, "US")  # type: ignore[arg-type]
    with pytest.raises(UnknownJurisdictionError):
        validate_registration("private", "US", value)  # type: ignore[arg-type]


def test_a_vocabulary_cannot_be_built_around_the_validation() -> None:
    with pytest.raises(UnknownCountryError):
        TenantVocabulary(Sector.LAW_ENFORCEMENT, "USA", "US")
    with pytest.raises(UnknownSectorError):
        TenantVocabulary("police", "US", "US")  # type: ignore[arg-type]


def test_the_country_list_is_the_official_iso_3166_1_list() -> None:
    assert len(COUNTRIES) == 249
    assert all(len(cc) == 2 and cc.isascii() and cc.isupper() for cc in COUNTRIES)
    assert {"XK", "EU", "UK"}.isdisjoint(COUNTRIES)
    assert COUNTRIES["US"].name == "United States"
    assert COUNTRIES["GB"].alpha_3 == "GBR"
    assert set(SUBDIVISIONS) <= set(COUNTRIES)
    assert {"US-WA", "US-DC", "US-PR", "GB-ENG", "GB-LND", "NZ-AUK"} <= {
        f"{cc}-{sub}" for cc, subs in SUBDIVISIONS.items() for sub in subs
    }
    assert is_jurisdiction("VA", "VA")  # a country without subdivisions is its own jurisdiction


@pytest.mark.skipif(not ISO_CODES.exists(), reason="Debian's iso-codes is not installed")
def test_the_country_list_matches_the_installed_iso_codes() -> None:
    installed = json.loads(ISO_CODES.read_text())["3166-1"]
    assert {c["alpha_2"]: c["alpha_3"] for c in installed} == {cc: c.alpha_3 for cc, c in COUNTRIES.items()}


def _catalog_with_moratorium(**overrides: object) -> str:
    data = json.loads(default_catalog().model_dump_json())
    data["moratoria"][0].update(overrides)
    return json.dumps(data)


@pytest.mark.parametrize(
    "overrides",
    [{"sector": "Law_Enforcement"}, {"sector": "police"}, {"countries": ["USA"]}, {"countries": ["us"]}],
)
def test_a_moratorium_in_free_text_is_refused_when_the_catalog_loads(overrides: dict[str, object]) -> None:
    """A misspelt moratorium would silently match nobody: the catalog must use the vocabularies."""
    with pytest.raises(CatalogError, match="moratori"):
        Catalog.from_json(_catalog_with_moratorium(**overrides))


def test_the_moratorium_is_decided_on_canonical_values_only() -> None:
    catalog = default_catalog()
    assert catalog.under_moratorium(validate_registration("law_enforcement", "US", "US-IL"))
    assert not catalog.under_moratorium(validate_registration("law_enforcement", "NZ", "NZ"))
    assert not catalog.under_moratorium(validate_registration("corrections", "US", "US-WA"))


@pytest.mark.parametrize("territory", ["PR", "GU", "VI", "AS", "MP", "UM"])
def test_the_us_moratorium_covers_the_territories_with_their_own_iso_codes(territory: str) -> None:
    """Puerto Rico and the other US territories have ISO 3166-1 codes of their own; registering under
    one must not step outside a US moratorium."""
    registration = validate_registration("law_enforcement", territory, territory)
    assert default_catalog().under_moratorium(registration)
