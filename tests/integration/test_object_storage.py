"""Training and scoring with everything on object storage (a real S3-speaking server, moto), through the CLI as
a user runs it: corpus, checkpoints and quarantine under ``s3://``, scores published to ``s3://`` by the actors
and committed by one manifest, incremental re-runs, and a store that cannot be used named before any work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from tests.support.s3 import moto_s3

AEPIPE = str(Path(sys.executable).with_name("aepipe"))


@pytest.fixture(scope="module")
def s3(tmp_path_factory, mnist_small):
    """moto with buckets ``data`` (holding mnist_small under ``mnist/``), ``ckpt`` and ``scores``."""
    with moto_s3(tmp_path_factory.mktemp("moto")) as server:
        server.create_buckets("data", "ckpt", "scores")
        os.environ.update(server.env)  # pyarrow reads the endpoint when a filesystem is made
        try:
            fs, _ = pafs.FileSystem.from_uri("s3://data/")
            pafs.copy_files(str(mnist_small), "data/mnist", pafs.LocalFileSystem(), fs)
            yield server
        finally:
            for key in server.env:
                os.environ.pop(key, None)


def _aepipe(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([AEPIPE, *args], env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def user_env(s3, tmp_path_factory):
    home = tmp_path_factory.mktemp("s3-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
    return {**env, **s3.env, "AEPIPE_HOME": str(home)}


def test_train_and_score_with_every_path_on_s3(s3, user_env):
    trained = _aepipe(
        "train",
        "--config",
        "jobs/configs/mnist_dense.yaml",
        "name=s3-job",
        "data.path=s3://data/mnist",
        "storage_path=s3://ckpt/aepipe",
        "tracking.registered_model=s3-model",
        "train.epochs=1",
        "model.hidden=[32]",
        "model.latent_dim=4",
        env=user_env,
    )
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    ckpt = s3.keys("ckpt", "aepipe/s3-job-")
    assert any(k.endswith("model/model.safetensors") for k in ckpt), ckpt[:10]

    score = ("score", "--model", "models:/s3-model@champion", "--input", "s3://data/mnist")
    out = "s3://scores/mnist/dt=2026-12-01"
    first = _aepipe(*score, "--output", out, env=user_env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    keys = s3.keys("scores", "mnist/dt=2026-12-01/")
    manifest = json.loads(s3.get("scores", "mnist/dt=2026-12-01/_SUCCESS"))
    listed = {f"mnist/dt=2026-12-01/{f['path']}" for sh in manifest["shards"] for f in sh["files"]}
    data = {k for k in keys if k.endswith(".parquet") and "/_" not in k}
    assert manifest["rows"] == 600 and len(manifest["shards"]) == 4 and data == listed
    # the lease let go, the markers cleared (pyarrow leaves empty "directory/" placeholder objects behind)
    assert not [k for k in keys if k.endswith("_LEASE") or ("/_markers/" in k and not k.endswith("/"))], keys

    shown = _aepipe("scores", "show", out, "--rows", "1", env=user_env)
    assert shown.returncode == 0 and '"rows": 600' in shown.stdout, shown.stdout + shown.stderr
    nightly = ("--output", "s3://scores/mnist", "--partition", "dt=2026-12-02", "--incremental")
    again = _aepipe(*score, *nightly, env=user_env)
    assert again.returncode == 0 and "no-op" in again.stdout, again.stdout + again.stderr
    assert not s3.keys("scores", "mnist/dt=2026-12-02/")


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("s3://no-such-bucket/out", "s3://no-such-bucket/out: bucket 'no-such-bucket' does not exist"),
        ("s3://", "s3://: the URI names no bucket"),
        ("nosuch://bucket/out", "nosuch://bucket/out: unknown storage scheme 'nosuch'"),
    ],
)
def test_an_unusable_output_store_is_one_error_line(s3, user_env, output, expected):
    args = ("score", "--model", "models:/s3-model@champion", "--input", "s3://data/mnist", "--output", output)
    result = _aepipe(*args, env=user_env)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stdout + result.stderr
    assert f"error: {expected}" in result.stderr.replace("\n", " ")


def test_an_unusable_checkpoint_store_stops_training_before_any_work(s3, user_env):
    result = _aepipe(
        *("train", "--config", "jobs/configs/mnist_dense.yaml", "data.path=s3://data/mnist"),
        "storage_path=s3://no-such-bucket/aepipe",
        env=user_env,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stdout + result.stderr
    assert "error: s3://no-such-bucket/aepipe: bucket 'no-such-bucket' does not exist" in result.stderr
    assert "validating" not in result.stdout  # before the corpus was read
