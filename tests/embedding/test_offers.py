"""Prices, dates and numbers masked before the text tower reads a creative: what `mask_text` leaves, and that
every path by which creative text reaches the tower (a creative's texts, its OCR text, single-text messages, OCR
readings) goes through it, while label phrases never do; a version records its mode and is served with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctax.config import Settings
from ctax.embedding.config import CONFIG_FILE, CorruptArtefact, SpaceConfig
from ctax.embedding.offers import mask_text
from ctax.embedding.space import CreativeContent
from ctax.labelling.duplicates import normalised_text
from ctax.taxonomy.paths import LabelPath
from ctax.versions import artefacts
from tests.conftest import make_settings, recording_space


@pytest.mark.parametrize(("text", "drop", "placeholder"), [
    ("Great shoes - only $19.99", "Great shoes - only", "Great shoes - only #"),
    ("Great shoes - sale ends May 21", "Great shoes - sale ends", "Great shoes - sale ends #"),
    ("now $49 until March 3", "now until", "now # until #"),
    ("Call 555-1234 today, 50% off", "Call today, off", "Call # today, # off"),
])
def test_prices_dates_and_numbers_are_dropped_or_read_as_one_placeholder(text: str, drop: str,
                                                                          placeholder: str) -> None:
    assert mask_text(text, "drop") == drop
    assert mask_text(text, "placeholder") == placeholder
    assert mask_text(text, "off") == text


def test_words_are_kept_month_names_outside_a_date_and_digits_inside_a_word_included() -> None:
    for text in ("You may like March Madness", "A4 paper, x5 pack"):
        assert mask_text(text, "drop") == text and mask_text(text, "placeholder") == text
    assert mask_text("$19.99", "drop") == "$19.99"  # nothing but a price: nothing would be left to read
    # The duplicate key reads the same two cuts as one ad: the regexes are shared.
    assert normalised_text(["Shoes - only $19.99"]) == normalised_text(["Shoes - only $24.99"])


def test_the_tower_reads_creatives_masked_and_label_phrases_as_they_are() -> None:
    space, tower = recording_space("drop")
    space.encode([CreativeContent(texts=["Shoes - only $19.99", "Sale ends May 21"]),
                  CreativeContent(ocr_text="Boots now $49")])
    space.encode_messages(texts=["Hats from $9.95"])
    space.encode_texts(["Scarves until June 2"])
    assert tower.seen == ["Shoes - only", "Sale ends", "Boots now", "Hats from", "Scarves until"]
    tower.seen.clear()
    space.encode_labels([LabelPath.parse("Events/2024 Sale on May 21")])
    assert tower.seen == ["Events/2024 Sale on May 21"]


def test_a_space_built_without_masking_reads_creatives_unchanged() -> None:
    space, tower = recording_space("off")
    space.encode([CreativeContent(texts=["Shoes - only $19.99"], ocr_text="Boots now $49")])
    assert tower.seen == ["Shoes - only $19.99"]


def test_a_version_records_its_mode_and_keeps_it_whatever_the_settings_say(tmp_path: Path) -> None:
    built = artefacts.pretrained_config(make_settings(tmp_path, mask_offers="placeholder"), "v1")
    built.write(tmp_path)
    assert json.loads((tmp_path / CONFIG_FILE).read_text())["mask_offers"] == "placeholder"
    assert Settings(_env_file=None, data_dir=tmp_path, mask_offers="off").mask_offers == "off"  # type: ignore[call-arg]
    assert SpaceConfig.read(tmp_path).mask_offers == "placeholder"  # the space reads its config, not the settings


def test_a_version_written_before_the_setting_is_served_unmasked_and_a_bad_mode_is_refused(tmp_path: Path) -> None:
    data = SpaceConfig("v1", "pretrained", "m", mask_offers="drop").to_json()
    del data["mask_offers"]
    (tmp_path / CONFIG_FILE).write_text(json.dumps(data))
    assert SpaceConfig.read(tmp_path).mask_offers == "off"
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**data, "mask_offers": "sometimes"}))
    with pytest.raises(CorruptArtefact):
        SpaceConfig.read(tmp_path)
