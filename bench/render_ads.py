"""Render ad-like images from real ad texts, so the image tower has something to learn from.

The Pitt ads ship without their pictures here, so each row becomes a synthetic creative: a slogan taken from
its texts (the "because ..." clause, plus a brand-like phrase when the texts name one) laid out in one of
several ad layouts, over a background whose visual identity is derived from the label path:

* palette: the hue family comes from the parent path, so siblings (e.g. the Food and Drink leaves) look
  alike the way real category ads do, and the leaf shifts it slightly;
* motif: a shape family (star, heart, bolt, ...) from the leaf;
* pattern: a background texture (stripes, dots, waves, ...) from the leaf.

Every cue is jittered per image and each one is sometimes replaced by a random one, so no single pixel
statistic gives the class away. A fraction of images carries no legible text at all (visual only, sometimes
with unreadable "greeked" text bars), which is what the image tower has to handle without OCR.

Importable (``render_ad``, ``render_ad_detailed``, ``render_rows``) and a CLI::

    python -m bench.render_ads --input X.jsonl --out DIR [--limit N] [--seed S] [--size 224]
"""

from __future__ import annotations

import argparse
import colorsys
import hashlib
import json
import math
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
HEADLINE_FONTS = (
    "DejaVuSans-Bold.ttf",
    "DejaVuSansCondensed-Bold.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerifCondensed-Bold.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono-Bold.ttf",
)
BODY_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSansCondensed.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSerifCondensed.ttf",
    "DejaVuSans-Bold.ttf",
)
SHAPES = (
    "circle",
    "triangle",
    "square",
    "star",
    "hexagon",
    "diamond",
    "ring",
    "cross",
    "crescent",
    "arrow",
    "bolt",
    "heart",
)
PATTERNS = ("stripes", "diagonal", "dots", "checker", "waves", "grid", "concentric", "gradient")
LAYOUTS = ("centered", "banner", "bottom_strip", "corner_badge", "split", "headline")

# How often each label cue is swapped for a random one; independent, so most images keep at least two cues.
P_RANDOM_PATTERN = 0.15
P_RANDOM_SHAPE = 0.12
P_RANDOM_HUE = 0.10
NO_TEXT_FRACTION = 0.3
# Rendering at twice the size and downsampling is the cheapest anti-aliasing PIL offers for polygons.
SUPERSAMPLE = 2

RGB = tuple[int, int, int]


# ---------------------------------------------------------------- label identity


@dataclass(frozen=True)
class LabelStyle:
    hue: float
    accent_shift: float
    shape: str
    pattern: str


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


@lru_cache(maxsize=4096)
def label_style(label: str) -> LabelStyle:
    """The label's visual identity: a pure function of the path, so every process draws a class alike."""
    parent = label.rsplit("/", 1)[0] if "/" in label else label
    leaf = _digest("leaf:" + label)
    family_hue = (_digest("family:" + parent) % 3600) / 3600.0
    leaf_offset = ((leaf >> 40) % 1000 / 1000.0 - 0.5) * 0.16
    return LabelStyle(
        hue=(family_hue + leaf_offset) % 1.0,
        accent_shift=0.25 + ((leaf >> 20) % 1000) / 1000.0 * 0.5,
        shape=SHAPES[leaf % len(SHAPES)],
        pattern=PATTERNS[(leaf // len(SHAPES)) % len(PATTERNS)],
    )


def _hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return (round(r * 255), round(g * 255), round(b * 255))


def _luminance(colour: RGB) -> float:
    r, g, b = colour
    return (0.299 * r + 0.587 * g + 0.114 * b) / 255.0


def _ink_for(colour: RGB) -> RGB:
    return (20, 20, 20) if _luminance(colour) > 0.55 else (250, 250, 250)


# ---------------------------------------------------------------- text from the row


_BRAND_STOP = {
    "i",
    "i'm",
    "it",
    "it's",
    "its",
    "this",
    "these",
    "that",
    "they",
    "their",
    "the",
    "a",
    "an",
    "because",
    "my",
    "me",
    "we",
    "you",
    "your",
    "if",
    "buy",
    "should",
    "when",
    "and",
    "or",
    "so",
    "to",
    "he",
    "she",
    "in",
    "on",
    "for",
    "of",
    "not",
    "don't",
    "do",
    "be",
    "is",
    "are",
    "with",
    "at",
    "as",
    "all",
    "here",
    "there",
    "will",
    "can",
    "get",
    "go",
    "use",
    "our",
    "people",
    "ad",
    "advertisement",
}


def brand_phrase(texts: Sequence[str]) -> str | None:
    """The capitalised run the annotators repeat most ("Lincoln Continental", "Dior"), if any."""
    counts: Counter[str] = Counter()
    for text in texts:
        tokens = re.findall(r"[A-Za-z0-9][\w'&.\-]*", text)
        run: list[str] = []
        for index, token in enumerate([*tokens, "x"]):
            clean = token.rstrip(".")
            if index > 0 and clean[:1].isupper() and clean.lower() not in _BRAND_STOP and len(clean) > 1:
                run.append(clean)
                continue
            if run:
                counts[" ".join(run[:3])] += 1
            run = []
    if not counts:
        return None
    return max(counts.items(), key=lambda item: (item[1], len(item[0])))[0]


_LEADING_FILLER = re.compile(r"^(it is|it's|its|they are|they're|this is|that is|it|they)\s+", re.IGNORECASE)


def slogan_from(text: str, max_words: int = 8) -> str:
    """An ad-like line: the "because ..." clause of an annotator's sentence, or the sentence itself."""
    match = re.search(r"\bbecause\b[\s,]*(.+)", text, flags=re.IGNORECASE)
    body = match.group(1) if match and len(match.group(1).split()) >= 2 else text
    body = _LEADING_FILLER.sub("", body.strip())
    words = re.sub(r"\s+", " ", body).strip(" .,!;:").split(" ")[:max_words]
    line = " ".join(words).strip(" .,;:")
    if not line:
        return ""
    return line[0].upper() + line[1:]


# ---------------------------------------------------------------- drawing helpers


@lru_cache(maxsize=256)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    path = FONT_DIR / name
    if path.is_file():
        return ImageFont.truetype(str(path), size)
    # Machines without DejaVu still render (Pillow's bundled font), just with less typographic variety.
    return ImageFont.load_default(size)


def _wrap(text: str, font: Any, width: float) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if not current or font.getlength(trial) <= width:
            current = trial
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    return lines


def _fit(
    text: str, font_name: str, box_w: int, box_h: int, max_size: int, min_size: int
) -> tuple[Any, list[str]]:
    """Largest font size at which the wrapped text fits the box; drops words when even min_size overflows."""
    size = max_size
    while True:
        font = _font(font_name, size)
        lines = _wrap(text, font, box_w)
        line_h = size * 1.18
        fits = len(lines) * line_h <= box_h and all(font.getlength(line) <= box_w for line in lines)
        if fits:
            return font, lines
        if size <= min_size:
            break
        size = max(min_size, int(size * 0.9))
    max_lines = max(1, int(box_h // (size * 1.18)))
    kept = lines[:max_lines]
    while kept and font.getlength(kept[-1]) > box_w and " " in kept[-1]:
        kept[-1] = kept[-1].rsplit(" ", 1)[0]
    return font, kept


def _draw_lines(
    draw: ImageDraw.ImageDraw,
    lines: Sequence[str],
    font: Any,
    box: tuple[int, int, int, int],
    ink: RGB,
    align: str = "center",
    outline: RGB | None = None,
) -> None:
    x0, y0, x1, y1 = box
    size = getattr(font, "size", 12)
    line_h = size * 1.18
    top = y0 + (y1 - y0 - line_h * len(lines)) / 2
    for index, line in enumerate(lines):
        width = font.getlength(line)
        if align == "left":
            x = x0
        elif align == "right":
            x = x1 - width
        else:
            x = x0 + (x1 - x0 - width) / 2
        stroke = max(1, size // 14) if outline is not None else 0
        draw.text(
            (x, top + index * line_h),
            line,
            font=font,
            fill=ink,
            stroke_width=stroke,
            stroke_fill=outline,
        )


def _shape_points(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    def polar(radius: float, theta: float) -> tuple[float, float]:
        return (cx + radius * math.cos(theta + angle), cy + radius * math.sin(theta + angle))

    if shape == "circle":
        return [polar(r, 2 * math.pi * i / 48) for i in range(48)]
    if shape == "triangle":
        return [polar(r, -math.pi / 2 + 2 * math.pi * i / 3) for i in range(3)]
    if shape == "square":
        return [polar(r, math.pi / 4 + math.pi / 2 * i) for i in range(4)]
    if shape == "hexagon":
        return [polar(r, math.pi / 3 * i) for i in range(6)]
    if shape == "star":
        return [polar(r if i % 2 == 0 else r * 0.42, -math.pi / 2 + math.pi / 5 * i) for i in range(10)]
    if shape == "diamond":
        return [polar(r * (1.0 if i % 2 == 0 else 0.55), math.pi / 2 * i) for i in range(4)]
    if shape == "cross":
        w = 0.33
        base = [
            (w, 1),
            (w, w),
            (1, w),
            (1, -w),
            (w, -w),
            (w, -1),
            (-w, -1),
            (-w, -w),
            (-1, -w),
            (-1, w),
            (-w, w),
            (-w, 1),
        ]
        return [polar(r * math.hypot(x, y), math.atan2(y, x)) for x, y in base]
    if shape == "arrow":
        base = [(-1, -0.3), (0.2, -0.3), (0.2, -0.75), (1, 0), (0.2, 0.75), (0.2, 0.3), (-1, 0.3)]
        return [polar(r * math.hypot(x, y), math.atan2(y, x)) for x, y in base]
    if shape == "bolt":
        base = [(0.15, -1), (-0.55, 0.1), (-0.05, 0.1), (-0.25, 1), (0.55, -0.2), (0.05, -0.2), (0.35, -1)]
        return [polar(r * math.hypot(x, y), math.atan2(y, x)) for x, y in base]
    if shape == "heart":
        points = []
        for i in range(60):
            t = 2 * math.pi * i / 60
            x = 16 * math.sin(t) ** 3 / 17
            y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)) / 17
            points.append(polar(r * math.hypot(x, y), math.atan2(y, x)))
        return points
    if shape == "crescent":
        outer = [polar(r, math.radians(a)) for a in range(40, 321, 10)]
        inner_c = (cx + 0.45 * r * math.cos(angle), cy + 0.45 * r * math.sin(angle))
        inner = [
            (
                inner_c[0] + 0.78 * r * math.cos(math.radians(a) + angle),
                inner_c[1] + 0.78 * r * math.sin(math.radians(a) + angle),
            )
            for a in range(300, 59, -10)
        ]
        return outer + inner
    raise ValueError(f"unknown shape {shape!r}")


def _draw_shape(
    draw: ImageDraw.ImageDraw,
    shape: str,
    cx: float,
    cy: float,
    r: float,
    angle: float,
    colour: RGB,
    outline_only: bool,
) -> None:
    if shape == "ring" or (outline_only and shape == "circle"):
        width = max(2, int(r * (0.28 if shape == "ring" else 0.12)))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=colour, width=width)
        return
    points = _shape_points(shape, cx, cy, r, angle)
    if outline_only:
        draw.line([*points, points[0]], fill=colour, width=max(2, int(r * 0.12)), joint="curve")
    else:
        draw.polygon(points, fill=colour)


def _draw_pattern(image: Image.Image, pattern: str, colour: RGB, rng: random.Random) -> None:
    draw = ImageDraw.Draw(image)
    w, h = image.size
    step = int(w * rng.uniform(0.07, 0.14))
    thick = max(2, int(step * rng.uniform(0.25, 0.5)))
    if pattern == "stripes":
        for y in range(-step, h + step, step):
            draw.rectangle((0, y, w, y + thick), fill=colour)
    elif pattern == "diagonal":
        for x in range(-h, w + h, step):
            draw.line((x, 0, x + h, h), fill=colour, width=thick)
    elif pattern == "dots":
        radius = thick * 0.7
        for row, y in enumerate(range(0, h + step, step)):
            offset = step / 2 if row % 2 else 0
            for x in range(0, w + step, step):
                draw.ellipse((x + offset - radius, y - radius, x + offset + radius, y + radius), fill=colour)
    elif pattern == "checker":
        for row, y in enumerate(range(0, h, step)):
            for col, x in enumerate(range(0, w, step)):
                if (row + col) % 2 == 0:
                    draw.rectangle((x, y, x + step, y + step), fill=colour)
    elif pattern == "waves":
        amplitude = step * 0.35
        for y0 in range(0, h + step, step):
            points = [(x, y0 + amplitude * math.sin(x / step * math.pi)) for x in range(0, w + 8, 8)]
            draw.line(points, fill=colour, width=max(2, thick // 2))
    elif pattern == "grid":
        for x in range(0, w, step):
            draw.line((x, 0, x, h), fill=colour, width=max(2, thick // 3))
        for y in range(0, h, step):
            draw.line((0, y, w, y), fill=colour, width=max(2, thick // 3))
    elif pattern == "concentric":
        cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
        for radius in range(step, int(1.5 * max(w, h)), step):
            draw.ellipse(
                (cx - radius, cy - radius, cx + radius, cy + radius), outline=colour, width=thick // 2
            )
    elif pattern == "gradient":
        base = image.getpixel((0, 0))
        top = base if isinstance(base, tuple) else (base, base, base)
        for y in range(h):
            t = y / max(1, h - 1)
            draw.line(
                (0, y, w, y), fill=tuple(round(a + (b - a) * t) for a, b in zip(top, colour, strict=False))
            )
    else:
        raise ValueError(f"unknown pattern {pattern!r}")


def _rounded_box(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], fill: RGB, radius: int) -> None:
    draw.rounded_rectangle(box, radius=radius, fill=fill)


# ---------------------------------------------------------------- the renderer


@dataclass(frozen=True)
class RenderedAd:
    image: Image.Image
    drawn_text: tuple[str, ...]
    layout: str
    legible: bool


def render_ad(
    texts: Sequence[str], label: str, *, seed: int, size: int = 224, legible: bool = True
) -> Image.Image:
    """One ad-like RGB image for a row's texts and label; the same arguments always give the same pixels."""
    return render_ad_detailed(texts, label, seed=seed, size=size, legible=legible).image


def render_ad_detailed(
    texts: Sequence[str], label: str, *, seed: int, size: int = 224, legible: bool = True
) -> RenderedAd:
    rng = random.Random(f"render:{seed}")
    style = label_style(label)
    canvas_size = size * SUPERSAMPLE
    s = canvas_size  # shorthand for layout arithmetic

    hue = rng.random() if rng.random() < P_RANDOM_HUE else style.hue + rng.uniform(-0.035, 0.035)
    pattern = rng.choice(PATTERNS) if rng.random() < P_RANDOM_PATTERN else style.pattern
    shape = rng.choice(SHAPES) if rng.random() < P_RANDOM_SHAPE else style.shape
    background = _hsv(hue, rng.uniform(0.3, 0.7), rng.uniform(0.72, 0.95))
    pattern_colour = _hsv(hue + rng.uniform(-0.03, 0.03), rng.uniform(0.45, 0.85), rng.uniform(0.45, 0.7))
    motif_colour = _hsv(
        hue + style.accent_shift + rng.uniform(-0.04, 0.04), rng.uniform(0.6, 0.95), rng.uniform(0.55, 0.95)
    )

    image = Image.new("RGB", (s, s), background)
    if rng.random() < 0.85:
        _draw_pattern(image, pattern, pattern_colour, rng)
    draw = ImageDraw.Draw(image)

    layout = rng.choice(LAYOUTS) if legible else rng.choice(("centered", "banner", "bottom_strip", "plain"))
    # The region text will occupy; motifs avoid it so they stay visible rather than hidden under panels.
    text_region = _text_region(layout, s, rng)

    # Distractors: generic shapes in neutral tones, so "any shape present" is not itself a cue.
    for _ in range(rng.randint(0, 2)):
        grey = rng.randint(60, 230)
        _draw_shape(
            draw,
            rng.choice(SHAPES),
            rng.uniform(0, s),
            rng.uniform(0, s),
            s * rng.uniform(0.04, 0.1),
            rng.uniform(0, 2 * math.pi),
            (grey, grey, grey),
            outline_only=rng.random() < 0.5,
        )

    count = rng.choice((1, 1, 2, 3, 4))
    outline_only = rng.random() < 0.25
    for _ in range(count):
        radius = s * rng.uniform(0.09, 0.26) / math.sqrt(count)
        cx, cy = _free_spot(rng, s, radius, text_region)
        _draw_shape(draw, shape, cx, cy, radius, rng.uniform(-0.5, 0.5), motif_colour, outline_only)

    drawn: tuple[str, ...] = ()
    if legible:
        drawn = _draw_text(draw, image, texts, layout, text_region, background, motif_colour, rng)
    elif layout != "plain" and rng.random() < 0.6:
        _draw_greeked(draw, text_region, background, rng)

    out = image.resize((size, size), Image.Resampling.LANCZOS)
    return RenderedAd(image=out, drawn_text=drawn, layout=layout, legible=legible)


def _text_region(layout: str, s: int, rng: random.Random) -> tuple[int, int, int, int]:
    if layout == "centered":
        return (int(s * 0.1), int(s * rng.uniform(0.3, 0.4)), int(s * 0.9), int(s * rng.uniform(0.62, 0.72)))
    if layout == "banner":
        return (0, 0, s, int(s * rng.uniform(0.28, 0.36)))
    if layout == "bottom_strip":
        return (0, int(s * rng.uniform(0.68, 0.76)), s, s)
    if layout == "corner_badge":
        side = int(s * rng.uniform(0.42, 0.5))
        x0 = rng.choice((0, s - side))
        y0 = rng.choice((0, s - side))
        return (x0, y0, x0 + side, y0 + side)
    if layout == "split":
        left = rng.random() < 0.5
        cut = int(s * rng.uniform(0.45, 0.55))
        return (0, 0, cut, s) if left else (cut, 0, s, s)
    if layout == "headline":
        return (int(s * 0.06), int(s * 0.05), int(s * 0.94), int(s * 0.45))
    return (0, 0, 0, 0)


def _free_spot(
    rng: random.Random, s: int, radius: float, region: tuple[int, int, int, int]
) -> tuple[float, float]:
    x0, y0, x1, y1 = region
    best = (s / 2, s / 2)
    for _ in range(12):
        cx, cy = rng.uniform(radius, s - radius), rng.uniform(radius, s - radius)
        best = (cx, cy)
        if not (x0 - radius < cx < x1 + radius and y0 - radius < cy < y1 + radius):
            break
    return best


def _draw_text(
    draw: ImageDraw.ImageDraw,
    image: Image.Image,
    texts: Sequence[str],
    layout: str,
    region: tuple[int, int, int, int],
    background: RGB,
    accent: RGB,
    rng: random.Random,
) -> tuple[str, ...]:
    candidates = [t for t in texts if t and t.strip()]
    slogan = slogan_from(rng.choice(candidates)) if candidates else ""
    brand = brand_phrase(candidates)
    if brand is not None and rng.random() < 0.3:
        brand = brand.upper()
    if not slogan and not brand:
        return ()
    s = image.size[0]
    head_font = rng.choice(HEADLINE_FONTS)
    body_font = rng.choice(BODY_FONTS)
    x0, y0, x1, y1 = region
    pad = int(s * 0.04)
    # OCR needs roughly 11 px glyphs at 224 px; below that the creative would not be "legible" anyway.
    min_px = int(s * 0.05)

    panel = (
        accent if rng.random() < 0.5 else _hsv(rng.random(), rng.uniform(0, 0.25), rng.choice((0.12, 0.97)))
    )
    outline: RGB | None = None
    if layout == "headline":
        # Text straight on the busy background, with an outline stroke so it stays readable.
        ink = (255, 255, 255) if rng.random() < 0.5 else (15, 15, 15)
        outline = (15, 15, 15) if ink[0] > 128 else (255, 255, 255)
    elif layout == "corner_badge":
        draw.ellipse((x0 + pad // 2, y0 + pad // 2, x1 - pad // 2, y1 - pad // 2), fill=panel)
        ink = _ink_for(panel)
    elif layout in ("banner", "bottom_strip", "split"):
        draw.rectangle(region, fill=panel)
        ink = _ink_for(panel)
    else:
        _rounded_box(draw, region, panel, radius=int(s * 0.03))
        ink = _ink_for(panel)

    inner = (x0 + pad, y0 + pad, x1 - pad, y1 - pad)
    if layout == "corner_badge":
        # The circle's inscribed square is what is safely inside the badge.
        inset = int((x1 - x0) * 0.15)
        inner = (x0 + inset, y0 + inset, x1 - inset, y1 - inset)
    iw, ih = inner[2] - inner[0], inner[3] - inner[1]
    drawn: list[str] = []
    align = "left" if layout == "split" and rng.random() < 0.5 else "center"
    if brand and slogan and layout not in ("corner_badge",):
        brand_h = int(ih * 0.42)
        font, lines = _fit(brand, head_font, iw, brand_h, int(s * 0.14), min_px)
        _draw_lines(
            draw, lines, font, (inner[0], inner[1], inner[2], inner[1] + brand_h), ink, align, outline
        )
        drawn.extend(lines)
        font, lines = _fit(slogan, body_font, iw, ih - brand_h, int(s * 0.09), min_px)
        _draw_lines(
            draw, lines, font, (inner[0], inner[1] + brand_h, inner[2], inner[3]), ink, align, outline
        )
        drawn.extend(lines)
    else:
        text = brand if layout == "corner_badge" and brand else slogan or brand or ""
        font_name = head_font if layout in ("corner_badge", "headline") else body_font
        font, lines = _fit(text, font_name, iw, ih, int(s * 0.12), min_px)
        _draw_lines(draw, lines, font, inner, ink, align, outline)
        drawn.extend(lines)
        if layout == "corner_badge" and brand and slogan:
            # The slogan goes on a strip opposite the badge so the creative still says something.
            strip_y0 = 0 if y0 > 0 else int(s * 0.8)
            strip = (0, strip_y0, s, strip_y0 + int(s * 0.2))
            draw.rectangle(strip, fill=(250, 250, 250) if _luminance(background) < 0.5 else (20, 20, 20))
            font, lines = _fit(slogan, body_font, s - 2 * pad, int(s * 0.2) - pad, int(s * 0.08), min_px)
            strip_ink = (20, 20, 20) if _luminance(background) < 0.5 else (250, 250, 250)
            _draw_lines(
                draw, lines, font, (pad, strip[1] + pad // 2, s - pad, strip[3] - pad // 2), strip_ink
            )
            drawn.extend(lines)
    return tuple(line for line in drawn if line.strip())


def _draw_greeked(
    draw: ImageDraw.ImageDraw, region: tuple[int, int, int, int], background: RGB, rng: random.Random
) -> None:
    """Bars where copy would be: looks like text at a glance, reads as nothing."""
    x0, y0, x1, y1 = region
    if x1 - x0 < 10 or y1 - y0 < 10:
        return
    panel = _hsv(rng.random(), rng.uniform(0, 0.3), rng.choice((0.15, 0.95)))
    draw.rectangle(region, fill=panel)
    ink = _ink_for(panel)
    bar_h = max(4, int((y1 - y0) * rng.uniform(0.08, 0.14)))
    y = y0 + bar_h
    while y + bar_h < y1 - bar_h // 2:
        x = x0 + bar_h
        while x < x1 - 2 * bar_h:
            word = int(bar_h * rng.uniform(1.2, 4.0))
            draw.rounded_rectangle(
                (x, y, min(x + word, x1 - bar_h), y + bar_h // 2), radius=bar_h // 4, fill=ink
            )
            x += word + bar_h // 2
        y += int(bar_h * 1.5)


# ---------------------------------------------------------------- datasets


def row_seed(seed: int, row_id: str) -> int:
    """Per-row seed from the dataset seed and the row id: a row renders alike whatever else is rendered."""
    return _digest(f"{seed}:{row_id}")


def is_legible(seed: int, row_id: str, no_text_fraction: float = NO_TEXT_FRACTION) -> bool:
    return random.Random(f"legible:{seed}:{row_id}").random() >= no_text_fraction


def image_name(row_id: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9]+", "_", row_id.rsplit(".", 1)[0]).strip("_") or "ad"
    return f"{stem}_{_digest(row_id) % 10**6:06d}.png"


def render_rows(
    rows: Sequence[dict[str, Any]],
    out_dir: Path,
    *,
    seed: int,
    size: int = 224,
    no_text_fraction: float = NO_TEXT_FRACTION,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Render every row into ``out_dir/images`` and write ``out_dir/rows.jsonl``; returns the written rows."""
    from tqdm import tqdm

    images_dir = out_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    written: list[dict[str, Any]] = []
    for row in tqdm(rows, desc="render", unit="img", disable=not progress, mininterval=2):
        row_id = str(row["id"])
        legible = is_legible(seed, row_id, no_text_fraction)
        ad = render_ad_detailed(
            row.get("texts") or [], row["label"], seed=row_seed(seed, row_id), size=size, legible=legible
        )
        name = image_name(row_id)
        ad.image.save(images_dir / name, optimize=False)
        written.append(
            {
                **row,
                "image": f"images/{name}",
                "legible_text": bool(ad.drawn_text),
                "drawn_text": list(ad.drawn_text),
                "layout": ad.layout,
            }
        )
    with (out_dir / "rows.jsonl").open("w", encoding="utf-8") as handle:
        for row in written:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return written


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


# ---------------------------------------------------------------- OCR check


def make_ocr() -> Any:
    """A single-threaded RapidOCR engine (the machine is shared; one thread keeps timings honest)."""
    import logging

    from rapidocr_onnxruntime import RapidOCR

    # rapidocr logs every empty detection at WARNING; visual-only images are expected to be empty.
    logging.getLogger("RapidOCR").setLevel(logging.ERROR)
    return RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)


def ocr_lines(engine: Any, image: Image.Image) -> list[str]:
    result, _ = engine(image)
    return [str(item[1]) for item in result or []]


def _words(lines: Iterable[str]) -> list[str]:
    return re.findall(r"[a-z0-9]+", " ".join(lines).lower())


def word_recall(drawn: Sequence[str], read: Sequence[str]) -> float:
    """Fraction of the drawn words found in what OCR read.

    Matched against the OCR text with spaces removed: rapidocr's bundled (Chinese PP-OCRv4) recogniser reads
    Latin glyphs well but often drops the spaces between words ("Betterthanothersofitskind"), and a reading
    that has every letter right should count as read.
    """
    want = _words(drawn)
    if not want:
        return 0.0
    got = "".join(_words(read))
    return sum(word in got for word in want) / len(want)


@dataclass(frozen=True)
class OcrReport:
    n_legible: int
    read_fraction: float  # legible images where OCR recovers at least half the drawn words
    mean_word_recall: float
    n_visual_only: int
    visual_only_false_read: float  # visual-only images where OCR still reports a word of 3+ letters
    seconds_per_image: float


def ocr_check(
    images: Sequence[Image.Image],
    drawn: Sequence[Sequence[str]],
    *,
    engine: Any = None,
    progress: bool = True,
) -> tuple[OcrReport, list[list[str]]]:
    """Run OCR over the images; returns the report and what was read per image."""
    from tqdm import tqdm

    engine = engine or make_ocr()
    recalls: list[float] = []
    false_reads: list[bool] = []
    read_all: list[list[str]] = []
    start = time.perf_counter()
    for image, lines in tqdm(
        list(zip(images, drawn, strict=True)), desc="ocr", unit="img", disable=not progress, mininterval=2
    ):
        read = ocr_lines(engine, image)
        read_all.append(read)
        if lines:
            recalls.append(word_recall(lines, read))
        else:
            false_reads.append(any(len(w) >= 3 and w.isalpha() for w in _words(read)))
    seconds = time.perf_counter() - start
    report = OcrReport(
        n_legible=len(recalls),
        read_fraction=sum(r >= 0.5 for r in recalls) / max(1, len(recalls)),
        mean_word_recall=sum(recalls) / max(1, len(recalls)),
        n_visual_only=len(false_reads),
        visual_only_false_read=sum(false_reads) / max(1, len(false_reads)),
        seconds_per_image=seconds / max(1, len(images)),
    )
    return report, read_all


# ---------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.render_ads", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, required=True, help="JSONL rows with id, texts, label.")
    parser.add_argument("--out", type=Path, required=True, help="Writes OUT/images/*.png and OUT/rows.jsonl.")
    parser.add_argument("--limit", type=int, default=None, help="Render only the first N rows.")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--no-text-fraction", type=float, default=NO_TEXT_FRACTION)
    parser.add_argument(
        "--ocr-sample",
        type=int,
        default=100,
        help="Check legibility with rapidocr on this many rendered images (0 to skip).",
    )
    args = parser.parse_args(argv)

    rows = list(read_jsonl(args.input))
    if args.limit is not None:
        rows = rows[: args.limit]
    start = time.perf_counter()
    written = render_rows(
        rows, args.out, seed=args.seed, size=args.size, no_text_fraction=args.no_text_fraction
    )
    seconds = time.perf_counter() - start
    legible = sum(row["legible_text"] for row in written)
    summary: dict[str, Any] = {
        "rows": len(written),
        "legible": legible,
        "visual_only": len(written) - legible,
        "render_seconds": round(seconds, 1),
        "out": str(args.out / "rows.jsonl"),
    }
    if args.ocr_sample > 0 and written:
        sample = random.Random(args.seed).sample(written, min(args.ocr_sample, len(written)))
        images = [Image.open(args.out / row["image"]).convert("RGB") for row in sample]
        report, _ = ocr_check(images, [row["drawn_text"] for row in sample])
        summary["ocr"] = report.__dict__
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
