"""bench.outbox_prune on a small outbox: it runs on both databases, prints its table, writes the same rows as JSON,
and its pass leaves exactly the jobs that must stay."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT


def test_the_bench_prunes_all_but_what_must_stay_on_both_databases(tmp_path: Path) -> None:
    out = tmp_path / "prune.json"
    done = subprocess.run([sys.executable, "-m", "bench.outbox_prune", "--rows", "2500", "--live", "30",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "one prune pass of the outbox" in done.stdout
    rows = json.loads(out.read_text())
    assert [r["database"] for r in rows] == ["sqlite", "postgresql"]
    for r in rows:
        assert (r["rows"], r["deleted"], r["left"], r["expected_left"]) == (2530, 2499, 31, 31), r
        assert r["longest_batch_ms"] > 0 and r["deleted_per_s"] > 0
