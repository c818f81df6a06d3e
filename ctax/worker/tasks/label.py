"""Labelling tasks: take creative ids, label whatever of them is still waiting, in batches (labelling/batch.py)."""

from __future__ import annotations

from collections.abc import Callable

from celery import shared_task

from ctax.jobs import LABEL_CREATIVES
from ctax.labelling.batch import LabellingWorker
from ctax.labelling.labeller import Labeller
from ctax.worker.runtime import Runtime, current


@shared_task(name=LABEL_CREATIVES, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def label_creatives(ids: list[str]) -> dict[str, int]:
    rt = current()
    return run(rt, ids, pipelined=rt.pipelines)


def run(rt: Runtime, ids: list[str], pipelined: bool | Callable[[Labeller], bool] = False) -> dict[str, int]:
    """Idempotent: ids already labelled, failed or held by a live worker are skipped. Pipelined, the task returns
    once its batch is encoded and the runtime's finisher stores it while the next message is encoded; otherwise
    (and for whoever calls this directly) everything is stored when it returns. The task decides by the labeller
    it gets (Runtime.pipelines), once there is work: asking before would read the active version twice, and
    fail the task while a first start still builds it."""
    # The runtime counts labelled creatives across tasks: it is the sweep's counter.
    worker = LabellingWorker(rt.db, rt.blobs, rt.settings, rt.name, rt.labeller, counter=rt,
                             pipelines=pipelined if callable(pipelined) else None)
    if not pipelined:
        rt.finisher.settle()
    return worker.run(ids, rt.finisher if pipelined else None)
