"""The labelling task in a real worker runtime: batching, modalities, failures, leases, idempotency."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from ctax.creatives.intake import CreativeSubmission, create_creative, retry
from ctax.store.blobs import BlobStore
from ctax.store.models import Creative, ReviewItem, utcnow
from ctax.worker.runtime import Runtime
from ctax.worker.tasks.label import run
from tests.conftest import make_settings, png_bytes


def submit(rt: Runtime, *subs: CreativeSubmission) -> list[str]:
    with rt.db.write() as session:
        return [create_creative(session, rt.blobs, rt.settings, sub, None)[0].id for sub in subs]


def load(rt: Runtime, ids: list[str]) -> dict[str, Creative]:
    with rt.db.read() as session:
        return {c.id: c for c in session.scalars(select(Creative).where(Creative.id.in_(ids)))}


def test_waiting_creatives_are_encoded_in_one_forward_pass_per_batch(runtime: Runtime) -> None:
    texts = ["Buy the new Honda Civic", "Stop animal cruelty today", "Ice cold cola for summer",
             "Stop smoking now", "Luxury perfume for her"] * 7  # 35 creatives, batch size 16
    # Told apart by a letter: exact duplicates would take their group's decision without being encoded.
    ids = submit(runtime, *[CreativeSubmission(texts=[f"{t} ({chr(97 + n % 26)}{chr(97 + n // 26)})"])
                            for n, t in enumerate(texts)])
    transformer = runtime.labeller().space.text.model[0]
    batches: list[int] = []
    handle = transformer.register_forward_hook(lambda _m, args, _o: batches.append(len(args[0]["input_ids"])))
    try:
        counts = run(runtime, ids)
    finally:
        handle.remove()
    assert counts == {"claimed": 35, "labelled": 35, "failed": 0, "requeued": 0}
    assert batches == [16, 16, 3]  # one pass per batch of waiting creatives, not one per creative
    rows = load(runtime, ids)
    car = rows[ids[0]].prediction
    assert car["model_version"] == "v1-pretrained" and car["modalities_used"] == ["text"]
    assert car["top_k"][0]["path"].startswith("Product/Vehicles")
    assert rows[ids[1]].prediction["top_k"][0]["path"].startswith("PSA/Animal Rights")


def test_labelling_is_idempotent_and_respects_live_claims(runtime: Runtime) -> None:
    [first, second] = submit(runtime, CreativeSubmission(texts=["Fresh bread daily"]),
                             CreativeSubmission(texts=["Cheap car insurance"]))
    assert run(runtime, [first])["labelled"] == 1
    assert run(runtime, [first])["claimed"] == 0  # a redelivered message changes nothing
    with runtime.db.write() as session:
        session.execute(update(Creative).where(Creative.id == second).values(
            status="processing", claimed_by="other-worker", claimed_at=utcnow()))
    assert run(runtime, [second])["claimed"] == 0  # another live worker holds it
    with runtime.db.write() as session:
        session.execute(update(Creative).where(Creative.id == second).values(
            claimed_at=utcnow() - dt.timedelta(seconds=runtime.settings.lease_s + 1)))
    assert run(runtime, [second])["labelled"] == 1  # its lease ran out: the dead worker's work is taken over
    assert load(runtime, [second])[second].status == "labelled"


def test_a_worker_whose_claim_was_taken_over_stores_nothing(runtime: Runtime, monkeypatch) -> None:
    [creative_id] = submit(runtime, CreativeSubmission(texts=["Cheap car insurance"]))
    labeller = runtime.labeller()

    class TakenOverWhileLabelling:
        version = labeller.version
        encode = labeller.encode

        def finish(self, batch):
            outcomes = labeller.finish(batch)
            with runtime.db.write() as session:  # this worker stalled past its lease; another took the work over
                session.execute(update(Creative).where(Creative.id == creative_id).values(
                    claimed_by="other-worker", claimed_at=utcnow()))
            return outcomes

    monkeypatch.setattr(runtime, "labeller", TakenOverWhileLabelling)
    assert run(runtime, [creative_id]) == {"claimed": 1, "labelled": 0, "failed": 0, "requeued": 0}
    creative = load(runtime, [creative_id])[creative_id]
    assert creative.status == "processing" and creative.claimed_by == "other-worker"
    assert creative.prediction is None and creative.labelled_at is None


def test_a_batch_stores_only_the_results_whose_claims_this_worker_still_holds(runtime: Runtime, monkeypatch) -> None:
    ids = submit(runtime, *[CreativeSubmission(texts=[t]) for t in ("Cheap car insurance", "Fresh bread daily",
                                                                     "Adopt a dog today")])
    labeller = runtime.labeller()

    class OneTakenOverWhileLabelling:
        version = labeller.version
        encode = labeller.encode

        def finish(self, batch):
            outcomes = labeller.finish(batch)
            with runtime.db.write() as session:  # one creative of the batch was taken over by another worker
                session.execute(update(Creative).where(Creative.id == ids[1]).values(
                    claimed_by="other-worker", claimed_at=utcnow()))
            return outcomes

    monkeypatch.setattr(runtime, "labeller", OneTakenOverWhileLabelling)
    assert run(runtime, ids) == {"claimed": 3, "labelled": 2, "failed": 0, "requeued": 0}
    rows = load(runtime, ids)
    assert [rows[i].status for i in ids] == ["labelled", "processing", "labelled"]
    assert rows[ids[1]].claimed_by == "other-worker" and rows[ids[1]].prediction is None
    with runtime.db.read() as session:  # nor does a review item open for what was not stored
        assert session.scalar(select(ReviewItem).where(ReviewItem.creative_id == ids[1])) is None


def test_labelling_again_updates_open_review_items_and_leaves_decided_ones(runtime: Runtime, pitt_labels) -> None:
    car = "Buy the new Honda Civic sedan, a great family car"
    # Told apart by letters, not numbers: copies that differ only by a number would join one duplicate group.
    ids = submit(runtime, *[CreativeSubmission(texts=[f"{car} {'xyz'[n]}"], asserted_label="PSA/Animal Rights")
                            for n in range(3)])
    run(runtime, ids[:2])
    with runtime.db.write() as session:
        items = {i.creative_id: i for i in session.scalars(select(ReviewItem).where(ReviewItem.creative_id.in_(ids)))}
        assert set(items) == set(ids[:2])
        items[ids[0]].status, items[ids[0]].priority = "decided", -1.0  # a reviewer decided this one
        items[ids[1]].priority = -1.0
        session.execute(update(Creative).where(Creative.id.in_(ids[:2])).values(status="queued"))
    assert run(runtime, ids)["labelled"] == 3
    with runtime.db.read() as session:
        items = {i.creative_id: i for i in session.scalars(select(ReviewItem).where(ReviewItem.creative_id.in_(ids)))}
    assert items[ids[0]].status == "decided" and items[ids[0]].priority == -1.0  # untouched
    assert items[ids[1]].status == "open" and items[ids[1]].priority > 0  # the new decision's
    new = items[ids[2]]  # opened by the batch's one insert, with every field the decision sets
    assert new.status == "open" and new.flag == "wrong_label" and new.version == 1
    assert new.asserted_label_id == pitt_labels["PSA/Animal Rights"] and new.model_version_id == "v1-pretrained"
    assert new.priority > 0 and new.priority_reason and new.suggested_label_id and new.top_score
    assert new.created_at is not None and new.updated_at is not None


def test_flags_create_review_items_with_reasons(runtime: Runtime, pitt_labels) -> None:
    [wrong] = submit(runtime, CreativeSubmission(texts=["Buy the new Honda Civic sedan, a great family car"],
                                                 asserted_label="PSA/Animal Rights"))
    run(runtime, [wrong])
    creative = load(runtime, [wrong])[wrong]
    assert creative.flag == "wrong_label", creative.prediction
    assert any("PSA/Animal Rights" in reason for reason in creative.prediction["reasons"])
    with runtime.db.read() as session:
        item = session.scalar(select(ReviewItem).where(ReviewItem.creative_id == wrong))
        assert item.flag == "wrong_label" and item.asserted_label_id == pitt_labels["PSA/Animal Rights"]
        assert item.priority > 0 and item.priority_reason


def test_image_without_text_is_read_by_ocr(runtime: Runtime) -> None:
    [image_id] = submit(runtime, CreativeSubmission(image=png_bytes("Adopt a dog today", size=(520, 180))))
    run(runtime, [image_id])
    creative = load(runtime, [image_id])[image_id]
    assert creative.status == "labelled", creative.error
    assert "dog" in creative.ocr_text.lower()
    modalities = creative.prediction["modalities"]
    assert modalities["ocr"] == "used" and modalities["text"] == "not supplied"
    assert modalities["image"] == "disabled"  # image tower switched off in these settings


def test_unloadable_image_weights_are_reported_and_ocr_still_labels(tmp_path, pitt_labels) -> None:
    from ctax.jobs import LABEL_QUEUE
    from ctax.store.migrate import upgrade

    settings = make_settings(tmp_path / "broken", image_enabled=True, image_arch="ctax-tiny-vit",
                             image_pretrained=str(tmp_path / "no-such-checkpoint.pt"))
    settings.ensure_dirs()
    upgrade(settings.sqlalchemy_url)
    from ctax.taxonomy import catalog
    from ctax.taxonomy.importers import parse_path_lines

    rt = Runtime(settings, [LABEL_QUEUE], owns_index=True)
    with rt.db.write() as session:
        catalog.import_labels(session, parse_path_lines("PSA/Animal Rights\nProduct/Vehicles/Cars\n"))
    rt.start()
    try:
        assert rt.info["image_tower"].startswith("unavailable")
        [image_id] = submit(rt, CreativeSubmission(image=png_bytes("Adopt a dog today", size=(520, 180))))
        run(rt, [image_id])
        creative = load(rt, [image_id])[image_id]
        assert creative.status == "labelled"
        assert creative.prediction["modalities"]["image"].startswith("unavailable")
        assert "no-such-checkpoint" in creative.prediction["modalities"]["image"]
        assert creative.prediction["modalities_used"] == ["ocr"]
    finally:
        rt.stop()
        rt.index.client.close()


def test_broken_stored_image_fails_with_its_reason_and_can_be_retried(runtime: Runtime) -> None:
    [creative_id] = submit(runtime, CreativeSubmission(image=png_bytes("x"), texts=["Shoes on sale"]))
    creative = load(runtime, [creative_id])[creative_id]
    blob = BlobStore(runtime.settings.blob_dir)._path(creative.image_sha256)
    original = blob.read_bytes()
    blob.write_bytes(b"damaged on disk")
    run(runtime, [creative_id])
    failed = load(runtime, [creative_id])[creative_id]
    assert failed.status == "failed" and "stored image cannot be read" in failed.error
    blob.write_bytes(original)
    with runtime.db.write() as session:
        retry(session, session.get(Creative, creative_id))
    assert run(runtime, [creative_id])["labelled"] == 1
