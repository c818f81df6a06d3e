"""The OCR-read creatives of an evaluated service scored by both novelty scores of its version, from the same
evidence: the version's own OCR score (Thresholds.ocr_novelty_model, where calibration chose one) and the shared
supplied-text score. An A/B within one version, so that training noise between runs does not enter it.

    python -m bench.pitt_eval --only trained --seeds 13          # keeps bench/out/eval-trained-s13
    python -m bench.ocr_novelty_scores bench/out/eval-trained-s13 --json ab.json

Each OCR creative's evidence is read as the novelty sweep reads it (`Labeller.evidence` against the whole traffic
window as it stands at the end of the evaluation), once with its traffic and once without; the novelty AUROC
(held-out-label OCR texts against known-label ones) is printed for each score both ways.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from ctax.config import Settings
from ctax.jobs import LABEL_QUEUE
from ctax.labelling.calibration import auroc
from ctax.labelling.trigger import OCR, Evidence, Trigger
from ctax.store.models import Creative
from ctax.worker.runtime import Runtime
from tests.support import SHARED_DATA

console = Console()


def compare(work: Path, ocr_test: Path, traffic_window: int) -> list[dict[str, Any]]:
    """Rows of (score, traffic, novelty AUROC, n, n_novel) for the OCR creatives `ctax eval` stored in `work`."""
    truth = {row["id"]: row["label"] for row in map(json.loads, ocr_test.read_text().splitlines()) if row}
    settings = Settings(data_dir=work / "var", database_url=None, qdrant_url=None, broker_url=None,
                        novelty_traffic_window=traffic_window)
    rt = Runtime(settings, [LABEL_QUEUE], owns_index=True)
    rt.start()
    try:
        labeller = rt.labeller()
        with rt.db.read() as session:
            stored = [c for c in session.scalars(select(Creative).where(Creative.external_id.like("ocr:%")))]
            rows = [(c.id, c.ocr_text or "", c.asserted_label_id, truth[(c.external_id or "")[4:]]) for c in stored]
        paths = {str(labeller.taxonomy.path(label_id)) for label_id in labeller.taxonomy.nodes}
        novel = np.array([label not in paths for *_, label in rows])
        ids = [row[0] for row in rows]
        vectors = np.asarray(labeller.space.encode_texts([row[1] for row in rows]), dtype=np.float32)
        traffic, windows = labeller.full_window_traffic(vectors, ids)
        with_traffic = labeller.evidence(vectors, [row[2] for row in rows], traffic, windows,
                                         sources=[OCR] * len(rows))
        thresholds = labeller.trigger.thresholds
        scores = {"their own" if thresholds.ocr_novelty_model else "their own (none: shared)": labeller.trigger,
                  "shared": Trigger(labeller.taxonomy, replace(thresholds, ocr_novelty_model=None))}
        out = []
        for traffic_read, evidence in (("final window", with_traffic),
                                       ("none", [replace(e, traffic=(), traffic_window=0) for e in with_traffic])):
            for name, trigger in scores.items():
                out.append({"score": name, "traffic": traffic_read, "n": len(rows), "n_novel": int(novel.sum()),
                            "novelty_auroc": _auroc(trigger, evidence, novel)})
        return out
    finally:
        rt.stop()
        rt.index.client.close()


def _auroc(trigger: Trigger, evidence: list[Evidence], novel: np.ndarray) -> float | None:
    novelty = np.array([-trigger.fit(e) for e in evidence])
    return auroc(novelty[novel], novelty[~novel])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work", type=Path, help="an evaluation's work folder (bench/out/eval-trained-s13)")
    parser.add_argument("--ocr-test", type=Path, default=SHARED_DATA / "pitt_ads_ocr_dev.jsonl")
    parser.add_argument("--traffic-window", type=int, default=5000, help="the evaluation's traffic window")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    rows = compare(args.work, args.ocr_test, args.traffic_window)
    table = Table(title=f"OCR novelty AUROC by score, {args.work.name}")
    columns = ("score", "traffic", "novelty_auroc", "n", "n_novel")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns])
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
