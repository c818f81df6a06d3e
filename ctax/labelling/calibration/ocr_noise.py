"""Labelled texts made to read like OCR of an ad image, for calibrating the thresholds of OCR-read creatives.

Why: an ad that arrives as an image is read by OCR, and what OCR reads is nothing like the summaries a version's
labelled data holds ("I should buy X because Y"): brand names and slogans in capitals, lines broken mid-phrase,
misread letters, words merged or split, cropped edges, prices and fine print. Its similarity to every label is
lower, so a `new_label` threshold calibrated on summaries flags a quarter of known-label image ads (issue 17).
Calibration scores these noised texts of its validation creatives as it scores the clean ones, and sets the OCR
thresholds from them (calibration.calibrate, `ocr_held`).

The error kinds and their rough rates were modelled on what real OCR of real ad images shows (the 100 texts of
`pitt_ads_ocr_dev.jsonl`, read for their kinds of error only; their labels are used to measure, never here). No
library does this for ad copy: augmentation libraries (nlpaug, textattack) model keyboard or OCR character
confusions only, not the loss of the summary's framing or the layout of an ad, and are not dependencies here.
Pure: texts and a seeded generator in, a text out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

# Letters OCR confuses in print (each pair both ways), as seen in the dev texts: "avaliable", "wilh", "COVERGR".
CONFUSIONS = {
    "o": "0", "0": "o", "l": "I", "I": "l", "i": "l", "m": "rn", "e": "c", "c": "e", "a": "o",
    "t": "f", "h": "b", "u": "v", "S": "5", "5": "S", "B": "8", "G": "C", "E": "F", "n": "h",
}
# The framing of a summary, which no ad prints: "I should buy X because Y" -> "X", "Y".
FRAMING = re.compile(r"\b(?:i|we|you) (?:should|shall|must|need to|ought to|will|would)(?: not)? |\bbecause\b|"
                     r"\bso that\b", re.IGNORECASE)
FINE_PRINT = (
    "www.{w}.com", "Available at {w} stores", "(c) 20{n} {W} Inc. All rights reserved.", "Call 1-800-{n}{n}-{n}{n}",
    "${n}.99", "SALE", "NEW", "Limited time only.", "See store for details.", "{W}.COM", "SHOP NOW",
    "Offer ends {n}/{n}", "Visit us at {w}.com",
)
MISREAD_RATE = 0.06  # per character
MERGE_RATE = 0.08  # per word gap: "TWD ADS" -> "TWDADS"
SPLIT_RATE = 0.04  # per word: "Tallks" -> "Tal lks"
CROP_RATE = 0.25  # per line: its first or last letters cut off by the image edge or a picture
JUNK_LINES = (1, 4)  # fragments of other lettering ("OL", "EPS", "ic")
MISSED_WORD_RATE = 0.25  # words in stylised lettering or on a busy picture that OCR does not read at all
FINE_PRINT_LINES = (0, 2)


def ocr_like(texts: Sequence[str], rng: np.random.Generator) -> str:
    """One OCR-like reading of a creative whose labelled texts are `texts`."""
    phrases = [p.strip(" .,;!") for text in texts for p in FRAMING.split(text)]
    phrases = [p for p in phrases if len(p) > 2]
    if not phrases:
        phrases = [t for t in texts if t.strip()] or [""]
    # An ad shows a little of what the summaries say (mostly one or two phrases), not in their order.
    keep = min(len(phrases), 1 + int(rng.poisson(0.7)))
    chosen = [phrases[int(n)] for n in rng.permutation(len(phrases))[:keep]]
    lines: list[str] = []
    for phrase in chosen:
        words = [w for w in phrase.split() if rng.random() >= MISSED_WORD_RATE]
        width = int(rng.integers(2, 7))  # ad lettering is short lines
        for start in range(0, len(words), width):
            line = " ".join(words[start : start + width])
            lines.append(line.upper() if rng.random() < 0.4 else line)
    for _ in range(int(rng.integers(*JUNK_LINES, endpoint=True))):
        lines.insert(int(rng.integers(0, len(lines) + 1)), _junk(rng))
    for _ in range(int(rng.integers(*FINE_PRINT_LINES, endpoint=True))):
        lines.append(_fine_print(chosen, rng))
    return "\n".join(_garble(line, rng) for line in lines if line)


def _junk(rng: np.random.Generator) -> str:
    letters = "ABCDEFGHIKLMNOPRSTUaeilnorst"
    return "".join(letters[int(n)] for n in rng.integers(0, len(letters), size=int(rng.integers(1, 5))))


def _fine_print(phrases: Sequence[str], rng: np.random.Generator) -> str:
    words = [w for p in phrases for w in re.findall(r"[A-Za-z]{4,}", p)] or ["brand"]
    word = words[int(rng.integers(0, len(words)))]
    pattern = FINE_PRINT[int(rng.integers(0, len(FINE_PRINT)))]
    return pattern.format(w=word.lower(), W=word.capitalize(), n=int(rng.integers(10, 99)))


def _garble(line: str, rng: np.random.Generator) -> str:
    words = line.split()
    out: list[str] = []
    for word in words:
        if len(word) > 4 and rng.random() < SPLIT_RATE:
            cut = int(rng.integers(2, len(word) - 1))
            out += [word[:cut], word[cut:]]
        else:
            out.append(word)
    joined = out[0] if out else ""
    for word in out[1:]:
        joined += word if rng.random() < MERGE_RATE else " " + word
    chars = list(joined)
    for n, char in enumerate(chars):
        if char in CONFUSIONS and rng.random() < MISREAD_RATE:
            chars[n] = CONFUSIONS[char]
    text = "".join(chars)
    if len(text) > 5 and rng.random() < CROP_RATE:
        cut = int(rng.integers(1, 4))
        text = text[cut:] if rng.random() < 0.5 else text[:-cut]
    return text
