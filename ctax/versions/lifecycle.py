"""A model version's life on the process that owns the index: bootstrap, build, calibrate, activate."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ctax.config import Settings
from ctax.dataset.labelled import LabelledCreative, current_annotations
from ctax.embedding.ocr import OcrReader
from ctax.embedding.space import SharedSpace
from ctax.index.qdrant import LabelIndex
from ctax.labelling.calibration import Held, Reference, calibrate
from ctax.store.blobs import BlobStore
from ctax.store.models import ModelVersion
from ctax.store.session import Database
from ctax.taxonomy.catalog import active_taxonomy
from ctax.versions import artefacts, card, registry
from ctax.versions.sync import inherit_traffic, sync_exemplars, sync_labels

log = logging.getLogger(__name__)

CALIBRATION_SAMPLE = 2000

LoadSpace = Callable[[str, Path], SharedSpace]


def bootstrap(
    db: Database,
    settings: Settings,
    index: LabelIndex,
    load_space: LoadSpace,
    blobs: BlobStore,
    ocr: OcrReader | None,
) -> str:
    """Make sure a version is active; the first start creates one from the pretrained encoders."""
    with db.write() as session:
        active = registry.active_version(session)
        if active is not None:
            version_id, directory = active.id, Path(active.artefact_dir)
        else:
            version = registry.new_version(session, settings, "pretrained")
            config = artefacts.pretrained_config(settings, version.id)
            config.write(Path(version.artefact_dir))
            version.config = config.to_json()
            version_id, directory = version.id, Path(version.artefact_dir)
            log.info("bootstrapping model version %s from pretrained encoders", version_id)
    space = load_space(version_id, directory)
    if not index.has_version(version_id) or index.active_version() != version_id:
        build(db, space, index, blobs, ocr)
        recalibrate_pretrained(db, space, index, settings)
        with db.write() as session:
            version = registry.get_version(session, version_id)
            registry.mark_active(session, version)
            version.index_ready = True
        index.activate(version_id)
    return version_id


def build(
    db: Database, space: SharedSpace, index: LabelIndex, blobs: BlobStore, ocr: OcrReader | None
) -> None:
    sync_labels(db, space, index)
    sync_exemplars(db, space, index, blobs, ocr)


def held_from_index(
    index: LabelIndex, version: str, annotations: Sequence[LabelledCreative], seed: int, dim: int
) -> tuple[Held, Reference]:
    """Validation from the exemplars themselves: each is scored against the others (never itself).

    The sample (at most CALIBRATION_SAMPLE) and its order are drawn by the creatives' content
    (LabelledCreative.draw_key), so that the same data calibrates the same way in every database."""
    by_id = {item.creative_id: item for item in annotations}
    label_ids, label_vectors = index.label_vectors(version)
    label_vectors = label_vectors.reshape(len(label_ids), dim)
    points = list(index._scroll(index.exemplars_collection(version), with_vectors=True))
    from ctax.index.points import creative_id_of

    exemplar_ids = [creative_id_of(p.id) for p in points]
    exemplar_labels = np.array([int(p.payload["label_id"]) for p in points], dtype=np.int64)
    vectors = np.asarray([p.vector for p in points], dtype=np.float32).reshape(len(points), dim)
    ref = Reference(label_ids, label_vectors, exemplar_ids, exemplar_labels, vectors)
    rows = [n for n, cid in enumerate(exemplar_ids)
            if cid in by_id and by_id[cid].label_id == exemplar_labels[n]]
    # In content order too, not the index's (by random id): calibration's simulated assertions draw row by row.
    rows = sorted(rows, key=lambda n: by_id[exemplar_ids[n]].draw_key(seed))[:CALIBRATION_SAMPLE]
    held = Held(
        [exemplar_ids[n] for n in rows],
        [int(exemplar_labels[n]) for n in rows],
        vectors[rows] if rows else np.zeros((0, dim), np.float32),
    )
    return held, ref


def recalibrate_pretrained(
    db: Database, space: SharedSpace, index: LabelIndex, settings: Settings
) -> None:
    """The pretrained version's thresholds come from whatever labelled data exists (defaults when none)."""
    with db.write() as session:
        version = registry.get_version(session, space.version)
        if version.kind != "pretrained":
            return
        taxonomy = active_taxonomy(session)
        annotations = current_annotations(session)
    held, ref = held_from_index(index, space.version, annotations, settings.train_seed, space.dim)
    thresholds, report = calibrate(
        taxonomy, held, ref, top_k=settings.top_k, exemplar_k=settings.exemplar_k, seed=settings.train_seed,
        traffic_window=settings.novelty_traffic_window,
    )
    with db.write() as session:
        version = registry.get_version(session, space.version)
        version.thresholds = thresholds.to_json()
        version.metrics = {"calibration": report, **_headline(report)}
        artefacts.write_json(Path(version.artefact_dir), "thresholds.json", version.thresholds)
        card.write_model_card(version)
    log.info("calibrated %s on %s labelled creatives", space.version, report.get("n_validation"))


def _headline(report: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    if report.get("n_validation"):
        out["top1"] = float(report.get("top1", 0.0))
        if report.get("new_label", {}).get("auroc") is not None:
            out["novelty_auroc"] = float(report["new_label"]["auroc"])
        if report.get("wrong_label", {}).get("auroc") is not None:
            out["wrong_label_auroc"] = float(report["wrong_label"]["auroc"])
    return out


def activate(
    db: Database, space: SharedSpace, index: LabelIndex, blobs: BlobStore, ocr: OcrReader | None,
    traffic_window: int = 0,
) -> None:
    """Bring a promoted version's collections up to date, hand it the active version's recent traffic, then swap
    the aliases to it."""
    build(db, space, index, blobs, ocr)
    inherit_traffic(db, space, index, blobs, traffic_window)
    with db.write() as session:
        version: ModelVersion = registry.get_version(session, space.version)
        version.index_ready = True
    index.activate(space.version)
