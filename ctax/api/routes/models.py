"""Model versions: list, inspect, promote, roll back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ctax.api.deps import Admin, DbDep, Reviewer
from ctax.api.params import RequestBody, VersionId
from ctax.api.web.cards import card_page
from ctax.store.models import ModelVersion
from ctax.store.repos import versions
from ctax.store.session import Session
from ctax.versions import registry

router = APIRouter(prefix="/v1/models", tags=["models"])


class PromoteIn(RequestBody):
    force: bool = False


def version_view(version: ModelVersion) -> dict[str, Any]:
    metrics = dict(version.metrics or {})
    calibration = metrics.pop("calibration", None) or {}
    backends = metrics.pop("backends", None) or {}
    return {
        "id": version.id,
        "kind": version.kind,
        "status": version.status,
        "created_at": version.created_at,
        "promoted_at": version.promoted_at,
        "index_ready": version.index_ready,
        "training_run_id": version.training_run_id,
        "metrics": metrics,
        "comparison": version.comparison,
        "error": version.error,
        "thresholds": {
            "new_label": (version.thresholds or {}).get("new_label"),
            "wrong_label": (version.thresholds or {}).get("wrong_label"),
            "per_label_wrong": len((version.thresholds or {}).get("per_label_wrong") or {}),
            "margin": (version.thresholds or {}).get("margin"),
            "exemplar_weight": (version.thresholds or {}).get("exemplar_weight"),
            "duplicate_similarity": (version.thresholds or {}).get("duplicate_similarity"),
            # From which similarity recent creatives are variants, no novelty evidence (None: the fixed 0.88).
            "variant_similarity": (version.thresholds or {}).get("variant_similarity"),
            # Whether its traffic counts each campaign once (novelty.one_per_campaign): a burst reads as one ad.
            "campaigns_once": bool((version.thresholds or {}).get("campaigns_once")),
            # Which novelty score the fit is: the learned one's coefficients are in the version's thresholds.
            "novelty_score": "learned" if (version.thresholds or {}).get("novelty_model") else "blend",
            # Creatives whose text was read by OCR: their own thresholds (None: the supplied-text ones serve), and
            # whether their novelty score is their own (fitted on OCR-like readings) or the shared one.
            "ocr_new_label": (version.thresholds or {}).get("ocr_new_label"),
            "ocr_wrong_label": (version.thresholds or {}).get("ocr_wrong_label"),
            "ocr_novelty_score": "ocr" if (version.thresholds or {}).get("ocr_novelty_model") else "shared",
            "source": (version.thresholds or {}).get("source"),
        },
        "calibration": {
            name: {k: v for k, v in (calibration.get(name) or {}).items() if not isinstance(v, dict)}
            for name in ("new_label", "wrong_label", "low_confidence")
            if calibration.get(name)
        }
        | {"n_validation": calibration.get("n_validation"),
           "novelty_scorer": (calibration.get("new_label") or {}).get("scorer")},
        "backend": backend_view(backends),
        "config": version.config,
        "model_card": f"{version.artefact_dir}/MODEL_CARD.md",
    }


def backend_view(summary: dict[str, Any]) -> dict[str, Any]:
    """Which backend serves the version (under the CTAX_BACKEND it was built with), its speed and accuracy against
    torch, measured when the version was built; `auto_choice` is what CTAX_BACKEND=auto serves."""
    name = summary.get("serves") or summary.get("backend") or "torch"
    measured = summary.get("measured") or {}
    row = measured.get(name) or {}
    return {
        "serves": name,
        "reason": summary.get("reason", "no exported backends: built with CTAX_BACKEND=torch or before backends"),
        "setting": summary.get("setting"),
        "auto_choice": summary.get("backend"),
        "creatives_per_s": row.get("per_s"),
        "speedup": row.get("speedup"),
        "accuracy_delta": {metric: -loss for metric, loss in (row.get("loss") or {}).items()},
        "cosine_to_torch": row.get("cosine"),
        "basis": summary.get("basis"),
        "tolerance": summary.get("tolerance"),
        "measured": measured,
    }


@router.get("")
def list_models(_: Reviewer, db: DbDep) -> dict[str, Any]:
    with db.read() as session:
        return {"items": [version_view(v) for v in versions.newest_first(session)]}


@router.get("/{version_id}")
def get_model(version_id: VersionId, _: Reviewer, db: DbDep) -> dict[str, Any]:
    with db.read() as session:
        return version_view(registry.get_version(session, version_id))


@router.get("/{version_id}/card", response_class=HTMLResponse)
def get_model_card(version_id: VersionId, request: Request, _: Reviewer, db: DbDep) -> HTMLResponse:
    """The model card as a page: headline figures, thresholds and the pictures drawn when the card was written."""
    with db.read() as session:
        version = registry.get_version(session, version_id)
        view, directory = version_view(version), Path(version.artefact_dir)
    return card_page(request, view, directory)


def _promote(session: Session, version: ModelVersion, force: bool) -> dict[str, Any]:
    previous = registry.promote(session, version, force)
    return {**version_view(version), "previous": previous.id if previous else None}


@router.post("/{version_id}/promote")
def promote(version_id: VersionId, _: Admin, db: DbDep, body: PromoteIn | None = None) -> dict[str, Any]:
    """Make a candidate (or an earlier version) active; refused when it scored worse, unless forced."""
    with db.write() as session:
        return _promote(session, registry.get_version(session, version_id), bool(body and body.force))


@router.post("/rollback")
def rollback(_: Admin, db: DbDep) -> dict[str, Any]:
    """Re-activate the version that was active before the current one."""
    with db.write() as session:
        return _promote(session, registry.rollback_target(session), True)
