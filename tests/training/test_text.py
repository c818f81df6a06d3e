"""The text tower's training rows: what each row pairs, per recipe. No model is loaded here."""

from __future__ import annotations

import pytest

from ctax.training.text_data import build_training_datasets, check_trainable
from ctax.training.text_recipe import BACKGROUND_PHRASE, TextTrainingRecipe

PHRASES = {path: f"phrase of {path}" for path in ("A", "A/x", "A/y", "A/z", "B", "B/u", "B/v", "B/w")}
PARENTS = {path: (path.split("/")[0] if "/" in path else None) for path in PHRASES}
LEAVES = [path for path in PHRASES if "/" in path]
EXAMPLES = [([f"{leaf} text {i}", f"{leaf} other text {i}"], leaf) for leaf in LEAVES for i in range(12)]
LABEL_OF_PHRASE = {phrase: path for path, phrase in PHRASES.items()}


def _truth(anchor: str) -> str:
    return anchor.split(" ")[0]


def test_default_rows_pair_a_text_with_its_label_a_sibling_and_the_parent() -> None:
    datasets = build_training_datasets(EXAMPLES, PHRASES, PARENTS, epochs=2, seed=3)
    assert list(datasets) == ["pairs"]
    rows = list(datasets["pairs"])
    assert len(rows) == 2 * len(EXAMPLES)  # one text per creative per pass
    for row in rows:
        truth = _truth(row["anchor"])
        assert row["positive"] == PHRASES[truth]
        sibling, parent = LABEL_OF_PHRASE[row["negative_1"]], LABEL_OF_PHRASE[row["negative_2"]]
        assert sibling != truth and sibling.split("/")[0] == truth.split("/")[0] and "/" in sibling
        assert parent == PARENTS[truth]
    # Passes cycle through a creative's texts.
    assert {row["anchor"] for row in rows} >= {"A/x text 0", "A/x other text 0"}


def test_open_set_rows_leave_each_leaf_out_once_per_pass_and_never_name_it_in_its_chunk() -> None:
    recipe = TextTrainingRecipe(open_set="background", leave_out=0.34)
    datasets = build_training_datasets(EXAMPLES, PHRASES, PARENTS, epochs=2, seed=5, recipe=recipe)
    assert sorted(datasets) == [f"pairs-e{e}-c{c}" for e in range(2) for c in range(3)]
    assert sum(len(dataset) for dataset in datasets.values()) == 2 * len(EXAMPLES)
    for epoch in range(2):
        left_out_by_chunk = []
        for chunk in range(3):
            rows = list(datasets[f"pairs-e{epoch}-c{chunk}"])
            left_out = {_truth(row["anchor"]) for row in rows if row["positive"] == BACKGROUND_PHRASE}
            left_out_by_chunk.append(left_out)
            named = {LABEL_OF_PHRASE[row[column]] for row in rows
                     for column in ("positive", "negative_1", "negative_2") if row[column] != BACKGROUND_PHRASE}
            # A left-out label's phrase in its own chunk would be an in-batch negative for its creatives.
            assert not named & left_out
            for row in rows:
                truth = _truth(row["anchor"])
                expected = BACKGROUND_PHRASE if truth in left_out else PHRASES[truth]
                assert row["positive"] == expected
                assert LABEL_OF_PHRASE[row["negative_2"]] == PARENTS[truth]
        # Every leaf is left out in exactly one chunk of the pass, and each chunk keeps most leaves in.
        assert sorted(leaf for group in left_out_by_chunk for leaf in group) == sorted(LEAVES)
        assert all(1 <= len(group) <= 3 for group in left_out_by_chunk)


def test_parent_open_set_rows_train_a_left_out_leaf_towards_its_parent_and_away_from_known_siblings() -> None:
    recipe = TextTrainingRecipe(open_set="parent", leave_out=0.34)
    datasets = build_training_datasets(EXAMPLES, PHRASES, PARENTS, epochs=1, seed=7, recipe=recipe)
    assert sorted(datasets) == [f"pairs-e0-c{c}" for c in range(3)]
    left_out_seen: list[str] = []
    for dataset in datasets.values():
        rows = list(dataset)
        left_out = {_truth(row["anchor"]) for row in rows if row["positive"] != PHRASES[_truth(row["anchor"])]}
        left_out_seen.extend(left_out)
        named = {LABEL_OF_PHRASE[row[column]] for row in rows for column in ("positive", "negative_1", "negative_2")}
        assert not named & left_out
        for row in rows:
            truth = _truth(row["anchor"])
            first, second = LABEL_OF_PHRASE[row["negative_1"]], LABEL_OF_PHRASE[row["negative_2"]]
            if truth in left_out:
                # The parent is the positive; a known sibling must lose to it, and the parent is no negative.
                assert row["positive"] == PHRASES[PARENTS[truth]]
                assert PARENTS[first] == PARENTS[truth] and first not in left_out
                assert "/" in second and second != truth and second not in left_out
            else:
                assert row["positive"] == PHRASES[truth]
                assert second == PARENTS[truth]
    assert sorted(left_out_seen) == sorted(LEAVES)


def test_too_few_examples_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 2 labels"):
        check_trainable([(["one"], "A/x"), (["two"], "A/x"), (["three"], "A/y")], PHRASES)
    with pytest.raises(ValueError, match="no label phrase"):
        check_trainable([(["one"], "C/q")], PHRASES)


def test_ocr_noise_adds_an_ocr_like_reading_of_a_share_of_the_creatives_paired_with_their_label() -> None:
    examples = [([f"I should visit {leaf} because the {leaf} sale ends {i} May at the Shop"], leaf)
                for leaf in LEAVES for i in range(12)]
    clean = list(build_training_datasets(examples, PHRASES, PARENTS, epochs=1, seed=3)["pairs"])
    rows = list(build_training_datasets(examples, PHRASES, PARENTS, epochs=1, seed=3,
                                        recipe=TextTrainingRecipe(ocr_noise=1.0))["pairs"])
    assert rows[: len(clean)] == clean  # the clean rows come first, as without the option
    readings = rows[len(clean):]
    assert len(readings) == len(examples)  # every creative, at share 1.0
    texts = {text for example_texts, _ in examples for text in example_texts}
    for row, (_, label) in zip(readings, examples, strict=True):
        assert row["anchor"] not in texts and row["anchor"].strip()
        assert row["positive"] == PHRASES[label]
        assert LABEL_OF_PHRASE[row["negative_2"]] == PARENTS[label]
    # OCR-like: the summary's framing gone, short broken lines.
    assert not any("I should" in row["anchor"] for row in readings)
    assert sum("\n" in row["anchor"] for row in readings) > len(readings) / 2
    half = build_training_datasets(examples, PHRASES, PARENTS, epochs=2, seed=3,
                                   recipe=TextTrainingRecipe(ocr_noise=0.5))["pairs"]
    assert 2 * len(examples) + 0.3 * 2 * len(examples) < len(half) < 2 * len(examples) + 0.7 * 2 * len(examples)
