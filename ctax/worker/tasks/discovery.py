"""Discovery, run by the training worker (it needs the encoders, not the index): the open new_label creatives
become proposals (review.discovery_run)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from ctax.jobs import DISCOVER
from ctax.review.discovery_run import run_discovery
from ctax.worker.runtime import Runtime, current


@shared_task(
    name=DISCOVER, acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def discover(options: dict[str, Any] | None = None) -> dict[str, int]:
    return run(current(), options or {})


def run(rt: Runtime, options: dict[str, Any]) -> dict[str, int]:
    space, taxonomy = rt.active_space()
    return run_discovery(rt.db, rt.blobs, space, taxonomy, options)
