"""``aepipe submit`` against a real Ray head node on loopback (token authentication on): a training job and
scoring jobs go through the Ray Jobs API, and their results land in the MLflow DB and the scores folder."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from pipelines import tracking
from pipelines.provenance import git_commit
from pipelines.score.publish import read_scores
from tests.support import REPO
from tests.support.services import BIN, free_port, start, stop, sweep, wait_http

#: A secret the cluster's pods hold (as a Kubernetes Secret would give them); it must never reach MLflow.
CLUSTER_SECRET = "cluster-" + secrets.token_hex(12)


@pytest.fixture(scope="module")
def ray_head():
    """``ray start --head --block`` with token auth, private ports and temp dir; yields (jobs URL, token)."""
    temp = Path(tempfile.mkdtemp(prefix="aepr-", dir="/tmp"))  # short: Ray's socket paths live under it
    token = secrets.token_hex(16)
    dash = free_port()
    ports = {
        f"--{name}-port": free_port()
        for name in (
            "ray-client-server",
            "dashboard-agent-listen",
            "dashboard-agent-grpc",
            "runtime-env-agent",
            "metrics-export",
            "node-manager",
            "object-manager",
        )
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_", "AEPIPE_"))}
    env.update(
        PATH=f"{BIN}:{os.environ['PATH']}",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=token,
        RAY_USAGE_STATS_ENABLED="0",
        MLFLOW_TRACKING_PASSWORD=CLUSTER_SECRET,
    )
    cmd = [
        str(BIN / "ray"),
        "start",
        "--head",
        "--block",
        f"--port={free_port()}",
        "--node-ip-address=127.0.0.1",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dash}",
        "--num-cpus=2",
        "--num-gpus=0",
        "--object-store-memory=400000000",
        f"--temp-dir={temp}",
        "--disable-usage-stats",
        *(f"{k}={v}" for k, v in ports.items()),
    ]
    proc = start(cmd, env, temp / "head.log")
    url = f"http://127.0.0.1:{dash}"
    try:
        wait_http(f"{url}/api/jobs/", proc, temp / "head.log", headers={"Authorization": f"Bearer {token}"})
        yield url, token
    finally:
        stop(proc)
        sweep(str(temp))
        shutil.rmtree(temp, ignore_errors=True)


def aepipe(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    """The installed ``aepipe`` as a user runs it, from the project directory."""
    return subprocess.run(
        [str(BIN / "aepipe"), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def user_env(home: Path, token: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_", "AEPIPE_"))}
    return {**env, "AEPIPE_HOME": str(home), **({"RAY_AUTH_TOKEN": token} if token else {})}


def submission_id(output: str) -> str:
    return re.search(r"submitted (\S+) to", output).group(1)


def test_jobs_api_needs_the_token(ray_head, tmp_path):
    url, token = ray_head
    missing = aepipe("jobs", "list", "--address", url, env=user_env(tmp_path, None))
    assert missing.returncode == 2, missing.stderr
    assert f"error: Ray rejected the request to {url} (HTTP 401)" in missing.stderr
    wrong_token = secrets.token_hex(16)
    wrong = aepipe("jobs", "list", "--address", url, env=user_env(tmp_path, wrong_token))
    assert wrong.returncode == 2 and "(HTTP 403)" in wrong.stderr
    assert wrong_token not in wrong.stdout + wrong.stderr and token not in wrong.stdout + wrong.stderr


def test_jobs_status_and_list_json(ray_head, tmp_path):
    """``jobs status --json`` and ``jobs list --json``: one JSON document with the documented keys."""
    from ray.job_submission import JobSubmissionClient

    from jobs.commands.ray_jobs import JOB_KEYS

    url, token = ray_head
    client = JobSubmissionClient(url, headers={"Authorization": f"Bearer {token}"})
    job_id = client.submit_job(entrypoint="exit 5")
    env = user_env(tmp_path, token)
    finished = aepipe("jobs", "logs", "--follow", job_id, "--address", url, env=env)
    assert finished.returncode == 5, finished.stdout + finished.stderr
    status = aepipe("jobs", "status", job_id, "--address", url, "--json", env=env)
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert sorted(doc) == sorted(JOB_KEYS)
    assert (doc["submission_id"], doc["status"], doc["driver_exit_code"], doc["entrypoint"]) == (
        job_id,
        "FAILED",
        5,
        "exit 5",
    )
    assert doc["start_time"] <= doc["end_time"]
    listed = aepipe("jobs", "list", "--address", url, "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    jobs = json.loads(listed.stdout)
    assert all(sorted(j) == sorted(JOB_KEYS) for j in jobs)
    assert {"submission_id": job_id, "status": "FAILED"}.items() <= next(
        j for j in jobs if j["submission_id"] == job_id
    ).items()


def test_submit_train_then_score(ray_head, mnist_small, tmp_path):
    from ray.job_submission import JobSubmissionClient

    url, token = ray_head
    home = tmp_path / "home"
    env = user_env(home, token)
    train = aepipe(
        "submit",
        "train",
        "--address",
        url,
        "--config",
        "jobs/configs/mnist_dense.yaml",
        f"data.path={mnist_small}",
        "train.epochs=1",
        "train.num_workers=2",
        "train.batch_size=64",
        "model.hidden=[32]",
        "model.latent_dim=4",
        "tracking.registered_model=ops-ray",
        env=env,
    )
    assert train.returncode == 0, train.stdout[-4000:] + train.stderr[-2000:]
    assert "model:    models:/ops-ray/1" in train.stdout and "SUCCEEDED" in train.stdout

    # the registered version is in the SQLite DB under the job's AEPIPE_HOME; no secret reached MLflow
    uri = f"sqlite:///{home / 'mlflow.db'}"
    champion = tracking.resolve_model(uri, "models:/ops-ray@champion")
    assert champion.version == "1"
    run = tracking.client(uri).get_run(champion.run_id)
    assert run.data.params["train.epochs"] == "1" and run.info.status == "FINISHED"
    assert not [k for k, v in {**run.data.params, **run.data.tags}.items() if CLUSTER_SECRET in v]
    jobs = JobSubmissionClient(url, headers={"Authorization": f"Bearer {token}"})
    info = jobs.get_job_info(submission_id(train.stdout))
    # non-secret settings only: the home and the code's commit (the uploaded working dir has no .git)
    assert info.runtime_env["env_vars"] == {"AEPIPE_HOME": str(home), "AEPIPE_GIT_COMMIT": git_commit(REPO)}
    assert run.data.tags["aepipe.git_commit"] == git_commit(REPO)
    assert info.entrypoint.startswith("python -m jobs.entrypoints.train --config jobs/configs/mnist_dense.yaml")

    # scoring, submitted without following; the forced drift alarm's exit status 3 comes back through Ray
    scores = home / "scores"
    score = aepipe(
        "submit",
        "score",
        "--no-follow",
        "--address",
        url,
        "--model",
        "models:/ops-ray@champion",
        "--input",
        str(mnist_small),
        "--output",
        str(scores),
        "--partition",
        "dt=2024-06-01",
        "--psi-limit",
        "1e-9",
        "--ks-alpha",
        "0.9999",
        env=env,
    )
    assert score.returncode == 0, score.stderr
    job_id = submission_id(score.stdout)
    followed = aepipe("jobs", "logs", "--follow", job_id, "--address", url, env=env)
    assert followed.returncode == 3, followed.stdout[-4000:] + followed.stderr[-2000:]
    assert "DRIFT ALARM" in followed.stdout and f"job {job_id} FAILED" in followed.stdout
    df = read_scores(str(scores / "dt=2024-06-01"))
    assert len(df) == 600 and df["id"].nunique() == 600 and set(df["model_version"]) == {"1"}
    status = aepipe("jobs", "status", job_id, "--address", url, env=env)
    assert status.returncode == 0 and f"{job_id}: FAILED (exit 3)" in status.stdout

    # the nightly entrypoint scores incrementally: every shard is already published for v1, so a no-op
    nightly = aepipe(
        "submit",
        "nightly-score",
        "--address",
        url,
        "--model-name",
        "ops-ray",
        "--input",
        str(mnist_small),
        "--output",
        str(scores),
        "--date",
        "2024-06-02",
        env=env,
    )
    assert nightly.returncode == 0, nightly.stdout[-4000:] + nightly.stderr[-2000:]
    assert "nightly scoring: partition dt=2024-06-02 with models:/ops-ray@champion" in nightly.stdout
    assert "no-op" in nightly.stdout and not (scores / "dt=2024-06-02").exists()
    listed = json.dumps([j.submission_id for j in jobs.list_jobs()])
    assert all(submission_id(p.stdout) in listed for p in (train, score, nightly))
