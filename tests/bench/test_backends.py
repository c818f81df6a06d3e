"""bench.backends' raw figure times the towers as the worker calls them: messages of the worker's batch size, each
encoded at the tower's own batch, so that end to end / raw measures only the labelling task's own work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.backends import RawTowers, distinct_passes
from bench.throughput import labelled_file
from ctax.embedding.space import CreativeContent, SharedSpace
from ctax.versions import artefacts
from tests.conftest import make_settings

TEXTS = ["Adopt a dog today", "Save 20% on winter tyres", "x", "Fresh bread every morning at the corner bakery",
         "A very long description of a creative " * 30, "Vote on Tuesday", "Cheap flights to Lisbon"]


def test_raw_towers_encode_each_message_as_the_worker_does_and_keep_the_fastest_pass(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "var")
    directory = tmp_path / "v1"
    artefacts.pretrained_config(settings, "v1").write(directory)
    towers = RawTowers("text", directory, "torch", TEXTS, batch_size=3, device="cpu")
    towers.space.text_batch = 2  # the tower's batch, smaller than a message, as 64 is within 128 on CPU

    passes: list[int] = []
    encode_groups = towers.space.text.encode_groups

    def recorded(groups: list[list[str]], batch_size: int = 64) -> np.ndarray:  # the real call, its batch noted
        passes.append(batch_size)
        return encode_groups(groups, batch_size)

    towers.space.text.encode_groups = recorded  # type: ignore[method-assign]
    raw = towers.measure()
    assert set(passes) == {2}  # every message cut into the tower's passes, not encoded at the message size
    worker = SharedSpace.load(directory)
    worker.text_batch = 2
    expected = np.stack([e.vector for i in range(0, len(TEXTS), 3)
                         for e in worker.encode([CreativeContent(texts=[t]) for t in TEXTS[i : i + 3]])])
    assert raw.shape == (len(TEXTS), worker.text.dim)
    assert np.sum(raw * expected, axis=1).min() > 0.9999  # the same creatives, in order

    first = towers.best
    assert first > 0
    towers.best = first / 2  # a slower pass later must not lower the figure
    towers.measure()
    assert towers.best >= first / 2  # kept, or raised by a faster pass (under load the pass can be slower)


def test_distinct_passes_post_other_texts_each_time_and_the_labelled_ads_are_none_of_them(tmp_path: Path) -> None:
    passes = distinct_passes(40, seed=7)
    assert [len(p) for p in passes] == [40] * 5
    posted = [text for one in passes for text in one]
    assert len(set(posted)) == len(posted)  # no creative posted twice: the window holds no copies
    labelled = [json.loads(line) for line in labelled_file(tmp_path, 300, posted, seed=7).read_text().splitlines()]
    assert len(labelled) == 300
    assert not set(posted).intersection(text for row in labelled for text in row["texts"])
