"""bench.fixed_cost times the labelling task by wrapping functions by name: a rename must not drop a row silently."""

from __future__ import annotations

from bench.fixed_cost import PARTS, timed_parts


def test_every_timed_part_names_a_function_the_labelling_task_has() -> None:
    found = timed_parts()
    assert [label for _, _, label in found] == [label for *_, label in PARTS]
    assert all(callable(getattr(owner, name)) for owner, name, _ in found)
