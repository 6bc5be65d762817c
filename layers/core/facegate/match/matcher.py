"""1:1 verification and open-set 1:N search over one tenant's gallery, by cosine similarity.

The caller passes the templates of **one** tenant's gallery; nothing here reaches beyond what it is given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from facegate.embedding import EMBEDDING_DIM, Embedding
from facegate.errors import EmbeddingMismatchError
from facegate.match.calibration import Calibration

MAX_TOP_K: Final = 50


@dataclass(frozen=True)
class GalleryTemplate:
    """One enrolled face template of one subject."""

    template_id: str
    subject_id: str
    embedding: Embedding
    offset: float = 0.0
    """Subtracted from this template's cosine: a template fused from several photos scores higher
    against strangers too, and its offset (``Calibration.reference_offset``) keeps its false-match rate
    at the use case's target. Scores are reported after it."""


@dataclass(frozen=True)
class VerifyResult:
    """A 1:1 decision: is the probe the claimed subject?"""

    subject_id: str
    matched: bool
    score: float  # the best cosine over the subject's references
    template_id: str  # the reference that gave the score
    threshold: float
    references: int
    model_version: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject_id": self.subject_id,
            "matched": self.matched,
            "score": self.score,
            "template_id": self.template_id,
            "threshold": self.threshold,
            "references": self.references,
            "model_version": self.model_version,
        }


@dataclass(frozen=True)
class Candidate:
    """A person above the threshold, with the template that scored best for them."""

    subject_id: str
    template_id: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"subject_id": self.subject_id, "template_id": self.template_id, "score": self.score}


@dataclass(frozen=True)
class SearchResult:
    """An open-set 1:N answer: the people above the threshold (possibly none) and what that threshold costs.

    ``expected_false_candidates`` = ``gallery_size`` × ``operating_fmr``: with N people in the gallery and a
    false-match rate FMR per comparison, a search is expected to return N × FMR wrong people (linearity of
    expectation), and for a probe of someone not enrolled the chance of at least one false candidate (the
    false-positive identification rate) is FPIR = 1 − (1 − FMR)^N ≈ N × FMR while that is small. The FMR used
    is the worst measured group's (``operating_fmr``), because a gallery's error falls on whoever is in it.
    It counts people; a subject with several templates can match falsely through any of them (up to
    ``templates`` × FMR in all), so read it as an estimate, not a bound. ``top_k`` caps only what is shown.
    """

    candidates: tuple[Candidate, ...]
    threshold: float
    top_k: int
    gallery_size: int  # distinct subjects searched
    templates: int  # templates searched
    operating_fmr: float
    expected_false_candidates: float
    model_version: str

    @property
    def no_match(self) -> bool:
        """True when nobody in the gallery scored at or above the threshold."""
        return not self.candidates

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidates": [c.to_dict() for c in self.candidates],
            "no_match": self.no_match,
            "threshold": self.threshold,
            "top_k": self.top_k,
            "gallery_size": self.gallery_size,
            "templates": self.templates,
            "operating_fmr": self.operating_fmr,
            "expected_false_candidates": self.expected_false_candidates,
            "model_version": self.model_version,
        }


@dataclass(frozen=True)
class FaceSearch:
    """One face of a photo, searched: its place in the photo (the detector's box) and its answer."""

    face: int
    """The face's rank by the subject-face rule (0: the subject)."""
    box: tuple[float, float, float, float]
    result: SearchResult

    def to_dict(self) -> dict[str, Any]:
        return {"face": self.face, "box": [round(float(v), 1) for v in self.box], **self.result.to_dict()}


@dataclass(frozen=True)
class PhotoSearchResult:
    """A search of every comparable face of one photo (photo organisation: who is in this picture), each
    face its own open-set search of the same gallery. ``candidates`` lists each person once, with the
    face that scored best for them: one person is not in a photo twice."""

    faces: tuple[FaceSearch, ...]

    @property
    def no_match(self) -> bool:
        return all(f.result.no_match for f in self.faces)

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        best: dict[str, Candidate] = {}
        for f in self.faces:
            for c in f.result.candidates:
                if c.subject_id not in best or c.score > best[c.subject_id].score:
                    best[c.subject_id] = c
        return tuple(sorted(best.values(), key=lambda c: (-c.score, c.subject_id)))

    def to_dict(self) -> dict[str, Any]:
        first = self.faces[0].result
        return {
            "faces": [f.to_dict() for f in self.faces],
            "candidates": [c.to_dict() for c in self.candidates],
            "no_match": self.no_match,
            "threshold": first.threshold,
            "top_k": first.top_k,
            "gallery_size": first.gallery_size,
            "templates": first.templates,
            "operating_fmr": first.operating_fmr,
            # Each face is its own search: the false candidates expected across the photo add up.
            "expected_false_candidates": sum(f.result.expected_false_candidates for f in self.faces),
            "model_version": first.model_version,
        }


def search_faces(
    probes: Sequence[tuple[tuple[float, float, float, float], Embedding]],
    templates: Sequence[GalleryTemplate] | Gallery,
    *,
    threshold: float,
    top_k: int,
    calibration: Calibration,
) -> PhotoSearchResult:
    """Search every face of a photo (``(box, template)`` pairs, the subject first) in one gallery."""
    if not probes:
        raise ValueError("a photo search needs at least one face")
    gallery = templates if isinstance(templates, Gallery) else Gallery(templates)
    return PhotoSearchResult(
        tuple(
            FaceSearch(i, box, search(probe, gallery, threshold=threshold, top_k=top_k, calibration=calibration))
            for i, (box, probe) in enumerate(probes)
        )
    )


class Gallery:
    """One tenant's templates stacked once into a matrix, for vectorised search (build it once, search often)."""

    def __init__(self, templates: Sequence[GalleryTemplate]) -> None:
        versions = {t.embedding.model_version for t in templates}
        if len(versions) > 1:
            raise EmbeddingMismatchError(f"a gallery holds templates of one model version, got {sorted(versions)}")
        self.model_version: str | None = versions.pop() if versions else None
        self.template_ids: tuple[str, ...] = tuple(t.template_id for t in templates)
        if len(set(self.template_ids)) != len(self.template_ids):
            raise ValueError("template ids in a gallery must be unique")
        self.matrix: npt.NDArray[np.float32] = (
            np.stack([t.embedding.vector for t in templates])
            if templates
            else np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        )
        self.offsets: npt.NDArray[np.float32] = np.array([t.offset for t in templates], dtype=np.float32)
        # Subject codes follow the sorted subject ids, so ordering by code is ordering by subject id.
        subjects, codes = np.unique(np.array([t.subject_id for t in templates], dtype=str), return_inverse=True)
        self.subject_ids: tuple[str, ...] = tuple(str(s) for s in subjects)
        self.subject_codes: npt.NDArray[np.intp] = codes.reshape(-1)

    def __len__(self) -> int:
        return len(self.template_ids)

    @property
    def subject_count(self) -> int:
        return len(self.subject_ids)


def _check_threshold(threshold: float) -> None:
    if not (math.isfinite(threshold) and 0.0 < threshold <= 1.0):
        raise ValueError(f"the threshold is a cosine in (0, 1], got {threshold}")


def verify(probe: Embedding, references: Sequence[GalleryTemplate], *, threshold: float) -> VerifyResult:
    """1:1: does ``probe`` belong to the subject of ``references`` (one subject's templates)?

    The score is the best cosine over the references; matched iff score ≥ ``threshold``. Refuses an empty
    reference list or references of several subjects (``ValueError``) and templates of another model
    version (``EmbeddingMismatchError``).
    """
    _check_threshold(threshold)
    if not references:
        raise ValueError("verification needs at least one reference template of the claimed subject; got none")
    subjects = {r.subject_id for r in references}
    if len(subjects) != 1:
        raise ValueError(f"verification compares with one subject's references, got {len(subjects)} subjects")
    scores = [probe.cosine(r.embedding) - r.offset for r in references]
    best = int(np.argmax(scores))
    return VerifyResult(
        subject_id=references[best].subject_id,
        matched=scores[best] >= threshold,
        score=scores[best],
        template_id=references[best].template_id,
        threshold=threshold,
        references=len(references),
        model_version=probe.model_version,
    )


def search(
    probe: Embedding,
    templates: Sequence[GalleryTemplate] | Gallery,
    *,
    threshold: float,
    top_k: int,
    calibration: Calibration,
) -> SearchResult:
    """Open-set 1:N search of one tenant's gallery: the people whose best template scores ≥ ``threshold``.

    Several templates of one subject count once, with that subject's best score (candidates are people).
    Candidates are sorted by score, highest first, ties by subject id, and at most ``top_k`` (1–50) are
    returned. There is no "closest person" when nobody reaches the threshold: ``no_match`` is then true.
    The result carries the worst-group false-match rate at the threshold and the expected number of false
    candidates, gallery size × that rate (see :class:`SearchResult`). Pass a :class:`Gallery` to stack the
    templates once for many searches.
    """
    if isinstance(top_k, bool) or not (isinstance(top_k, int) and 1 <= top_k <= MAX_TOP_K):
        raise ValueError(f"top_k must be an integer from 1 to {MAX_TOP_K}, got {top_k!r}")
    _check_threshold(threshold)
    if probe.model_version != calibration.model_version:
        raise EmbeddingMismatchError(
            f"the calibration is for {calibration.model_version} templates, the probe is {probe.model_version}"
        )
    operating_fmr = calibration.worst_group_fmr(threshold)
    gallery = templates if isinstance(templates, Gallery) else Gallery(templates)
    if gallery.model_version is not None and gallery.model_version != probe.model_version:
        raise EmbeddingMismatchError(f"cannot compare {probe.model_version} with {gallery.model_version} templates")
    scores = gallery.matrix @ probe.vector - gallery.offsets
    hits = np.flatnonzero(scores >= threshold)
    hit_scores, hit_codes = scores[hits], gallery.subject_codes[hits]
    # Best template per subject: sort by subject, score descending, gallery order; keep each subject's first.
    order = np.lexsort((hits, -hit_scores, hit_codes))
    first = np.ones(order.size, dtype=bool)
    first[1:] = hit_codes[order][1:] != hit_codes[order][:-1]
    best = order[first]
    # People by score descending, ties by subject id (codes follow sorted ids).
    ranked = best[np.lexsort((hit_codes[best], -hit_scores[best]))][:top_k]
    candidates = tuple(
        Candidate(
            subject_id=gallery.subject_ids[hit_codes[i]],
            template_id=gallery.template_ids[hits[i]],
            score=float(hit_scores[i]),
        )
        for i in ranked
    )
    return SearchResult(
        candidates=candidates,
        threshold=threshold,
        top_k=top_k,
        gallery_size=gallery.subject_count,
        templates=len(gallery),
        operating_fmr=operating_fmr,
        expected_false_candidates=gallery.subject_count * operating_fmr,
        model_version=probe.model_version,
    )
