"""The only module that talks to MLflow: runs, metrics, artifacts, the model registry.

Nothing happens at import time; every function takes the tracking URI it should use.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

PYFUNC_CODE = str(Path(__file__).with_name("pyfunc.py"))
#: What the pyfunc imports from this repository, relative to the directory holding ``aecore/`` and
#: ``pipelines/``: shipped with every logged model (MLflow ``code_paths``) with the package layout kept, so
#: ``pyfunc.py``'s ``from pipelines.bundle import ...`` works where aepipe is not installed.
PYFUNC_CODE_PATHS = ("aecore", "pipelines/__init__.py", "pipelines/bundle.py")
#: The distributions the shipped code imports (MLflow adds its own ``mlflow==`` pin).
PYFUNC_PACKAGES = ("torch", "safetensors", "numpy", "pandas", "pydantic")
_SOURCE_ROOT = Path(__file__).resolve().parents[2]
BUNDLE_ARTIFACT = "bundle"
MODEL_ARTIFACT = "model"


class RegistryError(LookupError):
    """A model URI, name, version or alias that the registry cannot resolve."""


@dataclass(frozen=True)
class ResolvedModel:
    """A registered model version pinned at resolution time."""

    name: str
    version: str
    run_id: str | None
    source: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def client(tracking_uri: str, registry_uri: str | None = None) -> MlflowClient:
    """A client bound to explicit URIs (never to process-global state)."""
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri or tracking_uri)


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"train": {"lr": 1}} -> {"train.lr": "1"}`` for MLflow params."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value)
    return out


def embedded_store(tracking_uri: str) -> bool:
    """False for an MLflow server (``http(s)://``, Databricks), which decides where artifacts live (its default
    artifact root or its artifact proxy); True for a store this process writes itself (``sqlite:``, a path)."""
    scheme = tracking_uri.split(":", 1)[0].lower() if ":" in tracking_uri else tracking_uri.lower()
    return scheme not in ("http", "https") and not scheme.startswith("databricks")


def ensure_experiment(c: MlflowClient, name: str, artifact_root: str | None) -> str:
    """Experiment id for ``name``, creating it when missing: with ``artifact_root`` as its artifact location
    for an embedded store, with the server's default location otherwise."""
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if artifact_root and embedded_store(c.tracking_uri):
        location = artifact_root if "://" in artifact_root else Path(artifact_root).resolve().as_uri()
    try:
        return c.create_experiment(name, artifact_location=location)
    except MlflowException:  # created concurrently
        created = c.get_experiment_by_name(name)
        if created is None:
            raise
        return str(created.experiment_id)


def start_run(
    tracking_uri: str,
    experiment: str,
    run_name: str,
    params: dict[str, Any],
    tags: dict[str, str],
    artifact_root: str | None = None,
) -> str:
    """Create a run with flattened params and tags; returns its id."""
    c = client(tracking_uri)
    exp_id = ensure_experiment(c, experiment, artifact_root)
    run = c.create_run(exp_id, run_name=run_name, tags=tags)
    items = [Param(k, v[:6000]) for k, v in flatten(params).items()]
    for i in range(0, len(items), 100):
        c.log_batch(run.info.run_id, params=items[i : i + 100])
    return run.info.run_id


def find_run(tracking_uri: str, experiment: str, tag_key: str, tag_value: str) -> str | None:
    """Id of the newest run in ``experiment`` whose tag ``tag_key`` equals ``tag_value``."""
    c = client(tracking_uri)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = c.search_runs(
        [exp.experiment_id], f"tags.`{tag_key}` = '{tag_value}'", max_results=1, order_by=["attributes.start_time DESC"]
    )
    return runs[0].info.run_id if runs else None


@dataclass(frozen=True)
class RunRecord:
    """What a resume decision reads of an earlier run."""

    run_id: str
    status: str
    tags: dict[str, str]
    params: dict[str, str]


def unfinished_runs(
    tracking_uri: str, experiment: str, tag_key: str, tag_value: str, limit: int = 20
) -> list[RunRecord]:
    """The newest ``limit`` runs in ``experiment`` whose tag ``tag_key`` equals ``tag_value`` and whose status is
    not FINISHED (RUNNING, FAILED or KILLED), newest first."""
    c = client(tracking_uri)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        return []
    runs = c.search_runs(
        [exp.experiment_id],
        f"tags.`{tag_key}` = '{tag_value}' and attributes.status != 'FINISHED'",
        max_results=limit,
        order_by=["attributes.start_time DESC"],
    )
    return [RunRecord(r.info.run_id, r.info.status, dict(r.data.tags), dict(r.data.params)) for r in runs]


def log_metrics(tracking_uri: str, run_id: str, metrics: dict[str, float], step: int) -> None:
    """Log a dict of scalar metrics at ``step``."""
    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
    client(tracking_uri).log_batch(run_id, metrics=batch)


def metric_history(tracking_uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    """``[(step, value), ...]`` of one metric, ordered by step."""
    hist = client(tracking_uri).get_metric_history(run_id, key)
    return sorted((m.step, m.value) for m in hist)


def log_metrics_once(
    tracking_uri: str, run_id: str, metrics: dict[str, float], step: int, key: str = "val_loss"
) -> bool:
    """Log ``metrics`` at ``step`` unless ``key`` already has a value there (a re-run epoch after a restart
    keeps its first record, so each step appears once in the history). Returns whether it logged."""
    return bool(log_steps_once(tracking_uri, run_id, [(step, metrics)], key))


#: MLflow's limit of metrics in one ``log_batch`` call.
_BATCH_METRICS = 1000


def log_steps_once(
    tracking_uri: str, run_id: str, steps: list[tuple[int, dict[str, float]]], key: str = "val_loss"
) -> list[int]:
    """Log each ``(step, metrics)`` whose step ``key`` has no value at yet, in as few ``log_batch`` calls as MLflow
    allows (one history read, then one call per 1,000 values). Returns the steps logged."""
    c = client(tracking_uri)
    seen = {m.step for m in c.get_metric_history(run_id, key)}
    now = int(time.time() * 1000)
    fresh = [(step, metrics) for step, metrics in steps if step not in seen]
    batch = [Metric(k, float(v), now, step) for step, metrics in fresh for k, v in metrics.items()]
    for i in range(0, len(batch), _BATCH_METRICS):
        c.log_batch(run_id, metrics=batch[i : i + _BATCH_METRICS])
    return [step for step, _ in fresh]


def metric_histories(
    tracking_uri: str, run_id: str, prefixes: tuple[str, ...] = ("train_", "val_")
) -> dict[str, list[tuple[int, float]]]:
    """Histories of every metric of the run whose name starts with one of ``prefixes``."""
    keys = [k for k in client(tracking_uri).get_run(run_id).data.metrics if k.startswith(prefixes)]
    return {k: metric_history(tracking_uri, run_id, k) for k in sorted(keys)}


def run_status(tracking_uri: str, run_id: str) -> str:
    """``RUNNING``, ``FINISHED``, ``FAILED`` or ``KILLED``."""
    return client(tracking_uri).get_run(run_id).info.status


def reopen_run(tracking_uri: str, run_id: str) -> None:
    """Mark a continued run as running again (a restarted driver resumes it)."""
    client(tracking_uri).update_run(run_id, status="RUNNING")


def log_artifacts(tracking_uri: str, run_id: str, local_dir: str | Path, artifact_path: str | None = None) -> None:
    client(tracking_uri).log_artifacts(run_id, str(local_dir), artifact_path)


def log_artifact(tracking_uri: str, run_id: str, local_file: str, artifact_path: str | None = None) -> None:
    client(tracking_uri).log_artifact(run_id, local_file, artifact_path)


def where_to_look(tracking_uri: str, run_id: str) -> str:
    """How a person opens the run: its page on an MLflow server, else the ``mlflow ui`` command for the store."""
    if not embedded_store(tracking_uri):
        experiment = client(tracking_uri).get_run(run_id).info.experiment_id
        return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}"
    return f"mlflow ui --backend-store-uri {tracking_uri}  (then run {run_id})"


def set_tags(tracking_uri: str, run_id: str, tags: dict[str, str]) -> None:
    c = client(tracking_uri)
    for k, v in tags.items():
        c.set_tag(run_id, k, v)


def end_run(tracking_uri: str, run_id: str, status: str = "FINISHED") -> None:
    client(tracking_uri).set_terminated(run_id, status)


def pyfunc_requirements() -> list[str]:
    """``name>=MAJOR.MINOR,<MAJOR+1`` for each of :data:`PYFUNC_PACKAGES`, from the installed versions: the
    model loads with the release line it was trained with or a newer compatible one (no local tags such as
    ``+cpu``, so a GPU host installs its own torch build)."""
    reqs = []
    for name in PYFUNC_PACKAGES:
        major, minor = (int(part) for part in installed_version(name).split("+")[0].split(".")[:2])
        reqs.append(f"{name}>={major}.{minor},<{major + 1}")
    return reqs


def stage_pyfunc_code(dst: str | Path) -> list[str]:
    """Copy :data:`PYFUNC_CODE_PATHS` under ``dst`` with their package layout; returns the top-level folders,
    the ``code_paths`` to log (MLflow copies each under the model's ``code/`` and puts that on ``sys.path``)."""
    root = Path(dst)
    for rel in PYFUNC_CODE_PATHS:
        src, target = _SOURCE_ROOT / rel, root / rel
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return sorted(str(root / top) for top in {rel.split("/")[0] for rel in PYFUNC_CODE_PATHS})


def log_model(
    tracking_uri: str,
    run_id: str,
    bundle_dir: str | Path,
    input_example: Any,
    registered_model: str | None,
    registry_uri: str | None = None,
) -> str | None:
    """Log the bundle as an MLflow pyfunc model (models-from-code: no pickled object) and register it.

    The model carries the code it imports (:func:`stage_pyfunc_code`) and pins real packages
    (:func:`pyfunc_requirements`), so ``mlflow.pyfunc.load_model`` works where aepipe is not installed.
    ``bundle_dir`` must be named ``bundle`` (MLflow stores a directory artifact under its base name).

    Returns the new registered version, or None when ``registered_model`` is None.
    """
    from mlflow.models import infer_signature

    from pipelines.bundle import ModelBundle, predict_frame

    if Path(bundle_dir).name != BUNDLE_ARTIFACT:
        raise ValueError(f"bundle directory must be named {BUNDLE_ARTIFACT!r}: {bundle_dir}")
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri or tracking_uri)
    signature = infer_signature(input_example, predict_frame(ModelBundle.load(bundle_dir), input_example))
    with tempfile.TemporaryDirectory(prefix="aepipe-code-") as code, mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=PYFUNC_CODE,
            artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
            code_paths=stage_pyfunc_code(code),
            signature=signature,
            input_example=input_example,
            registered_model_name=registered_model,
            pip_requirements=pyfunc_requirements(),
        )
    return None if info.registered_model_version is None else str(info.registered_model_version)


def aliases(tracking_uri: str, name: str, registry_uri: str | None = None) -> dict[str, str]:
    """``{alias: version}`` of a registered model (empty when the model does not exist)."""
    try:
        return dict(client(tracking_uri, registry_uri).get_registered_model(name).aliases)
    except MlflowException:
        return {}


def set_alias(tracking_uri: str, name: str, alias: str, version: str, registry_uri: str | None = None) -> None:
    client(tracking_uri, registry_uri).set_registered_model_alias(name, alias, str(version))


def model_tags(tracking_uri: str, name: str, registry_uri: str | None = None) -> dict[str, str]:
    """The tags of registered model ``name`` (not of a version)."""
    return dict(client(tracking_uri, registry_uri).get_registered_model(name).tags)


def set_model_tag(tracking_uri: str, name: str, key: str, value: str, registry_uri: str | None = None) -> None:
    client(tracking_uri, registry_uri).set_registered_model_tag(name, key, value)


def delete_model_tag(tracking_uri: str, name: str, key: str, registry_uri: str | None = None) -> None:
    client(tracking_uri, registry_uri).delete_registered_model_tag(name, key)


def tag_version(
    tracking_uri: str, name: str, version: str, tags: dict[str, Any], registry_uri: str | None = None
) -> None:
    c = client(tracking_uri, registry_uri)
    for k, v in tags.items():
        c.set_model_version_tag(name, str(version), k, str(v))


def resolve_model(tracking_uri: str, uri: str, registry_uri: str | None = None) -> ResolvedModel:
    """Pin ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``models:/NAME`` (latest) to one version."""
    if not uri.startswith("models:/"):
        raise RegistryError(f"model URI {uri!r} must look like models:/NAME@ALIAS or models:/NAME/VERSION")
    rest = uri[len("models:/") :]
    c = client(tracking_uri, registry_uri)
    try:
        if "@" in rest:
            name, alias = rest.split("@", 1)
            mv = c.get_model_version_by_alias(name, alias)
        elif "/" in rest:
            name, version = rest.split("/", 1)
            mv = c.get_model_version(name, version)
        else:
            versions = c.search_model_versions(f"name = '{rest}'")
            if not versions:
                raise RegistryError(f"registered model {rest!r} has no versions")
            mv = max(versions, key=lambda v: int(v.version))
    except MlflowException as exc:
        raise RegistryError(f"cannot resolve {uri}: {exc.message}") from None
    return ResolvedModel(mv.name, str(mv.version), mv.run_id, mv.source or "")


def download_bundle(
    tracking_uri: str, model: ResolvedModel, dst: str | Path | None = None, registry_uri: str | None = None
) -> Path:
    """Download a registered version's bundle directory; returns its local path."""
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(registry_uri or tracking_uri)
    target = Path(dst or tempfile.mkdtemp(prefix="aepipe-model-"))
    local = mlflow.artifacts.download_artifacts(artifact_uri=model.uri, dst_path=str(target))
    bundle = Path(local) / "artifacts" / BUNDLE_ARTIFACT
    if not bundle.is_dir():
        raise RegistryError(f"{model.uri} has no aepipe bundle (is it an aepipe model?)")
    return bundle


def registered_models(tracking_uri: str, registry_uri: str | None = None) -> list[dict[str, Any]]:
    """Every registered model with its versions and aliases."""
    c = client(tracking_uri, registry_uri)
    out = []
    for rm in c.search_registered_models():
        versions = c.search_model_versions(f"name = '{rm.name}'")
        out.append(
            {
                "name": rm.name,
                "aliases": dict(rm.aliases),
                "versions": sorted(int(v.version) for v in versions),
                "latest_run": max(versions, key=lambda v: int(v.version)).run_id if versions else None,
            }
        )
    return out


# -- scoring (issue 6) ------------------------------------------------------------------------------
def resolve_model_uri(tracking_uri: str, uri: str, registry_uri: str | None = None) -> ResolvedModel:
    """Like :func:`resolve_model`, and also ``runs:/RUN_ID/model``: the registered version logged by that run."""
    if not uri.startswith("runs:/"):
        return resolve_model(tracking_uri, uri, registry_uri)
    run_id = uri[len("runs:/") :].split("/", 1)[0]
    try:
        versions = client(tracking_uri, registry_uri).search_model_versions(f"run_id = '{run_id}'")
    except MlflowException as exc:
        raise RegistryError(f"cannot resolve {uri}: {exc.message}") from None
    if not versions:
        raise RegistryError(f"cannot resolve {uri}: run {run_id} has no registered model version")
    mv = max(versions, key=lambda v: int(v.version))
    return ResolvedModel(mv.name, str(mv.version), mv.run_id, mv.source or "")


# -- operations: registry queries, run listings, auth failures (issue 7) ------------------------------
def model_versions(tracking_uri: str, name: str, registry_uri: str | None = None) -> list[dict[str, Any]]:
    """Every version of ``name``, newest first: version, aliases, status, source run, source, created (ms),
    tags and the source run's latest metrics. :class:`RegistryError` when the model does not exist."""
    c = client(tracking_uri, registry_uri)
    try:
        model = c.get_registered_model(name)
    except MlflowException as exc:
        if exc.get_http_status_code() != 404:
            raise
        raise RegistryError(f"no registered model named {name!r}") from None
    by_version: dict[str, list[str]] = {}
    for alias, version in model.aliases.items():
        by_version.setdefault(str(version), []).append(alias)
    out = []
    for mv in sorted(c.search_model_versions(f"name = '{name}'"), key=lambda v: -int(v.version)):
        metrics = c.get_run(mv.run_id).data.metrics if mv.run_id else {}
        out.append(
            {
                "version": str(mv.version),
                "aliases": sorted(by_version.get(str(mv.version), [])),
                "status": mv.status,
                "run_id": mv.run_id,
                "source": mv.source,
                "created": mv.creation_timestamp,
                "tags": dict(mv.tags),
                "metrics": dict(metrics),
            }
        )
    return out


def recent_runs(tracking_uri: str, experiment: str, limit: int = 20) -> list[dict[str, Any]]:
    """The newest ``limit`` runs of ``experiment``: id, name, status, start (ms), latest metrics.
    :class:`RegistryError` when the experiment does not exist."""
    c = client(tracking_uri)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        raise RegistryError(f"no MLflow experiment named {experiment!r} at {tracking_uri}")
    runs = c.search_runs([exp.experiment_id], max_results=limit, order_by=["attributes.start_time DESC"])
    return [
        {
            "run_id": r.info.run_id,
            "name": r.info.run_name,
            "status": r.info.status,
            "start": r.info.start_time,
            "metrics": dict(r.data.metrics),
            "params": dict(r.data.params),
        }
        for r in runs
    ]


def auth_failure_status(exc: BaseException) -> int | None:
    """401 or 403 when ``exc`` (or an exception in its chain) is an MLflow server refusing the credentials."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        exc = link
        seen.add(id(exc))
        status = (
            exc.get_http_status_code()
            if isinstance(exc, MlflowException)
            else getattr(getattr(exc, "response", None), "status_code", None)
        )
        if status in (401, 403):
            return int(status)
        link = exc.__cause__ or exc.__context__
    return None
