"""bench.rate_limits sorts each answer by what the API said: accepted (202), refused by the limit (429), or an error."""

from __future__ import annotations

from bench.rate_limits import Answers, _row


def test_answers_are_counted_by_kind_and_latencies_kept_apart() -> None:
    answers = Answers()
    for status, seconds in [(202, 0.1), (202, 0.3), (429, 0.01), (429, 0.02), (429, 0.03), (503, 1.0)]:
        answers.add(status, seconds, f"{status} body")
    answers.add(None, 60.0, "TimeoutError()")
    row = _row("600/minute", "hammer", answers, duration=2.0, api_cpu=3.0, worker_cpu=1.0)
    assert (row.requests, row.accepted, row.refused_429, row.errors) == (7, 2, 3, 2)
    assert row.accepted_per_s == 1.0
    assert row.accepted_p50_ms == 200.0 and row.refused_p50_ms == 20.0
    assert answers.example_error == "503 body"
    assert (row.api_cpu_s, row.worker_cpu_s) == (3.0, 1.0)
