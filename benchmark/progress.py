"""Grid progress on the terminal: one bar over all runs and one line per running trial."""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


class GridProgress:
    """Rich progress display driven by the runner's Tune callback (driver side only)."""

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
