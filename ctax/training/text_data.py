"""The text tower's training rows: (creative text, label phrase) pairs with hard negatives from the label tree,
graded pairs for the CoSENT / cosine losses, and the open-set chunks that leave labels out.

Each epoch draws fresh texts (cycling through a creative's texts) and fresh negatives from one seeded random
stream, in a fixed order, so a run's rows depend on nothing but its examples, tree, recipe and seed.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ctax.labelling.calibration.ocr_noise import ocr_like
from ctax.training.text_recipe import (
    BACKGROUND_PHRASE,
    DEFAULT_RECIPE,
    HierarchyTargets,
    NegativeKind,
    TextTrainingRecipe,
)

if TYPE_CHECKING:
    from datasets import Dataset

Example = tuple[Sequence[str], str]
Rows = dict[str, list[Any]]


class _Tree:
    """The label tree as the training data needs it: ancestors, siblings, relations."""

    def __init__(self, labels: Sequence[str], parent_of: Mapping[str, str | None]) -> None:
        self.labels = list(labels)
        self.known = set(self.labels)
        self.parent_of = dict(parent_of)
        self.children: dict[str | None, list[str]] = defaultdict(list)
        for label in self.labels:
            self.children[self.nearest_known_parent(label)].append(label)

    def nearest_known_parent(self, label: str) -> str | None:
        chain = self.ancestors(label)
        return chain[0] if chain else None

    def ancestors(self, label: str) -> list[str]:
        """The ancestors that have a phrase, nearest first (a parent without one is skipped, not a dead end)."""
        chain: list[str] = []
        seen = {label}
        parent = self.parent_of.get(label)
        # A cycle in a hand-edited tree must not hang training.
        while parent is not None and parent not in seen:
            if parent in self.known:
                chain.append(parent)
            seen.add(parent)
            parent = self.parent_of.get(parent)
        return chain

    def siblings(self, label: str) -> list[str]:
        return [other for other in self.children[self.nearest_known_parent(label)] if other != label]

    def target(self, truth: str, label: str, targets: HierarchyTargets) -> float:
        if label == truth:
            return targets.same
        truth_chain = self.ancestors(truth)
        if label in truth_chain:
            return targets.parent if truth_chain.index(label) == 0 else targets.ancestor
        label_chain = self.ancestors(label)
        if truth in label_chain:
            # A creative labelled with a parent may well belong to this child: keep it as close as a parent.
            return targets.parent
        if truth_chain and label_chain and truth_chain[0] == label_chain[0]:
            return targets.sibling
        if set(truth_chain) & set(label_chain):
            return targets.cousin
        return targets.unrelated


def _clean_examples(examples: Sequence[Example], label_phrases: Mapping[str, str]) -> list[tuple[list[str], str]]:
    cleaned: list[tuple[list[str], str]] = []
    for texts, label in examples:
        if label not in label_phrases:
            raise ValueError(f"training example labelled {label!r}, which has no label phrase")
        kept = [text.strip() for text in texts if text and text.strip()]
        if kept:
            cleaned.append((kept, label))
    return cleaned


def check_trainable(examples: Sequence[Example], label_phrases: Mapping[str, str]) -> None:
    """Raise ValueError unless at least two labels have at least two creatives with text each.

    Contrastive training needs another label in the batch to push away from, and a label with a single
    creative teaches its phrase that one creative only; below this the model would only get worse.
    """
    counts: dict[str, int] = defaultdict(int)
    for _, label in _clean_examples(examples, label_phrases):
        counts[label] += 1
    trainable = sorted(label for label, count in counts.items() if count >= 2)
    if len(trainable) < 2:
        raise ValueError(
            "too few training examples: the text tower needs at least 2 labels with at least 2 creatives "
            f"(with non-empty text) each; got {dict(counts)}"
        )


def _negative_for(kind: NegativeKind, truth: str, tree: _Tree, pool: Sequence[str], rng: random.Random) -> str | None:
    chain = tree.ancestors(truth)
    if kind == "parent" and chain:
        return chain[0]
    if kind == "sibling":
        siblings = tree.siblings(truth)
        if siblings:
            return rng.choice(siblings)
        # No sibling: the closest relative (sharing any ancestor) is the next hardest distinction.
        relatives = [
            other for other in pool if other != truth and other not in chain and set(chain) & set(tree.ancestors(other))
        ]
        if relatives:
            return rng.choice(relatives)
    # Otherwise (or when the tree has no closer label) any other label that is not an ancestor.
    others = [other for other in pool if other != truth and other not in chain]
    return rng.choice(others) if others else None


def _epoch_texts(examples: Sequence[tuple[list[str], str]], epoch: int, per_epoch: int) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for texts, label in examples:
        if per_epoch <= 0:
            pairs.extend((text, label) for text in texts)
        else:
            pairs.extend((texts[(epoch * per_epoch + i) % len(texts)], label) for i in range(per_epoch))
    return pairs


def _ocr_readings(examples: Sequence[tuple[list[str], str]], share: float,
                  rng: np.random.Generator) -> list[tuple[str, str]]:
    """OCR-like readings of `share` of the creatives (each drawn independently), paired with their labels."""
    chosen = rng.random(len(examples)) < share
    readings = [(ocr_like(texts, rng), label) for (texts, label), take in zip(examples, chosen, strict=True) if take]
    return [(text, label) for text, label in readings if text.strip()]


def build_training_datasets(
    examples: Sequence[Example],
    label_phrases: Mapping[str, str],
    parent_of: Mapping[str, str | None],
    *,
    epochs: int,
    seed: int,
    recipe: TextTrainingRecipe = DEFAULT_RECIPE,
) -> dict[str, Dataset]:
    """The training rows of every epoch, laid out so that one trainer epoch covers all of them.

    Each epoch draws fresh texts (cycling through a creative's texts) and fresh negatives, which is why the
    epochs are materialised here instead of repeating one dataset.
    """
    from datasets import Dataset

    cleaned = _clean_examples(examples, label_phrases)
    rows = _RowBuilder(label_phrases, parent_of, recipe, random.Random(seed))
    # A stream of its own: the rows a run draws without OCR noise stay the ones it drew before the option.
    noise_rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        epoch_pairs = _epoch_texts(cleaned, epoch, recipe.texts_per_epoch)
        if recipe.ocr_noise > 0:
            epoch_pairs += _ocr_readings(cleaned, recipe.ocr_noise, noise_rng)
        if rows.open_set:
            rows.add_open_set_chunks(epoch, epoch_pairs)
        rows.add_epoch(epoch_pairs)
    datasets: dict[str, Dataset] = {}
    if rows.pairs:
        datasets["pairs"] = Dataset.from_dict(dict(rows.pairs))
    for name, chunk in rows.chunks.items():
        if chunk:
            datasets[name] = Dataset.from_dict(dict(chunk))
    if rows.graded:
        datasets["graded"] = Dataset.from_dict(dict(rows.graded))
    if not datasets:
        raise ValueError("no training rows could be built from the examples")
    return datasets


@dataclass
class _RowBuilder:
    """The rows of a run as they are drawn, epoch after epoch, from one random stream (the order of the draws
    is part of what a seed reproduces)."""

    label_phrases: Mapping[str, str]
    parent_of: Mapping[str, str | None]
    recipe: TextTrainingRecipe
    rng: random.Random
    pairs: Rows = field(default_factory=lambda: defaultdict(list))
    graded: Rows = field(default_factory=lambda: defaultdict(list))
    chunks: dict[str, Rows] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tree = _Tree(list(self.label_phrases), self.parent_of)
        leaves = [label for label in self.label_phrases if not self.tree.children.get(label)]
        self.pool = leaves or list(self.label_phrases)
        self.uses_pairs = self.recipe.loss in ("mnrl", "mnrl+cosent")
        self.uses_graded = self.recipe.loss in ("cosent", "cosine", "mnrl+cosent")
        self.open_set = self.uses_pairs and self.recipe.open_set != "none"

    def add_epoch(self, epoch_pairs: Sequence[tuple[str, str]]) -> None:
        """Pair rows (unless open-set chunks hold them) and graded rows, text by text."""
        recipe, phrases = self.recipe, self.label_phrases
        for text, truth in epoch_pairs:
            if self.uses_pairs and not self.open_set:
                _add_pair_row(self.pairs, text, phrases[truth], truth, self.tree, self.pool, phrases,
                              recipe.negatives, self.rng)
            if self.uses_graded:
                for label in _graded_labels(truth, self.tree, self.pool, recipe.graded_labels_per_text, self.rng):
                    self.graded["sentence1"].append(text)
                    self.graded["sentence2"].append(phrases[label])
                    self.graded["score"].append(self.tree.target(truth, label, recipe.targets))

    def add_open_set_chunks(self, epoch: int, epoch_pairs: Sequence[tuple[str, str]]) -> None:
        """One pass cut into chunks, each leaving its own labels out; see TextTrainingRecipe.open_set."""
        phrases, rng = self.label_phrases, self.rng
        for chunk, (left_out, rows) in enumerate(_leave_out_chunks(epoch_pairs, self.pool, self.recipe.leave_out,
                                                                   rng)):
            # The left-out labels' phrases must not appear in the chunk at all: as a hard negative of a
            # sibling's row they would be an in-batch negative for their own creatives' background rows.
            chunk_tree = _Tree([label for label in phrases if label not in left_out], self.parent_of)
            chunk_pool = [label for label in self.pool if label not in left_out]
            target = self.chunks.setdefault(f"pairs-e{epoch}-c{chunk}", defaultdict(list))
            for text, truth in rows:
                if truth not in left_out:
                    _add_pair_row(target, text, phrases[truth], truth, chunk_tree, chunk_pool, phrases,
                                  self.recipe.negatives, rng)
                elif self.recipe.open_set == "background":
                    _add_pair_row(target, text, BACKGROUND_PHRASE, truth, chunk_tree, chunk_pool, phrases,
                                  self.recipe.negatives, rng)
                elif (parent := chunk_tree.nearest_known_parent(truth)) is not None:
                    # The parent is the positive here, so it cannot also be the hard negative.
                    _add_pair_row(target, text, phrases[parent], truth, chunk_tree, chunk_pool, phrases,
                                  ("sibling", "random"), rng)


def _add_pair_row(rows: Rows, text: str, positive: str, truth: str, tree: _Tree,
                  pool: Sequence[str], label_phrases: Mapping[str, str], kinds: Sequence[NegativeKind],
                  rng: random.Random) -> None:
    negatives = [_negative_for(kind, truth, tree, pool, rng) for kind in kinds]
    if all(negative is not None for negative in negatives):
        rows["anchor"].append(text)
        rows["positive"].append(positive)
        for i, negative in enumerate(negatives):
            rows[f"negative_{i + 1}"].append(label_phrases[str(negative)])


def _leave_out_chunks(pairs: Sequence[tuple[str, str]], leaves: Sequence[str], share: float,
                      rng: random.Random) -> list[tuple[set[str], list[tuple[str, str]]]]:
    """One pass's rows cut into chunks, each with its own set of left-out leaves; every leaf is left out once.

    About ``share`` of the leaves is left out per chunk, never more than half of them, so a left-out creative
    has known labels to be pushed away from."""
    known = set(leaves)
    present = sorted({truth for _, truth in pairs if truth in known})
    if share <= 0 or len(present) < 2:
        return [(set(), list(pairs))]
    chunks = max(2, min(round(1 / share), len(present)))
    rng.shuffle(present)
    shuffled = list(pairs)
    rng.shuffle(shuffled)
    return [({leaf for n, leaf in enumerate(present) if n % chunks == chunk}, shuffled[chunk::chunks])
            for chunk in range(chunks)]


def _graded_labels(truth: str, tree: _Tree, pool: Sequence[str], count: int, rng: random.Random) -> list[str]:
    # The own label, then labels drawn from the relation tiers (parent, sibling, unrelated) in a random order:
    # CoSENT ranks every pair of the batch against every other, so a batch of such rows holds the whole
    # ordering own > parent > sibling > other without paying for every tier on every text.
    chain = tree.ancestors(truth)
    siblings = tree.siblings(truth)
    others = [label for label in pool if label != truth and label not in chain and label not in siblings]
    tiers = [tier for tier in ([chain[0]] if chain else [], siblings, others) if tier]
    rng.shuffle(tiers)
    chosen = [truth]
    for tier in tiers[: max(count - 1, 0)]:
        chosen.append(rng.choice(tier))
    return chosen
