"""The index owner takes a waiting search before its other queues' work, up to SEARCH_BURST in a row.

A worker runs one task at a time (`--pool=solo`) and kombu takes its queues in turn, one message each: a search
then waited for a labelling batch (or a backfill chunk) per search ahead of it. Under bench.load that held searches
to about one a second while the worker labelled, and most were refused as busy. Searches are short (tens of ms) and
someone is waiting for each, so they go first; after SEARCH_BURST in a row the other queues get their turn, so a
flood of searches slows labelling but cannot stop it (the API also lets only CTAX_SEARCH_MAX_WAITING wait).

Written here because kombu has no per-queue priority across queues: its Redis transport takes the class that orders
the queues for each BRPOP by name (the `queue_order_strategy` transport option: `REDIS_STRATEGY` names the one
below), and its SQLAlchemy transport always uses FairCycle, so the worker swaps in a Channel whose cycle asks the
search queue first (`use_search_first_sqlalchemy`). That cycle also ends a stopping worker's poll at once.
"""

from __future__ import annotations

from collections.abc import Callable
from queue import Empty  # what kombu's virtual channels raise for an empty queue
from typing import Any

from celery.worker import state as worker_state
from kombu.utils.scheduling import FairCycle, round_robin_cycle

from ctax.jobs import SEARCH_QUEUE

SEARCH_BURST = 8
REDIS_STRATEGY = "ctax.worker.queue_order:SearchFirstRedisCycle"


class SearchFirstRedisCycle(round_robin_cycle):
    """The order of the queues for the Redis transport's next BRPOP (which takes from the first non-empty one):
    the search queue first unless it was served SEARCH_BURST times in a row, the others in round-robin."""

    def __init__(self, it: list[str] | None = None) -> None:
        super().__init__(it)  # type: ignore[no-untyped-call]
        self.searches_in_a_row = 0

    def consume(self, n: int) -> list[str]:
        queues: list[str] = list(super().consume(n))  # type: ignore[no-untyped-call]
        if SEARCH_QUEUE in queues:
            queues.remove(SEARCH_QUEUE)
            queues.insert(0 if self.searches_in_a_row < SEARCH_BURST else len(queues), SEARCH_QUEUE)
        return queues

    def rotate(self, last_used: str) -> str:
        self.searches_in_a_row = self.searches_in_a_row + 1 if last_used == SEARCH_QUEUE else 0
        if last_used == SEARCH_QUEUE:  # the others keep their turn order
            return last_used
        result: str = super().rotate(last_used)  # type: ignore[no-untyped-call]
        return result


class SearchFirstCycle(FairCycle):
    """FairCycle (one queue after the other) with a look at the search queue before each turn. The turn that
    follows a full burst goes to the other queues in order, and to search only when they are all empty:
    FairCycle's own turn could land on search again and start the next burst, and labelling then had one turn in
    up to 18 under a flood of searches."""

    def __init__(self, fun: Callable[..., Any], resources: list[str], predicate: type[Exception] = Exception) -> None:
        super().__init__(fun, resources, predicate)  # type: ignore[no-untyped-call]
        self.searches_in_a_row = 0

    def get(self, callback: Callable[..., Any], **kwargs: Any) -> Any:
        if _stopping():
            # kombu's drain_events polls empty queues until its 2 s timeout, and Celery's loop drains once more
            # after it has seen the stop flag: a worker told to stop took up to 4 s to leave. A timeout ends the
            # drain at once (what the loop expects of an idle broker); a stopping worker takes no new message.
            raise TimeoutError()  # socket.timeout, which the loop catches
        searching = SEARCH_QUEUE in self.resources
        if searching and self.searches_in_a_row < SEARCH_BURST:
            try:
                return self._search(callback, **kwargs)
            except self.predicate:
                searching = False  # just found empty: not asked again this turn
        self.searches_in_a_row = 0
        others = [queue for queue in self.resources if queue != SEARCH_QUEUE]
        for _ in others:
            queue = others[self.pos % len(others)]
            self.pos = (self.pos + 1) % len(others)
            try:
                return self.fun(queue, callback, **kwargs)
            except self.predicate:
                pass
        if searching:
            return self._search(callback, **kwargs)
        raise self.predicate()

    def _search(self, callback: Callable[..., Any], **kwargs: Any) -> Any:
        delivered = self.fun(SEARCH_QUEUE, callback, **kwargs)
        self.searches_in_a_row += 1
        return delivered


def _stopping() -> bool:
    """Whether Celery has been told to stop this worker (warm or cold; the flags hold an exit code, 0 included)."""
    return any(flag is not None and flag is not False
               for flag in (worker_state.should_stop, worker_state.should_terminate))


def use_search_first_sqlalchemy() -> None:
    """Make kombu's SQLAlchemy transport (the embedded broker) take searches first, in this process."""
    from kombu.transport import sqlalchemy as sqla_transport

    if getattr(sqla_transport.Transport.Channel, "ctax_search_first", False):
        return

    class SearchFirstChannel(sqla_transport.Channel):
        ctax_search_first = True

        def _reset_cycle(self) -> None:
            self._cycle = SearchFirstCycle(self._get_and_deliver, self._active_queues, Empty)

    sqla_transport.Transport.Channel = SearchFirstChannel
