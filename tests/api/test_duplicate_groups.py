"""Duplicate groups as the API shows them: one review item per group with its member count, a member's
`duplicate_of` and its group's item, a decision applied to every member (named in the audit trail), and an export
with one row per group."""

from __future__ import annotations

import json

from sqlalchemy import select

from ctax.enums import CreativeStatus
from ctax.labelling import duplicates
from ctax.store.models import Annotation, Creative
from tests.conftest import headers

CARS = "Product/Vehicles/Cars"
TRAVEL = "Service/Travel/Vacations and Travel"


def _group(db, flag_creative) -> tuple[int, str, list[str]]:
    """A flagged creative and two duplicates that joined its group, as the labelling worker leaves them."""
    item_id = flag_creative("A convertible for the road", {CARS: 0.6, TRAVEL: 0.3}, asserted=TRAVEL)
    assert item_id is not None
    with db.write() as session:
        root = session.scalar(select(Creative).where(Creative.texts == ["A convertible for the road"]))
        members = []
        for text in ("A convertible for the road!", "a convertible for the  road"):
            member = Creative(status=CreativeStatus.LABELLED, texts=[text], duplicate_of=root.id, flag=root.flag,
                              decided_label_id=root.decided_label_id, asserted_label_id=root.asserted_label_id,
                              model_version_id=root.model_version_id,
                              prediction={**(root.prediction or {}), "duplicate_of": root.id})
            session.add(member)
            session.flush()
            members.append(member.id)
        duplicates.join(session, dict.fromkeys(members, root.id))
        return item_id, root.id, members


def test_a_group_is_one_review_item_and_its_decision_applies_to_every_member(client, keys, db,
                                                                              flag_creative) -> None:
    item_id, root, members = _group(db, flag_creative)
    other = flag_creative("The new sedan, 300 horsepower", {CARS: 0.6, TRAVEL: 0.3}, asserted=TRAVEL)
    r = headers(keys["reviewer"])
    queue = {i["id"]: i for i in client.get("/v1/review", headers=r).json()["items"]}
    assert set(queue) == {item_id, other}  # the members opened no items of their own
    assert (queue[item_id]["creative"]["id"], queue[item_id]["members"], queue[other]["members"]) == (root, 3, 1)
    view = client.get(f"/v1/creatives/{members[0]}", headers=headers(keys["admin"])).json()
    assert view["duplicate_of"] == root
    assert view["review"] == {"id": item_id, "status": "open", "flag": "wrong_label", "members": 3, "creative_id": root}
    assert client.get(f"/v1/creatives/{root}", headers=headers(keys["admin"])).json()["duplicate_of"] is None

    decided = client.post(f"/v1/review/{item_id}/decision", headers=r, json={"action": "confirm"})
    assert decided.status_code == 200, decided.text
    assert decided.json()["item"]["members"] == 3
    with db.read() as session:
        labelled = {a.creative_id: a.label_id for a in session.scalars(select(Annotation))}
    assert labelled[root] == labelled[members[0]] == labelled[members[1]] is not None
    history = client.get(f"/v1/review/{item_id}", headers=r).json()["history"]
    assert history[0]["previous"]["group_members"] == sorted(members)

    admin = headers(keys["admin"])
    every = [json.loads(line) for line in client.get("/v1/export", headers=admin).text.splitlines()]
    assert sorted(row["creative_id"] for row in every) == sorted([root, *members])
    assert {row.get("duplicate_of") for row in every if row["creative_id"] != root} == {root}
    grouped = client.get("/v1/export?one_per_group=true&format=csv", headers=admin).text.splitlines()
    assert len(grouped) == 2  # the header and one row for the whole group
    bad = client.get("/v1/export?one_per_group=sometimes", headers=admin)
    assert bad.status_code == 422 and "one_per_group" in bad.text


def test_a_member_taken_out_of_its_group_leaves_the_count_the_listing_and_the_groups_decision(client, keys, db,
                                                                                             flag_creative) -> None:
    item_id, root, members = _group(db, flag_creative)
    r = headers(keys["reviewer"])
    shown = client.get(f"/v1/review/{item_id}", headers=r).json()
    assert shown["members"] == 3 and sorted(m["id"] for m in shown["group_members"]) == sorted(members)
    assert client.post(f"/v1/review/{item_id}/decision", headers=r, json={"action": "confirm"}).status_code == 200

    # The second copy is another ad after all: a reviewer takes it out of the decided group.
    split = client.post(f"/v1/review/{item_id}/members/{members[1]}/split", headers=r)
    assert split.status_code == 200, split.text
    group, own = split.json()["item"], split.json()["split"]
    assert (group["id"], group["members"], group["status"]) == (item_id, 2, "decided")
    assert (own["creative"]["id"], own["status"], own["flag"], own["members"]) == (members[1], "open", "wrong_label", 1)
    assert [m["id"] for m in client.get(f"/v1/review/{item_id}", headers=r).json()["group_members"]] == [members[0]]
    assert client.get("/v1/review?status=all", headers=r).json()["total"] == 2
    view = client.get(f"/v1/creatives/{members[1]}", headers=headers(keys["admin"])).json()
    assert view["duplicate_of"] is None and view["review"]["id"] == own["id"]
    assert view["split_from"] == root
    with db.read() as session:
        labelled = {a.creative_id for a in session.scalars(select(Annotation))}
    assert labelled == {root, members[0]}  # the group's decision no longer speaks for the one taken out
    assert client.get(f"/v1/review/{own['id']}", headers=r).json()["history"][0]["action"] == "split"

    # Not a member (any more, or ever), or no such item: 404 naming it, and the count stays.
    for creative_id, item in ((members[1], item_id), (root, item_id), ("nope", item_id), (members[0], 999999)):
        refused = client.post(f"/v1/review/{item}/members/{creative_id}/split", headers=r)
        assert refused.status_code == 404 and (creative_id in refused.text or str(item) in refused.text)
    assert client.get(f"/v1/review/{item_id}", headers=r).json()["members"] == 2
    assert client.post(f"/v1/review/{item_id}/members/{members[0]}/split",
                       headers=headers(keys["poster"])).status_code == 403

    # Undone and decided again, the group's decision applies to the members it still has.
    assert client.post(f"/v1/review/{item_id}/reopen", headers=r).status_code == 200
    again = client.post(f"/v1/review/{item_id}/decision", headers=r, json={"action": "confirm"})
    assert again.json()["decision"]["previous"]["group_members"] == [members[0]]
    assert again.json()["item"]["members"] == 2
