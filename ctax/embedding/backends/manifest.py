"""`backends.json` in a version's artefact directory: the exported files with their sha256, what each tower's
export needs to run (input names, preprocessing), what was measured per backend, and which backend was chosen.

A file is checked against its recorded sha256 before it is loaded, so an altered or truncated export is refused
with its name instead of labelling creatives with whatever it computes."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ctax.embedding.backends.spec import BackendFileError, Modality, spec

MANIFEST_FILE = "backends.json"
FORMAT_VERSION = 1
_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Manifest:
    # backend -> tower -> [{"path": relative path, "sha256": ..., "bytes": ...}]
    files: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    # tower -> what its exports need at run time (text: input names; image: preprocessing config, dim)
    towers: dict[str, dict[str, Any]] = field(default_factory=dict)
    # backend -> measured figures (ctax/versions/backends.py writes them)
    measurements: dict[str, dict[str, Any]] = field(default_factory=dict)
    # {"backend": ..., "setting": ..., "reason": ..., ...}: which backend serves this version under `auto`
    choice: dict[str, Any] = field(default_factory=dict)

    @property
    def chosen(self) -> str:
        return str(self.choice.get("backend") or "torch")

    def has(self, backend: str, modality: Modality) -> bool:
        return bool(self.files.get(backend, {}).get(modality))

    def record(self, directory: Path, backend: str, modality: Modality) -> None:
        """Record the files an export just wrote (their digests are what later loads are checked against)."""
        entries = []
        for relative in spec(backend).files(modality):
            path = directory / relative
            entries.append({"path": relative, "sha256": sha256_of(path), "bytes": path.stat().st_size})
        self.files.setdefault(backend, {})[modality] = entries

    def verified(self, directory: Path, backend: str, modality: Modality) -> Path:
        """The model file of `backend` for one tower, after every file it needs matched its recorded sha256."""
        entries = self.files.get(backend, {}).get(modality)
        if not entries:
            raise BackendFileError(f"{directory / MANIFEST_FILE} lists no {backend} file for the {modality} tower")
        for entry in entries:
            path = directory / entry["path"]
            if not path.is_file():
                raise BackendFileError(f"exported {backend} file {path} is missing")
            found = sha256_of(path)
            if found != entry["sha256"]:
                raise BackendFileError(
                    f"exported {backend} file {path} is corrupt: sha256 {found[:12]}... differs from the "
                    f"{entry['sha256'][:12]}... recorded when the version was built")
        return directory / str(entries[0]["path"])

    def write(self, directory: Path) -> None:
        data = {"format_version": FORMAT_VERSION, **asdict(self)}
        temporary = directory / f".{MANIFEST_FILE}.tmp"
        temporary.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
        temporary.replace(directory / MANIFEST_FILE)  # a reader never sees half a manifest

    @classmethod
    def read(cls, directory: Path) -> Manifest | None:
        """None when the version has no exported backends (built with torch only, or before backends existed)."""
        path = directory / MANIFEST_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"unsupported format_version {data.get('format_version')}")
            return cls(files=dict(data.get("files") or {}), towers=dict(data.get("towers") or {}),
                       measurements=dict(data.get("measurements") or {}), choice=dict(data.get("choice") or {}))
        except (ValueError, TypeError, AttributeError) as exc:
            raise BackendFileError(f"{path} is unreadable: {exc}") from exc
