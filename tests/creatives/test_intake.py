"""Intake stores nothing of a refused request: no rows and no image blobs, even when the database itself fails."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from ctax.config import Settings
from ctax.creatives.intake import CreativeSubmission, submit
from ctax.errors import ConcurrentChange, InvalidInput
from ctax.store.blobs import BlobStore
from ctax.store.session import Database
from tests.conftest import png_bytes


def _blobs(settings: Settings) -> BlobStore:
    return BlobStore(settings.blob_dir)


def _stored_files(settings: Settings) -> list[str]:
    return sorted(p.name for p in settings.blob_dir.rglob("*") if p.is_file())


def test_a_batch_refused_for_a_later_item_leaves_no_image_behind(db: Database, settings: Settings) -> None:
    subs = [CreativeSubmission(texts=["Fresh bread daily"], image=png_bytes("bread")),
            CreativeSubmission(texts=["Cheap flights"], image=png_bytes("flights", colour=(200, 10, 10))),
            CreativeSubmission(texts=["\x00\x01binary"])]
    with pytest.raises(InvalidInput, match=r"items\[2\]"):
        submit(db, _blobs(settings), settings, subs, None)
    assert _stored_files(settings) == []
    with db.read() as session:
        assert session.execute(text("SELECT count(*) FROM creatives")).scalar_one() == 0


def test_a_failed_transaction_removes_the_images_it_stored_but_not_shared_ones(db: Database, settings: Settings,
                                                                              ) -> None:
    blobs = _blobs(settings)
    shared = png_bytes("shared")
    [(first, _)] = submit(db, blobs, settings, [CreativeSubmission(texts=["Shared ad"], image=shared)], None)
    with db.write() as session:  # the database refuses every further creative
        session.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON creatives BEGIN SELECT RAISE(ABORT, 'no'); END"))
    with pytest.raises(ConcurrentChange):
        submit(db, blobs, settings, [CreativeSubmission(texts=["New ad"], image=png_bytes("new")),
                                     CreativeSubmission(texts=["Same image again"], image=shared)], None)
    assert _stored_files(settings) == [first.image_sha256]  # the new image is gone, the one in use stays


def test_a_chunk_claimed_before_its_dispatch_is_marked_is_still_resent_when_the_claim_lapses(
        db: Database, settings: Settings) -> None:
    # A fast worker (Redis) claims a chunk while the dispatcher is still marking it sent; if that worker dies, the
    # claim must still lapse into a resend, or its creatives wait forever.
    import datetime as dt

    from ctax.creatives.intake import dispatch
    from ctax.store import leases
    from ctax.store import outbox as outbox_rows
    from ctax.store.types import utcnow

    submit(db, _blobs(settings), settings, [CreativeSubmission(texts=[f"Fresh bread number {n}"]) for n in range(3)],
           None)
    claimed: list[str] = []

    def send_to_a_fast_worker(_task: str, args: list, _queue: str) -> None:
        with db.write() as session:
            claimed.extend(leases.claim(session, args[0], "fast-worker", settings.lease_s))

    assert dispatch(db, send_to_a_fast_worker, settings) == 3 and len(claimed) == 3
    later = utcnow() + dt.timedelta(seconds=settings.lease_s + 1)  # the worker died: no renewal, the lease ran out
    with db.read() as session:
        resent = outbox_rows.undispatched(session, 100, later - dt.timedelta(seconds=settings.requeue_after_s),
                                   later - dt.timedelta(seconds=settings.lease_s))
    assert sorted(resent) == sorted(claimed)
