"""The model card of a version (MODEL_CARD.md in its artefact directory): what it is, what it measured, how its
thresholds were calibrated and how it compares with the version it would replace."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ctax.pictures.card import write_card_pictures
from ctax.store.models import ModelVersion

log = logging.getLogger(__name__)


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _calibration_lines(calibration: Any, trained: bool) -> list[str]:
    """The calibration report in words: which thresholds were chosen and what they gave on held-out data."""
    if not isinstance(calibration, Mapping):
        return []
    lines = ["", "## Calibration", ""]
    novelty = calibration.get("new_label") or {}
    if novelty:
        lines.append(f"- `new_label` threshold {_cell(novelty.get('threshold'))}: precision "
                     f"{_cell(novelty.get('precision'))}, recall {_cell(novelty.get('recall'))}, AUROC "
                     f"{_cell(novelty.get('auroc'))} ({novelty.get('method', '')}); exemplar fit weight "
                     f"{novelty.get('exemplar_fit_weight')}")
        if (rate := novelty.get("target_known_rate")) is not None:
            vouched = (f"vouched for at {novelty.get('rate_confidence'):.0%} confidence from "
                       f"{calibration.get('n_validation')} validation creatives" if novelty.get("rate_confidence")
                       else "the plain validation quantile")
            lines.append(f"- review load: at most {rate:.0%} of known-label creatives flagged `new_label` "
                         f"({vouched}; {1 - novelty.get('known_pass_rate', 1.0):.1%} of them fell below it)")
        if trained:
            # Measured on the Pitt benchmark (docs/benchmarks.md): 0.95 here, 0.90 on labels never trained on.
            lines.append("- the novelty figures above remove labels this version was trained on; for labels it "
                         "never saw they are optimistic (docs/benchmarks.md measures how much)")
        scorer = novelty.get("scorer") or {}
        if scorer:
            lines.append(f"- novelty score: {scorer.get('chosen')} (AUROC of the exemplar blend "
                         f"{_cell(scorer.get('blend_auroc'))}, of the learned score under cross-validation by "
                         f"label {_cell(scorer.get('learned_cv_auroc'))})")
            if "traffic_minus_exemplar" in (scorer.get("features") or []):
                lines.append("- the learned score weighs recent traffic (creatives like this one that arrived "
                             "lately against labelled ones like it); these figures let the validation creatives "
                             "play a full traffic window, which a creative arriving early does not have (the "
                             "novelty sweep re-decides it later)")
    wrong = calibration.get("wrong_label") or {}
    if wrong:
        lines.append(f"- `wrong_label` threshold {_cell(wrong.get('threshold'))} ({wrong.get('per_label', 0)} "
                     f"per-label): precision {_cell(wrong.get('precision'))}, recall {_cell(wrong.get('recall'))}, "
                     f"AUROC {_cell(wrong.get('auroc'))} ({wrong.get('method', '')})")
    lines += _ocr_lines(calibration.get("ocr") or {})
    low = calibration.get("low_confidence") or {}
    if low:
        lines.append(f"- `low_confidence` margin {_cell(low.get('margin'))}: flags {_cell(low.get('flagged_share'))} "
                     f"of creatives, error rate {_cell(low.get('error_rate_flagged'))} among them against "
                     f"{_cell(low.get('error_rate_unflagged'))} elsewhere")
    weight = calibration.get("exemplar_weight") or {}
    if weight:
        lines.append(f"- exemplar weight in the ranking: {weight.get('chosen')}")
    return lines if len(lines) > 3 else []


def _ocr_lines(ocr: Mapping[str, Any]) -> list[str]:
    """What calibration set for creatives whose text was read by OCR (calibration/ocr_thresholds.py)."""
    if not ocr:
        return []
    ocr_new, ocr_wrong = ocr.get("new_label") or {}, ocr.get("wrong_label") or {}
    lines = [f"- creatives whose text was read by OCR: `new_label` threshold {_cell(ocr_new.get('threshold'))} "
                 f"(recall {_cell(ocr_new.get('recall'))}, AUROC {_cell(ocr_new.get('auroc'))}), `wrong_label` "
                 f"threshold {_cell(ocr_wrong.get('threshold'))} (AUROC {_cell(ocr_wrong.get('auroc'))}), top-1 "
                 f"{_cell(ocr.get('top1'))}, on {ocr.get('n_validation')} {ocr.get('method', '')}"]
    ocr_scorer = ocr_new.get("scorer") or {}
    if ocr_scorer.get("chosen") in ("learned", "shared"):
        which = "their own" if ocr_scorer["chosen"] == "learned" else "the supplied-text one"
        lines.append(f"- OCR-read creatives' novelty score: {which} (AUROC on the readings: their own under "
                     f"cross-validation by label {_cell(ocr_scorer.get('learned_cv_auroc'))}, the "
                     f"supplied-text one {_cell(ocr_scorer.get('shared_auroc'))})")
    return lines


def _backend_lines(summary: Any) -> list[str]:
    """Which backend serves under CTAX_BACKEND=auto, why, and what each measured against torch."""
    if not isinstance(summary, Mapping):
        return []
    lines = ["", "## Inference backend", "", f"- serves: **{summary.get('serves', summary.get('backend'))}** "
             f"(CTAX_BACKEND={summary.get('setting')}); `auto` serves {summary.get('backend')}: "
             f"{summary.get('reason')}", f"- built on "
             f"{summary.get('device', '-')}, batch {summary.get('batch_size', '-')}; accuracy basis: "
             f"{summary.get('basis', '-')}, tolerance {summary.get('tolerance', '-')}"]
    measured = summary.get("measured") or {}
    if measured:
        lines += ["", "| backend | creatives/s per tower | speed-up | lowest cosine to torch | loss against torch |",
                  "|---|---|---|---|---|"]
        for name, row in measured.items():
            speeds = ", ".join(f"{tower} {rate:.1f}" for tower, rate in (row.get("per_s") or {}).items())
            cosine = ", ".join(f"{tower} {value:.5f}" for tower, value in (row.get("cosine") or {}).items())
            loss = ", ".join(f"{metric} {value:+.4f}" for metric, value in (row.get("loss") or {}).items())
            lines.append(f"| {name} | {speeds or row.get('error') or '-'} | {_cell(row.get('speedup'))} | "
                         f"{cosine or '-'} | {loss or '-'} |")
    return lines


def draw_model_card(version: ModelVersion, extra: Mapping[str, Any] | None = None) -> Path | None:
    """The card, written after the version's row is committed, never inside a write transaction: drawing its
    pictures takes seconds (matplotlib), and under the writer lock every API write (a creative posted, a review
    decision) would wait for it. A card that cannot be written costs the card, never the version (logged; the
    next calibration or training writes it again)."""
    try:
        return write_model_card(version, extra)
    except Exception:
        log.exception("writing the model card of %s failed", version.id)
        return None


def write_model_card(version: ModelVersion, extra: Mapping[str, Any] | None = None) -> Path:
    directory = Path(version.artefact_dir)
    config = version.config or {}
    lines = [
        f"# Model card: {version.id}",
        "",
        f"- kind: {version.kind}",
        f"- status when written: {version.status}",
        f"- created: {version.created_at:%Y-%m-%d %H:%M UTC}" if version.created_at else "",
        f"- text tower: `{config.get('text_model')}`",
        f"- image tower: `{(config.get('image') or {}).get('arch', 'none')}`",
        f"- label template: `{config.get('label_template')}`",
        "",
        "## Metrics (held-out data)",
        "",
    ]
    metrics = version.metrics or {}
    scalars = {k: v for k, v in metrics.items() if not isinstance(v, Mapping | list)}
    if scalars:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in sorted(scalars.items())]
    else:
        lines.append("No labelled held-out data was available; thresholds are the documented defaults.")
    lines += _calibration_lines(metrics.get("calibration"), trained=version.kind == "trained")
    lines += _backend_lines(metrics.get("backends"))
    lines += ["", "## Thresholds", "", "```json", json.dumps(version.thresholds or {}, indent=2)[:4000], "```"]
    comparison = version.comparison or {}
    if comparison.get("candidate") and comparison.get("active"):
        verdict = "better" if comparison.get("better") else "not better"
        lines += ["", f"## Compared with the active version ({comparison.get('against')}): {verdict}", "",
                  f"| metric | this version | {comparison.get('against')} |", "|---|---|---|"]
        lines += [f"| {k} | {_cell(v)} | {_cell(comparison['active'].get(k))} |"
                  for k, v in comparison["candidate"].items()]
        lines += ["", *[f"- {reason}" for reason in comparison.get("reasons") or []]]
    for title, body in (extra or {}).items():
        lines += ["", f"## {title}", "", str(body)]
    manifest = write_card_pictures(version.id, str(version.kind), directory, metrics)
    lines += ["", "## Pictures", "", *[f"![{p['title']}](card/{p['file']})" for p in manifest["pictures"]],
              *[f"- {note}" for note in manifest["notes"]]]
    path = directory / "MODEL_CARD.md"
    path.write_text("\n".join(line for line in lines if line is not None) + "\n")
    return path
