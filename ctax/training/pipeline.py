"""One training run: labelled data in, a candidate model version out, compared with the active version.

The run never touches what is serving: it writes a new artefact directory and a `candidate` version row; the
worker that owns the index builds the candidate's collections afterwards, and only a promotion makes it active.
"""

from __future__ import annotations

import logging
import shutil
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ctax.config import Settings
from ctax.creatives.images import decode_rgb
from ctax.dataset.labelled import LabelledCreative, current_annotations
from ctax.embedding.config import ImageConfig, SpaceConfig
from ctax.embedding.space import CreativeContent, SharedSpace
from ctax.errors import Conflict, InvalidInput
from ctax.jobs import BUILD_VERSION
from ctax.labelling.calibration import Held, Reference, calibrate
from ctax.store.blobs import BlobStore
from ctax.store.models import Label, ModelVersion, TrainingRun, utcnow
from ctax.store.outbox import enqueue
from ctax.store.session import Database
from ctax.taxonomy.catalog import active_taxonomy
from ctax.taxonomy.paths import LabelPath
from ctax.taxonomy.tree import Taxonomy
from ctax.versions import artefacts, card, registry

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
MIN_EXAMPLES_PER_LABEL = 2


class TrainingFailed(InvalidInput):
    code = "training_failed"


@dataclass
class Snapshot:
    taxonomy: Taxonomy
    paths: dict[int, LabelPath]
    examples: list[LabelledCreative]
    stamp: tuple[Any, ...]


def label_stamp(session: Session) -> tuple[Any, ...]:
    row = session.execute(select(func.count(Label.id), func.max(Label.updated_at))).one()
    return (int(row[0]), str(row[1]))


def snapshot(session: Session) -> Snapshot:
    taxonomy = active_taxonomy(session)
    paths = {label_id: taxonomy.path(label_id) for label_id in taxonomy.nodes}
    return Snapshot(taxonomy, paths, current_annotations(session), label_stamp(session))


def check_enough(examples: Sequence[LabelledCreative]) -> dict[int, int]:
    counts: dict[int, int] = defaultdict(int)
    for example in examples:
        counts[example.label_id] += 1
    enough = [label for label, n in counts.items() if n >= MIN_EXAMPLES_PER_LABEL]
    if len(enough) < 2 or len(enough) * 2 < len(counts):
        raise TrainingFailed(
            f"too little labelled data: {len(examples)} creatives over {len(counts)} labels, and only {len(enough)}"
            f" labels have at least {MIN_EXAMPLES_PER_LABEL} examples (need 2 or more such labels, and most labels)."
            " Import labelled creatives (`ctax creatives import`) or review more items first."
        )
    return dict(counts)


def split(examples: Sequence[LabelledCreative], fraction: float, seed: int) -> tuple[list[LabelledCreative],
                                                                                  list[LabelledCreative]]:
    """Validation per label (stratified), chosen by a seeded hash of the content so reruns agree."""
    by_label: dict[int, list[LabelledCreative]] = defaultdict(list)
    for example in examples:
        by_label[example.label_id].append(example)
    train, validation = [], []
    for _, items in sorted(by_label.items()):
        items = sorted(items, key=lambda e: e.draw_key(seed))
        take = round(len(items) * fraction) if len(items) >= 3 else 0
        validation += items[:take]
        train += items[take:]
    return train, validation


def encode_examples(space: SharedSpace, items: Sequence[LabelledCreative], blobs: BlobStore,
                    batch_size: int = 64) -> tuple[list[LabelledCreative], np.ndarray]:
    kept: list[LabelledCreative] = []
    vectors: list[np.ndarray] = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        contents = [CreativeContent(texts=item.texts, ocr_text=item.ocr_text,
                                    image=decode_rgb(blobs.get(item.image_sha256))
                                    if item.image_sha256 and space.image_ready else None) for item in chunk]
        for item, encoded in zip(chunk, space.encode(contents), strict=True):
            if encoded.vector is not None:
                kept.append(item)
                vectors.append(encoded.vector)
    return kept, (np.stack(vectors) if vectors else np.zeros((0, space.dim), np.float32))


def evaluate_space(space: SharedSpace, snap: Snapshot, train: Sequence[LabelledCreative],
                   validation: Sequence[LabelledCreative], blobs: BlobStore, settings: Settings
                   ) -> tuple[Any, dict[str, Any]]:
    """Calibrate this space's trigger on the validation split, against exemplars from the training split."""
    label_ids = sorted(snap.paths)
    label_vectors = space.encode_labels([snap.paths[i] for i in label_ids])
    ex_items, ex_vectors = encode_examples(space, train, blobs)
    val_items, val_vectors = encode_examples(space, validation, blobs)
    ref = Reference(label_ids, label_vectors, [e.creative_id for e in ex_items],
                    np.array([e.label_id for e in ex_items], dtype=np.int64), ex_vectors)
    held = Held([e.creative_id for e in val_items], [e.label_id for e in val_items], val_vectors)
    return calibrate(snap.taxonomy, held, ref, top_k=settings.top_k, exemplar_k=settings.exemplar_k,
                     seed=settings.train_seed, traffic_window=settings.novelty_traffic_window)


def headline(report: dict[str, Any]) -> dict[str, float]:
    out = {"top1": float(report.get("top1", 0.0))}
    for key, name in (("new_label", "novelty_auroc"), ("wrong_label", "wrong_label_auroc")):
        value = (report.get(key) or {}).get("auroc")
        if value is not None:
            out[name] = float(value)
    return out


def _image_rows(items: Sequence[LabelledCreative]) -> list[LabelledCreative]:
    return [item for item in items if item.image_sha256]


def train_image(space: SharedSpace, text_dir: Path, out_dir: Path, snap: Snapshot,
                train: Sequence[LabelledCreative], blobs: BlobStore, settings: Settings, epochs: int,
                progress: Progress) -> ImageConfig | None:
    """Projection (and, for small towers, the tower) trained towards the new text tower's label vectors."""
    from ctax.embedding.image import ImageEncoder, ImageTowerUnavailable
    from ctax.embedding.text import TextEncoder
    from ctax.training.image import hierarchy_targets, train_image_tower

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
        text_vectors[with_text] = text.encode_groups([list(rows[n].texts) or [rows[n].ocr_text or ""]
                                                     for n in with_text])
    images = [decode_rgb(blobs.get(r.image_sha256 or "")) for r in rows]
    # A tower trained from random weights must learn features; a pretrained CLIP tower keeps its own.
    train_tower = settings.image_pretrained is None
    train_image_tower(encoder, images, targets, label_vectors, epochs=epochs, batch_size=64,
                      seed=settings.train_seed, train_tower=train_tower, text_vectors=text_vectors,
                      on_progress=progress, progress_bar=False)
    encoder.save(out_dir / "image")
    return ImageConfig(arch=settings.image_arch, pretrained=settings.image_pretrained, saved="image")


def run_training(db: Database, settings: Settings, blobs: BlobStore, run_id: int,
                 load_space: Callable[[Path], SharedSpace], device: str = "cpu") -> str:
    """Train, calibrate, evaluate against the active version and write a candidate. Returns its version id."""
    from ctax.training.text import TextTrainingRecipe, train_text_tower

    def progress(fraction: float, stage: str) -> None:
        with db.write() as session:
            run = session.get(TrainingRun, run_id)
            if run is not None:
                run.progress = round(max(run.progress, min(fraction, 1.0)), 4)
                run.stage = stage[:200]
                run.heartbeat_at = utcnow()
        log.info("training run %s: %3.0f%% %s", run_id, fraction * 100, stage)

    with db.write() as session:
        run = session.get(TrainingRun, run_id)
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

    with db.write() as session:
        version = registry.new_version(session, settings, "trained", training_run_id=run_id)
        version_id, directory = version.id, Path(version.artefact_dir)
        session.get(TrainingRun, run_id).candidate_version_id = version_id  # type: ignore[union-attr]
    try:
        template = settings.train_label_template
        phrases = {str(path): path.phrase(template) for path in snap.paths.values()}
        parents = {str(path): (str(path.parent) if path.parent else None) for path in snap.paths.values()}
        examples = [(list(e.texts) or [e.ocr_text or ""], str(snap.paths[e.label_id])) for e in train
                    if e.texts or e.ocr_text]
        epochs = int(params.get("epochs", settings.train_epochs))

        def text_progress(fraction: float, stage: str) -> None:
            progress(0.05 + 0.55 * fraction, f"text tower: {stage}")

        train_text_tower(settings.resolved_text_model(), examples, phrases, parents, directory / "text",
                         epochs=epochs, batch_size=settings.train_batch_size, seed=seed, device=device,
                         on_progress=text_progress, recipe=TextTrainingRecipe(open_set=settings.train_open_set))
        config = SpaceConfig(version=version_id, kind="trained", text_model="text", label_template=template)
        config.write(directory)
        image_config = None
        if params.get("train_images", True) and _image_rows(train):
            space_for_device = load_space(directory)

            def image_progress(fraction: float, stage: str) -> None:
                progress(0.6 + 0.2 * fraction, f"image tower: {stage}")

            image_config = train_image(space_for_device, directory / "text", directory, snap, train, blobs, settings,
                                       int(params.get("image_epochs", settings.train_image_epochs)), image_progress)
        elif settings.image_enabled:
            image_config = ImageConfig(arch=settings.image_arch, pretrained=settings.image_pretrained)
        config.image = image_config
        config.write(directory)

        progress(0.8, "calibrating the candidate on the held-out split")
        candidate_space = load_space(directory)
        thresholds, report = evaluate_space(candidate_space, snap, train, validation, blobs, settings)
        comparison: dict[str, Any] = {"validation_creatives": len(validation)}
        if active_info is not None:
            progress(0.9, f"evaluating the active version {active_info[0]} on the same held-out split")
            active_space = load_space(active_info[1])
            _, active_report = evaluate_space(active_space, snap, train, validation, blobs, settings)
            better, reasons = registry.is_better(headline(report), headline(active_report))
            comparison |= {"against": active_info[0], "better": better, "reasons": reasons,
                           "candidate": headline(report), "active": headline(active_report)}

        with db.write() as session:
            if label_stamp(session) != snap.stamp:
                raise Conflict("the label set changed while this run trained; its calibration no longer matches "
                               "the taxonomy. Start a new run.")
            version = registry.get_version(session, version_id)
            version.config = config.to_json()
            version.thresholds = thresholds.to_json()
            version.metrics = {**headline(report), "calibration": report, "n_train": len(train),
                               "n_validation": len(validation), "labels": len(counts)}
            version.comparison = comparison
            version.status = "candidate"
            artefacts.write_json(directory, "thresholds.json", version.thresholds)
            artefacts.write_json(directory, "metrics.json", version.metrics)
            artefacts.write_json(directory, "labels.json", {str(i): str(p) for i, p in snap.paths.items()})
            card.write_model_card(version, {"Training": f"run {run_id}; {epochs} text epochs; seed {seed}; "
                                                f"open-set training {settings.train_open_set}; "
                                                f"{len(train)} training and {len(validation)} held-out creatives"})
            run = session.get(TrainingRun, run_id)
            run.metrics = {**headline(report), "comparison": comparison}  # type: ignore[union-attr]
            enqueue(session, BUILD_VERSION, version_id)
        progress(1.0, f"candidate {version_id} written; building its index collections")
        return version_id
    except BaseException:
        with db.write() as session:
            failed = session.get(ModelVersion, version_id)
            if failed is not None:
                failed.status = "failed"
        shutil.rmtree(directory / "text" / "checkpoints", ignore_errors=True)
        raise
