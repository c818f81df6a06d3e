"""Model versions: artefact directories on disk, rows in the database, and the rules for promotion.

Exactly one version is active. A version moves building -> candidate -> active -> retired, or to failed.
Promotion is refused when the candidate scored worse than the active version on the same held-out data,
unless forced; rollback re-promotes the version that was active before.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from typing import Any

from ctax.config import Settings
from ctax.enums import VersionKind, VersionStatus
from ctax.errors import Conflict, NotFound
from ctax.jobs import ACTIVATE_VERSION
from ctax.store.models import ModelVersion
from ctax.store.outbox import enqueue
from ctax.store.repos import versions
from ctax.store.session import Session
from ctax.store.types import utcnow

# The figures that decide "better": all three matter to users, so a candidate must not trade one for another.
COMPARED_METRICS = ("top1", "novelty_auroc", "wrong_label_auroc")
TOLERANCE = 0.005


def active_version(session: Session) -> ModelVersion | None:
    return versions.active(session)


def all_versions(session: Session) -> list[ModelVersion]:
    return versions.newest_first(session)


def get_version(session: Session, version_id: str) -> ModelVersion:
    version = versions.get(session, version_id)
    if version is None:
        raise NotFound(f"no model version {version_id!r}")
    return version


def new_version(
    session: Session, settings: Settings, kind: VersionKind, training_run_id: int | None = None
) -> ModelVersion:
    """A new version, building, with an empty artefact directory of its own."""
    kind = VersionKind(kind)
    seq = versions.next_seq(session)
    version_id = f"v{seq}-{kind.value}"
    directory = settings.model_dir / version_id
    if directory.exists():  # left by a crashed build of an earlier database: never reuse its files
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    version = ModelVersion(
        id=version_id,
        seq=seq,
        kind=kind,
        status=VersionStatus.BUILDING,
        artefact_dir=str(directory),
        training_run_id=training_run_id,
    )
    session.add(version)
    session.flush()
    return version


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
    if version.status == VersionStatus.ACTIVE:
        raise Conflict(f"{version.id} is already active")
    if version.status not in (VersionStatus.CANDIDATE, VersionStatus.RETIRED):
        raise Conflict(f"{version.id} is {version.status}; only a candidate or a retired version can be promoted")
    if not version.index_ready:
        raise Conflict(f"{version.id} has no index collections yet; wait for its build to finish")
    if not force and version.status == VersionStatus.CANDIDATE and version.comparison:
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
        previous.status = VersionStatus.RETIRED
    version.status = VersionStatus.ACTIVE
    version.promoted_at = utcnow()
    session.flush()
    return previous


def promote(session: Session, version: ModelVersion, force: bool = False) -> ModelVersion | None:
    """Check, make active and queue the index swap, in the caller's transaction; returns the previous version.
    The API and the command line both promote (and roll back) through here."""
    check_promotable(session, version, force)
    previous = mark_active(session, version)
    enqueue(session, ACTIVATE_VERSION, version.id)
    return previous


def rollback_target(session: Session) -> ModelVersion:
    """The version that was active before the current one."""
    current = active_version(session)
    target = versions.last_retired_before(session, current.promoted_at if current is not None else None)
    if target is None:
        raise Conflict("there is no earlier active version to roll back to")
    return target
