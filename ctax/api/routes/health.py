"""Liveness and readiness."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ctax.api.deps import DbDep, SettingsDep
from ctax.jobs import LABEL_GPU_QUEUE, LABEL_QUEUE
from ctax.store.models import WorkerHeartbeat
from ctax.store.repos import versions, workers
from ctax.store.types import utcnow

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(db: DbDep, settings: SettingsDep) -> JSONResponse:
    """200 only when the API can accept creatives and a live worker can label them."""
    with db.read() as session:
        try:
            workers.ping(session)
        except Exception as exc:  # any database failure means not ready
            return JSONResponse({"status": "unavailable", "problems": [f"database: {exc}"]}, status_code=503)
        beats = workers.heartbeats(session)
        version = versions.active(session)
        version_id = version.id if version else None
    fresh = utcnow() - dt.timedelta(seconds=settings.worker_stale_s)
    workers_seen = [_worker_view(beat, fresh) for beat in beats]
    problems: list[str] = []
    labellers = [
        w
        for w in workers_seen
        if w["alive"] and w["ready"] and ({settings.label_queue, LABEL_QUEUE, LABEL_GPU_QUEUE} & set(w["queues"]))
    ]
    if not labellers:
        problems.append(f"no live worker consuming {settings.label_queue} is ready (start one with `ctax worker`)")
    if version_id is None:
        problems.append("no active model version yet (the worker creates one on its first start)")
    body = {
        "status": "ready" if not problems else "unavailable",
        "problems": problems,
        "workers": [{k: str(v) if isinstance(v, dt.datetime) else v for k, v in w.items()} for w in workers_seen],
        "model_version": version_id,
    }
    return JSONResponse(body, status_code=200 if not problems else 503)


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
