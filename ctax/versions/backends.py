"""A version's inference backends, built with the version (the pretrained one at first start, each trained one
when its training run writes it), never at request time: the towers exported and quantised into the version's
artefact directory, each backend measured against torch on the version's own inputs, and the one `auto` serves
chosen (embedding/backends/choice.py). All of it offline: the exports are traced from the loaded towers.

What is measured per backend: raw creatives/s per tower at the worker's batch size, the lowest cosine between its
vectors and torch's on the probe inputs, and, when the caller can score the version on labelled validation data
(a trained version's held-out split), the headline figures computed with the backend's vectors."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ctax.config import Settings
from ctax.creatives.images import decode_rgb
from ctax.dataset.labelled import current_annotations
from ctax.embedding.backends import export
from ctax.embedding.backends.choice import Measured, choose, losses
from ctax.embedding.backends.manifest import Manifest
from ctax.embedding.backends.spec import DIRECTORY, BackendName, Modality, candidates, spec
from ctax.embedding.space import SharedSpace
from ctax.store.blobs import BlobStore
from ctax.store.session import Database
from ctax.versions import card, registry

log = logging.getLogger(__name__)

Evaluate = Callable[[SharedSpace], dict[str, float]]  # a space -> its headline metrics on validation data
PROBE_TEXTS = 256  # texts the backends are timed on, in the worker's messages
MAX_PROBE_IMAGES = 64
CALIBRATION_BATCHES = 8  # NNCF's activation ranges: batches of the version's own inputs


@dataclass
class Probe:
    """The inputs the backends are measured on: the version's labelled texts and images where it has them."""

    texts: list[str]
    images: list[Image.Image]


def synthetic_images(n: int, seed: int = 7) -> list[Image.Image]:
    """Ad-sized images of coloured shapes, for a version with no labelled images (speed and agreement only)."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        image = Image.new("RGB", (256, 256), tuple(int(v) for v in rng.integers(0, 256, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            x, y = (int(v) for v in rng.integers(0, 200, 2))
            draw.ellipse((x, y, x + 50, y + 50), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        out.append(image)
    return out


def export_all(space: SharedSpace, directory: Path, names: Sequence[BackendName], probe: Probe
               ) -> tuple[Manifest, dict[str, str]]:
    """Every tower of `space` exported for each backend named; returns the manifest and, per backend, why its
    export failed (a failure drops that backend, never the version)."""
    manifest, failed = Manifest(), dict[str, str]()
    towers: list[Modality] = ["text", "image"] if space.image is not None else ["text"]
    for tower in towers:
        try:
            samples = _export_tower(space, directory, tower, probe, manifest)
        except Exception as exc:  # the torch export itself failed: no exported backend for this version
            log.exception("exporting the %s tower of %s failed", tower, space.version)
            return Manifest(), {name: f"{tower} export: {exc}" for name in names}
        for name in names:
            if name in failed:
                continue
            try:
                _convert(directory, name, tower, samples)
                manifest.record(directory, name, tower)
            except Exception as exc:  # one converter failing (say NNCF) leaves the other backends
                log.warning("backend %s for the %s tower of %s failed: %s", name, tower, space.version, exc)
                failed[name] = f"{tower}: {' '.join(str(exc).split())[:300]}"
                manifest.files.pop(name, None)
    return manifest, failed


def _export_tower(space: SharedSpace, directory: Path, tower: Modality, probe: Probe, manifest: Manifest
                  ) -> list[dict[str, np.ndarray]]:
    """The tower's fp32 ONNX graph (what every other backend is converted from) and calibration batches."""
    source = directory / DIRECTORY / f"{tower}.onnx"
    if tower == "text":
        names = export.export_text(space.text, source)
        manifest.towers["text"] = {"inputs": names}
        texts = probe.texts or ["an example creative"]
        # In the tower's own passes: the shapes the engine will be fed (a worker's message may hold several).
        step = space.text_batch
        batches = [texts[start : start + step] for start in range(0, len(texts), step)]
        model: Any = space.text.model
        return [{name: model.preprocess(batch)[name].numpy() for name in names}
                for batch in batches[:CALIBRATION_BATCHES]]
    encoder: Any = space.image
    export.export_image(encoder, source)
    manifest.towers["image"] = {"preprocess": encoder.preprocess_cfg, "dim": encoder.dim}
    images = probe.images or synthetic_images(8)
    return [{export.IMAGE_INPUT: encoder.tensors(images[start : start + 8]).cpu().numpy()}
            for start in range(0, min(len(images), 8 * CALIBRATION_BATCHES), 8)]


def _convert(directory: Path, name: BackendName, tower: Modality, samples: list[dict[str, np.ndarray]]) -> None:
    source = directory / DIRECTORY / f"{tower}.onnx"
    target = directory / spec(name).files(tower)[0]
    if name == "onnx-int8":
        export.quantise_onnx(source, target)
    elif name == "openvino":
        export.to_openvino(source, target)
    elif name == "openvino-int8":
        export.quantise_openvino(source, target, samples)


def rate(encode: Callable[[], np.ndarray], n: int, repeats: int = 2) -> tuple[np.ndarray, float]:
    """The vectors of one untimed run (first-call set-up is no cost of serving) and the creatives/s of the
    faster of `repeats` timed runs: the faster, since other work on the machine only ever slows a run down."""
    vectors = encode()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        encode()
        best = min(best, time.perf_counter() - start)
    return vectors, (n / best if best > 0 else float("inf"))


def measure(name: str, space: SharedSpace, reference: dict[str, np.ndarray], probe: Probe, batch_size: int,
            evaluate: Evaluate | None) -> Measured:
    """Speed per tower, cosine to the torch vectors in `reference`, accuracy when `evaluate` is given."""
    per_s: dict[str, float] = {}
    cosine: dict[str, float] = {}
    for tower, (vectors, speed) in _encode_all(space, probe, batch_size).items():
        per_s[tower] = round(speed, 2)
        cosine[tower] = round(float(np.min(np.sum(vectors * reference[tower], axis=1))), 6)
    return Measured(name, per_s, cosine, evaluate(space) if evaluate is not None else {})


def build_backends(space: SharedSpace, directory: Path, settings: Settings, device: str, probe: Probe,
                   evaluate: Evaluate | None = None, torch_accuracy: dict[str, float] | None = None,
                   names: Sequence[BackendName] | None = None) -> dict[str, Any]:
    """Export, measure and choose; writes the files and backends.json into `directory` and returns the summary
    the version's metrics, its card and GET /v1/models/{id} show. `space` is the version's torch space; `names`
    (default: what CTAX_BACKEND asks for on `device`) the backends to build."""
    names = list(candidates(settings.backend, device) if names is None else names)
    if not names:
        reason = ("CTAX_BACKEND=torch: nothing exported" if settings.backend == "torch" else
                  f"CTAX_BACKEND={settings.backend}: no exported backend runs on {device} here (OpenVINO runs on "
                  "CPUs; ONNX on CUDA needs onnxruntime-gpu): nothing exported")
        return {"setting": settings.backend, "backend": "torch", "serves": "torch", "reason": reason}
    started, batch = time.perf_counter(), settings.label_batch_size
    manifest, failed = export_all(space, directory, names, probe)
    if "onnx" not in manifest.files:  # the fp32 graphs were only the converters' source
        for tower in ("text", "image"):
            (directory / DIRECTORY / f"{tower}.onnx").unlink(missing_ok=True)
    encoded = _encode_all(space, probe, batch)
    reference = {tower: vectors for tower, (vectors, _) in encoded.items()}
    accuracy = torch_accuracy if torch_accuracy is not None else (evaluate(space) if evaluate else {})
    torch = Measured("torch", {tower: round(speed, 2) for tower, (_, speed) in encoded.items()},
                     {tower: 1.0 for tower in encoded}, dict(accuracy))
    measured = [torch]
    for name in names:
        if name in failed or name not in manifest.files:
            measured.append(Measured(name, {}, error=failed.get(name, "not exported")))
            continue
        try:
            measured.append(measure(name, space.with_backend(directory, manifest, name, "measured at build"),
                                    reference, probe, batch, evaluate))
        except Exception as exc:  # a backend that cannot run here is left out, with the reason on the card
            log.warning("measuring backend %s of %s failed: %s", name, space.version, exc)
            measured.append(Measured(name, {}, error=" ".join(str(exc).split())[:300]))
    choice = choose(measured, settings.backend_tolerance)
    manifest.measurements = {item.backend: _figures(item, torch) for item in measured}
    manifest.choice = {"backend": choice.backend, "reason": choice.reason, "setting": settings.backend,
                       "tolerance": settings.backend_tolerance, "device": device, "batch_size": batch,
                       "basis": "validation" if torch.accuracy else "cosine", "probe_texts": len(probe.texts),
                       "probe_images": len(probe.images) if space.image is not None else 0}
    manifest.write(directory)
    log.info("backends of %s built in %.0f s; auto serves %s (%s)", space.version, time.perf_counter() - started,
             choice.backend, choice.reason)
    # What serves the version under the setting it was built with (a named backend serves even when slower).
    serves = choice.backend if settings.backend == "auto" else settings.backend
    return {**manifest.choice, "serves": serves, "measured": manifest.measurements}


def _figures(item: Measured, torch: Measured) -> dict[str, Any]:
    spc = item.seconds_per_creative if item.per_s else float("inf")
    return {"per_s": dict(item.per_s), "cosine": dict(item.cosine), "accuracy": dict(item.accuracy),
            "loss": losses(item, torch), "error": item.error,
            "speedup": round(torch.seconds_per_creative / spc, 3) if item.per_s and spc > 0 else None}


_SUBJECTS = ("Fresh coffee", "Our new phone", "A car built for families", "Cheap flights to Lisbon", "This shampoo",
             "The city marathon", "Organic dog food", "A savings account", "Winter tyres", "The summer festival")
_CLAIMS = ("keeps you going all day long", "is half the price this week only", "was rated best in its class",
           "makes every morning better", "helps animals in need", "is waiting for you downtown")
_CALLS = ("", " Order today.", " Visit our store and see for yourself.", " Don't miss out!",
          " Sign up now and get the first month free.")


def probe_texts(n: int) -> list[str]:
    """Ad-like sentences of the lengths creatives have, for a version with no labelled texts to measure on."""
    combos = [f"{s} {c}.{a}" for s in _SUBJECTS for c in _CLAIMS for a in _CALLS]
    return [combos[(i * 37) % len(combos)] for i in range(n)]


def probe_of(items: Sequence[Any], images: Callable[[str], Image.Image], with_images: bool,
             batch_size: int) -> Probe:
    """The version's labelled creatives (texts, decoded images) as probe inputs, topped up with generated ones:
    PROBE_TEXTS texts, two worker batches of images (at most MAX_PROBE_IMAGES; images are slow)."""
    n_texts, n_images = PROBE_TEXTS, min(MAX_PROBE_IMAGES, 2 * batch_size)
    texts = [t for item in items for t in (list(item.texts) or [item.ocr_text or ""])[:1] if t.strip()]
    texts = (texts[:n_texts] + probe_texts(n_texts))[:n_texts]
    shas = [item.image_sha256 for item in items if item.image_sha256][:n_images] if with_images else []
    decoded = [images(sha) for sha in shas]
    if with_images and len(decoded) < n_images:
        decoded += synthetic_images(n_images - len(decoded))
    return Probe(texts, decoded)


def _encode_all(space: SharedSpace, probe: Probe, batch_size: int) -> dict[str, tuple[np.ndarray, float]]:
    """Each tower timed alone on the probe, in a worker's messages of `batch_size`."""
    out: dict[str, tuple[np.ndarray, float]] = {}
    if probe.texts:
        out["text"] = rate(lambda: space.encode_messages(texts=probe.texts, message=batch_size), len(probe.texts))
    if space.image is not None and probe.images:
        out["image"] = rate(lambda: space.encode_messages(images=probe.images, message=batch_size),
                            len(probe.images))
    return out


def ensure_backends(db: Database, settings: Settings, version_id: str, directory: Path, blobs: BlobStore,
                    device: str) -> None:
    """At start-up, before the active version loads: build its backends if it has none yet (a pretrained version
    at first start, a version from before backends existed). Without validation data: the cosine rule."""
    if settings.backend == "torch" or Manifest.read(directory) is not None:
        return
    with db.read() as session:
        items = current_annotations(session)
    items = sorted(items, key=lambda item: item.draw_key(settings.train_seed))
    space = SharedSpace.load_torch(directory, device)
    probe = probe_of(items, lambda sha: decode_rgb(blobs.get(sha)), space.image is not None,
                     settings.label_batch_size)
    log.info("building the inference backends of %s (%s; first start of this version only)", version_id,
             ", ".join(candidates(settings.backend, device)))
    summary = build_backends(space, directory, settings, device, probe)
    with db.write() as session:
        version = registry.get_version(session, version_id)
        version.metrics = {**(version.metrics or {}), "backends": summary}
    card.draw_model_card(version)
