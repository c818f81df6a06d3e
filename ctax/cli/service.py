"""Running the service: the API, a worker, or both and a training worker together (`ctax run`)."""

from __future__ import annotations

import gc
import logging
import os
import socket
import sys
import time
from functools import partial
from typing import Annotated

import typer
from rich.markup import escape

from ctax.cli.common import console, database, fail, settings
from ctax.cli.supervisor import Child, GaveUp, Supervisor
from ctax.config import Settings
from ctax.embedding.ocr import OcrUnavailable, check_backend
from ctax.jobs import INDEX_QUEUE, LABEL_GPU_QUEUE, SEARCH_QUEUE, TRAIN_QUEUE
from ctax.store import leases
from ctax.store import outbox as dispatch_rows
from ctax.store.migrate import upgrade
from ctax.store.repos import workers as worker_rows
from ctax.store.session import Database
from ctax.store.types import utcnow

log = logging.getLogger("ctax.run")

LABEL_WORKER = "labelling worker"
TRAIN_WORKER = "training worker"
# The index owners also answer searches (SEARCH_QUEUE): encoding the query and reading the index is their work.
ROLES = {"label": ["ctax.label", INDEX_QUEUE, SEARCH_QUEUE], "gpu": [LABEL_GPU_QUEUE, INDEX_QUEUE, SEARCH_QUEUE],
         "train": [TRAIN_QUEUE]}


def api(host: str | None = None, port: int | None = None, workers: int = 1) -> None:
    """Serve the REST API (uvicorn)."""
    # Imported here: uvicorn is for this command only.
    import uvicorn

    current = settings()
    uvicorn.run(
        "ctax.api.app:create_app",
        factory=True,
        host=host or current.host,
        port=port or current.port,
        workers=workers,
        log_level="info",
        # A log line per request cost about 8% of the API's time under load (measured with py-spy);
        # /metrics counts requests by route and status instead.
        access_log=current.access_log,
        timeout_keep_alive=current.keep_alive_s,
    )


def worker(
    role: Annotated[str, typer.Option(help="label (CPU labelling + index), gpu, or train")] = "label",
    queues: Annotated[str | None, typer.Option(help="comma-separated queues, overriding the role")] = None,
    loglevel: str = "info",
) -> None:
    """Run a Celery worker: one process (--pool=solo), models loaded once, on the settings' device.

    GPU hosts run one `ctax worker --role gpu` per GPU (CUDA_VISIBLE_DEVICES=N) with CTAX_DEVICE=cuda."""
    # Imported here: the worker's app loads Celery, which no other command needs.
    from ctax.worker.app import create_celery

    if role not in ROLES:
        fail(ValueError(f"role must be one of {', '.join(ROLES)}"))
    current = settings()
    names = queues.split(",") if queues else list(ROLES[role])
    if role == "label" and current.label_queue not in names and not queues:
        names[0] = current.label_queue
    owns_index = INDEX_QUEUE in names or SEARCH_QUEUE in names or any(q.startswith("ctax.label") for q in names)
    if owns_index:  # the workers that label read images; a training worker never loads OCR
        check_ocr(current)
    celery = create_celery(current, names, owns_index=owns_index)
    try:
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
    finally:
        # Stopped, its last batch stored and its heartbeat removed (worker_shutdown): Python's final garbage
        # collection over the towers' and libraries' objects took ~2 s of every stop, for memory the OS frees.
        gc.freeze()


def run(host: str | None = None, port: int | None = None) -> None:
    """Migrate, then run the API, a labelling worker and a training worker until Ctrl-C or SIGTERM, restarting
    any of them that dies (with backoff; the service stops if one keeps failing right after it starts)."""
    current = settings()
    check_port(host or current.host, port or current.port)
    check_ocr(current)
    upgrade(current.sqlalchemy_url, lock_wait_s=current.database_lock_wait_s)
    _log_to_console()
    exe = [sys.executable, "-m", "ctax"]
    children = [
        Child(LABEL_WORKER, [*exe, "worker", "--role", "label"]),
        Child(TRAIN_WORKER, [*exe, "worker", "--role", "train"]),
        Child("API", [*exe, "api", "--host", host or current.host, "--port", str(port or current.port)]),
    ]
    db = database(current)
    console.print(
        f"ctax running: API on http://{host or current.host}:{port or current.port} "
        f"(docs at /docs, review page at /review); data in {current.data_dir}. Ctrl-C stops."
    )
    try:
        Supervisor(children, on_exit=partial(hand_back, db), watch=SilentWorkers(db, current)).run()
    except GaveUp as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(1) from None
    finally:
        db.dispose()
    console.print("ctax stopped.")


def check_port(host: str, port: int) -> None:
    """A port another process holds stops `ctax run` with one line before anything starts: otherwise the API child
    failed to bind, was restarted five times and the service stopped, the reason only in uvicorn's log above."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            # As uvicorn binds: SO_REUSEADDR lets a port in TIME_WAIT be taken, never one a server listens on.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        fail(OSError(f"cannot serve the API on {host}:{port}: {exc.strerror or exc} (another ctax run, or another "
                     "server?): stop it, or choose another port with --port or CTAX_PORT"))


def check_ocr(current: Settings) -> None:
    """An OCR backend named in CTAX_OCR_BACKEND that is not installed stops the command with one line, rather than
    a traceback in the worker's log and a supervisor restarting it until it gives up."""
    if current.ocr_enabled and current.ocr_backend != "auto":
        try:
            check_backend(current.ocr_backend)
        except OcrUnavailable as exc:
            fail(exc)


def hand_back(db: Database, child: Child, code: int) -> None:
    """What a worker that died held goes back at once (the supervisor calls this when it sees one exit): the
    creatives it had claimed are queued again and resent, and its heartbeat row is deleted, so /readyz stops
    counting it. A labelling worker that did not exit cleanly may also have fetched a message it never claimed
    (the SQLite broker hides a delivered message for good), so everything dispatched but unclaimed is resent."""
    if child.name not in (LABEL_WORKER, TRAIN_WORKER) or child.pid is None:
        return
    prefix = worker_rows.name_prefix(socket.gethostname(), child.pid)
    with db.write() as session:
        released = leases.release_claims(session, prefix)
        resent = dispatch_rows.resend_dispatched(session) if child.name == LABEL_WORKER and code != 0 else 0
        worker_rows.remove_process(session, prefix)
    if released or resent:
        log.warning("%s (pid %s): handed back %d creatives it had claimed and resent %d dispatched to it unclaimed",
                    child.name, child.pid, len(released), resent)


# A worker whose heartbeat is this many times CTAX_WORKER_STALE_S old is hung (60 s at the defaults): /readyz counts
# it dead sooner, but a kill costs its batch, so the supervisor leaves room for a beat held up by a busy database.
HUNG_AFTER_STALE = 4


class SilentWorkers:
    """`ctax run`'s watch on its workers: one whose process runs but whose heartbeat has gone silent is hung as a
    whole: stopped (SIGSTOP, a debugger), or stuck in code that holds the GIL, where not even its heartbeat thread
    runs, nor its own watch on hung tasks (worker/runtime.Runtime.hung). Without this the process lives for ever,
    holding a SQLite write lock if it stopped in a transaction, and nothing restarts it.

    Judged only once the database has answered this supervisor for the whole silence: while the database is away,
    every worker is silent and none is hung."""

    def __init__(self, db: Database, current: Settings) -> None:
        self.db = db
        self.silent_s = HUNG_AFTER_STALE * current.worker_stale_s
        self._answering_since: float | None = None

    def __call__(self, child: Child) -> str | None:
        if child.name not in (LABEL_WORKER, TRAIN_WORKER) or child.pid is None:
            return None
        try:
            with self.db.read() as session:
                last = worker_rows.last_beat(session, worker_rows.name_prefix(socket.gethostname(), child.pid))
        except Exception:
            self._answering_since = None
            return None
        now = time.monotonic()
        self._answering_since = self._answering_since or now
        if last is None or now - self._answering_since < self.silent_s:
            return None  # not started yet (it beats first thing), or the database was away a moment ago
        silent = (utcnow() - last).total_seconds()
        if silent <= self.silent_s:
            return None
        return f"has not beaten for {silent:.0f} s while its process runs (stopped, or stuck where not even its " \
               "heartbeat runs)"


def _log_to_console() -> None:
    """The supervisor's lines (a restart, a give-up) go to stderr beside the children's own logs."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[%(asctime)s: %(levelname)s/ctax run] %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
