"""The supervisor of `ctax run`, with real short-lived processes: restarts with backoff, gives up on a process that
cannot start, hands a dead child to on_exit, kills a child its watch calls hung, and stops everything on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from ctax.cli.supervisor import Child, GaveUp, Policy, Supervisor

PY = sys.executable
SLEEPER = "import time; time.sleep(60)"


def python(name: str, code: str) -> Child:
    return Child(name, [PY, "-c", code])


def tick_until(supervisor: Supervisor, done: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "the supervisor did not get there in time"
        supervisor.tick(time.monotonic())
        time.sleep(0.01)


def gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def test_a_process_that_keeps_dying_is_restarted_with_a_growing_backoff() -> None:
    deaths: list[tuple[float, float]] = []  # (when it died, when that run had started)
    child = python("crasher", "import sys; sys.exit(3)")
    policy = Policy(backoff_start_s=0.2, healthy_after_s=60, immediate_s=0)  # immediate_s=0: never gives up
    supervisor = Supervisor([child], on_exit=lambda c, _: deaths.append((time.monotonic(), c.started_at)),
                            policy=policy)
    supervisor.start()
    try:
        tick_until(supervisor, lambda: len(deaths) >= 4)
    finally:
        supervisor.stop()
    waits = [deaths[n + 1][1] - deaths[n][0] for n in range(3)]  # from a death to the next start
    for wait, expected in zip(waits, (0.2, 0.4, 0.8), strict=True):
        # 10 ms of slack below: the death is stamped when the supervisor reaps it, a tick after it happened.
        assert expected - 0.01 <= wait < expected + 0.3, waits
    assert child.restarts >= 3 and child.exits[:4] == [3, 3, 3, 3]


def test_the_backoff_starts_afresh_after_a_healthy_run() -> None:
    deaths: list[tuple[float, float]] = []
    child = python("runs a while", "import time; time.sleep(0.4)")
    policy = Policy(backoff_start_s=0.2, healthy_after_s=0.3, immediate_s=0)
    supervisor = Supervisor([child], on_exit=lambda c, _: deaths.append((time.monotonic(), c.started_at)),
                            policy=policy)
    supervisor.start()
    try:
        tick_until(supervisor, lambda: len(deaths) >= 4)
    finally:
        supervisor.stop()
    waits = [deaths[n + 1][1] - deaths[n][0] for n in range(3)]
    assert all(0.2 <= wait < 0.35 for wait in waits), waits


def test_it_gives_up_on_a_process_that_fails_right_after_starting_and_stops_the_others() -> None:
    crasher, sibling = python("API", "import sys; sys.exit(3)"), python("worker", SLEEPER)
    policy = Policy(backoff_start_s=0.05, immediate_s=5, max_immediate_failures=3)
    supervisor = Supervisor([crasher, sibling], policy=policy)
    started = time.monotonic()
    stopper = threading.Timer(15, supervisor.request_stop)  # were it never to give up, the test still ends
    stopper.start()
    try:
        with pytest.raises(GaveUp, match=r"API exited with code 3 3 times in a row within 5 s of starting"):
            supervisor.run()
    finally:
        stopper.cancel()
    assert time.monotonic() - started < 15
    assert crasher.exits == [3, 3, 3]
    assert sibling.pid is not None and gone(sibling.pid) and sibling.process is None
    assert sibling.exits == [-signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # run() put the handlers back


def test_a_killed_process_is_handed_to_on_exit_then_restarted() -> None:
    exits: list[tuple[str, int | None, int]] = []
    child = python("labelling worker", SLEEPER)
    supervisor = Supervisor([child], on_exit=lambda c, code: exits.append((c.name, c.pid, code)),
                            policy=Policy(backoff_start_s=0.1))
    supervisor.start()
    try:
        first = child.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        tick_until(supervisor, lambda: child.process is not None and child.pid != first)
        assert exits == [("labelling worker", first, -signal.SIGKILL)]
        assert child.restarts == 1 and child.process is not None and child.process.poll() is None
    finally:
        supervisor.stop()
    assert child.pid is not None and gone(child.pid)


def test_a_child_the_watch_calls_hung_is_killed_handed_to_on_exit_and_restarted() -> None:
    exits: list[int] = []
    hung_pids: set[int] = set()
    watched = [python("labelling worker", SLEEPER), python("API", SLEEPER)]
    supervisor = Supervisor(watched, on_exit=lambda _, code: exits.append(code), policy=Policy(backoff_start_s=0.1),
                            watch=lambda c: "is stuck" if c.pid in hung_pids else None)
    supervisor.start()
    worker, api = watched
    try:
        first, api_pid = worker.pid, api.pid
        assert first is not None
        for _ in range(3):  # judged and found well: left alone
            supervisor.watch_once()
            supervisor.tick(time.monotonic())
        assert worker.restarts == 0 and exits == []
        hung_pids.add(first)
        supervisor.watch_once()
        tick_until(supervisor, lambda: worker.process is not None and worker.pid != first)
        assert exits == [-signal.SIGKILL] and worker.restarts == 1
        assert gone(first) and api.pid == api_pid and api.restarts == 0
    finally:
        supervisor.stop()


SCRIPT = """
import os, sys
from ctax.cli.supervisor import Child, Policy, Supervisor

out = sys.argv[1]
def note(child, code):
    with open(out, "a") as f:
        f.write(f"exit {child.name} {child.pid} {code}\\n")

# One write per pid line: with stdout unbuffered (PYTHONUNBUFFERED in the environment) print writes the number and
# its newline apart, and two children sharing
# stdout then interleave ("22917" "22916" "\\n" "\\n" read as one pid 2291722916, then a blank line).
sleeper = "import os, time; os.write(1, b'%d\\\\n' % os.getpid()); time.sleep(60)"
stubborn = ("import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "os.write(1, b'%d\\\\n' % os.getpid()); time.sleep(60)")
children = [Child("api", [sys.executable, "-c", sleeper]), Child("worker", [sys.executable, "-c", stubborn])]
Supervisor(children, on_exit=note, policy=Policy(stop_timeout_s=1.0)).run()
print("stopped", flush=True)
"""


def supervising(tmp_path: Path) -> tuple[subprocess.Popen[str], list[int], Path]:
    """SCRIPT started as a supervisor process: it, its two children's pids (once both have started) and the file
    its on_exit writes to."""
    script, notes = tmp_path / "supervise.py", tmp_path / "exits.txt"
    script.write_text(textwrap.dedent(SCRIPT))
    proc = subprocess.Popen([PY, str(script), str(notes)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert proc.stdout is not None
    pids: list[int] = []
    while len(pids) < 2:  # the children's pid lines; anything else on the shared stdout (a blank line) is not one
        line = proc.stdout.readline()
        assert line, "the supervisor stopped before both children started"
        if line.strip().isdigit():
            pids.append(int(line))
    return proc, sorted(pids), notes


def test_sigterm_stops_every_child_and_kills_one_that_will_not_stop(tmp_path: Path) -> None:
    proc, pids, notes = supervising(tmp_path)
    try:
        assert sorted(c.pid for c in psutil.Process(proc.pid).children()) == pids
        time.sleep(0.5)  # both children have installed their signal handlers
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and rest.strip() == "stopped"
    assert all(gone(pid) for pid in pids)
    # The one that ignored SIGTERM was killed after the timeout; each exit was handed to on_exit.
    exits = sorted(line.split()[1::2] for line in notes.read_text().splitlines())
    assert exits == [["api", str(-signal.SIGTERM)], ["worker", str(-signal.SIGKILL)]]


def test_children_stop_when_the_supervisor_is_killed_outright(tmp_path: Path) -> None:
    """SIGKILL (or the OOM killer) gives the supervisor no chance to stop its children: they get SIGTERM from the
    kernel instead, so no API keeps the port and no worker keeps Qdrant's folder lock for the next `ctax run`."""
    proc, pids, _ = supervising(tmp_path)
    try:
        [api] = [pid for pid in pids if "SIG_IGN" not in psutil.Process(pid).cmdline()[-1]]
        time.sleep(0.5)
        proc.kill()
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while not gone(api):
            assert time.monotonic() < deadline, "the API child outlived its supervisor"
            time.sleep(0.05)
    finally:
        for pid in pids:  # the stubborn child ignores SIGTERM by design: it is the test's to clean up
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_run_asks_the_watch_on_its_own_thread_so_a_watch_that_blocks_stops_nothing() -> None:
    """A watch stuck in a database read must not keep the supervisor from restarting the dead or stopping."""
    asked = threading.Event()
    release = threading.Event()

    def stuck_watch(_: Child) -> str | None:
        asked.set()
        release.wait(60)
        return None

    crasher = python("crasher", "import time, sys; time.sleep(0.3); sys.exit(3)")
    supervisor = Supervisor([crasher], watch=stuck_watch, watch_every_s=0.05,
                            policy=Policy(backoff_start_s=0.05, immediate_s=0))

    def stop_once_restarted_twice() -> None:
        deadline = time.monotonic() + 30
        while not (asked.is_set() and crasher.restarts >= 2) and time.monotonic() < deadline:
            time.sleep(0.05)
        supervisor.request_stop()

    threading.Thread(target=stop_once_restarted_twice, daemon=True).start()
    started = time.monotonic()
    try:
        supervisor.run()  # signal handlers: the main thread's
    finally:
        release.set()
    assert asked.is_set(), "the watch was never asked"
    assert crasher.restarts >= 2, "the supervisor stopped restarting while its watch was stuck"
    assert time.monotonic() - started < 30
