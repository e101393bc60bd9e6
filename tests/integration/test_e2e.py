"""The walking skeleton end to end, through the CLI code: train -> register -> score on real Ray + MLflow."""

from __future__ import annotations

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from jobs.cli import app
from pipelines import tracking

runner = CliRunner()


def _invoke(*args: str):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    return result


def test_train_register_score(ray_local, home, mnist_small):
    train = _invoke(
        "train",
        "--config",
        "jobs/configs/mnist_dense.yaml",
        f"data.path={mnist_small}",
        "train.epochs=1",
        "train.num_workers=2",
        "train.batch_size=64",
        "model.hidden=[64]",
        "model.latent_dim=8",
        "tracking.registered_model=e2e",
    )
    assert train.exit_code == 0, train.output
    uri = f"sqlite:///{home.resolve() / 'mlflow.db'}"

    # one registered version, aliased champion because none existed
    assert {k: str(v) for k, v in tracking.aliases(uri, "e2e").items()} == {"champion": "1", "challenger": "1"}
    run_id = tracking.resolve_model(uri, "models:/e2e@champion").run_id
    val = tracking.metric_history(uri, run_id, "val_loss")
    assert [step for step, _ in val] == [0, 1]
    assert val[1][1] < val[0][1], f"validation loss did not drop: {val}"
    assert [s for s, _ in tracking.metric_history(uri, run_id, "train_loss")] == [1]

    out = home / "scores"
    score = _invoke("score", "--model", "models:/e2e@champion", "--input", str(mnist_small), "--output", str(out))
    assert score.exit_code == 0, score.output
    df = pd.read_parquet(out)
    assert len(df) == 600 and df["id"].nunique() == 600
    assert set(df["id"]) == {f"mnist-{i:05d}" for i in range(600)}
    assert np.isfinite(df["score"]).all() and (df["score"] >= 0).all()
    assert np.stack(df["embedding"]).shape == (600, 8)
    assert set(df["model_version"]) == {"1"} and set(df["model_name"]) == {"e2e"}
    # the stored threshold is the 99th percentile of validation scores, so few rows exceed it
    assert 0 < df["is_anomaly"].mean() < 0.1

    # a second run adds version 2 but champion stays on version 1
    again = _invoke(
        "train",
        "--config",
        "jobs/configs/mnist_dense.yaml",
        f"data.path={mnist_small}",
        "train.epochs=1",
        "model.hidden=[64]",
        "model.latent_dim=8",
        "tracking.registered_model=e2e",
    )
    assert again.exit_code == 0, again.output
    aliases = {k: str(v) for k, v in tracking.aliases(uri, "e2e").items()}
    assert aliases == {"champion": "1", "challenger": "2"}
    assert tracking.resolve_model(uri, "models:/e2e").version == "2"

    listing = _invoke("models", "list")
    assert listing.exit_code == 0 and "e2e" in listing.output and "champion->v1" in listing.output
