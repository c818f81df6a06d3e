"""Whether a creative posted now would be labelled: the database answers, a live worker that consumes a labelling
queue is ready, and a model version is active.

Live means a heartbeat within `worker_stale_s` (three missed beats by default); a worker that stops cleanly
deletes its row, and `ctax run` deletes the row of one that died the moment it notices (cli/service.py), so a
dead worker is never counted for long, and under the supervisor not at all.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ctax.config import Settings
from ctax.jobs import LABEL_GPU_QUEUE, LABEL_QUEUE
from ctax.store.models import WorkerHeartbeat
from ctax.store.repos import versions, workers
from ctax.store.session import Database
from ctax.store.types import utcnow


def readiness(db: Database, settings: Settings) -> dict[str, Any]:
    """{"status": "ready" | "unavailable", "problems": [...], "workers": [...], "model_version": ...}."""
    with db.read() as session:
        try:
            workers.ping(session)
        except Exception as exc:  # any database failure means not ready
            return {"status": "unavailable", "problems": [f"database: {exc}"], "workers": [], "model_version": None}
        beats = workers.heartbeats(session)
        version = versions.active(session)
        version_id = version.id if version else None
    fresh = utcnow() - dt.timedelta(seconds=settings.worker_stale_s)
    seen = [_worker_view(beat, fresh) for beat in beats]
    label_queues = {settings.label_queue, LABEL_QUEUE, LABEL_GPU_QUEUE}
    problems: list[str] = []
    if not any(w["alive"] and w["ready"] and label_queues & set(w["queues"]) for w in seen):
        problems.append(f"no live worker consuming {settings.label_queue} is ready (start one with `ctax worker`)")
    if version_id is None:
        problems.append("no active model version yet (the worker creates one on its first start)")
    return {
        "status": "ready" if not problems else "unavailable",
        "problems": problems,
        "workers": [{k: str(v) if isinstance(v, dt.datetime) else v for k, v in w.items()} for w in seen],
        "model_version": version_id,
    }


def _worker_view(beat: WorkerHeartbeat, fresh: dt.datetime) -> dict[str, Any]:
    return {
        "name": beat.name,
        "queues": beat.queues,
        "ready": beat.ready,
        "alive": beat.last_seen_at >= fresh,
        "device": beat.device,
        "last_seen_at": beat.last_seen_at,
        **(beat.info or {}),
    }
