"""The image path learns inside the real training pipeline: rendered ad images, a tiny open_clip tower loaded
from a checkpoint path (as a real CLIP checkpoint would be), a projection trained into the text space."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from ctax.creatives.intake import CreativeSubmission, create_creative
from ctax.jobs import INDEX_QUEUE, LABEL_QUEUE, TRAIN_QUEUE
from ctax.store.models import Annotation, Creative, ModelVersion, TrainingRun
from ctax.versions import registry
from ctax.worker import runtime as runtime_module
from ctax.worker.runtime import Runtime
from ctax.worker.tasks.index import activate_version, build_version
from ctax.worker.tasks.label import run as label_run
from ctax.worker.tasks.training import train
from tests.conftest import make_settings

pytestmark = pytest.mark.slow  # trains towers: `make test-fast` leaves it out

LABELS = ["Product/Vehicles/Cars", "PSA/Animal Rights", "Product/Food and Drink/Soft Drinks"]


def png(image) -> bytes:  # type: ignore[no-untyped-def]
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_a_trained_version_labels_images_with_its_image_tower(tmp_path, tiny_clip_checkpoint, shared_data) -> None:
    from bench.render_ads import render_ad
    from ctax.store.migrate import upgrade
    from ctax.taxonomy import catalog
    from ctax.taxonomy.importers import parse_path_lines

    settings = make_settings(tmp_path / "var", image_enabled=True, image_pretrained=str(tiny_clip_checkpoint),
                             train_epochs=1, train_image_epochs=15, train_batch_size=16, ocr_enabled=False)
    settings.ensure_dirs()
    upgrade(settings.sqlalchemy_url)
    rt = Runtime(settings, [LABEL_QUEUE, INDEX_QUEUE, TRAIN_QUEUE], owns_index=True)
    runtime_module._runtime = rt
    rows = [json.loads(line) for line in (shared_data / "pitt_ads_dev.jsonl").open()]
    try:
        with rt.db.write() as session:
            catalog.import_labels(session, parse_path_lines("\n".join(LABELS)))
            ids = {label: catalog.find_label(session, label).id for label in LABELS}
            for label in LABELS:
                for n, row in enumerate([r for r in rows if r["label"] == label][:12]):
                    image = render_ad(row["texts"], label, seed=n, size=32, legible=False)
                    creative = Creative(source="import", status="labelled", texts=row["texts"],
                                        image_sha256=rt.blobs.put(png(image)), image_mime="image/png")
                    session.add(creative)
                    session.add(Annotation(creative=creative, label_id=ids[label], source="import"))
        rt.start()
        assert "no trained projection" in rt.info["image_tower"]  # pretrained: the tower loads, nothing maps it

        with rt.db.write() as session:
            run = TrainingRun(status="queued", params={})
            session.add(run)
            session.flush()
            run_id = run.id
        version_id = train(run_id)
        with rt.db.read() as session:
            assert version_id, session.get(TrainingRun, run_id).error
        with rt.db.read() as session:
            version = session.get(ModelVersion, version_id)
            assert version.config["image"]["saved"] == "image"
            assert version.config["image"]["pretrained"] == str(tiny_clip_checkpoint)
            assert (Path(version.artefact_dir) / "image").is_dir()
        build_version(version_id)
        with rt.db.write() as session:
            registry.mark_active(session, session.get(ModelVersion, version_id))
        activate_version(version_id)

        # An image-only creative is now encoded by the trained tower and lands on its label's branch.
        hits = 0
        fresh = [r for r in rows if r["label"] == LABELS[1]][20:26]
        for n, row in enumerate(fresh):
            image = png(render_ad(row["texts"], LABELS[1], seed=100 + n, size=32, legible=False))
            with rt.db.write() as session:
                creative, _ = create_creative(session, rt.blobs, settings, CreativeSubmission(image=image), None)
            label_run(rt, [creative.id])
            with rt.db.read() as session:
                labelled = session.get(Creative, creative.id)
            assert labelled.prediction["modalities"]["image"] == "used"
            assert labelled.prediction["modalities_used"] == ["image"]
            assert labelled.model_version_id == version_id
            hits += labelled.prediction["top_k"][0]["path"].startswith("PSA")
        assert hits >= 4, f"only {hits} of 6 unseen images of {LABELS[1]} landed under PSA"
    finally:
        runtime_module._runtime = None
        rt.stop()
        if rt._index is not None:
            rt._index.client.close()
