"""bench.lock_wait, briefly: with the lock wait shorter than the hold, writes to the locked row answer 503
database_busy within it and pass once the lock goes; with a wait longer than the hold, they wait it out, and reads
are answered meanwhile (more writers than the API has threads: api/admission.py). It prints its table and writes the
same rows as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT


def test_the_bench_shows_writes_refused_busy_within_the_wait_and_passing_after(tmp_path: Path) -> None:
    out = tmp_path / "lock.json"
    done = subprocess.run([sys.executable, "-m", "bench.lock_wait", "--waits", "1", "60", "--hold", "4",
                           "--after", "2", "--writers", "45", "--readers", "2", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr
    assert "row locked elsewhere" in done.stdout
    bounded, unbounded = json.loads(out.read_text())
    assert bounded["writes_busy"] >= 45 and bounded["writes_other"] == 0
    assert bounded["longest_write_s"] < 4  # each gave up after about 1 s, not at the end of the hold
    assert unbounded["writes_busy"] == 0 and unbounded["longest_write_s"] >= 3  # waited the hold out
    for row in (bounded, unbounded):
        assert row["writes_ok"] > 0 and row["first_write_after_release_s"] is not None
        assert row["reads_during_hold"] > 0 and row["read_errors"] == 0
        assert row["read_max_ms"] < 2000  # not the hold (4 s): the waiting writes do not hold every thread
