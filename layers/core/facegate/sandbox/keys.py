"""Where a tester's sets and reports live: under its own ``tenants/<tester>/independent-tests/`` prefix,
apart from every gallery's uploads and probes."""

from __future__ import annotations

import re
from typing import Final

from facegate.tenancy import TENANT_ID

SET_KEY: Final = re.compile(
    rf"^tenants/(?P<tenant>{TENANT_ID.pattern.strip('^$')})/independent-tests/(?P<name>[0-9a-f]{{32}})\.zip$"
)


def set_key(tester: str, name: str) -> str:
    return f"tenants/{tester}/independent-tests/{name}.zip"


def set_key_match(key: str) -> re.Match[str] | None:
    return SET_KEY.fullmatch(key)


def report_keys(tester: str, test_id: str) -> tuple[str, str]:
    """The report's JSON and HTML keys."""
    base = f"tenants/{tester}/independent-tests/{test_id}"
    return f"{base}/report.json", f"{base}/report.html"
