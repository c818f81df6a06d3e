"""Test helpers that are not fixtures: locating the shared data, running the service as processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

if TYPE_CHECKING:
    from ctax.store.session import Database

Row = TypeVar("Row")

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("CTAX_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("CTAX_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")


def _find_shared_data() -> Path:
    candidates = [os.environ.get("CTAX_SHARED_DATA"), ROOT.parent / "shared" / "data", Path("/work/shared/data")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "pitt_ads_dev.jsonl").is_file():
            return Path(candidate)
    raise RuntimeError(
        "the shared data (pitt_ads_dev.jsonl, the IAB and Pitt taxonomies) was not found next to the checkout "
        "(../shared/data) nor at /work/shared/data; set CTAX_SHARED_DATA to its folder"
    )


SHARED_DATA = _find_shared_data()

# What a test's `ctax eval` runs with: text only, and the torch backend (auto would export and time every inference
# backend for each version it builds, tens of seconds; tests/versions/test_backends.py builds them on purpose).
EVAL_ENV = {"CTAX_IMAGE_ENABLED": "false", "CTAX_OCR_ENABLED": "false", "CTAX_BACKEND": "torch"}


def stored(db: Database, model: type[Row], key: object) -> Row:
    """The row as committed now, readable after its session closed (a test reads it again to see it change)."""
    with db.read() as session:
        row = session.get(model, key)
        assert row is not None, f"no {model.__name__} {key!r} stored"
        session.expunge(row)
        return row


def drop_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run_ctax(tmp_path: Path, *args: str, input: str | None = None, **settings: str) -> subprocess.CompletedProcess[str]:
    """`ctax ARGS` as a user runs it, on a data directory under tmp_path, with none of this shell's CTAX_ settings
    but `settings` (and `input` typed at its prompts)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTAX_")}
    return subprocess.run([sys.executable, "-m", "ctax", *args], cwd=tmp_path, capture_output=True, text=True,
                          env={**env, "CTAX_DATA_DIR": str(tmp_path / "var"), **settings}, timeout=120, input=input)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServiceProcesses:
    """`ctax db upgrade`, then `ctax worker` and `ctax api` as child processes, as `make run` starts them."""

    def __init__(self, env: dict[str, str], log_dir: Path, roles: tuple[str, ...] = ("label",)) -> None:
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_dir = log_dir
        self.roles = roles
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_key = env["CTAX_BOOTSTRAP_ADMIN_KEY"]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def _spawn(self, name: str, *args: str) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "ctax", *args], env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, cwd=ROOT)

    def start(self, timeout: float = 240.0) -> None:
        """Start everything and wait until ready; on any failure stop what was started (no orphans)."""
        try:
            subprocess.run([sys.executable, "-m", "ctax", "db", "upgrade"], env=self.env, check=True, cwd=ROOT,
                           capture_output=True)
            for role in self.roles:
                self.start_worker(role)
            self._spawn("api", "api", "--port", str(self.port))
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def start_worker(self, role: str = "label") -> None:
        self._spawn(f"worker-{role}", "worker", "--role", role, "--loglevel", "info")

    def kill_worker(self, role: str = "label") -> None:
        proc = self.procs.pop(f"worker-{role}")
        proc.kill()
        proc.wait(timeout=30)

    def wait_ready(self, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.logs()}")
            try:
                # With the admin key: a timeout then reports why the service was not ready, not just that.
                last = httpx.get(f"{self.url}/readyz", headers={"X-API-Key": self.admin_key}, timeout=5)
                if last.status_code == 200:
                    return
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(0.5)
        raise TimeoutError(f"service not ready after {timeout}s: {getattr(last, 'text', last)}\n{self.logs()}")

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": key or self.admin_key}, timeout=60)

    def wait_for(self, creative_ids: list[str], statuses: tuple[str, ...] = ("labelled", "failed"),
                  timeout: float = 180.0) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        done: dict[str, dict[str, Any]] = {}
        with self.client() as http:
            while time.monotonic() < deadline:
                for creative_id in creative_ids:
                    if creative_id not in done:
                        body = http.get(f"/v1/creatives/{creative_id}").json()
                        if body.get("status") in statuses:
                            done[creative_id] = body
                if len(done) == len(creative_ids):
                    return done
                time.sleep(0.3)
        raise TimeoutError(f"{len(creative_ids) - len(done)} creatives not done after {timeout}s\n{self.logs()}")

    def wait_for_backfill(self, timeout: float = 600.0) -> dict[str, int]:
        """Until the worker's backfill has indexed every stored labelled creative (search's `indexed` says how
        far): it runs chunk by chunk between other tasks after an import or a first start, and a bench that
        measures the worker meanwhile measures the backfill too. What `indexed` read at the end."""
        deadline = time.monotonic() + timeout
        indexed: dict[str, int] = {}
        with self.client() as http:
            while time.monotonic() < deadline:
                answer = http.post("/v1/search", json={"text": "warm up", "limit": 1, "labels_limit": 1})
                if answer.status_code == 200:
                    indexed = answer.json()["indexed"]
                    if indexed["creatives"] >= indexed["total"]:
                        return indexed
                time.sleep(1.0)
        raise TimeoutError(f"the backfill did not finish in {timeout:.0f} s: {indexed}")

    def logs(self, tail: int = 60) -> str:
        out = []
        for path in sorted(self.log_dir.glob("*.log")):
            lines = path.read_text(errors="replace").splitlines()[-tail:]
            out.append(f"--- {path.name} ---\n" + "\n".join(lines))
        return "\n".join(out)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def running_service(env: dict[str, str], log_dir: Path) -> Iterator[ServiceProcesses]:
    """The service started, and stopped whatever happens: what the fixtures that start one yield."""
    processes = ServiceProcesses(env, log_dir)
    processes.start()
    try:
        yield processes
    finally:
        processes.stop()


# Four labels of the Pitt data a small `ctax eval` split is drawn from (write_split).
EVAL_LABELS = ["Product/Vehicles/Cars", "PSA/Animal Rights", "Product/Food and Drink/Soft Drinks",
               "PSA/Health/Smoking and Alcohol Abuse"]


def write_split(shared_data: Path, directory: Path, per_label: int = 25) -> tuple[Path, Path, list[dict[str, Any]]]:
    """A train and a test file of up to `per_label` Pitt ads of each EVAL_LABELS label, 7 in 10 to train on;
    returns them and the training rows."""
    by_label: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in (shared_data / "pitt_ads_dev.jsonl").open():
        row = json.loads(line)
        if row["label"] in EVAL_LABELS and len(by_label[row["label"]]) < per_label:
            by_label[row["label"]].append(row)
    rows = [row for label in EVAL_LABELS for row in by_label[label]]
    train, test = directory / "train.jsonl", directory / "test.jsonl"
    train_rows = [row for n, row in enumerate(rows) if n % 10 < 7]
    train.write_text("".join(json.dumps(row) + "\n" for row in train_rows))
    test.write_text("".join(json.dumps(row) + "\n" for n, row in enumerate(rows) if n % 10 >= 7))
    return train, test, train_rows
