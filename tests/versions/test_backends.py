"""A version built with an exported backend, end to end in a real worker runtime: built at first start (never at
request time), served, said at start-up, on the model card and by GET /v1/models/{id}, and served again by a new
runtime that loads it from disk (a restart), without building it again."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import select

from ctax.config import Settings
from ctax.creatives.intake import CreativeSubmission, create_creative
from ctax.embedding.backends.manifest import MANIFEST_FILE
from ctax.embedding.backends.spec import BackendUnavailable
from ctax.jobs import LABEL_QUEUE
from ctax.store.models import Creative
from ctax.worker.runtime import Runtime
from ctax.worker.tasks.label import run
from tests.conftest import headers, make_settings

TEXT = "Adopt a shelter dog today, they deserve a loving home"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "var", backend="onnx")


def _label(rt: Runtime, text: str) -> Creative:
    with rt.db.write() as session:
        creative_id = create_creative(session, rt.blobs, rt.settings, CreativeSubmission(texts=[text]), None)[0].id
    run(rt, [creative_id])
    with rt.db.read() as session:
        return session.scalars(select(Creative).where(Creative.id == creative_id)).one()


def _started(settings: Settings) -> Runtime:
    rt = Runtime(settings, [LABEL_QUEUE], owns_index=True)
    rt.start()
    return rt


def _stop(rt: Runtime) -> None:
    rt.stop()
    rt.index.client.close()


def test_a_version_built_with_a_backend_serves_it_after_a_restart(settings: Settings, pitt_labels, keys,
                                                                  client, caplog) -> None:
    caplog.set_level("INFO", logger="ctax")
    rt = _started(settings)
    try:
        assert rt.info["backend"] == "onnx" and rt.info["backend_reason"] == "CTAX_BACKEND=onnx"
        # an export runs outside the GIL: pipelined
        assert rt.info["label_pipeline"] == "on" and rt.pipelines(rt.labeller())
        assert any("inference backend onnx" in record.getMessage() for record in caplog.records)
        first = _label(rt, TEXT)
        directory = Path(rt.settings.model_dir / first.model_version_id)
    finally:
        _stop(rt)
    assert first.status == "labelled"
    manifest = directory / MANIFEST_FILE
    built_at = manifest.stat().st_mtime_ns
    card = (directory / "MODEL_CARD.md").read_text()
    assert "## Inference backend" in card and "- serves: **onnx** (CTAX_BACKEND=onnx)" in card
    assert "| onnx |" in card and "| torch |" in card

    body = client.get(f"/v1/models/{first.model_version_id}", headers=headers(keys["reviewer"])).json()
    backend = body["backend"]
    assert backend["serves"] == "onnx" and backend["setting"] == "onnx" and backend["basis"] == "cosine"
    assert backend["creatives_per_s"]["text"] > 0 and backend["speedup"] > 0
    assert backend["cosine_to_torch"]["text"] >= 0.999
    assert backend["accuracy_delta"] == {}  # no validation data for the pretrained version: the cosine rule
    assert set(backend["measured"]) == {"torch", "onnx"}

    again = _started(settings)  # a restart: a new runtime loads the version from disk
    try:
        assert again.info["backend"] == "onnx"
        second = _label(again, TEXT)
    finally:
        _stop(again)
    assert manifest.stat().st_mtime_ns == built_at  # served from what was built, not built again
    assert second.model_version_id == first.model_version_id
    assert second.prediction["top_k"][0]["path"] == first.prediction["top_k"][0]["path"]
    assert second.prediction["top_k"][0]["score"] == pytest.approx(first.prediction["top_k"][0]["score"], abs=1e-5)


def test_a_named_backend_the_active_version_lacks_stops_the_worker_with_one_line(settings: Settings,
                                                                                  pitt_labels) -> None:
    _stop(_started(settings))  # built with onnx only
    rt = Runtime(settings.model_copy(update={"backend": "openvino"}), [LABEL_QUEUE], owns_index=True)
    try:
        with pytest.raises(BackendUnavailable, match=re.escape(
                "CTAX_BACKEND=openvino: model version v1-pretrained has no openvino export (it has: torch, onnx)")
                           ) as caught:
            rt.start()
        assert "\n" not in str(caught.value)
    finally:
        rt.stop()
        rt.index.client.close()


@pytest.mark.slow  # trains a text tower
def test_a_trained_versions_backends_are_scored_on_its_held_out_split(settings: Settings, pitt_labels,
                                                                      shared_data: Path) -> None:
    from ctax.embedding.space import SharedSpace
    from ctax.jobs import TRAIN_QUEUE
    from ctax.store.models import ModelVersion, TrainingRun
    from ctax.training.pipeline import run_training
    from tests.worker.test_training import LABELS, seed_examples

    rt = Runtime(settings.model_copy(update={"backend": "onnx-int8", "train_epochs": 1, "train_batch_size": 16}),
                 [LABEL_QUEUE, TRAIN_QUEUE], owns_index=True)
    try:
        seed_examples(rt, shared_data, LABELS, 12)
        rt.start()
        with rt.db.write() as session:
            run_row = TrainingRun(status="running", params={"seed": 3})
            session.add(run_row)
            session.flush()
            run_id = run_row.id
        version_id = run_training(rt.db, rt.settings, rt.blobs, run_id,
                                  lambda d: SharedSpace.load(Path(d), rt.device), rt.device)
        with rt.db.read() as session:
            version = session.get(ModelVersion, version_id)
            metrics, directory = dict(version.metrics), Path(version.artefact_dir)
    finally:
        _stop(rt)
    backends = metrics["backends"]
    assert backends["basis"] == "validation" and backends["serves"] == "onnx-int8"
    int8, torch = backends["measured"]["onnx-int8"], backends["measured"]["torch"]
    assert torch["accuracy"]["top1"] == metrics["top1"]  # torch's figures are the version's own
    assert set(int8["loss"]) == {"top1", "novelty_auroc", "wrong_label_auroc"}
    assert int8["loss"]["top1"] == pytest.approx(torch["accuracy"]["top1"] - int8["accuracy"]["top1"], abs=1e-6)
    card = (directory / "MODEL_CARD.md").read_text()
    assert "| onnx-int8 |" in card and "accuracy basis: validation" in card
