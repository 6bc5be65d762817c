"""Matching templates of one tenant's gallery: 1:1 verification and open-set 1:N search, by cosine similarity.

Every search reports what its threshold costs: the worst measured group's false-match rate there
(:class:`Calibration`, from ``calibration.json``, written by ``python -m benchmarks.calibrate``) and the
expected number of false candidates, gallery size × that rate.
"""

from facegate.match.calibration import Calibration
from facegate.match.matcher import (
    MAX_TOP_K,
    Candidate,
    FaceSearch,
    Gallery,
    GalleryTemplate,
    PhotoSearchResult,
    SearchResult,
    VerifyResult,
    search,
    search_faces,
    verify,
)

__all__ = [
    "MAX_TOP_K",
    "Calibration",
    "Candidate",
    "FaceSearch",
    "Gallery",
    "GalleryTemplate",
    "PhotoSearchResult",
    "SearchResult",
    "VerifyResult",
    "search",
    "search_faces",
    "verify",
]
