"""Similar-creative search (POST /v1/search): how well and how fast.

Quality: on the Pitt split (bench.pitt_eval's, by ad id), the TRAIN ads are stored as labelled creatives and every
version's creatives collection is filled by the service's own backfill; each TEST ad's text is a query through the
search service (ctax.search.service.Searcher), and its 5 nearest creatives are judged by their label: precision@5
(share of the 5 with the query's label) and MAP@5 (average precision over the 5, normalised by min(5, creatives of
that label)). Pretrained vs a trained version; the trained one is trained by `ctax eval`'s own training run on a
seeded sample of TRAIN (`--train-rows`, `--epochs`: say the size when quoting).

Latency: a creatives collection of N synthetic vectors (random unit vectors, N = --sizes) with as many creative
rows in the database (four accounts, every 10th flagged); the search service call is timed (query encoding, label
and creative search, the database reads), unfiltered and with filters of both strategies (ctax/search/service.py):
a selective one (one account of 1%: ids handed to the index) and a broad one (flag none: 90%) searched both by
over-fetching and by ids. Then the full HTTP round trip: `ctax api` and `ctax worker` as processes on the same data,
POST /v1/search, with the SQLite broker's polling at the service default and at kombu's 1 s default.

    python -m bench.search --json search.json
    python -m bench.search --quality-only --train-rows 500 --epochs 1 --queries 150 --corpus-rows 1000
    python -m bench.search --latency-only --sizes 10000 100000 --repeats 200
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import shutil
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.arrival import prepare
from bench.pitt_eval import OUT, split
from ctax.config import Settings
from ctax.dataset.importing import import_labelled
from ctax.dataset.labelled import current_annotations
from ctax.embedding.space import CreativeContent, SharedSpace
from ctax.enums import Flag
from ctax.evaluation.run import EvalOptions, run_eval
from ctax.index.connect import open_qdrant
from ctax.index.qdrant import LabelIndex
from ctax.search.backfill import backfill
from ctax.search.query import SearchQuery
from ctax.search.service import Searcher
from ctax.store.blobs import BlobStore
from ctax.store.migrate import upgrade
from ctax.store.repos.search import SearchFilter
from ctax.store.session import Database
from ctax.taxonomy import catalog
from ctax.taxonomy.importers import parse_taxonomy_file
from ctax.versions.sync import sync_labels
from tests.support import SHARED_DATA

console = Console()
TAXONOMY = SHARED_DATA / "pitt_ads_taxonomy.txt"
K = 5
QUERIES = [
    "Buy the new Honda Civic sedan, a great family car", "Adopt a rescue dog today and stop animal cruelty",
    "The best burgers in town, open late", "Stop smoking today, your lungs will thank you",
    "Cheap flights to Rome this summer", "Fresh cookies and sweets baked every morning",
]


def settings_at(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"data_dir": data_dir, "image_enabled": False, "backend": "torch",
                              "ocr_enabled": False, **overrides}
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


# -- quality ---------------------------------------------------------------------------------------------------

def trained_version(seed: int, train_rows: int, epochs: int) -> tuple[Path, Path, float]:
    """The artefact directories of the pretrained and of a trained version, from one `ctax eval` run (no labels
    held out) on a seeded sample of TRAIN; and the seconds it took."""
    train, _ = prepare(seed, OUT, train_rows, None)
    _, test = split(seed)
    few_tests = OUT / f"search_eval_test_s{seed}.jsonl"
    few_tests.write_text("".join(test.read_text().splitlines(keepends=True)[:50]))  # eval labels them: keep few
    work = OUT / f"search-eval-s{seed}"
    shutil.rmtree(work, ignore_errors=True)
    started = time.perf_counter()
    result = run_eval(EvalOptions(TAXONOMY, train, few_tests, 0, 0.0, seed, epochs=epochs, work_dir=work),
                      settings_at(work / "var"))
    pretrained = work / "var" / "models" / "v1-pretrained"
    return pretrained, Path(result["artefact_dir"]), time.perf_counter() - started


def quality(seed: int, versions: dict[str, Path], queries: int, corpus_rows: int | None) -> list[dict[str, Any]]:
    train, test = split(seed)
    if corpus_rows is not None:  # a seeded sample of the same TRAIN side
        lines = train.read_text().splitlines(keepends=True)
        train = OUT / f"search_corpus_s{seed}.jsonl"
        train.write_text("".join(random.Random(seed + 1).sample(lines, min(corpus_rows, len(lines)))))
    data = OUT / f"search-quality-s{seed}"
    shutil.rmtree(data, ignore_errors=True)
    settings = settings_at(data)
    settings.ensure_dirs()
    upgrade(settings.sqlalchemy_url)
    db = Database(settings.sqlalchemy_url)
    blobs = BlobStore(settings.blob_dir)
    with db.write() as session:
        catalog.import_labels(session, parse_taxonomy_file(TAXONOMY.read_bytes()))
        import_labelled(session, blobs, settings, train)
    with db.read() as session:
        label_of = {item.creative_id: item.label_id for item in current_annotations(session)}
        ids = {label.path: label.id for label in catalog.labels_by_ids(session, set(label_of.values())).values()}
    per_label = {lid: sum(1 for v in label_of.values() if v == lid) for lid in set(label_of.values())}
    tests = [json.loads(line) for line in test.open()]
    tests = [row for row in random.Random(seed).sample(tests, min(queries, len(tests))) if row["label"] in ids]
    index = LabelIndex(open_qdrant(None, settings.qdrant_path), "q")
    rows = []
    for name, directory in versions.items():
        space = SharedSpace.load(directory)
        sync_labels(db, space, index)
        started = time.perf_counter()
        backfill(db, space, index, blobs)
        filled = time.perf_counter() - started
        searcher = Searcher(db, index, space, blobs)
        precisions, aps = [], []
        for row in tests:
            want = ids[row["label"]]
            answer = searcher.search(SearchQuery(text=" ".join(row["texts"]), limit=K, labels_limit=0))
            relevant = [label_of.get(hit["id"]) == want for hit in answer["creatives"]]
            precisions.append(sum(relevant) / K)
            hits, ap = 0, 0.0
            for rank, rel in enumerate(relevant, 1):
                if rel:
                    hits += 1
                    ap += hits / rank
            aps.append(ap / min(K, per_label.get(want, 0)) if per_label.get(want) else 0.0)
        rows.append({"version": name, "precision_at_5": round(statistics.fmean(precisions), 4),
                     "map_at_5": round(statistics.fmean(aps), 4), "queries": len(tests), "corpus": len(label_of),
                     "backfill_s": round(filled, 1), "backfill_per_s": round(len(label_of) / filled, 1)})
        console.print(rows[-1])
    index.client.close()
    db.dispose()
    return rows


# -- latency ---------------------------------------------------------------------------------------------------

def synthetic(data: Path, n: int, seed: int = 0, reuse: bool = False) -> Settings:
    """A data dir whose active version (the pretrained one, bootstrapped as the worker does) has n synthetic
    creatives indexed and stored."""
    from sqlalchemy import insert

    from ctax.store.keys import create_account
    from ctax.store.models import Creative
    from ctax.worker.runtime import Runtime

    settings = settings_at(data)
    if reuse and (data / "ctax.db").exists():
        return settings
    shutil.rmtree(data, ignore_errors=True)
    settings.ensure_dirs()
    upgrade(settings.sqlalchemy_url)
    db = Database(settings.sqlalchemy_url)
    with db.write() as session:
        catalog.import_labels(session, parse_taxonomy_file(TAXONOMY.read_bytes()))
    db.dispose()
    rt = Runtime(settings, ["ctax.label", "ctax.index"], owns_index=True)
    rt.start()  # bootstraps v1-pretrained: its labels collection, aliases, thresholds
    db, index, version = rt.db, rt.index, rt.info["model_version"]
    with db.write() as session:
        accounts = [create_account(session, f"acct {k}", "advertiser").id for k in range(4)]
    rng = np.random.default_rng(seed)
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    step = 20_000
    for start in range(0, n, step):
        count = min(step, n - start)
        ids = [uuid.uuid4().hex for _ in range(count)]
        # Account 0 holds 1% of the creatives (a selective filter); every 10th is flagged new_label.
        owners = [accounts[0] if (start + k) % 100 == 0 else accounts[1 + (start + k) % 3] for k in range(count)]
        flags = [Flag.NEW_LABEL if (start + k) % 10 == 0 else Flag.NONE for k in range(count)]
        created = [base + dt.timedelta(seconds=start + k) for k in range(count)]
        with db.write() as session:
            session.execute(insert(Creative), [
                {"id": cid, "status": "labelled", "texts": [f"synthetic creative {start + k}"], "source": "import",
                 "account_id": owner, "flag": flag, "created_at": when, "metadata_": {}}
                for k, (cid, owner, flag, when) in enumerate(zip(ids, owners, flags, created, strict=True))])
        vectors = rng.normal(size=(count, 384)).astype(np.float32)
        index.upsert_creatives(version, ids, vectors, [{"account_id": o, "created_at": w.timestamp()}
                                                       for o, w in zip(owners, created, strict=True)])
        console.print(f"  {start + count:,} of {n:,} synthetic creatives stored and indexed")
    rt.stop()
    index.client.close()
    db.dispose()
    return settings


def percentiles(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {"p50_ms": round(1000 * ordered[len(ordered) // 2], 2),
            "p99_ms": round(1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2)}


def service_latency(settings: Settings, n: int, repeats: int) -> list[dict[str, Any]]:
    from ctax.worker.runtime import Runtime

    rt = Runtime(settings, ["ctax.label", "ctax.index"], owns_index=True)
    rt.start()
    space = rt.labeller().space
    with rt.db.read() as session:
        from ctax.store.models import Account

        first = session.query(Account).order_by(Account.id).first()
        assert first is not None
        selective_account = first.id
    cases: list[tuple[str, SearchFilter, int | None]] = [
        ("unfiltered", SearchFilter(), None),
        ("account 1% (ids)", SearchFilter(account_id=selective_account), None),
        ("flag none 90% (over-fetch)", SearchFilter(flags=[Flag.NONE]), 0),
        ("flag none 90% (ids)", SearchFilter(flags=[Flag.NONE]), 10**9),
    ]
    rows = []
    times = []
    for r in range(repeats):  # the query's encoding alone: what the rest of a search call adds to it
        started = time.perf_counter()
        space.encode([CreativeContent(texts=[QUERIES[r % len(QUERIES)]])])
        times.append(time.perf_counter() - started)
    rows.append({"size": n, "path": "service", "case": "query encoding only", **percentiles(times),
                 "repeats": repeats})
    for name, f, cap in cases:
        searcher = Searcher(rt.db, rt.index, space, rt.blobs, only_cap=cap if cap is not None else 20_000)
        searcher.search(SearchQuery(text=QUERIES[0], filter=f))  # the first builds the in-memory table
        times, after_encoding = [], []
        for r in range(repeats):
            query = SearchQuery(text=QUERIES[r % len(QUERIES)], filter=f, limit=10)
            started = time.perf_counter()
            answer = searcher.search(query)
            times.append(time.perf_counter() - started)
            assert len(answer["creatives"]) == 10, (name, len(answer["creatives"]))
            vector, used = searcher.query_vector(query)
            started = time.perf_counter()
            searcher.search_vector(vector, used, query)  # the index and the database only
            after_encoding.append(time.perf_counter() - started)
        rows.append({"size": n, "path": "service", "case": name, **percentiles(times), "repeats": repeats})
        rows.append({"size": n, "path": "service, index + database", "case": name, **percentiles(after_encoding),
                     "repeats": repeats})
        console.print(rows[-2:])
    rt.stop()
    rt.index.client.close()
    return rows


def http_latency(settings: Settings, n: int, repeats: int, poll_s: float) -> dict[str, Any]:
    import httpx

    from tests.support import ServiceProcesses

    key = "bench-admin-key-0123456789"
    env = {"CTAX_DATA_DIR": str(settings.data_dir), "CTAX_BOOTSTRAP_ADMIN_KEY": key, "CTAX_IMAGE_ENABLED": "false",
           "CTAX_BACKEND": "torch", "CTAX_OCR_ENABLED": "false", "CTAX_BROKER_POLL_S": str(poll_s),
           "CTAX_WORKER_HEARTBEAT_S": "1", "CTAX_WORKER_STALE_S": "6"}
    processes = ServiceProcesses(env, settings.data_dir.parent / "logs")
    processes.start()
    try:
        with httpx.Client(base_url=processes.url, headers={"X-API-Key": key}, timeout=60) as http:
            deadline = time.monotonic() + 120
            while http.post("/v1/search", json={"text": "warm up"}).status_code != 200:
                if time.monotonic() > deadline:
                    raise TimeoutError(processes.logs())
                time.sleep(0.5)
            times, worker_ms = [], []
            for r in range(repeats):
                time.sleep(0.05 + random.random() * 0.1)  # arrive while the worker idles, as users do
                started = time.perf_counter()
                response = http.post("/v1/search", json={"text": QUERIES[r % len(QUERIES)], "limit": 10})
                times.append(time.perf_counter() - started)
                assert response.status_code == 200, response.text
                worker_ms.append(response.json()["search_ms"])
        return {"size": n, "path": f"HTTP (broker poll {poll_s:g} s)", "case": "unfiltered", **percentiles(times),
                "worker_p50_ms": round(sorted(worker_ms)[len(worker_ms) // 2], 2), "repeats": repeats}
    finally:
        processes.stop()


# -- report ----------------------------------------------------------------------------------------------------

def table(quality_rows: list[dict[str, Any]], latency_rows: list[dict[str, Any]]) -> None:
    if quality_rows:
        t = Table(title=f"Same-label retrieval of Pitt TEST texts among TRAIN creatives (top {K})")
        for column in ("version", "precision@5", "MAP@5", "queries", "corpus", "backfill creatives/s"):
            t.add_column(column)
        for row in quality_rows:
            t.add_row(row["version"], f"{row['precision_at_5']:.3f}", f"{row['map_at_5']:.3f}", str(row["queries"]),
                      str(row["corpus"]), f"{row['backfill_per_s']:.0f}")
        console.print(t)
    if latency_rows:
        t = Table(title="Search latency (limit 10, 5 labels)")
        for column in ("creatives", "path", "case", "p50 ms", "p99 ms"):
            t.add_column(column)
        for row in latency_rows:
            t.add_row(f"{row['size']:,}", row["path"], row["case"], f"{row['p50_ms']:.1f}", f"{row['p99_ms']:.1f}")
        console.print(t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--train-rows", type=int, default=2000, help="TRAIN ads the trained version learns from")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--queries", type=int, default=600, help="TEST ads used as queries")
    parser.add_argument("--corpus-rows", type=int, default=None, help="TRAIN ads stored and searched (default all)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--http-repeats", type=int, default=100)
    parser.add_argument("--http-sizes", type=int, nargs="*", default=None, help="default: the smallest size")
    parser.add_argument("--reuse", action="store_true", help="keep synthetic data built by an earlier run")
    parser.add_argument("--quality-only", action="store_true")
    parser.add_argument("--latency-only", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    quality_rows: list[dict[str, Any]] = []
    latency_rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    if not args.latency_only:
        pretrained, trained, seconds = trained_version(args.seed, args.train_rows, args.epochs)
        extra["train"] = {"rows": args.train_rows, "epochs": args.epochs, "eval_seconds": round(seconds, 1)}
        quality_rows = quality(args.seed, {"pretrained": pretrained, f"trained ({args.train_rows} ads, "
                                           f"{args.epochs} epoch)": trained}, args.queries, args.corpus_rows)
    if not args.quality_only:
        http_sizes = args.http_sizes if args.http_sizes is not None else [min(args.sizes)]
        for n in args.sizes:
            settings = synthetic(OUT / f"search-latency-{n}" / "var", n, reuse=args.reuse)
            latency_rows += service_latency(settings, n, args.repeats)
            if n in http_sizes:
                for poll in (Settings.model_fields["broker_poll_s"].default, 1.0):
                    latency_rows.append(http_latency(settings, n, args.http_repeats, poll))
                    console.print(latency_rows[-1])
    table(quality_rows, latency_rows)
    if args.json:
        args.json.write_text(json.dumps({"quality": quality_rows, "latency": latency_rows, **extra}, indent=2))


if __name__ == "__main__":
    main()
