"""bench.quotas sorts each answer by what the API said: accepted (202), refused by the quota (403 quota_exceeded),
or an error (any other answer, a 403 for another reason among them)."""

from __future__ import annotations

from bench.quotas import Answers, row


def test_answers_are_counted_by_kind_and_a_quota_refusal_is_told_from_other_403s() -> None:
    answers = Answers()
    kinds = [answers.add(status, body, seconds) for status, body, seconds in [
        (202, "{}", 0.1), (202, "{}", 0.3), (403, '{"error": "quota_exceeded"}', 0.02),
        (403, '{"error": "account_suspended"}', 0.01), (None, "TimeoutError()", 60.0)]]
    assert kinds == ["accepted", "accepted", "refused", "error", "error"]
    r = row("embedded", 100, "edge", answers, seconds=2.0, beyond=0)
    assert (r.requests, r.accepted, r.refused_403, r.errors) == (5, 2, 1, 2)
    assert r.accepted_per_s == 1.0 and r.accepted_p50_ms == 200.0 and r.refused_p50_ms == 20.0
    assert r.stored_beyond_quota == 0
    assert answers.example_error.startswith("403") and "account_suspended" in answers.example_error
