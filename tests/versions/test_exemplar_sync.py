"""The exemplar budget through the real sync: real MiniLM vectors in Qdrant local mode, annotations in the database.
A label keeps at most its budget of representatives, chosen by the rule; it chooses again when it gains data or the
budget changes; an unchanged sync does nothing; calibration and the labeller search the same exemplars."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from ctax.config import Settings
from ctax.dataset.labelled import LabelledCreative, current_annotations
from ctax.dataset.representatives import SAMPLE_SEED, draw_sample, representatives, sample_size
from ctax.embedding.space import SharedSpace
from ctax.index.connect import open_qdrant
from ctax.index.qdrant import LabelIndex
from ctax.store.blobs import BlobStore
from ctax.store.models import Annotation, Creative
from ctax.store.session import Database
from ctax.versions import artefacts
from ctax.versions.lifecycle import held_from_index
from ctax.versions.sync import SyncReport, apply_exemplar_plan, plan_exemplars, sync_exemplars, sync_labels

CARS, ANIMALS = "Product/Vehicles/Cars", "PSA/Animal Rights"
BUDGET = 3


@dataclass
class Parts:
    db: Database
    space: SharedSpace
    index: LabelIndex
    blobs: BlobStore
    labels: dict[str, int]

    def sync(self) -> SyncReport:
        return sync_exemplars(self.db, self.space, self.index, self.blobs)

    def annotations(self) -> list[LabelledCreative]:
        with self.db.read() as session:
            return current_annotations(session)

    def representatives(self, label: str) -> set[str]:
        """What the labeller finds when it asks for every exemplar of the label."""
        query = self.space.text.encode(["anything at all"])
        hits = self.index.nearest_exemplars(self.space.version, query, 1000)[0]
        return {hit.creative_id for hit in hits if hit.label_id == self.labels[label]}

    def rule(self, label: str) -> set[str]:
        """The rule applied by hand to the label's stored members and their stored vectors."""
        members = [item for item in self.annotations() if item.label_id == self.labels[label]]
        vectors = self.index.exemplar_vectors(self.space.version, [item.creative_id for item in members])
        kept = representatives([item.draw_key(SAMPLE_SEED) for item in members], [item.label_id for item in members],
                               vectors, self.index.exemplars_per_label)
        return {members[n].creative_id for n in kept}


@pytest.fixture
def parts(settings: Settings, db: Database, pitt_labels: dict[str, int], shared_data: Path) -> Iterator[Parts]:
    directory = settings.model_dir / "v1"
    directory.mkdir(parents=True)
    artefacts.pretrained_config(settings, "v1").write(directory)
    space = SharedSpace.load(directory)
    index = LabelIndex(open_qdrant(None, settings.qdrant_path), "t", exemplars_per_label=BUDGET)
    found = Parts(db, space, index, BlobStore(settings.blob_dir), pitt_labels)
    sync_labels(db, space, index)
    rows = [json.loads(line) for line in (shared_data / "pitt_ads_dev.jsonl").open()]
    add(found, CARS, [row["texts"] for row in rows if row["label"] == CARS][:12])
    add(found, ANIMALS, [row["texts"] for row in rows if row["label"] == ANIMALS][:2])
    yield found
    index.client.close()


def add(parts: Parts, label: str, texts: list[list[str]]) -> list[str]:
    with parts.db.write() as session:
        creatives = [Creative(source="import", status="labelled", texts=t) for t in texts]
        for creative in creatives:
            session.add(creative)
            session.add(Annotation(creative=creative, label_id=parts.labels[label], source="import"))
    return [creative.id for creative in creatives]


def test_a_label_keeps_at_most_its_budget_the_ones_the_rule_chooses(parts: Parts) -> None:
    report = parts.sync()
    assert (report.upserted, report.deleted, report.refreshed) == (14, 0, 1)  # only Cars has a choice to make
    assert len(parts.index.exemplar_labels(parts.space.version)) == 14  # the whole sample is stored...
    assert parts.index.count_exemplars(parts.space.version, representatives_only=True) == BUDGET + 2
    cars = parts.representatives(CARS)  # ...but the labeller searches the representatives only
    assert len(cars) == BUDGET and cars == parts.rule(CARS)
    assert len(parts.representatives(ANIMALS)) == 2  # under the budget: all kept


def test_an_unchanged_sync_does_nothing(parts: Parts) -> None:
    parts.sync()
    before = parts.index.stored_exemplars(parts.space.version)
    plan = plan_exemplars(parts.annotations(), before, BUDGET)
    assert plan.empty and not plan.encode
    assert parts.sync() == SyncReport(upserted=0, deleted=0, unchanged=14, refreshed=0)
    assert parts.index.stored_exemplars(parts.space.version) == before


def test_a_label_gaining_data_chooses_its_representatives_again(parts: Parts) -> None:
    parts.sync()
    cars_before, animals_before = parts.representatives(CARS), parts.representatives(ANIMALS)
    [new] = add(parts, CARS, [["Sail a private yacht around the Greek islands this summer"]])
    report = parts.sync()
    assert (report.upserted, report.refreshed) == (1, 1)
    cars = parts.representatives(CARS)
    assert len(cars) == BUDGET and cars == parts.rule(CARS) and cars != cars_before
    assert new in cars  # an ad unlike every other car ad is a region of its own
    assert parts.representatives(ANIMALS) == animals_before


def test_a_new_budget_or_a_relabel_chooses_again(parts: Parts) -> None:
    parts.sync()
    parts.index.exemplars_per_label = 5
    assert parts.sync().refreshed == 2  # both labels were chosen under another budget
    assert len(parts.representatives(CARS)) == 5 and parts.representatives(CARS) == parts.rule(CARS)
    moved = sorted(parts.representatives(CARS))[0]
    with parts.db.write() as session:  # a reviewer files one representative car ad under Animal Rights
        session.add(Annotation(creative_id=moved, label_id=parts.labels[ANIMALS], source="review"))
    report = parts.sync()
    assert (report.upserted, report.deleted, report.refreshed) == (1, 0, 2)  # its vector is reused, not re-encoded
    assert moved in parts.representatives(ANIMALS) and parts.representatives(CARS) == parts.rule(CARS)


def test_exemplars_stored_before_budgets_are_brought_under_one(parts: Parts) -> None:
    items = parts.annotations()
    vectors = parts.space.text.encode([item.texts[0] for item in items])
    # As a version synced before budgets left them: every creative an exemplar, no budget recorded.
    parts.index.upsert_exemplars(parts.space.version, [item.creative_id for item in items],
                                 [item.label_id for item in items], vectors)
    assert len(parts.representatives(CARS)) == 12
    report = parts.sync()
    assert (report.upserted, report.refreshed) == (0, 2)  # nothing re-encoded
    assert parts.representatives(CARS) == parts.rule(CARS) and len(parts.representatives(CARS)) == BUDGET


def test_pretrained_calibration_is_disjoint_from_the_exemplars_it_is_scored_against(parts: Parts) -> None:
    parts.sync()
    held, ref = held_from_index(parts.index, parts.space.version, parts.annotations(), seed=13, dim=parts.space.dim)
    # 30% of the 12 car ads are held out; the 2 animal ads are too few to split and stay exemplars.
    assert len(held.creative_ids) == 4 and set(held.label_ids) == {parts.labels[CARS]}
    assert not set(held.creative_ids) & set(ref.exemplar_ids)
    # The exemplars are the index's own rule applied to the rest: what the labeller would keep of them.
    rest = [item for item in parts.annotations() if item.creative_id not in set(held.creative_ids)]
    vectors = parts.index.exemplar_vectors(parts.space.version, [item.creative_id for item in rest])
    kept = representatives([item.draw_key(SAMPLE_SEED) for item in rest], [item.label_id for item in rest], vectors,
                           BUDGET)
    assert set(ref.exemplar_ids) == {rest[n].creative_id for n in kept}
    assert len(ref.exemplar_ids) == BUDGET + 2


def test_training_calibration_keeps_the_representatives_the_index_keeps(parts: Parts, settings: Settings) -> None:
    parts.sync()
    # A training run's calibration keeps the same representatives of its training split as the index does.
    from ctax.store.repos import versions
    from ctax.taxonomy.catalog import active_taxonomy
    from ctax.training.snapshot import Snapshot
    from ctax.training.validation import evaluate_space

    with parts.db.read() as session:
        taxonomy, stamp = active_taxonomy(session), versions.label_set_stamp(session)
    snap = Snapshot(taxonomy, {lid: taxonomy.path(lid) for lid in taxonomy.nodes}, parts.annotations(), stamp)
    budgeted = settings.model_copy(update={"exemplars_per_label": BUDGET})
    _, report = evaluate_space(parts.space, snap, snap.examples, snap.examples[:4], parts.blobs, budgeted)
    searched = parts.representatives(CARS) | parts.representatives(ANIMALS)
    assert report["n_exemplars"] == len(searched) == BUDGET + 2


def test_a_training_runs_new_label_threshold_flags_the_configured_share_of_known_creatives(
    parts: Parts, settings: Settings
) -> None:
    from ctax.store.repos import versions
    from ctax.taxonomy.catalog import active_taxonomy
    from ctax.training.snapshot import Snapshot
    from ctax.training.validation import evaluate_space

    parts.sync()
    with parts.db.read() as session:
        taxonomy, stamp = active_taxonomy(session), versions.label_set_stamp(session)
    snap = Snapshot(taxonomy, {lid: taxonomy.path(lid) for lid in taxonomy.nodes}, parts.annotations(), stamp)
    held = snap.examples[:8]
    thresholds = {}
    for rate, confidence in ((0.03, 0.0), (0.4, 0.0), (0.4, 0.9)):  # CTAX_NEW_LABEL_KNOWN_RATE, _RATE_CONFIDENCE
        report = evaluate_space(parts.space, snap, snap.examples, held, parts.blobs, settings.model_copy(
            update={"new_label_known_rate": rate, "new_label_rate_confidence": confidence}))[1]
        thresholds[rate, confidence] = report["new_label"]["threshold"]
    assert thresholds[0.03, 0.0] < thresholds[0.4, 0.0]
    assert thresholds[0.4, 0.9] < thresholds[0.4, 0.0]  # 8 creatives vouch for no share: none of them flagged


# -- the sync's plan and its application at scale, without the towers: synthetic vectors, the real LabelIndex -----

DIM = 16


class Synthetic:
    """Labelled creatives with chosen vectors, synced by the sync's own plan and apply steps (its `encode` looks the
    vectors up), into a real local-mode LabelIndex."""

    def __init__(self, index: LabelIndex, seed: int = 0) -> None:
        self.index, self.rng = index, np.random.default_rng(seed)
        self.items: list[LabelledCreative] = []
        self.vectors: dict[str, np.ndarray] = {}
        index.ensure_version("v", DIM)

    def add(self, label_id: int, centre: int, count: int) -> list[str]:
        """`count` creatives of a label near the unit vector of axis `centre`."""
        ids = []
        for _ in range(count):
            cid = f"{self.rng.integers(2**63):016x}{self.rng.integers(2**63):016x}"
            self.items.append(LabelledCreative(cid, label_id, (f"ad {cid}",), None, None))
            vector = np.eye(DIM, dtype=np.float32)[centre] + self.rng.normal(0, 0.05, DIM).astype(np.float32)
            self.vectors[cid] = vector
            ids.append(cid)
        return ids

    def remove(self, creative_id: str) -> None:
        self.items = [item for item in self.items if item.creative_id != creative_id]

    def sync(self) -> SyncReport:
        plan = plan_exemplars(self.items, self.index.stored_exemplars("v"), self.index.exemplars_per_label)
        return apply_exemplar_plan(self.index, "v", plan, lambda chunk: [self.vectors[i.creative_id] for i in chunk])

    def searched(self, label_id: int) -> set[str]:
        """Every exemplar of the label the labeller's search can return."""
        hits = self.index.nearest_exemplars("v", np.ones((1, DIM), np.float32), 100_000)[0]
        return {hit.creative_id for hit in hits if hit.label_id == label_id}

    def centre_of(self, creative_id: str) -> int:
        return int(np.argmax(self.vectors[creative_id]))


@pytest.fixture
def synthetic(tmp_path: Path) -> Iterator[Synthetic]:
    index = LabelIndex(open_qdrant(None, tmp_path / "qdrant"), "t", exemplars_per_label=4)
    yield Synthetic(index)
    index.client.close()


def test_the_budget_holds_however_many_creatives_a_label_gains(synthetic: Synthetic) -> None:
    synthetic.index.nearest_exemplars("v", np.ones((1, DIM), np.float32), 1)  # the worker's table, kept in step
    for round_ in range(12):
        synthetic.add(1, round_ % 4, 25)
        synthetic.add(2, 5, 1)
        synthetic.sync()
        stored = synthetic.index.stored_exemplars("v")
        for label_id in (1, 2):
            members = sum(item.label_id == label_id for item in synthetic.items)
            assert len(synthetic.searched(label_id)) == min(members, 4)
            # Stored: the label's sample (sample_size(4) = 32 here), not every creative it ever had.
            assert sum(s.label_id == label_id for s in stored.values()) == min(members, sample_size(4))
    assert len(synthetic.items) == 312
    table = synthetic.index._tables[synthetic.index.exemplars_collection("v")]
    assert len(table) == 8  # the worker's in-memory table: labels x budget
    wanted = draw_sample([i.draw_key(SAMPLE_SEED) for i in synthetic.items], [i.label_id for i in synthetic.items], 4)
    assert set(stored) == {synthetic.items[row].creative_id for rows in wanted.values() for row in rows}


def test_a_refresh_keeps_the_representatives_spread_over_the_label(synthetic: Synthetic) -> None:
    # A label whose creatives arrive one region at a time: each sync re-chooses, so the four kept end up one per
    # region (a rule that kept the first ones, or any four of the sample, would not).
    for centre in range(4):
        synthetic.add(1, centre, 20)
        synthetic.sync()
        assert {synthetic.centre_of(cid) for cid in synthetic.searched(1)} == set(range(centre + 1))
    assert len(synthetic.searched(1)) == 4


def test_deleting_a_representative_promotes_another_of_its_region(synthetic: Synthetic) -> None:
    for centre in range(4):
        synthetic.add(1, centre, 6)
    synthetic.sync()
    before = synthetic.searched(1)
    [gone] = [cid for cid in before if synthetic.centre_of(cid) == 2]
    synthetic.remove(gone)
    report = synthetic.sync()
    assert (report.deleted, report.refreshed) == (1, 1)
    after = synthetic.searched(1)
    assert gone not in after and gone not in synthetic.index.stored_exemplars("v")
    assert len(after) == 4 and {synthetic.centre_of(cid) for cid in after} == set(range(4))


def test_a_budget_of_zero_keeps_every_labelled_creative(synthetic: Synthetic) -> None:
    synthetic.index.exemplars_per_label = 0
    synthetic.add(1, 0, 150)
    synthetic.add(2, 3, 60)
    report = synthetic.sync()
    assert (report.upserted, report.refreshed) == (210, 0)  # nothing to choose
    assert len(synthetic.searched(1)) == 150 and len(synthetic.searched(2)) == 60
    assert synthetic.sync() == SyncReport(upserted=0, deleted=0, unchanged=210, refreshed=0)
