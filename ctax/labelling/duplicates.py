"""Near-duplicate groups: the same ad posted again (the same bytes, the same words) or re-cut by a campaign (cropped,
rescaled, re-coloured, re-encoded, a changed price or date) is labelled once.

A creative joins the group of an already-labelled creative when
- exact: its image bytes (image_sha256) or its normalised texts (`text_key`: case, spacing and the prices, dates
  and numbers a campaign changes between cuts aside; at least MIN_TEXT_WORDS words) are that creative's; found in
  the database before encoding, so an exact duplicate is neither read by OCR nor encoded; or
- near: its vector in the version's space is at least `duplicate_similarity` alike to that creative's (the
  version's creatives collection, ctax/index/creatives.py, and the earlier creatives of its own batch).
The group's root is the creative the first of them joined, or, for a group formed within one batch, its median
member by fit (represent_groups; `duplicate_of` always names the root, never another member). A member takes the
root's decided label and flag (and its prediction, marked with `duplicate_of`); it opens no review item of its own
but adds one to the root's item's `members`; where a reviewer already decided the root's item, the member gets the
same annotation. A reviewer's decision on the item applies to every member
(ctax/review/decisions.py). Members are not recorded into the novelty traffic window: a burst of copies of one
campaign counts once as evidence. A creative with members of its own never joins another group (its members would
be orphaned), and a creative is never its own member. An imported example (labelled by a person, never by a
version) is no root: it has no decision to share, so a copy of it is labelled on its own.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ctax.embedding.offers import MONTHS, NUMBERS  # a campaign changes these between cuts and keeps its words
from ctax.enums import CreativeStatus, Flag
from ctax.index.points import campaign_key
from ctax.index.qdrant import LabelIndex
from ctax.store.models import Annotation
from ctax.store.outbox import request_index_sync
from ctax.store.repos import creatives as creative_rows
from ctax.store.repos import groups
from ctax.store.repos import review as review_rows
from ctax.store.session import Session
from ctax.vectors import normalise

_SPACES = re.compile(r"\s+")
_PUNCTUATION = re.compile(r"[^\w#]+")
_PLACEHOLDERS = re.compile(r"#(?: #)+")
# Texts of fewer words than this are too common to call two creatives the same ad ("Shop now", "Sale").
MIN_TEXT_WORDS = 4


def normalised_text(texts: Sequence[str]) -> str:
    """What makes two texts "the same words": Unicode compatibility forms, case, punctuation, runs of white space,
    and the numbers and month names a campaign changes between cuts, aside."""
    parts = []
    for text in texts:
        folded = unicodedata.normalize("NFKC", text).casefold()
        words = _SPACES.sub(" ", _PUNCTUATION.sub(" ", MONTHS.sub("#", NUMBERS.sub("#", folded)))).strip()
        parts.append(_PLACEHOLDERS.sub("#", words))  # "May 31" and "1/7" are one date
    return "\n".join(p for p in parts if p)


def text_key(texts: Sequence[str]) -> str | None:
    """The hash exact text duplicates share (none: no text, or too short a text to tell ads apart)."""
    text = normalised_text(texts)
    if len(text.split()) < MIN_TEXT_WORDS:
        return None
    return hashlib.sha256(text.encode()).hexdigest()


def near_duplicates(
    index: LabelIndex, version: str, vectors: np.ndarray, creative_ids: Sequence[str], threshold: float,
) -> list[str | None]:
    """Per row, the already-labelled creative (this version's creatives collection) or earlier row of the batch
    its vector is most alike to, where that is at least `threshold`; None elsewhere. The one named may itself
    be a member: the store resolves it to its root."""
    if threshold <= 0 or len(vectors) == 0:
        return [None] * len(creative_ids)
    hits = index.most_alike_creatives(version, vectors, list(creative_ids))
    unit = normalise(np.asarray(vectors, dtype=np.float32))
    # Per row, the earliest of the batch's earlier rows (another creative) most alike to it: a Python step per pair
    # cost more than the search of the creatives collection (bench.creatives_growth).
    names = np.asarray(list(creative_ids), dtype=object)
    within = np.where(np.tril(names[:, None] != names[None, :], k=-1), unit @ unit.T, -np.inf)
    earlier, alike = within.argmax(axis=1).tolist(), within.max(axis=1).tolist()
    found: list[str | None] = []
    for n, hit in enumerate(hits):
        best, score = (hit.creative_id, hit.score) if hit else (None, -1.0)
        if alike[n] > score:
            m = earlier[n]
            best, score = found[m] or creative_ids[m], alike[n]
        found.append(best if score >= threshold and best != creative_ids[n] else None)
    return found


def represent_groups(near: Sequence[str | None], creative_ids: Sequence[str],
                     fits: Sequence[float | None]) -> list[str | None]:
    """`near` (near_duplicates) with each group formed within the batch rooted at its median member by learned fit
    (of two, the better-fitting) instead of its first. A member takes its root's decision, so the first of a burst
    decided the whole burst: a campaign's variant whose edit happened to lower its fit flagged every variant after
    it (bench.arrival --patterns campaigns). The median, not the best, so that one lucky member does not clear a
    burst of a kind the taxonomy lacks either. A group whose root is an already-labelled creative keeps it, and
    rows without a fit (no learned novelty score) keep the first."""
    first: dict[str, int] = {}
    for n, creative_id in enumerate(creative_ids):
        first.setdefault(creative_id, n)
    groups: dict[int, list[int]] = {}
    for n, target in enumerate(near):
        if target is not None and target in first and near[first[target]] is None:
            groups.setdefault(first[target], [first[target]]).append(n)
    out = list(near)
    for rows in groups.values():
        if any(fits[n] is None for n in rows) or len({creative_ids[n] for n in rows}) < len(rows):
            continue
        chosen = sorted(rows, key=lambda n: (fits[n], n))[len(rows) // 2]
        for n in rows:
            out[n] = None if n == chosen else creative_ids[chosen]
    return out


@dataclass(frozen=True)
class Root:
    """The group a creative joins: the root and what it was decided as."""

    creative_id: str
    prediction: dict[str, Any]
    flag: Any
    decided_label_id: int | None
    ocr_text: str | None
    asserted_label_id: int | None = None


def may_join(asserted: int | None, group_asserted: int | None, group_decided: int | None,
             group_flag: str | None) -> bool:
    """Whether a duplicate posted under `asserted` may take its group's decision: where it was posted under the
    group's label, or, unless the group was flagged `wrong_label`, where its poster says nothing or says what the
    group was decided as. A copy posted under another label is labelled on its own, so that its label's distance
    is judged (and `wrong_label` raised) as for any creative; and a `wrong_label` verdict is about its root's
    assertion, so a copy that did not make it (posted under the right label, or none) is labelled on its own too
    instead of taking a flag that is not its own. group_flag None: the group is not decided yet (an earlier
    creative of the same batch): only the same assertion joins."""
    if asserted == group_asserted:
        return True
    if group_flag is None or group_flag == Flag.WRONG_LABEL:
        return False
    return asserted is None or asserted == group_decided


@dataclass(frozen=True)
class Content:
    """What exact duplicates are matched by: a creative's text key and image digest, and the label it was posted
    under (may_join)."""

    creative_id: str
    asserted_label_id: int | None
    text_key: str | None
    image_sha256: str | None


def exact_matches(session: Session, batch: Sequence[Content]) -> dict[str, str]:
    """Creative -> the already-labelled creative (or, failing one, the earlier creative of this batch, which is in
    arrival order) with the same text key or image bytes and an assertion it may join (may_join); a creative is
    never its own duplicate, nor its own members' (labelled again)."""
    found = groups.labelled_with_same_content(session, [c.text_key for c in batch if c.text_key],
                                              [c.image_sha256 for c in batch if c.image_sha256])
    asserted = {c.creative_id: c.asserted_label_id for c in batch}
    out: dict[str, str] = {}
    earlier: dict[tuple[str, str], str] = {}  # ("text" | "image", key) -> the first creative of the batch with it
    for content in batch:
        creative_id = content.creative_id
        mine = [(kind, key) for kind, key in (("text", content.text_key), ("image", content.image_sha256)) if key]
        candidate = next((cid for text, image, cid, root, said, decided, flag in found
                          if creative_id not in (cid, root) and (("text", text) in mine or ("image", image) in mine)
                          and may_join(asserted[creative_id], said, decided, flag)), None)
        if candidate is None:
            first = next((earlier[k] for k in mine if k in earlier
                          and may_join(asserted[creative_id], asserted[earlier[k]], None, None)), None)
            candidate = out.get(first, first) if first is not None else None
        if candidate is not None:
            out[creative_id] = candidate
        for k in mine:
            earlier.setdefault(k, creative_id)
    return out


def resolve_roots(session: Session, candidates: dict[str, str]) -> dict[str, Root]:
    """For each creative (key) the root of the group its candidate (value) is in, where that root is labelled by a
    version and the creative may join it (not itself, not a creative with members of its own)."""
    if not candidates:
        return {}
    # A candidate joining a group in this same batch (an exact copy of a batch row that represent_groups made a
    # member) is not stored yet: its own root is the one to join.
    candidates = {cid: candidates.get(candidate, candidate) for cid, candidate in candidates.items()}
    rows = {row.id: row for row in creative_rows.by_ids(session, list(set(candidates.values())))}
    upward = {row.duplicate_of for row in rows.values() if row.duplicate_of and row.duplicate_of not in rows}
    rows.update({row.id: row for row in creative_rows.by_ids(session, list(upward))})
    with_members = groups.roots_among(session, list(candidates))
    out: dict[str, Root] = {}
    for creative_id, candidate in candidates.items():
        row = rows.get(candidate)
        root = rows.get(row.duplicate_of or row.id) if row is not None else None
        # A root without a prediction is a labelled example (imported, never labelled by a version): it has no
        # decision to share, and a copy that took it would answer with no labels at all; the copy is labelled on
        # its own, next to that example in the space.
        if (root is None or root.id == creative_id or root.status != CreativeStatus.LABELLED
                or root.prediction is None or creative_id in with_members):
            continue
        prediction = dict(root.prediction or {})
        prediction["duplicate_of"] = root.id
        out[creative_id] = Root(root.id, prediction, root.flag, root.decided_label_id, root.ocr_text,
                                root.asserted_label_id)
    return out


def join(session: Session, members: dict[str, str]) -> None:
    """Members (creative -> root, just stored as labelled) join their roots' review items: the item counts them, and
    where the item is decided each gets the decision's annotation. The count is raised before the item's state
    is read: on PostgreSQL that UPDATE waits for a reviewer deciding the item at the same moment, so a member
    either is counted before the decision (and the decision applies to it) or sees it decided."""
    if not members:
        return
    joined: dict[str, int] = {}
    for root in members.values():
        joined[root] = joined.get(root, 0) + 1
    groups.add_members(session, joined)
    decided = groups.decided_items_of(session, list(joined))
    annotated = False
    for member, root in members.items():
        if root not in decided:
            continue
        decision = review_rows.last_decision(session, decided[root])
        source = groups.annotation_of_decision(session, decision.id, root) if decision is not None else None
        if decision is None or source is None:
            continue
        session.add(Annotation(creative_id=member, label_id=source.label_id, kind=source.kind, source=source.source,
                               decision_id=decision.id, created_by=source.created_by))
        annotated = True
    if annotated:
        request_index_sync(session, f"{len(members)} duplicates joined decided groups")



class Posted(Protocol):
    """What the creatives collection keeps of a creative beside its vector."""

    account_id: int | None
    created_at: float | None
    campaign: str | None


def index_after_store(index: LabelIndex, version: str, traffic_window: int, members: dict[str, Root],
                      exact: Collection[str], posted: Mapping[str, Posted], near: Sequence[str]) -> None:
    """The index brought up to date with what the store decided: exact members (never encoded) get their roots'
    vectors in the creatives collection; near duplicates labelled on their own after all (their match was an
    imported example, or a group that may not take them: may_join) join the traffic window, which
    Labeller.finish kept them out of as members, so that they count as traffic and the novelty sweep sees them."""
    joined = {cid: root for cid, root in members.items() if cid in exact}
    index_members(index, version, joined, [{"label_id": root.decided_label_id, "account_id": posted[cid].account_id,
                                            "created_at": posted[cid].created_at} for cid, root in joined.items()])
    alone = [cid for cid in near if cid not in members]
    if alone and traffic_window > 0:
        vectors = index.creative_vectors(version, alone)
        if kept := [cid for cid in alone if cid in vectors]:
            index.record_traffic(version, kept, np.stack([vectors[cid] for cid in kept]), traffic_window,
                                 [campaign_key(posted[cid].account_id, posted[cid].campaign) for cid in kept])


def index_members(index: LabelIndex, version: str, members: dict[str, Root],
                  payloads: Sequence[dict[str, Any]]) -> None:
    """Exact duplicates were not encoded: in the version's creatives collection (what search looks through) they
    get their roots' vectors. A root this version did not label has none here; its members are left out too."""
    vectors = index.creative_vectors(version, [root.creative_id for root in members.values()])
    kept = [(cid, root.creative_id, payload) for (cid, root), payload in zip(members.items(), payloads, strict=True)
            if root.creative_id in vectors]
    if kept:
        index.upsert_creatives(version, [cid for cid, _, _ in kept], np.stack([vectors[r] for _, r, _ in kept]),
                               [payload for _, _, payload in kept])
