"""Shared fixtures. Everything is real: migrated databases, the SQLite/Redis brokers, Qdrant local mode, the
MiniLM text tower, tiny open_clip towers saved and reloaded through the product's own loading path, and, for
tests/e2e, the API and worker started as processes."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
for _name in [name for name in os.environ if name.startswith("CTAX_")]:
    del os.environ[_name]  # tests choose their settings explicitly

import io  # noqa: E402
import math  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from ctax.config import Settings  # noqa: E402
from ctax.store.migrate import upgrade  # noqa: E402
from ctax.store.session import Database  # noqa: E402
from tests.support import (  # noqa: E402
    PG_ADMIN_URL,
    REDIS_URL,
    SHARED_DATA,
    ServiceProcesses,
    drop_pg_database,
    running_service,
)

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_clip_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random weights of the tiny open_clip architecture, saved as a checkpoint file: loaded later through
    `pretrained=<path>`, exactly as a real CLIP checkpoint would be."""
    import open_clip
    import torch

    from ctax.embedding.image import register_model_configs

    register_model_configs()
    torch.manual_seed(0)
    model = open_clip.create_model("ctax-tiny-vit")
    path = tmp_path_factory.mktemp("clip") / "ctax-tiny-vit.pt"
    torch.save(model.state_dict(), path)
    return path


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "image_arch": "ctax-tiny-vit",
        "image_pretrained": None,
        "image_enabled": False,
        # auto would time both OCR backends at every worker start (seconds); tests/embedding/test_ocr*.py cover it.
        "ocr_backend": "onnxruntime",
        # auto would export and time every inference backend when a version is built (tens of seconds);
        # tests/versions/test_backends.py builds them on purpose.
        "backend": "torch",
        # What the service runs with its exported towers; auto would finish the tests' torch towers' batches one
        # after the other (tests/worker/test_pipeline.py covers auto).
        "label_pipeline": "on",
        "label_batch_size": 16,
        "lease_s": 60.0,
        "requeue_after_s": 30.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "var")


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    settings.ensure_dirs()
    upgrade(settings.sqlalchemy_url)
    database = Database(settings.sqlalchemy_url)
    yield database
    database.dispose()


@pytest.fixture
def keys(db: Database) -> dict[str, str]:
    """One API key per role, as the headers a client sends; the poster's belongs to the account 'test advertiser'."""
    from ctax.store.keys import create_account, create_key

    out = {}
    with db.write() as session:
        account = create_account(session, "test advertiser", "advertiser")
        for role in ("poster", "reviewer", "admin"):
            _, out[role] = create_key(session, f"test {role}", role,
                                      account_id=account.id if role == "poster" else None)
    return out


def headers(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


@pytest.fixture
def client(settings: Settings, db: Database) -> Iterator[object]:
    from fastapi.testclient import TestClient

    from ctax.api.app import create_app

    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def quiet_client(settings: Settings, db: Database) -> Iterator[object]:
    """The API without its dispatcher: for a test that reads the outbox and sends its jobs itself (the dispatcher's
    thread would send them in between, once a second)."""
    from fastapi.testclient import TestClient

    from ctax.api.app import create_app

    with TestClient(create_app(settings, start_dispatcher=False)) as test_client:
        yield test_client


@pytest.fixture
def pitt_labels(db: Database, shared_data: Path) -> dict[str, int]:
    """The Pitt taxonomy imported; label path -> id."""
    from sqlalchemy import select

    from ctax.store.models import Label
    from ctax.taxonomy import catalog
    from ctax.taxonomy.importers import parse_taxonomy_file

    with db.write() as session:
        catalog.import_labels(session, parse_taxonomy_file((shared_data / "pitt_ads_taxonomy.txt").read_bytes()))
        return {label.path: label.id for label in session.scalars(select(Label))}


def png_bytes(text: str = "", size: tuple[int, int] = (320, 120), colour: tuple[int, int, int] = (30, 60, 160),
              fmt: str = "PNG") -> bytes:
    image = Image.new("RGB", size, colour)
    if text:
        ImageDraw.Draw(image).text((12, size[1] // 2 - 14), text, font=ImageFont.truetype(FONT, 24),
                                   fill=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


# -- the production profile ------------------------------------------------------------------------------------

def campaign_neighbourhood(dim: int = 8) -> tuple[np.ndarray, list[str], np.ndarray]:
    """A creative (row 0 of the first array) and four recent creatives near it, by id, with unit vectors built so
    that at a variant level of 0.9: a is its variant (0.95); b sits at 0.85 to it and 0.96 to a (a looser variant of
    the same campaign); d is a distinct creative at 0.80; e sits at 0.78 to it and 0.95 to d (d's campaign again).
    Counted once, the traffic is d alone; at the level alone it is b, d and e."""
    basis = np.eye(dim, dtype=np.float64)
    creative = basis[0]
    a = 0.95 * basis[0] + math.sqrt(1 - 0.95**2) * basis[1]
    b = 0.85 * basis[0] + 0.5 * basis[1] + math.sqrt(1 - 0.85**2 - 0.25) * basis[2]
    d = 0.8 * basis[0] + 0.6 * basis[3]
    e = 0.78 * basis[0] + 0.55 * basis[3] + math.sqrt(1 - 0.78**2 - 0.55**2) * basis[4]
    return np.stack([creative]), ["a", "b", "d", "e"], np.stack([a, b, d, e])


def random_neighbourhood(rng: np.random.Generator, dim: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """A creative's recent neighbours, in no order: their similarities to it and their unit vectors. Campaigns of
    every looseness around 1 to 11 random centres, variants of the creative among them, many dissimilar (negative)
    ones, 1 to 200 in all (the property tests of campaign counting and of the sweep's bound draw from it)."""
    creative = rng.normal(size=dim)
    centres = np.vstack([creative, rng.normal(size=(int(rng.integers(1, 12)), dim))])
    picks = rng.integers(0, len(centres), size=int(rng.integers(1, 200)))
    near = centres[picks] + rng.uniform(0.05, 1.2, size=(len(picks), 1)) * rng.normal(size=(len(picks), dim))
    near /= np.linalg.norm(near, axis=1, keepdims=True)
    return near @ (creative / np.linalg.norm(creative)), near


class Recording:
    """A text tower that records the texts it is given, in order; every vector is ones."""

    dim, device = 4, "cpu"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        self.seen.extend(texts)
        return np.ones((len(texts), self.dim), dtype=np.float32)

    def encode_groups(self, groups: Sequence[Sequence[str]], batch_size: int = 64) -> np.ndarray:
        return self.encode([text for group in groups for text in group], batch_size)[: len(groups)]


def recording_space(mode: str) -> tuple[Any, Recording]:
    """A space of a recording tower whose version masks creative texts by `mode` (SpaceConfig.mask_offers)."""
    from ctax.embedding.config import SpaceConfig
    from ctax.embedding.space import SharedSpace

    tower = Recording()
    config = SpaceConfig("v1", "pretrained", "unused", label_template="{path}", mask_offers=mode)
    return SharedSpace(config, tower, None, "disabled"), tower  # type: ignore[arg-type]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    import psycopg

    name = f"ctax_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    drop_pg_database(name)


# Redis databases a test may claim. Two suites on one machine (a CI run beside a developer's) must not share
# one: each would flush the other's queues and its workers would take the other's tasks.
REDIS_TEST_DBS = range(8, 16)


@pytest.fixture
def redis_url() -> Iterator[str]:
    import redis

    if "CTAX_TEST_REDIS_URL" in os.environ:  # chosen by whoever runs the suite: theirs alone
        claimed, url = None, REDIS_URL
    else:
        server = REDIS_URL.rsplit("/", 1)[0]
        registry = redis.Redis.from_url(f"{server}/0")
        token = uuid.uuid4().hex
        claimed = next((db for db in REDIS_TEST_DBS
                        if registry.set(f"ctax-test:claim:{db}", token, nx=True, ex=3600)), None)
        if claimed is None:
            pytest.fail(f"every Redis test database ({list(REDIS_TEST_DBS)}) is claimed by another test run")
        url = f"{server}/{claimed}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        if claimed is not None and registry.get(f"ctax-test:claim:{claimed}") == token.encode():
            registry.delete(f"ctax-test:claim:{claimed}")


# -- the whole service as processes -----------------------------------------------------------------------------

@pytest.fixture(params=["embedded", "production"])
def profile(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def service_env(profile: str, tmp_path: Path, tiny_clip_checkpoint: Path,
                request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    env = {
        "CTAX_DATA_DIR": str(tmp_path / "var"),
        "CTAX_BOOTSTRAP_ADMIN_KEY": "test-admin-key-0123456789",
        "CTAX_IMAGE_ARCH": "ctax-tiny-vit",
        "CTAX_IMAGE_PRETRAINED": str(tiny_clip_checkpoint),
        "CTAX_LEASE_S": "20",
        "CTAX_REQUEUE_AFTER_S": "10",
        "CTAX_LABEL_BATCH_SIZE": "16",
        "CTAX_LABEL_PIPELINE": "on",  # as in make_settings
        "CTAX_BACKEND": "torch",  # as in make_settings: building the backends is tests/versions/test_backends.py's
        # As in make_settings: auto times both OCR engines at every worker start, ~10 s of each e2e test's set-up
        # (tests/embedding/test_ocr_backends.py covers it).
        "CTAX_OCR_BACKEND": "onnxruntime",
        "CTAX_WORKER_HEARTBEAT_S": "1",
        "CTAX_WORKER_STALE_S": "6",
    }
    if profile == "production":
        env["CTAX_DATABASE_URL"] = request.getfixturevalue("postgres_url")
        env["CTAX_BROKER_URL"] = request.getfixturevalue("redis_url")
    yield env


@pytest.fixture
def service(service_env: dict[str, str], tmp_path: Path) -> Iterator[ServiceProcesses]:
    """The API and a labelling worker, as real processes on a free port; logs are printed if a test fails."""
    with running_service(service_env, tmp_path / "logs") as processes:
        yield processes


# -- the review queue --------------------------------------------------------------------------------------------

@pytest.fixture
def flag_creative(db: Database, pitt_labels: dict[str, int], tmp_path: Path):
    """Flags a creative exactly as the labelling worker does (Trigger.decide, then flagging.flag_for_review), from
    label similarities given by path; returns the review item id (None when the trigger does not flag it)."""
    from ctax.enums import CreativeStatus, VersionKind, VersionStatus
    from ctax.labelling.flagging import flag_for_review
    from ctax.labelling.trigger import Evidence, Thresholds, Trigger
    from ctax.store.models import Creative, ModelVersion
    from ctax.taxonomy.catalog import active_taxonomy

    with db.write() as session:
        if session.get(ModelVersion, "v1-pretrained") is None:
            session.add(ModelVersion(id="v1-pretrained", seq=1, kind=VersionKind.PRETRAINED,
                                     status=VersionStatus.ACTIVE, artefact_dir=str(tmp_path / "v1")))

    def flag(text: str, scores: dict[str, float], asserted: str | None = None,
             external_id: str | None = None, account_id: int | None = None) -> int | None:
        with db.write() as session:
            taxonomy = active_taxonomy(session)
            asserted_id = pitt_labels[asserted] if asserted else None
            # The scenarios below were written for a new_label threshold of 0.25; pinned so defaults can move.
            decision = Trigger(taxonomy, Thresholds(new_label=0.25)).decide(
                Evidence({pitt_labels[p]: s for p, s in scores.items()}, asserted_label_id=asserted_id))
            creative = Creative(status=CreativeStatus.LABELLED, texts=[text], asserted_label_id=asserted_id,
                                external_id=external_id, flag=decision.flag, model_version_id="v1-pretrained",
                                decided_label_id=decision.decided_label_id, account_id=account_id)
            creative.prediction = {
                "top_k": [{"label_id": r.label_id, "path": str(taxonomy.path(r.label_id)), "score": r.score,
                           "similarity": r.similarity, "exemplar_share": r.exemplar_share} for r in decision.ranked],
                "flag": decision.flag, "scores": decision.scores, "reasons": decision.reasons,
                "modalities_used": ["text"],
            }
            session.add(creative)
            session.flush()
            item = flag_for_review(session, creative.id, decision, "v1-pretrained", asserted_id)
            session.flush()
            return item.id if item is not None else None

    return flag


# -- markers the fast suite filters on ------------------------------------------------------------------------------

_SERVER_FIXTURES = {"postgres_url", "redis_url"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs PostgreSQL or Redis says so by its fixtures (or its production profile): marked `postgres`
    here, so `make test-fast` can leave it out without each test repeating the marker."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        production = callspec is not None and {"production", "postgresql"} & set(map(str, callspec.params.values()))
        if fixtures & _SERVER_FIXTURES or production:
            item.add_marker(pytest.mark.postgres)
