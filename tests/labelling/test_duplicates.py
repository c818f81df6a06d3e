"""What makes two creatives duplicates: the same words once case, punctuation, spacing and a campaign's changing
prices and dates are aside (too short a text says nothing), or a vector at least the threshold alike to an
already-labelled creative's or to an earlier one of the batch. The worker's side (groups, review items, decisions,
traffic, export) is tests/worker/test_duplicate_groups.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import ctax.index.collections
from ctax.index.connect import open_qdrant
from ctax.index.qdrant import LabelIndex
from ctax.labelling.duplicates import MIN_TEXT_WORDS, near_duplicates, normalised_text, represent_groups, text_key


def test_texts_that_differ_only_in_case_spacing_punctuation_prices_or_dates_share_a_key() -> None:
    ad = "Honda Civic 2024: now only $19,999 at your local dealer until May 31"
    same = ["HONDA civic 2024 - now only $18,499 at your local dealer, until June 30!",
            "honda   civic 2025: now only €21.500 at your local dealer until 1/7"]
    assert all(text_key([text]) == text_key([ad]) for text in same)
    assert text_key(["Honda Accord 2024: now only $19,999 at your local dealer until May 31"]) != text_key([ad])
    assert text_key([ad, "Free mats"]) != text_key([ad])  # every text segment counts
    assert text_key(["The new A4 estate, test drive it today"]) != text_key(["The new A6 estate, test drive it today"])
    assert normalised_text(["ＦＵＬＬ width", "  "]) == "full width"  # Unicode compatibility forms fold
    # Too few words to tell ads apart, or none at all: no key (such creatives group by image bytes or vector only).
    assert text_key(["Shop now"]) is None and text_key([]) is None and text_key(["  ", "$5"]) is None
    assert text_key([" ".join(["word"] * MIN_TEXT_WORDS)]) is not None


def test_near_duplicates_are_found_in_the_collection_and_among_earlier_creatives_of_the_batch(tmp_path: Path) -> None:
    index = LabelIndex(open_qdrant(None, tmp_path / "qdrant"), "t")
    rng = np.random.default_rng(3)
    labelled = rng.normal(size=(2, 16)).astype(np.float32)
    index.upsert_creatives("v", ["a" * 32, "b" * 32], labelled)
    noise = rng.normal(size=(4, 16)).astype(np.float32)
    fresh = rng.normal(size=16).astype(np.float32)
    batch = np.stack([labelled[0] + 0.01 * noise[0],  # a copy of a labelled creative
                      fresh,  # new
                      fresh + 0.01 * noise[1],  # a copy of the new one, later in the batch
                      rng.normal(size=16).astype(np.float32)])  # unlike anything
    ids = [f"{n:032x}" for n in range(4)]
    assert near_duplicates(index, "v", batch, ids, 0.99) == ["a" * 32, None, ids[1], None]
    assert near_duplicates(index, "v", batch, ids, 0.0) == [None] * 4  # 0: not looked for
    # A creative labelled again is not its own duplicate (its point is excluded).
    index.upsert_creatives("v", ids[:1], batch[:1])
    assert near_duplicates(index, "v", batch[:1], ids[:1], 0.99) == ["a" * 32]
    assert near_duplicates(index, "v", labelled[1:], ["b" * 32], 0.99) == [None]



def test_many_labelled_creatives_are_searched_through_cells_with_the_roots_the_exact_search_gives(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past CELLS_FROM labelled creatives the collection is read through coarse cells (index/cells.py)."""
    rng = np.random.default_rng(4)
    index = LabelIndex(open_qdrant(None, tmp_path / "qdrant"), "t")
    centres = rng.normal(size=(30, 32))
    labelled = (centres[rng.integers(0, 30, 3000)] + rng.normal(scale=0.5, size=(3000, 32))).astype(np.float32)
    names = [f"{k:032x}" for k in range(3000)]
    index.upsert_creatives("v", names, labelled)
    sources = rng.choice(3000, 20, replace=False)
    fresh = rng.normal(size=(10, 32)).astype(np.float32)
    batch = np.concatenate([labelled[sources] + 0.02 * rng.normal(size=(20, 32)).astype(np.float32), fresh,
                            fresh[:5] + 0.02 * rng.normal(size=(5, 32)).astype(np.float32)])
    ids = [f"{k:032x}" for k in range(10_000, 10_035)]
    roots = {}
    for cells_from in (10**9, 600):  # exact, then through the cells
        monkeypatch.setattr(ctax.index.collections, "CELLS_FROM", cells_from)
        roots[cells_from] = near_duplicates(index, "v", batch, ids, 0.95)
    assert index._tables[index.creatives_collection("v")].cells is not None
    assert roots[600] == roots[10**9]
    assert roots[600] == [names[s] for s in sources] + [None] * 10 + ids[20:25]


def test_a_group_formed_within_the_batch_is_rooted_at_its_median_member_by_fit() -> None:
    ids = [f"{n:032x}" for n in range(8)]
    stored = "s" * 32
    # Rows 0-3: one group formed in the batch (0 first); 4 and 5: a pair; 6 joins an already-labelled creative;
    # 7 stands alone.
    near = [None, ids[0], ids[0], ids[0], None, ids[4], stored, None]
    fits: list[float | None] = [-2.0, 1.0, 0.5, 3.0, 0.2, 0.9, -5.0, 0.0]
    assert represent_groups(near, ids, fits) == [
        ids[1], None, ids[1], ids[1],  # by fit: 0 (-2), 2 (0.5), 1 (1.0), 3 (3.0): the median is row 1
        ids[5], None,  # of two, the better-fitting
        stored, None]  # an already-labelled root stays; a lone creative is in no group
    # Without a learned fit to rank by, the first stays the root.
    assert represent_groups(near, ids, [None, *fits[1:]])[:4] == near[:4]
