"""Live progress bars (rich) for a command on a terminal; imported only when bars are drawn."""

from __future__ import annotations

from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class CountColumn(ProgressColumn):
    """``done/total status`` for a step of known length; the status alone for a spinner."""

    def render(self, task: Task) -> Text:
        status = task.fields.get("status", "")
        if task.total is None:
            return Text(status)
        return Text(f"{task.completed:,.0f}/{task.total:,.0f} {status}".rstrip(), style="progress.download")


class EtaColumn(TimeRemainingColumn):
    """``eta 0:01:23`` for a step of known length; nothing for a spinner."""

    def render(self, task: Task) -> Text:
        return Text("") if task.total is None else Text.assemble("eta ", super().render(task))


class LiveTask:
    """One step's bar, removed from the display when closed."""

    def __init__(self, bars: Progress, task_id: Any) -> None:
        self.bars, self.task_id = bars, task_id

    def update(self, completed: float, *, total: float | None = None, status: str = "") -> None:
        self.bars.update(self.task_id, completed=completed, total=total, status=status)

    def close(self) -> None:
        self.bars.remove_task(self.task_id)


class Live:
    """The bars of the running steps, above which the lines scroll."""

    def __init__(self, terminal: TextIO) -> None:
        self.bars = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            CountColumn(),
            TimeElapsedColumn(),
            EtaColumn(),
            console=Console(file=terminal, soft_wrap=True, highlight=False),
            transient=True,
            redirect_stdout=False,  # the session sends the streams to the log itself
            redirect_stderr=False,
        )

    def task(self, description: str, total: float | None = None) -> LiveTask:
        self.bars.start()  # on the first step: a command that fails before any leaves the terminal as it was
        return LiveTask(self.bars, self.bars.add_task(description, total=total, status=""))

    def stop(self) -> None:
        self.bars.stop()

    def print(self, message: str) -> None:
        self.bars.console.print(message, markup=False, highlight=False)
