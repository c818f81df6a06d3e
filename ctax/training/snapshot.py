"""The labelled data a training run learns from: the label set and the current annotations read in one
transaction, stamped so the run can tell whether the label set changed while it trained; the check that there is
enough of it; and the held-out split.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from ctax.dataset.labelled import LabelledCreative, current_annotations
from ctax.errors import InvalidInput
from ctax.store.repos import versions
from ctax.store.session import Session
from ctax.taxonomy.catalog import active_taxonomy
from ctax.taxonomy.paths import LabelPath
from ctax.taxonomy.tree import Taxonomy

MIN_EXAMPLES_PER_LABEL = 2


class TrainingFailed(InvalidInput):
    code = "training_failed"


@dataclass
class Snapshot:
    taxonomy: Taxonomy
    paths: dict[int, LabelPath]
    examples: list[LabelledCreative]
    stamp: tuple[int, str]  # versions.label_set_stamp when the snapshot was taken


def snapshot(session: Session) -> Snapshot:
    taxonomy = active_taxonomy(session)
    paths = {label_id: taxonomy.path(label_id) for label_id in taxonomy.nodes}
    return Snapshot(taxonomy, paths, current_annotations(session), versions.label_set_stamp(session))


def check_enough(examples: Sequence[LabelledCreative]) -> dict[int, int]:
    """Creatives per label; raises TrainingFailed unless two or more labels, and most labels, have
    MIN_EXAMPLES_PER_LABEL."""
    counts: dict[int, int] = defaultdict(int)
    for example in examples:
        counts[example.label_id] += 1
    enough = [label for label, n in counts.items() if n >= MIN_EXAMPLES_PER_LABEL]
    if len(enough) < 2 or len(enough) * 2 < len(counts):
        raise TrainingFailed(
            f"too little labelled data: {len(examples)} creatives over {len(counts)} labels, and only {len(enough)}"
            f" labels have at least {MIN_EXAMPLES_PER_LABEL} examples (need 2 or more such labels, and most labels)."
            " Import labelled creatives (`ctax creatives import`) or review more items first."
        )
    return dict(counts)


def split(examples: Sequence[LabelledCreative], fraction: float, seed: int) -> tuple[list[LabelledCreative],
                                                                                  list[LabelledCreative]]:
    """Validation per label (stratified), chosen by a seeded hash of the content so reruns agree."""
    by_label: dict[int, list[LabelledCreative]] = defaultdict(list)
    for example in examples:
        by_label[example.label_id].append(example)
    train, validation = [], []
    for _, items in sorted(by_label.items()):
        items = sorted(items, key=lambda e: e.draw_key(seed))
        take = round(len(items) * fraction) if len(items) >= 3 else 0
        validation += items[:take]
        train += items[take:]
    return train, validation
