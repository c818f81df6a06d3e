"""One training run: labelled data in, a candidate model version out, compared with the active version.

The run never touches what is serving: it writes a new artefact directory and a `candidate` version row; the
worker that owns the index builds the candidate's collections afterwards, and only a promotion makes it active.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ctax.config import Settings
from ctax.creatives.images import decode_rgb
from ctax.dataset.labelled import LabelledCreative
from ctax.embedding.config import ImageConfig, SpaceConfig
from ctax.embedding.space import SharedSpace
from ctax.enums import VersionKind, VersionStatus
from ctax.errors import Conflict, InvalidInput
from ctax.jobs import BUILD_VERSION
from ctax.labelling.trigger import Thresholds
from ctax.store.blobs import BlobStore
from ctax.store.outbox import enqueue
from ctax.store.repos import runs, versions
from ctax.store.session import Database
from ctax.store.types import utcnow
from ctax.training.progress import (
    CALIBRATING,
    COMPARING,
    DONE,
    IMAGE_TOWER,
    TEXT_TOWER,
    ProgressTracker,
    RunProgress,
    Sink,
    StepFn,
)
from ctax.training.snapshot import Snapshot, check_enough, snapshot, split
from ctax.training.validation import evaluate_space, headline
from ctax.versions import artefacts, card, registry

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]


@dataclass
class _Run:
    """What a run works from, read when it starts."""

    run_id: int
    settings: Settings
    blobs: BlobStore
    load_space: Callable[[Path], SharedSpace]
    device: str
    progress: ProgressTracker
    params: dict[str, Any]
    snap: Snapshot
    active: tuple[str, Path] | None  # the active version's id and artefact directory
    seed: int
    train: list[LabelledCreative]
    validation: list[LabelledCreative]

    @property
    def epochs(self) -> int:
        return int(self.params.get("epochs", self.settings.train_epochs))


def run_training(db: Database, settings: Settings, blobs: BlobStore, run_id: int,
                 load_space: Callable[[Path], SharedSpace], device: str = "cpu",
                 listeners: tuple[Sink, ...] = ()) -> str:
    """Train, calibrate, evaluate against the active version and write a candidate. Returns its version id.
    `listeners` see every progress report in-process (the run's row sees them every few seconds)."""
    progress = ProgressTracker(_row_writer(db, run_id), settings.train_progress_interval_s, listeners)
    with db.read() as session:
        run = runs.get(session, run_id)
        if run is None:
            raise InvalidInput(f"no training run {run_id}")
        params = dict(run.params or {})
        snap = snapshot(session)
        active = registry.active_version(session)
        active_info = (active.id, Path(active.artefact_dir)) if active else None
    counts = check_enough(snap.examples)
    seed = int(params.get("seed", settings.train_seed))
    train, validation = split(snap.examples, settings.validation_fraction, seed)
    progress(0.03, f"{len(snap.examples)} labelled creatives over {len(counts)} labels: {len(train)} to train on, "
                   f"{len(validation)} held out")
    job = _Run(run_id, settings, blobs, load_space, device, progress, params, snap, active_info, seed, train,
               validation)

    with db.write() as session:
        version = registry.new_version(session, settings, VersionKind.TRAINED, training_run_id=run_id)
        version_id, directory = version.id, Path(version.artefact_dir)
        runs.get(session, run_id).candidate_version_id = version_id  # type: ignore[union-attr]
    try:
        config = _train_towers(job, version_id, directory)
        progress(0.8, "calibrating the candidate on the held-out split", CALIBRATING)
        space = load_space(directory)
        thresholds, report = evaluate_space(space, snap, train, validation, blobs, settings)
        progress(0.85, "exporting and measuring the inference backends on the held-out split", CALIBRATING)
        backends = _build_backends(job, space, directory, headline(report))
        comparison = _compare_with_active(job, report)
        _write_candidate(db, job, version_id, config, thresholds, report, comparison, labels=len(counts),
                         backends=backends)
        progress(1.0, f"candidate {version_id} written; building its index collections", DONE)
        return version_id
    except BaseException:
        with db.write() as session:
            failed = versions.get(session, version_id)
            if failed is not None:
                failed.status = VersionStatus.FAILED
        shutil.rmtree(directory / "text" / "checkpoints", ignore_errors=True)
        raise


def _row_writer(db: Database, run_id: int) -> Sink:
    """Progress that the run's row shows (never moving backwards), each report in a transaction of its own."""
    def write(report: RunProgress) -> None:
        with db.write() as session:
            run = runs.get(session, run_id)
            if run is not None:
                run.progress = round(max(run.progress, min(report.fraction, 1.0)), 4)
                run.stage = report.stage[:200]
                run.phase, run.step, run.total_steps = report.phase, report.step, report.total_steps
                run.loss = report.loss
                run.eta_s = None if report.eta_s is None else round(report.eta_s, 1)
                run.heartbeat_at = run.updated_at = utcnow()
        log.info("training run %s: %3.0f%% %s", run_id, report.fraction * 100, report.stage)

    return write


def _train_towers(job: _Run, version_id: str, directory: Path) -> SpaceConfig:
    """The text tower, then the image tower when there are images to train on; their config written."""
    from ctax.training.text import train_text_tower
    from ctax.training.text_recipe import TextTrainingRecipe

    settings, snap = job.settings, job.snap
    template = settings.train_label_template
    phrases = {str(path): path.phrase(template) for path in snap.paths.values()}
    parents = {str(path): (str(path.parent) if path.parent else None) for path in snap.paths.values()}
    config = SpaceConfig(version=version_id, kind=VersionKind.TRAINED, text_model="text", label_template=template,
                         mask_offers=settings.mask_offers)
    # The tower trains on the texts it will be served (config.mask_offers); the label phrases stay as they are.
    examples = [(config.creative_texts(list(e.texts) or [e.ocr_text or ""]), str(snap.paths[e.label_id]))
                for e in job.train if e.texts or e.ocr_text]

    def text_progress(fraction: float, stage: str) -> None:
        job.progress(0.05 + 0.55 * fraction, f"text tower: {stage}")

    job.progress(0.05, "text tower: starting", TEXT_TOWER)
    train_text_tower(settings.resolved_text_model(), examples, phrases, parents, directory / "text",
                     epochs=job.epochs, batch_size=settings.train_batch_size, seed=job.seed, device=job.device,
                     on_progress=text_progress,
                     recipe=TextTrainingRecipe(open_set=settings.train_open_set, ocr_noise=settings.train_ocr_noise),
                     on_step=job.progress.step_reporter(TEXT_TOWER))
    config.write(directory)
    image_config = None
    if job.params.get("train_images", True) and _image_rows(job.train):
        space_for_device = job.load_space(directory)

        def image_progress(fraction: float, stage: str) -> None:
            job.progress(0.6 + 0.2 * fraction, f"image tower: {stage}")

        job.progress(0.6, "image tower: starting", IMAGE_TOWER)
        image_config = train_image(space_for_device, directory / "text", directory, snap, job.train, job.blobs,
                                   settings, int(job.params.get("image_epochs", settings.train_image_epochs)),
                                   image_progress, job.progress.step_reporter(IMAGE_TOWER))
    elif settings.image_enabled:
        image_config = ImageConfig(arch=settings.image_arch, pretrained=settings.image_pretrained)
    config.image = image_config
    config.write(directory)
    return config


def _compare_with_active(job: _Run, report: dict[str, Any]) -> dict[str, Any]:
    """The candidate's headline figures against the active version's, on the same held-out split."""
    comparison: dict[str, Any] = {"validation_creatives": len(job.validation)}
    if job.active is None:
        return comparison
    active_id, active_dir = job.active
    job.progress(0.9, f"evaluating the active version {active_id} on the same held-out split", COMPARING)
    _, active_report = evaluate_space(job.load_space(active_dir), job.snap, job.train, job.validation, job.blobs,
                                      job.settings)
    better, reasons = registry.is_better(headline(report), headline(active_report))
    return comparison | {"against": active_id, "better": better, "reasons": reasons,
                         "candidate": headline(report), "active": headline(active_report)}


def _write_candidate(db: Database, job: _Run, version_id: str, config: SpaceConfig, thresholds: Thresholds,
                     report: dict[str, Any], comparison: dict[str, Any], *, labels: int,
                     backends: dict[str, Any]) -> None:
    """The version becomes a candidate, its artefacts and card written and its index build queued, unless the
    label set changed since the snapshot (its calibration would no longer match the taxonomy)."""
    n_train, n_validation = len(job.train), len(job.validation)
    with db.write() as session:
        if versions.label_set_stamp(session) != job.snap.stamp:
            raise Conflict("the label set changed while this run trained; its calibration no longer matches "
                           "the taxonomy. Start a new run.")
        version = registry.get_version(session, version_id)
        version.config = config.to_json()
        version.thresholds = thresholds.to_json()
        version.metrics = {**headline(report), "calibration": report, "n_train": n_train,
                           "n_validation": n_validation, "labels": labels, "backends": backends}
        version.comparison = comparison
        version.status = VersionStatus.CANDIDATE
        directory = Path(version.artefact_dir)
        artefacts.write_json(directory, "thresholds.json", version.thresholds)
        artefacts.write_json(directory, "metrics.json", version.metrics)
        artefacts.write_json(directory, "labels.json", {str(i): str(p) for i, p in job.snap.paths.items()})
        run = runs.get(session, job.run_id)
        run.metrics = {**headline(report), "comparison": comparison}  # type: ignore[union-attr]
        enqueue(session, BUILD_VERSION, version_id)
    card.draw_model_card(version, {"Training": f"run {job.run_id}; {job.epochs} text epochs; seed {job.seed}; "
                                               f"open-set training {job.settings.train_open_set}; "
                                               f"{n_train} training and {n_validation} held-out creatives"})


def _build_backends(job: _Run, space: SharedSpace, directory: Path, accuracy: dict[str, float]) -> dict[str, Any]:
    """The candidate's exported backends, each scored on the same held-out split as its torch towers (the loss
    `auto` weighs against the tolerance). A failure here costs the speed-up, never the candidate."""
    from ctax.versions.backends import build_backends, probe_of

    items = sorted(job.validation, key=lambda item: item.draw_key(job.seed))
    probe = probe_of(items, lambda sha: decode_rgb(job.blobs.get(sha)), space.image is not None,
                     job.settings.label_batch_size)

    def evaluate(candidate: SharedSpace) -> dict[str, float]:
        _, report = evaluate_space(candidate, job.snap, job.train, job.validation, job.blobs, job.settings)
        return headline(report)

    try:
        return build_backends(space, directory, job.settings, job.device, probe, evaluate, accuracy)
    except Exception as exc:  # the torch towers still serve; the card says why nothing else does
        log.exception("building the inference backends of %s failed", space.version)
        return {"backend": "torch", "serves": "torch", "setting": job.settings.backend,
                "reason": f"building backends failed: {exc}"}


def _image_rows(items: Sequence[LabelledCreative]) -> list[LabelledCreative]:
    return [item for item in items if item.image_sha256]


def train_image(space: SharedSpace, text_dir: Path, out_dir: Path, snap: Snapshot,
                train: Sequence[LabelledCreative], blobs: BlobStore, settings: Settings, epochs: int,
                progress: Progress, on_step: StepFn | None = None) -> ImageConfig | None:
    """Projection (and, for small towers, the tower) trained towards the new text tower's label vectors."""
    from ctax.embedding.image import ImageEncoder, ImageTowerUnavailable
    from ctax.embedding.text import TextEncoder
    from ctax.training.image import ImageTrainingRecipe, train_image_tower
    from ctax.training.image_data import hierarchy_targets

    rows = _image_rows(train)
    if not rows or not settings.image_enabled:
        return None
    text = TextEncoder.load(text_dir, space.text.device)
    label_ids = sorted(snap.paths)
    position = {label_id: n for n, label_id in enumerate(label_ids)}
    label_vectors = text.encode([snap.paths[i].phrase(space.config.label_template) for i in label_ids])
    try:
        encoder = ImageEncoder.load(settings.image_arch, settings.image_pretrained, dim=text.dim,
                                    device=space.text.device)
    except ImageTowerUnavailable as exc:
        log.warning("no image training: %s", exc)
        return None
    targets = hierarchy_targets([str(snap.paths[i]) for i in label_ids],
                                np.array([position[r.label_id] for r in rows]))
    text_vectors = np.zeros((len(rows), text.dim), np.float32)
    with_text = [n for n, r in enumerate(rows) if r.texts or r.ocr_text]
    if with_text:
        text_vectors[with_text] = text.encode_groups([space.config.creative_texts(list(rows[n].texts)
                                                                                  or [rows[n].ocr_text or ""])
                                                     for n in with_text])
    images = [decode_rgb(blobs.get(r.image_sha256 or "")) for r in rows]
    # A tower trained from random weights must learn features; a pretrained CLIP tower keeps its own.
    train_tower = settings.image_pretrained is None
    recipe = ImageTrainingRecipe(epochs=epochs, batch_size=64, seed=settings.train_seed, train_tower=train_tower)
    train_image_tower(encoder, images, targets, label_vectors, recipe, text_vectors=text_vectors,
                      on_progress=progress, progress_bar=False, on_step=on_step)
    encoder.save(out_dir / "image")
    return ImageConfig(arch=settings.image_arch, pretrained=settings.image_pretrained, saved="image")
