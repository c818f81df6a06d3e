"""The figures of a model card or an evaluation, drawn with matplotlib from the summaries in
ctax.labelling.calibration.curves and written as PNG files.

matplotlib's object API (Figure + its Agg canvas) is used rather than pyplot: no global figure state and no
backend to select, so drawing is safe in a worker thread and never tries to open a window."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KNOWN, NOVEL, LINE = "#4f46e5", "#ea580c", "#111827"
DPI = 110
MAX_LABEL_ROWS = 40


@dataclass(frozen=True)
class Picture:
    """One figure written to disk, with what the page says about it."""

    file: str
    title: str
    caption: str


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    return figure


def _save(figure: Any, path: Path) -> None:
    figure.savefig(path, format="png")


def _shares(counts: Sequence[int]) -> list[float]:
    total = sum(counts) or 1
    return [c / total for c in counts]


def _distribution(ax: Any, hist: Mapping[str, Any], groups: Sequence[tuple[str, str, str]], threshold: float | None,
                  threshold_name: str) -> None:
    """Overlaid histograms (each group's share per bin, so groups of different sizes compare) and the threshold."""
    for key, name, colour in groups:
        counts = hist.get(key) or []
        ax.stairs(_shares(counts), hist["edges"], fill=True, alpha=0.4, color=colour, label=f"{name} (n={sum(counts)})")
        ax.stairs(_shares(counts), hist["edges"], color=colour, linewidth=1.2)
    if threshold is not None:
        ax.axvline(threshold, color=LINE, linestyle="--", linewidth=1.5, label=f"{threshold_name} = {threshold:.3f}")
    ax.set_ylabel("share of creatives")
    ax.legend(loc="best", fontsize=8, framealpha=0.9)
    ax.grid(alpha=0.25)


def fit_distribution(data: Mapping[str, Any], path: Path, novel_name: str) -> None:
    figure = _figure(7, 3.6)
    ax = figure.add_subplot()
    _distribution(ax, data["hist"], [("known", "label in the taxonomy", KNOWN), ("novel", novel_name, NOVEL)],
                  data.get("threshold"), "new_label threshold")
    ax.set_xlabel("fit score (higher: fits a known label better)\nbelow the threshold a creative is flagged new_label")
    ax.set_title("Fit score: known labels against new ones")
    _save(figure, path)


def gap_distribution(data: Mapping[str, Any], path: Path) -> None:
    figure = _figure(7, 3.6)
    ax = figure.add_subplot()
    groups = [("right", "asserted label right", KNOWN), ("wrong", "asserted label wrong", NOVEL)]
    _distribution(ax, data["hist"], groups, data.get("threshold"), "wrong_label threshold")
    ax.set_xlabel("gap: best label's score minus the asserted label's\n"
                  "above the threshold a creative is flagged wrong_label")
    ax.set_title("Wrong-label gap: right against wrong asserted labels")
    _save(figure, path)


def _pr(ax: Any, data: Mapping[str, Any], title: str, colour: str) -> None:
    curve = data.get("curve") or {}
    ax.plot(curve.get("recall", []), curve.get("precision", []), color=colour, linewidth=1.8, label="every threshold")
    point = data.get("point")
    if point and point.get("precision") is not None and point.get("recall") is not None:
        ax.scatter([point["recall"]], [point["precision"]], s=70, color=LINE, zorder=3,
                   label=f"chosen: precision {point['precision']:.2f}, recall {point['recall']:.2f}")
    share = data.get("novel_share", data.get("wrong_share"))
    ax.set_title(title + (f" (precision at {share:.0%} positives)" if share is not None else ""), fontsize=10)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.25)
    ax.legend(loc="lower left", fontsize=8, frameon=False)


def precision_recall(figures: Mapping[str, Any], path: Path) -> None:
    figure = _figure(9, 3.8)
    left, right = figure.subplots(1, 2)
    _pr(left, figures["new_label"], "new_label", NOVEL)
    _pr(right, figures["wrong_label"], "wrong_label", KNOWN)
    _save(figure, path)


def per_label(rows: Sequence[Mapping[str, Any]], path: Path) -> bool:
    """Top-1 accuracy per label, worst first; returns whether rows were left out."""
    shown = list(rows)[:MAX_LABEL_ROWS]
    figure = _figure(8, max(2.4, 1.2 + 0.24 * len(shown)))
    ax = figure.add_subplot()
    names = [f"{row['label']}  (n={row['n']})" for row in shown]
    ax.barh(range(len(shown)), [row["accuracy"] for row in shown], color=KNOWN, alpha=0.8)
    ax.set_yticks(range(len(shown)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("top-1 accuracy")
    more = len(rows) > len(shown)
    ax.set_title(f"Per-label top-1 accuracy ({len(shown)} lowest of {len(rows)} labels)" if more
                 else "Per-label top-1 accuracy")
    ax.grid(axis="x", alpha=0.25)
    _save(figure, path)
    return more


def loss_curve(history: Sequence[Mapping[str, float]], path: Path) -> None:
    figure = _figure(7, 3.2)
    ax = figure.add_subplot()
    ax.plot([row["step"] for row in history], [row["loss"] for row in history], color=KNOWN, marker="o",
            markersize=3, linewidth=1.5)
    ax.xaxis.get_major_locator().set_params(integer=True)  # steps are whole numbers, however few
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss")
    ax.set_title("Text tower training loss")
    ax.grid(alpha=0.25)
    _save(figure, path)


def draw_all(figures: Mapping[str, Any] | None, loss: Sequence[Mapping[str, float]] | None, out: Path,
             novel_name: str) -> tuple[list[Picture], list[str]]:
    """Every figure there is data for, written under `out`; returns them and notes on what could not be drawn."""
    out.mkdir(parents=True, exist_ok=True)
    pictures: list[Picture] = []
    notes: list[str] = []
    if figures and figures.get("new_label", {}).get("n_known"):
        fit_distribution(figures["new_label"], out / "fit.png", novel_name)
        pictures.append(Picture("fit.png", "Fit score and the new_label threshold",
                                f"Fit of creatives whose label is in the taxonomy and of {novel_name}."))
        gap_distribution(figures["wrong_label"], out / "wrong_label.png")
        pictures.append(Picture("wrong_label.png", "Wrong-label gap and its threshold",
                                "Gap for right and for wrong asserted labels."))
        precision_recall(figures, out / "precision_recall.png")
        pictures.append(Picture("precision_recall.png", "Precision and recall",
                                "Every threshold along the curve; the dot is the one in use."))
        more = per_label(figures.get("per_label") or [], out / "per_label.png")
        pictures.append(Picture("per_label.png", "Per-label accuracy",
                                "Top-1 accuracy of each label, worst first" + (" (the worst shown)." if more else ".")))
    else:
        notes.append("No labelled held-out creatives were available, so there are no score distributions: "
                     "the thresholds are the documented defaults.")
    if loss:
        loss_curve(loss, out / "loss.png")
        pictures.append(Picture("loss.png", "Training loss", "The text tower's loss as the trainer logged it."))
    else:
        notes.append("No training loss curve: this version was not trained (pretrained encoders as published).")
    return pictures, notes
