"""The relational schema. Created only by Alembic migrations (ctax/migrations)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ctax.enums import (
    AccountKind,
    AnnotationKind,
    CreativeStatus,
    Flag,
    LabelStatus,
    ProposalStatus,
    ReviewStatus,
    Role,
    RunStatus,
    Source,
    VersionKind,
    VersionStatus,
)
from ctax.store.types import Base, JSONType, StrEnumType, UTCDateTime, new_id, utcnow


class Label(Base):
    __tablename__ = "labels"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(String(1800), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id"), index=True)
    depth: Mapped[int] = mapped_column(Integer)
    description: Mapped[str | None] = mapped_column(Text)
    iab_id: Mapped[str | None] = mapped_column(String(32), index=True)
    status: Mapped[LabelStatus] = mapped_column(StrEnumType(LabelStatus), default=LabelStatus.ACTIVE, index=True)
    source: Mapped[Source] = mapped_column(StrEnumType(Source), default=Source.API)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    parent: Mapped[Label | None] = relationship(remote_side=[id])


class Account(Base):
    """An advertiser or a partner: the owner of the creatives its poster keys send. Imported training data and
    reviewer or admin keys belong to none."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[AccountKind] = mapped_column(StrEnumType(AccountKind))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set while an admin has the account suspended: its poster keys are refused (403) until it is resumed.
    suspended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Set when an admin asked for the account to be erased (suspended too): a worker deletes its creatives, then it.
    erasing_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Its own rate limits and quotas by what they count ({"creatives": "60000/minute", "searches": "none"},
    # {"creatives": 100000}); a kind it lacks (or NULL) follows the service's (CTAX_RATE_LIMIT_*, CTAX_QUOTA_*).
    rate_limits: Mapped[dict[str, str] | None] = mapped_column(JSONType)
    quotas: Mapped[dict[str, int | str] | None] = mapped_column(JSONType)
    creatives_held: Mapped[int | None] = mapped_column(Integer)  # counted while a quota applies (repos/accounts.py)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(StrEnumType(Role))
    # A poster key's account (required for posters, none for reviewers and admins: they see every account).
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    account: Mapped[Account | None] = relationship()


class Creative(Base):
    __tablename__ = "creatives"
    __table_args__ = (
        # Idempotency keys are the account's; a key without an account (staff posting) has its own.
        UniqueConstraint("account_id", "idempotency_key", name="uq_creatives_idempotency"),
        UniqueConstraint("api_key_id", "idempotency_key", name="uq_creatives_key_idempotency"),
        Index("ix_creatives_status_dispatched", "status", "dispatched_at"),
        Index("ix_creatives_account_created", "account_id", "created_at"),  # a poster's list, newest first
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    external_id: Mapped[str | None] = mapped_column(String(200), index=True)
    # The poster's campaign (an ad server's campaign id): its creatives are no novelty evidence for each other.
    campaign: Mapped[str | None] = mapped_column(String(200), index=True)
    # The poster's account; none for imported data and for what reviewers or admins post.
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[Source] = mapped_column(StrEnumType(Source), default=Source.API)
    status: Mapped[CreativeStatus] = mapped_column(StrEnumType(CreativeStatus), default=CreativeStatus.QUEUED,
                                                   index=True)
    texts: Mapped[list[str]] = mapped_column(JSONType, default=list)
    ocr_text: Mapped[str | None] = mapped_column(Text)
    image_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    image_mime: Mapped[str | None] = mapped_column(String(32))
    image_width: Mapped[int | None] = mapped_column(Integer)
    image_height: Mapped[int | None] = mapped_column(Integer)
    asserted_label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id"), index=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    dispatched_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    labelled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    model_version_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.id"))
    prediction: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    decided_label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id"), index=True)
    flag: Mapped[Flag | None] = mapped_column(StrEnumType(Flag), index=True)
    # Near-duplicate groups (ctax/labelling/duplicates.py): the root of the group this creative joined when it was
    # labelled (none: it is a root or in no group), and the hash of its normalised texts that exact text duplicates
    # are found by (written when it is labelled; exact image duplicates are found by image_sha256).
    duplicate_of: Mapped[str | None] = mapped_column(ForeignKey("creatives.id", ondelete="SET NULL"), index=True)
    text_sha256: Mapped[str | None] = mapped_column(String(64), index=True)

    asserted_label: Mapped[Label | None] = relationship(foreign_keys=[asserted_label_id])
    decided_label: Mapped[Label | None] = relationship(foreign_keys=[decided_label_id])


class Annotation(Base):
    """Ground truth for a creative: imported, or a reviewer's decision. The latest one per creative counts;
    earlier ones stay as history. kind=reject means 'not a creative we label' (no label)."""

    __tablename__ = "annotations"
    __table_args__ = (Index("ix_annotations_creative_created", "creative_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    creative_id: Mapped[str] = mapped_column(ForeignKey("creatives.id", ondelete="CASCADE"))
    label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id"), index=True)
    kind: Mapped[AnnotationKind] = mapped_column(StrEnumType(AnnotationKind), default=AnnotationKind.LABEL)
    source: Mapped[Source] = mapped_column(StrEnumType(Source))
    decision_id: Mapped[int | None] = mapped_column(ForeignKey("review_decisions.id"))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    creative: Mapped[Creative] = relationship()


class ReviewItem(Base):
    __tablename__ = "review_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    creative_id: Mapped[str] = mapped_column(ForeignKey("creatives.id", ondelete="CASCADE"), unique=True)
    flag: Mapped[Flag] = mapped_column(StrEnumType(Flag), index=True)
    status: Mapped[ReviewStatus] = mapped_column(StrEnumType(ReviewStatus), default=ReviewStatus.OPEN, index=True)
    suggested_label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id"), index=True)
    asserted_label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id"), index=True)
    top_score: Mapped[float | None] = mapped_column(Float)
    priority: Mapped[float] = mapped_column(Float, default=0.0, index=True)
    priority_reason: Mapped[str | None] = mapped_column(Text)
    model_version_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.id"))
    claimed_by: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    claim_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    proposal_id: Mapped[int | None] = mapped_column(ForeignKey("proposals.id"), index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The creatives this item stands for: its creative and the members of its creative's duplicate group.
    members: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    creative: Mapped[Creative] = relationship()

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class ReviewDecision(Base):
    """The audit trail: who decided what, when, and what the item looked like before."""

    __tablename__ = "review_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    review_item_id: Mapped[int] = mapped_column(ForeignKey("review_items.id"), index=True)
    creative_id: Mapped[str] = mapped_column(ForeignKey("creatives.id", ondelete="CASCADE"), index=True)
    reviewer_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    reviewer_name: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(16))  # an Action, or REOPEN when a decision was undone
    label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id"))
    note: Mapped[str | None] = mapped_column(Text)
    previous: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    bulk_id: Mapped[str | None] = mapped_column(String(32), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class Proposal(Base):
    """A cluster of new_label creatives offered to reviewers as a candidate taxonomy node."""

    __tablename__ = "proposals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[ProposalStatus] = mapped_column(StrEnumType(ProposalStatus), default=ProposalStatus.OPEN, index=True)
    suggested_name: Mapped[str] = mapped_column(String(200))
    suggested_parent_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id"))
    terms: Mapped[list[str]] = mapped_column(JSONType, default=list)
    cohesion: Mapped[float | None] = mapped_column(Float)
    member_ids: Mapped[list[str]] = mapped_column(JSONType, default=list)
    model_version_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.id"))
    created_label_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id"))
    decided_by: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class ModelVersion(Base):
    __tablename__ = "model_versions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    kind: Mapped[VersionKind] = mapped_column(StrEnumType(VersionKind))
    status: Mapped[VersionStatus] = mapped_column(StrEnumType(VersionStatus), default=VersionStatus.BUILDING,
                                                  index=True)
    artefact_dir: Mapped[str] = mapped_column(String(1000))
    config: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    thresholds: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    comparison: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    index_ready: Mapped[bool] = mapped_column(Boolean, default=False)
    training_run_id: Mapped[int | None] = mapped_column(Integer)  # no FK: runs and versions refer to each other
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    promoted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class TrainingRun(Base):
    __tablename__ = "training_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[RunStatus] = mapped_column(StrEnumType(RunStatus), default=RunStatus.QUEUED, index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    stage: Mapped[str | None] = mapped_column(String(200))
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    candidate_version_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.id"))
    error: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Where a running run is (ctax/training/progress.py), written at most every few seconds: the phase
    # (text_tower, image_tower, calibrating, ...), its step of total_steps, the last logged loss and the seconds
    # the phase has left at its pace so far; updated_at says how fresh they are.
    phase: Mapped[str | None] = mapped_column(String(32))
    step: Mapped[int | None] = mapped_column(Integer)
    total_steps: Mapped[int | None] = mapped_column(Integer)
    loss: Mapped[float | None] = mapped_column(Float)
    eta_s: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class OutboxJob(Base):
    """Work that must reach the queue once its transaction commits (index syncs, training, promotions).

    Written in the same transaction as the change that needs it; sent after commit; the dispatcher resends
    whatever a crash left unsent, and a job that may run twice when a killed worker had started it (outbox.py)."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task: Mapped[str] = mapped_column(String(200))
    args: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    queue: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    running_on: Mapped[str | None] = mapped_column(String(200), index=True)  # the worker's heartbeat name
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    starts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    done_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    not_before: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)  # sent once this time has come


class WorkerHeartbeat(Base):
    __tablename__ = "worker_heartbeats"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    queues: Mapped[list[str]] = mapped_column(JSONType, default=list)
    pid: Mapped[int] = mapped_column(Integer)
    device: Mapped[str | None] = mapped_column(String(32))
    ready: Mapped[bool] = mapped_column(Boolean, default=False)
    info: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
