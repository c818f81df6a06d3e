"""The Celery application, built from settings (never at import)."""

from __future__ import annotations

from celery import Celery

from ctax.config import Settings
from ctax.jobs import INDEX_QUEUE, LABEL_CREATIVES, LABEL_QUEUE, SEARCH_QUEUE, TRAIN_QUEUE
from ctax.worker import queue_order

TASK_MODULES = [
    "ctax.worker.tasks.label",
    "ctax.worker.tasks.index",
    "ctax.worker.tasks.training",
    "ctax.worker.tasks.discovery",
    "ctax.worker.tasks.search",
    "ctax.worker.tasks.accounts",
]


def create_celery(settings: Settings, queues: list[str] | None = None, owns_index: bool = False) -> Celery:
    app = Celery("ctax", broker=settings.celery_broker_url, backend=settings.celery_result_url,
                 include=TASK_MODULES, set_as_current=True)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        # Only the search task keeps its result (ignore_result=False on it): the API waits for it. Results are
        # read once and forgotten by the API; expiry only catches those whose reader gave up.
        task_ignore_result=True,
        result_expires=600,
        # A task is acknowledged after it ran, and given back if the worker process dies while running it.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=LABEL_QUEUE,
        task_routes={
            LABEL_CREATIVES: {"queue": settings.label_queue},
            "ctax.index.*": {"queue": INDEX_QUEUE},
            "ctax.search.*": {"queue": SEARCH_QUEUE},
            "ctax.training.*": {"queue": TRAIN_QUEUE},
            # Long jobs share the training worker, so they never hold up labelling.
            "ctax.discovery.*": {"queue": TRAIN_QUEUE},
        },
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        ctax_settings=settings,
        ctax_queues=queues or [LABEL_QUEUE, INDEX_QUEUE, SEARCH_QUEUE],
        ctax_owns_index=owns_index,
    )
    if settings.celery_broker_url.startswith("redis"):
        # Longer than any task runs, so Redis does not hand a running task to a second worker.
        app.conf.broker_transport_options = {"visibility_timeout": 4 * 3600,
                                             "queue_order_strategy": queue_order.REDIS_STRATEGY}
    else:
        # kombu's SQLAlchemy transport polls its queues, sleeping polling_interval (1 s by default) when all are
        # empty: a search (or a lone creative) waited up to that long to be picked up. Set on the transport class:
        # that transport hands every broker_transport_option to create_engine, which refuses polling_interval.
        # docs/architecture.md ("Search") says what polling more often costs.
        from kombu.transport import sqlalchemy as sqla_transport

        sqla_transport.Transport.polling_interval = settings.broker_poll_s
        queue_order.use_search_first_sqlalchemy()
    import ctax.worker.signals  # noqa: F401  (connects the process hooks)

    return app

