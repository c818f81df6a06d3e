"""The discovery task on a real worker runtime: the active version's MiniLM encodes the open new_label creatives,
HDBSCAN clusters them, and proposals land in the database with members, parent and name."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from ctax.jobs import INDEX_QUEUE, LABEL_QUEUE, TRAIN_QUEUE
from ctax.store.models import Label, Proposal, ReviewItem
from ctax.worker.runtime import Runtime
from ctax.worker.tasks import discovery

FAR = {"Product/Food and Drink/Restaurants": 0.05, "Product/Pets/Pet Food": 0.1}
DOGS = [
    "Adopt a rescue dog from your local shelter",
    "Give a shelter puppy a forever home",
    "Rescue dogs need loving families, adopt today",
    "Visit the animal shelter and adopt a dog",
    "Our shelter has puppies waiting for adoption",
    "Adopt, don't shop: rescue a dog",
]
SOLAR = [
    "Solar panels on your roof cut your power bill",
    "Go solar: rooftop panels installed in a day",
    "Switch to solar energy and save on electricity",
    "Home solar panel installation, free quote",
    "Power your house with the sun: solar panels",
    "Solar roof panels with a 25 year warranty",
]
STRAYS = ["Learn to play the violin", "Knitting patterns for winter scarves", "Quantum physics lecture series"]


@pytest.fixture
def runtime(settings, db, pitt_labels) -> Iterator[Runtime]:
    rt = Runtime(settings, [LABEL_QUEUE, INDEX_QUEUE], owns_index=True)
    rt.start()
    yield rt
    rt.stop()


def test_discovery_turns_clusters_of_new_label_creatives_into_proposals(runtime, db, flag_creative,
                                                                        pitt_labels) -> None:
    for text in DOGS + SOLAR + STRAYS:
        flag_creative(text, FAR)

    # Discovery runs on the training worker: it must not need the index, which the labelling worker holds
    # (local mode would refuse a second process with IndexLocked).
    trainer = Runtime(runtime.settings, [TRAIN_QUEUE], owns_index=False)
    counts = discovery.run(trainer, {"min_cluster_size": 3})
    assert trainer._index is None
    version = runtime.labeller().version

    assert counts["items"] == 15 and counts["proposals"] == 2
    with db.read() as session:
        rows = list(session.scalars(select(Proposal).order_by(Proposal.id)))
        texts = {i.creative_id: i.creative.texts[0] for i in session.scalars(select(ReviewItem))}
        groups = [{texts[c] for c in row.member_ids} for row in rows]
        assert all(g <= set(DOGS) or g <= set(SOLAR) for g in groups)  # pure: strays stay out
        dogs = next(row for row in rows if {texts[c] for c in row.member_ids} <= set(DOGS))
        solar = next(row for row in rows if {texts[c] for c in row.member_ids} <= set(SOLAR))
        assert len(dogs.member_ids) >= 5 and len(solar.member_ids) >= 5
        assert any(t in dogs.terms for t in ("dog", "shelter", "rescue", "adopt")), dogs.terms
        assert "solar" in solar.terms[:2], solar.terms
        # Beside Pet Food, or beside Animal Rights under PSA: both are where a reviewer would look.
        assert session.get(Label, dogs.suggested_parent_id).path in ("Product/Pets", "PSA")
        assert dogs.model_version_id == version
        linked = {i.creative_id for i in session.scalars(select(ReviewItem).where(ReviewItem.proposal_id == dogs.id))}
        assert linked == set(dogs.member_ids)

    again = discovery.run(trainer, {"min_cluster_size": 3})
    assert again["updated"] == 2 and again["created"] == 0  # stable proposals across runs
