"""The production-shaped environment is what it claims: MLflow keeps runs in PostgreSQL and artifacts in S3 and
refuses anonymous requests; the Ray cluster has two nodes, refuses requests without the token, and a job's tasks
on either node see the object store and no shared AEPIPE_HOME."""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support import REPO
from tests.support.production import ProductionEnv
from tests.support.services import BIN

PROBE = """\
import json, os, sys
import pyarrow.fs as pafs
import ray

prefix, worker_resource = sys.argv[1:]
ray.init()


def probe(prefix):
    node = ray.get_runtime_context().get_node_id()
    fs, path = pafs.FileSystem.from_uri(f"{prefix}/{node}")
    with fs.open_output_stream(path) as out:
        out.write(b"ok")
    env = {k: os.environ.get(k) for k in ("AEPIPE_HOME", "MLFLOW_TRACKING_USERNAME")}
    return {"node": node, "cwd": os.getcwd(), **env}


on_worker = ray.remote(num_cpus=0.1, resources={worker_resource: 0.01})(probe)
print("PROBE " + json.dumps({"driver": probe(prefix), "worker": ray.get(on_worker.remote(prefix))}))
"""


def http_status(url: str, headers: dict[str, str] | None = None, data: bytes | None = None) -> int:
    req = urllib.request.Request(url, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_mlflow_runs_in_postgres_and_artifacts_in_s3(production_env: ProductionEnv, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    mlflow = production_env.mlflow
    for k, v in mlflow.env().items():
        monkeypatch.setenv(k, v)
    client = MlflowClient(tracking_uri=mlflow.uri)
    experiment_id = client.create_experiment("env-smoke")
    run = client.create_run(experiment_id)
    (tmp_path / "hello.txt").write_text("hello")
    client.log_artifact(run.info.run_id, str(tmp_path / "hello.txt"))
    client.set_terminated(run.info.run_id)

    # the run is a row of MLflow's tables in PostgreSQL
    with contextlib.closing(production_env.postgres.connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT experiment_id, status FROM runs WHERE run_uuid = %s", (run.info.run_id,))
        assert cur.fetchall() == [(int(experiment_id), "FINISHED")]

    # the artifact went through the server's proxy into the bucket
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    keys = production_env.s3.keys("mlflow")
    assert [k for k in keys if run.info.run_id in k and k.endswith("/hello.txt")], keys

    # no credentials, or a wrong password: 401; the jobs user's or the admin's: 200
    search = f"{mlflow.uri}/api/2.0/mlflow/experiments/search?max_results=1"
    assert http_status(search) == 401
    assert http_status(search, basic(mlflow.username, "not-" + mlflow.password)) == 401
    assert http_status(search, basic(mlflow.username, mlflow.password)) == 200
    assert http_status(search, basic(mlflow.admin_username, mlflow.admin_password)) == 200


def test_ray_cluster_has_two_nodes_and_needs_the_token(production_env: ProductionEnv, tmp_path, monkeypatch):
    ray = production_env.ray
    nodes = ray.alive_nodes()
    assert len(nodes) == 2
    head = next(n for n in nodes if n["is_head_node"])
    worker = next(n for n in nodes if not n["is_head_node"])
    assert ray.worker_resource in worker["resources_total"] and ray.worker_resource not in head["resources_total"]

    # without the token (or with a wrong one) the Jobs API refuses to list or submit
    for k in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        monkeypatch.delenv(k, raising=False)
    jobs = f"{ray.dashboard_url}/api/jobs/"
    assert http_status(jobs) == 401
    assert http_status(jobs, {"Authorization": "Bearer not-the-token"}) == 403
    submit = json.dumps({"entrypoint": "echo refused"}).encode()
    assert http_status(jobs, {"Content-Type": "application/json"}, submit) == 401

    # with it, a job runs on the head node and pins a task to the worker node; both reach S3
    client = ray.jobs_client()
    assert not [j for j in client.list_jobs() if j.entrypoint == "echo refused"]
    (tmp_path / "probe.py").write_text(PROBE)
    prefix = production_env.s3.url("scores", "env-smoke")
    job_id = client.submit_job(
        entrypoint=f"python probe.py {prefix} {ray.worker_resource}", runtime_env={"working_dir": str(tmp_path)}
    )
    deadline = time.monotonic() + 300
    while (status := client.get_job_status(job_id)) not in ("SUCCEEDED", "FAILED", "STOPPED"):
        assert time.monotonic() < deadline, client.get_job_logs(job_id)
        time.sleep(1)
    logs = client.get_job_logs(job_id)
    assert status == "SUCCEEDED", logs
    probe = json.loads(next(line for line in logs.splitlines() if line.startswith("PROBE "))[6:])
    assert probe["driver"]["node"] == head["node_id"] and probe["worker"]["node"] == worker["node_id"]
    # each node unpacked the job's working dir under its own temp dir; no AEPIPE_HOME is shared between jobs;
    # the nodes log in to MLflow as the jobs user
    assert Path(probe["driver"]["cwd"]).is_relative_to(production_env.root / "rh")
    assert Path(probe["worker"]["cwd"]).is_relative_to(production_env.root / "rw")
    for side in ("driver", "worker"):
        assert probe[side]["AEPIPE_HOME"] is None
        assert probe[side]["MLFLOW_TRACKING_USERNAME"] == production_env.mlflow.username != "admin"
    assert sorted(production_env.s3.keys("scores", "env-smoke/")) == sorted(
        f"env-smoke/{n['node_id']}" for n in (head, worker)
    )


def test_client_env_points_aepipe_at_the_environment(production_env: ProductionEnv, tmp_path):
    env = production_env.client_env(home=tmp_path / "home")
    for args in (["runs", "list", "--experiment", "Default"], ["jobs", "list"]):
        done = subprocess.run([str(BIN / "aepipe"), *args], cwd=REPO, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    assert not (tmp_path / "home").exists()  # the server, not a SQLite file under AEPIPE_HOME, answered
