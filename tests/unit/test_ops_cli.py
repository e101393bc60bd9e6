"""Fast checks of the operations CLI: job specs, secret refusal, token headers, credentials, nightly dates."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import typer
from typer.testing import CliRunner

from jobs.cli import app
from jobs.commands.ray_jobs import auth_headers
from jobs.commands.submit import EXCLUDES, PROJECT_ROOT, Kind, entrypoint, runtime_env
from jobs.entrypoints.nightly_score import partition

runner = CliRunner()
CLEAN = {
    "MLFLOW_TRACKING_URI": None,
    "MLFLOW_REGISTRY_URI": None,
    "MLFLOW_TRACKING_USERNAME": None,
    "MLFLOW_TRACKING_PASSWORD": None,
    "AEPIPE_CREDENTIALS_FILE": None,
    "RAY_AUTH_TOKEN": None,
    "RAY_AUTH_TOKEN_PATH": None,
}


def test_submit_dry_run_builds_the_job(tmp_path):
    result = runner.invoke(
        app,
        [
            "submit",
            "train",
            "--address",
            "http://127.0.0.1:1",
            "--dry-run",
            "--env",
            "K=v w",
            "--pip",
            "scipy>=1.11",
            "--config",
            "jobs/configs/mnist_dense.yaml",
            "model.hidden=[8, 4]",
        ],
        env={**CLEAN, "AEPIPE_HOME": str(tmp_path), "MLFLOW_TRACKING_URI": "http://mlflow:5000"},
    )
    assert result.exit_code == 0, result.output
    spec = json.loads(result.output)
    assert spec["entrypoint"] == (
        "python -m jobs.entrypoints.train --config jobs/configs/mnist_dense.yaml 'model.hidden=[8, 4]'"
    )
    assert spec["runtime_env"] == {
        "working_dir": str(PROJECT_ROOT),
        "excludes": EXCLUDES,
        "pip": ["scipy>=1.11"],
        "env_vars": {"AEPIPE_HOME": str(tmp_path), "MLFLOW_TRACKING_URI": "http://mlflow:5000", "K": "v w"},
    }
    assert {".venv", ".aepipe", ".git"} <= set(EXCLUDES)


def test_pip_is_only_installed_when_asked():
    assert "pip" not in runtime_env(PROJECT_ROOT, {})
    assert runtime_env(PROJECT_ROOT, {}, ["requirements.txt"])["pip"] == "requirements.txt"
    assert (
        entrypoint(Kind.nightly_score, ["--date", "2024-06-01"])
        == "python -m jobs.entrypoints.nightly_score --date 2024-06-01"
    )


@pytest.mark.parametrize(
    "name", ["MLFLOW_TRACKING_PASSWORD", "RAY_AUTH_TOKEN", "AWS_SECRET_ACCESS_KEY", "my_credential"]
)
def test_secrets_never_go_into_the_runtime_env(name):
    result = runner.invoke(
        app,
        ["submit", "score", "--address", "http://127.0.0.1:1", "--dry-run", "--env", f"{name}=hunter2-value"],
        env=CLEAN,
    )
    assert result.exit_code == 2 and f"refusing to put {name}" in result.output
    assert "hunter2-value" not in result.output


def test_ray_token_header_from_env_or_file(tmp_path, monkeypatch):
    for k in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(k, raising=False)
    assert auth_headers() == {}
    (tmp_path / "token").write_text("abc123\n")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "token"))
    assert auth_headers() == {"Authorization": "Bearer abc123"}
    monkeypatch.setenv("RAY_AUTH_TOKEN", "def456")
    assert auth_headers() == {"Authorization": "Bearer def456"}


def test_unreachable_cluster_is_one_clear_error():
    result = runner.invoke(app, ["jobs", "status", "raysubmit_x", "--address", "http://127.0.0.1:9"], env=CLEAN)
    assert result.exit_code == 2
    assert "error: cannot reach the Ray Jobs API at http://127.0.0.1:9" in result.output


def test_credentials_inside_a_uri_are_refused_unechoed(tmp_path):
    result = runner.invoke(
        app, ["runs", "list"], env={**CLEAN, "MLFLOW_TRACKING_URI": "https://ci:s3cr3t-pw@mlflow.example.com:8443"}
    )
    assert result.exit_code == 2
    assert "https://***@mlflow.example.com:8443 embeds credentials" in result.output and "s3cr3t" not in result.output
    train = runner.invoke(
        app,
        [
            "train",
            "--config",
            "jobs/configs/mnist_dense.yaml",
            "tracking.tracking_uri=http://u:s3cr3t-pw@127.0.0.1:5000",
        ],
        env={**CLEAN, "AEPIPE_HOME": str(tmp_path)},
    )
    assert train.exit_code == 2 and "embeds credentials" in train.output and "s3cr3t" not in train.output
    submit = runner.invoke(
        app,
        ["submit", "train", "--address", "http://127.0.0.1:1", "--dry-run"],
        env={**CLEAN, "MLFLOW_TRACKING_URI": "http://u:s3cr3t-pw@127.0.0.1:5000"},
    )
    assert submit.exit_code == 2 and "embeds credentials" in submit.output and "s3cr3t" not in submit.output


def test_credentials_file(tmp_path):
    missing = runner.invoke(app, ["models", "list"], env={**CLEAN, "AEPIPE_CREDENTIALS_FILE": str(tmp_path / "nope")})
    assert missing.exit_code == 2 and f"AEPIPE_CREDENTIALS_FILE {tmp_path / 'nope'}: cannot read it" in missing.output
    (tmp_path / "creds").write_text("[other]\nx = 1\n")
    wrong = runner.invoke(app, ["models", "list"], env={**CLEAN, "AEPIPE_CREDENTIALS_FILE": str(tmp_path / "creds")})
    assert wrong.exit_code == 2 and "no [mlflow] section" in wrong.output


def test_nightly_partition_dates():
    assert partition(None, today=dt.date(2024, 3, 1)) == "dt=2024-02-29"
    assert partition("2024-06-01") == "dt=2024-06-01"
    with pytest.raises(typer.BadParameter, match="'06/01/2024' is not a date"):
        partition("06/01/2024")
