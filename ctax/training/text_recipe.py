"""The text tower's training recipe: loss, hard negatives, graded targets, open-set training, optimiser knobs.

The defaults were chosen by measurement: see ``docs/text_training_study.md`` and ``bench/text_training_study.py``,
which reproduces every figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


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
    ``ocr_noise``: per epoch, this share of the creatives also gives a row whose text is an OCR-like reading of
    its texts (``ctax.labelling.calibration.ocr_noise.ocr_like``: broken lines, misread letters, lost framing,
    fine print),
    paired with its label like the clean text: image ads arrive as OCR text, which looks nothing like clean copy.
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
    ocr_noise: float = 0.0


DEFAULT_RECIPE = TextTrainingRecipe()
