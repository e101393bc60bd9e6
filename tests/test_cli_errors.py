"""User mistakes get one clear line and exit status 2, never a traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from jobs.cli import app

runner = CliRunner()


def _train(*overrides: str):
    return runner.invoke(app, ["train", "--config", "jobs/configs/mnist_dense.yaml", *overrides])


def _assert_clean_error(result, *fragments: str):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def test_unknown_config_key(home):
    _assert_clean_error(_train("train.epochz=2"), "train.epochz: no such config key")


def test_unknown_model_lists_known(home):
    _assert_clean_error(_train("model.name=transformer"), "unknown model 'transformer'", "dense", "vae")


@pytest.mark.slow
def test_missing_input_path(ray_local, home, tmp_path):
    missing = tmp_path / "nowhere"
    _assert_clean_error(_train(f"data.path={missing}"), f"input path {missing} does not exist")


@pytest.mark.slow
def test_empty_input_directory(ray_local, home, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    _assert_clean_error(_train(f"data.path={empty}"), f"input directory {empty} has no .parquet files")


@pytest.mark.slow
def test_score_unknown_model(ray_local, home, mnist_small, tmp_path):
    result = runner.invoke(
        app,
        ["score", "--model", "models:/missing@champion", "--input", str(mnist_small), "--output", str(tmp_path / "o")],
    )
    _assert_clean_error(result, "cannot resolve models:/missing@champion")
