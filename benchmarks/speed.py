"""Speed of facegate's vision path against OpenCV's own YuNet + SFace, on one CPU thread.

Run from the repository root::

    python -m benchmarks.speed [--images N] [--repeats R]

Method
------
Both sides run the same two networks on the same decoded arrays:

- **facegate (crop alone, like OpenCV)**: ``FacePipeline.from_store`` (the built models in the model
  store, CPU provider, one intra-op thread) → ``detector.detect(img)`` → ``align_face(img, landmarks)``
  → ``embed([crop])`` on an ``SFaceEmbedder(session, flip=False)`` built on its own session of the same
  built SFace model (``create_session(ModelStore().path(EMBEDDER))``, one intra-op thread, as
  ``from_store`` does). That embeds the single crop, as OpenCV does, and includes the L2 normalisation
  and the ``Embedding`` wrapper. This is the like-for-like comparison: the per-stage table, the total
  ratio, the target line and the agreement figure all use it.
- **facegate as the product runs it (crop + mirror)**: the pipeline's own embedder (``flip=True``, what
  every request runs: the crop and its mirror in one batch of two, averaged) is also timed on the same
  crop of every image, right next to the ``flip=False`` embed (the two alternate which goes first).
  It is reported as an extra embed row and a "total per face as the product runs it" (the same
  detect + align + this embed), each with its ratio to OpenCV's embed and total. OpenCV has no
  equivalent, so this is not like-for-like: it is what facegate costs in service.
- **OpenCV**: ``cv2.FaceDetectorYN`` on the original YuNet ONNX (score 0.6, NMS 0.3, top-k 5000, the same
  thresholds as facegate), ``setInputSize((w, h))`` then ``detect(img)`` per image, and
  ``cv2.FaceRecognizerSF`` on the original SFace ONNX, ``alignCrop`` then ``feature`` (raw, not
  normalised; the normalisation for the agreement check is done outside the timed region).
  ``cv2.setNumThreads(1)``.

Images are the first ``N`` LFW JPEGs (250x250, sorted by path) under ``../shared/data/lfw`` relative to
the repository root, read in place and decoded once with ``facegate.vision.decode_image``; decoding is
not timed. Each side is warmed up on 5 images, then for every image both sides run back to back
(alternating which goes first), so machine noise falls on both. Each stage is timed with
``time.perf_counter_ns``; only the top-scoring face of an image is aligned and embedded, on both sides.
The per-face total is detect + align + embed of one image, taken only where both sides found a face.
Figures are medians over all images and repeats; the ratio is facegate / OpenCV (below 1 means facegate
is faster). The target is a like-for-like (crop alone) total ratio ≤ 0.8; it is reported, never
enforced: this script does not exit non-zero because of a timing. Ratios move between machines (0.57x on
an AVX-512 CPU against 0.83x on an AVX2-only one has been seen), so the CPU model and its
vector extensions (from ``/proc/cpuinfo`` flags: avx2, avx512f, avx512_vnni, amx_*, ...) are printed
first and recorded in the JSON.

Agreement: for each image, the cosine between facegate's crop-alone (``flip=False``) embedding and
OpenCV's (normalised) embedding of the top face, and the largest landmark difference. The product's
flipped embedding is a different template by design and is not compared with OpenCV's. Boxes and
landmarks come from the same network, so the embeddings should agree to about 1e-3 or better; the figure
is printed, not asserted.

Cold start: in a fresh ``python -c`` subprocess per run (facegate and OpenCV alternating, 5 runs each),
the child times its own imports, model loading (for facegate including the store's sha256 check of the
built files) and its first detect + align + embed of one image (facegate's as the product runs it:
``FacePipeline.from_store`` with its flipped embedder, crop + mirror, which is what a Lambda cold start
does; OpenCV's embeds the crop alone), and prints that with its own peak RSS
as JSON (KiB). The peak is ``VmHWM`` from ``/proc/self/status``: on Linux ``ru_maxrss`` survives
``execve``, so a child's ``RUSAGE_SELF`` figure is never below the RSS this parent had when it forked
(both models loaded); it is reported alongside as ``ru_maxrss_kib``. The OpenCV child decodes with
``cv2.imdecode`` so that it does not pay for importing onnxruntime through facegate. The parent also
records the process wall time, which adds interpreter start-up.

Not measured: large photos (e.g. a 1280x853 group photo, where facegate's two-scale policy runs an
extra pass). There is no realistic group photo in the local data, and a tiled or upscaled LFW image
would not be one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from facegate.fetch import cache_dir
from facegate.models import EMBEDDER, ModelStore
from facegate.vision import FacePipeline, decode_image
from facegate.vision.align import align_face
from facegate.vision.decode import BgrImage
from facegate.vision.embedder import SFaceEmbedder
from facegate.vision.runtime import CPU, create_session

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
DEFAULT_LFW: Final = REPO_ROOT.parent / "shared" / "data" / "lfw"
DEFAULT_ORIGINALS: Final = cache_dir() / "models-original"
YUNET_ORIGINAL: Final = "face_detection_yunet_2023mar.onnx"
SFACE_ORIGINAL: Final = "face_recognition_sface_2021dec.onnx"
SCORE_THRESHOLD: Final = 0.6
NMS_THRESHOLD: Final = 0.3
TOP_K: Final = 5000
WARMUP_IMAGES: Final = 5
COLD_RUNS: Final = 5
TARGET_RATIO: Final = 0.8
STAGES: Final = ("detect", "align", "embed", "total")
"""The like-for-like stages (facegate's embed is the crop alone, as OpenCV's)."""
PRODUCT_STAGES: Final = ("embed_flip", "total_flip")
"""facegate only: the embed as the product runs it (crop + mirror) and detect + align + that embed."""
LIKE_FOR_LIKE_LABEL: Final = "facegate (crop alone, like OpenCV)"
PRODUCT_EMBED_LABEL: Final = "embed as the product runs it (crop + mirror)"
PRODUCT_TOTAL_LABEL: Final = "total per face as the product runs it"
VECTOR_FLAGS: Final = (
    # x86
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx_vnni",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    # arm64 (the "Features" line)
    "asimd",
    "asimddp",
    "i8mm",
    "bf16",
    "sve",
    "sve2",
)
"""The SIMD extensions that decide onnxruntime's and OpenCV's kernels, reported in this order if present."""

FloatVector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Sample:
    """One side's timings (ns) on one image; ``None`` for align/embed when no face was found."""

    detect_ns: int
    align_ns: int | None = None
    embed_ns: int | None = None
    vector: FloatVector | None = None
    """Unit-length embedding of the top face."""
    landmarks: FloatVector | None = None
    """(5, 2) landmarks of the top face."""
    faces: int = 0
    embed_flip_ns: int | None = None
    """facegate only: the product's embed (crop + mirror) of the same crop."""


class Side(Protocol):
    name: str

    def run(self, image: BgrImage) -> Sample: ...


class FacegateSide:
    """facegate's path (sessions built once): the crop alone for the comparison, and the product's embed.

    ``self.single`` is an ``SFaceEmbedder(flip=False)`` on its own session of the same built model (one
    intra-op thread, built as ``FacePipeline.from_store`` builds its embedder): the like-for-like embed.
    ``self.pipeline.embedder`` is the product's (``flip=True``: crop + mirror in one batch of two).
    """

    name = "facegate"

    def __init__(self) -> None:
        store = ModelStore()
        self.pipeline = FacePipeline.from_store(store, providers=[CPU], intra_op_threads=1)
        if not self.pipeline.embedder.flip:
            raise RuntimeError("FacePipeline.from_store no longer builds the flipped (product) embedder")
        self.single = SFaceEmbedder(
            create_session(store.path(EMBEDDER), providers=[CPU], intra_op_threads=1), flip=False
        )
        self._calls = 0

    def run(self, image: BgrImage) -> Sample:
        t0 = time.perf_counter_ns()
        detections = self.pipeline.detector.detect(image)
        t1 = time.perf_counter_ns()
        if len(detections) == 0:
            return Sample(t1 - t0)
        face = detections[0]  # highest score first
        t2 = time.perf_counter_ns()
        crop = align_face(image, face.landmarks)
        t3 = time.perf_counter_ns()
        # The two embeds of the same crop alternate which goes first, so neither always runs on a warm cache.
        self._calls += 1
        if self._calls % 2:
            embedding, embed_ns = self._embed(self.single, crop)
            _, flip_ns = self._embed(self.pipeline.embedder, crop)
        else:
            _, flip_ns = self._embed(self.pipeline.embedder, crop)
            embedding, embed_ns = self._embed(self.single, crop)
        return Sample(
            t1 - t0,
            t3 - t2,
            embed_ns,
            embedding,
            face.landmarks.astype(np.float32),
            len(detections),
            embed_flip_ns=flip_ns,
        )

    @staticmethod
    def _embed(embedder: SFaceEmbedder, crop: BgrImage) -> tuple[FloatVector, int]:
        start = time.perf_counter_ns()
        (embedding,) = embedder.embed([crop])
        return embedding.vector, time.perf_counter_ns() - start


class OpenCVSide:
    """OpenCV's own FaceDetectorYN + FaceRecognizerSF on the original ONNX files."""

    name = "opencv"

    def __init__(self, originals: Path) -> None:
        self.detector = cv2.FaceDetectorYN.create(
            str(originals / YUNET_ORIGINAL), "", (320, 320), SCORE_THRESHOLD, NMS_THRESHOLD, TOP_K
        )
        self.recognizer = cv2.FaceRecognizerSF.create(str(originals / SFACE_ORIGINAL), "")

    def run(self, image: BgrImage) -> Sample:
        h, w = image.shape[:2]
        t0 = time.perf_counter_ns()
        self.detector.setInputSize((w, h))
        _, faces = self.detector.detect(image)
        t1 = time.perf_counter_ns()
        if faces is None or len(faces) == 0:
            return Sample(t1 - t0)
        row = faces[int(np.argmax(faces[:, 14]))]
        t2 = time.perf_counter_ns()
        crop = self.recognizer.alignCrop(image, row)
        t3 = time.perf_counter_ns()
        feature = self.recognizer.feature(crop)
        t4 = time.perf_counter_ns()
        vector = np.asarray(feature, dtype=np.float32).reshape(-1)
        vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
        landmarks = np.asarray(row[4:14], dtype=np.float32).reshape(5, 2)
        return Sample(t1 - t0, t3 - t2, t4 - t3, vector, landmarks, len(faces))


@dataclass
class StageTimes:
    """Collected nanosecond samples per stage for one side."""

    samples: dict[str, list[int]] = field(default_factory=lambda: {stage: [] for stage in STAGES + PRODUCT_STAGES})

    def median_ms(self, stage: str) -> float:
        values = self.samples[stage]
        return statistics.median(values) / 1e6 if values else float("nan")

    def p90_ms(self, stage: str) -> float:
        values = sorted(self.samples[stage])
        return values[min(len(values) - 1, int(0.9 * len(values)))] / 1e6 if values else float("nan")


@dataclass
class Agreement:
    """How closely the two sides agree on the same images (first repeat only; both are deterministic)."""

    compared: int = 0
    max_cosine_diff: float = 0.0
    max_landmark_px: float = 0.0
    face_count_mismatch: int = 0
    facegate_only: int = 0
    opencv_only: int = 0
    neither: int = 0

    def add(self, fg: Sample, cv: Sample) -> None:
        if fg.faces != cv.faces:
            self.face_count_mismatch += 1
        if fg.vector is None or cv.vector is None:
            if fg.vector is not None:
                self.facegate_only += 1
            elif cv.vector is not None:
                self.opencv_only += 1
            else:
                self.neither += 1
            return
        assert fg.landmarks is not None
        assert cv.landmarks is not None
        self.compared += 1
        cosine = float(np.dot(fg.vector.astype(np.float64), cv.vector.astype(np.float64)))
        self.max_cosine_diff = max(self.max_cosine_diff, abs(1.0 - cosine))
        self.max_landmark_px = max(self.max_landmark_px, float(np.abs(fg.landmarks - cv.landmarks).max()))


def load_images(lfw: Path, count: int) -> list[BgrImage]:
    paths = sorted(lfw.glob("*/*.jpg"))[:count]
    if len(paths) < count:
        raise SystemExit(f"found {len(paths)} LFW images under {lfw}, need {count}")
    return [decode_image(p.read_bytes()) for p in paths]


def measure(
    images: list[BgrImage], sides: tuple[FacegateSide, OpenCVSide], repeats: int
) -> tuple[dict[str, StageTimes], Agreement]:
    """Warm both sides up, then time every stage with the two sides interleaved per image."""
    for side in sides:
        for image in images[:WARMUP_IMAGES]:
            side.run(image)
    times = {side.name: StageTimes() for side in sides}
    agreement = Agreement()
    for rep in range(repeats):
        for i, image in enumerate(images):
            order: tuple[Side, Side] = sides if (i + rep) % 2 == 0 else (sides[1], sides[0])
            results = {side.name: side.run(image) for side in order}
            fg, cv = results["facegate"], results["opencv"]
            if rep == 0:
                agreement.add(fg, cv)
            for name, sample in results.items():
                times[name].samples["detect"].append(sample.detect_ns)
            if fg.align_ns is None or cv.align_ns is None:
                continue
            for name, sample in results.items():
                assert sample.align_ns is not None
                assert sample.embed_ns is not None
                times[name].samples["align"].append(sample.align_ns)
                times[name].samples["embed"].append(sample.embed_ns)
                times[name].samples["total"].append(sample.detect_ns + sample.align_ns + sample.embed_ns)
                if sample.embed_flip_ns is not None:
                    times[name].samples["embed_flip"].append(sample.embed_flip_ns)
                    times[name].samples["total_flip"].append(sample.detect_ns + sample.align_ns + sample.embed_flip_ns)
    return times, agreement


# The product path: from_store's embedder is the flipped one (crop + mirror), as in a Lambda cold start.
FACEGATE_CHILD: Final = """
import time
t0 = time.perf_counter_ns()
import json, resource, sys
from pathlib import Path
from facegate.vision import FacePipeline, decode_image
from facegate.vision.align import align_face
from facegate.vision.decode import cv2
cv2.setNumThreads(1)
t1 = time.perf_counter_ns()
pipeline = FacePipeline.from_store(providers=["CPUExecutionProvider"], intra_op_threads=1)
t2 = time.perf_counter_ns()
image = decode_image(Path(sys.argv[1]).read_bytes())
face = pipeline.detector.detect(image)[0]
vector = pipeline.embedder.embed([align_face(image, face.landmarks)])[0].vector
t3 = time.perf_counter_ns()
dim = int(vector.shape[0])
"""

OPENCV_CHILD: Final = """
import time
t0 = time.perf_counter_ns()
import json, resource, sys
from pathlib import Path
import cv2
import numpy as np
cv2.setNumThreads(1)
t1 = time.perf_counter_ns()
detector = cv2.FaceDetectorYN.create(sys.argv[2], "", (320, 320), 0.6, 0.3, 5000)
recognizer = cv2.FaceRecognizerSF.create(sys.argv[3], "")
t2 = time.perf_counter_ns()
image = cv2.imdecode(np.frombuffer(Path(sys.argv[1]).read_bytes(), np.uint8), cv2.IMREAD_COLOR)
detector.setInputSize((image.shape[1], image.shape[0]))
_, faces = detector.detect(image)
row = faces[int(np.argmax(faces[:, 14]))]
feature = recognizer.feature(recognizer.alignCrop(image, row))
t3 = time.perf_counter_ns()
dim = int(feature.size)
"""

# Both children end with this. ru_maxrss survives execve on Linux, so a child's ru_maxrss is at least the
# RSS of this (already large) parent when it forked; VmHWM is the peak of the child's own address space.
CHILD_REPORT: Final = """
status = Path("/proc/self/status").read_text().splitlines()
hwm = next((int(line.split()[1]) for line in status if line.startswith("VmHWM:")), None)
ru_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"import_ms": (t1 - t0) / 1e6, "load_ms": (t2 - t1) / 1e6, "first_ms": (t3 - t2) / 1e6,
                  "total_ms": (t3 - t0) / 1e6, "dim": dim, "max_rss_kib": hwm or ru_maxrss,
                  "ru_maxrss_kib": ru_maxrss}))
"""
COLD_KEYS: Final = (
    "import_ms",
    "load_ms",
    "first_ms",
    "total_ms",
    "process_ms",
    "max_rss_kib",
    "ru_maxrss_kib",
)


def cold_start(image_path: Path, originals: Path, runs: int) -> dict[str, dict[str, float]]:
    """Median figures of ``runs`` fresh child processes per side (sides alternate run by run)."""
    commands = {
        "facegate": [sys.executable, "-c", FACEGATE_CHILD + CHILD_REPORT, str(image_path)],
        "opencv": [
            sys.executable,
            "-c",
            OPENCV_CHILD + CHILD_REPORT,
            str(image_path),
            str(originals / YUNET_ORIGINAL),
            str(originals / SFACE_ORIGINAL),
        ],
    }
    collected: dict[str, list[dict[str, float]]] = {name: [] for name in commands}
    for run in range(runs):
        names = list(commands) if run % 2 == 0 else list(reversed(commands))
        for name in names:
            start = time.perf_counter_ns()
            done = subprocess.run(commands[name], capture_output=True, text=True, cwd=REPO_ROOT, check=False)
            process_ms = (time.perf_counter_ns() - start) / 1e6
            if done.returncode != 0:
                raise RuntimeError(f"{name} cold-start child failed:\n{done.stderr}")
            figures = json.loads(done.stdout.strip().splitlines()[-1])
            figures["process_ms"] = process_ms
            collected[name].append(figures)
    return {
        name: {key: float(statistics.median(r[key] for r in results)) for key in COLD_KEYS}
        for name, results in collected.items()
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_vector_extensions() -> list[str]:
    """The SIMD extensions of :data:`VECTOR_FLAGS` that the first CPU in ``/proc/cpuinfo`` lists."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                present = set(value.split())
                return [flag for flag in VECTOR_FLAGS if flag in present]
    except OSError:
        pass
    return []


def machine() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cpu_vector_extensions": cpu_vector_extensions(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "opencv": cv2.__version__,
        "numpy": np.__version__,
    }


def finite(value: Any) -> Any:
    """The same structure with NaN and infinities as ``None``, so the RESULT line is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--images", type=int, default=200, help="first N LFW images, sorted (default 200)")
    parser.add_argument("--repeats", type=int, default=3, help="passes over the images (default 3)")
    parser.add_argument("--cold-runs", type=int, default=COLD_RUNS, help="cold-start runs per side")
    parser.add_argument("--lfw", type=Path, default=DEFAULT_LFW, help="LFW root (read in place)")
    parser.add_argument("--originals", type=Path, default=DEFAULT_ORIGINALS, help="original ONNX files")
    args = parser.parse_args(argv)
    if args.images < WARMUP_IMAGES or args.repeats < 1:
        parser.error(f"need --images >= {WARMUP_IMAGES} and --repeats >= 1")

    cv2.setNumThreads(1)
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    info = machine()
    print(f"CPU: {info['cpu']} ({info['cpus_usable']} usable)  python {info['python']}")
    print(f"vector extensions: {' '.join(info['cpu_vector_extensions']) or 'unknown (no /proc/cpuinfo flags)'}")
    print("  (ratios move between machines: 0.57x on AVX-512 vs 0.83x on AVX2 has been seen)")
    print(f"onnxruntime {info['onnxruntime']}  opencv {info['opencv']}  numpy {info['numpy']}")
    print(f"threads: cv2.setNumThreads(1), onnxruntime intra_op_threads=1, provider {CPU}")

    images = load_images(args.lfw, args.images)
    shape = images[0].shape
    print(
        f"images: first {len(images)} of {args.lfw} ({shape[1]}x{shape[0]}), repeats {args.repeats}, "
        f"warm-up {WARMUP_IMAGES} per side"
    )

    sides = (FacegateSide(), OpenCVSide(args.originals))
    times, agreement = measure(images, sides, args.repeats)
    fg, cv = times["facegate"], times["opencv"]

    stages: dict[str, dict[str, float | int]] = {}
    print()
    print(f"like for like: {LIKE_FOR_LIKE_LABEL} vs OpenCV, the same ONNX networks, one crop embedded each")
    print(f"{'stage':<8} {'facegate ms':>12} {'(p90)':>8} {'opencv ms':>10} {'(p90)':>8} {'fg/cv':>7} {'n':>6}")
    for stage in STAGES:
        row: dict[str, float | int] = {
            "facegate_ms": fg.median_ms(stage),
            "facegate_p90_ms": fg.p90_ms(stage),
            "opencv_ms": cv.median_ms(stage),
            "opencv_p90_ms": cv.p90_ms(stage),
            "ratio": ratio(fg.median_ms(stage), cv.median_ms(stage)),
            "samples": len(fg.samples[stage]),
        }
        stages[stage] = row
        print(
            f"{stage:<8} {row['facegate_ms']:>12.3f} {row['facegate_p90_ms']:>8.3f} "
            f"{row['opencv_ms']:>10.3f} {row['opencv_p90_ms']:>8.3f} {row['ratio']:>7.3f} {row['samples']:>6}"
        )
    total_ratio = float(stages["total"]["ratio"])
    met = total_ratio <= TARGET_RATIO
    print("(total = detect + align + embed of the top face, per image where both sides found a face)")
    print()
    product: dict[str, dict[str, float | int | str]] = {}
    print("facegate as the product runs it (flip=True, every request): not like-for-like, OpenCV has no mirror")
    for stage, base, label in (
        ("embed_flip", "embed", PRODUCT_EMBED_LABEL),
        ("total_flip", "total", PRODUCT_TOTAL_LABEL),
    ):
        entry: dict[str, float | int | str] = {
            "label": label,
            "facegate_ms": fg.median_ms(stage),
            "facegate_p90_ms": fg.p90_ms(stage),
            "opencv_ms": cv.median_ms(base),
            "ratio": ratio(fg.median_ms(stage), cv.median_ms(base)),
            "samples": len(fg.samples[stage]),
        }
        product[base] = entry
        print(
            f"  {label + ':':<48} {entry['facegate_ms']:>8.3f} ms (p90 {entry['facegate_p90_ms']:.3f}), "
            f"{entry['ratio']:.3f}x OpenCV's {base} ({entry['opencv_ms']:.3f} ms), n {entry['samples']}"
        )
    print("  (total = detect + align + the crop + mirror embed, on the same images and crops as above)")
    print()
    print(
        f"target: {LIKE_FOR_LIKE_LABEL} detect+align+embed <= {TARGET_RATIO}x OpenCV; measured "
        f"{total_ratio:.3f}x -> {'MET' if met else 'NOT MET'} (informational; benchmarks never gate on time)"
    )
    print()
    print(
        f"agreement ({LIKE_FOR_LIKE_LABEL}) over {agreement.compared} faces: max |1 - cos(facegate, opencv)| = "
        f"{agreement.max_cosine_diff:.2e}, max landmark delta = {agreement.max_landmark_px:.2e} px"
    )
    print(
        f"  face-count mismatches {agreement.face_count_mismatch}, top face only in facegate "
        f"{agreement.facegate_only}, only in opencv {agreement.opencv_only}, in neither {agreement.neither}"
    )

    first_path = sorted(args.lfw.glob("*/*.jpg"))[0]
    print()
    print(
        f"cold start: median of {args.cold_runs} fresh processes per side, image {first_path.name}; "
        "facegate as the product runs it (crop + mirror embed, as a Lambda cold start does)"
    )
    cold = cold_start(first_path, args.originals, args.cold_runs)
    print(
        f"{'side':<9} {'imports':>9} {'models':>9} {'1st face':>9} {'in-proc':>9} {'process':>9} "
        f"{'peak RSS':>10} {'ru_maxrss':>10}"
    )
    for name, figures in cold.items():
        print(
            f"{name:<9} {figures['import_ms']:>7.1f}ms {figures['load_ms']:>7.1f}ms "
            f"{figures['first_ms']:>7.1f}ms {figures['total_ms']:>7.1f}ms {figures['process_ms']:>7.1f}ms "
            f"{figures['max_rss_kib'] / 1024:>7.1f}MiB {figures['ru_maxrss_kib'] / 1024:>7.1f}MiB"
        )
    cold_ratio = ratio(cold["facegate"]["total_ms"], cold["opencv"]["total_ms"])
    print(
        f"  in-process cold start facegate/opencv = {cold_ratio:.3f} "
        "(facegate's models include the store's sha256 check)"
    )
    print("  peak RSS = the child's VmHWM; ru_maxrss survives execve and includes this parent's RSS at fork")
    print()
    print("not measured: a large group photo (e.g. 1280x853); no realistic one in the local data.")

    result = {
        "machine": info,
        "params": {
            "images": len(images),
            "repeats": args.repeats,
            "warmup": WARMUP_IMAGES,
            "cold_runs": args.cold_runs,
            "image_size": [int(shape[1]), int(shape[0])],
            "threads": 1,
            "facegate_like_for_like": f"{LIKE_FOR_LIKE_LABEL}: SFaceEmbedder(flip=False)",
            "facegate_product": "crop + mirror: FacePipeline.from_store's SFaceEmbedder(flip=True)",
            "cold_start_facegate": "product path (flip=True)",
        },
        "stages_ms": stages,
        "product_ms": product,
        "target": {"max_ratio": TARGET_RATIO, "measured_ratio": total_ratio, "met": met},
        "agreement": vars(agreement),
        "cold_start": {**cold, "ratio_total": cold_ratio},
        "group_photo": "not measured",
    }
    print("RESULT " + json.dumps(finite(result), sort_keys=True, allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
