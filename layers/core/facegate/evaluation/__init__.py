"""Measuring accuracy per person and per group, through the product's own path.

- :mod:`.pairs`: error counts over every pair of a labelled set, per group, at one fixed threshold for all
  groups (NIST FRVT practice), and the helpers the regression tests and benchmarks share.
- :mod:`.dataset`: a labelled set (CSV, folder, or a fetched set), read strictly.
- :mod:`.measure`: the set through the production path (subject rule, quality bar, embedder).
- :mod:`.report`: the per-group report (counts and intervals; ``facegate evaluate``).
- :mod:`.render`: its HTML and PNG plots (matplotlib, the ``[report]`` extra).
- :mod:`.gate`: the release gate's bounds on a report.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from facegate.evaluation.pairs import (
        JOHNS_BORDER,
        PairCounts,
        VerificationStats,
        all_pairs,
        count_pairs,
        count_template_impostors,
        embed_subject,
        johns_chip,
        verification_stats,
    )


def __getattr__(name: str) -> Any:
    """The pair helpers, imported on first use: :mod:`.dataset` (which the API's zip function reads a
    tester's set with) must not pull in OpenCV and onnxruntime through :mod:`.pairs`."""
    if name in __all__:
        return getattr(import_module("facegate.evaluation.pairs"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "JOHNS_BORDER",
    "PairCounts",
    "VerificationStats",
    "all_pairs",
    "count_pairs",
    "count_template_impostors",
    "embed_subject",
    "johns_chip",
    "verification_stats",
]
