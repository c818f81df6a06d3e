"""New-label proposals through the API: listed, accepted (renamed, members chosen), rejected, re-discovered."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select

from ctax.dataset.labelled import current_annotations
from ctax.jobs import DISCOVER
from ctax.review import proposals
from ctax.review.discovery import ProposalDraft
from ctax.store.models import Annotation, Label, OutboxJob, Proposal, ReviewDecision, ReviewItem
from tests.conftest import headers

FAR = {"Product/Food and Drink/Restaurants": 0.05, "Product/Pets/Pet Food": 0.1}


def _draft(members: list[str], name: str, parent_id: int | None, terms: list[str]) -> ProposalDraft:
    return ProposalDraft(members, name, parent_id, 0.4, terms, 0.8, float(len(members)), np.zeros(4, np.float32))


@pytest.fixture
def dogs_and_rivers(db, flag_creative, pitt_labels) -> dict[str, list[str]]:
    """Two clusters of new_label creatives, stored as proposals the way the discovery task stores them."""
    ids: dict[str, list[int]] = {
        "dogs": [flag_creative(f"Adopt a rescue dog, shelter {n}", FAR) for n in range(4)],
        "rivers": [flag_creative(f"River cruise on the Danube {n}", FAR) for n in range(3)],
    }
    with db.write() as session:
        creatives = {i.id: i.creative_id for i in session.scalars(select(ReviewItem))}
        members = {k: [creatives[i] for i in v] for k, v in ids.items()}
        drafts = [
            _draft(members["dogs"], "Dog and Rescue", pitt_labels["Product/Pets"], ["dog", "rescue", "shelter"]),
            _draft(members["rivers"], "River and Cruise", pitt_labels["Service/Travel"], ["river", "cruise"]),
        ]
        report = proposals.store_drafts(session, drafts, "v1-pretrained")
        proposals.boost_dense(session, drafts)
        assert report.created == 2
    return members


def _proposal(client, key: str, name: str) -> dict:
    listing = client.get("/v1/proposals", headers=headers(key)).json()
    return next(p for p in listing["items"] if p["suggested_name"] == name)


def test_proposals_are_listed_with_members_parent_and_terms(client, keys, db, dogs_and_rivers) -> None:
    listing = client.get("/v1/proposals", headers=headers(keys["reviewer"])).json()
    assert listing["total"] == 2
    dogs = _proposal(client, keys["reviewer"], "Dog and Rescue")
    assert dogs["suggested_parent"]["path"] == "Product/Pets" and dogs["size"] == 4
    assert dogs["suggested_path"] == "Product/Pets/Dog and Rescue" and dogs["terms"][:2] == ["dog", "rescue"]
    assert dogs["members"][0]["texts"][0].startswith("Adopt a rescue dog")
    queue = client.get("/v1/review", params={"proposal_id": dogs["id"]}, headers=headers(keys["reviewer"])).json()
    assert queue["total"] == 4
    assert "one of 4 similar unlabelled creatives" in queue["items"][0]["priority_reason"]
    assert client.get("/v1/proposals", headers=headers(keys["poster"])).status_code == 403


def test_accepting_creates_the_label_and_labels_the_chosen_members(client, keys, db, dogs_and_rivers) -> None:
    h = headers(keys["reviewer"])
    dogs = _proposal(client, keys["reviewer"], "Dog and Rescue")
    keep = dogs_and_rivers["dogs"][:3]
    accepted = client.post(f"/v1/proposals/{dogs['id']}/accept", headers=h,
                           json={"name": "Pet Adoption", "members": keep})
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    assert body["label"]["path"] == "Product/Pets/Pet Adoption" and body["labelled"] == 3
    assert body["proposal"]["status"] == "accepted"
    with db.read() as session:
        label = session.scalar(select(Label).where(Label.path == "Product/Pets/Pet Adoption"))
        assert label.source == "proposal"
        truth = {i.creative_id: i.label_id for i in current_annotations(session)}
        assert all(truth[c] == label.id for c in keep)
        left_out = dogs_and_rivers["dogs"][3]
        assert left_out not in truth
        item = session.scalar(select(ReviewItem).where(ReviewItem.creative_id == left_out))
        assert item.status == "open" and item.proposal_id is None  # back in the queue on its own
        sources = {a.source for a in session.scalars(select(Annotation))}
        assert sources == {"proposal"}
        assert session.scalar(select(func.count(ReviewDecision.id)).where(ReviewDecision.action == "new_label")) == 3

    replay = client.post(f"/v1/proposals/{dogs['id']}/accept", headers=h, json={"name": "Pet Adoption"})
    assert replay.status_code == 200 and replay.json()["replayed"] is True
    other = client.post(f"/v1/proposals/{dogs['id']}/accept", headers=headers(keys["admin"]), json={})
    assert other.status_code == 409 and "already accepted" in other.json()["message"]
    with db.read() as session:
        assert session.scalar(select(func.count(Label.id)).where(Label.source == "proposal")) == 1


@pytest.mark.parametrize("body,words", [
    ({"name": "Pet Food"}, "already exists"),
    ({"parent": "Product/Nope"}, "unknown label"),
    ({"members": ["not-a-member"]}, "not a member"),
    ({"members": []}, "members is empty"),
    ({"name": "  "}, "name is empty"),
])
def test_bad_accepts_change_nothing(client, keys, db, dogs_and_rivers, body, words) -> None:
    dogs = _proposal(client, keys["reviewer"], "Dog and Rescue")
    response = client.post(f"/v1/proposals/{dogs['id']}/accept", headers=headers(keys["reviewer"]), json=body)
    assert response.status_code == 422 and words in response.json()["message"], response.text
    with db.read() as session:
        assert session.get(Proposal, dogs["id"]).status == "open"
        assert session.scalar(select(func.count(Annotation.id))) == 0
        assert session.scalar(select(func.count(Label.id)).where(Label.source == "proposal")) == 0


def test_rejecting_leaves_members_in_the_queue_and_rediscovery_respects_it(
    client, keys, db, dogs_and_rivers, pitt_labels
) -> None:
    h = headers(keys["reviewer"])
    rivers = _proposal(client, keys["reviewer"], "River and Cruise")
    rejected = client.post(f"/v1/proposals/{rivers['id']}/reject", headers=h)
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert client.post(f"/v1/proposals/{rivers['id']}/accept", headers=h, json={}).status_code == 409
    with db.read() as session:
        items = list(session.scalars(select(ReviewItem).where(ReviewItem.creative_id.in_(dogs_and_rivers["rivers"]))))
        assert all(i.status == "open" and i.proposal_id is None for i in items)

    dogs = _proposal(client, keys["reviewer"], "Dog and Rescue")
    with db.write() as session:  # discovery runs again: same clusters, one more dog
        report = proposals.store_drafts(session, [
            _draft(dogs_and_rivers["dogs"][:3], "Dog and Shelter", pitt_labels["Product/Pets"], ["dog"]),
            _draft(dogs_and_rivers["rivers"], "River and Cruise", pitt_labels["Service/Travel"], ["river"]),
        ], "v1-pretrained")
    assert (report.updated, report.created, report.dropped_as_rejected) == (1, 0, 1)
    listing = client.get("/v1/proposals", headers=h).json()
    assert [(p["id"], p["suggested_name"]) for p in listing["items"]] == [(dogs["id"], "Dog and Shelter")]


def test_discovery_can_be_requested(client, keys, db) -> None:
    response = client.post("/v1/proposals/discover", headers=headers(keys["reviewer"]), json={"min_cluster_size": 3})
    assert response.status_code == 202
    with db.read() as session:
        job = session.get(OutboxJob, response.json()["job_id"])
        assert job.task == DISCOVER and job.args == [{"reason": "requested", "min_cluster_size": 3}]
    assert client.post("/v1/proposals/discover", headers=headers(keys["reviewer"]),
                       json={"min_cluster_size": 1}).status_code == 422


def test_enough_new_label_flags_request_discovery_by_themselves(db, flag_creative) -> None:
    from ctax.labelling.flagging import AUTO_DISCOVER_EVERY, AUTO_DISCOVER_MIN_INTERVAL

    def jobs() -> int:
        with db.read() as session:
            return session.scalar(select(func.count(OutboxJob.id)).where(OutboxJob.task == DISCOVER))

    for n in range(AUTO_DISCOVER_EVERY - 1):
        flag_creative(f"Something new {n}", FAR)
    assert jobs() == 0
    flag_creative("One more new thing", FAR)
    assert jobs() == 1
    for n in range(AUTO_DISCOVER_EVERY):
        flag_creative(f"And another {n}", FAR)
    assert jobs() == 1  # a flood of flags asks at most once per AUTO_DISCOVER_MIN_INTERVAL
    with db.write() as session:  # ...which has passed since the last request
        last = session.scalar(select(OutboxJob).where(OutboxJob.task == DISCOVER))
        last.created_at -= AUTO_DISCOVER_MIN_INTERVAL
    flag_creative("Yet another", FAR)
    assert jobs() == 2


def test_a_second_proposal_of_the_same_missing_label_is_accepted_into_it(client, keys, db,
                                                                         dogs_and_rivers) -> None:
    h = headers(keys["reviewer"])
    dogs = _proposal(client, keys["reviewer"], "Dog and Rescue")
    rivers = _proposal(client, keys["reviewer"], "River and Cruise")
    client.post(f"/v1/proposals/{dogs['id']}/accept", headers=h, json={"name": "Pet Adoption"})
    unknown = client.post(f"/v1/proposals/{rivers['id']}/accept", headers=h, json={"into": "Product/Pets/Nope"})
    assert unknown.status_code == 422 and "unknown label" in unknown.json()["message"]
    merged = client.post(f"/v1/proposals/{rivers['id']}/accept", headers=h, json={"into": "Product/Pets/Pet Adoption"})
    assert merged.status_code == 200 and merged.json()["labelled"] == 3
    with db.read() as session:
        label = session.scalar(select(Label).where(Label.path == "Product/Pets/Pet Adoption"))
        assert session.scalar(select(func.count(Label.id)).where(Label.source == "proposal")) == 1
        truth = {i.creative_id: i.label_id for i in current_annotations(session)}
        assert all(truth[c] == label.id for c in dogs_and_rivers["rivers"])
        assert session.get(Proposal, rivers["id"]).created_label_id == label.id
        actions = {d.action for d in session.scalars(select(ReviewDecision).where(
            ReviewDecision.creative_id.in_(dogs_and_rivers["rivers"])))}
        assert actions == {"relabel"}
