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


def side_by_side(left: Path, right: Path, *, small: Path | None = None) -> np.ndarray:
    """Two of dlib's johns the same size on a grey canvas (both comparable faces: a photo of two people)
    and, optionally, a third one small near the top (a bystander)."""
    from facegate.vision import decode_image

    canvas = np.full((460, 860, 3), 128, np.uint8)
    for x, path in ((60, left), (480, right)):
        canvas[80:400, x : x + 320] = cv2.resize(decode_image(path.read_bytes()), (320, 320))
    if small is not None:
        canvas[5:75, 395:465] = cv2.resize(decode_image(small.read_bytes()), (70, 70))
    return canvas
