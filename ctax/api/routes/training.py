"""Training runs: start one, follow its progress."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from ctax.api.deps import Admin, DispatcherDep, SessionDep
from ctax.errors import NotFound
from ctax.jobs import TRAIN
from ctax.store.models import TrainingRun
from ctax.store.outbox import enqueue

router = APIRouter(prefix="/v1/training/runs", tags=["training"])


class RunIn(BaseModel):
    epochs: int | None = Field(None, ge=1, le=50)
    image_epochs: int | None = Field(None, ge=1, le=500)
    train_images: bool = True
    seed: int | None = None


def run_view(run: TrainingRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "status": run.status,
        "progress": run.progress,
        "stage": run.stage,
        "params": run.params,
        "metrics": run.metrics,
        "candidate_version": run.candidate_version_id,
        "error": run.error,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "heartbeat_at": run.heartbeat_at,
    }


@router.post("", status_code=202)
def start_run(
    _: Admin, key: Admin, session: SessionDep, dispatcher: DispatcherDep, body: RunIn | None = None
) -> dict[str, Any]:
    body = body or RunIn()
    run = TrainingRun(status="queued", params=body.model_dump(exclude_none=True), requested_by=key.id)
    session.add(run)
    session.flush()
    enqueue(session, TRAIN, run.id)
    session.commit()
    dispatcher.nudge()
    return run_view(run)


@router.get("/{run_id}")
def get_run(run_id: int, _: Admin, session: SessionDep) -> dict[str, Any]:
    run = session.get(TrainingRun, run_id)
    if run is None:
        raise NotFound(f"no training run {run_id}")
    return run_view(run)


@router.get("")
def list_runs(_: Admin, session: SessionDep, limit: Annotated[int, Query(ge=1, le=200)] = 20) -> dict[str, Any]:
    rows = session.scalars(select(TrainingRun).order_by(TrainingRun.id.desc()).limit(limit))
    return {"items": [run_view(r) for r in rows]}
