"""A model version's life on the process that owns the index: bootstrap, build, calibrate, activate.

Only that process runs these (local Qdrant lets one process open its folder); the worker's index tasks call them
with what its runtime holds, and `LoadSpace` is its cache of loaded towers."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ctax.config import Settings
from ctax.dataset.labelled import LabelledCreative, current_annotations
from ctax.dataset.representatives import SAMPLE_SEED, representatives
from ctax.embedding.config import CorruptArtefact
from ctax.embedding.device import resolve_device
from ctax.embedding.ocr import OcrReader
from ctax.embedding.space import SharedSpace
from ctax.enums import VersionKind, VersionStatus
from ctax.index.qdrant import LabelIndex
from ctax.labelling.calibration import Held, Reference, calibrate
from ctax.labelling.calibration.ocr_noise import ocr_like
from ctax.store.blobs import BlobStore
from ctax.store.session import Database
from ctax.taxonomy.catalog import active_taxonomy
from ctax.versions import artefacts, card, registry
from ctax.versions.backends import ensure_backends
from ctax.versions.sync import inherit_traffic, sync_exemplars, sync_labels

log = logging.getLogger(__name__)

CALIBRATION_SAMPLE = 2000
# The pretrained version's calibration holds out this share of each label's labelled creatives from the exemplars
# it scores them against; a label with fewer than MIN_TO_SPLIT keeps them all as exemplars.
CALIBRATION_SHARE = 0.3
# OCR-like readings encoded per calibration (an extra text encoding each).
OCR_CALIBRATION_SAMPLE = 1000
MIN_TO_SPLIT = 3
ERROR_CHARS = 4000

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
            version = registry.new_version(session, settings, VersionKind.PRETRAINED)
            config = artefacts.pretrained_config(settings, version.id)
            config.write(Path(version.artefact_dir))
            version.config = config.to_json()
            version_id, directory = version.id, Path(version.artefact_dir)
            log.info("bootstrapping model version %s from pretrained encoders", version_id)
    # Built before the version loads, so the worker serves the backend chosen for it from its first batch.
    ensure_backends(db, settings, version_id, directory, blobs, resolve_device(settings.device))
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
    """The pretrained version's calibration split, from the stored exemplars (each label's sample): a share of
    every label's creatives (CALIBRATION_SHARE, at most CALIBRATION_SAMPLE in all) is held out and scored against
    representatives chosen by the index's own rule (representatives.py) from the rest of the label alone.

    Why a split, not the stored representatives: serving compares a new creative with exemplars that never saw it,
    and a calibration creative scored against the set it was drawn from (or the simulated traffic made of that
    same set) sits nearer its label than a new one does, so the `new_label` threshold came out too high and
    10-26% of known-label creatives were flagged new before any training (docs/benchmarks.md, issue 17). A training
    run calibrates the same way on its validation split (training/validation.py).

    Both the split and the order are drawn by the creatives' content (LabelledCreative.draw_key), so that the same
    data calibrates the same way in every database."""
    by_id = {item.creative_id: item for item in annotations}
    label_ids, label_vectors = index.label_vectors(version)
    label_vectors = label_vectors.reshape(len(label_ids), dim)
    points = index.exemplar_points(version, dim)
    rows = [n for n, cid in enumerate(points.creative_ids)
            if cid in by_id and by_id[cid].label_id == points.label_ids[n]]
    calibration, kept = calibration_split([by_id[points.creative_ids[n]] for n in rows], seed)
    calibration_rows = [rows[n] for n in calibration]
    exemplar_rows = [rows[n] for n in kept]
    chosen = representatives([by_id[points.creative_ids[n]].draw_key(SAMPLE_SEED) for n in exemplar_rows],
                             [int(points.label_ids[n]) for n in exemplar_rows], points.vectors[exemplar_rows],
                             index.exemplars_per_label)
    searched = [exemplar_rows[n] for n in chosen]
    ref = Reference(label_ids, label_vectors, [points.creative_ids[n] for n in searched],
                    points.label_ids[searched], points.vectors[searched])
    held = Held(
        [points.creative_ids[n] for n in calibration_rows],
        [int(points.label_ids[n]) for n in calibration_rows],
        points.vectors[calibration_rows] if calibration_rows else np.zeros((0, dim), np.float32),
    )
    return held, ref


def calibration_split(items: Sequence[LabelledCreative], seed: int) -> tuple[list[int], list[int]]:
    """Row indices of (calibration, exemplars): per label, the CALIBRATION_SHARE of its creatives with the smallest
    draw keys (none of a label with fewer than MIN_TO_SPLIT, which keeps them all as exemplars), at most
    CALIBRATION_SAMPLE in all; both in draw-key order (calibration's simulated assertions draw row by row), not
    the items' (the index's scroll follows the point ids, from creative ids drawn at random per import)."""
    by_label: dict[int, list[int]] = defaultdict(list)
    for row, item in enumerate(items):
        by_label[item.label_id].append(row)
    keys = [item.draw_key(seed) for item in items]
    calibration: list[int] = []
    for rows in by_label.values():
        if len(rows) >= MIN_TO_SPLIT:
            rows = sorted(rows, key=keys.__getitem__)
            calibration += rows[: max(1, round(len(rows) * CALIBRATION_SHARE))]
    calibration = sorted(calibration, key=keys.__getitem__)[:CALIBRATION_SAMPLE]
    held = set(calibration)
    return calibration, sorted((row for row in range(len(items)) if row not in held), key=keys.__getitem__)


def ocr_readings(space: SharedSpace, held: Held, items: Sequence[LabelledCreative], seed: int) -> Held:
    """OCR-like readings (ocr_noise.py) of at most OCR_CALIBRATION_SAMPLE of the held creatives, encoded by the
    version's text tower: what calibration sets the OCR-read creatives' thresholds on. Seeded, so that the same
    data calibrates the same way."""
    by_id = {item.creative_id: item for item in items}
    rng = np.random.default_rng(seed)
    rows = [n for n, cid in enumerate(held.creative_ids[:OCR_CALIBRATION_SAMPLE])
            if cid in by_id and (by_id[cid].texts or by_id[cid].ocr_text)]
    # A creative labelled from an image already has OCR text: it is its own reading.
    texts = [ocr_like(by_id[held.creative_ids[n]].texts, rng) if by_id[held.creative_ids[n]].texts
             else by_id[held.creative_ids[n]].ocr_text or "" for n in rows]
    vectors = space.encode_texts(texts) if texts else np.zeros((0, space.dim), np.float32)
    return Held([held.creative_ids[n] for n in rows], [held.label_ids[n] for n in rows],
                np.asarray(vectors, dtype=np.float32))


def recalibrate_pretrained(
    db: Database, space: SharedSpace, index: LabelIndex, settings: Settings
) -> None:
    """The pretrained version's thresholds come from whatever labelled data exists (defaults when none)."""
    with db.read() as session:
        version = registry.get_version(session, space.version)
        if version.kind != VersionKind.PRETRAINED:
            return
        taxonomy = active_taxonomy(session)
        annotations = current_annotations(session)
    held, ref = held_from_index(index, space.version, annotations, settings.train_seed, space.dim)
    thresholds, report = calibrate(
        taxonomy, held, ref, top_k=settings.top_k, exemplar_k=settings.exemplar_k, seed=settings.train_seed,
        traffic_window=settings.novelty_traffic_window,
        ocr_held=ocr_readings(space, held, annotations, settings.train_seed),
        rate_confidence=settings.new_label_rate_confidence,
    )
    with db.write() as session:
        version = registry.get_version(session, space.version)
        version.thresholds = thresholds.to_json()
        kept = {key: value for key, value in (version.metrics or {}).items() if key == "backends"}
        version.metrics = {**kept, "calibration": report, **_headline(report)}
        artefacts.write_json(Path(version.artefact_dir), "thresholds.json", version.thresholds)
    card.draw_model_card(version)
    log.info("calibrated %s on %s labelled creatives", space.version, report.get("n_validation"))


def _headline(report: dict[str, Any]) -> dict[str, float]:
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
        registry.get_version(session, space.version).index_ready = True
    index.activate(space.version)


def activate_promoted(
    db: Database, index: LabelIndex, load_space: LoadSpace, blobs: BlobStore, ocr: OcrReader | None,
    version_id: str, traffic_window: int = 0,
) -> bool:
    """After the database made version_id active: bring its collections up to date and swap the aliases to it.

    A version whose artefact does not load is never served: it is marked failed and the version active before it
    is put back (in the database and in the index). Returns whether version_id is now the active one in the index;
    False too when it is no longer active by the time this runs (a later promotion won)."""
    with db.read() as session:
        version = registry.get_version(session, version_id)
        if version.status != VersionStatus.ACTIVE:
            log.info("not activating %s: it is %s now", version_id, version.status)
            return False
        directory = Path(version.artefact_dir)
    try:
        artefacts.validate_artefact(directory)
        space = load_space(version_id, directory)
    except CorruptArtefact as exc:
        log.error("version %s cannot be loaded (%s); rolling back", version_id, exc)
        previous_id, previous_dir = _fail_and_restore_previous(db, version_id, f"cannot be loaded: {exc.message}")
        space = load_space(previous_id, previous_dir)
        activate(db, space, index, blobs, ocr, traffic_window)
        return False
    activate(db, space, index, blobs, ocr, traffic_window)
    return True


def _fail_and_restore_previous(db: Database, version_id: str, error: str) -> tuple[str, Path]:
    with db.write() as session:
        broken = registry.get_version(session, version_id)
        previous = registry.rollback_target(session)
        broken.status, broken.error = VersionStatus.FAILED, error[:ERROR_CHARS]
        registry.mark_active(session, previous)
        return previous.id, Path(previous.artefact_dir)


def build_candidate(
    db: Database, index: LabelIndex, load_space: LoadSpace, blobs: BlobStore, ocr: OcrReader | None,
    version_id: str, *, auto_promote: bool = False, traffic_window: int = 0,
) -> bool:
    """A candidate's own collections. Loading it here is also the check that its artefact is sound: a version
    that does not load is marked failed and can never be promoted. With auto_promote, a candidate that is not
    worse than the active version (or was never compared) becomes active. Returns whether it was promoted."""
    with db.read() as session:
        version = registry.get_version(session, version_id)
        if version.status not in (VersionStatus.CANDIDATE, VersionStatus.ACTIVE):
            return False
        directory = Path(version.artefact_dir)
    try:
        artefacts.validate_artefact(directory)
        space = load_space(version_id, directory)
        build(db, space, index, blobs, ocr)
    except Exception as exc:  # whatever stops the build, the version must not stay promotable
        log.exception("building %s failed", version_id)
        with db.write() as session:
            version = registry.get_version(session, version_id)
            version.status, version.error = VersionStatus.FAILED, f"index build failed: {exc}"[:ERROR_CHARS]
        return False
    with db.write() as session:
        version = registry.get_version(session, version_id)
        version.index_ready = True
        auto = auto_promote and version.status == VersionStatus.CANDIDATE and (version.comparison or {}).get(
            "better", True)
        if auto:
            registry.mark_active(session, version)
    if auto:
        activate(db, space, index, blobs, ocr, traffic_window)
        log.info("auto-promoted %s", version_id)
    return bool(auto)


def forget_creatives(db: Database, index: LabelIndex, creative_ids: Sequence[str]) -> None:
    """Deleted creatives' points, out of every version's collections (a retired version may be rolled back to)."""
    with db.read() as session:
        version_ids = [version.id for version in registry.all_versions(session)]
    for version_id in version_ids:
        index.forget(version_id, creative_ids)
