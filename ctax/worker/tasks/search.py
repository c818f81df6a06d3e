"""Search and the creatives backfill, run by the process that owns the index.

The search task is the one task whose result is kept: the API waits for it through the result backend
(ctax/api/search_client.py). Errors the client caused travel back as data ({"error": ...}) with their HTTP status,
not as exceptions (a JSON result backend would turn those into strings)."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

from celery import current_app, shared_task
from celery.signals import worker_ready

from ctax.enums import VersionStatus
from ctax.errors import CtaxError
from ctax.jobs import BACKFILL_CREATIVES, INDEX_QUEUE, SEARCH
from ctax.search.backfill import backfill_chunk
from ctax.search.query import SearchQuery
from ctax.search.service import Searcher
from ctax.store.repos import versions
from ctax.worker.runtime import current

log = logging.getLogger(__name__)

# Stored creatives a backfill task encodes before it queues the next chunk: labelling and searches wait for a chunk
# (the worker runs one task at a time), and 512 multi-text Pitt ads held them up for 13 s under bench.load.
BACKFILL_CHUNK = 128


@shared_task(name=SEARCH, ignore_result=False, acks_late=False)
def search(query: dict[str, Any]) -> dict[str, Any]:
    """acks_late off: a search whose worker died is not worth running again (its client has an answer: 503)."""
    rt = current()
    try:
        labeller = rt.labeller()
        searcher = Searcher(rt.db, rt.index, labeller.space, rt.blobs, rt.ocr)
        return searcher.search(SearchQuery.from_json(query))
    except CtaxError as exc:
        return {"error": exc.to_dict(), "status": exc.status_code}


def queue_backfill(version_id: str, after: tuple[dt.datetime, str] | None = None) -> None:
    """Queue (the next chunk of) a version's backfill from inside a ctax worker. A task body run directly (tests,
    `ctax eval`) has no ctax app to send with and queues nothing: the next worker start completes the version."""
    app = current_app
    if not app.conf.get("ctax_owns_index"):
        log.debug("not in an index-owning worker: backfill of %s left to the next worker start", version_id)
        return
    try:
        app.send_task(BACKFILL_CREATIVES, args=[version_id, [after[0].isoformat(), after[1]] if after else None],
                      queue=INDEX_QUEUE)
    except Exception:  # the broker is away: the next worker start queues the backfill again
        log.warning("could not queue the creatives backfill of %s", version_id, exc_info=True)


@shared_task(name=BACKFILL_CREATIVES, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def backfill_creatives(version_id: str, after: list[str] | None = None) -> None:
    """One chunk of a version's backfill; queues the next, so labelling and searches run in between."""
    rt = current()
    with rt.db.read() as session:
        version = versions.get(session, version_id)
        if version is None or version.status == VersionStatus.FAILED:
            return
        directory = version.artefact_dir
    space = rt.space(version_id, Path(directory))
    cursor = (dt.datetime.fromisoformat(after[0]), after[1]) if after else None
    step = backfill_chunk(rt.db, space, rt.index, rt.blobs, cursor, BACKFILL_CHUNK)
    if not step.done:
        queue_backfill(version_id, step.after)


@worker_ready.connect
def _backfill_active(**_: Any) -> None:
    """At start the index owner completes the active version's collection (a first start's pretrained version,
    or a walk a killed worker left unfinished)."""
    try:
        rt = current()
        version = rt.info.get("model_version")
        if rt.owns_index and version:
            queue_backfill(version)
    except Exception:  # a backfill that cannot be queued now is queued at the next start
        log.warning("could not queue the creatives backfill", exc_info=True)
