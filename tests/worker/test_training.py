"""Training, calibration, candidate build, promotion and rollback on small data, and every way a run can fail
without touching what is serving."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

import ctax.worker.runtime as runtime_module
from ctax.api.app import create_app
from ctax.cli import app
from ctax.cli import models as models_cli
from ctax.creatives.intake import CreativeSubmission, create_creative
from ctax.index.points import campaign_key, creative_id_of
from ctax.jobs import INDEX_QUEUE, LABEL_QUEUE, TRAIN_QUEUE
from ctax.store.models import Annotation, Creative, ModelVersion, TrainingRun
from ctax.store.repos import runs
from ctax.taxonomy import catalog
from ctax.taxonomy.paths import LabelPath
from ctax.versions.registry import is_better
from ctax.worker.runtime import Runtime
from ctax.worker.tasks.index import activate_version, build_version
from ctax.worker.tasks.label import run as label_run
from ctax.worker.tasks.training import train
from tests.conftest import headers

pytestmark = pytest.mark.slow  # trains towers: `make test-fast` leaves it out

LABELS = ["Product/Vehicles/Cars", "PSA/Animal Rights", "Product/Food and Drink/Soft Drinks",
          "PSA/Health/Smoking and Alcohol Abuse"]


def seed_examples(rt: Runtime, shared_data: Path, labels: list[str], per_label: int) -> None:
    rows = [json.loads(line) for line in (shared_data / "pitt_ads_dev.jsonl").open()]
    ids = {str(LabelPath.parse(p)): i for p, i in _paths(rt).items()}
    taken: dict[str, int] = {}
    with rt.db.write() as session:
        for row in rows:
            if row["label"] in labels and taken.get(row["label"], 0) < per_label:
                taken[row["label"]] = taken.get(row["label"], 0) + 1
                creative = Creative(source="import", status="labelled", texts=row["texts"], external_id=row["id"])
                session.add(creative)
                session.add(Annotation(creative=creative, label_id=ids[row["label"]], source="import"))


def _paths(rt: Runtime) -> dict[str, int]:
    with rt.db.read() as session:
        taxonomy = catalog.active_taxonomy(session)
        return {str(taxonomy.path(i)): i for i in taxonomy.nodes}


@pytest.fixture
def trainer(settings, db, pitt_labels):
    rt = Runtime(settings.model_copy(update={"train_epochs": 1, "train_batch_size": 16}),
                 [LABEL_QUEUE, INDEX_QUEUE, TRAIN_QUEUE], owns_index=True)
    runtime_module._runtime = rt
    yield rt
    runtime_module._runtime = None
    rt.stop()
    if rt._index is not None:
        rt._index.client.close()


def new_run(rt: Runtime, **params: object) -> int:
    with rt.db.write() as session:
        run = TrainingRun(status="queued", params=params)
        session.add(run)
        session.flush()
        return run.id


def get(rt: Runtime, model, key):  # type: ignore[no-untyped-def]
    with rt.db.read() as session:
        return session.get(model, key)


def label_one(rt: Runtime, text: str, campaign: str | None = None) -> Creative:
    with rt.db.write() as session:
        creative, _ = create_creative(session, rt.blobs, rt.settings,
                                      CreativeSubmission(texts=[text], campaign=campaign), None)
    label_run(rt, [creative.id])
    return get(rt, Creative, creative.id)


def test_train_calibrate_compare_promote_and_roll_back(trainer: Runtime, shared_data: Path, monkeypatch) -> None:
    seed_examples(trainer, shared_data, LABELS, 12)
    trainer.start()
    first = label_one(trainer, "I should buy this car because it is fast", campaign="civic-q1")
    assert first.model_version_id == "v1-pretrained"

    run_id = new_run(trainer, seed=3)
    version_id = train(run_id)
    run = get(trainer, TrainingRun, run_id)
    assert run.status == "succeeded" and run.progress == 1.0 and version_id == "v2-trained"
    version = get(trainer, ModelVersion, version_id)
    assert version.status == "candidate" and not version.index_ready
    assert {"top1", "novelty_auroc", "wrong_label_auroc"} <= set(version.metrics)
    assert version.thresholds["source"].startswith("calibrated on")
    assert version.comparison["against"] == "v1-pretrained" and "better" in version.comparison
    directory = Path(version.artefact_dir)
    for name in ("config.json", "thresholds.json", "metrics.json", "labels.json", "MODEL_CARD.md", "text"):
        assert (directory / name).exists(), name
    card = (directory / "MODEL_CARD.md").read_text()
    assert "# Model card: v2-trained" in card and "- `new_label` threshold" in card
    assert "## Compared with the active version (v1-pretrained)" in card and "{'" not in card
    assert "open-set training none" in card  # the recipe a version was trained with is on its card
    assert "for labels it never saw they are optimistic" in card
    # The card's pictures, the training loss among them (the trainer's log, kept beside the text tower).
    for name in ("fit.png", "wrong_label.png", "precision_recall.png", "per_label.png", "loss.png", "card.json"):
        assert (directory / "card" / name).is_file(), name
    assert "![Training loss](card/loss.png)" in card and json.loads((directory / "text/loss_history.json").read_text())

    build_version(version_id)
    assert get(trainer, ModelVersion, version_id).index_ready
    monkeypatch.setenv("CTAX_DATA_DIR", str(trainer.settings.data_dir))
    listed = CliRunner().invoke(app, ["models", "list"])
    assert listed.exit_code == 0 and "vs v1-pretrained" in listed.output and "candidate" in listed.output
    with trainer.db.write() as session:  # as if the candidate had scored worse than the active one
        session.get(ModelVersion, version_id).comparison = {"better": False, "reasons": ["top1 drops"]}
    with TestClient(create_app(trainer.settings, start_dispatcher=False)) as client:
        admin = headers(_admin_key(trainer))
        refused = client.post(f"/v1/models/{version_id}/promote", headers=admin)
        assert refused.status_code == 409 and "worse" in refused.json()["message"]
        listed = client.get("/v1/models", headers=admin).json()["items"]
        assert listed[0]["id"] == version_id and listed[0]["calibration"]["new_label"]["threshold"] is not None
        scorer = listed[0]["calibration"]["novelty_scorer"]
        assert scorer["chosen"] == listed[0]["thresholds"]["novelty_score"] in ("learned", "blend")
        assert "duplicate_similarity" in listed[0]["thresholds"]  # the version's near-duplicate floor (or None)
        assert "variant_similarity" in listed[0]["thresholds"]  # its novelty variant level (or None)
        # OCR-read creatives: their thresholds, and which novelty score judges them, as calibration chose.
        ocr = get(trainer, ModelVersion, version_id).thresholds
        assert listed[0]["thresholds"]["ocr_new_label"] == ocr.get("ocr_new_label") is not None
        assert listed[0]["thresholds"]["ocr_novelty_score"] == ("ocr" if ocr.get("ocr_novelty_model") else "shared")
        # Calibrated with the traffic window on: its traffic counts each campaign once.
        assert listed[0]["thresholds"]["campaigns_once"] is (listed[0]["thresholds"]["variant_similarity"] is not None)
        promoted = client.post(f"/v1/models/{version_id}/promote", headers=admin, json={"force": True})
        assert promoted.status_code == 200 and promoted.json()["previous"] == "v1-pretrained"
        activate_version(version_id)
        assert trainer.index.active_version() == version_id
        # The new version took over the creative labelled before the swap as its recent traffic, re-encoded, with
        # its campaign (a campaign's creatives stay no evidence for each other across the swap).
        assert trainer.index.count_traffic(version_id) == 1
        traffic = trainer.index._scroll(trainer.index.traffic_collection(version_id))
        assert [(creative_id_of(p.id), (p.payload or {}).get("campaign")) for p in traffic] == [
            (first.id, campaign_key(None, "civic-q1"))]
        creative = label_one(trainer, "I should adopt a shelter dog because animals deserve love")
        assert creative.model_version_id == version_id and creative.prediction["model_version"] == version_id
        assert trainer.index.count_traffic(version_id) == 2

        back = client.post("/v1/models/rollback", headers=admin)
        assert back.status_code == 200 and back.json()["id"] == "v1-pretrained"
        activate_version("v1-pretrained")
        assert trainer.index.active_version() == "v1-pretrained"
        assert trainer.index.count_traffic("v1-pretrained") == 2  # including what v2 labelled meanwhile
        assert label_one(trainer, "Drink cola").model_version_id == "v1-pretrained"

    # The same two calls from the command line.
    assert CliRunner().invoke(app, ["models", "promote", version_id, "--force"]).exit_code == 0
    assert get(trainer, ModelVersion, version_id).status == "active"
    back = CliRunner().invoke(app, ["models", "rollback"])
    assert back.exit_code == 0 and "v1-pretrained is active again" in back.output, back.output
    assert get(trainer, ModelVersion, "v1-pretrained").status == "active"
    assert get(trainer, ModelVersion, version_id).status == "retired"


def _admin_key(rt: Runtime) -> str:
    from ctax.store.keys import create_key

    with rt.db.write() as session:
        return create_key(session, "admin", "admin")[1]


def test_too_little_data_fails_clearly_and_changes_nothing(trainer: Runtime, shared_data: Path) -> None:
    seed_examples(trainer, shared_data, LABELS, 1)
    trainer.start()
    run_id = new_run(trainer)
    assert train(run_id) is None
    run = get(trainer, TrainingRun, run_id)
    assert run.status == "failed" and "too little labelled data" in run.error
    with trainer.db.read() as session:
        versions = {v.id: v.status for v in session.scalars(select(ModelVersion))}
    assert versions == {"v1-pretrained": "active"}
    assert train(run_id) is None and get(trainer, TrainingRun, run_id).status == "failed"  # redelivery: no rerun


def test_label_set_changed_during_training_fails_the_run(trainer: Runtime, shared_data: Path) -> None:
    seed_examples(trainer, shared_data, LABELS, 6)
    trainer.start()
    run_id = new_run(trainer)
    outcome: dict[str, object] = {}
    worker = threading.Thread(target=lambda: outcome.setdefault("version", train(run_id)))
    worker.start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and "text tower" not in (get(trainer, TrainingRun, run_id).stage or ""):
        time.sleep(0.2)
    with trainer.db.write() as session:
        catalog.create_label(session, LabelPath.parse("Product/Vehicles/Trucks"))
    worker.join(timeout=600)
    run = get(trainer, TrainingRun, run_id)
    assert run.status == "failed" and "label set changed" in run.error
    assert get(trainer, ModelVersion, run.candidate_version_id).status == "failed"
    with trainer.db.read() as session:
        assert session.scalar(select(ModelVersion).where(ModelVersion.status == "active")).id == "v1-pretrained"


def test_a_run_killed_halfway_is_reported_and_never_promoted(trainer: Runtime) -> None:
    trainer.start()
    run_id = new_run(trainer)
    with trainer.db.write() as session:  # what a SIGKILLed training worker leaves behind
        session.get(TrainingRun, run_id).status = "running"
    with trainer.db.write() as session:  # what the next training worker does when it starts
        assert runs.fail_interrupted(session) == 1
    run = get(trainer, TrainingRun, run_id)
    assert run.status == "failed" and "interrupted" in run.error
    assert train(run_id) is None  # a redelivered message does not restart it


def test_corrupt_candidate_is_failed_and_cannot_be_promoted(trainer: Runtime, shared_data: Path) -> None:
    trainer.start()
    with trainer.db.write() as session:
        from ctax.versions import registry

        version = registry.new_version(session, trainer.settings, "trained")
        version.status = "candidate"
        version_id, directory = version.id, Path(version.artefact_dir)
    (directory / "config.json").write_text("{ this is not json")
    build_version(version_id)
    broken = get(trainer, ModelVersion, version_id)
    assert broken.status == "failed" and "config.json" in broken.error and not broken.index_ready
    with TestClient(create_app(trainer.settings, start_dispatcher=False)) as client:
        response = client.post(f"/v1/models/{version_id}/promote", headers=headers(_admin_key(trainer)),
                               json={"force": True})
    assert response.status_code == 409
    assert label_one(trainer, "Cola").model_version_id == "v1-pretrained"


def test_better_means_no_metric_drops() -> None:
    base = {"top1": 0.8, "novelty_auroc": 0.8, "wrong_label_auroc": 0.9}
    assert is_better({"top1": 0.85, "novelty_auroc": 0.8, "wrong_label_auroc": 0.9}, base)[0]
    worse, reasons = is_better({"top1": 0.95, "novelty_auroc": 0.7, "wrong_label_auroc": 0.95}, base)
    assert not worse and "novelty_auroc drops" in reasons[0]
    assert not is_better(base, base)[0]


@pytest.mark.parametrize("better,promoted", [(True, True), (False, False)])
def test_auto_promotion_takes_only_better_candidates(settings, db, pitt_labels, better, promoted) -> None:
    from ctax.embedding.config import SpaceConfig
    from ctax.versions import registry

    rt = Runtime(settings.model_copy(update={"auto_promote": True}), [LABEL_QUEUE, INDEX_QUEUE], owns_index=True)
    runtime_module._runtime = rt
    try:
        rt.start()
        with rt.db.write() as session:
            active = registry.active_version(session)
            version = registry.new_version(session, rt.settings, "trained")
            config = SpaceConfig.read(Path(active.artefact_dir))
            config.version = version.id
            config.write(Path(version.artefact_dir))
            version.status, version.comparison = "candidate", {"better": better, "reasons": []}
            version_id = version.id
        build_version(version_id)
        with rt.db.read() as session:
            assert session.get(ModelVersion, version_id).status == ("active" if promoted else "candidate")
        assert rt.index.active_version() == (version_id if promoted else "v1-pretrained")
    finally:
        runtime_module._runtime = None
        rt.stop()
        rt.index.client.close()


def test_a_promoted_version_that_does_not_load_is_failed_and_the_previous_one_put_back(trainer: Runtime) -> None:
    from ctax.embedding.config import SpaceConfig
    from ctax.versions import registry

    trainer.start()
    with trainer.db.write() as session:
        active = registry.active_version(session)
        version = registry.new_version(session, trainer.settings, "trained")
        config = SpaceConfig.read(Path(active.artefact_dir))
        config.version = version.id
        config.write(Path(version.artefact_dir))
        version.status, version.comparison = "candidate", {"better": True, "reasons": []}
        version_id, directory = version.id, Path(version.artefact_dir)
    build_version(version_id)
    with trainer.db.write() as session:
        registry.promote(session, session.get(ModelVersion, version_id))
    (directory / "config.json").write_text("{ this is not json")  # broken after it was built and promoted
    activate_version(version_id)
    broken = get(trainer, ModelVersion, version_id)
    assert broken.status == "failed" and broken.error.startswith("cannot be loaded")
    assert get(trainer, ModelVersion, "v1-pretrained").status == "active"
    assert trainer.index.active_version() == "v1-pretrained"
    assert label_one(trainer, "Cola").model_version_id == "v1-pretrained"


def test_a_running_run_shows_its_step_loss_and_time_left_through_the_api(trainer: Runtime,
                                                                         shared_data: Path) -> None:
    from ctax.embedding.space import SharedSpace
    from ctax.training.pipeline import run_training
    from ctax.training.progress import RunProgress

    seed_examples(trainer, shared_data, LABELS, 12)
    trainer.start()
    run_id = new_run(trainer, seed=3)
    with trainer.db.write() as session:
        runs.start(session, run_id)
    # Every report reaches the row; small batches make several steps.
    settings = trainer.settings.model_copy(update={"train_progress_interval_s": 0.0, "train_batch_size": 4})
    seen: list[dict] = []
    with TestClient(create_app(trainer.settings, start_dispatcher=False)) as client:
        admin = headers(_admin_key(trainer))

        def look(report: RunProgress) -> None:  # the API's view of the row, read while the tower trains
            if report.phase == "text_tower" and report.step:
                seen.append(client.get(f"/v1/training/runs/{run_id}", headers=admin).json())

        run_training(trainer.db, settings, trainer.blobs, run_id,
                     lambda directory: SharedSpace.load(Path(directory), trainer.device), trainer.device,
                     listeners=(look,))
        after = client.get(f"/v1/training/runs/{run_id}", headers=admin).json()
    assert len(seen) >= 2
    assert all(view["status"] == "running" and view["phase"] == "text_tower" for view in seen)
    steps = [view["step"] for view in seen]  # each step seen at its stage report and at its step report
    assert steps == sorted(steps) and set(steps) == set(range(1, steps[-1] + 1))
    assert {view["total_steps"] for view in seen} == {steps[-1]}
    assert steps[-1] >= 3 and seen[-1]["loss"] is not None and seen[-1]["loss"] > 0 and seen[-1]["eta_s"] == 0.0
    assert all(view["eta_s"] is not None for view in seen if view["step"] > 1) and seen[0]["updated_at"]
    assert after["phase"] == "done" and after["progress"] == 1.0 and after["step"] is None


def test_ctax_train_follows_the_run_with_its_step_and_loss(trainer: Runtime, shared_data: Path, monkeypatch) -> None:
    seed_examples(trainer, shared_data, LABELS, 12)
    # Every report reaches the row, and small batches make enough steps for the command's 1 s polls to see some.
    trainer.settings = trainer.settings.model_copy(update={"train_progress_interval_s": 0.0, "train_batch_size": 4})
    trainer.start()
    monkeypatch.setenv("CTAX_DATA_DIR", str(trainer.settings.data_dir))
    # On a quiet machine the tiny tower's steps all end between two of the command's 0.5 s reads of the row.
    monkeypatch.setattr(models_cli, "POLL_S", 0.02)
    errors: list[BaseException] = []

    def worker() -> None:  # the training worker, then the labelling worker's index build, as `ctax run` would
        try:
            for _ in range(600):
                with trainer.db.read() as session:
                    queued = [r.id for r in runs.newest_first(session, 5) if r.status == "queued"]
                if queued:
                    build_version(train(queued[0]))
                    return
                time.sleep(0.1)
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    result = CliRunner().invoke(app, ["train", "--epochs", "1"])
    thread.join()
    assert not errors and result.exit_code == 0, result.output
    assert "text tower step" in result.output and "loss" in result.output and "calibrating" in result.output
    assert "candidate v2-trained" in result.output
