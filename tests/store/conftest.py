"""What the migration tests share: an empty database of each backend that a test moves between revisions and
looks into, and the data a service at revision 0001 holds (what later migrations must carry over)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Connection, text

from ctax.store.migrate import downgrade, upgrade
from ctax.store.session import make_engine


class MigratedDatabase:
    """One database a test upgrades and downgrades; each look inside has its own engine, disposed before the
    next migration runs."""

    def __init__(self, url: str) -> None:
        self.url = url

    def upgrade(self, revision: str = "head") -> None:
        upgrade(self.url, revision)

    def downgrade(self, revision: str) -> None:
        downgrade(self.url, revision)

    @contextmanager
    def connect(self, begin: bool = False) -> Iterator[Connection]:
        """A connection (in a transaction committed at the end, with `begin`), its engine disposed after."""
        engine = make_engine(self.url)
        try:
            with engine.begin() if begin else engine.connect() as connection:
                yield connection
        finally:
            engine.dispose()

    def fill_as_at_0001(self, revision: str) -> None:
        """Migrated to `revision`, holding what a service at 0001 holds (`data_at_0001`)."""
        self.upgrade(revision)
        with self.connect(begin=True) as connection:
            data_at_0001(connection)


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated_db(request: pytest.FixtureRequest, tmp_path: Path) -> MigratedDatabase:
    """An empty database of each backend, no revision applied yet."""
    if request.param == "sqlite":
        return MigratedDatabase(f"sqlite:///{tmp_path / 'm.db'}")
    return MigratedDatabase(request.getfixturevalue("postgres_url"))


def _insert(connection: Connection, table: str, **values: object) -> None:
    columns = ", ".join(values)
    connection.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({', '.join(':' + c for c in values)})"), values)


def data_at_0001(connection: Connection) -> None:
    """What a service at revision 0001 holds: two poster keys that both used Idempotency-Key 'order-1', an admin
    that posted too, imported and `ctax eval` creatives (no key), and a review item and annotation that refer to
    creatives."""
    at = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    for key_id, role in [(1, "poster"), (2, "poster"), (3, "admin")]:
        _insert(connection, "api_keys", id=key_id, name=f"key {key_id}", role=role, key_hash=str(key_id) * 64,
                prefix="ctax_abcd", created_at=at)
    creatives = [("p1-first", 1, "order-1", "api"), ("p2-later", 2, "order-1", "api"),
                 ("p2-other", 2, "order-2", "api"), ("admin", 3, "order-1", "api"),
                 ("imported", None, None, "import"), ("eval", None, None, "api")]
    for n, (creative_id, key_id, idem, source) in enumerate(creatives):
        _insert(connection, "creatives", id=creative_id, api_key_id=key_id, idempotency_key=idem, source=source,
                status="labelled", texts="[]", metadata="{}", attempts=0, created_at=at + dt.timedelta(seconds=n),
                updated_at=at)
    _insert(connection, "labels", id=1, path="Food", name="Food", depth=0, status="active", source="import",
            created_at=at, updated_at=at)
    _insert(connection, "annotations", id=1, creative_id="imported", label_id=1, kind="label", source="import",
            created_at=at)
    _insert(connection, "review_items", id=1, creative_id="p1-first", flag="new_label", status="open", priority=1.0,
            version=1, created_at=at, updated_at=at)
