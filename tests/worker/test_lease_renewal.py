"""Leases are short and renewed: a live worker's heartbeat keeps the claims of a batch that runs longer than the
lease, and once a worker stops beating (it died, and no supervisor handed its work back) its claims are free and
resent one lease later."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator

import pytest

from ctax.config import Settings
from ctax.creatives.intake import CreativeSubmission, create_creative
from ctax.enums import CreativeStatus
from ctax.jobs import LABEL_QUEUE, TRAIN_QUEUE
from ctax.labelling.labeller import EncodedBatch, LabelRequest
from ctax.store import leases
from ctax.store import outbox as outbox_rows
from ctax.store.models import Creative
from ctax.store.session import Database
from ctax.store.types import utcnow
from ctax.worker.runtime import Runtime
from ctax.worker.tasks.label import run

LEASE_S = 0.8
BEAT_S = 0.1


@pytest.fixture
def quick_runtime(settings: Settings, db: Database, pitt_labels: dict[str, int]) -> Iterator[Runtime]:
    """A labelling worker's runtime whose lease is shorter than the batch below takes."""
    rt = Runtime(settings.model_copy(update={"lease_s": LEASE_S, "worker_heartbeat_s": BEAT_S}), [LABEL_QUEUE],
                 owns_index=True)
    rt.start()
    yield rt
    rt.stop()
    if rt._index is not None:
        rt._index.client.close()


def test_a_batch_longer_than_the_lease_keeps_its_claims_and_stores_its_results(
    quick_runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = quick_runtime
    with rt.db.write() as session:
        creative_id = create_creative(session, rt.blobs, rt.settings,
                                      CreativeSubmission(texts=["Cheap car insurance"]), None)[0].id
    labeller = rt.labeller()
    taken_over: list[str] = []

    class Slow:
        """The real labeller, after a pause three leases long (a huge creative, a busy machine)."""

        version = labeller.version
        finish = labeller.finish

        def encode(self, requests: list[LabelRequest]) -> EncodedBatch:
            time.sleep(3 * LEASE_S)
            with rt.db.write() as session:  # another worker sees the message again now
                taken_over.extend(leases.claim(session, [creative_id], "other-worker", LEASE_S))
            return labeller.encode(requests)

    monkeypatch.setattr(rt, "labeller", Slow)
    assert run(rt, [creative_id]) == {"claimed": 1, "labelled": 1, "failed": 0, "requeued": 0}
    assert taken_over == []
    with rt.db.read() as session:
        creative = session.get(Creative, creative_id)
        assert creative is not None and creative.status == CreativeStatus.LABELLED and creative.attempts == 1


def test_a_worker_that_stopped_beating_loses_its_claims_one_lease_later(settings: Settings, db: Database) -> None:
    rt = Runtime(settings.model_copy(update={"lease_s": LEASE_S, "worker_heartbeat_s": BEAT_S}), [TRAIN_QUEUE],
                 owns_index=False)
    with db.write() as session:
        rows = [Creative(texts=[f"ad {n}"], dispatched_at=utcnow() - dt.timedelta(seconds=1)) for n in range(3)]
        session.add_all(rows)
        session.flush()
        ids = sorted(row.id for row in rows)
        assert sorted(leases.claim(session, ids, rt.name, LEASE_S)) == ids
    rt.start()
    try:
        time.sleep(3 * LEASE_S)
        with db.write() as session:
            assert leases.claim(session, ids, "other-worker", LEASE_S) == []  # renewed: still the live worker's
        rt._stop.set()  # it dies: no more beats, no clean stop
        assert rt._heartbeat is not None
        rt._heartbeat.join()
        died = time.monotonic()
        resent: list[str] = []
        while not resent and time.monotonic() - died < 5 * LEASE_S:
            time.sleep(0.05)
            now = utcnow()
            with db.read() as session:  # what the API's dispatcher sends, with the lease the settings give
                resent = outbox_rows.undispatched(session, 100, now - dt.timedelta(seconds=rt.settings.requeue_after_s),
                                           now - dt.timedelta(seconds=LEASE_S))
        assert sorted(resent) == ids
        assert LEASE_S - BEAT_S <= time.monotonic() - died < LEASE_S + 2.0  # slack for a loaded machine
        with db.write() as session:
            assert sorted(leases.claim(session, ids, "other-worker", LEASE_S)) == ids
    finally:
        rt.stop()


def test_a_creative_that_stops_every_worker_is_given_up_and_its_batch_mates_are_labelled(runtime: Runtime) -> None:
    """A creative that kills its worker (a decoder crash, memory blown) is handed back each time with its whole
    batch. Retries are labelled one at a time, each attempt counted as it starts: the batch mates get labelled,
    and the creative that never finishes is failed once its attempts are spent instead of looping for ever."""
    rt = runtime
    with rt.db.write() as session:
        ids = [create_creative(session, rt.blobs, rt.settings, CreativeSubmission(texts=[text]), None)[0].id
               for text in ("Cheap car insurance, get a quote today", "The poison creative of this test",
                            "Fresh burgers and fries, open late every night")]
    first, poison, last = ids

    def worker_died(name: str, started: list[str]) -> None:
        """What a worker leaves when it dies mid-task, written by the lease calls it makes: its claim, the attempts
        it counted before it stopped (retries only), and the supervisor handing its claims back."""
        with rt.db.write() as session:
            leases.claim_inputs(session, ids, name, rt.settings.lease_s)
        for creative_id in started:
            with rt.db.write() as session:
                assert leases.count_attempt(session, creative_id, name)
        with rt.db.write() as session:
            assert sorted(leases.release_claims(session, name)) == sorted(ids)

    def attempts() -> list[int]:
        with rt.db.read() as session:
            return [session.get(Creative, creative_id).attempts for creative_id in ids]  # type: ignore[union-attr]

    worker_died("dead-1", [])  # the batch, claimed fresh: one attempt each
    assert attempts() == [1, 1, 1]
    worker_died("dead-2", [poison])  # retries: the poison started alone (suppose it came first) and stopped it
    worker_died("dead-3", [poison])
    assert attempts() == [1, 3, 1]
    done = run(rt, ids)
    assert done == {"claimed": 2, "labelled": 2, "failed": 1, "requeued": 0}
    with rt.db.read() as session:
        rows = {creative_id: session.get(Creative, creative_id) for creative_id in ids}
        assert rows[poison].status == CreativeStatus.FAILED  # type: ignore[union-attr]
        assert "never finished" in rows[poison].error  # type: ignore[union-attr,operator]
        assert rows[first].status == rows[last].status == CreativeStatus.LABELLED  # type: ignore[union-attr]
    assert attempts() == [2, 3, 2]  # each retry counted once, as it started
    # Fresh creatives count their attempt with the claim, as a batch.
    with rt.db.write() as session:
        fresh = create_creative(session, rt.blobs, rt.settings, CreativeSubmission(texts=["Adopt a dog"]), None)[0].id
    assert run(rt, [fresh])["labelled"] == 1
    with rt.db.read() as session:
        assert session.get(Creative, fresh).attempts == 1  # type: ignore[union-attr]


def test_work_that_arrives_before_any_version_is_handed_back_uncounted(settings: Settings, db: Database) -> None:
    """The first start is still building its version: the worker hands its batch back without counting an
    attempt, so a long build neither fails creatives nor makes them retries."""
    rt = Runtime(settings, [LABEL_QUEUE], owns_index=True)  # not started: no version exists yet
    with db.write() as session:
        ids = [create_creative(session, rt.blobs, settings, CreativeSubmission(texts=[f"Ad number {n} here"]),
                               None)[0].id for n in range(3)]
    for _ in range(settings.max_attempts + 1):
        assert run(rt, ids) == {"claimed": 3, "labelled": 0, "failed": 0, "requeued": 3}
    with db.read() as session:
        rows = [session.get(Creative, creative_id) for creative_id in ids]
        assert all(row.status == CreativeStatus.QUEUED and row.attempts == 0 for row in rows)  # type: ignore[union-attr]
        assert all(row.claimed_by is None and row.dispatched_at is None for row in rows)  # type: ignore[union-attr]
