"""A version's card pictures: PNGs under <artefact dir>/card/ and card.json, the manifest the API's card page
reads (which figures, their titles and captions, the notes on what is missing, the headline figures)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ctax.pictures.figures import draw_all

CARD_DIR = "card"
MANIFEST = "card.json"
LOSS_HISTORY = Path("text") / "loss_history.json"  # written by ctax.training.text beside the trained tower


def read_loss(directory: Path) -> list[dict[str, float]] | None:
    """The training loss a trained version's text tower logged, or None (pretrained, or trained before it was kept)."""
    path = directory / LOSS_HISTORY
    if not path.is_file():
        return None
    rows = json.loads(path.read_text())
    return [row for row in rows if isinstance(row, dict) and "step" in row and "loss" in row] or None


def write_card_pictures(version_id: str, kind: str, directory: Path, metrics: Mapping[str, Any] | None
                        ) -> dict[str, Any]:
    """Draw the card's figures from the calibration summary kept in the version's metrics; returns the manifest."""
    metrics = metrics or {}
    calibration = metrics.get("calibration") or {}
    out = directory / CARD_DIR
    loss = read_loss(directory)
    pictures, notes = draw_all(calibration.get("figures"), loss, out,
                               novel_name="simulated new-label creatives (own label removed)")
    if kind == "trained" and loss is None:
        notes[-1] = "No training loss curve: this version was trained before training losses were kept."
    manifest = {
        "version": version_id,
        "kind": kind,
        "pictures": [asdict(p) for p in pictures],
        "notes": notes,
        "headline": {k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)},
        "n_validation": calibration.get("n_validation"),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest
