"""One creative vector from whichever modalities a creative has."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ctax.vectors import normalise

MODALITIES = ("text", "ocr", "image")


@dataclass(frozen=True)
class FusionWeights:
    text: float = 1.0
    ocr: float = 1.0
    image: float = 1.0

    @classmethod
    def from_json(cls, data: Mapping[str, float] | None) -> FusionWeights:
        return cls(**{k: float(v) for k, v in (data or {}).items() if k in MODALITIES})

    def to_json(self) -> dict[str, float]:
        return {"text": self.text, "ocr": self.ocr, "image": self.image}


def fuse(parts: Mapping[str, np.ndarray | None], weights: FusionWeights) -> np.ndarray | None:
    """Weighted sum of the unit vectors present, renormalised; None when no modality is present."""
    total: np.ndarray | None = None
    for modality, vector in parts.items():
        if vector is None:
            continue
        weighted = getattr(weights, modality) * vector
        total = weighted if total is None else total + weighted
    if total is None:
        return None
    fused: np.ndarray = normalise(total[None, :])[0]
    return fused
