"""A creative deleted by its poster or an admin: gone from the database, its image blob (unless another creative
shows the same image) and the index.

In the transaction: the row goes, and with it (the schema's ON DELETE CASCADE) its annotations, its review item and
the decisions on it, so it is no longer labelled data for training, exemplars or the export. A creative in a
near-duplicate group leaves it: a member's group counts one fewer; a group's root hands the group, its review item
and the item's decisions to its earliest member, so the other members keep the decisions that gave them their
labels. The index is the worker's: an outbox job (`FORGET_CREATIVES`) has it drop the creative's points from
every version's creatives and traffic collections, and an index sync drops it from the exemplars.

A creative a worker is labelling right now (claimed under a live lease) is refused with 409 for the moment that
takes: the worker writes its points to the index before it stores its result, and the points of a row deleted
meanwhile would stay in the index. The DELETE itself checks the claim again, so a claim that lands between the
read and the delete refuses it too (raised after the group changes: the caller's transaction rolls them back).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ctax.creatives.intake import get_creative
from ctax.enums import CreativeStatus
from ctax.errors import Conflict
from ctax.jobs import FORGET_CREATIVES
from ctax.store import outbox
from ctax.store.blobs import BlobStore
from ctax.store.repos import accounts, groups
from ctax.store.repos import creatives as repo
from ctax.store.session import Database, Session
from ctax.store.types import utcnow


@dataclass(frozen=True)
class Removed:
    creative_id: str
    image_sha256: str | None
    group_handed_to: str | None  # the member that became its group's root, if it was one


def remove(session: Session, creative_id: str, account_id: int | None, lease_s: float,
           now: dt.datetime | None = None, one_of_many: bool = False) -> Removed:
    """Delete the creative (with `account_id`, only that account's: another's answers 404 as an unknown id does).
    With one_of_many the caller queues FORGET_CREATIVES and lowers the account's count of creatives itself, once for
    all it removes (creatives/erasure.py: a step of hundreds would otherwise update the account's row per creative)."""
    creative = get_creative(session, creative_id, account_id)
    live_after = (now or utcnow()) - dt.timedelta(seconds=lease_s)
    if (creative.status == CreativeStatus.PROCESSING and creative.claimed_at is not None
            and creative.claimed_at > live_after):
        raise _being_labelled(creative_id)
    labelled_data = repo.has_annotations(session, creative_id)
    heir = None
    # The group's item row first, as a decision and a joining member's count (labelling/duplicates.join) take it:
    # on PostgreSQL a member whose join holds that row commits, and is read below, before this goes on.
    if creative.duplicate_of is not None:
        groups.add_members(session, {creative.duplicate_of: -1})
    else:
        groups.add_members(session, {creative_id: 0})
        heir = groups.hand_group_on(session, creative_id)
    image, owner = creative.image_sha256, creative.account_id
    session.expunge(creative)  # deleted below in SQL, so the database cascades: the session must not flush it
    if not repo.delete(session, creative_id, live_after):
        # A worker claimed it since it was read above: the caller's transaction (or savepoint) must roll back what
        # was changed here.
        raise _being_labelled(creative_id)
    if owner is not None and not one_of_many:
        accounts.free_places(session, owner)
    if not one_of_many:
        outbox.enqueue(session, FORGET_CREATIVES, [creative_id])
    if labelled_data or heir is not None:
        outbox.request_index_sync(session, f"creative {creative_id} deleted")
    return Removed(creative_id, image, heir)


def _being_labelled(creative_id: str) -> Conflict:
    return Conflict(f"creative {creative_id} is being labelled right now; delete it once it is labelled (seconds)",
                    creative_id=creative_id)


def discard_image(db: Database, blobs: BlobStore, removed: Removed) -> None:
    """After the commit: the image blob, unless another creative shows the same image."""
    if removed.image_sha256 is None:
        return
    with db.read() as session:
        if repo.images_in_use(session, [removed.image_sha256]):
            return
    blobs.discard(removed.image_sha256)
