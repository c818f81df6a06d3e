"""Per-account rate limits on what costs the service most: creatives posted (each one labelled by a worker) and
searches (each one waits for the index owner).

Counted by the `limits` library, a moving window (at most N in any period, never 2N across a window's edge), in the
API process's memory or in Redis (`Settings.rate_limit_store`: the production profile's broker), where every API
process counts against one budget. A creative costs one, so a batch of 500 takes 500 of the account's budget at
once, or nothing: a batch is accepted whole or refused whole. The counts are per account (a key without one, staff
posting, counts on its own), so an account's keys share its budget.

A limit is a guard, not a ledger: when Redis cannot be reached the request passes, and the log says once that
the limits are not counted until it is back (the broker's own outage answers the request).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, cast

import redis.asyncio
from fastapi import Depends, Request, Response
from limits import RateLimitItem, WindowStats, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from ctax.api.deps import Poster
from ctax.config import Settings
from ctax.errors import CtaxError, InvalidInput
from ctax.store.models import Account, ApiKey

log = logging.getLogger(__name__)

REDIS_TIMEOUT_S = 1.0


RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: {"description": "over the account's rate limit: Retry-After says when to try again (docs/reliability.md)"}}


class Spend(StrEnum):
    CREATIVES = "creatives"
    SEARCHES = "searches"


class RateLimited(CtaxError):
    """Over the account's limit: the client should wait Retry-After seconds (and may send less at once)."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after_s: int, **detail: object) -> None:
        super().__init__(message, retry_after_s=retry_after_s, **detail)
        self.headers = {"Retry-After": str(retry_after_s)}


@dataclass(frozen=True)
class Allowance:
    """What is left of the tightest limit after a request, as the RateLimit-* headers tell it."""

    limit: int
    remaining: int
    reset_s: int

    def write(self, response: Response) -> None:
        response.headers["RateLimit-Limit"] = str(self.limit)
        response.headers["RateLimit-Remaining"] = str(self.remaining)
        response.headers["RateLimit-Reset"] = str(self.reset_s)


def _period(item: RateLimitItem) -> str:
    unit = item.GRANULARITY.name
    return unit if item.multiples == 1 else f"{item.multiples} {unit}s"


def _refusal(spend: Spend, item: RateLimitItem, cost: int, stats: WindowStats) -> RateLimited:
    # The window frees its oldest entries first: by reset_time at least one is free, perhaps not `cost`.
    wait = max(1, math.ceil(stats.reset_time - time.time()))
    asked = f"; this request has {cost}" if cost > 1 else ""
    return RateLimited(f"rate limit: the account may send {item.amount} {spend} a {_period(item)} and has "
                       f"{stats.remaining} left{asked}; retry after {wait} s", wait,
                       limit=item.amount, remaining=stats.remaining)


def rate_limits_view(account: Account, settings: Settings) -> dict[str, dict[str, Any]]:
    views = {}
    for spend in Spend:
        limit, own = settings.for_account("rate_limit", spend.value, account.rate_limits)
        views[spend.value] = {"limit": limit or "none", "own": own}
    return views


@functools.lru_cache(maxsize=256)
def _parsed(limit: str) -> list[RateLimitItem]:
    return parse_many(limit)


class Throttle:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        uri = settings.rate_limit_store
        self.where = uri.split("://", 1)[0]
        self.pool: redis.asyncio.ConnectionPool | None = None
        options: dict[str, Any] = {}
        if self.where.startswith("redis"):
            # Our own pool of redis-py (which Celery's Redis transport installs; limits' default async client is
            # coredis), so that the app closes it, and short timeouts: an unreachable Redis must not hold requests.
            self.pool = redis.asyncio.ConnectionPool.from_url(uri, socket_connect_timeout=REDIS_TIMEOUT_S,
                                                              socket_timeout=REDIS_TIMEOUT_S)
            # Deployments sharing one Redis keep their counts apart, as their queues and collections are.
            options = {"implementation": "redispy", "connection_pool": self.pool,
                       "key_prefix": f"{settings.collection_prefix}-limits"}
        self.storage = cast(Storage, storage_from_string(f"async+{uri}", **options))
        self.limiter = MovingWindowRateLimiter(self.storage)
        self._storage_down = False

    def _limits(self, spend: Spend, key: ApiKey) -> tuple[str, list[RateLimitItem]] | None:
        """Whose budget the key spends, and its limits for `spend` (None: no limit)."""
        account = key.account if key.account_id is not None else None
        limit, _ = self.settings.for_account("rate_limit", spend.value,
                                             account.rate_limits if account is not None else None)
        if limit is None:
            return None
        return (f"account-{key.account_id}" if key.account_id is not None else f"key-{key.id}"), _parsed(limit)

    async def left(self, spend: Spend, key: ApiKey) -> Allowance | None:
        """What is left of the account's budget, taking nothing (None: no limit, or its storage is away)."""
        if (limits := self._limits(spend, key)) is None:
            return None
        try:
            return await self._allowance(spend, *limits)
        except self.storage.base_exceptions:
            return None

    async def take(self, spend: Spend, key: ApiKey, cost: int = 1, *, only_test: bool = False) -> Allowance | None:
        """Take `cost` from the account's budget for `spend` (or, with only_test, check that it is there) and say
        what is left; RateLimited if any of its limits lacks room, and nothing is taken then."""
        if (limits := self._limits(spend, key)) is None:
            return None
        who, items = limits
        for item in items:
            if cost > item.amount:
                raise InvalidInput(f"{cost} {spend} in one request are more than the account may send in a "
                                   f"{_period(item)} ({item.amount}): send at most {item.amount} at once",
                                   limit=item.amount)
        try:
            return await self._take(spend, who, items, cost, only_test)
        except self.storage.base_exceptions as exc:
            if not self._storage_down:
                log.warning("rate limits not counted: %s storage unreachable (%s); requests pass until it is back",
                            self.where, exc)
            self._storage_down = True
            return None

    async def _take(self, spend: Spend, who: str, items: list[RateLimitItem], cost: int,
                    only_test: bool) -> Allowance | None:
        # Each call is a round trip to Redis in production, and a hammering client's refusals are most of its
        # requests: a refusal costs one read (the window's count, which also says when to retry), an accepted
        # request three (look, take, what is left).
        if only_test or len(items) > 1:
            # Every limit is looked at before any is taken from, so that a refusal by the second takes nothing from
            # the first. Two requests racing between the look and the take can both pass the look; the take never
            # goes over a limit (it is atomic in both stores), so the later one is refused there.
            for item in items:
                stats = await self.limiter.get_window_stats(item, spend.value, who)
                if stats.remaining < cost:
                    raise _refusal(spend, item, cost, stats)
        if not only_test:
            for item in items:
                if not await self.limiter.hit(item, spend.value, who, cost=cost):
                    raise _refusal(spend, item, cost, await self.limiter.get_window_stats(item, spend.value, who))
        if self._storage_down:  # it answered again
            log.warning("rate limits counted again: %s storage is back", self.where)
            self._storage_down = False
        return None if only_test else await self._allowance(spend, who, items)

    async def _allowance(self, spend: Spend, who: str, items: list[RateLimitItem]) -> Allowance:
        now = time.time()
        tightest: Allowance | None = None
        for item in items:
            stats = await self.limiter.get_window_stats(item, spend.value, who)
            allowance = Allowance(item.amount, stats.remaining, max(0, math.ceil(stats.reset_time - now)))
            if tightest is None or allowance.remaining < tightest.remaining:
                tightest = allowance
        assert tightest is not None
        return tightest

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.aclose()


async def get_throttle(request: Request) -> Throttle:
    throttle: Throttle = request.app.state.throttle
    return throttle


ThrottleDep = Annotated[Throttle, Depends(get_throttle)]


async def search_allowance(key: Poster, throttle: ThrottleDep, response: Response) -> None:
    """A search costs one of the account's searches; the answer's RateLimit-* headers say what is left."""
    allowance = await throttle.take(Spend.SEARCHES, key)
    if allowance is not None:
        allowance.write(response)


SearchAllowance = Depends(search_allowance)
