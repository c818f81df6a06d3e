"""Training runs: start one, follow its progress."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field

from ctax.api.deps import Admin, DbDep
from ctax.api.params import Id, RequestBody, Seed
from ctax.errors import NotFound
from ctax.store.models import TrainingRun
from ctax.store.repos import runs

router = APIRouter(prefix="/v1/training/runs", tags=["training"])


class RunIn(RequestBody):
    epochs: int | None = Field(default=None, ge=1, le=50)
    image_epochs: int | None = Field(default=None, ge=1, le=500)
    train_images: bool = True
    seed: Seed | None = None


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
        # While it runs (written every few seconds): the phase, its step, the last loss and its seconds left.
        "phase": run.phase,
        "step": run.step,
        "total_steps": run.total_steps,
        "loss": run.loss,
        "eta_s": run.eta_s,
        "updated_at": run.updated_at,
    }


@router.post("", status_code=202)
def start_run(key: Admin, db: DbDep, body: RunIn | None = None) -> dict[str, Any]:
    body = body or RunIn()
    with db.write() as session:
        return run_view(runs.queue(session, body.model_dump(exclude_none=True), requested_by=key.id))


@router.get("/{run_id}")
def get_run(run_id: Id, _: Admin, db: DbDep) -> dict[str, Any]:
    with db.read() as session:
        run = runs.get(session, run_id)
        if run is None:
            raise NotFound(f"no training run {run_id}")
        return run_view(run)


@router.get("")
def list_runs(_: Admin, db: DbDep, limit: Annotated[int, Query(ge=1, le=200)] = 20) -> dict[str, Any]:
    with db.read() as session:
        return {"items": [run_view(r) for r in runs.newest_first(session, limit)]}
