"""Grid progress: rich bars on a terminal (one over all runs, one line per running trial), and
plain lines where standard error is not a terminal (CI, ``nohup``, a cluster job's log).

Both are driven by the runner's Tune callback (driver side only) through the same four calls:
``status`` (a trial's phase), ``warn``, ``run_done`` and ``trial_done``.
"""
from __future__ import annotations

import re
import sys
import threading
import time
from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

# Plain progress: a line at each new phase and each finished run, and a heartbeat this often
HEARTBEAT_S = 30.0
_COUNTER = re.compile(r"\s*(step|epoch|batch)?\s*\d+\s*/\s*\d+.*$")  # "... step 120/300": same phase


class GridProgress:
    """Rich progress display for a terminal."""

    def __init__(self, total_runs: int, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=self.console, transient=False,
        )
        self._overall = self._progress.add_task("runs", total=total_runs)
        self._trials: dict[str, int] = {}
        self.failed = 0

    def __enter__(self) -> GridProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for task in self._trials.values():
            self._progress.remove_task(task)
        self._trials.clear()
        self._progress.stop()

    def status(self, trial_id: str, label: str, phase: str) -> None:
        text = f"  [dim]{escape(label)}[/]: {escape(phase)}"  # specs hold [...]: not markup
        if trial_id not in self._trials:
            self._trials[trial_id] = self._progress.add_task(text, total=None)
        else:
            self._progress.update(self._trials[trial_id], description=text)

    def warn(self, label: str, message: str) -> None:
        """A warning a trial raised (a corrupt artifact it rebuilds, ...), printed above the bars."""
        self.console.print(f"[yellow]warning[/] {escape(label)}: {escape(message)}", soft_wrap=True)  # one line

    def run_done(self, ok: bool) -> None:
        if not ok:
            self.failed += 1
            self._progress.update(self._overall, description=f"runs ([red]{self.failed} failed[/])")
        self._progress.advance(self._overall)

    def trial_done(self, trial_id: str) -> None:
        task = self._trials.pop(trial_id, None)
        if task is not None:
            self._progress.remove_task(task)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class PlainProgress:
    """The same information as `GridProgress`, as lines a log keeps: each trial's new phase, each
    finished run (done / total, elapsed, estimated remaining), and every ``interval`` seconds a
    heartbeat with what every running trial is doing."""

    def __init__(self, total_runs: int, stream: TextIO | None = None, interval: float = HEARTBEAT_S):
        self.total, self.done, self.failed = total_runs, 0, 0
        self.stream = stream or sys.stderr
        self.interval = interval
        self._phases: dict[str, tuple[str, str, str]] = {}  # trial -> (label, phase kind, latest text)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._start = time.monotonic()
        self._beat = threading.Thread(target=self._heartbeat, name="bench-progress", daemon=True)

    def __enter__(self) -> PlainProgress:
        self._start = time.monotonic()
        self._line(f"{self.total} runs to do")
        self._beat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._beat.join(timeout=5)

    def _line(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        with self._lock:
            print(f"[{stamp}] bench: {text}", file=self.stream, flush=True)

    def _counts(self) -> str:
        elapsed = time.monotonic() - self._start
        failed = f" ({self.failed} failed)" if self.failed else ""
        left = ""
        if 0 < self.done < self.total:
            left = f", about {_duration(elapsed / self.done * (self.total - self.done))} left"
        return f"runs {self.done}/{self.total} done{failed}, {_duration(elapsed)} elapsed{left}"

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                running = [f"{label}: {text}" for label, _, text in self._phases.values()]
            self._line(self._counts() + ("; running: " + "; ".join(running) if running else ""))

    def status(self, trial_id: str, label: str, phase: str) -> None:
        kind = _COUNTER.sub("", phase) or phase
        with self._lock:
            before = self._phases.get(trial_id)
            self._phases[trial_id] = (label, kind, phase)
        if before is None or before[1] != kind:
            self._line(f"{label}: {phase}")

    def warn(self, label: str, message: str) -> None:
        self._line(f"warning {label}: {message}")

    def run_done(self, ok: bool) -> None:
        self.done += 1
        self.failed += not ok
        self._line(self._counts())

    def trial_done(self, trial_id: str) -> None:
        with self._lock:
            self._phases.pop(trial_id, None)


def grid_progress(total_runs: int) -> GridProgress | PlainProgress:
    """Bars where standard error is a terminal, plain lines elsewhere."""
    console = Console(stderr=True)
    return GridProgress(total_runs, console) if console.is_terminal else PlainProgress(total_runs)
