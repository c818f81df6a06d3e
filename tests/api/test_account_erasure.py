"""DELETE /v1/accounts/{id}: an admin erases an account. Its keys are refused at once; the worker's steps
(creatives/erasure.py, run here as the ERASE_ACCOUNT task runs them) remove its creatives as DELETE
/v1/creatives/{id} removes one, a creative being labelled after its worker stores it, then its keys and the account.
Other accounts' creatives, and an image another account shows, stay."""

from __future__ import annotations

from sqlalchemy import func, select

from ctax.creatives.erasure import PAUSE_S, erase_step, resume
from ctax.jobs import ERASE_ACCOUNT, FORGET_CREATIVES
from ctax.store import outbox
from ctax.store.blobs import BlobStore
from ctax.store.models import Account, Annotation, ApiKey, Creative, OutboxJob, ReviewItem
from ctax.store.types import utcnow
from tests.api.test_creative_deletion import _post_image
from tests.api.test_duplicate_groups import _group
from tests.conftest import headers, png_bytes


def _jobs(db, task: str) -> list[list]:
    with db.read() as session:
        query = select(OutboxJob).where(OutboxJob.task == task).order_by(OutboxJob.id)
        return [list(job.args) for job in session.scalars(query)]


def test_an_erased_account_loses_its_keys_creatives_and_images_and_no_one_else_does(
        quiet_client, keys, db, settings, flag_creative) -> None:
    client = quiet_client  # the test flushes the outbox itself below
    admin, poster = headers(keys["admin"]), headers(keys["poster"])
    other = client.post("/v1/accounts", headers=admin, json={"name": "Other", "kind": "partner"}).json()["id"]
    other_key = client.post("/v1/api-keys", headers=admin,
                            json={"name": "other", "role": "poster", "account_id": other}).json()["key"]
    shared, own = png_bytes("SHARED"), png_bytes("OWN", colour=(200, 30, 30))
    mine = [_post_image(client, keys["poster"], "Pizza", shared), _post_image(client, keys["poster"], "Salad", own)]
    mine.append(client.post("/v1/creatives", headers=poster, json={"ocr_text": "Pasta"}).json()["id"])
    theirs = _post_image(client, other_key, "Pizza too", shared)
    item_id, root, members = _group(db, flag_creative)  # the group's root and one member are the account's
    confirmed = client.post(f"/v1/review/{item_id}/decision", headers=headers(keys["reviewer"]),
                            json={"action": "confirm"})
    assert confirmed.status_code == 200, confirmed.text
    with db.write() as session:
        for creative_id in (root, members[0]):
            session.get(Creative, creative_id).account_id = 1
        busy = session.get(Creative, mine[2])  # as a worker leaves a creative it is labelling
        busy.status, busy.claimed_at, busy.claimed_by = "processing", utcnow(), "worker-1"
        digests = {c.id: c.image_sha256 for c in session.scalars(select(Creative))}

    erasing = client.delete("/v1/accounts/1", headers=admin)
    assert erasing.status_code == 202, erasing.text
    assert erasing.json()["status"] == "erasing" and erasing.json()["creatives"]["total"] == 5
    refused = client.get("/v1/creatives", headers=poster)  # the key was cached by the posts above
    assert refused.status_code == 403 and "being erased" in refused.json()["message"]
    assert client.patch("/v1/accounts/1", headers=admin, json={"status": "active"}).status_code == 409
    made = client.post("/v1/api-keys", headers=admin, json={"name": "p2", "role": "poster", "account_id": 1})
    assert made.status_code == 409 and "is being erased" in made.json()["message"]
    assert [a["id"] for a in client.get("/v1/accounts?status=erasing", headers=admin).json()["items"]] == [1]
    assert _jobs(db, ERASE_ACCOUNT) == [[1, 0.0]]

    blobs = BlobStore(settings.blob_dir)
    steps = [erase_step(db, blobs, 1, settings.lease_s, step=2) for _ in range(4)]  # oldest first; the busy one waits
    assert [(s.removed, s.busy, s.done) for s in steps] == [(2, 0, False), (1, 1, False), (1, 1, False), (0, 1, False)]
    # Only the busy one left: the next step waits a moment, in the outbox (not sent before), not on the worker.
    with db.read() as session:
        paused = session.scalars(select(OutboxJob).where(OutboxJob.task == ERASE_ACCOUNT)
                                 .order_by(OutboxJob.id.desc())).first()
        assert paused is not None and paused.args == [1, 0.0] and paused.not_before is not None
        # Held back PAUSE_S from when it was queued (not from now: a loaded machine may take longer than that)
        assert abs((paused.not_before - paused.created_at).total_seconds() - PAUSE_S) < 0.5
        unsent = [job.id for job in session.scalars(select(OutboxJob).where(OutboxJob.sent_at.is_(None)))]
    sent: list[str] = []
    outbox.flush(db, lambda _task, _args, _queue, task_id: sent.append(task_id))
    assert sorted(sent) == sorted(outbox.task_id(job_id) for job_id in unsent if job_id != paused.id)
    with db.write() as session:  # its worker stored its result
        session.get(Creative, mine[2]).status = "labelled"
    assert erase_step(db, blobs, 1, settings.lease_s, step=2).removed == 1
    assert erase_step(db, blobs, 1, settings.lease_s, step=2).done

    assert client.get("/v1/accounts/1", headers=admin).status_code == 404
    assert client.get("/v1/creatives", headers=poster).status_code == 401  # the key is gone (cache forgot it)
    with db.read() as session:
        assert session.get(Account, 1) is None
        assert session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.account_id == 1)) == 0
        left = set(session.scalars(select(Creative.id)))
        item = session.get(ReviewItem, item_id)
        assert (item.creative_id, item.members) == (members[1], 1)  # the group went on with the other member
        # The member keeps the label the group's decision gave it; the account's creatives' labels went with them.
        assert {a.creative_id for a in session.scalars(select(Annotation))} == {members[1]}
    assert left == {theirs, members[1]}
    forgotten = {cid for (ids, *_) in _jobs(db, FORGET_CREATIVES) for cid in ids}
    assert forgotten == {*mine, root, members[0]}
    stored = {p.name for p in settings.blob_dir.rglob("*")}
    assert digests[theirs] in stored and digests[mine[1]] not in stored
    assert client.get(f"/v1/creatives/{theirs}/image", headers=headers(other_key)).content == shared
    assert client.delete("/v1/accounts/1", headers=admin).status_code == 404
    assert erase_step(db, blobs, 1, settings.lease_s).done  # a repeated message finds nothing to do


def test_erasing_is_not_a_status_to_set_and_only_admins_erase(client, keys) -> None:
    admin = headers(keys["admin"])
    refused = client.patch("/v1/accounts/1", headers=admin, json={"status": "erasing"})
    assert refused.status_code == 422 and "DELETE /v1/accounts/{id}" in refused.json()["message"]
    assert client.delete("/v1/accounts/1", headers=headers(keys["reviewer"])).status_code == 403
    assert client.delete("/v1/accounts/1", headers=headers(keys["poster"])).status_code == 403
    assert client.get("/v1/accounts/1", headers=admin).json()["status"] == "active"


def test_the_index_owners_start_queues_a_step_for_each_account_still_being_erased(client, keys, db) -> None:
    """A step fetched by a worker that was then killed is lost on the SQLite broker: the next start resumes."""
    admin = headers(keys["admin"])
    other = client.post("/v1/accounts", headers=admin, json={"name": "Other", "kind": "partner"}).json()["id"]
    assert client.delete("/v1/accounts/1", headers=admin).status_code == 202
    with db.write() as session:  # the step went out, and the worker that took it died
        for job in session.scalars(select(OutboxJob).where(OutboxJob.task == ERASE_ACCOUNT)):
            job.sent_at = utcnow()
    assert resume(db) == [1]  # not the other, active account
    with db.read() as session:
        waiting = session.scalars(select(OutboxJob).where(OutboxJob.task == ERASE_ACCOUNT,
                                                          OutboxJob.sent_at.is_(None))).all()
        assert [list(job.args) for job in waiting] == [[1, 0.0]]
    assert other != 1
