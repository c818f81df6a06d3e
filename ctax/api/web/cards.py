"""The model card as a page: the figures ctax.pictures drew when the version's card was written, with its
headline figures and thresholds. The API only reads those files (it never draws); the PNGs are inlined as data:
URIs, so the page is one authenticated request and a saved copy is whole, under the review page's CSP."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from ctax.api.web import SECURITY_HEADERS, asset_version, templates

CARD_DIR = "card"  # as ctax.pictures.card writes it (the API may not import that package)
MANIFEST = "card.json"


def _figures(directory: Path, manifest: dict[str, Any]) -> list[dict[str, str]]:
    shown = []
    for picture in manifest.get("pictures") or []:
        path = directory / Path(str(picture.get("file", ""))).name  # never a path out of the card folder
        if path.suffix == ".png" and path.is_file():
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            shown.append({**picture, "src": f"data:image/png;base64,{data}"})
    return shown


def card_page(request: Request, view: dict[str, Any], artefact_dir: Path) -> HTMLResponse:
    """The card of the version `view` (as GET /v1/models/{id} shows it); a version whose pictures were never
    drawn (written before cards had them) says so and how to get them."""
    directory = artefact_dir / CARD_DIR
    manifest_path = directory / MANIFEST
    manifest: dict[str, Any] = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    notes = list(manifest.get("notes") or [])
    if not manifest:
        notes.append("This version's card has no pictures yet: they are drawn when its card is written "
                     "(calibration of a pretrained version, or the end of a training run).")
    context = {"version": asset_version(), "model": view, "figures": _figures(directory, manifest), "notes": notes,
               "metrics": {k: v for k, v in (view.get("metrics") or {}).items() if isinstance(v, int | float)},
               "thresholds": {k: v for k, v in (view.get("thresholds") or {}).items() if v is not None}}
    return templates.TemplateResponse(request, "card.html", context, headers=SECURITY_HEADERS)
