"""Opening Qdrant: a server when a URL is given, else embedded local mode, which one process may open."""

from __future__ import annotations

from pathlib import Path

from qdrant_client import QdrantClient

from ctax.errors import IndexLocked


def open_qdrant(url: str | None, path: Path | None, api_key: str | None = None) -> QdrantClient:
    """A server client when a URL is given; otherwise embedded local mode, which one process may open."""
    if url:
        return QdrantClient(url=url, api_key=api_key, timeout=30)
    if path is None:
        return QdrantClient(location=":memory:")
    path.mkdir(parents=True, exist_ok=True)
    try:
        return QdrantClient(path=str(path))
    except RuntimeError as exc:
        if "already accessed" in str(exc):
            raise IndexLocked(
                f"the embedded vector index at {path} is open in another process (the worker owns it). "
                "Send the work to the worker, or set CTAX_QDRANT_URL to a Qdrant server so every process "
                "can open the index."
            ) from exc
        raise
