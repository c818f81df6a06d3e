"""The text tower: any sentence-transformers model, L2-normalised output.

`TextEncoder` runs it in torch (autocast on CUDA); `ExportedTextEncoder` (embedding/backends/text.py) runs an
exported copy of the same pipeline and keeps this class's tokenisation, grouping and normalisation."""

from __future__ import annotations

import bisect
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
        keeps each segment's meaning instead of letting one long concatenation truncate the rest. A segment
        longer than the tower reads is read in windows (`windows`), their mean its vector.
        """
        pieces = self.windows([text for group in groups for text in group])  # one tokenizer call for the batch
        vectors = self.encode([w for windows in pieces for w in windows], batch_size=batch_size)
        out = np.zeros((len(groups), self.dim), dtype=np.float32)
        start = at = 0
        for row, group in enumerate(groups):
            texts = []
            for windows in pieces[at : at + len(group)]:
                part = vectors[start : start + len(windows)]
                texts.append(part[0] if len(windows) == 1 else normalise(part.mean(axis=0, keepdims=True))[0])
                start += len(windows)
            at += len(group)
            if texts:
                out[row] = np.mean(texts, axis=0)
        return normalise(out)

    def windows(self, texts: Sequence[str]) -> list[list[str]]:
        """Each text in pieces the tower reads whole. The tower cuts a text at max_seq_length tokens and drops
        the rest: a third of the real OCR texts of ad images are longer than a trained tower's 64 (pasted ad
        copy can be too), and their brand or offer is often past the cut. A text that fits stays as it is."""
        limit = max(self.max_seq_length - 2, 8)  # the tokenizer's own [CLS] and [SEP] take two
        out = [[text] for text in texts]
        tokenizer = getattr(self.model, "tokenizer", None)
        if tokenizer is None or not texts:
            return out
        spans = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True,
                          verbose=False)["offset_mapping"]
        for row, offsets in enumerate(spans):
            if len(offsets) > limit:
                out[row] = cut_in_windows(texts[row], [(int(a), int(b)) for a, b in offsets], limit)
        return out

    def save(self, directory: Path) -> None:
        self.model.save(str(directory))  # type: ignore[attr-defined]


def cut_in_windows(text: str, offsets: Sequence[tuple[int, int]], limit: int) -> list[str]:
    """`text` in runs of at most `limit` of its tokens (`offsets`: each token's character span), each ending at a
    line break where one falls in its second half: OCR lines and copy's paragraphs are units of meaning. Written
    here because sentence-transformers truncates and offers no windowing."""
    starts = [a for a, _ in offsets]
    pieces: list[str] = []
    begin = 0
    while begin < len(offsets):
        end = min(begin + limit, len(offsets))
        if end < len(offsets):
            brk = text.rfind("\n", starts[begin], starts[end])
            after = bisect.bisect_right(starts, brk, begin, end) if brk >= 0 else begin
            if after - begin >= limit // 2:
                end = after
        pieces.append(text[starts[begin] : offsets[end - 1][1]])
        begin = end
    return pieces
