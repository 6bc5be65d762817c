"""Test photos as the service receives them: PNG bytes (the integration tests upload these)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facegate.evaluation import johns_chip
from facegate.vision.decode import cv2


def png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return bytes(np.asarray(data))


def chip_png(path: Path) -> bytes:
    """One of dlib's johns, padded for the detector, as PNG bytes."""
    return png(johns_chip(path))
