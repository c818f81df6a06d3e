"""Near-duplicate groups through the labelling task in a real worker runtime (real MiniLM, Qdrant local mode): exact
and near duplicates join the group of an already-labelled creative, take its decision, add to its one review
item, take a reviewer's decision on it, count once in the traffic window and once in an export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from ctax.creatives.intake import CreativeSubmission
from ctax.dataset import export
from ctax.dataset.importing import import_labelled
from ctax.enums import Action, ReviewStatus
from ctax.labelling.labeller import LabelRequest
from ctax.review import decisions as review_decisions
from ctax.search.backfill import backfill
from ctax.store.keys import create_key
from ctax.store.models import Annotation, ApiKey, Label, ReviewDecision, ReviewItem
from ctax.worker.runtime import Runtime
from ctax.worker.tasks.label import run
from tests.conftest import png_bytes
from tests.worker.test_label_task import load, submit

# A car ad posted as an animal-rights PSA: flagged wrong_label, so the group has a review item.
AD = "Buy the new Honda Civic today: low monthly payments at your local dealer"
MISFILED = "PSA/Animal Rights"


def misfiled(text: str) -> CreativeSubmission:
    return CreativeSubmission(texts=[text], asserted_label=MISFILED)


def items(rt: Runtime) -> dict[str, ReviewItem]:
    with rt.db.read() as session:
        return {item.creative_id: item for item in session.scalars(select(ReviewItem))}


def annotations(rt: Runtime, ids: list[str]) -> dict[str, Annotation]:
    with rt.db.read() as session:
        rows = session.scalars(select(Annotation).where(Annotation.creative_id.in_(ids)).order_by(Annotation.id))
        return {row.creative_id: row for row in rows}


def test_exact_text_duplicates_join_the_group_and_its_one_review_item(runtime: Runtime) -> None:
    [root] = submit(runtime, misfiled(AD))
    assert run(runtime, [root])["labelled"] == 1
    assert items(runtime)[root].members == 1
    # Later: the same words (case and spacing aside) twice in one batch, and once more within that batch.
    copies = submit(runtime, misfiled("buy the new  HONDA Civic today: low monthly payments at your local dealer"),
                    misfiled(AD))
    assert run(runtime, copies)["labelled"] == 2
    rows = load(runtime, [root, *copies])
    assert rows[root].duplicate_of is None and rows[root].flag == "wrong_label"
    for copy in copies:
        assert rows[copy].duplicate_of == root
        assert (rows[copy].flag, rows[copy].decided_label_id) == (rows[root].flag, rows[root].decided_label_id)
        assert rows[copy].prediction["duplicate_of"] == root
    assert list(items(runtime)) == [root] and items(runtime)[root].members == 3
    # Within one batch the earlier creative is the root.
    first, second = submit(runtime, CreativeSubmission(texts=["Fresh sourdough bread, baked daily"]),
                           CreativeSubmission(texts=["Fresh sourdough bread, baked daily"]))
    assert run(runtime, [first, second])["labelled"] == 2
    rows = load(runtime, [first, second])
    assert rows[first].duplicate_of is None and rows[second].duplicate_of == first


def test_exact_image_duplicates_are_neither_read_nor_encoded_again(runtime: Runtime) -> None:
    picture = png_bytes("Cheap flights to Rome")
    [root] = submit(runtime, CreativeSubmission(image=picture))
    assert run(runtime, [root])["labelled"] == 1
    reads: list[int] = []
    ocr = runtime.labeller().ocr
    assert ocr is not None
    original = ocr.read_many
    ocr.read_many = lambda images: reads.append(len(images)) or original(images)  # type: ignore[method-assign]
    [copy] = submit(runtime, CreativeSubmission(image=picture))
    assert run(runtime, [copy])["labelled"] == 1
    rows = load(runtime, [root, copy])
    assert reads == []  # the copy took its root's OCR text and decision
    assert rows[copy].duplicate_of == root and rows[copy].ocr_text == rows[root].ocr_text
    assert rows[copy].decided_label_id == rows[root].decided_label_id
    # Searchable like any labelled creative: the copy has its root's vector in the creatives collection.
    index = runtime.labeller().index
    vectors = index.creative_vectors(runtime.labeller().version, [root, copy])
    assert set(vectors) == {root, copy}


def test_a_copy_of_an_imported_example_is_labelled_on_its_own_not_left_without_labels(
        runtime: Runtime, tmp_path: Path) -> None:
    # An imported example is labelled by a person, not by a version: no prediction, flag or decided label to share.
    source = tmp_path / "seed.jsonl"
    source.write_text(json.dumps({"id": "seed-1", "texts": [AD], "label": "Product/Vehicles/Cars"}) + "\n")
    with runtime.db.write() as session:
        import_labelled(session, runtime.blobs, runtime.settings, source)
    labeller = runtime.labeller()
    # In the version's creatives collection, as the worker's backfill puts every labelled creative: near matches.
    assert backfill(runtime.db, labeller.space, labeller.index, runtime.blobs) == 1
    [copy, variant] = submit(runtime, CreativeSubmission(texts=[AD]),
                             CreativeSubmission(texts=[AD.replace("today", "this week")]))
    assert run(runtime, [copy, variant])["labelled"] == 2
    rows = load(runtime, [copy, variant])
    for creative in (copy, variant):  # both near the example; neither joins it
        assert rows[creative].duplicate_of is None and rows[creative].flag is not None
        assert rows[creative].prediction["top_k"][0]["path"] == "Product/Vehicles/Cars"
    # Labelled on their own, they are traffic like any creative (and swept), not kept out of it as members are.
    window, _ = labeller.index.traffic_window(labeller.version)
    assert {copy, variant} <= set(window)
    # The copy, labelled by the version, is a root as any: a later copy takes its decision.
    [again] = submit(runtime, CreativeSubmission(texts=[AD]))
    assert run(runtime, [again])["labelled"] == 1
    rows = load(runtime, [copy, again])
    assert rows[again].duplicate_of == copy
    assert rows[again].prediction["top_k"] == rows[copy].prediction["top_k"]


def test_a_near_variant_joins_and_a_different_ad_of_the_same_label_does_not(runtime: Runtime) -> None:
    [root] = submit(runtime, misfiled("Honda Civic 2024: now only $19,999 at your local dealer until May 31"))
    assert run(runtime, [root])["labelled"] == 1
    # Reworded (not the same words): found by its vector. Another car's ad in the same words is a different ad.
    variant, accord, lincoln = submit(
        runtime, misfiled("Honda Civic 2024: now just $19,999 at your local dealer until May 31"),
        misfiled("Honda Accord 2024: now only $24,999 at your local dealer until May 31"),
        misfiled("The Lincoln Continental: a stylish luxury sedan built for comfort"))
    assert run(runtime, [variant, accord, lincoln])["labelled"] == 3
    rows = load(runtime, [root, variant, accord, lincoln])
    assert rows[variant].duplicate_of == root and rows[variant].prediction["duplicate_of"] == root
    assert rows[accord].duplicate_of is None and rows[lincoln].duplicate_of is None
    assert rows[variant].decided_label_id == rows[root].decided_label_id
    assert items(runtime)[root].members == 2
    assert {accord, lincoln} <= set(items(runtime))  # different ads open items of their own


def test_a_group_decision_applies_to_every_member_and_is_undone_with_them(runtime: Runtime) -> None:
    root, copy = submit(runtime, misfiled(AD), misfiled(AD))
    assert run(runtime, [root, copy])["labelled"] == 2
    item = items(runtime)[root]
    with runtime.db.write() as session:
        reviewer = create_key(session, "reviewer", "reviewer")[0]
    with runtime.db.write() as session:
        key = session.get(ApiKey, reviewer.id)
        assert key is not None
        outcome = review_decisions.decide(session, item.id, key, review_decisions.DecisionRequest(Action.CONFIRM))
        label_id = outcome.label.id if outcome.label else None
        decision_id = outcome.decision.id
    assert label_id is not None
    found = annotations(runtime, [root, copy])
    assert {cid: (a.label_id, a.decision_id) for cid, a in found.items()} == {
        root: (label_id, decision_id), copy: (label_id, decision_id)}
    with runtime.db.read() as session:
        audit = session.get(ReviewDecision, decision_id)
        assert audit is not None and audit.previous["group_members"] == [copy]
    # A copy arriving after the decision takes it too, and the undo takes it back from all of them.
    [late] = submit(runtime, misfiled(AD))
    assert run(runtime, [late])["labelled"] == 1
    assert annotations(runtime, [late])[late].label_id == label_id
    assert items(runtime)[root].members == 3 and items(runtime)[root].status == ReviewStatus.DECIDED
    with runtime.db.write() as session:
        key = session.get(ApiKey, reviewer.id)
        assert key is not None
        review_decisions.reopen(session, item.id, key, ttl_s=60)
    assert annotations(runtime, [root, copy, late]) == {}


def test_a_group_counts_once_in_the_traffic_window_and_in_a_one_per_group_export(runtime: Runtime) -> None:
    labeller = runtime.labeller()
    before = labeller.index.count_traffic(labeller.version)
    ids = submit(runtime, misfiled("Honda Civic 2024: now only $19,999 at your local dealer until May 31"),
                 misfiled("Honda Civic 2024: now only $18,499 at your local dealer until June 30"),
                 misfiled("Honda Civic 2024: now only $19,999 at your local dealer until May 31"),
                 misfiled("Stop animal cruelty: adopt a rescue dog from your local shelter"))
    assert run(runtime, ids)["labelled"] == 4
    rows = load(runtime, ids)
    assert [rows[i].duplicate_of for i in ids] == [None, ids[0], ids[0], None]
    assert labeller.index.count_traffic(labeller.version) - before == 2  # the group once, the other ad once
    with runtime.db.write() as session:
        for creative_id in ids:
            session.add(Annotation(creative_id=creative_id, label_id=rows[ids[0]].decided_label_id, kind="label",
                                   source="review"))
    with runtime.db.read() as session:
        every = [r.creative_id for r in export.labelled_rows(session)]
        grouped = [r.group for r in export.labelled_rows(session, one_per_group=True)]
        lines = list(export.lines(session, "jsonl"))
    assert sorted(every) == sorted(ids)
    assert sorted(grouped) == sorted([ids[0], ids[3]])
    assert sum('"duplicate_of"' in line for line in lines) == 2


def test_a_version_whose_space_packs_ads_close_groups_only_above_its_own_floor(runtime: Runtime) -> None:
    """The version's calibrated floor (thresholds.duplicate_similarity) raises the setting: the reworded variant
    that joins at the setting (test above) stays apart under a version whose distinct ads sit that close."""
    from ctax.store.models import ModelVersion
    from ctax.store.repos import versions

    with runtime.db.write() as session:
        version = session.get(ModelVersion, versions.active(session).id)  # type: ignore[union-attr]
        assert version is not None
        version.thresholds = {**(version.thresholds or {}), "duplicate_similarity": 0.9999}
    [root] = submit(runtime, misfiled("Honda Civic 2024: now only $19,999 at your local dealer until May 31"))
    assert run(runtime, [root])["labelled"] == 1
    [variant] = submit(runtime, misfiled("Honda Civic 2024: now just $19,999 at your local dealer until May 31"))
    assert run(runtime, [variant])["labelled"] == 1
    assert load(runtime, [variant])[variant].duplicate_of is None
    assert runtime.labeller().duplicate_similarity == 0.9999
    # Exact duplicates still group whatever the floor.
    [copy] = submit(runtime, misfiled("HONDA Civic 2024 - now only $18,499 at your local dealer, until June 30!"))
    assert run(runtime, [copy])["labelled"] == 1
    assert load(runtime, [copy])[copy].duplicate_of == root


def test_a_copy_posted_under_another_label_is_judged_on_its_own(runtime: Runtime) -> None:
    """A group's decision covers what its poster said; a copy posted under a different label says something else,
    so it is labelled alone and a wrong label on it is flagged, as for any creative."""
    [root] = submit(runtime, CreativeSubmission(texts=[AD]))  # posted with no label: not flagged, no item
    assert run(runtime, [root])["labelled"] == 1
    decided = load(runtime, [root])[root].decided_label_id
    # An exact copy and a reworded one, each posted under a wrong label; a copy saying nothing; a copy posted
    # under the label the group was decided as (the poster agrees with the group).
    exact, near, silent = submit(
        runtime, misfiled(AD), misfiled("Buy the new Honda Civic today: low monthly payments at your nearby dealer"),
        CreativeSubmission(texts=[AD]))
    assert run(runtime, [exact, near, silent])["labelled"] == 3
    rows = load(runtime, [root, exact, near, silent])
    for alone in (exact, near):
        assert rows[alone].duplicate_of is None and rows[alone].flag == "wrong_label"
        assert alone in items(runtime)  # its own review item
    assert rows[silent].duplicate_of == root and rows[silent].flag == rows[root].flag
    labeller = runtime.labeller()
    window, _ = labeller.index.traffic_window(labeller.version)
    assert near in window and silent not in window  # labelled alone: traffic; a member: counted by its root
    with runtime.db.read() as session:
        agreeing_label = session.get(Label, decided)
        assert agreeing_label is not None
    [agreeing] = submit(runtime, CreativeSubmission(texts=[AD], asserted_label=str(agreeing_label.path)))
    assert run(runtime, [agreeing])["labelled"] == 1
    assert load(runtime, [agreeing])[agreeing].duplicate_of == root


def test_a_wrong_label_verdict_is_shared_only_by_copies_posted_under_the_same_label(runtime: Runtime) -> None:
    """A group flagged wrong_label was flagged for its root's assertion: a copy posted under the right label, or
    under none, did not make that assertion and is labelled on its own instead of taking the flag."""
    [root] = submit(runtime, misfiled(AD))
    assert run(runtime, [root])["labelled"] == 1
    rows = load(runtime, [root])
    assert rows[root].flag == "wrong_label"
    with runtime.db.read() as session:
        right = session.get(Label, rows[root].decided_label_id)
        assert right is not None
    reworded = "Buy the new Honda Civic today: low monthly payments at your nearby dealer"
    same, right_exact, right_near, silent = submit(
        runtime, misfiled(AD), CreativeSubmission(texts=[AD], asserted_label=str(right.path)),
        CreativeSubmission(texts=[reworded], asserted_label=str(right.path)), CreativeSubmission(texts=[AD]))
    assert run(runtime, [same, right_exact, right_near, silent])["labelled"] == 4
    rows = load(runtime, [root, same, right_exact, right_near, silent])
    assert rows[same].duplicate_of == root and rows[same].flag == "wrong_label"  # the same assertion: the group's
    for alone in (right_exact, right_near, silent):
        assert rows[alone].duplicate_of is None and rows[alone].flag != "wrong_label"
        assert rows[alone].decided_label_id == rows[root].decided_label_id


def test_a_group_formed_within_one_batch_takes_its_median_members_decision_not_its_firsts(runtime: Runtime) -> None:
    """Three close variants of one ad, the worst-fitting first: the group is rooted at (and decided as) the one whose
    learned fit is the median, so that the first of a burst does not decide it alone. Exact copies follow."""
    worst, median, best = ("Fresh sourdough bread, baked daily at the corner bakery",
                           "Fresh sourdough bread, baked daily at our corner bakery near you",
                           "Our corner bakery: fresh sourdough bread, baked daily")
    texts = (worst, median, best)
    ids = submit(runtime, *(CreativeSubmission(texts=[text]) for text in texts))
    labeller = runtime.labeller()
    encoded = labeller.encode([LabelRequest(cid, texts=[text]) for cid, text in zip(ids, texts, strict=True)])
    vectors = np.stack([item.vector for item in encoded.encoded])  # type: ignore[misc]
    arrival = labeller.arrival_traffic(vectors, ids)
    fits = [d.scores["fit"] for d in labeller.decide(vectors, [None] * 3, arrival.traffic, arrival.windows)]
    assert fits[0] < fits[1] < fits[2], fits  # what the test is about: the first is not the median
    # An exact copy of the first in the same batch (not encoded, matched to it by its words) follows it to the root.
    ids += submit(runtime, CreativeSubmission(texts=[worst.upper()]))
    assert run(runtime, ids)["labelled"] == 4
    rows = load(runtime, ids)
    assert rows[ids[1]].duplicate_of is None
    assert [rows[ids[n]].duplicate_of for n in (0, 2, 3)] == [ids[1]] * 3
    assert len({(row.flag, row.decided_label_id) for row in rows.values()}) == 1
    first_alone, median_alone = labeller.decide(vectors[:2], [None] * 2, [[], []], [0, 0])
    assert first_alone.decided_label_id != median_alone.decided_label_id  # so the label says whose decision it is
    assert rows[ids[0]].decided_label_id == median_alone.decided_label_id
    assert rows[ids[0]].prediction["duplicate_of"] == ids[1]


def test_a_restarted_worker_builds_the_near_duplicate_search_before_it_takes_work(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past CELLS_FROM labelled creatives the search reads coarse cells (index/cells.py); a restart builds them (and
    the collection's mirror) at start-up, not inside its first batch, and a near variant still joins its group."""
    import ctax.index.collections

    monkeypatch.setattr(ctax.index.collections, "CELLS_FROM", 600)
    ids = submit(runtime, CreativeSubmission(texts=[AD]))
    run(runtime, ids)
    version = runtime.info["model_version"]
    rng = np.random.default_rng(5)
    others = rng.normal(size=(800, 384)).astype(np.float32)  # labelled creatives of other kinds, far from the ad
    runtime.index.upsert_creatives(version, [f"{n:032x}" for n in range(800)], others)
    runtime.stop()
    runtime.index.client.close()

    restarted = Runtime(runtime.settings, runtime.queues, owns_index=True)
    restarted.start()
    try:
        table = restarted.index._tables[restarted.index.creatives_collection(version)]
        assert table.cells is not None and len(table.cells) == 801  # built before any batch
        assert "near_duplicate_search_ready_s" in restarted.info
        variant = submit(restarted, CreativeSubmission(texts=[AD.replace("today", "this weekend")]))
        run(restarted, variant)
        assert load(restarted, variant)[variant[0]].duplicate_of == ids[0]
    finally:
        restarted.stop()
        restarted.index.client.close()
