"""A labelling worker's second thread: it finishes one batch (index search, trigger, database, sweep) while the
worker's main thread reads and encodes the next one.

Encoding runs in the towers' own threads (ONNX Runtime, OpenVINO, PyTorch) with the GIL released; finishing is
Python work of ~0.3 ms per creative on one core (docs/benchmarks.md, "fixed cost"). In turn, they left the
fastest backends' cores idle for a fifth to a third of the time. One batch deep and one thread: batches are
finished in the order they were encoded (earlier creatives are the traffic later ones are judged against), and
the main thread never runs more than one batch ahead. Nothing else in the process touches the index while a
batch is being finished: Runtime.index settles first (qdrant-client's local mode is not safe across threads).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger(__name__)


class Finisher:
    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ctax-finish")
        self._pending: Future[None] | None = None
        self._thread: int | None = None
        self.running_since: float | None = None  # when the batch being finished began (monotonic): the hang watch

    def submit(self, work: Callable[[], None]) -> None:
        """Run `work` on the finisher's thread once the batch before it is finished."""
        self.settle()
        self._pending = self._pool.submit(self._run, work)

    def settle(self) -> None:
        """Wait until the batch being finished (if any) is stored; from the finisher's own thread, return."""
        if threading.get_ident() == self._thread:
            return
        pending = self._pending
        if pending is not None:
            pending.result()
            self._pending = None

    def close(self) -> None:
        self.settle()
        self._pool.shutdown(wait=True)

    def _run(self, work: Callable[[], None]) -> None:
        self._thread = threading.get_ident()
        self.running_since = time.monotonic()
        try:
            work()
        except Exception:  # its claims stay this worker's until the lease expires; then the dispatcher resends
            log.exception("finishing a labelled batch failed")
        finally:
            self.running_since = None
