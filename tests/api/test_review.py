"""The review queue through the API: filters, claims, decisions that become labelled data, conflicts, bulk, undo."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from sqlalchemy import func, select, update

from ctax.dataset.labelled import current_annotations
from ctax.enums import Flag, vocabulary
from ctax.jobs import SYNC_INDEX
from ctax.store.models import Annotation, Label, OutboxJob, ReviewDecision, ReviewItem
from tests.conftest import headers

CARS = "Product/Vehicles/Cars"
TRAVEL = "Service/Travel/Vacations and Travel"
COFFEE = "Product/Food and Drink/Coffee and Tea"
SODA = "Product/Food and Drink/Soft Drinks"
RESTAURANTS = "Product/Food and Drink/Restaurants"
SNACKS = "Product/Food and Drink/Snacks"


@pytest.fixture
def queue(flag_creative) -> dict[str, int]:
    """Five flagged creatives of every kind, and one the trigger lets pass."""
    items = {
        "novel_far": flag_creative("Adopt a rescue dog today", {RESTAURANTS: 0.05, SNACKS: 0.04}),
        "novel_near": flag_creative("Puppy training classes", {RESTAURANTS: 0.2, SNACKS: 0.1}),
        "wrong": flag_creative("The new sedan, 300 horsepower", {CARS: 0.6, TRAVEL: 0.3}, asserted=TRAVEL),
        "wrong_mild": flag_creative("Road trip in a convertible", {CARS: 0.5, TRAVEL: 0.35}, asserted=TRAVEL),
        "unsure": flag_creative("Iced latte or a cola?", {COFFEE: 0.5, SODA: 0.495}),
    }
    assert flag_creative("A family SUV", {CARS: 0.7, TRAVEL: 0.3}) is None
    assert all(items.values())
    return items  # type: ignore[return-value]


def _ids(body: dict) -> list[int]:
    return [item["id"] for item in body["items"]]


def test_queue_lists_flagged_items_with_filters_and_pagination(client, keys, db, queue) -> None:
    h = headers(keys["reviewer"])
    everything = client.get("/v1/review", headers=h).json()
    assert everything["total"] == 5
    priorities = [item["priority"] for item in everything["items"]]
    assert priorities == sorted(priorities, reverse=True)  # most instructive first
    assert everything["items"][0]["id"] == queue["novel_far"]
    first = everything["items"][0]
    assert "fits no label" in first["priority_reason"] and first["flag_title"] == "Fits no existing label"
    assert first["creative"]["texts"] == ["Adopt a rescue dog today"] and first["top_k"]
    assert any("fits no existing label" in reason for reason in first["reasons"])

    assert set(_ids(client.get("/v1/review?flag=wrong_label", headers=h).json())) == {queue["wrong"],
                                                                                        queue["wrong_mild"]}
    food = client.get("/v1/review", params={"label": "Product/Food and Drink"}, headers=h).json()
    assert set(_ids(food)) == {queue["novel_far"], queue["novel_near"], queue["unsure"]}  # the subtree counts
    asserted = client.get("/v1/review", params={"asserted": TRAVEL}, headers=h).json()
    assert set(_ids(asserted)) == {queue["wrong"], queue["wrong_mild"]}
    high = client.get("/v1/review", params={"min_score": 0.45, "max_score": 0.55}, headers=h).json()
    assert set(_ids(high)) == {queue["wrong_mild"], queue["unsure"]}
    assert _ids(client.get("/v1/review", params={"q": "sedan"}, headers=h).json()) == [queue["wrong"]]

    with db.write() as session:
        session.execute(update(ReviewItem).where(ReviewItem.id == queue["wrong"])
                        .values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=2)))
    assert _ids(client.get("/v1/review?min_age_s=86400", headers=h).json()) == [queue["wrong"]]
    assert queue["wrong"] not in _ids(client.get("/v1/review?max_age_s=3600", headers=h).json())

    page1 = client.get("/v1/review?limit=2", headers=h).json()
    page2 = client.get(f"/v1/review?limit=2&offset={page1['next_offset']}", headers=h).json()
    page3 = client.get(f"/v1/review?limit=2&offset={page2['next_offset']}", headers=h).json()
    assert len(set(_ids(page1) + _ids(page2) + _ids(page3))) == 5 and page3["next_offset"] is None
    newest = client.get("/v1/review?order=newest", headers=h).json()
    assert _ids(newest)[0] == queue["unsure"]

    bad = client.get("/v1/review?label=Product/Nope", headers=h)
    assert bad.status_code == 422 and "unknown label" in bad.json()["message"]
    assert client.get("/v1/review?flag=bogus", headers=h).status_code == 422
    assert client.get("/v1/review?flag=none", headers=h).status_code == 422  # unflagged creatives are not reviewed
    assert client.get("/v1/review?status=bogus", headers=h).status_code == 422
    assert client.get("/v1/review?min_score=0.9&max_score=0.1", headers=h).status_code == 422
    assert client.get("/v1/review", headers=headers(keys["poster"])).status_code == 403


def test_claims_are_exclusive_and_expire(client, keys, db, queue) -> None:
    from ctax.store.keys import create_key

    with db.write() as session:
        _, other = create_key(session, "second reviewer", "reviewer")
    me, them = headers(keys["reviewer"]), headers(other)
    item = queue["wrong"]
    claimed = client.post(f"/v1/review/{item}/claim", headers=me)
    assert claimed.status_code == 200 and claimed.json()["claim"]["mine"] is True
    assert client.post(f"/v1/review/{item}/claim", headers=me).status_code == 200  # renewing your own claim

    refused = client.post(f"/v1/review/{item}/claim", headers=them)
    assert refused.status_code == 409 and "test reviewer" in refused.json()["message"]
    decided = client.post(f"/v1/review/{item}/decision", headers=them, json={"action": "confirm"})
    assert decided.status_code == 409 and "claimed by test reviewer" in decided.json()["message"]
    listing = client.get("/v1/review?available=true", headers=them).json()
    assert item not in _ids(listing)  # hidden from others while held
    assert client.get(f"/v1/review/{item}", headers=them).json()["claim"]["by"] == "test reviewer"

    with db.write() as session:  # the claim lapses
        session.execute(update(ReviewItem).where(ReviewItem.id == item)
                        .values(claim_expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    assert client.post(f"/v1/review/{item}/claim", headers=them).status_code == 200
    assert client.post(f"/v1/review/{item}/decision", headers=me, json={"action": "confirm"}).status_code == 409
    released = client.delete(f"/v1/review/{item}/claim", headers=them)
    assert released.json()["claim"] is None
    assert client.post(f"/v1/review/{item}/decision", headers=me, json={"action": "confirm"}).status_code == 200


def test_next_hands_each_reviewer_a_different_item_in_priority_order(client, keys, db, queue) -> None:
    from ctax.store.keys import create_key

    with db.write() as session:
        _, other = create_key(session, "second reviewer", "reviewer")
    mine = client.post("/v1/review/next", headers=headers(keys["reviewer"]), json={}).json()
    theirs = client.post("/v1/review/next", headers=headers(other), json={}).json()
    assert mine["item"]["id"] == queue["novel_far"] and theirs["item"]["id"] == queue["novel_near"]
    again = client.post("/v1/review/next", headers=headers(keys["reviewer"]), json={}).json()
    assert again["item"]["id"] == queue["novel_far"]  # the item you hold comes back until you decide or skip it
    skipped = client.post("/v1/review/next", headers=headers(keys["reviewer"]),
                          json={"exclude": [queue["novel_far"]], "flag": "wrong_label"}).json()
    assert skipped["item"]["id"] in (queue["wrong"], queue["wrong_mild"])
    nothing = client.post("/v1/review/next", headers=headers(keys["reviewer"]),
                          json={"q": "no creative says this"}).json()
    assert nothing["item"] is None and nothing["remaining"] == 0


def test_decisions_become_labelled_data_with_an_audit_trail(client, keys, db, queue, pitt_labels) -> None:
    h = headers(keys["reviewer"])
    with db.write() as session:
        session.query(OutboxJob).delete()
    confirm = client.post(f"/v1/review/{queue['wrong']}/decision", headers=h, json={"action": "confirm"})
    assert confirm.status_code == 200, confirm.text
    assert confirm.json()["decision"]["label"]["path"] == CARS and confirm.json()["item"]["status"] == "decided"
    relabel = client.post(f"/v1/review/{queue['unsure']}/decision", headers=h,
                          json={"action": "relabel", "label": COFFEE, "note": "it is a latte"})
    assert relabel.status_code == 200
    new = client.post(f"/v1/review/{queue['novel_far']}/decision", headers=h,
                      json={"action": "new_label", "label": "Service/Pets/Adoption"})
    assert new.status_code == 422 and "Service/Pets does not exist" in new.json()["message"]
    new = client.post(f"/v1/review/{queue['novel_far']}/decision", headers=h,
                      json={"action": "new_label", "label": "Product/Pets/Dog Adoption"})
    assert new.status_code == 200 and new.json()["label_created"] is True
    reject = client.post(f"/v1/review/{queue['novel_near']}/decision", headers=h,
                         json={"action": "reject", "note": "not an ad"})
    assert reject.status_code == 200

    with db.read() as session:
        created = session.scalar(select(Label).where(Label.path == "Product/Pets/Dog Adoption"))
        assert created is not None and created.source == "review" and created.status == "active"
        rows = {d.review_item_id: d for d in session.scalars(select(ReviewDecision))}
        assert rows[queue["wrong"]].reviewer_name == "test reviewer" and rows[queue["wrong"]].action == "confirm"
        previous = rows[queue["wrong"]].previous
        assert previous["item"]["status"] == "open" and previous["item"]["flag"] == "wrong_label"
        assert previous["creative"]["asserted_label_id"] == pitt_labels[TRAVEL]
        assert rows[queue["unsure"]].note == "it is a latte"
        annotations = {a.decision_id: a for a in session.scalars(select(Annotation))}
        assert annotations[rows[queue["novel_near"]].id].kind == "reject"
        assert annotations[rows[queue["novel_far"]].id].label_id == created.id
        truth = {item.creative_id: item.label_id for item in current_annotations(session)}
        creative_of = {i.id: i.creative_id for i in session.scalars(select(ReviewItem))}
        assert truth[creative_of[queue["wrong"]]] == pitt_labels[CARS]
        assert truth[creative_of[queue["unsure"]]] == pitt_labels[COFFEE]
        assert truth[creative_of[queue["novel_far"]]] == created.id
        assert creative_of[queue["novel_near"]] not in truth  # rejected: not training data
        assert session.scalar(select(func.count(OutboxJob.id)).where(OutboxJob.task == SYNC_INDEX)) >= 1

    history = client.get(f"/v1/review/{queue['unsure']}", headers=h).json()["history"]
    assert [(d["action"], d["label"]["path"]) for d in history] == [("relabel", COFFEE)]
    trail = client.get("/v1/review/decisions", headers=h).json()
    assert trail["total"] == 4 and trail["items"][0]["action"] == "reject"
    stats = client.get("/v1/review/stats", headers=h).json()
    assert stats["decided_by_me_24h"] == 4 and stats["open"] == 1


def test_a_relabel_supersedes_an_imported_label_for_training(client, keys, db, queue, pitt_labels) -> None:
    with db.write() as session:
        creative_id = session.get(ReviewItem, queue["wrong"]).creative_id
        session.add(Annotation(creative_id=creative_id, label_id=pitt_labels[TRAVEL], source="import"))
    client.post(f"/v1/review/{queue['wrong']}/decision", headers=headers(keys["reviewer"]),
                json={"action": "relabel", "label": str(pitt_labels[CARS])})
    with db.read() as session:
        assert {i.creative_id: i.label_id for i in current_annotations(session)}[creative_id] == pitt_labels[CARS]
        decision = session.scalar(select(ReviewDecision))
        assert decision.previous["creative"]["annotation"]["label_id"] == pitt_labels[TRAVEL]


def test_retries_are_answered_and_stale_decisions_refused(client, keys, db, queue, flag_creative) -> None:
    h = headers(keys["reviewer"])
    item = client.get(f"/v1/review/{queue['unsure']}", headers=h).json()
    body = {"action": "relabel", "label": SODA, "version": item["version"]}
    first = client.post(f"/v1/review/{item['id']}/decision", headers=h, json=body)
    retry = client.post(f"/v1/review/{item['id']}/decision", headers=h, json=body)
    assert first.status_code == retry.status_code == 200
    assert retry.json()["replayed"] is True and retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["decision"]["id"] == first.json()["decision"]["id"]
    stale = client.post(f"/v1/review/{item['id']}/decision", headers=h, json={**body, "label": COFFEE})
    assert stale.status_code == 409 and "already decided by test reviewer" in stale.json()["message"]
    admin = client.post(f"/v1/review/{item['id']}/decision", headers=headers(keys["admin"]), json=body)
    assert admin.status_code == 409  # the same decision by someone else is not a retry

    # The model re-flags an open item while a reviewer looks at it: the reviewer's view is stale.
    seen = client.get(f"/v1/review/{queue['wrong']}", headers=h).json()
    with db.read() as session:
        creative_id = session.get(ReviewItem, queue["wrong"]).creative_id
        text = "The new sedan, 300 horsepower"
    from ctax.store.models import Creative

    with db.write() as session:
        session.query(Creative).filter(Creative.id == creative_id).update({"texts": [text]})
    refreshed = _reflag(db, creative_id)
    assert refreshed > seen["version"]
    late = client.post(f"/v1/review/{queue['wrong']}/decision", headers=h,
                       json={"action": "confirm", "version": seen["version"]})
    assert late.status_code == 409 and "changed since you loaded it" in late.json()["message"]
    with db.read() as session:
        assert session.scalar(select(func.count(ReviewDecision.id))) == 1
        assert session.scalar(select(func.count(Annotation.id))) == 1


def _reflag(db, creative_id: str) -> int:
    """The worker labels the creative again (a retry) and the trigger still flags it, with a new suggestion."""
    from ctax.labelling.flagging import flag_for_review
    from ctax.labelling.trigger import Evidence, Thresholds, Trigger
    from ctax.taxonomy.catalog import active_taxonomy

    with db.write() as session:
        taxonomy = active_taxonomy(session)
        ids = {str(taxonomy.path(i)): i for i in taxonomy.nodes}
        decision = Trigger(taxonomy, Thresholds()).decide(
            Evidence({ids[CARS]: 0.62, ids[TRAVEL]: 0.2}, asserted_label_id=ids[TRAVEL]))
        item = flag_for_review(session, creative_id, decision, "v1-pretrained", ids[TRAVEL])
        session.flush()
        return item.version


@pytest.mark.parametrize("body,words", [
    ({"action": "relabel", "label": "Product/Nope"}, "unknown label"),
    ({"action": "relabel"}, "relabel needs label"),
    ({"action": "new_label", "label": "Nowhere/Land/Thing"}, "does not exist"),
    ({"action": "new_label", "label": CARS}, "already exists"),
    ({"action": "new_label", "label": "Pets"}, "under an existing parent"),
    ({"action": "new_label", "label": "Product//Empty"}, "empty name"),
    ({"action": "reject"}, "reason"),
    ({"action": "reject", "note": "   "}, "reason"),
    ({"action": "reject", "note": "spam", "label": CARS}, "reject takes no label"),
    ({"action": "confirm", "label": TRAVEL}, "send action relabel"),
    ({"action": "approve"}, "action"),
    ({"action": "confirm", "note": "x" * 3000}, "note has 3000 characters"),
])
def test_bad_decisions_are_refused_and_change_nothing(client, keys, db, queue, body, words) -> None:
    response = client.post(f"/v1/review/{queue['wrong']}/decision", headers=headers(keys["reviewer"]), json=body)
    assert response.status_code == 422, response.text
    assert words.lower() in response.json()["message"].lower()
    with db.read() as session:
        assert session.scalar(select(func.count(ReviewDecision.id))) == 0
        assert session.scalar(select(func.count(Annotation.id))) == 0
        assert session.get(ReviewItem, queue["wrong"]).status == "open"
        assert session.scalar(select(func.count(Label.id)).where(Label.source == "review")) == 0


def test_unknown_items_and_roles(client, keys, queue) -> None:
    h = headers(keys["reviewer"])
    assert client.post("/v1/review/999999/decision", headers=h, json={"action": "confirm"}).status_code == 404
    assert client.post("/v1/review/999999/claim", headers=h).status_code == 404
    poster = headers(keys["poster"])
    assert client.post(f"/v1/review/{queue['wrong']}/decision", headers=poster,
                       json={"action": "confirm"}).status_code == 403
    # Admin actions stay admin's: the taxonomy outside review, training, export.
    assert client.post("/v1/labels", headers=h, json={"path": "Product/Pets/Dog Toys"}).status_code == 403
    assert client.post("/v1/training/runs", headers=h, json={}).status_code == 403
    assert client.get("/v1/export", headers=h).status_code == 403
    assert client.get("/v1/review", headers={}).status_code == 401


def test_bulk_decisions_are_all_or_nothing_and_retry_safely(client, keys, db, queue) -> None:
    from ctax.store.keys import create_key

    with db.write() as session:
        _, other = create_key(session, "second reviewer", "reviewer")
    h = headers(keys["reviewer"])
    client.post(f"/v1/review/{queue['wrong_mild']}/claim", headers=headers(other))
    selection = [queue["wrong"], queue["wrong_mild"], queue["unsure"]]
    refused = client.post("/v1/review/bulk", headers=h, json={"ids": selection, "action": "relabel", "label": CARS})
    assert refused.status_code == 409
    assert [c["id"] for c in refused.json()["detail"]["conflicts"]] == [queue["wrong_mild"]]
    with db.read() as session:
        assert session.scalar(select(func.count(ReviewDecision.id))) == 0

    chosen = [queue["wrong"], queue["unsure"]]
    done = client.post("/v1/review/bulk", headers=h, json={"ids": chosen, "action": "relabel", "label": CARS})
    assert done.status_code == 200 and done.json()["decided"] == 2 and done.json()["replayed"] is False
    again = client.post("/v1/review/bulk", headers=h, json={"ids": chosen, "action": "relabel", "label": CARS})
    assert again.status_code == 200 and again.json()["replayed"] is True

    created = client.post("/v1/review/bulk", headers=h, json={
        "ids": [queue["novel_far"], queue["novel_near"]], "action": "new_label", "label": "Product/Pets/Dogs"})
    assert created.status_code == 200 and created.json()["label_created"]["path"] == "Product/Pets/Dogs"
    with db.read() as session:
        decisions = list(session.scalars(select(ReviewDecision)))
        assert len(decisions) == 4
        assert len({d.bulk_id for d in decisions}) == 2
        assert session.scalar(select(func.count(Label.id)).where(Label.path == "Product/Pets/Dogs")) == 1
    assert client.post("/v1/review/bulk", headers=h, json={"ids": [], "action": "confirm"}).status_code == 422


def test_undo_reopens_an_item_and_the_decision_stops_counting(client, keys, db, queue, pitt_labels) -> None:
    from ctax.store.keys import create_key

    with db.write() as session:
        _, other = create_key(session, "second reviewer", "reviewer")
    h = headers(keys["reviewer"])
    client.post(f"/v1/review/{queue['unsure']}/decision", headers=h, json={"action": "relabel", "label": SODA})
    assert client.post(f"/v1/review/{queue['unsure']}/reopen", headers=headers(other)).status_code == 403
    reopened = client.post(f"/v1/review/{queue['unsure']}/reopen", headers=h)
    assert reopened.status_code == 200
    assert reopened.json()["status"] == "open" and reopened.json()["claim"]["mine"] is True
    with db.read() as session:
        assert current_annotations(session) == []
        actions = [d.action for d in session.scalars(select(ReviewDecision).order_by(ReviewDecision.id))]
        assert actions == ["relabel", "reopen"]
    assert client.post(f"/v1/review/{queue['unsure']}/reopen", headers=h).status_code == 409
    client.post(f"/v1/review/{queue['unsure']}/decision", headers=h, json={"action": "relabel", "label": COFFEE})
    assert client.post(f"/v1/review/{queue['unsure']}/reopen", headers=headers(keys["admin"])).status_code == 200


def test_review_page_and_its_assets_are_served(client) -> None:
    page = client.get("/review")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/review/static/review.js?v=" in page.text and "Sign in" in page.text
    # The vocabulary travels as data (never executed), so the script hard-codes no flag, action or status.
    block = re.search(r'<script type="application/json" id="ctax-vocabulary">(.*?)</script>', page.text, re.S)
    assert block is not None
    carried = json.loads(block.group(1))
    assert {k: v for k, v in carried.items() if k in vocabulary()} == vocabulary()
    assert set(carried["flag_short"]) == {flag.value for flag in Flag if flag is not Flag.NONE}
    assert '<option value="low_confidence">Unsure</option>' in page.text
    script = client.get("/review/static/review.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "ctax-vocabulary" in script.text and 'decide("confirm"' not in script.text
    assert client.get("/review/static/review.css").status_code == 200
    assert client.get("/review/static/nothing.js").status_code == 404
    assert client.get("/review/static/..%2Fapp.py").status_code == 404
