"""Measuring accuracy per person and per group, through the product's own path.

- :mod:`.pairs`: error counts over every pair of a labelled set, per group, at one fixed threshold for all
  groups (NIST FRVT practice), and the helpers the regression tests and benchmarks share.
- :mod:`.dataset`: a labelled set (CSV, folder, or a fetched set), read strictly.
- :mod:`.measure`: the set through the production path (subject rule, quality bar, embedder).
- :mod:`.report`: the per-group report (counts and intervals; ``facegate evaluate``).
- :mod:`.render`: its HTML and PNG plots (matplotlib, the ``[report]`` extra).
- :mod:`.gate`: the release gate's bounds on a report.
"""

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
