"""The evaluation contract's metrics, computed from the verdicts the service stored for the posted test rows."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from ctax.enums import CreativeStatus, Flag
from ctax.labelling.calibration import auroc
from ctax.store.models import Creative
from ctax.taxonomy.paths import LabelPath


def _precision_recall(flagged: np.ndarray, positive: np.ndarray) -> tuple[float | None, float | None]:
    tp = float((flagged & positive).sum())
    precision = tp / flagged.sum() if flagged.sum() else None
    recall = tp / positive.sum() if positive.sum() else None
    return precision, recall


def _fit(creative: Creative, at_arrival: bool) -> float | None:
    scores = (creative.prediction or {}).get("scores", {})
    fit: float | None = scores.get("fit_at_arrival", scores.get("fit")) if at_arrival else scores.get("fit")
    return fit


def _flag(creative: Creative, at_arrival: bool) -> str | None:
    if at_arrival and (creative.prediction or {}).get("raised_by_sweep"):
        return (creative.prediction or {}).get("flag_at_arrival")
    return creative.flag


def flag_of(creative: Creative, at_arrival: bool) -> str | None:
    """The creative's flag, final or as it arrived (before a sweep raised it)."""
    return _flag(creative, at_arrival)


def score(posted: list[dict[str, Any]], rows: dict[str, Creative], ids: dict[LabelPath, int],
          at_arrival: bool = False) -> dict[str, Any]:
    """The contract's metrics of the stored verdicts; at_arrival: of the verdicts before any novelty sweep."""
    known = [p for p in posted if not p["novel"]]
    paths_by_id = {v: k for k, v in ids.items()}
    top1 = top5 = tier1 = 0
    for p in known:
        ranked = [entry["label_id"] for entry in (rows[p["id"]].prediction or {}).get("top_k", [])]
        truth = ids.get(p["label"])
        top1 += bool(ranked) and ranked[0] == truth
        top5 += truth in ranked[:5]
        tier1 += bool(ranked) and paths_by_id[ranked[0]].names[0] == p["label"].names[0]
    raw_fits = [_fit(rows[p["id"]], at_arrival) for p in posted]
    # A creative left without a fit (nothing usable to label) counts as the least fitting of all; the learned
    # novelty score is a logit, so no fixed floor such as -1 would do.
    floor = min((f for f in raw_fits if f is not None), default=0.0) - 1.0
    fits = np.array([floor if f is None else f for f in raw_fits])
    novel = np.array([p["novel"] for p in posted])
    flagged_new = np.array([_flag(rows[p["id"]], at_arrival) == Flag.NEW_LABEL for p in posted])
    novelty_precision, novelty_recall = _precision_recall(flagged_new, novel)
    gaps, wrong, flagged_wrong = [], [], []
    for p in known:
        scores = (rows[p["id"]].prediction or {}).get("scores", {})
        if "wrong_label_gap" not in scores:
            continue
        gap = scores["wrong_label_gap"]
        gaps.append(np.inf if gap is None else gap)
        wrong.append(p["wrong"])
        flagged_wrong.append(rows[p["id"]].flag == Flag.WRONG_LABEL)
    gaps_arr = np.array(gaps)
    gaps_arr = np.where(np.isfinite(gaps_arr), gaps_arr, (gaps_arr[np.isfinite(gaps_arr)].max(initial=0) + 1))
    wrong_arr = np.array(wrong, dtype=bool)
    wrong_precision, wrong_recall = _precision_recall(np.array(flagged_wrong, dtype=bool), wrong_arr)
    flags = Counter(_flag(rows[p["id"]], at_arrival) for p in posted)
    n = max(len(known), 1)
    known_flagged_new = int(flagged_new[~novel].sum())
    return {
        "top1": top1 / n, "top5": top5 / n, "tier1_accuracy": tier1 / n,
        "novelty_auroc": auroc(-fits[novel], -fits[~novel]),
        "novelty_precision": novelty_precision, "novelty_recall": novelty_recall,
        "wrong_label_auroc": auroc(gaps_arr[wrong_arr], gaps_arr[~wrong_arr]),
        "wrong_label_precision": wrong_precision, "wrong_label_recall": wrong_recall,
        "n_known_test": len(known), "n_novel_test": int(novel.sum()), "n_wrong_asserted": int(wrong_arr.sum()),
        "flags": dict(flags),
        # The false alarms a reviewer meets: known-label creatives sent to the queue as "fits no label".
        "known_flagged_new_rate": known_flagged_new / len(known) if known else None,
        "failed": sum(1 for p in posted if rows[p["id"]].status != CreativeStatus.LABELLED),
    }


def novelty_by_label(posted: list[dict[str, Any]], rows: dict[str, Creative],
                     at_arrival: bool = False) -> dict[str, dict[str, Any]]:
    """Per held-out label: its creatives' novelty AUROC against every known-label creative, the share flagged
    `new_label`, and (in the order they were posted) how many of them arrived before the first was flagged
    (None: none was). One figure per label shows which missing label the trigger is slow or blind to."""
    raw = [_fit(rows[p["id"]], at_arrival) for p in posted]
    floor = min((f for f in raw if f is not None), default=0.0) - 1.0
    fits = np.array([floor if f is None else f for f in raw])
    known = np.array([not p["novel"] for p in posted])
    result: dict[str, dict[str, Any]] = {}
    for label in sorted({str(p["label"]) for p in posted if p["novel"]}):
        mine = [n for n, p in enumerate(posted) if p["novel"] and str(p["label"]) == label]
        flagged = [_flag(rows[posted[n]["id"]], at_arrival) == Flag.NEW_LABEL for n in mine]
        result[label] = {"n": len(mine), "novelty_auroc": auroc(-fits[mine], -fits[known]),
                         "flagged_new_rate": sum(flagged) / len(mine),
                         "seen_before_first_flag": flagged.index(True) if any(flagged) else None}
    return result
