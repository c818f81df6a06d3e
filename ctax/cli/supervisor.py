"""`ctax run` keeps the service's processes running: a process that dies is restarted with backoff and a log
line, and everything stops only on Ctrl-C / SIGTERM, or when one process keeps failing right after it starts.

Why by hand: the service is three processes on one machine for `make run`; a process manager (systemd,
supervisord, Kubernetes) is what production uses, and adding one as a dependency for the embedded profile would
be more to install than these lines. What a manager adds here is also the one thing no manager knows: when a
labelling worker dies, the supervisor hands back at once the creatives it held (`on_exit`), instead of leaving
them until their lease runs out.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("ctax.run")

BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 30.0
# A process that ran at least this long before dying was healthy: its next restart starts the backoff afresh.
HEALTHY_AFTER_S = 60.0
# A death this soon after the start is a failure to start (a port in use, a database that refuses us), not a crash
# of a running process: this many of them in a row and the service stops, saying why.
IMMEDIATE_S = 10.0
MAX_IMMEDIATE_FAILURES = 5
POLL_S = 0.2
WATCH_EVERY_S = 5.0  # how often `run` has the running children judged by `watch` (a database read per worker)
STOP_TIMEOUT_S = 30.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _stop_with_parent(parent: int) -> Callable[[], None] | None:
    """Linux: the child gets SIGTERM when the supervisor dies, however it dies. Without it a `ctax run` killed by
    SIGKILL (or the OOM killer) leaves its API and worker running: they keep the port and Qdrant local mode's
    folder lock, and the next `ctax run` cannot start. SIGTERM, not SIGKILL: the worker then hands back its claims
    as on Ctrl-C. Elsewhere (no prctl) nothing is set."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def set_death_signal() -> None:  # runs in the child between fork and exec
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the supervisor died before prctl: nobody would send the signal
            os.kill(os.getpid(), signal.SIGTERM)

    return set_death_signal


@dataclass
class Child:
    """One process to keep running; `pid` stays the last one's after it died (on_exit needs it)."""

    name: str
    argv: Sequence[str]
    process: subprocess.Popen[bytes] | None = None
    pid: int | None = None
    started_at: float = 0.0
    failures: int = 0  # deaths in a row before it ran HEALTHY_AFTER_S: what the backoff grows with
    immediate_failures: int = 0  # deaths in a row within IMMEDIATE_S of the start: what gives up
    restart_at: float | None = None
    restarts: int = 0
    exits: list[int] = field(default_factory=list)


class GaveUp(RuntimeError):
    """A process failed MAX_IMMEDIATE_FAILURES times in a row right after starting."""


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class Policy:
    """When to restart and when to give up; the defaults are the module's constants (tests shorten them)."""

    backoff_start_s: float = BACKOFF_START_S
    backoff_max_s: float = BACKOFF_MAX_S
    healthy_after_s: float = HEALTHY_AFTER_S
    immediate_s: float = IMMEDIATE_S
    max_immediate_failures: int = MAX_IMMEDIATE_FAILURES
    stop_timeout_s: float = STOP_TIMEOUT_S

    def delay(self, failures: int) -> float:
        return float(min(self.backoff_start_s * 2 ** max(failures - 1, 0), self.backoff_max_s))


class Supervisor:
    def __init__(self, children: Sequence[Child], *, on_exit: Callable[[Child, int], None] | None = None,
                 watch: Callable[[Child], str | None] | None = None, policy: Policy | None = None,
                 watch_every_s: float = WATCH_EVERY_S) -> None:
        """`watch` says why a child whose process runs is hung (None: it is not); such a child is killed, then
        restarted as any child that died. `run` asks it every `watch_every_s` on a thread of its own: a watch that
        reads a database can wait on it (PostgreSQL behind a dead link: minutes), and the loop that restarts the
        dead and hears Ctrl-C must not."""
        self.children = list(children)
        self.on_exit = on_exit
        self.watch = watch
        self.watch_every_s = watch_every_s
        self.policy = policy or Policy()
        self.stopping = False

    def start(self) -> None:
        for child in self.children:
            self._spawn(child)

    def request_stop(self, *_: Any) -> None:
        self.stopping = True

    def run(self) -> None:
        """Start everything and keep it running until SIGTERM / SIGINT; raises GaveUp if a process cannot start.
        Either way every child is stopped before this returns."""
        previous = {sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            if self.watch is not None:
                threading.Thread(target=self._watching, name="ctax-run-watch", daemon=True).start()
            while not self.stopping:
                self.tick(time.monotonic())
                time.sleep(POLL_S)
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def tick(self, now: float) -> None:
        """One round: notice the dead, restart the ones whose backoff is over."""
        for child in self.children:
            if child.process is not None and (code := child.process.poll()) is not None:
                self._died(child, code, now)
            if (not self.stopping and child.process is None and child.restart_at is not None
                    and now >= child.restart_at):
                self._spawn(child)

    def _watching(self) -> None:
        while not self.stopping:
            time.sleep(self.watch_every_s)
            if not self.stopping:
                self.watch_once()

    def watch_once(self) -> None:
        """Kill every running child the watch calls hung; `tick` then sees it dead and restarts it."""
        assert self.watch is not None
        for child in self.children:
            process = child.process  # the main thread may replace it meanwhile: act on this one only
            if process is None or process.returncode is not None:
                continue
            try:
                hung = self.watch(child)
            except Exception:  # a watch that cannot judge leaves the child running
                log.exception("could not tell whether %s (pid %s) is hung", child.name, child.pid)
                continue
            if hung is not None and child.process is process and not self.stopping:
                log.warning("%s (pid %s) %s: killing it, to restart it", child.name, process.pid, hung)
                process.kill()

    def _died(self, child: Child, code: int, now: float) -> None:
        ran = now - child.started_at
        child.exits.append(code)
        child.process = None
        child.failures = child.failures + 1 if ran < self.policy.healthy_after_s else 1
        child.immediate_failures = child.immediate_failures + 1 if ran < self.policy.immediate_s else 0
        if self.stopping:  # a child that saw the same Ctrl-C finished first: nothing to restart
            self._clean_up(child, code)
            return
        log.warning("%s (pid %s) %s after %.1f s", child.name, child.pid, describe_exit(code), ran)
        self._clean_up(child, code)
        if child.immediate_failures >= self.policy.max_immediate_failures:
            raise GaveUp(f"{child.name} {describe_exit(code)} {child.immediate_failures} times in a row within "
                         f"{self.policy.immediate_s:.0f} s of starting; stopping the service")
        delay = self.policy.delay(child.failures)
        child.restart_at = now + delay
        log.warning("restarting the %s in %.1f s", child.name, delay)

    def _clean_up(self, child: Child, code: int) -> None:
        if self.on_exit is None:
            return
        try:
            self.on_exit(child, code)
        except Exception:  # the restart matters more than the clean-up, which leases also cover
            log.exception("clean-up after %s (pid %s) exited failed", child.name, child.pid)

    def _spawn(self, child: Child) -> None:
        # Taken before the fork: with a preexec_fn the fork copies the parent's page tables (no vfork), which in a
        # large parent takes a good part of a second; the backoff is the supervisor's wait, not the fork's.
        child.started_at = time.monotonic()
        child.process = subprocess.Popen(list(child.argv), preexec_fn=_stop_with_parent(os.getpid()))
        child.pid = child.process.pid
        if child.restart_at is not None:
            child.restarts += 1
            log.warning("%s restarted (pid %s, restart %d)", child.name, child.pid, child.restarts)
        child.restart_at = None

    def stop(self) -> None:
        """SIGTERM to every running child, then SIGKILL to those still running after the policy's timeout."""
        self.stopping = True
        timeout = self.policy.stop_timeout_s
        running = [(c, c.process) for c in self.children if c.process is not None]
        for _, process in running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child, process in running:
            try:
                code = process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %s) did not stop within %.0f s; killing it", child.name, child.pid, timeout)
                process.kill()
                code = process.wait()
            child.exits.append(code)
            child.process = None
            # A child killed here could not clean up after itself (a worker's heartbeat, its claims); on_exit
            # knows from the code what a clean exit already did.
            self._clean_up(child, code)
