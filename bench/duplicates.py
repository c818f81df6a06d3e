"""Near-duplicate grouping on rendered Pitt ads: how many of a campaign's re-cuts join their ad's group (recall), and
how many of the creatives that join a group belong there (precision), at the threshold calibration chooses.

    python -m bench.duplicates                     # 2000 labelled ads (300 with variants), 2000 fresh ones, seed 13
    python -m bench.duplicates --ads 500 --varied 100 --fresh 500 --json dup.json
    python -m bench.duplicates --image-tower random --ads 300 --varied 100 --fresh 300   # an untrained image tower

The creatives: each Pitt ad (../shared/data/pitt_ads_dev.jsonl) becomes a creative with its words (its annotators'
texts, as `ctax creatives import` stores a Pitt ad, plus an offer line with a price or a date, as campaigns carry)
and its picture (bench/render_ads.py). One annotator's sentence alone would not do: 234 of the 8,469 ads share
their first sentence with another ad ("I should buy this product because it will make me attractive": 42 ads),
and without an image tower nothing else tells such ads apart.
`--ads` of them are labelled: the service's creatives collection. The queries are
- variants of `--varied` labelled ads, which should join its group: crop (80-95% of each side), rescale
  (45-80%), re-colour (hue rotated, saturation and brightness changed), JPEG re-encode (quality 25-60), a changed
  price or date in the text, and a changed price or date together with a JPEG re-encode;
- `--fresh` different ads, which should join no group: ads of the labels the labelled ads have (the hard
  negatives: same palette and motif family in the picture, same kind of words) and of other labels.
A query joins a group as ctax/labelling/duplicates.py decides (rule "service"): the first labelled creative with
its text key (normalised words, prices and dates aside) or its image bytes, else its nearest labelled creative where
their cosine is at least the threshold; rule "vector" is the similarity alone. It is right when that creative is
the ad it is a variant of.

Calibration: the varied ads are split in two by a seeded shuffle; the queries of the first half (variants of its
ads, and half the fresh ads) choose the threshold: the lowest similarity t such that grouping by similarity alone
has precision at least `--target-precision` (0.99) at t and at every higher threshold (the exact rules aside, so
that the threshold holds for what they do not catch); the second half measures precision and recall at t.

Encoders: the service's own (ctax.embedding.space.SharedSpace of the pretrained version: MiniLM text tower). No
pretrained CLIP weights are available here, so the pretrained version has no image tower (its images are labelled
through OCR only, and creatives with text are encoded by their text): a picture changed by crop, rescale,
re-colour or re-encode leaves the vector unchanged, and those variants are found at similarity 1.0 whatever the
picture. `--image-tower random` adds a ViT-B-32 with random weights and a random projection (the service's
"benchmark mode"), to show what an image tower without trained weights does to grouping; it is not what serves.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance
from rich.console import Console
from rich.table import Table

from bench.render_ads import render_ad
from ctax.config import Settings
from ctax.embedding.space import CreativeContent, SharedSpace
from ctax.labelling.duplicates import normalised_text, text_key
from ctax.vectors import normalise
from tests.support import SHARED_DATA

console = Console(width=200)
VARIANTS = ("crop", "rescale", "recolour", "jpeg", "text_edit", "text_edit+jpeg")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")


@dataclass
class Creative:
    ad: int  # the labelled ad it is (a variant of), -1 for a fresh ad
    kind: str  # "labelled", a VARIANTS name, "same_label" or "other_label"
    label: str
    copy: tuple[str, ...]  # the ad's words: its annotators' texts, as ctax imports a Pitt ad
    offer: str  # its offer line: what a campaign changes between cuts
    image: Image.Image | None
    image_bytes: bytes

    @property
    def texts(self) -> list[str]:
        return [*self.copy, self.offer]

    @property
    def keys(self) -> list[tuple[str, str]]:
        """What exact duplicates share (ctax/labelling/duplicates.py): the text key, the image bytes."""
        out = [("text", key)] if (key := text_key(self.texts)) else []
        return out + ([("image", hashlib.sha256(self.image_bytes).hexdigest())] if self.image_bytes else [])


def _date(rng: random.Random) -> str:
    return f"{rng.choice(MONTHS)} {rng.randint(1, 28)}"


def offer_line(label: str, rng: random.Random) -> str:
    """What a campaign changes between its cuts: a price, a date, a number to call."""
    if label.startswith("PSA"):
        return rng.choice([f"Join us on {_date(rng)}.", f"Donate by {_date(rng)}: call 1-800-{rng.randint(100, 999)}"
                                                        f"-{rng.randint(1000, 9999)}."])
    price = f"${rng.randint(5, 900)}.{rng.choice(['99', '95', '00', '49'])}"
    return rng.choice([f"From {price}. Offer ends {_date(rng)}.", f"Now only {price}, until {_date(rng)}.",
                       f"Save {rng.randint(10, 60)}% this week: ends {_date(rng)}."])


def edit_offer(line: str, label: str, rng: random.Random) -> str:
    """The offer line with its price or date (or both) changed."""
    new = offer_line(label, random.Random(rng.random()))
    # Keep the template: regenerate until the same kind of line comes out, so only the numbers change.
    for _ in range(200):
        if normalised_text([new]) == normalised_text([line]) and new != line:
            break
        new = offer_line(label, random.Random(rng.random()))
    return new


def encode_image(image: Image.Image, fmt: str = "PNG", quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def image_variant(image: Image.Image, kind: str, rng: random.Random) -> tuple[Image.Image, bytes]:
    if kind == "crop":
        w, h = image.size
        fw, fh = rng.uniform(0.8, 0.95), rng.uniform(0.8, 0.95)
        left, top = rng.randint(0, int(w * (1 - fw))), rng.randint(0, int(h * (1 - fh)))
        out = image.crop((left, top, left + int(w * fw), top + int(h * fh)))
    elif kind == "rescale":
        f = rng.uniform(0.45, 0.8)
        out = image.resize((max(int(image.width * f), 32), max(int(image.height * f), 32)), Image.Resampling.BICUBIC)
    elif kind == "recolour":
        hsv = np.asarray(image.convert("HSV")).copy()
        hsv[..., 0] = (hsv[..., 0].astype(int) + rng.randint(20, 60)) % 256
        out = Image.fromarray(hsv, "HSV").convert("RGB")
        out = ImageEnhance.Color(out).enhance(rng.uniform(0.6, 1.4))
        out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.8, 1.2))
    elif kind == "jpeg":
        data = encode_image(image, "JPEG", rng.randint(25, 60))
        return Image.open(io.BytesIO(data)).convert("RGB"), data
    else:
        raise ValueError(kind)
    return out, encode_image(out)


def build(ads: int, varied: int, fresh: int, seed: int, size: int, pictures: bool) -> list[Creative]:
    """`ads` labelled creatives, the first `varied` of them with every variant, and `fresh` different ads.
    pictures=False: only the varied ads and their variants get a picture (without an image tower it does not
    change a vector, and rendering thousands of pictures takes minutes)."""
    rows = [json.loads(line) for line in (SHARED_DATA / "pitt_ads_dev.jsonl").open() if line.strip()]
    rng = random.Random(seed)
    rng.shuffle(rows)
    labelled, rest = rows[:ads], rows[ads:]
    labels = {row["label"] for row in labelled}
    same = [row for row in rest if row["label"] in labels]
    other = [row for row in rest if row["label"] not in labels]
    # Mostly hard negatives (same labels), a few of other labels, as traffic would have them.
    n_other = min(len(other), fresh // 4)
    negatives = [(row, "same_label") for row in same[: fresh - n_other]] + [(row, "other_label")
                                                                          for row in other[:n_other]]
    out: list[Creative] = []

    def creative(row: dict[str, Any], n: int, kind: str, ad: int, picture: bool) -> Creative:
        offer = offer_line(row["label"], random.Random(f"{seed}:{n}"))
        image = render_ad(row["texts"], row["label"], seed=seed * 100_003 + n, size=size) if picture else None
        return Creative(ad, kind, row["label"], tuple(t.strip() for t in row["texts"]), offer, image,
                        encode_image(image) if image is not None else b"")

    for n, row in enumerate(labelled):
        base = creative(row, n, "labelled", n, pictures or n < varied)
        out.append(base)
        if n >= varied:
            continue
        assert base.image is not None
        vrng = random.Random(f"variants:{seed}:{n}")
        for kind in VARIANTS:
            offer, image, data = base.offer, base.image, base.image_bytes
            if kind.startswith("text_edit"):
                offer = edit_offer(base.offer, row["label"], vrng)
            if kind != "text_edit":
                image, data = image_variant(base.image, kind.removeprefix("text_edit+"), vrng)
            out.append(Creative(n, kind, row["label"], base.copy, offer, image, data))
    for m, (row, kind) in enumerate(negatives):
        out.append(creative(row, ads + m, kind, -1, pictures))
    return out


def load_space(image_tower: str) -> SharedSpace:
    """The pretrained version's towers, as the service builds them (ctax.versions.artefacts.pretrained_config)."""
    from ctax.embedding.text import TextEncoder
    from ctax.versions.artefacts import pretrained_config

    settings = Settings(_env_file=None, image_enabled=image_tower == "random",  # type: ignore[call-arg]
                        image_projection="random" if image_tower == "random" else None)
    config = pretrained_config(settings, "v1-pretrained")
    text = TextEncoder.load(config.text_model, "cpu")
    image, status = SharedSpace._load_image(config, Path("."), text.dim, "cpu")
    return SharedSpace(config, text, image, status)


def encode(space: SharedSpace, creatives: Sequence[Creative]) -> np.ndarray:
    encoded = space.encode([CreativeContent(c.texts, c.image) for c in creatives])
    assert all(e.vector is not None for e in encoded)
    return normalise(np.stack([e.vector for e in encoded]).astype(np.float32))  # type: ignore[misc]


@dataclass
class Query:
    creative: Creative
    exact: int | None  # the first labelled ad with the same text key or image bytes, if any
    nearest: int  # the labelled ad nearest it in the space
    score: float  # their similarity

    def grouped_with(self, rule: str, t: float) -> int | None:
        """The labelled ad it joins: by `rule` "vector" (similarity alone) or "service" (exact keys, then similarity,
        as ctax/labelling/duplicates.py decides)."""
        if rule == "service" and self.exact is not None:
            return self.exact
        return self.nearest if self.score >= t else None


def queries(creatives: Sequence[Creative], vectors: np.ndarray) -> list[Query]:
    base_rows = [i for i, c in enumerate(creatives) if c.kind == "labelled"]
    bases = vectors[base_rows]
    ad_of = [creatives[i].ad for i in base_rows]
    first_with: dict[tuple[str, str], int] = {}
    for i in base_rows:
        for key in creatives[i].keys:
            first_with.setdefault(key, creatives[i].ad)
    out = []
    for i, c in enumerate(creatives):
        if c.kind == "labelled":
            continue
        sims = bases @ vectors[i]
        best = int(np.argmax(sims))
        exact = next((first_with[k] for k in c.keys if k in first_with), None)
        out.append(Query(c, exact, ad_of[best], float(sims[best])))
    return out


def precision_recall(qs: Sequence[Query], rule: str, t: float) -> tuple[float, float, int, int]:
    joined = [(q, q.grouped_with(rule, t)) for q in qs]
    grouped = [(q, ad) for q, ad in joined if ad is not None]
    variants = sum(q.creative.ad >= 0 for q in qs)
    right = sum(q.creative.ad == ad for q, ad in grouped)
    precision = right / len(grouped) if grouped else 1.0
    return precision, (right / variants if variants else 0.0), len(grouped), len(grouped) - right


def calibrate(qs: Sequence[Query], target: float) -> float:
    """The lowest similarity at which grouping by similarity alone has precision >= target, there and at every
    higher threshold (the exact rules aside: the threshold must hold for what they do not catch)."""
    scores = sorted({round(q.score, 6) for q in qs}, reverse=True)
    chosen = 1.0
    for t in scores:
        if precision_recall(qs, "vector", t)[0] < target:
            break
        chosen = t
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ads", type=int, default=2000, help="labelled ads: the creatives collection searched")
    parser.add_argument("--varied", type=int, default=300,
                        help=f"labelled ads that get the {len(VARIANTS)} variants each")
    parser.add_argument("--fresh", type=int, default=2000, help="different ads as negatives")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--size", type=int, default=224, help="rendered picture side, pixels")
    parser.add_argument("--target-precision", type=float, default=0.99)
    parser.add_argument("--image-tower", choices=["none", "random"], default="none",
                        help="none: the pretrained version as served; random: an untrained ViT-B-32 added")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    creatives = build(args.ads, args.varied, args.fresh, args.seed, args.size, args.image_tower != "none")
    space = load_space(args.image_tower)
    vectors = encode(space, creatives)
    qs = queries(creatives, vectors)
    halves = list(range(args.varied))
    random.Random(f"split:{args.seed}").shuffle(halves)
    calibration_ads = set(halves[: args.varied // 2])
    fresh_seen = 0

    def in_calibration(q: Query) -> bool:
        nonlocal fresh_seen
        if q.creative.ad >= 0:
            return q.creative.ad in calibration_ads
        fresh_seen += 1
        return fresh_seen % 2 == 1

    split = [in_calibration(q) for q in qs]
    calibration = [q for q, c in zip(qs, split, strict=True) if c]
    test = [q for q, c in zip(qs, split, strict=True) if not c]
    threshold = calibrate(calibration, args.target_precision)

    rows: list[dict[str, Any]] = []
    for rule in ("vector", "service"):
        for name, part in (("calibration", calibration), ("test", test)):
            precision, recall, grouped, wrong = precision_recall(part, rule, threshold)
            rows.append({"rule": rule, "split": name, "kind": "all", "threshold": round(threshold, 4),
                         "queries": len(part), "grouped": grouped, "wrongly_grouped": wrong,
                         "precision": round(precision, 4), "recall": round(recall, 4), "image_tower": args.image_tower})
        by_kind: dict[str, list[Query]] = defaultdict(list)
        for q in test:
            by_kind[q.creative.kind].append(q)
        for kind in (*VARIANTS, "same_label", "other_label"):
            part = by_kind.get(kind, [])
            joined = [(q, q.grouped_with(rule, threshold)) for q in part]
            pairs = [(q, ad) for q, ad in joined if ad is not None]
            row: dict[str, Any] = {
                "rule": rule, "split": "test", "kind": kind, "threshold": round(threshold, 4), "queries": len(part),
                "grouped": len(pairs), "wrongly_grouped": sum(q.creative.ad != ad for q, ad in pairs),
                "image_tower": args.image_tower,
                "median_similarity": round(float(np.median([q.score for q in part])), 4) if part else None}
            if kind in VARIANTS:
                row["recall"] = round(sum(q.creative.ad == ad for q, ad in pairs) / len(part), 4) if part else None
            rows.append(row)

    table = Table("rule", "split", "queries", "kind", "threshold", "grouped", "wrong", "precision", "recall",
                  "median sim",
                  title=f"near-duplicate grouping (image tower: {args.image_tower}; {args.ads} labelled ads, "
                        f"{args.varied} varied, {args.fresh} fresh, seed {args.seed}; "
                        f"{time.perf_counter() - started:.0f} s)")
    for row in rows:
        table.add_row(row["rule"], row["split"], str(row["queries"]), row["kind"], f"{row['threshold']:.4f}",
                      str(row["grouped"]), str(row["wrongly_grouped"]), _fmt(row.get("precision")),
                      _fmt(row.get("recall")), _fmt(row.get("median_similarity")))
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


if __name__ == "__main__":
    raise SystemExit(main())
