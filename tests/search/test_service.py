"""The search service on a real version (MiniLM, Qdrant local mode, a migrated database): a creative's same-text
twin first with similarity ~1, its nearest labels, every filter, both filter strategies giving the same answer,
and bad queries refused with the field named."""

from __future__ import annotations

import datetime as dt

import pytest

from ctax.enums import CreativeStatus, Flag, ReviewStatus
from ctax.errors import InvalidInput, NotFound
from ctax.search.query import SearchQuery
from ctax.store.repos.search import SearchFilter
from tests.conftest import png_bytes
from tests.search.conftest import BURGER, CIVIC, DOG, SMOKE, World


def found(answer: dict, world: World) -> list[str]:
    by_id = {v: k for k, v in world.ids.items()}
    return [by_id[c["id"]] for c in answer["creatives"]]


def test_a_same_text_twin_is_found_first_with_similarity_one(world: World) -> None:
    answer = world.searcher().search(SearchQuery(text=CIVIC, limit=4, labels_limit=3))
    top = answer["creatives"][0]
    assert top["id"] == world.ids[CIVIC] and top["similarity"] > 0.999
    assert top["decided_label"] == {"id": world.labels["Product/Vehicles/Cars"], "path": "Product/Vehicles/Cars"}
    assert top["status"] == "labelled" and top["flag"] == "none" and top["text_excerpt"] == CIVIC
    assert top["image_url"] is None and top["account_id"] == world.accounts[0]
    assert [c["similarity"] for c in answer["creatives"]] == sorted(
        (c["similarity"] for c in answer["creatives"]), reverse=True)
    assert answer["labels"][0]["path"].startswith("Product/Vehicles") and len(answer["labels"]) == 3
    assert answer["indexed"] == {"creatives": 4, "total": 4}
    assert answer["query"] == {"kind": "text", "creative_id": None, "modalities_used": ["text"]}
    assert answer["model_version"] == "v1"


def test_a_creative_query_uses_its_stored_vector_and_never_returns_itself(world: World) -> None:
    answer = world.searcher().search(SearchQuery(creative_id=world.ids[DOG], limit=10))
    assert world.ids[DOG] not in [c["id"] for c in answer["creatives"]] and len(answer["creatives"]) == 3
    assert answer["query"]["kind"] == "creative"
    with pytest.raises(NotFound):
        world.searcher().search(SearchQuery(creative_id="0" * 32))


def test_a_creative_the_version_has_not_indexed_is_encoded_from_its_content(world: World) -> None:
    new = world.add("Adopt a rescue cat today and help stop animal cruelty", "PSA/Animal Rights")
    answer = world.searcher().search(SearchQuery(creative_id=new, limit=1))
    assert found(answer, world) == [DOG]
    assert answer["indexed"] == {"creatives": 4, "total": 5}  # visible: the version lacks one


@pytest.mark.parametrize("only_cap", [10_000, 0])  # ids handed to the index / over-fetch and filter
def test_filters(world: World, only_cap: int) -> None:
    a, b = world.accounts

    def search(**kwargs: object) -> list[str]:
        return found(world.searcher(only_cap=only_cap).search(
            SearchQuery(text=CIVIC, limit=10, filter=SearchFilter(**kwargs))), world)  # type: ignore[arg-type]

    assert set(search(account_id=a)) == {CIVIC, DOG}
    assert search(account_id=b) == [BURGER]
    assert search(label_id=world.labels["PSA"]) in ([DOG, SMOKE], [SMOKE, DOG])  # a subtree
    assert set(search(flags=[Flag.WRONG_LABEL, Flag.NEW_LABEL])) == {DOG, BURGER}
    assert search(statuses=[CreativeStatus.FAILED]) == []
    assert search(review_statuses=[ReviewStatus.OPEN]) == []  # no review items here
    day = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    assert set(search(created_after=day)) == {DOG, BURGER, SMOKE}
    assert set(search(created_before=day)) == {CIVIC}
    assert search(account_id=a, flags=[Flag.NONE]) == [CIVIC]


def test_a_duplicate_group_member_is_shown_and_filtered_with_its_groups_review_item(world: World) -> None:
    """A member has no review item of its own: its group's (the root's) is what a reviewer decides it through."""
    from ctax.store.models import Creative, ReviewItem

    with world.db.write() as session:
        session.get(Creative, world.ids[SMOKE]).duplicate_of = world.ids[DOG]  # type: ignore[union-attr]
        item = ReviewItem(creative_id=world.ids[DOG], flag=Flag.WRONG_LABEL, status=ReviewStatus.OPEN, members=2)
        session.add(item)
        session.flush()
        item_id = item.id
    answer = world.searcher().search(SearchQuery(text=SMOKE, limit=10,
                                                 filter=SearchFilter(review_statuses=[ReviewStatus.OPEN])))
    assert set(found(answer, world)) == {DOG, SMOKE}
    assert {c["review_item_id"] for c in answer["creatives"]} == {item_id}
    assert {c["review_status"] for c in answer["creatives"]} == {"open"}


def test_an_image_query_on_a_version_without_an_image_tower_reads_its_text(world: World) -> None:
    from ctax.embedding.ocr import open_reader

    reader, _ = open_reader("onnxruntime", 1)
    image = png_bytes("Stop smoking today", size=(520, 180))
    answer = world.searcher(ocr=reader).search(SearchQuery(image=image, limit=1))
    assert found(answer, world) == [SMOKE] and answer["query"]["modalities_used"] == ["ocr"]
    with pytest.raises(InvalidInput, match="nothing version v1 can encode"):
        world.searcher().search(SearchQuery(image=image, limit=1))  # no OCR either: nothing to encode


def test_the_query_travels_as_json_unchanged() -> None:
    query = SearchQuery(text="x", image=b"\x89PNG", limit=3, labels_limit=0, filter=SearchFilter(
        label_id=4, flags=[Flag.NEW_LABEL], statuses=[CreativeStatus.LABELLED], review_statuses=[ReviewStatus.OPEN],
        account_id=2, created_after=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)))
    assert SearchQuery.from_json(query.to_json()) == query
