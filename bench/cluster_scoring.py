"""Scoring on the production shape vs one node: ``run_scoring`` on a two-node Ray cluster (token auth) reading the
corpus from and publishing the scores to S3 (moto), beside the same call on a local single-node Ray instance
with the corpus and the output on the local disk, same model and rows, in one run.

Both nodes of the cluster share this machine's cores, so the figure measures what the production shape costs
(object-store I/O, scheduling across nodes, the driver outside the cluster), not a speed-up. The environment is
the integration suite's (``tests.support.production``: PostgreSQL, moto, MLflow, two Ray nodes); the model is
the score_throughput bench's, registered in a throw-away SQLite store (the tracking store is not measured).
"""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile
import time

from bench.common import repeated_mnist
from bench.memory import PeakMemory
from bench.score_throughput import register

BENCH = "cluster_scoring"


def _score(uri: str, inp: str, out: str) -> tuple[float, float, float]:
    """(end-to-end rows/s, steady rows/s, driver peak MiB) of one ``run_scoring`` call."""
    from pipelines.config import ScoreConfig
    from pipelines.score.driver import ScoreRequest, run_scoring

    settings = ScoreConfig(concurrency=2, num_cpus=0.5, num_gpus=0)
    req = ScoreRequest(model_uri="models:/bench-score/1", input_path=inp, output_path=out, tracking_uri=uri,
                       settings=settings)  # fmt: skip
    t = time.perf_counter()
    with PeakMemory(interval=0.01, workers=False) as mem:
        result = run_scoring(req, log=lambda _: None)
    return result.rows / (time.perf_counter() - t), result.steady_rows_per_s, mem.driver_peak_mib


def _on_cluster(uri: str, corpus: pathlib.Path) -> tuple[float, float, float]:
    """The two-node measurement, from a driver process started with the cluster's address and token (Ray reads
    them when it is first imported)."""
    import json
    import subprocess

    import pyarrow.fs as pafs

    from tests.support.production import production_environment

    with production_environment() as prod:
        s3 = pafs.S3FileSystem(endpoint_override=prod.s3.endpoint, access_key=prod.s3.access_key_id,
                               secret_key=prod.s3.secret_access_key, region=prod.s3.region)  # fmt: skip
        pafs.copy_files(str(corpus), f"{prod.s3.buckets['data']}/bench", pafs.LocalFileSystem(), s3)
        env = {**os.environ, **prod.s3.env(), "RAY_ADDRESS": prod.ray.gcs_address, "RAY_AUTH_MODE": "token"}
        env["RAY_AUTH_TOKEN"] = prod.ray.token
        args = [uri, prod.s3.url("data", "bench"), prod.s3.url("scores", "bench")]
        out = subprocess.run([sys.executable, "-m", "bench.cluster_scoring", "--driver", *args], env=env,
                             capture_output=True, text=True, timeout=1200, check=True)  # fmt: skip
        return tuple(json.loads(out.stdout.strip().splitlines()[-1]))


def _driver(uri: str, inp: str, out: str) -> None:
    """``--driver``: connect to ``RAY_ADDRESS``, score once to warm up and once measured; print the figures."""
    import json

    import ray

    ray.init(logging_level="ERROR")
    try:
        _score(uri, inp, f"{out}-warm-up")
        print(json.dumps(_score(uri, inp, out)))
    finally:
        ray.shutdown()


def _on_one_node(uri: str, corpus: pathlib.Path, root: pathlib.Path) -> tuple[float, float, float]:
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        _score(uri, str(corpus), str(root / "warm-up"))
        return _score(uri, str(corpus), str(root / "out"))
    finally:
        ray.shutdown()


def run(quick: bool = False, out_dir: pathlib.Path | None = None) -> list[dict]:
    """Measure and return bench rows (see the module docstring)."""
    rows = 4000 if quick else 20000
    with tempfile.TemporaryDirectory(prefix="aepipe-bench-cluster-") as tmp:
        root = pathlib.Path(tmp)
        uri, _ = register(root)
        corpus = repeated_mnist(root / "in", rows, shards=8)
        cluster = _on_cluster(uri, corpus)
        local = _on_one_node(uri, corpus, root)
    what = f"{rows} rows in 8 shards, 2 actors x 0.5 CPU"
    names = ("end_to_end_rows_per_s", "steady_rows_per_s", "driver_peak_mib")
    notes = (
        f"two-node cluster, s3:// in and out (moto) vs one local node, local disk; {what}",
        "after the first scored batch, same comparison",
        "driver peak RSS above baseline: two-node s3 run vs one-node local run",
    )
    return [
        {"bench": BENCH, "metric": n, "value": c, "reference": one, "ratio": c / max(one, 1e-9), "note": note}
        for n, c, one, note in zip(names, cluster, local, notes, strict=True)
    ]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--driver"]:
        _driver(*sys.argv[2:5])
    else:
        for row in run(quick="--quick" in sys.argv[1:]):
            print(row)
