"""Label changes re-embed exactly what they must; exemplars follow annotations."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ctax.store.models import Annotation, Creative, Label
from ctax.taxonomy import catalog
from ctax.taxonomy.paths import LabelPath
from ctax.versions.sync import sync_exemplars, sync_labels
from ctax.worker.runtime import Runtime


def test_rename_describe_retire_and_add_reembed_what_changed(runtime: Runtime, pitt_labels) -> None:
    space = runtime.labeller().space
    version = space.version
    before_ids, before_vectors = runtime.index.label_vectors(version)
    before = dict(zip(before_ids, before_vectors, strict=True))
    assert len(before) == 65

    with runtime.db.write() as session:
        vehicles = session.get(Label, pitt_labels["Product/Vehicles"])
        catalog.rename_label(session, vehicles, "Automotive")
        catalog.retire_label(session, session.get(Label, pitt_labels["PSA/Animal Rights"]))
        catalog.create_label(session, LabelPath.parse("Product/Automotive/Motorbikes"))
        session.get(Label, pitt_labels["PSA"]).description = "public service announcements"
    report = sync_labels(runtime.db, space, runtime.index)
    assert (report.upserted, report.deleted) == (3, 1)  # Automotive, its Cars, the new Motorbikes; Animal Rights
    payloads = runtime.index.label_payloads(version)
    assert payloads[pitt_labels["Product/Vehicles/Cars"]]["path"] == "Product/Automotive/Cars"
    assert pitt_labels["PSA/Animal Rights"] not in payloads
    after_ids, after_vectors = runtime.index.label_vectors(version)
    after = dict(zip(after_ids, after_vectors, strict=True))
    assert not np.allclose(after[pitt_labels["Product/Vehicles"]], before[pitt_labels["Product/Vehicles"]])
    assert np.allclose(after[pitt_labels["PSA"]], before[pitt_labels["PSA"]])  # untouched labels keep their vector
    assert sync_labels(runtime.db, space, runtime.index).upserted == 0  # idempotent

    # The labeller sees the new taxonomy at once: the new label is a candidate without any task running.
    ranked = runtime.labeller().label([_request("a fast motorbike for the open road")])[0].prediction["top_k"]
    assert "Product/Automotive/Motorbikes" in [entry["path"] for entry in ranked]


def _request(text: str):  # type: ignore[no-untyped-def]
    from ctax.labelling.labeller import LabelRequest

    return LabelRequest("0" * 32, [text])


def test_exemplars_follow_the_latest_annotation(runtime: Runtime, pitt_labels) -> None:
    space = runtime.labeller().space
    with runtime.db.write() as session:
        creative = Creative(source="import", status="labelled", texts=["Adopt a dog"])
        session.add(creative)
        session.add(Annotation(creative=creative, label_id=pitt_labels["PSA/Animal Rights"], source="import"))
    assert sync_exemplars(runtime.db, space, runtime.index, runtime.blobs).upserted == 1
    assert runtime.index.exemplar_labels(space.version) == {creative.id: pitt_labels["PSA/Animal Rights"]}
    with runtime.db.write() as session:  # a reviewer relabels it
        session.add(Annotation(creative_id=creative.id, label_id=pitt_labels["Product/Pets/Pet Food"],
                               source="review"))
    sync_exemplars(runtime.db, space, runtime.index, runtime.blobs)
    assert runtime.index.exemplar_labels(space.version) == {creative.id: pitt_labels["Product/Pets/Pet Food"]}
    with runtime.db.write() as session:  # then rejects it: no longer an example of anything
        session.add(Annotation(creative_id=creative.id, label_id=None, kind="reject", source="review"))
    assert sync_exemplars(runtime.db, space, runtime.index, runtime.blobs).deleted == 1
    assert runtime.index.exemplar_labels(space.version) == {}


def test_a_card_that_cannot_be_drawn_costs_the_card_not_the_calibration(runtime: Runtime) -> None:
    """The card is drawn after the calibration is committed (never under the writer lock): when its folder cannot
    be written the thresholds are stored all the same, and the next calibration draws it."""
    import shutil

    from ctax.store.models import ModelVersion
    from ctax.store.repos import versions
    from ctax.versions.lifecycle import recalibrate_pretrained

    labeller = runtime.labeller()
    with runtime.db.read() as session:
        version = versions.active(session)
        assert version is not None
        directory = Path(version.artefact_dir)
    shutil.rmtree(directory / "card", ignore_errors=True)
    (directory / "card").write_text("not a folder")  # the pictures cannot be written
    with runtime.db.write() as session:
        session.get(ModelVersion, version.id).thresholds = {"source": "stale"}  # type: ignore[union-attr]
    recalibrate_pretrained(runtime.db, labeller.space, runtime.index, runtime.settings)
    with runtime.db.read() as session:
        assert session.get(ModelVersion, version.id).thresholds["source"] != "stale"  # type: ignore[union-attr]
    assert (directory / "card").is_file()
    (directory / "card").unlink()
    recalibrate_pretrained(runtime.db, labeller.space, runtime.index, runtime.settings)
    assert (directory / "card" / "card.json").is_file() and (directory / "MODEL_CARD.md").is_file()
