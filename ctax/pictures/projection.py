"""Vectors of the shared space laid out in two dimensions: UMAP (cosine), or PCA where UMAP cannot run.

UMAP needs a neighbourhood graph: with a handful of points (a new deployment, a test) its spectral start fails or
means nothing, so below MIN_UMAP_POINTS the layout is PCA's, and the map says which it is."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

MIN_UMAP_POINTS = 20
NEIGHBOURS = 15


@dataclass(frozen=True)
class Layout:
    xy: np.ndarray  # (n, 2), scaled into [0, 1] on both axes
    method: str  # "umap" or "pca"
    note: str


def _unit(xy: np.ndarray) -> np.ndarray:
    low, high = xy.min(axis=0), xy.max(axis=0)
    span = np.where(high - low > 0, high - low, 1.0)
    return np.asarray((xy - low) / span, dtype=np.float64)


def pca(vectors: np.ndarray) -> np.ndarray:
    """The first two principal components (an SVD of the centred vectors: two lines, no model to fit)."""
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    if len(vectors) < 2:
        return np.zeros((len(vectors), 2))
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ components[:2].T
    return np.asarray(xy if xy.shape[1] == 2 else np.c_[xy, np.zeros(len(xy))])


def project(vectors: np.ndarray, seed: int = 13) -> Layout:
    """Two coordinates per vector; UMAP when there are enough points, PCA otherwise or if UMAP fails."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if len(vectors) == 0:
        return Layout(np.zeros((0, 2)), "pca", "nothing to draw yet")
    if len(vectors) < MIN_UMAP_POINTS:
        return Layout(_unit(pca(vectors)), "pca",
                      f"PCA: {len(vectors)} points are too few for UMAP (it needs {MIN_UMAP_POINTS})")
    try:
        import umap  # imported here: numba compiles it on first use, which only the index owner should pay

        reducer = umap.UMAP(n_components=2, n_neighbors=min(NEIGHBOURS, len(vectors) - 1), metric="cosine",
                            random_state=seed, init="spectral", n_jobs=1)
        xy = np.asarray(reducer.fit_transform(vectors))
    except Exception as exc:  # a degenerate set (many identical vectors) can defeat UMAP; PCA still draws it
        log.warning("UMAP failed on %d points (%s); drawing the map with PCA", len(vectors), exc)
        return Layout(_unit(pca(vectors)), "pca", f"PCA: UMAP could not lay out these points ({exc})")
    return Layout(_unit(xy), "umap", f"UMAP (cosine, {min(NEIGHBOURS, len(vectors) - 1)} neighbours)")
