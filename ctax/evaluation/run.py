"""`ctax eval`: the evaluation contract of DESIGN.md, run through the service's own code.

Part of the command-line layer (it drives the worker's labelling code directly, as `ctax run` would drive
it through the queue): a throwaway embedded service in a work directory, the taxonomy less N held-out leaves,
training rows less theirs, the same training run the worker runs, then every test row posted as a creative
(validated like the API does) and labelled by the worker's task code.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import Progress

from ctax.config import Settings
from ctax.creatives.intake import CreativeSubmission, create_creative
from ctax.dataset.importing import BadLine, Row, import_labelled, scan_rows
from ctax.embedding.space import SharedSpace
from ctax.enums import RunStatus
from ctax.errors import InvalidInput
from ctax.evaluation.figures import figure_data
from ctax.evaluation.ocr import OcrRow, ocr_block, read_ocr_rows
from ctax.evaluation.posting import post_rows
from ctax.evaluation.progress_view import TrainingView
from ctax.evaluation.scoring import flag_of, novelty_by_label, score
from ctax.jobs import LABEL_QUEUE, TRAIN_QUEUE
from ctax.labelling.sweep import sweep
from ctax.store.migrate import upgrade
from ctax.store.models import TrainingRun
from ctax.store.repos import creatives
from ctax.taxonomy import catalog
from ctax.taxonomy.importers import ImportResult, parse_taxonomy_file
from ctax.taxonomy.paths import LabelPath
from ctax.training.pipeline import run_training
from ctax.versions import registry
from ctax.versions.lifecycle import activate, build

if TYPE_CHECKING:
    from ctax.store.session import Session
    from ctax.worker.runtime import Runtime

console = Console(stderr=True)
MIN_ROWS_TO_HOLD_OUT = 20


@dataclass
class EvalOptions:
    taxonomy: Path
    train: Path
    test: Path
    holdout_labels: int = 0
    wrong_label_rate: float = 0.2
    seed: int = 13
    no_train: bool = False
    epochs: int | None = None
    work_dir: Path | None = None
    skip_invalid: bool = False
    verdicts: bool = False  # also return each test creative's flags, in posting order (bench.arrival's bursts)
    # OCR texts of ad images, one {"id", "text", "label"} per line (pitt_ads_ocr_dev.jsonl): labelled as image ads
    # whose text OCR read, after the test stream, and reported apart as the `ocr` block.
    ocr_test: Path | None = None
    # The labels to hold out, chosen by the caller instead of choose_holdout on these files: bench.arrival holds out
    # the same labels in every stream of one split, though a trickle thins their creatives and a burst adds 200 of
    # one known label (either can move a label across MIN_ROWS_TO_HOLD_OUT, and choose_holdout would draw others).
    held_out: tuple[str, ...] | None = None


def choose_holdout(paths: set[LabelPath], rows: list[Row], n: int, seed: int) -> list[LabelPath]:
    if n <= 0:
        return []
    counts = Counter(row.label for row in rows)
    parents = {ancestor for path in paths for ancestor in path.ancestors()}
    leaves = sorted(p for p in paths if p not in parents and counts[p] >= MIN_ROWS_TO_HOLD_OUT)
    if len(leaves) < n:
        raise ValueError(f"only {len(leaves)} leaf labels have {MIN_ROWS_TO_HOLD_OUT}+ rows; cannot hold out {n}")
    return sorted(random.Random(seed).sample(leaves, n))


def _write_rows(rows: list[Row], path: Path) -> None:
    with path.open("w") as handle:
        for row in rows:
            data: dict[str, Any] = {"id": row.external_id, "texts": row.texts, "label": str(row.label)}
            if row.image is not None:
                data["image"] = str(row.image.resolve())
            if row.campaign is not None:
                data["campaign"] = row.campaign
            handle.write(json.dumps(data) + "\n")


@dataclass
class _Split:
    """The evaluation's data: the taxonomy and training rows less the held-out labels, and every test row."""

    labels: ImportResult
    train: list[Row]
    test: list[Row]
    held_out: list[LabelPath]
    invalid: dict[str, list[BadLine]]
    ocr: list[OcrRow]


def run_eval(options: EvalOptions, base: Settings | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    # Every bad line of both files is found (and, without skip_invalid, refused) before any service is made.
    data = _split(options, base or Settings())
    work, settings = _service_settings(options, base)
    hidden = set(data.held_out)
    console.print(f"holding out {len(data.held_out)} labels: {', '.join(map(str, data.held_out)) or '-'}")

    # Import the taxonomy and the training data the way an operator would, through the worker's runtime.
    from ctax.worker.runtime import Runtime

    rt = Runtime(settings, [LABEL_QUEUE, TRAIN_QUEUE], owns_index=True)
    with rt.db.write() as session:
        catalog.import_labels(session, data.labels)
        filtered = work / "train.jsonl"
        _write_rows(data.train, filtered)
        import_labelled(session, rt.blobs, settings, filtered)
    rt.start()  # bootstraps the pretrained version: exemplars indexed, thresholds calibrated on the train rows

    train_seconds = 0.0 if options.no_train else _train_and_activate(rt, settings, options)
    posted, ids = _post_test_rows(rt, settings, data.test, hidden, options)
    _label(rt, settings, posted)
    # The verdicts as each creative arrived, then after the novelty sweep the service runs as traffic accumulates
    # (labelling/sweep.py), run once more here as the worker's next one would: the headline figures are the final
    # verdicts.
    swept = (asdict(sweep(rt.db, rt.labeller(), settings.novelty_sweep_young, refresh=settings.novelty_sweep_refresh))
             if settings.novelty_traffic_window > 0 else {})
    with rt.db.read() as session:
        rows = {c.id: c for c in creatives.by_ids(session, [p["id"] for p in posted])}
        active = registry.active_version(session)
        thresholds = active.thresholds if active else {}
        version_name = active.id if active else None
        artefact_dir = active.artefact_dir if active else None
    ocr = ocr_block(rt, settings, data, options, _label) if data.ocr else None
    rt.stop()
    rt.index.client.close()
    metrics = score(posted, rows, ids)
    if options.verdicts:
        # duplicate_of: the external id of the group's root where the creative joined a near-duplicate group.
        metrics["verdicts"] = [{"external_id": rows[p["id"]].external_id, "novel": p["novel"],
                                "flag": flag_of(rows[p["id"]], False), "flag_at_arrival": flag_of(rows[p["id"]], True),
                                "duplicate_of": _external_id(rows, rows[p["id"]].duplicate_of)}
                               for p in posted]
    first = score(posted, rows, ids, at_arrival=True)
    # The verdicts as each creative arrived, before any sweep: what a reviewer sees first.
    at_arrival = {key: first[key] for key in ("novelty_auroc", "novelty_precision", "novelty_recall", "flags",
                                              "known_flagged_new_rate")}
    at_arrival["by_held_out_label"] = novelty_by_label(posted, rows, at_arrival=True)
    return {**metrics, **({"ocr": ocr} if ocr is not None else {}),
            "n_train": len(data.train), "n_test": len(data.test),
            "at_arrival": at_arrival, "novelty_sweep": swept, "by_held_out_label": novelty_by_label(posted, rows),
            "held_out_labels": [str(p) for p in data.held_out], "seconds": round(time.perf_counter() - started, 1),
            "train_seconds": round(train_seconds, 1), "model_version": version_name, "trained": not options.no_train,
            "wrong_label_rate": options.wrong_label_rate, "seed": options.seed,
            "thresholds": {k: v for k, v in (thresholds or {}).items() if k != "per_label_wrong"},
            "work_dir": str(work), "artefact_dir": artefact_dir,
            "figures": figure_data(posted, rows, ids, thresholds or {}, metrics),
            "invalid_lines": {name: [asdict(b) for b in bad] for name, bad in data.invalid.items() if bad}}


def _external_id(rows: dict[str, Any], creative_id: str | None) -> str | None:
    """A group root's external id (its own id where it was not among the posted rows)."""
    if creative_id is None:
        return None
    return rows[creative_id].external_id if creative_id in rows else creative_id


def _service_settings(options: EvalOptions, base: Settings | None) -> tuple[Path, Settings]:
    """A throwaway embedded service in an empty work folder, its database migrated."""
    work = options.work_dir or Path(tempfile.mkdtemp(prefix="ctax-eval-"))
    if work.exists() and any(work.iterdir()):
        # A folder kept from an earlier evaluation still holds its labels and training rows: the held-out labels
        # of this run would be in its taxonomy and its training data, and the metrics would be meaningless.
        raise ValueError(f"work folder {work} is not empty (an earlier evaluation's service?); "
                         "give an empty or new folder")
    # Its final novelty AUROC reads every creative's fit, which the service's sweep refreshes only where it may raise.
    overrides = {"data_dir": work / "var", "database_url": None, "qdrant_url": None, "broker_url": None,
                 "novelty_sweep_refresh": True}
    settings = (base or Settings()).model_copy(update=overrides)
    settings = Settings(**{**settings.model_dump(), **overrides})
    settings.ensure_dirs()
    upgrade(settings.sqlalchemy_url)
    return work, settings


def _split(options: EvalOptions, limits: Settings) -> _Split:
    parsed = parse_taxonomy_file(options.taxonomy.read_bytes())
    scans = {"train": scan_rows(options.train, limits), "test": scan_rows(options.test, limits)}
    bad = [(name, line) for name, scan in scans.items() for line in scan.bad]
    if bad and not options.skip_invalid:
        raise InvalidEvalLines(bad)
    train_rows, test_rows = scans["train"].rows, scans["test"].rows
    if not train_rows or not test_rows:
        raise InvalidInput(f"{options.train.name if not train_rows else options.test.name} holds no usable rows")
    if options.held_out is not None:
        held_out = sorted(LabelPath.parse(path) for path in options.held_out)
        if unknown := [str(p) for p in held_out if p not in {item.path for item in parsed.labels}]:
            raise InvalidInput(f"held-out labels not in {options.taxonomy.name}: {', '.join(unknown)}")
    else:
        held_out = choose_holdout({item.path for item in parsed.labels}, train_rows + test_rows,
                                  options.holdout_labels, options.seed)
    hidden = set(held_out)
    kept = ImportResult([item for item in parsed.labels if item.path not in hidden], parsed.warnings)
    return _Split(kept, [row for row in train_rows if row.label not in hidden], test_rows, held_out,
                  {name: scan.bad for name, scan in scans.items()},
                  read_ocr_rows(options.ocr_test) if options.ocr_test else [])


class InvalidEvalLines(InvalidInput):
    """Bad lines in the training or test file, each with its file ("train" or "test"), line number and reason."""

    def __init__(self, bad: list[tuple[str, BadLine]]) -> None:
        name, first = bad[0]
        super().__init__(f"{len(bad)} invalid line{'s' if len(bad) > 1 else ''} ({name} line {first.line}: "
                         f"{first.reason}); nothing was evaluated. Fix them, or pass --skip-invalid")
        self.bad = bad


def _train_and_activate(rt: Runtime, settings: Settings, options: EvalOptions) -> float:
    """The same training run the worker runs, its version built and made active; returns the seconds it took."""
    t0 = time.perf_counter()
    with rt.db.write() as session:
        params: dict[str, Any] = {"seed": options.seed}
        if options.epochs:
            params["epochs"] = options.epochs
        run = TrainingRun(status=RunStatus.RUNNING, params=params)
        session.add(run)
        session.flush()
        run_id = run.id
    with TrainingView(console) as view:  # step, loss and time left while it trains: it may take many minutes
        version_id = run_training(rt.db, settings, rt.blobs, run_id,
                                  lambda d: SharedSpace.load(Path(d), rt.device), rt.device, listeners=(view,))
    with rt.db.read() as session:
        directory = Path(registry.get_version(session, version_id).artefact_dir)
    space = rt.space(version_id, directory)
    build(rt.db, space, rt.index, rt.blobs, rt.ocr)
    with rt.db.write() as session:
        version = registry.get_version(session, version_id)
        version.index_ready = True
        registry.mark_active(session, version)
    activate(rt.db, space, rt.index, rt.blobs, rt.ocr, settings.novelty_traffic_window)
    return time.perf_counter() - t0


def _post_test_rows(rt: Runtime, settings: Settings, test_rows: list[Row], hidden: set[LabelPath],
                    options: EvalOptions) -> tuple[list[dict[str, Any]], dict[LabelPath, int]]:
    """Every test row posted as a creative, validated as the API does; a fraction of the known ones carries a wrong
    asserted label. Returns what was posted and the active labels' ids by path."""

    def create(session: Session, row: Row, asserted: LabelPath | None, _asserted_id: int | None) -> str:
        sub = CreativeSubmission(texts=row.texts, image=row.image.read_bytes() if row.image else None,
                                 asserted_label=str(asserted) if asserted else None, external_id=row.external_id,
                                 campaign=row.campaign)
        creative, _ = create_creative(session, rt.blobs, settings, sub, None)
        return creative.id

    return post_rows(rt, test_rows, hidden, random.Random(options.seed + 1), options.wrong_label_rate, create)


def _label(rt: Runtime, settings: Settings, posted: list[dict[str, Any]]) -> None:
    """The posted creatives labelled by the worker's task code, a batch at a time, pipelined as the service's
    worker runs it (CTAX_LABEL_PIPELINE), every batch stored before this returns."""
    from ctax.worker.tasks.label import run as label_batch

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("labelling test creatives", total=len(posted))
        size = settings.label_batch_size
        for start in range(0, len(posted), size):
            label_batch(rt, [p["id"] for p in posted[start : start + size]], pipelined=rt.pipelines)
            bar.advance(task, min(size, len(posted) - start))
        rt.finisher.settle()
