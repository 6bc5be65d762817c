"""YuNet wrapper: pure pre/post-processing, the scale policy and batching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facegate.evaluation import johns_chip
from facegate.vision import FacePipeline, decode_image
from facegate.vision.decode import cv2
from facegate.vision.detector import (
    COARSE_SIDE,
    FINE_MAX_FACE,
    FINE_MAX_SIDE,
    Detections,
    YuNetDetector,
    decode_outputs,
    drop_contained,
    nms,
    pad_to_stride,
    scale_passes,
)


def _dets(boxes: list[list[float]], scores: list[float]) -> Detections:
    n = len(boxes)
    return Detections(
        np.asarray(boxes, np.float32).reshape(n, 4),
        np.zeros((n, 5, 2), np.float32),
        np.asarray(scores, np.float32),
    )


def test_empty_detections_keep_their_shapes() -> None:
    empty = Detections.empty()
    assert len(empty) == 0
    assert empty.boxes.shape == (0, 4)
    assert empty.landmarks.shape == (0, 5, 2)
    assert empty.scores.shape == (0,)
    assert list(empty) == []


def test_nms_keeps_the_best_of_overlapping_boxes_and_separate_faces() -> None:
    dets = _dets([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 10, 10]], [0.7, 0.9, 0.8])
    kept = nms(dets, 0.3)
    assert kept.scores.tolist() == pytest.approx([0.9, 0.8])


def test_drop_contained_removes_a_partial_box_inside_a_large_face() -> None:
    """GIVEN a 400 px face and a 120 px box on its eyes WHEN merged THEN only the face remains."""
    dets = _dets([[100, 100, 400, 400], [200, 180, 120, 120], [700, 100, 100, 100]], [0.8, 0.9, 0.85])
    kept = drop_contained(dets)
    assert sorted(kept.boxes[:, 2].tolist()) == [100, 400]


def test_pad_to_stride_pads_bottom_right_only() -> None:
    image = np.full((250, 250, 3), 7, np.uint8)
    padded = pad_to_stride(image)
    assert padded.shape == (256, 256, 3)
    assert (padded[:250, :250] == 7).all()
    assert (padded[250:] == 0).all()
    assert pad_to_stride(np.zeros((64, 96, 3), np.uint8)).shape == (64, 96, 3)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((250, 250), [(1.0, None)]),
        ((480, 640), [(1.0, None)]),
        ((886, 1280), [(1.0, FINE_MAX_FACE), (COARSE_SIDE / 1280, None)]),
        ((3000, 4000), [(FINE_MAX_SIDE / 4000, FINE_MAX_FACE), (COARSE_SIDE / 4000, None)]),
    ],
)
def test_scale_passes(size: tuple[int, int], expected: list[tuple[float, float | None]]) -> None:
    passes = scale_passes(*size)
    assert [(pytest.approx(p.scale), p.max_face) for p in passes] == expected


def test_decode_outputs_maps_grid_cells_to_pixels() -> None:
    """GIVEN one confident cell at stride 8, row 2, col 3 WHEN decoded THEN box and landmarks land there."""
    h, w = 64, 64
    outputs = {}
    for s in (8, 16, 32):
        cells = (h // s) * (w // s)
        outputs[f"cls_{s}"] = np.zeros((1, cells, 1), np.float32)
        outputs[f"obj_{s}"] = np.zeros((1, cells, 1), np.float32)
        outputs[f"bbox_{s}"] = np.zeros((1, cells, 4), np.float32)
        outputs[f"kps_{s}"] = np.zeros((1, cells, 10), np.float32)
    cell = 2 * (w // 8) + 3
    outputs["cls_8"][0, cell, 0] = 0.81
    outputs["obj_8"][0, cell, 0] = 1.0
    outputs["bbox_8"][0, cell] = [0.5, 0.5, np.log(2.0), np.log(4.0)]
    outputs["kps_8"][0, cell] = [0.0, 0.0] * 5
    dets = decode_outputs(outputs, 0, h, w, threshold=0.6)
    assert len(dets) == 1
    assert dets.scores[0] == pytest.approx(0.9)  # sqrt(0.81 * 1.0)
    cx, cy = (3 + 0.5) * 8, (2 + 0.5) * 8
    assert dets.boxes[0].tolist() == pytest.approx([cx - 8, cy - 16, 16, 32])
    assert dets.landmarks[0, 0].tolist() == pytest.approx([24, 16])
    assert len(decode_outputs(outputs, 0, h, w, threshold=0.95)) == 0


def test_detector_rejects_a_session_that_is_not_yunet(pipeline: FacePipeline) -> None:
    with pytest.raises(ValueError, match="not a YuNet"):
        YuNetDetector(pipeline.embedder._session)


def test_detector_rejects_invalid_threshold(pipeline: FacePipeline) -> None:
    with pytest.raises(ValueError, match="score_threshold"):
        YuNetDetector(pipeline.detector._session, score_threshold=1.5)


def test_detector_rejects_non_bgr_arrays(pipeline: FacePipeline) -> None:
    with pytest.raises(ValueError, match="uint8 BGR"):
        pipeline.detector.detect(np.zeros((100, 100), np.uint8))


def test_blank_image_has_no_face(pipeline: FacePipeline) -> None:
    assert len(pipeline.detector.detect(np.full((480, 640, 3), 128, np.uint8))) == 0


def test_batch_detection_equals_one_at_a_time(pipeline: FacePipeline, johns: dict[str, list[Path]]) -> None:
    """GIVEN images of mixed sizes WHEN detected as a batch THEN results equal single-image detection."""
    images = []
    for k, paths in enumerate(johns.values()):
        chip = johns_chip(paths[0])
        images.append(cv2.resize(chip, None, fx=1 + k % 3, fy=1 + k % 3) if k % 2 else chip)
    batched = pipeline.detector.detect_batch(images)
    for image, got in zip(images, batched, strict=True):
        alone = pipeline.detector.detect(image)
        assert len(got) == len(alone) == 1
        np.testing.assert_allclose(got.boxes, alone.boxes, atol=1e-3)
        np.testing.assert_allclose(got.landmarks, alone.landmarks, atol=1e-3)


def test_landmarks_are_ordered_right_eye_left_eye_nose_mouth(
    pipeline: FacePipeline, fr_images: dict[str, Path]
) -> None:
    """The subject's right eye is on the image's left; the nose lies between the eyes and the mouth."""
    face = pipeline.detector.detect(decode_image(fr_images["obama"].read_bytes()))[0]
    right_eye, left_eye, nose, mouth_r, mouth_l = face.landmarks
    assert right_eye[0] < left_eye[0]
    assert mouth_r[0] < mouth_l[0]
    assert max(right_eye[1], left_eye[1]) < nose[1] < min(mouth_r[1], mouth_l[1])
    x, y, w, h = face.box
    assert all(x <= px <= x + w and y <= py <= y + h for px, py in face.landmarks)
    assert face.size == pytest.approx(min(w, h))
