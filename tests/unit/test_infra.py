"""infra/: every manifest parses, validates against the KubeRay v1.7.0 CRD schemas or the Kubernetes API schemas,
names entrypoints, configs and CLI options that exist, keeps what infra/README.md promises, and holds no secret."""

from __future__ import annotations

import datetime as dt
import importlib.util
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import typer
import yaml
from packaging.specifiers import SpecifierSet
from typer.testing import CliRunner

from jobs.cli import app
from jobs.commands.ray_jobs import EXIT_UNREACHABLE
from jobs.commands.submit import Kind
from jobs.entrypoints import nightly_score
from pipelines.config import load_config
from pipelines.provenance import git_commit
from tests.support import REPO

INFRA = REPO / "infra"
MANIFESTS = sorted(p for p in INFRA.rglob("*") if p.suffix in (".yaml", ".yml"))
#: Kubernetes objects (every manifest but docker compose's file), as ``(file, document)``.
K8S_OBJECTS = [
    (p, d) for p in MANIFESTS if p.name != "docker-compose.yaml" for d in yaml.safe_load_all(p.read_text()) if d
]
#: The KubeRay v1.7.0 CRDs as released (vendored, Apache-2.0): their openAPIV3Schema is what the server enforces.
CRDS = REPO / "tests/support/kuberay-crds-v1.7.0"
#: The oldest Kubernetes release infra/README.md supports (podFailurePolicy is GA there).
KUBERNETES_VERSION = "1.31"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL", re.I)
#: ${VAR}, ${VAR:?message}, ${VAR:-default}, $${VAR} (compose, expanded in the container) or $(VAR) (Kubernetes).
REFERENCE = re.compile(r"^\$?\$\{[A-Za-z_]\w*(:?[-?][^}]*)?\}$|^\$\([A-Za-z_]\w*\)$")
URI_PASSWORD = re.compile(r"://[^/\s:@]+:([^@\s/]+)@")
INI_PASSWORD = re.compile(r"^\s*\w*password\s*[=:]\s*\S", re.I | re.M)
#: Keys whose value names a Secret object (KubeRay's authOptions.secretName, a volume's secretName): not a secret.
SECRET_REFERENCE_KEYS = {"secretName"}


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
            if SECRET_NAME.search(key) and key not in SECRET_REFERENCE_KEYS and not is_reference(node):
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
    # the cluster runs the Ray of the image it is built from, a version aepipe's own requirement accepts
    image = re.search(r"ARG RAY_IMAGE=rayproject/ray:([\d.]+)-", (INFRA / "docker/Dockerfile").read_text())
    assert image and cluster["spec"]["rayVersion"] == image.group(1)
    ray_pin = next(
        r
        for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
        if r.startswith("ray[")
    )
    assert SpecifierSet(ray_pin.split("]", 1)[1].split(";")[0].strip()).contains(image.group(1)), ray_pin


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
    assert ctx.args == [
        "--input=/mnt/aepipe/data/mnist",
        "--output=/mnt/aepipe/outputs/scores/mnist-dense",
        "--num-gpus=0",
    ]
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


# -- schemas: every object is one the API server (with the KubeRay v1.7.0 CRDs) accepts -------------------------
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """``{(apiVersion, kind): openAPIV3Schema}`` of every served version of the vendored KubeRay CRDs."""
    out = {}
    for path in sorted(CRDS.glob("ray.io_*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            out[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return out


def unknown_fields(schema: dict[str, Any], node: Any, where: str = "") -> list[str]:
    """Fields of ``node`` that ``schema`` does not declare: the API server drops them without a word (pruning),
    so a misspelt field would silently do nothing."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found = []
    if isinstance(node, dict) and "properties" in schema:
        for key, value in node.items():
            if key not in schema["properties"]:
                found.append(f"{where}.{key}")
            else:
                found += unknown_fields(schema["properties"][key], value, f"{where}.{key}")
    elif isinstance(node, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, value in node.items():
            found += unknown_fields(schema["additionalProperties"], value, f"{where}.{key}")
    elif isinstance(node, list) and "items" in schema:
        for i, item in enumerate(node):
            found += unknown_fields(schema["items"], item, f"{where}[{i}]")
    return found


SCHEMAS = crd_schemas()


@pytest.mark.parametrize(
    "path,doc", K8S_OBJECTS, ids=[f"{p.relative_to(INFRA).as_posix()}:{d['kind']}" for p, d in K8S_OBJECTS]
)
def test_every_object_validates_against_its_schema(path, doc):
    """KubeRay kinds against the v1.7.0 CRD schemas (and no field the server would prune); core kinds against
    the Kubernetes API schemas (strict: no unknown fields) of the oldest supported release."""
    key = (doc["apiVersion"], doc["kind"])
    if doc["apiVersion"].startswith("ray.io/"):
        assert key in SCHEMAS, f"{path}: {key} is not a KubeRay v1.7.0 kind"
        jsonschema.validate(doc, SCHEMAS[key], cls=jsonschema.Draft7Validator)
        assert unknown_fields(SCHEMAS[key], doc) == []
    else:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_schema_checks_catch_wrong_manifests():
    """The checks above can fail: a wrong type, a misspelt field and a bad enum value are each reported."""
    (cluster,) = [d for d in docs(INFRA / "kuberay/raycluster.yaml") if d["kind"] == "RayCluster"]
    schema = SCHEMAS[("ray.io/v1", "RayCluster")]
    bad_mode = {**cluster, "spec": {**cluster["spec"], "authOptions": {"mode": "password"}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad_mode, schema, cls=jsonschema.Draft7Validator)
    misspelt = {**cluster, "spec": {**cluster["spec"], "authOption": {"mode": "token"}}}
    assert unknown_fields(schema, misspelt) == [".spec.authOption"]
    (cron,) = docs(INFRA / "kuberay/cronjob-nightly-score.yaml")
    wrong = {**cron, "spec": {**cron["spec"], "schedule": 5}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, KUBERNETES_VERSION, strict=True)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate({**cron, "spec": {**cron["spec"], "backofLimit": 1}}, KUBERNETES_VERSION, True)


# -- what the manifests promise ------------------------------------------------------------------------------
def containers(doc: Any) -> list[dict[str, Any]]:
    """Every container spec in ``doc`` (anything with a name and an image)."""
    return [n for _, _, n in walk(doc) if isinstance(n, dict) and "image" in n and "name" in n]


def test_ray_token_auth_comes_from_authoptions_and_one_secret_key():
    (cluster,) = [d for d in docs(INFRA / "kuberay/raycluster.yaml") if d["kind"] == "RayCluster"]
    assert cluster["spec"]["authOptions"] == {"mode": "token", "secretName": "aepipe-ray-auth"}
    ray_env = {e["name"] for c in containers(cluster) for e in c.get("env", [])}
    assert not ray_env & {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN"}, "KubeRay sets these from authOptions"
    (config_map,) = [d for d in docs(INFRA / "kuberay/raycluster.yaml") if d["kind"] == "ConfigMap"]
    assert "RAY_AUTH_MODE" not in config_map["data"]
    refs = [
        n["secretKeyRef"]
        for _, d in K8S_OBJECTS
        for _, _, n in walk(d)
        if isinstance(n, dict) and n.get("secretKeyRef", {}).get("name") == "aepipe-ray-auth"
    ]
    assert len(refs) == 3 and all(r["key"] == "auth_token" for r in refs)  # two RayJob submitters, the CronJob
    assert "--from-literal=auth_token=" in (INFRA / "README.md").read_text()


def test_operator_chart_is_pinned_and_its_minimum_stated():
    text = (INFRA / "README.md").read_text()
    assert "kuberay/kuberay-operator --version 1.7.0" in " ".join(text.split())
    assert "KubeRay operator >= 1.6" in " ".join(text.split())
    assert "KubeRay operator >= 1.6" in (INFRA / "kuberay/raycluster.yaml").read_text().replace("\n# ", " ")
    assert CRDS.name == "kuberay-crds-v1.7.0"


def test_storage_class_is_a_marked_documented_parameter():
    (pvc,) = [d for d in docs(INFRA / "kuberay/raycluster.yaml") if d["kind"] == "PersistentVolumeClaim"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    name = pvc["spec"]["storageClassName"]
    line = next(x for x in (INFRA / "kuberay/raycluster.yaml").read_text().splitlines() if "storageClassName" in x)
    assert "# PARAMETER" in line
    assert f"storageClassName: {name}" in (INFRA / "README.md").read_text()


def test_gpu_group_scales_from_zero_for_jobs_that_ask_for_gpus():
    (cluster,) = [d for d in docs(INFRA / "kuberay/raycluster.yaml") if d["kind"] == "RayCluster"]
    assert cluster["spec"]["enableInTreeAutoscaling"] is True
    (gpu,) = [g for g in cluster["spec"]["workerGroupSpecs"] if g["groupName"] == "gpu"]
    assert gpu["minReplicas"] == 0 and gpu["replicas"] == 0 and gpu["maxReplicas"] >= 1
    assert int(gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    # use_gpu is explicit in both training jobs: unset, it would follow whether a GPU node is already up
    for name, use_gpu in (("rayjob-train.yaml", False), ("rayjob-train-gpu.yaml", True)):
        (job,) = docs(INFRA / "kuberay" / name)
        assert job["spec"]["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
        argv = shlex.split(job["spec"]["entrypoint"])
        assert argv[:4] == ["python", "-m", "jobs.entrypoints.train", "--config"]
        cfg = load_config(str(REPO / argv[4]), argv[5:], home="/mnt/aepipe")
        assert cfg.train.use_gpu is use_gpu, name
        if use_gpu:  # each Ray Train worker then fits one gpu pod
            assert cfg.train.cpus_per_worker <= int(
                gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"]
            )
            assert cfg.train.num_workers <= gpu["maxReplicas"]


def test_nightly_job_fails_fast_on_user_errors_and_drift_and_retries_a_crash_once():
    (cron,) = docs(INFRA / "kuberay/cronjob-nightly-score.yaml")
    job = cron["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 1 and job["template"]["spec"]["restartPolicy"] == "Never"
    (container,) = job["template"]["spec"]["containers"]
    fail_fast = [r for r in job["podFailurePolicy"]["rules"] if r["action"] == "FailJob"]
    assert [r["onExitCodes"] for r in fail_fast] == [
        {"containerName": container["name"], "operator": "In", "values": [2, 3]}
    ]
    assert EXIT_UNREACHABLE not in (0, 1, 2, 3)  # retried, not failed at once, and not mistaken for drift
    table = (INFRA / "README.md").read_text()
    assert all(re.search(rf"^\| {code} \|", table, re.M) for code in (0, 2, 3, EXIT_UNREACHABLE))


def test_nightly_submission_id_is_one_per_model_and_night():
    (cron,) = docs(INFRA / "kuberay/cronjob-nightly-score.yaml")
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    args = [f"--working-dir={REPO}" if a == "--working-dir=/app" else a for a in container["args"]]
    env = {"AEPIPE_HOME": "/mnt/aepipe", "MLFLOW_TRACKING_URI": None, "MLFLOW_REGISTRY_URI": None}

    def submission(*extra: str) -> str:
        result = CliRunner().invoke(app, ["submit", "nightly-score", "--dry-run", *args, *extra], env=env)
        assert result.exit_code == 0, result.output
        return yaml.safe_load(result.output)["submission_id"]

    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    assert submission() == submission() == f"aepipe-nightly-mnist-dense-{yesterday}"
    assert submission("--date=2024-06-01") == "aepipe-nightly-mnist-dense-2024-06-01"
    assert submission("--submission-id=by-hand") == "by-hand"
