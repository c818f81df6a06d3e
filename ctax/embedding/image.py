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

if TYPE_CHECKING:
    import torch
    from PIL import Image

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
CONFIG_FILE = "image_encoder.json"
PROJECTION_FILE = "projection.pt"
TOWER_FILE = "visual.pt"
FORMAT_VERSION = 1
_SCHEMAS = ("hf-hub:", "local-dir:")


class ImageTowerUnavailable(RuntimeError):
    """The visual tower's weights could not be loaded; ``reason`` says why, for start-up logs and results."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_configs_registered = False


def register_model_configs() -> None:
    """Make our own architectures (``ctax-tiny-vit``, ``ctax-small-vit``) known to open_clip; idempotent."""
    global _configs_registered
    if _configs_registered:
        return
    import open_clip

    open_clip.add_model_config(MODEL_CONFIG_DIR)
    _configs_registered = True


class ImageEncoder:
    """Visual tower + ``Linear(embed_dim, dim)``; ``encode`` gives L2-normalised vectors in the text space."""

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
        import open_clip
        import torch

        register_model_configs()
        has_schema = arch.startswith(_SCHEMAS)
        if not has_schema and open_clip.get_model_config(arch) is None:
            raise ImageTowerUnavailable(
                f"unknown open_clip architecture {arch!r} (neither built in nor in {MODEL_CONFIG_DIR})"
            )
        wants_weights = load_weights and (has_schema or bool(pretrained))
        try:
            model = open_clip.create_model(
                arch,
                pretrained=None if has_schema or not load_weights else pretrained,
                load_weights=load_weights,
                device=device,
                # The CLIP text tower is discarded; never download base weights for it.
                pretrained_text=False,
                require_pretrained=wants_weights,
                force_preprocess_cfg=preprocess_cfg,
            )
        except Exception as exc:
            source = arch if has_schema else f"{arch} / {pretrained}"
            raise ImageTowerUnavailable(
                f"cannot load image tower weights for {source}: {_brief(exc)}{_hint(arch, pretrained)}"
            ) from exc

        visual: torch.nn.Module = model.visual
        cfg = dict(open_clip.get_model_preprocess_cfg(model))
        del model  # drops the text tower's memory right away

        if tower_state is not None:
            try:
                state = torch.load(tower_state, map_location=device, weights_only=True)
                visual.load_state_dict(state, strict=True)
            except Exception as exc:
                raise ImageTowerUnavailable(
                    f"cannot load fine-tuned visual tower {tower_state} into {arch}: {_brief(exc)}"
                ) from exc

        embed_dim = _output_dim(visual, cfg, device)
        linear = torch.nn.Linear(embed_dim, dim).to(device)
        if projection is not None:
            try:
                state = torch.load(projection, map_location=device, weights_only=True)
                linear.load_state_dict(state, strict=True)
            except Exception as exc:
                raise ImageTowerUnavailable(
                    f"cannot load projection {projection} as Linear({embed_dim}, {dim}): {_brief(exc)}"
                ) from exc
        visual.eval()
        linear.eval()
        return cls(
            arch=arch, pretrained=pretrained, visual=visual, projection=linear,
            preprocess_cfg=_jsonable(cfg), device=device, tower_trained=tower_state is not None,
        )

    def tensors(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """The inference preprocessing of a batch, stacked on the encoder's device."""
        import torch

        return torch.stack([self.preprocess(image) for image in images]).to(self.device)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised shared-space vectors of preprocessed pixels; differentiable (training uses it)."""
        import torch

        features = self.visual(pixels)
        if isinstance(features, tuple):  # towers configured with output_tokens return (pooled, tokens)
            features = features[0]
        return torch.nn.functional.normalize(self.projection(features), dim=-1)

    def encode(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        import torch

        if len(images) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        was_training = self.visual.training, self.projection.training
        self.visual.eval()
        self.projection.eval()
        chunks: list[np.ndarray] = []
        try:
            with torch.inference_mode():
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


def _output_dim(visual: torch.nn.Module, preprocess_cfg: dict[str, Any], device: str) -> int:
    output_dim = getattr(visual, "output_dim", None)
    if isinstance(output_dim, int) and output_dim > 0:
        return output_dim
    # Towers that do not advertise their width (some timm wrappers) are measured with one dummy image.
    import torch

    size = preprocess_cfg.get("size", 224)
    height, width = (size, size) if isinstance(size, int) else size
    with torch.inference_mode():
        features = visual.eval()(torch.zeros(1, 3, int(height), int(width), device=device))
    if isinstance(features, tuple):
        features = features[0]
    return int(features.shape[-1])


def _brief(exc: BaseException, limit: int = 400) -> str:
    """One line of the exception: a strict-load failure lists hundreds of keys, useless in a result."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _hint(arch: str, pretrained: str | None) -> str:
    if not pretrained or arch.startswith(_SCHEMAS):
        return ""
    import open_clip

    if open_clip.get_pretrained_cfg(arch, pretrained):
        return (
            f" ('{pretrained}' is a known tag: it needs network access or a warm Hugging Face cache;"
            " a local checkpoint path works offline)"
        )
    if not Path(pretrained).exists():
        return f" ('{pretrained}' is neither a tag of {arch} nor an existing checkpoint file)"
    return ""


def _cpu_state(module: torch.nn.Module) -> dict[str, Any]:
    return {key: value.detach().cpu() for key, value in module.state_dict().items()}


def _jsonable(cfg: dict[str, Any]) -> dict[str, Any]:
    """Tuples to lists, so the config in memory equals the one read back from JSON."""
    return json.loads(json.dumps(cfg))
