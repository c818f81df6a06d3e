"""Background jobs by name, and the queues they run on: the contract between whoever enqueues work (the API, the
command line, the outbox) and the worker that registers the tasks. Names only, so both sides import it cheaply."""

from __future__ import annotations

# Queues. The labelling worker consumes LABEL_QUEUE (or LABEL_GPU_QUEUE) and INDEX_QUEUE: it owns the index.
LABEL_QUEUE = "ctax.label"
LABEL_GPU_QUEUE = "ctax.label.gpu"
INDEX_QUEUE = "ctax.index"
TRAIN_QUEUE = "ctax.train"
# Searches: consumed by the index owner(s) beside LABEL_QUEUE and INDEX_QUEUE; the only tasks whose result is kept
# (the API waits for it through the result backend).
SEARCH_QUEUE = "ctax.search"

# Tasks.
LABEL_CREATIVES = "ctax.label.creatives"
SYNC_INDEX = "ctax.index.sync"
ACTIVATE_VERSION = "ctax.index.activate"
BUILD_VERSION = "ctax.index.build"
TRAIN = "ctax.training.run"
DISCOVER = "ctax.discovery.run"
REFRESH_MAP = "ctax.index.map"
BACKFILL_CREATIVES = "ctax.index.backfill_creatives"
FORGET_CREATIVES = "ctax.index.forget_creatives"
ERASE_ACCOUNT = "ctax.accounts.erase"
SEARCH = "ctax.search.run"

# Where a task goes unless the sender names a queue (labelling goes to the queue the settings name).
DEFAULT_QUEUES = {
    SYNC_INDEX: INDEX_QUEUE,
    ACTIVATE_VERSION: INDEX_QUEUE,
    BUILD_VERSION: INDEX_QUEUE,
    BACKFILL_CREATIVES: INDEX_QUEUE,
    FORGET_CREATIVES: INDEX_QUEUE,
    # In steps of a few hundred creatives, each queued by the last: the index owner labels between them, and the
    # erasure does not wait for a training run to end.
    ERASE_ACCOUNT: INDEX_QUEUE,
    SEARCH: SEARCH_QUEUE,
    REFRESH_MAP: INDEX_QUEUE,  # reads the index's vectors: its owner draws the map
    # Long jobs share the training worker, so they never hold up labelling.
    DISCOVER: TRAIN_QUEUE,
    TRAIN: TRAIN_QUEUE,
}

# Jobs that may run twice, so one a killed worker had started is sent again (store/outbox.py): each does what is
# still to do (an index diff, a removal, a promotion that checks it is still wanted) and nothing more. Training is
# not (a run cut short fails at the training worker's next start, for a person to start again); discovery, on the
# training worker too, is left to later flags or a reviewer to ask for again.
RESENT_WHEN_LOST = frozenset({SYNC_INDEX, ACTIVATE_VERSION, BUILD_VERSION, REFRESH_MAP, FORGET_CREATIVES,
                              ERASE_ACCOUNT})
# A job started this many times by workers that never finished it (it may be what kills them) is not run again.
MAX_JOB_STARTS = 3
# Tasks of bounded work (one message of creatives, one search): one that runs longer than CTAX_BATCH_STALL_S is hung
# (a lock never granted, a server that never answers), and its worker exits to be restarted (worker/runtime.py).
# Index builds, syncs and training grow with the data and are not judged by a fixed time.
WATCHED_FOR_HANGS = frozenset({LABEL_CREATIVES, SEARCH})
# The exit status of a worker that found its own task hung: what its supervisor's log line shows.
EXIT_HUNG = 70
