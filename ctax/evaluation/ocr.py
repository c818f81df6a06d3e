"""The OCR part of `ctax eval` (--ocr-test): real OCR text of ad images, labelled as image ads whose text OCR read
and reported apart from the supplied-text figures."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctax.config import Settings
from ctax.enums import CreativeStatus, Source
from ctax.errors import InvalidInput
from ctax.evaluation.posting import post_rows
from ctax.evaluation.scoring import novelty_by_label, score
from ctax.labelling.version_thresholds import Thresholds
from ctax.store.models import Creative
from ctax.store.repos import creatives
from ctax.taxonomy.paths import LabelPath
from ctax.versions import registry

if TYPE_CHECKING:
    from ctax.evaluation.run import EvalOptions, _Split
    from ctax.store.session import Session
    from ctax.worker.runtime import Runtime


@dataclass
class OcrRow:
    external_id: str
    text: str
    label: LabelPath


def read_ocr_rows(path: Path) -> list[OcrRow]:
    """The OCR test file, every line checked before any service is made: a JSON object with a non-empty "text"
    and a "label" path."""
    rows: list[OcrRow] = []
    with path.open() as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                text, label = data["text"], LabelPath.parse(data["label"])
                if not isinstance(text, str) or not text.strip():
                    raise ValueError("an empty \"text\"")
            except (ValueError, KeyError, TypeError) as exc:
                raise InvalidInput(f"{path.name} line {number}: not an OCR row with \"text\" and \"label\" "
                                   f"({exc})") from exc
            rows.append(OcrRow(str(data.get("id") or f"ocr-{number}"), text, label))
    if not rows:
        raise InvalidInput(f"{path.name} holds no OCR rows")
    return rows


def ocr_block(rt: Runtime, settings: Settings, data: _Split, options: EvalOptions,
              label: Callable[[Runtime, Settings, list[dict[str, Any]]], None]) -> dict[str, Any]:
    """The OCR rows labelled as image ads whose text OCR read (stored OCR text, no text of their own: the
    labeller compares them by it and judges them with the version's OCR thresholds), after the test stream and
    its sweep, so that the stream's figures are untouched. Rows whose ad id is among the training rows (the same
    ad, summarised) are left out: its summary would be an exemplar. Figures are the verdicts as they arrived."""
    in_train = {row.external_id for row in data.train if row.external_id}
    kept = [row for row in data.ocr if row.external_id not in in_train]

    def create(session: Session, row: OcrRow, _asserted: LabelPath | None, asserted_id: int | None) -> str:
        creative = Creative(texts=[], ocr_text=row.text, external_id=f"ocr:{row.external_id}",
                            asserted_label_id=asserted_id, status=CreativeStatus.QUEUED, source=Source.API)
        session.add(creative)
        session.flush()
        return creative.id

    posted, ids = post_rows(rt, kept, set(data.held_out), random.Random(options.seed + 2), options.wrong_label_rate,
                            create)
    label(rt, settings, posted)
    with rt.db.read() as session:
        rows = {c.id: c for c in creatives.by_ids(session, [p["id"] for p in posted])}
    metrics = score(posted, rows, ids)
    with rt.db.read() as session:
        active = registry.active_version(session)
        thresholds = (active.thresholds or {}) if active else {}
    return {key: metrics.get(key) for key in ("top1", "top5", "novelty_auroc", "novelty_precision", "novelty_recall",
                                              "known_flagged_new_rate", "wrong_label_auroc", "flags")} | {
        "n": len(posted), "n_novel": sum(p["novel"] for p in posted), "left_out_in_train": len(data.ocr) - len(kept),
        # The same verdicts under the supplied-text threshold: what the OCR-read creatives got before it had its own.
        "known_flagged_new_rate_text_threshold": _flagged_below(posted, rows, thresholds.get("new_label")),
        # Whether calibration gave them a novelty score of their own (fitted on OCR-like readings) or the shared one.
        "novelty_score": Thresholds.from_json(thresholds).ocr_novelty_score,
        "thresholds": {key: thresholds.get(key) for key in ("new_label", "ocr_new_label", "wrong_label",
                                                             "ocr_wrong_label")},
        "by_held_out_label": novelty_by_label(posted, rows),
    }


def _flagged_below(posted: list[dict[str, Any]], rows: dict[str, Creative], threshold: float | None) -> float | None:
    """The share of known-label creatives whose fit is below `threshold`."""
    scored = [((rows[p["id"]].prediction or {}).get("scores") or {}).get("fit") for p in posted if not p["novel"]]
    fits = [float(f) for f in scored if f is not None]
    if threshold is None or not fits:
        return None
    return sum(f < threshold for f in fits) / len(fits)
