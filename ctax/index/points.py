"""How the index names its points, and the hits its searches return. Label points are keyed by label id;
creatives (exemplars, traffic) by their id as a UUID, which Qdrant requires of string ids."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any


def point_id(creative_id: str) -> str:
    return str(uuid.UUID(hex=creative_id))


def creative_id_of(point_id: Any) -> str:
    return uuid.UUID(str(point_id)).hex


def normal_point_id(point_id: Any) -> int | str:
    """Qdrant point ids as this module writes them: label ids as ints, exemplar ids as canonical UUID text."""
    return int(point_id) if isinstance(point_id, int) else str(uuid.UUID(str(point_id)))


@dataclass(frozen=True)
class LabelHit:
    label_id: int
    score: float


@dataclass(frozen=True)
class ExemplarHit:
    creative_id: str
    label_id: int
    score: float


@dataclass(frozen=True)
class CreativeHit:
    creative_id: str
    score: float
