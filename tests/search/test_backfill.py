"""A new version's creatives collection filled from the stored creatives: chunk by chunk, skipping what it holds
(so a walk cut short resumes), with the decided label, account and creation time as payload."""

from __future__ import annotations

from ctax.enums import Flag
from ctax.index.points import point_id
from ctax.search.backfill import backfill, backfill_chunk
from ctax.search.query import SearchQuery
from tests.search.conftest import CIVIC, World


def test_a_new_version_is_backfilled_in_chunks_and_resumes(world: World) -> None:
    version = world.space.version
    for n in range(5):
        world.add(f"Fresh cookies and sweets number {n}, baked every morning", None, flag=Flag.NEW_LABEL)
    world.index.delete_creatives(version, list(world.ids.values()))  # as a new version starts: empty
    assert world.index.count_creatives(version) == 0
    assert world.searcher().search(SearchQuery(text=CIVIC))["indexed"] == {"creatives": 0, "total": 9}

    step = backfill_chunk(world.db, world.space, world.index, world.blobs, None, 4)
    assert (step.scanned, step.added, step.indexed, step.total, step.done) == (4, 4, 4, 9, False)
    # Cut short here; a fresh walk skips the four it holds and encodes the rest.
    assert backfill(world.db, world.space, world.index, world.blobs, chunk=4) == 5
    assert world.index.count_creatives(version) == 9
    assert backfill(world.db, world.space, world.index, world.blobs, chunk=4) == 0  # nothing left: no work

    answer = world.searcher().search(SearchQuery(text=CIVIC, limit=1))
    assert answer["creatives"][0]["id"] == world.ids[CIVIC] and answer["creatives"][0]["similarity"] > 0.999
    assert answer["indexed"] == {"creatives": 9, "total": 9}
    [point] = world.index.client.retrieve(world.index.creatives_collection(version),
                                          ids=[point_id(world.ids[CIVIC])], with_payload=True)
    assert point.payload == {"label_id": world.labels["Product/Vehicles/Cars"], "account_id": world.accounts[0],
                             "created_at": 1767225600.0}


def test_points_whose_creative_is_gone_are_forgotten_when_the_walk_ends(world: World) -> None:
    """As after a deletion whose FORGET_CREATIVES message a killed worker took with it: rows gone, points left."""
    from sqlalchemy import delete

    from ctax.store.models import Creative

    version = world.space.version
    gone = [world.ids[text] for text in list(world.ids)[:2]]
    with world.db.write() as session:
        session.execute(delete(Creative).where(Creative.id.in_(gone)))
    assert world.searcher().search(SearchQuery(text=CIVIC))["indexed"] == {"creatives": 4, "total": 2}

    step = backfill_chunk(world.db, world.space, world.index, world.blobs, None, 512)
    assert (step.added, step.indexed, step.total, step.done) == (0, 2, 2, True)
    assert world.index.indexed_creatives(version, list(world.ids.values())) == set(world.ids.values()) - set(gone)
    assert world.searcher().search(SearchQuery(text=CIVIC))["indexed"] == {"creatives": 2, "total": 2}
