from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctax.jobs import INDEX_QUEUE, LABEL_QUEUE
from ctax.store.models import Annotation, Creative
from ctax.store.session import Database
from ctax.worker.runtime import Runtime

LABELS = ["Product/Vehicles/Cars", "PSA/Animal Rights", "Product/Food and Drink/Soft Drinks",
          "PSA/Health/Smoking and Alcohol Abuse", "Product/Beauty/Cosmetics and Personal Care",
          "Product/Fashion/Clothing and Accessories"]


def seed_labelled(db: Database, shared_data: Path, ids: dict[str, int], labels: list[str], per_label: int) -> None:
    """Labelled Pitt ads (text only) as imported data: what calibration holds out."""
    taken: dict[str, int] = {}
    with db.write() as session:
        for line in (shared_data / "pitt_ads_dev.jsonl").open():
            row = json.loads(line)
            if row["label"] in labels and taken.get(row["label"], 0) < per_label:
                taken[row["label"]] = taken.get(row["label"], 0) + 1
                creative = Creative(source="import", status="labelled", texts=row["texts"], external_id=row["id"])
                session.add(creative)
                session.add(Annotation(creative=creative, label_id=ids[row["label"]], source="import"))


@pytest.fixture
def calibrated(settings, db, pitt_labels, shared_data) -> Iterator[Runtime]:
    """The index owner started on labelled data: its pretrained version calibrated, its card written."""
    seed_labelled(db, shared_data, pitt_labels, LABELS, 15)
    rt = Runtime(settings, [LABEL_QUEUE, INDEX_QUEUE], owns_index=True)
    rt.start()
    yield rt
    rt.stop()
    if rt._index is not None:
        rt._index.client.close()
