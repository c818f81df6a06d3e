"""bench.creatives_growth end to end on tiny sizes: every row it prints is written to --json, and measures what it
says (the collection filled, reopened whole, the window kept)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_the_bench_fills_reopens_and_rolls_a_window_and_writes_its_rows(tmp_path: Path) -> None:
    out = tmp_path / "growth.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.creatives_growth", "--sizes", "300", "600", "--batch", "16", "--batches", "3",
         "--traffic", "700", "--window", "50", "--json", str(out), "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=True)
    rows = json.loads(out.read_text())
    growth, traffic = [r for r in rows if "creatives" in r], [r for r in rows if "window" in r]
    assert [r["creatives"] for r in growth] == [300, 600]
    for row in growth:
        assert row["stored"] == row["reopened"] == row["creatives"] + 3 * 16
        assert row["write_ms_per_creative"] > 0 and row["open_s"] >= 0 and row["reopen_rss_mb"] > 0
    assert len(traffic) == 1 and traffic[0]["labelled"] == 700
    assert 50 <= traffic[0]["live"] <= traffic[0]["held"] <= 700
    assert "write ms/creative" in done.stdout and "held by local mode" in done.stdout
