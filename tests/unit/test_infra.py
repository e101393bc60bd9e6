"""infra/: every manifest parses, names entrypoints, configs and CLI options that exist, and holds no secret."""

from __future__ import annotations

import importlib.util
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from jobs.cli import app
from jobs.commands.submit import Kind
from jobs.entrypoints import nightly_score
from pipelines.config import load_config
from pipelines.provenance import git_commit
from tests.support import REPO

INFRA = REPO / "infra"
MANIFESTS = sorted(p for p in INFRA.rglob("*") if p.suffix in (".yaml", ".yml"))
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL", re.I)
#: ${VAR}, ${VAR:?message}, ${VAR:-default}, $${VAR} (compose, expanded in the container) or $(VAR) (Kubernetes).
REFERENCE = re.compile(r"^\$?\$\{[A-Za-z_]\w*(:?[-?][^}]*)?\}$|^\$\([A-Za-z_]\w*\)$")
URI_PASSWORD = re.compile(r"://[^/\s:@]+:([^@\s/]+)@")
INI_PASSWORD = re.compile(r"^\s*\w*password\s*[=:]\s*\S", re.I | re.M)


def docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def walk(node: Any, where: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(path, parent mapping or None, node) for every node."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield f"{where}.{k}", node, v
            yield from walk(v, f"{where}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield f"{where}[{i}]", None, v
            yield from walk(v, f"{where}[{i}]")


def is_reference(value: Any) -> bool:
    return value is None or str(value).strip() == "" or bool(REFERENCE.match(str(value).strip()))


def plain_secrets(doc: Any) -> list[str]:
    """Where ``doc`` holds a literal secret: a secret-named env var or key with a value that is not a reference,
    a password inside a URI or an INI text, or a Kubernetes Secret object."""
    found = []
    if isinstance(doc, dict) and doc.get("kind") == "Secret":
        found.append("a Secret object (create Secrets with kubectl, never commit them)")
    for where, parent, node in walk(doc):
        is_env_entry = isinstance(node, dict) and "name" in node and "value" in node  # a Kubernetes env entry
        if is_env_entry and SECRET_NAME.search(str(node["name"])) and not is_reference(node["value"]):
            found.append(f"{where}: env {node['name']} has a literal value")
        if parent is not None and not isinstance(node, (dict, list)):
            key = where.rsplit(".", 1)[-1]
            if SECRET_NAME.search(key) and not is_reference(node):
                found.append(f"{where}: literal value")
        if isinstance(node, str):
            for m in URI_PASSWORD.finditer(node):
                if not m.group(1).startswith("$"):
                    found.append(f"{where}: password inside a URI")
            if INI_PASSWORD.search(node):
                found.append(f"{where}: password in a config text")
    return found


def command_lines(doc: Any) -> list[str]:
    """Every command the manifest runs: RayJob entrypoints and each container's command + args."""
    out = []
    for _, _, node in walk(doc):
        if isinstance(node, dict) and isinstance(node.get("entrypoint"), str):
            out.append(node["entrypoint"])
        if isinstance(node, dict) and "image" in node and isinstance(node.get("command"), list):
            out.append(shlex.join([*node["command"], *node.get("args", [])]))
    return out


def all_commands() -> list[str]:
    return [c for p in MANIFESTS for d in docs(p) for c in command_lines(d)]


def test_manifests_exist_and_parse():
    names = {p.relative_to(INFRA).as_posix() for p in MANIFESTS}
    assert {
        "kuberay/raycluster.yaml",
        "kuberay/rayjob-train.yaml",
        "kuberay/cronjob-nightly-score.yaml",
        "mlflow/docker-compose.yaml",
        "mlflow/k8s/mlflow.yaml",
        "mlflow/k8s/postgres.yaml",
        "mlflow/k8s/minio.yaml",
    } <= names
    for path in MANIFESTS:
        parsed = docs(path)
        assert parsed, f"{path}: empty"
        for d in parsed:
            if path.name != "docker-compose.yaml":
                assert {"apiVersion", "kind", "metadata"} <= set(d), f"{path}: not a Kubernetes object"
                assert d["metadata"].get("name"), f"{path}: {d['kind']} without a name"


def test_raycluster_has_cpu_and_gpu_worker_groups():
    (cluster,) = [d for d in docs(INFRA / "kuberay/raycluster.yaml") if d["kind"] == "RayCluster"]
    groups = {g["groupName"]: g for g in cluster["spec"]["workerGroupSpecs"]}
    limits = {n: g["template"]["spec"]["containers"][0]["resources"]["limits"] for n, g in groups.items()}
    assert "nvidia.com/gpu" not in limits["cpu"] and int(limits["gpu"]["nvidia.com/gpu"]) >= 1
    assert cluster["spec"]["rayVersion"] == "2.60.0"


def test_entrypoints_and_configs_exist():
    commands = all_commands()
    modules = {m for c in commands for m in re.findall(r"python -m ([\w.]+)", c)}
    text = "\n".join([*commands, (INFRA / "README.md").read_text()])
    modules |= set(re.findall(r"python -m (jobs\.[\w.]+)", text))
    assert {"jobs.entrypoints.train"} <= modules
    for module in modules:
        assert module.startswith("jobs.entrypoints.") and importlib.util.find_spec(module), module
    kinds = set(re.findall(r"aepipe submit ([\w-]+)", text))
    assert "nightly-score" in kinds and kinds <= {k.value for k in Kind}
    configs = set(re.findall(r"jobs/configs/[\w.-]+\.ya?ml", text))
    assert configs and all((REPO / c).is_file() for c in configs), configs


def test_rayjob_entrypoint_is_a_valid_training_command():
    (job,) = docs(INFRA / "kuberay/rayjob-train.yaml")
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:4] == ["python", "-m", "jobs.entrypoints.train", "--config"]
    cfg = load_config(str(REPO / argv[4]), argv[5:], home="/mnt/aepipe")  # unknown keys would raise
    assert cfg.train.num_workers == 4 and cfg.tracking.auto_promote


def test_nightly_cronjob_submits_a_valid_nightly_score(tmp_path):
    (cron,) = docs(INFRA / "kuberay/cronjob-nightly-score.yaml")
    assert len(cron["spec"]["schedule"].split()) == 5
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["aepipe", "submit", "nightly-score"]
    assert "--working-dir=/app" in container["args"] and "WORKDIR /app" in (INFRA / "docker/Dockerfile").read_text()
    args = [f"--working-dir={REPO}" if a == "--working-dir=/app" else a for a in container["args"]]  # /app here
    result = CliRunner().invoke(
        app,
        ["submit", "nightly-score", "--dry-run", *args],
        env={"AEPIPE_HOME": "/mnt/aepipe", "MLFLOW_TRACKING_URI": None, "MLFLOW_REGISTRY_URI": None},
    )
    assert result.exit_code == 0, result.output
    spec = yaml.safe_load(result.output)
    argv = shlex.split(spec["entrypoint"])
    assert argv[:3] == ["python", "-m", "jobs.entrypoints.nightly_score"]
    ctx = typer.main.get_command(nightly_score.app).make_context("nightly", argv[3:])
    assert ctx.params["model_name"] == "mnist-dense"
    assert ctx.args == ["--input=/mnt/aepipe/data/mnist", "--output=/mnt/aepipe/outputs/scores/mnist-dense"]
    # in the image /app has no .git: the commit comes from the image's AEPIPE_GIT_COMMIT (here, from git)
    assert spec["runtime_env"]["env_vars"] == {"AEPIPE_HOME": "/mnt/aepipe", "AEPIPE_GIT_COMMIT": git_commit(REPO)}
    dockerfile = (INFRA / "docker/Dockerfile").read_text()
    assert "ARG AEPIPE_GIT_COMMIT" in dockerfile and "ENV AEPIPE_GIT_COMMIT=${AEPIPE_GIT_COMMIT}" in dockerfile


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_no_secret_in_plain_text(path):
    assert [f for d in docs(path) for f in plain_secrets(d)] == []


def test_no_secret_in_config_files():
    ini = (INFRA / "mlflow/basic_auth.ini").read_text()
    assert not INI_PASSWORD.search(ini)
    env = [
        line.split("=", 1)
        for line in (INFRA / "mlflow/.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert env and all(value == "" for _, value in env), env
    assert ".env" in (INFRA / "mlflow/.gitignore").read_text().split()


def test_the_secret_detector_catches_planted_secrets():
    """The check above can fail: literal values in each form it looks for are reported."""
    planted = {
        "kind": "Deployment",
        "env": [
            {"name": "MLFLOW_TRACKING_PASSWORD", "value": "hunter2"},
            {"name": "MLFLOW_TRACKING_USERNAME", "value": "admin"},
            {"name": "RAY_AUTH_TOKEN", "value": "$(RAY_AUTH_TOKEN)"},
        ],
        "environment": {"AWS_SECRET_ACCESS_KEY": "abc123", "POSTGRES_PASSWORD": "${POSTGRES_PASSWORD:?set it}"},
        "args": [
            "--backend-store-uri=postgresql://mlflow:hunter2@db/mlflow",
            "--backend-store-uri=postgresql://mlflow:$(POSTGRES_PASSWORD)@db/mlflow",
        ],
        "data": {"basic_auth.ini": "[mlflow]\nadmin_password = hunter2\n"},
    }
    found = plain_secrets(planted)
    assert len(found) == 4, found  # the password env, the S3 key, the URI, the INI line
    assert sum("MLFLOW_TRACKING_PASSWORD" in f for f in found) == 1 and not any("USERNAME" in f for f in found)
    assert plain_secrets({"kind": "Secret", "stringData": {}}) != []
