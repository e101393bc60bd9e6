"""How often the train loop writes checkpoints and sends metrics: per-epoch work in proportion to what it does.

:class:`CheckpointCadence` says which epochs are checkpointed (``train.checkpoint_every``,
``train.checkpoint_every_s``, the last epoch, an early stop: see :class:`pipelines.config.TrainConfig`).
:class:`MetricsBuffer` holds rank 0's per-epoch metrics and sends them to MLflow in one batch at each checkpoint
and every ``train.metrics_flush_s`` seconds, never logging an epoch twice.
"""

from __future__ import annotations

import time

from pipelines import tracking
from pipelines.config import TrainConfig

Steps = list[tuple[int, dict[str, float]]]


class CheckpointCadence:
    """Whether an epoch is checkpointed. Every rank must ask with the same arguments except the clock: the
    caller agrees on rank 0's answer (:func:`pipelines.train.metrics.gather_objects`)."""

    def __init__(self, tc: TrainConfig):
        self.every, self.every_s, self.epochs = tc.checkpoint_every, tc.checkpoint_every_s, tc.epochs
        self.since = time.monotonic()

    def due(self, epoch: int, stop: bool) -> bool:
        """True for the last epoch, an early stop, every ``every``-th epoch and after ``every_s`` seconds."""
        if stop or epoch >= self.epochs:
            return True
        if self.every is not None and epoch % self.every == 0:
            return True
        return self.every_s is not None and time.monotonic() - self.since >= self.every_s

    def written(self) -> None:
        """A checkpoint was just written: the time rule counts from now."""
        self.since = time.monotonic()


class MetricsBuffer:
    """Rank 0's epochs not yet sent to MLflow; ``flush`` logs them once each (by the ``val_loss`` step)."""

    def __init__(self, tracking_uri: str, run_id: str, flush_s: float):
        self.uri, self.run_id, self.flush_s = tracking_uri, run_id, flush_s
        self.pending: Steps = []
        self.last_flush = time.monotonic()

    def add(self, epoch: int, metrics: dict[str, float]) -> None:
        """Buffer one epoch's metrics; send the buffer when ``flush_s`` seconds passed since the last send."""
        self.pending.append((epoch, metrics))
        if time.monotonic() - self.last_flush >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        """Send every buffered epoch in one batch (epochs MLflow already holds are skipped)."""
        if self.pending:
            tracking.log_steps_once(self.uri, self.run_id, self.pending)
            self.pending = []
        self.last_flush = time.monotonic()
