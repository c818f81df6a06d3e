"""New-label discovery: creatives that fit no label are clustered in the shared space, and each dense cluster
becomes a proposed taxonomy node with a suggested parent and name. Pure: vectors and texts in, drafts out.

- Clusters: scikit-learn's HDBSCAN, so the number of clusters is found, not chosen, and stray creatives stay
  noise; on the unit vectors reduced by UMAP (cosine) to 5 dimensions when umap-learn is installed and there are
  enough points, else on the unit vectors themselves (Euclidean distance on unit vectors orders pairs as cosine
  does). Members far from their cluster's centre in the full space are then pruned (prune_outliers).
- Parent: the internal label P (one with children, at most `max_parent_depth` deep) maximising the members' mean
  best similarity to P or one of its children, i.e. where the new node would sit among the siblings it most
  resembles.
- Name: the two words most over-represented in the cluster's texts relative to the rest of the corpus (the other
  flagged creatives and a background sample; see salient_terms), so words every ad uses ("buy", "because") drop
  out. Single words: overlapping bigrams ("adopt rescue", "rescue dog") name a cluster worse than two top words.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ctax.taxonomy.tree import Taxonomy
from ctax.vectors import normalise

log = logging.getLogger(__name__)
_WORD = r"(?u)\b[^\W\d_][^\W\d_]+\b"


@dataclass(frozen=True)
class DiscoveryParams:
    """Defaults measured on the Pitt ads (docs/benchmarks.md, "New-label discovery"): 5 recovers the most missing
    labels across seeds, at the price of several proposals per label (accept the others `into` the first)."""

    min_cluster_size: int = 5
    min_samples: int | None = None
    max_parent_depth: int | None = None  # default: one above the deepest leaves
    n_terms: int = 8
    # UMAP to 5 dimensions first doubles the held-out ads recovered; it needs umap-learn and enough points to
    # learn a manifold from, and without either the raw space is clustered.
    umap_components: int | None = 5
    umap_min_points: int = 50


@dataclass(frozen=True)
class LabelVectors:
    """The active version's label vectors (unit length) and the taxonomy they belong to."""

    ids: Sequence[int]
    vectors: np.ndarray
    taxonomy: Taxonomy


@dataclass
class ProposalDraft:
    member_ids: list[str]
    suggested_name: str
    suggested_parent_id: int | None
    parent_score: float | None
    terms: list[str]
    cohesion: float
    density: float
    centroid: np.ndarray = field(repr=False)


def cluster(vectors: np.ndarray, params: DiscoveryParams, seed: int = 0) -> np.ndarray:
    """A cluster number per row, -1 for noise."""
    n = len(vectors)
    if n < max(2, params.min_cluster_size):
        return np.full(n, -1, dtype=np.int64)
    from sklearn.cluster import HDBSCAN

    points = normalise(vectors)
    if params.umap_components and n >= max(params.umap_min_points, params.umap_components + 2):
        points = _reduce(points, params.umap_components, seed)
    model = HDBSCAN(
        min_cluster_size=params.min_cluster_size,
        min_samples=params.min_samples,
        metric="euclidean",
        copy=True,
    )
    return np.asarray(model.fit_predict(points), dtype=np.int64)


def umap_available() -> bool:
    try:
        import umap  # noqa: F401
    except ImportError:
        return False
    return True


def _reduce(points: np.ndarray, components: int, seed: int) -> np.ndarray:
    if not umap_available():
        log.warning("umap-learn is not installed: clustering the raw space (install it for better proposals)")
        return points
    import umap

    reducer = umap.UMAP(
        n_components=components, n_neighbors=min(15, len(points) - 1), min_dist=0.0, metric="cosine",
        random_state=seed, n_jobs=1,  # a seed makes UMAP single-threaded anyway; saying so silences its warning
    )
    return np.asarray(reducer.fit_transform(points), dtype=np.float32)


def prune_outliers(points: np.ndarray, rows: np.ndarray, floor: float = 0.15) -> np.ndarray:
    """Members much farther from the cluster's centre than the rest leave it: on a few hundred points in 384
    dimensions HDBSCAN attaches a stray to the nearest dense group, and a stray named 'Solar' would be mislabelled
    when the proposal is accepted. 'Much farther' is robust: below the median similarity by 3 MADs, and at least
    `floor`."""
    centre = normalise(points[rows].mean(axis=0, keepdims=True))[0]
    sims = points[rows] @ centre
    median = float(np.median(sims))
    spread = float(np.median(np.abs(sims - median)))
    return np.asarray(rows[sims >= median - max(floor, 3 * spread)])


def salient_terms(groups: Sequence[Sequence[str]], background: Sequence[str], n_terms: int) -> list[list[str]]:
    """For each group of documents, the words most over-represented in it against all other documents.

    A word's score is its share of the group's documents times the log of how much likelier it is inside the group
    than outside (a smoothed lift): 'levis' in 40% of a cluster and 0.5% of the corpus beats 'buy' in 80% of the
    cluster and 30% of the corpus. Words sharing a stem-like prefix with a better word ('levi', 'levis') are
    dropped, so the two words that name a cluster say two things.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    documents = [doc for group in groups for doc in group] + list(background)
    if not any(doc.strip() for doc in documents):
        return [[] for _ in groups]
    # Binary presence, no idf: document frequencies are what the lift compares.
    vectorizer = TfidfVectorizer(
        stop_words="english", binary=True, use_idf=False, norm=None, token_pattern=_WORD, lowercase=True
    )
    try:
        present = vectorizer.fit_transform(documents) > 0
    except ValueError:  # nothing but stop words
        return [[] for _ in groups]
    vocabulary = np.asarray(vectorizer.get_feature_names_out())
    total = np.asarray(present.sum(axis=0)).ravel()
    out: list[list[str]] = []
    start = 0
    for group in groups:
        inside = np.asarray(present[start : start + len(group)].sum(axis=0)).ravel()
        start += len(group)
        share_in = inside / max(len(group), 1)
        share_out = (total - inside + 1) / (len(documents) - len(group) + 2)
        score = share_in * np.log(np.maximum(share_in, 1e-9) / share_out)
        chosen: list[str] = []
        for j in np.argsort(-score):
            if score[j] <= 0 or len(chosen) >= n_terms:
                break
            word = str(vocabulary[j])
            if not any(_same_stem(word, other) for other in chosen):
                chosen.append(word)
        out.append(chosen)
    return out


def _same_stem(a: str, b: str, length: int = 4) -> bool:
    short, long = sorted((a, b), key=len)
    return long.startswith(short) or (len(short) >= length and long[:length] == short[:length] and
                                      abs(len(a) - len(b)) <= 3)


def suggest_name(terms: Sequence[str], taken: Sequence[str] = ()) -> str:
    """A label name from the two top terms, e.g. 'Pizza and Delivery', in the style of the Pitt and IAB names;
    a third term is added when a sibling already has that name."""
    if not terms:
        return "New label"
    name = " and ".join(_title(term) for term in terms[:2])
    existing = {t.lower() for t in taken}
    if name.lower() in existing:
        for extra in terms[2:]:
            candidate = f"{name} and {_title(extra)}"
            if candidate.lower() not in existing:
                return candidate
    return name


def _title(term: str) -> str:
    return " ".join(w if w.isupper() else w.capitalize() for w in re.split(r"\s+", term.strip()))


def parent_candidates(taxonomy: Taxonomy, max_parent_depth: int | None) -> list[int]:
    leaves_depth = max((taxonomy.path(lid).depth for lid in taxonomy.leaves()), default=1)
    limit = max_parent_depth if max_parent_depth is not None else max(1, leaves_depth - 1)
    return [lid for lid in taxonomy.nodes if not taxonomy.is_leaf(lid) and taxonomy.path(lid).depth <= limit]


def suggest_parent(
    member_vectors: np.ndarray, labels: LabelVectors, max_parent_depth: int | None = None
) -> tuple[int | None, float | None]:
    if len(labels.ids) == 0 or len(member_vectors) == 0:
        return None, None
    position = {int(lid): n for n, lid in enumerate(labels.ids)}
    sims = normalise(member_vectors) @ normalise(labels.vectors).T
    best: tuple[float, int] | None = None
    for parent in parent_candidates(labels.taxonomy, max_parent_depth):
        family = [lid for lid in (parent, *labels.taxonomy.children.get(parent, [])) if lid in position]
        if not family:
            continue
        score = float(sims[:, [position[lid] for lid in family]].max(axis=1).mean())
        if best is None or score > best[0]:
            best = (score, parent)
    if best is None:
        return None, None
    return best[1], best[0]


def propose(
    creative_ids: Sequence[str],
    vectors: np.ndarray,
    texts: Sequence[str],
    labels: LabelVectors,
    background: Sequence[str] = (),
    params: DiscoveryParams | None = None,
) -> list[ProposalDraft]:
    """Drafts for every cluster, largest and tightest first."""
    params = params or DiscoveryParams()
    if len(creative_ids) != len(vectors) or len(creative_ids) != len(texts):
        raise ValueError("creative_ids, vectors and texts must be parallel")
    assignment = cluster(vectors, params)
    points = normalise(vectors) if len(vectors) else vectors
    groups = [np.flatnonzero(assignment == c) for c in sorted(set(assignment.tolist()) - {-1})]
    groups = [prune_outliers(points, rows) for rows in groups]
    groups = [rows for rows in groups if len(rows) >= params.min_cluster_size]
    if not groups:
        return []
    clustered = set(np.flatnonzero(assignment >= 0).tolist())
    others = [texts[i] for i in range(len(texts)) if i not in clustered]
    grouped = [[texts[i] for i in rows.tolist()] for rows in groups]
    terms = salient_terms(grouped, [*others, *background], params.n_terms)
    drafts: list[ProposalDraft] = []
    sibling_names: dict[int | None, list[str]] = {}
    for rows, cluster_terms in zip(groups, terms, strict=True):
        members = points[rows]
        centroid = normalise(members.mean(axis=0, keepdims=True))[0]
        cohesion = float((members @ centroid).mean())
        parent, parent_score = suggest_parent(members, labels, params.max_parent_depth)
        if parent not in sibling_names:
            sibling_names[parent] = [
                labels.taxonomy.path(c).leaf for c in labels.taxonomy.children.get(parent, [])
            ] if parent is not None else []
        name = suggest_name(cluster_terms, sibling_names[parent])
        sibling_names[parent].append(name)
        drafts.append(
            ProposalDraft(
                member_ids=[creative_ids[i] for i in rows.tolist()],
                suggested_name=name,
                suggested_parent_id=parent,
                parent_score=parent_score,
                terms=cluster_terms,
                cohesion=cohesion,
                density=float(len(rows)),
                centroid=centroid,
            )
        )
    drafts.sort(key=lambda d: (-len(d.member_ids), -d.cohesion))
    return drafts
