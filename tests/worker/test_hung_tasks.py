"""What a worker counts as hung: a task of bounded work (a labelling batch, a search) or the batch its finisher
stores, running longer than CTAX_BATCH_STALL_S; never training, an index build or an idle worker; nothing with the
watch off. The tasks it runs are tracked through Celery's own task signals (the e2e test in
tests/e2e/test_supervision.py sees a real stuck worker exit and come back)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from celery.signals import task_prerun

from ctax.config import Settings
from ctax.jobs import BUILD_VERSION, ERASE_ACCOUNT, INDEX_QUEUE, LABEL_CREATIVES, LABEL_QUEUE, SEARCH, TRAIN
from ctax.worker import runtime as runtime_module
from ctax.worker.app import create_celery
from ctax.worker.runtime import Runtime
from tests.conftest import make_settings


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime(settings.model_copy(update={"batch_stall_s": 60.0}), [LABEL_QUEUE, INDEX_QUEUE], owns_index=True)
    try:
        yield rt
    finally:
        rt.finisher.close()
        rt.db.dispose()


def test_a_bounded_task_is_hung_once_it_has_run_longer_than_the_stall(runtime: Runtime) -> None:
    now = time.monotonic()
    assert runtime.hung(now + 3600) is None  # idle
    for task in (LABEL_CREATIVES, SEARCH):
        runtime.task_began(task)
        assert runtime.hung(now + 59) is None
        hung = runtime.hung(now + 61)
        assert hung is not None and hung.startswith(f"{task} has run 61 s") and "CTAX_BATCH_STALL_S (60 s)" in hung
        runtime.task_ended()
        assert runtime.hung(now + 61) is None
    for task in (TRAIN, BUILD_VERSION, ERASE_ACCOUNT):  # grow with the data: not judged by a fixed time
        runtime.task_began(task)
        assert runtime.hung(now + 3600) is None, task
        runtime.task_ended()


def test_the_batch_the_finisher_stores_is_watched_too(runtime: Runtime) -> None:
    release = threading.Event()
    runtime.finisher.submit(lambda: release.wait(30) and None)  # a store waiting on a lock
    try:
        deadline = time.monotonic() + 5
        while runtime.finisher.running_since is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        hung = runtime.hung(time.monotonic() + 61)
        assert hung is not None and hung.startswith("finishing a labelled batch has run")
    finally:
        release.set()
        runtime.finisher.settle()
    assert runtime.hung(time.monotonic() + 61) is None


def test_no_stall_bound_means_no_watch(tmp_path: Any) -> None:
    rt = Runtime(make_settings(tmp_path / "var", batch_stall_s=0), [LABEL_QUEUE], owns_index=False)
    try:
        rt.task_began(LABEL_CREATIVES)
        assert rt.hung(time.monotonic() + 10**6) is None
    finally:
        rt.db.dispose()


def test_the_task_running_now_is_tracked_through_celerys_signals(runtime: Runtime) -> None:
    runtime_module._runtime = runtime
    seen: list[Any] = []

    def look(**_: Any) -> None:  # connected after the worker's own receiver: sees what it noted
        seen.append(runtime._task)

    try:
        celery: Celery = create_celery(runtime.settings, owns_index=True)
        celery.loader.import_default_modules()
        task_prerun.connect(look)
        celery.tasks[ERASE_ACCOUNT].apply(args=[999_999, 0.0])  # an account not being erased: does nothing
    finally:
        task_prerun.disconnect(look)
        runtime_module._runtime = None
    assert len(seen) == 1 and seen[0] is not None and seen[0][0] == ERASE_ACCOUNT
    assert runtime._task is None  # ended
