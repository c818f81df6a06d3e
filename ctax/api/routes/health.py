"""Liveness and readiness."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import select, text

from ctax.api.deps import SessionDep, SettingsDep
from ctax.jobs import LABEL_GPU_QUEUE, LABEL_QUEUE
from ctax.store.models import WorkerHeartbeat, utcnow
from ctax.versions.registry import active_version

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(session: SessionDep, settings: SettingsDep) -> JSONResponse:
    """200 only when the API can accept creatives and a live worker can label them."""
    problems: list[str] = []
    workers: list[dict[str, Any]] = []
    try:
        session.execute(text("SELECT 1"))
    except Exception as exc:  # any database failure means not ready
        return JSONResponse({"status": "unavailable", "problems": [f"database: {exc}"]}, status_code=503)
    fresh = utcnow() - dt.timedelta(seconds=settings.worker_stale_s)
    for beat in session.scalars(select(WorkerHeartbeat)):
        alive = beat.last_seen_at >= fresh
        workers.append(
            {
                "name": beat.name,
                "queues": beat.queues,
                "ready": beat.ready,
                "alive": alive,
                "device": beat.device,
                "last_seen_at": beat.last_seen_at,
                **(beat.info or {}),
            }
        )
    labellers = [
        w
        for w in workers
        if w["alive"] and w["ready"] and ({settings.label_queue, LABEL_QUEUE, LABEL_GPU_QUEUE} & set(w["queues"]))
    ]
    if not labellers:
        problems.append(f"no live worker consuming {settings.label_queue} is ready (start one with `ctax worker`)")
    version = active_version(session)
    if version is None:
        problems.append("no active model version yet (the worker creates one on its first start)")
    body = {
        "status": "ready" if not problems else "unavailable",
        "problems": problems,
        "workers": workers,
        "model_version": version.id if version else None,
    }
    return JSONResponse(
        body | {"workers": [{k: str(v) if isinstance(v, dt.datetime) else v for k, v in w.items()} for w in workers]},
        status_code=200 if not problems else 503,
    )
