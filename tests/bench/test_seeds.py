"""Figures over seeds: the mean and spread reported by bench.pitt_eval and bench.arrival."""

from __future__ import annotations

import argparse

import pytest

from bench.pitt_eval import flatten, summarise
from bench.seeds import aggregate, cell, parse_seeds, spread


def test_spread_is_the_mean_sample_std_min_and_max_of_the_values_present() -> None:
    figure = spread([0.90, 0.94, None, 0.92])
    assert figure["n"] == 3 and figure["mean"] == pytest.approx(0.92)
    assert figure["std"] == pytest.approx(0.02)  # sample std: sqrt((0.02² + 0.02² + 0) / 2)
    assert (figure["min"], figure["max"]) == (0.90, 0.94)
    assert spread([0.5]) == {"mean": 0.5, "std": 0.0, "min": 0.5, "max": 0.5, "n": 1}
    assert spread([None, None])["mean"] is None
    assert cell(figure) == "0.9200 ± 0.0200" and cell(spread([0.5])) == "0.5000" and cell(spread([])) == "-"


def test_aggregate_and_pitt_eval_summary_per_version() -> None:
    runs = [{"top1": 0.8, "novelty_auroc": 0.9, "at_arrival": {"novelty_auroc": 0.85, "known_flagged_new_rate": 0.1},
             "novelty_sweep": {"raised": 3}},
            {"top1": 0.9, "novelty_auroc": 0.95, "at_arrival": {"novelty_auroc": 0.8, "known_flagged_new_rate": 0.2},
             "novelty_sweep": {"raised": 5}}]
    assert aggregate(runs, ["top1"])["top1"]["mean"] == pytest.approx(0.85)
    assert flatten(runs[0])["novelty_auroc at arrival"] == 0.85
    summary = summarise({"trained": runs})["trained"]
    assert summary["novelty_auroc at arrival"]["mean"] == pytest.approx(0.825)
    assert summary["known_flagged_new_rate at arrival"]["max"] == 0.2
    assert summary["raised by the sweep"]["min"] == 3 and summary["wrong_label_auroc"]["n"] == 0


def test_seeds_option() -> None:
    assert parse_seeds("13,14,15") == [13, 14, 15] and parse_seeds("7") == [7]
    for bad in ("13,x", "", "13,13"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_seeds(bad)
