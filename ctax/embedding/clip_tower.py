"""open_clip's visual towers: our architectures registered, a tower built with its weights, saved weights loaded.

Failures become :class:`ImageTowerUnavailable` with a one-line reason (and a hint where the cause is likely a
missing download), never a silent fallback to random weights. Torch and open_clip are imported inside the
functions, as in image.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
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


def visual_tower(
    arch: str, pretrained: str | None, *, device: str, load_weights: bool, preprocess_cfg: dict[str, Any] | None
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The visual half of open_clip's ``arch`` and its preprocessing config; the text half is dropped at once."""
    import open_clip

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
            f"cannot load image tower weights for {source}: {brief(exc)}{_hint(arch, pretrained)}"
        ) from exc
    visual: torch.nn.Module = model.visual
    cfg = dict(open_clip.get_model_preprocess_cfg(model))
    del model  # drops the text tower's memory right away
    return visual, cfg


def load_state(module: torch.nn.Module, path: Path, device: str, failure: str) -> None:
    """Load saved weights strictly into ``module``; ``failure`` opens the error raised when they do not fit."""
    import torch

    try:
        state = torch.load(path, map_location=device, weights_only=True)
        module.load_state_dict(state, strict=True)
    except Exception as exc:
        raise ImageTowerUnavailable(f"{failure}: {brief(exc)}") from exc


def output_dim(visual: torch.nn.Module, preprocess_cfg: dict[str, Any], device: str) -> int:
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


def brief(exc: BaseException, limit: int = 400) -> str:
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
