"""Driver-memory bench: the data stage streams, so the driver's peak memory must not grow with the corpus.

Writes a synthetic vector corpus at 1x and 10x the row count (same shard size, so 10x the shards), then runs
what a training job runs on the driver -- ``load_dataset`` + ``validate_corpus`` (incl. the duplicate-id
shuffle) + ``fit_normalizer`` + one full iteration of the normalized rows -- while a thread samples the
driver's resident set size (``/proc/self/statm``) every 10 ms. Both sizes run side by side in one process on
one local Ray instance. Reported: peak RSS at each size and its growth over the RSS after a warm-up run;
the 10x / 1x ratios should be ~1 (flat).

Run ``python -m bench.data_memory`` (``--quick`` for a smoke run) to print the rows.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

DIM = 64
ROWS_PER_SHARD = 5_000


def rss_bytes() -> int:
    """Resident set size of this process (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples this process's RSS in a background thread while the ``with`` block runs."""

    def __init__(self, interval_s: float = 0.01):
        self.interval_s, self.peak, self.start = interval_s, 0, 0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval_s)

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def stream_corpus(path: Path) -> int:
    """What the training driver does with a corpus; returns the rows iterated."""
    from pipelines.config import DataConfig
    from pipelines.data import fit_normalizer, load_dataset, normalize_dataset, validate_corpus

    corpus = validate_corpus(load_dataset(DataConfig(label_column="is_anomaly"), str(path)))
    normalizer = fit_normalizer(corpus.dataset, "standard", "feature")
    rows = 0
    for batch in normalize_dataset(corpus.dataset, normalizer).iter_batches(batch_size=1024, batch_format="numpy"):
        rows += len(batch["x"])
    assert rows == corpus.report.records
    return rows


def measure(root: Path, rows: int) -> dict[str, float]:
    """Write ``rows`` synthetic vectors and stream them, sampling the driver's RSS."""
    from pipelines.data.corpora import write_synthetic

    path = root / f"rows-{rows}"
    write_synthetic(
        path, "vectors", rows=rows, shards=max(1, rows // ROWS_PER_SHARD), anomaly_fraction=0.01, seed=0, dim=DIM
    )
    t0 = time.perf_counter()
    with PeakRSS() as rss:
        streamed = stream_corpus(path)
    return {"rows": streamed, "peak_mb": rss.peak / 2**20, "seconds": time.perf_counter() - t0}


def run(quick: bool = False, out_dir: Path | None = None) -> list[dict[str, Any]]:
    """Peak driver RSS streaming 1x vs 10x a synthetic corpus (20k vs 200k rows of 64 floats; quick: 4k vs 40k)."""
    import ray

    base = 4_000 if quick else 20_000
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
            measure(Path(tmp), 1_000)  # warm-up: imports, Ray workers, first-execution caches
            baseline = rss_bytes() / 2**20
            small, large = measure(Path(tmp), base), measure(Path(tmp), 10 * base)
            small["growth_mb"], large["growth_mb"] = small["peak_mb"] - baseline, large["peak_mb"] - baseline
    finally:
        if started:
            ray.shutdown()
    note = (
        f"load_dataset + validate_corpus + fit_normalizer + full iteration, {DIM}-float vectors, "
        f"{ROWS_PER_SHARD} rows per shard; {small['rows']} vs {large['rows']} rows, "
        f"{small['seconds']:.1f}s vs {large['seconds']:.1f}s"
    )
    return [
        {
            "bench": "data_memory",
            "metric": "driver_peak_rss_mb_1x",
            "value": round(small["peak_mb"], 1),
            "reference": None,
            "ratio": None,
            "note": note,
        },
        {
            "bench": "data_memory",
            "metric": "driver_peak_rss_mb_10x",
            "value": round(large["peak_mb"], 1),
            "reference": round(small["peak_mb"], 1),
            "ratio": round(large["peak_mb"] / small["peak_mb"], 3),
            "note": "peak RSS at 10x over 1x (target ~1: flat)",
        },
        {
            "bench": "data_memory",
            "metric": "driver_rss_growth_mb_10x",
            "value": round(large["growth_mb"], 1),
            "reference": round(small["growth_mb"], 1),
            "ratio": round(large["growth_mb"] / max(small["growth_mb"], 1.0), 3),
            "note": f"peak RSS over the {baseline:.0f} MB after warm-up, 10x vs 1x (ratio floored at 1 MB)",
        },
    ]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv[1:]):
        print(row)
