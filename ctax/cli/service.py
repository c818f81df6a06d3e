"""Running the service: the API, a worker, or both and a training worker together (`ctax run`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Annotated, Any

import typer

from ctax.cli.common import console, fail, settings
from ctax.jobs import INDEX_QUEUE, LABEL_GPU_QUEUE, TRAIN_QUEUE
from ctax.store.migrate import upgrade

ROLES = {"label": ["ctax.label", INDEX_QUEUE], "gpu": [LABEL_GPU_QUEUE, INDEX_QUEUE], "train": [TRAIN_QUEUE]}


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
    owns_index = INDEX_QUEUE in names or any(q.startswith("ctax.label") for q in names)
    celery = create_celery(current, names, owns_index=owns_index)
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


def run(host: str | None = None, port: int | None = None) -> None:
    """Migrate, then run the API, a labelling worker and a training worker until interrupted."""
    current = settings()
    upgrade(current.sqlalchemy_url)
    exe = [sys.executable, "-m", "ctax"]
    procs = [
        subprocess.Popen([*exe, "worker", "--role", "label"]),
        subprocess.Popen([*exe, "worker", "--role", "train"]),
        subprocess.Popen([*exe, "api", "--host", host or current.host, "--port", str(port or current.port)]),
    ]
    console.print(
        f"ctax running: API on http://{host or current.host}:{port or current.port} "
        f"(docs at /docs, review page at /review); data in {current.data_dir}. Ctrl-C stops."
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
