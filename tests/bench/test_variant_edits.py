"""bench.variant_edits: every source ad posted once as it is and once per edit, and the per-kind figures."""

from __future__ import annotations

import random

import pytest

from bench.variant_edits import EDITS, posts, summarise


def test_each_source_is_posted_as_it_is_and_once_per_edit_in_a_shuffled_order() -> None:
    sources = [{"texts": [f"I should buy brand {n} because it is good", "Only $19.99 this week"], "label": "x"}
               for n in range(5)]
    planned = posts(sources, random.Random(3))
    assert sorted((kind, n) for kind, n, _ in planned) == sorted(
        (kind, n) for n in range(5) for kind in ("source", *EDITS))
    assert [(k, n) for k, n, _ in planned] != [(k, n) for n in range(5) for k in ("source", *EDITS)]  # shuffled
    for kind, n, texts in planned:
        if kind == "source":
            assert texts == sources[n]["texts"]
        else:
            assert len(texts) == 2 and texts != sources[n]["texts"]  # every edit changes the ad


def test_the_figures_per_kind_compare_each_edit_with_its_own_source() -> None:
    def v(flag: str, fit: float, path: str, sim: float, recent: int = 0) -> dict:
        return {"flag": flag, "fit": fit, "top_path": path, "top_similarity": sim, "recent_like_it": recent}

    found = {("source", 0): v("none", 3.0, "A", 0.5), ("source", 1): v("new_label", -2.0, "B", 0.3, 2)}
    for kind in EDITS:
        found[(kind, 0)] = v("none", 2.0, "A", 0.45)
        found[(kind, 1)] = v("new_label", -4.0, "C", 0.2, 4)
    found[("price_or_date", 0)] = v("new_label", -1.0, "A", 0.4, 1)
    rows = {row["kind"]: row for row in summarise(["A", "B"], found)}
    assert rows["source"]["flagged_new_rate"] == 0.5 and rows["source"]["top1"] == 1.0
    assert rows["reword"]["top1"] == 0.5  # source 1's edit lost its label
    assert "fit_minus_source_median" not in rows["source"]
    assert rows["reword"]["fit_minus_source_median"] == pytest.approx(-1.5)  # median of -1 and -2
    assert rows["reword"]["similarity_minus_source_mean"] == pytest.approx(-0.075)
    assert rows["reword"]["flagged_where_source_was_not"] == 0
    assert rows["price_or_date"]["flagged_new_rate"] == 1.0
    assert rows["price_or_date"]["flagged_where_source_was_not"] == 1
    assert rows["price_or_date"]["recent_like_it_mean"] == pytest.approx(2.5)
