"""Model versions: listing them, promoting one, rolling back, and training a candidate (`ctax train`)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ctax.cli.common import console, database, fail, flush, settings
from ctax.enums import RunStatus, VersionStatus
from ctax.evaluation.progress_view import TrainingView
from ctax.store.models import ModelVersion, TrainingRun
from ctax.store.repos import runs, versions
from ctax.store.session import Database, Session
from ctax.training.progress import RunProgress
from ctax.versions import registry

models_app = typer.Typer(help="Model versions.", no_args_is_help=True)

HEADLINE = ("top1", "novelty_auroc", "wrong_label_auroc")
POLL_S = 0.5  # how often `ctax train` reads its run's row (a cheap read; the training reports steps as they end)


def _metric_cells(metrics: dict[str, Any]) -> list[str]:
    return [f"{metrics[k]:.3f}" if isinstance(metrics.get(k), float) else "-" for k in HEADLINE]


@models_app.command("list")
def models_list() -> None:
    """Model versions with their metrics."""
    table = Table("version", "status", "top-1", "novelty AUROC", "wrong-label AUROC", "created",
                  caption="own held-out split; 'vs' rows: the same split, measured when the candidate was trained")
    table.columns[0].no_wrap = True
    with database(settings()).read() as session:
        for v in reversed(versions.newest_first(session)):
            table.add_row(v.id, v.status, *_metric_cells(v.metrics or {}), f"{v.created_at:%m-%d %H:%M}")
            comparison = v.comparison or {}
            if comparison.get("candidate") and comparison.get("active"):
                verdict = "better" if comparison.get("better") else "not better"
                pairs = zip(_metric_cells(comparison["candidate"]), _metric_cells(comparison["active"]), strict=True)
                table.add_row(f"  vs {comparison.get('against')}", verdict, *(f"{c} / {a}" for c, a in pairs), "",
                              style="dim")
    Console(width=max(Console().width, 100)).print(table)


def _make_active(choose: Callable[[Session], ModelVersion], force: bool, message: str) -> None:
    current = settings()
    db = database(current)
    try:
        with db.write() as session:
            version = choose(session)
            registry.promote(session, version, force)
            version_id = version.id
    except Exception as exc:
        fail(exc)
    console.print(message.format(version=version_id))
    flush(current, db)


@models_app.command("promote")
def models_promote(version_id: str, force: bool = False) -> None:
    """Make a version active (refused when worse, unless --force)."""
    _make_active(lambda session: registry.get_version(session, version_id), force,
                 "{version} is active; the worker swaps the index to it now")


@models_app.command("rollback")
def models_rollback() -> None:
    """Re-activate the version that was active before the current one (like POST /v1/models/rollback)."""
    _make_active(registry.rollback_target, True, "{version} is active again; the worker swaps the index back now")


def train(epochs: Annotated[int | None, typer.Option(help="text-tower epochs")] = None,
          image_epochs: Annotated[int | None, typer.Option(help="image-tower epochs")] = None,
          wait: Annotated[bool, typer.Option(help="follow the run's progress until it ends")] = True) -> None:
    """Start a training run on the worker's training queue (like POST /v1/training/runs)."""
    current = settings()
    db = database(current)
    params = {k: v for k, v in {"epochs": epochs, "image_epochs": image_epochs}.items() if v is not None}
    with db.write() as session:
        run_id = runs.queue(session, params).id
    flush(current, db)
    console.print(f"training run {run_id} queued (needs a worker: `ctax worker --role train`)")
    if not wait:
        return
    run = _follow(db, run_id)
    if run.status == RunStatus.FAILED:
        fail(RuntimeError(f"training run {run_id} failed: {run.error}"))
    console.print(f"candidate {run.candidate_version_id}: {json.dumps(run.metrics, default=str)}")
    console.print(f"promote it with `ctax models promote {run.candidate_version_id}`")


def _follow(db: Database, run_id: int) -> TrainingRun:
    """Shows the run's progress until it ends, then, if it succeeded, until its candidate's index is built."""
    with TrainingView(console) as view:
        view.note("waiting for a training worker")
        run = _until_finished(db, run_id, view)
        if run.status == RunStatus.SUCCEEDED:
            # Promotion needs the candidate's index collections, which the labelling worker builds next.
            view.note(f"the labelling worker builds {run.candidate_version_id}'s index")
            _until_indexed(db, run.candidate_version_id)
    return run


def _until_finished(db: Database, run_id: int, view: TrainingView) -> TrainingRun:
    while True:
        with db.read() as session:
            run = runs.get(session, run_id)
            assert run is not None
            if run.status != RunStatus.QUEUED:  # the row's phase, step, loss and time left, as the API shows them
                view(RunProgress(run.progress, run.stage or run.status, run.phase or "", run.step, run.total_steps,
                                 run.loss, run.eta_s))
            if run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
                return run
        time.sleep(POLL_S)


def _until_indexed(db: Database, version_id: str | None) -> None:
    while True:
        with db.read() as session:
            version = versions.get(session, version_id) if version_id is not None else None
            if version is None or version.index_ready or version.status == VersionStatus.FAILED:
                return
        time.sleep(POLL_S)
