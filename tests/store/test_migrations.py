"""The schema comes only from migrations, and they match the models on both databases."""

from __future__ import annotations

import datetime as dt

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from ctax.store.migrate import downgrade, upgrade
from ctax.store.models import Base
from ctax.store.session import make_engine


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrations_build_the_models_schema_and_go_back_down(backend, tmp_path, request) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": False}), Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"
    assert "creatives" in inspect(engine).get_table_names()
    engine.dispose()
    downgrade(url, "base")
    engine = make_engine(url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()


def _insert(connection, table: str, **values) -> None:
    columns = ", ".join(values)
    connection.execute(text(f"INSERT INTO {table} ({columns}) VALUES ({', '.join(':' + c for c in values)})"), values)


def _data_at_0001(connection) -> None:
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


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrading_a_database_with_data_moves_posters_into_a_default_account(backend, tmp_path, request) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    upgrade(url, "0001")
    engine = make_engine(url)
    with engine.begin() as connection:
        _data_at_0001(connection)
    engine.dispose()

    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as connection:
        accounts = connection.execute(text("SELECT id, name, kind FROM accounts")).all()
        assert [(name, kind) for _, name, kind in accounts] == [("default", "advertiser")]
        default = accounts[0][0]
        keys = dict(connection.execute(text("SELECT id, account_id FROM api_keys")).tuples().all())
        assert keys == {1: default, 2: default, 3: None}
        rows = {row[0]: row[1:] for row in connection.execute(
            text("SELECT id, account_id, idempotency_key FROM creatives")).tuples()}
        assert rows == {
            "p1-first": (default, "order-1"),
            "p2-later": (default, None),  # the same key as p1-first's, in what is now one account: the oldest keeps it
            "p2-other": (default, "order-2"),
            "admin": (None, "order-1"),
            "imported": (None, None),
            "eval": (None, None),
        }
        # Rebuilding a table (SQLite's batch mode) must not cascade into the rows that refer to it.
        assert connection.scalar(text("SELECT count(*) FROM annotations")) == 1
        assert connection.scalar(text("SELECT count(*) FROM review_items")) == 1
    engine.dispose()

    downgrade(url, "0001")
    engine = make_engine(url)
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM creatives")) == len(rows)
        assert connection.scalar(text("SELECT count(*) FROM annotations")) == 1
        assert "accounts" not in inspect(connection).get_table_names()
    engine.dispose()


def test_a_fresh_database_has_no_account(tmp_path) -> None:
    """The default account is made only for data that needs one; a new service starts with none."""
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM accounts")) == 0
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_duplicate_groups_start_with_every_creative_alone_and_its_item_of_one(backend, tmp_path, request) -> None:
    """0004 on a database with data: no creative is in a group, every review item stands for one creative, and
    rebuilding the creatives table (SQLite) loses none of the rows that refer to it, up or down."""
    url = f"sqlite:///{tmp_path / 'm.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    upgrade(url, "0003")
    engine = make_engine(url)
    with engine.begin() as connection:
        _data_at_0001(connection)
    engine.dispose()

    upgrade(url)
    engine = make_engine(url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT creative_id, members FROM review_items")).tuples().all() == [
            ("p1-first", 1)]
        assert connection.scalar(text("SELECT count(*) FROM creatives WHERE duplicate_of IS NOT NULL "
                                      "OR text_sha256 IS NOT NULL")) == 0
        assert connection.scalar(text("SELECT count(*) FROM annotations")) == 1
    engine.dispose()
    downgrade(url, "0003")
    engine = make_engine(url)
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM creatives")) == 6
        assert connection.scalar(text("SELECT count(*) FROM review_items")) == 1
        assert connection.scalar(text("SELECT count(*) FROM annotations")) == 1
    engine.dispose()
