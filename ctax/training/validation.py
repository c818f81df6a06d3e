"""A shared space scored on a run's held-out split: its creatives encoded, the trigger calibrated on them against
exemplars from the training split, and the headline figures that decide whether a candidate is better."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ctax.config import Settings
from ctax.creatives.images import decode_rgb
from ctax.dataset.labelled import LabelledCreative
from ctax.dataset.representatives import SAMPLE_SEED, representatives
from ctax.embedding.space import CreativeContent, SharedSpace
from ctax.labelling.calibration import Held, Reference, calibrate
from ctax.labelling.trigger import Thresholds
from ctax.store.blobs import BlobStore
from ctax.training.snapshot import Snapshot
from ctax.versions.lifecycle import ocr_readings


def encode_examples(space: SharedSpace, items: Sequence[LabelledCreative], blobs: BlobStore,
                    batch_size: int = 64) -> tuple[list[LabelledCreative], np.ndarray]:
    """The items that have something to encode, and their vectors."""
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
                   ) -> tuple[Thresholds, dict[str, Any]]:
    """Calibrate this space's trigger on the validation split, against exemplars from the training split: the
    representatives the index would keep of them (ctax/dataset/representatives.py), as the labeller will see."""
    label_ids = sorted(snap.paths)
    label_vectors = space.encode_labels([snap.paths[i] for i in label_ids])
    ex_items, ex_vectors = encode_examples(space, train, blobs)
    kept = representatives([e.draw_key(SAMPLE_SEED) for e in ex_items], [e.label_id for e in ex_items], ex_vectors,
                           settings.exemplars_per_label)
    ex_items, ex_vectors = [ex_items[n] for n in kept], ex_vectors[kept]
    val_items, val_vectors = encode_examples(space, validation, blobs)
    ref = Reference(label_ids, label_vectors, [e.creative_id for e in ex_items],
                    np.array([e.label_id for e in ex_items], dtype=np.int64), ex_vectors)
    held = Held([e.creative_id for e in val_items], [e.label_id for e in val_items], val_vectors)
    return calibrate(snap.taxonomy, held, ref, top_k=settings.top_k, exemplar_k=settings.exemplar_k,
                     seed=settings.train_seed, traffic_window=settings.novelty_traffic_window,
                     ocr_held=ocr_readings(space, held, val_items, settings.train_seed),
                     known_flag_rate=settings.new_label_known_rate,
                     rate_confidence=settings.new_label_rate_confidence)


def headline(report: dict[str, Any]) -> dict[str, float]:
    out = {"top1": float(report.get("top1", 0.0))}
    for key, name in (("new_label", "novelty_auroc"), ("wrong_label", "wrong_label_auroc")):
        value = (report.get(key) or {}).get("auroc")
        if value is not None:
            out[name] = float(value)
    return out
