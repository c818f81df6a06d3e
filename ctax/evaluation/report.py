"""`ctax eval --report DIR`: the evaluation's headline figures and its pictures as one HTML page (index.html)
beside the PNGs, readable from disk without the service."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from ctax.pictures.card import read_loss
from ctax.pictures.figures import draw_all

HEADLINE = ("top1", "top5", "tier1_accuracy", "novelty_auroc", "novelty_precision", "novelty_recall",
            "wrong_label_auroc", "wrong_label_precision", "wrong_label_recall", "n_train", "n_test",
            "n_known_test", "n_novel_test", "n_wrong_asserted", "model_version", "trained", "seconds")


def write_report(result: dict[str, Any], out: Path) -> Path:
    """Draw the figures of an evaluation (run_eval's result) under `out`; returns the page's path."""
    artefact_dir = result.get("artefact_dir")
    loss = read_loss(Path(artefact_dir)) if artefact_dir and result.get("trained") else None
    pictures, notes = draw_all(result.get("figures"), loss, out, novel_name="creatives of the held-out labels")
    if not result.get("held_out_labels"):
        notes.append("No labels were held out (--holdout-labels 0): there are no new-label creatives to show.")
    env = Environment(loader=PackageLoader("ctax.evaluation", "templates"), autoescape=select_autoescape())
    page = env.get_template("report.html").render(
        result=result, headline=[(key, result.get(key)) for key in HEADLINE if key in result],
        pictures=[asdict(p) for p in pictures], notes=notes,
        thresholds={k: v for k, v in (result.get("thresholds") or {}).items() if isinstance(v, int | float | str)})
    path = out / "index.html"
    path.write_text(page)
    return path
