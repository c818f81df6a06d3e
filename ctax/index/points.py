"""How the index names its points, and the hits its searches return. Label points are keyed by label id;
creatives (exemplars, traffic) by their id as a UUID, which Qdrant requires of string ids."""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def point_id(creative_id: str) -> str:
    return str(uuid.UUID(hex=creative_id))


def creative_id_of(point_id: Any) -> str:
    return uuid.UUID(str(point_id)).hex


def campaign_key(account_id: int | None, campaign: str | None) -> str | None:
    """A poster's campaign as the traffic window keeps it: one account's "spring" is not another's, and two ad
    servers may number their campaigns alike. None where the poster named none."""
    return f"{account_id if account_id is not None else '-'}/{campaign}" if campaign else None


def campaign_code(campaign: str | None) -> int:
    """A campaign name as the int the in-memory traffic table keeps in its label slot (traffic has no label): 0
    for none. 63 bits of a hash: a window of 5,000 distinct campaigns holds two with one code about once in 10^12."""
    if not campaign:
        return 0
    return int.from_bytes(hashlib.blake2b(campaign.encode(), digest_size=8).digest(), "big") >> 1 or 1


def normal_point_id(point_id: Any) -> int | str:
    """Qdrant point ids as this module writes them: label ids as ints, exemplar ids as canonical UUID text."""
    if isinstance(point_id, int):
        return int(point_id)
    if isinstance(point_id, str) and _CANONICAL_UUID.fullmatch(point_id):  # as Qdrant hands them back: no parse
        return point_id
    return str(uuid.UUID(str(point_id)))


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


class TrafficNeighbours(NamedTuple):
    """A creative's nearest recent creatives (LabelIndex.traffic_neighbours): their similarities to it, best first;
    their unit vectors in the same order (None unless asked for); and, where the in-memory window knows it, which of
    them have no other recent creative at the asked pair level (None: not known, any may)."""

    similarities: list[float]
    units: np.ndarray | None
    lonely: np.ndarray | None = None
