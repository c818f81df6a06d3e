"""Where a training run is: its phase, step, loss and time left, handed on at most every few seconds.

The pipeline reports stages (a fraction of the whole run and a sentence) and, while a tower trains, every
optimiser step with its loss. A tracker turns those into one `RunProgress`, estimates the time the phase has
left from the pace of its steps so far, and hands it to the run's row (throttled: one small transaction per
interval, not one per step) and to any in-process listener, such as `ctax eval`'s progress bar (every report).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

PREPARING, TEXT_TOWER, IMAGE_TOWER = "preparing", "text_tower", "image_tower"
CALIBRATING, COMPARING, DONE = "calibrating", "comparing", "done"


@dataclass(frozen=True)
class RunProgress:
    """One report: `fraction` of the whole run, its `stage` sentence, and within `phase` the step counts, the
    last logged loss and the seconds the phase has left at its pace so far (None until two steps were seen)."""

    fraction: float = 0.0
    stage: str = ""
    phase: str = PREPARING
    step: int | None = None
    total_steps: int | None = None
    loss: float | None = None
    eta_s: float | None = None


Sink = Callable[[RunProgress], None]
StepFn = Callable[[int, int, float | None], None]


def describe(phase: str | None, step: int | None, total: int | None, loss: float | None,
             eta_s: float | None) -> str:
    """`text_tower step 12/40, loss 0.532, 1m05s left` (the parts known so far)."""
    parts = [(phase or "").replace("_", " ")]
    if step is not None and total:
        parts.append(f"step {step}/{total}")
    text = " ".join(p for p in parts if p)
    if loss is not None:
        text += f", loss {loss:.3f}"
    if eta_s is not None:
        minutes, seconds = divmod(round(eta_s), 60)
        text += f", {minutes}m{seconds:02d}s left" if minutes else f", {seconds}s left"
    return text


class ProgressTracker:
    """Collects a run's reports; `sink` (the run's row) gets them at most every `interval` seconds and whenever
    the phase changes or the run completes, `listeners` get every one."""

    def __init__(self, sink: Sink, interval: float, listeners: tuple[Sink, ...] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sink, self.interval, self.listeners, self.clock = sink, interval, listeners, clock
        self.current = RunProgress()
        self._last_sent: float | None = None
        self._pace: tuple[float, int] | None = None  # (time, step) of the phase's first step report

    def __call__(self, fraction: float, stage: str, phase: str | None = None) -> None:
        """A stage of the run; a new `phase` forgets the previous phase's steps."""
        if phase is not None and phase != self.current.phase:
            self._pace = None
            self.current = replace(self.current, phase=phase, step=None, total_steps=None, loss=None, eta_s=None)
        # The fraction never moves backwards: a stage reported late must not make the bar jump back.
        self._emit(replace(self.current, fraction=max(self.current.fraction, min(fraction, 1.0)), stage=stage),
                   force=phase is not None)

    def step_reporter(self, phase: str) -> StepFn:
        """What a tower's training loop calls after each optimiser step: (step, total steps, loss or None)."""
        def on_step(step: int, total: int, loss: float | None) -> None:
            if phase != self.current.phase:
                self(self.current.fraction, self.current.stage, phase)
            now = self.clock()
            if self._pace is None:
                self._pace = (now, step)
            started, first = self._pace
            eta = (now - started) / (step - first) * max(total - step, 0) if step > first else None
            self._emit(replace(self.current, step=step, total_steps=total,
                               loss=loss if loss is not None else self.current.loss, eta_s=eta), force=False)

        return on_step

    def _emit(self, progress: RunProgress, force: bool) -> None:
        self.current = progress
        now = self.clock()
        done = progress.fraction >= 1.0 or (progress.step is not None and progress.step == progress.total_steps)
        if force or done or self._last_sent is None or now - self._last_sent >= self.interval:
            self._last_sent = now
            self.sink(progress)
        for listener in self.listeners:
            listener(progress)
