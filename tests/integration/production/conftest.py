"""The production-shaped environment (``tests/support/production.py``), once for the tests in this directory (a
package, so that its servers stop when these tests are done rather than idling through the rest of the suite):
``make integration`` runs them alone; ``make test`` runs them with the rest.

A test takes ``production_env`` (a :class:`~tests.support.production.ProductionEnv`) and reaches every server
through it::

    def test_flow(production_env, tmp_path):
        env = production_env.client_env(home=tmp_path / "home")  # a user's shell: MLflow, S3, Ray Jobs API
        subprocess.run([BIN / "aepipe", "submit", "train", ...], env=env, cwd=REPO, check=True)
        production_env.s3.keys("checkpoints")                    # what landed in a bucket
        production_env.mlflow.uri, production_env.ray.jobs_client(), production_env.postgres.connect()

``production_env.s3.url("data", "mnist")`` is ``s3://data/mnist``; the Ray worker node alone has the resource
``production_env.ray.worker_resource``. Server logs: ``production_env.logs``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.support.production import PostgresMissing, ProductionEnv, postgres_bin, production_environment


@pytest.fixture(scope="package")
def production_env() -> Iterator[ProductionEnv]:
    """PostgreSQL + moto (S3) + ``mlflow server`` (basic auth, artifacts in S3) + a two-node Ray cluster with
    token auth, on loopback; stopped after this directory's last test, also after failures."""
    try:
        postgres_bin()
    except PostgresMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    with production_environment() as env:
        print(f"\nproduction environment up in {env.startup_s:.1f}s under {env.root}")
        yield env
        t0 = time.monotonic()
    print(f"\nproduction environment stopped in {time.monotonic() - t0:.1f}s: {env.stop_s}")
