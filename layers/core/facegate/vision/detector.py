"""YuNet 2023mar face detector on onnxruntime, at native resolution with a two-scale policy.

Pre-processing: BGR, 0..255 float32, no normalisation, padded (never resized) to a multiple of 32.
Post-processing: per stride ``s`` and grid cell ``(r, c)``: score = sqrt(cls * obj), box centre
``((c + b0) s, (r + b1) s)``, size ``(exp(b2) s, exp(b3) s)``, landmark k = ``((kps[2k] + c) s,
(kps[2k+1] + r) s)`` (right eye, left eye, nose tip, right and left mouth corners), then NMS.

Scale policy (who gets found depends on it; figures in docs/decisions.md):
- the *fine* pass runs at native size, capped at ``FINE_MAX_SIDE`` on the longest side: it finds small
  faces in group photos, which a downscale to 640 loses;
- YuNet misses or half-boxes faces above ~550 px, so the fine pass keeps only faces up to
  ``FINE_MAX_FACE`` px and a *coarse* pass with the longest side scaled to ``COARSE_SIDE`` (run only when
  that is a real downscale) supplies the large ones;
- results are merged by NMS, and a box mostly inside a larger detected face is dropped (the partial
  boxes YuNet puts on a very large face).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from facegate.vision.decode import BgrImage, cv2

# Chosen on measured recall per group (docs/decisions.md): at OpenCV's default 0.9 the detector missed
# 8.8% of FairFace faces (14.9% of Black men), at 0.6 0.1%, with one extra box on dlib's 43 faces.
DEFAULT_SCORE_THRESHOLD: Final = 0.6
NMS_IOU: Final = 0.3
STRIDES: Final = (8, 16, 32)
FINE_MAX_SIDE: Final = 1920
FINE_MAX_FACE: Final = 320.0
COARSE_SIDE: Final = 640
# A box whose area lies this much inside a kept box at least twice its size is a part of that face.
CONTAINED_FRACTION: Final = 0.6

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Face:
    """One detected face in source-image pixels."""

    box: tuple[float, float, float, float]
    """``(x, y, width, height)``."""
    landmarks: FloatArray
    """(5, 2): right eye, left eye, nose tip, right mouth corner, left mouth corner."""
    score: float

    @property
    def size(self) -> float:
        """Face size in source pixels (the shorter box side), used for quality decisions."""
        return float(min(self.box[2], self.box[3]))


@dataclass(frozen=True)
class Detections:
    """All faces found in one image; empty results keep their shapes."""

    boxes: FloatArray
    """(N, 4) ``x, y, width, height``."""
    landmarks: FloatArray
    """(N, 5, 2)."""
    scores: FloatArray
    """(N,)."""

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0, 5, 2), np.float32), np.zeros((0,), np.float32))

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def __iter__(self) -> Iterator[Face]:
        for i in range(len(self)):
            x, y, w, h = (float(v) for v in self.boxes[i])
            yield Face((x, y, w, h), self.landmarks[i], float(self.scores[i]))

    def __getitem__(self, index: int) -> Face:
        x, y, w, h = (float(v) for v in self.boxes[index])
        return Face((x, y, w, h), self.landmarks[index], float(self.scores[index]))

    def select(self, keep: npt.NDArray[np.intp]) -> Detections:
        return Detections(self.boxes[keep], self.landmarks[keep], self.scores[keep])

    @staticmethod
    def concat(parts: Sequence[Detections]) -> Detections:
        if not parts:
            return Detections.empty()
        return Detections(
            np.concatenate([p.boxes for p in parts]),
            np.concatenate([p.landmarks for p in parts]),
            np.concatenate([p.scores for p in parts]),
        )


@dataclass(frozen=True)
class ScalePass:
    """One detector pass: the image scaled by ``scale``; faces above ``max_face`` px (at that scale) dropped."""

    scale: float
    max_face: float | None


def scale_passes(height: int, width: int) -> list[ScalePass]:
    """The passes the scale policy runs for an image of this size (see the module docstring)."""
    longest = max(height, width)
    fine = min(1.0, FINE_MAX_SIDE / longest)
    coarse = min(1.0, COARSE_SIDE / longest)
    if coarse >= fine * 0.999:
        return [ScalePass(fine, None)]
    return [ScalePass(fine, FINE_MAX_FACE), ScalePass(coarse, None)]


def pad_to_stride(image: BgrImage, multiple: int = 32) -> BgrImage:
    """Pad bottom/right with zeros to a multiple of ``multiple`` (coordinates stay those of the image)."""
    h, w = image.shape[:2]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return image
    padded = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    return np.asarray(padded, dtype=np.uint8)


def to_blob(images: Sequence[BgrImage]) -> FloatArray:
    """Stack same-sized BGR images into an NCHW float32 blob (0..255, no normalisation)."""
    batch = np.stack(images).astype(np.float32)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


def decode_outputs(outputs: dict[str, FloatArray], index: int, height: int, width: int, threshold: float) -> Detections:
    """Turn raw YuNet outputs of batch item ``index`` (padded input ``height`` x ``width``) into faces."""
    boxes, landmarks, scores = [], [], []
    for stride in STRIDES:
        cols = width // stride
        cls = np.clip(outputs[f"cls_{stride}"][index, :, 0], 0.0, 1.0)
        obj = np.clip(outputs[f"obj_{stride}"][index, :, 0], 0.0, 1.0)
        score = np.sqrt(cls * obj)
        keep = np.nonzero(score >= threshold)[0]
        if keep.size == 0:
            continue
        r = (keep // cols).astype(np.float32)
        c = (keep % cols).astype(np.float32)
        bbox = outputs[f"bbox_{stride}"][index, keep]
        kps = outputs[f"kps_{stride}"][index, keep].reshape(-1, 5, 2)
        cx = (c + bbox[:, 0]) * stride
        cy = (r + bbox[:, 1]) * stride
        w = np.exp(bbox[:, 2]) * stride
        h = np.exp(bbox[:, 3]) * stride
        boxes.append(np.stack([cx - w / 2, cy - h / 2, w, h], axis=1))
        grid = np.stack([c, r], axis=1)[:, None, :]
        landmarks.append((kps + grid) * stride)
        scores.append(score[keep])
    if not scores:
        return Detections.empty()
    return Detections(
        np.concatenate(boxes).astype(np.float32),
        np.concatenate(landmarks).astype(np.float32),
        np.concatenate(scores).astype(np.float32),
    )


def nms(detections: Detections, iou_threshold: float = NMS_IOU) -> Detections:
    """Greedy non-maximum suppression, highest score first."""
    if len(detections) == 0:
        return detections
    x1, y1 = detections.boxes[:, 0], detections.boxes[:, 1]
    x2, y2 = x1 + detections.boxes[:, 2], y1 + detections.boxes[:, 3]
    area = detections.boxes[:, 2] * detections.boxes[:, 3]
    order = np.argsort(-detections.scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        iw = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        ih = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = iw * ih
        iou = inter / np.maximum(area[i] + area[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return detections.select(np.asarray(keep, dtype=np.intp))


def drop_contained(detections: Detections, fraction: float = CONTAINED_FRACTION) -> Detections:
    """Drop boxes lying mostly inside a kept box at least twice their area (parts of one large face)."""
    n = len(detections)
    if n < 2:
        return detections
    b = detections.boxes
    area = b[:, 2] * b[:, 3]
    order = np.argsort(-area, kind="stable")
    keep: list[int] = []
    for i in order:
        inside = False
        for j in keep:
            iw = max(0.0, min(b[i, 0] + b[i, 2], b[j, 0] + b[j, 2]) - max(b[i, 0], b[j, 0]))
            ih = max(0.0, min(b[i, 1] + b[i, 3], b[j, 1] + b[j, 3]) - max(b[i, 1], b[j, 1]))
            if area[j] >= 2 * area[i] and iw * ih >= fraction * area[i]:
                inside = True
                break
        if not inside:
            keep.append(int(i))
    keep.sort(key=lambda k: -float(detections.scores[k]))
    return detections.select(np.asarray(keep, dtype=np.intp))


class YuNetDetector:
    """YuNet face detector. The session is built once and injected; the model must have symbolic N/H/W."""

    model_version: Final = "yunet-2023mar"

    def __init__(
        self,
        session: ort.InferenceSession,
        *,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        nms_iou: float = NMS_IOU,
        max_batch: int = 8,
    ) -> None:
        if not 0.0 < score_threshold < 1.0:
            raise ValueError(f"score_threshold must be in (0, 1), got {score_threshold}")
        self._session = session
        self._input = session.get_inputs()[0].name
        self._outputs = [o.name for o in session.get_outputs()]
        expected = {f"{k}_{s}" for k in ("cls", "obj", "bbox", "kps") for s in STRIDES}
        if set(self._outputs) != expected:
            raise ValueError(f"not a YuNet 2023mar session: outputs {sorted(self._outputs)}")
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.max_batch = max_batch

    def forward(self, blob: FloatArray) -> dict[str, FloatArray]:
        """Run the network on an NCHW blob whose H and W are multiples of 32."""
        values = self._session.run(self._outputs, {self._input: blob})
        return dict(zip(self._outputs, values, strict=True))

    def detect(self, image: BgrImage) -> Detections:
        """Detect faces in one BGR image; coordinates are in the image's own pixels."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[BgrImage]) -> list[Detections]:
        """Detect faces in many images; passes of equal padded size run as one batch."""
        jobs: dict[tuple[int, int], list[tuple[int, ScalePass, FloatArray, BgrImage]]] = {}
        for idx, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError("images must be H×W×3 uint8 BGR arrays (use decode_image)")
            h, w = image.shape[:2]
            for p in scale_passes(h, w):
                scaled = image
                if p.scale != 1.0:
                    size = (max(1, round(w * p.scale)), max(1, round(h * p.scale)))
                    scaled = np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
                # The rounded size, not p.scale, maps coordinates back exactly.
                back = np.array([w / scaled.shape[1], h / scaled.shape[0]], dtype=np.float32)
                padded = pad_to_stride(scaled)
                jobs.setdefault(padded.shape[:2], []).append((idx, p, back, padded))
        found: list[list[Detections]] = [[] for _ in images]
        for (ph, pw), items in jobs.items():
            for start in range(0, len(items), self.max_batch):
                chunk = items[start : start + self.max_batch]
                outputs = self.forward(to_blob([item[3] for item in chunk]))
                for k, (idx, p, back, _) in enumerate(chunk):
                    det = decode_outputs(outputs, k, ph, pw, self.score_threshold)
                    if p.max_face is not None and len(det):
                        det = det.select(np.nonzero(det.boxes[:, 2:].min(axis=1) <= p.max_face)[0])
                    if p.scale != 1.0 and len(det):
                        det = Detections(det.boxes * np.tile(back, 2), det.landmarks * back, det.scores)
                    found[idx].append(det)
        return [drop_contained(nms(Detections.concat(parts), self.nms_iou)) for parts in found]
