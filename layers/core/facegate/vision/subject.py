"""Which face is the subject, and which other faces count: one rule for every path.

Detect, the face re-check, Embed, enrolment, the bulk job, the CLI and the evaluation all call
:func:`subject_faces`, so the face that is embedded and the faces that are counted as a crowd are the
same wherever an image enters.

- **The subject** is the dominant face: the largest box, with the image centre as the tie-break among
  faces at least ``SUBJECT_TIE`` of the largest's size. (The highest detector *score* is not a choice
  of person: on LFW it picked a bystander in 77 of 737 multi-face images.)
- **Comparable faces** are the subject and every face at least ``BYSTANDER_RATIO`` of its size that
  lies wholly inside the frame: another person presented to the camera. They are what the crowd rule
  counts and, where a use case allows several faces, what is searched.
- **Bystanders** are the rest (much smaller, or cut by the image border): never embedded, never counted.

Figures (LFW development images, ``docs/decisions.md`` "The right face"): the identity-checked subject
of 737 multi-face images was picked wrongly 77 times by score, 11 by size alone, 0 by size with the
centre tie-break at 0.7. Genuine LFW View-2 pairs with a second counted face: 25% at score 0.6 before,
1.07% with the ratio 0.85 and the frame rule (women 0.76%, men 1.18%).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from facegate.vision.detector import Detections

SUBJECT_TIE: Final = 0.7
"""Faces at least this fraction of the largest face's size compete for the subject by distance to the centre."""
BYSTANDER_RATIO: Final = 0.85
"""A face smaller than this fraction of the subject's size is a bystander."""


@dataclass(frozen=True)
class SubjectFaces:
    """The rule's answer for one image: indices into the detections it was given."""

    subject: int | None
    """The dominant face, or ``None`` when no face was detected."""
    comparable: tuple[int, ...]
    """The subject first, then the other faces that count (largest first)."""
    bystanders: tuple[int, ...]

    @property
    def count(self) -> int:
        """Faces that count for the crowd rule (0 when no face was found)."""
        return len(self.comparable)

    @property
    def order(self) -> tuple[int, ...]:
        """Every face: comparable ones first (subject leading), then the bystanders."""
        return self.comparable + self.bystanders


def _sizes(detections: Detections) -> np.ndarray:
    return np.asarray(detections.boxes[:, 2:].min(axis=1), dtype=np.float64)


def subject_faces(detections: Detections, width: int, height: int) -> SubjectFaces:
    """Apply the subject-face rule to the faces detected in a ``width`` × ``height`` image."""
    n = len(detections)
    if n == 0:
        return SubjectFaces(None, (), ())
    boxes = detections.boxes.astype(np.float64)
    size = _sizes(detections)
    centre = boxes[:, :2] + boxes[:, 2:] / 2
    dist = np.hypot(centre[:, 0] - width / 2, centre[:, 1] - height / 2)
    candidates = [i for i in range(n) if size[i] >= SUBJECT_TIE * size.max()]
    # Nearest the centre; then the larger; then the lower index (a stable, total order).
    subject = min(candidates, key=lambda i: (dist[i], -size[i], i))
    in_frame = (
        (boxes[:, 0] >= 0)
        & (boxes[:, 1] >= 0)
        & (boxes[:, 0] + boxes[:, 2] <= width)
        & (boxes[:, 1] + boxes[:, 3] <= height)
    )
    by_size = sorted(range(n), key=lambda i: (-size[i], i))
    others = [i for i in by_size if i != subject]
    counted = [i for i in others if size[i] >= BYSTANDER_RATIO * size[subject] and in_frame[i]]
    bystanders = [i for i in others if i not in counted]
    return SubjectFaces(subject, (subject, *counted), tuple(bystanders))
