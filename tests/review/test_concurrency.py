"""Two reviewers at the same moment, on PostgreSQL (row locks, READ COMMITTED): one wins, nothing applies twice."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ctax.config import Settings
from ctax.enums import Action, QueueOrder, ReviewStatus
from ctax.errors import Conflict
from ctax.review import claims
from ctax.review import decisions as review_decisions
from ctax.review import queue as review
from ctax.store.keys import create_key
from ctax.store.models import Annotation, ApiKey, ReviewDecision, ReviewItem
from tests.conftest import make_settings

pytestmark = pytest.mark.postgres
RACERS = 6


@pytest.fixture
def settings(tmp_path: Path, postgres_url: str) -> Settings:
    return make_settings(tmp_path / "var", database_url=postgres_url)


@pytest.fixture
def reviewers(db) -> list[int]:
    with db.write() as session:
        return [create_key(session, f"reviewer {n}", "reviewer")[0].id for n in range(RACERS)]


def _race(db, reviewers: list[int], act) -> list[str]:
    """Every reviewer acts at once; returns what each got."""
    barrier = threading.Barrier(len(reviewers))
    results: list[str] = []
    lock = threading.Lock()

    def run(key_id: int) -> None:
        barrier.wait()
        try:
            with db.write() as session:
                act(session, session.get(ApiKey, key_id))
            outcome = "ok"
        except Conflict:
            outcome = "conflict"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=run, args=(key_id,)) for key_id in reviewers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_concurrent_claims_give_the_item_to_one_reviewer(db, reviewers, flag_creative) -> None:
    item_id = flag_creative("The new sedan", {"Product/Vehicles/Cars": 0.6, "Service/Travel/Vacations and Travel": 0.3},
                            asserted="Service/Travel/Vacations and Travel")
    results = _race(db, reviewers, lambda session, key: claims.claim(session, item_id, key, 600))
    assert sorted(results) == ["conflict"] * (RACERS - 1) + ["ok"]
    with db.read() as session:
        assert session.get(ReviewItem, item_id).claimed_by in reviewers


def test_concurrent_decisions_apply_exactly_once(db, reviewers, flag_creative) -> None:
    item_id = flag_creative("The new sedan", {"Product/Vehicles/Cars": 0.6, "Service/Travel/Vacations and Travel": 0.3},
                            asserted="Service/Travel/Vacations and Travel")
    request = review_decisions.DecisionRequest(Action.RELABEL, "Product/Vehicles/Cars")
    results = _race(db, reviewers, lambda session, key: review_decisions.decide(session, item_id, key, request))
    assert sorted(results) == ["conflict"] * (RACERS - 1) + ["ok"]
    with db.read() as session:
        assert session.scalar(select(func.count(ReviewDecision.id))) == 1
        assert session.scalar(select(func.count(Annotation.id))) == 1
        item = session.get(ReviewItem, item_id)
        assert item.status == ReviewStatus.DECIDED and item.version == 2


def test_queue_filters_run_on_postgresql(db, flag_creative, pitt_labels) -> None:
    """JSON texts, label subtrees and ages are queried differently by each backend."""
    sedan = flag_creative("The new sedan", {"Product/Vehicles/Cars": 0.6, "Service/Travel/Vacations and Travel": 0.3},
                          asserted="Service/Travel/Vacations and Travel")
    flag_creative("Adopt a dog", {"Product/Pets/Pet Food": 0.05})
    with db.read() as session:
        by_text, _ = review.list_items(session, review.QueueFilter(text="SEDAN"))
        by_label, _ = review.list_items(session, review.QueueFilter(label_id=pitt_labels["Product/Vehicles"]))
        recent, total = review.list_items(session, review.QueueFilter(max_age_s=3600, order=QueueOrder.SCORE_DESC))
    assert [i.id for i in by_text] == [sedan] and [i.id for i in by_label] == [sedan]
    assert total == 2 and recent[0].id == sedan


def test_of_reviewers_taking_one_member_out_of_its_group_at_once_one_does(db, reviewers, flag_creative) -> None:
    """The split's conditional UPDATE: the count drops once, one item is opened, the others are told it left."""
    from ctax.errors import NotFound
    from ctax.labelling import duplicates
    from ctax.review import groups as review_groups
    from ctax.store.models import Creative

    item_id = flag_creative("The new sedan", {"Product/Vehicles/Cars": 0.6, "Service/Travel/Vacations and Travel": 0.3},
                            asserted="Service/Travel/Vacations and Travel")
    assert item_id is not None
    with db.write() as session:
        root = session.get(ReviewItem, item_id).creative
        member = Creative(status="labelled", texts=["The new sedan!"], duplicate_of=root.id, flag=root.flag,
                          prediction={**(root.prediction or {}), "duplicate_of": root.id})
        session.add(member)
        session.flush()
        member_id = member.id
        duplicates.join(session, {member_id: root.id})
    barrier = threading.Barrier(len(reviewers))
    results: list[str] = []

    def run(key_id: int) -> None:
        barrier.wait()
        try:
            with db.write() as session:
                review_groups.split(session, item_id, member_id, session.get(ApiKey, key_id))
            results.append("ok")
        except NotFound:
            results.append("not a member")

    threads = [threading.Thread(target=run, args=(key_id,)) for key_id in reviewers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == ["not a member"] * (RACERS - 1) + ["ok"]
    with db.read() as session:
        assert session.get(ReviewItem, item_id).members == 1
        assert session.scalar(select(func.count(ReviewItem.id)).where(ReviewItem.creative_id == member_id)) == 1
