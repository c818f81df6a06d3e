"""`ctax worker` stopped cleanly (SIGTERM, Ctrl-C) deletes its own heartbeat row: /readyz stops counting it at once,
with or without a supervisor. The solo pool sends Celery's worker_shutdown, not worker_process_shutdown."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ctax.config import Settings
from ctax.store.repos import workers
from ctax.store.session import Database
from tests.support import ROOT


def names(db: Database) -> list[str]:
    with db.read() as session:
        return [row.name for row in workers.heartbeats(session)]


def test_a_worker_stopped_with_sigterm_leaves_no_heartbeat(settings: Settings, db: Database, tmp_path: Path) -> None:
    env = {**os.environ, "CTAX_DATA_DIR": str(settings.data_dir), "CTAX_WORKER_HEARTBEAT_S": "0.5"}
    with (tmp_path / "worker.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "ctax", "worker", "--role", "train"], env=env, cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not names(db):
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(0.2)
        assert names(db)[0].startswith(workers.name_prefix(socket.gethostname(), proc.pid))
        time.sleep(1)  # let Celery finish starting: its signal handlers are installed after the heartbeat starts
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert names(db) == []
