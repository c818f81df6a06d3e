"""The arrival patterns of bench.arrival: one test split, four orders in which its creatives reach the service.

Rows are the Pitt JSONL objects (`id`, `texts`, `label`). Every builder is deterministic for a given
`random.Random`: the same seed gives the same stream.

- crowd: today's stream, the test split in its file order; held-out labels arrive among it, all in one
  traffic window.
- trickle: every known-label creative, with held-out creatives spread evenly through it (labels in turn), at most
  one in `ratio` (20): a new kind of creative that trickles in among many known ones.
- burst: the crowd stream with `size` (200) close variants of one known-label ad arriving together at a random
  place: reworded, reordered, a changed price or date. Its variants must not look like a new label.
- mixed: half the held-out labels as a crowd (one block), the others trickling, and a burst.
- campaigns (not in the default run): the crowd stream with `size` variants split over CAMPAIGNS known-label ads,
  each ad's variants arriving together at a place of their own. A burst's variants join their source's group and
  take its decision, so one burst's flagged share is close to all or nothing: whether that one ad is flagged.
  Ten campaigns per seed measure the share a user meets over many bursts.

A burst's variants, and the ad they were made from, carry `campaign` (`campaign-<ad id>`), as an ad server posts
a campaign's creatives with its campaign id; `without_campaigns` takes it away, for a poster that sends none.
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

Row = dict[str, Any]
PATTERNS = ("crowd", "trickle", "burst", "mixed")
EXTRA_PATTERNS = ("campaigns",)
CAMPAIGNS = 10
BURST_PREFIX = "burst-"

# Rewording by phrase: words an advertiser (or the summary's writer) swaps without changing what the ad is.
SYNONYMS = {
    "should": ["ought to", "must", "need to"], "buy": ["purchase", "get", "pick up", "order"],
    "because": ["since", "as", "given that"], "good": ["great", "nice", "excellent"],
    "great": ["good", "amazing", "fantastic"], "it is": ["it's", "this is"], "will": ["is going to", "can"],
    "help": ["assist", "support"], "make": ["help make", "leave"], "new": ["latest", "brand-new"],
    "best": ["finest", "top"], "try": ["test", "sample"], "use": ["choose", "go with"], "this": ["the"],
}
PRICES = ["$19.99", "$24.99", "$9.95", "$49", "$129", "$5.49", "$79.99", "$14.50"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
TAGS = ["only {price}", "now {price}", "from {price}", "sale ends {date}", "offer valid until {date}",
        "{date} only", "starting {date}", "now {price} until {date}"]
PRICE_RE = re.compile(r"\$\d+(?:\.\d{2})?")


def _reword(text: str, rng: random.Random) -> str:
    """Swap one to three known phrases for a synonym (whole words, first letter's case kept)."""
    found = [word for word in SYNONYMS if re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE)]
    for word in rng.sample(found, min(len(found), rng.randint(1, 3))):
        def swap(match: re.Match[str], choice: str = rng.choice(SYNONYMS[word])) -> str:
            return choice[0].upper() + choice[1:] if match.group(0)[0].isupper() else choice

        text = re.sub(rf"\b{re.escape(word)}\b", swap, text, count=1, flags=re.IGNORECASE)
    return text


def _reorder(text: str, rng: random.Random) -> str:
    """`I should X because Y` -> `Because Y, I should X` (or the reverse comma form), else unchanged."""
    parts = re.split(r",?\s+because\s+", text, maxsplit=1, flags=re.IGNORECASE)
    if len(parts) != 2 or not parts[1]:
        return text
    head, reason = parts[0].strip(), parts[1].strip().rstrip(".")
    if not re.match(r"I\b", head):  # "I should" keeps its capital I
        head = head[0].lower() + head[1:]
    return (f"Because {reason}, {head}." if rng.random() < 0.5 else f"{reason[0].upper()}{reason[1:]}, so {head}.")


def _price_or_date(text: str, rng: random.Random) -> str:
    """A changed price where the text has one; otherwise a price or date tag appended, as an offer would."""
    if PRICE_RE.search(text) and rng.random() < 0.7:
        return PRICE_RE.sub(rng.choice(PRICES), text, count=1)
    date = f"{rng.choice(MONTHS)} {rng.randint(1, 28)}"
    return f"{text.rstrip('. ')} - {rng.choice(TAGS).format(price=rng.choice(PRICES), date=date)}"


# By name, for bench.variant_edits, which posts each edit alone.
EDITS: dict[str, Callable[[str, random.Random], str]] = {"reword": _reword, "reorder": _reorder,
                                                         "price_or_date": _price_or_date}


def variants(row: Row, n: int, rng: random.Random) -> list[Row]:
    """`n` close variants of one ad: each text reworded, reordered and/or given a changed price or date (at least
    one edit per variant), the ad's texts themselves sometimes reordered or one left out. Same label."""
    made = []
    for k in range(n):
        texts = []
        for text in row["texts"]:
            edits = [edit for edit in EDITS.values() if rng.random() < 0.5] or [rng.choice(list(EDITS.values()))]
            for edit in edits:
                text = edit(text, rng)
            texts.append(text)
        rng.shuffle(texts)
        if len(texts) > 2 and rng.random() < 0.3:
            texts.pop()
        made.append({"id": f"{BURST_PREFIX}{k}-{row['id']}", "texts": texts, "label": row["label"],
                     "campaign": campaign_of(row)})
    return made


def campaign_of(row: Row) -> str:
    return f"campaign-{row['id']}"


def _with_sources_tagged(stream: list[Row]) -> list[Row]:
    """The ads the stream's bursts were made from carry their campaign too: they are its first creative."""
    campaigns = {row["campaign"] for row in stream if "campaign" in row}
    return [{**row, "campaign": campaign_of(row)} if "campaign" not in row and campaign_of(row) in campaigns else row
            for row in stream]


def without_campaigns(stream: Sequence[Row]) -> list[Row]:
    return [{key: value for key, value in row.items() if key != "campaign"} for row in stream]


def _split(rows: Sequence[Row], held_out: set[str]) -> tuple[list[Row], list[Row]]:
    return [r for r in rows if r["label"] not in held_out], [r for r in rows if r["label"] in held_out]


def _spread_labels(novel: Sequence[Row], keep: int, rng: random.Random) -> list[Row]:
    """`keep` of the held-out creatives, each label's share in proportion to its size, ordered so that each
    label's creatives sit evenly over the sequence (the i-th of a label's k at (i + 1/2) / k) instead of bunching."""
    by_label: dict[str, list[Row]] = defaultdict(list)
    for row in novel:
        by_label[row["label"]].append(row)
    # Largest remainder: the quotas add up to `keep` exactly.
    exact = {label: keep * len(rows) / len(novel) for label, rows in by_label.items()}
    quota = {label: int(share) for label, share in exact.items()}
    for label in sorted(exact, key=lambda lab: (quota[lab] - exact[lab], lab))[: keep - sum(quota.values())]:
        quota[label] += 1
    placed = []
    for label, rows in sorted(by_label.items()):
        for i, row in enumerate(rng.sample(rows, quota[label])):
            placed.append(((i + 0.5) / quota[label], rng.random(), row))
    return [row for _, _, row in sorted(placed, key=lambda item: item[:2])]


def crowd(rows: Sequence[Row], held_out: set[str], rng: random.Random) -> list[Row]:
    return list(rows)


def spread_evenly(known: Sequence[Row], novel: Sequence[Row], ratio: int, rng: random.Random) -> list[Row]:
    """Held-out creatives (at most one per `ratio` of the stream, each label spread over it) at evenly spaced
    places through the known ones."""
    keep = min(len(novel), len(known) // (ratio - 1)) if ratio > 1 else len(novel)
    trickling = _spread_labels(novel, keep, rng) if keep else []
    stream, step = list(known), (len(known) + keep) / max(keep, 1)
    for i, row in enumerate(trickling):
        stream.insert(min(int(step * i + step / 2), len(stream)), row)
    return stream


def trickle(rows: Sequence[Row], held_out: set[str], rng: random.Random, ratio: int = 20) -> list[Row]:
    known, novel = _split(rows, held_out)
    return spread_evenly(rng.sample(known, len(known)), novel, ratio, rng)


def with_burst(stream: list[Row], source: Row, size: int, rng: random.Random) -> list[Row]:
    place = rng.randint(0, len(stream))
    return stream[:place] + variants(source, size, rng) + stream[place:]


def burst_source(rows: Sequence[Row], held_out: set[str], rng: random.Random) -> Row:
    """A known-label ad with two or more texts, drawn by the seed."""
    known = [r for r in rows if r["label"] not in held_out and len(r["texts"]) >= 2]
    return rng.choice(known)


def burst(rows: Sequence[Row], held_out: set[str], rng: random.Random, size: int = 200) -> list[Row]:
    return with_burst(list(rows), burst_source(rows, held_out, rng), size, rng)


def campaigns(rows: Sequence[Row], held_out: set[str], rng: random.Random, size: int = 200,
              n: int = CAMPAIGNS) -> list[Row]:
    """`size` variants over `n` distinct known-label ads (of two or more texts), each ad's arriving together."""
    known = [r for r in rows if r["label"] not in held_out and len(r["texts"]) >= 2]
    blocks = []
    for k, source in enumerate(rng.sample(known, min(n, len(known)))):
        share = size // n + (k < size % n)
        blocks.append([{**v, "id": f"{BURST_PREFIX}{k}.{v['id'][len(BURST_PREFIX):]}"}
                       for v in variants(source, share, rng)])
    # Each block at its own place in the crowd stream, never inside another block.
    places = sorted(rng.randint(0, len(rows)) for _ in blocks)
    stream: list[Row] = []
    for start, end, block in zip([0, *places[:-1]], places, blocks, strict=True):
        stream += list(rows[start:end]) + block
    return stream + list(rows[places[-1] if places else 0 :])


def mixed(rows: Sequence[Row], held_out: set[str], rng: random.Random, size: int = 200, ratio: int = 20) -> list[Row]:
    labels = sorted(held_out)
    crowding = set(rng.sample(labels, len(labels) // 2))
    known, novel = _split(rows, held_out)
    stream = spread_evenly(rng.sample(known, len(known)), [r for r in novel if r["label"] not in crowding], ratio,
                           rng)
    place = rng.randint(0, len(stream))
    stream = stream[:place] + [r for r in novel if r["label"] in crowding] + stream[place:]
    return with_burst(stream, burst_source(rows, held_out, rng), size, rng)


def build(pattern: str, rows: Sequence[Row], held_out: set[str], seed: int, burst_size: int = 200) -> list[Row]:
    """The stream of `pattern` over the test rows, for this seed."""
    rng = random.Random(f"{pattern}:{seed}")
    if pattern == "burst":
        return _with_sources_tagged(burst(rows, held_out, rng, burst_size))
    if pattern == "mixed":
        return _with_sources_tagged(mixed(rows, held_out, rng, burst_size))
    if pattern == "campaigns":
        return _with_sources_tagged(campaigns(rows, held_out, rng, burst_size))
    return {"crowd": crowd, "trickle": trickle}[pattern](rows, held_out, rng)
