"""The OCR-read creatives of an evaluated service scored by both novelty scores of its version, from the same
evidence: the version's own OCR score (Thresholds.ocr_novelty_model, where calibration chose one) and the shared
supplied-text score. An A/B within one version, so that training noise between runs does not enter it.

    python -m bench.pitt_eval --only trained --seeds 13          # keeps bench/out/eval-trained-s13
    python -m bench.ocr_novelty_scores bench/out/eval-trained-s13 --json ab.json
    python -m bench.ocr_novelty_scores bench/out/eval-trained-s13 --recalibrate --json ab.json

Each OCR creative's evidence is read as the novelty sweep reads it (`Labeller.evidence` against the whole traffic
window as it stands at the end of the evaluation), once with its traffic and once without; the novelty AUROC
(held-out-label OCR texts against known-label ones) is printed for each score both ways, and for the version's own
thresholds the share of known-label OCR texts flagged `new_label` and of held-out-label ones (recall).

`--recalibrate` also scores them with the version calibrated again by this checkout's code: its trained towers,
the training run's own validation split, as `ctax train` calibrated it. Run from two checkouts on the same folder,
it compares two calibrations on the same towers in minutes, where `bench.pitt_eval` would train twice; run from
the checkout that made the folder, it gives back the stored thresholds (a check that nothing else moved).
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
from ctax.embedding.space import SharedSpace
from ctax.enums import Flag
from ctax.jobs import LABEL_QUEUE
from ctax.labelling.calibration import auroc
from ctax.labelling.trigger import OCR, Evidence, Thresholds, Trigger
from ctax.store.models import Creative, TrainingRun
from ctax.training.snapshot import snapshot, split
from ctax.training.validation import evaluate_space
from ctax.versions import registry
from ctax.worker.runtime import Runtime
from tests.support import SHARED_DATA

console = Console()


def compare(work: Path, ocr_test: Path, traffic_window: int, recalibrate: bool = False) -> list[dict[str, Any]]:
    """Rows of (score, traffic, novelty AUROC, known and held-out flagged rates, n, n_novel) for the OCR creatives
    `ctax eval` stored in `work`."""
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
        if recalibrate:
            scores["recalibrated (this checkout)"] = Trigger(labeller.taxonomy, _recalibrated(rt))
        out = []
        for traffic_read, evidence in (("final window", with_traffic),
                                       ("none", [replace(e, traffic=(), traffic_window=0) for e in with_traffic])):
            for name, trigger in scores.items():
                # The shared score is not what the OCR threshold was set on: its flagged rates would mean nothing.
                flagged = _flagged(trigger, evidence) if name != "shared" and traffic_read == "final window" else None
                out.append({"score": name, "traffic": traffic_read, "n": len(rows), "n_novel": int(novel.sum()),
                            "novelty_auroc": _auroc(trigger, evidence, novel),
                            "known_flagged_new_rate": None if flagged is None else float(flagged[~novel].mean()),
                            "novel_flagged_rate": None if flagged is None else float(flagged[novel].mean()),
                            "ocr_new_label": trigger.thresholds.ocr_new_label})
        return out
    finally:
        rt.stop()
        rt.index.client.close()


def _recalibrated(rt: Runtime) -> Thresholds:
    """The active (trained) version's thresholds as this checkout's calibration sets them: its torch towers, the
    training run's snapshot and split (the eval's stream labels no creative by hand, so the snapshot is the
    same), as the training pipeline calibrated it."""
    with rt.db.read() as session:
        snap = snapshot(session)
        run = session.scalars(select(TrainingRun).order_by(TrainingRun.id)).first()
        version = registry.active_version(session)
        if run is None or version is None:
            raise SystemExit(f"{rt.settings.data_dir}: no training run or no active version to recalibrate")
        seed = int((run.params or {}).get("seed", rt.settings.train_seed))
        directory = Path(version.artefact_dir)
    train, validation = split(snap.examples, rt.settings.validation_fraction, seed)
    thresholds, _ = evaluate_space(SharedSpace.load(directory, "cpu"), snap, train, validation, rt.blobs,
                                   rt.settings)
    return thresholds


def _flagged(trigger: Trigger, evidence: list[Evidence]) -> np.ndarray:
    return np.array([trigger.decide(e).flag == Flag.NEW_LABEL for e in evidence])


def _auroc(trigger: Trigger, evidence: list[Evidence], novel: np.ndarray) -> float | None:
    novelty = np.array([-trigger.fit(e) for e in evidence])
    return auroc(novelty[novel], novelty[~novel])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("work", type=Path, help="an evaluation's work folder (bench/out/eval-trained-s13)")
    parser.add_argument("--ocr-test", type=Path, default=SHARED_DATA / "pitt_ads_ocr_dev.jsonl")
    parser.add_argument("--traffic-window", type=int, default=5000, help="the evaluation's traffic window")
    parser.add_argument("--recalibrate", action="store_true",
                        help="also score with the version calibrated again by this checkout's code")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    rows = compare(args.work, args.ocr_test, args.traffic_window, args.recalibrate)
    table = Table(title=f"OCR novelty AUROC by score, {args.work.name}")
    columns = ("score", "traffic", "novelty_auroc", "known_flagged_new_rate", "novel_flagged_rate", "ocr_new_label",
               "n", "n_novel")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*[f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns])
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
