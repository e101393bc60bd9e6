"""Test-only fault injection: SIGKILL one worker once, mid-epoch, so failure recovery can be exercised.

The "once" is a marker file under the run's storage (local path or a pyarrow filesystem URI): the worker
writes it before it dies, and the restarted worker sees it and carries on.
"""

from __future__ import annotations

import os
import signal
import time

import pyarrow.fs as pafs

from pipelines import storage
from pipelines.config import FaultInjection


class FaultInjector:
    """``check(epoch, rank, batches_done, checkpointed)`` kills this process when the configured point is reached."""

    def __init__(self, fault: FaultInjection | None, run_dir: str):
        self.fault = fault
        self.marker = storage.join(run_dir, f"fault-injected-epoch{fault.epoch}-rank{fault.rank}") if fault else ""

    def check(self, epoch: int, rank: int, batches_done: int, checkpointed: int) -> None:
        """Kill this process at the configured (epoch, rank, batch), once, after the controller has registered the
        checkpoint of epoch ``checkpointed`` (the latest this worker wrote; 0 = none)."""
        f = self.fault
        if f is None or (epoch, rank, batches_done) != (f.epoch, f.rank, f.after_batches):
            return
        if storage.info(self.marker).type != pafs.FileType.NotFound:
            return
        self._await_checkpoint(checkpointed)
        storage.write_bytes(self.marker, f"killed rank {rank} in epoch {epoch} after {batches_done} batches\n".encode())
        os.kill(os.getpid(), signal.SIGKILL)

    def _await_checkpoint(self, epoch: int, timeout_s: float = 120.0) -> None:
        """Wait until the controller has registered the checkpoint of ``epoch`` (in a real job the failure
        comes long after; on a busy test machine the kill could otherwise outrun the controller's poll)."""
        snapshot = storage.join(storage.parent(self.marker), "checkpoint_manager_snapshot.json")
        deadline = time.monotonic() + timeout_s
        while epoch >= 1 and time.monotonic() < deadline:
            if storage.is_file(snapshot):
                latest = storage.read_json(snapshot).get("latest_checkpoint_result") or {}
                if latest.get("metrics", {}).get("epoch", 0) >= epoch:
                    return
            time.sleep(0.2)
