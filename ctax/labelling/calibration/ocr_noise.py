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
# Real OCR text runs long where the ad carries body copy, which no summary does: of the dev texts, half are longer
# than 34 tokens, a tenth longer than 237, and 31% longer than the 64 a trained tower reads (docs/benchmarks.md,
# labels not read). A reading is lettering alone (as above), or with BODY_COPY_SHARE it also carries body copy:
# the creative's other phrases in longer lines among generic copy, about BODY_TOKENS tokens (a log-normal median
# and spread set so that the readings' token quantiles match the dev texts'), and more fine print.
BODY_COPY_SHARE = 0.5
BODY_TOKENS = (50.0, 1.5)
BODY_LINE_WORDS = (5, 11)
BODY_FINE_PRINT_LINES = (1, 4)
# Copy that says nothing of what is sold ({W}: a word of the ad's own), read as often as the ad's own phrases.
GENERIC_COPY = (
    "Ask for it by name", "Quality you can trust", "Now in a new size", "The choice of millions",
    "Made to last", "Satisfaction guaranteed or your money back", "Nothing else comes close",
    "Because you deserve the best", "Try it today and see the difference", "Only {W} gives you more",
    "Discover {w} today", "The one and only {W}", "See how much you save", "For more information write to",
    "Ask your dealer for details", "Proudly serving you since 19{n}", "Available in {n} styles",
    "You will wonder how you ever did without it", "Experience the difference", "It is easier than you think",
    "Join the millions who have already switched", "Some restrictions apply", "Enjoy it with family and friends",
    "Every {w} is tested by experts", "Ask anyone who owns a {W}", "There is a {w} for every need",
    "Find out why more people choose {W}", "Get the {w} you have always wanted",
)


def ocr_like(texts: Sequence[str], rng: np.random.Generator) -> str:
    """One OCR-like reading of a creative whose labelled texts are `texts`."""
    phrases = [p.strip(" .,;!") for text in texts for p in FRAMING.split(text)]
    phrases = [p for p in phrases if len(p) > 2]
    if not phrases:
        phrases = [t for t in texts if t.strip()] or [""]
    # An ad shows a little of what the summaries say (mostly one or two phrases), not in their order.
    keep = min(len(phrases), 1 + int(rng.poisson(0.7)))
    order = [phrases[int(n)] for n in rng.permutation(len(phrases))]
    chosen = order[:keep]
    lines: list[str] = []
    for phrase in chosen:
        lines += _broken(phrase, (2, 7), 0.4, rng)  # ad lettering is short lines
    for _ in range(int(rng.integers(*JUNK_LINES, endpoint=True))):
        lines.insert(int(rng.integers(0, len(lines) + 1)), _junk(rng))
    fine_print = FINE_PRINT_LINES
    if rng.random() < BODY_COPY_SHARE:
        lines += _body_copy(order[keep:] or chosen, rng)
        fine_print = BODY_FINE_PRINT_LINES
    for _ in range(int(rng.integers(*fine_print, endpoint=True))):
        lines.append(_fine_print(chosen, rng))
    return "\n".join(_garble(line, rng) for line in lines if line)


def _broken(phrase: str, width: tuple[int, int], upper: float, rng: np.random.Generator) -> list[str]:
    """A phrase as printed: some words not read, the rest in lines of a width drawn from `width`."""
    words = [w for w in phrase.split() if rng.random() >= MISSED_WORD_RATE]
    step = int(rng.integers(*width))
    lines = [" ".join(words[start : start + step]) for start in range(0, len(words), step)]
    return [line.upper() if rng.random() < upper else line for line in lines]


def _body_copy(phrases: Sequence[str], rng: np.random.Generator) -> list[str]:
    """Body copy of about a log-normal BODY_TOKENS tokens (a word of ad copy read by OCR is ~1.4 of MiniLM's
    tokens), run on in lines of BODY_LINE_WORDS: the creative's phrases not shown as lettering, each once, among
    generic copy (about half of it naming a word of the ad's own), some words not read."""
    words_wanted = float(np.exp(rng.normal(np.log(BODY_TOKENS[0]), BODY_TOKENS[1]))) / 1.4
    own = [w for p in phrases for w in re.findall(r"[A-Za-z]{4,}", p)] or ["brand"]
    unused = list(phrases)
    words: list[str] = []
    while len(words) < words_wanted:
        if unused and rng.random() < 0.5:
            sentence = unused.pop(0)
        else:
            word = own[int(rng.integers(0, len(own)))]
            sentence = GENERIC_COPY[int(rng.integers(0, len(GENERIC_COPY)))].format(
                w=word.lower(), W=word.capitalize(), n=int(rng.integers(10, 99)))
        words += [w for w in f"{sentence}.".split() if rng.random() >= MISSED_WORD_RATE / 2]
    lines: list[str] = []
    while words:
        step = int(rng.integers(*BODY_LINE_WORDS))
        lines.append(" ".join(words[:step]))
        words = words[step:]
    return lines


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
