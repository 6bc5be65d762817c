"""Measured error rates per group on a grid of thresholds (``calibration.json``, written by
``python -m benchmarks.calibrate``), read back as functions of the threshold.

- FMR per gender (LFW's manual labels) over **every cross-person pair** of identity-labelled images,
  within a group (``F``, ``M``) and across groups (``F~M``), and over every pair;
- FMR per *predicted* group (LFW, model-predicted race4+gender: noisy, reported, never used to choose);
- an upper bound on FMR per FairFace group (human-labelled groups, but no identities: one person
  photographed several times counts as false matches);
- FNMR per gender over LFW View-2 folds 1–5 genuine pairs, and over every same-person pair.

Between grid points rates are interpolated linearly. **Zero is never reported as a false-match rate**: a
group's FMR is ``max(k, 3) / n`` for ``k`` false matches in ``n`` pairs, i.e. never below the "rule of
three" (3/n is the 95% upper bound when no false match is observed in n pairs). Above the grid's last
threshold the last point's value is returned. FNMR is reported as observed and only inside the grid.

:meth:`Calibration.threshold_for` turns a target FMR into the one threshold for all groups: the lowest
grid threshold at which every identity-labelled group's Wilson 95% upper bound is at or below the target.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from facegate.stats import wilson

RESOURCE: Final = "calibration.json"
SCHEMA: Final = 2
RULE_OF_THREE: Final = 3

IntArray = npt.NDArray[np.int64]


class _Counts:
    """False decisions ``k`` (one per threshold) out of ``n`` pairs."""

    def __init__(self, k: list[int], n: int) -> None:
        self.k: IntArray = np.asarray(k, dtype=np.int64)
        self.n = n


class Calibration:
    """Error rates measured per group, as functions of the cosine threshold. Build with :meth:`packaged`."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        if data.get("schema") != SCHEMA:
            raise ValueError(f"calibration schema {data.get('schema')!r}, expected {SCHEMA}")
        rows = data["thresholds"]
        self.provenance: Mapping[str, Any] = data["provenance"]
        self.model_version: str = self.provenance["models"]["embedder"]
        self.thresholds = np.array([r["threshold"] for r in rows], dtype=np.float64)
        if len(rows) < 2 or not np.all(np.diff(self.thresholds) > 0):
            raise ValueError("calibration thresholds must be at least two, strictly increasing")
        self._offsets: dict[tuple[int, float], float] = {}
        self._fmr = self._table(rows, "fmr_by_group")
        self._fmr_cross = self._table(rows, "fmr_cross_group")
        self._fmr_overall = self._counts(rows, "fmr_overall")
        self._fmr_predicted = self._table(rows, "fmr_by_predicted_group")
        self._fmr_upper = self._table(rows, "fmr_upper_bound_by_group")
        self._fnmr = self._table(rows, "fnmr_by_gender")
        self._fnmr_every = self._table(rows, "fnmr_every_pair_by_gender")
        self._by_references = {
            int(r): {g: self._counts(rows, "fmr_by_references", r, g) for g in groups}
            for r, groups in rows[0].get("fmr_by_references", {}).items()
        }
        self._fnmr_overall = _Counts(
            [int(sum(int(c.k[i]) for c in self._fnmr.values())) for i in range(len(rows))],
            sum(c.n for c in self._fnmr.values()),
        )
        fmr_tables = [
            self._fmr,
            self._fmr_cross,
            self._fmr_predicted,
            self._fmr_upper,
            {"overall": self._fmr_overall},
            *self._by_references.values(),
        ]
        for table in fmr_tables:
            for name, counts in table.items():
                if np.any(np.diff(counts.k) > 0):
                    raise ValueError(f"calibration false matches rise with the threshold ({name}): a corrupt file")
        for table in (self._fnmr, self._fnmr_every):
            for name, counts in table.items():
                if np.any(np.diff(counts.k) < 0):
                    raise ValueError(f"calibration false non-matches fall with the threshold ({name}): a corrupt file")

    @classmethod
    def _table(cls, rows: list[dict[str, Any]], key: str) -> dict[str, _Counts]:
        return {g: cls._counts(rows, key, g) for g in rows[0][key]}

    @staticmethod
    def _counts(rows: list[dict[str, Any]], *path: str) -> _Counts:
        """One cell per threshold, found under ``path`` in each row (e.g. ``fmr_by_group``, ``F``)."""
        cells = []
        for row in rows:
            cell = row
            for key in path:
                cell = cell[key]
            cells.append(cell)
        n = {c["n"] for c in cells}
        if len(n) != 1 or min(n) <= 0:
            raise ValueError(f"calibration {' '.join(path)}: the pair count must be one positive number")
        return _Counts([c["k"] for c in cells], n.pop())

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        return cls(json.loads(text))

    @staticmethod
    def packaged() -> Calibration:
        """The calibration shipped with facegate (``facegate/match/calibration.json``), loaded once."""
        return _packaged()

    # --- lookups ---------------------------------------------------------------------------------

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(self._fmr)

    def pairs_by_group(self) -> dict[str, int]:
        """Impostor pairs measured per group (``n``): 3/n is the lowest FMR a group can be credited with."""
        return {g: c.n for g, c in self._fmr.items()}

    def _check(self, threshold: float) -> None:
        if not math.isfinite(threshold):
            raise ValueError(f"threshold must be a finite number, got {threshold}")
        if threshold < self.thresholds[0]:
            raise ValueError(
                f"threshold {threshold} is below the calibrated range ({self.thresholds[0]:.2f}–"
                f"{self.thresholds[-1]:.2f}): no measured false-match rate to report"
            )

    def _fmr_at(self, counts: _Counts, threshold: float) -> float:
        self._check(threshold)
        floored = np.maximum(counts.k, RULE_OF_THREE) / counts.n
        # np.interp holds the last value beyond the grid: the rule-of-three bound or the last observed rate.
        return float(np.interp(threshold, self.thresholds, floored))

    def _fnmr_at(self, counts: _Counts, threshold: float) -> float:
        self._check(threshold)
        if threshold > self.thresholds[-1]:
            raise ValueError(
                f"threshold {threshold} is above the calibrated range (up to {self.thresholds[-1]:.2f}): "
                "the false-non-match rate there is not measured"
            )
        return float(np.interp(threshold, self.thresholds, counts.k / counts.n))

    def fmr_by_group(self, threshold: float) -> dict[str, float]:
        """False-match rate per identity-labelled group (within the group) at ``threshold``, never below 3/n."""
        return {g: self._fmr_at(c, threshold) for g, c in self._fmr.items()}

    def fmr_cross_group(self, threshold: float) -> dict[str, float]:
        """False-match rate between people of different groups (``F~M``), reported apart."""
        return {g: self._fmr_at(c, threshold) for g, c in self._fmr_cross.items()}

    def fmr_by_predicted_group(self, threshold: float) -> dict[str, float]:
        """Within predicted race4+gender groups (model predictions, noisy: for rough stratification only)."""
        return {g: self._fmr_at(c, threshold) for g, c in self._fmr_predicted.items()}

    def fmr_upper_bound_by_group(self, threshold: float) -> dict[str, float]:
        """FairFace within-group pair rates: an upper bound on FMR (no identities: repeats count as false)."""
        return {g: self._fmr_at(c, threshold) for g, c in self._fmr_upper.items()}

    def worst_group(self, threshold: float) -> str:
        """The identity-labelled group with the highest false-match rate at ``threshold`` (ties: first by name)."""
        rates = self.fmr_by_group(threshold)
        return max(sorted(rates), key=lambda g: rates[g])

    def worst_group_fmr(self, threshold: float) -> float:
        """The highest per-group false-match rate at ``threshold``: the rate a 1:N search must plan for."""
        return max(self.fmr_by_group(threshold).values())

    def overall_fmr(self, threshold: float) -> float:
        """False-match rate over every identity-labelled pair, cross-group included."""
        return self._fmr_at(self._fmr_overall, threshold)

    def fmr_interval(self, group: str, threshold: float) -> tuple[float, float]:
        """Wilson 95% interval of an identity-labelled group's FMR at a grid threshold."""
        counts = self._fmr[group]
        i = self._grid_index(threshold)
        return wilson(int(counts.k[i]), counts.n)

    def threshold_for(self, target_fmr: float, references: int = 1) -> float:
        """The lowest grid threshold at which every identity-labelled group's FMR, at the upper end of its
        Wilson 95% interval, is at or below ``target_fmr``: one threshold for all groups. ``references``
        > 1 asks it for a template fused from that many photos (its impostor scores run higher)."""
        if not 0.0 < target_fmr < 1.0:
            raise ValueError(f"target FMR must be in (0, 1), got {target_fmr}")
        if references == 1:
            table = self._fmr
        elif references in self._by_references:
            table = self._by_references[references]
        else:
            raise ValueError(f"no calibration for templates of {references} references")
        for i, t in enumerate(self.thresholds):
            if all(wilson(int(c.k[i]), c.n)[1] <= target_fmr for c in table.values()):
                return float(t)
        raise ValueError(f"no calibrated threshold reaches FMR {target_fmr} for every group")

    def reference_offset(self, references: int, target_fmr: float) -> float:
        """How much higher a template fused from ``references`` photos must score to keep the same FMR as a
        single photo at ``target_fmr``: the matcher subtracts it from such a template's cosine. Computed
        once per pair (a search asks it for every fused template of the gallery)."""
        if references == 1:
            return 0.0
        key = (references, target_fmr)
        if key not in self._offsets:
            self._offsets[key] = round(self.threshold_for(target_fmr, references) - self.threshold_for(target_fmr), 6)
        return self._offsets[key]

    @property
    def fused_references(self) -> tuple[int, ...]:
        """The reference counts calibrated for fused templates."""
        return tuple(sorted(self._by_references))

    def _grid_index(self, threshold: float) -> int:
        hits = np.nonzero(np.isclose(self.thresholds, threshold, atol=1e-9))[0]
        if hits.size == 0:
            raise ValueError(f"threshold {threshold} is not on the calibration grid")
        return int(hits[0])

    def fnmr_by_gender(self, threshold: float) -> dict[str, float]:
        """False-non-match rate per gender (LFW View-2 genuine pairs, manual labels) at ``threshold``."""
        return {g: self._fnmr_at(c, threshold) for g, c in self._fnmr.items()}

    def fnmr_every_pair_by_gender(self, threshold: float) -> dict[str, float]:
        """False-non-match rate per gender over every same-person pair of the LFW development images."""
        return {g: self._fnmr_at(c, threshold) for g, c in self._fnmr_every.items()}

    def overall_fnmr(self, threshold: float) -> float:
        return self._fnmr_at(self._fnmr_overall, threshold)

    def _tables(self) -> dict[str, dict[str, _Counts]]:
        return {
            "fmr_by_group": self._fmr,
            "fmr_cross_group": self._fmr_cross,
            "fmr_by_predicted_group": self._fmr_predicted,
            "fmr_upper_bound_by_group": self._fmr_upper,
            "fnmr_by_gender": self._fnmr,
            "fnmr_every_pair_by_gender": self._fnmr_every,
        }

    def counts(self) -> dict[str, dict[str, int]]:
        """Pairs measured per table and group (``n``)."""
        return {name: {g: c.n for g, c in t.items()} for name, t in self._tables().items()}

    def observed(self, table: str, group: str, threshold: float) -> tuple[int, int]:
        """The false decisions ``k`` of ``n`` pairs measured in one group of a table (named as in
        :meth:`counts`) at a grid threshold: the figures behind a reported rate and its interval."""
        counts = self._tables()[table][group]
        return int(counts.k[self._grid_index(threshold)]), counts.n


@cache
def _packaged() -> Calibration:
    text = resources.files("facegate.match").joinpath(RESOURCE).read_text(encoding="utf-8")
    return Calibration.from_json(text)
