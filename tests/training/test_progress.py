"""A training run's progress: throttled writes to its row, phases, the time a phase has left, and the line the
command line prints for it."""

from __future__ import annotations

import io

from rich.console import Console

from ctax.evaluation.progress_view import TrainingView
from ctax.training.progress import TEXT_TOWER, ProgressTracker, RunProgress, describe


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_row_gets_a_report_every_few_seconds_and_every_phase_change_listeners_every_one() -> None:
    clock, written, seen = Clock(), [], []
    tracker = ProgressTracker(written.append, interval=3.0, listeners=(seen.append,), clock=clock)
    tracker(0.03, "split the data")
    step = tracker.step_reporter(TEXT_TOWER)
    for n in range(1, 11):  # ten steps, one a second
        clock.now += 1.0
        step(n, 10, 2.0 / n if n > 1 else None)
    assert len(seen) == 1 + 1 + 10  # the stage, the phase change, every step
    # The stage (t=0), the phase change (t=1, forced), then no sooner than 3 s apart, and the last step.
    assert [(r.phase, r.step) for r in written] == [("preparing", None), ("text_tower", None), ("text_tower", 4),
                                                    ("text_tower", 7), ("text_tower", 10)]
    last = written[-1]
    assert last.total_steps == 10 and last.loss == 0.2 and last.eta_s == 0.0
    # At step 4 the phase had done 3 steps in 3 s since its first: 6 steps left, 6 s.
    assert written[2].eta_s == 6.0 and written[2].loss == 0.5


def test_fraction_never_moves_back_and_a_new_phase_forgets_the_old_steps() -> None:
    written: list[RunProgress] = []
    tracker = ProgressTracker(written.append, interval=0.0, clock=Clock())
    tracker.step_reporter(TEXT_TOWER)(3, 5, 1.25)
    tracker(0.5, "halfway")
    tracker(0.2, "a late report")
    assert written[-1].fraction == 0.5 and written[-1].stage == "a late report" and written[-1].step == 3
    tracker(0.8, "calibrating", "calibrating")
    assert written[-1].phase == "calibrating" and written[-1].step is None and written[-1].loss is None


def test_describe_says_what_is_known() -> None:
    assert describe("text_tower", 12, 40, 0.5321, 65.0) == "text tower step 12/40, loss 0.532, 1m05s left"
    assert describe("image_tower", 3, 9, None, 4.4) == "image tower step 3/9, 4s left"
    assert describe("calibrating", None, None, None, None) == "calibrating"


def test_off_a_terminal_the_view_prints_lines_not_a_silent_bar() -> None:
    out = io.StringIO()
    view = TrainingView(Console(file=out, force_terminal=False, width=200), every=3600)
    with view:
        view(RunProgress(0.05, "text tower: starting", TEXT_TOWER))
        view(RunProgress(0.1, "text tower", TEXT_TOWER, 1, 40, None, None))  # the phase's first step
        view(RunProgress(0.1, "text tower", TEXT_TOWER, 2, 40, 0.9, 80.0))  # its first known loss: printed
        view(RunProgress(0.2, "text tower", TEXT_TOWER, 3, 40, 0.8, 70.0))  # same phase, within `every`: quiet
        view(RunProgress(0.4, "text tower", TEXT_TOWER, 40, 40, 0.7, 0.0))  # its last step: printed
        view(RunProgress(0.5, "text tower", "image_tower", 20, 40, 0.75, 30.0))
    lines = out.getvalue().splitlines()
    assert lines == ["training   5%: text tower: starting", "training  10%: text tower step 1/40",
                     "training  10%: text tower step 2/40, loss 0.900, 1m20s left",
                     "training  40%: text tower step 40/40, loss 0.700, 0s left",
                     "training  50%: image tower step 20/40, loss 0.750, 30s left"]


def test_the_text_towers_step_reaches_the_row_with_the_stage_that_names_it() -> None:
    """The run's row read "training: 3/20 steps" beside step 2: the sentence and the step went out in two reports."""
    from types import SimpleNamespace

    from ctax.training.text import _progress_callback

    written: list[RunProgress] = []
    tracker = ProgressTracker(written.append, interval=0.0, clock=Clock())
    callback = _progress_callback(tracker, tracker.step_reporter(TEXT_TOWER))
    callback.on_train_begin(None, SimpleNamespace(global_step=0, max_steps=20), None)
    for n in range(1, 4):
        callback.on_step_end(None, SimpleNamespace(global_step=n, max_steps=20), None)
    stepped = [(r.stage, r.step) for r in written if r.step is not None]
    assert [step for _, step in stepped][-1] == 3
    # No report names a step other than its own: the step is in the report's fields, the sentence says the phase.
    assert all(stage == "training" for stage, _ in stepped), stepped
