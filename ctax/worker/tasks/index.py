"""Index tasks, run by the process that owns the index: keep collections in step, swap versions."""

from __future__ import annotations

import logging
from pathlib import Path

from celery import shared_task

from ctax.embedding.config import CorruptArtefact
from ctax.jobs import ACTIVATE_VERSION, BUILD_VERSION, SYNC_INDEX
from ctax.versions import artefacts, lifecycle, registry
from ctax.worker.runtime import current

log = logging.getLogger(__name__)


@shared_task(name=SYNC_INDEX, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def sync_index(reason: str = "") -> None:
    rt = current()
    space = rt.labeller().space
    lifecycle.build(rt.db, space, rt.index, rt.blobs, rt.ocr)
    lifecycle.recalibrate_pretrained(rt.db, space, rt.index, rt.settings)
    log.info("index synced (%s)", reason)


@shared_task(name=ACTIVATE_VERSION, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def activate_version(version_id: str) -> None:
    """Runs after the database says version_id is active: bring its collections up to date, swap aliases."""
    rt = current()
    with rt.db.write() as session:
        version = registry.get_version(session, version_id)
        if version.status != "active":
            log.info("not activating %s: it is %s now", version_id, version.status)
            return
        directory = Path(version.artefact_dir)
    try:
        artefacts.validate_artefact(directory)
        space = rt.space(version_id, directory)
    except CorruptArtefact as exc:
        # Never serve a broken version: put the previous one back and say why.
        log.error("version %s cannot be loaded (%s); rolling back", version_id, exc)
        with rt.db.write() as session:
            broken = registry.get_version(session, version_id)
            previous = registry.rollback_target(session)
            broken.status, broken.error = "failed", f"cannot be loaded: {exc.message}"[:4000]
            registry.mark_active(session, previous)
            previous_id, previous_dir = previous.id, Path(previous.artefact_dir)
        space = rt.space(previous_id, previous_dir)
        lifecycle.activate(rt.db, space, rt.index, rt.blobs, rt.ocr, rt.settings.novelty_traffic_window)
        return
    lifecycle.activate(rt.db, space, rt.index, rt.blobs, rt.ocr, rt.settings.novelty_traffic_window)
    rt.info["model_version"] = version_id
    log.info("version %s active in the index", version_id)


@shared_task(name=BUILD_VERSION, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def build_version(version_id: str) -> None:
    """A candidate's own collections. Loading it here is also the check that its artefact is sound: a version
    that does not load is marked failed and can never be promoted."""
    rt = current()
    with rt.db.write() as session:
        version = registry.get_version(session, version_id)
        if version.status not in ("candidate", "active"):
            return
        directory = Path(version.artefact_dir)
    try:
        artefacts.validate_artefact(directory)
        space = rt.space(version_id, directory)
        lifecycle.build(rt.db, space, rt.index, rt.blobs, rt.ocr)
    except Exception as exc:
        log.exception("building %s failed", version_id)
        with rt.db.write() as session:
            version = registry.get_version(session, version_id)
            version.status, version.error = "failed", f"index build failed: {exc}"[:4000]
        return
    with rt.db.write() as session:
        version = registry.get_version(session, version_id)
        version.index_ready = True
        auto = rt.settings.auto_promote and version.status == "candidate" and (version.comparison or {}).get(
            "better", True)
        if auto:
            registry.mark_active(session, version)
    if auto:
        lifecycle.activate(rt.db, space, rt.index, rt.blobs, rt.ocr, rt.settings.novelty_traffic_window)
        log.info("auto-promoted %s", version_id)
