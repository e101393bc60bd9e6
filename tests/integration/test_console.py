"""The console as a person sees it: ``aepipe train`` and ``aepipe score`` on a pseudo-terminal (live bars, no Ray
internals, the summary once) and with stdout to a pipe (plain lines, one per epoch and per shard); everything
else in the run's log file, which is also an artifact of the MLflow run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import tracking
from tests.support.terminal import on_terminal

REPO = Path(__file__).resolve().parents[2]
#: what Ray, Ray Data and the dependencies print that a user did not ask for
INTERNALS = (
    "TrainController",
    "PlacementGroupCleaner",
    "RayTrainWorker",
    "core_worker",
    "Traceback",
    "Warning",
    "streaming_executor",
    "Reporting training result",
)


def _train(data: Path, name: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "jobs.cli",
        "train",
        "--config",
        "jobs/configs/mnist_dense.yaml",
        f"data.path={data}",
        f"name={name}",
        "tracking.registered_model=console",
        "train.epochs=2",
        "train.num_workers=1",
        "train.batch_size=32",
        "train.plot_rows=16",
        "model.hidden=[16]",
        "model.latent_dim=4",
    ]


def _score(data: Path, out: Path) -> list[str]:
    cli = [sys.executable, "-m", "jobs.cli", "score", "--model", "models:/console@champion"]
    return [*cli, "--input", str(data), "--output", str(out)]


@pytest.fixture()
def env(home: Path, ray_local) -> dict[str, str]:
    """The CLI's environment: this test's AEPIPE_HOME, and the suite's Ray instance (no second one started)."""
    address = ray_local.get_runtime_context().gcs_address
    return {**os.environ, "AEPIPE_HOME": str(home), "RAY_ADDRESS": address, "PYTHONPATH": str(REPO)}


def _no_internals(text: str) -> None:
    shown = [word for word in INTERNALS if word in text]
    assert not shown, f"{shown} on the terminal:\n{text}"


def _log_file(text: str) -> Path:
    [path] = re.findall(r"^log:\s+(\S+)$", text, flags=re.MULTILINE)
    return Path(path)


def test_on_a_terminal_the_bars_draw_and_the_summary_shows_once(env, home, mnist_small):
    trained = on_terminal(_train(mnist_small, "console-tty"), env, str(REPO))
    assert trained.returncode == 0, trained.text
    assert "━" in trained.raw and "\x1b[" in trained.raw  # rich's bars, redrawn in place
    assert "epoch 1/2" in trained.text and "training" in trained.text
    _no_internals(trained.text)
    [run_id] = re.findall(r"run:\s+([0-9a-f]{32})", trained.text)  # the summary once
    for line in ("model:    models:/console/1", "val_loss: ", "look:     mlflow ui", "bundle:   "):
        assert trained.text.count(line) == 1, trained.text
    for k in (1, 2):
        assert len(re.findall(rf"epoch {k}/2 train_loss=\S+ val_loss=", trained.text)) == 1
    log = _log_file(trained.text)
    assert log.parent == home / "logs" and "TrainController" in log.read_text()  # the full Ray logs are here
    uri = f"sqlite:///{home.resolve() / 'mlflow.db'}"
    logged = [a.path for a in tracking.client(uri).list_artifacts(run_id, "logs")]
    assert logged == [f"logs/{log.name}"]

    scored = on_terminal(_score(mnist_small, home / "scores"), env, str(REPO))
    assert scored.returncode == 0, scored.text
    assert "scoring" in scored.text and "shards" in scored.text and "━" in scored.raw
    _no_internals(scored.text)
    assert scored.text.count("published 600 rows") == 1


def test_to_a_pipe_plain_lines_one_per_epoch_and_shard(env, home, mnist_small):
    trained = subprocess.run(
        _train(mnist_small, "console-pipe"), env=env, cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "\x1b[" not in trained.stdout + trained.stderr and "━" not in trained.stdout  # no redraws
    _no_internals(trained.stdout + trained.stderr)
    lines = trained.stdout.splitlines()
    assert [line.split()[1] for line in lines if line.startswith("epoch ")] == ["1/2", "2/2"]
    assert sum(line.startswith("run: ") for line in lines) == 1 and len(lines) <= 15, trained.stdout
    assert "TrainController" in _log_file(trained.stdout).read_text()

    scored = subprocess.run(
        _score(mnist_small, home / "scores"), env=env, cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert scored.returncode == 0, scored.stdout + scored.stderr
    assert "\x1b[" not in scored.stdout + scored.stderr
    _no_internals(scored.stdout + scored.stderr)
    shards = [line for line in scored.stdout.splitlines() if line.startswith("  shard ")]
    assert len(shards) == 4 and all(line.endswith(" rows") for line in shards)
