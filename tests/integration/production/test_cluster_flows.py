"""aepipe as users deploy it, through the real CLI: a corpus uploaded to S3, ``aepipe submit train`` with the data
and the checkpoints on ``s3://`` to a two-node token-auth Ray cluster (a training worker killed once mid-run:
the job recovers from its checkpoint in the bucket), ``aepipe submit score`` to ``s3://``, ``aepipe submit
nightly-score`` twice (the second a no-op), ``aepipe models list|show|promote`` against the MLflow server
(PostgreSQL, artifacts proxied to S3), and the champion loaded and served from a fresh virtualenv that has no
aepipe. The assertions read what landed in the buckets and the registry, not only exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow.fs as pafs
import pytest
from mlflow import MlflowClient

from pipelines.data.corpora import mnist_arrays, write_vector_shards
from tests.support.fresh_venv import LOAD_AND_PREDICT, fresh_venv, isolated_env, serve_and_predict

AEPIPE = str(Path(sys.executable).with_name("aepipe"))
NAME, MODEL = "prod-job", "prod-dense"
TRAIN = [
    "--config",
    "jobs/configs/mnist_dense.yaml",
    f"name={NAME}",
    f"tracking.registered_model={MODEL}",
    "train.epochs=20",
    "train.batch_size=16",
    "train.num_workers=2",
    "train.cpus_per_worker=1.5",  # two workers cannot share a 2-CPU node: one of them runs on the worker node
    "model.hidden=[64]",
    "model.latent_dim=8",
]


def _run(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([AEPIPE, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _shown(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"


def _upload(prod, local: Path, key: str) -> None:
    fs = pafs.S3FileSystem(
        endpoint_override=prod.s3.endpoint,
        access_key=prod.s3.access_key_id,
        secret_key=prod.s3.secret_access_key,
        region=prod.s3.region,
    )
    pafs.copy_files(str(local), f"{prod.s3.buckets['data']}/{key}", pafs.LocalFileSystem(), fs)


def _admin(prod) -> MlflowClient:
    os.environ["MLFLOW_TRACKING_USERNAME"] = prod.mlflow.admin_username
    os.environ["MLFLOW_TRACKING_PASSWORD"] = prod.mlflow.admin_password
    return MlflowClient(prod.mlflow.uri)


def _training_workers(prod) -> tuple[list[psutil.Process], list[psutil.Process]]:
    """Ray Train worker processes of this cluster: (on the worker node, on the head node)."""
    on = {"worker": [], "head": []}
    for p in psutil.process_iter(["cmdline"]):
        if "RayTrainWorker" not in " ".join(p.info["cmdline"] or []):
            continue
        try:
            raylet = " ".join(p.parent().cmdline())
        except psutil.Error:
            continue
        if str(prod.root) in raylet:
            on["worker" if "/rw/" in raylet else "head"].append(p)
    return on["worker"], on["head"]


def _manifest(prod, partition: str) -> dict:
    """A published partition's ``_SUCCESS`` manifest, read straight from the scores bucket."""
    body = prod.s3.client().get_object(Bucket=prod.s3.buckets["scores"], Key=f"{partition}/_SUCCESS")["Body"]
    return json.loads(body.read())


def _checkpoints(prod) -> list[str]:
    return [k for k in prod.s3.keys("checkpoints", f"aepipe/{NAME}-") if k.endswith("train_state.pt")]


def _registered_epoch(prod) -> int:
    """Epoch of the latest checkpoint the Ray Train controller has registered (from its snapshot in the bucket)."""
    snapshots = [
        k for k in prod.s3.keys("checkpoints", f"aepipe/{NAME}-") if k.endswith("checkpoint_manager_snapshot.json")
    ]
    if not snapshots:
        return 0
    body = prod.s3.client().get_object(Bucket=prod.s3.buckets["checkpoints"], Key=snapshots[0])["Body"].read()
    latest = json.loads(body).get("latest_checkpoint_result") or {}
    return int(latest.get("metrics", {}).get("epoch", 0))


@pytest.fixture(scope="module")
def trained(production_env, mnist_small, tmp_path_factory):
    """The corpus in s3://data/mnist; one ``aepipe submit train`` on it with a training worker killed once."""
    prod = production_env
    _upload(prod, mnist_small, "mnist")
    env = prod.client_env()
    args = [*TRAIN, f"data.path={prod.s3.url('data', 'mnist')}", f"storage_path={prod.s3.url('checkpoints', 'aepipe')}"]
    log = tmp_path_factory.mktemp("submit") / "train.log"
    with log.open("w") as out:
        job = subprocess.Popen(
            [AEPIPE, "submit", "train", *args], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline, killed = time.monotonic() + 400, None
        while job.poll() is None and time.monotonic() < deadline and killed is None:
            if _registered_epoch(prod) >= 2:  # a checkpoint is registered: kill one training process, once
                worker_node, head_node = _training_workers(prod)
                victims = worker_node or head_node
                if victims:
                    killed = ("worker" if worker_node else "head", victims[0].pid, _registered_epoch(prod))
                    victims[0].send_signal(signal.SIGKILL)
            time.sleep(0.2)
        code = job.wait(timeout=600)
    return prod, code, log.read_text(), killed


def test_training_on_s3_recovers_from_a_killed_worker_and_tracks_everything_on_the_server(trained):
    prod, code, output, killed = trained
    assert code == 0, output[-5000:]
    assert killed is not None and killed[0] == "worker", f"killed {killed}:\n{output[-3000:]}"
    c = _admin(prod)
    (version,) = c.search_model_versions(f"name='{MODEL}'")
    run = c.get_run(version.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["aepipe.job"] == NAME
    # the restarted worker group continued from the checkpoint in the bucket, not from scratch
    resumed = c.get_metric_history(run.info.run_id, "resumed_from_epoch")
    assert resumed and resumed[0].value >= killed[2] >= 2, f"killed {killed}; {output[-3000:]}"
    assert [m.step for m in c.get_metric_history(run.info.run_id, "val_loss")] == list(range(21))
    assert _checkpoints(prod), "no checkpoint in s3://checkpoints"
    # artifacts went to the server's artifact store (proxied to its bucket), not to a node's disk
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    artifacts = prod.s3.keys("mlflow", "")
    assert any(k.endswith("plots/loss_curves.png") for k in artifacts)
    assert any(k.endswith("artifacts/bundle/model/model.safetensors") for k in artifacts)
    assert c.get_model_version_by_alias(MODEL, "champion").version == version.version


def test_scores_go_to_s3_and_nightly_scoring_is_incremental(trained, tmp_path):
    prod, code, output, _ = trained
    assert code == 0, output[-3000:]
    env = prod.client_env()
    data, scores = prod.s3.url("data", "mnist"), prod.s3.url("scores", "mnist")
    scored = _run(
        env,
        *("submit", "score", "--model", f"models:/{MODEL}@champion", "--input", data),
        *("--output", scores, "--partition", "dt=2026-11-30"),
    )
    assert scored.returncode == 0, _shown(scored)
    manifest = _manifest(prod, "mnist/dt=2026-11-30")
    files = {f"mnist/dt=2026-11-30/{f['path']}" for s in manifest["shards"] for f in s["files"]}
    on_s3 = {k for k in prod.s3.keys("scores", "mnist/dt=2026-11-30/") if k.endswith(".parquet") and "/_" not in k}
    assert manifest["rows"] == 600 and files == on_s3

    # a new shard arrives; the first nightly run scores only it, the second finds nothing new
    x, y = mnist_arrays()
    write_vector_shards(tmp_path / "new", np.array([f"new-{i:04d}" for i in range(50)]), x[:50], y[:50], shards=1)
    _upload(prod, tmp_path / "new" / "part-00000.parquet", "mnist/part-00009.parquet")
    nightly = ("submit", "nightly-score", "--model-name", MODEL, "--date", "2026-12-01")
    nightly += ("--input", data, "--output", scores, "--psi-limit", "100", "--ks-alpha", "1e-300")  # 50 rows: no alarm
    first = _run(env, *nightly)
    assert first.returncode == 0, _shown(first)
    night = _manifest(prod, "mnist/dt=2026-12-01")
    assert night["rows"] == 50 and night["plan"] == {"to_score": 1, "resumed": 0, "carried": 0}
    # the scheduler retrying the night: the same submission id follows the finished job, runs nothing again
    retried = _run(env, *nightly)
    assert retried.returncode == 0 and "already submitted (SUCCEEDED)" in retried.stdout, _shown(retried)
    # a person re-running the night by hand: a new job, and scoring finds nothing new
    rerun = _run(env, *nightly[:1], "--submission-id", "nightly-rerun", *nightly[1:])
    assert rerun.returncode == 0 and "no-op" in rerun.stdout, _shown(rerun)
    assert _manifest(prod, "mnist/dt=2026-12-01") == night


def test_registry_commands_against_the_server(trained):
    prod, code, output, _ = trained
    assert code == 0, output[-3000:]
    env = prod.client_env()
    listed = _run(env, "models", "list")
    assert listed.returncode == 0 and MODEL in listed.stdout, _shown(listed)
    shown = _run(env, "models", "show", MODEL)
    assert shown.returncode == 0 and "champion" in shown.stdout, _shown(shown)
    promoted = _run(env, "models", "promote", MODEL, "1", "--alias", "stable")
    assert promoted.returncode == 0, _shown(promoted)
    assert _admin(prod).get_model_version_by_alias(MODEL, "stable").version == "1"


def test_the_champion_loads_and_serves_from_a_fresh_venv_without_aepipe(trained, tmp_path, mnist_small):
    prod, code, output, _ = trained
    assert code == 0, output[-3000:]
    venv, work = fresh_venv(tmp_path), tmp_path / "work"
    work.mkdir()
    creds = {"MLFLOW_TRACKING_USERNAME": prod.mlflow.username, "MLFLOW_TRACKING_PASSWORD": prod.mlflow.password}
    env = isolated_env(venv, prod.mlflow.uri, **creds)
    x = mnist_arrays()[0][:4].astype(np.float64)
    (tmp_path / "rows.json").write_text(json.dumps(x.tolist()))
    uri = f"models:/{MODEL}@champion"
    args = [prod.mlflow.uri, uri, str(tmp_path / "rows.json"), str(tmp_path / "out.json")]
    subprocess.run([venv / "bin" / "python", "-c", LOAD_AND_PREDICT, *args], cwd=work, env=env, check=True, timeout=300)
    got = json.loads((tmp_path / "out.json").read_text())
    assert got["leaks_before_load"] == [] and got["ray_imported"] is False
    assert len(got["score"]) == 4 and all(s > 0 for s in got["score"])

    predictions = serve_and_predict(venv, uri, {**env, "TMPDIR": str(work)}, x.tolist(), tmp_path / "serve.log")
    np.testing.assert_allclose([p["score"] for p in predictions], got["score"], rtol=1e-6)
