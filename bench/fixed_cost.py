"""The labelling task's fixed cost per creative, part by part, with the encoder replayed: what end to end adds to
the towers (claim, index searches and writes, trigger, storing, review items, the novelty sweep).

    python -m bench.fixed_cost                                   # bench.backends' end-to-end settings
    python -m bench.fixed_cost --taxonomy --traffic-window 5000  # as the service runs (Pitt labels, traffic, sweep)
    python -m bench.fixed_cost --taxonomy --traffic-window 5000 --labelled 1500  # ... with a learned novelty score

A text version is made and its backend built as bench.backends does; each text's vectors are computed once and
handed back afterwards, so the labelling task (`ctax.worker.tasks.label.run`, batch by batch) is timed without the
encoder. The parts are timed by wrapping the functions named in the table with perf_counter (nested rows are
inside the row above them). Compare figures from one machine state: it is a profile, not a throughput figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import backends as bench_backends
from bench import creatives_fill
from bench.creatives_growth import memory_mb
from bench.throughput import texts

console = Console(width=160)


SWEEP = "novelty sweep"
# The rows being timed right now, outermost first: a function the task and the sweep both call (Labeller.decide)
# is counted under the sweep's own rows while the sweep runs.
ACTIVE: list[str] = []


def timed(parts: dict[str, float], owner: Any, name: str, label: str) -> None:
    """Wrap owner.name so that its time adds to parts[label], or to the sweep's row of it when called inside the
    novelty sweep (absent attributes are left out)."""
    if not hasattr(owner, name):
        return
    fn: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(fn)
    def inner(*args: Any, **kwargs: Any) -> Any:
        row = f"    in the sweep: {label.strip()}" if SWEEP in ACTIVE and label != SWEEP else label
        ACTIVE.append(label)
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            parts[row] += time.perf_counter() - start
            ACTIVE.pop()

    setattr(owner, name, inner)


# What is timed, as (module, attribute within it, attribute, row label); nested rows are inside the row above.
PARTS = [
    ("ctax.store.leases", "", "claim_inputs", "claim (UPDATE ... RETURNING)"),
    ("ctax.labelling.batch", "LabellingWorker", "_read", "read the claimed rows"),
    ("ctax.labelling.labeller", "Labeller", "encode", "Labeller.encode (replayed)"),
    ("ctax.labelling.duplicates", "", "exact_matches", "exact duplicates (database)"),
    ("ctax.labelling.labeller", "Labeller", "finish", "Labeller.finish"),
    ("ctax.index.creatives", "Creatives", "most_alike_creatives", "  near-duplicate search"),
    ("ctax.labelling.labeller", "Labeller", "arrival_traffic", "  traffic search"),
    ("ctax.labelling.labeller", "Labeller", "decide", "  decide (label/exemplar search + trigger)"),
    ("ctax.labelling.labeller", "Labeller", "_keep_for_sweep", "  kept for the sweep (fits without traffic)"),
    ("ctax.labelling.labeller", "Labeller", "prediction", "  prediction JSON"),
    ("ctax.index.qdrant", "LabelIndex", "record_traffic", "  record_traffic"),
    ("ctax.index.qdrant", "LabelIndex", "upsert_creatives", "  upsert_creatives"),
    ("ctax.labelling.batch", "LabellingWorker", "_store_retrying", "store transaction"),
    ("ctax.store.repos.creatives", "", "store_results", "  store_results"),
    ("ctax.labelling.batch", "LabellingWorker", "_maybe_sweep", SWEEP),
    # Inside the sweep (Labeller.decide above is counted here too while the sweep runs):
    ("ctax.index.qdrant", "LabelIndex", "traffic_window", "  the window's ids and vectors"),
    ("ctax.store.repos.creatives", "", "reviewed_among", "  reviewed creatives among the young"),
    ("ctax.store.repos.creatives", "", "labelled_briefly", "  the young rows' bound columns"),
    ("ctax.labelling.sweep", "", "may_raise_among", "  the bound (search, ceilings, fits without traffic)"),
    ("ctax.index.qdrant", "LabelIndex", "traffic_similarities", "  the bound's search of the window"),
    ("ctax.labelling.sweep", "", "label_scores", "  label scores not kept from an earlier sweep"),
    ("ctax.labelling.sweep_bound", "", "label_scores", "  label scores not kept from an earlier sweep"),
    ("ctax.store.repos.creatives", "", "labelled_by", "  load the window's rows"),
    ("ctax.labelling.labeller", "Labeller", "full_window_traffic", "  traffic over the whole window"),
    ("ctax.labelling.labeller", "Labeller", "evidence", "  exemplar search (Labeller.evidence)"),
    ("ctax.labelling.sweep", "", "_novelty", "  fit, and the whole decision where it may raise"),
    ("ctax.labelling.sweep", "", "_redecide", "  new predictions"),
    ("ctax.store.repos.groups", "", "follow_roots", "  follow_roots (with the autoflush of the chunk's writes)"),
]


def timed_parts() -> list[tuple[Any, str, str]]:
    """(owner, attribute, row label) for each of PARTS that the code being measured has: an older checkout (on
    PYTHONPATH, to compare) may lack some, and those rows are left out with a line saying so."""
    out = []
    for module_name, owner_name, name, label in PARTS:
        module = importlib.import_module(module_name)
        owner = getattr(module, owner_name) if owner_name else module
        if hasattr(owner, name):
            out.append((owner, name, label))
        else:
            console.print(f"not timed: {module_name}.{owner_name or ''}{'.' if owner_name else ''}{name} is absent")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--n", type=int, default=1024,
                        help="creatives per pass (five passes: one untimed, four timed)")
    parser.add_argument("--distinct", action="store_true",
                        help="post other ads in each pass (the window then holds distinct creatives, not copies)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--taxonomy", action="store_true", help="import the Pitt taxonomy first")
    parser.add_argument("--traffic-window", type=int, default=0, help="CTAX_NOVELTY_TRAFFIC_WINDOW (0: none)")
    parser.add_argument("--campaigns-once", choices=["version", "on", "off"], default="version",
                        help="count each campaign once in the traffic as the version says, or always, or never")
    parser.add_argument("--labelled", type=int, default=0,
                        help="import this many labelled Pitt ads and calibrate on them (needs --taxonomy)")
    parser.add_argument("--duplicate-groups", action="store_true",
                        help="near-duplicate groups on, as the service runs them (bench.backends leaves them off)")
    parser.add_argument("--creatives", type=int, default=0, help="fill the version's creatives collection with "
                        "this many labelled creatives first (bench/creatives_fill.py)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.duplicate_groups and not args.distinct:
        parser.error("--duplicate-groups needs --distinct: the later passes' copies would be grouped unencoded")

    from ctax.embedding import space as space_module
    from ctax.embedding.space import CreativeContent
    from ctax.labelling import batch as batch_module
    from ctax.labelling import flagging
    from ctax.worker.tasks import label as label_task

    # Five passes of the same ads fill the window with copies of each (near-duplicate groups are off in
    # bench.backends' end to end), every one a fellow of another at the variant level; --distinct posts other ads.
    passes = bench_backends.distinct_passes(args.n, args.seed) if args.distinct else None
    payloads = [text for batch in passes for text in batch] if passes else texts(args.n, args.seed)
    work = Path(tempfile.mkdtemp(prefix="ctax-fixed-cost-"))
    names = [] if args.backend == "torch" else [args.backend]
    bench_backends.make_version("text", work, args.batch_size, "cpu", payloads, names)
    if args.taxonomy:
        bench_backends.import_taxonomy("text", work, args.batch_size, "cpu")
    score = "no learned score"
    if args.labelled:
        score = bench_backends.import_labelled_examples(work, args.batch_size, args.traffic_window, args.labelled,
                                                        payloads, args.seed)

    overrides = {"duplicate_groups": args.duplicate_groups}
    if args.creatives:
        creatives_fill.fill_in_child(work, args.batch_size, args.creatives, args.seed, overrides)

    parts: dict[str, float] = defaultdict(float)
    for owner, name, label in timed_parts():
        timed(parts, owner, name, label)
    batch_module.flag_batch = flagging.flag_batch  # type: ignore[attr-defined]
    # What the timed sweeps did: creatives re-decided, and those left because no traffic could raise them.
    swept: dict[str, int] = defaultdict(int)
    real_sweep = batch_module.sweep

    def counted_sweep(*args: Any, **kwargs: Any) -> Any:
        report = real_sweep(*args, **kwargs)
        swept["re-decided"] += report.swept
        swept["left as they were"] += getattr(report, "skipped", 0)  # code before the bound has no such count
        return report

    batch_module.sweep = counted_sweep  # type: ignore[assignment]
    timed(parts, batch_module, "flag_batch", "  flag_batch")

    cache: dict[tuple[str, ...], Any] = {}
    encode = space_module.SharedSpace.encode

    def replayed(self: Any, contents: Any, batch_size: int | None = None) -> Any:
        missing = [c for c in contents if tuple(c.texts) not in cache]
        if missing:
            for content, encoded in zip(missing, encode(self, missing, batch_size), strict=True):
                cache[tuple(content.texts)] = encoded
        return [cache[tuple(c.texts)] for c in contents]

    run = label_task.run
    calls = {"n": 0}
    once = {"on": False}
    batches_per_pass = -(-args.n // args.batch_size)

    def run_after_warm_up(rt: Any, ids: list[str], pipelined: bool = False) -> Any:
        # Always one after the other: the parts are timed on the main thread's clock, and with the encoding
        # replayed there is nothing for finishing to overlap.
        start = time.perf_counter()
        out = run(rt, ids)
        parts["whole task"] += time.perf_counter() - start
        calls["n"] += 1
        if calls["n"] == 1:  # the first batch pays for lazy set-up; then every text is encoded once, untimed
            trigger = rt.labeller().trigger
            if args.campaigns_once != "version":
                trigger.thresholds = dataclasses.replace(trigger.thresholds,
                                                         campaigns_once=args.campaigns_once == "on")
            once["on"] = trigger.thresholds.campaigns_once
            space_module.SharedSpace.encode = replayed  # type: ignore[method-assign]
            space = rt.labeller().space
            for start in range(0, len(payloads), args.batch_size):
                space.encode([CreativeContent([t]) for t in payloads[start : start + args.batch_size]])
        if calls["n"] == batches_per_pass:  # end_to_end's untimed pass is over: the timed one starts
            parts.clear()
            swept.clear()
        return out

    label_task.run = run_after_warm_up  # type: ignore[assignment]
    bench_backends.end_to_end("text", work, args.backend, passes[0] if passes else payloads, args.batch_size, "cpu",
                              args.traffic_window, passes, **overrides)
    rss_mb, peak_mb = memory_mb()
    # end_to_end labels the payloads five times and the last four are timed: every figure, the whole task's too,
    # is their mean (bench.backends reports the fastest pass instead)
    timed_n = 4 * args.n
    whole = parts.pop("whole task")
    figures = {label: 1000 * seconds / timed_n for label, seconds in parts.items()}
    figures["whole task"] = 1000 * whole / timed_n
    out = Table("part", "ms per creative")
    for label, ms in figures.items():
        out.add_row(label, f"{ms:.3f}")
    console.print(out)
    console.print(f"timed sweeps: {swept['re-decided']} young creatives re-decided, {swept['left as they were']} "
                  "left as they were (no traffic could raise them, or their flag may not be raised)")
    console.print(f"backend {args.backend}, taxonomy {args.taxonomy}, traffic window {args.traffic_window}, "
                  f"campaigns counted once {once['on']}, labelled ads {args.labelled} (novelty score reads: {score}), "
                  f"{timed_n} creatives timed; near-duplicate groups {args.duplicate_groups}, creatives collection "
                  f"filled with {args.creatives:,} first; RSS after {rss_mb:,.0f} MB (peak {peak_mb:,.0f} MB); "
                  f"work folder {work}")
    if args.json:
        args.json.write_text(json.dumps({"backend": args.backend, "taxonomy": args.taxonomy,
                                         "traffic_window": args.traffic_window, "campaigns_once": once["on"],
                                         "labelled": args.labelled, "novelty_score_reads": score,
                                         "duplicate_groups": args.duplicate_groups, "creatives": args.creatives,
                                         "rss_mb": rss_mb, "peak_rss_mb": peak_mb,
                                         "ms_per_creative": figures, "swept": dict(swept)},
                                        indent=2))


if __name__ == "__main__":
    main()
