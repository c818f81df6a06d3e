"""The schema comes only from migrations, and they match the models on both databases."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select, text

from ctax.errors import SchemaOutOfDate
from ctax.store.models import Creative
from ctax.store.session import Database
from ctax.store.types import Base
from tests.store.conftest import MigratedDatabase


def test_migrations_build_the_models_schema_and_go_back_down(migrated_db: MigratedDatabase) -> None:
    migrated_db.upgrade()
    with migrated_db.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": False}), Base.metadata)
        assert diff == [], f"models and migrations differ: {diff}"
        assert "creatives" in inspect(connection).get_table_names()
    migrated_db.downgrade("base")
    with migrated_db.connect() as connection:
        assert set(inspect(connection).get_table_names()) <= {"alembic_version"}


def test_upgrading_a_database_with_data_moves_posters_into_a_default_account(migrated_db: MigratedDatabase) -> None:
    migrated_db.fill_as_at_0001("0001")

    migrated_db.upgrade()
    with migrated_db.connect() as connection:
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
        # The count a quota is checked against is not kept until a quota applies (0010).
        assert connection.execute(text("SELECT creatives_held FROM accounts")).scalar_one() is None
        # Rebuilding a table (SQLite's batch mode) must not cascade into the rows that refer to it.
        assert connection.scalar(text("SELECT count(*) FROM annotations")) == 1
        assert connection.scalar(text("SELECT count(*) FROM review_items")) == 1

    migrated_db.downgrade("0001")
    with migrated_db.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM creatives")) == len(rows)
        assert connection.scalar(text("SELECT count(*) FROM annotations")) == 1
        assert "accounts" not in inspect(connection).get_table_names()


@pytest.mark.parametrize("migrated_db", ["sqlite"], indirect=True)
def test_a_fresh_database_has_no_account(migrated_db: MigratedDatabase) -> None:
    """The default account is made only for data that needs one; a new service starts with none."""
    migrated_db.upgrade()
    with migrated_db.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM accounts")) == 0


def test_duplicate_groups_start_with_every_creative_alone_and_its_item_of_one(migrated_db: MigratedDatabase) -> None:
    """0004 on a database with data: no creative is in a group, every review item stands for one creative, and
    rebuilding the creatives table (SQLite) loses none of the rows that refer to it, up or down."""
    migrated_db.fill_as_at_0001("0003")

    migrated_db.upgrade()
    with migrated_db.connect() as connection:
        assert connection.execute(text("SELECT creative_id, members FROM review_items")).tuples().all() == [
            ("p1-first", 1)]
        assert connection.scalar(text("SELECT count(*) FROM creatives WHERE duplicate_of IS NOT NULL "
                                      "OR text_sha256 IS NOT NULL")) == 0
        assert connection.scalar(text("SELECT count(*) FROM annotations")) == 1
    migrated_db.downgrade("0003")
    with migrated_db.connect() as connection:
        assert connection.scalar(text("SELECT count(*) FROM creatives")) == 6
        assert connection.scalar(text("SELECT count(*) FROM review_items")) == 1
        assert connection.scalar(text("SELECT count(*) FROM annotations")) == 1


def test_a_database_nobody_migrated_or_behind_the_code_says_to_upgrade_it(migrated_db: MigratedDatabase) -> None:
    """Not "unavailable or busy", which is what `ctax api` on a fresh database answered every request with."""
    db = Database(migrated_db.url)
    try:
        with pytest.raises(SchemaOutOfDate) as empty, db.read() as session:
            session.scalars(select(Creative)).all()
        migrated_db.upgrade("0004")  # before creatives.campaign
        with pytest.raises(SchemaOutOfDate) as behind, db.write() as session:
            session.scalars(select(Creative)).all()
        for caught in (empty, behind):
            assert caught.value.message.startswith("the database has no ctax schema, or an older one (")
            assert caught.value.message.endswith("): run `ctax db upgrade` (`ctax run` migrates as it starts)")
            assert "\n" not in caught.value.message and caught.value.status_code == 503
        assert "creatives" in empty.value.message and "campaign" in behind.value.message
        migrated_db.upgrade()
        with db.read() as session:
            assert session.scalars(select(Creative)).all() == []
    finally:
        db.dispose()
