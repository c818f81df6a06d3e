"""The exported backends against the torch towers they were traced from: the real MiniLM text tower and a tiny
open_clip image tower (random weights, saved and reloaded as a checkpoint), exported once for the module through
the same build a version runs, then loaded from disk the way a worker loads them."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ctax.embedding.backends.engines import Engine
from ctax.embedding.backends.manifest import MANIFEST_FILE, Manifest
from ctax.embedding.backends.spec import BackendFileError, BackendUnavailable, spec
from ctax.embedding.config import ImageConfig
from ctax.embedding.space import CreativeContent, SharedSpace
from ctax.versions import artefacts
from ctax.versions.backends import Probe, build_backends, probe_texts, synthetic_images
from tests.conftest import make_settings

TEXTS = [*probe_texts(20), "Adopt a dog today", "Save 20% on winter tyres", "x",
         "A very long description of a creative " * 40]


@pytest.fixture(scope="module")
def version_dir(tmp_path_factory: pytest.TempPathFactory, tiny_clip_checkpoint: Path) -> Path:
    """A pretrained version with both towers, every backend built and measured (cosine rule: no validation)."""
    root = tmp_path_factory.mktemp("backends")
    settings = make_settings(root / "var", backend="auto", image_enabled=True, label_batch_size=8,
                             image_pretrained=str(tiny_clip_checkpoint), image_projection="random")
    directory = root / "v1-pretrained"
    config = artefacts.pretrained_config(settings, "v1-pretrained")
    config.write(directory)
    # The untrained projection is drawn at random on every load: saved, as a trained version's is, every load
    # (torch or exported) is the same tower.
    SharedSpace.load_torch(directory).image.save(directory / "image")
    config.image = ImageConfig(arch="ctax-tiny-vit", pretrained=None, saved="image")
    config.write(directory)
    space = SharedSpace.load_torch(directory)
    # openvino-int8 (NNCF's calibration, ~20 s of MiniLM) has its own test, marked slow.
    summary = build_backends(space, directory, settings, "cpu", Probe(TEXTS[:16], synthetic_images(8)),
                             names=["onnx", "onnx-int8", "openvino"])
    assert summary["basis"] == "cosine" and set(summary["measured"]) == {"torch", "onnx", "onnx-int8", "openvino"}
    return directory


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_fp32_backends_give_torchs_vectors(version_dir: Path, backend: str) -> None:
    torch_space = SharedSpace.load(version_dir, backend="torch")
    exported = SharedSpace.load(version_dir, backend=backend)
    assert exported.backend == backend and type(exported.image).__name__ == "ExportedImageEncoder"
    images = [*synthetic_images(5, seed=3), Image.new("RGB", (40, 300), (9, 9, 9))]
    # Batch sizes that differ from the export's trace (2) and split the texts unevenly.
    assert _cosines(exported.text.encode(TEXTS, 7), torch_space.text.encode(TEXTS, 7)).min() >= 0.999
    assert _cosines(exported.image.encode(images, 4), torch_space.image.encode(images, 4)).min() >= 0.999
    labels = exported.encode_labels([])  # nothing to encode is no error either
    assert labels.shape == (0, exported.dim)


@pytest.mark.parametrize("modality", ["text", "image"])
def test_openvino_encodes_a_batch_in_parts_on_its_streams_rows_in_order(version_dir: Path, modality: str) -> None:
    """OpenVINO runs parts of a batch at once, one per stream (engines.py): each row comes back where it was, as
    the whole batch encoded on one stream gives it; a single row is encoded alike."""
    path = Manifest.read(version_dir).verified(version_dir, "openvino", modality)  # type: ignore[arg-type]
    one, two = (Engine(spec("openvino"), path, "cpu", streams=n) for n in (1, 2))
    assert one.streams == 1 and two.streams == (2 if (os.cpu_count() or 1) >= 2 else 1)
    rng = np.random.default_rng(5)
    if modality == "text":  # 7 rows: parts of 3 and 4, padded to one length, as a tokenised batch is
        mask = (np.arange(12)[None, :] < rng.integers(3, 13, 7)[:, None]).astype(np.int64)
        feeds = {"input_ids": rng.integers(1000, 20000, (7, 12)) * mask, "attention_mask": mask,
                 "token_type_ids": np.zeros((7, 12), dtype=np.int64)}
    else:  # the tiny tower's 32 x 32 pixels
        feeds = {name: rng.standard_normal((7, 3, 32, 32)).astype(np.float32) for name in two.inputs}
    whole, parts = one(feeds), two(feeds)
    assert parts.shape == whole.shape == (7, whole.shape[1])
    assert np.abs(parts - whole).max() <= 1e-5
    # A call too small to split (a search's one query) runs as one request over every core, row for row the same.
    assert np.abs(two({name: feeds[name][2:3] for name in feeds})[0] - whole[2]).max() <= 1e-5
    assert (np.abs(whole[:, None, :] - whole[None, :, :]).max(axis=2) + np.eye(7)).min() > 1e-3  # rows differ


def test_measurements_and_the_auto_choice_are_recorded(version_dir: Path) -> None:
    manifest = Manifest.read(version_dir)
    assert manifest is not None
    for name, row in manifest.measurements.items():
        assert row["error"] is None, name
        assert set(row["per_s"]) == {"text", "image"} and min(row["per_s"].values()) > 0
    chosen = manifest.chosen
    # No validation data: only a backend reproducing torch's vectors may serve.
    assert chosen == "torch" or min(manifest.measurements[chosen]["cosine"].values()) >= 0.999
    space = SharedSpace.load(version_dir, backend="auto")
    assert space.backend == chosen and space.backend_reason.startswith("auto: ")


def _copy(version_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "v1-pretrained"
    shutil.copytree(version_dir, target)
    return target


@pytest.mark.parametrize(("backend", "relative"), [("onnx", "backends/text.onnx"),
                                                   ("openvino", "backends/image.openvino.bin")])
def test_a_truncated_export_is_refused_naming_the_file(version_dir: Path, tmp_path: Path, backend: str,
                                                       relative: str) -> None:
    directory = _copy(version_dir, tmp_path)
    path = directory / relative
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(BackendFileError, match=f"{path}.* is corrupt: sha256"):
        SharedSpace.load(directory, backend=backend)


def test_an_export_that_is_no_model_is_refused_naming_the_file(version_dir: Path, tmp_path: Path) -> None:
    directory = _copy(version_dir, tmp_path)
    path = directory / "backends/text.int8.onnx"
    path.write_bytes(b"not a model at all")
    manifest = Manifest.read(directory)
    assert manifest is not None
    manifest.record(directory, "onnx-int8", "text")  # the digest matches: the runtime itself must refuse it
    manifest.write(directory)
    with pytest.raises(BackendFileError, match=f"exported onnx-int8 file {path} cannot be loaded"):
        SharedSpace.load(directory, backend="onnx-int8")


def test_a_named_backend_the_version_lacks_stops_the_load_with_one_line(version_dir: Path,
                                                                        tmp_path: Path) -> None:
    directory = _copy(version_dir, tmp_path)
    data = json.loads((directory / MANIFEST_FILE).read_text())
    del data["files"]["onnx-int8"]
    (directory / MANIFEST_FILE).write_text(json.dumps(data))
    with pytest.raises(BackendUnavailable) as caught:
        SharedSpace.load(directory, backend="onnx-int8")
    message = str(caught.value)
    assert "\n" not in message and "CTAX_BACKEND=onnx-int8" in message and "has no onnx-int8 export" in message


def test_auto_serves_torch_for_a_version_without_exports(version_dir: Path, tmp_path: Path) -> None:
    directory = _copy(version_dir, tmp_path)
    (directory / MANIFEST_FILE).unlink()
    space = SharedSpace.load(directory, backend="auto")
    assert space.backend == "torch" and "no exported backends" in space.backend_reason
    with pytest.raises(BackendUnavailable, match="has no onnx export"):
        SharedSpace.load(directory, backend="onnx")


def test_auto_on_cuda_without_onnxruntime_gpu_exports_nothing_and_says_why(version_dir: Path,
                                                                          tmp_path: Path) -> None:
    directory = _copy(version_dir, tmp_path)
    before = sorted(p.name for p in directory.rglob("*"))
    settings = make_settings(tmp_path / "var", backend="auto")
    summary = build_backends(SharedSpace.load_torch(directory), directory, settings, "cuda",
                             Probe(TEXTS[:16], synthetic_images(8)))
    assert summary["serves"] == "torch" and "no exported backend runs on cuda" in summary["reason"]
    assert "onnxruntime-gpu" in summary["reason"]
    assert sorted(p.name for p in directory.rglob("*")) == before  # nothing exported or written


def test_an_unreadable_manifest_is_refused_naming_it(version_dir: Path, tmp_path: Path) -> None:
    directory = _copy(version_dir, tmp_path)
    (directory / MANIFEST_FILE).write_text("{ half a manifest")
    with pytest.raises(BackendFileError, match=f"{directory / MANIFEST_FILE} is unreadable"):
        SharedSpace.load(directory, backend="auto")


@pytest.mark.slow
def test_openvino_int8_is_built_calibrated_on_the_versions_inputs(version_dir: Path, tmp_path: Path) -> None:
    directory = _copy(version_dir, tmp_path)
    settings = make_settings(tmp_path / "var", backend="openvino-int8", label_batch_size=8)
    summary = build_backends(SharedSpace.load_torch(directory), directory, settings, "cpu",
                             Probe(TEXTS[:16], synthetic_images(8)))
    row = summary["measured"]["openvino-int8"]
    assert row["error"] is None and min(row["cosine"].values()) > 0.9  # int8: close, not equal
    space = SharedSpace.load(directory, backend="openvino-int8")
    assert space.backend == "openvino-int8" and space.text.encode(TEXTS).shape == (len(TEXTS), space.dim)


def test_batch_sizing_runs_its_probes_on_cpu_and_keeps_the_sizes(version_dir: Path) -> None:
    space = SharedSpace.load(version_dir, backend="onnx")
    space.size_batches(0.5)  # on CUDA: sized from free memory; here the same probe calls run through both towers
    assert (space.text_batch, space.image_batch) == (64, 32)


def test_messages_are_cut_into_the_towers_passes_and_agree_with_encode(version_dir: Path) -> None:
    """encode_messages is how the benches and the version build time a tower alone: a worker's messages, each in
    the tower's own passes, giving the vectors the labelling path (encode) gives."""
    space = SharedSpace.load(version_dir, backend="torch")
    space.text_batch, space.image_batch = 4, 3
    calls: list[tuple[str, int, int]] = []
    text_groups, image_encode = space.text.encode_groups, space.image.encode
    space.text.encode_groups = lambda groups, batch_size=64: (  # type: ignore[method-assign]
        calls.append(("text", len(groups), batch_size)) or text_groups(groups, batch_size))
    space.image.encode = lambda images, batch_size=32: (  # type: ignore[method-assign]
        calls.append(("image", len(images), batch_size)) or image_encode(images, batch_size))
    vectors = space.encode_messages(texts=TEXTS, message=10)
    assert calls == [("text", 10, 4), ("text", 10, 4), ("text", len(TEXTS) - 20, 4)]
    expected = np.stack([e.vector for e in space.encode([CreativeContent(texts=[t]) for t in TEXTS])])
    assert _cosines(vectors, expected).min() >= 0.9999
    calls.clear()
    images = synthetic_images(7, seed=5)
    vectors = space.encode_messages(images=images, message=4)
    assert calls == [("image", 4, 3), ("image", 3, 3)]
    expected = np.stack([e.vector for e in space.encode([CreativeContent(image=i) for i in images])])
    assert _cosines(vectors, expected).min() >= 0.9999
    assert space.encode_messages(message=4).shape == (0, space.dim)
