"""The text tower: any sentence-transformers model, L2-normalised output.

`TextEncoder` runs it in torch (autocast on CUDA); `ExportedTextEncoder` (embedding/backends/text.py) runs an
exported copy of the same pipeline and keeps this class's tokenisation, grouping and normalisation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ctax.embedding.device import inference
from ctax.vectors import normalise


class TextEncoder:
    backend = "torch"

    def __init__(self, model: object, name: str, autocast: str | None = None) -> None:
        # Typed as object so importing this module does not import torch; it is a SentenceTransformer.
        self.model = model
        self.name = name
        self.autocast = autocast  # "bfloat16" / "float16" on CUDA (device.autocast_dtype), None for fp32

    @classmethod
    def load(cls, name_or_path: str | Path, device: str = "cpu", autocast: str | None = None) -> TextEncoder:
        from sentence_transformers import SentenceTransformer

        return cls(SentenceTransformer(str(name_or_path), device=device), str(name_or_path), autocast)

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())  # type: ignore[attr-defined]

    @property
    def device(self) -> str:
        return str(self.model.device)  # type: ignore[attr-defined]

    @property
    def max_seq_length(self) -> int:
        return int(self.model.max_seq_length)  # type: ignore[attr-defined]

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalise(np.asarray(self._embed(list(texts), batch_size), dtype=np.float32))

    def _embed(self, texts: list[str], batch_size: int) -> np.ndarray:
        with inference(self.device, self.autocast):
            vectors = self.model.encode(  # type: ignore[attr-defined]
                texts,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    def encode_groups(self, groups: Sequence[Sequence[str]], batch_size: int = 64) -> np.ndarray:
        """One vector per group of text segments: the normalised mean of the segments' vectors.

        A creative may carry several texts (the Pitt summaries, OCR lines); averaging their unit vectors
        keeps each segment's meaning instead of letting one long concatenation truncate the rest.
        """
        flat = [text for group in groups for text in group]
        vectors = self.encode(flat, batch_size=batch_size)
        out = np.zeros((len(groups), self.dim), dtype=np.float32)
        start = 0
        for row, group in enumerate(groups):
            if group:
                out[row] = vectors[start : start + len(group)].mean(axis=0)
                start += len(group)
        return normalise(out)

    def save(self, directory: Path) -> None:
        self.model.save(str(directory))  # type: ignore[attr-defined]
