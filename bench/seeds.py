"""Figures over several seeds: each reported as its mean with the spread (sample std, min and max) beside it.

A single seed's split and held-out labels move a figure by more than most changes under test; three seeds with
their spread say whether a difference is bigger than the split's own noise.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

DEFAULT_SEEDS = (13, 14, 15)


def parse_seeds(text: str) -> list[int]:
    """`13,14,15` -> [13, 14, 15]; a clear argparse error for anything else."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes whole numbers separated by commas, not {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds needs one or more distinct seeds, not {text!r}")
    return seeds


def spread(values: Iterable[float | None]) -> dict[str, float | int | None]:
    """Mean, sample std (0 for one value), min and max of the values that exist; n says how many did."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    return {"mean": statistics.fmean(present), "std": statistics.stdev(present) if len(present) > 1 else 0.0,
            "min": min(present), "max": max(present), "n": len(present)}


def aggregate(runs: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each metric's spread over the runs (one run per seed)."""
    return {metric: spread(run.get(metric) for run in runs) for metric in metrics}


def cell(figure: Mapping[str, Any]) -> str:
    """`0.9412 ± 0.0050` (mean ± std), `-` when no run had the figure."""
    if figure.get("mean") is None:
        return "-"
    if figure["n"] == 1:
        return f"{figure['mean']:.4f}"
    return f"{figure['mean']:.4f} ± {figure['std']:.4f}"
