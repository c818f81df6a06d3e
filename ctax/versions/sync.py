"""Keeping a model version's collections in step with the database: labels and labelled exemplars (at most a
budget of representatives per label: ctax/dataset/representatives.py), and the recent traffic a version inherits
when it is activated.

Both syncs are diffs, so they are idempotent and one run covers any number of changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from tqdm import tqdm

from ctax.creatives.images import decode_rgb
from ctax.dataset.labelled import LabelledCreative, current_annotations
from ctax.dataset.representatives import SAMPLE_SEED, draw_sample, medoids
from ctax.embedding.ocr import OcrReader
from ctax.embedding.space import CreativeContent, SharedSpace
from ctax.index.exemplars import StoredExemplar
from ctax.index.points import campaign_key
from ctax.index.qdrant import LabelIndex
from ctax.store.blobs import BlobStore
from ctax.store.repos import creatives, labels
from ctax.store.session import Database
from ctax.taxonomy.paths import LabelPath

log = logging.getLogger(__name__)


@dataclass
class SyncReport:
    upserted: int = 0
    deleted: int = 0
    unchanged: int = 0
    refreshed: int = 0  # labels whose representatives were chosen again


def sync_labels(db: Database, space: SharedSpace, index: LabelIndex) -> SyncReport:
    """Reads the labels in a short transaction; encoding and index writes happen outside it, so the database
    is never locked while a model runs."""
    version = space.version
    index.ensure_version(version, space.dim)
    with db.read() as session:
        active = {label.id: (label.path, label.depth) for label in labels.active(session)}
    stored = index.label_payloads(version)
    wanted = {lid: (path, space.phrase(LabelPath.parse(path))) for lid, (path, _) in active.items()}
    changed = [
        lid
        for lid, (path, phrase) in wanted.items()
        if stored.get(lid, {}).get("phrase") != phrase or stored.get(lid, {}).get("path") != path
    ]
    gone = [lid for lid in stored if lid not in active]
    if changed:
        vectors = space.text.encode([wanted[lid][1] for lid in changed])
        payloads = [{"path": wanted[lid][0], "phrase": wanted[lid][1], "depth": active[lid][1]} for lid in changed]
        index.upsert_labels(version, changed, vectors, payloads)
    index.delete_labels(version, gone)
    report = SyncReport(len(changed), len(gone), len(wanted) - len(changed))
    log.info("labels of %s synced: %s", version, report)
    return report


def content_of(item: LabelledCreative, blobs: BlobStore, space: SharedSpace, ocr: OcrReader | None) -> CreativeContent:
    image = None
    if item.image_sha256 and space.image_ready:
        image = decode_rgb(blobs.get(item.image_sha256))
    ocr_text = item.ocr_text
    if not item.texts and not ocr_text and item.image_sha256 and ocr is not None:
        ocr_text = ocr.read(image or decode_rgb(blobs.get(item.image_sha256)))
    return CreativeContent(texts=item.texts, image=image, ocr_text=ocr_text)


def sync_exemplars(
    db: Database,
    space: SharedSpace,
    index: LabelIndex,
    blobs: BlobStore,
    ocr: OcrReader | None = None,
    batch_size: int = 64,
) -> SyncReport:
    """The version's exemplars brought in step with the current annotations under the index's per-label budget
    (ctax/dataset/representatives.py): only creatives entering a label's sample are encoded, and only labels whose
    sample changed choose their representatives again; with nothing changed nothing is written."""
    version = space.version
    index.ensure_version(version, space.dim)
    with db.read() as session:
        annotations = current_annotations(session)
    plan = plan_exemplars(annotations, index.stored_exemplars(version), index.exemplars_per_label)
    del annotations  # the plan keeps the samples only

    def encode(items: Sequence[LabelledCreative]) -> list[np.ndarray | None]:
        return [e.vector for e in space.encode([content_of(item, blobs, space, ocr) for item in items])]

    report = apply_exemplar_plan(index, version, plan, encode, batch_size)
    log.info("exemplars of %s synced: %s", version, report)
    return report


@dataclass
class ExemplarPlan:
    """What a sync does to a version's exemplars: the sample members to encode, the stored ones to forget, and the
    labels whose representatives must be chosen again whatever is encoded (a member left or changed label, or the
    budget they were chosen under is not the current one)."""

    budget: int
    sample: dict[int, list[LabelledCreative]]  # per label, its sample in key order
    stored: dict[str, StoredExemplar]
    encode: list[LabelledCreative]
    drop: list[str]
    refresh: set[int]
    relabelled: int

    @property
    def empty(self) -> bool:
        return not (self.encode or self.drop or self.refresh)

    def keeps_all(self, label_id: int) -> bool:
        """Whether every member of the label's sample is a representative (no choice to make)."""
        return self.budget == 0 or len(self.sample.get(label_id, ())) <= self.budget


def plan_exemplars(
    annotations: Sequence[LabelledCreative], stored: dict[str, StoredExemplar], budget: int
) -> ExemplarPlan:
    """Pure: the current annotations against what the index stores. Costs one hash per annotation, no encoding."""
    keys = [item.draw_key(SAMPLE_SEED) for item in annotations]
    rows = draw_sample(keys, [item.label_id for item in annotations], budget)
    sample = {label: [annotations[row] for row in members] for label, members in rows.items()}
    wanted = {item.creative_id: item for members in sample.values() for item in members}
    drop = [cid for cid in stored if cid not in wanted]
    refresh = {stored[cid].label_id for cid in drop}
    relabelled = 0
    for cid, item in wanted.items():
        old = stored.get(cid)
        if old is not None and (old.label_id != item.label_id or old.budget != budget):
            refresh |= {old.label_id, item.label_id}
            relabelled += old.label_id != item.label_id
    encode = [item for cid, item in wanted.items() if cid not in stored]
    return ExemplarPlan(budget, sample, stored, encode, drop, refresh, relabelled)


Encode = Callable[[Sequence[LabelledCreative]], list[np.ndarray | None]]


def apply_exemplar_plan(
    index: LabelIndex, version: str, plan: ExemplarPlan, encode: Encode, batch_size: int = 64
) -> SyncReport:
    """Forget what left the samples, encode (with `encode`) and store what joined them, then choose the
    representatives of every label whose sample changed."""
    index.delete_exemplars(version, plan.drop)
    dropped = set(plan.drop)
    # What the index holds after each step: a refresh rewrites only the members whose flag or budget it changes
    # (local mode commits every point written to disk on its own: a rewrite of a whole sample is not free).
    state = {cid: stored for cid, stored in plan.stored.items() if cid not in dropped}
    refresh = set(plan.refresh)
    for start in tqdm(range(0, len(plan.encode), batch_size), desc=f"exemplars {version}", unit="batch",
                      disable=len(plan.encode) < 4 * batch_size):
        chunk = plan.encode[start : start + batch_size]
        keep = [(item, v) for item, v in zip(chunk, encode(chunk), strict=True) if v is not None]
        # A label that keeps all its sample gets them as representatives now; any other is marked pending (no
        # budget) until its representatives are chosen below, so an interrupted sync chooses them next time.
        for whole in (True, False):
            part = [(item, v) for item, v in keep if plan.keeps_all(item.label_id) == whole]
            if part:
                index.upsert_exemplars(version, [item.creative_id for item, _ in part],
                                       [item.label_id for item, _ in part], np.stack([v for _, v in part]),
                                       representative=[whole] * len(part), budget=plan.budget if whole else None)
                state.update({item.creative_id: StoredExemplar(item.label_id, whole, plan.budget if whole else None)
                              for item, _ in part})
        refresh |= {item.label_id for item, _ in keep if not plan.keeps_all(item.label_id)}
    for label_id in tqdm(sorted(refresh), desc=f"representatives {version}", unit="label",
                         disable=len(refresh) < 20):
        members = [item.creative_id for item in plan.sample.get(label_id, ()) if item.creative_id in state]
        choose_representatives(index, version, label_id, members, plan.budget, state)
    written = len(state) - len(plan.stored) + len(plan.drop)
    return SyncReport(written + plan.relabelled, len(plan.drop), len(state) - written - plan.relabelled,
                      len(refresh))


def choose_representatives(index: LabelIndex, version: str, label_id: int, members: Sequence[str], budget: int,
                           state: dict[str, StoredExemplar]) -> None:
    """One label's stored sample (creative ids in key order): its representatives chosen by the rule and marked,
    writing only the members whose stored `state` (updated here) differs from that."""
    if not members:
        return
    vectors = index.exemplar_vectors(version, members)
    chosen = set(medoids(vectors, budget))
    target = {cid: StoredExemplar(label_id, n in chosen, budget) for n, cid in enumerate(members)}
    changed = [n for n, cid in enumerate(members) if state.get(cid) != target[cid]]
    if changed:
        index.upsert_exemplars(version, [members[n] for n in changed], [label_id] * len(changed), vectors[changed],
                               representative=[target[members[n]].representative for n in changed], budget=budget)
        state.update({members[n]: target[members[n]] for n in changed})


class StoredContent(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def texts(self) -> list[str]: ...
    @property
    def ocr_text(self) -> str | None: ...
    @property
    def image_sha256(self) -> str | None: ...


def encode_stored(space: SharedSpace, blobs: BlobStore, rows: Sequence[StoredContent]) -> list[tuple[str, np.ndarray]]:
    """Stored creatives encoded by a version's towers, from what was stored (texts, OCR text already read, the
    image): what a version re-encodes when it inherits traffic or backfills its creatives collection. Those with
    nothing the version can encode are left out."""
    contents = []
    for row in rows:
        image = None
        if row.image_sha256 and space.image_ready:
            try:
                image = decode_rgb(blobs.get(row.image_sha256))
            except Exception:  # its text still counts; the label task reports unreadable images
                image = None
        contents.append(CreativeContent(texts=row.texts or [], image=image, ocr_text=row.ocr_text))
    encoded = space.encode(contents) if contents else []
    return [(row.id, e.vector) for row, e in zip(rows, encoded, strict=True) if e.vector is not None]


def inherit_traffic(
    db: Database,
    space: SharedSpace,
    index: LabelIndex,
    blobs: BlobStore,
    window: int,
    batch_size: int = 64,
) -> int:
    """A version about to be activated takes over the active version's recent traffic, re-encoded by its own
    towers in the order it arrived, so that novelty keeps its traffic evidence across a promotion or rollback.
    Returns how many creatives it inherited."""
    version, active = space.version, index.active_version()
    if window <= 0 or active is None or active == version:
        return 0
    ids = index.traffic_vectors(active)[0][-window:]
    inherited = 0
    for start in tqdm(range(0, len(ids), batch_size), desc=f"traffic {version}", unit="batch",
                      disable=len(ids) < 4 * batch_size):
        chunk = ids[start : start + batch_size]
        with db.read() as session:
            rows = {c.id: c for c in creatives.by_ids(session, chunk)}
        # Deleted since: left out.
        usable = encode_stored(space, blobs, [rows[cid] for cid in chunk if cid in rows])
        if usable:
            index.record_traffic(version, [cid for cid, _ in usable], np.stack([v for _, v in usable]), window,
                                 [campaign_key(rows[cid].account_id, rows[cid].campaign) for cid, _ in usable])
            inherited += len(usable)
    log.info("%s inherited %d creatives of traffic from %s", version, inherited, active)
    return inherited
