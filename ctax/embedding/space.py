"""The shared embedding space of one model version: text tower, optional image tower, fusion, label phrasing."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ctax.embedding.backends.manifest import Manifest
from ctax.embedding.backends.serving import exported_image, exported_text, select
from ctax.embedding.config import CorruptArtefact, SpaceConfig
from ctax.embedding.device import batch_size_for
from ctax.embedding.fusion import FusionWeights, fuse
from ctax.embedding.text import TextEncoder
from ctax.taxonomy.paths import LabelPath

log = logging.getLogger(__name__)
# Creatives per forward pass of each tower on CPU (size_batches sets them from free memory on CUDA). A labelling
# message (label_batch_size) may hold more: the text tower sorts its texts by length before cutting its passes.
TEXT_PASS, IMAGE_PASS = 64, 32


@dataclass
class CreativeContent:
    texts: Sequence[str] = ()
    image: Image.Image | None = None
    ocr_text: str | None = None


@dataclass
class Encoded:
    vector: np.ndarray | None
    modalities: dict[str, str]

    @property
    def used(self) -> list[str]:
        return [name for name, state in self.modalities.items() if state == "used"]


class SharedSpace:
    def __init__(self, config: SpaceConfig, text: TextEncoder, image: Any | None, image_status: str) -> None:
        self.config = config
        self.text = text
        self.image = image
        self.image_status = image_status
        self.fusion = FusionWeights.from_json(config.fusion)
        self.backend = "torch"  # what runs the towers (embedding/backends), and why: said at worker start-up
        self.backend_reason = "torch towers as loaded"
        # Creatives per forward pass and tower; on CUDA sized from free memory (size_batches).
        self.text_batch, self.image_batch = TEXT_PASS, IMAGE_PASS

    @property
    def version(self) -> str:
        return self.config.version

    @property
    def dim(self) -> int:
        return self.text.dim

    @classmethod
    def load(cls, directory: Path, device: str = "cpu", backend: str = "torch",
             autocast: str | None = None) -> SharedSpace:
        """The version's towers on `backend` (a CTAX_BACKEND value; "auto": the one chosen when it was built);
        `autocast`: the dtype torch towers compute in on CUDA (device.autocast_dtype)."""
        space = cls.load_torch(directory, device, autocast)
        manifest = Manifest.read(directory)
        selected = select(manifest, backend, device, space.version)
        if selected.backend == "torch" or manifest is None:
            space.backend_reason = selected.reason
            if backend == "auto":
                log.info("model version %s served by torch (%s)", space.version, selected.reason)
            return space
        return space.with_backend(directory, manifest, selected.backend, selected.reason)

    def with_backend(self, directory: Path, manifest: Manifest, backend: str, reason: str) -> SharedSpace:
        """This space with its towers run by an exported backend (the torch text model keeps tokenising)."""
        device = self.text.device
        text = exported_text(self.text, directory, manifest, backend, device)
        image = exported_image(directory, manifest, backend, device) if self.image is not None else None
        space = SharedSpace(self.config, text, image if image is not None else self.image, self.image_status)
        space.backend = backend if image is not None or self.image is None else f"{backend} (text), torch (image)"
        space.backend_reason = reason
        return space

    @classmethod
    def load_torch(cls, directory: Path, device: str = "cpu", autocast: str | None = None) -> SharedSpace:
        config = SpaceConfig.read(directory)
        text_path = directory / config.text_model
        text_source = str(text_path) if text_path.exists() else config.text_model
        try:
            text = TextEncoder.load(text_source, device, autocast)
        except Exception as exc:  # a broken text tower makes the version unusable: say which and why
            raise CorruptArtefact(f"text tower of {config.version} cannot be loaded from {text_source}: {exc}") from exc
        image, status = cls._load_image(config, directory, text.dim, device)
        if image is not None:
            image.autocast = autocast
        return cls(config, text, image, status)

    @staticmethod
    def _load_image(config: SpaceConfig, directory: Path, dim: int, device: str) -> tuple[Any | None, str]:
        if config.image is None:
            return None, "disabled"
        from ctax.embedding.image import ImageEncoder, ImageTowerUnavailable

        image_config = config.image
        try:
            if image_config.saved:
                encoder = ImageEncoder.from_saved(directory / image_config.saved, device=device)
                return encoder, "ready"
            encoder = ImageEncoder.load(image_config.arch, image_config.pretrained, dim=dim, device=device)
        except ImageTowerUnavailable as exc:
            log.warning("image tower unavailable for %s: %s; images are labelled through OCR", config.version, exc)
            return None, f"unavailable: {exc}"
        if image_config.projection == "random":
            log.warning("image tower of %s uses an untrained projection (benchmark mode)", config.version)
            return encoder, "ready (untrained projection: benchmark mode)"
        # The pretrained tower loaded, but nothing maps it into this text space until a version is trained.
        return None, "unavailable: no trained projection into the shared space yet (train a version with images)"

    @property
    def image_ready(self) -> bool:
        return self.image is not None

    def phrase(self, path: LabelPath) -> str:
        return path.phrase(self.config.label_template)

    def encode_labels(self, paths: Sequence[LabelPath], batch_size: int = 128) -> np.ndarray:
        return self.text.encode([self.phrase(path) for path in paths], batch_size=batch_size)

    def size_batches(self, fraction: float) -> None:
        """On CUDA, each tower's batch size from the GPU's free memory, probed with its worst case (texts at the
        tower's full length, full-size images); on CPU the same probe calls run and the sizes stay."""
        device, image = self.text.device, self.image
        longest = " ".join(["advertisement"] * 600)  # past any max_seq_length: the tokeniser truncates

        def texts(n: int) -> None:
            self.text.encode([longest] * n, n)

        def images(n: int) -> None:
            if image is not None:
                image.encode([Image.new("RGB", (1024, 1024))] * n, n)

        self.text_batch = batch_size_for(device, texts, fraction) or self.text_batch
        if image is not None:
            self.image_batch = batch_size_for(device, images, fraction) or self.image_batch

    def encode_messages(self, texts: Sequence[str] = (), images: Sequence[Image.Image] = (), message: int = 128
                        ) -> np.ndarray:
        """Single-text (or else image) creatives in messages of `message`, each cut into the tower's own passes as
        `encode` cuts a worker's message: how the benches and the version build time a tower alone."""
        parts = []
        for start in range(0, len(texts) or len(images), message):
            if texts:
                chunk = self.config.creative_texts(texts[start : start + message])
                parts.append(self.text.encode_groups([[text] for text in chunk], self.text_batch))
            elif self.image is not None:
                parts.append(np.asarray(self.image.encode(images[start : start + message], self.image_batch)))
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), dtype=np.float32)

    def masked(self, content: CreativeContent) -> CreativeContent:
        """The creative's texts and OCR text as this version's text tower reads them (config.mask_offers)."""
        if self.config.mask_offers == "off":
            return content
        ocr = self.config.creative_texts([content.ocr_text])[0] if content.ocr_text else content.ocr_text
        return CreativeContent(self.config.creative_texts(content.texts), content.image, ocr)

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """One vector per creative text (an OCR reading, say), masked as `encode` masks them."""
        return self.text.encode(self.config.creative_texts(texts), batch_size)

    def encode(self, contents: Sequence[CreativeContent], batch_size: int | None = None) -> list[Encoded]:
        """Encode a batch: one forward pass per tower over all creatives that have that modality."""
        batch_size = batch_size or self.text_batch
        contents = [self.masked(c) for c in contents]
        text_rows = [i for i, c in enumerate(contents) if any(t.strip() for t in c.texts)]
        ocr_rows = [i for i, c in enumerate(contents) if i not in set(text_rows) and (c.ocr_text or "").strip()]
        image_rows = [i for i, c in enumerate(contents) if c.image is not None and self.image is not None]

        text_vectors = (
            self.text.encode_groups(
                [[t for t in contents[i].texts if t.strip()] for i in text_rows], batch_size=batch_size
            )
            if text_rows
            else None
        )
        ocr_vectors = self.text.encode([contents[i].ocr_text or "" for i in ocr_rows], batch_size) if ocr_rows else None
        image_vectors = (
            self.image.encode([contents[i].image for i in image_rows], batch_size=self.image_batch)
            if image_rows and self.image is not None
            else None
        )

        text_at = {row: n for n, row in enumerate(text_rows)}
        ocr_at = {row: n for n, row in enumerate(ocr_rows)}
        image_at = {row: n for n, row in enumerate(image_rows)}
        out: list[Encoded] = []
        for i, content in enumerate(contents):
            parts = {
                "text": text_vectors[text_at[i]] if i in text_at and text_vectors is not None else None,
                "ocr": ocr_vectors[ocr_at[i]] if i in ocr_at and ocr_vectors is not None else None,
                "image": image_vectors[image_at[i]] if i in image_at and image_vectors is not None else None,
            }
            modalities = {
                "text": "used" if parts["text"] is not None else "not supplied",
                "ocr": "used"
                if parts["ocr"] is not None
                else ("not needed" if parts["text"] is not None or content.image is None else "no text found"),
                "image": "not supplied"
                if content.image is None
                else ("used" if parts["image"] is not None else self.image_status),
            }
            out.append(Encoded(fuse(parts, self.fusion), modalities))
        return out
