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
