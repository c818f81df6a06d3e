"""The prices, dates and numbers a campaign changes between cuts ("- only $19.99", "sale ends May 21").

Two readers: the duplicate text key (labelling/duplicates.py) sets them aside to call two cuts the same ad, and the
text tower (`SharedSpace`) can be given creative texts with them masked (a version's `mask_offers`), so that ads of
different campaigns carrying the same kind of tag do not move toward each other and away from their labelled
exemplars, which carry none (docs/benchmarks.md, "bench.variant_edits"). Label phrases are never masked.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

# Numbers (with a currency sign, separators, a percent sign) and month names: one placeholder each in the duplicate
# key. NUMBERS matches no digit inside a word ("A4", "x5"); MONTHS expects casefolded text.
NUMBERS = re.compile(r"(?<![^\W\d_])[$\u20ac\u00a3\u00a5]?\d[\d,.:/-]*%?")
MONTHS = re.compile(r"\b(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
                    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\b")
# For the tower, a month name is masked only as part of a date ("May 21", "21 May"): "you may" and "March Madness"
# keep their words. Then any number left.
_DATES = re.compile(rf"{MONTHS.pattern}\.?\s*{NUMBERS.pattern}|{NUMBERS.pattern}\s*{MONTHS.pattern}",
                    re.IGNORECASE)
_RUNS = re.compile(r"#(?:\s+#)+")  # "May 21 - 28" is one placeholder
_SPACES = re.compile(r"[ \t]{2,}")
_DANGLING = re.compile(r"(?:\s*[-\u2013\u2014:,/|+@]\s*)+$")  # "Shoes - only" once "$19.99" is gone: "Shoes - only"
PLACEHOLDER = "#"

MaskOffers = Literal["off", "drop", "placeholder"]
MASK_OFFERS: tuple[MaskOffers, ...] = ("off", "drop", "placeholder")


def mask_text(text: str, mode: str) -> str:
    """`text` with its dates and numbers dropped ("drop") or each run of them read as one PLACEHOLDER
    ("placeholder"); "off": unchanged. A text that is nothing but them keeps them: there would be nothing left."""
    if mode == "off" or not text:
        return text
    if mode == "drop":
        masked = _DANGLING.sub("", NUMBERS.sub(" ", _DATES.sub(" ", text)))
    else:
        masked = _RUNS.sub(PLACEHOLDER, NUMBERS.sub(PLACEHOLDER, _DATES.sub(PLACEHOLDER, text)))
    masked = _SPACES.sub(" ", masked).strip()
    return masked if masked.strip(f" {PLACEHOLDER}") else text


def mask_texts(texts: Sequence[str], mode: str) -> list[str]:
    return [mask_text(text, mode) for text in texts]
