"""What a labelling batch carries: the creatives asked for, what the labeller says of each, and a batch between
its encoding and its finishing (labeller.Labeller.encode, .finish), and what its arrival search read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from ctax.embedding.space import Encoded
from ctax.labelling.trigger import OCR, TEXT, Decision


def text_source(modalities: dict[str, str]) -> str:
    """OCR where the text the creative was compared by was read from its image (SharedSpace.encode's modalities;
    a creative with an image and no text, OCR text stored or read now); TEXT otherwise."""
    return OCR if modalities.get("ocr") == "used" else TEXT


@dataclass
class LabelRequest:
    creative_id: str
    texts: Sequence[str] = ()
    image: Image.Image | None = None
    ocr_text: str | None = None
    asserted_label_id: int | None = None
    account_id: int | None = None  # kept with the creative's vector, so that search can filter by account
    created_at: float | None = None  # epoch seconds, likewise
    campaign: str | None = None  # the poster's campaign: its creatives are no traffic evidence for each other


@dataclass
class LabelOutcome:
    creative_id: str
    decision: Decision | None
    prediction: dict[str, Any] = field(default_factory=dict)
    ocr_text: str | None = None
    error: str | None = None
    # A creative this one's vector is a near-duplicate of (ctax/labelling/duplicates.py); the store resolves it to
    # its group's root and gives this creative the group's decision.
    duplicate_of: str | None = None


@dataclass
class EncodedBatch:
    """A batch between its encoding and its finishing (Labeller.encode, Labeller.finish)."""

    requests: list[LabelRequest]
    ocr_texts: list[str | None]
    encoded: list[Encoded]


@dataclass(frozen=True)
class ArrivalTraffic:
    """What a batch's arrival search read (Labeller.arrival_traffic): per creative the traffic the trigger reads
    and the size of the window it came from; and where the novelty sweep's bound is kept (local mode), the
    window's write mark then and each kept creative's seed for the bound (novelty.counted_seeds), which the
    labeller keeps once the batch is decided (Labeller.finish)."""

    traffic: list[list[float]]
    windows: list[int]
    mark: int | None = None
    seeds: Mapping[str, np.ndarray] = field(default_factory=dict)
