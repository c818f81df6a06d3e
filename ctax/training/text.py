"""Fine-tuning the text tower so that creatives and label phrases share one embedding space.

The recipe (loss, negatives, learning rate, template) was chosen by measurement: see
``docs/text_training_study.md`` and ``bench/text_training_study.py``, which reproduces every figure.
Nothing here loads a model at import time; torch and sentence-transformers are imported inside the
functions that need them, so the API process can import this module for its types.
"""

from __future__ import annotations

import math
import random
import tempfile
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from datasets import Dataset

ProgressFn = Callable[[float, str], None]


@dataclass(frozen=True)
class HierarchyTargets:
    """Cosine targets of (creative text, label phrase) pairs by where the label sits relative to the truth.

    Used by the graded losses (CoSENT, cosine MSE). CoSENT only uses their order, the MSE loss their values.
    """

    same: float = 0.9
    parent: float = 0.6
    ancestor: float = 0.45
    sibling: float = 0.35
    cousin: float = 0.2
    unrelated: float = 0.1


FLAT_TARGETS = HierarchyTargets(same=0.9, parent=0.1, ancestor=0.1, sibling=0.1, cousin=0.1, unrelated=0.1)

LossKind = Literal["mnrl", "cosent", "cosine", "mnrl+cosent"]
NegativeKind = Literal["sibling", "parent", "random"]
SamplerKind = Literal["shuffle", "no_duplicates"]
OpenSetKind = Literal["none", "background", "parent"]

# The phrase the tower learns for "none of the labels offered": with ``open_set="background"`` creatives whose
# label is left out of a pass are pulled to it, so it settles between a creative's own label and the rest.
BACKGROUND_PHRASE = "none of these labels"


@dataclass(frozen=True)
class TextTrainingRecipe:
    """How to fine-tune; the defaults are the recipe the study chose.

    ``texts_per_epoch``: each epoch visits every creative with that many of its texts, cycling through them
    across epochs, so an epoch costs the same whatever the number of texts; ``0`` uses every text each epoch.
    ``negatives``: hard negatives added to every (text, label phrase) pair for MultipleNegativesRankingLoss:
    ``sibling`` (another child of the label's parent, else the closest relative), ``parent`` (the label's parent:
    the leaf must beat it, or parents take top-1), ``random`` (any other leaf).
    ``targets`` / ``graded_labels_per_text``: the graded cosine targets and how many labels each text is paired
    with for the CoSENT / cosine losses.
    ``open_set``: ``background`` trains for labels the taxonomy lacks (outlier exposure): each pass is cut into
    chunks, each chunk leaves a different ``leave_out`` share of the leaf labels out (their phrases appear in
    none of its rows), and the chunk's creatives of a left-out label take :data:`BACKGROUND_PHRASE` as their
    positive, with their sibling and parent as hard negatives. Every other row has the background phrase in its
    batch as a negative. The background phrase's similarity then works as a per-creative threshold: above the
    best label's, the creative fits no label offered.
    ``parent`` leaves labels out the same way, but a left-out label's creatives take their nearest known parent
    as the positive (a known sibling and a random other leaf as hard negatives), while every other creative keeps
    its parent as a hard negative: the tower learns that a parent wins only when none of its children fits, so
    "best parent above best leaf" marks a missing child and says where it belongs. Left-out labels without a
    known parent sit their chunk out.
    """

    loss: LossKind = "mnrl"
    negatives: tuple[NegativeKind, ...] = ("sibling", "parent")
    sampler: SamplerKind = "shuffle"
    learning_rate: float = 1e-4
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    scale: float = 20.0
    max_seq_length: int = 64
    texts_per_epoch: int = 1
    targets: HierarchyTargets = field(default_factory=HierarchyTargets)
    graded_labels_per_text: int = 2
    open_set: OpenSetKind = "none"
    leave_out: float = 0.15


DEFAULT_RECIPE = TextTrainingRecipe()

Example = tuple[Sequence[str], str]


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

    rng = random.Random(seed)
    cleaned = _clean_examples(examples, label_phrases)
    tree = _Tree(list(label_phrases), parent_of)
    leaves = [label for label in label_phrases if not tree.children.get(label)]
    pool = leaves or list(label_phrases)
    pair_rows: dict[str, list[str]] = defaultdict(list)
    graded_rows: dict[str, list[Any]] = defaultdict(list)
    uses_pairs = recipe.loss in ("mnrl", "mnrl+cosent")
    uses_graded = recipe.loss in ("cosent", "cosine", "mnrl+cosent")
    open_set = uses_pairs and recipe.open_set != "none"
    chunked_rows: dict[str, dict[str, list[str]]] = {}
    for epoch in range(epochs):
        epoch_pairs = _epoch_texts(cleaned, epoch, recipe.texts_per_epoch)
        if open_set:
            for chunk, (left_out, rows) in enumerate(_leave_out_chunks(epoch_pairs, pool, recipe.leave_out, rng)):
                # The left-out labels' phrases must not appear in the chunk at all: as a hard negative of a
                # sibling's row they would be an in-batch negative for their own creatives' background rows.
                chunk_tree = _Tree([label for label in label_phrases if label not in left_out], parent_of)
                chunk_pool = [label for label in pool if label not in left_out]
                target = chunked_rows.setdefault(f"pairs-e{epoch}-c{chunk}", defaultdict(list))
                for text, truth in rows:
                    if truth not in left_out:
                        _add_pair_row(target, text, label_phrases[truth], truth, chunk_tree, chunk_pool,
                                      label_phrases, recipe.negatives, rng)
                    elif recipe.open_set == "background":
                        _add_pair_row(target, text, BACKGROUND_PHRASE, truth, chunk_tree, chunk_pool,
                                      label_phrases, recipe.negatives, rng)
                    elif (parent := chunk_tree.nearest_known_parent(truth)) is not None:
                        # The parent is the positive here, so it cannot also be the hard negative.
                        _add_pair_row(target, text, label_phrases[parent], truth, chunk_tree, chunk_pool,
                                      label_phrases, ("sibling", "random"), rng)
        for text, truth in epoch_pairs:
            if uses_pairs and not open_set:
                _add_pair_row(pair_rows, text, label_phrases[truth], truth, tree, pool, label_phrases,
                              recipe.negatives, rng)
            if uses_graded:
                for label in _graded_labels(truth, tree, pool, recipe.graded_labels_per_text, rng):
                    graded_rows["sentence1"].append(text)
                    graded_rows["sentence2"].append(label_phrases[label])
                    graded_rows["score"].append(tree.target(truth, label, recipe.targets))
    datasets: dict[str, Dataset] = {}
    if pair_rows:
        datasets["pairs"] = Dataset.from_dict(dict(pair_rows))
    for name, rows in chunked_rows.items():
        if rows:
            datasets[name] = Dataset.from_dict(dict(rows))
    if graded_rows:
        datasets["graded"] = Dataset.from_dict(dict(graded_rows))
    if not datasets:
        raise ValueError("no training rows could be built from the examples")
    return datasets


def _add_pair_row(rows: dict[str, list[str]], text: str, positive: str, truth: str, tree: _Tree,
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


def _make_losses(model: Any, recipe: TextTrainingRecipe, names: Sequence[str]) -> dict[str, Any]:
    from sentence_transformers.sentence_transformer.losses import (
        CoSENTLoss,
        CosineSimilarityLoss,
        MultipleNegativesRankingLoss,
    )

    losses: dict[str, Any] = {}
    for name in names:
        if name.startswith("pairs"):
            losses[name] = MultipleNegativesRankingLoss(model, scale=recipe.scale)
        elif recipe.loss == "cosine":
            losses[name] = CosineSimilarityLoss(model)
        else:
            losses[name] = CoSENTLoss(model, scale=recipe.scale)
    return losses


def _progress_callback(on_progress: ProgressFn) -> Any:
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        last_loss: float | None = None

        # Training is most of the work; the last 5% are left for saving the model.
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            on_progress(0.0, f"training: 0/{state.max_steps} steps")

        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
        ) -> None:
            if logs and "loss" in logs:
                self.last_loss = float(logs["loss"])

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            total = max(int(state.max_steps), 1)
            done = min(int(state.global_step), total)
            loss = "" if self.last_loss is None else f", loss {self.last_loss:.3f}"
            on_progress(0.95 * done / total, f"training: {done}/{total} steps{loss}")

    return _Progress()


def train_text_tower(
    base_model: str,
    examples: Sequence[Example],
    label_phrases: Mapping[str, str],
    parent_of: Mapping[str, str | None],
    out_dir: Path,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    device: str = "cpu",
    on_progress: ProgressFn | None = None,
    recipe: TextTrainingRecipe = DEFAULT_RECIPE,
) -> Path:
    """Fine-tune a sentence-transformers text tower on (creative texts, label path) examples; return ``out_dir``.

    ``examples``: the texts of one creative with its label path (a leaf or a parent). ``label_phrases``: every
    label path (leaves and parents) to the string the tower encodes for it, e.g. via ``LabelPath.phrase``.
    ``parent_of``: each label path's parent path, ``None`` at the top. Raises ValueError when the examples are too
    few to train on (see :func:`check_trainable`) or name a label without a phrase.
    """
    if epochs < 1:
        raise ValueError("epochs must be at least 1")
    if batch_size < 2:
        raise ValueError("batch_size must be at least 2: in-batch negatives need a second row")
    check_trainable(examples, label_phrases)

    import torch
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers
    from transformers import PrinterCallback

    report = on_progress or (lambda fraction, message: None)
    report(0.0, "building training pairs")
    datasets = build_training_datasets(examples, label_phrases, parent_of, epochs=epochs, seed=seed, recipe=recipe)
    rows = sum(len(dataset) for dataset in datasets.values())
    # Tiny data (the product's tests, a new deployment) must still make whole batches.
    effective_batch = max(2, min(batch_size, min(len(dataset) for dataset in datasets.values())))
    # Warm-up's first step has a learning rate of 0: on a handful of steps it would waste most of them.
    warmup = recipe.warmup_ratio if rows / effective_batch >= 20 else 0.0

    torch.manual_seed(seed)
    model = SentenceTransformer(base_model, device=device)
    model.max_seq_length = recipe.max_seq_length
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ctax-text-train-") as scratch:
        args = SentenceTransformerTrainingArguments(
            output_dir=scratch,
            # The epochs are materialised in the dataset (fresh texts and negatives each), so one pass.
            num_train_epochs=1,
            per_device_train_batch_size=effective_batch,
            learning_rate=recipe.learning_rate,
            warmup_steps=warmup,
            weight_decay=recipe.weight_decay,
            lr_scheduler_type="linear",
            batch_sampler=(
                BatchSamplers.NO_DUPLICATES if recipe.sampler == "no_duplicates" else BatchSamplers.BATCH_SAMPLER
            ),
            save_strategy="no",
            eval_strategy="no",
            report_to="none",
            logging_steps=max(1, math.ceil(rows / effective_batch / 20)),
            disable_tqdm=True,
            seed=seed,
            data_seed=seed,
            use_cpu=device == "cpu",
            dataloader_num_workers=0,
        )
        train_dataset: Any = datasets if len(datasets) > 1 else next(iter(datasets.values()))
        losses = _make_losses(model, recipe, list(datasets))
        loss: Any = losses if len(losses) > 1 else next(iter(losses.values()))
        trainer = SentenceTransformerTrainer(
            model=model,
            args=args,
            train_dataset=train_dataset,
            loss=loss,
            callbacks=[_progress_callback(report)],
        )
        # With tqdm disabled the trainer prints every log dict to stdout; progress goes through on_progress.
        trainer.remove_callback(PrinterCallback)
        trainer.train()
    report(0.95, "saving model")
    model.save(str(out_dir))
    report(1.0, f"trained on {rows} rows, saved to {out_dir}")
    return out_dir
