"""bench.fairness reads each account's wait from what the service recorded, not from when this process saw it."""

from __future__ import annotations

from bench.fairness import _row


def test_a_row_is_each_creatives_labelled_at_less_its_created_at_and_the_accounts_drain() -> None:
    items = [{"created_at": f"2026-12-06T17:00:{s:02d}+00:00", "labelled_at": f"2026-12-06T17:00:{s + w:02d}+00:00"}
             for s, w in [(0, 2), (1, 2), (2, 10), (3, 4)]]
    row = _row(8, "trickle", items)
    assert (row.ahead_batches, row.account, row.creatives) == (8, "trickle", 4)
    assert row.wait_p50_s == 3.0 and row.wait_max_s == 10.0
    assert row.drain_s == 12.0 and row.labelled_per_s == 4 / 12.0  # first created (0 s) to last labelled (12 s)
