"""Index tasks, run by the process that owns the index: keep collections in step, swap versions."""

from __future__ import annotations

import logging
from pathlib import Path

from celery import shared_task

from ctax.taxonomy import lifecycle
from ctax.taxonomy.db.session import transaction
from ctax.taxonomy.outbox import ACTIVATE_VERSION, SYNC_INDEX
from ctax.taxonomy.training import registry
from ctax.worker.runtime import current

log = logging.getLogger(__name__)


@shared_task(name=SYNC_INDEX, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def sync_index(reason: str = "") -> None:
    rt = current()
    space = rt.labeller().space
    lifecycle.build(rt.factory, space, rt.index, rt.blobs, rt.ocr)
    lifecycle.recalibrate_pretrained(rt.factory, space, rt.index, rt.settings)
    log.info("index synced (%s)", reason)


@shared_task(name=ACTIVATE_VERSION, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def activate_version(version_id: str) -> None:
    """Runs after the database says version_id is active: bring its collections up to date, swap aliases."""
    rt = current()
    with transaction(rt.factory) as session:
        version = registry.get_version(session, version_id)
        if version.status != "active":
            log.info("not activating %s: it is %s now", version_id, version.status)
            return
        directory = Path(version.artefact_dir)
    space = rt.space(version_id, directory)
    lifecycle.activate(rt.factory, space, rt.index, rt.blobs, rt.ocr)
    rt.info["model_version"] = version_id
    log.info("version %s active in the index", version_id)
