"""The labeller reads a batch's images together, and only those of creatives that came with an image and no text."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest
from PIL import Image

from ctax.config import Settings
from ctax.embedding.ocr import probe_images
from ctax.jobs import LABEL_QUEUE
from ctax.labelling.labeller import LabelRequest
from ctax.labelling.trigger import Trigger
from ctax.worker.runtime import Runtime


@pytest.fixture
def runtime(settings: Settings, db, pitt_labels) -> Iterator[Runtime]:
    """A labelling worker's runtime in this process: real MiniLM, Qdrant local mode, OCR with two engines."""
    rt = Runtime(settings.model_copy(update={"ocr_workers": 2}), [LABEL_QUEUE], owns_index=True)
    rt.start()
    yield rt
    rt.stop()
    if rt._index is not None:
        rt._index.client.close()


def test_only_creatives_with_an_image_and_no_text_are_read(runtime: Runtime) -> None:
    dog, coffee, tyres, lisbon = probe_images()
    ids = [str(uuid.uuid4()) for _ in range(6)]
    requests = [
        LabelRequest(ids[0], ["Adopt a dog from the shelter"], dog),
        LabelRequest(ids[1], [], coffee),  # image only: read
        LabelRequest(ids[2], [], tyres, ocr_text="Winter tyres on sale"),  # its text came with it: not read
        LabelRequest(ids[3], ["  ", ""], lisbon),  # blank texts are no text: read
        LabelRequest(ids[4], ["Buy a new car today"]),
        LabelRequest(ids[5], [], Image.new("RGB", (224, 224), (240, 240, 240))),
    ]
    labeller = runtime.labeller()
    outcomes = labeller.label(requests)
    assert [o.creative_id for o in outcomes] == [r.creative_id for r in requests]
    assert [o.ocr_text for o in outcomes] == [None, "Fresh coffee every morning", "Winter tyres on sale",
                                              "Fly to Lisbon for less", None, ""]
    assert outcomes[1].decision is not None and outcomes[1].prediction["modalities"]["ocr"] == "used"
    assert outcomes[5].error is not None  # no text and no image tower: nothing to label it by, said so
    assert runtime.info["ocr"] == f"onnxruntime, 2 engine(s) x {runtime.ocr.threads} thread(s) " \
                                  "(CTAX_OCR_BACKEND=onnxruntime)"

    labeller.ocr = None  # CTAX_OCR_ENABLED=false: nothing read, and an image-only creative says why it failed
    outcome = labeller.label([LabelRequest(ids[1], [], coffee)])[0]
    assert outcome.ocr_text is None and outcome.error is not None


def test_a_creative_read_by_ocr_is_judged_by_the_versions_ocr_thresholds(runtime: Runtime) -> None:
    labeller = runtime.labeller()
    # Thresholds no creative can miss for supplied text, none can meet for OCR text: the source alone decides.
    thresholds = replace(labeller.trigger.thresholds, new_label=-10.0, ocr_new_label=10.0)
    labeller.trigger = Trigger(labeller.taxonomy, thresholds, top_k=labeller.trigger.top_k)
    supplied, read = labeller.label([
        LabelRequest(str(uuid.uuid4()), ["Winter tyres on sale"]),
        LabelRequest(str(uuid.uuid4()), [], ocr_text="Winter tyres on sale"),
    ])
    assert supplied.decision is not None and supplied.decision.flag != "new_label"
    assert read.decision is not None and read.decision.flag == "new_label"
    assert read.decision.scores["new_label_threshold"] == 10.0
    assert "OCR-text new-label threshold" in read.decision.reasons[0]
