"""Index tasks, run by the process that owns the index: keep collections in step, swap versions."""

from __future__ import annotations

import logging

from celery import shared_task

from ctax.jobs import ACTIVATE_VERSION, BUILD_VERSION, FORGET_CREATIVES, REFRESH_MAP, SYNC_INDEX
from ctax.pictures.map import refresh_map as draw_map
from ctax.versions import lifecycle
from ctax.worker.outbox_task import ResentWhenLost
from ctax.worker.runtime import current
from ctax.worker.tasks.search import queue_backfill

log = logging.getLogger(__name__)


@shared_task(
    name=SYNC_INDEX, base=ResentWhenLost, acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def sync_index(reason: str = "") -> None:
    rt = current()
    space = rt.labeller().space
    lifecycle.build(rt.db, space, rt.index, rt.blobs, rt.ocr)
    lifecycle.recalibrate_pretrained(rt.db, space, rt.index, rt.settings)
    log.info("index synced (%s)", reason)


@shared_task(
    name=ACTIVATE_VERSION, base=ResentWhenLost, acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def activate_version(version_id: str) -> None:
    """Runs after the database says version_id is active; a version that does not load is rolled back."""
    rt = current()
    if lifecycle.activate_promoted(rt.db, rt.index, rt.space, rt.blobs, rt.ocr, version_id,
                                   rt.settings.novelty_traffic_window):
        rt.info["model_version"] = version_id
        log.info("version %s active in the index", version_id)
        queue_backfill(version_id)  # what was labelled since it was built as a candidate
        if rt.settings.map_path.exists():  # someone looks at the map: show them the new version's space
            refresh_map()


@shared_task(
    name=BUILD_VERSION, base=ResentWhenLost, acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def build_version(version_id: str) -> None:
    """A candidate's collections; with auto-promotion on, a candidate that is not worse becomes active."""
    rt = current()
    lifecycle.build_candidate(rt.db, rt.index, rt.space, rt.blobs, rt.ocr, version_id,
                              auto_promote=rt.settings.auto_promote,
                              traffic_window=rt.settings.novelty_traffic_window)
    queue_backfill(version_id)  # its creatives collection starts empty: search it as soon as it is promoted


@shared_task(
    name=REFRESH_MAP, base=ResentWhenLost, acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def refresh_map() -> None:
    """The /map page's projection of the active version, asked for by a reviewer or after a promotion."""
    rt = current()
    try:
        data = draw_map(rt.db, rt.index, rt.settings)
    except Exception:  # a map that cannot be drawn must not fail the promotion that asked for it
        log.exception("the map could not be drawn")
        return
    log.info("map of %s drawn (%s): %d labels, %d creatives", data["version"], data["method"], len(data["labels"]),
             len(data["creatives"]))


@shared_task(
    name=FORGET_CREATIVES, base=ResentWhenLost, acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def forget_creatives(creative_ids: list[str]) -> None:
    """Deleted creatives (creatives/removal.py): their points go from every version's collections."""
    rt = current()
    lifecycle.forget_creatives(rt.db, rt.index, creative_ids)
    log.info("%d deleted creatives forgotten by the index", len(creative_ids))
