"""A model version's artefact directory: the space config a pretrained version starts from, JSON files beside
the weights, and the structural check run before anything loads them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ctax.config import Settings
from ctax.embedding.config import ImageConfig, SpaceConfig
from ctax.errors import InvalidInput


def pretrained_config(settings: Settings, version_id: str) -> SpaceConfig:
    image = None
    if settings.image_enabled:
        image = ImageConfig(
            arch=settings.image_arch, pretrained=settings.image_pretrained, projection=settings.image_projection
        )
    return SpaceConfig(
        version=version_id,
        kind="pretrained",
        text_model=settings.resolved_text_model(),
        label_template=settings.label_template,
        image=image,
        mask_offers=settings.mask_offers,
    )


def write_json(directory: Path, name: str, data: Any) -> None:
    (directory / name).write_text(json.dumps(data, indent=2, sort_keys=True, default=str))


def validate_artefact(directory: Path) -> None:
    """A quick structural check before anything loads the weights."""
    if not directory.is_dir():
        raise InvalidInput(f"model artefact directory {directory} does not exist")
    SpaceConfig.read(directory)
