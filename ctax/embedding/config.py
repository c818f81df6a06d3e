"""What a model version's artefact says about its shared space: which text tower, which image tower, how labels
are phrased and how modalities are fused. Plain data read from and written to `config.json`; importing it loads no
model, so the API and the registry can read versions without torch."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ctax.embedding.fusion import FusionWeights
from ctax.embedding.offers import MASK_OFFERS, mask_texts
from ctax.errors import InvalidInput

CONFIG_FILE = "config.json"


class CorruptArtefact(InvalidInput):
    code = "corrupt_artefact"


@dataclass
class ImageConfig:
    arch: str
    pretrained: str | None
    saved: str | None = None  # a directory (relative to the artefact dir) written by ImageEncoder.save
    projection: str | None = None  # "random": an untrained projection, for throughput benchmarks only


@dataclass
class SpaceConfig:
    version: str
    kind: str
    text_model: str  # a model name, an absolute path, or a path relative to the artefact dir
    label_template: str = "{path}"
    image: ImageConfig | None = None
    fusion: dict[str, float] = field(default_factory=lambda: FusionWeights().to_json())
    # How the version's creative texts reach its text tower (embedding/offers.py): built with, served with. A
    # config written before the setting reads "off", the way that version was built.
    mask_offers: str = "off"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def read(cls, directory: Path) -> SpaceConfig:
        path = directory / CONFIG_FILE
        try:
            data = json.loads(path.read_text())
            image = data.get("image")
            return cls(
                version=str(data["version"]),
                kind=str(data["kind"]),
                text_model=str(data["text_model"]),
                label_template=str(data.get("label_template", "{path}")),
                image=ImageConfig(**image) if image else None,
                fusion=dict(data.get("fusion") or {}),
                mask_offers=_mask_offers(data.get("mask_offers", "off")),
            )
        except FileNotFoundError as exc:
            raise CorruptArtefact(f"model artefact {directory} has no {CONFIG_FILE}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptArtefact(f"model artefact {directory} has an unreadable {CONFIG_FILE}: {exc}") from exc

    def creative_texts(self, texts: Sequence[str]) -> list[str]:
        """Creative texts (a creative's own, OCR readings, training texts; never label phrases) as this version's
        text tower reads them."""
        return mask_texts(texts, self.mask_offers)

    def write(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_FILE).write_text(json.dumps(self.to_json(), indent=2))


def _mask_offers(value: object) -> str:
    if value not in MASK_OFFERS:
        raise ValueError(f"mask_offers is {value!r}, not one of {', '.join(MASK_OFFERS)}")
    return str(value)
