"""What the dispatcher's prune of ended outbox jobs costs (store/outbox.prune), on each database.

    python -m bench.outbox_prune                                  # 100,000 ended jobs, SQLite and PostgreSQL
    python -m bench.outbox_prune --rows 1000000 --json out.json

An outbox of `--rows` jobs sent eight days ago is written straight into a fresh database (as a week of deletions
and syncs leaves it: nine in ten ended, one in ten a training request that is never tracked; `--live` more that
must stay: sent recently, or sent long ago and never ended), then one pass of the API dispatcher's prune
(`Dispatcher.prune`: the newest job of each task read once, then batches of PRUNE_BATCH) deletes what is older than
CTAX_OUTBOX_KEEP_DAYS. Reported per database: rows before, deleted, left (must be the live ones and the newest of
each task), seconds, rows deleted a second, and the longest single batch (a write transaction: how long the
dispatcher holds the database's write lock on SQLite at most).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, insert, select

from ctax.api.dispatch import PRUNE_BATCH
from ctax.jobs import FORGET_CREATIVES, INDEX_QUEUE, SYNC_INDEX, TRAIN, TRAIN_QUEUE
from ctax.store import outbox
from ctax.store.migrate import upgrade
from ctax.store.models import OutboxJob
from ctax.store.session import Database
from ctax.store.types import utcnow
from tests.support import PG_ADMIN_URL, drop_pg_database

console = Console(width=140)
FILL_CHUNK = 10_000


@dataclass
class Row:
    database: str
    rows: int
    deleted: int
    left: int
    expected_left: int
    seconds: float
    deleted_per_s: float
    longest_batch_ms: float


def fill(db: Database, rows: int, live: int) -> None:
    old, recent = utcnow() - dt.timedelta(days=8), utcnow() - dt.timedelta(hours=1)
    ended = {"task": FORGET_CREATIVES, "queue": INDEX_QUEUE, "args": [["c"]], "sent_at": old, "starts": 1,
             "done_at": old}
    untracked = {"task": TRAIN, "queue": TRAIN_QUEUE, "args": [{}], "sent_at": old}
    with db.write() as session:
        for start in range(0, rows, FILL_CHUNK):
            batch = [untracked if (start + i) % 10 == 9 else ended for i in range(min(FILL_CHUNK, rows - start))]
            session.execute(insert(OutboxJob), batch)
        half = live // 2
        session.execute(insert(OutboxJob), [{**ended, "sent_at": recent, "done_at": recent}] * half
                        + [{"task": SYNC_INDEX, "queue": INDEX_QUEUE, "args": ["r"], "sent_at": old}] * (live - half))


def prune_pass(db: Database, keep_days: float) -> tuple[int, float]:
    """Dispatcher.prune's pass, timed per batch: what was deleted, and the longest batch in seconds."""
    cutoff = utcnow() - dt.timedelta(days=keep_days)
    with db.read() as session:
        keep = outbox.newest_of_each_task(session)
    deleted, longest = 0, 0.0
    while True:
        started = time.perf_counter()
        with db.write() as session:
            step = outbox.prune(session, cutoff, keep, limit=PRUNE_BATCH)
        longest = max(longest, time.perf_counter() - started)
        deleted += step
        if step < PRUNE_BATCH:
            return deleted, longest


def measure(name: str, url: str, rows: int, live: int) -> Row:
    upgrade(url)
    db = Database(url)
    try:
        fill(db, rows, live)
        started = time.perf_counter()
        deleted, longest = prune_pass(db, keep_days=7)
        seconds = time.perf_counter() - started
        with db.read() as session:
            left = int(session.scalar(select(func.count()).select_from(OutboxJob)) or 0)
    finally:
        db.dispose()
    # The live ones, and the newest training request (the newest forget and sync are among the live ones).
    return Row(name, rows + live, deleted, left, live + 1, round(seconds, 2), round(deleted / max(seconds, 1e-9)),
               round(longest * 1000, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="jobs sent long ago")
    parser.add_argument("--live", type=int, default=1000, help="jobs that must stay")
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    results: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="ctax-prune-") as tmp:
        for name in args.databases:
            if name == "sqlite":
                results.append(measure(name, f"sqlite:///{tmp}/ctax.db", args.rows, args.live))
                continue
            import psycopg

            database = f"ctax_bench_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{database}"')
            try:
                url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"
                results.append(measure(name, url, args.rows, args.live))
            finally:
                drop_pg_database(database)
    table = Table(title=f"one prune pass of the outbox (batches of {PRUNE_BATCH})")
    for column in ("database", "rows", "deleted", "left", "expected left", "s", "deleted/s", "longest batch ms"):
        table.add_column(column, justify="right")
    for row in results:
        table.add_row(*(str(v) for v in asdict(row).values()))
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
        console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
