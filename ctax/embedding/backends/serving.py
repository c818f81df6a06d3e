"""Which backend serves a version on this worker, and its towers opened from the version's exported files.

The rule for a setting the version cannot honour: `auto` falls back to torch with the reason logged (auto promises
the best available, and torch always is); a backend named explicitly (CTAX_BACKEND=onnx) that the version lacks or
this device cannot run stops the load with one line saying why, because an operator who named it expects it. A
corrupt exported file is refused under either setting (BackendFileError names the file)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ctax.embedding.backends.engines import Engine
from ctax.embedding.backends.image import ExportedImageEncoder
from ctax.embedding.backends.manifest import Manifest
from ctax.embedding.backends.spec import BACKENDS, BackendUnavailable, Modality, runs_on, spec
from ctax.embedding.backends.text import ExportedTextEncoder
from ctax.embedding.text import TextEncoder

TORCH = "torch"


@dataclass(frozen=True)
class Selected:
    backend: str
    reason: str


def select(manifest: Manifest | None, setting: str, device: str, version: str) -> Selected:
    """The backend that serves `version` under `setting` on `device`; raises BackendUnavailable for a named
    backend the version lacks or the device cannot run."""
    if setting == TORCH:
        return Selected(TORCH, "CTAX_BACKEND=torch")
    exported = sorted(manifest.files) if manifest else []
    if setting == "auto":
        if manifest is None:
            return Selected(TORCH, f"auto: {version} has no exported backends (built before them, with "
                                   "CTAX_BACKEND=torch, or on a device none of them runs on)")
        chosen = manifest.chosen
        if chosen != TORCH and not runs_on(chosen, device):  # type: ignore[arg-type]
            return Selected(TORCH, f"auto: {version}'s chosen {chosen} cannot run on {device}; torch serves")
        return Selected(chosen, f"auto: {manifest.choice.get('reason', 'chosen when the version was built')}")
    if setting not in BACKENDS:
        raise BackendUnavailable(f"CTAX_BACKEND={setting} is not a backend; one of auto, {', '.join(BACKENDS)}")
    if setting not in exported:
        raise BackendUnavailable(
            f"CTAX_BACKEND={setting}: model version {version} has no {setting} export (it has: "
            f"{', '.join(['torch', *exported])}); set CTAX_BACKEND=auto, or build a version with {setting}")
    if not runs_on(setting, device):
        raise BackendUnavailable(f"CTAX_BACKEND={setting} cannot run on {device} (OpenVINO runs on CPUs only)")
    return Selected(setting, f"CTAX_BACKEND={setting}")


def engine(directory: Path, manifest: Manifest, backend: str, modality: Modality, device: str) -> Engine:
    """One tower's engine, its files checked against their recorded sha256 first."""
    return Engine(spec(backend), manifest.verified(directory, backend, modality), device)


def exported_text(text: TextEncoder, directory: Path, manifest: Manifest, backend: str,
                  device: str) -> ExportedTextEncoder:
    """The text tower on `backend`, keeping the torch model's tokeniser (its weights stay loaded, unused)."""
    return ExportedTextEncoder(text.model, text.name, engine(directory, manifest, backend, "text", device))


def exported_image(directory: Path, manifest: Manifest, backend: str, device: str) -> ExportedImageEncoder | None:
    """The image tower on `backend`, or None when the version exported no image tower."""
    tower = manifest.towers.get("image")
    if not tower or not manifest.has(backend, "image"):
        return None
    return ExportedImageEncoder(engine(directory, manifest, backend, "image", device), dict(tower["preprocess"]),
                                int(tower["dim"]))
