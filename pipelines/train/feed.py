"""Rank 0's progress, sent to the driver: a Ray queue (an actor on no CPU) the workers put events on and a
driver thread that turns them into the console's epoch lines and bars. It works wherever the driver runs (a
laptop, a Ray job on the head node), whether or not worker output reaches the driver's terminal."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ray.util.queue import Empty, Queue

from pipelines.progress import SILENT, Progress, Task

#: seconds between two batch updates of one epoch (the epoch's end is always sent)
BATCH_UPDATE_S = 0.5


@dataclass
class WorkerFeed:
    """The worker's end: rank 0 sends, the other ranks hold ``queue=None`` and send nothing."""

    queue: Queue | None
    last_sent: float = field(default=0.0, repr=False)

    def _put(self, event: tuple[Any, ...]) -> None:
        """Send without waiting for the queue's answer (a round trip per epoch would be most of a tiny epoch's
        cost); one caller's calls to the actor's synchronous ``put_nowait`` run in the order they were sent."""
        if self.queue is None:
            return
        with contextlib.suppress(Exception):  # progress must never stop training (a driver gone, say)
            self.queue.actor.put_nowait.remote(event)  # type: ignore[attr-defined]  # an actor method

    def note(self, text: str) -> None:
        """A line the driver prints (e.g. "resumed from the epoch 3 checkpoint")."""
        self._put(("note", text))

    def batches(self, epoch: int, done: int, total: int | None) -> None:
        """``done`` of ``total`` training batches of ``epoch`` (``total`` None: streamed, not known ahead)."""
        now = time.monotonic()
        if now - self.last_sent >= BATCH_UPDATE_S:
            self.last_sent = now
            self._put(("batches", epoch, done, total))

    def epoch(self, epoch: int, metrics: dict[str, float], stop: bool) -> None:
        keys = ("train_loss", "val_loss", "samples_per_s", "lr")
        self._put(("epoch", epoch, {k: float(metrics[k]) for k in keys}, stop))


def epoch_line(epoch: int, epochs: int, metrics: dict[str, float], stop: bool) -> str:
    """The one line an epoch prints."""
    return (
        f"epoch {epoch}/{epochs} train_loss={metrics['train_loss']:.5f} val_loss={metrics['val_loss']:.5f} "
        f"{metrics['samples_per_s']:.0f} samples/s lr={metrics['lr']:.3g}" + (" (early stop)" if stop else "")
    )


class DriverFeed:
    """The driver's end: draws ``epochs`` epochs as a bar over the run and one over the epoch's batches, and logs
    each epoch's line once."""

    def __init__(self, epochs: int, log: Callable[[str], None], progress: Progress = SILENT) -> None:
        self.epochs, self.log, self.progress = epochs, log, progress
        self.queue = Queue(maxsize=10_000, actor_options={"num_cpus": 0})
        self.run_task: Task | None = None
        self.epoch_task: Task | None = None
        self.done = threading.Event()

    def _handle(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind == "note":
            self.log(event[1])
        elif kind == "batches":
            _, epoch, done, total = event
            if self.run_task is None:
                self.run_task = self.progress.task("training", self.epochs)
            if self.epoch_task is None:
                self.epoch_task = self.progress.task(f"epoch {epoch}/{self.epochs}", total)
            self.epoch_task.update(done, total=total)
        elif kind == "epoch":
            _, epoch, metrics, stop = event
            self._close_epoch()
            self.log(epoch_line(epoch, self.epochs, metrics, stop))
            if self.run_task is None:
                self.run_task = self.progress.task("training", self.epochs)
            self.run_task.update(epoch, status=f"val_loss {metrics['val_loss']:.5f}")

    def _close_epoch(self) -> None:
        if self.epoch_task is not None:
            self.epoch_task.close()
            self.epoch_task = None

    def _follow(self) -> None:
        while not self.done.is_set():
            try:
                self._handle(self.queue.get(timeout=0.2))
            except Empty:
                continue
        with contextlib.suppress(Empty):  # what rank 0 sent before the fit returned
            while True:
                self._handle(self.queue.get_nowait())

    @contextlib.contextmanager
    def following(self) -> Iterator[None]:
        """Follow the workers' events for the block (the fit), then close the bars and the queue's actor."""
        thread = threading.Thread(target=self._follow, name="aepipe-train-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            self.done.set()
            thread.join(timeout=10)
            self._close_epoch()
            if self.run_task is not None:
                self.run_task.close()
            self.queue.shutdown(force=True)
