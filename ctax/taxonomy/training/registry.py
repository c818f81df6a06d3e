"""Model versions: artefact directories on disk, rows in the database, and the rules for promotion.

Exactly one version is active. A version moves building -> candidate -> active -> retired, or to failed.
Promotion is refused when the candidate scored worse than the active version on the same held-out data,
unless forced; rollback re-promotes the version that was active before.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ctax.taxonomy.config import Settings
from ctax.taxonomy.db.models import ModelVersion, utcnow
from ctax.taxonomy.embedding.space import ImageConfig, SpaceConfig
from ctax.taxonomy.errors import Conflict, InvalidInput, NotFound

# The figures that decide "better": all three matter to users, so a candidate must not trade one for another.
COMPARED_METRICS = ("top1", "novelty_auroc", "wrong_label_auroc")
TOLERANCE = 0.005


def active_version(session: Session) -> ModelVersion | None:
    return session.scalar(select(ModelVersion).where(ModelVersion.status == "active"))


def get_version(session: Session, version_id: str) -> ModelVersion:
    version = session.get(ModelVersion, version_id)
    if version is None:
        raise NotFound(f"no model version {version_id!r}")
    return version


def new_version(session: Session, settings: Settings, kind: str, training_run_id: int | None = None) -> ModelVersion:
    seq = (session.scalar(select(func.max(ModelVersion.seq))) or 0) + 1
    version_id = f"v{seq}-{kind}"
    directory = settings.model_dir / version_id
    if directory.exists():  # left by a crashed build of an earlier database: never reuse its files
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    version = ModelVersion(
        id=version_id,
        seq=seq,
        kind=kind,
        status="building",
        artefact_dir=str(directory),
        training_run_id=training_run_id,
    )
    session.add(version)
    session.flush()
    return version


def pretrained_config(settings: Settings, version_id: str) -> SpaceConfig:
    image = None
    if settings.image_enabled:
        image = ImageConfig(
            arch=settings.image_arch, pretrained=settings.image_pretrained, projection=settings.image_projection
        )
    return SpaceConfig(
        version=version_id,
        kind="pretrained",
        text_model=settings.resolved_text_model(),
        label_template=settings.label_template,
        image=image,
    )


def is_better(candidate: Mapping[str, Any], baseline: Mapping[str, Any]) -> tuple[bool, list[str]]:
    """Better means no compared metric drops by more than TOLERANCE and at least one rises."""
    reasons: list[str] = []
    rises = False
    for name in COMPARED_METRICS:
        new, old = candidate.get(name), baseline.get(name)
        if new is None or old is None:
            continue
        if new < old - TOLERANCE:
            reasons.append(f"{name} drops from {old:.3f} to {new:.3f}")
        elif new > old + TOLERANCE:
            rises = True
    if not reasons and not rises:
        reasons.append(f"no compared metric improves by more than {TOLERANCE}")
    return (not reasons), reasons


def check_promotable(session: Session, version: ModelVersion, force: bool) -> None:
    if version.status == "active":
        raise Conflict(f"{version.id} is already active")
    if version.status not in ("candidate", "retired"):
        raise Conflict(f"{version.id} is {version.status}; only a candidate or a retired version can be promoted")
    if not version.index_ready:
        raise Conflict(f"{version.id} has no index collections yet; wait for its build to finish")
    if not force and version.status == "candidate" and version.comparison:
        better, reasons = version.comparison.get("better"), version.comparison.get("reasons", [])
        if better is False:
            raise Conflict(
                f"{version.id} is worse than the active version: {'; '.join(reasons)}. "
                "Promote with force=true to override.",
                comparison=version.comparison,
            )


def mark_active(session: Session, version: ModelVersion) -> ModelVersion | None:
    """The database half of a promotion; the worker swaps the index aliases when it sees the change."""
    previous = active_version(session)
    if previous is not None and previous.id != version.id:
        previous.status = "retired"
    version.status = "active"
    version.promoted_at = utcnow()
    session.flush()
    return previous


def promote(session: Session, version: ModelVersion, force: bool = False) -> ModelVersion | None:
    """Check, make active and queue the index swap, in the caller's transaction; returns the previous version.
    The API and the command line both promote (and roll back) through here."""
    from ctax.taxonomy.outbox import ACTIVATE_VERSION, enqueue

    check_promotable(session, version, force)
    previous = mark_active(session, version)
    enqueue(session, ACTIVATE_VERSION, version.id)
    return previous


def rollback_target(session: Session) -> ModelVersion:
    current = active_version(session)
    query = select(ModelVersion).where(ModelVersion.status == "retired", ModelVersion.promoted_at.is_not(None))
    if current is not None and current.promoted_at is not None:
        query = query.where(ModelVersion.promoted_at < current.promoted_at)
    target = session.scalar(query.order_by(ModelVersion.promoted_at.desc()).limit(1))
    if target is None:
        raise Conflict("there is no earlier active version to roll back to")
    return target


def write_json(directory: Path, name: str, data: Any) -> None:
    (directory / name).write_text(json.dumps(data, indent=2, sort_keys=True, default=str))


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _calibration_lines(calibration: Any, trained: bool) -> list[str]:
    """The calibration report in words: which thresholds were chosen and what they gave on held-out data."""
    if not isinstance(calibration, Mapping):
        return []
    lines = ["", "## Calibration", ""]
    novelty = calibration.get("new_label") or {}
    if novelty:
        lines.append(f"- `new_label` threshold {_cell(novelty.get('threshold'))}: precision "
                     f"{_cell(novelty.get('precision'))}, recall {_cell(novelty.get('recall'))}, AUROC "
                     f"{_cell(novelty.get('auroc'))} ({novelty.get('method', '')}); exemplar fit weight "
                     f"{novelty.get('exemplar_fit_weight')}")
        if trained:
            # Measured on the Pitt benchmark (docs/benchmarks.md): 0.95 here, 0.90 on labels never trained on.
            lines.append("- the novelty figures above remove labels this version was trained on; for labels it "
                         "never saw they are optimistic (docs/benchmarks.md measures how much)")
        scorer = novelty.get("scorer") or {}
        if scorer:
            lines.append(f"- novelty score: {scorer.get('chosen')} (AUROC of the exemplar blend "
                         f"{_cell(scorer.get('blend_auroc'))}, of the learned score under cross-validation by "
                         f"label {_cell(scorer.get('learned_cv_auroc'))})")
            if "traffic_minus_exemplar" in (scorer.get("features") or []):
                lines.append("- the learned score weighs recent traffic (creatives like this one that arrived "
                             "lately against labelled ones like it); these figures let the validation creatives "
                             "play a full traffic window, which a creative arriving early does not have (the "
                             "novelty sweep re-decides it later)")
    wrong = calibration.get("wrong_label") or {}
    if wrong:
        lines.append(f"- `wrong_label` threshold {_cell(wrong.get('threshold'))} ({wrong.get('per_label', 0)} "
                     f"per-label): precision {_cell(wrong.get('precision'))}, recall {_cell(wrong.get('recall'))}, "
                     f"AUROC {_cell(wrong.get('auroc'))} ({wrong.get('method', '')})")
    low = calibration.get("low_confidence") or {}
    if low:
        lines.append(f"- `low_confidence` margin {_cell(low.get('margin'))}: flags {_cell(low.get('flagged_share'))} "
                     f"of creatives, error rate {_cell(low.get('error_rate_flagged'))} among them against "
                     f"{_cell(low.get('error_rate_unflagged'))} elsewhere")
    weight = calibration.get("exemplar_weight") or {}
    if weight:
        lines.append(f"- exemplar weight in the ranking: {weight.get('chosen')}")
    return lines if len(lines) > 3 else []


def write_model_card(version: ModelVersion, extra: Mapping[str, Any] | None = None) -> Path:
    directory = Path(version.artefact_dir)
    config = version.config or {}
    lines = [
        f"# Model card: {version.id}",
        "",
        f"- kind: {version.kind}",
        f"- status when written: {version.status}",
        f"- created: {version.created_at:%Y-%m-%d %H:%M UTC}" if version.created_at else "",
        f"- text tower: `{config.get('text_model')}`",
        f"- image tower: `{(config.get('image') or {}).get('arch', 'none')}`",
        f"- label template: `{config.get('label_template')}`",
        "",
        "## Metrics (held-out data)",
        "",
    ]
    metrics = version.metrics or {}
    scalars = {k: v for k, v in metrics.items() if not isinstance(v, Mapping | list)}
    if scalars:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in sorted(scalars.items())]
    else:
        lines.append("No labelled held-out data was available; thresholds are the documented defaults.")
    lines += _calibration_lines(metrics.get("calibration"), trained=version.kind == "trained")
    lines += ["", "## Thresholds", "", "```json", json.dumps(version.thresholds or {}, indent=2)[:4000], "```"]
    comparison = version.comparison or {}
    if comparison.get("candidate") and comparison.get("active"):
        verdict = "better" if comparison.get("better") else "not better"
        lines += ["", f"## Compared with the active version ({comparison.get('against')}): {verdict}", "",
                  f"| metric | this version | {comparison.get('against')} |", "|---|---|---|"]
        lines += [f"| {k} | {_cell(v)} | {_cell(comparison['active'].get(k))} |"
                  for k, v in comparison["candidate"].items()]
        lines += ["", *[f"- {reason}" for reason in comparison.get("reasons") or []]]
    for title, body in (extra or {}).items():
        lines += ["", f"## {title}", "", str(body)]
    path = directory / "MODEL_CARD.md"
    path.write_text("\n".join(line for line in lines if line is not None) + "\n")
    return path


def validate_artefact(directory: Path) -> None:
    """A quick structural check before anything loads the weights."""
    if not directory.is_dir():
        raise InvalidInput(f"model artefact directory {directory} does not exist")
    SpaceConfig.read(directory)
