"""Recent traffic as novelty evidence, and the sweep that re-decides creatives once more traffic has arrived."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import numpy as np
import pytest
from sqlalchemy import event, select

from ctax.creatives.intake import CreativeSubmission, create_creative
from ctax.enums import CreativeStatus
from ctax.jobs import LABEL_QUEUE
from ctax.labelling.sweep import sweep
from ctax.store.keys import create_account
from ctax.store.models import ReviewItem
from ctax.versions import registry
from ctax.versions.lifecycle import build
from ctax.worker.runtime import Runtime
from ctax.worker.tasks.label import run
from tests.conftest import campaign_neighbourhood
from tests.worker.test_label_task import load, submit

ROCKETS = [
    "Book your seat on a rocket to orbit with StarVoyage space tourism",
    "StarVoyage: weightless views of Earth from a private spacecraft",
    "Your first orbital flight, rocket launch tickets on sale now",
    "Float above the planet on a StarVoyage spaceflight holiday",
    "Space tourism for everyone: rocket trips to low Earth orbit",
    "See the curve of the Earth from the StarVoyage capsule window",
]
# Only the traffic feature speaks: fit = -10 * (mean similarity of recent creatives - of nearest exemplars).
TRAFFIC_ONLY = {"features": ["traffic_minus_exemplar"], "mean": [0.0], "scale": [1.0], "coef": [10.0],
                "intercept": 0.0}


def same_scores(a: list[dict[int, float]], b: list[dict[int, float]]) -> bool:
    """The same label search, batched differently: equal but for the last float32 digit."""
    return len(a) == len(b) and all(x.keys() == y.keys() and all(abs(x[k] - y[k]) < 1e-6 for k in x)
                                    for x, y in zip(a, b, strict=True))


def set_thresholds(rt: Runtime, **changes: Any) -> None:
    with rt.db.write() as session:
        version = registry.active_version(session)
        assert version is not None
        version.thresholds = {**(version.thresholds or {}), **changes}


def test_a_version_whose_decisions_read_no_traffic_keeps_the_window_but_neither_searches_nor_sweeps_it(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a learned score over the traffic (a version calibrated without labelled data) no traffic search
    can change a decision: labelling records the window (a later version may read it) and skips the rest."""
    car, *rockets = submit(runtime, CreativeSubmission(texts=["Buy the new Honda Civic, a great family car"]),
                           *[CreativeSubmission(texts=[t]) for t in ROCKETS])
    searched: list[int] = []
    index = runtime.index
    real_search = index.traffic_neighbours

    def counted(*args: Any, **kwargs: Any) -> Any:  # the real search, counted
        searched.append(len(args[1]))
        return real_search(*args, **kwargs)

    monkeypatch.setattr(index, "traffic_neighbours", counted)
    for cid in [car, *rockets]:
        run(runtime, [cid])
    labeller = runtime.labeller()
    assert not labeller.reads_traffic and not searched
    assert index.traffic_window(labeller.version)[0] == [car, *rockets]
    assert not labeller.swept_label_scores  # kept only for a sweep, which will not run
    before = {cid: row.prediction for cid, row in load(runtime, [car, *rockets]).items()}
    report = sweep(runtime.db, labeller)
    assert (report.window, report.swept, report.raised) == (7, 0, 0) and not searched
    assert {cid: row.prediction for cid, row in load(runtime, [car, *rockets]).items()} == before

    # A score over the traffic makes both speak again (one with a zero coefficient on it would not).
    set_thresholds(runtime, novelty_model={**TRAFFIC_ONLY, "coef": [0.0]})
    assert not runtime.labeller().reads_traffic
    set_thresholds(runtime, novelty_model=TRAFFIC_ONLY, new_label=-100.0)
    assert runtime.labeller().reads_traffic
    assert sweep(runtime.db, runtime.labeller(), refresh=True).swept == 7 and searched == [7]


def test_a_creative_whose_kind_keeps_arriving_is_raised_to_new_label_by_the_sweep(runtime: Runtime) -> None:
    set_thresholds(runtime, novelty_model=TRAFFIC_ONLY, new_label=-100.0)
    car, *rockets = submit(runtime, CreativeSubmission(texts=["Buy the new Honda Civic, a great family car"]),
                           *[CreativeSubmission(texts=[t]) for t in ROCKETS])
    for cid in [car, *rockets]:  # one at a time, so that the order of arrival is known
        run(runtime, [cid])
    rows = load(runtime, [car, *rockets])
    fits = {cid: rows[cid].prediction["scores"]["fit"] for cid in [car, *rockets]}
    # Each rocket ad saw the ones labelled before it as traffic: the later, the less it fits.
    assert fits[rockets[0]] > max(fits[cid] for cid in rockets[2:])
    assert rows[rockets[-1]].prediction["scores"]["recent_like_it"] >= 1
    arrival_flags = {cid: rows[cid].flag for cid in rockets}
    assert set(arrival_flags.values()) <= {"none", "low_confidence"}

    # The first rocket ad was labelled before any like it; just below its fit at arrival is "new" from now on.
    first_fit = fits[rockets[0]]
    set_thresholds(runtime, new_label=first_fit - 1e-6)
    report = sweep(runtime.db, runtime.labeller())
    assert report.window == 7 and report.swept + report.skipped == 7 and report.swept >= 1
    rows = load(runtime, [car, *rockets])
    first = rows[rockets[0]]
    assert first.flag == "new_label" and first.decided_label_id is None
    assert first.prediction["raised_by_sweep"] and first.prediction["flag_at_arrival"] == arrival_flags[rockets[0]]
    assert first.prediction["scores"]["fit_at_arrival"] == first_fit
    assert first.prediction["scores"]["fit"] < first_fit  # now every later rocket ad is traffic too
    assert any("novelty sweep" in reason for reason in first.prediction["reasons"])
    with runtime.db.read() as session:
        item = session.scalar(select(ReviewItem).where(ReviewItem.creative_id == rockets[0]))
        assert item is not None and item.flag == "new_label" and item.status == "open"
    assert report.raised == sum(rows[cid].flag == "new_label" for cid in [car, *rockets])

    # A second sweep finds nothing more to raise and keeps the fit each creative had at arrival.
    again = sweep(runtime.db, runtime.labeller())
    assert again.raised == 0
    assert load(runtime, [rockets[0]])[rockets[0]].prediction["scores"]["fit_at_arrival"] == first_fit


def test_the_sweep_stores_what_the_whole_decision_would_and_decides_in_full_only_what_it_may_raise(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    set_thresholds(runtime, novelty_model=TRAFFIC_ONLY, new_label=-100.0)
    others = ["Buy the new Honda Civic, a great family car", "Fresh sourdough bread at the corner bakery",
              "Cheap flights to Lisbon this spring", "Stop smoking today: call the quit line"]
    ids = submit(runtime, *[CreativeSubmission(texts=[t]) for t in [*others, *ROCKETS]])
    for cid in ids:
        run(runtime, [cid])
    arrival = {cid: row.prediction["scores"]["fit"] for cid, row in load(runtime, ids).items()}
    set_thresholds(runtime, new_label=float(np.median(list(arrival.values()))))
    labeller = runtime.labeller()
    window_ids, vectors = runtime.index.traffic_window(labeller.version)
    traffic, windows = labeller.full_window_traffic(vectors, window_ids)
    whole = dict(zip(window_ids, labeller.decide(vectors, [None] * len(ids), traffic, windows), strict=True))

    decided: list[str] = []
    decide = labeller.trigger.decide
    monkeypatch.setattr(labeller.trigger, "decide", lambda evidence: decided.append("x") or decide(evidence))
    report = sweep(runtime.db, labeller, refresh=True)  # every creative's evidence brought up to date
    rows = load(runtime, ids)
    for cid in ids:
        scores = rows[cid].prediction["scores"]
        assert scores["fit"] == pytest.approx(whole[cid].scores["fit"], abs=1e-5)  # raised ones: rounded
        assert scores["recent_like_it"] == whole[cid].scores["recent_like_it"]
        assert rows[cid].prediction.get("raised_by_sweep", False) == (whole[cid].flag == "new_label")
    raised = [cid for cid in ids if whole[cid].flag == "new_label"]
    assert 0 < report.raised == len(raised) < len(ids)
    assert len(decided) == len(raised)  # the others' fit alone was worked out
    for cid in raised:
        assert rows[cid].prediction["top_k"] == labeller.prediction(whole[cid], {}, [])["top_k"]


def test_the_service_sweep_raises_what_a_full_refresh_would_and_leaves_what_no_traffic_could_raise(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without `refresh` (the service's sweep): the same creatives are raised, with the same predictions, as when
    every young creative is re-decided; the others are left exactly as they were, their traffic searched once,
    its campaigns not counted (what the raw neighbours allow keeps them above the threshold)."""
    set_thresholds(runtime, novelty_model=TRAFFIC_ONLY, new_label=-100.0, campaigns_once=True)
    others = ["Buy the new Honda Civic, a great family car", "Fresh sourdough bread at the corner bakery",
              "Cheap flights to Lisbon this spring", "Stop smoking today: call the quit line"]
    ids = submit(runtime, *[CreativeSubmission(texts=[t]) for t in [*others, *ROCKETS]])
    for cid in ids:
        run(runtime, [cid])
    window_ids, vectors = runtime.index.traffic_window(runtime.labeller().version)
    traffic, windows = runtime.labeller().full_window_traffic(vectors, window_ids)
    fits = [d.scores["fit"] for d in runtime.labeller().decide(vectors, [None] * len(ids), traffic, windows)]
    set_thresholds(runtime, new_label=float(np.median(fits)))  # half of them fit no label once all have arrived
    labeller = runtime.labeller()
    whole = dict(zip(window_ids, labeller.decide(vectors, [None] * len(ids), traffic, windows), strict=True))
    before = {cid: row.prediction for cid, row in load(runtime, ids).items()}

    counted: list[str] = []
    search = labeller.full_window_traffic
    monkeypatch.setattr(labeller, "full_window_traffic", lambda vectors, creative_ids, campaigns=None: (
        counted.extend(creative_ids), search(vectors, creative_ids, campaigns))[1])
    report = sweep(runtime.db, labeller)
    rows = load(runtime, ids)
    raised = {cid for cid in ids if whole[cid].flag == "new_label"}
    assert 0 < len(raised) == report.raised and {cid for cid in ids if rows[cid].flag == "new_label"} == raised
    for cid in raised:
        assert rows[cid].prediction["scores"]["fit"] == pytest.approx(whole[cid].scores["fit"], abs=1e-5)
        assert rows[cid].prediction["top_k"] == labeller.prediction(whole[cid], {}, [])["top_k"]
    left = [cid for cid in ids if cid not in counted]
    assert report.skipped == len(left) > 0 and report.swept == len(counted) == len(ids) - len(left)
    assert all(rows[cid].prediction == before[cid] for cid in left)
    assert set(counted) >= raised
    assert any(before[cid]["flag"] in ("none", "low_confidence") for cid in left)  # skipped by the bound


def test_the_fits_the_sweep_keeps_are_worked_out_again_once_the_exemplars_change(runtime: Runtime) -> None:
    """Between sweeps only the traffic changes, so each young creative's fit without traffic is kept; exemplars
    added or removed change it (they are what its fit compares the traffic with), and a kept one would then skip
    creatives that now fit no label."""
    set_thresholds(runtime, novelty_model=TRAFFIC_ONLY, new_label=-100.0)
    others = ["Buy the new Honda Civic, a great family car", "Fresh sourdough bread at the corner bakery"]
    ids = submit(runtime, *[CreativeSubmission(texts=[t]) for t in [*others, *ROCKETS]])
    for cid in ids:
        run(runtime, [cid])
    labeller = runtime.labeller()
    version = labeller.version
    window_ids, vectors = runtime.index.traffic_window(version)
    # Exemplars exactly like the rocket ads: as far from novel as a creative can be.
    copies = [uuid.uuid4().hex for _ in ROCKETS]
    leaf = next(lid for lid in labeller.taxonomy.nodes if not labeller.taxonomy.children.get(lid))
    runtime.index.upsert_exemplars(version, copies, [leaf] * len(copies), vectors[len(others):])
    assert sweep(runtime.db, labeller).raised == 0
    assert set(labeller.swept_fits) == set(ids)
    kept = dict(labeller.swept_fits)

    runtime.index.delete_exemplars(version, copies)  # a reviewer's relabelling took them away
    traffic, windows = labeller.full_window_traffic(vectors, window_ids)
    fits = [d.scores["fit"] for d in labeller.decide(vectors, [None] * len(ids), traffic, windows)]
    labeller.trigger.thresholds = dataclasses.replace(labeller.trigger.thresholds, new_label=float(np.median(fits)))
    whole = dict(zip(window_ids, labeller.decide(vectors, [None] * len(ids), traffic, windows), strict=True))
    report = sweep(runtime.db, labeller)
    raised = {cid for cid in ids if whole[cid].flag == "new_label"}
    assert report.raised == len(raised) > 0
    assert {cid for cid, row in load(runtime, ids).items() if row.flag == "new_label"} == raised
    assert all(labeller.swept_fits[cid] != kept[cid] for cid in ids if cid not in raised)  # worked out again


def test_each_creatives_fit_without_traffic_is_kept_from_arrival_as_the_sweep_would_work_it_out(
    runtime: Runtime,
) -> None:
    """The sweep's bound needs each young creative's fit were no traffic like it; labelling has just searched its
    exemplars, so that fit is kept from arrival (with the exemplars' stamp) and a sweep does not work it out again."""
    set_thresholds(runtime, novelty_model=TRAFFIC_ONLY, new_label=-100.0)
    labeller = runtime.labeller()
    version = labeller.version
    leaf = next(lid for lid in labeller.taxonomy.nodes if not labeller.taxonomy.children.get(lid))
    first = submit(runtime, *[CreativeSubmission(texts=[t]) for t in ROCKETS[:2]])
    run(runtime, first)
    _, near = runtime.index.traffic_window(version)  # exemplars like the first rockets: the fits differ by creative
    runtime.index.upsert_exemplars(version, [uuid.uuid4().hex for _ in first], [leaf] * len(first), near)
    ids = submit(runtime, *[CreativeSubmission(texts=[t]) for t in [*ROCKETS[2:], "Buy the new Honda Civic today"]])
    run(runtime, ids)  # one batch: its rockets are each other's traffic at arrival
    stamp = runtime.index.exemplars_stamp(version)
    assert stamp is not None and all(labeller.swept_fits[cid][0] == stamp for cid in ids)

    window_ids, vectors = runtime.index.traffic_window(version)
    rows = [window_ids.index(cid) for cid in ids]
    without = labeller.evidence(vectors[rows], [None] * len(ids), [()] * len(ids), [0] * len(ids),
                                label_scores=[labeller.swept_label_scores[cid] for cid in ids])
    fits = [labeller.trigger.fit(seen) for seen in without]
    assert len({round(f, 4) for f in fits}) > 1
    assert all(abs(labeller.swept_fits[cid][1] - fit) < 1e-5 for cid, fit in zip(ids, fits, strict=True))
    kept = {cid: labeller.swept_fits[cid] for cid in ids}
    sweep(runtime.db, labeller)
    assert all(labeller.swept_fits[cid] is kept[cid] for cid in ids)  # not worked out again


def test_a_worker_that_never_sweeps_keeps_nothing_for_the_sweep(settings: Any, db: Any, pitt_labels: Any) -> None:
    """CTAX_NOVELTY_SWEEP_EVERY=0: no sweep runs, so labelling keeps neither label scores nor fits for one; a
    sweep run by hand (as `ctax eval` runs it) searches for them and decides as ever."""
    rt = Runtime(settings.model_copy(update={"novelty_sweep_every": 0}), [LABEL_QUEUE], owns_index=True)
    rt.start()
    try:
        set_thresholds(rt, novelty_model=TRAFFIC_ONLY, new_label=-100.0)
        ids = submit(rt, *[CreativeSubmission(texts=[t]) for t in ROCKETS])
        run(rt, ids)
        labeller = rt.labeller()
        assert not labeller.keeps_for_sweep and labeller.reads_traffic
        assert labeller.swept_label_scores == {} and labeller.swept_fits == {}
        assert rt.index.traffic_window(labeller.version)[0] == ids  # the window itself is kept, as ever
        report = sweep(rt.db, labeller)
        assert report.swept + report.skipped == len(ids) and list(labeller.swept_label_scores) == ids
    finally:
        rt.stop()
        if rt._index is not None:
            rt._index.client.close()


def test_the_sweep_keeps_each_creatives_label_scores_while_it_stays_in_the_window(runtime: Runtime) -> None:
    """Only the traffic changes between sweeps: label scores are searched once per creative and labeller, and a
    sweep that reuses them decides exactly as one that searches again."""
    set_thresholds(runtime, novelty_model=TRAFFIC_ONLY, new_label=-100.0)
    ids = submit(runtime, *[CreativeSubmission(texts=[t]) for t in [*ROCKETS, "Buy the new Honda Civic today"]])
    run(runtime, ids)
    labeller = runtime.labeller()
    version = labeller.version

    def swept_scores() -> dict[str, Any]:
        return {cid: row.prediction["scores"] for cid, row in load(runtime, ids).items()}

    # Kept from arrival (the search labelling made), so that the first sweep does not search them again.
    window_ids, vectors = runtime.index.traffic_window(version)
    assert list(labeller.swept_label_scores) == window_ids == ids
    assert same_scores(labeller.label_scores(vectors, [None] * len(ids)), list(labeller.swept_label_scores.values()))
    sweep(runtime.db, labeller, refresh=True)
    kept = dict(labeller.swept_label_scores)
    assert set(kept) == set(window_ids) == set(ids)
    assert same_scores(labeller.label_scores(vectors, [None] * len(window_ids)), [kept[cid] for cid in window_ids])
    sweep(runtime.db, labeller, refresh=True)  # with the kept scores
    reused = swept_scores()
    labeller.swept_label_scores.clear()
    sweep(runtime.db, labeller, refresh=True)  # searching again
    assert swept_scores() == reused

    statements: list[str] = []
    listen = lambda *args: statements.append(args[2])  # noqa: E731  (conn, cursor, statement, ...)
    event.listen(runtime.db.engine, "before_cursor_execute", listen)
    try:
        sweep(runtime.db, labeller, refresh=True)
    finally:
        event.remove(runtime.db.engine, "before_cursor_execute", listen)
    # A fixed number of statements per chunk, whatever its size: no column the sweep reads is loaded row by row.
    assert len(statements) <= 8, statements

    runtime.index.prune_traffic(version, 3)  # the oldest leave the window: their scores are not kept
    sweep(runtime.db, labeller)
    assert set(labeller.swept_label_scores) == set(runtime.index.traffic_window(version)[0]) == set(ids[-3:])

    # Never more than a window's worth kept from arrival, where no sweep prunes them: the oldest go first.
    labeller.traffic_window = 4
    later = submit(runtime, CreativeSubmission(texts=["Fresh sourdough bread, baked daily at the corner bakery"]),
                   CreativeSubmission(texts=["Cheap flights to Lisbon and Porto this spring"]))
    run(runtime, later)
    assert list(labeller.swept_label_scores) == [*ids[-2:], *later]


def test_reviewed_creatives_are_left_alone_and_the_worker_sweeps_on_its_own(runtime: Runtime) -> None:
    set_thresholds(runtime, novelty_model=TRAFFIC_ONLY, new_label=-100.0)
    ids = submit(runtime, *[CreativeSubmission(texts=[t]) for t in ROCKETS])
    run(runtime, ids)  # one batch: each sees those of the batch encoded before it as traffic
    arrival = {cid: row.prediction["scores"]["fit"] for cid, row in load(runtime, ids).items()}
    like_it = sorted(row.prediction["scores"]["recent_like_it"] for row in load(runtime, ids).values())
    assert like_it == list(range(len(ids)))  # the n-th of the batch had the n - 1 before it as traffic
    with runtime.db.write() as session:  # a reviewer already confirmed the first one's label
        session.add(ReviewItem(creative_id=ids[0], status="decided", flag="low_confidence"))
    set_thresholds(runtime, new_label=max(arrival.values()) + 1.0)  # every rocket ad is "new" from now on

    runtime.settings = runtime.settings.model_copy(update={"novelty_sweep_every": 2})
    runtime.labelled_since_sweep = 0  # the six above were counted under the default of 1000
    [late] = submit(runtime, CreativeSubmission(texts=["Rocket holidays: orbit the Earth this summer"]))
    counts = run(runtime, [late])  # one more creative: not yet 2 since the last sweep
    assert "raised_by_sweep" not in counts
    [later] = submit(runtime, CreativeSubmission(texts=["Spaceflight tickets for tourists, launch in May"]))
    counts = run(runtime, [later])
    assert counts["raised_by_sweep"] == len(ids) - 1  # the reviewed one is not raised; the new two already are
    rows = load(runtime, ids)
    assert rows[ids[0]].flag != "new_label" and "fit_at_arrival" not in rows[ids[0]].prediction["scores"]
    assert all(rows[cid].flag == "new_label" for cid in ids[1:])


def test_a_sweep_re_decides_only_the_young_creatives_of_the_window_against_all_of_it(runtime: Runtime) -> None:
    """novelty_sweep_young: the creatives labelled most recently are re-decided, older ones are left as they are,
    and the young are judged against the whole window, older creatives included."""
    set_thresholds(runtime, novelty_model=TRAFFIC_ONLY, new_label=-100.0)
    rockets = submit(runtime, *[CreativeSubmission(texts=[t]) for t in ROCKETS])
    for cid in rockets:  # one at a time, so that the order of arrival is known
        run(runtime, [cid])
    arrival = {cid: row.prediction["scores"]["fit"] for cid, row in load(runtime, rockets).items()}
    like_it = load(runtime, [rockets[3]])[rockets[3]].prediction["scores"]["recent_like_it"]
    set_thresholds(runtime, new_label=max(arrival.values()) + 1.0)  # every rocket ad is "new" from now on

    # The worker sweeps after each creative, the two newest of the window.
    runtime.settings = runtime.settings.model_copy(update={"novelty_sweep_every": 1, "novelty_sweep_young": 2})
    runtime.labelled_since_sweep = 0
    [car] = submit(runtime, CreativeSubmission(texts=["Buy the new Honda Civic, a great family car"]))
    counts = run(runtime, [car])
    assert counts["raised_by_sweep"] == 1  # the last rocket ad; the car itself is new, so no longer raisable
    rows = load(runtime, rockets)
    assert [rows[cid].flag == "new_label" for cid in rockets] == [False] * 5 + [True]

    report = sweep(runtime.db, runtime.labeller(), young=4)
    # Of the four young, the last rocket ad and the car are new_label already: nothing left to raise in them.
    assert (report.window, report.swept, report.skipped, report.raised) == (7, 2, 2, 2)
    rows = load(runtime, rockets)
    assert [rows[cid].flag == "new_label" for cid in rockets] == [False] * 3 + [True] * 3
    assert not any("novelty_swept_at" in rows[cid].prediction for cid in rockets[:3])  # old: left as they were
    # Against all of the window: the fourth rocket ad now reads the three before it and the two after it.
    assert rows[rockets[3]].prediction["scores"]["fit"] < arrival[rockets[3]]
    assert rows[rockets[3]].prediction["scores"]["recent_like_it"] >= like_it + 2
    assert set(runtime.labeller().swept_label_scores) == {*rockets[3:], car}  # the old ones' are not kept

    assert sweep(runtime.db, runtime.labeller(), young=0).raised == 3  # 0: the whole window


def test_within_a_batch_creatives_are_judged_in_the_order_they_arrived(runtime: Runtime) -> None:
    """The earlier creatives of a batch are traffic for the later ones, in the order the message lists them (the
    order they arrived), not the database's order of their random ids."""
    set_thresholds(runtime, novelty_model=TRAFFIC_ONLY, new_label=-100.0)
    rockets = submit(runtime, *[CreativeSubmission(texts=[t]) for t in ROCKETS])
    for order in (rockets, list(reversed(rockets))):
        with runtime.db.write() as session:  # labelled afresh, with an empty traffic window each time
            for row in load(runtime, rockets).values():
                session.merge(row).status = CreativeStatus.QUEUED
        runtime.index.drop_version(runtime.labeller().version)
        runtime._labellers.clear()
        build(runtime.db, runtime.labeller().space, runtime.index, runtime.blobs, runtime.ocr)
        run(runtime, order)
        rows = load(runtime, rockets)
        fits = [rows[cid].prediction["scores"]["fit"] for cid in order]
        # The first to arrive saw no rocket ad before it (fit 0); every later one saw at least one like it.
        assert fits[0] == 0 and max(fits[1:]) < 0, fits


def test_the_members_of_a_group_are_raised_with_their_root_and_counted_on_its_one_item(runtime: Runtime) -> None:
    """Members are not in the traffic window: the sweep re-decides their root, and they carry its decision."""
    set_thresholds(runtime, novelty_model=TRAFFIC_ONLY, new_label=-100.0)
    rockets = submit(runtime, *[CreativeSubmission(texts=[t]) for t in ROCKETS])
    for cid in rockets:
        run(runtime, [cid])
    # The first ad again, in capitals: the same words, so a member of its group (not encoded, not in the window).
    [copy] = submit(runtime, CreativeSubmission(texts=[ROCKETS[0].upper()]))
    run(runtime, [copy])
    rows = load(runtime, [rockets[0], copy])
    assert rows[copy].duplicate_of == rockets[0]
    assert rows[copy].flag == rows[rockets[0]].flag != "new_label"

    set_thresholds(runtime, new_label=rows[rockets[0]].prediction["scores"]["fit"] - 1e-6)
    report = sweep(runtime.db, runtime.labeller())
    rows = load(runtime, [rockets[0], copy])
    root, member = rows[rockets[0]], rows[copy]
    assert root.flag == "new_label"
    assert (member.flag, member.decided_label_id) == ("new_label", None)
    assert report.members_raised == 1
    assert member.prediction == {**root.prediction, "duplicate_of": root.id}  # raised_by_sweep, fit_at_arrival...
    with runtime.db.read() as session:
        found = {item.creative_id: item for item in session.scalars(select(ReviewItem))}
    assert copy not in found  # still one item for the group: the root's, open, counting both
    assert (found[root.id].flag, found[root.id].status, found[root.id].members) == ("new_label", "open", 2)

    # Later sweeps bring the members' evidence up to date with the root's and raise nothing more.
    again = sweep(runtime.db, runtime.labeller(), refresh=True)
    assert again.raised == again.members_raised == 0 and again.members == 1
    rows = load(runtime, [rockets[0], copy])
    assert rows[copy].prediction == {**rows[rockets[0]].prediction, "duplicate_of": rockets[0]}


def test_the_labeller_counts_each_campaign_in_the_traffic_once_where_the_version_does(runtime: Runtime) -> None:
    """At arrival (the window and the earlier creatives of the batch) and in the sweep (the whole window), the
    traffic a version calibrated to count campaigns once reads is one creative per campaign; a version fitted
    before reads every neighbour, as it was fitted on."""
    creative, names, near = campaign_neighbourhood(dim=384)
    ids = {name: uuid.uuid4().hex for name in names}
    query_id = uuid.uuid4().hex
    labeller = runtime.labeller()
    labeller.index.record_traffic(labeller.version, [ids[n] for n in names[:2]], near[:2].astype(np.float32), 100)
    batch = np.vstack([near[2:], creative]).astype(np.float32)  # d and e arrive in the batch, then the creative
    batch_ids = [ids["d"], ids["e"], query_id]
    expected = {False: [0.95, 0.85, 0.8, 0.78], True: [0.8]}
    for once in (False, True):
        set_thresholds(runtime, campaigns_once=once, variant_similarity=0.9, novelty_model=TRAFFIC_ONLY)
        arrival = runtime.labeller().arrival_traffic(batch, batch_ids)
        traffic, windows = arrival.traffic, arrival.windows
        assert traffic[2] == pytest.approx(expected[once], abs=1e-5) and windows[2] == 4
    labeller.index.record_traffic(labeller.version, batch_ids, batch, 100)
    for once in (False, True):
        set_thresholds(runtime, campaigns_once=once, variant_similarity=0.9)
        [swept], [window] = runtime.labeller().full_window_traffic(creative.astype(np.float32), [query_id])
        assert swept == pytest.approx(expected[once], abs=1e-5) and window == 4


def test_traffic_read_with_the_windows_lonely_creatives_is_what_computing_every_pair_gives(runtime: Runtime) -> None:
    """Local mode skips the pairs of recent creatives with no fellow at the variant level in the window
    (VectorTable.social, kept in step as traffic is recorded); a server's search computes every pair. At arrival
    (the window and the batch's earlier creatives, which the window knows nothing of) and in the sweep, both
    read the same traffic: campaigns loose and tight around a few ads, loners, and a campaign whose one recent
    creative in the window is lonely there and has fellows in the batch."""
    rng = np.random.default_rng(7)
    set_thresholds(runtime, campaigns_once=True, variant_similarity=0.9, novelty_model=TRAFFIC_ONLY)
    labeller = runtime.labeller()
    index, version = labeller.index, labeller.version
    centres = rng.normal(size=(7, 384))

    def around(picks: np.ndarray, spread: np.ndarray) -> np.ndarray:
        near = centres[picks] + spread[:, None] * rng.normal(size=(len(picks), 384))
        return (near / np.linalg.norm(near, axis=1, keepdims=True)).astype(np.float32)

    window = np.vstack([around(rng.integers(0, 6, 150), rng.uniform(0.05, 1.5, 150)), around(np.full(1, 6),
                                                                                           np.full(1, 0.1))])
    # Three tight variants of the newcomer's ad, then looser ones that read them and the window's one as a pair.
    batch = np.vstack([around(np.full(3, 6), np.full(3, 0.1)), around(np.full(6, 6), np.full(6, 0.55)),
                       around(rng.integers(0, 6, 31), rng.uniform(0.05, 1.5, 31))])
    ids, batch_ids = [uuid.uuid4().hex for _ in window], [uuid.uuid4().hex for _ in batch]
    for start in (0, 100):  # two records: the window's loneliness kept in step, not only worked out once
        index.record_traffic(version, ids[start : start + 100], window[start : start + 100], 1000)
    [newcomer] = index.traffic_neighbours(version, window[-1:], 200, exclude=ids[-1:], pair_level=0.9)
    assert newcomer.lonely is not None and 0 < newcomer.lonely.sum() < 150  # some lonely, some not
    assert index.traffic_neighbours(version, batch[:1], 1, pair_level=0.9)[0].lonely.tolist() == [True]

    def both(read: Any) -> tuple[Any, Any]:
        local = read()
        index.is_server = True
        try:
            return local, read()
        finally:
            index.is_server = False

    local, server = both(lambda: (lambda a: (a.traffic, a.windows))(labeller.arrival_traffic(batch, batch_ids)))
    assert local[1] == server[1]
    assert all(a == pytest.approx(b, abs=1e-6) for a, b in zip(local[0], server[0], strict=True))
    # Campaigns were told apart: some neighbours dropped (the newcomer's fellows among them), not all.
    assert 0 < sum(len(traffic) for traffic in local[0]) < sum(min(len(ids) + n, 200) for n in range(len(batch)))
    index.record_traffic(version, batch_ids, batch, 1000)
    local, server = both(lambda: labeller.full_window_traffic(window[:60], ids[:60]))
    assert local[1] == server[1]
    assert all(a == pytest.approx(b, abs=1e-6) for a, b in zip(local[0], server[0], strict=True))


def test_a_campaigns_own_creatives_are_no_traffic_evidence_for_each_other(runtime: Runtime) -> None:
    # An ad server posts a campaign's variants with its campaign id: 200 of them are one advertiser's ad, not a
    # crowd of a kind the labelled data lacks. Another poster's creatives like them still count.
    set_thresholds(runtime, novelty_model=TRAFFIC_ONLY, new_label=-100.0)
    tagged = submit(runtime, *[CreativeSubmission(texts=[text], campaign="starvoyage-q3") for text in ROCKETS[:4]])
    run(runtime, tagged[:1])
    run(runtime, tagged[1:])  # the others in one batch: the earlier ones of a batch are traffic too
    rows = load(runtime, tagged)
    assert all(rows[cid].campaign == "starvoyage-q3" for cid in tagged)
    assert [rows[cid].prediction["scores"]["recent_like_it"] for cid in tagged] == [0, 0, 0, 0]
    # Another account's campaign of the same name is another campaign (two ad servers may number theirs alike).
    with runtime.db.write() as session:
        account = create_account(session, "another ad server", "partner")
        other = create_creative(session, runtime.blobs, runtime.settings,
                                CreativeSubmission(texts=[ROCKETS[4]], campaign="starvoyage-q3"), None,
                                account_id=account.id)[0].id
    run(runtime, [other])
    assert load(runtime, [other])[other].prediction["scores"]["recent_like_it"] >= 2

    # The sweep reads the window the same way: the campaign's creatives see the other poster's ad, not each other.
    report = sweep(runtime.db, runtime.labeller(), refresh=True)
    assert report.swept == 5
    rows = load(runtime, [*tagged, other])
    assert all(rows[cid].prediction["scores"]["recent_like_it"] <= 1 for cid in tagged)
    assert rows[other].prediction["scores"]["recent_like_it"] >= 2


def test_the_bound_searches_only_what_arrived_since_its_last_sweep_and_never_reads_less_than_the_window(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each young creative's traffic ceiling is kept from its arrival and its last sweep and brought up to date with
    the creatives written into the window since: equal to a search of the whole window while nothing has left it,
    and never below it after a prune (a creative that left still counts, which only re-decides more)."""
    from ctax.labelling.novelty import traffic_ceiling, traffic_k
    from ctax.labelling.sweep_bound import _traffic_ceilings

    # A score calibrated on a window of 5: k grows with the window (novelty.traffic_k), as between prunes.
    set_thresholds(runtime, novelty_model=TRAFFIC_ONLY, new_label=-100.0, campaigns_once=True, traffic_reference=5)
    others = ["Buy the new Honda Civic, a great family car", "Fresh sourdough bread at the corner bakery",
              "Cheap flights to Lisbon this spring", "Stop smoking today: call the quit line"]
    texts = [*others, *ROCKETS]
    first = submit(runtime, *[CreativeSubmission(texts=[t]) for t in texts[:5]])
    for cid in first:
        run(runtime, [cid])
    labeller = runtime.labeller()
    version, rows = labeller.version, load(runtime, first)
    searched: list[list[int]] = []  # per search, the mark each creative's search starts after
    search = runtime.index.traffic_similarities
    monkeypatch.setattr(runtime.index, "traffic_similarities", lambda *a, **kw: (
        searched.append(list(kw.get("since") or [])), search(*a, **kw))[1])

    def young() -> tuple[list[Any], np.ndarray]:
        ids, vectors = runtime.index.traffic_window(version)
        kept = [n for n, cid in enumerate(ids) if cid in rows]
        return [rows[ids[n]] for n in kept], vectors[kept]

    def from_scratch(chosen: list[Any], vectors: np.ndarray) -> np.ndarray:
        saved = dict(labeller.swept_ceilings)
        labeller.swept_ceilings.clear()
        try:
            return _traffic_ceilings(labeller, vectors, chosen)
        finally:
            labeller.swept_ceilings.clear()
            labeller.swept_ceilings.update(saved)

    # Kept from each creative's arrival search (a batch each here): only what was written after it is searched.
    chosen, vectors = young()
    assert set(labeller.swept_ceilings) == set(first[1:])  # the first arrived before there was a window
    at_first_sweep = _traffic_ceilings(labeller, vectors, chosen)
    [marks] = searched  # one search; only the first creative's reads the whole window
    assert len(marks) == len(first) and marks.count(0) == 1
    assert np.allclose(at_first_sweep, from_scratch(chosen, vectors))
    mark = runtime.index.traffic_last_write(version)
    for cid in submit(runtime, *[CreativeSubmission(texts=[t]) for t in texts[5:]]):
        run(runtime, [cid])
    searched.clear()
    chosen, vectors = young()
    brought_up = _traffic_ceilings(labeller, vectors, chosen)
    assert searched == [[mark] * len(first)]  # one search, of what was written since the last sweep
    assert np.allclose(brought_up, from_scratch(chosen, vectors))
    assert brought_up.max() > 0
    # Never below the old bound, one search of the whole window by similarity alone.
    window = labeller.full_window()
    raw = search(version, vectors, labeller.fetch_limit(window), [c.id for c in chosen], [None] * len(chosen))
    assert np.all(brought_up >= traffic_ceiling(raw, traffic_k(window, 5), labeller.trigger.thresholds.variant_level)
                  - 1e-6)

    # The oldest leave the window: the kept ceilings still count them, so they never read less than the window's.
    runtime.index.prune_traffic(version, 8)
    chosen, vectors = young()
    assert 0 < len(chosen) < len(first)
    after_prune = _traffic_ceilings(labeller, vectors, chosen)
    assert np.all(after_prune >= from_scratch(chosen, vectors) - 1e-6)
