"""The image tower: an open_clip visual encoder followed by a trained linear projection into the text space.

Only the visual half of the CLIP model is kept; the text side of the shared space is the sentence-transformers
tower, so the projection (and optionally the fine-tuned visual tower) is what maps images next to label texts.

Torch and open_clip are imported inside the methods so that importing this module (API, CLI start-up) stays
cheap and so a process that never labels images never pays for them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ctax.embedding.clip_tower import (
    ImageTowerUnavailable,
    load_state,
    output_dim,
    register_model_configs,
    visual_tower,
)
from ctax.embedding.device import inference, to_device

__all__ = ["ImageEncoder", "ImageTowerUnavailable", "register_model_configs"]  # the errors and set-up callers use

if TYPE_CHECKING:
    import torch
    from PIL import Image

CONFIG_FILE = "image_encoder.json"
PROJECTION_FILE = "projection.pt"
TOWER_FILE = "visual.pt"
FORMAT_VERSION = 1


class ImageEncoder:
    """Visual tower + ``Linear(embed_dim, dim)``; ``encode`` gives L2-normalised vectors in the text space."""

    backend = "torch"
    autocast: str | None = None  # "bfloat16" / "float16" for inference on CUDA (device.autocast_dtype)

    def __init__(
        self,
        *,
        arch: str,
        pretrained: str | None,
        visual: torch.nn.Module,
        projection: torch.nn.Linear,
        preprocess_cfg: dict[str, Any],
        device: str,
        tower_trained: bool,
    ) -> None:
        from open_clip.transform import PreprocessCfg, image_transform_v2

        self.arch = arch
        self.pretrained = pretrained
        self.visual = visual
        self.projection = projection
        self.preprocess_cfg = preprocess_cfg
        self.preprocess = image_transform_v2(PreprocessCfg(**preprocess_cfg), is_train=False)
        self.device = device
        # True once the visual weights differ from what (arch, pretrained) gives, so save() must keep them.
        self.tower_trained = tower_trained

    @property
    def dim(self) -> int:
        return int(self.projection.out_features)

    @property
    def embed_dim(self) -> int:
        return int(self.projection.in_features)

    @property
    def image_size(self) -> tuple[int, int]:
        size = self.preprocess_cfg["size"]
        return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))

    @classmethod
    def load(
        cls,
        arch: str,
        pretrained: str | None,
        *,
        dim: int,
        device: str = "cpu",
        projection: Path | None = None,
        tower_state: Path | None = None,
    ) -> ImageEncoder:
        """Build the visual tower of ``arch`` with ``pretrained`` weights (a tag or a checkpoint path).

        ``pretrained=None`` means a randomly initialised tower (our small architectures, tests). When weights
        were asked for and cannot be loaded, raises :class:`ImageTowerUnavailable` instead of falling back
        to random weights, which would label images with confident noise.
        """
        return cls._build(
            arch, pretrained, dim=dim, device=device, projection=projection, tower_state=tower_state,
            load_weights=True, preprocess_cfg=None,
        )

    @classmethod
    def _build(
        cls,
        arch: str,
        pretrained: str | None,
        *,
        dim: int,
        device: str,
        projection: Path | None,
        tower_state: Path | None,
        load_weights: bool,
        preprocess_cfg: dict[str, Any] | None,
    ) -> ImageEncoder:
        import torch

        visual, cfg = visual_tower(arch, pretrained, device=device, load_weights=load_weights,
                                    preprocess_cfg=preprocess_cfg)
        if tower_state is not None:
            load_state(visual, tower_state, device, f"cannot load fine-tuned visual tower {tower_state} into {arch}")
        embed_dim = output_dim(visual, cfg, device)
        linear = torch.nn.Linear(embed_dim, dim).to(device)
        if projection is not None:
            load_state(linear, projection, device, f"cannot load projection {projection} as Linear({embed_dim}, {dim})")
        visual.eval()
        linear.eval()
        return cls(
            arch=arch, pretrained=pretrained, visual=visual, projection=linear,
            preprocess_cfg=_jsonable(cfg), device=device, tower_trained=tower_state is not None,
        )

    def tensors(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """The inference preprocessing of a batch, stacked on the encoder's device (through pinned memory on CUDA)."""
        import torch

        return to_device(torch.stack([self.preprocess(image) for image in images]), self.device)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised shared-space vectors of preprocessed pixels; differentiable (training uses it)."""
        import torch

        features = self.visual(pixels)
        if isinstance(features, tuple):  # towers configured with output_tokens return (pooled, tokens)
            features = features[0]
        return torch.nn.functional.normalize(self.projection(features), dim=-1)

    def encode(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        if len(images) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        was_training = self.visual.training, self.projection.training
        self.visual.eval()
        self.projection.eval()
        chunks: list[np.ndarray] = []
        try:
            with inference(self.device, self.autocast):
                for start in range(0, len(images), batch_size):
                    vectors = self.forward(self.tensors(images[start : start + batch_size]))
                    chunks.append(vectors.float().cpu().numpy())
        finally:
            self.visual.train(was_training[0])
            self.projection.train(was_training[1])
        return np.concatenate(chunks).astype(np.float32, copy=False)

    def save(self, directory: Path) -> None:
        """Write the projection, the tower when (arch, pretrained) cannot reproduce it, and a JSON config."""
        import torch

        directory.mkdir(parents=True, exist_ok=True)
        torch.save(_cpu_state(self.projection), directory / PROJECTION_FILE)
        # A random-init tower is as unreproducible as a fine-tuned one, so it is saved too.
        save_tower = self.tower_trained or not self.pretrained
        if save_tower:
            torch.save(_cpu_state(self.visual), directory / TOWER_FILE)
        config = {
            "format_version": FORMAT_VERSION,
            "arch": self.arch,
            "pretrained": self.pretrained,
            "dim": self.dim,
            "embed_dim": self.embed_dim,
            "tower_saved": save_tower,
            "tower_trained": self.tower_trained,
            "preprocess": self.preprocess_cfg,
        }
        (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_saved(cls, directory: Path, device: str = "cpu") -> ImageEncoder:
        """Reload what :meth:`save` wrote; gives the same vectors as the encoder that was saved."""
        config_path = directory / CONFIG_FILE
        if not config_path.is_file():
            raise ImageTowerUnavailable(f"no saved image encoder in {directory} ({CONFIG_FILE} missing)")
        config = json.loads(config_path.read_text(encoding="utf-8"))
        if config.get("format_version") != FORMAT_VERSION:
            version = config.get("format_version")
            raise ImageTowerUnavailable(f"{config_path}: unsupported format_version {version}")
        tower = directory / TOWER_FILE if config["tower_saved"] else None
        encoder = cls._build(
            config["arch"],
            config["pretrained"],
            dim=int(config["dim"]),
            device=device,
            projection=directory / PROJECTION_FILE,
            tower_state=tower,
            # With the whole tower on disk the pretrained weights are not needed (nor downloaded) again; the
            # saved preprocessing keeps e.g. a tag's mean/std, which a bare architecture would not know.
            load_weights=tower is None,
            preprocess_cfg=config["preprocess"],
        )
        encoder.tower_trained = bool(config["tower_trained"])
        return encoder


def _cpu_state(module: torch.nn.Module) -> dict[str, Any]:
    return {key: value.detach().cpu() for key, value in module.state_dict().items()}


def _jsonable(cfg: dict[str, Any]) -> dict[str, Any]:
    """Tuples to lists, so the config in memory equals the one read back from JSON."""
    return dict(json.loads(json.dumps(cfg)))
