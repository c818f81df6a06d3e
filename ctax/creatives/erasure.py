"""An account erased at an admin's request: its creatives removed as `removal.remove` removes one (rows, labelled
data, review items, near-duplicate groups handed on, image blobs, index points), then its keys and the account.

A worker does it in steps (`ERASE_ACCOUNT` on the index owner's queue): each step removes up to STEP creatives in
one transaction that also queues the next step, so a worker lost mid-way loses at most its step's work, which the
redelivered message (or the admin asking again) does over. The index owner labels between steps. A creative a
worker is labelling at that moment is left to a later step, which comes after a pause when a step removed nothing
(the pause waits in the outbox, not on the worker). From the request on, the account is suspended: nothing new
arrives while it is erased. A step a killed worker was running is sent again (store/outbox.resend_lost); and the
index owner's every start queues a step for each account still being erased (`resume`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ctax.creatives import removal
from ctax.enums import AccountStatus
from ctax.errors import Conflict
from ctax.jobs import ERASE_ACCOUNT, FORGET_CREATIVES
from ctax.store import outbox
from ctax.store.blobs import BlobStore
from ctax.store.repos import accounts
from ctax.store.session import Database

log = logging.getLogger(__name__)

STEP = 200
# Before a step that follows one which removed nothing (only creatives being labelled were left): their worker
# stores its batch within seconds, or a dead worker's claims expire within CTAX_LEASE_S. The outbox holds the step
# back meanwhile, so the index owner labels on.
PAUSE_S = 2.0


@dataclass(frozen=True)
class ErasureStep:
    removed: int
    busy: int  # being labelled at that moment: a later step removes them
    done: bool  # the account and its keys are gone (or there was nothing to erase)


def erase_step(db: Database, blobs: BlobStore, account_id: int, lease_s: float, step: int = STEP) -> ErasureStep:
    removed: list[removal.Removed] = []
    busy = 0
    with db.write() as session:
        account = accounts.get(session, account_id)
        if account is None or account.erasing_at is None:
            return ErasureStep(0, 0, True)  # erased already (a repeated message), or never asked
        ids = accounts.creative_ids(session, account_id, step)
        for creative_id in ids:
            try:
                with session.begin_nested():  # a creative a worker claims meanwhile takes back only its own changes
                    removed.append(removal.remove(session, creative_id, account_id, lease_s, one_of_many=True))
            except Conflict:
                busy += 1
        if removed:
            accounts.free_places(session, account_id, len(removed))
            outbox.enqueue(session, FORGET_CREATIVES, [r.creative_id for r in removed])
        done = not ids
        if done:
            accounts.delete(session, account_id)
        else:
            outbox.enqueue(session, ERASE_ACCOUNT, account_id, 0.0, after_s=0.0 if removed else PAUSE_S)
    for gone in removed:
        removal.discard_image(db, blobs, gone)
    return ErasureStep(len(removed), busy, done)


def resume(db: Database) -> list[int]:
    """Queue a step for every account still being erased; their ids. A chain still running meets a second one: each
    step removes what is there, and the first to find nothing left ends the erasure."""
    with db.write() as session:
        erasing = [account.id for account in accounts.all_accounts(session, AccountStatus.ERASING)]
        for account_id in erasing:
            outbox.enqueue(session, ERASE_ACCOUNT, account_id, 0.0)
    return erasing
