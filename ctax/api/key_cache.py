"""API keys checked in the last few seconds, held in memory so a request does not read its key from the database.

Under load every request's key lookup was a read transaction and a thread hop of its own. The cost: a key revoked
(or an account suspended) through this process stops working at once (the route forgets it), but in another API
process, or after `ctax accounts suspend`, only once its entry expires, after at most `CTAX_KEY_CACHE_S` seconds
(0 turns the cache off).
"""

from __future__ import annotations

import threading
import time

from ctax.store.keys import hash_key
from ctax.store.models import ApiKey


class KeyCache:
    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, ApiKey]] = {}
        self._lock = threading.Lock()

    def get(self, presented: str) -> ApiKey | None:
        if self.ttl_s <= 0:
            return None
        digest = hash_key(presented)
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None or entry[0] < time.monotonic():
                self._entries.pop(digest, None)
                return None
            return entry[1]

    def put(self, presented: str, key: ApiKey) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.max_entries:  # many keys (or a key-guessing client): start over
                self._entries.clear()
            self._entries[hash_key(presented)] = (time.monotonic() + self.ttl_s, key)

    def forget(self, key_id: int) -> None:
        with self._lock:
            self._entries = {d: e for d, e in self._entries.items() if e[1].id != key_id}

    def forget_account(self, account_id: int) -> None:
        """Every key of the account (it was suspended): read again, and refused, from the next request on."""
        with self._lock:
            self._entries = {d: e for d, e in self._entries.items() if e[1].account_id != account_id}
