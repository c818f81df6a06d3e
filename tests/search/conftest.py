"""A real version for search tests: the pretrained MiniLM towers, Qdrant local mode, a migrated database with the
Pitt taxonomy and a few labelled creatives of two accounts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ctax.config import Settings
from ctax.embedding.space import SharedSpace
from ctax.enums import CreativeStatus, Flag
from ctax.index.connect import open_qdrant
from ctax.index.qdrant import LabelIndex
from ctax.search.backfill import backfill
from ctax.search.service import Searcher
from ctax.store.blobs import BlobStore
from ctax.store.keys import create_account
from ctax.store.models import Creative
from ctax.store.session import Database
from ctax.versions import artefacts
from ctax.versions.sync import sync_labels

CIVIC = "Buy the new Honda Civic sedan, a great family car with low fuel costs"
DOG = "Adopt a rescue dog today and help stop animal cruelty"
BURGER = "The best burgers in town, juicy and hot, open late every night"
SMOKE = "Stop smoking today, your lungs will thank you"


@dataclass
class World:
    db: Database
    space: SharedSpace
    index: LabelIndex
    blobs: BlobStore
    labels: dict[str, int]
    accounts: tuple[int, int]
    ids: dict[str, str]  # text -> creative id

    def searcher(self, **kwargs: object) -> Searcher:
        return Searcher(self.db, self.index, self.space, self.blobs, **kwargs)  # type: ignore[arg-type]

    def add(self, text: str, label: str | None, account: int | None = None, flag: Flag = Flag.NONE,
            created_at: dt.datetime | None = None) -> str:
        with self.db.write() as session:
            creative = Creative(status=CreativeStatus.LABELLED, texts=[text], flag=flag, account_id=account,
                                decided_label_id=self.labels[label] if label else None)
            if created_at is not None:
                creative.created_at = created_at
            session.add(creative)
            session.flush()
            self.ids[text] = creative.id
            return creative.id


@pytest.fixture(scope="session")
def pretrained_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import make_settings

    settings = make_settings(tmp_path_factory.mktemp("search-version"))
    directory = settings.model_dir / "v1"
    directory.mkdir(parents=True)
    artefacts.pretrained_config(settings, "v1").write(directory)
    return directory


@pytest.fixture
def world(settings: Settings, db: Database, pitt_labels: dict[str, int], pretrained_dir: Path) -> Iterator[World]:
    space = SharedSpace.load(pretrained_dir)
    index = LabelIndex(open_qdrant(None, settings.qdrant_path), "t")
    sync_labels(db, space, index)
    with db.write() as session:
        a, b = create_account(session, "Acme", "advertiser").id, create_account(session, "Bolt", "advertiser").id
    found = World(db, space, index, BlobStore(settings.blob_dir), pitt_labels, (a, b), {})
    day = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    found.add(CIVIC, "Product/Vehicles/Cars", a, created_at=day)
    found.add(DOG, "PSA/Animal Rights", a, flag=Flag.WRONG_LABEL, created_at=day + dt.timedelta(days=1))
    found.add(BURGER, "Product/Food and Drink/Restaurants", b, flag=Flag.NEW_LABEL,
              created_at=day + dt.timedelta(days=2))
    found.add(SMOKE, "PSA/Health/Smoking and Alcohol Abuse", None, created_at=day + dt.timedelta(days=3))
    backfill(db, space, index, found.blobs)
    yield found
    index.client.close()
