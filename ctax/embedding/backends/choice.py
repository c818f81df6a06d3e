"""Which backend serves a version under CTAX_BACKEND=auto: the fastest whose measured accuracy loss against torch
stays within the tolerance. Pure: measurements in, a name and the reason out.

- Accuracy: the headline metrics of the version's calibration (top-1, novelty AUROC, wrong-label AUROC) computed
  with each backend's vectors; the loss on a metric is torch's value minus the backend's (a gain is no loss).
- Without labelled validation data no accuracy can be measured; then only backends whose vectors reproduce
  torch's (cosine >= MIN_COSINE on every probe input, every tower) qualify.
- Speed: seconds per creative summed over the towers the version has (a text creative plus an image creative),
  from raw creatives/s at the worker's batch size. Torch always qualifies, so there is always a choice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

MIN_COSINE = 0.999
TORCH = "torch"


@dataclass(frozen=True)
class Measured:
    backend: str
    per_s: Mapping[str, float]  # tower -> raw creatives/s
    cosine: Mapping[str, float] = field(default_factory=dict)  # tower -> lowest cosine to torch's vectors
    accuracy: Mapping[str, float] = field(default_factory=dict)  # metric -> value on validation
    error: str | None = None  # the export or the measurement failed

    @property
    def seconds_per_creative(self) -> float:
        return sum(1.0 / rate if rate > 0 else float("inf") for rate in self.per_s.values())


@dataclass(frozen=True)
class Choice:
    backend: str
    reason: str
    losses: dict[str, dict[str, float]]  # backend -> metric -> loss against torch
    qualified: list[str]


def losses(candidate: Measured, torch: Measured) -> dict[str, float]:
    return {metric: round(torch.accuracy[metric] - value, 6) for metric, value in candidate.accuracy.items()
            if metric in torch.accuracy}


def _disqualified(candidate: Measured, torch: Measured, tolerance: float) -> str | None:
    if candidate.error:
        return f"failed: {candidate.error}"
    if set(candidate.per_s) != set(torch.per_s):
        return f"measured for {', '.join(sorted(candidate.per_s)) or 'no tower'} only"
    lost = losses(candidate, torch)
    if lost:
        worst = max(lost, key=lambda metric: lost[metric])
        return None if lost[worst] <= tolerance else f"loses {lost[worst]:.4f} {worst} (tolerance {tolerance:g})"
    lowest = min(candidate.cosine.values(), default=0.0)
    return None if lowest >= MIN_COSINE else (f"no validation data, and its vectors' cosine to torch "
                                              f"{lowest:.5f} < {MIN_COSINE}")


def choose(measured: Sequence[Measured], tolerance: float) -> Choice:
    by_name = {item.backend: item for item in measured}
    if TORCH not in by_name:
        raise ValueError("the choice needs torch's measurement as the reference")
    torch = by_name[TORCH]
    why_not = {item.backend: _disqualified(item, torch, tolerance) for item in measured if item.backend != TORCH}
    qualified = [torch] + [item for item in measured if item.backend != TORCH and why_not[item.backend] is None]
    best = min(qualified, key=lambda item: item.seconds_per_creative)
    speedup = torch.seconds_per_creative / best.seconds_per_creative if best.seconds_per_creative else 0.0
    basis = "accuracy on validation" if torch.accuracy else "vectors' agreement with torch (no validation data)"
    reason = (f"fastest within tolerance {tolerance:g} of torch ({basis}): {speedup:.2f}x torch's speed"
              if best is not torch else "no exported backend is faster and within tolerance")
    excluded = [f"{name}: {why}" for name, why in why_not.items() if why]
    if excluded:
        reason += "; excluded " + "; ".join(excluded)
    return Choice(best.backend, reason, {item.backend: losses(item, torch) for item in measured
                                         if item.backend != TORCH}, [item.backend for item in qualified])
