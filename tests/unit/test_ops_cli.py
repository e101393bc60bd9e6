"""Fast checks of the operations CLI: job specs, secret refusal, token headers, credentials, nightly dates,
where ``aepipe score`` takes its settings from."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import subprocess
import typing
from types import SimpleNamespace

import pytest
import typer
from typer.testing import CliRunner

from jobs.cli import app
from jobs.commands import score as score_command
from jobs.commands.data import SyntheticKind
from jobs.commands.ray_jobs import EXIT_UNREACHABLE, auth_headers
from jobs.commands.submit import EXCLUDES, PROJECT_ROOT, Kind, code_env, entrypoint, runtime_env
from jobs.entrypoints.nightly_score import partition
from pipelines.config import ScoreConfig
from pipelines.data.corpora import SYNTHETIC_KINDS
from pipelines.provenance import git_commit

runner = CliRunner()
CLEAN = {
    "MLFLOW_TRACKING_URI": None,
    "MLFLOW_REGISTRY_URI": None,
    "MLFLOW_TRACKING_USERNAME": None,
    "MLFLOW_TRACKING_PASSWORD": None,
    "AEPIPE_CREDENTIALS_FILE": None,
    "RAY_AUTH_TOKEN": None,
    "RAY_AUTH_TOKEN_PATH": None,
    "AEPIPE_GIT_COMMIT": None,
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
        "env_vars": {
            "AEPIPE_GIT_COMMIT": git_commit(PROJECT_ROOT),  # .git stays behind: the job learns its commit from here
            "AEPIPE_HOME": str(tmp_path),
            "MLFLOW_TRACKING_URI": "http://mlflow:5000",
            "K": "v w",
        },
    }
    assert {".venv", ".aepipe", ".git"} <= set(EXCLUDES)


def test_submit_passes_the_code_commit(tmp_path):
    head = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert code_env(PROJECT_ROOT) == {"AEPIPE_GIT_COMMIT": head.stdout.strip()}
    plain = tmp_path / "project"  # a copy of the code without .git: the submitting shell's commit, if any
    (plain / "jobs" / "entrypoints").mkdir(parents=True)
    assert code_env(plain) == {}
    args = ["submit", "train", "--address", "http://127.0.0.1:1", "--dry-run", "--working-dir", str(plain)]
    result = runner.invoke(app, args, env={**CLEAN, "AEPIPE_GIT_COMMIT": "abc123"})
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["runtime_env"]["env_vars"]["AEPIPE_GIT_COMMIT"] == "abc123"
    explicit = runner.invoke(app, [*args, "--env", "AEPIPE_GIT_COMMIT=def456"], env=CLEAN)
    assert json.loads(explicit.output)["runtime_env"]["env_vars"]["AEPIPE_GIT_COMMIT"] == "def456"


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
    assert result.exit_code == EXIT_UNREACHABLE == 4  # its own status: a scheduler retries it, unlike 2 and 3
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


@pytest.fixture()
def scoring(home, monkeypatch):
    """``aepipe score ARGS`` without Ray: returns the ScoreRequest the command built (run_scoring faked)."""
    import pipelines.score.driver as driver

    requests = []

    def fake_run_scoring(req, log=print, progress=None):
        requests.append(req)
        model = SimpleNamespace(uri="models:/m/1")
        return SimpleNamespace(noop=True, model=model, output_path=req.output_path, run_id=None)

    monkeypatch.setattr(driver, "run_scoring", fake_run_scoring)
    monkeypatch.setattr(score_command, "ray_session", lambda address=None: contextlib.nullcontext())

    def run(*args):
        result = runner.invoke(app, ["score", *args], env=CLEAN)
        assert result.exit_code == 0, result.output
        return requests.pop()

    return run


def test_score_without_config_takes_score_config_defaults(scoring):
    req = scoring()
    assert req.settings == ScoreConfig() and req.mode == "both"
    flagged = scoring("--mode", "embed", "--ks-alpha", "1e-300", "--num-gpus", "0")
    assert (flagged.mode, flagged.settings.ks_alpha, flagged.settings.num_gpus) == ("embed", 1e-300, 0)


def test_score_settings_come_from_the_job_yaml_then_overrides_then_flags(scoring, tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("model:\n  name: dense\nscore:\n  batch_size: 256\n  concurrency: 2\n  psi_limit: 0.5\n")
    from_file = scoring("--config", str(job)).settings
    assert (from_file.batch_size, from_file.concurrency, from_file.psi_limit) == (256, 2, 0.5)
    assert from_file.shards_per_pass == ScoreConfig().shards_per_pass
    overridden = scoring("-c", str(job), "score.concurrency=3", "score.drift_bins=20", "--batch-size", "8").settings
    assert (overridden.batch_size, overridden.concurrency, overridden.drift_bins) == (8, 3, 20)
    assert overridden.psi_limit == 0.5


def test_closed_choices_match_what_the_pipelines_take():
    from pipelines.score.driver import ScoreRequest

    assert [m.value for m in score_command.ScoreMode] == list(
        typing.get_args(ScoreRequest.model_fields["mode"].annotation)
    )
    assert tuple(SyntheticKind) == SYNTHETIC_KINDS


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["train", "--config", "x.yaml", "--bogus-flag"],
            "aepipe train would refuse its arguments: No such option: --bogus-flag",
        ),
        (["train", "--resume", "maybe"], "'maybe' is not one of 'auto', 'never', 'require'"),
        (["tune", "--config", "x.yaml", "--trials", "3"], "aepipe tune would refuse its arguments: No such option"),
        (["score", "--mode", "foo"], "aepipe score would refuse its arguments: Invalid value for '--mode'"),
        (["nightly-score", "--date", "2024-06-01"], "Missing option '--model-name'"),
        (["nightly-score", "--model-name", "m", "--bogus"], "No such option: --bogus"),
    ],
)
def test_submit_refuses_arguments_the_job_would_refuse(tmp_path, args, message):
    """Checked on the submitting machine with the job command's own parser: one error line, nothing submitted
    (the address is unreachable: a contacted cluster would fail otherwise)."""
    kind, *rest = args
    result = runner.invoke(
        app,
        ["submit", kind, "--address", "http://127.0.0.1:1", "--dry-run", *rest],
        env={**CLEAN, "AEPIPE_HOME": str(tmp_path)},
    )
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and "Traceback" not in result.output
    assert result.output.startswith("error: ") and message in " ".join(result.output.split())


def test_submit_passes_arguments_the_job_accepts(tmp_path):
    args = ["nightly-score", "--model-name", "m", "--batch-size", "4", "--date", "2024-06-01", "score.ks_min=1"]
    result = runner.invoke(
        app,
        ["submit", args[0], "--address", "http://127.0.0.1:1", "--dry-run", *args[1:]],
        env={**CLEAN, "AEPIPE_HOME": str(tmp_path)},
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["entrypoint"].endswith("--batch-size 4 --date 2024-06-01 score.ks_min=1")


def test_submit_tune_runs_the_tune_entrypoint(tmp_path):
    args = ["--config", "jobs/configs/digits_dense.yaml", "tune.trials=20"]
    result = runner.invoke(
        app,
        ["submit", "tune", "--address", "http://127.0.0.1:1", "--dry-run", *args],
        env={**CLEAN, "AEPIPE_HOME": str(tmp_path)},
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["entrypoint"] == (
        "python -m jobs.entrypoints.tune --config jobs/configs/digits_dense.yaml tune.trials=20"
    )
