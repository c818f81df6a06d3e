"""Training reads creative texts as the version it builds will serve them (SpaceConfig.mask_offers): masked
training pairs, label phrases untouched, the mode written to the version's config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ctax.dataset.labelled import LabelledCreative
from ctax.embedding.config import SpaceConfig
from ctax.taxonomy.paths import LabelPath
from ctax.training import pipeline
from ctax.training.progress import ProgressTracker
from ctax.training.snapshot import Snapshot
from tests.conftest import make_settings


@pytest.mark.parametrize("mode", ["drop", "off"])
def test_the_text_tower_trains_on_masked_texts_and_the_version_records_the_mode(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    seen: dict[str, Any] = {}

    def train_text_tower(model: str, examples: Any, phrases: Any, parents: Any, out: Path, **kwargs: Any) -> None:
        seen.update(examples=examples, phrases=phrases)

    monkeypatch.setattr("ctax.training.text.train_text_tower", train_text_tower)
    paths = {1: LabelPath.parse("Sale/2024 Deals"), 2: LabelPath.parse("Cars")}
    train = [LabelledCreative("a", 1, ("Shoes - only $19.99", "ends May 21"), None, None),
             LabelledCreative("b", 2, (), "Cars from $9,999", None)]
    settings = make_settings(tmp_path, mask_offers=mode)
    job = pipeline._Run(1, settings, None, None, "cpu", ProgressTracker(lambda report: None, 0.0),  # type: ignore[arg-type]
                        {"train_images": False}, Snapshot(None, paths, train, (0, "")), None, 1, train, [])  # type: ignore[arg-type]
    config = pipeline._train_towers(job, "v2", tmp_path / "v2")
    masked = [(["Shoes - only", "ends"], "Sale/2024 Deals"), (["Cars from"], "Cars")]
    unmasked = [(["Shoes - only $19.99", "ends May 21"], "Sale/2024 Deals"), (["Cars from $9,999"], "Cars")]
    assert seen["examples"] == (masked if mode == "drop" else unmasked)
    assert seen["phrases"]["Sale/2024 Deals"] == "2024 Deals (Sale > 2024 Deals)"
    assert config.mask_offers == mode and SpaceConfig.read(tmp_path / "v2").mask_offers == mode
