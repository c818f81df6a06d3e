"""`ctax run` as a user runs it: a labelling worker killed with SIGKILL mid-drain comes back, the API answers
throughout, /readyz stops counting the dead worker at once, and every creative is labelled exactly once; a killed API
comes back; Ctrl-C (SIGINT to the process group, as a terminal sends it) stops everything cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from ctax.jobs import ERASE_ACCOUNT
from ctax.store import outbox
from ctax.store.models import OutboxJob
from ctax.store.repos import workers
from ctax.store.session import Database
from tests.support import ROOT, free_port, stored

pytestmark = pytest.mark.e2e


class Supervised:
    """`ctax run` in its own process group, its output in a log file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = env["CTAX_BOOTSTRAP_ADMIN_KEY"]
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.database_url = env.get("CTAX_DATABASE_URL") or f"sqlite:///{env['CTAX_DATA_DIR']}/ctax.db"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 300) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "ctax", "run", "--port", str(self.port)],
                                         env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                         start_new_session=True)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, f"ctax run exited:\n{self.tail()}"
            try:
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"not ready after {timeout} s:\n{self.tail()}")

    def child(self, *words: str) -> psutil.Process | None:
        """The child of `ctax run` whose command line has these words (`worker`, `label`; `api`)."""
        assert self.proc is not None
        for proc in psutil.Process(self.proc.pid).children():
            try:
                if set(words) <= set(proc.cmdline()):
                    return proc
            except psutil.NoSuchProcess:
                continue
        return None

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": self.key}, timeout=30)

    def tail(self, lines: int = 80) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def supervised(service_env: dict[str, str], tmp_path: Path) -> Iterator[Supervised]:
    service = Supervised(service_env, tmp_path / "ctax-run.log")
    service.start()
    try:
        yield service
    finally:
        service.stop()


class Prober(threading.Thread):
    """Keeps asking GET /healthz and GET /v1/creatives/{id} for every creative posted; notes every failure and,
    per creative, the labelled_at it first showed (a later different one means it was labelled twice)."""

    def __init__(self, service: Supervised) -> None:
        super().__init__(daemon=True)
        self.service = service
        self.ids: list[str] = []
        self.seen: dict[str, dict[str, Any]] = {}
        self.first_labelled_at: dict[str, str] = {}
        self.relabelled: set[str] = set()
        self.answered = 0
        self.failures: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        with self.service.client() as http:
            while not self.halt.is_set():
                self._get(http, "/healthz")
                for creative_id in list(self.ids):
                    body = self._get(http, f"/v1/creatives/{creative_id}")
                    if body is not None:
                        self._note(creative_id, body)

    def _get(self, http: httpx.Client, path: str) -> dict[str, Any] | None:
        try:
            response = http.get(path)
        except httpx.HTTPError as exc:
            self.failures.append(f"{path}: {exc!r}")
            return None
        if response.status_code != 200:
            self.failures.append(f"{path}: {response.status_code} {response.text[:200]}")
            return None
        self.answered += 1
        return dict(response.json())

    def _note(self, creative_id: str, body: dict[str, Any]) -> None:
        self.seen[creative_id] = body
        if body["status"] == "labelled":
            first = self.first_labelled_at.setdefault(creative_id, body["labelled_at"])
            if body["labelled_at"] != first:
                self.relabelled.add(creative_id)

    def statuses(self) -> list[str]:
        return [self.seen[i]["status"] if i in self.seen else "unseen" for i in self.ids]


def wait(condition: Any, timeout: float, what: str, service: Supervised) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not within {timeout} s\n{service.tail()}"
        time.sleep(0.1)


def test_a_killed_labelling_worker_comes_back_and_every_creative_is_labelled_once(supervised: Supervised,
                                                                                   shared_data: Path) -> None:
    prober = Prober(supervised)
    with supervised.client() as http:
        taxonomy = (shared_data / "pitt_ads_taxonomy.txt").read_bytes()
        assert http.post("/v1/labels/import", files={"file": ("pitt.txt", taxonomy)}).status_code == 200
        prober.start()
        for batch in range(10):  # 160 creatives, arriving over a second or two
            items = [{"ocr_text": f"Fresh cookies and sweets number {batch}-{n}, baked every morning"}
                     for n in range(16)]
            answer = http.post("/v1/creatives/batch", json={"items": items})
            assert answer.status_code == 202, answer.text
            prober.ids.extend(item["id"] for item in answer.json()["items"])
            time.sleep(0.1)
    wait(lambda: {"processing", "labelled"} & set(prober.statuses()), 120, "labelling to start", supervised)

    worker = supervised.child("worker", "label")
    assert worker is not None
    worker.kill()
    killed = time.monotonic()
    assert prober.statuses().count("labelled") < len(prober.ids), "killed too late to prove anything"

    # The supervisor deleted the dead worker's heartbeat the moment it saw it die: not ready, at once.
    wait(lambda: httpx.get(f"{supervised.url}/readyz").status_code == 503, 5, "/readyz to say 503", supervised)
    assert time.monotonic() - killed < 5
    wait(lambda: (w := supervised.child("worker", "label")) is not None and w.pid != worker.pid, 30,
         "a new labelling worker", supervised)
    supervised.wait_ready(240)
    wait(lambda: prober.statuses().count("labelled") == len(prober.ids), 300, "every creative labelled", supervised)
    time.sleep(2)  # one more round of reads, to see any second labelling
    prober.halt.set()
    prober.join(timeout=60)

    assert prober.failures == [], prober.failures[:5]
    assert prober.answered > len(prober.ids)
    assert prober.relabelled == set()
    assert {body["model_version"] for body in prober.seen.values()} == {"v1-pretrained"}
    log = supervised.tail(10_000)
    assert f"labelling worker (pid {worker.pid}) was killed by SIGKILL" in log
    assert "labelling worker restarted" in log


def test_an_index_job_a_killed_worker_was_running_is_run_again(supervised: Supervised) -> None:
    """The message of a job the index owner was running goes with it (the SQLite broker forgets a delivered message;
    Redis gives it back only after hours): the job is sent again once the supervisor sees the worker die, and the
    restarted worker runs it. The job: an erasure step that pauses 5 s first (as a step waiting for a creative being
    labelled does), for an account that is not being erased, so it changes nothing."""
    db = Database(supervised.database_url)
    try:
        with db.write() as session:
            queued = outbox.enqueue(session, ERASE_ACCOUNT, 999_999, 5.0)
            session.flush()
            job_id = queued.id

        def job() -> OutboxJob:
            return stored(db, OutboxJob, job_id)

        wait(lambda: job().running_on is not None, 60, "the worker to start the job", supervised)
        worker = supervised.child("worker", "label")
        assert worker is not None and str(worker.pid) in str(job().running_on)
        worker.kill()
        assert job().done_at is None
        wait(lambda: job().done_at is not None, 240, "the job to run again and end", supervised)
        ran = job()
        assert ran.starts == 2 and ran.running_on is None and ran.last_error is None
    finally:
        db.dispose()
    log = supervised.tail(10_000)
    assert "sending again 1 jobs a stopped worker had started and not finished: ctax.accounts.erase" in log


@pytest.mark.parametrize("profile", ["embedded"], indirect=True)
def test_a_killed_api_comes_back_and_ctrl_c_stops_everything(supervised: Supervised) -> None:
    api = supervised.child("api")
    assert api is not None
    api.kill()
    wait(lambda: (a := supervised.child("api")) is not None and a.pid != api.pid, 30, "a new API", supervised)
    supervised.wait_ready(60)

    assert supervised.proc is not None
    family = psutil.Process(supervised.proc.pid).children(recursive=True)
    assert len(family) >= 3
    os.killpg(supervised.proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
    assert supervised.proc.wait(timeout=90) == 0, supervised.tail()
    _, alive = psutil.wait_procs(family, timeout=5)
    assert alive == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{supervised.url}/healthz")
    db = Database(supervised.database_url)
    try:
        with db.read() as session:
            assert workers.heartbeats(session) == []  # no dead worker left counted
    finally:
        db.dispose()
    assert supervised.tail(3).endswith("ctax stopped.")


def labelled(http: httpx.Client, creative_id: str) -> bool:
    return bool(http.get(f"/v1/creatives/{creative_id}").json()["status"] == "labelled")


def post_one(http: httpx.Client, text: str) -> str:
    answer = http.post("/v1/creatives", json={"ocr_text": text})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


@pytest.mark.parametrize("profile", ["production"], indirect=True)
def test_a_labelling_batch_stuck_on_a_lock_ends_its_worker_which_comes_back(service_env: dict[str, str],
                                                                           tmp_path: Path) -> None:
    """A batch that waits for ever (here on a row an open transaction locked: an admin's session left open) kept
    its worker alive and beating, so nothing restarted it and its claims were renewed for ever. Now the worker
    exits once its batch has run CTAX_BATCH_STALL_S, `ctax run` hands its creative back and restarts it, and the
    creative is labelled once the lock goes."""
    import psycopg

    supervised = Supervised({**service_env, "CTAX_BATCH_STALL_S": "3"}, tmp_path / "ctax-run.log")
    supervised.start()
    try:
        with supervised.client() as http:
            assert wait_labelled(supervised, http, post_one(http, "Warm bread, baked this morning"))
            first = supervised.child("worker", "label")
            assert first is not None
            with psycopg.connect(supervised.database_url.replace("+psycopg", "")) as admin:
                # Storing a batch names its model version (a foreign key checked FOR KEY SHARE); a post does not.
                admin.execute("SELECT id FROM model_versions FOR UPDATE")
                stuck = post_one(http, "Cheap flights to Lisbon, book now")
                wait(lambda: f"labelling worker (pid {first.pid}) exited with code 70" in supervised.tail(400), 60,
                     "the stuck worker to exit", supervised)
                assert not labelled(http, stuck)
            assert wait_labelled(supervised, http, stuck)
            again = supervised.child("worker", "label")
            assert again is not None and again.pid != first.pid
    finally:
        supervised.stop()
    log = supervised.tail(10_000)
    assert "hung: finishing a labelled batch has run" in log and "longer than CTAX_BATCH_STALL_S (3 s)" in log


@pytest.mark.parametrize("profile", ["embedded"], indirect=True)
def test_a_stopped_labelling_worker_is_killed_and_comes_back(supervised: Supervised) -> None:
    """A worker stopped whole (SIGSTOP here; code that holds the GIL does the same to its heartbeat thread) still
    runs as far as the supervisor's wait can tell: its heartbeat's silence is what gives it away."""
    with supervised.client() as http:
        assert wait_labelled(supervised, http, post_one(http, "Warm bread, baked this morning"))
        first = supervised.child("worker", "label")
        assert first is not None
        first.suspend()
        stopped = time.monotonic()
        waiting = post_one(http, "Cheap flights to Lisbon, book now")
        assert wait_labelled(supervised, http, waiting, timeout=240)
        again = supervised.child("worker", "label")
        assert again is not None and again.pid != first.pid
        # Killed once silent for HUNG_AFTER_STALE x CTAX_WORKER_STALE_S (4 x 6 s here), not before.
        assert time.monotonic() - stopped >= 24
    log = supervised.tail(10_000)
    assert f"labelling worker (pid {first.pid}) has not beaten for" in log
    assert f"labelling worker (pid {first.pid}) was killed by SIGKILL" in log


def wait_labelled(service: Supervised, http: httpx.Client, creative_id: str, timeout: float = 120) -> bool:
    wait(lambda: labelled(http, creative_id), timeout, f"creative {creative_id} to be labelled", service)
    return True
