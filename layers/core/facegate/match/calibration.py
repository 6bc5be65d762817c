"""Measured error rates per group on a grid of thresholds (``calibration.json``, written by
``python -m benchmarks.calibrate``), read back as functions of the threshold.

- FMR per FairFace group (FairFace's own race4 + gender labels) over every within-group impostor pair, the
  worst group and the overall FMR (every pair, cross-group included);
- FNMR per gender (LFW's manual labels) over LFW View-2 folds 1–5 genuine pairs, and overall.

Between grid points rates are interpolated linearly. **Zero is never reported as a false-match rate**: a
group's FMR is ``max(k, 3) / n`` for ``k`` false matches in ``n`` pairs, i.e. never below the "rule of
three" (3/n is the 95% upper bound when no false match is observed in n pairs). Above the grid's last
threshold the last point's value is returned: 3/n where no false match is left there, otherwise the
observed rate at the last point (an upper bound, since the FMR can only fall as the threshold rises).
So the floor also keeps the curve non-increasing, which a bare "3/n only when k = 0" would not
(1/n at one threshold, 3/n at the next). FNMR is reported as observed and only inside the grid.
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

RESOURCE: Final = "calibration.json"
SCHEMA: Final = 1
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
        self._fmr = {g: self._counts(rows, "fmr_by_group", g) for g in rows[0]["fmr_by_group"]}
        self._fmr_overall = self._counts(rows, "fmr_overall")
        self._fnmr = {g: self._counts(rows, "fnmr_by_gender", g) for g in rows[0]["fnmr_by_gender"]}
        self._fnmr_overall = self._counts(rows, "fnmr_overall")
        for name, counts in [*self._fmr.items(), ("overall", self._fmr_overall)]:
            if np.any(np.diff(counts.k) > 0):
                raise ValueError(f"calibration false matches rise with the threshold ({name}): a corrupt file")
        for name, counts in [*self._fnmr.items(), ("overall", self._fnmr_overall)]:
            if np.any(np.diff(counts.k) < 0):
                raise ValueError(f"calibration false non-matches fall with the threshold ({name}): a corrupt file")

    @staticmethod
    def _counts(rows: list[dict[str, Any]], key: str, group: str | None = None) -> _Counts:
        cells = [r[key] if group is None else r[key][group] for r in rows]
        n = {c["n"] for c in cells}
        if len(n) != 1 or min(n) <= 0:
            raise ValueError(f"calibration {key} {group or ''}: the pair count must be one positive number")
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
        """False-match rate per FairFace group at ``threshold`` (never below 3/n; see the module docstring)."""
        return {g: self._fmr_at(c, threshold) for g, c in self._fmr.items()}

    def worst_group(self, threshold: float) -> str:
        """The group with the highest false-match rate at ``threshold`` (ties: the first by name)."""
        rates = self.fmr_by_group(threshold)
        return max(sorted(rates), key=lambda g: rates[g])

    def worst_group_fmr(self, threshold: float) -> float:
        """The highest per-group false-match rate at ``threshold``: the rate a 1:N search must plan for."""
        return max(self.fmr_by_group(threshold).values())

    def overall_fmr(self, threshold: float) -> float:
        """False-match rate over every FairFace pair, cross-group included (lower than within-group rates)."""
        return self._fmr_at(self._fmr_overall, threshold)

    def fnmr_by_gender(self, threshold: float) -> dict[str, float]:
        """False-non-match rate per gender (LFW, manual labels) at ``threshold``, as observed."""
        return {g: self._fnmr_at(c, threshold) for g, c in self._fnmr.items()}

    def overall_fnmr(self, threshold: float) -> float:
        return self._fnmr_at(self._fnmr_overall, threshold)


@cache
def _packaged() -> Calibration:
    text = resources.files("facegate.match").joinpath(RESOURCE).read_text(encoding="utf-8")
    return Calibration.from_json(text)
