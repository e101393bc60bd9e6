"""Progress of the drivers' long steps, for a console to draw (a live bar on a terminal, nothing between lines
elsewhere). Pipelines never print: a driver asks its :class:`Progress` for one :class:`Task` per long step, updates
it and closes it; the lines worth keeping go through the driver's ``log`` as before."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any, Protocol


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
SILENT_TASK: Task = _SilentTask()


@contextlib.contextmanager
def step(progress: Progress, description: str, total: float | None = None) -> Iterator[Task]:
    """A task for the block: a spinner (or a bar when ``total`` is given) closed when the block ends."""
    task = progress.task(description, total)
    try:
        yield task
    finally:
        task.close()


class RowCounter:
    """The remote end of :func:`counting`: tasks add the rows they read (fire and forget)."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def add(self, rows: int) -> None:
        self.actor.add.remote(int(rows))


class _Tally:
    def __init__(self) -> None:
        self.rows = 0

    def add(self, rows: int) -> None:
        self.rows += rows

    def value(self) -> int:
        return self.rows


@contextlib.contextmanager
def counting(
    task: Task, total: int | None = None, unit: str = "records", interval_s: float = 0.5
) -> Iterator[RowCounter | None]:
    """Rows read by a distributed pass, drawn on ``task`` (``n`` of ``total``, or ``n unit``) every ``interval_s``
    while the block runs: the pass's tasks add to a small actor (no CPU) through the yielded counter. Nothing is
    started, and None yielded, when ``task`` draws nothing."""
    if isinstance(task, _SilentTask):
        yield None
        return
    import ray

    actor: Any = ray.remote(num_cpus=0)(_Tally).remote()
    stop = threading.Event()

    def draw() -> None:
        while not stop.wait(interval_s):
            with contextlib.suppress(Exception):  # a bar must never stop the pass
                rows = int(ray.get(actor.value.remote(), timeout=interval_s * 4))
                task.update(rows, total=total, status="" if total else f"{rows:,} {unit}")

    thread = threading.Thread(target=draw, name="aepipe-row-counter", daemon=True)
    thread.start()
    try:
        yield RowCounter(actor)
    finally:
        stop.set()
        thread.join(timeout=5)
        ray.kill(actor)
