"""Worker heartbeats: each worker process keeps one row fresh; readiness reads them. And the database's own
answer to "are you there?"."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from ctax.store.models import WorkerHeartbeat
from ctax.store.types import utcnow


def name_prefix(host: str, pid: int) -> str:
    """What every name a worker process goes by starts with (its name is this and its queues): a supervisor that
    saw the process `pid` die on `host` finds that process's heartbeat and claims by it."""
    return f"{host}:{pid}:"


def ping(session: Session) -> None:
    """Raises when the database cannot answer."""
    session.execute(text("SELECT 1"))


def beat(
    session: Session, name: str, *, pid: int, queues: list[str], device: str | None, ready: bool,
    info: dict[str, Any],
) -> WorkerHeartbeat:
    """The worker `name` is alive now (its row is created on its first beat)."""
    row = session.get(WorkerHeartbeat, name)
    if row is None:
        row = WorkerHeartbeat(name=name, pid=pid, queues=queues, device=device)
        session.add(row)
    row.ready = ready
    row.info = info
    row.last_seen_at = utcnow()
    return row


def remove(session: Session, name: str) -> None:
    row = session.get(WorkerHeartbeat, name)
    if row is not None:
        session.delete(row)


def heartbeats(session: Session) -> list[WorkerHeartbeat]:
    return list(session.scalars(select(WorkerHeartbeat)))


def remove_process(session: Session, prefix: str) -> int:
    """Forget the heartbeats of a process known to be dead (names starting with `name_prefix(...)`)."""
    result = session.execute(
        delete(WorkerHeartbeat).where(WorkerHeartbeat.name.startswith(prefix, autoescape=True))
    )
    return int(getattr(result, "rowcount", 0) or 0)


def last_beat(session: Session, prefix: str) -> dt.datetime | None:
    """When the process whose names start with `prefix` (`name_prefix`) last beat; None if it never did."""
    return session.scalar(select(func.max(WorkerHeartbeat.last_seen_at))
                          .where(WorkerHeartbeat.name.startswith(prefix, autoescape=True)))


def forget_silent(session: Session, seen_before: dt.datetime) -> int:
    """Forget the heartbeats of workers not seen since `seen_before`: processes that died where no supervisor
    deleted their row (a pod replaced, a `kill -9` under systemd). Each restart is a new name, so without this
    /readyz listed every worker that ever ran."""
    result = session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.last_seen_at < seen_before))
    return int(getattr(result, "rowcount", 0) or 0)
