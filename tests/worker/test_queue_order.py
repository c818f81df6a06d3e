"""The index owner's queues as its broker hands them over: a waiting search before labelling and index work, up to
SEARCH_BURST in a row, on the SQLite broker and on Redis (the worker's own Celery app and its real transports)."""

from __future__ import annotations

from pathlib import Path

import pytest
from kombu import Consumer, Message, Queue

from ctax.jobs import INDEX_QUEUE, LABEL_QUEUE, SEARCH_QUEUE
from ctax.worker.app import create_celery
from ctax.worker.queue_order import SEARCH_BURST
from tests.conftest import make_settings


@pytest.fixture(params=["sqlite", "redis"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    return request.getfixturevalue("redis_url") if request.param == "redis" else None


def handed_over(broker: str | None, tmp_path: Path, sent: list[str]) -> list[str]:
    """Send one message per entry of `sent` (its queue), then take them all as a worker consuming label, index and
    search (in that order) would; returns the queues in the order the broker handed the messages over."""
    settings = make_settings(tmp_path / "var", broker_url=broker)
    settings.ensure_dirs()
    app = create_celery(settings)
    queues = [Queue(name, routing_key=name) for name in (LABEL_QUEUE, INDEX_QUEUE, SEARCH_QUEUE)]
    got: list[str] = []
    with app.connection_for_write() as connection:
        producer = connection.Producer()
        for queue in queues:
            queue(connection.default_channel).declare()
        for n, name in enumerate(sent):
            producer.publish({"n": n}, routing_key=name, serializer="json")
    with app.connection_for_read() as connection:

        def take(body: dict[str, int], message: Message) -> None:
            got.append(sent[body["n"]])
            message.ack()

        with Consumer(connection, queues=queues, callbacks=[take], prefetch_count=1):
            while len(got) < len(sent):
                connection.drain_events(timeout=10)
    return got


def test_a_waiting_search_is_handed_over_before_labelling_and_index_work(broker: str | None,
                                                                         tmp_path: Path) -> None:
    sent = [LABEL_QUEUE, INDEX_QUEUE, LABEL_QUEUE, INDEX_QUEUE, SEARCH_QUEUE, SEARCH_QUEUE]
    got = handed_over(broker, tmp_path, sent)
    assert got[:2] == [SEARCH_QUEUE, SEARCH_QUEUE], got
    assert sorted(got[2:]) == sorted(sent[:4])  # the rest all arrive


def test_a_flood_of_searches_lets_labelling_in_after_a_burst(broker: str | None, tmp_path: Path) -> None:
    sent = [LABEL_QUEUE] + [SEARCH_QUEUE] * (SEARCH_BURST + 4)
    got = handed_over(broker, tmp_path, sent)
    assert got[:SEARCH_BURST] == [SEARCH_QUEUE] * SEARCH_BURST, got
    assert got[SEARCH_BURST] == LABEL_QUEUE, got  # not after every search


def test_under_a_long_flood_of_searches_labelling_gets_every_turn_after_a_burst(broker: str | None,
                                                                               tmp_path: Path) -> None:
    """The index queue is empty: the turn after a burst must still go to labelling, not to the next search."""
    sent = [LABEL_QUEUE] * 3 + [SEARCH_QUEUE] * (3 * SEARCH_BURST + 2)
    got = handed_over(broker, tmp_path, sent)
    assert got == ([SEARCH_QUEUE] * SEARCH_BURST + [LABEL_QUEUE]) * 3 + [SEARCH_QUEUE] * 2, got


def test_a_worker_told_to_stop_leaves_its_poll_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Celery drains the broker in 2 s cycles and once more after it sees the stop flag; on the SQLite broker the
    drain returns at once instead, leaving what waits in the queue to the next worker."""
    from celery.worker import state as worker_state

    settings = make_settings(tmp_path / "var")
    settings.ensure_dirs()
    app = create_celery(settings)
    queue = Queue(LABEL_QUEUE, routing_key=LABEL_QUEUE)
    got: list[int] = []
    with app.connection_for_write() as connection:
        queue(connection.default_channel).declare()
        connection.Producer().publish({"n": 1}, routing_key=LABEL_QUEUE, serializer="json")
    with (app.connection_for_read() as connection,
          Consumer(connection, queues=[queue], callbacks=[lambda body, message: got.append(body["n"])],
                   prefetch_count=1)):
        monkeypatch.setattr(worker_state, "should_stop", 0)  # a warm shutdown's flag: exit code 0
        with pytest.raises(TimeoutError):
            connection.drain_events(timeout=30)
        assert got == []  # a stopping worker takes no new message
        monkeypatch.setattr(worker_state, "should_stop", None)
        connection.drain_events(timeout=30)
        assert got == [1]  # still there for whoever takes it next
