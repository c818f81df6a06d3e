"""The `ctax` command line: the outermost layer. It may start the API and the worker by import string."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from ctax.config import Settings
from ctax.jobs import INDEX_QUEUE, LABEL_GPU_QUEUE, TRAIN_QUEUE
from ctax.store.session import Database

app = typer.Typer(help="ctax: label ad creatives with taxonomy paths.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema (Alembic).", no_args_is_help=True)
labels_app = typer.Typer(help="The taxonomy.", no_args_is_help=True)
creatives_app = typer.Typer(help="Creatives and labelled data.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
models_app = typer.Typer(help="Model versions.", no_args_is_help=True)
proposals_app = typer.Typer(help="New-label proposals (discovery).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(labels_app, name="labels")
app.add_typer(creatives_app, name="creatives")
app.add_typer(keys_app, name="keys")
app.add_typer(models_app, name="models")
app.add_typer(proposals_app, name="proposals")
console = Console(stderr=True)


def _settings() -> Settings:
    settings = Settings()
    settings.ensure_dirs()
    return settings


def _factory(settings: Settings):  # type: ignore[no-untyped-def]

    return Database(settings.sqlalchemy_url)


def _flush(settings: Settings, db: Any) -> None:
    """Send the jobs this command queued (the API's dispatcher would too, if it is running)."""
    from ctax.api.dispatch import Dispatcher

    try:
        Dispatcher(settings, db).flush()
    except Exception as exc:  # the outbox keeps them; the API sends them when the broker answers
        console.print(f"[yellow]queued jobs stay in the outbox for now: {exc}[/yellow]")


def _fail(exc: Exception) -> NoReturn:
    from ctax.errors import CtaxError

    message = exc.message if isinstance(exc, CtaxError) else str(exc)
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Create or migrate the schema."""
    from ctax.store.migrate import upgrade

    settings = _settings()
    upgrade(settings.sqlalchemy_url, revision)
    console.print(f"database at {settings.sqlalchemy_url.split('@')[-1]} is at {revision}")


@app.command()
def api(host: str | None = None, port: int | None = None, workers: int = 1) -> None:
    """Serve the REST API (uvicorn)."""
    import uvicorn

    settings = _settings()
    uvicorn.run(
        "ctax.api.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level="info",
    )


ROLES = {"label": ["ctax.label", INDEX_QUEUE], "gpu": [LABEL_GPU_QUEUE, INDEX_QUEUE], "train": [TRAIN_QUEUE]}


@app.command()
def worker(
    role: Annotated[str, typer.Option(help="label (CPU labelling + index), gpu, or train")] = "label",
    queues: Annotated[str | None, typer.Option(help="comma-separated queues, overriding the role")] = None,
    loglevel: str = "info",
) -> None:
    """Run a Celery worker: one process (--pool=solo), models loaded once, on the settings' device.

    GPU hosts run one `ctax worker --role gpu` per GPU (CUDA_VISIBLE_DEVICES=N) with CTAX_DEVICE=cuda."""
    from ctax.worker.app import create_celery

    if role not in ROLES:
        _fail(ValueError(f"role must be one of {', '.join(ROLES)}"))
    settings = _settings()
    names = queues.split(",") if queues else list(ROLES[role])
    if role == "label" and settings.label_queue not in names and not queues:
        names[0] = settings.label_queue
    owns_index = INDEX_QUEUE in names or any(q.startswith("ctax.label") for q in names)
    celery = create_celery(settings, names, owns_index=owns_index)
    celery.worker_main(
        [
            "worker",
            "--pool=solo",
            f"--queues={','.join(names)}",
            f"--loglevel={loglevel}",
            "--hostname",
            f"ctax-{role}-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
        ]
    )


@app.command()
def run(host: str | None = None, port: int | None = None) -> None:
    """Migrate, then run the API, a labelling worker and a training worker until interrupted."""
    settings = _settings()
    from ctax.store.migrate import upgrade

    upgrade(settings.sqlalchemy_url)
    exe = [sys.executable, "-m", "ctax"]
    procs = [
        subprocess.Popen([*exe, "worker", "--role", "label"]),
        subprocess.Popen([*exe, "worker", "--role", "train"]),
        subprocess.Popen([*exe, "api", "--host", host or settings.host, "--port", str(port or settings.port)]),
    ]
    console.print(
        f"ctax running: API on http://{host or settings.host}:{port or settings.port} "
        f"(docs at /docs, review page at /review); data in {settings.data_dir}. Ctrl-C stops."
    )

    def stop(*_: Any) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    try:
        while all(proc.poll() is None for proc in procs):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        stop()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    failed = [proc.args for proc in procs if proc.returncode not in (0, -signal.SIGTERM, None)]
    if failed:
        console.print(f"[red]stopped because a process exited: {failed}[/red]")
        raise typer.Exit(1)


@labels_app.command("import")
def labels_import(path: Path, format: Annotated[str, typer.Option(help="auto, iab_tsv or lines")] = "auto") -> None:
    """Import a taxonomy file (IAB Ad Product Taxonomy TSV, or one label path per line)."""
    from ctax.taxonomy import catalog
    from ctax.taxonomy.importers import parse_taxonomy_file

    settings = _settings()
    db = _factory(settings)
    try:
        result = parse_taxonomy_file(path.read_bytes(), format)  # type: ignore[arg-type]
        with db.write() as session:
            summary = catalog.import_labels(session, result)
    except Exception as exc:
        _fail(exc)
    for warning in summary.warnings:
        console.print(f"[yellow]line {warning['line']}:[/yellow] {warning['message']}")
    console.print(
        f"created {summary.created}, re-activated {summary.reactivated}, unchanged {summary.unchanged}, "
        f"IAB ids set {summary.iab_ids_set}"
    )
    _flush(settings, db)


@creatives_app.command("import")
def creatives_import(
    path: Path, create_labels: Annotated[bool, typer.Option(help="add unknown label paths")] = False
) -> None:
    """Import labelled creatives from JSONL ({"id", "texts" or "text", "label", optional "image"})."""
    from ctax.dataset.importing import import_labelled
    from ctax.store.blobs import BlobStore

    settings = _settings()
    db = _factory(settings)
    try:
        with db.write() as session:
            report = import_labelled(session, BlobStore(settings.blob_dir), settings, path, create_labels=create_labels)
    except Exception as exc:
        _fail(exc)
    console.print(
        f"imported {report.imported}, already present {report.skipped}, labels created {report.labels_created}"
    )
    _flush(settings, db)


@creatives_app.command("export")
def creatives_export(
    path: Path,
    format: Annotated[str, typer.Option(help="jsonl (the import format) or csv")] = "jsonl",
    source: Annotated[str | None, typer.Option(help="only annotations from import, review or proposal")] = None,
    images: Annotated[bool, typer.Option(help="jsonl: copy images to images/ beside the file")] = False,
) -> None:
    """Export labelled data: the latest annotation of each creative, with label paths and IAB ids."""
    from ctax.dataset import export
    from ctax.store.blobs import BlobStore

    if format not in ("jsonl", "csv"):
        _fail(ValueError("format must be jsonl or csv"))
    settings = _settings()
    blobs = BlobStore(settings.blob_dir)
    count = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with _factory(settings).read() as session, path.open("w", encoding="utf-8") as out:
        if format == "csv":
            out.write(export.csv_header())
        for row in export.labelled_rows(session, source):
            if format == "csv":
                out.write(export.csv_line(row))
            else:
                name = export.image_name(row) if images else None
                if name is not None:
                    (path.parent / name).parent.mkdir(parents=True, exist_ok=True)
                    (path.parent / name).write_bytes(blobs.get(row.image_sha256 or ""))
                out.write(export.jsonl_line(row, image=name))
            count += 1
    console.print(f"exported {count} labelled creatives to {path}")


@proposals_app.command("discover")
def proposals_discover(min_cluster_size: int = 5) -> None:
    """Ask the labelling worker to cluster the open new_label items into proposals now."""
    from ctax.jobs import DISCOVER
    from ctax.store.outbox import enqueue

    settings = _settings()
    db = _factory(settings)
    with db.write() as session:
        enqueue(session, DISCOVER, {"reason": "requested (cli)", "min_cluster_size": min_cluster_size})
    console.print("discovery queued; proposals appear in the review page and GET /v1/proposals")
    _flush(settings, db)


@proposals_app.command("list")
def proposals_list(status: str = "open") -> None:
    """Proposals with their suggested path, size and terms."""
    from ctax.review import proposals
    from ctax.taxonomy import catalog

    settings = _settings()
    table = Table("id", "status", "suggested path", "size", "cohesion", "terms")
    with _factory(settings).read() as session:
        rows = proposals.list_proposals(session, status)
        parents = catalog.labels_by_ids(session, [r.suggested_parent_id for r in rows if r.suggested_parent_id])
        for row in rows:
            parent = parents.get(row.suggested_parent_id or -1)
            table.add_row(
                str(row.id),
                row.status,
                f"{parent.path}/{row.suggested_name}" if parent else row.suggested_name,
                str(len(row.member_ids)),
                f"{row.cohesion:.2f}" if row.cohesion is not None else "-",
                ", ".join(row.terms[:5]),
            )
    Console().print(table)


@keys_app.command("create")
def keys_create(name: str, role: str) -> None:
    """Create an API key (printed once)."""
    from ctax.store.keys import create_key

    settings = _settings()
    try:
        with _factory(settings).write() as session:
            _, key = create_key(session, name, role)
    except Exception as exc:
        _fail(exc)
    typer.echo(key)


@models_app.command("list")
def models_list() -> None:
    """Model versions with their metrics."""
    from sqlalchemy import select

    from ctax.store.models import ModelVersion

    settings = _settings()
    headline = ("top1", "novelty_auroc", "wrong_label_auroc")
    table = Table("version", "status", "top-1", "novelty AUROC", "wrong-label AUROC", "created",
                  caption="own held-out split; 'vs' rows: the same split, measured when the candidate was trained")
    table.columns[0].no_wrap = True

    def cells(metrics: dict[str, object]) -> list[str]:
        return [f"{metrics[k]:.3f}" if isinstance(metrics.get(k), float) else "-" for k in headline]

    with _factory(settings).read() as session:
        for v in session.scalars(select(ModelVersion).order_by(ModelVersion.seq)):
            table.add_row(v.id, v.status, *cells(v.metrics or {}), f"{v.created_at:%m-%d %H:%M}")
            comparison = v.comparison or {}
            if comparison.get("candidate") and comparison.get("active"):
                verdict = "better" if comparison.get("better") else "not better"
                table.add_row(f"  vs {comparison.get('against')}", verdict, *(
                    f"{c} / {a}" for c, a in zip(cells(comparison["candidate"]), cells(comparison["active"]),
                                                 strict=True)), "", style="dim")
    Console(width=max(Console().width, 100)).print(table)


def _make_active(choose: Callable[[Any], Any], force: bool, message: str) -> None:
    from ctax.versions import registry

    settings = _settings()
    db = _factory(settings)
    try:
        with db.write() as session:
            version = choose(session)
            registry.promote(session, version, force)
            version_id = version.id
    except Exception as exc:
        _fail(exc)
    console.print(message.format(version=version_id))
    _flush(settings, db)


@models_app.command("promote")
def models_promote(version_id: str, force: bool = False) -> None:
    """Make a version active (refused when worse, unless --force)."""
    from ctax.versions import registry

    _make_active(lambda session: registry.get_version(session, version_id), force,
                 "{version} is active; the worker swaps the index to it now")


@models_app.command("rollback")
def models_rollback() -> None:
    """Re-activate the version that was active before the current one (like POST /v1/models/rollback)."""
    from ctax.versions import registry

    _make_active(registry.rollback_target, True, "{version} is active again; the worker swaps the index back now")


@app.command()
def train(epochs: Annotated[int | None, typer.Option(help="text-tower epochs")] = None,
          image_epochs: Annotated[int | None, typer.Option(help="image-tower epochs")] = None,
          wait: Annotated[bool, typer.Option(help="follow the run's progress until it ends")] = True) -> None:
    """Start a training run on the worker's training queue (like POST /v1/training/runs)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ctax.jobs import TRAIN
    from ctax.store.models import ModelVersion, TrainingRun
    from ctax.store.outbox import enqueue

    settings = _settings()
    db = _factory(settings)
    params = {k: v for k, v in {"epochs": epochs, "image_epochs": image_epochs}.items() if v is not None}
    with db.write() as session:
        run = TrainingRun(status="queued", params=params)
        session.add(run)
        session.flush()
        enqueue(session, TRAIN, run.id)
        run_id = run.id
    _flush(settings, db)
    console.print(f"training run {run_id} queued (needs a worker: `ctax worker --role train`)")
    if not wait:
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("waiting for a training worker", total=1.0)
        while True:
            with db.read() as session:
                run = session.get(TrainingRun, run_id)
                assert run is not None
                bar.update(task, completed=run.progress, description=(run.stage or run.status)[:70])
                if run.status in ("succeeded", "failed"):
                    break
            time.sleep(1)
        if run.status == "succeeded":
            # Promotion needs the candidate's index collections, which the labelling worker builds next.
            bar.update(task, description=f"the labelling worker builds {run.candidate_version_id}'s index")
            while True:
                with db.read() as session:
                    version = session.get(ModelVersion, run.candidate_version_id)
                    if version is None or version.index_ready or version.status == "failed":
                        break
                time.sleep(1)
    if run.status == "failed":
        _fail(RuntimeError(f"training run {run_id} failed: {run.error}"))
    console.print(f"candidate {run.candidate_version_id}: {json.dumps(run.metrics, default=str)}")
    console.print(f"promote it with `ctax models promote {run.candidate_version_id}`")


@app.command("eval")
def evaluate(taxonomy: Annotated[Path, typer.Option(help="IAB TSV or one path per line")],
             train: Annotated[Path, typer.Option(help="labelled JSONL to train on")],
             test: Annotated[Path, typer.Option(help="labelled JSONL to evaluate on")],
             json_out: Annotated[Path, typer.Option("--json", help="where to write the metrics")],
             holdout_labels: Annotated[int, typer.Option(help="leaf labels hidden from taxonomy and training")] = 0,
             wrong_label_rate: Annotated[float, typer.Option(help="share of test rows with a wrong asserted label")]
             = 0.2,
             seed: int = 13,
             no_train: Annotated[bool, typer.Option(help="evaluate the pretrained encoders")] = False,
             epochs: Annotated[int | None, typer.Option(help="text-tower epochs")] = None,
             work_dir: Annotated[Path | None, typer.Option(help="keep the throwaway service here")] = None) -> None:
    """Run the evaluation contract: train (unless --no-train), then label every test row as the service would."""
    from ctax.evaluation.run import EvalOptions, run_eval

    if not 0 <= wrong_label_rate <= 1:
        _fail(ValueError("--wrong-label-rate must be between 0 and 1"))
    try:
        result = run_eval(EvalOptions(taxonomy, train, test, holdout_labels, wrong_label_rate, seed, no_train, epochs,
                                      work_dir))
    except ValueError as exc:  # a work folder in use, too few rows to hold labels out
        _fail(exc)
    json_out.write_text(json.dumps(result, indent=2, default=str))
    table = Table("metric", "value")
    for key in ("top1", "top5", "tier1_accuracy", "novelty_auroc", "novelty_precision", "novelty_recall",
                "wrong_label_auroc", "wrong_label_precision", "wrong_label_recall", "n_train", "n_test", "seconds"):
        value = result.get(key)
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
