"""One subject-face rule: the dominant face is the subject; much smaller faces are bystanders.

GIVEN a photo whose subject is large and central and whose background holds a smaller face
WHEN it is analysed THEN the subject is the large face (whatever the detector's scores), the small face
is a bystander (never embedded, not counted) and the face count the policy sees is one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facegate.vision import FacePipeline, decode_image
from facegate.vision.decode import BgrImage, cv2
from facegate.vision.detector import Detections
from facegate.vision.subject import BYSTANDER_RATIO, SUBJECT_TIE, subject_faces


def _detections(*faces: tuple[float, float, float, float, float]) -> Detections:
    """``(x, y, w, h, score)`` per face; landmarks placed inside each box."""
    boxes = np.array([f[:4] for f in faces], np.float32)
    lm = np.stack(
        [
            np.array(
                [
                    [x + 0.3 * w, y + 0.4 * h],
                    [x + 0.7 * w, y + 0.4 * h],
                    [x + 0.5 * w, y + 0.6 * h],
                    [x + 0.35 * w, y + 0.8 * h],
                    [x + 0.65 * w, y + 0.8 * h],
                ],
                np.float32,
            )
            for x, y, w, h, _ in faces
        ]
    )
    return Detections(boxes, lm, np.array([f[4] for f in faces], np.float32))


def test_the_largest_face_is_the_subject_not_the_highest_score() -> None:
    det = _detections((10, 10, 40, 40, 0.99), (200, 150, 120, 120, 0.70))
    rule = subject_faces(det, 500, 400)
    assert rule.subject == 1
    assert rule.comparable == (1,)
    assert rule.bystanders == (0,)
    assert rule.count == 1


def test_among_faces_of_similar_size_the_central_one_is_the_subject() -> None:
    # Both within SUBJECT_TIE of the largest: the one nearest the centre wins even if a little smaller.
    big_side = 100.0
    near = big_side * (SUBJECT_TIE + 0.05)
    det = _detections((0, 0, big_side, big_side, 0.9), (250 - near / 2, 200 - near / 2, near, near, 0.8))
    rule = subject_faces(det, 500, 400)
    assert rule.subject == 1
    # The larger side face is comparable to the (smaller) subject: two people, counted.
    assert rule.count == 2


def test_a_face_below_the_ratio_is_a_bystander_and_one_above_counts() -> None:
    subject = (200.0, 150.0, 100.0, 100.0, 0.9)
    below = (20.0, 20.0, 100 * BYSTANDER_RATIO - 2, 100 * BYSTANDER_RATIO - 2, 0.99)
    above = (380.0, 20.0, 100 * BYSTANDER_RATIO + 2, 100 * BYSTANDER_RATIO + 2, 0.99)
    rule = subject_faces(_detections(subject, below, above), 500, 400)
    assert rule.subject == 0
    assert rule.comparable == (0, 2)
    assert rule.bystanders == (1,)


def test_a_face_cut_by_the_frame_is_a_bystander() -> None:
    subject = (200.0, 150.0, 100.0, 100.0, 0.9)
    cut = (-30.0, 100.0, 100.0, 100.0, 0.95)  # as large as the subject, but partly outside the image
    rule = subject_faces(_detections(subject, cut), 500, 400)
    assert rule.subject == 0
    assert rule.count == 1
    assert rule.bystanders == (1,)


def test_no_face_gives_no_subject() -> None:
    rule = subject_faces(Detections.empty(), 100, 100)
    assert rule.subject is None
    assert rule.count == 0
    assert rule.order == ()


def _face_crop(pipeline: FacePipeline, path: Path, margin: float = 0.6) -> BgrImage:
    image = decode_image(path.read_bytes())
    det = pipeline.detector.detect(image)
    x, y, w, h = det[int(np.argmax(det.boxes[:, 2] * det.boxes[:, 3]))].box
    m = margin * max(w, h)
    x0, y0 = max(0, int(x - m)), max(0, int(y - m))
    return np.ascontiguousarray(image[y0 : int(y + h + m), x0 : int(x + w + m)])


@pytest.fixture(scope="module")
def subject_with_bystander(pipeline: FacePipeline, fr_images: dict[str, Path]) -> BgrImage:
    """Obama large in the middle of a grey canvas; Biden small (about half his size) in a corner."""
    obama = _face_crop(pipeline, fr_images["obama"])
    biden = _face_crop(pipeline, fr_images["biden"])
    canvas = np.full((900, 1200, 3), 128, np.uint8)
    scale = 420 / max(obama.shape[:2])
    big = np.asarray(cv2.resize(obama, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    small_scale = 0.5 * 420 / max(biden.shape[:2])
    small = np.asarray(cv2.resize(biden, None, fx=small_scale, fy=small_scale, interpolation=cv2.INTER_AREA))
    y0, x0 = (900 - big.shape[0]) // 2, (1200 - big.shape[1]) // 2
    canvas[y0 : y0 + big.shape[0], x0 : x0 + big.shape[1]] = big
    canvas[20 : 20 + small.shape[0], 20 : 20 + small.shape[1]] = small
    return canvas


def test_a_background_face_is_neither_embedded_nor_counted(
    pipeline: FacePipeline, fr_images: dict[str, Path], subject_with_bystander: BgrImage
) -> None:
    analysis = pipeline.analyse_image(subject_with_bystander)
    assert len(analysis.faces) == 2, "both faces are detected"
    assert analysis.face_count == 1
    assert len(analysis.bystanders) == 1
    assert len(analysis.embeddings) == 1, "the bystander is never embedded"
    obama2 = pipeline.analyse(fr_images["obama2"].read_bytes()).subject_embedding
    biden = pipeline.analyse(fr_images["biden"].read_bytes()).subject_embedding
    subject = analysis.subject_embedding
    assert subject.cosine(obama2) > 0.5 > subject.cosine(biden)


def test_the_batch_path_applies_the_same_rule(pipeline: FacePipeline, subject_with_bystander: BgrImage) -> None:
    alone = pipeline.analyse_image(subject_with_bystander)
    (batched,) = pipeline.analyse_batch([subject_with_bystander])
    assert batched.face_count == alone.face_count == 1
    assert batched.subject_embedding.cosine(alone.subject_embedding) == pytest.approx(1.0, abs=1e-4)
