"""Chaos drill: `ctax run` (the real supervisor) keeps labelling while its labelling worker is SIGKILLed mid-drain.

    python -m bench.chaos                                  # 300 creatives, 3 kills
    python -m bench.chaos --creatives 300 --kills 3 --json chaos.json

A temporary data directory on the embedded profile (SQLite, SQLite broker, Qdrant local mode; text only) gets the
Pitt taxonomy and `--seed-rows` labelled Pitt ads, then `ctax run` starts. One client posts N single creatives
(real Pitt ad texts) steadily over `--post-s` seconds, while a prober keeps asking GET /healthz and
GET /v1/creatives/{id} of every creative acknowledged, noting the labelled_at each first shows. The labelling
worker (found with psutil among the children of `ctax run`) is SIGKILLed k times, spread over the posting: each
kill waits until the restarted worker is ready and has labelled again, and aims at a moment when it holds claims,
or (the first `--kills-in-index-job`, 1) when it runs an index sync from the outbox (read from the service's
database), whose message goes with it. The last `--stops` (1) of the kills are SIGSTOPs instead: the worker lives
and does nothing (as one stuck where not even its heartbeat runs), and `ctax run` must notice its silent
heartbeat (after 4 x CTAX_WORKER_STALE_S, 60 s) and kill it itself.
At the end Ctrl-C (SIGINT to the process group) stops the service.

Meanwhile the poster deletes a share of its creatives (`--delete-share`, 0.1): half at once (queued, or being
labelled: a 409 then, tried again half a second later), half once they are labelled. A deleted creative must
answer 404 from then on, and at the end the worker's index must hold no point without a row (search's `indexed`:
the creatives collection's points against the rows it should hold).

And a second account posts `--erase-creatives` (60) over the first half of the posting, and is then erased
(`DELETE /v1/accounts/{id}`) while the kills go on: the account must be gone (404) and none of its creatives
readable, their index points among those counted below.

Reported: API requests answered (all must be; a delete's 409 while a worker labels the creative is counted apart),
creatives acknowledged / deleted / labelled / stuck / labelled twice (its labelled_at changed after it was first
seen labelled) / failed, deleted ones still readable, index points without a row, time to drain after the last
kill, restarts seen, index jobs sent again after a kill, points of deleted creatives the restart's sweep dropped.
Target: 300 creatives, 3 kills (one a stop): every creative not deleted labelled, the stopped worker killed by
`ctax run`, 0 stuck, 0 duplicated,
0 failed API requests, 0 deleted still readable, 0 points without a row, drained within 120 s of the last kill,
the erased account gone with 0 of its creatives readable.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
from rich.console import Console
from rich.table import Table

from tests.support import ROOT, SHARED_DATA, free_port

console = Console(width=None if sys.stdout.isatty() else 120)  # piped to a file: wide enough for the kill table
ADMIN = "chaos-admin-key-0123456789"


class Service:
    """`ctax run` in its own process group, on a prepared data directory."""

    def __init__(self, work: Path, seed_rows: int) -> None:
        self.work = work
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = work / "ctax-run.log"
        self.env = {**os.environ, "CTAX_DATA_DIR": str(work / "var"), "CTAX_BOOTSTRAP_ADMIN_KEY": ADMIN,
                    "CTAX_IMAGE_ENABLED": "false", "CTAX_OCR_ENABLED": "false", "PYTHONUNBUFFERED": "1"}
        ctax = [sys.executable, "-m", "ctax"]
        seed = work / "seed.jsonl"
        seed.write_text("".join((SHARED_DATA / "pitt_ads_dev.jsonl").open().readlines()[:seed_rows]))
        for args in (["db", "upgrade"], ["labels", "import", str(SHARED_DATA / "pitt_ads_taxonomy.txt")],
                     ["creatives", "import", str(seed)]):
            subprocess.run([*ctax, *args], env=self.env, check=True, cwd=ROOT, capture_output=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([*ctax, "run", "--port", str(self.port)], env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def label_worker(self) -> psutil.Process | None:
        for child in psutil.Process(self.proc.pid).children():
            try:
                if {"worker", "label"} <= set(child.cmdline()):
                    return child
            except psutil.NoSuchProcess:
                continue
        return None

    def index_sync_running(self) -> bool:
        """Whether the worker is running an index sync from the outbox now (a deletion of labelled data asks for
        one; it recalibrates for seconds, where a deletion's forget takes milliseconds and a kill aimed at one
        came too late in the first run): read from the service's database, as an operator would."""
        with sqlite3.connect(self.work / "var" / "ctax.db", timeout=5) as db:
            return db.execute("SELECT 1 FROM outbox WHERE running_on IS NOT NULL AND done_at IS NULL "
                              "AND task = 'ctax.index.sync' LIMIT 1").fetchone() is not None

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def interrupt(self) -> tuple[float, bool]:
        """Ctrl-C, as a terminal sends it; returns how long everything took to stop, and whether it all stopped
        by itself with exit status 0."""
        family = psutil.Process(self.proc.pid).children(recursive=True)
        started = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        _, alive = psutil.wait_procs(family, timeout=10)
        for proc in alive:
            proc.kill()
        return time.monotonic() - started, not alive and self.proc.returncode == 0


class Traffic:
    """The poster and the prober; every request either side sends is counted."""

    def __init__(self, url: str, key: str) -> None:
        self.http = httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=60)
        self.lock = threading.Lock()
        self.ids: list[str] = []
        self.status: dict[str, str] = {}
        self.first_labelled_at: dict[str, str] = {}
        self.twice: set[str] = set()
        self.requests = 0
        self.failures: list[str] = []
        self.posting_done = threading.Event()
        self.halt = threading.Event()
        self.deleted: set[str] = set()
        self.delete_conflicts = 0  # 409: a worker was labelling it at that moment (tried again)

    def request(self, method: str, path: str, expected: tuple[int, ...] = (), **kwargs: Any) -> dict[str, Any] | None:
        """The answer's JSON when it is a 200 or 202; None otherwise, counted as a failure unless `expected`."""
        try:
            response = self.http.request(method, path, **kwargs)
            ok = response.status_code in (200, 202)
            what = f"{response.status_code} {response.text[:200]}"
            fine = ok or response.status_code in expected
        except httpx.HTTPError as exc:
            ok, fine, what = False, False, repr(exc)
        with self.lock:
            self.requests += 1
            if not fine:
                self.failures.append(f"{method} {path}: {what}")
        return dict(response.json()) if ok else None

    def post(self, n: int, seconds: float) -> None:
        rows = [json.loads(line) for line in (SHARED_DATA / "pitt_ads_dev.jsonl").open()]
        rng = random.Random(13)
        start = time.monotonic()
        for i in range(n):
            time.sleep(max(0.0, start + i * seconds / n - time.monotonic()))
            body = self.request("POST", "/v1/creatives", json={"ocr_text": rng.choice(rng.choice(rows)["texts"])})
            if body is not None:
                with self.lock:
                    self.ids.append(body["id"])
        self.posting_done.set()

    def delete(self, creative_id: str) -> None:
        """Delete it, trying again while a worker labels it (409); from now on a 404 for it is the answer."""
        with self.lock:
            self.deleted.add(creative_id)
        while not self.halt.is_set():
            try:
                response = self.http.delete(f"/v1/creatives/{creative_id}")
                code, what = response.status_code, f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as exc:
                code, what = 0, repr(exc)
            with self.lock:
                self.requests += 1
                if code == 409:
                    self.delete_conflicts += 1
                elif code != 200:
                    self.failures.append(f"DELETE /v1/creatives/{creative_id}: {what}")
            if code != 409:
                return
            time.sleep(0.5)

    def delete_some(self, share: float) -> None:
        """Every 1/share-th creative acknowledged: every other one of those deleted at once, the rest once labelled
        (or failed)."""
        if share <= 0:
            return
        every, done = max(1, round(1 / share)), set()
        while not self.halt.is_set():
            chosen = list(self.ids)[::every]
            for n, creative_id in enumerate(chosen):
                if creative_id not in done and (n % 2 == 0 or self.status.get(creative_id) in ("labelled", "failed")):
                    done.add(creative_id)
                    self.delete(creative_id)
            if self.posting_done.is_set() and len(done) == len(list(self.ids)[::every]):
                return
            time.sleep(0.2)

    def alive(self) -> list[str]:
        with self.lock:
            return [creative_id for creative_id in self.ids if creative_id not in self.deleted]

    def probe(self) -> None:
        while not self.halt.is_set():
            self.request("GET", "/healthz")
            for creative_id in list(self.ids):
                gone = creative_id in self.deleted
                body = self.request("GET", f"/v1/creatives/{creative_id}", expected=(404,) if gone else ())
                if gone:
                    continue
                if body is not None:
                    self._note(creative_id, body)
                if self.halt.is_set():
                    return

    def _note(self, creative_id: str, body: dict[str, Any]) -> None:
        with self.lock:
            self.status[creative_id] = body["status"]
            if body["status"] == "labelled":
                first = self.first_labelled_at.setdefault(creative_id, body["labelled_at"])
                if body["labelled_at"] != first:
                    self.twice.add(creative_id)

    def count(self, *statuses: str) -> int:
        alive = self.alive()
        with self.lock:
            return sum(1 for creative_id in alive if self.status.get(creative_id) in statuses)

    def processing_now(self) -> int:
        body = self.request("GET", "/v1/creatives", params={"status": "processing", "limit": 1})
        return int(body["total"]) if body else 0

    def deleted_still_readable(self) -> int:
        """Deleted creatives that answer anything but 404 (each read once more, at the end)."""
        return sum(1 for creative_id in sorted(self.deleted)
                   if self.http.get(f"/v1/creatives/{creative_id}").status_code != 404)

    def points_without_row(self, timeout: float = 60.0) -> int | None:
        """The worker's creatives collection against the rows it should hold (search's `indexed`), once the
        index has caught up (its forget jobs and backfill run between batches)."""
        deadline, extra = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            body = self.request("POST", "/v1/search", json={"text": "warm up", "limit": 1, "labels_limit": 1})
            if body is not None:
                extra = int(body["indexed"]["creatives"]) - int(body["indexed"]["total"])
                if extra == 0:
                    return 0
            time.sleep(1.0)
        return extra


def wait_for(condition: Callable[[], bool], timeout: float, poll: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)
    return True


def kill_once(service: Service, traffic: Traffic, due: int, t0: float, in_job: bool = False,
              stop: bool = False) -> dict[str, Any]:
    """Once `due` creatives were acknowledged and the worker is back and labelling, SIGKILL it, preferably while
    it holds claims (`in_job`: while it runs an index sync); then time how long until it is ready again. With
    `stop`, SIGSTOP it instead (a worker that lives and does nothing, as one stuck holding the GIL): `ctax run` must
    find it by its silent heartbeat and kill it itself."""
    wait_for(lambda: len(traffic.ids) >= due or traffic.posting_done.is_set(), 900)
    labelled_before = traffic.count("labelled")
    wait_for(lambda: service.ready() and (traffic.count("labelled") > labelled_before
                                          or traffic.count("labelled") == len(traffic.alive())), 600)
    worker = service.label_worker()
    if worker is None:
        raise RuntimeError(f"no labelling worker among the children of ctax run:\n{service.text()[-3000:]}")
    if in_job:
        in_job = wait_for(service.index_sync_running, 60, poll=0.02)
    else:
        wait_for(lambda: traffic.processing_now() > 0, 5, poll=0.05)
    processing, unlabelled = traffic.processing_now(), len(traffic.alive()) - traffic.count("labelled", "failed")
    worker.suspend() if stop else worker.kill()
    killed = time.monotonic()
    not_ready = wait_for(lambda: not service.ready(), 120 if stop else 10, poll=0.05)
    unready_after = time.monotonic() - killed
    wait_for(lambda: (w := service.label_worker()) is not None and w.pid != worker.pid and service.ready(), 600)
    return {"at_s": round(killed - t0, 1), "pid": worker.pid, "signal": "SIGSTOP" if stop else "SIGKILL",
            "in_index_job": in_job, "processing_at_kill": processing,
            "unlabelled_at_kill": unlabelled,
            "readyz_503_after_s": round(unready_after, 2) if not_ready else None,
            "ready_again_after_s": round(time.monotonic() - killed, 1), "_killed": killed}


def _poster_key(admin: httpx.Client, name: str) -> tuple[int, str]:
    account = admin.post("/v1/accounts", json={"name": name, "kind": "advertiser"})
    account.raise_for_status()  # poster keys belong to an account
    answer = admin.post("/v1/api-keys", json={"name": f"{name} poster", "role": "poster",
                                              "account_id": account.json()["id"]})
    answer.raise_for_status()
    return int(account.json()["id"]), str(answer.json()["key"])


def erase_an_account(url: str, n: int, seconds: float, out: dict[str, Any]) -> None:
    """Another account posts n creatives over `seconds`, then is erased: how long until it is gone, and whether
    any of its creatives can still be read (by an admin, who reads every account's)."""
    with httpx.Client(base_url=url, headers={"X-API-Key": ADMIN}, timeout=60) as admin:
        account_id, key = _poster_key(admin, "erased advertiser")
        doomed = Traffic(url, key)
        doomed.post(n, seconds)
        asked = time.monotonic()
        erasing = admin.delete(f"/v1/accounts/{account_id}")
        gone = erasing.status_code == 202 and wait_for(
            lambda: admin.get(f"/v1/accounts/{account_id}").status_code == 404, 600, poll=0.5)
        out.update({
            "erased_account_creatives": len(doomed.ids),
            "erased_after_s": round(time.monotonic() - asked, 1) if gone else None,
            "erased_still_readable": sum(1 for creative_id in doomed.ids
                                         if admin.get(f"/v1/creatives/{creative_id}").status_code != 404),
            "_requests": doomed.requests + 2, "_failures": doomed.failures + (
                [] if erasing.status_code == 202 else [f"DELETE account: {erasing.status_code} {erasing.text}"])})


def drill(service: Service, args: argparse.Namespace) -> dict[str, Any]:
    with httpx.Client(base_url=service.url, headers={"X-API-Key": ADMIN}, timeout=60) as admin:
        _, key = _poster_key(admin, "chaos advertiser")
    traffic = Traffic(service.url, key)
    erased: dict[str, Any] = {}
    t0 = time.monotonic()
    threads = [threading.Thread(target=traffic.post, args=(args.creatives, args.post_s), daemon=True),
               threading.Thread(target=traffic.probe, daemon=True),
               threading.Thread(target=traffic.delete_some, args=(args.delete_share,), daemon=True),
               threading.Thread(target=erase_an_account, daemon=True,
                                args=(service.url, args.erase_creatives, args.post_s / 2, erased))]
    for thread in threads:
        thread.start()
    kills = [kill_once(service, traffic, args.creatives * (n + 1) // (args.kills + 1), t0,
                       in_job=n < args.kills_in_index_job, stop=n >= args.kills - args.stops)
             for n in range(args.kills)]
    last_kill = kills[-1].pop("_killed") if kills else t0
    for kill in kills:
        kill.pop("_killed", None)
    traffic.posting_done.wait()
    threads[2].join(timeout=args.drain_timeout_s)
    drained = wait_for(lambda: traffic.count("labelled", "failed") == len(traffic.alive()), args.drain_timeout_s)
    drain_s = time.monotonic() - last_kill
    time.sleep(3)  # one more round of reads, to see a second labelling
    threads[3].join(timeout=args.drain_timeout_s)
    traffic.halt.set()
    threads[1].join(timeout=60)
    traffic.requests += erased.pop("_requests", 0)
    traffic.failures += erased.pop("_failures", ["the erased account's thread did not finish"])
    alive = len(traffic.alive())
    log = service.text()
    return {
        "creatives_posted": args.creatives, "kills": len(kills), "acknowledged": len(traffic.ids),
        "deleted": len(traffic.deleted), "delete_conflicts_409": traffic.delete_conflicts,
        "deleted_still_readable": traffic.deleted_still_readable(),
        "index_points_without_row": traffic.points_without_row(), **erased,
        "labelled": traffic.count("labelled"), "failed": traffic.count("failed"),
        "stuck": alive - traffic.count("labelled", "failed"), "labelled_twice": len(traffic.twice),
        "api_requests": traffic.requests, "api_failed": len(traffic.failures),
        "api_answered_pct": round(100 * (traffic.requests - len(traffic.failures)) / max(traffic.requests, 1), 2),
        "drained_after_last_kill_s": round(drain_s, 1) if drained else None,
        "restarts_seen": len(re.findall(r"labelling worker restarted", log)),
        "silent_workers_killed": len(re.findall(r"labelling worker \(pid \d+\) has not beaten for", log)),
        # Index jobs a killed worker was running, sent again by the dispatcher; and the points of deleted creatives
        # the restart's sweep dropped (their FORGET_CREATIVES lost before its task started, or still queued).
        "index_jobs_sent_again": sum(int(n) for n in re.findall(r"sending again (\d+) jobs a stopped worker", log)),
        "orphan_points_swept": sum(int(n) for n in re.findall(r"(\d+) points of \S+ had no creative", log)),
        "kill_detail": [{**kill, **handed_back(log, kill["pid"])} for kill in kills],
        "failure_examples": traffic.failures[:5],
    }


def handed_back(log: str, pid: int) -> dict[str, int | None]:
    """What `ctax run` said it handed back when that worker died."""
    found = re.search(rf"\(pid {pid}\): handed back (\d+) creatives it had claimed and resent (\d+)", log)
    return {"claims_released": int(found[1]), "resent": int(found[2])} if found else {
        "claims_released": None, "resent": None}


def print_report(report: dict[str, Any]) -> None:
    table = Table(title=f"chaos: {report['creatives_posted']} creatives, {report['kills']} worker kills")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key in ("acknowledged", "deleted", "delete_conflicts_409", "deleted_still_readable",
                "erased_account_creatives", "erased_after_s", "erased_still_readable", "index_points_without_row",
                "labelled", "stuck", "labelled_twice", "failed", "api_requests", "api_failed", "api_answered_pct",
                "drained_after_last_kill_s", "restarts_seen", "silent_workers_killed", "index_jobs_sent_again",
                "orphan_points_swept",
                "ctrl_c_stop_s", "ctrl_c_clean"):
        table.add_row(key, str(report.get(key)))
    console.print(table)
    columns = {"at_s": "at s", "pid": "pid", "signal": "signal", "in_index_job": "in a sync",
               "unlabelled_at_kill": "unlabelled", "processing_at_kill": "claimed",
               "claims_released": "released", "resent": "resent", "readyz_503_after_s": "503 after s",
               "ready_again_after_s": "ready after s"}
    kills = Table(title="each kill: when, what was waiting, what ctax run handed back, /readyz")
    for header in columns.values():
        kills.add_column(header, justify="right")
    for kill in report["kill_detail"]:
        kills.add_row(*(str(kill[key]) for key in columns))
    console.print(kills)
    for example in report["failure_examples"]:
        console.print(f"[red]failed request: {example}[/red]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--creatives", type=int, default=300)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--post-s", type=float, default=120.0, help="seconds over which the creatives are posted")
    parser.add_argument("--seed-rows", type=int, default=1000, help="labelled Pitt ads imported first")
    parser.add_argument("--delete-share", type=float, default=0.1,
                        help="share of the posted creatives the poster deletes (0: none)")
    parser.add_argument("--kills-in-index-job", type=int, default=1,
                        help="of the kills, how many (the first ones) aim at an index sync the worker runs")
    parser.add_argument("--stops", type=int, default=1,
                        help="of the kills, how many (the last ones) are SIGSTOPs for ctax run to find and kill")
    parser.add_argument("--erase-creatives", type=int, default=60,
                        help="creatives a second account posts before it is erased")
    parser.add_argument("--drain-timeout-s", type=float, default=600.0)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--log", type=Path, help="keep the `ctax run` log here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ctax-chaos-") as tmp:
        console.print(f"preparing {tmp} ({args.seed_rows} labelled ads) and starting `ctax run`")
        service = Service(Path(tmp), args.seed_rows)
        try:
            if not wait_for(service.ready, 900, poll=1.0):
                raise RuntimeError(f"ctax run not ready:\n{service.text()[-3000:]}")
            console.print("ready; posting and killing")
            report = drill(service, args)
        finally:
            stop_s, clean = service.interrupt()
            if args.log:
                args.log.write_text(service.text())
    report["ctrl_c_stop_s"], report["ctrl_c_clean"] = round(stop_s, 1), clean
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
        console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
