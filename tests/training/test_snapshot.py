"""How labelled creatives are split and sampled: by content, so that the same data splits the same way anywhere."""

from __future__ import annotations

import uuid

from ctax.dataset.labelled import LabelledCreative
from ctax.training.snapshot import split


def _creatives(ids: list[str]) -> list[LabelledCreative]:
    return [LabelledCreative(cid, n % 4, (f"ad text {n}", f"summary {n}"), None, None) for n, cid in enumerate(ids)]


def _content(items: list[LabelledCreative]) -> set[tuple[str, ...]]:
    return {item.texts for item in items}


def test_split_depends_on_content_and_seed_not_on_the_random_ids_of_an_import() -> None:
    first = _creatives([str(uuid.uuid4()) for _ in range(200)])
    # Another import of the same data: new ids, and the database returns it in another order.
    second = sorted(_creatives([str(uuid.uuid4()) for _ in range(200)]), key=lambda item: item.creative_id)
    train_a, validation_a = split(first, 0.2, seed=13)
    train_b, validation_b = split(second, 0.2, seed=13)
    # Same sets, and the training rows in the same order: training shuffles them with its own seed.
    assert [item.texts for item in validation_a] == [item.texts for item in validation_b]
    assert [item.texts for item in train_a] == [item.texts for item in train_b]
    assert len(validation_a) == 40 and not _content(train_a) & _content(validation_a)
    # Another seed draws another validation split, still stratified by label (10 of each label's 50).
    _, other = split(first, 0.2, seed=14)
    assert _content(other) != _content(validation_a)
    assert sorted(item.label_id for item in other) == sorted([0, 1, 2, 3] * 10)


def test_identical_creatives_are_still_ordered_by_id() -> None:
    twins = [LabelledCreative(cid, 1, ("same text",), None, None) for cid in ("b", "a")]
    assert sorted(twins, key=lambda item: item.draw_key(5))[0].creative_id == "a"
    image = LabelledCreative("c", 1, ("same text",), None, "f" * 64)
    assert image.draw_key(5)[:64] != twins[0].draw_key(5)[:64]


def test_calibration_sample_and_exemplars_are_the_same_creatives_in_one_order_in_two_imports(tmp_path, monkeypatch):
    import numpy as np

    from ctax.index.connect import open_qdrant
    from ctax.index.qdrant import LabelIndex
    from ctax.versions import lifecycle

    monkeypatch.setattr(lifecycle, "CALIBRATION_SAMPLE", 20)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(80, 4)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    drawn = []
    for run in range(2):
        index = LabelIndex(open_qdrant(None, tmp_path / f"qdrant{run}"), "t")
        index.ensure_version("v1", 4)
        index.upsert_labels("v1", [0, 1, 2, 3], np.eye(4, dtype=np.float32), [{"path": str(n)} for n in range(4)])
        annotations = _creatives([uuid.uuid4().hex for _ in range(80)])
        index.upsert_exemplars("v1", [item.creative_id for item in annotations],
                               [item.label_id for item in annotations], vectors)
        held, ref = lifecycle.held_from_index(index, "v1", annotations, seed=13, dim=4)
        text_of = {item.creative_id: item.texts for item in annotations}
        # The exemplars too, in the same order: the index returns them in the order of their random ids.
        drawn.append(([text_of[cid] for cid in held.creative_ids], [text_of[cid] for cid in ref.exemplar_ids],
                      ref.exemplar_vectors.tobytes()))
        assert len(held.creative_ids) == 20 and len(held.vectors) == 20 and len(ref.exemplar_ids) > 20
        index.client.close()
    assert drawn[0] == drawn[1]
