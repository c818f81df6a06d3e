"""The labelling queue's turns: a flood from one account waits in the database, bounded ahead of the workers, and
every other account's creatives go out in turns with it, not behind all of it. Everything is real but the broker:
`dispatch` takes the send as an argument, and these tests hand it one that records the messages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctax.config import Settings
from ctax.creatives.intake import CreativeSubmission, dispatch, held_back, submit
from ctax.enums import AccountKind
from ctax.store import leases
from ctax.store import outbox as outbox_rows
from ctax.store.blobs import BlobStore
from ctax.store.migrate import upgrade
from ctax.store.repos import accounts
from ctax.store.session import Database
from ctax.store.types import utcnow
from tests.conftest import make_settings


class Broker:
    """The messages sent, in order (each a list of creative ids)."""

    def __init__(self) -> None:
        self.messages: list[list[str]] = []

    def send(self, _task: str, args: list, _queue: str) -> None:
        self.messages.append(list(args[0]))

    def ids(self) -> list[str]:
        return [cid for message in self.messages for cid in message]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Database, dict[str, object]]]:
    """A migrated database of either kind (the turns are a window function: both must run it), and the
    settings that point at it."""
    url = None if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    where: dict[str, object] = {"database_url": url} if url else {}
    settings = make_settings(tmp_path / "var", **where)
    settings.ensure_dirs()
    upgrade(settings.sqlalchemy_url)
    db = Database(settings.sqlalchemy_url)
    yield db, {"data_dir": tmp_path / "var", **where}
    db.dispose()


def _settings(where: dict[str, object], **overrides: object) -> Settings:
    return make_settings(**{**where, **overrides})  # type: ignore[arg-type]


def _post(db: Database, settings: Settings, account_id: int, n: int, word: str) -> list[str]:
    subs = [CreativeSubmission(texts=[f"{word} offer number {k}"]) for k in range(n)]
    return [c.id for c, _ in submit(db, BlobStore(settings.blob_dir), settings, subs, None, account_id)]


def _accounts(db: Database) -> tuple[int, int]:
    with db.write() as session:
        return (accounts.add(session, "flood", AccountKind.PARTNER).id,
                accounts.add(session, "small", AccountKind.ADVERTISER).id)


def test_a_flood_is_sent_a_window_at_a_time_and_another_accounts_creatives_take_turns_with_it(
        database: tuple[Database, dict[str, object]]) -> None:
    db, where = database
    settings = _settings(where, label_batch_size=4, dispatch_ahead_batches=2)
    flood, small = _accounts(db)
    flooded = _post(db, settings, flood, 40, "Bulk")
    mine = _post(db, settings, small, 3, "Local")  # posted after all 40
    broker = Broker()

    assert dispatch(db, broker.send, settings) == 8  # two batches ahead of the workers, not 43
    first = broker.ids()
    assert set(mine) <= set(first), "the later account's creatives wait behind the flood"
    assert [cid for cid in first if cid in flooded] == flooded[:5]  # the flood's own order is kept
    assert dispatch(db, broker.send, settings) == 0  # nobody took any: nothing more goes out
    assert held_back(db)  # the API's dispatcher looks again soon, not in a second

    with db.write() as session:  # a worker takes the first batch
        assert len(leases.claim(session, broker.messages[0], "worker-1", settings.lease_s)) == 4
    assert dispatch(db, broker.send, settings) == 4
    assert broker.ids()[8:] == flooded[5:9]


def test_without_a_bound_everything_goes_at_once_still_in_turns(
        database: tuple[Database, dict[str, object]]) -> None:
    db, where = database
    settings = _settings(where, label_batch_size=4, dispatch_ahead_batches=0)
    flood, small = _accounts(db)
    flooded = _post(db, settings, flood, 12, "Bulk")
    mine = _post(db, settings, small, 2, "Local")
    broker = Broker()
    assert held_back(db)
    assert dispatch(db, broker.send, settings, limit_batches=100) == 14
    assert not held_back(db)
    sent = broker.ids()
    assert sent[:4] == [flooded[0], mine[0], flooded[1], mine[1]] and sent[4:] == flooded[2:]


def test_a_lost_message_is_sent_again_before_new_work_and_counts_against_the_bound(
        database: tuple[Database, dict[str, object]]) -> None:
    db, where = database
    settings = _settings(where, label_batch_size=4, dispatch_ahead_batches=1)
    flood, _ = _accounts(db)
    flooded = _post(db, settings, flood, 10, "Bulk")
    broker = Broker()
    assert dispatch(db, broker.send, settings) == 4
    later = utcnow() + dt.timedelta(seconds=settings.requeue_after_s + 1)  # no worker ever took the message
    with db.read() as session:
        again = outbox_rows.undispatched(session, 100, later - dt.timedelta(seconds=settings.requeue_after_s),
                                         later - dt.timedelta(seconds=settings.lease_s), ahead=4)
    assert again == flooded[:4]  # the lost ones, and no new ones: they fill the bound
