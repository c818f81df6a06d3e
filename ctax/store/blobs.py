"""Content-addressed image storage: a blob's name is its sha256, so the same image is stored once."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from ctax.errors import NotFound


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, digest: str) -> Path:
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise NotFound(f"no blob {digest!r}")
        return self.root / digest[:2] / digest

    def put(self, data: bytes) -> str:
        return self.store(data)[0]

    def store(self, data: bytes) -> tuple[str, bool]:
        """(digest, whether this call created the blob): a caller whose transaction then fails removes only
        the blobs it created (`discard`), never one an earlier creative already uses."""
        digest = hashlib.sha256(data).hexdigest()
        path = self._path(digest)
        if path.exists():
            return digest, False
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a reader never sees half a file and a crash leaves no partial blob.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return digest, True

    def discard(self, digest: str) -> None:
        self._path(digest).unlink(missing_ok=True)

    def get(self, digest: str) -> bytes:
        path = self._path(digest)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(f"no blob {digest}") from exc

    def exists(self, digest: str) -> bool:
        return self._path(digest).exists()
