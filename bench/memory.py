"""Peak resident memory of the driver and of Ray's worker processes, sampled while a block runs."""

from __future__ import annotations

import contextlib
import threading
import time

import psutil

MIB = 2**20


def _ray_workers() -> list[psutil.Process]:
    """Ray worker processes of the local Ray instance this process started (titles start with ``ray::``).

    Only descendants count, so other Ray instances on the same machine are not measured.
    """
    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            cmd = proc.cmdline()
        except psutil.Error:
            continue
        if cmd and cmd[0].startswith("ray::"):
            found.append(proc)
    return found


class PeakMemory:
    """Context manager: peak RSS of this process above its starting level, and peak summed RSS of Ray
    worker processes, in MiB, sampled every ``interval`` seconds; ``samples`` holds each sample as
    (seconds since entry, driver MiB, workers MiB)."""

    def __init__(self, interval: float = 0.05, workers: bool = True):
        self.interval, self.workers = interval, workers
        self.driver_peak_mib = 0.0
        self.workers_peak_mib = 0.0
        self.samples: list[tuple[float, float, float]] = []

    def __enter__(self) -> PeakMemory:
        self._proc = psutil.Process()
        self._base = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        next_scan, workers, start = 0.0, [], time.monotonic()
        while not self._stop.is_set():
            driver = (self._proc.memory_info().rss - self._base) / MIB
            self.driver_peak_mib = max(self.driver_peak_mib, driver)
            total = 0
            if self.workers:
                if time.monotonic() >= next_scan:  # rescan for new worker processes once a second
                    workers, next_scan = _ray_workers(), time.monotonic() + 1.0
                for p in workers:
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_info().rss
                self.workers_peak_mib = max(self.workers_peak_mib, total / MIB)
            self.samples.append((time.monotonic() - start, driver, total / MIB))
            time.sleep(self.interval)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
