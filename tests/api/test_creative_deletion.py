"""DELETE /v1/creatives/{id}: its poster's account or an admin deletes a creative; it is gone from every answer and
from labelled data at once, its image with it (unless another creative shows it), and the index is told to forget
it. A group's root hands its group on; a creative being labelled right now is refused for that moment."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select

from ctax.jobs import FORGET_CREATIVES, SYNC_INDEX
from ctax.store.models import Annotation, Creative, OutboxJob, ReviewDecision, ReviewItem
from ctax.store.types import utcnow
from tests.api.test_duplicate_groups import _group
from tests.conftest import headers, png_bytes

CARS = "Product/Vehicles/Cars"
TRAVEL = "Service/Travel/Vacations and Travel"


def _post_image(client, key: str, text: str, image: bytes) -> str:
    answer = client.post("/v1/creatives", headers=headers(key), data={"ocr_text": text},
                         files={"image": ("ad.png", image, "image/png")})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def _jobs(db, task: str) -> list[list]:
    with db.read() as session:
        return [list(job.args) for job in session.scalars(select(OutboxJob).where(OutboxJob.task == task))]


def test_a_poster_deletes_its_creative_and_its_image_and_the_index_is_told(client, keys, db, settings) -> None:
    poster = keys["poster"]
    shared, own = png_bytes("SHARED"), png_bytes("OWN", colour=(200, 30, 30))
    first, second = _post_image(client, poster, "Pizza", shared), _post_image(client, poster, "Pasta", shared)
    third = _post_image(client, poster, "Salad", own)
    with db.read() as session:
        digests = {c.id: c.image_sha256 for c in session.scalars(select(Creative))}
    blob = settings.blob_dir

    deleted = client.delete(f"/v1/creatives/{first}", headers=headers(poster))
    assert deleted.status_code == 200 and deleted.json() == {"id": first, "deleted": True, "group_handed_to": None}
    assert client.get(f"/v1/creatives/{first}", headers=headers(poster)).status_code == 404
    assert [i["id"] for i in client.get("/v1/creatives", headers=headers(poster)).json()["items"]] == [third, second]
    assert any(p.name == digests[second] for p in blob.rglob("*"))  # the other creative still shows that image
    assert client.get(f"/v1/creatives/{second}/image", headers=headers(poster)).content == shared
    assert client.delete(f"/v1/creatives/{third}", headers=headers(poster)).status_code == 200
    assert not any(p.name == digests[third] for p in blob.rglob("*"))
    forgotten = _jobs(db, FORGET_CREATIVES)  # each job has one argument: the ids
    assert [[first]] in forgotten and [[third]] in forgotten
    again = client.delete(f"/v1/creatives/{first}", headers=headers(poster))
    assert again.status_code == 404 and again.json()["error"] == "not_found"


def test_only_its_account_or_an_admin_deletes_it(client, keys, db) -> None:
    admin = headers(keys["admin"])
    other = client.post("/v1/accounts", headers=admin, json={"name": "Other", "kind": "partner"}).json()["id"]
    other_key = client.post("/v1/api-keys", headers=admin,
                            json={"name": "other", "role": "poster", "account_id": other}).json()["key"]
    mine = client.post("/v1/creatives", headers=headers(keys["poster"]), json={"ocr_text": "Pizza"}).json()["id"]
    assert client.delete(f"/v1/creatives/{mine}", headers=headers(other_key)).status_code == 404
    refused = client.delete(f"/v1/creatives/{mine}", headers=headers(keys["reviewer"]))
    assert refused.status_code == 403 and "reviewers do not delete" in refused.json()["message"]
    with db.read() as session:
        assert session.get(Creative, mine) is not None
    assert client.delete(f"/v1/creatives/{mine}", headers=admin).status_code == 200


def test_a_creative_being_labelled_is_refused_for_that_moment_and_a_dead_workers_claim_is_not(client, keys,
                                                                                              db, settings) -> None:
    poster = headers(keys["poster"])
    busy = client.post("/v1/creatives", headers=poster, json={"ocr_text": "Pizza"}).json()["id"]
    with db.write() as session:  # as a worker leaves a creative it claimed
        creative = session.get(Creative, busy)
        creative.status, creative.claimed_at, creative.claimed_by = "processing", utcnow(), "worker-1"
    refused = client.delete(f"/v1/creatives/{busy}", headers=poster)
    assert refused.status_code == 409 and "being labelled right now" in refused.json()["message"]
    with db.write() as session:  # the worker died: its lease ran out
        session.get(Creative, busy).claimed_at = utcnow() - dt.timedelta(seconds=settings.lease_s + 1)
    assert client.delete(f"/v1/creatives/{busy}", headers=poster).status_code == 200


def test_labelled_data_goes_with_it_and_a_groups_root_hands_the_group_to_its_earliest_member(
        client, keys, db, flag_creative) -> None:
    item_id, root, members = _group(db, flag_creative)
    r, admin = headers(keys["reviewer"]), headers(keys["admin"])
    assert client.post(f"/v1/review/{item_id}/decision", headers=r, json={"action": "confirm"}).status_code == 200
    with db.read() as session:
        heir = session.scalar(select(Creative.id).where(Creative.duplicate_of == root)
                              .order_by(Creative.labelled_at, Creative.id).limit(1))
    with db.write() as session:  # whatever sync the decision asked for has gone out
        for job in session.scalars(select(OutboxJob).where(OutboxJob.task == SYNC_INDEX)):
            job.sent_at = utcnow()

    deleted = client.delete(f"/v1/creatives/{root}", headers=admin)
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["group_handed_to"] == heir
    rest = next(m for m in members if m != heir)
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Annotation).where(Annotation.creative_id == root)) == 0
        item = session.get(ReviewItem, item_id)
        assert (item.creative_id, item.members) == (heir, 2)  # the group's item stands for what is left
        assert {d.creative_id for d in session.scalars(select(ReviewDecision))} == {heir}
        assert session.get(Creative, rest).duplicate_of == heir and session.get(Creative, heir).duplicate_of is None
        kept = {a.creative_id for a in session.scalars(select(Annotation))}
    assert kept == set(members)  # the members keep the labels the group's decision gave them
    with db.read() as session:  # the exemplars follow: an index sync waits to be sent (one covers many changes)
        assert session.scalar(select(OutboxJob).where(OutboxJob.task == SYNC_INDEX, OutboxJob.sent_at.is_(None)))
    view = client.get(f"/v1/review/{item_id}", headers=r).json()
    assert view["creative"]["id"] == heir and view["members"] == 2

    assert client.delete(f"/v1/creatives/{rest}", headers=admin).status_code == 200  # a member: one fewer
    with db.read() as session:
        assert session.get(ReviewItem, item_id).members == 1
    assert client.delete(f"/v1/creatives/{heir}", headers=admin).status_code == 200  # the last: the item goes
    with db.read() as session:
        assert session.get(ReviewItem, item_id) is None
        assert session.scalar(select(func.count()).select_from(ReviewDecision)) == 0
