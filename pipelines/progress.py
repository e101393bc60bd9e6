"""Progress of the drivers' long steps, for a console to draw (a live bar on a terminal, nothing between lines
elsewhere). Pipelines never print: a driver asks its :class:`Progress` for one :class:`Task` per long step, updates
it and closes it; the lines worth keeping go through the driver's ``log`` as before."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol


class Task(Protocol):
    """One long step: ``completed`` of ``total`` units (``total`` None: not known ahead, a spinner)."""

    def update(self, completed: float, *, total: float | None = None, status: str = "") -> None: ...

    def close(self) -> None: ...


class Progress(Protocol):
    def task(self, description: str, total: float | None = None) -> Task: ...


class _SilentTask:
    def update(self, completed: float, *, total: float | None = None, status: str = "") -> None:
        pass

    def close(self) -> None:
        pass


class Silent:
    """No progress drawn: the default for library callers, benches and tests."""

    def task(self, description: str, total: float | None = None) -> Task:
        return _SilentTask()


SILENT: Progress = Silent()


@contextlib.contextmanager
def step(progress: Progress, description: str, total: float | None = None) -> Iterator[Task]:
    """A task for the block: a spinner (or a bar when ``total`` is given) closed when the block ends."""
    task = progress.task(description, total)
    try:
        yield task
    finally:
        task.close()
