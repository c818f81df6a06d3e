"""What an evaluation's pictures are drawn from: the verdicts the service stored for the posted test rows, reduced
as calibration reduces its validation creatives (ctax.labelling.calibration.curves), so both draw the same figures.

Unlike calibration's, these are measured on real held-out labels and real wrong assertions, at the mix the
evaluation posted: precision is as measured, not at an assumed share of new or wrong creatives."""

from __future__ import annotations

from typing import Any

import numpy as np

from ctax.labelling.calibration import curves
from ctax.store.models import Creative
from ctax.taxonomy.paths import LabelPath


def figure_data(posted: list[dict[str, Any]], rows: dict[str, Creative], ids: dict[LabelPath, int],
                thresholds: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    def scores(p: dict[str, Any]) -> dict[str, Any]:
        return dict((rows[p["id"]].prediction or {}).get("scores") or {})

    known = [p for p in posted if not p["novel"]]
    fits = [scores(p).get("fit") for p in posted]
    # A creative left without a fit counts as the least fitting, as scoring.py counts it.
    floor = min((f for f in fits if f is not None), default=0.0) - 1.0
    fit = np.array([floor if f is None else f for f in fits], dtype=np.float64)
    novel = np.array([p["novel"] for p in posted], dtype=bool)
    measured = [(scores(p)["wrong_label_gap"], p["wrong"]) for p in known if "wrong_label_gap" in scores(p)]
    gaps = np.array([np.inf if g is None else g for g, _ in measured], dtype=np.float64)
    if len(gaps):
        gaps = np.where(np.isfinite(gaps), gaps, gaps[np.isfinite(gaps)].max(initial=0) + 1)
    wrong = np.array([w for _, w in measured], dtype=bool)
    names = {label_id: str(path) for path, label_id in ids.items()}
    truth = [ids[p["label"]] for p in known if p["label"] in ids]
    top = [((rows[p["id"]].prediction or {}).get("top_k") or [{}])[0].get("label_id") for p in known
           if p["label"] in ids]
    return {
        "new_label": curves.novelty_figure(fit[~novel], fit[novel], thresholds.get("new_label"))
        | {"point": _point(metrics, "novelty")},
        "wrong_label": curves.wrong_label_figure(gaps[~wrong], gaps[wrong], thresholds.get("wrong_label"),
                                                 point=_point(metrics, "wrong_label")),
        "per_label": curves.per_label_accuracy(truth, top, names),
        "source": "evaluation",
    }


def _point(metrics: dict[str, Any], name: str) -> dict[str, float] | None:
    """The service's flags as they fell (per-label thresholds and the novelty sweep included)."""
    precision, recall = metrics.get(f"{name}_precision"), metrics.get(f"{name}_recall")
    return {"precision": precision, "recall": recall} if precision is not None and recall is not None else None
