"""``aepipe tune`` through the CLI on scikit-learn's digits: trials as nested MLflow runs, the leaderboard as an
artifact of the search run, the labelled objective logged for every trial, and the best trial registered."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
from mlflow import MlflowClient
from typer.testing import CliRunner

from jobs.cli import app
from pipelines.data import corpora
from tests.support.low_rank import rank3

runner = CliRunner()
SPACE = "[{model.name: linear, model.latent_dim: [2, 8]}, {model.hidden: [[32]], model.latent_dim: [8]}]"


def test_tune_registers_the_best_of_its_nested_trials(ray_local, home):
    made = runner.invoke(app, ["data", "digits"], catch_exceptions=False)
    assert made.exit_code == 0, made.output
    result = runner.invoke(
        app,
        [
            "tune",
            "--config",
            "jobs/configs/digits_dense.yaml",
            "name=digits-tune",
            "tracking.registered_model=digits-tune",
            f"tune.space={SPACE}",
            "tune.trials=3",
            "tune.metric=val_auroc",
            "tune.anomaly_labels=[0]",  # digit 0 counts as the anomaly: labelled AUROC and AP for every trial
            "tune.grace_epochs=1",
            "train.epochs=2",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("\ntrial ") + result.output.startswith("trial ") == 3, result.output
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    search = client.search_runs(
        [client.get_experiment_by_name("aepipe").experiment_id], "tags.`aepipe.tune.job` = 'digits-tune'"
    )
    assert len(search) == 1 and search[0].info.status == "FINISHED"
    parent = search[0].info.run_id
    trials = client.search_runs([search[0].info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'")
    assert len(trials) == 3 and all(t.info.status == "FINISHED" for t in trials)
    best_auroc = {
        t.info.run_id: max(m.value for m in client.get_metric_history(t.info.run_id, "val_auroc")) for t in trials
    }
    assert all("val_ap" in t.data.metrics and "val_mse" in t.data.metrics for t in trials)

    folder = mlflow.artifacts.download_artifacts(run_id=parent, artifact_path="tune", tracking_uri=client.tracking_uri)
    rows = json.loads((Path(folder) / "leaderboard.json").read_text())
    assert [r["rank"] for r in rows] == [1, 2, 3] and {r["run_id"] for r in rows} == set(best_auroc)
    assert [r["val_auroc"] for r in rows] == sorted(best_auroc.values(), reverse=True)
    for name in ("leaderboard.csv", "leaderboard.png", "space.yaml"):
        assert (Path(folder) / name).stat().st_size > 0, name

    version = client.get_model_version_by_alias("digits-tune", "challenger")
    assert version.run_id == rows[0]["run_id"]
    assert best_auroc[version.run_id] == max(best_auroc.values())  # two trials may draw the same values and tie
    assert search[0].data.tags["aepipe.tune.best_run"] == version.run_id
    assert f"models:/digits-tune/{version.version}" in result.output


def test_every_trial_takes_the_code_size_measured_from_the_data(ray_local, home):
    data = home / "rank3"  # 16 values a row in 3 directions, which 90% of the variance takes
    corpora.write_vector_shards(data, np.array([f"r{i:04d}" for i in range(400)]), rank3(400), None, 2)
    # another family than the job's, which does not set model.latent_dim, learning too slowly to leave the principal
    # subspace it starts at
    space = "[{model.name: linear, train.lr: [1.0e-6, 2.0e-6]}]"
    result = runner.invoke(
        app,
        [
            "tune", "--config", "jobs/configs/digits_dense.yaml", f"data.path={data}", "data.label_column=null",
            "model.input_shape=[16]", "data.normalize=none", "data.latent_variance=0.9", "name=rank3-tune",
            "tracking.registered_model=rank3-tune", f"tune.space={space}", "tune.trials=2", "train.epochs=1",
        ],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "code size: 3 principal components hold 90% of the training split's variance" in result.output
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    search = client.search_runs(
        [client.get_experiment_by_name("aepipe").experiment_id], "tags.`aepipe.tune.job` = 'rank3-tune'"
    )
    parent = search[0].info.run_id
    trials = client.search_runs([search[0].info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent}'")
    assert len(trials) == 2 and {t.data.params["model.latent_dim"] for t in trials} == {"3"}
    assert "linear trials start at the training split's principal components" in result.output
    # started at PCA: the corpus' noise (std 1e-3) is all the trials miss
    assert all(t.data.tags["aepipe.model"] == "linear" and t.data.metrics["val_mse"] < 1e-5 for t in trials)
    for trial in trials:  # the start is a candidate of its own, epoch 0
        assert [m.step for m in client.get_metric_history(trial.info.run_id, "val_mse")] == [0, 1]
