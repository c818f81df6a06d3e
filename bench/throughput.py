"""End-to-end labelling throughput over HTTP beside the encoders' own batched throughput, measured in one run.

    python -m bench.throughput                      # text and image creatives, single and batch endpoints
    python -m bench.throughput --modes text --n-text 3000
    python -m bench.throughput --modes text --n-text 8000 --labelled 1500  # a version with a learned novelty score

For each mode the service is started as processes (API + labelling worker, embedded profile, in a temporary
directory), the same encoders (the active version, on the backend its worker serves: GET /readyz) are loaded in
this process and timed on the same payloads in batches of the worker's batch size while the service idles,
before and again after the end-to-end runs; ratios are taken against the faster of the two, so a machine that
sped up or slowed down during the run cannot flatter them.
Three end-to-end figures, each until the last creative is labelled: "full queue" (N creatives posted over
HTTP while the worker is stopped, then the worker's drain rate: the queue kept full), "single" (8 clients
posting one creative per request while the worker labels), and "batch" (the same through
POST /v1/creatives/batch). Each scenario posts creatives of its own (another human summary of the same ads;
other generated images), so none joins a near-duplicate group unencoded. On a 2-core machine the API, the
clients and the encoder share the cores, so "single" is bounded by how fast HTTP requests can be posted.
Image creatives are image-only, encoded by a ViT-B-32 tower with random weights (speed does not depend on them)
and an untrained projection; OCR is off for them so the image tower is what is measured.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, ImageDraw
from rich.console import Console
from rich.table import Table

from ctax.config import Settings
from tests.support import SHARED_DATA, ServiceProcesses

console = Console()
# The worker's own default, so a bench run without --batch-size measures what the service runs.
WORKER_BATCH = int(Settings.model_fields["label_batch_size"].default)
ADMIN = "bench-admin-key-0123456789"


def texts(n: int, seed: int) -> list[str]:
    rows = [json.loads(line) for line in (SHARED_DATA / "pitt_ads_dev.jsonl").open()]
    rng = random.Random(seed)
    return [rng.choice(row["texts"]) for row in rng.sample(rows, n)]


SCENARIOS = ("full queue", "single", "batch")


def scenario_texts(n: int, seed: int) -> list[list[str]]:
    """n Pitt ads and, per scenario, a different one of each ad's human summaries (ads with fewer left out):
    no creative is posted twice, since with near-duplicate groups on (the default) a copy of a labelled creative
    joins its group without being encoded, and would time the grouping, not the labelling."""
    rows = [json.loads(line) for line in (SHARED_DATA / "pitt_ads_dev.jsonl").open()]
    rng = random.Random(seed)
    rng.shuffle(rows)
    used: set[str] = set()
    orders = []
    for row in rows:  # some short summaries ("buy this drink because it tastes great") recur across ads
        fresh = sorted(set(row["texts"]) - used)
        if len(fresh) >= len(SCENARIOS) and len(orders) < n:
            orders.append(rng.sample(fresh, len(SCENARIOS)))
            used.update(orders[-1])
    if len(orders) < n:
        raise ValueError(f"the Pitt file has {len(orders)} ads with {len(SCENARIOS)} summaries of their own, not {n}")
    return [[order[k] for order in orders] for k in range(len(SCENARIOS))]


def images(n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        image = Image.new("RGB", (256, 256), tuple(rng.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            x, y = rng.randrange(200), rng.randrange(200)
            draw.ellipse((x, y, x + 50, y + 50), fill=tuple(rng.randrange(256) for _ in range(3)))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=85)
        out.append(buffer.getvalue())
    return out


def served(service: ServiceProcesses, data_dir: Path) -> tuple[Path, str, str]:
    """The active version's artefact directory, and the backend and device its labelling worker serves it on
    (GET /readyz)."""
    with service.client(ADMIN) as http:
        ready = http.get("/readyz").json()
    worker = next(w for w in ready["workers"] if "ctax.label" in w.get("queues", []))
    return (Settings(data_dir=data_dir).model_dir / ready["model_version"], str(worker.get("backend") or "torch"),
            str(worker.get("device") or "cpu"))


def raw_throughput(mode: str, payloads: list[Any], batch_size: int, directory: Path, backend: str,
                   device: str = "cpu") -> float:
    """The towers the worker serves (its version, on its backend and device), loaded in this process, timed on
    the same payloads in messages of the worker's batch size: `SharedSpace.encode_messages`, the call bench.backends and
    the version build time too, so raw here is what the worker's encoder does and nothing else."""
    import torch

    from ctax.creatives.images import decode_rgb
    from ctax.embedding.space import SharedSpace

    torch.set_num_threads(os.cpu_count() or 1)
    space = SharedSpace.load(directory, device, backend)
    if mode != "text" and space.image is None:
        raise RuntimeError(f"the served version has no image tower here: {space.image_status}")

    def encode(items: list[Any]) -> Any:
        if mode == "text":
            return space.encode_messages(texts=items, message=batch_size)
        # Decoding is part of the tower's work per creative, as in the worker.
        return space.encode_messages(images=[decode_rgb(p) for p in items], message=batch_size)

    encode(payloads[:batch_size])
    start = time.perf_counter()
    encode(payloads)
    return len(payloads) / (time.perf_counter() - start)


def labelled_count(http: httpx.Client) -> int:
    return int(http.get("/v1/creatives", params={"status": "labelled", "limit": 1}).json()["total"])


def import_taxonomy(service: ServiceProcesses) -> None:
    """The Pitt ads taxonomy imported through the API, as an operator would before posting."""
    with service.client(ADMIN) as http:
        taxonomy = (SHARED_DATA / "pitt_ads_taxonomy.txt").read_bytes()
        http.post("/v1/labels/import", files={"file": ("pitt.txt", taxonomy)}).raise_for_status()


def labelled_file(work: Path, n: int, payloads: list[str], seed: int) -> Path:
    """N labelled Pitt ads, none whose texts are among the payloads, as a file `ctax creatives import` reads."""
    taken = set(payloads)
    rows = [row for row in map(json.loads, (SHARED_DATA / "pitt_ads_dev.jsonl").open())
            if not taken.intersection(row["texts"])]
    random.Random(seed).shuffle(rows)
    path = work / "labelled.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows[:n]))
    return path


def import_labelled(service: ServiceProcesses, work: Path, n: int, payloads: list[str], seed: int) -> str:
    """N labelled Pitt ads (none whose texts are posted later) imported with `ctax creatives import`, as an
    operator would; the index owner re-calibrates the version on them, which gives it a learned novelty score
    over the traffic (without labelled data it has none, and labelling never searches the traffic window).
    Waits for that; returns which score the version serves."""
    path = labelled_file(work, n, payloads, seed)
    subprocess.run([sys.executable, "-m", "ctax", "creatives", "import", str(path)], env=service.env, check=True,
                   capture_output=True)
    deadline = time.monotonic() + 900
    with service.client(ADMIN) as http:
        while time.monotonic() < deadline:
            version = http.get("/readyz").json().get("model_version")
            view = http.get(f"/v1/models/{version}").json()
            if view["thresholds"]["novelty_score"] == "learned":
                return f"learned, calibrated on {view['calibration']['n_validation']} labelled ads"
            time.sleep(2.0)
    raise TimeoutError("the version was not re-calibrated on the imported ads within 15 minutes")


def post_all(service: ServiceProcesses, mode: str, payloads: list[Any], endpoint: str, clients: int,
             batch_items: int) -> tuple[float, float, float]:
    """Post everything, wait for the last label; returns (end-to-end /s, posting /s, seconds)."""
    def item(payload: Any) -> dict[str, Any]:
        return {"ocr_text": payload} if mode == "text" else {"image_base64": base64.b64encode(payload).decode()}

    with service.client(ADMIN) as http:
        before = labelled_count(http)
    start = time.perf_counter()
    posted_at: list[float] = []
    lock = threading.Lock()

    def send(chunk: list[Any]) -> None:
        with httpx.Client(base_url=service.url, headers={"X-API-Key": ADMIN}, timeout=120) as http:
            if endpoint == "single":
                for payload in chunk:
                    assert http.post("/v1/creatives", json=item(payload)).status_code == 202
            else:
                for i in range(0, len(chunk), batch_items):
                    body = {"items": [item(p) for p in chunk[i : i + batch_items]]}
                    assert http.post("/v1/creatives/batch", json=body).status_code == 202
        with lock:
            posted_at.append(time.perf_counter())

    shares = [payloads[i::clients] for i in range(clients)]
    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(send, share) for share in shares]
        with service.client(ADMIN) as http:
            while labelled_count(http) - before < len(payloads):
                for future in futures:
                    if future.done() and future.exception():
                        raise future.exception()  # type: ignore[misc]
                time.sleep(0.2)
    seconds = time.perf_counter() - start
    return len(payloads) / seconds, len(payloads) / (max(posted_at) - start), seconds


def full_queue(service: ServiceProcesses, mode: str, payloads: list[Any], batch_size: int) -> tuple[float, float]:
    """The queue kept full: post everything with the worker stopped, start it, and time the drain from the
    creatives' own `labelled_at` stamps, from the first batch stored to the last (model loading is start-up,
    not throughput). Completion is polled once a second: on 2 cores, a client polling the API ten times a
    second took a third of a core from the worker it was measuring."""
    with service.client(ADMIN) as http:
        before = labelled_count(http)
    service.kill_worker("label")
    post_all_async(service, mode, payloads, batch_size)
    service.start_worker("label")
    with service.client(ADMIN) as http:
        while labelled_count(http) - before < len(payloads):
            time.sleep(1.0)
        stamps: list[dt.datetime] = []
        while len(stamps) < len(payloads):  # newest first: this run's creatives are the most recent ones
            page = http.get("/v1/creatives", params={"status": "labelled", "limit": 500, "offset": len(stamps)})
            stamps += [dt.datetime.fromisoformat(item["labelled_at"]) for item in page.json()["items"]]
    stamps = stamps[: len(payloads)]
    first, last = min(stamps), max(stamps)
    seconds = (last - first).total_seconds()
    return (len(payloads) - stamps.count(first)) / seconds, seconds


def post_all_async(service: ServiceProcesses, mode: str, payloads: list[Any], batch_size: int) -> None:
    with httpx.Client(base_url=service.url, headers={"X-API-Key": ADMIN}, timeout=120) as http:
        for i in range(0, len(payloads), batch_size):
            items = [{"ocr_text": p} if mode == "text" else {"image_base64": base64.b64encode(p).decode()}
                     for p in payloads[i : i + batch_size]]
            assert http.post("/v1/creatives/batch", json={"items": items}).status_code == 202


def run_mode(mode: str, n: int, batch_size: int, clients: int, seed: int, work: Path,
             labelled: int = 0) -> list[dict[str, Any]]:
    env = {
        "CTAX_DATA_DIR": str(work / mode / "var"), "CTAX_BOOTSTRAP_ADMIN_KEY": ADMIN,
        "CTAX_LABEL_BATCH_SIZE": str(batch_size), "HF_HUB_OFFLINE": "1",
    }
    if mode == "text":
        env |= {"CTAX_IMAGE_ENABLED": "false"}
        sets: list[list[Any]] = [list(texts) for texts in scenario_texts(n, seed)]
    else:
        env |= {"CTAX_IMAGE_ARCH": "ViT-B-32", "CTAX_IMAGE_PRETRAINED": "none", "CTAX_IMAGE_PROJECTION": "random",
                "CTAX_OCR_ENABLED": "false"}
        sets = [images(n, seed + 7919 * k) for k in range(len(SCENARIOS))]  # generated: distinct
    payloads = sets[0]
    service = ServiceProcesses(env, work / mode / "logs")
    console.print(f"[bold]{mode}[/bold]: starting the service (API + labelling worker)...")
    service.start(timeout=600)
    try:
        import_taxonomy(service)
        score = "blend (no labelled data)"
        if labelled and mode == "text":
            console.print(f"{mode}: importing {labelled} labelled ads and waiting for the version's calibration...")
            score = import_labelled(service, work / mode, labelled, [p for share in sets for p in share], seed)
        # Not among the payloads: a copy would join the warm-up creative's group unencoded.
        warm = ([f"Warm-up creative {k} of the throughput bench" for k in range(batch_size)] if mode == "text"
                else images(batch_size, seed - 1))
        post_all(service, mode, warm, "batch", 1, batch_size)  # first batch pays for lazy imports
        # The imported ads are indexed for search chunk by chunk after the import: a raw encoder timed meanwhile
        # shares the cores with that backfill (it read 0.55 of the raw encoder timed after the runs).
        service.wait_for_backfill()
        directory, backend, device = served(service, work / mode / "var")
        console.print(f"{mode}: raw batched throughput of the same encoders ({directory.name} on {backend}, "
                      f"{device}), batch {batch_size}...")
        raw_before = raw_throughput(mode, payloads, batch_size, directory, backend, device)
        rows: list[dict[str, Any]] = []
        console.print(f"{mode}: filling the queue with {n} creatives while the worker is stopped...")
        drain, seconds = full_queue(service, mode, sets[0], batch_size)
        rows.append({"mode": mode, "endpoint": "full queue", "n": n, "end_to_end_per_s": drain, "posting_per_s": None,
                     "seconds": seconds})
        for endpoint, share in zip(SCENARIOS[1:], sets[1:], strict=True):
            console.print(f"{mode}: posting {n} other creatives to the {endpoint} endpoint...")
            e2e, posting, seconds = post_all(service, mode, share, endpoint, clients, batch_size)
            rows.append({"mode": mode, "endpoint": endpoint, "n": n, "end_to_end_per_s": e2e, "posting_per_s": posting,
                         "seconds": seconds})
        console.print(f"{mode}: raw batched throughput again, after the end-to-end runs...")
        raw_after = raw_throughput(mode, payloads, batch_size, directory, backend, device)
        raw = max(raw_before, raw_after)
        for row in rows:
            row |= {"backend": backend, "device": device, "raw_before_per_s": raw_before, "raw_after_per_s": raw_after,
                    "raw_encoder_per_s": raw, "ratio": row["end_to_end_per_s"] / raw, "novelty_score": score}
        return rows
    finally:
        service.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="text,image")
    parser.add_argument("--n-text", type=int, default=2000)
    parser.add_argument("--n-image", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=WORKER_BATCH,
                        help="the worker's batch (CTAX_LABEL_BATCH_SIZE; default: the setting's default)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--labelled", type=int, default=0,
                        help="text: import this many labelled Pitt ads first (a version with a learned novelty score)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ctax-throughput-"))
    rows: list[dict[str, Any]] = []
    for mode in args.modes.split(","):
        n = args.n_text if mode == "text" else args.n_image
        rows += run_mode(mode, n, args.batch_size, args.clients, args.seed, work, args.labelled)
    table = Table("creatives", "backend", "endpoint", "N", "end to end /s", "posting /s",
                  "raw encoder /s (before, after)", "ratio to the faster raw")
    for row in rows:
        table.add_row(row["mode"], f"{row['backend']} on {row['device']}", row["endpoint"], str(row["n"]),
                      f"{row['end_to_end_per_s']:.1f}",
                      f"{row['posting_per_s']:.1f}" if row["posting_per_s"] else "-",
                      f"{row['raw_before_per_s']:.1f}, {row['raw_after_per_s']:.1f}", f"{row['ratio']:.2f}")
    console.print(table)
    console.print("novelty score served: " + "; ".join(sorted({f"{r['mode']}: {r['novelty_score']}" for r in rows})))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
