"""Labelling tasks: take creative ids, label whatever of them is still waiting, in batches (labelling/batch.py)."""

from __future__ import annotations

from celery import shared_task

from ctax.jobs import LABEL_CREATIVES
from ctax.labelling.batch import LabellingWorker
from ctax.worker.runtime import Runtime, current


@shared_task(name=LABEL_CREATIVES, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def label_creatives(ids: list[str]) -> dict[str, int]:
    return run(current(), ids)


def run(rt: Runtime, ids: list[str]) -> dict[str, int]:
    """Idempotent: ids already labelled, failed or held by a live worker are skipped."""
    # The runtime counts labelled creatives across tasks: it is the sweep's counter.
    worker = LabellingWorker(rt.db, rt.blobs, rt.settings, rt.name, rt.labeller, counter=rt)
    return worker.run(ids)
