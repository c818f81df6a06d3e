"""The image tower through an exported engine: open_clip's inference preprocessing (the config saved with the
version), then visual tower + projection + normalisation in one exported graph."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ctax.embedding.backends.engines import Engine
from ctax.embedding.backends.export import IMAGE_INPUT
from ctax.vectors import normalise

if TYPE_CHECKING:
    from PIL import Image


class ExportedImageEncoder:
    def __init__(self, engine: Engine, preprocess_cfg: dict[str, Any], dim: int) -> None:
        from open_clip.transform import PreprocessCfg, image_transform_v2

        self.engine = engine
        self.backend = engine.spec.name
        self.preprocess_cfg = preprocess_cfg
        self.preprocess = image_transform_v2(PreprocessCfg(**preprocess_cfg), is_train=False)
        self._dim = dim

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def device(self) -> str:
        return self.engine.device

    def pixels(self, images: Sequence[Image.Image]) -> np.ndarray:
        import torch

        return torch.stack([self.preprocess(image) for image in images]).numpy()

    def encode(self, images: Sequence[Image.Image], batch_size: int = 32) -> np.ndarray:
        if len(images) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks = [self.engine({IMAGE_INPUT: self.pixels(images[start : start + batch_size])})
                  for start in range(0, len(images), batch_size)]
        return normalise(np.concatenate(chunks))
