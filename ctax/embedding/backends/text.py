"""The text tower through an exported engine. Tokenisation is the model's own: the sentence-transformers model's
`preprocess` (its fast tokenizer, max_seq_length, truncation, padding), batched in the order its `encode` uses
(longest first), so the engine sees exactly the tensors the torch path would."""

from __future__ import annotations

import numpy as np

from ctax.embedding.backends.engines import Engine
from ctax.embedding.text import TextEncoder


class ExportedTextEncoder(TextEncoder):
    def __init__(self, model: object, name: str, engine: Engine) -> None:
        super().__init__(model, name)
        self.engine = engine
        self.backend = engine.spec.name

    @property
    def device(self) -> str:
        return self.engine.device

    def _embed(self, texts: list[str], batch_size: int) -> np.ndarray:
        model = self.model
        # sentence-transformers' own order: longest first, so each batch pads to similar lengths.
        order = np.argsort([-len(text) for text in texts])
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            features = model.preprocess([texts[i] for i in rows])  # type: ignore[attr-defined]
            feeds = {name: features[name].numpy() for name in self.engine.inputs}
            out[rows] = self.engine(feeds)
        return out
