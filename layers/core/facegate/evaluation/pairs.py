"""Error counts over pairs of a labelled set, per group, at one fixed operating threshold.

Used by the regression tests and ``benchmarks/accuracy.py``. Following NIST FRVT practice, error rates
are reported per group at a single threshold (never a threshold tuned per group), with a Wilson 95%
interval so that small groups show how little they prove.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from facegate.vision.decode import BgrImage, cv2, decode_image
from facegate.vision.embedder import Embedding
from facegate.vision.pipeline import FacePipeline

JOHNS_BORDER = 75
"""dlib's johns are 150×150 chips cropped tight to the face: the detector needs context around it. A
black border (not replicate or reflect: those put the impostor maximum at 0.479 / 0.448 against 0.343)."""


def with_border(image: BgrImage, border: int) -> BgrImage:
    """``image`` inside a black border ``border`` pixels wide (a tight face chip gets the context the
    detector needs)."""
    b = border
    return np.asarray(cv2.copyMakeBorder(image, b, b, b, b, cv2.BORDER_CONSTANT)) if b else image


def johns_chip(path: Path) -> BgrImage:
    """One of dlib's johns, decoded and padded with the black border the detector needs."""
    return with_border(decode_image(path.read_bytes()), JOHNS_BORDER)


def embed_subject(pipeline: FacePipeline, image: BgrImage) -> Embedding | None:
    """The product's template of the image's subject (the subject-face rule,
    :mod:`facegate.vision.subject`), or ``None`` when no face is detected (a false non-match)."""
    analysis = pipeline.analyse_image(image)
    return analysis.embeddings[0] if analysis.embeddings else None


@dataclass(frozen=True)
class VerificationStats:
    threshold: float
    genuine: int
    impostor: int
    false_non_matches: int
    false_matches: int
    genuine_min: float
    impostor_max: float

    @property
    def fnmr(self) -> float:
        return self.false_non_matches / self.genuine if self.genuine else 0.0

    @property
    def fmr(self) -> float:
        return self.false_matches / self.impostor if self.impostor else 0.0

    @property
    def accuracy(self) -> float:
        total = self.genuine + self.impostor
        return 1 - (self.false_non_matches + self.false_matches) / total if total else 1.0


def verification_stats(scores: npt.ArrayLike, same: npt.ArrayLike, threshold: float) -> VerificationStats:
    """Decisions at ``threshold`` for pair ``scores`` (NaN = a face was not detected: a non-match)."""
    s = np.asarray(scores, dtype=np.float64)
    g = np.asarray(same, dtype=bool)
    match = np.nan_to_num(s, nan=-1.0) >= threshold
    gen, imp = s[g], s[~g]
    return VerificationStats(
        threshold=threshold,
        genuine=int(g.sum()),
        impostor=int((~g).sum()),
        false_non_matches=int((~match[g]).sum()),
        false_matches=int(match[~g].sum()),
        genuine_min=float(np.nanmin(np.nan_to_num(gen, nan=-1.0))) if gen.size else math.nan,
        impostor_max=float(np.nanmax(np.nan_to_num(imp, nan=-1.0))) if imp.size else math.nan,
    )


def all_pairs(
    embeddings: Sequence[Embedding], labels: Sequence[str]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Cosine scores and same-identity flags for every unordered pair."""
    matrix = np.stack([e.vector for e in embeddings]).astype(np.float64)
    scores = matrix @ matrix.T
    names = np.asarray(labels)
    iu = np.triu_indices(len(names), 1)
    return scores[iu], (names[:, None] == names[None, :])[iu]


@dataclass(frozen=True)
class PairCounts:
    """False decisions over *every* pair of a labelled set, per group, on a grid of thresholds.

    ``impostor[g]`` and ``genuine[g]`` hold ``(k, n)``: ``k[i]`` false matches (impostor pairs scoring
    at or above ``thresholds[i]``) or false non-matches (genuine pairs scoring below it) out of ``n``
    pairs. Impostor pairs are keyed by the two people's groups: ``"F"`` when both are in group F,
    ``"F~M"`` (names sorted) across groups. Genuine pairs are keyed by the person's group. An image
    without a detected face makes each of its genuine pairs a non-match and takes part in no impostor
    pair (it cannot falsely match)."""

    thresholds: tuple[float, ...]
    impostor: dict[str, tuple[npt.NDArray[np.int64], int]]
    genuine: dict[str, tuple[npt.NDArray[np.int64], int]]

    def within(self) -> dict[str, tuple[npt.NDArray[np.int64], int]]:
        return {g: v for g, v in self.impostor.items() if "~" not in g}

    def cross(self) -> dict[str, tuple[npt.NDArray[np.int64], int]]:
        return {g: v for g, v in self.impostor.items() if "~" in g}


def count_pairs(
    vectors: npt.NDArray[np.float32],
    identities: Sequence[str],
    groups: Sequence[str],
    thresholds: Sequence[float],
    *,
    block: int = 512,
) -> PairCounts:
    """Count false decisions over every unordered pair (rows of ``vectors`` are L2-normalised templates;
    a row of NaN is an image without a face). An image whose group is ``""`` (unlabelled) takes part in
    no pair. Memory stays at ``block`` rows × N scores."""
    grid = np.asarray(thresholds, dtype=np.float64)
    if grid.ndim != 1 or grid.size < 1 or np.any(np.diff(grid) <= 0):
        raise ValueError("thresholds must be strictly increasing")
    labelled = np.asarray([g != "" for g in groups], dtype=bool)
    x = np.asarray(vectors, dtype=np.float32)[labelled]
    identities = [i for i, keep in zip(identities, labelled, strict=True) if keep]
    groups = [g for g in groups if g != ""]
    missing = np.isnan(x).any(axis=1)
    x = np.where(missing[:, None], 0.0, x).astype(np.float32)
    _, person = np.unique(np.asarray(identities), return_inverse=True)
    names, group = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = len(names)
    # Per pair-of-groups code and per threshold bucket: counts of scores >= each threshold.
    ge = np.zeros((n_groups * n_groups, grid.size + 1), np.int64)
    gen_ge = np.zeros((n_groups, grid.size + 1), np.int64)
    imp_n = np.zeros(n_groups * n_groups, np.int64)
    gen_n = np.zeros(n_groups, np.int64)
    n = len(x)
    for start in range(0, n, block):
        rows = np.arange(start, min(n, start + block))
        scores = x[rows] @ x.T  # (b, N)
        for r_local, i in enumerate(rows):
            j = np.arange(i + 1, n)
            if j.size == 0:
                continue
            s = scores[r_local, i + 1 :].astype(np.float64)
            bad = missing[i] | missing[j]
            s[bad] = -np.inf
            same = person[j] == person[i]
            gi, gj = group[i], group[j]
            lo, hi = np.minimum(gi, gj), np.maximum(gi, gj)
            code = lo * n_groups + hi
            bucket = np.searchsorted(grid, s, side="right")  # thresholds <= s
            imp = ~same & ~bad
            np.add.at(ge, (code[imp], bucket[imp]), 1)
            imp_n += np.bincount(code[imp], minlength=n_groups * n_groups)
            if same.any():
                np.add.at(gen_ge, (np.full(int(same.sum()), gi), bucket[same]), 1)
                gen_n[gi] += int(same.sum())
    # count of scores >= grid[t] = sum of buckets > t
    at_or_above = np.cumsum(ge[:, ::-1], axis=1)[:, ::-1][:, 1:]
    gen_above = np.cumsum(gen_ge[:, ::-1], axis=1)[:, ::-1][:, 1:]
    impostor: dict[str, tuple[npt.NDArray[np.int64], int]] = {}
    for a in range(n_groups):
        for b in range(a, n_groups):
            c = a * n_groups + b
            if imp_n[c]:
                key = str(names[a]) if a == b else f"{names[a]}~{names[b]}"
                impostor[key] = (at_or_above[c].astype(np.int64), int(imp_n[c]))
    genuine = {
        str(names[g]): ((gen_n[g] - gen_above[g]).astype(np.int64), int(gen_n[g])) for g in range(n_groups) if gen_n[g]
    }
    return PairCounts(tuple(float(t) for t in grid), impostor, genuine)


def count_template_impostors(
    templates: npt.NDArray[np.float32],
    owners: Sequence[str],
    owner_groups: Sequence[str],
    vectors: npt.NDArray[np.float32],
    identities: Sequence[str],
    groups: Sequence[str],
    thresholds: Sequence[float],
) -> dict[str, tuple[npt.NDArray[np.int64], int]]:
    """False matches of enrolled templates (e.g. fused from several photos) against every photo of every
    *other* person of the same group: ``{group: (k per threshold, n pairs)}``. Photos without a face
    (NaN rows) and unlabelled photos take part in no pair."""
    grid = np.asarray(thresholds, dtype=np.float64)
    ident = np.asarray(identities)
    grp = np.asarray(groups)
    valid = ~np.isnan(vectors).any(axis=1)
    out: dict[str, tuple[npt.NDArray[np.int64], int]] = {}
    for g in sorted(set(owner_groups) - {""}):
        k = np.zeros(grid.size, np.int64)
        n = 0
        for t_vec, owner, t_group in zip(templates, owners, owner_groups, strict=True):
            if t_group != g:
                continue
            others = valid & (grp == g) & (ident != owner)
            s = np.sort(vectors[others] @ t_vec)
            k += (s.size - np.searchsorted(s, grid, side="left")).astype(np.int64)
            n += int(s.size)
        out[g] = (k, n)
    return out
