"""What a creative's texts and metadata may be: real ads pass (long runs of spaces, many emoji), junk does not."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ctax.config import Settings
from ctax.creatives.validation import CreativeSubmission, clean_text, validate_submission
from ctax.errors import CtaxError, InvalidInput, PayloadTooLarge

# A human-written ad (as in the Pitt ads) with a run of 300 spaces where its layout had a gap.
SPACED_AD = "Buy one pizza, get one FREE!" + " " * 300 + "Tony's Pizzeria, open late"
EMOJI_AD = "❤️❤️❤️❤️❤️❤️❤️❤️❤️❤️ Mom ❤️❤️❤️❤️❤️❤️❤️❤️❤️❤️"
FLAGS_AD = "🇺🇸🇺🇸🇺🇸🇺🇸 July 4th 🎆🎆🎆🎆🎆🎆🎆🎆🎆🎆🎆 👨‍👩‍👧👨‍👩‍👧👨‍👩‍👧"


@pytest.mark.parametrize("text", [SPACED_AD, SPACED_AD.replace(" " * 300, "\n" * 150 + "\t" * 150), EMOJI_AD,
                                  FLAGS_AD, "🍕" * 40])
def test_real_ads_with_long_gaps_or_many_emoji_are_accepted_as_written(text: str) -> None:
    assert clean_text(text, "ocr_text", 20_000) == text.strip()


@pytest.mark.parametrize("text,words", [
    ("%%%%%%%%%%%%%%%%%%%%%%%%%$$$$$$$$$$$$$", "letters"),
    ("%%%% " + " " * 500 + "$$$$", "letters"),  # spaces no longer dilute, and no longer excuse, the junk
    ("\x01\x02\x03\x04 some words here", "unprintable"),
    ("Great pizza deals \ud800 today", "surrogate"),
    ("binary\x00junk", "NUL"),
])
def test_junk_is_still_refused(text: str, words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        clean_text(text, "ocr_text", 20_000)


def _settings(**overrides: object) -> Settings:
    return Settings(_env_file=None, **overrides)  # type: ignore[call-arg]


def test_the_number_of_text_segments_is_capped() -> None:
    settings = _settings(max_text_segments=32)
    validate_submission(CreativeSubmission(texts=["abcd"] * 32), settings)
    with pytest.raises(PayloadTooLarge, match="5000 text segments; the limit is 32") as refused:
        validate_submission(CreativeSubmission(texts=["abcd"] * 5000), settings)
    assert refused.value.detail["field"] == "ocr_text"


def test_the_total_text_is_capped() -> None:
    with pytest.raises(PayloadTooLarge, match="100 characters"):
        validate_submission(CreativeSubmission(texts=["word " * 15, "more " * 15]), _settings(max_text_chars=100))


def _nested(levels: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize("make,error", [
    (lambda: _nested(16), None),
    (lambda: {"list": [[["ok"]]], "n": 1}, None),
    (lambda: _nested(17), "more than 16 levels"),
    (lambda: {"a": [[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]}, "more than 16 levels"),
    (lambda: _nested(50_000), "more than 16 levels"),  # walked level by level: no RecursionError
    (lambda: {"k\x00": 1}, "NUL"),
    (lambda: {"k": ["v\x00"]}, "NUL"),
    (lambda: {"k": "\udc80"}, "not valid JSON"),
    (lambda: {"k": float("nan")}, "not valid JSON"),
    (lambda: {"k": "x" * 20_000}, "larger than"),
], ids=["16-levels", "lists", "17-levels", "deep-lists", "50000-levels", "nul-key", "nul-value", "surrogate", "nan",
        "large"])
def test_metadata_depth_size_and_content(make: Callable[[], dict[str, object]], error: str | None) -> None:
    sub = CreativeSubmission(texts=["Fresh bread daily"], metadata=make())
    if error is None:
        validate_submission(sub, _settings())
        return
    with pytest.raises(CtaxError, match=error) as refused:
        validate_submission(sub, _settings())
    assert refused.value.detail["field"] == "metadata"


def test_external_id_without_nul_or_surrogates() -> None:
    for bad in ("ext\x00id", "ext\ud800id"):
        with pytest.raises(InvalidInput) as refused:
            validate_submission(CreativeSubmission(texts=["Fresh bread daily"], external_id=bad), _settings())
        assert refused.value.detail["field"] == "external_id"
