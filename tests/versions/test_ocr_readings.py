"""Calibration's OCR readings are creative text: the version's text tower reads them masked as it masks a
creative's OCR text when labelling (SpaceConfig.mask_offers)."""

from __future__ import annotations

import numpy as np

from ctax.dataset.labelled import LabelledCreative
from ctax.labelling.calibration import Held
from ctax.versions.lifecycle import ocr_readings
from tests.conftest import recording_space


def test_ocr_readings_reach_the_tower_masked() -> None:
    space, tower = recording_space("drop")
    items = [LabelledCreative("a", 1, (), "Boots now $49 until May 21", None)]
    read = ocr_readings(space, Held(["a"], [1], np.zeros((1, 4), np.float32)), items, seed=1)
    assert tower.seen == ["Boots now until"] and read.creative_ids == ["a"]
