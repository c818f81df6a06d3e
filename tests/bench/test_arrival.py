"""bench.arrival: the arrival patterns' streams, and a tiny run of the benchmark through `ctax eval`."""

from __future__ import annotations

import argparse
import itertools
import json
import random
from pathlib import Path

import pytest

from bench.arrival_streams import BURST_PREFIX, CAMPAIGNS, PATTERNS, build, variants, without_campaigns
from tests.support import EVAL_ENV

HELD = {"PSA/Animal Rights", "Product/Vehicles/Cars"}


@pytest.fixture(scope="module")
def rows(shared_data: Path) -> list[dict]:
    return [json.loads(line) for line, _ in zip((shared_data / "pitt_ads_dev.jsonl").open(), range(1500),
                                                strict=False)]


def _novel_at(stream: list[dict]) -> list[int]:
    return [n for n, row in enumerate(stream) if row["label"] in HELD]


def test_crowd_is_todays_stream(rows) -> None:
    assert build("crowd", rows, HELD, 13) == rows


def test_trickle_spreads_each_held_out_label_evenly_through_a_stream_20_times_longer(rows) -> None:
    stream = build("trickle", rows, HELD, 13)
    known = [r for r in rows if r["label"] not in HELD]
    novel = _novel_at(stream)
    assert sorted(r["id"] for r in stream if r["label"] not in HELD) == sorted(r["id"] for r in known)
    assert len(stream) >= 20 * len(novel) and len(novel) == len(known) // 19
    gaps = {b - a for a, b in itertools.pairwise(novel)}
    assert max(gaps) - min(gaps) <= 1  # evenly spaced
    for label in HELD:  # each label over the whole stream, not bunched at one end
        mine = [n for n in novel if stream[n]["label"] == label]
        assert mine[0] < len(stream) * 0.1 and mine[-1] > len(stream) * 0.9


def test_a_burst_is_200_close_variants_of_one_known_ad_arriving_together(rows) -> None:
    stream = build("burst", rows, HELD, 13)
    at = [n for n, row in enumerate(stream) if row["id"].startswith(BURST_PREFIX)]
    assert len(at) == 200 and at == list(range(at[0], at[0] + 200))
    assert without_campaigns([r for r in stream if not r["id"].startswith(BURST_PREFIX)]) == rows
    burst = [stream[n] for n in at]
    source = next(r for r in rows if r["id"] == burst[0]["id"].split("-", 2)[2])
    # The variants and the ad they were made from carry one campaign id, as an ad server posts them; nothing else.
    tagged = [r for r in stream if "campaign" in r]
    assert {r["campaign"] for r in tagged} == {f"campaign-{source['id']}"} and len(tagged) == 201
    assert "campaign" not in without_campaigns(stream)[at[0]]
    assert source["label"] not in HELD and {r["label"] for r in burst} == {source["label"]}
    texts = {tuple(r["texts"]) for r in burst}
    assert len(texts) >= 190 and tuple(source["texts"]) not in texts  # each one changed, almost all different
    assert build("burst", rows, HELD, 13) == stream and build("burst", rows, HELD, 14) != stream


def test_variants_reword_reorder_and_change_a_price_or_date() -> None:
    ad = {"id": "1", "label": "x", "texts": ["I should buy this phone because it is only $199 this week",
                                             "I should buy it because it is new and good"]}
    made = variants(ad, 60, random.Random(1))
    joined = [" ".join(v["texts"]) for v in made]
    assert any("$199" not in j and "$" in j for j in joined)  # a changed price
    assert any(any(m in j for m in ("January", "June", "May", "March")) for j in joined)  # a date
    assert any(j.startswith("Because") or ", so I should" in j for j in joined)  # reordered
    assert any(w in j for j in joined for w in ("purchase", "ought to", "since"))  # reworded
    assert variants(ad, 5, random.Random(1)) == made[:5]


def test_mixed_has_a_crowd_a_trickle_and_a_burst(rows) -> None:
    stream = build("mixed", rows, HELD, 13)
    assert sum(r["id"].startswith(BURST_PREFIX) for r in stream) == 200
    novel = _novel_at(stream)
    by_label = {label: [n for n in novel if stream[n]["label"] == label] for label in HELD}
    crowded = [ns for ns in by_label.values() if ns == list(range(ns[0], ns[0] + len(ns)))]
    assert len(crowded) == 1  # one label of two arrives as a block; the other trickles
    assert set(PATTERNS) == {"crowd", "trickle", "burst", "mixed"}


@pytest.mark.slow  # labels a few hundred creatives with the pretrained towers, per pattern
def test_a_tiny_run_gives_every_field_for_every_pattern(tmp_path, monkeypatch) -> None:
    from bench.arrival import FIGURES, run, table

    for name, value in EVAL_ENV.items():
        monkeypatch.setenv(name, value)
    args = argparse.Namespace(max_train=400, max_test=120, holdout_labels=2, wrong_label_rate=0.2, epochs=None,
                              traffic_window=50, burst_size=20)
    rows = run(["trickle", "burst"], ["pretrained"], [13], args, out=tmp_path)
    assert [(r["pattern"], r["version"], r["seed"]) for r in rows] == [("trickle", "pretrained", 13),
                                                                        ("burst", "pretrained", 13)]
    trickle, burst = rows
    for row in rows:
        for key in ("novelty_auroc_at_arrival", "novelty_auroc_final", "top1", "wrong_label_auroc"):
            assert 0.0 <= row[key] <= 1.0, key
        assert set(row["seen_before_first_flag"]) == set(row["held_out_labels"])
    assert burst["n_burst"] == 20 and burst["n_stream"] == 140 and burst["campaign_ids"] is True
    assert 0 <= burst["n_burst_grouped"] <= 20 and isinstance(burst["burst_source_first"], bool)
    assert sum(group["members"] for group in burst["burst_groups"].values()) == burst["n_burst_grouped"]
    assert burst["known_flagged_new_rate"] * 20 == pytest.approx(round(burst["known_flagged_new_rate"] * 20))
    assert trickle["n_burst"] == 0 and trickle["n_stream"] >= 20 * trickle["n_novel"]
    assert trickle["known_flagged_new_rate"] == trickle["stream_known_flagged_new_rate"]
    assert len(table(rows).columns) == 4 + len(FIGURES)


def test_the_burst_row_says_which_group_each_variant_joined() -> None:
    from bench.arrival import burst_groups

    def verdict(external_id: str, root: str | None = None, flag: str = "none") -> dict:
        return {"external_id": external_id, "novel": False, "flag": flag, "flag_at_arrival": flag,
                "duplicate_of": root}

    source = verdict("ad-7", flag="new_label")
    burst = [verdict("burst-0-ad-7", "ad-7"), verdict("burst-1-ad-7"), verdict("burst-2-ad-7", "burst-1-ad-7"),
             verdict("burst-3-ad-7", "ad-7")]
    verdicts = [verdict("ad-1"), source, *burst, verdict("ad-2")]
    got = burst_groups(verdicts, burst)
    assert got["n_burst_grouped"] == 3 and got["burst_source_first"] is True
    assert got["burst_groups"] == {
        "ad-7": {"members": 2, "root_is_source": True, "root_flag_at_arrival": "new_label"},
        "burst-1-ad-7": {"members": 1, "root_is_source": False, "root_flag_at_arrival": "none"}}
    # The source ad after the burst: the variants cannot join its group (it is not labelled yet).
    assert burst_groups([*burst, source], burst)["burst_source_first"] is False
    assert got["burst_sources"] == 1 and got["burst_flagged_by_source"] == {"ad-7": 0.0}
    assert burst_groups(verdicts, [])["burst_source_first"] is None and burst_groups(verdicts, [])["burst_sources"] == 0


def test_campaigns_are_ten_known_ads_bursts_each_arriving_together_and_each_measured(rows) -> None:
    from bench.arrival import burst_groups

    stream = build("campaigns", rows, HELD, 13)
    assert without_campaigns([r for r in stream if not r["id"].startswith(BURST_PREFIX)]) == rows
    at = [n for n, row in enumerate(stream) if row["id"].startswith(BURST_PREFIX)]
    assert len(at) == 200
    by_source: dict[str, list[int]] = {}
    for n in at:
        by_source.setdefault(stream[n]["id"].split("-", 2)[2], []).append(n)
    assert len(by_source) == CAMPAIGNS
    for source, places in by_source.items():
        assert places == list(range(places[0], places[0] + len(places))) and len(places) == 200 // CAMPAIGNS
        label = next(r["label"] for r in rows if r["id"] == source)
        assert label not in HELD and {stream[n]["label"] for n in places} == {label}
        assert {stream[n]["campaign"] for n in places} == {f"campaign-{source}"}  # one campaign id per ad
    assert build("campaigns", rows, HELD, 13) == stream and build("campaigns", rows, HELD, 14) != stream
    # Per source ad, its variants' share flagged new_label.
    verdicts = [{"external_id": row["id"], "flag": "new_label" if row["id"].split("-", 2)[-1] == min(by_source)
                 else "none", "flag_at_arrival": "none", "duplicate_of": None} for row in stream]
    got = burst_groups(verdicts, [verdicts[n] for n in at])
    assert got["burst_sources"] == CAMPAIGNS and got["burst_source_first"] in (True, False)
    assert sorted(got["burst_flagged_by_source"].values()) == [0.0] * (CAMPAIGNS - 1) + [1.0]
