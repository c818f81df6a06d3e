"""What ctax does to qdrant-client's local mode (the embedded profile's index) beyond its public API, and why:
each write request commits once with room for its bookkeeping, the in-memory mirrors are read from its own arrays,
and a collection mostly made of deleted points is loaded again. Each step checks that the internals it touches
are the ones expected, and otherwise leaves local mode to do as it does (slower, same result): a Qdrant server
never comes here."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from qdrant_client import QdrantClient

# Local mode keeps a deleted point in memory until its collection is loaded again; one is reloaded once it holds
# this many deleted points and more than it holds live ones, if it holds at most RELOAD_MAX_LIVE: a reload reads
# every live point back while the worker waits (90 ms for 5,000 points, 1.8 s for 50,000, measured on a busy
# 2-core machine), and 20,000 is where local mode itself says it is not meant to go.
RELOAD_DEAD = 10_000
RELOAD_MAX_LIVE = 20_000


class _OneCommit:
    """Stands in for a local-mode collection's SQLite connection while one write request runs: qdrant-client's
    local mode commits every point by itself (`with connection:` per point, an fsync each); here the request
    commits once (`one_commit`). Everything but the commit goes to the connection."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def __enter__(self) -> _OneCommit:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def commit(self) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


class _Appendable(np.ndarray):
    """A 1-D array with spare room after its end, for local mode's per-point bookkeeping while one write request
    runs: numpy.append of a scalar fills the room and returns the longer array over the same buffer, where numpy
    copies the whole array. Local mode appends to two such arrays for every point it adds, so adding a creative
    to a collection of 1M cost ~1.3 ms, more than encoding it (docs/benchmarks.md, "The embedded index as labelled
    data grows"). Anything else, or an append the room or the dtype does not allow, is numpy's own. Appending
    to an array older than the newest would overwrite the newest's last element: local mode only ever appends to
    the array it holds (`self.deleted = np.append(self.deleted, 0)`); an append to an older array over the same
    buffer is numpy's own too. The buffer and the newest length ride on the array itself: finding them from its
    base on every append was a sixth of a local write (docs/benchmarks.md, "Local writes hand over arrays")."""

    _room: np.ndarray | None = None  # the buffer this array starts; views numpy makes of it have none
    _newest: list[int] | None = None  # the length of the newest array over that buffer, shared by all of them

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        # Local mode appends Python ints (0 or 1), which an integer array takes in its own dtype, as numpy would.
        if (func is np.append and len(args) == 2 and args[0] is self and not kwargs and type(args[1]) is int
                and self._room is not None and self._newest is not None
                and self._newest[0] == len(self) < len(self._room) and self.dtype.kind in "iu"):
            used = len(self)
            self._room[used] = args[1]
            return _over(self._room, used + 1, self._newest)
        return super().__array_function__(func, types, args, kwargs)


def _over(room: np.ndarray, used: int, newest: list[int] | None = None) -> _Appendable:
    """The first `used` elements of `room` as the newest _Appendable over it."""
    array = room[:used].view(_Appendable)
    array._room, array._newest = room, newest if newest is not None else [used]
    array._newest[0] = used
    return array


def _owner(array: np.ndarray) -> np.ndarray | None:
    """The 1-D array of the same dtype that owns `array`'s memory, if `array` is the start of it."""
    owner = array
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    if (owner.ndim != 1 or owner.dtype != array.dtype or array.ndim != 1 or not owner.flags.owndata
            or owner.__array_interface__["data"][0] != array.__array_interface__["data"][0]
            or array.strides != owner.strides):
        return None
    return owner


def _appendable(array: Any, adding: int) -> Any:
    """`array` as an _Appendable with room for `adding` more, over its buffer where that has the room (kept from
    the last request), else over a new one of twice the size, in the dtype local mode's appends turn it into."""
    if not isinstance(array, np.ndarray) or array.ndim != 1:
        return array
    buffer = _owner(array)
    if buffer is not None and len(buffer) - len(array) >= adding:
        return _over(buffer, len(array))
    grown = np.zeros(max(2 * len(array), len(array) + adding, 64), dtype=np.append(array[:0], 0).dtype)
    grown[: len(array)] = array
    return _over(grown, len(array))


def _local(client: QdrantClient) -> Any:
    return getattr(client, "_client", None)


def _stored(client: QdrantClient, collection: str) -> Any:
    """Local mode's in-memory collection (a LocalCollection), None on a server or where none is."""
    return getattr(_local(client), "collections", {}).get(collection)


@contextmanager
def one_commit(client: QdrantClient, collection: str, adding: int = 0) -> Iterator[None]:
    """The writes inside commit once, in a WAL journal without an fsync per commit.

    Why by hand: qdrant-client's local mode stores each point in its own SQLite transaction in a rollback
    journal, an fsync per point; recording a batch's traffic cost ~1-5 ms per creative, more than a fast
    text encoder took to encode it (docs/benchmarks.md, "fixed cost"). WAL with synchronous=NORMAL is what
    our own SQLite database runs: a killed process loses no committed write, an OS crash or power cut may
    lose the last commits. Nothing here needs more: labels and exemplars are re-synced from the database by
    diff, and the traffic window is evidence, not a record. With `adding`
    (the points the request may add), local mode's per-point bookkeeping has room for them (_Appendable)."""
    stored = _stored(client, collection)
    persistence: Any = getattr(stored, "storage", None)
    connection = getattr(persistence, "storage", None)
    if not isinstance(connection, sqlite3.Connection) or not callable(getattr(persistence, "persist", None)):
        yield
        return
    connection.execute("PRAGMA journal_mode=WAL")  # kept by the file; asking again costs nothing
    connection.execute("PRAGMA synchronous=NORMAL")  # per connection
    persistence.storage = _OneCommit(connection)
    flags: Any = getattr(stored, "deleted_per_vector", None)
    roomy = bool(adding) and isinstance(flags, dict) and set(flags) == {""}
    if roomy:
        stored.deleted, flags[""] = _appendable(stored.deleted, adding), _appendable(flags[""], adding)
    try:
        yield
    finally:
        persistence.storage = connection
        if roomy:  # plain arrays again outside the request, over the same buffers
            stored.deleted, flags[""] = np.asarray(stored.deleted), np.asarray(flags[""])
        # What was applied in memory is stored, as qdrant-client would have (it stores point by point).
        connection.commit()


def live_points(client: QdrantClient, collection: str, dim: int
                ) -> tuple[list[tuple[Any, dict[str, Any]]], np.ndarray] | None:
    """(point id, payload) of every live point and their float32 vectors, in a scroll's order (by id, ints
    first: equal scores then rank as they did when the mirrors were scrolled), read from local mode's own arrays;
    None where they are not the ones expected.

    Why not a scroll: it hands every vector over as Python floats in pydantic records, ~25 KB a point while a
    page is held, and sorts every id per page (docs/benchmarks.md, "The embedded index as labelled data grows")."""
    stored = _stored(client, collection)
    arrays = getattr(stored, "vectors", None)
    deleted = getattr(stored, "deleted", None)
    if not isinstance(arrays, dict) or set(arrays) != {""} or not isinstance(deleted, np.ndarray):
        return None
    ids = stored.ids_inv
    live = np.flatnonzero(~deleted[: len(ids)].astype(bool)).tolist()
    live.sort(key=lambda n: ("", ids[n]) if isinstance(ids[n], int) else (ids[n], 0))
    return ([(ids[n], stored.payload[n]) for n in live],
            np.asarray(arrays[""][live], dtype=np.float32).reshape(-1, dim))


def reload_if_mostly_deleted(client: QdrantClient, collection: str) -> None:
    """Load a collection again from its file once most of what it holds in memory was deleted.

    Why by hand: qdrant-client's local mode only marks a deleted point, and keeps its vector, payload and id until
    the process opens the folder again. The traffic window deletes one point per creative labelled, so a worker's
    memory grew by ~3 KB per creative labelled since it started (docs/benchmarks.md, "The embedded index as
    labelled data grows"). The file holds only live points, so loading the one collection again is a fresh start
    for it; the mirrors (table.py) are not touched."""
    local, stored = _local(client), _stored(client, collection)
    deleted = getattr(stored, "deleted", None)
    where = getattr(local, "_collection_path", None)
    if not isinstance(deleted, np.ndarray) or not callable(where) or getattr(stored, "storage", None) is None:
        return
    held = len(stored.ids_inv)
    live = held - int(np.count_nonzero(deleted[:held]))
    if held - live < max(RELOAD_DEAD, live) or live > RELOAD_MAX_LIVE:
        return
    # Loaded beside the old one first (SQLite takes a second connection): a load that fails leaves the old in use.
    loaded = type(stored)(stored.config, where(collection), force_disable_check_same_thread=getattr(
        local, "force_disable_check_same_thread", False))
    local.collections[collection] = loaded
    stored.close()
