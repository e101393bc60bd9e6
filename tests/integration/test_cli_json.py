"""``--json`` on the registry commands against a real SQLite MLflow store: one JSON document, documented keys."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from aecore import build_model
from jobs.cli import app
from pipelines import tracking
from pipelines.bundle import ModelBundle, Normalizer, calibrate

runner = CliRunner()
MODEL, EXPERIMENT = "json-registry", "json"


def register(uri: str, root, val_loss: float) -> str:
    """One finished run with metrics and a tiny real model bundle, registered as a new version of MODEL."""
    run_id = tracking.start_run(uri, EXPERIMENT, f"val-{val_loss}", {}, tags={}, artifact_root=str(root / "art"))
    tracking.log_metrics(uri, run_id, {"val_loss": val_loss, "train_loss": val_loss + 0.05}, step=1)
    model = build_model({"name": "dense", "input_shape": [6], "hidden": [4], "latent_dim": 2})
    x = np.random.default_rng(0).random((16, 6), dtype=np.float32)
    with torch.no_grad():
        scores = model.score(torch.from_numpy(x)).numpy()
    bundle = ModelBundle(model, Normalizer("none"), calibrate(scores), {}).save(root / run_id / "bundle")
    version = tracking.log_model(uri, run_id, bundle, pd.DataFrame({"x": list(x[:2].astype(np.float64))}), MODEL)
    tracking.end_run(uri, run_id)
    return version


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A SQLite MLflow store with two versions of MODEL (val_loss 0.5 then 0.4); yields (uri, {version: run})."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    root = tmp_path_factory.mktemp("mlflow-json")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    runs = {}
    for loss in (0.5, 0.4):
        version = register(uri, root, loss)
        runs[version] = tracking.resolve_model(uri, f"models:/{MODEL}/{version}").run_id
    yield uri, runs
    for k, v in saved.items():  # log_model sets them (mlflow.set_tracking_uri): undo that
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def cli_json(*args: str):
    """``aepipe ARGS --json`` in-process, parsed."""
    result = runner.invoke(app, [*args, "--json"], env={"MLFLOW_REGISTRY_URI": None}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_models_list_show_compare_and_runs_list_json(store):
    uri, runs = store
    listed = cli_json("models", "list", "--tracking-uri", uri)
    assert listed == [{"name": MODEL, "versions": [1, 2], "aliases": listed[0]["aliases"], "latest_run": runs["2"]}]
    assert set(listed[0]["aliases"].values()) <= {"1", "2"}

    shown = cli_json("models", "show", MODEL, "--tracking-uri", uri)
    assert shown["name"] == MODEL and [v["version"] for v in shown["versions"]] == ["2", "1"]
    for v in shown["versions"]:
        assert sorted(v) == ["aliases", "created", "metrics", "run_id", "source", "status", "version"]
        assert (v["status"], v["run_id"], isinstance(v["created"], int)) == ("READY", runs[v["version"]], True)
    assert shown["versions"][0]["metrics"]["val_loss"] == pytest.approx(0.4)

    compared = cli_json("models", "compare", MODEL, "1", "2", "--tracking-uri", uri)
    assert (compared["name"], compared["a"], compared["b"]) == (MODEL, "1", "2")
    by_metric = {m["metric"]: m for m in compared["metrics"]}
    assert by_metric["val_loss"] == {"metric": "val_loss", "a": 0.5, "b": 0.4, "diff": pytest.approx(-0.1)}

    recent = cli_json("runs", "list", "--experiment", EXPERIMENT, "--tracking-uri", uri)
    assert {r["run_id"] for r in recent} == set(runs.values())
    assert all(sorted(r) == ["metrics", "name", "run_id", "start", "status"] for r in recent)
    assert {r["name"]: r["metrics"]["val_loss"] for r in recent} == {"val-0.5": 0.5, "val-0.4": 0.4}
