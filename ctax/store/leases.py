"""The labelling worker's lease on creatives: claiming, keeping, handing back, and giving up on a creative that
never finishes.

A claim is a lease: `claim` takes creatives that are queued or held under an expired lease (their worker died or
hung). `store_results` and `fail` (repos/creatives.py) write only where the calling worker still holds the claim.

Attempts. A creative's `attempts` counts the times labelling started on it. A batch of fresh creatives counts one
attempt each when claimed. A creative claimed again without a result (its worker died mid-batch, its lease ran out,
or a retryable failure handed it back) is a **retry**: the claim does not count it; the worker labels retries one
at a time and counts each attempt just before it starts (`count_attempt`), in a transaction of its own. So when
one creative kills the worker every time (a decoder crash, memory blown), the creatives that shared its batch are
labelled one by one and stored, their count untouched by its crashes, while its own count rises with each; once
it reaches `max_attempts` the next claim fails it (`give_up`) instead of handing it to a worker again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, or_, update
from sqlalchemy.orm import Session

from ctax.enums import CreativeStatus
from ctax.store.models import Creative
from ctax.store.session import mark_queued_work
from ctax.store.types import utcnow


@dataclass(frozen=True)
class Claimed:
    """What labelling reads of a creative it just claimed (none of it changes after the creative arrived), and
    whether this is a retry (labelled alone, its attempt counted when it starts: see the module's docstring)."""

    id: str
    texts: list[str]
    image_sha256: str | None
    ocr_text: str | None
    asserted_label_id: int | None
    account_id: int | None
    created_at: dt.datetime
    retry: bool = False
    campaign: str | None = None


def _free(ids: Sequence[str], now: dt.datetime, lease_s: float) -> list[ColumnElement[bool]]:
    """Among `ids`, the creatives a worker may take: queued, or processing under an expired lease."""
    lease_start = now - dt.timedelta(seconds=lease_s)
    expired = (Creative.status == CreativeStatus.PROCESSING) & (Creative.claimed_at < lease_start)
    return [Creative.id.in_(list(ids)), or_(Creative.status == CreativeStatus.QUEUED, expired)]


def claim(session: Session, ids: Sequence[str], worker: str, lease_s: float) -> list[str]:
    """Atomically take the given creatives that are free (queued, or processing under an expired lease)."""
    return [row.id for row in claim_inputs(session, ids, worker, lease_s)]


def claim_inputs(session: Session, ids: Sequence[str], worker: str, lease_s: float) -> list[Claimed]:
    """`claim`, returning what labelling needs of each creative taken in the same statement (no second read):
    fresh creatives count their attempt here, retries do not (`count_attempt`)."""
    if not ids:
        return []
    now = utcnow()
    taken: list[Claimed] = []
    for retry in (False, True):
        result = session.execute(
            update(Creative)
            .where(*_free(ids, now, lease_s), Creative.attempts > 0 if retry else Creative.attempts == 0)
            .values(status=CreativeStatus.PROCESSING, claimed_at=now, claimed_by=worker,
                    **({} if retry else {"attempts": Creative.attempts + 1}))
            .returning(Creative.id, Creative.texts, Creative.image_sha256, Creative.ocr_text,
                       Creative.asserted_label_id, Creative.account_id, Creative.created_at, Creative.campaign)
        )
        taken += [Claimed(creative_id, list(texts or []), image, ocr, asserted, account, created, retry, campaign)
                  for creative_id, texts, image, ocr, asserted, account, created, campaign in result]
    return taken


def give_up(session: Session, ids: Sequence[str], lease_s: float, max_attempts: int) -> list[str]:
    """Fail the free creatives among `ids` whose `max_attempts` attempts all started and none finished (a
    retryable failure would have failed it at its last attempt already): each ended with its worker gone."""
    result = session.execute(
        update(Creative)
        .where(*_free(ids, utcnow(), lease_s), Creative.attempts >= max_attempts)
        .values(status=CreativeStatus.FAILED, claimed_at=None, claimed_by=None, updated_at=utcnow(),
                error=f"labelling started {max_attempts} times and never finished (the worker stopped each time: "
                      "this creative may crash it); not retried. POST /v1/creatives/{id}/retry to try again")
        .returning(Creative.id)
    )
    return [row[0] for row in result]


def hand_back(session: Session, worker: str, fresh: Sequence[str], retries: Sequence[str]) -> int:
    """Queue again, uncounted, what `worker` claimed and did not start: the attempts its claim counted for the
    fresh ones are taken back (retries had none counted). Returns how many were handed back."""
    handed = 0
    for ids, attempts in ((fresh, Creative.attempts - 1), (retries, Creative.attempts)):
        if ids:
            result = session.execute(
                update(Creative)
                .where(Creative.id.in_(list(ids)), Creative.claimed_by == worker,
                       Creative.status == CreativeStatus.PROCESSING)
                .values(status=CreativeStatus.QUEUED, claimed_at=None, claimed_by=None, dispatched_at=None,
                        attempts=attempts)
            )
            handed += int(getattr(result, "rowcount", 0) or 0)
    if handed:
        mark_queued_work(session)
    return handed


def count_attempt(session: Session, creative_id: str, worker: str) -> bool:
    """A retry's attempt, counted (and committed by the caller) before labelling starts on it; False when the
    worker no longer holds the claim."""
    result = session.execute(
        update(Creative)
        .where(Creative.id == creative_id, Creative.claimed_by == worker,
               Creative.status == CreativeStatus.PROCESSING)
        .values(attempts=Creative.attempts + 1)
    )
    return bool(getattr(result, "rowcount", 0))



def renew_claims(session: Session, worker: str) -> int:
    """The live `worker` still holds what it claimed: its leases start afresh (its heartbeat calls this)."""
    result = session.execute(
        update(Creative)
        .where(Creative.claimed_by == worker, Creative.status == CreativeStatus.PROCESSING)
        .values(claimed_at=utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)


def release_claims(session: Session, worker_prefix: str) -> list[str]:
    """Queue again, at once, what dead workers whose names start with `worker_prefix` held; returns the ids.

    Only for workers known to be dead (a supervisor saw the process exit): a live one would store nothing more
    (its claim is gone) but would have labelled for nothing."""
    result = session.execute(
        update(Creative)
        .where(Creative.status == CreativeStatus.PROCESSING, Creative.claimed_by.startswith(worker_prefix,
                                                                                            autoescape=True))
        .values(status=CreativeStatus.QUEUED, claimed_at=None, claimed_by=None, dispatched_at=None)
        .returning(Creative.id)
    )
    ids = [row[0] for row in result]
    if ids:
        mark_queued_work(session)
    return ids
