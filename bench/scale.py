"""Scale: train one epoch and score a synthetic vector corpus at 1x, 4x and 16x its base size.

For each size: wall seconds per row of ``run_training`` (1 epoch, 2 DDP workers) and of ``run_scoring``,
peak driver memory above its starting level, and peak summed memory of Ray's worker processes. Ratios are
against the 1x run of the same suite: cost per row should stay flat (fixed start-up costs make small
corpora look dearer per row) and memory should not grow with the corpus. Training streams its epochs
(``data.cache=stream``): the default ``auto`` would hold a corpus that fits in Ray's object store, memory that
grows with the corpus by design, up to ``data.cache_max_fraction`` of the store.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

BENCH = "scale"
SIZES = (1, 4, 16)
DIM = 64


def _measure(root: Path, scale: int, base_rows: int) -> dict[str, float]:
    from bench.memory import PeakMemory
    from pipelines.config import load_config
    from pipelines.data.corpora import write_synthetic
    from pipelines.score.driver import ScoreRequest, run_scoring
    from pipelines.train.driver import run_training

    rows = base_rows * scale
    data = root / f"data-{scale}x"
    write_synthetic(data, "vectors", rows=rows, shards=2 * scale, seed=scale, dim=DIM)
    job = load_config(
        None,
        [
            f"home={root}",
            f"name=scale-{scale}x",
            f"data.path={data}",
            "data.label_column=null",
            "data.normalize=standard",
            "data.cache=stream",
            "model.name=dense",
            f"model.input_shape=[{DIM}]",
            "model.hidden=[64]",
            "model.latent_dim=8",
            "train.epochs=1",
            "train.batch_size=256",
            f"tracking.registered_model=scale-{scale}x",
        ],
    )
    quiet = lambda _msg: None
    with PeakMemory() as train_mem:
        t = time.perf_counter()
        run_training(job, log=quiet)
        train_s = time.perf_counter() - t
    req = ScoreRequest(
        model_uri=f"models:/scale-{scale}x@champion",
        input_path=str(data),
        output_path=str(root / f"scores-{scale}x"),
        tracking_uri=job.tracking_uri,
    )
    with PeakMemory() as score_mem:
        t = time.perf_counter()
        run_scoring(req, log=quiet)
        score_s = time.perf_counter() - t
    print(f"[bench] scale {scale}x: {rows} rows, train {train_s:.1f}s, score {score_s:.1f}s", flush=True)
    return {
        "rows": rows,
        "train_us_per_row": 1e6 * train_s / rows,
        "score_us_per_row": 1e6 * score_s / rows,
        "train_driver_mib": train_mem.driver_peak_mib,
        "score_driver_mib": score_mem.driver_peak_mib,
        "train_workers_mib": train_mem.workers_peak_mib,
        "score_workers_mib": score_mem.workers_peak_mib,
    }


def run(quick: bool = False, out_dir: Path | None = None) -> list[dict]:
    """Rows ``{bench, metric, value, reference, ratio, note}`` for each size against the 1x run."""
    from bench.common import ray_workspace

    base_rows = 500 if quick else 5000
    sizes = SIZES[:2] if quick else SIZES
    with ray_workspace("aepipe-scale-") as tmp:
        _measure(tmp / "warm-up", 1, max(200, base_rows // 5))  # imports, actor start-up, caches
        results = {s: _measure(tmp, s, base_rows) for s in sizes}
    base = results[1]
    labels = {
        "train_us_per_row": "train wall µs/row",
        "score_us_per_row": "score wall µs/row",
        "train_driver_mib": "train driver peak MiB",
        "score_driver_mib": "score driver peak MiB",
        "train_workers_mib": "train Ray workers peak MiB",
        "score_workers_mib": "score Ray workers peak MiB",
    }
    rows = []
    for scale in sizes[1:]:
        for key, label in labels.items():
            ref, value = base[key], results[scale][key]
            floor = 1.0 if "MiB" in label else 0.0  # sub-MiB driver growth is noise: compare from 1 MiB up
            rows.append(
                {
                    "bench": BENCH,
                    "metric": f"{label}, {scale}x vs 1x",
                    "value": value,
                    "reference": ref,
                    "ratio": max(value, floor) / max(ref, floor) if max(ref, floor) else None,
                    "note": f"{results[scale]['rows']} vs {base['rows']} rows",
                }
            )
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv[1:]):
        print(row)
