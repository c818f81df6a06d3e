"""Pipelined labelling (worker/finisher.py): a message's batch is encoded while the one before is finished (index,
trigger, store) on the runtime's finisher thread; in order, one batch deep, and nothing else touches the index
meanwhile."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from ctax.creatives.intake import CreativeSubmission
from ctax.labelling.labeller import EncodedBatch, Labeller, LabelOutcome, LabelRequest
from ctax.worker.runtime import Runtime
from ctax.worker.tasks.label import run
from tests.worker.test_label_task import load, submit

CAR = "Buy the new Honda Civic sedan, a great family car"


class Paced:
    """The real labeller; `before_finish` runs on the finisher's thread before a batch is finished, `after_encode`
    on the main thread after one is encoded."""

    def __init__(self, labeller: Labeller) -> None:
        self._labeller = labeller
        self.before_finish = lambda batch: None
        self.after_encode = lambda requests: None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._labeller, name)

    def encode(self, requests: list[LabelRequest]) -> EncodedBatch:
        out = self._labeller.encode(requests)
        self.after_encode(requests)
        return out

    def finish(self, batch: EncodedBatch) -> list[LabelOutcome]:
        self.before_finish(batch)
        return self._labeller.finish(batch)


@pytest.fixture
def paced(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Paced:
    labeller = Paced(runtime.labeller())
    monkeypatch.setattr(runtime, "labeller", lambda: labeller)
    return labeller


def test_a_pipelined_task_returns_once_encoded_and_the_finisher_stores_its_batch(runtime: Runtime,
                                                                                paced: Paced) -> None:
    ids = submit(runtime, CreativeSubmission(texts=["Cheap car insurance quotes online"]))
    release = threading.Event()
    paced.before_finish = lambda batch: release.wait(30)
    assert run(runtime, ids, pipelined=True) == {"claimed": 1, "labelled": 0, "failed": 0, "requeued": 0}
    assert load(runtime, ids)[ids[0]].status == "processing"  # encoded, claimed, not stored yet
    release.set()
    runtime.finisher.settle()
    creative = load(runtime, ids)[ids[0]]
    assert creative.status == "labelled" and creative.prediction["top_k"]


def test_the_next_batch_is_encoded_while_the_one_before_is_finished_and_they_are_stored_in_order(
    runtime: Runtime, paced: Paced
) -> None:
    first = submit(runtime, CreativeSubmission(texts=[CAR]))
    copy = submit(runtime, CreativeSubmission(texts=[CAR]))  # the same ad again, in the next message
    second_encoded = threading.Event()
    paced.after_encode = lambda requests: second_encoded.set() if requests[0].creative_id == copy[0] else None
    # The first batch is finished only once the second is encoded: they overlap, or this test times out.
    paced.before_finish = lambda batch: (batch.requests[0].creative_id != first[0]
                                         or second_encoded.wait(30) or pytest.fail("not overlapped"))
    run(runtime, first, pipelined=True)
    run(runtime, copy, pipelined=True)
    runtime.finisher.settle()
    rows = load(runtime, first + copy)
    assert rows[first[0]].status == rows[copy[0]].status == "labelled"
    # The copy could not be matched before encoding (its original was not stored yet); finished after it, it
    # found it in the index and joined its group, as it would have labelled one after the other.
    assert rows[copy[0]].duplicate_of == first[0] and rows[first[0]].duplicate_of is None


def test_the_index_waits_for_the_batch_being_finished(runtime: Runtime, paced: Paced) -> None:
    ids = submit(runtime, CreativeSubmission(texts=["Fresh bread daily from our bakery"]))
    release, order = threading.Event(), []
    paced.before_finish = lambda batch: (release.wait(30), order.append("finished"))
    run(runtime, ids, pipelined=True)
    threading.Timer(0.3, release.set).start()
    assert runtime.index is not None  # what a search, a sync or a new labeller in this process asks for
    order.append("index")
    assert order == ["finished", "index"]


def test_stopping_the_worker_stores_the_batch_being_finished(runtime: Runtime, paced: Paced) -> None:
    ids = submit(runtime, CreativeSubmission(texts=["Adopt a dog from the shelter today"]))
    release = threading.Event()
    paced.before_finish = lambda batch: release.wait(30)
    run(runtime, ids, pipelined=True)
    threading.Timer(0.3, release.set).start()
    runtime.stop()
    assert load(runtime, ids)[ids[0]].status == "labelled"


def test_a_batch_whose_finishing_fails_is_failed_for_a_retry_not_lost(runtime: Runtime, paced: Paced) -> None:
    ids = submit(runtime, CreativeSubmission(texts=["Ice cold cola for the summer"]))

    def broken(batch: EncodedBatch) -> None:
        raise RuntimeError("index unreachable")

    paced.before_finish = broken
    run(runtime, ids, pipelined=True)
    runtime.finisher.settle()
    creative = load(runtime, ids)[ids[0]]
    assert creative.status == "queued" and "index unreachable" in (creative.error or "")
    paced.before_finish = lambda batch: None
    assert run(runtime, ids)["labelled"] == 1  # and labelled when it comes again


def test_the_task_pipelines_unless_torch_towers_run_on_a_cpu_or_the_setting_says(runtime: Runtime,
                                                                                  monkeypatch: pytest.MonkeyPatch
                                                                                  ) -> None:
    """CTAX_LABEL_PIPELINE=auto: torch on a CPU finishes each batch before the task returns (its forward needs the
    GIL the finisher's Python holds); `on` hands it to the finisher whatever the towers run on."""
    from ctax.worker import runtime as runtime_module
    from ctax.worker.tasks.label import label_creatives

    monkeypatch.setattr(runtime_module, "_runtime", runtime)
    assert runtime.labeller().space.backend == "torch" and runtime.device == "cpu"
    assert runtime.info["label_pipeline"] == "on"  # the tests' settings ask for it (tests/conftest.py)
    monkeypatch.setattr(runtime, "settings", runtime.settings.model_copy(update={"label_pipeline": "auto"}))
    ids = submit(runtime, CreativeSubmission(texts=["Cheap car insurance quotes online"]))
    assert label_creatives.run(ids)["labelled"] == 1  # stored before the task returned
    assert load(runtime, ids)[ids[0]].status == "labelled"

    monkeypatch.setattr(runtime, "settings", runtime.settings.model_copy(update={"label_pipeline": "on"}))
    ids = submit(runtime, CreativeSubmission(texts=["Fresh bread every morning at the corner bakery"]))
    assert label_creatives.run(ids)["labelled"] == 0  # handed to the finisher
    runtime.finisher.settle()
    assert load(runtime, ids)[ids[0]].status == "labelled"
    monkeypatch.setattr(runtime, "settings", runtime.settings.model_copy(update={"label_pipeline": "off"}))
    assert not runtime.pipelines(runtime.labeller())


def test_the_task_hands_its_creatives_back_while_no_version_is_active(runtime: Runtime,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A first start still building its version: the task asks how to label only once it has a labeller, so it
    hands the claimed creatives back (attempts not counted) instead of failing before it claims them."""
    from ctax.worker import runtime as runtime_module
    from ctax.worker.tasks.label import label_creatives

    def building() -> Labeller:
        raise RuntimeError("no active model version yet")

    monkeypatch.setattr(runtime_module, "_runtime", runtime)
    monkeypatch.setattr(runtime, "settings", runtime.settings.model_copy(update={"label_pipeline": "auto"}))
    monkeypatch.setattr(runtime, "labeller", building)
    ids = submit(runtime, CreativeSubmission(texts=[CAR]))
    assert label_creatives.run(ids) == {"claimed": 1, "labelled": 0, "failed": 0, "requeued": 1}
    creative = load(runtime, ids)[ids[0]]
    assert creative.status == "queued" and creative.attempts == 0 and creative.claimed_by is None
    monkeypatch.undo()
    monkeypatch.setattr(runtime_module, "_runtime", runtime)
    assert label_creatives.run(ids)["claimed"] == 1  # labelled once the version is there
    runtime.finisher.settle()
    assert load(runtime, ids)[ids[0]].status == "labelled"
