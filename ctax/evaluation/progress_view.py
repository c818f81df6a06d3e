"""A training run's progress on the command line (`ctax eval` in-process, `ctax train` from the run's row).

In a terminal: a rich bar whose description is the phase, step, loss and time left. Elsewhere (a log file, a
pipe, CI) a live bar prints nothing until it ends, so a line is printed instead, at most every `every` seconds
and whenever the phase changes or its first step is known: a long training run never goes silent.
"""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ctax.training.progress import RunProgress, describe


def line(report: RunProgress) -> str:
    """`training 42%: text tower step 12/40, loss 0.532, 1m05s left` (or the stage outside tower training)."""
    steps = describe(report.phase, report.step, report.total_steps, report.loss, report.eta_s)
    return f"training {report.fraction:4.0%}: {steps if report.step else report.stage}"


class TrainingView:
    """Shows each report it is called with; a context manager (the bar is drawn between enter and exit)."""

    def __init__(self, console: Console, every: float = 10.0, title: str = "training") -> None:
        self.console, self.every = console, every
        self.bar: Progress | None = None
        if console.is_terminal:
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                                TimeElapsedColumn(), console=console)
            self.task = self.bar.add_task(title, total=1.0)
        self._printed: tuple[float, tuple[str, bool, bool, bool]] | None = None

    def __enter__(self) -> TrainingView:
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.bar is not None:
            self.bar.stop()

    def __call__(self, report: RunProgress) -> None:
        text = line(report)
        if self.bar is not None:
            self.bar.update(self.task, completed=report.fraction, description=text[:90])
            return
        # A new key prints at once: a phase's start, its first step, its first known loss, its last step; so a
        # short phase still shows its loss, and a long one is never silent for more than `every` seconds.
        now = time.monotonic()
        key = (report.phase, report.step is not None, report.loss is not None,
               report.step is not None and report.step == report.total_steps)
        if (self._printed is None or self._printed[1] != key or now - self._printed[0] >= self.every
                or report.fraction >= 1.0):
            self._printed = (now, key)
            self.console.print(text, highlight=False)

    def note(self, text: str) -> None:
        """A stage outside the run (waiting for a worker, building the index)."""
        if self.bar is not None:
            self.bar.update(self.task, description=text[:90])
        else:
            self.console.print(text, highlight=False)
